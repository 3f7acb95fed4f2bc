//! Attempt folders, kept and reused rather than made and deleted per attempt.
//!
//! An attempt works in a folder of its own holding its `sandbox`. Making both
//! and deleting them for every job cost more than a short job itself on a file
//! system without a journal: ext4 then skips, and reads, every inode deleted in
//! the last seconds when it allocates one, and at 10,000 no-op jobs that scan
//! took most of the worker's CPU (docs/performance.md). So a folder given back
//! is emptied and handed to the next attempt, with a sandbox of its own: the
//! old sandbox is moved out and deleted, so that a process that escaped its job
//! (out of its process group, alive after it) is left in a deleted folder as
//! before, never in the next job's. One folder is made per job, not two. A
//! folder the job changed (its rights, a link or another folder in place of
//! the sandbox) or that cannot be emptied is deleted instead, and a folder is
//! checked empty again when taken.
//!
//! The folder names are the worker's own: one worker per work folder, which a
//! lock on the work folder itself (flock) makes sure of.

use super::sandbox;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The folders of one worker, under its work folder.
pub struct Folders {
    work_dir: PathBuf,
    free: Mutex<Vec<Folder>>,
    made: AtomicU64,
    /// Where sandboxes go to be deleted (`<work folder>/.trash`).
    trash: PathBuf,
    /// Held while the worker runs: another worker on the folder is refused.
    _lock: Flock<File>,
}

/// One attempt's folder, as it was made: reused only while it still is.
#[derive(Debug)]
pub struct Folder {
    root: PathBuf,
    root_id: Identity,
    sandbox_id: Identity,
}

/// What tells a folder from another put in its place, or from itself with
/// other rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    mode: u32,
}

impl Identity {
    /// `path` itself (never what a link points at), if it is a folder.
    fn of(path: &Path) -> io::Result<Identity> {
        let meta = fs::symlink_metadata(path)?;
        if !meta.is_dir() {
            return Err(io::Error::other(format!(
                "{} is no longer a folder",
                path.display()
            )));
        }
        Ok(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode(),
        })
    }
}

impl Folder {
    /// The attempt's folder; its `sandbox` is the job's.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn sandbox(&self) -> PathBuf {
        self.root.join("sandbox")
    }

    /// Makes `root` afresh, removing what an earlier run of the worker left there.
    fn make(root: PathBuf) -> io::Result<Folder> {
        sandbox::remove_attempt_dir(&root)?;
        fs::create_dir_all(root.join("sandbox"))?;
        Ok(Folder {
            root_id: Identity::of(&root)?,
            sandbox_id: Identity::of(&root.join("sandbox"))?,
            root,
        })
    }

    /// Still the folders it was made as, with their rights.
    fn unchanged(&self) -> io::Result<()> {
        if Identity::of(&self.root)? != self.root_id
            || Identity::of(&self.sandbox())? != self.sandbox_id
        {
            return Err(io::Error::other(format!(
                "{} was changed by its job",
                self.root.display()
            )));
        }
        Ok(())
    }

    /// Holds nothing but an empty sandbox.
    fn is_clean(&self) -> io::Result<bool> {
        self.unchanged()?;
        let mut root = fs::read_dir(&self.root)?;
        let only_sandbox = match root.next().transpose()? {
            Some(entry) => entry.file_name() == "sandbox" && root.next().is_none(),
            None => false,
        };
        Ok(only_sandbox && fs::read_dir(self.sandbox())?.next().is_none())
    }

    /// Deletes everything in it, the sandbox by way of `trash` (a path of
    /// its own there), and makes a new, empty sandbox.
    fn empty(&mut self, trash: &Path) -> io::Result<()> {
        self.unchanged()?;
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if entry.file_name() == "sandbox" {
                continue;
            }
            // `file_type` does not follow links: a link is removed, not entered.
            if entry.file_type()?.is_dir() {
                sandbox::remove_attempt_dir(&entry.path())?;
            } else {
                fs::remove_file(entry.path())?;
            }
        }
        fs::rename(self.sandbox(), trash)?;
        let removed = sandbox::remove_attempt_dir(trash);
        fs::create_dir(self.sandbox())?;
        self.sandbox_id = Identity::of(&self.sandbox())?;
        removed
    }
}

impl Folders {
    /// Takes `work_dir` (made if missing) for this worker, and deletes what an
    /// earlier run of a worker left there.
    pub fn open(work_dir: &Path) -> io::Result<Arc<Folders>> {
        fs::create_dir_all(work_dir)?;
        let lock = Flock::lock(File::open(work_dir)?, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| {
                io::Error::other(format!(
                    "{} is in use by another worker ({errno}): give each worker a work folder of its own",
                    work_dir.display()
                ))
            })?;
        for entry in fs::read_dir(work_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("attempt-") || name == ".trash" {
                sandbox::remove_attempt_dir(&entry.path())?;
            }
        }
        let trash = work_dir.join(".trash");
        fs::create_dir(&trash)?;
        Ok(Arc::new(Folders {
            work_dir: work_dir.to_path_buf(),
            free: Mutex::new(Vec::new()),
            made: AtomicU64::new(0),
            trash,
            _lock: lock,
        }))
    }

    /// A folder holding nothing but an empty `sandbox`, for one attempt.
    pub async fn take(self: &Arc<Self>) -> io::Result<Folder> {
        let folders = Arc::clone(self);
        tokio::task::spawn_blocking(move || folders.take_blocking())
            .await
            .map_err(io::Error::other)?
    }

    fn take_blocking(&self) -> io::Result<Folder> {
        while let Some(folder) = self.lock().pop() {
            if folder.is_clean().unwrap_or(false) {
                return Ok(folder);
            }
            discard(&folder);
        }
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        Folder::make(self.work_dir.join(format!("attempt-{n}")))
    }

    /// Empties `folder` for the next attempt, or deletes it if it cannot be.
    pub async fn give_back(self: &Arc<Self>, mut folder: Folder) {
        let folders = Arc::clone(self);
        let emptied = tokio::task::spawn_blocking(move || {
            let trash = folders.trash.join(folder.root.file_name().unwrap_or_default());
            match folder.empty(&trash) {
                Ok(()) => folders.lock().push(folder),
                Err(e) => {
                    tracing::info!(folder = %folder.root.display(), error = %e, "deleting an attempt folder instead of reusing it");
                    discard(&folder);
                    let _ = sandbox::remove_attempt_dir(&trash);
                }
            }
        })
        .await;
        if let Err(e) = emptied {
            tracing::warn!(error = %e, "emptying an attempt folder");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Folder>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Deletes a folder that will not be reused (it keeps its number: a new one
/// gets the next).
fn discard(folder: &Folder) {
    if let Err(e) = sandbox::remove_attempt_dir(&folder.root) {
        tracing::warn!(folder = %folder.root.display(), error = %e, "removing an attempt folder");
    }
}

#[cfg(test)]
#[path = "folders_tests.rs"]
mod tests;
