//! Two controllers on one store: a leader lease decides which one reconciles,
//! both serve the API, and when the leader is killed the other takes over.
//! Real processes: two `drover controller`s sharing a SQLite file and a blob
//! folder, each with its own data folder, and the workers they start.

mod common;

use common::{tally::succeeded_attempts, wait_for, Controller, TestDir};
use drover::store::{sqlite::SqliteStore, Store, StoreError};
use reconcilers::model::{Job, JobId, JobState, Timestamp};
use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// The lease of these tests: short, so that a takeover is quick to see.
const LEASE: Duration = Duration::from_secs(2);

/// Each attempt writes its number and runs for two seconds.
const TWO_SECONDS: &str = r#"[
  Executable = "/bin/sh";
  Arguments = "-c 'echo attempt $DROVER_ATTEMPT > out.txt; sleep 2'";
  OutputSandbox = {"out.txt"};
]
"#;

/// A test folder whose drover.toml puts the state and the blobs in `shared/`.
fn shared_cluster() -> (TestDir, PathBuf) {
    let dir = TestDir::new();
    let shared = dir.join("shared");
    fs::create_dir_all(&shared).expect("shared folder");
    dir.write(
        "drover.toml",
        &format!(
            "state = \"sqlite://{shared}/state.db\"\n\
             blobs = \"file://{shared}/blobs\"\n\
             [leader]\nlease = \"{lease}ms\"\n\
             [fleet]\nmax_workers = 2\nslots_per_worker = 3\n",
            shared = shared.display(),
            lease = LEASE.as_millis()
        ),
    );
    (dir, shared.join("state.db"))
}

/// Starts a controller on data folder `name`, with the credentials of `first`
/// (controllers of one cluster share its submit token and worker secret).
/// The first controller, `a`, once it leads.
fn start_leader(dir: &TestDir, args: &[&str]) -> Controller {
    let a = Controller::start_with(dir, "a", args);
    wait_for(Duration::from_secs(10), "a to lead", || {
        leads(&a).then_some(())
    });
    a
}

fn start_second(dir: &TestDir, name: &str, first: &Controller) -> Controller {
    let data = dir.join(name);
    fs::create_dir_all(&data).expect("data folder");
    for file in ["submit.token", "secret"] {
        if let Ok(text) = fs::read(first.data_dir.join(file)) {
            fs::write(data.join(file), text).expect("copying a credential");
        }
    }
    Controller::start_with(dir, name, &[])
}

fn leads(c: &Controller) -> bool {
    c.metric("drover_leader") == 1.0
}

/// Submits `n` copies of `file`, to `a` and `b` in turn: a follower takes
/// submissions as well as the leader.
fn submit_to_both(a: &Controller, b: &Controller, file: &Path, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                a.submit(file)
            } else {
                b.submit(file)
            }
        })
        .collect()
}

/// Lines of the worker logs under `data` that say they failed over.
fn failovers(data: &Path) -> usize {
    common::files_under(&data.join("workers"))
        .iter()
        .filter(|p| p.ends_with("worker.log"))
        .map(|p| {
            fs::read_to_string(p)
                .unwrap_or_default()
                .matches("failing over")
                .count()
        })
        .sum()
}

