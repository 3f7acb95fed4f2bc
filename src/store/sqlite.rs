//! The embedded store: one SQLite file holding jobs (with their attempts), workers,
//! instances and fleet settings. It is the default on one machine, and two
//! controllers may share the file.
//!
//! Job writes are conditional on the stored version (`UPDATE ... WHERE version = ?`),
//! so a decision taken on stale data is refused, never applied. A batch of updates is
//! one transaction (group commit), with each job checked on its own.
//!
//! The leader lease lives here too (`lease.rs`); a fenced store (`fenced`) checks
//! the lease's token inside the transaction of every write it makes.

mod dispatch;
mod lease;
mod records;

use super::{Fence, Heartbeat, JobFilter, Lease, QueuedWanted, Store, StoreError, StoreResult};
use async_trait::async_trait;
use reconcilers::dispatch::DispatchView;
use reconcilers::model::{
    Attempt, EmptyLogs, FleetSettings, Instance, InstanceId, Job, JobId, JobState, LaunchKey,
    Timestamp, Worker, WorkerId, WorkerState,
};
use rusqlite::{params, Connection, Params, Row, ToSql, Transaction, TransactionBehavior};
use serde::de::{value::StrDeserializer, DeserializeOwned, IntoDeserializer};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

/// How long a statement waits for another connection (another controller sharing the
/// file) to release its write lock before it fails with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The states in which a job needs the controller's attention. A macro so that the
/// partial index and the queries that must use it spell the condition identically.
macro_rules! active_states {
    () => {
        "state IN ('queued', 'assigned', 'running')"
    };
}

/// Schema migrations; `PRAGMA user_version` is the number of them applied. Append,
/// never edit: a file written by an older drover is brought forward step by step.
const MIGRATIONS: &[&str] = &[
    concat!(
        "CREATE TABLE jobs (
        id TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, version INTEGER NOT NULL,
        created_at INTEGER NOT NULL, queued_at INTEGER, finished_at INTEGER,
        worker TEXT, -- the current attempt's worker while assigned or running
        exit_code INTEGER, reason TEXT, spec TEXT NOT NULL -- JobSpec as JSON
    );
    CREATE INDEX jobs_active ON jobs (queued_at, id) WHERE ",
        active_states!(),
        ";
    CREATE INDEX jobs_by_worker ON jobs (worker) WHERE worker IS NOT NULL;
    CREATE INDEX jobs_by_created ON jobs (created_at, id);
    CREATE INDEX jobs_abandoned ON jobs (created_at) WHERE state = 'created';
    CREATE TABLE attempts (
        job_id TEXT NOT NULL, number INTEGER NOT NULL, worker TEXT NOT NULL,
        assigned_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER,
        exit_code INTEGER, outcome TEXT, reason TEXT, has_output INTEGER NOT NULL,
        PRIMARY KEY (job_id, number)
    ) WITHOUT ROWID;
    CREATE TABLE workers (
        id TEXT PRIMARY KEY NOT NULL, instance TEXT NOT NULL, slots INTEGER NOT NULL,
        state TEXT NOT NULL, registered_at INTEGER NOT NULL, last_ping INTEGER NOT NULL,
        idle_since INTEGER
    );
    CREATE TABLE instances (
        id TEXT PRIMARY KEY NOT NULL, launch_key TEXT NOT NULL, state TEXT NOT NULL,
        launched_at INTEGER NOT NULL, provider_ref TEXT
    );
    CREATE TABLE fleet_settings (
        id INTEGER PRIMARY KEY CHECK (id = 1), -- a single row
        min_workers INTEGER NOT NULL, max_workers INTEGER NOT NULL,
        slots_per_worker INTEGER NOT NULL, idle_timeout_ms INTEGER NOT NULL
    );"
    ),
    lease::MIGRATION,
    records::MIGRATION,
    // Which logs a worker reported empty (EmptyLogs::bits): it does not upload them.
    "ALTER TABLE attempts ADD COLUMN empty_logs INTEGER NOT NULL DEFAULT 0;",
    // The dispatch order's indexes, for the jobs loop's bounded read.
    dispatch::MIGRATION,
];

