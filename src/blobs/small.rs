//! Small blobs (JDLs, small input and output archives, short logs) kept as rows of
//! one SQLite file beside the blob folder, instead of a file each.
//!
//! Why: most of a job's blobs are a few hundred bytes, and a file costs an inode
//! (and object_store's local puts a temporary file, a rename and the job's
//! folders). On ext4, allocating inodes near many recently deleted ones
//! (`recently_deleted` in the kernel) took most of the controller's CPU in the
//! throughput benchmark (docs/performance.md). A row is an append to the WAL.
//!
//! A key lives in one place at a time as far as readers can tell: rows are read
//! first, and a large put deletes the row it supersedes.

use super::BlobError;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Blobs up to this size are rows; bigger ones are files (or S3 objects).
pub const SMALL_BLOB_BYTES: usize = 128 * 1024;

#[derive(Clone)]
pub struct SmallBlobs {
    conn: Arc<Mutex<Connection>>,
    /// Point reads may run in place (see `point_read`).
    reads_in_place: bool,
}

impl SmallBlobs {
    /// Opens (creating it) the file at `path`: WAL, as the store, so that two
    /// controllers sharing a data folder share it too.
    pub fn open(path: &Path) -> Result<SmallBlobs, BlobError> {
        let failed = |e: rusqlite::Error| BlobError::Io {
            context: format!("opening small blobs {}", path.display()),
            source: std::io::Error::other(e),
        };
        let conn = Connection::open(path).map_err(failed)?;
        let reads_in_place = crate::store::sqlite::tune(&conn).map_err(failed)?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL)",
            [],
        )
        .map_err(failed)?;
        Ok(SmallBlobs {
            conn: Arc::new(Mutex::new(conn)),
            reads_in_place,
        })
    }

    /// Runs `f` with the connection on the blocking pool (rusqlite blocks).
    async fn run<T: Send + 'static>(
        &self,
        context: String,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BlobError> {
        let conn = self.conn.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await;
        let io = |source| BlobError::Io {
            context: context.clone(),
            source,
        };
        joined
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(|e| io(std::io::Error::other(e)))
    }

    /// Runs the point read `f` here when it can be done without waiting, else
    /// on the blocking pool, as the store's point reads (`store/sqlite.rs`):
    /// a read of one row costs less than the switch to another thread.
    async fn point_read<T: Send + 'static>(
        &self,
        context: String,
        f: impl Fn(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BlobError> {
        use crate::store::sqlite::{is_busy, read_in_place};
        if self.reads_in_place {
            if let Some(done) = read_in_place(&self.conn, &f, is_busy) {
                return done.map_err(|e| BlobError::Io {
                    context,
                    source: std::io::Error::other(e),
                });
            }
        }
        self.run(context, f).await
    }

    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), BlobError> {
        let key = key.to_string();
        self.run(format!("writing {key}"), move |conn| {
            conn.prepare_cached("INSERT OR REPLACE INTO blobs (key, data) VALUES (?1, ?2)")?
                .execute(params![key, &data[..]])
                .map(|_| ())
        })
        .await
    }

    /// Many blobs in one transaction (one commit for a whole batch).
    pub async fn put_many(&self, blobs: Vec<(String, Bytes)>) -> Result<(), BlobError> {
        let n = blobs.len();
        self.run(format!("writing {n} blobs"), move |conn| {
            let tx = conn.unchecked_transaction()?;
            {
                let mut put =
                    tx.prepare_cached("INSERT OR REPLACE INTO blobs (key, data) VALUES (?1, ?2)")?;
                for (key, data) in &blobs {
                    put.execute(params![key, &data[..]])?;
                }
            }
            tx.commit()
        })
        .await
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        let key = key.to_string();
        self.point_read(format!("reading {key}"), move |conn| {
            conn.prepare_cached("SELECT data FROM blobs WHERE key = ?1")?
                .query_row([&key], |row| row.get::<_, Vec<u8>>(0))
                .optional()
                .map(|data| data.map(Bytes::from))
        })
        .await
    }

    pub async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        let key = key.to_string();
        self.point_read(format!("looking up {key}"), move |conn| {
            conn.prepare_cached("SELECT length(data) FROM blobs WHERE key = ?1")?
                .query_row([&key], |row| row.get::<_, u64>(0))
                .optional()
        })
        .await
    }

    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let key = key.to_string();
        self.run(format!("deleting {key}"), move |conn| {
            conn.prepare_cached("DELETE FROM blobs WHERE key = ?1")?
                .execute([&key])
                .map(|_| ())
        })
        .await
    }

    /// Deletes every key under the folder `prefix` (`jobs/<id>` deletes
    /// `jobs/<id>/...`, not `jobs/<id>0/...`).
    pub async fn delete_under(&self, prefix: &str) -> Result<(), BlobError> {
        // Keys under `p/` sort between `p/` and `p0` ('0' follows '/').
        let (from, to) = (format!("{prefix}/"), format!("{prefix}0"));
        self.run(format!("deleting {prefix}"), move |conn| {
            conn.prepare_cached("DELETE FROM blobs WHERE key >= ?1 AND key < ?2")?
                .execute([&from, &to])
                .map(|_| ())
        })
        .await
    }

    /// Every key, in order (for tests and tools that check what is stored).
    pub async fn keys(&self) -> Result<Vec<String>, BlobError> {
        self.run("listing small blobs".into(), |conn| {
            conn.prepare("SELECT key FROM blobs ORDER BY key")?
                .query_map([], |row| row.get(0))?
                .collect()
        })
        .await
    }
}
