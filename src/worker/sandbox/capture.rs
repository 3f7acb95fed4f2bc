//! The Executable's standard output or error, when the JDL names no file for
//! it: read through a pipe into a `Spill` (memory while small, `root/stdout`
//! past that), so that a quiet job's streams make no file at all.

use crate::worker::process::Output;
use crate::worker::spill::{Spill, Spilled};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(super) struct Capture {
    /// The pipe's write end, handed to the program. Ours must be closed once
    /// the program has it, or the reader never sees the end of the stream.
    write: Option<Arc<OwnedFd>>,
    reader: JoinHandle<Spilled>,
    stop: CancellationToken,
}

impl Capture {
    pub(super) fn start(spill_to: PathBuf) -> std::io::Result<Capture> {
        // Close-on-exec: only the program gets the write end, through its stdout.
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let read = tokio::net::unix::pipe::Receiver::from_owned_fd(read)?;
        let stop = CancellationToken::new();
        let reader = tokio::spawn(drain(read, Spill::new(spill_to), stop.clone()));
        Ok(Capture {
            write: Some(Arc::new(write)),
            reader,
            stop,
        })
    }

    /// Where the program is to write.
    pub(super) fn output(&self) -> Output {
        match &self.write {
            Some(fd) => Output::Pipe(Arc::clone(fd)),
            None => unreachable!("the capture was finished"),
        }
    }

    /// What the program wrote, once it ended (and every copy of the write end
    /// given out with `output` was dropped). A process that left the job's
    /// group may still hold the pipe: after `grace`, what came so far is kept.
    pub(super) async fn finish(mut self, grace: Duration) -> Spilled {
        self.write = None;
        let stop = self.stop.clone();
        let mut reader = self.reader;
        let ended = match tokio::time::timeout(grace, &mut reader).await {
            Ok(ended) => ended,
            Err(_) => {
                stop.cancel();
                reader.await
            }
        };
        ended.unwrap_or_else(|e| {
            tracing::warn!("capturing a job's stream: {e}");
            Spilled::Memory(Vec::new())
        })
    }
}

/// Reads the pipe to its end (or until stopped) into `spill`. A write that
/// fails (a full disk) does not stop the reading: the program must not block
/// on a pipe nobody reads.
async fn drain(
    mut pipe: tokio::net::unix::pipe::Receiver,
    mut spill: Spill,
    stop: CancellationToken,
) -> Spilled {
    let mut buf = vec![0u8; 16 * 1024];
    let mut failed = false;
    loop {
        let n = tokio::select! {
            read = pipe.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            () = stop.cancelled() => break,
        };
        if failed {
            continue;
        }
        let written = if spill.keeps_in_memory(n) {
            spill.write_all(&buf[..n])
        } else {
            // A file write may wait on the disk: not on the worker's one thread,
            // where pings and every other attempt run.
            let chunk = buf[..n].to_vec();
            let wrote = tokio::task::spawn_blocking(move || {
                let written = spill.write_all(&chunk);
                (spill, written)
            })
            .await;
            match wrote {
                Ok((back, written)) => {
                    spill = back;
                    written
                }
                Err(e) => {
                    tracing::warn!("keeping a job's stream: {e}");
                    return Spilled::Memory(Vec::new());
                }
            }
        };
        if let Err(e) = written {
            tracing::warn!("keeping a job's stream: {e}; the rest is dropped");
            failed = true;
        }
    }
    spill.finish()
}