const JOB_COLUMNS: &str =
    "id, state, version, created_at, queued_at, finished_at, exit_code, reason, spec";
const ATTEMPT_COLUMNS: &str =
    "job_id, number, worker, assigned_at, started_at, finished_at, exit_code, outcome, reason, has_output, empty_logs";
const WORKER_COLUMNS: &str = "id, instance, slots, state, registered_at, last_ping, idle_since";

/// Both statements take ?1 id, ?2 version, ?3.. the fields, so they share `write_job`.
const INSERT_JOB: &str = "INSERT INTO jobs
    (id, version, state, created_at, queued_at, finished_at, worker, exit_code, reason, spec,
    attempt_count)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING";
const UPDATE_JOB: &str = "UPDATE jobs SET version = version + 1, state = ?3, created_at = ?4,
    queued_at = ?5, finished_at = ?6, worker = ?7, exit_code = ?8, reason = ?9, spec = ?10,
    attempt_count = ?11
    WHERE id = ?1 AND version = ?2";
const UPSERT_ATTEMPT: &str = "INSERT INTO attempts
    (job_id, number, worker, assigned_at, started_at, finished_at, exit_code, outcome, reason, has_output, empty_logs)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
    ON CONFLICT (job_id, number) DO UPDATE SET worker = excluded.worker,
    assigned_at = excluded.assigned_at, started_at = excluded.started_at,
    finished_at = excluded.finished_at, exit_code = excluded.exit_code,
    outcome = excluded.outcome, reason = excluded.reason, has_output = excluded.has_output,
    empty_logs = excluded.empty_logs";

/// Monotonic: `last_ping` only moves forward, and `idle_since` follows the newest
/// beat, so a beat delivered late changes nothing. The state is not touched, so a
/// lost worker stays lost. An unknown worker matches no row and is ignored.
const HEARTBEAT: &str = "UPDATE workers SET
    idle_since = CASE WHEN ?2 >= last_ping THEN ?3 ELSE idle_since END,
    last_ping = max(last_ping, ?2)
    WHERE id = ?1";
const PUT_WORKER: &str = "INSERT OR REPLACE INTO workers
    (id, instance, slots, state, registered_at, last_ping, idle_since) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const PUT_INSTANCE: &str = "INSERT OR REPLACE INTO instances
    (id, launch_key, state, launched_at, provider_ref) VALUES (?1, ?2, ?3, ?4, ?5)";
const PUT_SETTINGS: &str = "INSERT OR REPLACE INTO fleet_settings
    (id, min_workers, max_workers, slots_per_worker, idle_timeout_ms) VALUES (1, ?1, ?2, ?3, ?4)";
const DELETE_ABANDONED_ATTEMPTS: &str = "DELETE FROM attempts WHERE job_id IN
    (SELECT id FROM jobs WHERE state = 'created' AND created_at < ?1)";
const DELETE_ABANDONED_JOBS: &str =
    "DELETE FROM jobs WHERE state = 'created' AND created_at < ?1 RETURNING id";

/// Why a closure run against the connection stopped: a refusal to hand back as is,
/// or a failure of the database (or of its content) that gets the call's context.
#[derive(Debug)]
enum Failure {
    Refused(StoreError),
    Sql(rusqlite::Error),
    Corrupt(String),
}

impl From<rusqlite::Error> for Failure {
    fn from(err: rusqlite::Error) -> Self {
        Failure::Sql(err)
    }
}

type Res<T> = Result<T, Failure>;

/// The SQLite store.
///
/// rusqlite is blocking and a `Connection` is not `Sync`, so calls run on tokio's
/// blocking pool (`spawn_blocking`) and take a mutex around the one connection for
/// the length of one closure, never across an await (point reads run in place
/// when the connection is free: `point_read`). A dedicated thread with a
/// channel would do the same with more code; one connection is enough because
/// SQLite admits one writer at a time anyway, and the batched calls (`update_jobs`,
/// `record_heartbeats`) are where throughput comes from.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Set in the leader's view: every write checks that the lease is still its.
    fence: Option<Arc<Fence>>,
    /// Point reads may run in place (see `point_read`).
    reads_in_place: bool,
}

