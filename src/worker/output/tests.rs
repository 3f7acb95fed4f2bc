//! Tests of the output archive, on real files in a temp sandbox.

use super::*;
use std::os::unix::fs::symlink;

struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new(files: &[&str]) -> Fixture {
        let tmp = tempfile::tempdir().expect("tmp");
        let fx = Fixture { tmp };
        fs::create_dir(fx.sandbox()).expect("sandbox");
        fx.write(files);
        fx
    }
    fn sandbox(&self) -> PathBuf {
        self.tmp.path().join("sandbox")
    }
    fn archive(&self) -> PathBuf {
        self.tmp.path().join("output.tar.gz")
    }
    /// Creates files (named with their folders) holding their own name; a name
    /// ending in `/` is a folder.
    fn write(&self, files: &[&str]) {
        for name in files {
            let path = self.sandbox().join(name);
            if name.ends_with('/') {
                fs::create_dir_all(&path).expect("mkdir");
            } else {
                fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                fs::write(&path, name).expect("write");
            }
        }
    }
    fn collect(
        &self,
        outputs: &[&str],
        snapshot: Option<&Snapshot>,
        max_bytes: u64,
    ) -> (Result<Option<OutputArchive>, OutputError>, Vec<String>) {
        let outputs: Vec<String> = outputs.iter().map(|s| s.to_string()).collect();
        let mut notes = Vec::new();
        let result = collect_output(
            &self.sandbox(),
            &outputs,
            snapshot,
            &self.archive(),
            max_bytes,
            &mut notes,
        );
        (result, notes)
    }
}

/// The archive's entries as `name` (files), `name/` (folders), `name -> target`.
fn listing(archive: &Spilled) -> Vec<String> {
    let data = archive.read().expect("archive");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&data[..]));
    let mut names: Vec<String> = archive
        .entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.path().expect("path").display().to_string();
            match e.header().entry_type() {
                tar::EntryType::Directory => format!("{}/", name.trim_end_matches('/')),
                tar::EntryType::Symlink => {
                    format!(
                        "{name} -> {}",
                        e.link_name().expect("link").expect("target").display()
                    )
                }
                _ => name,
            }
        })
        .collect();
    names.sort();
    names
}

#[test]
fn files_folders_and_globs_are_packed_under_their_sandbox_paths() {
    let fx = Fixture::new(&[
        "a.txt",
        "other.txt",
        "out/x.dat",
        "out/sub/y",
        "logs/1.log",
        "logs/2.log",
        "logs/.h.log",
    ]);
    let (result, notes) = fx.collect(
        &[
            "a.txt",
            "./out",
            "logs/*.log",
            "a.txt",
            "missing.txt",
            "none/*.x",
        ],
        None,
        1 << 20,
    );
    let archive = result.expect("collected").expect("an archive");
    assert_eq!(archive.stored_as, None);
    assert_eq!(
        listing(&archive.archive),
        [
            "a.txt",
            "logs/1.log",
            "logs/2.log",
            "out/",
            "out/sub/",
            "out/sub/y",
            "out/x.dat"
        ]
    );
    assert_eq!(archive.entries, 7);
    assert_eq!(
        notes,
        [
            "OutputSandbox: `missing.txt` not found",
            "OutputSandbox: `none/*.x` not found"
        ]
    );
}

