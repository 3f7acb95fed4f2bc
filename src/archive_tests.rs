//! Tests of the archive reader: hostile archives are refused and write nothing
//! outside the folder.

use super::*;
use flate2::{write::GzEncoder, Compression};
use tar::EntryType;

/// A temp folder holding `dest` (where archives are unpacked) and `outside`
/// (which hostile archives aim at and which must stay empty).
struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(tmp.path().join("outside")).expect("outside dir");
        Fixture { tmp }
    }
    fn dest(&self) -> PathBuf {
        self.tmp.path().join("dest")
    }
    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }
    fn unpack(&self, archive: &[u8], limits: &UnpackLimits) -> Result<UnpackStats, ArchiveError> {
        unpack_tar_gz(archive, &self.dest(), limits)
    }
    fn assert_nothing_outside(&self) {
        let mut names: Vec<_> = std::fs::read_dir(self.tmp.path())
            .expect("list tmp")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert!(
            names.iter().all(|n| n == "dest" || n == "outside"),
            "{names:?}"
        );
        let outside = std::fs::read_dir(self.outside())
            .expect("list outside")
            .count();
        assert_eq!(outside, 0, "something was written into `outside`");
    }
}

/// Entries as (name, type, link target, contents), written with raw headers so
/// that names the tar crate would refuse to write (`../x`, `/abs`) get through.
fn hostile(entries: &[(&str, EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, kind, link, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append(&header, *data).expect("append");
    }
    tar.into_inner().and_then(|gz| gz.finish()).expect("finish")
}

const FILE: EntryType = EntryType::Regular;
const SYMLINK: EntryType = EntryType::Symlink;
const HARDLINK: EntryType = EntryType::Link;

fn refused(entries: &[(&str, EntryType, &str, &[u8])]) -> (Fixture, String) {
    let fx = Fixture::new();
    let err = fx
        .unpack(&hostile(entries), &UnpackLimits::default())
        .expect_err("the archive must be refused");
    fx.assert_nothing_outside();
    (fx, err.to_string())
}

#[test]
fn a_written_archive_unpacks_with_modes_links_and_empty_folders() {
    let fx = Fixture::new();
    let src = fx.tmp.path().join("outside");
    let mut w = ArchiveWriter::new(Vec::new());
    w.add_bytes("run.sh", b"#!/bin/sh\necho hi\n", 0o755)
        .expect("add");
    w.add_bytes("suid", b"x", 0o4755).expect("add");
    w.add_bytes("lib/data.txt", b"data", 0o640).expect("add");
    w.add_dir(&src, "empty").expect("add");
    w.add_symlink("latest", Path::new("lib/data.txt"))
        .expect("add");
    w.add_symlink("lib/up", Path::new("../run.sh"))
        .expect("add");
    let bytes = w.finish().expect("finish");

    let stats = fx.unpack(&bytes, &UnpackLimits::default()).expect("unpack");
    let dest = fx.dest();
    assert_eq!(
        stats,
        UnpackStats {
            entries: 6,
            bytes: 23
        }
    );
    let mode = |p: &str| {
        std::fs::metadata(dest.join(p))
            .expect("meta")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("run.sh"), 0o755);
    assert_eq!(mode("suid"), 0o755, "setuid must be stripped");
    assert_eq!(mode("lib/data.txt"), 0o640);
    assert!(dest.join("empty").is_dir());
    assert_eq!(
        std::fs::read_to_string(dest.join("latest")).expect("read"),
        "data"
    );
    assert_eq!(
        std::fs::read_link(dest.join("lib/up")).expect("link"),
        Path::new("../run.sh")
    );
    fx.assert_nothing_outside();
}

#[test]
fn an_entry_climbing_out_with_dotdot_is_refused() {
    let (fx, err) = refused(&[("../x", FILE, "", b"evil")]);
    assert_eq!(err, "archive entry `../x` escapes the folder");
    assert!(!fx.tmp.path().join("x").exists());
}

#[test]
fn an_entry_with_an_absolute_path_is_refused() {
    let fx = Fixture::new();
    let target = fx.outside().join("x");
    let name = target.to_str().expect("utf-8 temp path");
    let err = fx
        .unpack(
            &hostile(&[(name, FILE, "", b"evil")]),
            &UnpackLimits::default(),
        )
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!("archive entry `{name}` has an absolute path")
    );
    fx.assert_nothing_outside();
}

