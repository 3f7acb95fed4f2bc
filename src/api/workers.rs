//! Worker endpoints: register, messages (ping, started, finished), assignments
//! (long poll), input download, output and log upload.
//!
//! Every report names its attempt; one that is not the job's current attempt on
//! this worker is refused with 409 and changes nothing (fencing). A worker's
//! token lets it act only for itself (403 otherwise, before anything is read).

use super::{
    auth::{same_worker, CallerWorker},
    jobs::load_job,
    jobs::parse_job_id,
    wire::*,
    ApiError, Ctx,
};
use crate::auth::Caller;
use crate::blobs::{layout, LogStream};
use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as BlobPath;
use reconcilers::{
    jobs::{self, Report},
    messages::{HeldJob, Message},
    model::{Instance, InstanceId, InstanceState, JobId, JobState, Worker, WorkerId, WorkerState},
};
use serde::Deserialize;
use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

/// `POST /v1/workers/register`: a worker (new, or back after being declared lost).
pub async fn register(
    State(c): State<Ctx>,
    CallerWorker(me): CallerWorker,
    Json(req): Json<RegisterRequest>,
) -> Result<Json<Registered>, ApiError> {
    same_worker(&me, &WorkerId::new(req.instance.as_str()))?;
    if req.slots == 0 || !reconcilers::model::JobId::is_valid(req.instance.as_str()) {
        return Err(ApiError::bad_request(
            "register needs a valid instance id and at least one slot",
        ));
    }
    may_register(&c, &req.instance).await?;
    let now = c.now();
    let worker = Worker {
        id: WorkerId::new(req.instance.as_str()),
        instance: req.instance,
        slots: req.slots,
        state: WorkerState::Active,
        registered_at: now,
        last_ping: now,
        idle_since: Some(now),
    };
    c.store.put_worker(&worker).await?;
    c.heartbeats.forget(&worker.id);
    tracing::info!(worker = %worker.id, slots = worker.slots, "worker registered");
    c.wake.jobs.notify_one();
    c.wake.fleet.notify_one();
    Ok(Json(Registered {
        worker: worker.id,
        ping_interval_ms: c.config.ping_interval.as_millis() as u64,
        heartbeat_timeout_ms: c.config.heartbeat_timeout.as_millis() as u64,
    }))
}

/// Whether a worker may register from `instance`. Its token, which a job on
/// its instance may have read (see docs/security.md), must not outlive the
/// instance: one the fleet is terminating is refused, and an EC2 fleet accepts
/// only instances it recorded (launched, and not yet forgotten as gone). The
/// local fleet also lets in workers started by hand, which it never recorded;
/// its jobs are trusted like the controller's user anyway.
async fn may_register(c: &Ctx, instance: &InstanceId) -> Result<(), ApiError> {
    let instances = c.store.list_instances().await?;
    let only_recorded = c.config.fleet_provider == crate::config::FleetProvider::Ec2;
    registration_refusal(&instances, instance, only_recorded)
        .map_or(Ok(()), |why| Err(ApiError::new(StatusCode::FORBIDDEN, why)))
}

/// Why a worker may not register from `id`, if it may not.
fn registration_refusal(
    instances: &[Instance],
    id: &InstanceId,
    only_recorded: bool,
) -> Option<String> {
    match instances.iter().find(|i| &i.id == id) {
        Some(i) if i.state == InstanceState::Terminating => Some(format!(
            "instance {id} is being terminated: its worker may not register"
        )),
        Some(_) => None,
        None if only_recorded => Some(format!(
            "instance {id} is not one this cluster's fleet launched, or it is gone: \
             its worker may not register"
        )),
        None => None,
    }
}

/// The worker a request speaks for, which must be registered and not lost.
async fn known_worker(c: &Ctx, id: &WorkerId) -> Result<Worker, ApiError> {
    match c.store.get_worker(id).await? {
        Some(w) => Ok(w),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown worker {id}: register first (POST /v1/workers/register)"),
        )),
    }
}