#[test]
fn when_the_leader_is_killed_the_other_controller_takes_over_and_every_job_succeeds_once() {
    let (dir, state) = shared_cluster();
    let a = start_leader(&dir, &[]);
    let b = start_second(&dir, "b", &a);
    // b must see a's lease and stay a follower; it serves the API all the same.
    std::thread::sleep(LEASE);
    assert!(leads(&a) && !leads(&b), "exactly one leader: a");
    assert!(a.log_text().contains("this controller leads"));
    assert!(!b.log_text().contains("this controller leads"));

    let file = dir.write("job.jdl", TWO_SECONDS);
    let ids = submit_to_both(&a, &b, &file, 12);
    // Kill the leader while jobs run on the workers it started.
    for id in ids.iter().take(2) {
        b.wait_job(id, Duration::from_secs(30), "running", |j| {
            j["state"] == "running"
        });
    }
    let workers_before = common::worker_processes(&state);
    assert!(!workers_before.is_empty(), "a started workers");
    let mut a = a;
    a.kill9();
    let killed = Instant::now();
    wait_for(Duration::from_secs(20), "b to take the lease over", || {
        leads(&b).then_some(())
    });
    let takeover = killed.elapsed();

    for id in &ids {
        let job = b.wait_done(id, Duration::from_secs(60));
        assert_eq!(job["state"], "succeeded", "{job:#}");
        assert_eq!(succeeded_attempts(&job), 1, "one recorded result: {job:#}");
    }
    let attempts: usize = ids
        .iter()
        .map(|id| b.job(id)["attempts"].as_array().map_or(0, Vec::len))
        .sum();
    let survivors = workers_before
        .iter()
        .filter(|(pid, _)| common::is_alive(*pid))
        .count();
    let failed_over = failovers(&dir.join("a"));

    // b is the last controller: stopping it stops every worker of the cluster.
    let mut b = b;
    b.stop(Duration::from_secs(30));
    let left = wait_for(Duration::from_secs(15), "no worker left", || {
        let left = common::worker_processes(&state);
        left.is_empty().then_some(left)
    });
    println!(
        "two controllers: lease {LEASE:?}; {} jobs, 1 leader killed (kill -9) with jobs running; \
         takeover after {:.2}s; {} attempts in all ({} requeued); {} of {} workers of the killed \
         leader carried on ({} fail-overs to the survivor); lost 0, duplicated 0, leaked {}",
        ids.len(),
        takeover.as_secs_f64(),
        attempts,
        attempts - ids.len(),
        survivors,
        workers_before.len(),
        failed_over,
        left.len()
    );
}

#[test]
fn a_leader_stopped_gracefully_hands_the_lease_over_at_once_and_leaves_the_workers_running() {
    let (dir, state) = shared_cluster();
    let mut a = start_leader(&dir, &["--min-workers", "1"]);
    let b = start_second(&dir, "b", &a);
    let workers = wait_for(Duration::from_secs(15), "a worker", || {
        let w = common::worker_processes(&state);
        (!w.is_empty()).then_some(w)
    });
    // Wait until both controllers are announced, so a knows it is not the last.
    std::thread::sleep(LEASE);
    let stopping = Instant::now();
    a.stop(Duration::from_secs(30));
    wait_for(Duration::from_secs(10), "b to lead", || {
        leads(&b).then_some(())
    });
    let handover = stopping.elapsed();
    assert!(a_log_says(&a, "handing the leader lease over"));
    assert!(
        workers.iter().all(|(pid, _)| common::is_alive(*pid)),
        "the workers belong to the cluster: they outlive a controller that is not the last"
    );
    let file = dir.write("job.jdl", TWO_SECONDS);
    let id = b.submit(&file);
    let job = b.wait_done(&id, Duration::from_secs(30));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    println!(
        "graceful hand-over: b led {:.2}s after a was asked to stop (lease {LEASE:?})",
        handover.as_secs_f64()
    );
}

fn a_log_says(c: &Controller, what: &str) -> bool {
    c.log_text().contains(what)
}

