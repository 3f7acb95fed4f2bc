//! The attempt's `worker.log`: what the worker says about the attempt, between
//! the Prologue's and Epilogue's own output.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

/// The attempt's notes in `root/worker.log`. Writing them is best effort: a note
/// that cannot be written must not fail the job.
pub(super) struct WorkerLog {
    file: Option<File>,
    warned: bool,
}

impl WorkerLog {
    pub(super) fn open(path: PathBuf) -> WorkerLog {
        let file = OpenOptions::new().append(true).create(true).open(&path);
        if let Err(e) = &file {
            tracing::warn!(path = %path.display(), "opening the attempt's worker.log: {e}");
        }
        WorkerLog {
            file: file.ok(),
            warned: false,
        }
    }

    pub(super) fn note(&mut self, line: &str) {
        let Some(file) = &mut self.file else { return };
        if let Err(e) = writeln!(file, "drover: {line}") {
            if !std::mem::replace(&mut self.warned, true) {
                tracing::warn!("writing the attempt's worker.log: {e}");
            }
        }
    }
}
