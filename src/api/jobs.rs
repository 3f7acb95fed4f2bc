//! Submitter endpoints: allocate, upload input, submit, status, list, wait,
//! cancel, output, logs.

mod missing_log;

use super::{wire::*, ApiError, Ctx};
use crate::blobs::{layout, LogStream};
use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use futures::TryStreamExt;
use reconcilers::{
    jdl::{self, JobType},
    jobs,
    model::{Job, JobId, JobState},
};
use serde::Deserialize;
use std::time::Duration;

pub fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    if JobId::is_valid(raw) {
        Ok(JobId::new(raw))
    } else {
        Err(ApiError::bad_request(format!("`{raw}` is not a job id")))
    }
}

pub async fn load_job(c: &Ctx, id: &JobId) -> Result<Job, ApiError> {
    c.store
        .get_job(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))
}

/// `POST /v1/jobs`: a new job id, recorded as `Created` before anything is uploaded.
/// A client that says how big its input is learns here that it is over the
/// limit, before it uploads anything and before a job is made.
pub async fn allocate(
    State(c): State<Ctx>,
    req: Option<Json<AllocateRequest>>,
) -> Result<(StatusCode, Json<Allocated>), ApiError> {
    let limit = c.config.max_input_bytes;
    if let Some(bytes) = req.and_then(|Json(r)| r.input_bytes) {
        if bytes > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the job's input is {bytes} bytes, over this controller's limit of {limit} \
                     bytes ([limits] max_input_bytes): nothing was uploaded and no job was made"
                ),
            ));
        }
    }
    loop {
        let now = c.now();
        let job = Job::new(crate::ids::new_job_id(now), now);
        match c.store.create_job(&job).await {
            Ok(()) => return Ok((StatusCode::CREATED, Json(Allocated { id: job.id }))),
            // Two allocations in one millisecond drew the same noise: draw again.
            Err(crate::store::StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `PUT /v1/jobs/{id}/input`: the input archive, streamed, within the size limit.
pub async fn upload_input(
    State(c): State<Ctx>,
    Path(id): Path<String>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let id = parse_job_id(&id)?;
    let job = load_job(&c, &id).await?;
    if job.state != JobState::Created {
        return Err(ApiError::conflict(format!(
            "job {id} is {}; its input can only be uploaded before it is submitted",
            job.state
        )));
    }
    let reader =
        tokio_util::io::StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    let limit = c.config.max_input_bytes;
    match c.blobs.put_reader(&layout::input(&id), reader, limit).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(crate::blobs::BlobError::TooLarge { .. }) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("input archive of job {id} is over the limit of {limit} bytes"),
        )),
        Err(e) if super::serve::body_stalled(&e) => Err(super::serve::stalled(&format!(
            "the input archive of job {id}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `POST /v1/jobs/{id}/input-url`: a presigned URL the client uploads its input
/// archive to directly (blobs on S3), so it needs no AWS credentials of its own
/// and the archive does not pass through the controller. 404 where blobs are local.
pub async fn input_url(
    State(c): State<Ctx>,
    Path(id): Path<String>,
) -> Result<Json<InputUrl>, ApiError> {
    let id = parse_job_id(&id)?;
    let job = load_job(&c, &id).await?;
    if job.state != JobState::Created {
        return Err(ApiError::conflict(format!(
            "job {id} is {}; its input is already submitted",
            job.state
        )));
    }
    let expires_in = Duration::from_secs(15 * 60);
    match c
        .blobs
        .presigned_put(&layout::input(&id), expires_in)
        .await?
    {
        Some(url) => Ok(Json(InputUrl {
            url: url.to_string(),
            expires_in_secs: expires_in.as_secs(),
        })),
        None => Err(ApiError::not_found(format!(
            "blobs are not on S3: upload the input of job {id} with PUT /v1/jobs/{id}/input"
        ))),
    }
}

/// `POST /v1/jobs/{id}/submit`: the JDL; the job becomes `Queued`. The controller
/// reads the JDL itself rather than trusting what a client derived from it.
pub async fn submit(
    State(c): State<Ctx>,
    Path(id): Path<String>,
    Json(req): Json<SubmitRequest>,
) -> Result<Json<Job>, ApiError> {
    let id = parse_job_id(&id)?;
    let desc = match jdl::parse_job(&req.jdl) {
        Ok((desc, _warnings)) => desc,
        Err(diags) => {
            let lines: Vec<String> = diags
                .iter()
                .filter(|d| d.is_error())
                .map(|d| format!("job.jdl:{d}"))
                .collect();
            return Err(ApiError::bad_request(format!(
                "the JDL has errors:\n{}",
                lines.join("\n")
            )));
        }
    };
    if desc.job_type != JobType::Normal {
        return Err(ApiError::bad_request(format!(
            "job type {:?} parses but is not run by drover yet; submit plain jobs",
            desc.job_type
        )));
    }
    let max_input = c.config.max_input_bytes;
    let jdl = (layout::jdl(&id), bytes::Bytes::from(req.jdl));
    match &req.input {
        // Sent along, stored with the JDL in one go; as an upload, only before
        // the job is submitted (a submit sent again leaves the input as it was).
        Some(text) => {
            let input = (layout::input(&id), inline_input(&id, text, max_input)?);
            let blobs = match load_job(&c, &id).await?.state {
                JobState::Created => vec![input, jdl],
                _ => vec![jdl],
            };
            c.blobs.put_many(blobs).await?;
        }
        None => {
            check_uploaded_input(&c, &id, max_input, "submitting").await?;
            c.blobs.put_bytes(&jdl.0, jdl.1).await?;
        }
    }
    let spec = jobs::job_spec(&desc);
    let now = c.now();
    let job = c
        .change_job(&id, |job| jobs::submit(job, spec.clone(), now))
        .await??;
    c.wake.jobs.notify_one();
    c.wake.fleet.notify_one();
    c.hint(reconcilers::messages::Message::JobSubmitted { job: id.clone() });
    tracing::info!(job = %id, "submitted");
    Ok(Json(job))
}

/// An input archive sent with a submit (base64), within the same limit as an
/// upload.
pub(super) fn inline_input(id: &JobId, text: &str, limit: u64) -> Result<bytes::Bytes, ApiError> {
    let data = decode_inline(text)
        .map_err(|e| ApiError::bad_request(format!("the input of job {id} is not base64: {e}")))?;
    match data.len() as u64 {
        n if n > limit => Err(input_too_large(id, n, limit)),
        _ => Ok(data.into()),
    }
}

/// That the input archive of `id` was uploaded (`PUT /v1/jobs/{id}/input`) and
/// is within `limit`: a presigned upload bypasses the controller, so the limit
/// is checked here. `before` names what waits for it ("submitting").
pub(super) async fn check_uploaded_input(
    c: &Ctx,
    id: &JobId,
    limit: u64,
    before: &str,
) -> Result<(), ApiError> {
    match c.blobs.size(&layout::input(id)).await? {
        None => Err(ApiError::conflict(format!(
            "job {id} has no input archive yet: upload it (PUT /v1/jobs/{id}/input) before {before}"
        ))),
        Some(n) if n > limit => Err(input_too_large(id, n, limit)),
        Some(_) => Ok(()),
    }
}

fn input_too_large(id: &JobId, n: u64, limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("input archive of job {id} is {n} bytes, over the limit of {limit} bytes"),
    )
}

pub async fn status(State(c): State<Ctx>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    let id = parse_job_id(&id)?;
    Ok(Json(load_job(&c, &id).await?))
}

#[derive(Deserialize)]
pub struct ListQuery {
    /// Comma-separated states.
    state: Option<String>,
    limit: Option<usize>,
}

pub async fn list(
    State(c): State<Ctx>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Job>>, ApiError> {
    let mut states = Vec::new();
    for s in q
        .state
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
    {
        states.push(JobState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`{s}` is not a job state (one of created, queued, assigned, running, succeeded, failed, cancelled)"
            ))
        })?);
    }
    let filter = crate::store::JobFilter {
        states,
        limit: Some(q.limit.unwrap_or(1000)),
    };
    Ok(Json(c.store.list_jobs(&filter).await?))
}

#[derive(Deserialize)]
pub struct WaitQuery {
    /// How long to wait for the job to finish, at most, in milliseconds.
    timeout_ms: Option<u64>,
}

/// `GET /v1/jobs/{id}/wait`: answers when the job has finished or the timeout
/// passed, whichever comes first; the client looks at the state and asks again.
pub async fn wait(
    State(c): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Job>, ApiError> {
    let id = parse_job_id(&id)?;
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(30_000).min(120_000));
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changes = c.wake.watch_jobs();
    loop {
        changes.borrow_and_update();
        let job = load_job(&c, &id).await?;
        if job.state.is_terminal() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(job));
        }
        // Woken by any job change in this process; the periodic look covers
        // changes made by another controller sharing the store.
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + Duration::from_secs(1))) => {}
            _ = changes.changed() => {}
            _ = c.stopping.cancelled() => return Ok(Json(job)),
        }
    }
}

