//! The store's side of declarative job records (`drover apply`): one record per
//! name, written by a conditional write on its version as jobs are. Both stores
//! implement it (`sqlite/records.rs`, `dynamodb/records.rs`), and every `Store`
//! is a `JobRecords`, so the API reaches records through the same handle.

use super::StoreResult;
use async_trait::async_trait;
use reconcilers::records::{JobRecord, RecordName};

/// How a conditional write of a record ended. A refusal is an answer, not a
/// failure: another apply got there first, and the caller says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordWrite {
    /// Written; the record's version is now this.
    Written(u64),
    /// The condition failed: a record of that name exists (create), or it changed
    /// since it was read or is gone (update, delete). Nothing changed.
    Refused,
}

#[async_trait]
pub trait JobRecords: Send + Sync {
    /// Inserts `record` as it is (its version is usually 0), unless one of that
    /// name exists.
    async fn create_record(&self, record: &JobRecord) -> StoreResult<RecordWrite>;

    async fn get_record(&self, name: &RecordName) -> StoreResult<Option<JobRecord>>;

    /// Every record, by name.
    async fn list_records(&self) -> StoreResult<Vec<JobRecord>>;

    /// Writes `record` only if the stored version still equals `record.version`,
    /// and stores it with version + 1.
    async fn update_record(&self, record: &JobRecord) -> StoreResult<RecordWrite>;

    /// Deletes the record only if its stored version is still `version`.
    async fn delete_record(&self, name: &RecordName, version: u64) -> StoreResult<RecordWrite>;
}
