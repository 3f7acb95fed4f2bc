//! The sandbox quota: an attempt's folder (its sandbox, its streams, its logs)
//! may hold at most so many bytes on disk. A job that writes past it is stopped
//! and fails saying so, before it fills the worker's disk and takes the worker
//! (and every other attempt on it) down with it.
//!
//! It needs no privileges, so it works wherever the worker runs: the worker
//! looks at the folder's disk use every [`LOOK_EVERY`], and every program of the
//! job runs under RLIMIT_FSIZE = the quota, so no single file can outgrow it
//! between two looks. (A tmpfs or a filesystem quota per sandbox would be
//! exact, but needs root or CAP_SYS_ADMIN, which CI runners and many hosts
//! do not give.)

use super::reclaim::{give_back, READ_AND_SEARCH};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the attempt's folder is measured while a program runs.
pub const LOOK_EVERY: Duration = Duration::from_millis(200);

/// The signal a process gets when it writes past RLIMIT_FSIZE.
const SIGXFSZ: i32 = libc::SIGXFSZ;

#[derive(Debug, Clone)]
pub(super) struct Quota {
    limit: u64,
    root: PathBuf,
    /// The disk use seen over the limit (0 while within it).
    over: Arc<AtomicU64>,
    /// A folder the job made unreadable to the worker, once seen.
    unmeasurable: Arc<Mutex<Option<Unmeasurable>>>,
}

impl Quota {
    pub(super) fn new(limit: u64, root: &Path) -> Quota {
        Quota {
            limit,
            root: root.to_path_buf(),
            over: Arc::default(),
            unmeasurable: Arc::default(),
        }
    }

    pub(super) fn limit(&self) -> u64 {
        self.limit
    }

    /// Measures the folder every [`LOOK_EVERY`] until `stop` fires; once it is
    /// over the limit, notes it and fires `stop` (which stops the program).
    pub(super) fn watch(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let quota = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(LOOK_EVERY) => {}
                    _ = stop.cancelled() => return,
                }
                if quota.check().await {
                    stop.cancel();
                    return;
                }
            }
        })
    }

    /// Measures once; true (and noted) if the folder is over the limit, or
    /// holds a folder that cannot be measured.
    pub(super) async fn check(&self) -> bool {
        let root = self.root.clone();
        let used = tokio::task::spawn_blocking(move || disk_use(&root))
            .await
            .unwrap_or(Ok(0));
        match used {
            Ok(used) if used > self.limit => {
                self.over.fetch_max(used, Ordering::Relaxed);
                true
            }
            Ok(_) => false,
            Err(unmeasurable) => {
                let mut seen = self.unmeasurable.lock().unwrap_or_else(|e| e.into_inner());
                seen.get_or_insert(unmeasurable);
                true
            }
        }
    }

    /// Why the attempt failed, if the quota is what ended it: the folder was
    /// seen over the limit, or a program was killed for a file past it.
    pub(super) fn reason(&self, killed_by: Option<i32>) -> Option<String> {
        let unmeasurable = self.unmeasurable.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Unmeasurable { folder, error }) = unmeasurable.as_ref() {
            let folder = folder.strip_prefix(&self.root).unwrap_or(folder);
            return Some(format!(
                "the job made its folder {} unreadable to the worker ({error}), so its disk use \
                 cannot be held to the worker's limit of {} bytes per attempt (max_sandbox_bytes)",
                folder.display(),
                self.limit
            ));
        }
        let over = self.over.load(Ordering::Relaxed);
        if over > 0 {
            return Some(format!(
                "the job filled its sandbox: it used {over} bytes of disk, over the worker's \
                 limit of {} bytes per attempt (max_sandbox_bytes)",
                self.limit
            ));
        }
        (killed_by == Some(SIGXFSZ)).then(|| {
            format!(
                "the job filled its sandbox: a file it wrote reached the worker's limit of {} \
                 bytes per attempt (max_sandbox_bytes; killed by SIGXFSZ)",
                self.limit
            )
        })
    }
}

/// A folder of the attempt the worker could not look into, even after giving
/// itself the rights back: what it holds cannot be measured, so it counts as
/// over the quota (else a job could hide a full disk in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmeasurable {
    pub folder: PathBuf,
    pub error: String,
}

