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

use std::io::{self, Read};

/// Long names and PAX records are paths and a few attributes: 1 MiB is plenty.
pub const MAX_METADATA_BYTES: u64 = 1 << 20;
/// All metadata of one archive together.
pub const MAX_METADATA_TOTAL: u64 = 64 << 20;
const BLOCK: usize = 512;

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
    header: [u8; BLOCK],
    filled: usize,
    /// Bytes of the current entry's data (and padding) still to pass.
    skip: u64,
    /// The data of the current PAX header, kept to read its `size` record.
    pax: Option<Vec<u8>>,
    /// A `size` a PAX header gave the next entry (the tar crate honours it).
    pax_size: Option<u64>,
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
        TarGuard {
            inner,
            max_bytes,
            max_entries,
            max_headers: max_entries.saturating_mul(4).saturating_add(16),
            header: [0; BLOCK],
            filled: 0,
            skip: 0,
            pax: None,
            pax_size: None,
            data_bytes: 0,
            metadata_bytes: 0,
            headers: 0,
            failed: None,
        }
    }

    fn observe(&mut self, mut data: &[u8]) -> Result<(), GuardError> {
        while !data.is_empty() {
            if self.skip > 0 {
                let k = (self.skip.min(data.len() as u64)) as usize;
                if let Some(pax) = &mut self.pax {
                    pax.extend_from_slice(&data[..k]);
                }
                self.skip -= k as u64;
                data = &data[k..];
                if self.skip == 0 {
                    if let Some(pax) = self.pax.take() {
                        self.pax_size = pax_size(&pax);
                    }
                }
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

    fn on_header(&mut self) -> Result<(), GuardError> {
        let h = &self.header;
        if h.iter().all(|b| *b == 0) {
            return Ok(()); // the end-of-archive blocks
        }
        self.headers += 1;
        if self.headers > self.max_headers {
            return Err(GuardError::TooManyEntries {
                limit: self.max_entries,
            });
        }
        let kind = h[156];
        let mut size = header_size(&h[124..136]).ok_or(GuardError::BadSize)?;
        let metadata = matches!(kind, b'L' | b'K' | b'x' | b'g' | b'X');
        if metadata {
            if size > MAX_METADATA_BYTES {
                return Err(GuardError::MetadataTooLarge { size });
            }
            self.metadata_bytes += size;
            if self.metadata_bytes > MAX_METADATA_TOTAL {
                return Err(GuardError::TooMuchMetadata);
            }
            // A PAX header's `size` applies to the next entry only.
            if kind == b'x' {
                self.pax = Some(Vec::with_capacity(size as usize));
            }
        } else {
            if kind == b'S' {
                return Err(GuardError::Sparse);
            }
            if let Some(s) = self.pax_size.take() {
                size = s;
            }
            self.data_bytes = self.data_bytes.saturating_add(size);
            if self.data_bytes > self.max_bytes {
                return Err(GuardError::TooLarge {
                    limit: self.max_bytes,
                });
            }
        }
        self.skip = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        if self.skip == 0 {
            if let Some(pax) = self.pax.take() {
                self.pax_size = pax_size(&pax);
            }
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

/// A header's size field: octal text, or base-256 when its first bit is set.
fn header_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[1..field.len() - 8].iter().any(|b| *b != 0) || field[0] != 0x80 {
            return None; // more than 64 bits, or negative
        }
        let mut n = 0u64;
        for b in &field[field.len() - 8..] {
            n = (n << 8) | u64::from(*b);
        }
        return Some(n);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|b| *b != 0)
        .filter(|b| *b != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

/// The `size` record of a PAX header (`<len> size=<n>\n`), if any.
fn pax_size(data: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|record| {
        let (_, kv) = record.split_once(' ')?;
        kv.strip_prefix("size=")?.trim().parse().ok()
    })
}
