//! The command line (clap): what each command takes, and the dispatch.

mod admin;
mod commands;
mod jdl;
mod records;

use crate::config::parse_duration;
use clap::{Args, Parser, Subcommand, ValueEnum};
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
        drover apply -f manifests/jobs/            make the controller's job records match the manifests\n  \
        drover get                                 the job records and their jobs' states\n  \
        drover jobs                                the newest jobs, as a table\n  \
        drover jdl check job.jdl                   check a JDL file\n\n\
        Shell completions: drover completions bash > ~/.local/share/bash-completion/completions/drover"
)]
pub struct Cli {
    /// How logs (on stderr) are written: human-readable text, or one JSON object a line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// More logging (-v: info, -vv: debug). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Args, Clone)]
pub struct ControllerAddr {
    /// The controller's address.
    #[arg(long, env = crate::client::CONTROLLER_ENV, default_value = "http://127.0.0.1:7700")]
    controller: String,
    /// The controller's data folder, where its submit token is (submit.token);
    /// DROVER_TOKEN, when set, is used instead.
    #[arg(long, default_value = crate::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

impl ControllerAddr {
    /// A client of this controller, with the submit token found as `frontend::client` says.
    fn client(&self) -> anyhow::Result<crate::client::Client> {
        crate::frontend::client(&self.controller, &self.data_dir)
    }
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
    /// Jobs a worker holds per slot beyond the running one, started as soon as
    /// the slot frees (default 1; 0 turns prefetching off).
    #[arg(long)]
    prefetch_per_slot: Option<u32>,
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
    #[command(after_help = "Examples:\n  \
        drover submit manifests/jobs/hello.jdl\n  \
        id=$(drover submit job.jdl) && drover wait $id && drover fetch $id\n  \
        drover submit --executable /bin/sh --argument -c --argument 'echo hi > out.txt' --output out.txt")]
    Submit {
        /// The job's JDL file.
        #[arg(required_unless_present = "executable")]
        file: Option<PathBuf>,
        #[command(flatten)]
        job: JobFlags,
        #[command(flatten)]
        addr: ControllerAddr,
    },
    /// Show a job: state, exit code, reason, worker, timings and every attempt.
    #[command(after_help = "Examples:\n  \
        drover status j0mfz81k2a3b9x\n  \
        drover status j0mfz81k2a3b9x --json | jq .attempts")]
    Status {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        addr: ControllerAddr,
    },
    /// List jobs, newest first, as a table (--json for scripts).
    #[command(after_help = "Examples:\n  \
        drover jobs\n  \
        drover jobs --state queued,running --limit 20\n  \
        drover jobs --state failed --json | jq -r '.[].id'")]
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
    #[command(after_help = "Examples:\n  \
        drover wait j0mfz81k2a3b9x\n  \
        drover wait $(drover jobs --state queued,running --json | jq -r '.[].id') --timeout 30m")]
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
    #[command(after_help = "Examples:\n  \
        drover fetch j0mfz81k2a3b9x                  into ./j0mfz81k2a3b9x/\n  \
        drover fetch j0mfz81k2a3b9x --out results/")]
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
    /// Make the controller's job records match manifests (JDL files), as `kubectl
    /// apply` does: an unchanged manifest is left alone, a changed one whose job
    /// finished becomes a new generation, a changed one whose job is still in
    /// flight is refused unless --replace.
    #[command(
        after_help = "A record's name is the manifest's JobName, else its file's stem. Its hash \
        covers the canonical JDL and the contents of every input file, so editing an input \
        changes it too.\n\n\
        Examples:\n  \
        drover apply -f manifests/jobs/hello.jdl\n  \
        drover apply -f manifests/jobs/             every *.jdl in the folder\n  \
        drover apply -f render.jdl --replace        cancel the running job, submit the changed one\n  \
        drover apply -f manifests/jobs/ --dry-run   say what would happen"
    )]
    Apply {
        /// A manifest, or a folder of them (its *.jdl files); repeatable.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Cancel a job still queued or running whose manifest changed, and submit the new one.
        #[arg(long)]
        replace: bool,
        /// Say what each manifest would do; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        addr: ControllerAddr,
    },
    /// Show job records: generation, current job and its state, manifest hash.
    #[command(
        after_help = "With -f, a MANIFEST column says whether each record still matches \
        the manifest on disk (drift).\n\n\
        Examples:\n  \
        drover get\n  \
        drover get hello\n  \
        drover get -f manifests/jobs/               which manifests changed since applied"
    )]
    Get {
        /// One record (default: all).
        name: Option<String>,
        /// Manifests to compare the records with (files or folders).
        #[arg(short = 'f', long = "file")]
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        addr: ControllerAddr,
    },
    /// Delete a job record, cancelling its job if it is still queued or running
    /// (finished jobs stay, as history).
    #[command(after_help = "Example:\n  drover delete hello")]
    Delete {
        name: String,
        #[command(flatten)]
        addr: ControllerAddr,
    },
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        drover completions bash > ~/.local/share/bash-completion/completions/drover\n  \
        drover completions zsh > \"${fpath[1]}/_drover\"\n  \
        drover completions fish > ~/.config/fish/completions/drover.fish")]
    Completions { shell: clap_complete::Shell },
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
    /// Where attempt folders are made and reused; one worker per folder
    /// (default: a folder of its own under the system's temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Largest output archive uploaded, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    max_output_bytes: u64,
    /// The most disk one attempt's folder may take, in bytes: a job that writes
    /// more is stopped and fails, saying so (default: only the disk's size).
    #[arg(long, env = "DROVER_MAX_SANDBOX_BYTES")]
    max_sandbox_bytes: Option<u64>,
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
    // Colours only for people: a file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if cli.log_format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let long_running = matches!(cli.command, Command::Controller { .. } | Command::Worker(_));
    init_logging(&cli, if long_running { "info" } else { "warn" });
    // The worker waits on the controller and its jobs: one thread does it with
    // less switching between threads (and its blocking work has its own pool).
    let mut builder = match cli.command {
        Command::Worker(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
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
