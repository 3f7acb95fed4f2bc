//! Declarative job records (`drover apply`, `get`, `delete`): a name bound to the
//! hash of the manifest last applied and the job it became. The decision of what
//! an apply does is `reconcilers::records::decide`; this carries it out.
//!
//! An apply comes in two calls. `POST /v1/records/{name}/plan` decides without
//! doing anything, so a client uploads nothing for an unchanged manifest. Then
//! the client allocates a job and uploads its input as for `drover submit`, and
//! `PUT /v1/records/{name}` decides again on fresh data, submits the job, and
//! writes the record conditionally on the version it read: if another apply got
//! there first, the new job is cancelled and the caller told to apply again. A
//! refused or failed write is read back before that (`write.rs`): the store's
//! retry of a write whose answer was lost is refused although the write landed.

mod write;

use super::{jobs, wire::SubmitRequest, ApiError, Ctx};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use futures::{StreamExt, TryStreamExt};
use reconcilers::{
    model::{JobId, JobState},
    records::{decide, next_record, ApplyDecision, JobRecord, ManifestHash, RecordName},
};
use serde::{Deserialize, Serialize};
use write::{write_record, Recorded};

// ---- wire: shared with the client ----

/// A record with the state of its current job, as `drover get` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordView {
    #[serde(flatten)]
    pub record: JobRecord,
    /// `None` when the job is gone (removed after it finished).
    pub state: Option<JobState>,
    pub exit_code: Option<i32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PlanRequest {
    pub hash: ManifestHash,
    /// Cancel and resubmit a job still in flight whose manifest changed.
    #[serde(default)]
    pub replace: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub hash: ManifestHash,
    #[serde(default)]
    pub replace: bool,
    /// A job allocated, its input uploaded, not yet submitted.
    pub job: JobId,
    /// Its JDL, as for `POST /v1/jobs/{id}/submit`.
    pub jdl: String,
}

/// What an apply did (or, from `plan`, would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Unchanged,
    Created,
    NewGeneration,
    Replaced,
}

impl Outcome {
    fn of(decision: &ApplyDecision) -> Outcome {
        match decision {
            ApplyDecision::Unchanged => Outcome::Unchanged,
            ApplyDecision::Create => Outcome::Created,
            ApplyDecision::NewGeneration => Outcome::NewGeneration,
            ApplyDecision::Replace { .. } => Outcome::Replaced,
        }
    }