#[test]
fn device_files_and_fifos_are_refused() {
    let (_, err) = refused(&[("dev/sda", EntryType::Block, "", b"")]);
    assert_eq!(err, "archive entry `dev/sda` is a device file");
    let (_, err) = refused(&[("tty", EntryType::Char, "", b"")]);
    assert_eq!(err, "archive entry `tty` is a device file");
    let (_, err) = refused(&[("pipe", EntryType::Fifo, "", b"")]);
    assert_eq!(err, "archive entry `pipe` is a fifo");
}

#[test]
fn a_link_to_an_absolute_path_is_refused() {
    let (fx, err) = refused(&[("lnk", SYMLINK, "/etc/passwd", b"")]);
    assert_eq!(
        err,
        "archive entry `lnk` is a link pointing outside the folder (`/etc/passwd`)"
    );
    assert!(std::fs::symlink_metadata(fx.dest().join("lnk")).is_err());
}

#[test]
fn a_link_climbing_out_with_dotdot_is_refused() {
    let (_, err) = refused(&[("sub/lnk", SYMLINK, "../../outside", b"")]);
    assert_eq!(
        err,
        "archive entry `sub/lnk` is a link pointing outside the folder (`../../outside`)"
    );
}

#[test]
fn a_link_to_outside_cannot_be_used_as_the_folder_of_a_later_entry() {
    let fx = Fixture::new();
    let outside = fx.outside();
    let target = outside.to_str().expect("utf-8 temp path");
    let err = fx
        .unpack(
            &hostile(&[("a", SYMLINK, target, b""), ("a/x", FILE, "", b"evil")]),
            &UnpackLimits::default(),
        )
        .expect_err("refused");
    assert!(
        matches!(err, ArchiveError::LinkOutside { ref entry, .. } if entry == "a"),
        "{err}"
    );
    fx.assert_nothing_outside();
}

#[test]
fn an_entry_going_through_an_earlier_link_is_refused() {
    let (_, err) = refused(&[
        ("sub/", EntryType::Directory, "", b""),
        ("a", SYMLINK, "sub", b""),
        ("a/b", SYMLINK, "x", b""),
    ]);
    assert_eq!(err, "archive entry `a/b` goes through the link `a`");
}

#[test]
fn an_entry_going_through_a_link_already_in_the_folder_is_refused() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.dest()).expect("dest");
    std::os::unix::fs::symlink(fx.outside(), fx.dest().join("a")).expect("link");
    let err = fx
        .unpack(
            &hostile(&[("a/x", FILE, "", b"evil")]),
            &UnpackLimits::default(),
        )
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "archive entry `a/x` goes through the link `a`"
    );
    fx.assert_nothing_outside();
}

#[test]
fn two_links_harmless_alone_that_climb_out_together_are_refused() {
    // `sub/s -> ..` is the root, and `t -> sub/s/..` reads as `sub` by itself,
    // but on disk it is the root's parent.
    let (fx, err) = refused(&[
        ("sub/", EntryType::Directory, "", b""),
        ("sub/s", SYMLINK, "..", b""),
        ("t", SYMLINK, "sub/s/..", b""),
    ]);
    assert_eq!(
        err,
        "archive entry `t` is a link pointing outside the folder (`sub/s/..`)"
    );
    assert!(
        std::fs::symlink_metadata(fx.dest().join("t")).is_err(),
        "the escaping link is removed"
    );
}