/// `POST /v1/messages`: one typed message, parsed by the message factory.
pub async fn message(
    State(c): State<Ctx>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let msg = Message::parse(&body);
    may_send(&caller, &msg)?;
    crate::metrics::message_received("http", &msg);
    match msg {
        Message::Ping { worker, held, .. } => {
            let mut reply = ping(&c, &worker, held).await?;
            reply.controllers = c.leadership.controllers();
            Ok(Json(reply).into_response())
        }
        Message::Started {
            worker,
            job,
            attempt,
        } => {
            known_worker(&c, &worker).await?;
            let now = c.now();
            let job = c
                .change_job(&job, |j| jobs::start(j, &worker, attempt, now))
                .await?;
            Ok(Json(refused_is_stale(job)?).into_response())
        }
        Message::Finished {
            worker,
            job,
            attempt,
            outcome,
            exit_code,
            reason,
            has_output,
            empty_logs,
            attached,
        } => {
            known_worker(&c, &worker).await?;
            let mut report = Report {
                worker,
                attempt,
                outcome,
                exit_code,
                reason,
                has_output,
                empty_logs,
            };
            if !attached.is_empty() {
                store_attached(&c, &job, &mut report, attached).await?;
            }
            let now = c.now();
            let job = c
                .change_job(&job, |j| jobs::finish(j, &report, now))
                .await?;
            let job = refused_is_stale(job)?;
            tracing::info!(job = %job.id, attempt, state = %job.state, "attempt finished");
            Ok(Json(job).into_response())
        }
        // Hints: wake the loop that acts on them; they carry no state.
        Message::JobSubmitted { .. } | Message::Cancel { .. } => {
            c.wake.jobs.notify_one();
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Message::WorkerLost { .. } => {
            c.wake.fleet.notify_one();
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Message::Assignment { worker } => {
            c.wake.wake_worker(&worker);
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Message::Unknown { kind, detail } => {
            tracing::info!(kind, detail, "ignored an unknown message");
            Ok(StatusCode::ACCEPTED.into_response())
        }
    }
}

/// Stores what a report carries (small logs, a small output archive) before
/// the report is applied, fenced as an upload is: only the worker holding the
/// current attempt. An output over the limit fails the attempt, saying so, as
/// a refused upload does.
async fn store_attached(
    c: &Ctx,
    id: &JobId,
    report: &mut Report,
    attached: BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let job = load_job(c, id).await?;
    // The same report twice (its answer was lost): what it carried is stored
    // already, and `finish` answers it as done.
    if let Ok(jobs::Change::AlreadyDone) = jobs::finish(&job, report, c.now()) {
        return Ok(());
    }
    refused_is_stale(jobs::check_current(&job, &report.worker, report.attempt).map(|()| job))?;
    let limit = c.config.max_output_bytes;
    for (blob, text) in attached {
        let key = attempt_blob_key(id, report.attempt, &blob)?;
        let data = decode_inline(&text)
            .map_err(|e| ApiError::bad_request(format!("attached `{blob}` is not base64: {e}")))?;
        if data.len() as u64 > limit {
            let why = format!(
                "{blob} of job {id} attempt {} is over the limit of {limit} bytes",
                report.attempt
            );
            if blob == "output" {
                report.outcome = reconcilers::model::AttemptOutcome::Failed;
                report.reason = Some(format!("the output archive was refused: {why}"));
                report.has_output = false;
            } else {
                tracing::warn!(job = %id, "{why}: not stored");
            }
            continue;
        }
        c.blobs.put_bytes(&key, data.into()).await?;
    }
    Ok(())
}

/// The key of an attempt's blob named by a worker: its output or a log.
fn attempt_blob_key(id: &JobId, attempt: u32, blob: &str) -> Result<BlobPath, ApiError> {
    match blob {
        "output" => Ok(layout::output(id, attempt)),
        other => match LogStream::parse(other) {
            Some(stream) => Ok(layout::log(id, attempt, stream)),
            None => Err(ApiError::bad_request(format!(
                "`{other}` is not an attempt blob"
            ))),
        },
    }
}

/// Reports come from the worker they name, with its own token; hints (which
/// only wake a loop) from a holder of the submit token: the cluster's controllers.
fn may_send(caller: &Caller, msg: &Message) -> Result<(), ApiError> {
    let named = match msg {
        Message::Ping { worker, .. }
        | Message::Started { worker, .. }
        | Message::Finished { worker, .. } => Some(worker),
        _ => None,
    };
    match (caller, named) {
        (Caller::Worker(me), Some(worker)) => same_worker(me, worker),
        (Caller::Submitter, None) => Ok(()),
        (Caller::Submitter, Some(_)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "worker reports need the worker's own token, not the submit token",
        )),
        (Caller::Worker(_), None) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("a worker token cannot send `{}` messages", msg.kind()),
        )),
    }
}

