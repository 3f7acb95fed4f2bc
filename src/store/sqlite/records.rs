//! Declarative job records in SQLite: one row per name in `records`. The
//! conditional writes are single statements (`INSERT ... ON CONFLICT DO NOTHING`,
//! `UPDATE ... WHERE version = ?`), whose changed-row count says whether they won.

use super::{exec, query_all, write_tx, Failure, Res, SqliteStore};
use crate::store::{JobRecords, RecordWrite, StoreResult};
use async_trait::async_trait;
use reconcilers::{
    model::{JobId, Timestamp},
    records::{JobRecord, ManifestHash, RecordName},
};
use rusqlite::{params, params_from_iter, Connection, Row, ToSql};

/// Appended to the store's migrations.
pub const MIGRATION: &str = "
    CREATE TABLE records (
        name TEXT PRIMARY KEY NOT NULL, generation INTEGER NOT NULL, hash TEXT NOT NULL,
        job TEXT NOT NULL, version INTEGER NOT NULL,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
    );";

const COLUMNS: &str = "name, generation, hash, job, version, created_at, updated_at";

fn record_from_row(row: &Row<'_>) -> Res<JobRecord> {
    let raw: String = row.get(0)?;
    let name = RecordName::parse(&raw)
        .map_err(|e| Failure::Corrupt(format!("record {raw:?} in the store: {e}")))?;
    Ok(JobRecord {
        name,
        generation: row.get(1)?,
        hash: ManifestHash(row.get(2)?),
        job: JobId::new(row.get::<_, String>(3)?),
        version: row.get(4)?,
        created_at: Timestamp(row.get(5)?),
        updated_at: Timestamp(row.get(6)?),
    })
}

fn written(rows: usize, version: u64) -> RecordWrite {
    if rows == 0 {
        RecordWrite::Refused
    } else {
        RecordWrite::Written(version)
    }
}

/// A record's values in `COLUMNS` order, with `version` as the one to store:
/// the insert and the update bind the same list (`?1` to `?7`).
fn columns(r: &JobRecord, version: u64) -> [Box<dyn ToSql>; 7] {
    [
        Box::new(r.name.as_str().to_owned()),
        Box::new(r.generation),
        Box::new(r.hash.0.clone()),
        Box::new(r.job.as_str().to_owned()),
        Box::new(version),
        Box::new(r.created_at.0),
        Box::new(r.updated_at.0),
    ]
}

fn insert(conn: &Connection, r: &JobRecord) -> Res<RecordWrite> {
    let sql = format!(
        "INSERT INTO records ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
        ON CONFLICT (name) DO NOTHING"
    );
    let rows = exec(conn, &sql, params_from_iter(columns(r, r.version)))?;
    Ok(written(rows, r.version))
}

fn update(conn: &Connection, r: &JobRecord) -> Res<RecordWrite> {
    let Some(next) = r.version.checked_add(1) else {
        return Err(Failure::Corrupt(format!(
            "record {}: version {} is the last",
            r.name, r.version
        )));
    };
    let sql = "UPDATE records SET generation = ?2, hash = ?3, job = ?4, version = ?5,
        created_at = ?6, updated_at = ?7 WHERE name = ?1 AND version = ?8";
    let read: Box<dyn ToSql> = Box::new(r.version);
    let values = columns(r, next).into_iter().chain([read]);
    let rows = exec(conn, sql, params_from_iter(values))?;
    Ok(written(rows, next))
}

#[async_trait]
impl JobRecords for SqliteStore {
    async fn create_record(&self, record: &JobRecord) -> StoreResult<RecordWrite> {
        let r = record.clone();
        self.run(format!("creating job record {}", r.name), move |conn| {
            write_tx(conn, |tx| insert(tx, &r))
        })
        .await
    }

    async fn get_record(&self, name: &RecordName) -> StoreResult<Option<JobRecord>> {
        let name = name.clone();
        self.run(format!("reading job record {name}"), move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM records WHERE name = ?1");
            Ok(query_all(conn, &sql, [name.as_str()], record_from_row)?.pop())
        })
        .await
    }

    async fn list_records(&self) -> StoreResult<Vec<JobRecord>> {
        self.run("listing job records", |conn| {
            let sql = format!("SELECT {COLUMNS} FROM records ORDER BY name");
            query_all(conn, &sql, [], record_from_row)
        })
        .await
    }

    async fn update_record(&self, record: &JobRecord) -> StoreResult<RecordWrite> {
        let r = record.clone();
        self.run(format!("updating job record {}", r.name), move |conn| {
            write_tx(conn, |tx| update(tx, &r))
        })
        .await
    }

    async fn delete_record(&self, name: &RecordName, version: u64) -> StoreResult<RecordWrite> {
        let name = name.clone();
        self.run(format!("deleting job record {name}"), move |conn| {
            let sql = "DELETE FROM records WHERE name = ?1 AND version = ?2";
            let rows = exec(conn, sql, params![name.as_str(), version])?;
            Ok(written(rows, version))
        })
        .await
    }
}
