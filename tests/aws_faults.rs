//! drover on AWS when things go wrong, against moto: a controller killed with
//! SIGKILL and restarted (nothing launched twice, a leaked instance terminated,
//! every job finished), EC2 and DynamoDB answering with throttling errors for a
//! while (a fault proxy between the controller and moto), and forged SNS
//! deliveries (403, nothing changed).
//!
//! Each test runs a moto, a real `drover controller` with the AWS backends and
//! the fleet simulator's real workers, with second-scale timings.

#![cfg(feature = "aws")]

mod common;

use common::sns::{cert_pem, sign_v2, CERT_URL};

use common::{
    aws::{
        self, assert_each_launch_key_launched_once, assert_every_refusal_was_retried,
        assert_succeeded_once, instance_state, is_final, launch_leaked_instance, metric_sum,
        metrics_text, wait_fleet_empty, wait_jobs, wait_refused, Settings,
    },
    fault_proxy::{FaultProxy, Match},
    fleet_sim::FleetSim,
    moto::Moto,
    tally::lost_and_duplicated,
    wait_for, Controller, TestDir,
};
use serde_json::{json, Value};
use std::{
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

/// One test at a time: each runs moto, a controller and up to three workers on
/// second-scale timings, which a small machine running them all at once would
/// starve into false heartbeat timeouts.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A job that runs for `secs` seconds and leaves which attempt it was.
fn sleeper(dir: &TestDir, secs: u32) -> PathBuf {
    dir.write(
        &format!("sleep{secs}.jdl"),
        &format!(
            "[\n  Executable = \"/bin/sh\";\n  Arguments = \"-c 'sleep {secs}; echo attempt $DROVER_ATTEMPT > out.txt'\";\n  OutputSandbox = {{\"out.txt\"}};\n]\n"
        ),
    )
}

// ---------------------------------------------------------------------------
// A controller killed and restarted
// ---------------------------------------------------------------------------

#[test]
fn a_restarted_controller_launches_nothing_twice_terminates_leaked_instances_and_finishes_every_job(
) {
    let _serial = serial();
    let moto = Moto::start();
    let dir = TestDir::new();
    let mut s = Settings::new("restart", &moto);
    s.leak_grace = Some("3s".into());
    let config = s.write(&dir);
    aws::init(&dir, &moto, &config);

    let mut first = aws::start_controller(&dir, &config, &moto);
    let _sim = FleetSim::in_test_dir(&moto.url, &s.cluster, &dir);
    // Six jobs of four seconds on three workers of two slots: all run at once,
    // and they are still running when the controller dies.
    let started = Instant::now();
    let jdl = sleeper(&dir, 4);
    let ids: Vec<String> = (0..6).map(|_| first.submit(&jdl)).collect();
    wait_jobs(&first, &ids, Duration::from_secs(60), "started", |j| {
        j["state"] == "running" || is_final(j)
    });
    let launched = first.metric("drover_instances_launched_total");
    assert_eq!(launched, 3.0, "6 jobs / 2 slots: 3 instances");

    first.kill9();
    let killed = Instant::now();
    let leaked = launch_leaked_instance(&moto, &s.cluster);
    let leaked_at = Instant::now();
    let second = aws::start_controller(&dir, &config, &moto);
    let down = killed.elapsed();
    assert!(
        down < Duration::from_secs(3),
        "the restart took {down:?}, as long as the heartbeat timeout: the workers \
         would rightly be lost, and this test could not tell a bug from that"
    );

    // The workers kept running their jobs and pinging the address they were
    // given, which the new controller listens on again: it adopts them. Its
    // outage was shorter than the heartbeat timeout (3s), so no worker is lost
    // and nothing runs twice.
    let jobs = wait_jobs(&second, &ids, Duration::from_secs(60), "finished", is_final);
    let finished = killed.elapsed() - down;
    for job in &jobs {
        assert_succeeded_once(job, &second);
    }
    assert_eq!(second.metric("drover_workers_lost_total"), 0.0);

    // The leaked instance goes once its grace (3s from its launch) is over.
    let gone = wait_for(
        Duration::from_secs(20),
        "the leaked instance to be terminated",
        || {
            let state = instance_state(&moto, &s.cluster, &leaked);
            matches!(state.as_str(), "shutting-down" | "terminated" | "gone")
                .then(|| leaked_at.elapsed())
        },
    );
    // EC2 (and moto) report launch times to the second: the grace may end up
    // to a second early.
    assert!(
        gone >= Duration::from_secs(2),
        "the leaked instance was terminated {gone:?} after its launch, before its grace"
    );
    assert_eq!(
        second.metric("drover_instances_terminated_total{reason=\"leaked\"}"),
        1.0,
        "{}",
        second.log_tail()
    );

    // Nothing was launched again: the restarted controller found the three
    // instances of its predecessor in DynamoDB and in EC2.
    assert_eq!(second.metric("drover_instances_launched_total"), 0.0);
    let keys = assert_each_launch_key_launched_once(&moto, &s.cluster);
    assert_eq!(keys as f64, launched);

    wait_fleet_empty(&moto, &s.cluster, &second);
    assert_eq!(
        second.metric("drover_instances_terminated_total{reason=\"idle\"}"),
        launched
    );
    let (lost, duplicated) = lost_and_duplicated(&jobs);
    println!(
        "FIGURES fault=controller_killed test=moto jobs={} lost={lost} duplicated={duplicated} \
         leaked_instances={} kills=1 planted_leak_terminated_after_ms={} outage_ms={} \
         restart_to_all_finished_ms={} run_s={:.1}",
        jobs.len(),
        aws::running_instances(&moto, &s.cluster),
        gone.as_millis(),
        down.as_millis(),
        finished.as_millis(),
        started.elapsed().as_secs_f64(),
    );
}

// ---------------------------------------------------------------------------
// Throttling
// ---------------------------------------------------------------------------

/// A controller whose AWS calls all go through a fault proxy in front of moto
/// (the fleet simulator and the test look at moto directly).
struct Throttled {
    moto: Moto,
    proxy: FaultProxy,
    settings: Settings,
    dir: TestDir,
    config: PathBuf,
}

fn behind_a_proxy(cluster: &str) -> Throttled {
    behind_a_proxy_with(cluster, |_| {})
}

/// As `behind_a_proxy`, with some settings changed.
fn behind_a_proxy_with(cluster: &str, change: impl FnOnce(&mut Settings)) -> Throttled {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url);
    let dir = TestDir::new();
    let mut settings = Settings::new(cluster, &moto);
    settings.endpoint_url = proxy.url.clone();
    change(&mut settings);
    let config = settings.write(&dir);
    aws::init(&dir, &moto, &config);
    Throttled {
        moto,
        proxy,
        settings,
        dir,
        config,
    }
}