impl SqliteStore {
    /// Opens (creating it and its parent folders if needed) the store at `path`, and
    /// brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let context = format!("opening store {}", path.display());
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::backend(&context, e))?;
        }
        let conn = Connection::open(path).map_err(|e| StoreError::backend(&context, e))?;
        Self::init(conn, &context)
    }

    /// A private store in memory, gone when dropped: for tests.
    #[cfg(test)]
    pub fn open_in_memory() -> StoreResult<SqliteStore> {
        let context = "opening store in memory";
        let conn = Connection::open_in_memory().map_err(|e| StoreError::backend(context, e))?;
        Self::init(conn, context)
    }

    fn init(mut conn: Connection, context: &str) -> StoreResult<SqliteStore> {
        let reads_in_place = configure(&mut conn)
            .and_then(|reads_never_wait| migrate(&mut conn).map(|()| reads_never_wait))
            .map_err(|f| resolve(context, f))?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            fence: None,
            reads_in_place,
        })
    }

    /// Runs `f` with the connection on the blocking pool; `context` says what was
    /// being done, for the error ("updating job j-1: database is locked").
    async fn run<T, F>(&self, context: impl Into<String>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Res<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let context = context.into();
        let joined = tokio::task::spawn_blocking(move || {
            let mut guard = lock(&conn);
            f(&mut guard).map_err(|failure| resolve(&context, failure))
        })
        .await;
        joined.map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }

    /// Runs the point read `f` (a row or a few, by key) right here when it can
    /// be done without waiting (`read_in_place`), else on the blocking pool.
    /// Handing it to the pool costs more than the read itself (two thread
    /// switches against a few microseconds; they were a fifth of the
    /// controller's CPU). Scans and writes always go to the pool.
    async fn point_read<T, F>(&self, context: impl Into<String>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&mut Connection) -> Res<T> + Send + 'static,
    {
        if self.reads_in_place {
            let busy = |failure: &Failure| matches!(failure, Failure::Sql(e) if is_busy(e));
            if let Some(done) = read_in_place(&self.conn, &f, busy) {
                return done.map_err(|failure| resolve(&context.into(), failure));
            }
        }
        self.run(context, f).await
    }

    /// Runs `f` in a write transaction (see `write_tx`), after checking the fence
    /// of a fenced store in the same transaction.
    async fn write<T, F>(&self, context: impl Into<String>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Res<T> + Send + 'static,
    {
        let fence = self.fence.clone();
        self.run(context, move |conn| {
            write_tx(conn, |tx| {
                if let Some(fence) = &fence {
                    lease::check(tx, fence)?;
                }
                f(tx)
            })
        })
        .await
    }
}

/// Runs the read `f` on `conn` here, on an async thread, if that cannot wait:
/// `None` when another call holds the connection, or when SQLite would have
/// to wait for a lock (`busy`: WAL recovery, another controller's
/// checkpoint). The busy handler is off meanwhile: it would sleep on this
/// thread. Only for connections whose reads never wait for writers (`tune`).
pub(crate) fn read_in_place<T, E>(
    conn: &Mutex<Connection>,
    f: &impl Fn(&mut Connection) -> Result<T, E>,
    busy: impl Fn(&E) -> bool,
) -> Option<Result<T, E>> {
    let mut guard = match conn.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return None,
    };
    guard.busy_timeout(Duration::ZERO).ok()?;
    let out = f(&mut guard);
    if let Err(e) = guard.busy_timeout(BUSY_TIMEOUT) {
        tracing::warn!("restoring SQLite's busy timeout: {e}");
    }
    match out {
        Err(e) if busy(&e) => None,
        done => Some(done),
    }
}

/// SQLite refused for a lock held elsewhere (what its busy handler waits out).
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A panic inside a closure poisons the mutex, but its transaction was rolled back
/// when the panic unwound through it, so the connection is still sound.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn resolve(context: &str, failure: Failure) -> StoreError {
    match failure {
        Failure::Refused(err) => err,
        Failure::Sql(err) => StoreError::backend(context, err),
        Failure::Corrupt(what) => StoreError::backend(context, what),
    }
}

