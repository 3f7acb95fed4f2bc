//! AWS calls per job, counted against moto: a controller with the full AWS
//! stack (DynamoDB state, S3 blobs, an EC2 fleet run by the fleet simulator,
//! SNS hints) runs rounds of jobs, and the controller's own counter
//! `drover_aws_calls_total{service,operation,outcome}` tells how many calls
//! each job cost, by service and operation, once the calls its periodic loops
//! make anyway (the idle background) are taken out.
//!
//! The controller runs with drover's default timings (reconcile every 2 s,
//! pings every 5 s, heartbeat timeout 15 s), so the figures are those of a
//! cluster as shipped, and a fixed fleet of three instances (min = max), up
//! before the first job.
//!
//! How the background is taken out: with the fleet up and no job, the counters
//! are read over a quiet window ([`IDLE`]), which gives each operation's idle
//! rate; a round's calls are its counters' growth minus that rate times the
//! round's length. During a round the loops also tick on hints (each job that
//! ends wakes them, coalesced): those ticks are the jobs' doing and stay in
//! their count (the rounds' `ticks` say how many there were). The test reads
//! only `/metrics` while a round runs (no job API, which reads the store), so
//! its own polling costs no AWS call.
//!
//! Not counted: the CLI's PUT of each input archive to its presigned S3 URL
//! (one per job, sent by `drover submit`, not by the controller), and the fleet
//! simulator's DescribeInstances (a test harness, not drover).
//!
//! Prints one line `FIGURES aws_calls_per_job {json}` (read by `bench/run.py
//! --only aws`) and checks upper bounds with headroom (2-3x what was measured),
//! so that a per-job Scan, or a read per job per tick, fails it. Call counts do
//! not depend on the build's optimisation: a debug build measures the same.

#![cfg(feature = "aws")]

mod common;

use common::{
    aws::{self, metric_sum, metrics_text, Settings},
    fleet_sim::FleetSim,
    moto::Moto,
    wait_for, Controller, TestDir,
};
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    ffi::OsStr,
    path::Path,
    time::{Duration, Instant},
};

const CLUSTER: &str = "calls";
/// Jobs a round. The idle rate is known to within one periodic tick of each
/// loop over [`IDLE`] (some 35 calls), which over a round of 100 jobs is about
/// +-0.4 calls a job.
const JOBS: usize = 100;
/// Instances (and workers): the fleet stays at this size the whole test.
const WORKERS: u32 = 3;
/// The quiet window the idle background is measured over.
const IDLE: Duration = Duration::from_secs(30);
/// Kept after a round's last job succeeded, so that what a job still causes
/// after it (its last report's writes, the scale-down decisions) is counted.
const TAIL: Duration = Duration::from_secs(2);

/// Each job reads its own small input and writes an output file.
fn sandbox_jdl() -> String {
    format!(
        r#"[
  JobType = "Parametric";
  Executable = "/bin/sh";
  Arguments = "-c 'cat in_PARAM_.txt > out.txt'";
  Parameters = {JOBS};
  InputSandbox = {{"in_PARAM_.txt"}};
  OutputSandbox = {{"out.txt"}};
]"#
    )
}

/// Bare commands: no input file, no output file.
fn bare_jdl() -> String {
    format!("[\n  JobType = \"Parametric\";\n  Executable = \"/bin/true\";\n  Parameters = {JOBS};\n]\n")
}

/// Upper bounds, 2-3x what was measured (debug build, 2 cores, moto 5, 100
/// jobs a round; the measured values in the comments, sandbox round). Calls
/// per job, by service:
const BOUNDS: &[(&str, f64)] = &[
    ("dynamodb", 60.0), // 20.5 to 21.7
    ("s3", 10.0),       // 5
    ("ec2", 1.0),       // 0.14 to 0.17
    ("sns", 0.5),       // 0.01
    ("total", 80.0),    // 25.7 to 26.8
];
/// Calls per job, by operation. The reads of the loops' ticks (Query, Scan,
/// DescribeInstances) grow with the ticks the jobs' hints cause, which depend
/// on how fast the store answers: their bound is the loose one, and the reads
/// a tick makes are bounded below on their own.
const OP_BOUNDS: &[(&str, f64)] = &[
    ("dynamodb:GetItem", 13.0),           // 6.2
    ("dynamodb:PutItem", 8.0),            // 4
    ("dynamodb:TransactWriteItems", 1.0), // 0.2
    ("dynamodb:Query", 30.0),             // 9.6 to 10.7
    ("dynamodb:Scan", 3.0),               // 0.5 to 0.6
    ("s3:PutObject", 6.0),                // 3
    ("s3:GetObject", 2.0),                // 1
    ("s3:HeadObject", 2.0),               // 1
];
/// Reads a tick of the jobs or fleet loop makes, over a round (every active
/// job's 16 index shards, the workers, the instances): a read per job per
/// tick would multiply them.
const TICK_BOUNDS: &[(&str, f64)] = &[
    ("dynamodb:Query", 60.0),       // 24.3
    ("dynamodb:Scan", 4.0),         // 1.6
    ("ec2:DescribeInstances", 2.0), // 0.45
];
/// Ticks of the jobs and fleet loops per job (0.58 to 0.68): hints are coalesced.
const TICKS_PER_JOB_BOUND: f64 = 3.0;
/// Idle calls per second over every service (21), with drover's default timings.
const IDLE_BOUND: f64 = 60.0;

