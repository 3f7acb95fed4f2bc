//! Taking an attempt's folder back from its job. The job runs as the worker's
//! user, so it may `chmod 000` folders of its own; the worker owns them too and
//! can give itself the rights back: to measure them (the quota must see every
//! file) and to delete them (a folder left behind would keep the disk full for
//! every later attempt on the worker).
//!
//! Symbolic links are never followed: a job's link to `/` must not send the
//! worker walking, or changing rights, anywhere outside the attempt's folder.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The owner's read and search rights: enough to list a folder and stat its entries.
pub(super) const READ_AND_SEARCH: u32 = 0o500;
/// The owner's read, write and search rights: enough to delete what a folder holds.
const FULL: u32 = 0o700;

/// Adds the owner rights `wanted` (e.g. [`READ_AND_SEARCH`]) to the folder `dir`
/// whose mode is `mode`, if it lacks any; leaves other rights as the job set them.
pub(super) fn give_back(dir: &Path, mode: u32, wanted: u32) -> io::Result<()> {
    if mode & wanted == wanted {
        return Ok(());
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode | wanted))
}

/// Removes `root` and everything below it, even folders the job locked: on a
/// refusal it gives the owner u+rwx back on every folder below and tries again.
/// A `root` already gone is not an error.
pub fn remove_attempt_dir(root: &Path) -> io::Result<()> {
    match fs::remove_dir_all(root) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        // Most often a folder the job made unreadable or unwritable.
        Err(_) => {}
    }
    open_every_folder(root);
    match fs::remove_dir_all(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Gives the owner u+rwx on `root` and every folder below it (best effort: what
/// still refuses shows up in the removal's error).
fn open_every_folder(root: &Path) {
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let _ = give_back(&dir, meta.permissions().mode(), FULL);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // `file_type` does not follow links: a link to a folder is not entered.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
}

/// Test support: runs code with folder rights binding it even when the tests run
/// as root (as in some containers), where they would not bind otherwise.
#[cfg(test)]
pub(super) mod unprivileged {
    /// Runs `f` on a thread of its own that lacks CAP_DAC_OVERRIDE and
    /// CAP_DAC_READ_SEARCH. Capabilities belong to threads on Linux, so the
    /// rest of the test process keeps its own.
    pub fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            drop_folder_powers();
            f()
        })
        .join()
        .expect("the unprivileged thread panicked")
    }

    /// Drops, for the calling thread only, the capabilities that let root read
    /// and write folders whatever their rights (a no-op for other users).
    pub fn drop_folder_powers() {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Default, Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        const DAC_OVERRIDE_AND_READ_SEARCH: u32 = (1 << 1) | (1 << 2);
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: capget and capset read and write exactly these two C structs.
        unsafe {
            assert_eq!(
                libc::syscall(
                    libc::SYS_capget,
                    &mut header as *mut Header,
                    data.as_mut_ptr()
                ),
                0,
                "capget"
            );
            data[0].effective &= !DAC_OVERRIDE_AND_READ_SEARCH;
            assert_eq!(
                libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()),
                0,
                "capset"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unprivileged;
    use super::*;

    fn lock(path: &Path) {
        fs::set_permissions(path, fs::Permissions::from_mode(0o000)).expect("chmod 000");
    }

    #[test]
    fn a_folder_the_job_locked_at_every_level_is_removed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("j-1");
        let deep = root.join("sandbox/a/b");
        fs::create_dir_all(&deep).expect("dirs");
        for i in 0..20 {
            fs::write(deep.join(format!("f{i}")), vec![7u8; 10_000]).expect("write");
        }
        // Innermost first, as `chmod -R 000` would leave them.
        lock(&deep);
        lock(&root.join("sandbox/a"));
        lock(&root.join("sandbox"));
        let root_in = root.clone();
        let (plain, ours) = unprivileged::run(move || {
            let plain = fs::remove_dir_all(&root_in).is_err();
            (
                plain,
                remove_attempt_dir(&root_in).map_err(|e| e.to_string()),
            )
        });
        assert!(
            plain,
            "the plain removal must fail, or the test shows nothing"
        );
        ours.expect("removed");
        assert!(!root.exists());
    }

    #[test]
    fn a_folder_already_gone_is_not_an_error() {
        let tmp = tempfile::tempdir().expect("tmp");
        remove_attempt_dir(&tmp.path().join("never-made")).expect("nothing to remove");
    }

    #[test]
    fn a_link_out_of_the_folder_is_removed_not_followed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&outside).expect("outside");
        fs::write(outside.join("keep"), b"x").expect("write");
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o500)).expect("chmod");
        let root = tmp.path().join("j-1");
        fs::create_dir_all(root.join("locked")).expect("dirs");
        std::os::unix::fs::symlink(&outside, root.join("locked/link")).expect("link");
        lock(&root.join("locked"));
        let root_in = root.clone();
        unprivileged::run(move || remove_attempt_dir(&root_in).map_err(|e| e.to_string()))
            .expect("removed");
        assert!(!root.exists());
        assert!(
            outside.join("keep").exists(),
            "the link's target was touched"
        );
        let mode = fs::metadata(&outside)
            .expect("outside")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o500, "the link's target changed rights");
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).expect("chmod back");
    }
}
