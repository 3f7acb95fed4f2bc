//! How the attempt's failures read to the job's owner.

use crate::worker::process::{ProcessError, ProcessExit};
use std::io;
use std::path::Path;

/// "exited with code 1" or "was killed by signal 9 (SIGKILL)".
pub(super) fn ended(exit: &ProcessExit) -> String {
    match (exit.code, exit.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by {}", signal_name(signal)),
        (None, None) => "ended without an exit code".to_string(),
    }
}

pub(super) fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => format!("signal {signal} ({s})"),
        Err(_) => format!("signal {signal}"),
    }
}

pub(super) fn start_failure(what: &str, name: &str, err: &ProcessError) -> String {
    match err.io_error() {
        Some(e) if is_no_space(e) => {
            format!("no space left on device while starting {what} `{name}`")
        }
        _ if what == "Executable" => err.to_string(),
        _ => format!("{what} `{name}` could not start: {err}"),
    }
}

/// No blocks or no inodes left for the worker's user on the sandbox's disk.
pub(super) fn disk_is_full(path: &Path) -> bool {
    nix::sys::statvfs::statvfs(path)
        .is_ok_and(|fs| fs.blocks_available() == 0 || fs.files_available() == 0)
}

pub(super) fn is_no_space(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// A worker-side I/O failure as a reason; a full disk says so plainly.
pub(super) fn io_reason(doing: &str, err: &io::Error) -> String {
    if is_no_space(err) {
        format!("no space left on device while {doing}")
    } else {
        format!("{doing}: {err}")
    }
}