#[test]
fn ec2_throttling_is_waited_out_and_every_job_finishes() {
    let _serial = serial();
    let t = behind_a_proxy("ec2throttle");
    let cluster = t.settings.cluster.as_str();
    // The controller meets a throttled EC2 from its first call on: its first
    // four EC2 calls, and the first three launches, are refused.
    t.proxy.refuse_next(4, Match::AnyEc2);
    t.proxy
        .refuse_next(3, Match::Ec2Action("RunInstances".into()));
    let ctl = aws::start_controller(&t.dir, &t.config, &t.moto);
    let _sim = FleetSim::in_test_dir(&t.moto.url, cluster, &t.dir);
    let jdl = sleeper(&t.dir, 2);
    let ids: Vec<String> = (0..6).map(|_| ctl.submit(&jdl)).collect();
    wait_jobs(&ctl, &ids, Duration::from_secs(60), "started", |j| {
        j["state"] == "running" || is_final(j)
    });
    // Another burst while the jobs run: the fleet loop's DescribeInstances,
    // and whatever else comes, are refused four times more.
    let before = t.proxy.count(&Match::AnyEc2).1;
    t.proxy.refuse_next(4, Match::AnyEc2);
    wait_refused(&t.proxy, &Match::AnyEc2, before + 4, &ctl);

    for job in wait_jobs(&ctl, &ids, Duration::from_secs(60), "finished", is_final) {
        assert_succeeded_once(&job, &ctl);
    }
    wait_fleet_empty(&t.moto, cluster, &ctl);

    let (passed, refused) = t.proxy.count(&Match::AnyEc2);
    assert_eq!(refused, 4 + 3 + 4, "every injected refusal was met");
    // Every refused call went through when tried again (the fleet makes few
    // EC2 calls: no more than were refused, in a short run).
    assert!(passed >= 3, "{passed} EC2 calls went through");
    assert_every_refusal_was_retried(&t.proxy.seen());
    // Each refused RunInstances was sent again with the same ClientToken and
    // launch key: three instances launched, three RunInstances through, no
    // launch key on two instances.
    let launched = ctl.metric("drover_instances_launched_total");
    assert_eq!(launched, 3.0);
    let run = t.proxy.count(&Match::Ec2Action("RunInstances".into()));
    assert_eq!(run, (3, 3), "(passed, refused) RunInstances");
    assert_eq!(assert_each_launch_key_launched_once(&t.moto, cluster), 3);
    assert_eq!(
        ctl.metric("drover_instances_terminated_total{reason=\"idle\"}"),
        launched
    );
    let log = ctl.log_text();
    assert!(
        log.contains("EC2 call failed; retrying") && log.contains("RequestLimitExceeded"),
        "the controller did not say it waited out the throttling:\n{}",
        ctl.log_tail()
    );
}

