//! The guard must follow the tar stream exactly as the tar crate does: if it
//! skipped more than the reader, the reader would meet headers the guard never
//! saw (a GNU long name read whole into memory); if it skipped less, the reader
//! would decompress data the guard never counted.

use super::*;
use crate::archive::tests::{gzip, raw_entry};
use crate::archive::{unpack_tar_gz, ArchiveError, UnpackLimits};

/// A PAX record with its length right: `<len> <key>=<value>\n`.
fn record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

/// PAX headers the tar reader and a lenient parser read differently: for
/// each, the size the tar crate gives the entry after it (header size 3).
fn disputed_pax_headers() -> Vec<(&'static str, String)> {
    let huge = (1u64 << 30).to_string();
    vec![
        ("plain", record("size", "5")),
        (
            "a malformed record first",
            format!("junk\n{}", record("size", &huge)),
        ),
        ("a wrong length", format!("99 size={huge}\n")),
        ("a trailing space", record("size", &format!("{huge} "))),
        ("a carriage return", record("size", &format!("{huge}\r"))),
        (
            "two sizes",
            format!("{}{}", record("size", "0"), record("size", &huge)),
        ),
        (
            "an unparsable size first",
            format!("{}{}", record("size", "x"), record("size", &huge)),
        ),
        (
            "an empty line before the size",
            format!("{}\n{}", record("path", "p"), record("size", &huge)),
        ),
        (
            "another key first",
            format!("{}{}", record("mtime", "1"), record("size", "7")),
        ),
    ]
}

/// The size the tar crate itself gives the entry following `pax`.
fn size_the_tar_crate_reads(pax: &str) -> u64 {
    let mut raw = raw_entry("pax", b'x', pax.len() as u64, pax.as_bytes());
    raw.extend(raw_entry("f", b'0', 3, b"abc"));
    let mut archive = tar::Archive::new(&raw[..]);
    let mut entries = archive.entries().expect("entries");
    let entry = entries.next().expect("one entry").expect("readable entry");
    entry.size()
}

#[test]
fn pax_size_records_are_read_exactly_as_the_tar_crate_reads_them() {
    for (case, pax) in disputed_pax_headers() {
        let guard = pax_size(pax.as_bytes()).unwrap_or(3);
        assert_eq!(guard, size_the_tar_crate_reads(&pax), "{case}: {pax:?}");
    }
}

#[test]
fn a_long_name_hidden_behind_a_disputed_pax_size_is_still_refused() {
    // Where the tar reader looks for the next header, an `L` claiming 8 GiB:
    // a guard that skipped by a different size would never see it, and the
    // reader would try to hold 8 GiB in memory.
    for (case, pax) in disputed_pax_headers() {
        let size = size_the_tar_crate_reads(&pax);
        let mut raw = raw_entry("pax", b'x', pax.len() as u64, pax.as_bytes());
        // A folder whose header claims 3 bytes, like the file above.
        raw.extend(raw_entry("d", b'5', 3, &[]));
        assert!(size < 1 << 20, "{case}: the tar crate reads {size} bytes");
        raw.resize(raw.len() + size.next_multiple_of(512) as usize, 0);
        raw.extend(raw_entry("long", b'L', 8 << 30, &[]));
        raw.extend(std::iter::repeat_n(0u8, 64 * 1024));
        let dest = tempfile::tempdir().expect("temp dir");
        let err =
            unpack_tar_gz(&gzip(&raw)[..], dest.path(), &UnpackLimits::default()).expect_err(case);
        assert!(
            matches!(err, ArchiveError::Refused(GuardError::MetadataTooLarge { size }) if size == 8 << 30),
            "{case}: {err}"
        );
    }
}

#[test]
fn a_pax_size_reaches_past_long_names_to_the_entry_like_in_the_tar_crate() {
    // x (size=100 GB), then a GNU long name, then a folder: the tar reader
    // gives the folder the PAX size and reads through it.
    let pax = record("size", &(100u64 << 30).to_string());
    let mut raw = raw_entry("pax", b'x', pax.len() as u64, pax.as_bytes());
    raw.extend(raw_entry("L", b'L', 4, b"dir\0"));
    raw.extend(raw_entry("d", b'5', 0, &[]));
    raw.extend(std::iter::repeat_n(0u8, 64 * 1024));
    let dest = tempfile::tempdir().expect("temp dir");
    let err =
        unpack_tar_gz(&gzip(&raw)[..], dest.path(), &UnpackLimits::default()).expect_err("refused");
    assert!(
        matches!(err, ArchiveError::TooLarge { limit } if limit == 4 << 30),
        "{err}"
    );
}

#[test]
fn the_stream_is_bounded_even_where_no_header_is_seen() {
    // Zero blocks are the end of the archive for the guard; were the tar reader
    // ever to read on past them, the total bound still stops the stream.
    let mut guard = TarGuard::new(io::repeat(0), 1 << 20, 1);
    let err = io::copy(&mut guard, &mut io::sink()).expect_err("bounded");
    let refusal = GuardError::of(&err).expect("a guard refusal");
    assert!(
        matches!(refusal, GuardError::StreamTooLong { limit } if *limit < 64 << 20),
        "{refusal}"
    );
}

#[test]
fn an_archive_written_by_the_tar_crate_passes_the_stream_bound() {
    // Long names, PAX headers and record padding all fit the allowance.
    let mut builder = tar::Builder::new(Vec::new());
    for i in 0..50 {
        let name = format!("{}/{i}.txt", "n".repeat(200));
        let mut header = tar::Header::new_gnu();
        header.set_size(1000);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, &name, &[b'z'; 1000][..])
            .expect("append");
    }
    let raw = builder.into_inner().expect("tar");
    let mut guard = TarGuard::new(&raw[..], 50 * 1000, 50);
    let mut archive = tar::Archive::new(&mut guard);
    assert_eq!(archive.entries().expect("entries").count(), 50);
    io::copy(&mut guard, &mut io::sink()).expect("the rest of the stream passes");
}
