//! Declarative job records, as `drover apply` keeps them: a name (the manifest's
//! `JobName`, or its file's stem) bound to the hash of the manifest last applied
//! and the job that manifest became. The decision of what an apply does is pure
//! and lives here; the API carries it out with a conditional write on the record.
//!
//! The rules, as `kubectl apply` has taught people to expect:
//! - the same manifest again changes nothing (no second job);
//! - a changed manifest whose job has finished becomes the next generation (a new job);
//! - a changed manifest whose job is still queued or running is refused, unless the
//!   caller asked to replace it: then the old job is cancelled and the new one submitted.

use crate::model::{JobId, JobState, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A record's name. Names travel in URLs and are typed on command lines, so they
/// are kept to what needs no quoting anywhere.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordName(String);

/// Why a name cannot be a record's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` cannot name a job record: use 1 to 64 letters, digits, `.`, `-` or `_`, \
     starting with a letter or a digit (set JobName in the manifest, or rename the file)"
)]
pub struct BadRecordName(pub String);

impl RecordName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<RecordName, BadRecordName> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.starts_with(|c: char| c.is_ascii_alphanumeric())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if ok {
            Ok(RecordName(raw.to_string()))
        } else {
            Err(BadRecordName(raw.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hash of a manifest as applied: its canonical JDL and the contents of every
/// file it ships (`sha256:<hex>`), computed by the client that read the files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ManifestHash(pub String);

impl ManifestHash {
    /// The first characters after the algorithm, enough for people to compare.
    /// Counted in characters, not bytes: a hash comes from a client and may hold
    /// anything before the API checks it, and a byte slice could split a character.
    pub fn short(&self) -> &str {
        const SHOWN: usize = 12;
        let hex = self.0.split_once(':').map_or(self.0.as_str(), |(_, h)| h);
        match hex.char_indices().nth(SHOWN) {
            Some((end, _)) => &hex[..end],
            None => hex,
        }
    }
}

impl fmt::Display for ManifestHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The durable record of one named job. `version` is the optimistic-concurrency
/// token, as a job's is: a write is refused if the record changed since it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub name: RecordName,
    /// 1 for the first job of this name, then one more for each changed manifest.
    pub generation: u64,
    pub hash: ManifestHash,
    /// The job the current generation submitted.
    pub job: JobId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What an apply does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyDecision {
    /// The manifest is the one applied last: nothing to do.
    Unchanged,
    /// No record of this name: generation 1.
    Create,
    /// The manifest changed and its job has finished: the next generation.
    NewGeneration,
    /// The manifest changed while its job is in flight, and the caller asked to
    /// replace it: cancel `cancel`, then submit the next generation.
    Replace { cancel: JobId },
}

impl ApplyDecision {
    /// Whether the apply submits a job.
    pub fn submits(&self) -> bool {
        !matches!(self, ApplyDecision::Unchanged)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ApplyDecision::Unchanged => "unchanged",
            ApplyDecision::Create => "created",
            ApplyDecision::NewGeneration => "new generation",
            ApplyDecision::Replace { .. } => "replaced",
        }
    }
}

/// A changed manifest whose job is still in flight, applied without `--replace`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "job record `{name}` changed, but its job {job} (generation {generation}) is still {state}: \
     wait for it (`drover wait {job}`) and apply again, or apply with --replace to cancel it \
     and submit the changed manifest"
)]
pub struct InFlight {
    pub name: RecordName,
    pub job: JobId,
    pub generation: u64,
    pub state: JobState,
}

/// Decides an apply of a manifest hashing to `hash` onto `current`, the record of
/// that name with the state of its job (`None` when the job is gone: the garbage
/// collector removed it, so it finished long ago).
pub fn decide(
    current: Option<(&JobRecord, Option<JobState>)>,
    hash: &ManifestHash,
    replace: bool,
) -> Result<ApplyDecision, InFlight> {
    let Some((record, state)) = current else {
        return Ok(ApplyDecision::Create);
    };
    if record.hash == *hash {
        return Ok(ApplyDecision::Unchanged);
    }
    match state {
        None => Ok(ApplyDecision::NewGeneration),
        Some(s) if s.is_terminal() => Ok(ApplyDecision::NewGeneration),
        Some(_) if replace => Ok(ApplyDecision::Replace {
            cancel: record.job.clone(),
        }),
        Some(state) => Err(InFlight {
            name: record.name.clone(),
            job: record.job.clone(),
            generation: record.generation,
            state,
        }),
    }
}

/// The record to write once `job` was submitted for a manifest hashing to `hash`.
/// Its `version` is the one the write is conditional on (the one read).
pub fn next_record(
    name: &RecordName,
    current: Option<&JobRecord>,
    hash: &ManifestHash,
    job: &JobId,
    now: Timestamp,
) -> JobRecord {
    match current {
        None => JobRecord {
            name: name.clone(),
            generation: 1,
            hash: hash.clone(),
            job: job.clone(),
            version: 0,
            created_at: now,
            updated_at: now,
        },
        Some(r) => JobRecord {
            generation: r.generation + 1,
            hash: hash.clone(),
            job: job.clone(),
            updated_at: now,
            ..r.clone()
        },
    }
}

/// What a record write whose answer was not a plain "written" did. A refusal or
/// an error does not prove the write failed: its answer may have been lost and
/// the store client's retry refused (the record already moved on, by this very
/// write). Read back, the record tells: it names the job the write was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteSettled {
    /// The record names the job: the write landed; carry on as if it said so.
    Landed,
    /// The record names another job, or is gone: this write did not land (or
    /// another apply replaced it since). Nothing names the job, so it must be
    /// cancelled, or the next apply would submit the manifest a second time.
    Lost,
}

/// Judges a write of a record naming `job` by `reread`, the record read back.
pub fn settle_write(reread: Option<&JobRecord>, job: &JobId) -> WriteSettled {
    match reread {
        Some(r) if r.job == *job => WriteSettled::Landed,
        _ => WriteSettled::Lost,
    }
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
