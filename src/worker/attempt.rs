//! One attempt, from the worker's side: say it started, fetch and unpack the
//! input, run the job in its sandbox, upload the logs and the output archive,
//! report the result, and give the folder back (see `folders.rs`).

use super::{
    folders::Folders,
    sandbox::{self, AttemptLimits, AttemptPaths, AttemptResult, JobEnv},
    spill::Spilled,
    WorkerConfig,
};
use crate::{
    api::wire::{decode_inline, encode_inline, Assignment},
    archive::{unpack_job_input, OwnFiles, UnpackLimits, DROVER_DIR},
    client::{Client, ClientError},
};
use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use reconcilers::{
    jdl,
    messages::Message,
    model::{AttemptOutcome, EmptyLogs, JobId, WorkerId},
};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// Where an attempt's input archive is: in the assignment, or downloaded.
enum Input {
    Inline(Vec<u8>),
    File(PathBuf),
}

impl Input {
    /// Unpacks into the sandbox `into`; returns drover's own files (the JDL).
    fn unpack_into(self, into: &Path) -> Result<OwnFiles, String> {
        let limits = UnpackLimits::default();
        let unpacked = match self {
            Input::Inline(data) => unpack_job_input(&data[..], into, &limits),
            Input::File(path) => {
                let file = std::fs::File::open(&path)
                    .map_err(|e| format!("opening {}: {e}", path.display()))?;
                let unpacked = unpack_job_input(std::io::BufReader::new(file), into, &limits);
                let _ = std::fs::remove_file(&path);
                unpacked
            }
        };
        unpacked.map(|(_, own)| own).map_err(|e| e.to_string())
    }
}

/// Logs and output archives up to this size go with the report instead of as
/// uploads of their own: one request per quiet job instead of up to five.
const ATTACH_MAX_BYTES: u64 = crate::api::wire::INLINE_MAX_BYTES as u64;

enum Small {
    Empty,
    Data(Vec<u8>),
    /// Too big to attach, or a file that cannot be read: uploaded (the upload
    /// says why it failed).
    Upload(PathBuf),
}

/// A missing file reads as empty (the program never started).
fn read_if_small(what: Spilled) -> Small {
    match what {
        Spilled::Memory(data) if data.is_empty() => Small::Empty,
        Spilled::Memory(data) => Small::Data(data),
        Spilled::File(path) => match std::fs::metadata(&path) {
            Err(_) => Small::Empty,
            Ok(m) if m.len() == 0 => Small::Empty,
            Ok(m) if m.len() > ATTACH_MAX_BYTES => Small::Upload(path),
            Ok(_) => std::fs::read(&path).map_or(Small::Upload(path), Small::Data),
        },
    }
}

#[derive(Clone)]
pub struct AttemptContext {
    pub client: Client,
    pub config: Arc<WorkerConfig>,
    pub worker: WorkerId,
    /// The worker itself is stopping (SIGTERM): attempts end as `WorkerLost`, so
    /// the controller requeues them at once instead of after the heartbeat timeout.
    pub shutdown: CancellationToken,
    /// Where attempts work, reused from one attempt to the next.
    pub folders: Arc<Folders>,
}

/// Transport failures are retried; answers from the controller are final.
fn transient(e: &ClientError) -> bool {
    !matches!(e, ClientError::Api { status, .. } if status.is_client_error())
}

fn retry_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(8)
}

impl AttemptContext {
    /// Runs the attempt in `slot`, which is given back as soon as the job has
    /// run: reporting its result does not keep the next job waiting.
    pub async fn run(&self, a: Assignment, cancel: CancellationToken, slot: super::Slot) {
        let started_msg = self.started(&a);
        let started = (|| self.client.message::<serde_json::Value>(&started_msg))
            .retry(retry_policy())
            .when(transient)
            .await;
        if let Err(e) = started {
            tracing::info!(job = %a.job, attempt = a.attempt, error = %e, "not starting the attempt");
            return;
        }
        tracing::info!(job = %a.job, attempt = a.attempt, "attempt started");
        let folder = self.folders.take().await;
        let result = match &folder {
            Ok(folder) => self.execute(&a, folder.root(), cancel.clone()).await,
            Err(e) => {
                let reason = format!("making the attempt's folder: {e}");
                let nowhere = AttemptPaths {
                    root: self.config.work_dir.clone(),
                };
                sandbox::failed_before_run(&nowhere, reason).await
            }
        };
        drop(slot);
        if result.outcome == AttemptOutcome::Cancelled && !self.shutdown.is_cancelled() {
            // Stopped because the controller moved on (cancelled, or requeued it):
            // there is nothing to report and nothing of it may be uploaded.
            tracing::info!(job = %a.job, attempt = a.attempt, "attempt stopped");
        } else {
            self.upload_and_report(&a, result).await;
        }
        if let Ok(folder) = folder {
            self.folders.give_back(folder).await;
        }
    }

