//! The attempt's `worker.log`: what the worker says about the attempt, between
//! the Prologue's and Epilogue's own output.

use crate::worker::spill::{Spill, Spilled};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The attempt's notes, in memory until a Prologue or Epilogue writes its own
/// output after them (then in `root/worker.log`), so that a plain job's log
/// makes no file. Writing them is best effort: a note that cannot be written
/// must not fail the job.
pub(super) struct WorkerLog {
    spill: Spill,
    warned: bool,
}

impl WorkerLog {
    pub(super) fn new(path: PathBuf) -> WorkerLog {
        WorkerLog {
            spill: Spill::new(path),
            warned: false,
        }
    }

    pub(super) fn note(&mut self, line: &str) {
        let written = writeln!(self.spill, "drover: {line}");
        self.warn_once(written);
    }

    /// The log as a file, for a program to append its output to.
    pub(super) fn as_file(&mut self) -> std::io::Result<&Path> {
        self.spill.to_file()
    }

    /// The whole log.
    pub(super) fn finish(self) -> Spilled {
        self.spill.finish()
    }

    fn warn_once(&mut self, written: std::io::Result<()>) {
        if let Err(e) = written {
            if !std::mem::replace(&mut self.warned, true) {
                tracing::warn!("writing the attempt's worker.log: {e}");
            }
        }
    }
}