#[test]
fn hard_links_only_reach_files_unpacked_before_them() {
    let (_, err) = refused(&[("h", HARDLINK, "/etc/passwd", b"")]);
    assert_eq!(
        err,
        "archive entry `h` is a link pointing outside the folder (`/etc/passwd`)"
    );
    let (_, err) = refused(&[("h", HARDLINK, "../outside/x", b"")]);
    assert_eq!(
        err,
        "archive entry `h` is a link pointing outside the folder (`../outside/x`)"
    );
    let (_, err) = refused(&[("h", HARDLINK, "later", b""), ("later", FILE, "", b"x")]);
    assert_eq!(
        err,
        "archive entry `h` is a hard link to `later`, which is not a file unpacked before it"
    );
    let (_, err) = refused(&[("s", SYMLINK, "f", b""), ("h", HARDLINK, "s", b"")]);
    assert!(err.contains("is a hard link to `s`"), "{err}");

    let fx = Fixture::new();
    fx.unpack(
        &hostile(&[("f", FILE, "", b"data"), ("d/h", HARDLINK, "f", b"")]),
        &UnpackLimits::default(),
    )
    .expect("a hard link to an earlier file unpacks");
    assert_eq!(
        std::fs::read_to_string(fx.dest().join("d/h")).expect("read"),
        "data"
    );
}

#[test]
fn an_archive_with_too_many_entries_is_refused() {
    let limits = UnpackLimits {
        max_entries: 3,
        ..UnpackLimits::default()
    };
    let fx = Fixture::new();
    let entries: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| (*n, FILE, "", &b"x"[..]))
        .collect();
    let err = fx.unpack(&hostile(&entries), &limits).expect_err("refused");
    assert_eq!(err.to_string(), "archive holds more than 3 entries");
    fx.assert_nothing_outside();
}

#[test]
fn an_archive_unpacking_past_the_byte_limit_is_refused_before_writing_the_file() {
    let limits = UnpackLimits {
        max_bytes: 1000,
        ..UnpackLimits::default()
    };
    let fx = Fixture::new();
    let big = vec![0u8; 2000];
    let err = fx
        .unpack(&hostile(&[("bomb", FILE, "", &big)]), &limits)
        .expect_err("refused");
    assert_eq!(err.to_string(), "archive unpacks to more than 1000 bytes");
    assert!(!fx.dest().join("bomb").exists());

    let fx = Fixture::new();
    let part = vec![0u8; 600];
    let err = fx
        .unpack(
            &hostile(&[("one", FILE, "", &part), ("two", FILE, "", &part)]),
            &limits,
        )
        .expect_err("refused");
    assert_eq!(err.to_string(), "archive unpacks to more than 1000 bytes");
    assert!(!fx.dest().join("two").exists());
}

#[test]
fn a_corrupt_archive_is_a_read_error() {
    let fx = Fixture::new();
    let err = fx
        .unpack(b"this is not gzip", &UnpackLimits::default())
        .expect_err("refused");
    assert!(matches!(err, ArchiveError::Read(_)), "{err}");
}

#[test]
fn a_missing_archive_file_names_its_path() {
    let fx = Fixture::new();
    let path = fx.tmp.path().join("nope.tar.gz");
    let err = unpack_tar_gz_file(&path, &fx.dest(), &UnpackLimits::default()).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with(&format!("opening `{}`: ", path.display())),
        "{err}"
    );
}

/// A raw header block of `kind` claiming `size` bytes of data, followed by
/// `data` (padded to the block size): what a hostile writer puts in the stream.
pub(crate) fn raw_entry(name: &str, kind: u8, size: u64, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_mode(0o644);
    header.set_size(size);
    header.set_entry_type(EntryType::new(kind));
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

pub(crate) fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(raw).expect("gzip");
    gz.finish().expect("gzip")
}

/// A stream that claims a huge entry: the header, then as many zeros as the
/// gzip stream is asked for (never materialised: the guard must stop first).
fn claims(kind: u8, size: u64) -> Vec<u8> {
    let mut raw = raw_entry("x", kind, size, &[]);
    raw.extend(std::iter::repeat_n(0u8, 64 * 1024));
    gzip(&raw)
}

#[test]
fn a_long_name_claiming_gigabytes_is_refused_before_it_is_read_into_memory() {
    for kind in [b'L', b'K', b'x', b'g'] {
        let fx = Fixture::new();
        let err = fx
            .unpack(&claims(kind, 8 << 30), &UnpackLimits::default())
            .expect_err("refused");
        assert!(
            matches!(err, ArchiveError::Refused(GuardError::MetadataTooLarge { size }) if size == 8 << 30),
            "{}: {err}",
            kind as char
        );
        fx.assert_nothing_outside();
    }
}