#[test]
fn links_are_kept_only_when_they_stay_inside_the_sandbox() {
    let fx = Fixture::new(&["a.txt", "dir/"]);
    let sb = fx.sandbox();
    let secrets = fx.tmp.path().join("secrets");
    fs::create_dir(&secrets).expect("mkdir");
    fs::write(secrets.join("key"), "k").expect("write");
    fs::write(secrets.join("token"), "t").expect("write");
    symlink("a.txt", sb.join("inside")).expect("link");
    symlink("/etc/passwd", sb.join("abs")).expect("link");
    symlink("../../a.txt", sb.join("dir/up")).expect("link");
    symlink(&secrets, sb.join("out")).expect("link");
    let (result, notes) = fx.collect(&["inside", "abs", "dir", "out/*", "out/key"], None, 1 << 20);
    let archive = result.expect("collected").expect("an archive");
    assert_eq!(listing(&archive.archive), ["dir/", "inside -> a.txt"]);
    assert_eq!(
        notes,
        [
            "OutputSandbox: `abs` is a link pointing outside the sandbox (`/etc/passwd`), skipped",
            "OutputSandbox: `dir/up` is a link pointing outside the sandbox (`../../a.txt`), skipped",
            "OutputSandbox: `out/*` goes through the link `out`, skipped (2 matches)",
            "OutputSandbox: `out/key` goes through the link `out`, skipped (1 match)",
        ]
    );
}

#[test]
fn the_archive_form_holds_everything_created_after_the_snapshot() {
    let fx = Fixture::new(&["input.csv", "old/kept.txt"]);
    let snapshot = Snapshot::take(&fx.sandbox()).expect("snapshot");
    fx.write(&["new.txt", "old/added.txt", "newdir/f", "empty/"]);
    fs::write(fx.sandbox().join("input.csv"), "changed").expect("write");
    let (result, notes) = fx.collect(&["result.tar.gz"], Some(&snapshot), 1 << 20);
    let archive = result.expect("collected").expect("an archive");
    assert_eq!(archive.stored_as.as_deref(), Some("result.tar.gz"));
    assert_eq!(
        listing(&archive.archive),
        ["empty/", "new.txt", "newdir/", "newdir/f", "old/added.txt"]
    );
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn the_archive_form_is_an_ordinary_file_when_the_job_made_it() {
    let fx = Fixture::new(&["input.csv"]);
    let snapshot = Snapshot::take(&fx.sandbox()).expect("snapshot");
    fx.write(&["result.tar.gz", "scratch.tmp"]);
    let (result, _) = fx.collect(&["result.tar.gz"], Some(&snapshot), 1 << 20);
    let archive = result.expect("collected").expect("an archive");
    assert_eq!(archive.stored_as, None);
    assert_eq!(listing(&archive.archive), ["result.tar.gz"]);
}

#[test]
fn an_archive_over_the_limit_is_removed_and_reported_with_its_size() {
    let fx = Fixture::new(&[]);
    // Incompressible bytes, so that the archive is as big as the file.
    let mut x: u32 = 12345;
    let noise: Vec<u8> = (0..20_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect();
    fs::write(fx.sandbox().join("big.bin"), noise).expect("write");
    let (result, _) = fx.collect(&["big.bin"], None, 1000);
    match result {
        Err(OutputError::TooLarge { bytes, limit: 1000 }) => {
            assert!(bytes > 20_000, "{bytes}");
            let msg = result.expect_err("too large").to_string();
            assert_eq!(
                msg,
                format!("output archive is {bytes} bytes, over the limit of 1000")
            );
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(!fx.archive().exists());
}

#[test]
fn no_output_sandbox_means_no_archive() {
    let fx = Fixture::new(&["a.txt"]);
    let (result, _) = fx.collect(&[], None, 1 << 20);
    assert_eq!(result.expect("collected"), None);
    assert!(!fx.archive().exists());
}

#[test]
fn a_full_disk_is_an_error_naming_the_archive_not_a_panic() {
    let fx = Fixture::new(&[]);
    // Bytes that do not compress: the archive outgrows memory and goes to disk.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(fx.sandbox().join("a.txt"), noise).expect("noise");
    let mut notes = Vec::new();
    let outputs = vec!["a.txt".to_string()];
    let err = collect_output(
        &fx.sandbox(),
        &outputs,
        None,
        Path::new("/dev/full"),
        1 << 20,
        &mut notes,
    )
    .expect_err("/dev/full is always full");
    match err {
        OutputError::Io { action, source, .. } => {
            assert_eq!(action, "writing the output archive");
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
        }
        other => panic!("expected an I/O error, got {other}"),
    }
}