/// Two stores on one SQLite file, as two controllers open it. The leader's
/// writes go through its fenced view; once another controller has taken the
/// lease, the deposed leader's decisions are refused and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_job_write_is_refused_by_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("state.db");
    let a = SqliteStore::open(&file).expect("open");
    let b = SqliteStore::open(&file).expect("open again");
    let mut job = Job::new(JobId::new("j-1"), Timestamp(1));
    job.state = JobState::Queued;
    a.create_job(&job).await.expect("create");

    let lease_a = a
        .acquire_lease("a", "http://a", Timestamp(0), 1_000)
        .await
        .unwrap();
    assert_eq!((lease_a.holder.as_str(), lease_a.token), ("a", 1));
    let a_writes = a.fenced(lease_a.fence());
    // a pauses (a long GC, a frozen VM) past its lease; b takes over.
    let lease_b = b
        .acquire_lease("b", "http://b", Timestamp(1_000), 1_000)
        .await
        .unwrap();
    assert_eq!((lease_b.holder.as_str(), lease_b.token), ("b", 2));
    // a wakes up and acts on what it decided before: refused.
    let mut cancelled = job.clone();
    cancelled.state = JobState::Cancelled;
    let refused = a_writes.update_jobs(&[cancelled.clone()]).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { token: 1 })),
        "{refused:?}"
    );
    let stored = b.get_job(&job.id).await.unwrap().expect("the job");
    assert_eq!((stored.state, stored.version), (JobState::Queued, 0));
    // The new leader's write lands.
    let b_writes = b.fenced(lease_b.fence());
    assert_eq!(b_writes.update_job(&cancelled).await.unwrap(), 1);
}

/// The same on AWS (moto): two controllers share the DynamoDB tables, the S3
/// bucket and the EC2 cluster tag; the fleet simulator runs a real worker for
/// each instance moto shows running.
#[cfg(feature = "aws")]
mod on_aws {
    use super::*;
    use common::{
        aws::{self, Settings},
        fleet_sim::FleetSim,
        moto::Moto,
    };

    const CLUSTER: &str = "leader";
    /// Longer than on SQLite: a renewal is four calls to moto, which take a
    /// second or more each on a busy machine.
    const AWS_LEASE: Duration = Duration::from_secs(8);

    /// A config file per controller: the same cluster, each its own port.
    fn config(dir: &TestDir, settings: &Settings, name: &str, port: u16) -> PathBuf {
        let text = Settings {
            port,
            ..settings.clone()
        }
        .toml();
        let text = text.replacen(
            "[aws]",
            &format!("[leader]\nlease = \"{}ms\"\n\n[aws]", AWS_LEASE.as_millis()),
            1,
        );
        dir.write(&format!("{name}.toml"), &text)
    }

    fn start(dir: &TestDir, moto: &Moto, config: &Path, data: &str) -> Controller {
        let config = config.to_str().expect("utf-8 path");
        Controller::spawn(dir, data, &["--config", config], &moto.env())
    }

    #[test]
    fn on_dynamodb_the_leader_killed_with_jobs_running_is_replaced_and_every_job_succeeds_once() {
        let moto = Moto::start();
        let dir = TestDir::new();
        let settings = Settings::new(CLUSTER, &moto);
        let config_a = config(&dir, &settings, "a", settings.port);
        let config_b = config(&dir, &settings, "b", aws::free_port());
        aws::init(&dir, &moto, &config_a);
        let mut a = start(&dir, &moto, &config_a, "a");
        wait_for(Duration::from_secs(15), "a to lead", || {
            leads(&a).then_some(())
        });
        for file in ["submit.token", "secret"] {
            if let Ok(text) = fs::read(a.data_dir.join(file)) {
                fs::create_dir_all(dir.join("b")).expect("b's folder");
                fs::write(dir.join("b").join(file), text).expect("copying a credential");
            }
        }
        let b = start(&dir, &moto, &config_b, "b");
        std::thread::sleep(AWS_LEASE / 2);
        assert!(
            leads(&a) && !leads(&b),
            "exactly one leader: a\na:\n{}\nb:\n{}",
            a.log_tail(),
            b.log_tail()
        );
        let _sim = FleetSim::in_test_dir(&moto.url, CLUSTER, &dir);

        let file = dir.write("job.jdl", TWO_SECONDS);
        let ids = submit_to_both(&a, &b, &file, 8);
        aws::wait_jobs(&b, &ids[..2], Duration::from_secs(60), "running", |j| {
            j["state"] == "running"
        });
        a.kill9();
        let killed = Instant::now();
        wait_for(Duration::from_secs(30), "b to take the lease over", || {
            leads(&b).then_some(())
        });
        let takeover = killed.elapsed();
        let jobs = aws::wait_jobs(
            &b,
            &ids,
            Duration::from_secs(120),
            "finished",
            aws::is_final,
        );
        let attempts: usize = jobs
            .iter()
            .map(|j| j["attempts"].as_array().map_or(0, Vec::len))
            .sum();
        for job in &jobs {
            assert_eq!(job["state"], "succeeded", "{job:#}");
            assert_eq!(succeeded_attempts(job), 1, "one recorded result: {job:#}");
        }
        let launched = aws::assert_each_launch_key_launched_once(&moto, CLUSTER);
        // Idle workers are scaled down by the survivor: nothing leaks.
        aws::wait_fleet_empty(&moto, CLUSTER, &b);
        println!(
            "two controllers on DynamoDB: lease {AWS_LEASE:?}; {} jobs, leader killed with jobs \
             running; takeover after {:.2}s; {attempts} attempts ({} requeued); {launched} \
             instances launched, 0 left running; lost 0, duplicated 0",
            ids.len(),
            takeover.as_secs_f64(),
            attempts - ids.len()
        );
    }
}