fn configure(conn: &mut Connection) -> Res<bool> {
    let reads_never_wait = tune(conn)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(reads_never_wait)
}

/// The settings every SQLite file of drover's is opened with (the store, and the
/// small blobs of `blobs/small.rs`).
///
/// Answers whether reads never wait for a writer (WAL, or a private in-memory
/// database): only then may point reads run in place (`read_in_place`).
pub(crate) fn tune(conn: &Connection) -> rusqlite::Result<bool> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets readers go on while one connection writes, and lets two controllers
    // share the file. With WAL, synchronous=NORMAL keeps every committed transaction
    // across a crash of the process (the WAL is in the OS's hands once written);
    // only a power loss or OS crash may lose the last commits, never corrupt the file.
    // An in-memory database answers "memory" and stays so.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    let reads_never_wait = mode == "wal" || mode == "memory";
    if !reads_never_wait {
        tracing::warn!(
            mode,
            "the file system refused SQLite's WAL; controllers will wait on each other more"
        );
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(reads_never_wait)
}

fn migrate(conn: &mut Connection) -> Res<()> {
    // IMMEDIATE: two controllers opening a new file at once migrate it one after the other.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let applied: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if !(0..=known).contains(&applied) {
        return Err(Failure::Corrupt(format!(
            "the file's schema version is {applied}, not one this drover knows (0 to {known}); was it written by a newer drover? upgrade drover"
        )));
    }
    if applied < known {
        for migration in &MIGRATIONS[applied as usize..] {
            tx.execute_batch(migration)?;
        }
        tx.pragma_update(None, "user_version", known)?;
    }
    tx.commit()?;
    Ok(())
}

/// Parses an enum from the snake_case name it is stored under (the serde name,
/// which is also what `as_str` writes); an unknown name is a corrupt record.
fn parse_name<T: DeserializeOwned>(kind: &str, name: &str) -> Res<T> {
    let de: StrDeserializer<'_, serde::de::value::Error> = name.into_deserializer();
    T::deserialize(de)
        .map_err(|_| Failure::Corrupt(format!("unknown {kind} {name:?} in the store")))
}

/// Job states are read for every job of every tick: a direct match, not serde.
fn parse_job_state(name: &str) -> Res<JobState> {
    JobState::parse(name)
        .ok_or_else(|| Failure::Corrupt(format!("unknown job state {name:?} in the store")))
}

fn text<'r>(row: &'r Row<'_>, idx: usize) -> Res<&'r str> {
    (row.get_ref(idx)?.as_str()).map_err(|e| Failure::Corrupt(format!("column {idx}: {e}")))
}

fn ts(value: Option<u64>) -> Option<Timestamp> {
    value.map(Timestamp)
}

fn job_from_row(row: &Row<'_>) -> Res<Job> {
    let id = JobId::new(row.get::<_, String>(0)?);
    let spec = serde_json::from_str(text(row, 8)?)
        .map_err(|e| Failure::Corrupt(format!("job {id}: its spec is not valid JSON: {e}")))?;
    Ok(Job {
        state: parse_job_state(text(row, 1)?)?,
        version: row.get(2)?,
        created_at: Timestamp(row.get(3)?),
        queued_at: ts(row.get(4)?),
        finished_at: ts(row.get(5)?),
        attempts: Vec::new(),
        exit_code: row.get(6)?,
        reason: row.get(7)?,
        spec,
        id,
    })
}

fn attempt_from_row(row: &Row<'_>) -> Res<Attempt> {
    let outcome: Option<String> = row.get(7)?;
    Ok(Attempt {
        number: row.get(1)?,
        worker: WorkerId::new(row.get::<_, String>(2)?),
        assigned_at: Timestamp(row.get(3)?),
        started_at: ts(row.get(4)?),
        finished_at: ts(row.get(5)?),
        exit_code: row.get(6)?,
        outcome: outcome
            .map(|name| parse_name("attempt outcome", &name))
            .transpose()?,
        reason: row.get(8)?,
        has_output: row.get(9)?,
        empty_logs: EmptyLogs::from_bits(row.get(10)?),
    })
}

