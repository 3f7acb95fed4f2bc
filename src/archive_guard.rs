//! A guard between the gzip decoder and the tar reader: it follows the tar
//! stream's headers as the bytes go by and stops the stream before the tar
//! crate is hurt by it.
//!
//! The tar crate reads a GNU long name (`L`, `K`) or a PAX header (`x`, `g`)
//! whole into memory, whatever size its header claims, and it reads through the
//! data of entries nobody unpacks (a folder that claims 100 GB). So a few MB of
//! gzip could take gigabytes of memory or hours of decompression before the
//! unpacker sees a single entry. The guard refuses, as they arrive:
//! a metadata entry over `MAX_METADATA_BYTES`, more metadata than
//! `MAX_METADATA_TOTAL`, entries whose data adds up past the byte limit, more
//! headers than the entry limit allows, and GNU sparse files (not unpacked).
//!
//! To see the headers the tar reader sees, the guard must skip exactly what
//! the reader skips: it reads header sizes with `tar::Header` and PAX `size`
//! records with `tar::PaxExtensions`, under the reader's rules (see
//! `on_header` and `pax_size`). Should the two still disagree one day (a new
//! tar version), the guard also bounds every byte that passes through it, so
//! the damage stays within the archive's limits.

use std::io::{self, Read};

/// Long names and PAX records are paths and a few attributes: 1 MiB is plenty.
pub const MAX_METADATA_BYTES: u64 = 1 << 20;
/// All metadata of one archive together.
pub const MAX_METADATA_TOTAL: u64 = 64 << 20;
const BLOCK: usize = 512;
/// Beyond headers, data and metadata: the end-of-archive blocks and the
/// record padding tar writers add (10 KiB records), with room to spare.
const STREAM_SLACK: u64 = 64 << 10;

/// Why the guard stopped the stream (carried inside an `io::Error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("a metadata entry (long name or PAX header) of {size} bytes, over the limit of {MAX_METADATA_BYTES}")]
    MetadataTooLarge { size: u64 },
    #[error("more than {MAX_METADATA_TOTAL} bytes of metadata (long names, PAX headers)")]
    TooMuchMetadata,
    #[error("archive unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("archive holds more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("archive holds a GNU sparse file, which drover does not unpack")]
    Sparse,
    #[error("archive stream runs past {limit} bytes, more than its entries and headers can hold")]
    StreamTooLong { limit: u64 },
    #[error("archive entry header has an unreadable size")]
    BadSize,
}

impl GuardError {
    /// The guard's refusal, if this error is one.
    pub fn of(e: &io::Error) -> Option<&GuardError> {
        e.get_ref()?.downcast_ref::<GuardError>()
    }
}

pub struct TarGuard<R> {
    inner: R,
    max_bytes: u64,
    max_headers: u64,
    max_entries: u64,
    /// Every byte the tar reader may pull through the guard: the data limit,
    /// the metadata allowance, and a header plus padding per header. The
    /// guard mirrors the tar reader's rules; this bound keeps an archive
    /// finite even if the two ever disagree.
    max_stream: u64,
    stream_bytes: u64,
    header: [u8; BLOCK],
    filled: usize,
    /// Bytes of the current entry's data still to pass.
    data_left: u64,
    /// Padding after the current entry's data, still to pass.
    padding_left: u64,
    /// The data of the PAX header being read (kept to read its `size` record).
    reading_pax: Option<Vec<u8>>,
    /// The last PAX header read, waiting for the entry it describes: the tar
    /// reader keeps it across GNU long-name headers, until it returns an entry.
    pending_pax: Option<Vec<u8>>,
    data_bytes: u64,
    metadata_bytes: u64,
    headers: u64,
    failed: Option<GuardError>,
}

impl<R: Read> TarGuard<R> {
    /// `max_entries` entries of at most `max_bytes` of data altogether; each
    /// entry may come with up to three metadata headers (long name, long link
    /// name, PAX).
    pub fn new(inner: R, max_bytes: u64, max_entries: u64) -> TarGuard<R> {
        let max_headers = max_entries.saturating_mul(4).saturating_add(16);
        let metadata_allowance =
            MAX_METADATA_TOTAL.min(max_headers.saturating_mul(MAX_METADATA_BYTES));
        // A header block, and at most one block of padding, per header; the
        // end-of-archive blocks and a tar writer's record padding on top.
        let max_stream = max_bytes
            .saturating_add(metadata_allowance)
            .saturating_add(max_headers.saturating_mul(2 * BLOCK as u64))
            .saturating_add(STREAM_SLACK);
        TarGuard {
            inner,
            max_bytes,
            max_entries,
            max_headers,
            max_stream,
            stream_bytes: 0,
            header: [0; BLOCK],
            filled: 0,
            data_left: 0,
            padding_left: 0,
            reading_pax: None,
            pending_pax: None,
            data_bytes: 0,
            metadata_bytes: 0,
            headers: 0,
            failed: None,
        }
    }

