//! Writes the record of an apply whose job is submitted (or deletes a record),
//! and settles what the write did when its answer is not a plain "written". A store client retries a
//! write whose answer was lost (the AWS SDK does); the retry of a conditional
//! write that did land is refused, because the record already moved on. So
//! neither a refusal nor an error proves the write failed: the record read back
//! does (`reconcilers::records::settle_write`).

use crate::store::{JobRecords, RecordWrite, StoreError};
use reconcilers::records::{settle_write, JobRecord, RecordName, WriteSettled};

/// What became of the write of a record naming a newly submitted job.
#[derive(Debug)]
pub enum Recorded {
    /// The record names the job: the write said so, or the record read back does.
    Written,
    /// Refused, and the record does not name the job: another apply (or a
    /// delete) got there first. Nothing names the job.
    Refused,
    /// Failed, and the record does not name the job. Nothing names the job.
    Failed(StoreError),
    /// The write did not say it landed and the record could not be read back:
    /// whether the record names the job is unknown.
    Unknown {
        /// What the write answered ("refused", or its error).
        write: String,
        reread: StoreError,
    },
}

/// Writes `next` (inserted when `create`, else conditional on its version).
pub async fn write_record<R: JobRecords + ?Sized>(
    records: &R,
    next: &JobRecord,
    create: bool,
) -> Recorded {
    let answer = if create {
        records.create_record(next).await
    } else {
        records.update_record(next).await
    };
    let failure = match answer {
        Ok(RecordWrite::Written(_)) => return Recorded::Written,
        Ok(RecordWrite::Refused) => None,
        Err(e) => Some(e),
    };
    let reread = match records.get_record(&next.name).await {
        Ok(reread) => reread,
        Err(reread) => {
            let write = failure.map_or_else(|| "refused".to_string(), |e| e.to_string());
            return Recorded::Unknown { write, reread };
        }
    };
    match (settle_write(reread.as_ref(), &next.job), failure) {
        (WriteSettled::Landed, failure) => {
            if let Some(e) = failure {
                tracing::warn!(record = %next.name, job = %next.job, error = %e,
                    "the record write answered an error, but the record names the job: it landed");
            }
            Recorded::Written
        }
        (WriteSettled::Lost, None) => Recorded::Refused,
        (WriteSettled::Lost, Some(e)) => Recorded::Failed(e),
    }
}

/// Deletes the record `name` if its version is still `version`. A refusal or
/// an error is read back as a write is: a record gone is deleted (by this call,
/// whose answer was lost, or by another delete: either way it is gone).
pub async fn delete_record<R: JobRecords + ?Sized>(
    records: &R,
    name: &RecordName,
    version: u64,
) -> Result<RecordWrite, StoreError> {
    let answer = records.delete_record(name, version).await;
    if matches!(answer, Ok(RecordWrite::Written(_))) {
        return answer;
    }
    match records.get_record(name).await {
        Ok(None) => Ok(RecordWrite::Written(version)),
        _ => answer,
    }
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