fn worker_from_row(row: &Row<'_>) -> Res<Worker> {
    Ok(Worker {
        id: WorkerId::new(row.get::<_, String>(0)?),
        instance: InstanceId::new(row.get::<_, String>(1)?),
        slots: row.get(2)?,
        state: parse_name("worker state", text(row, 3)?)?,
        registered_at: Timestamp(row.get(4)?),
        last_ping: Timestamp(row.get(5)?),
        idle_since: ts(row.get(6)?),
    })
}

fn instance_from_row(row: &Row<'_>) -> Res<Instance> {
    Ok(Instance {
        id: InstanceId::new(row.get::<_, String>(0)?),
        launch_key: LaunchKey::new(row.get::<_, String>(1)?),
        state: parse_name("instance state", text(row, 2)?)?,
        launched_at: Timestamp(row.get(3)?),
        provider_ref: row.get(4)?,
    })
}

fn settings_from_row(row: &Row<'_>) -> Res<FleetSettings> {
    Ok(FleetSettings {
        min_workers: row.get(0)?,
        max_workers: row.get(1)?,
        slots_per_worker: row.get(2)?,
        idle_timeout_ms: row.get(3)?,
    })
}

/// Runs a query and decodes each row (the statement is cached: the same queries run
/// every tick).
fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    mut decode: impl FnMut(&Row<'_>) -> Res<T>,
) -> Res<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

fn exec(conn: &Connection, sql: &str, params: impl Params) -> Res<usize> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}

/// Runs `f` in a write transaction, committed if `f` succeeds. IMMEDIATE takes the
/// write lock up front, so that a controller sharing the file makes this one wait
/// (busy timeout) instead of failing when a read would turn into a write.
fn write_tx<T>(conn: &mut Connection, f: impl FnOnce(&Transaction<'_>) -> Res<T>) -> Res<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// Loads the jobs `selection` picks (a `WHERE ... ORDER BY ... LIMIT ...` over
/// `jobs`), then all their attempts in one query, not one query per job. Both reads
/// run in one transaction, so they see the same snapshot.
fn load_jobs(conn: &mut Connection, selection: &str, params: &[&dyn ToSql]) -> Res<Vec<Job>> {
    let tx = conn.transaction()?;
    let jobs = select_jobs(&tx, selection, params)?;
    tx.commit()?;
    Ok(jobs)
}

/// `load_jobs` inside the caller's transaction (`dispatch.rs` makes three reads
/// in one).
fn select_jobs(tx: &Connection, selection: &str, params: &[&dyn ToSql]) -> Res<Vec<Job>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs {selection}");
    let mut jobs = query_all(tx, &sql, params, job_from_row)?;
    if jobs.is_empty() {
        return Ok(jobs);
    }
    // A join: SQLite walks the selection once and seeks each job's attempts by the
    // primary key.
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM (SELECT id FROM jobs {selection}) AS j
         JOIN attempts ON job_id = j.id"
    );
    let mut attempts: HashMap<String, Vec<Attempt>> = HashMap::new();
    query_all(tx, &sql, params, |row| {
        let attempt = attempt_from_row(row)?;
        let job_id = text(row, 0)?;
        match attempts.get_mut(job_id) {
            Some(list) => list.push(attempt),
            None => drop(attempts.insert(job_id.to_owned(), vec![attempt])),
        }
        Ok(())
    })?;
    for job in &mut jobs {
        if let Some(mut list) = attempts.remove(job.id.as_str()) {
            list.sort_by_key(|a| a.number);
            job.attempts = list;
        }
    }
    Ok(jobs)
}

/// Writes the job's row with `sql` (`INSERT_JOB` or `UPDATE_JOB`); returns the rows changed.
fn write_job(conn: &Connection, sql: &str, job: &Job) -> Res<usize> {
    let spec = serde_json::to_string(&job.spec)
        .map_err(|e| Failure::Corrupt(format!("job {}: encoding its spec: {e}", job.id)))?;
    let (queued, finished) = (job.queued_at.map(|t| t.0), job.finished_at.map(|t| t.0));
    let worker = job.worker().map(WorkerId::as_str);
    let (id, state) = (job.id.as_str(), job.state.as_str());
    exec(
        conn,
        sql,
        params![
            id,
            job.version,
            state,
            job.created_at.0,
            queued,
            finished,
            worker,
            job.exit_code,
            job.reason,
            spec,
            job.attempts.len()
        ],
    )
}