#[test]
fn an_entry_nobody_unpacks_cannot_make_the_reader_decompress_a_bomb() {
    // A folder claiming 100 GB of data: the tar reader would read through it all.
    let fx = Fixture::new();
    let err = fx
        .unpack(&claims(b'5', 100 << 30), &UnpackLimits::default())
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!("archive unpacks to more than {} bytes", 4u64 << 30)
    );
}

#[test]
fn endless_metadata_headers_hit_the_entry_limit() {
    let limits = UnpackLimits {
        max_entries: 5,
        ..UnpackLimits::default()
    };
    let mut raw = Vec::new();
    for _ in 0..100 {
        raw.extend(raw_entry("g", b'g', 12, b"10 a=bcdef\n\0"));
    }
    let fx = Fixture::new();
    let err = fx.unpack(&gzip(&raw), &limits).expect_err("refused");
    assert_eq!(err.to_string(), "archive holds more than 5 entries");
}

#[test]
fn a_gnu_sparse_file_is_refused() {
    let fx = Fixture::new();
    let err = fx
        .unpack(
            &gzip(&raw_entry("s", b'S', 3, b"abc")),
            &UnpackLimits::default(),
        )
        .expect_err("refused");
    assert!(err.to_string().contains("sparse"), "{err}");
}

#[test]
fn a_pax_size_record_is_followed_like_the_tar_reader_follows_it() {
    // The file's header says 0 bytes, its PAX header says 5: the tar reader reads
    // 5, and so must the guard, or it would take the data for the next header.
    let record = b"9 size=5\n";
    let mut raw = raw_entry("pax", b'x', record.len() as u64, record);
    raw.extend(raw_entry("five", b'0', 0, b"hello"));
    raw.extend(raw_entry("after", b'0', 2, b"ok"));
    raw.extend([0u8; 1024]);
    let fx = Fixture::new();
    let stats = fx
        .unpack(&gzip(&raw), &UnpackLimits::default())
        .expect("unpacks");
    assert_eq!(stats.entries, 2);
    assert_eq!(
        std::fs::read(fx.dest().join("five")).expect("five"),
        b"hello"
    );
    assert_eq!(
        std::fs::read(fx.dest().join("after")).expect("after"),
        b"ok"
    );
}

#[test]
fn long_names_written_by_the_tar_crate_still_unpack() {
    let long = format!("{}/{}.txt", "d".repeat(120), "f".repeat(120));
    let mut w = ArchiveWriter::new(Vec::new());
    w.add_bytes(&long, b"deep", 0o644).expect("add");
    let archive = w.finish().expect("finish");
    let fx = Fixture::new();
    fx.unpack(&archive, &UnpackLimits::default())
        .expect("unpacks");
    assert_eq!(std::fs::read(fx.dest().join(&long)).expect("read"), b"deep");
}

/// A job's input archive: drover's own files (the JDL) come back in memory and
/// never land in the sandbox; they count toward the limits like any file.
#[test]
fn drover_files_of_a_job_input_are_kept_out_of_the_sandbox() {
    let mut w = ArchiveWriter::new(Vec::new());
    w.add_bytes(".drover/job.jdl", b"[ Executable = \"/bin/true\"; ]", 0o644)
        .expect("jdl");
    w.add_bytes("in.txt", b"input", 0o644).expect("in.txt");
    let archive = w.finish().expect("archive");
    let fx = Fixture::new();
    let (stats, own) =
        unpack_job_input(&archive[..], &fx.dest(), &UnpackLimits::default()).expect("unpacked");
    assert_eq!(
        own.get(".drover/job.jdl").map(Vec::as_slice),
        Some(&b"[ Executable = \"/bin/true\"; ]"[..])
    );
    assert_eq!(
        std::fs::read(fx.dest().join("in.txt")).expect("in.txt"),
        b"input"
    );
    assert!(
        !fx.dest().join(".drover").exists(),
        "drover's folder was written"
    );
    assert_eq!(stats.bytes, 29 + 5);
    let tight = UnpackLimits {
        max_bytes: 10,
        ..UnpackLimits::default()
    };
    let fx = Fixture::new();
    assert!(matches!(
        unpack_job_input(&archive[..], &fx.dest(), &tight),
        Err(ArchiveError::TooLarge { limit: 10 })
    ));
}