    fn started(&self, a: &Assignment) -> Message {
        Message::Started {
            worker: self.worker.clone(),
            job: a.job.clone(),
            attempt: a.attempt,
        }
    }

    /// Downloads, unpacks, reads the JDL and runs the job. Failures before the job
    /// can run become `FailedBeforeRun` results with the reason.
    async fn execute(
        &self,
        a: &Assignment,
        dir: &Path,
        cancel: CancellationToken,
    ) -> AttemptResult {
        let paths = AttemptPaths {
            root: dir.to_path_buf(),
        };
        let prepared = self.prepare(a, dir).await;
        let job = match prepared {
            Ok(job) => job,
            Err(reason) => return sandbox::failed_before_run(&paths, reason).await,
        };
        let env = JobEnv::from_worker(vec![
            ("DROVER_JOB_ID".to_string(), a.job.to_string()),
            ("DROVER_ATTEMPT".to_string(), a.attempt.to_string()),
            // Marks the job's processes as this instance's, so that the fleet can
            // find any left behind if the worker dies.
            (
                "DROVER_INSTANCE".to_string(),
                self.config.instance.to_string(),
            ),
        ]);
        let limits = AttemptLimits {
            max_output_bytes: self.config.max_output_bytes,
            max_sandbox_bytes: self.config.max_sandbox_bytes,
            ..AttemptLimits::default()
        };
        let result = sandbox::run_job(&paths, &job, &env, &limits, cancel).await;
        if result.outcome == AttemptOutcome::Cancelled && self.shutdown.is_cancelled() {
            return AttemptResult {
                outcome: AttemptOutcome::WorkerLost,
                reason: Some("the worker was shut down during the attempt".into()),
                ..result
            };
        }
        result
    }

    /// `dir` holds an empty `sandbox` (see `folders.rs`).
    async fn prepare(&self, a: &Assignment, dir: &Path) -> Result<jdl::JobDescription, String> {
        let sandbox_dir = dir.join("sandbox");
        // A small input came with the assignment; a large one is downloaded.
        let input = match &a.input {
            Some(text) => Input::Inline(
                decode_inline(text)
                    .map_err(|e| format!("the assignment's input archive is not base64: {e}"))?,
            ),
            None => {
                let archive = dir.join("input.tar.gz");
                self.download_input(&a.job, &archive)
                    .await
                    .map_err(|e| format!("downloading the input archive: {e}"))?;
                Input::File(archive)
            }
        };
        let into = sandbox_dir.clone();
        let unpacked = tokio::task::spawn_blocking(move || input.unpack_into(&into))
            .await
            .map_err(|e| format!("unpacking the input archive: {e}"))?;
        let mut own = unpacked.map_err(|e| format!("refusing the input archive: {e}"))?;
        // The JDL travels with the input but is not the job's business: the
        // unpack kept it out of the sandbox.
        let text = own
            .remove(&format!("{DROVER_DIR}/job.jdl"))
            .ok_or_else(|| format!("the input archive has no {DROVER_DIR}/job.jdl"))?;
        let text = String::from_utf8(text).map_err(|_| "job.jdl is not UTF-8".to_string())?;
        match jdl::parse_job(&text) {
            Ok((job, _)) => Ok(job),
            Err(diags) => Err(format!(
                "job.jdl is invalid: {}",
                diags
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    }

    async fn download_input(&self, job: &JobId, to: &Path) -> Result<(), String> {
        let fetch = || async {
            let resp = self
                .client
                .download_input(job)
                .await
                .map_err(|e| e.to_string())?;
            let mut file = tokio::fs::File::create(to)
                .await
                .map_err(|e| format!("creating {}: {e}", to.display()))?;
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| format!("reading the download: {e}"))?;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| format!("writing {}: {e}", to.display()))?;
            }
            file.flush()
                .await
                .map_err(|e| format!("writing {}: {e}", to.display()))
        };
        fetch.retry(retry_policy().with_max_times(4)).await
    }

