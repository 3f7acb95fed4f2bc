//! The leader lease and the list of controllers in SQLite: one row each in
//! `lease` (a single row) and `controllers`. Taking the lease reads and writes
//! it in one IMMEDIATE transaction, which is the conditional write: a second
//! controller waits for the first to commit, then sees its result.

use super::{exec, query_all, Failure, Res};
use crate::store::{Fence, Lease, StoreError};
use reconcilers::model::Timestamp;
use rusqlite::{params, Row, Transaction};

/// Appended to the store's migrations (schema version 2).
pub const MIGRATION: &str = "
    CREATE TABLE lease (
        id INTEGER PRIMARY KEY CHECK (id = 1), -- a single row
        holder TEXT NOT NULL, address TEXT NOT NULL, token INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE controllers (
        holder TEXT PRIMARY KEY NOT NULL, address TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );";

fn lease_from_row(row: &Row<'_>) -> Res<Lease> {
    Ok(Lease {
        holder: row.get(0)?,
        address: row.get(1)?,
        token: row.get(2)?,
        expires_at: Timestamp(row.get(3)?),
    })
}

fn current(tx: &Transaction<'_>) -> Res<Option<Lease>> {
    let sql = "SELECT holder, address, token, expires_at FROM lease WHERE id = 1";
    Ok(query_all(tx, sql, [], lease_from_row)?.pop())
}

/// Refuses the transaction's writes unless `fence` still holds the lease: run
/// first inside every write transaction of a fenced store.
pub fn check(tx: &Transaction<'_>, fence: &Fence) -> Res<()> {
    let token = current(tx)?.map(|l| l.token);
    if token == Some(fence.token) {
        Ok(())
    } else {
        Err(Failure::Refused(StoreError::Fenced { token: fence.token }))
    }
}

pub fn acquire(
    tx: &Transaction<'_>,
    holder: &str,
    address: &str,
    now: Timestamp,
    duration_ms: u64,
) -> Res<Lease> {
    let current = current(tx)?;
    match Lease::next(current.as_ref(), holder, address, now, duration_ms) {
        Some(next) => {
            let sql = "INSERT OR REPLACE INTO lease (id, holder, address, token, expires_at)
                VALUES (1, ?1, ?2, ?3, ?4)";
            let values = params![next.holder, next.address, next.token, next.expires_at.0];
            exec(tx, sql, values)?;
            Ok(next)
        }
        None => current.ok_or_else(|| Failure::Corrupt("the lease vanished".into())),
    }
}

pub fn release(tx: &Transaction<'_>, fence: &Fence) -> Res<()> {
    let sql = "UPDATE lease SET expires_at = 0 WHERE id = 1 AND token = ?1 AND holder = ?2";
    exec(tx, sql, params![fence.token, fence.holder]).map(drop)
}

pub fn announce(
    tx: &Transaction<'_>,
    holder: &str,
    address: &str,
    now: Timestamp,
    duration_ms: u64,
) -> Res<Vec<String>> {
    let until = now.0.saturating_add(duration_ms);
    let sql =
        "INSERT OR REPLACE INTO controllers (holder, address, expires_at) VALUES (?1, ?2, ?3)";
    exec(tx, sql, params![holder, address, until])?;
    // The long gone are forgotten; a day keeps a list readable by hand.
    let forget = now.0.saturating_sub(24 * 3600 * 1000);
    exec(
        tx,
        "DELETE FROM controllers WHERE expires_at < ?1",
        [forget],
    )?;
    let sql = "SELECT address FROM controllers WHERE expires_at > ?1 ORDER BY address";
    query_all(tx, sql, [now.0], |row| Ok(row.get(0)?))
}
