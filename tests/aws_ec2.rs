//! The EC2 fleet against moto: launches are tagged and idempotent, `list` pages
//! through one cluster's instances only, terminate is idempotent, the user-data
//! starts a worker and installs nothing, launches are batched, throttling is
//! waited out, and the fleet simulator turns instances into worker processes.

#![cfg(feature = "aws")]

mod common;

use aws_sdk_ec2::types::InstanceAttributeName;
use base64::Engine as _;
use common::{fault_proxy::FaultProxy, fault_proxy::Match, fleet_sim::FleetSim, moto::Moto};
use drover::fleet::{
    ec2::{parse_user_data, BatchWindow, Ec2Fleet, Ec2Settings},
    Fleet,
};
use reconcilers::model::{Instance, InstanceId, InstanceState, LaunchKey, Timestamp};
use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

const CONTROLLER: &str = "http://10.1.2.3:7700";

/// Short batching windows, so each test's launches go out within milliseconds.
const FAST: BatchWindow = BatchWindow {
    idle: Duration::from_millis(50),
    max: Duration::from_millis(500),
    concurrency: 4,
};

fn settings() -> Ec2Settings {
    Ec2Settings {
        image_id: Some("ami-12c6146b".to_string()),
        instance_type: Some("t3.micro".to_string()),
        tags: BTreeMap::from([("team".to_string(), "physics".to_string())]),
        slots: Some(3),
        ping_interval: Some(Duration::from_millis(1500)),
        ..Ec2Settings::default()
    }
}

fn fleet(sdk: &aws_config::SdkConfig, cluster: &str) -> Ec2Fleet {
    Ec2Fleet::new(sdk, cluster, CONTROLLER, settings()).with_batch_window(FAST)
}

fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default(),
    )
}

fn record(id: &str) -> Instance {
    Instance {
        id: InstanceId::new(id),
        launch_key: LaunchKey::new(id),
        state: InstanceState::Launching,
        launched_at: now(),
        provider_ref: None,
    }
}

fn ec2(moto: &Moto) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&moto.sdk_config())
}