/// The milliseconds of the controllers' clock (the system's), for the store.
fn now_ms() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970");
    Timestamp(since.as_millis() as u64)
}

/// Waits for a worker of the cluster on `state`, and returns them.
fn wait_workers(state: &Path) -> Vec<(i32, String)> {
    wait_for(Duration::from_secs(15), "a worker", || {
        let w = common::worker_processes(state);
        (!w.is_empty()).then_some(w)
    })
}

fn wait_workers_gone(state: &Path, why: &str) {
    wait_for(Duration::from_secs(10), why, || {
        common::worker_processes(state).is_empty().then_some(())
    });
}

#[test]
fn two_controllers_stopped_together_stop_the_workers() {
    let (dir, state) = shared_cluster();
    let mut a = start_leader(&dir, &["--min-workers", "1"]);
    let mut b = start_second(&dir, "b", &a);
    wait_workers(&state);
    // Both announced: each knows of the other when the stop begins.
    std::thread::sleep(LEASE);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| a.stop(Duration::from_secs(30)));
        s.spawn(|| b.stop(Duration::from_secs(30)));
    });
    let took = started.elapsed();
    wait_workers_gone(&state, "the last controller to stop the workers");
    let last = [&a, &b]
        .iter()
        .filter(|c| a_log_says(c, "the last controller of the store"))
        .count();
    assert!(last >= 1, "one of them saw itself the last");
    println!("two controllers stopped together: both gone in {took:.2?}, 0 workers left");
}

#[test]
fn a_sole_controller_stops_its_workers_even_when_a_dead_controller_holds_the_lease() {
    let (dir, state) = shared_cluster();
    let mut a = start_leader(&dir, &["--min-workers", "1"]);
    wait_workers(&state);
    // A controller that took the lease and died at once: a is a follower now,
    // and the only controller alive.
    let store = SqliteStore::open(&state).expect("open the shared store");
    let ms = LEASE.as_millis() as u64;
    common::block_on(async {
        loop {
            let seen = store.acquire_lease("ghost", "http://127.0.0.1:9", now_ms(), ms);
            let seen = seen.await.expect("read the lease");
            if seen.holder == "ghost" {
                break;
            }
            store.release_lease(&seen.fence()).await.expect("release");
        }
    });
    let started = Instant::now();
    a.stop(Duration::from_secs(30));
    let took = started.elapsed();
    wait_workers_gone(&state, "a, the last controller, to stop the workers");
    assert!(a_log_says(&a, "the last controller of the store"));
    println!("the last controller, its lease held by a dead one: stopped the workers in {took:.2?} (lease {LEASE:?})");
}
