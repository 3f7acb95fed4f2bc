//! Tests of what is particular to the SQLite store (files, schema versions, two
//! processes on one file, the query plan). The behaviour every store shares is
//! tested once for both stores in tests/store_conformance.rs.

use super::*;
use proptest::prelude::*;
use reconcilers::model::JobSpec;
use std::time::Instant;

/// A store and, for a file store, the folder that must outlive it.
struct Fixture {
    kind: &'static str,
    store: SqliteStore,
    _dir: Option<tempfile::TempDir>,
}

fn file_store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("state/drover.db")).expect("open file store");
    (store, dir)
}

/// Each test runs on both kinds: the file exercises WAL and the on-disk schema.
fn stores() -> Vec<Fixture> {
    let (store, dir) = file_store();
    vec![
        Fixture {
            kind: "file",
            store,
            _dir: Some(dir),
        },
        Fixture {
            kind: "memory",
            store: SqliteStore::open_in_memory().expect("open memory store"),
            _dir: None,
        },
    ]
}

fn job(id: &str, state: JobState, created: u64) -> Job {
    let mut job = Job::new(JobId::new(id), Timestamp(created));
    job.state = state;
    job.spec = JobSpec {
        name: Some(format!("name of {id}")),
        retry_count: 2,
        shallow_retry_count: 3,
        max_wall_time_secs: Some(60),
        output_archive: "output.tar.gz".into(),
    };
    if state != JobState::Created {
        job.queued_at = Some(Timestamp(created + 1));
    }
    job
}

fn attempt(number: u32, worker: &str) -> Attempt {
    Attempt {
        number,
        worker: WorkerId::new(worker),
        assigned_at: Timestamp(1_000 + u64::from(number)),
        started_at: None,
        finished_at: None,
        exit_code: None,
        outcome: None,
        reason: None,
        has_output: false,
        empty_logs: Default::default(),
    }
}

fn on_worker(id: &str, state: JobState, created: u64, worker: &str) -> Job {
    let mut j = job(id, state, created);
    j.attempts.push(attempt(1, worker));
    j
}