/// Every instance moto holds (any cluster, any state): (EC2 id, state, tags).
async fn raw_instances(moto: &Moto) -> Vec<(String, String, BTreeMap<String, String>)> {
    let out = ec2(moto)
        .describe_instances()
        .send()
        .await
        .expect("DescribeInstances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_string(),
                i.state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default(),
                i.tags()
                    .iter()
                    .map(|t| {
                        (
                            t.key().unwrap_or_default().to_string(),
                            t.value().unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

async fn user_data(moto: &Moto, ec2_id: &str) -> String {
    let attr = ec2(moto)
        .describe_instance_attribute()
        .instance_id(ec2_id)
        .attribute(InstanceAttributeName::UserData)
        .send()
        .await
        .expect("DescribeInstanceAttribute");
    let encoded = attr.user_data().and_then(|v| v.value()).unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("user-data is base64");
    String::from_utf8(bytes).expect("user-data is text")
}

#[tokio::test]
async fn a_launch_creates_one_tagged_instance_that_list_reports() {
    let moto = Moto::start();
    let fleet = fleet(&moto.sdk_config(), "prod");
    let before = now();
    let ec2_id = fleet
        .launch(&record("w0abc"))
        .await
        .expect("launch")
        .expect("an EC2 id");
    assert!(ec2_id.starts_with("i-"), "{ec2_id}");

    let all = raw_instances(&moto).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let (id, _, tags) = &all[0];
    assert_eq!(id, &ec2_id);
    for (k, v) in [
        ("drover:cluster", "prod"),
        ("drover:instance", "w0abc"),
        ("drover:launch-key", "w0abc"),
        ("Name", "drover-prod-w0abc"),
        ("team", "physics"),
    ] {
        assert_eq!(
            tags.get(k).map(String::as_str),
            Some(v),
            "tag {k} in {tags:?}"
        );
    }

    let listed = fleet.list().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, InstanceId::new("w0abc"));
    assert_eq!(listed[0].launch_key, Some(LaunchKey::new("w0abc")));
    // EC2 reports launch times in whole seconds.
    assert!(
        listed[0].launched_at.0 + 2_000 >= before.0 && listed[0].launched_at <= now(),
        "launched at {:?}, test started at {before:?}",
        listed[0].launched_at
    );
}

#[tokio::test]
async fn launching_the_same_launch_key_twice_starts_one_instance() {
    let moto = Moto::start();
    let fleet = fleet(&moto.sdk_config(), "prod");
    let inst = record("w0same");
    let first = fleet.launch(&inst).await.expect("first launch");
    let again = fleet.launch(&inst).await.expect("repeated launch");
    // And twice at once: both land in one batch.
    let (a, b) = tokio::join!(fleet.launch(&inst), fleet.launch(&inst));
    assert_eq!(
        [again, a.expect("concurrent a"), b.expect("concurrent b")],
        [first.clone(), first.clone(), first.clone()]
    );
    assert_eq!(raw_instances(&moto).await.len(), 1);
}

#[tokio::test]
async fn list_pages_through_every_instance_and_ignores_other_clusters() {
    let moto = Moto::start();
    let prod = fleet(&moto.sdk_config(), "prod").with_page_size(5);
    let test = fleet(&moto.sdk_config(), "test");
    let ids: Vec<String> = (0..7).map(|n| format!("w0prod{n}")).collect();
    let launches = ids.iter().map(|id| {
        let prod = &prod;
        async move { prod.launch(&record(id)).await }
    });
    for r in futures::future::join_all(launches).await {
        r.expect("launch in prod");
    }
    for id in ["w0test0", "w0test1"] {
        test.launch(&record(id)).await.expect("launch in test");
    }

    let calls = prod.stats().calls();
    let mut listed: Vec<String> = prod
        .list()
        .await
        .expect("list prod")
        .into_iter()
        .map(|o| o.id.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, ids);
    assert_eq!(
        prod.stats().calls() - calls,
        2,
        "7 instances in pages of 5 take two DescribeInstances calls"
    );
    let other: Vec<String> = test
        .list()
        .await
        .expect("list test")
        .into_iter()
        .map(|o| o.id.to_string())
        .collect();
    assert_eq!(other.len(), 2, "{other:?}");
}

#[tokio::test]
async fn terminated_instances_leave_the_list_and_terminating_again_is_fine() {
    let moto = Moto::start();
    let fleet = fleet(&moto.sdk_config(), "prod");
    let mut one = record("w0one");
    one.provider_ref = fleet.launch(&one).await.expect("launch one");
    let two = record("w0two");
    fleet.launch(&two).await.expect("launch two");

    fleet.terminate(&one).await.expect("terminate by EC2 id");
    let left: Vec<InstanceId> = fleet
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(left, vec![InstanceId::new("w0two")]);
    fleet
        .terminate(&one)
        .await
        .expect("terminating again is fine");

    // Without a provider ref (a crash before it was stored): found by its tag.
    fleet.terminate(&two).await.expect("terminate by drover id");
    assert!(fleet.list().await.expect("list").is_empty());
    let states: Vec<String> = raw_instances(&moto)
        .await
        .into_iter()
        .map(|i| i.1)
        .collect();
    assert_eq!(states, ["terminated", "terminated"]);

    let mut unknown = record("w0never");
    fleet
        .terminate(&unknown)
        .await
        .expect("an unknown drover id is gone already");
    unknown.provider_ref = Some("i-0123456789abcdef0".to_string());
    fleet
        .terminate(&unknown)
        .await
        .expect("an unknown EC2 id is gone already");
}

#[tokio::test]
async fn the_user_data_starts_the_worker_and_installs_nothing() {
    let moto = Moto::start();
    let fleet = fleet(&moto.sdk_config(), "prod");
    let ec2_id = fleet
        .launch(&record("w0ud"))
        .await
        .expect("launch")
        .expect("an EC2 id");
    let script = user_data(&moto, &ec2_id).await;
    assert!(script.starts_with("#!/bin/sh\n"), "{script}");
    for fetcher in ["curl", "wget", "pip", "apt", "yum", "dnf"] {
        assert!(
            !script.contains(fetcher),
            "the script mentions {fetcher}:\n{script}"
        );
    }
    assert!(
        script.contains("exec /usr/local/bin/drover worker "),
        "the worker is not the main process:\n{script}"
    );
    assert!(script.contains("/var/log/drover-worker.log"), "{script}");

    let launch = parse_user_data(&script).expect("the script starts a worker");
    assert_eq!(launch.controller, CONTROLLER);
    assert_eq!(launch.instance_id, InstanceId::new("w0ud"));
    assert_eq!(launch.slots, 3);
    assert_eq!(launch.ping_interval, Duration::from_millis(1500));
    // `<worker id>.<HMAC-SHA256 in hex>`: the worker's own token (see docs/security.md).
    let signature = launch.token.strip_prefix("w0ud.").unwrap_or_default();
    assert!(
        signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()),
        "token {:?}",
        launch.token
    );
    // Each instance has its own token.
    let other = fleet
        .launch(&record("w0ud2"))
        .await
        .expect("launch")
        .expect("an EC2 id");
    let other = parse_user_data(&user_data(&moto, &other).await).expect("a worker");
    assert_ne!(other.token, launch.token);
}

#[tokio::test]
async fn launches_within_the_window_go_out_as_one_batch() {
    let moto = Moto::start();
    let fleet = Ec2Fleet::new(&moto.sdk_config(), "prod", CONTROLLER, settings())
        .with_batch_window(BatchWindow {
            idle: Duration::from_millis(150),
            max: Duration::from_secs(2),
            concurrency: 2,
        });
    let ids: Vec<String> = (0..5).map(|n| format!("w0batch{n}")).collect();
    let launches = ids.iter().enumerate().map(|(n, id)| {
        let fleet = &fleet;
        async move {
            // Staggered, each within the idle window of the one before.
            tokio::time::sleep(Duration::from_millis(40 * n as u64)).await;
            fleet.launch(&record(id)).await
        }
    });
    let answers: Vec<String> = futures::future::join_all(launches)
        .await
        .into_iter()
        .map(|r| r.expect("launch").expect("an EC2 id"))
        .collect();

    let stats = fleet.stats();
    assert_eq!(
        stats.batches(),
        1,
        "five launches 40ms apart make one batch"
    );
    assert_eq!(
        stats.calls(),
        1 + 5,
        "one lookup of the batch's keys, one RunInstances each"
    );
    // Each caller got its own instance: the one tagged with its id.
    let all = raw_instances(&moto).await;
    assert_eq!(all.len(), 5);
    for (id, ec2_id) in ids.iter().zip(&answers) {
        let tagged = all
            .iter()
            .find(|i| &i.0 == ec2_id)
            .expect("the answered instance exists");
        assert_eq!(tagged.2.get("drover:instance"), Some(id));
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    fleet
        .launch(&record("w0later"))
        .await
        .expect("a later launch");
    assert_eq!(
        stats.batches(),
        2,
        "a launch after the window is a batch of its own"
    );
}

#[tokio::test]
async fn throttled_ec2_calls_are_waited_out_and_the_launch_succeeds() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url);
    let fleet = fleet(&proxy.sdk_config(), "prod");
    let run = Match::Ec2Action("RunInstances".into());
    // The next three EC2 calls (the batch's lookup of its launch key), then the
    // next two RunInstances.
    proxy.refuse_next(3, Match::AnyEc2);
    proxy.refuse_next(2, run.clone());

    let started = Instant::now();
    let ec2_id = fleet
        .launch(&record("w0slow"))
        .await
        .expect("the launch succeeds after backoff")
        .expect("an EC2 id");
    let waited = started.elapsed();

    assert_eq!(proxy.count(&Match::AnyEc2).1, 5, "{:?}", proxy.seen());
    assert_eq!(proxy.count(&run), (1, 2), "{:?}", proxy.seen());
    let stats = fleet.stats();
    assert_eq!(
        (stats.throttled(), stats.retried(), stats.failed()),
        (5, 5, 0)
    );
    // 200, 400 and 800 ms, then 200 and 400 ms (each plus up to as much jitter).
    assert!(
        waited >= Duration::from_millis(2000),
        "backed off only {waited:?}"
    );
    let all = raw_instances(&moto).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, ec2_id);
}

#[tokio::test]
async fn insufficient_capacity_fails_the_launch_at_once_with_its_message() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url);
    let fleet = fleet(&proxy.sdk_config(), "prod");
    let run = Match::Ec2Action("RunInstances".into());
    proxy.fail_next(1, run.clone(), 500, "InsufficientInstanceCapacity");

    let err = fleet
        .launch(&record("w0full"))
        .await
        .expect_err("no capacity, no instance");
    let text = err.to_string();
    assert!(
        text.contains("w0full")
            && text.contains("cluster prod")
            && text.contains("InsufficientInstanceCapacity"),
        "{text}"
    );
    assert_eq!(proxy.count(&run), (0, 1), "not retried: {:?}", proxy.seen());
    assert!(raw_instances(&moto).await.is_empty());
}