fn refused_is_stale(
    r: Result<reconcilers::model::Job, reconcilers::jobs::Refusal>,
) -> Result<reconcilers::model::Job, ApiError> {
    r.map_err(|refusal| {
        crate::metrics::METRICS.stale_reports.inc();
        tracing::info!(%refusal, "refused a worker report");
        ApiError::from(refusal)
    })
}

/// A PING: recorded in the heartbeat buffer (batched to the store); the reply
/// lists the held attempts the worker must stop.
async fn ping(c: &Ctx, worker: &WorkerId, held: Vec<HeldJob>) -> Result<PingReply, ApiError> {
    let w = known_worker(c, worker).await?;
    if w.state == WorkerState::Lost {
        return Ok(PingReply {
            lost: true,
            stop: held,
            ..PingReply::default()
        });
    }
    c.heartbeats.ping(worker, c.now(), !held.is_empty());
    if held.is_empty() {
        return Ok(PingReply::default());
    }
    let current: HashSet<HeldJob> = c
        .store
        .jobs_on_worker(worker)
        .await?
        .into_iter()
        .filter_map(|j| {
            j.current_attempt().map(|a| HeldJob {
                job: j.id.clone(),
                attempt: a.number,
            })
        })
        .collect();
    let stop = held.into_iter().filter(|h| !current.contains(h)).collect();
    Ok(PingReply {
        lost: false,
        stop,
        ..PingReply::default()
    })
}

#[derive(Deserialize)]
pub struct AssignmentsQuery {
    /// Long poll: wait up to this long for work, in milliseconds.
    wait_ms: Option<u64>,
    /// The attempts the worker already holds, as `job.attempt,job.attempt`:
    /// not new to it, so they neither answer the poll nor end its wait (one
    /// whose `started` is in flight is still assigned in the store).
    held: Option<String>,
}

/// Parses `held` (`job.attempt,...`), saying which entry is wrong.
fn parse_held(held: Option<&str>) -> Result<HashSet<HeldJob>, ApiError> {
    let Some(held) = held.filter(|h| !h.is_empty()) else {
        return Ok(HashSet::new());
    };
    let entries: Vec<&str> = held.split(',').collect();
    if entries.len() > HELD_MAX {
        return Err(ApiError::bad_request(format!(
            "`held` names {} attempts; at most {HELD_MAX}",
            entries.len()
        )));
    }
    entries
        .into_iter()
        .map(|entry| {
            let parsed = entry.rsplit_once('.').and_then(|(job, attempt)| {
                let attempt = attempt.parse().ok()?;
                JobId::is_valid(job).then(|| HeldJob {
                    job: JobId::new(job),
                    attempt,
                })
            });
            parsed.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`held` entry `{entry}` is not `job.attempt` (a job id, a dot, an attempt number)"
                ))
            })
        })
        .collect()
}

/// `GET /v1/workers/{id}/assignments?wait_ms=N&held=...`: the attempts assigned
/// to this worker that it has not started and does not hold, answered as soon
/// as there is one.
pub async fn assignments(
    State(c): State<Ctx>,
    CallerWorker(me): CallerWorker,
    Path(id): Path<String>,
    Query(q): Query<AssignmentsQuery>,
) -> Result<Json<Vec<Assignment>>, ApiError> {
    let worker = WorkerId::new(id);
    same_worker(&me, &worker)?;
    let held = parse_held(q.held.as_deref())?;
    let w = known_worker(&c, &worker).await?;
    if w.state == WorkerState::Lost {
        return Err(ApiError::conflict(format!(
            "worker {worker} was declared lost: register again"
        )));
    }
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0).min(60_000));
    let deadline = tokio::time::Instant::now() + wait;
    let notify = c.wake.worker(&worker);
    loop {
        let mut found: Vec<Assignment> = c
            .store
            .jobs_on_worker(&worker)
            .await?
            .into_iter()
            .filter(|j| j.state == JobState::Assigned)
            .filter_map(|j| {
                j.current_attempt().map(|a| Assignment {
                    job: j.id.clone(),
                    attempt: a.number,
                    input: None,
                })
            })
            .filter(|a| {
                !held.contains(&HeldJob {
                    job: a.job.clone(),
                    attempt: a.attempt,
                })
            })
            .collect();
        let now = tokio::time::Instant::now();
        if !found.is_empty() || now >= deadline {
            for a in &mut found {
                a.input = c
                    .blobs
                    .get_small(&layout::input(&a.job))
                    .await?
                    .map(|data| encode_inline(&data));
            }
            return Ok(Json(found));
        }
        // Woken when the jobs loop assigns to this worker; the periodic look
        // covers assignments made by another controller sharing the store.
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.min(now + Duration::from_secs(2))) => {}
            _ = notify.notified() => {}
            _ = c.stopping.cancelled() => return Ok(Json(Vec::new())),
        }
    }
}

