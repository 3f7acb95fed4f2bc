//! The submitting side: `drover submit` packs a job (from a JDL file or from
//! flags), asks the controller for a job id, uploads the input archive and
//! submits; the read commands show jobs, wait for them and fetch their output.

pub mod bulk;
pub mod generate;
pub mod pack;
mod progress;
mod show;
pub mod table;

pub use show::{print_job, print_jobs, time};

use crate::api::wire::{encode_inline, INLINE_MAX_BYTES};
use crate::{
    archive::{unpack_tar_gz_file, UnpackLimits},
    client::Client,
};
use anyhow::Context as _;
use futures::StreamExt;
use reconcilers::{
    jdl::JobDescription,
    model::{Job, JobId, JobState},
};
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};
use tokio::io::AsyncWriteExt;

/// A client of the controller at `url` with the submit token: `DROVER_TOKEN`
/// when set, else `submit.token` in the controller's data folder (where an
/// embedded controller makes it on first start). Without either the client
/// goes without, and the controller's 401 says where to find one.
pub fn client(url: &str, data_dir: &Path) -> anyhow::Result<Client> {
    use crate::auth::{read_token_file, Token, SUBMIT_TOKEN_ENV, SUBMIT_TOKEN_FILE};
    let from_env = std::env::var(SUBMIT_TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let token = match from_env {
        Some(t) => Some(t),
        None => {
            let file = data_dir.join(SUBMIT_TOKEN_FILE);
            if file.exists() {
                Some(read_token_file(&file)?)
            } else {
                None
            }
        }
    };
    Ok(Client::new(url).with_token(token.map(Token::new)))
}

/// What to submit.
pub enum JobSource {
    File(PathBuf),
    Flags(Box<JobDescription>),
}

/// Checks everything, then allocates the id, uploads and submits. Nothing is
/// uploaded (and no id is taken) unless every file checks out.
pub async fn submit(
    client: &Client,
    source: &JobSource,
    limits: &pack::PackLimits,
) -> anyhow::Result<Job> {
    let plan = match source {
        JobSource::File(path) => pack::plan_jdl_file(path, limits)?,
        JobSource::Flags(desc) => {
            let here = std::env::current_dir().context("reading the current folder")?;
            pack::plan_description((**desc).clone(), &here, generate::SOURCE_NAME, limits)?
        }
    };
    for w in &plan.job().warnings {
        eprintln!("{w}");
    }
    let (id, archive, packed) = allocate_and_pack(client, plan).await?;
    // A small input goes with the submit request: two requests in all.
    let input = match std::fs::metadata(archive.path()) {
        Ok(m) if m.len() <= INLINE_MAX_BYTES as u64 => Some(encode_inline(
            &std::fs::read(archive.path()).context("reading the input archive back")?,
        )),
        _ => {
            send_archive(client, &id, &archive).await?;
            None
        }
    };
    let job = client
        .submit(&id, packed.jdl, input)
        .await
        .with_context(|| format!("submitting job {id}"))?;
    Ok(job)
}

/// Allocates a job id and uploads the plan's input archive (with a progress bar
/// on a terminal); returns the id and the JDL to submit it with.
pub async fn upload(client: &Client, plan: pack::PackPlan) -> anyhow::Result<(JobId, String)> {
    let (id, archive, packed) = allocate_and_pack(client, plan).await?;
    send_archive(client, &id, &archive).await?;
    Ok((id, packed.jdl))
}

/// Allocates a job id for the plan and packs its input archive.
async fn allocate_and_pack(
    client: &Client,
    plan: pack::PackPlan,
) -> anyhow::Result<(JobId, tempfile::NamedTempFile, pack::PackedJob)> {
    // The controller checks the size first: nothing is sent, and no job made,
    // for an input over its limit.
    let id = client.allocate_for_input(plan.input_bytes()).await?;
    // Packing reads and compresses every input file: blocking work, kept off
    // the async runtime.
    let (archive, packed) = tokio::task::spawn_blocking(move || write_archive(plan))
        .await
        .context("writing the input archive")??;
    Ok((id, archive, packed))
}

/// Uploads a packed input archive (with a progress bar on a terminal).
async fn send_archive(
    client: &Client,
    id: &JobId,
    archive: &tempfile::NamedTempFile,
) -> anyhow::Result<()> {
    let file = tokio::fs::File::open(archive.path())
        .await
        .context("reading the input archive back")?;
    let uploading = || format!("uploading the input archive of job {id}");
    let len = file
        .metadata()
        .await
        .context("reading the input archive back")?
        .len();
    let presigned = client.input_url(id).await.with_context(uploading)?;
    let pb = progress::bytes(Some(len), format!("uploading input of {id}"));
    let chunks = tokio_util::io::ReaderStream::new(file);
    let body = reqwest::Body::wrap_stream(progress::counted(chunks, pb.clone()));
    let sent = match presigned {
        // Blobs on S3: straight to the bucket, no credentials needed.
        Some(url) => client.upload_presigned_body(&url, body, len).await,
        None => client.upload_input(id, body).await,
    };
    pb.finish_and_clear();
    sent.with_context(uploading)?;
    Ok(())
}

/// Writes the plan's input archive to a temporary file (blocking I/O).
fn write_archive(
    plan: pack::PackPlan,
) -> anyhow::Result<(tempfile::NamedTempFile, pack::PackedJob)> {
    let mut archive = tempfile::NamedTempFile::new()
        .context("creating a temporary file for the input archive")?;
    let packed = {
        let mut out = std::io::BufWriter::new(archive.as_file_mut());
        let packed = plan.write_archive(&mut out)?;
        out.flush().context("writing the input archive")?;
        packed
    };
    Ok((archive, packed))
}

/// Waits for every job to finish; long polls, so a finished job is seen at once.
pub async fn wait_all(
    client: &Client,
    ids: &[JobId],
    timeout: Option<Duration>,
) -> anyhow::Result<Vec<Job>> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut done = Vec::with_capacity(ids.len());
    // One job's wait needs no bar; many show how many finished, and how.
    let pb = (ids.len() > 1).then(|| progress::jobs(ids.len() as u64));
    let mut failed = 0;
    for id in ids {
        loop {
            let poll = match deadline {
                Some(d) => d
                    .saturating_duration_since(tokio::time::Instant::now())
                    .min(Duration::from_secs(60)),
                None => Duration::from_secs(60),
            };
            let job = client.wait(id, poll).await?;
            if job.state.is_terminal() {
                if job.state != JobState::Succeeded {
                    failed += 1;
                }
                if let Some(pb) = &pb {
                    pb.inc(1);
                    pb.set_message(format!("({failed} not succeeded)"));
                }
                done.push(job);
                break;
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                if let Some(pb) = &pb {
                    pb.abandon();
                }
                anyhow::bail!(
                    "timed out waiting for job {id} (it is {}): wait longer with --timeout, \
                     or see where it is with `drover status {id}`",
                    job.state
                );
            }
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    Ok(done)
}

/// Downloads the job's output archive and unpacks it into `out` (refusing any
/// entry that would land outside it). Returns the files' count.
pub async fn fetch(client: &Client, id: &JobId, out: &Path) -> anyhow::Result<u64> {
    let resp = client.output(id).await?;
    let mut archive =
        tempfile::NamedTempFile::new().context("creating a temporary file for the download")?;
    {
        let mut file = tokio::fs::File::from_std(archive.as_file_mut().try_clone()?);
        let pb = progress::bytes(resp.content_length(), format!("downloading output of {id}"));
        let mut body = progress::counted(resp.bytes_stream(), pb.clone());
        while let Some(chunk) = body.next().await {
            file.write_all(&chunk.context("downloading the output archive")?)
                .await?;
        }
        file.flush().await?;
        pb.finish_and_clear();
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (path, dest) = (archive.path().to_path_buf(), out.to_path_buf());
    let stats = tokio::task::spawn_blocking(move || {
        unpack_tar_gz_file(&path, &dest, &UnpackLimits::default())
    })
    .await??;
    Ok(stats.entries)
}

/// The exit code `drover run` and `drover wait` leave with for a finished job.
pub fn exit_code_of(job: &Job) -> i32 {
    match job.state {
        JobState::Succeeded => 0,
        _ => match job.exit_code {
            Some(code) if code != 0 => code,
            _ => 1,
        },
    }
}