    pub fn submits(self) -> bool {
        self != Outcome::Unchanged
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyAnswer {
    pub outcome: Outcome,
    /// The record as it stands after the call (`None` from a plan of a new name).
    pub record: Option<RecordView>,
    /// The job in flight that a replace cancelled.
    pub cancelled: Option<JobId>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteAnswer {
    pub record: JobRecord,
    /// Its job, cancelled because it was still in flight.
    pub cancelled: Option<JobId>,
}

// ---- handlers ----

fn parse_name(raw: &str) -> Result<RecordName, ApiError> {
    RecordName::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `sha256:` and 64 lower-case hex digits, as the client computes it.
fn check_hash(hash: &ManifestHash) -> Result<(), ApiError> {
    let ok = hash.0.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{hash}` is not a manifest hash (sha256: and 64 hex digits)"
        )))
    }
}

async fn view(c: &Ctx, record: JobRecord) -> Result<RecordView, ApiError> {
    let job = c.store.get_job(&record.job).await?;
    Ok(RecordView {
        state: job.as_ref().map(|j| j.state),
        exit_code: job.and_then(|j| j.exit_code),
        record,
    })
}

async fn load(c: &Ctx, name: &RecordName) -> Result<Option<RecordView>, ApiError> {
    match c.store.get_record(name).await? {
        Some(r) => Ok(Some(view(c, r).await?)),
        None => Ok(None),
    }
}

fn decision(
    current: Option<&RecordView>,
    hash: &ManifestHash,
    replace: bool,
) -> Result<ApplyDecision, ApiError> {
    decide(current.map(|v| (&v.record, v.state)), hash, replace)
        .map_err(|refused| ApiError::conflict(refused.to_string()))
}

/// Cancels a job as `POST /v1/jobs/{id}/cancel` does (its worker is told). A
/// job already finished is left as it is; one already gone has nothing to stop.
async fn cancel_job(c: &Ctx, job: &JobId) -> Result<(), ApiError> {
    match jobs::cancel(State(c.clone()), Path(job.to_string())).await {
        Ok(Json(_cancelled)) => Ok(()),
        Err(e) if e.status == StatusCode::NOT_FOUND => Ok(()),
        Err(e) => Err(e),
    }
}

/// Cancels a submitted job that no record names (its record write was refused
/// or failed), so that the next apply does not leave it running beside a second
/// one. Best effort: says what became of it, for the caller's message.
async fn cancel_unrecorded(c: &Ctx, job: &JobId) -> String {
    match cancel_job(c, job).await {
        Ok(()) => format!("job {job} was cancelled"),
        Err(e) => {
            tracing::warn!(%job, error = %e.message, "cannot cancel a job no record names");
            format!(
                "job {job} could not be cancelled ({}): cancel it with `drover cancel {job}`",
                e.message
            )
        }
    }
}

fn not_found(name: &RecordName) -> ApiError {
    ApiError::not_found(format!(
        "no job record `{name}`: `drover get` lists them, `drover apply -f FILE` makes one"
    ))
}

/// How many jobs `list` reads at once: a remote store answers each read in a
/// round trip, so reading them one by one would make a long list slow.
const LIST_READS_AT_ONCE: usize = 16;

/// `GET /v1/records`: every record, by name, with its job's state.
pub async fn list(State(c): State<Ctx>) -> Result<Json<Vec<RecordView>>, ApiError> {
    let records = c.store.list_records().await?;
    let views = futures::stream::iter(records)
        .map(|record| view(&c, record))
        .buffered(LIST_READS_AT_ONCE)
        .try_collect()
        .await?;
    Ok(Json(views))
}

/// `GET /v1/records/{name}`.
pub async fn get(
    State(c): State<Ctx>,
    Path(name): Path<String>,
) -> Result<Json<RecordView>, ApiError> {
    let name = parse_name(&name)?;
    load(&c, &name)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&name))
}

/// `POST /v1/records/{name}/plan`: what an apply would do; 409 if it would be refused.
pub async fn plan(
    State(c): State<Ctx>,
    Path(name): Path<String>,
    Json(req): Json<PlanRequest>,
) -> Result<Json<ApplyAnswer>, ApiError> {
    let name = parse_name(&name)?;
    check_hash(&req.hash)?;
    let current = load(&c, &name).await?;
    let decided = decision(current.as_ref(), &req.hash, req.replace)?;
    let cancelled = match &decided {
        ApplyDecision::Replace { cancel } => Some(cancel.clone()),
        _ => None,
    };
    Ok(Json(ApplyAnswer {
        outcome: Outcome::of(&decided),
        record: current,
        cancelled,
    }))
}

/// `PUT /v1/records/{name}`: applies a manifest whose job is allocated and uploaded.
pub async fn apply(
    State(c): State<Ctx>,
    Path(name): Path<String>,
    Json(req): Json<ApplyRequest>,
) -> Result<Json<ApplyAnswer>, ApiError> {
    let name = parse_name(&name)?;
    check_hash(&req.hash)?;
    let current = load(&c, &name).await?;
    let decided = decision(current.as_ref(), &req.hash, req.replace)?;
    if !decided.submits() {
        // The allocated job is never submitted; the garbage collector removes it.
        return Ok(Json(ApplyAnswer {
            outcome: Outcome::Unchanged,
            record: current,
            cancelled: None,
        }));
    }
    // Submitted first: a record never names a job that is not queued.
    let submit = SubmitRequest {
        jdl: req.jdl.clone(),
        input: None,
    };
    let Json(_queued) =
        jobs::submit(State(c.clone()), Path(req.job.to_string()), Json(submit)).await?;
    let old = current.as_ref().map(|v| &v.record);
    let next = next_record(&name, old, &req.hash, &req.job, c.now());
    record_job(&c, &next, old.is_none()).await?;
    let cancelled = match &decided {
        ApplyDecision::Replace { cancel } => {
            cancel_job(&c, cancel).await?;
            Some(cancel.clone())
        }
        _ => None,
    };
    tracing::info!(record = %name, job = %req.job, outcome = decided.as_str(), "applied");
    let record = c
        .store
        .get_record(&name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(ApplyAnswer {
        outcome: Outcome::of(&decided),
        record: Some(view(&c, record).await?),
        cancelled,
    }))
}

/// Writes the record naming the job just submitted (`next.job`). When no record
/// names it after all, the job is cancelled (best effort) and the error says so;
/// when that is unknown, it is left alone and the error says how to find out.
async fn record_job(c: &Ctx, next: &JobRecord, create: bool) -> Result<(), ApiError> {
    let (name, job) = (&next.name, &next.job);
    match write_record(&*c.store, next, create).await {
        Recorded::Written => Ok(()),
        Recorded::Refused => {
            let cancelled = cancel_unrecorded(c, job).await;
            Err(ApiError::conflict(format!(
                "job record `{name}` changed while this apply ran (another apply at the same \
                 time?); {cancelled}: run `drover apply` again"
            )))
        }
        Recorded::Failed(e) => {
            let cancelled = cancel_unrecorded(c, job).await;
            let e = ApiError::from(e);
            Err(ApiError::new(
                e.status,
                format!(
                    "job record `{name}` could not be written ({}); {cancelled}: \
                     run `drover apply` again",
                    e.message
                ),
            ))
        }
        Recorded::Unknown { write, reread } => {
            // Cancelling could leave the record naming a cancelled job, which the
            // next apply of the same manifest would call unchanged; keeping it
            // could leave a job no record names. Neither is safe to pick blind.
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "job record `{name}`: its write (naming job {job}) answered {write}, and \
                     reading it back failed ({reread}); job {job} was left queued. \
                     `drover get {name}` shows whether the record names it; if not, \
                     cancel it with `drover cancel {job}` and apply again"
                ),
            ))
        }
    }
}

/// `DELETE /v1/records/{name}`: removes the record and cancels its job if it is
/// still in flight. The jobs themselves stay, as history.
pub async fn delete(
    State(c): State<Ctx>,
    Path(name): Path<String>,
) -> Result<Json<DeleteAnswer>, ApiError> {
    let name = parse_name(&name)?;
    let current = load(&c, &name).await?.ok_or_else(|| not_found(&name))?;
    let in_flight = current.state.is_some_and(|s| !s.is_terminal());
    let written = write::delete_record(&*c.store, &name, current.record.version).await?;
    if written == crate::store::RecordWrite::Refused {
        return Err(ApiError::conflict(format!(
            "job record `{name}` changed while it was being deleted (an apply at the same time?): \
             look at it with `drover get {name}` and delete again"
        )));
    }
    let cancelled = if in_flight {
        let job = current.record.job.clone();
        cancel_job(&c, &job).await?;
        Some(job)
    } else {
        None
    };
    Ok(Json(DeleteAnswer {
        record: current.record,
        cancelled,
    }))
}
