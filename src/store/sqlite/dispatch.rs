//! The jobs loop's bounded read in SQLite (`Store::dispatch_view`): the jobs on
//! workers and the first queued jobs in dispatch order, each from a partial index
//! that holds only those rows, and the queued count from the same index, in one
//! read transaction. With 100,000 jobs queued and 1,000 workers it reads a few
//! thousand rows, not 100,000.

use super::{select_jobs, Res};
use crate::store::QueuedWanted;
use reconcilers::{
    dispatch::{DispatchView, JobCounts, StateCount},
    model::Timestamp,
};
use rusqlite::Connection;

/// The conditions the partial indexes and the queries that must use them spell
/// identically (SQLite uses a partial index only for a query that repeats its
/// WHERE term).
macro_rules! on_workers {
    () => {
        "state IN ('assigned', 'running')"
    };
}
macro_rules! queued {
    () => {
        "state = 'queued'"
    };
}
/// The dispatch order of `reconcilers::dispatch::dispatch_key`: jobs already
/// tried first (`attempt_count = 0` is 0 for them, and false sorts before true as
/// in Rust), then `queued_at` (NULL first, as `None` in Rust), then the id (both
/// compare bytes).
macro_rules! dispatch_order {
    () => {
        "attempt_count = 0, queued_at, id"
    };
}

/// Appended to the store's migrations. `attempt_count` is the number of the job's
/// attempts (`write_job` keeps it), filled in here for the jobs already stored.
pub const MIGRATION: &str = concat!(
    "ALTER TABLE jobs ADD COLUMN attempt_count INTEGER NOT NULL DEFAULT 0;
    UPDATE jobs SET attempt_count = (SELECT count(*) FROM attempts WHERE job_id = jobs.id);
    CREATE INDEX jobs_dispatch ON jobs (",
    dispatch_order!(),
    ") WHERE ",
    queued!(),
    ";
    CREATE INDEX jobs_on_workers ON jobs (queued_at, id) WHERE ",
    on_workers!(),
    ";"
);

pub(super) const ON_WORKERS: &str = concat!("WHERE ", on_workers!(), " ORDER BY queued_at, id");
pub(super) const FIRST_QUEUED: &str = concat!(
    "WHERE ",
    queued!(),
    " ORDER BY ",
    dispatch_order!(),
    " LIMIT ?1"
);
/// An index-only scan of `jobs_dispatch` (every queued job is in it, with its
/// `queued_at`): a few milliseconds for 100,000 queued jobs.
pub(super) const QUEUED_COUNT: &str = concat!(
    "SELECT count(*), min(queued_at) FROM jobs WHERE ",
    queued!()
);

/// The three reads in one transaction: one snapshot, as a full read would be.
pub(super) fn read(conn: &mut Connection, wanted: QueuedWanted) -> Res<DispatchView> {
    let tx = conn.transaction()?;
    let on_workers = select_jobs(&tx, ON_WORKERS, &[])?;
    let limit = wanted(&on_workers);
    let queued = if limit == 0 {
        Vec::new()
    } else {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        select_jobs(&tx, FIRST_QUEUED, &[&limit])?
    };
    let (jobs, oldest) = tx
        .prepare_cached(QUEUED_COUNT)?
        .query_row([], |row| Ok((row.get(0)?, row.get::<_, Option<u64>>(1)?)))?;
    tx.commit()?;
    // Every job on a worker was read: those counts come from the rows.
    let mut counts = JobCounts::of(&on_workers);
    counts.queued = StateCount {
        jobs,
        oldest: oldest.map(Timestamp),
    };
    Ok(DispatchView::new(on_workers, queued, counts))
}