#[test]
fn dynamodb_throttling_is_waited_out_and_every_job_finishes() {
    let _serial = serial();
    let t = behind_a_proxy("ddbthrottle");
    let cluster = t.settings.cluster.as_str();
    let ctl = aws::start_controller(&t.dir, &t.config, &t.moto);
    let _sim = FleetSim::in_test_dir(&t.moto.url, cluster, &t.dir);
    let jdl = sleeper(&t.dir, 2);
    let ids: Vec<String> = (0..6).map(|_| ctl.submit(&jdl)).collect();
    wait_jobs(&ctl, &ids, Duration::from_secs(60), "started", |j| {
        j["state"] != "queued"
    });

    // A short burst on every DynamoDB call (the loops', the API's, the
    // heartbeats'): the SDK's own retries (8 tries) absorb it.
    let any = Match::AnyDynamoDb;
    t.proxy.refuse_next(12, any.clone());
    wait_refused(&t.proxy, &any, 12, &ctl);

    // A longer one on the Scans (the reconcile loops' workers and instances,
    // the lease loop's list of controllers): each caller waits it out with the
    // SDK's retries, or fails and its loop backs off before it tries again.
    let scans = Match::DynamoDbOperation("Scan".into());
    let scans_before = t.proxy.count(&scans).1;
    t.proxy.refuse_next(20, scans.clone());
    wait_refused(&t.proxy, &scans, scans_before + 20, &ctl);

    for job in wait_jobs(&ctl, &ids, Duration::from_secs(60), "finished", is_final) {
        assert_succeeded_once(&job, &ctl);
    }
    // The heartbeats received while their writes were throttled were written
    // late, but before any loop judged the workers by them.
    assert_eq!(
        ctl.metric("drover_workers_lost_total"),
        0.0,
        "a worker was declared lost while the store was throttled:\n{}",
        ctl.log_tail()
    );
    wait_fleet_empty(&t.moto, cluster, &ctl);

    let (passed, refused) = t.proxy.count(&any);
    assert_eq!(refused, 12 + 20, "every injected refusal was met");
    assert!(passed > refused, "{passed} DynamoDB calls went through");
    assert_every_refusal_was_retried(&t.proxy.seen());
    // Which caller meets the refused Scans (a reconcile loop, the lease loop),
    // and whether one of them meets all 8 of its tries, depends on how their
    // Scans interleave; what does not is that the controller saw each refusal
    // as throttling (it is what its retries and the AwsThrottled alert go by).
    let metrics = metrics_text(&ctl);
    let throttled_scans: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("drover_aws_calls_total{"))
        .filter(|l| l.contains("operation=\"Scan\"") && l.contains("outcome=\"throttled\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum();
    assert!(
        throttled_scans >= 20.0,
        "the controller counted {throttled_scans} throttled Scans, the proxy refused 20:\n{metrics}"
    );
}

/// Throttling that hits only the heartbeat writes (the workers' table, say)
/// for longer than the heartbeat timeout: the workers ping all along and the
/// controller takes every ping, so none of them missed its heartbeats and none
/// may be declared lost (DESIGN.md: "a worker that misses its heartbeats for
/// the configured timeout is lost"). Their jobs run once.
#[test]
fn workers_whose_pings_arrive_while_heartbeat_writes_are_throttled_are_not_declared_lost() {
    let _serial = serial();
    // Workers idle once their jobs are done must not be scaled down while the
    // refusals last: a terminated worker stops pinging, and is counted lost.
    let t = behind_a_proxy_with("hbthrottle", |s| s.idle_timeout = "120s".into());
    let cluster = t.settings.cluster.as_str();
    let ctl = aws::start_controller(&t.dir, &t.config, &t.moto);
    let _sim = FleetSim::in_test_dir(&t.moto.url, cluster, &t.dir);
    let jdl = sleeper(&t.dir, 8);
    let ids: Vec<String> = (0..6).map(|_| ctl.submit(&jdl)).collect();
    wait_jobs(&ctl, &ids, Duration::from_secs(60), "running", |j| {
        j["state"] == "running"
    });
    // Five rounds of the SDK's 8 tries: the heartbeat writes fail for seconds.
    // BatchWriteItem also deletes superseded beats (a failure there only
    // warns), and how many refusals those take depends on how the loops'
    // ticks fall: five rounds leave at least one whole round to a write.
    let writes = Match::DynamoDbOperation("BatchWriteItem".into());
    let before = t.proxy.count(&writes).1;
    t.proxy.refuse_next(40, writes.clone());
    wait_for(
        Duration::from_secs(120),
        "the proxy to refuse 40 BatchWriteItem",
        || (t.proxy.count(&writes).1 >= before + 40).then_some(()),
    );

    let jobs = wait_jobs(&ctl, &ids, Duration::from_secs(90), "finished", is_final);
    let metrics = metrics_text(&ctl);
    assert!(
        metric_sum(
            &metrics,
            "drover_reconcile_runs_total",
            "reconciler=\"heartbeats\",result=\"error\""
        ) >= 1.0,
        "the heartbeat writes never failed for good: the test proves nothing"
    );
    // The heartbeat writes are batched: the next one may be a tick away.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !t.proxy.every_refusal_retried() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_every_refusal_was_retried(&t.proxy.seen());
    assert_eq!(
        ctl.metric("drover_workers_lost_total"),
        0.0,
        "workers that pinged all along were declared lost:\n{}",
        ctl.log_tail()
    );
    for job in jobs {
        assert_succeeded_once(&job, &ctl);
    }
}

// ---------------------------------------------------------------------------
// Forged SNS deliveries
// ---------------------------------------------------------------------------

/// A Notification as SNS delivers it, signed (v2), dated `at`.
fn notification(topic: &str, subject: &str, message: &Value, at: SystemTime) -> Value {
    let mut m = json!({
        "Type": "Notification",
        "MessageId": "0b7c5a0e-6d0a-4c53-8a1e-3f1f2c9d4e11",
        "TopicArn": topic,
        "Subject": subject,
        "Message": message.to_string(),
        "Timestamp": humantime::format_rfc3339_millis(at).to_string(),
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    });
    sign_v2(&mut m);
    m
}

/// The loopback "SNS host" the controller's `cert_base_url` points at: it
/// serves the test certificate, passes every other path on to moto (whose own
/// deliveries are signed with moto's certificate) and notes what was asked.
struct CertHost {
    url: String,
    asked: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone)]