    async fn upload_file(
        &self,
        a: &Assignment,
        blob: &str,
        path: &Path,
    ) -> Result<(), ClientError> {
        let upload = || async {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| ClientError::Other {
                    url: self.client.base(),
                    detail: format!("opening {}: {e}", path.display()),
                })?;
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
            self.client
                .upload_attempt_blob(&a.job, a.attempt, blob, &self.worker, body)
                .await
        };
        upload.retry(retry_policy()).when(transient).await
    }

    async fn upload_and_report(&self, a: &Assignment, mut result: AttemptResult) {
        // An empty log is not uploaded (a quiet job saves three requests): the
        // report says which were empty, and the controller answers those as
        // empty. A log whose upload failed is not among them: it reads as lost.
        // Small logs and a small output ride with the report itself.
        let mut empty_logs = EmptyLogs::default();
        let mut attached = BTreeMap::new();
        for (blob, log, empty) in [
            ("stdout", result.stdout.clone(), &mut empty_logs.stdout),
            ("stderr", result.stderr.clone(), &mut empty_logs.stderr),
            ("worker", result.worker_log.clone(), &mut empty_logs.worker),
        ] {
            match read_if_small(log) {
                Small::Empty => *empty = true,
                Small::Data(data) => {
                    attached.insert(blob.to_string(), encode_inline(&data));
                }
                Small::Upload(path) => {
                    if let Err(e) = self.upload_file(a, blob, &path).await {
                        tracing::warn!(job = %a.job, blob, error = %e, "uploading a log");
                    }
                }
            }
        }
        let mut has_output = false;
        if let Some(archive) = result.output_archive.clone() {
            let upload = match read_if_small(archive.clone()) {
                Small::Data(data) => {
                    attached.insert("output".to_string(), encode_inline(&data));
                    Ok(())
                }
                Small::Upload(path) => self.upload_file(a, "output", &path).await,
                // A packed archive is never empty: its file went missing, and
                // the upload says so.
                Small::Empty => match &archive {
                    Spilled::File(path) => self.upload_file(a, "output", path).await,
                    Spilled::Memory(_) => {
                        attached.insert("output".to_string(), String::new());
                        Ok(())
                    }
                },
            };
            match upload {
                Ok(()) => has_output = true,
                Err(e) if e.status() == Some(reqwest::StatusCode::CONFLICT) => {
                    tracing::info!(job = %a.job, attempt = a.attempt, error = %e, "output refused: the attempt is stale");
                    return;
                }
                // Over the controller's limit: the job's doing, and another try
                // would make the same output. It fails, saying so (a failure
                // before run would be retried as if the worker were at fault).
                Err(e) if e.status() == Some(reqwest::StatusCode::PAYLOAD_TOO_LARGE) => {
                    result.outcome = AttemptOutcome::Failed;
                    result.reason = Some(format!("the output archive was refused: {e}"));
                }
                Err(e) => {
                    // The job's result cannot reach anyone: an infrastructure failure.
                    result.outcome = AttemptOutcome::FailedBeforeRun;
                    result.reason = Some(format!("uploading the output archive failed: {e}"));
                }
            }
        }
        let msg = Message::Finished {
            worker: self.worker.clone(),
            job: a.job.clone(),
            attempt: a.attempt,
            outcome: result.outcome,
            exit_code: result.exit_code,
            reason: result.reason.clone(),
            has_output,
            empty_logs,
            attached,
        };
        let sent = (|| self.client.message::<serde_json::Value>(&msg))
            .retry(retry_policy())
            .when(transient)
            .await;
        match sent {
            Ok(_) => {
                tracing::info!(job = %a.job, attempt = a.attempt, outcome = result.outcome.as_str(), "reported")
            }
            Err(e) => {
                tracing::warn!(job = %a.job, attempt = a.attempt, error = %e, "report refused or lost")
            }
        }
    }
}
