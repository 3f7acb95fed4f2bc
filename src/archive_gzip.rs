//! The gzip layer of the archives drover writes, on a compressor reused from
//! one archive to the next.
//!
//! A deflate compressor holds about 300 KiB of tables. flate2's `GzEncoder`
//! allocates and zeroes a new one per archive, and for the small archives of
//! most jobs that was a tenth of the worker's CPU (page faults on fresh memory,
//! then unmapping it again). Here each thread keeps its last compressor and
//! resets it instead. The output is plain gzip (RFC 1952), as `GzEncoder`'s.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use std::cell::RefCell;
use std::io::{self, Write};

thread_local! {
    /// The compressor the last finished archive of this thread gave back.
    static SPARE: RefCell<Option<Compress>> = const { RefCell::new(None) };
}

/// The gzip header: deflate, no flags, no time, no extra flags, "unknown" OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Writes a gzip stream of what is written to it into `out`.
pub struct GzWriter<W: Write> {
    out: Option<W>,
    deflate: Option<Compress>,
    crc: Crc,
    /// Compressed bytes not yet written to `out`.
    buf: Vec<u8>,
    header_written: bool,
}

impl<W: Write> GzWriter<W> {
    pub fn new(out: W) -> GzWriter<W> {
        let deflate = SPARE
            .with(|spare| spare.borrow_mut().take())
            .unwrap_or_else(|| Compress::new(Compression::fast(), false));
        GzWriter {
            out: Some(out),
            deflate: Some(deflate),
            crc: Crc::new(),
            buf: Vec::with_capacity(32 * 1024),
            header_written: false,
        }
    }

    fn out(&mut self) -> &mut W {
        self.out.as_mut().expect("used after finish")
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.out().write_all(&HEADER)?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Runs the compressor over `input` with `flush`, writing what comes out;
    /// returns how much of `input` it took.
    fn deflate(&mut self, input: &[u8], flush: FlushCompress) -> io::Result<(usize, Status)> {
        self.buf.clear();
        let deflate = self.deflate.as_mut().expect("used after finish");
        let before = deflate.total_in();
        let status = deflate
            .compress_vec(input, &mut self.buf, flush)
            .map_err(io::Error::other)?;
        let taken = (deflate.total_in() - before) as usize;
        let out = self.out.as_mut().expect("used after finish");
        out.write_all(&self.buf)?;
        Ok((taken, status))
    }

    /// Ends the stream (the rest of the deflate data, then the CRC and length)
    /// and gives back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_header()?;
        loop {
            let (_, status) = self.deflate(&[], FlushCompress::Finish)?;
            if status == Status::StreamEnd {
                break;
            }
        }
        let (crc, len) = (self.crc.sum(), self.crc.amount());
        let out = self.out();
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        out.flush()?;
        Ok(self.out.take().expect("taken once"))
    }
}

impl<W: Write> Write for GzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.write_header()?;
        // A call may only empty the compressor's pending output: go on until it
        // takes some input (an Ok(0) would read as "cannot write").
        loop {
            let (taken, _) = self.deflate(data, FlushCompress::None)?;
            if taken > 0 {
                self.crc.update(&data[..taken]);
                return Ok(taken);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out().flush()
    }
}

impl<W: Write> Drop for GzWriter<W> {
    fn drop(&mut self) {
        if let Some(mut deflate) = self.deflate.take() {
            deflate.reset();
            // `try_with`: while the thread itself is ending, it is simply dropped.
            let _ = SPARE.try_with(|spare| *spare.borrow_mut() = Some(deflate));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn what_is_written_comes_back_through_gunzip_archive_after_archive() {
        // The second and third reuse the first's compressor.
        let big: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for data in [&b"hello from drover\n"[..], &big[..], &[][..]] {
            let mut gz = GzWriter::new(Vec::new());
            for chunk in data.chunks(7_000) {
                gz.write_all(chunk).expect("write");
            }
            let packed = gz.finish().expect("finish");
            assert_eq!(gunzip(&packed), data);
        }
    }

    #[test]
    fn an_archive_dropped_unfinished_leaves_a_clean_compressor_for_the_next() {
        let mut abandoned = GzWriter::new(Vec::new());
        abandoned.write_all(&[42u8; 100_000]).expect("write");
        drop(abandoned);
        let mut gz = GzWriter::new(Vec::new());
        gz.write_all(b"fresh").expect("write");
        assert_eq!(gunzip(&gz.finish().expect("finish")), b"fresh");
    }
}