/// Makes the stored attempts of `job` exactly `job.attempts`. Attempts are few per
/// job, so all are upserted rather than read back to find those that changed.
fn write_attempts(conn: &Connection, job: &Job) -> Res<()> {
    let mut upsert = conn.prepare_cached(UPSERT_ATTEMPT)?;
    for a in &job.attempts {
        upsert.execute(params![
            job.id.as_str(),
            a.number,
            a.worker.as_str(),
            a.assigned_at.0,
            a.started_at.map(|t| t.0),
            a.finished_at.map(|t| t.0),
            a.exit_code,
            a.outcome.map(|o| o.as_str()),
            a.reason,
            a.has_output,
            a.empty_logs.bits(),
        ])?;
    }
    let last = job.attempts.last().map_or(0, |a| a.number);
    exec(
        conn,
        "DELETE FROM attempts WHERE job_id = ?1 AND number > ?2",
        params![job.id.as_str(), last],
    )?;
    Ok(())
}

/// One conditional write inside the caller's transaction. A refusal is a value (the
/// batch goes on); only a database failure is an `Err`.
fn update_one(conn: &Connection, job: &Job) -> Res<StoreResult<u64>> {
    let Some(next) = job.version.checked_add(1) else {
        return Err(Failure::Corrupt(format!(
            "job {}: version {} is the last",
            job.id, job.version
        )));
    };
    if write_job(conn, UPDATE_JOB, job)? == 0 {
        let exists = conn
            .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1")?
            .exists([job.id.as_str()])?;
        let (job, expected) = (job.id.clone(), job.version);
        return Ok(Err(if exists {
            StoreError::Conflict { job, expected }
        } else {
            StoreError::NotFound(job)
        }));
    }
    write_attempts(conn, job)?;
    Ok(Ok(next))
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_job(&self, job: &Job) -> StoreResult<()> {
        let job = job.clone();
        self.write(format!("creating job {}", job.id), move |tx| {
            if write_job(tx, INSERT_JOB, &job)? == 0 {
                return Err(Failure::Refused(StoreError::AlreadyExists(job.id.clone())));
            }
            write_attempts(tx, &job)
        })
        .await
    }

    async fn create_jobs(&self, jobs: &[Job]) -> StoreResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let jobs = jobs.to_vec();
        self.run(format!("creating {} jobs", jobs.len()), move |conn| {
            // One transaction: one commit (one WAL sync) for the whole batch, and
            // a taken id rolls back every insert, so a retry starts clean.
            write_tx(conn, |tx| {
                for job in &jobs {
                    if write_job(tx, INSERT_JOB, job)? == 0 {
                        return Err(Failure::Refused(StoreError::AlreadyExists(job.id.clone())));
                    }
                    write_attempts(tx, job)?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn get_job(&self, id: &JobId) -> StoreResult<Option<Job>> {
        let id = id.clone();
        self.point_read(format!("reading job {id}"), move |conn| {
            Ok(load_jobs(conn, "WHERE id = ?1", &[&id.as_str()])?.pop())
        })
        .await
    }

    async fn get_jobs(&self, ids: &[JobId]) -> StoreResult<Vec<Option<Job>>> {
        let ids = ids.to_vec();
        self.run(format!("reading {} jobs", ids.len()), move |conn| {
            ids.iter()
                .map(|id| Ok(load_jobs(conn, "WHERE id = ?1", &[&id.as_str()])?.pop()))
                .collect()
        })
        .await
    }

    async fn update_job(&self, job: &Job) -> StoreResult<u64> {
        let job = job.clone();
        self.write(format!("updating job {}", job.id), move |tx| {
            update_one(tx, &job)?.map_err(Failure::Refused)
        })
        .await
    }

    async fn update_jobs(&self, jobs: &[Job]) -> StoreResult<Vec<StoreResult<u64>>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let jobs = jobs.to_vec();
        self.write(format!("updating {} jobs", jobs.len()), move |tx| {
            jobs.iter().map(|job| update_one(tx, job)).collect()
        })
        .await
    }

    async fn active_jobs(&self) -> StoreResult<Vec<Job>> {
        self.run("reading active jobs", |conn| {
            let selection = concat!("WHERE ", active_states!(), " ORDER BY queued_at, id");
            load_jobs(conn, selection, &[])
        })
        .await
    }

    async fn dispatch_view(&self, wanted: QueuedWanted) -> StoreResult<DispatchView> {
        self.run("reading the jobs to dispatch", move |conn| {
            dispatch::read(conn, wanted)
        })
        .await
    }

    async fn jobs_on_worker(&self, worker: &WorkerId) -> StoreResult<Vec<Job>> {
        let worker = worker.clone();
        self.point_read(format!("reading jobs on worker {worker}"), move |conn| {
            let selection = "WHERE worker = ?1 AND state IN ('assigned', 'running') ORDER BY id";
            load_jobs(conn, selection, &[&worker.as_str()])
        })
        .await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        // The names come from `as_str`, never from the caller: safe to inline.
        let names: Vec<String> = filter
            .states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let mut selection = String::new();
        if !names.is_empty() {
            selection = format!("WHERE state IN ({})", names.join(", "));
        }
        selection.push_str(" ORDER BY created_at DESC, id DESC");
        if let Some(limit) = filter.limit {
            selection.push_str(&format!(" LIMIT {limit}"));
        }
        self.run("listing jobs", move |conn| load_jobs(conn, &selection, &[]))
            .await
    }

    async fn delete_abandoned_jobs(&self, before: Timestamp) -> StoreResult<Vec<JobId>> {
        let context = format!("deleting jobs abandoned before {}", before.0);
        let mut ids = self
            .write(context, move |tx| {
                exec(tx, DELETE_ABANDONED_ATTEMPTS, [before.0])?;
                query_all(tx, DELETE_ABANDONED_JOBS, [before.0], |row| {
                    Ok(JobId(row.get(0)?))
                })
            })
            .await?;
        ids.sort();
        Ok(ids)
    }

    async fn put_worker(&self, worker: &Worker) -> StoreResult<()> {
        let w = worker.clone();
        self.write(format!("recording worker {}", w.id), move |conn| {
            let (id, instance, state) = (w.id.as_str(), w.instance.as_str(), w.state.as_str());
            let idle_since = w.idle_since.map(|t| t.0);
            let values = params![
                id,
                instance,
                w.slots,
                state,
                w.registered_at.0,
                w.last_ping.0,
                idle_since
            ];
            exec(conn, PUT_WORKER, values).map(drop)
        })
        .await
    }

    async fn get_worker(&self, id: &WorkerId) -> StoreResult<Option<Worker>> {
        let id = id.clone();
        self.point_read(format!("reading worker {id}"), move |conn| {
            let sql = format!("SELECT {WORKER_COLUMNS} FROM workers WHERE id = ?1");
            Ok(query_all(conn, &sql, [id.as_str()], worker_from_row)?.pop())
        })
        .await
    }

    async fn list_workers(&self) -> StoreResult<Vec<Worker>> {
        self.run("listing workers", |conn| {
            let sql = format!("SELECT {WORKER_COLUMNS} FROM workers ORDER BY id");
            query_all(conn, &sql, [], worker_from_row)
        })
        .await
    }

    async fn record_heartbeats(&self, beats: &[Heartbeat]) -> StoreResult<()> {
        if beats.is_empty() {
            return Ok(());
        }
        let beats = beats.to_vec();
        let context = format!("recording {} heartbeats", beats.len());
        self.write(context, move |tx| {
            for b in &beats {
                let idle_since = b.idle_since.map(|t| t.0);
                exec(
                    tx,
                    HEARTBEAT,
                    params![b.worker.as_str(), b.at.0, idle_since],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn set_worker_state(&self, id: &WorkerId, state: WorkerState) -> StoreResult<()> {
        let id = id.clone();
        let context = format!("marking worker {id} {}", state.as_str());
        self.write(context, move |conn| {
            // A worker already deleted has nothing left to mark: not an error.
            let sql = "UPDATE workers SET state = ?2 WHERE id = ?1";
            exec(conn, sql, [id.as_str(), state.as_str()]).map(drop)
        })
        .await
    }

    async fn delete_worker(&self, id: &WorkerId) -> StoreResult<()> {
        let id = id.clone();
        self.write(format!("deleting worker {id}"), move |conn| {
            exec(conn, "DELETE FROM workers WHERE id = ?1", [id.as_str()]).map(drop)
        })
        .await
    }

    async fn put_instance(&self, instance: &Instance) -> StoreResult<()> {
        let i = instance.clone();
        self.write(format!("recording instance {}", i.id), move |conn| {
            let (id, key, state) = (i.id.as_str(), i.launch_key.as_str(), i.state.as_str());
            exec(
                conn,
                PUT_INSTANCE,
                params![id, key, state, i.launched_at.0, i.provider_ref],
            )
            .map(drop)
        })
        .await
    }

    async fn list_instances(&self) -> StoreResult<Vec<Instance>> {
        self.run("listing instances", |conn| {
            let sql = "SELECT id, launch_key, state, launched_at, provider_ref FROM instances ORDER BY id";
            query_all(conn, sql, [], instance_from_row)
        })
        .await
    }

    async fn delete_instance(&self, id: &InstanceId) -> StoreResult<()> {
        let id = id.clone();
        self.write(format!("deleting instance {id}"), move |conn| {
            exec(conn, "DELETE FROM instances WHERE id = ?1", [id.as_str()]).map(drop)
        })
        .await
    }

    async fn fleet_settings(&self) -> StoreResult<Option<FleetSettings>> {
        self.run("reading fleet settings", |conn| {
            let sql = "SELECT min_workers, max_workers, slots_per_worker, idle_timeout_ms FROM fleet_settings";
            Ok(query_all(conn, sql, [], settings_from_row)?.pop())
        })
        .await
    }

    async fn put_fleet_settings(&self, settings: &FleetSettings) -> StoreResult<()> {
        let s = settings.clone();
        self.write("writing fleet settings", move |conn| {
            let values = params![
                s.min_workers,
                s.max_workers,
                s.slots_per_worker,
                s.idle_timeout_ms
            ];
            exec(conn, PUT_SETTINGS, values).map(drop)
        })
        .await
    }

    async fn acquire_lease(
        &self,
        holder: &str,
        address: &str,
        now: Timestamp,
        duration_ms: u64,
    ) -> StoreResult<Lease> {
        let (holder, address) = (holder.to_string(), address.to_string());
        let context = format!("taking or renewing the leader lease for {holder}");
        self.run(context, move |conn| {
            write_tx(conn, |tx| {
                lease::acquire(tx, &holder, &address, now, duration_ms)
            })
        })
        .await
    }

    async fn release_lease(&self, fence: &Fence) -> StoreResult<()> {
        let fence = fence.clone();
        let context = format!("releasing the leader lease (token {})", fence.token);
        self.run(context, move |conn| {
            write_tx(conn, |tx| lease::release(tx, &fence))
        })
        .await
    }

    async fn announce_controller(
        &self,
        holder: &str,
        address: &str,
        now: Timestamp,
        duration_ms: u64,
    ) -> StoreResult<Vec<String>> {
        let (holder, address) = (holder.to_string(), address.to_string());
        let context = format!("announcing controller {holder} at {address}");
        self.run(context, move |conn| {
            write_tx(conn, |tx| {
                lease::announce(tx, &holder, &address, now, duration_ms)
            })
        })
        .await
    }

    fn fenced(&self, fence: Fence) -> Arc<dyn Store> {
        Arc::new(SqliteStore {
            conn: Arc::clone(&self.conn),
            fence: Some(Arc::new(fence)),
            reads_in_place: self.reads_in_place,
        })
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