fn worker(id: &str, last_ping: u64) -> Worker {
    Worker {
        id: WorkerId::new(id),
        instance: InstanceId::new(format!("i-{id}")),
        slots: 2,
        state: WorkerState::Active,
        registered_at: Timestamp(10),
        last_ping: Timestamp(last_ping),
        idle_since: Some(Timestamp(10)),
    }
}

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_sharing_the_file_cannot_both_win_the_same_version() {
    let (first, dir) = file_store();
    let second = SqliteStore::open(&dir.path().join("state/drover.db")).unwrap();
    let updates: Vec<Job> = (0..200)
        .map(|i| on_worker(&format!("j-{i}"), JobState::Queued, i, "w"))
        .collect();
    for u in &updates {
        first
            .create_job(&job(u.id.as_str(), JobState::Queued, 0))
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(first.update_jobs(&updates), second.update_jobs(&updates));
    let (a, b) = (a.unwrap(), b.unwrap());
    for (x, y) in a.iter().zip(&b) {
        assert!(
            x.is_ok() != y.is_ok(),
            "exactly one controller wins each job: {x:?} {y:?}"
        );
    }
    let stored = second.active_jobs().await.unwrap();
    assert!(stored
        .iter()
        .all(|j| j.version == 1 && j.attempts.len() == 1));
}

#[tokio::test]
async fn delete_abandoned_jobs_removes_only_old_created_jobs_and_their_attempts() {
    for f in stores() {
        let mut old = job("old", JobState::Created, 10);
        old.attempts.push(attempt(1, "w"));
        for j in [
            old,
            job("young", JobState::Created, 100),
            job("queued-old", JobState::Queued, 5),
        ] {
            f.store.create_job(&j).await.unwrap();
        }
        let deleted = f.store.delete_abandoned_jobs(Timestamp(50)).await.unwrap();
        assert_eq!(deleted, vec![JobId::new("old")], "{}", f.kind);
        assert_eq!(f.store.get_job(&JobId::new("old")).await.unwrap(), None);
        // A job created again under the same id starts with no stale attempts.
        f.store
            .create_job(&job("old", JobState::Created, 60))
            .await
            .unwrap();
        assert!(f
            .store
            .get_job(&JobId::new("old"))
            .await
            .unwrap()
            .unwrap()
            .attempts
            .is_empty());
        assert_eq!(
            ids(&f.store.list_jobs(&JobFilter::default()).await.unwrap()),
            ["young", "old", "queued-old"]
        );
    }
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let (store, dir) = file_store();
    let j = on_worker("j-1", JobState::Running, 7, "w-1");
    store.create_job(&j).await.unwrap();
    store.put_worker(&worker("w-1", 9)).await.unwrap();
    store
        .put_fleet_settings(&FleetSettings::default())
        .await
        .unwrap();
    drop(store);
    let reopened = SqliteStore::open(&dir.path().join("state/drover.db")).unwrap();
    assert_eq!(reopened.get_job(&j.id).await.unwrap(), Some(j));
    assert_eq!(
        reopened.list_workers().await.unwrap(),
        vec![worker("w-1", 9)]
    );
    assert_eq!(
        reopened.fleet_settings().await.unwrap(),
        Some(FleetSettings::default())
    );
}

#[tokio::test]
async fn an_unknown_state_in_the_file_is_a_backend_error_not_a_panic() {
    let store = SqliteStore::open_in_memory().unwrap();
    store
        .create_job(&job("j-1", JobState::Queued, 1))
        .await
        .unwrap();
    lock(&store.conn)
        .execute("UPDATE jobs SET state = 'exploded'", [])
        .unwrap();
    let err = store.get_job(&JobId::new("j-1")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("reading job j-1: unknown job state \"exploded\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_file_from_a_newer_drover_is_refused_with_a_hint() {
    let (store, dir) = file_store();
    lock(&store.conn)
        .pragma_update(None, "user_version", 99)
        .unwrap();
    drop(store);
    let err = SqliteStore::open(&dir.path().join("state/drover.db"))
        .err()
        .unwrap();
    let known = format!(
        "not one this drover knows (0 to {}); was it written by a newer drover",
        MIGRATIONS.len()
    );
    assert!(err.to_string().contains(&known), "{err}");
}

#[test]
fn the_active_jobs_query_uses_the_partial_index() {
    let store = SqliteStore::open_in_memory().unwrap();
    let conn = lock(&store.conn);
    let sql = concat!(
        "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE ",
        active_states!(),
        " ORDER BY queued_at, id"
    );
    let plan: Vec<String> = conn
        .prepare(sql)
        .unwrap()
        .query_map([], |row| row.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(plan.iter().any(|p| p.contains("jobs_active")), "{plan:?}");
    assert!(
        !plan.iter().any(|p| p.contains("TEMP B-TREE")),
        "no sort: {plan:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Each write is made from a version that is either the current one (fresh) or
    /// off by some amount (stale, or from the future); only the fresh ones land.
    #[test]
    fn the_final_version_counts_exactly_the_accepted_writes(offsets in prop::collection::vec(-3i64..=3, 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let store = SqliteStore::open_in_memory().unwrap();
            let created = job("j", JobState::Queued, 1);
            store.create_job(&created).await.unwrap();
            let (mut current, mut accepted) = (created.version, 0u64);
            for (i, offset) in offsets.iter().enumerate() {
                let mut write = created.clone();
                write.version = current.saturating_add_signed(*offset);
                write.reason = Some(format!("write {i}"));
                match store.update_job(&write).await {
                    Ok(v) => {
                        prop_assert_eq!(write.version, current);
                        prop_assert_eq!(v, current + 1);
                        current = v;
                        accepted += 1;
                    }
                    Err(StoreError::Conflict { .. }) => prop_assert_ne!(write.version, current),
                    Err(other) => prop_assert!(false, "unexpected {}", other),
                }
            }
            let stored = store.get_job(&created.id).await.unwrap().unwrap();
            prop_assert_eq!(stored.version, created.version + accepted);
            Ok(())
        })?;
    }
}

/// `cargo test --release -- --ignored --nocapture measure` prints the figures.
#[tokio::test]
#[ignore]
async fn measure_update_jobs_and_active_jobs_at_scale() {
    let (store, _dir) = file_store();
    let jobs: Vec<Job> = (0..100_000)
        .map(|i| job(&format!("job-{i:06}"), JobState::Queued, i))
        .collect();
    let t = Instant::now();
    for j in &jobs {
        store.create_job(j).await.unwrap();
    }
    println!("create_job x100000 one by one: {:?}", t.elapsed());

    let assigned: Vec<Job> = jobs[..10_000]
        .iter()
        .map(|j| {
            let mut next = j.clone();
            next.state = JobState::Assigned;
            next.attempts.push(attempt(1, "w-1"));
            next
        })
        .collect();
    let t = Instant::now();
    let results = store.update_jobs(&assigned).await.unwrap();
    println!("update_jobs x10000 in one call: {:?}", t.elapsed());
    assert!(results.iter().all(|r| matches!(r, Ok(1))));

    for _ in 0..3 {
        let t = Instant::now();
        let active = store.active_jobs().await.unwrap();
        println!("active_jobs over {} jobs: {:?}", active.len(), t.elapsed());
        assert_eq!(active.len(), 100_000);
    }
}

fn query_plan(store: &SqliteStore, sql: &str) -> Vec<String> {
    let conn = lock(&store.conn);
    let explained = format!("EXPLAIN QUERY PLAN {sql}");
    let mut stmt = conn.prepare(&explained).unwrap();
    // A LIMIT's parameter, if the query has one.
    let limit = vec![10; stmt.parameter_count()];
    let rows = stmt
        .query_map(rusqlite::params_from_iter(limit), |row| {
            row.get::<_, String>(3)
        })
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

#[test]
fn the_dispatch_view_reads_each_part_from_its_partial_index_without_sorting() {
    let store = SqliteStore::open_in_memory().unwrap();
    let attempts_of = |selection: &str| {
        format!(
            "SELECT {ATTEMPT_COLUMNS} FROM (SELECT id FROM jobs {selection}) AS j
             JOIN attempts ON job_id = j.id"
        )
    };
    for (sql, index) in [
        (
            format!("SELECT id FROM jobs {}", dispatch::ON_WORKERS),
            "jobs_on_workers",
        ),
        (attempts_of(dispatch::ON_WORKERS), "jobs_on_workers"),
        (
            format!("SELECT id FROM jobs {}", dispatch::FIRST_QUEUED),
            "jobs_dispatch",
        ),
        (attempts_of(dispatch::FIRST_QUEUED), "jobs_dispatch"),
        (dispatch::QUEUED_COUNT.to_string(), "jobs_dispatch"),
    ] {
        let plan = query_plan(&store, &sql);
        assert!(plan.iter().any(|p| p.contains(index)), "{sql}: {plan:?}");
        assert!(
            !plan.iter().any(|p| p.contains("TEMP B-TREE")),
            "no sort: {sql}: {plan:?}"
        );
    }
}

/// A file written before the dispatch index gets each job's attempt count from
/// its attempts, so that a job tried before still goes first.
#[tokio::test]
async fn a_file_from_before_the_dispatch_index_counts_the_attempts_it_holds() {
    let (store, dir) = file_store();
    store
        .create_job(&job("j-first-try", JobState::Queued, 1))
        .await
        .unwrap();
    let mut tried = on_worker("j-tried", JobState::Queued, 5, "w-1");
    tried.attempts.push(attempt(2, "w-2"));
    store.create_job(&tried).await.unwrap();
    let before = MIGRATIONS
        .iter()
        .position(|m| *m == dispatch::MIGRATION)
        .unwrap();
    {
        let conn = lock(&store.conn);
        conn.execute_batch(
            "DROP INDEX jobs_dispatch; DROP INDEX jobs_on_workers;
             ALTER TABLE jobs DROP COLUMN attempt_count;",
        )
        .unwrap();
        conn.pragma_update(None, "user_version", before).unwrap();
    }
    drop(store);
    let reopened = SqliteStore::open(&dir.path().join("state/drover.db")).unwrap();
    let count: u32 = lock(&reopened.conn)
        .query_row(
            "SELECT attempt_count FROM jobs WHERE id = 'j-tried'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(count, 2);
    let view = reopened.dispatch_view(Box::new(|_| 5)).await.unwrap();
    assert_eq!(ids(view.queued()), ["j-tried", "j-first-try"]);
}

#[test]
fn a_read_in_place_never_waits_for_a_lock_and_gives_way_to_a_held_connection() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("db.sqlite");
    let ours = Connection::open(&path).expect("open");
    ours.busy_timeout(BUSY_TIMEOUT).expect("timeout");
    // A rollback journal: there a writer's exclusive lock does block readers,
    // as WAL recovery or another controller's checkpoint would under WAL.
    ours.execute_batch(
        "PRAGMA journal_mode = DELETE; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
    )
    .expect("schema");
    let conn = Mutex::new(ours);
    let read = |c: &mut Connection| c.query_row("SELECT x FROM t", [], |r| r.get::<_, i64>(0));

    assert_eq!(
        read_in_place(&conn, &read, is_busy).map(|r| r.ok()),
        Some(Some(1))
    );

    let other = Connection::open(&path).expect("open");
    other.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let start = std::time::Instant::now();
    assert!(
        read_in_place(&conn, &read, is_busy).is_none(),
        "busy: left to the pool"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "waited {:?}",
        start.elapsed()
    );
    other.execute_batch("COMMIT").expect("unlock");
    let timeout: i64 = lock(&conn)
        .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(
        timeout,
        BUSY_TIMEOUT.as_millis() as i64,
        "the busy timeout is back"
    );

    let held = lock(&conn);
    assert!(
        read_in_place(&conn, &read, is_busy).is_none(),
        "the connection is in use"
    );
    drop(held);
}