struct CertHostState {
    pem: String,
    moto: String,
    asked: Arc<Mutex<Vec<String>>>,
}

async fn cert_host_answer(
    axum::extract::State(s): axum::extract::State<CertHostState>,
    uri: axum::http::Uri,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let path = uri.path().to_string();
    s.asked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(path.clone());
    if path == "/SimpleNotificationService-test.pem" {
        return (StatusCode::OK, s.pem.clone());
    }
    // moto serves its certificate only to requests it takes for SNS calls.
    let auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sns/aws4_request, \
                SignedHeaders=host, Signature=0";
    let relayed = reqwest::Client::new()
        .get(format!("{}{path}", s.moto))
        .header("Authorization", auth)
        .send()
        .await;
    match relayed {
        Ok(r) => (
            StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
            r.text().await.unwrap_or_default(),
        ),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

impl CertHost {
    fn start(moto_url: &str) -> CertHost {
        let asked: Arc<Mutex<Vec<String>>> = Arc::default();
        let state = CertHostState {
            pem: cert_pem((2020, 1, 1), (2999, 1, 1)),
            moto: moto_url.to_string(),
            asked: asked.clone(),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the cert host");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new()
                    .fallback(cert_host_answer)
                    .with_state(state);
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stopped => {}
                }
            });
        });
        CertHost {
            url,
            asked,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for CertHost {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `POST <controller>/sns` of a body as SNS sends it; the status and the text.
fn post_sns(ctl: &Controller, body: &Value) -> (u16, String) {
    common::block_on(common::sns::post_sns(&ctl.url, body))
}

/// What a forged hint could change: the jobs, the job gauges, the messages
/// taken, the launches.
fn observable_state(ctl: &Controller) -> (Vec<Value>, Vec<String>) {
    let metrics: Vec<String> = metrics_text(ctl)
        .lines()
        .filter(|l| {
            // `drover_jobs{`: the job counts by state, not the age gauges
            // (`drover_jobs_oldest_age_seconds`), which move with the clock.
            [
                "drover_jobs{",
                "drover_messages_received_total",
                "drover_instances_",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(str::to_string)
        .collect();
    (ctl.jobs(), metrics)
}

#[test]
fn a_forged_sns_message_gets_403_and_changes_nothing() {
    let _serial = serial();
    let moto = Moto::start();
    let certs = CertHost::start(&moto.url);
    let dir = TestDir::new();
    let mut s = Settings::new("forged", &moto);
    s.cert_base_url = certs.url.clone();
    // No worker may ever start: the job submitted below stays queued, so any
    // change would be the forgeries' doing.
    s.max_workers = 0;
    let config = s.write(&dir);
    aws::init(&dir, &moto, &config);
    let ctl = aws::start_controller(&dir, &config, &moto);

    let id = ctl.submit(&sleeper(&dir, 1));
    wait_for(
        Duration::from_secs(10),
        "the job to be counted as queued",
        || (ctl.metric("drover_jobs{state=\"queued\"}") == 1.0).then_some(()),
    );
    let before = observable_state(&ctl);
    let topic = s.topic_arn();
    let us = s.public_url();
    let cancel = json!({"type": "cancel", "job": id});
    let now = SystemTime::now;

    // (a) Signed, then changed: the signature no longer verifies.
    let mut tampered = notification(
        &topic,
        &us,
        &json!({"type": "job_submitted", "job": id}),
        now(),
    );
    tampered["Message"] = json!(cancel.to_string());
    // (b) Correctly signed, with a certificate on a look-alike host.
    let mut wrong_host = notification(&topic, &us, &cancel, now());
    wrong_host["SigningCertURL"] = json!("https://sns.us-east-1.amazonaws.com.evil.example/x.pem");
    sign_v2(&mut wrong_host);
    // (c) Correctly signed, from a topic the controller does not listen to.
    let other = format!("arn:aws:sns:us-east-1:{}:someone-else", aws::ACCOUNT);
    let unknown_topic = notification(&other, &us, &cancel, now());
    // (d) Correctly signed two hours ago: a replay.
    let replay = notification(&topic, &us, &cancel, now() - Duration::from_secs(2 * 3600));

    for (forged, reason) in [
        (&tampered, "signature does not verify".to_string()),
        (
            &wrong_host,
            "SigningCertURL host `sns.us-east-1.amazonaws.com.evil.example` is not sns.us-east-1.amazonaws.com".to_string(),
        ),
        (&unknown_topic, format!("unknown TopicArn {other}")),
        (&replay, "message is 2h old: refused as a replay".to_string()),
    ] {
        let (status, text) = post_sns(&ctl, forged);
        assert_eq!(status, 403, "expected a refusal ({reason}), got: {text}");
        assert!(text.contains(&reason), "the refusal says `{text}`, not `{reason}`");
    }
    assert!(
        !certs.asked().iter().any(|p| p == "/x.pem"),
        "the look-alike host's certificate was fetched: {:?}",
        certs.asked()
    );

    // A few reconcile ticks later, nothing changed: the job is still queued at
    // the same version, no message was taken, nothing was launched.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(observable_state(&ctl), before);
    assert_eq!(ctl.job(&id)["state"], "queued");
    assert!(aws::instances(&moto, &s.cluster, &[]).is_empty());

    // The same hint, genuinely signed, is taken: the refusals above were the
    // forgeries', not a receiver that takes nothing.
    let genuine = notification(
        &topic,
        &us,
        &json!({"type": "job_submitted", "job": id}),
        now(),
    );
    let (status, text) = post_sns(&ctl, &genuine);
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        ctl.metric("drover_messages_received_total{kind=\"job_submitted\"}"),
        metric_sum(
            &before.1.join("\n"),
            "drover_messages_received_total",
            "kind=\"job_submitted\""
        ) + 1.0
    );
}