pub async fn cancel(State(c): State<Ctx>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    let id = parse_job_id(&id)?;
    let now = c.now();
    let before = load_job(&c, &id).await?;
    let job = c
        .change_job(&id, |job| Ok::<_, ApiError>(jobs::cancel(job, now)))
        .await??;
    if let Some(w) = before.worker() {
        c.wake.wake_worker(w);
    }
    Ok(Json(job))
}

fn stream_blob(
    stream: futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>,
    content_type: &str,
) -> Response {
    (
        [(header::CONTENT_TYPE, content_type.to_string())],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `GET /v1/jobs/{id}/output`: the output archive of the attempt the job accepted.
pub async fn output(State(c): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_job_id(&id)?;
    let job = load_job(&c, &id).await?;
    let Some(attempt) = job.output_attempt() else {
        let why = if job.state.is_terminal() {
            "no attempt uploaded an output archive".to_string()
        } else {
            format!("it is {}; wait for it with `drover wait {id}`", job.state)
        };
        return Err(ApiError::not_found(format!(
            "job {id} has no output: {why}"
        )));
    };
    let stream = c.blobs.get_stream(&layout::output(&id, attempt)).await?;
    Ok(stream_blob(stream, "application/gzip"))
}

#[derive(Deserialize)]
pub struct LogsQuery {
    attempt: Option<u32>,
    stream: Option<String>,
}

/// `GET /v1/jobs/{id}/logs?stream=stdout|stderr|worker&attempt=N`: one stream of
/// one attempt (default: stdout of the latest attempt).
pub async fn logs(
    State(c): State<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let id = parse_job_id(&id)?;
    let job = load_job(&c, &id).await?;
    let name = q.stream.as_deref().unwrap_or("stdout");
    let stream = LogStream::parse(name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`{name}` is not a log stream (stdout, stderr or worker)"
        ))
    })?;
    let attempt = match q.attempt {
        Some(n) => n,
        None => job.current_attempt().map(|a| a.number).ok_or_else(|| {
            ApiError::not_found(format!("job {id} has not run yet ({})", job.state))
        })?,
    };
    match c.blobs.get_stream(&layout::log(&id, attempt, stream)).await {
        Ok(s) => Ok(stream_blob(s, "text/plain; charset=utf-8")),
        // Workers do not upload empty logs: `missing_log` tells those from lost ones.
        Err(crate::blobs::BlobError::NotFound(_)) => {
            match missing_log::missing_log(&job, attempt, stream, name) {
                missing_log::MissingLog::Empty => Ok(stream_blob(
                    Box::pin(futures::stream::empty()),
                    "text/plain; charset=utf-8",
                )),
                missing_log::MissingLog::NotThere(why) => Err(ApiError::not_found(why)),
            }
        }
        Err(e) => Err(e.into()),
    }
}