/// Bytes of disk the files under `root` take (allocated blocks: a sparse file
/// counts for what it really uses). A folder the job locked (`chmod 000`) is
/// opened again for the worker's user first (u+rx; the worker owns the job's
/// files); one that still cannot be read is [`Unmeasurable`]. Entries removed
/// while the walk runs count as nothing; links are not followed.
pub fn disk_use(root: &Path) -> Result<u64, Unmeasurable> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut total = 0u64;
    let root_mode = match std::fs::symlink_metadata(root) {
        Ok(meta) => meta.permissions().mode(),
        Err(_) => return Ok(0),
    };
    let mut stack = vec![(root.to_path_buf(), root_mode)];
    while let Some((dir, mode)) = stack.pop() {
        let unmeasurable = |e: std::io::Error| Unmeasurable {
            folder: dir.clone(),
            error: e.to_string(),
        };
        // Failing here is caught by `read_dir` just below, with the error to show.
        let _ = give_back(&dir, mode, READ_AND_SEARCH);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(unmeasurable(e)),
        };
        for entry in entries {
            let entry = entry.map_err(unmeasurable)?;
            // Not following links, like `DirEntry::metadata` on Unix.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(unmeasurable(e)),
            };
            if meta.is_dir() {
                stack.push((entry.path(), meta.permissions().mode()));
            }
            total = total.saturating_add(meta.blocks().saturating_mul(512));
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::super::reclaim::unprivileged;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn disk_use_counts_the_blocks_of_every_file_below() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("dirs");
        std::fs::write(dir.path().join("a/b/big"), vec![1u8; 300_000]).expect("write");
        std::fs::write(dir.path().join("small"), b"x").expect("write");
        let used = disk_use(dir.path()).expect("measured");
        assert!(used >= 300_000, "{used}");
        assert!(used < 400_000, "{used}");
    }

    #[test]
    fn a_sparse_file_counts_for_what_it_uses_not_its_length() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = std::fs::File::create(dir.path().join("sparse")).expect("create");
        f.set_len(1 << 30).expect("set_len");
        assert!(disk_use(dir.path()).expect("measured") < 1 << 20);
    }

    #[test]
    fn a_folder_the_job_locked_is_opened_again_and_counted() {
        let dir = tempfile::tempdir().expect("tmp");
        let locked = dir.path().join("sandbox/hidden");
        std::fs::create_dir_all(&locked).expect("dirs");
        for i in 0..10 {
            std::fs::write(locked.join(format!("f{i}")), vec![1u8; 100_000]).expect("write");
        }
        let lock = |mode| {
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(mode)).expect("chmod")
        };
        lock(0o000);
        let root = dir.path().to_path_buf();
        let used = unprivileged::run(move || disk_use(&root)).expect("measured");
        assert!(
            used >= 1_000_000,
            "the locked folder's files were not counted: {used}"
        );
        lock(0o100); // search, no read: entries cannot be listed
        let root = dir.path().to_path_buf();
        let used = unprivileged::run(move || disk_use(&root)).expect("measured");
        assert!(used >= 1_000_000, "{used}");
    }

    #[tokio::test]
    async fn a_folder_that_cannot_be_measured_counts_as_over_the_quota() {
        let dir = tempfile::tempdir().expect("tmp");
        let quota = Quota::new(10_000_000, dir.path());
        *quota.unmeasurable.lock().expect("lock") = Some(Unmeasurable {
            folder: dir.path().join("sandbox/d"),
            error: "Permission denied (os error 13)".into(),
        });
        let reason = quota.reason(None).expect("a reason");
        assert!(
            reason.contains("folder sandbox/d unreadable") && reason.contains("10000000 bytes"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn the_reason_names_the_use_and_the_limit() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("f"), vec![0u8; 100_000]).expect("write");
        let quota = Quota::new(10_000, dir.path());
        assert_eq!(quota.reason(None), None);
        assert!(quota.check().await);
        let reason = quota.reason(None).expect("over");
        assert!(reason.contains("filled its sandbox"), "{reason}");
        assert!(reason.contains("limit of 10000 bytes"), "{reason}");
        let within = Quota::new(10_000_000, dir.path());
        assert!(!within.check().await);
        let killed = within.reason(Some(libc::SIGXFSZ)).expect("SIGXFSZ");
        assert!(killed.contains("SIGXFSZ"), "{killed}");
    }
}
