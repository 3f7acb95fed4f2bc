//! Attempt folders, kept and reused rather than made and deleted per attempt.
//!
//! An attempt works in a folder of its own holding its `sandbox`. Making both
//! and deleting them for every job cost more than a short job itself on a file
//! system without a journal: ext4 then skips, and reads, every inode deleted in
//! the last seconds when it allocates one, and at 10,000 no-op jobs that scan
//! took most of the worker's CPU (docs/performance.md). So a folder given back
//! is emptied and handed to the next attempt. One the job changed (its rights,
//! a link or another folder in place of the sandbox) or that cannot be emptied
//! is deleted instead, and a folder is checked empty again when taken: a
//! process that escaped its job could have written into it since.

use super::sandbox;
use std::fs;
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

    /// Deletes everything in it but the sandbox folder itself.
    fn empty(&self) -> io::Result<()> {
        self.unchanged()?;
        for dir in [self.root.clone(), self.sandbox()] {
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                if dir == self.root && entry.file_name() == "sandbox" {
                    continue;
                }
                // `file_type` does not follow links: a link is removed, not entered.
                if entry.file_type()?.is_dir() {
                    sandbox::remove_attempt_dir(&entry.path())?;
                } else {
                    fs::remove_file(entry.path())?;
                }
            }
        }
        self.unchanged()
    }
}

impl Folders {
    pub fn new(work_dir: PathBuf) -> Arc<Folders> {
        Arc::new(Folders {
            work_dir,
            free: Mutex::new(Vec::new()),
            made: AtomicU64::new(0),
        })
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
    pub async fn give_back(self: &Arc<Self>, folder: Folder) {
        let folders = Arc::clone(self);
        let emptied = tokio::task::spawn_blocking(move || match folder.empty() {
            Ok(()) => folders.lock().push(folder),
            Err(e) => {
                tracing::info!(folder = %folder.root.display(), error = %e, "deleting an attempt folder instead of reusing it");
                discard(&folder);
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