    fn observe(&mut self, mut data: &[u8]) -> Result<(), GuardError> {
        self.stream_bytes = self.stream_bytes.saturating_add(data.len() as u64);
        if self.stream_bytes > self.max_stream {
            return Err(GuardError::StreamTooLong {
                limit: self.max_stream,
            });
        }
        while !data.is_empty() {
            if self.data_left > 0 {
                let k = (self.data_left.min(data.len() as u64)) as usize;
                if let Some(pax) = &mut self.reading_pax {
                    pax.extend_from_slice(&data[..k]);
                }
                self.data_left -= k as u64;
                data = &data[k..];
                if self.data_left == 0 {
                    self.pending_pax = self.reading_pax.take().or(self.pending_pax.take());
                }
                continue;
            }
            if self.padding_left > 0 {
                let k = (self.padding_left.min(data.len() as u64)) as usize;
                self.padding_left -= k as u64;
                data = &data[k..];
                continue;
            }
            let k = (BLOCK - self.filled).min(data.len());
            self.header[self.filled..self.filled + k].copy_from_slice(&data[..k]);
            self.filled += k;
            data = &data[k..];
            if self.filled == BLOCK {
                self.filled = 0;
                self.on_header()?;
            }
        }
        Ok(())
    }

    /// Follows one header block the way `tar::Archive::entries` does
    /// (tar 0.4 `archive.rs`, `next_entry` and `next_entry_raw`), so that the
    /// guard skips exactly the bytes the tar reader skips.
    fn on_header(&mut self) -> Result<(), GuardError> {
        if self.header.iter().all(|b| *b == 0) {
            return Ok(()); // the end-of-archive blocks
        }
        self.headers += 1;
        if self.headers > self.max_headers {
            return Err(GuardError::TooManyEntries {
                limit: self.max_entries,
            });
        }
        let header = tar::Header::from_byte_slice(&self.header);
        let kind = header.entry_type();
        let mut size = header.entry_size().map_err(|_| GuardError::BadSize)?;
        // The tar reader applies a PAX `size` to the next header that is not
        // itself an extension header (`L`, `K`, `x`, `g`), whatever its magic.
        let extension = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        if !extension {
            if let Some(s) = self.pending_pax.as_deref().and_then(pax_size) {
                size = s;
            }
        }
        // Only a header with a ustar or GNU magic is taken as a long name or a
        // PAX header; any other header is returned as an entry, which ends
        // the PAX header's reach.
        let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
        let kept_by_reader = recognized
            && (kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions());
        if !kept_by_reader {
            self.pending_pax = None;
        }
        // Limits: metadata kinds are held to the metadata limits even when the
        // reader would only skip them (stricter, never looser).
        let raw_kind = self.header[156];
        if matches!(raw_kind, b'L' | b'K' | b'x' | b'g' | b'X') {
            if size > MAX_METADATA_BYTES {
                return Err(GuardError::MetadataTooLarge { size });
            }
            self.metadata_bytes += size;
            if self.metadata_bytes > MAX_METADATA_TOTAL {
                return Err(GuardError::TooMuchMetadata);
            }
        } else {
            if kind.is_gnu_sparse() {
                return Err(GuardError::Sparse);
            }
            self.data_bytes = self.data_bytes.saturating_add(size);
            if self.data_bytes > self.max_bytes {
                return Err(GuardError::TooLarge {
                    limit: self.max_bytes,
                });
            }
        }
        if recognized && kind.is_pax_local_extensions() {
            self.reading_pax = Some(Vec::with_capacity(size as usize));
        }
        self.data_left = size;
        self.padding_left = size.next_multiple_of(BLOCK as u64) - size;
        if size == 0 {
            self.pending_pax = self.reading_pax.take().or(self.pending_pax.take());
        }
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::other(e.clone()));
        }
        let n = self.inner.read(buf)?;
        if let Err(e) = self.observe(&buf[..n]) {
            self.failed = Some(e.clone());
            return Err(io::Error::other(e));
        }
        Ok(n)
    }
}

/// The `size` record of a PAX header, read as the tar reader reads it
/// (tar 0.4 `pax.rs`, `pax_extensions_value`): records split on `\n`, the
/// first malformed record drops every value, the first `size` record wins,
/// its value parsed as is (no trimming).
fn pax_size(data: &[u8]) -> Option<u64> {
    for record in tar::PaxExtensions::new(data) {
        let record = record.ok()?;
        if record.key() != Ok("size") {
            continue;
        }
        return record.value().ok()?.parse().ok();
    }
    None
}

#[cfg(test)]
#[path = "archive_guard_tests.rs"]
mod tests;