#[tokio::test]
async fn a_dynamodb_call_refused_by_the_proxy_reads_as_throttling() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url);
    let config = aws_sdk_dynamodb::config::Builder::from(&proxy.sdk_config())
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    let ddb = aws_sdk_dynamodb::Client::from_conf(config);
    proxy.refuse_next(1, Match::DynamoDbOperation("ListTables".into()));
    let err = ddb.list_tables().send().await.expect_err("refused");
    use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
    assert_eq!(err.code(), Some("ThrottlingException"), "{err:?}");
    ddb.list_tables().send().await.expect("the next one passes");
    assert_eq!(proxy.count(&Match::AnyDynamoDb), (1, 1));
}

#[tokio::test]
async fn the_simulator_runs_a_worker_per_instance_and_stops_it_on_terminate() {
    let moto = Moto::start();
    let dir = common::TestDir::new();
    let sim = FleetSim::in_test_dir(&moto.url, "prod", &dir);
    // Nobody serves this controller: the worker keeps trying, which is all
    // this test needs of it.
    let fleet = Ec2Fleet::new(&moto.sdk_config(), "prod", "http://127.0.0.1:9", settings())
        .with_batch_window(FAST);
    let mut inst = record("w0sim");
    inst.provider_ref = fleet.launch(&inst).await.expect("launch");
    // Another cluster's instance gets no worker from this simulator.
    Ec2Fleet::new(&moto.sdk_config(), "other", CONTROLLER, settings())
        .with_batch_window(FAST)
        .launch(&record("w0other"))
        .await
        .expect("launch in other");

    let pid = common::wait_for(Duration::from_secs(10), "the simulated worker", || {
        sim.pid("w0sim")
    });
    let args = common::cmdline(pid);
    assert_eq!(args.get(1).map(String::as_str), Some("worker"), "{args:?}");
    assert!(
        args.windows(2).any(|w| w == ["--instance-id", "w0sim"]),
        "{args:?}"
    );
    assert!(args.windows(2).any(|w| w == ["--slots", "3"]), "{args:?}");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v.starts_with(b"DROVER_WORKER_TOKEN=")),
        "the worker has no token in its environment"
    );
    assert_eq!(sim.instance_ids(), ["w0sim"], "{:?}", sim.last_error());

    fleet.terminate(&inst).await.expect("terminate");
    common::wait_for(Duration::from_secs(10), "the worker to stop", || {
        (!common::is_alive(pid)).then_some(())
    });
    assert!(sim.instance_ids().is_empty());
}
