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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
}

impl Quota {
    pub(super) fn new(limit: u64, root: &Path) -> Quota {
        Quota {
            limit,
            root: root.to_path_buf(),
            over: Arc::default(),
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

    /// Measures once; true (and noted) if the folder is over the limit.
    pub(super) async fn check(&self) -> bool {
        let root = self.root.clone();
        let used = tokio::task::spawn_blocking(move || disk_use(&root))
            .await
            .unwrap_or(0);
        if used > self.limit {
            self.over.fetch_max(used, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Why the attempt failed, if the quota is what ended it: the folder was
    /// seen over the limit, or a program was killed for a file past it.
    pub(super) fn reason(&self, killed_by: Option<i32>) -> Option<String> {
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

/// Bytes of disk the files under `root` take (allocated blocks: a sparse file
/// counts for what it really uses). Unreadable entries count as nothing.
pub fn disk_use(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            }
            total = total.saturating_add(meta.blocks().saturating_mul(512));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_use_counts_the_blocks_of_every_file_below() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("dirs");
        std::fs::write(dir.path().join("a/b/big"), vec![1u8; 300_000]).expect("write");
        std::fs::write(dir.path().join("small"), b"x").expect("write");
        let used = disk_use(dir.path());
        assert!(used >= 300_000, "{used}");
        assert!(used < 400_000, "{used}");
    }

    #[test]
    fn a_sparse_file_counts_for_what_it_uses_not_its_length() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = std::fs::File::create(dir.path().join("sparse")).expect("create");
        f.set_len(1 << 30).expect("set_len");
        assert!(disk_use(dir.path()) < 1 << 20);
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