/// Counter values by a key made of some of their labels (`a:b`), the other
/// labels summed.
type Counts = BTreeMap<String, f64>;

/// The value of `label="..."` in a series' label set.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

/// The samples of counter `name` summed by the values of `keys`, joined by `:`.
fn counts(text: &str, name: &str, keys: &[&str]) -> Counts {
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let key: Option<Vec<&str>> = keys.iter().map(|k| label(labels, k)).collect();
        if let (Some(key), Ok(v)) = (key, value.trim().parse::<f64>()) {
            *counts.entry(key.join(":")).or_default() += v;
        }
    }
    counts
}

/// What the controller had counted at one moment: its AWS calls by
/// `service:Operation`, and its reconcile ticks by loop.
struct Reading {
    calls: Counts,
    ticks: Counts,
    at: Instant,
}

impl Reading {
    fn now(ctl: &Controller) -> Reading {
        let text = metrics_text(ctl);
        Reading {
            calls: counts(&text, "drover_aws_calls_total", &["service", "operation"]),
            ticks: counts(&text, "drover_reconcile_runs_total", &["reconciler"]),
            at: Instant::now(),
        }
    }
}

/// What the counters did between two readings.
fn growth(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

fn scaled(counts: &Counts, by: f64) -> Counts {
    counts.iter().map(|(k, v)| (k.clone(), v * by)).collect()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Rounded; what rounds to zero left out.
fn rounded(counts: &Counts) -> Value {
    let map: serde_json::Map<String, Value> = counts
        .iter()
        .map(|(k, v)| (k.clone(), round2(*v)))
        .filter(|(_, v)| *v != 0.0)
        .map(|(k, v)| (k, json!(v)))
        .collect();
    Value::Object(map)
}

/// Calls by service (every one named, and `total`), from calls by operation.
fn by_service(calls: &Counts) -> Value {
    let mut services: Counts = ["dynamodb", "s3", "ec2", "sns"]
        .iter()
        .map(|s| (s.to_string(), 0.0))
        .collect();
    for (op, v) in calls {
        let service = op.split(':').next().unwrap_or(op);
        *services.entry(service.to_string()).or_default() += v;
    }
    let total = services.values().sum();
    services.insert("total".into(), total);
    let map: serde_json::Map<String, Value> = services
        .into_iter()
        .map(|(k, v)| (k, json!(round2(v))))
        .collect();
    Value::Object(map)
}

fn transitions_to(text: &str, to: &str) -> f64 {
    metric_sum(
        text,
        "drover_job_transitions_total",
        &format!("to=\"{to}\""),
    )
}

/// One round: `drover submit` of a parametric JDL, waited for on `/metrics`
/// alone; returns its figures.
fn round(ctl: &Controller, name: &str, jdl: &Path, idle_rate: &Counts) -> Value {
    let text = metrics_text(ctl);
    let (succeeded, failed) = (
        transitions_to(&text, "succeeded"),
        transitions_to(&text, "failed"),
    );
    let before = Reading::now(ctl);
    let run = ctl
        .drover([OsStr::new("submit"), jdl.as_os_str()])
        .expect_ok("drover submit");
    let ids: Vec<&str> = run.stdout.lines().map(str::trim).collect();
    assert_eq!(ids.len(), JOBS, "one id a job: {run:#?}");
    wait_for(
        Duration::from_secs(300),
        "every job of the round to succeed",
        || {
            let text = metrics_text(ctl);
            assert_eq!(
                transitions_to(&text, "failed"),
                failed,
                "a job failed:\n{}",
                ctl.log_tail()
            );
            (transitions_to(&text, "succeeded") >= succeeded + JOBS as f64).then_some(())
        },
    );
    std::thread::sleep(TAIL);
    let after = Reading::now(ctl);
    // Checked after the last reading: the job API reads the store.
    for id in &ids {
        aws::assert_succeeded_once(&ctl.job(id), ctl);
    }
    let secs = (after.at - before.at).as_secs_f64();
    let calls = growth(&before.calls, &after.calls);
    let ticks = growth(&before.ticks, &after.ticks);
    let loop_ticks =
        ticks.get("jobs").copied().unwrap_or(0.0) + ticks.get("fleet").copied().unwrap_or(0.0);
    let tick_reads: Counts = ["dynamodb:Query", "dynamodb:Scan", "ec2:DescribeInstances"]
        .iter()
        .map(|op| {
            (
                op.to_string(),
                calls.get(*op).copied().unwrap_or(0.0) / loop_ticks.max(1.0),
            )
        })
        .collect();
    let net = growth(&scaled(idle_rate, secs), &calls);
    let per_job = scaled(&net, 1.0 / JOBS as f64);
    json!({
        "round": name,
        "jobs": JOBS,
        "seconds": round2(secs),
        "ticks": rounded(&ticks),
        "loop_ticks_per_job": round2(loop_ticks / JOBS as f64),
        "reads_per_loop_tick": rounded(&tick_reads),
        "per_job": by_service(&per_job),
        "ops_per_job": rounded(&per_job),
    })
}

#[test]
fn aws_calls_per_job_stay_within_their_bounds() {
    let moto = Moto::start();
    let dir = TestDir::new();
    let mut settings = Settings::new(CLUSTER, &moto);
    settings.max_workers = WORKERS;
    // drover's defaults, rather than the short timings of the other tests.
    settings.reconcile_interval = "2s".into();
    settings.ping_interval = "5s".into();
    settings.heartbeat_timeout = "15s".into();
    // No scale-down while the test runs: the fleet is the same in the quiet
    // window and in the rounds.
    settings.idle_timeout = "1h".into();
    // The fleet comes up before any job, and stays (Settings has min_workers = 0).
    let toml = settings
        .toml()
        .replace("min_workers = 0", &format!("min_workers = {WORKERS}"));
    assert!(toml.contains(&format!("min_workers = {WORKERS}")));
    let config = dir.write("drover.toml", &toml);
    aws::init(&dir, &moto, &config);
    let ctl = aws::start_controller(&dir, &config, &moto);
    let sim = FleetSim::in_test_dir(&moto.url, CLUSTER, &dir);

    // The fleet up: every instance running and its worker registered.
    wait_for(Duration::from_secs(120), "the fleet to come up", || {
        let text = metrics_text(&ctl);
        let workers = metric_sum(&text, "drover_workers", "state=\"active\"");
        let running = metric_sum(&text, "drover_instances", "state=\"running\"");
        (workers == WORKERS as f64 && running == WORKERS as f64).then_some(())
    });
    assert_eq!(sim.instance_ids().len(), WORKERS as usize);
    // Let the launch's own calls (tags, first looks) end before the quiet window.
    std::thread::sleep(Duration::from_secs(3));

    let before = Reading::now(&ctl);
    std::thread::sleep(IDLE);
    let after = Reading::now(&ctl);
    let idle_secs = (after.at - before.at).as_secs_f64();
    let idle_rate = scaled(&growth(&before.calls, &after.calls), 1.0 / idle_secs);
    let idle_ticks = scaled(&growth(&before.ticks, &after.ticks), 1.0 / idle_secs);

    for p in 0..JOBS {
        dir.write(&format!("in{p}.txt"), &format!("input {p}\n"));
    }
    let rounds = vec![
        round(
            &ctl,
            "sandbox",
            &dir.write("sandbox.jdl", &sandbox_jdl()),
            &idle_rate,
        ),
        round(
            &ctl,
            "bare",
            &dir.write("bare.jdl", &bare_jdl()),
            &idle_rate,
        ),
    ];
    let figures = json!({
        "workers": WORKERS,
        "reconcile_interval": settings.reconcile_interval,
        "ping_interval": settings.ping_interval,
        "idle": {
            "seconds": round2(idle_secs),
            "per_s": by_service(&idle_rate),
            "ops_per_s": rounded(&idle_rate),
            "ticks_per_s": rounded(&idle_ticks),
        },
        "rounds": rounds,
    });
    println!("FIGURES aws_calls_per_job {figures}");

    // Nothing failed or was throttled on the way.
    let text = metrics_text(&ctl);
    for outcome in ["throttled", "server_error"] {
        let n = metric_sum(
            &text,
            "drover_aws_calls_total",
            &format!("outcome=\"{outcome}\""),
        );
        assert_eq!(n, 0.0, "{outcome} AWS calls:\n{text}");
    }

    let mut over = Vec::new();
    for r in figures["rounds"].as_array().expect("rounds") {
        for (key, bound) in BOUNDS {
            let v = r["per_job"][key].as_f64().unwrap_or(0.0);
            if v > *bound {
                over.push(format!("{}: {key} {v} per job > {bound}", r["round"]));
            }
        }
        for (key, bound) in OP_BOUNDS {
            let v = r["ops_per_job"][key].as_f64().unwrap_or(0.0);
            if v > *bound {
                over.push(format!("{}: {key} {v} per job > {bound}", r["round"]));
            }
        }
        for (key, bound) in TICK_BOUNDS {
            let v = r["reads_per_loop_tick"][key].as_f64().unwrap_or(0.0);
            if v > *bound {
                over.push(format!("{}: {key} {v} per loop tick > {bound}", r["round"]));
            }
        }
        let ticks = r["loop_ticks_per_job"].as_f64().unwrap_or(0.0);
        if ticks > TICKS_PER_JOB_BOUND {
            over.push(format!(
                "{}: {ticks} jobs and fleet ticks per job > {TICKS_PER_JOB_BOUND}",
                r["round"]
            ));
        }
    }
    let idle = figures["idle"]["per_s"]["total"].as_f64().unwrap_or(0.0);
    if idle > IDLE_BOUND {
        over.push(format!("idle: {idle} calls/s > {IDLE_BOUND}"));
    }
    assert!(
        over.is_empty(),
        "AWS calls over their bounds:\n{}\n{figures:#}",
        over.join("\n")
    );
}