/// `GET /v1/jobs/{id}/input`: the input archive, for the worker running it.
pub async fn download_input(
    State(c): State<Ctx>,
    CallerWorker(me): CallerWorker,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_job_id(&id)?;
    let job = load_job(&c, &id).await?;
    if job.worker() != Some(&me) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("job {id} is not assigned to worker {me}"),
        ));
    }
    let stream = c.blobs.get_stream(&layout::input(&id)).await?;
    Ok(Body::from_stream(stream).into_response())
}

#[derive(Deserialize)]
pub struct UploadQuery {
    worker: WorkerId,
}

/// `PUT /v1/jobs/{id}/attempts/{n}/{output|stdout|stderr|worker}?worker=W`: an
/// attempt's output archive or a log, accepted only from the worker holding
/// that attempt while it is current.
pub async fn upload_attempt_blob(
    State(c): State<Ctx>,
    CallerWorker(me): CallerWorker,
    Path((id, attempt, blob)): Path<(String, u32, String)>,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    same_worker(&me, &q.worker)?;
    let id = parse_job_id(&id)?;
    known_worker(&c, &q.worker).await?;
    let key = attempt_blob_key(&id, attempt, &blob)?;
    let job = load_job(&c, &id).await?;
    refused_is_stale(jobs::check_current(&job, &q.worker, attempt).map(|()| job))?;
    let reader =
        tokio_util::io::StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    let limit = c.config.max_output_bytes;
    match c.blobs.put_reader(&key, reader, limit).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(crate::blobs::BlobError::TooLarge { .. }) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{blob} of job {id} attempt {attempt} is over the limit of {limit} bytes"),
        )),
        Err(e) if super::serve::body_stalled(&e) => Err(super::serve::stalled(&format!(
            "{blob} of job {id} attempt {attempt}"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod register_tests {
    use super::registration_refusal;
    use reconcilers::model::{Instance, InstanceId, InstanceState, LaunchKey, Timestamp};

    fn instance(id: &str, state: InstanceState) -> Instance {
        Instance {
            id: InstanceId::new(id),
            launch_key: LaunchKey::new(id),
            state,
            launched_at: Timestamp(0),
            provider_ref: None,
        }
    }

    fn refused(only_recorded: bool, id: &str) -> Option<String> {
        let instances = [
            instance("up", InstanceState::Running),
            instance("booting", InstanceState::Launching),
            instance("going", InstanceState::Terminating),
        ];
        registration_refusal(&instances, &InstanceId::new(id), only_recorded)
    }

    #[test]
    fn an_instance_being_terminated_is_refused_a_registration_on_any_fleet() {
        for only_recorded in [false, true] {
            let why = refused(only_recorded, "going").expect("refused");
            assert!(why.contains("being terminated"), "{why}");
            assert_eq!(refused(only_recorded, "up"), None);
            assert_eq!(refused(only_recorded, "booting"), None);
        }
    }

    #[test]
    fn an_unrecorded_instance_registers_on_the_local_fleet_only() {
        // A worker started by hand next to a local fleet: let in.
        assert_eq!(refused(false, "by-hand"), None);
        // On EC2, an instance the fleet never recorded, or forgot as gone.
        let why = refused(true, "gone").expect("refused");
        assert!(
            why.contains("not one this cluster's fleet launched"),
            "{why}"
        );
    }
}
