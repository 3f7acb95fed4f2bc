//! The command line (clap): what each command takes, and the dispatch.

mod admin;
mod commands;
mod jdl;

use crate::config::parse_duration;
use clap::{Args, Parser, Subcommand};
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

#[derive(Parser)]
#[command(
    name = "drover",
    version,
    about = "Run batch jobs described in JDL on an elastic fleet of workers",
    after_help = "Examples:\n  \
        drover run manifests/jobs/hello.jdl        run one job on this machine, output in ./<job-id>/\n  \
        drover controller                          start a long-running controller (state in ./.drover/)\n  \
        drover submit manifests/jobs/hello.jdl     submit a job; prints its id\n  \
        drover wait ID && drover fetch ID --out out/\n  \
        drover jdl check job.jdl                   check a JDL file"
)]
pub struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    /// More logging (-v: info, -vv: debug). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct ControllerAddr {
    /// The controller's address.
    #[arg(long, env = crate::client::CONTROLLER_ENV, default_value = "http://127.0.0.1:7700")]
    controller: String,
}

#[derive(Args, Clone, Default)]
pub struct ControllerFlags {
    /// The configuration file (default: ./drover.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the embedded state, blobs and workers live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A worker silent for this long is lost (like 15s or 500ms).
    #[arg(long, value_parser = parse_duration)]
    heartbeat_timeout: Option<Duration>,
    /// How often workers ping.
    #[arg(long, value_parser = parse_duration)]
    ping_interval: Option<Duration>,
    /// How often the reconcile loops run when nothing wakes them.
    #[arg(long, value_parser = parse_duration)]
    reconcile_interval: Option<Duration>,
    #[arg(long)]
    min_workers: Option<u32>,
    #[arg(long)]
    max_workers: Option<u32>,
    /// Jobs one worker runs at once (default: the number of cores).
    #[arg(long)]
    slots_per_worker: Option<u32>,
    /// How long a worker may idle before it is stopped (above min-workers).
    #[arg(long, value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
}

#[derive(Args, Clone, Default)]
pub struct JobFlags {
    /// The program to run (instead of a JDL file).
    #[arg(long, conflicts_with = "file")]
    executable: Option<String>,
    /// One argument of the program (repeatable, in order).
    #[arg(long = "argument", requires = "executable", allow_hyphen_values = true)]
    arguments: Vec<String>,
    /// A file to ship into the sandbox (repeatable).
    #[arg(long = "input", requires = "executable")]
    inputs: Vec<String>,
    /// A script to run before the program (repeatable, in order).
    #[arg(long = "prologue", requires = "executable")]
    prologues: Vec<String>,
    /// A file or glob to bring back in the output archive (repeatable).
    #[arg(long = "output", requires = "executable")]
    outputs: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one job on this machine: an embedded controller and local workers, the
    /// output unpacked into ./<job-id>/; exits with the job's exit code.
    Run {
        /// The job's JDL file.
        file: PathBuf,
        #[command(flatten)]
        controller: ControllerFlags,
    },
    /// The long-running controller: the API, the reconcile loops and local workers.
    Controller {
        /// The address to listen on.
        #[arg(long)]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        flags: ControllerFlags,
    },
    /// The worker agent (started by the controller's fleet).
    Worker(WorkerArgs),
    /// Submit a job from a JDL file or from flags; prints its id alone on stdout.
    Submit {
        /// The job's JDL file.
        #[arg(required_unless_present = "executable")]
        file: Option<PathBuf>,
        #[command(flatten)]
        job: JobFlags,
        #[command(flatten)]
        addr: ControllerAddr,
    },
    /// Show a job: state, exit code, reason and every attempt.
    Status {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        addr: ControllerAddr,
    },
    /// List jobs, newest first.
    Jobs {
        /// Only these states (comma-separated: queued,running,...).
        #[arg(long, default_value = "")]
        state: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        addr: ControllerAddr,
    },
    /// Wait for jobs to finish; exits 0 only if all succeeded.
    Wait {
        #[arg(required = true)]
        ids: Vec<String>,
        /// Give up after this long.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        addr: ControllerAddr,
    },
    /// Download a finished job's output archive and unpack it into a folder.
    Fetch {
        id: String,
        /// The folder to unpack into (default: ./<job-id>/).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        addr: ControllerAddr,
    },
    /// Cancel a job; its worker stops it.
    Cancel {
        id: String,
        #[command(flatten)]
        addr: ControllerAddr,
    },
    /// Print a job's logs.
    Logs {
        id: String,
        /// stdout, stderr or worker (the worker's notes, prologue and epilogue output).
        #[arg(long, default_value = "stdout")]
        stream: String,
        /// Which attempt (default: the latest).
        #[arg(long)]
        attempt: Option<u32>,
        #[command(flatten)]
        addr: ControllerAddr,
    },
    /// Check or format JDL files.
    #[command(subcommand)]
    Jdl(JdlCommand),
    /// Create what the configuration names (DynamoDB tables, S3 bucket, SNS topic);
    /// safe to run twice.
    Init {
        /// The configuration file (default: ./drover.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Report every problem of a configuration file at once; exit 1 if any.
    Check {
        #[arg(long, default_value = crate::config::DEFAULT_CONFIG_FILE)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum JdlCommand {
    /// Print FILE:LINE:COL: error|warning: ... for each problem; exit 1 on any error.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the canonical form of a JDL file.
    Fmt { file: PathBuf },
}

#[derive(Args, Clone)]
pub struct WorkerArgs {
    #[arg(long, env = crate::client::CONTROLLER_ENV)]
    controller: String,
    /// A file with the controller's current address, read again when it cannot be
    /// reached (the local fleet passes it).
    #[arg(long)]
    controller_file: Option<PathBuf>,
    /// This worker's instance id (its worker id too).
    #[arg(long)]
    instance_id: String,
    /// Jobs run at once.
    #[arg(long, default_value_t = 1)]
    slots: u32,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    ping_interval: Duration,
    /// Where attempt folders are made (default: a folder under the system's temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Largest output archive uploaded, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    max_output_bytes: u64,
    /// The cluster tag the local fleet recognises its workers by.
    #[arg(long, default_value = "")]
    cluster: String,
    /// On EC2: read this instance's identity from the instance metadata service
    /// (IMDSv2) and log it (AWS_EC2_METADATA_SERVICE_ENDPOINT overrides where).
    #[arg(long)]
    imds: bool,
    /// When the fleet launched this worker (ms since the epoch), for the fleet's bookkeeping.
    #[arg(long, default_value_t = 0)]
    launched_at: u64,
}

fn init_logging(cli: &Cli, default: &str) {
    use tracing_subscriber::{fmt, EnvFilter};
    let level = match cli.verbose {
        0 => default,
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let long_running = matches!(cli.command, Command::Controller { .. } | Command::Worker(_));
    init_logging(&cli, if long_running { "info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
