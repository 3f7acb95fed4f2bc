//! What each command does. Exit codes: the job's for `run`; 0/1 for `wait` (all
//! succeeded or not) and `jdl check` (no error or some); 2 when drover itself
//! could not do what was asked.

use super::{Command, ConfigCommand, ControllerFlags, JdlCommand, JobFlags, WorkerArgs};
use crate::{
    client::Client,
    config::{ConfigFile, ControllerConfig, DEFAULT_CONFIG_FILE},
    frontend::{self, generate, pack::PackLimits, JobSource},
};
use anyhow::Context as _;
use reconcilers::model::{InstanceId, JobId};
use std::{path::PathBuf, time::Duration};
use tokio_util::sync::CancellationToken;

pub async fn dispatch(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Run { file, controller } => run(file, controller).await,
        Command::Controller { listen, flags } => {
            let mut config = controller_config(&flags)?;
            if let Some(addr) = listen {
                config.listen = addr;
            }
            serve(config).await
        }
        Command::Worker(args) => worker(args).await,
        Command::Submit { file, job, addr } => {
            let client = addr.client()?;
            // A parametric JDL makes many jobs: one id a line, printed batch by batch.
            let source = job_source(file, job);
            frontend::bulk::submit_source(&client, &source, &PackLimits::default(), |ids| {
                for id in ids {
                    println!("{id}");
                }
            })
            .await?;
            Ok(0)
        }
        Command::Status { id, json, addr } => {
            let job = addr.client()?.job(&job_id(&id)?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                frontend::print_job(&job);
            }
            Ok(0)
        }
        Command::Jobs {
            state,
            limit,
            json,
            addr,
        } => {
            let jobs = addr.client()?.jobs(&state, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                frontend::print_jobs(&jobs);
            }
            Ok(0)
        }
        Command::Wait {
            ids,
            timeout,
            json,
            addr,
        } => {
            let ids = ids
                .iter()
                .map(|s| job_id(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let jobs = frontend::wait_all(&addr.client()?, &ids, timeout).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                for j in &jobs {
                    let exit = j
                        .exit_code
                        .map_or(String::new(), |c| format!(" (exit code {c})"));
                    let why = j
                        .reason
                        .as_deref()
                        .map_or(String::new(), |r| format!(": {r}"));
                    println!("{} {}{exit}{why}", j.id, j.state);
                }
            }
            let all_ok = jobs
                .iter()
                .all(|j| j.state == reconcilers::model::JobState::Succeeded);
            Ok(if all_ok { 0 } else { 1 })
        }
        Command::Fetch { id, out, addr } => {
            let id = job_id(&id)?;
            let out = out.unwrap_or_else(|| PathBuf::from(id.as_str()));
            let n = frontend::fetch(&addr.client()?, &id, &out).await?;
            println!("{} entries of job {id}'s output in {}", n, out.display());
            Ok(0)
        }
        Command::Cancel { id, addr } => {
            let job = addr.client()?.cancel(&job_id(&id)?).await?;
            println!("{} {}", job.id, job.state);
            Ok(0)
        }
        Command::Logs {
            id,
            stream,
            attempt,
            addr,
        } => {
            let text = addr.client()?.logs(&job_id(&id)?, &stream, attempt).await?;
            print!("{text}");
            Ok(0)
        }
        Command::Apply {
            files,
            replace,
            dry_run,
            addr,
        } => super::records::apply(&addr.client()?, &files, replace, dry_run).await,
        Command::Get {
            name,
            files,
            json,
            addr,
        } => super::records::get(&addr.client()?, name.as_deref(), &files, json).await,
        Command::Delete { name, addr } => super::records::delete(&addr.client()?, &name).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = super::Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "drover", &mut script);
            // A closed pipe (`| head`) is the reader's choice, not a failure.
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(e).context("writing the completion script")?
                }
                _ => {}
            }
            Ok(0)
        }
        Command::Jdl(JdlCommand::Check { files }) => Ok(super::jdl::check(&files)),
        Command::Jdl(JdlCommand::Fmt { file }) => super::jdl::fmt(&file),
        Command::Config(ConfigCommand::Check { config }) => Ok(super::admin::print_check(&config)),
        Command::Init { config } => {
            let flags = ControllerFlags {
                config,
                ..ControllerFlags::default()
            };
            super::admin::init(&controller_config(&flags)?).await?;
            Ok(0)
        }
    }
}

fn job_id(s: &str) -> anyhow::Result<JobId> {
    anyhow::ensure!(
        JobId::is_valid(s),
        "`{s}` is not a job id (ids look like j0mfz81k2a3b9x)"
    );
    Ok(JobId::new(s))
}

fn job_source(file: Option<PathBuf>, flags: JobFlags) -> JobSource {
    match (file, flags.executable) {
        (Some(path), _) => JobSource::File(path),
        (None, Some(exe)) => JobSource::Flags(Box::new(generate::description_from_flags(
            &exe,
            &flags.arguments,
            &flags.inputs,
            &flags.prologues,
            &flags.outputs,
        ))),
        // clap requires one of the two.
        (None, None) => JobSource::File(PathBuf::new()),
    }
}

/// Defaults, then the config file, then the flags.
fn controller_config(flags: &ControllerFlags) -> anyhow::Result<ControllerConfig> {
    let (path, required) = match &flags.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    let mut c = ControllerConfig::from_file(ConfigFile::load(&path, required)?)?;
    if let Some(v) = &flags.data_dir {
        c.data_dir = v.clone();
    }
    if let Some(v) = flags.heartbeat_timeout {
        c.heartbeat_timeout = v;
    }
    if let Some(v) = flags.ping_interval {
        c.ping_interval = v;
    }
    if let Some(v) = flags.reconcile_interval {
        c.reconcile_interval = v;
    }
    if let Some(v) = flags.min_workers {
        c.fleet.min_workers = v;
    }
    if let Some(v) = flags.max_workers {
        c.fleet.max_workers = v;
    }
    if let Some(v) = flags.slots_per_worker {
        c.fleet.slots_per_worker = v;
    }
    if let Some(v) = flags.prefetch_per_slot {
        c.prefetch_per_slot = v;
    }
    if let Some(v) = flags.idle_timeout {
        c.fleet.idle_timeout_ms = v.as_millis() as u64;
    }
    c.validate()?;
    Ok(c)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn serve(config: ControllerConfig) -> anyhow::Result<u8> {
    let running = crate::runtime::start(config).await?;
    eprintln!("drover controller listening on {}", running.url());
    shutdown_signal().await;
    eprintln!("shutting down: stopping workers");
    running.shutdown().await;
    Ok(0)
}

/// `drover run FILE`: an embedded controller on a free loopback port, one job,
/// its output in ./<job-id>/, then shutdown; exits with the job's exit code.
async fn run(file: PathBuf, flags: ControllerFlags) -> anyhow::Result<u8> {
    let mut config = controller_config(&flags)?;
    config.listen = "127.0.0.1:0".parse()?;
    // Nothing waits for workers here: a job needs one at once.
    config.reconcile_interval = config.reconcile_interval.min(Duration::from_millis(500));
    let limits = PackLimits {
        max_input_bytes: config.max_input_bytes,
    };
    let running = crate::runtime::start(config).await?;
    let client = Client::new(&running.url()).with_token(Some(crate::auth::Token::new(
        running.controller.auth.submit_token(),
    )));
    let outcome = async {
        let job = frontend::submit(&client, &JobSource::File(file.clone()), &limits).await?;
        eprintln!("job {} submitted; running it", job.id);
        let job = tokio::select! {
            done = frontend::wait_all(&client, std::slice::from_ref(&job.id), None) => done?.remove(0),
            _ = shutdown_signal() => {
                client.cancel(&job.id).await?;
                anyhow::bail!("interrupted: job {} cancelled", job.id);
            }
        };
        let out = PathBuf::from(job.id.as_str());
        let fetched = if job.output_attempt().is_some() {
            Some(frontend::fetch(&client, &job.id, &out).await?)
        } else {
            None
        };
        Ok::<_, anyhow::Error>((job, fetched, out))
    }
    .await;
    running.shutdown().await;
    let (job, fetched, out) = outcome?;
    let exit = job
        .exit_code
        .map_or(String::new(), |c| format!(", exit code {c}"));
    let why = job
        .reason
        .as_deref()
        .map_or(String::new(), |r| format!(": {r}"));
    eprintln!("job {} {}{exit}{why}", job.id, job.state);
    match fetched {
        Some(_) => println!("{}", std::path::absolute(&out).unwrap_or(out).display()),
        None => eprintln!("job {} left no output archive", job.id),
    }
    Ok(frontend::exit_code_of(&job).clamp(0, 255) as u8)
}

async fn worker(args: WorkerArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        reconcilers::model::JobId::is_valid(&args.instance_id),
        "--instance-id `{}` must be letters, digits, - or _",
        args.instance_id
    );
    let work_dir = match args.work_dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("drover-worker-{}", args.instance_id)),
    };
    // By environment, never a flag: the command line is readable by every user.
    let token = std::env::var(crate::auth::WORKER_TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .with_context(|| {
            format!(
                "{} is not set: a worker gets its token from the controller's fleet that starts it",
                crate::auth::WORKER_TOKEN_ENV
            )
        })?;
    // Jobs run with their sandbox as current folder: every path must be absolute.
    let work_dir = std::path::absolute(&work_dir)
        .with_context(|| format!("resolving {}", work_dir.display()))?;
    let config = crate::worker::WorkerConfig {
        controller: args.controller,
        controller_file: args.controller_file,
        instance: InstanceId::new(args.instance_id),
        slots: args.slots.max(1),
        ping_interval: args.ping_interval,
        work_dir,
        max_output_bytes: args.max_output_bytes,
        max_sandbox_bytes: args.max_sandbox_bytes,
        token: crate::auth::Token::new(token),
    };
    #[cfg(feature = "aws")]
    if args.imds {
        match crate::metadata::identity(None).await {
            Ok(id) => tracing::info!(
                ec2_instance = %id.instance_id,
                region = %id.region,
                public_hostname = id.public_hostname.as_deref().unwrap_or("-"),
                "running on EC2"
            ),
            Err(e) => tracing::warn!(error = %e, "--imds: no instance identity"),
        }
    }
    #[cfg(not(feature = "aws"))]
    if args.imds {
        tracing::warn!("--imds: this drover was built without AWS support");
    }
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("signal received: stopping jobs");
        stop.cancel();
    });
    crate::worker::run(config, shutdown)
        .await
        .context("worker")?;
    Ok(0)
}
