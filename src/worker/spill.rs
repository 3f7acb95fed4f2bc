//! Bytes kept in memory up to a threshold, then in a file. Most attempts' logs
//! and output archives are a few hundred bytes, and every file costs the worker
//! an inode (on ext4 the dearest part of a short job: docs/performance.md);
//! the big ones still go to disk, so memory stays bounded.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What stays in memory: small enough to ride with the worker's report.
pub const SPILL_AT: usize = 64 * 1024;

/// Where what was written ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spilled {
    Memory(Vec<u8>),
    File(PathBuf),
}

impl Spilled {
    /// Everything written (read back from the file if it went there).
    pub fn read(&self) -> io::Result<Vec<u8>> {
        match self {
            Spilled::Memory(data) => Ok(data.clone()),
            Spilled::File(path) => std::fs::read(path),
        }
    }
}

pub struct Spill {
    path: PathBuf,
    memory: Vec<u8>,
    /// Unbuffered: a program may append to the same file between our writes.
    file: Option<File>,
}

impl Spill {
    /// Nothing is created until more than [`SPILL_AT`] bytes are written (or
    /// [`Spill::to_file`] is called); then everything goes to `path`.
    pub fn new(path: PathBuf) -> Spill {
        Spill {
            path,
            memory: Vec::new(),
            file: None,
        }
    }

    /// Moves what was written to the file and writes there from now on; for a
    /// program that is to append to the same file itself. The file is opened
    /// for appending, so that its writes and ours interleave, not overwrite.
    pub fn to_file(&mut self) -> io::Result<&Path> {
        if self.file.is_none() {
            let mut file = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&self.path)?;
            file.write_all(&self.memory)?;
            self.memory = Vec::new();
            self.file = Some(file);
        }
        Ok(&self.path)
    }

    /// Whether `more` bytes would still be kept in memory (no file written).
    pub fn keeps_in_memory(&self, more: usize) -> bool {
        self.file.is_none() && self.memory.len() + more <= SPILL_AT
    }

    /// What was written, and where (writes are unbuffered: nothing is left
    /// to flush).
    pub fn finish(self) -> Spilled {
        match self.file {
            Some(_) => Spilled::File(self.path),
            None => Spilled::Memory(self.memory),
        }
    }
}

impl Write for Spill {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.keeps_in_memory(buf.len()) {
            self.to_file()?;
        }
        match &mut self.file {
            Some(file) => file.write(buf),
            None => {
                self.memory.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_writes_stay_in_memory_and_make_no_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("log");
        let mut spill = Spill::new(path.clone());
        spill.write_all(b"hello").expect("write");
        assert_eq!(spill.finish(), Spilled::Memory(b"hello".to_vec()));
        assert!(!path.exists());
    }

    #[test]
    fn past_the_threshold_everything_goes_to_the_file_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("log");
        let mut spill = Spill::new(path.clone());
        spill.write_all(b"head ").expect("write");
        let big = vec![b'x'; SPILL_AT];
        spill.write_all(&big).expect("write");
        let spilled = spill.finish();
        assert_eq!(spilled, Spilled::File(path));
        let data = spilled.read().expect("read");
        assert_eq!(&data[..5], b"head ");
        assert_eq!(data.len(), 5 + SPILL_AT);
    }

    #[test]
    fn a_program_appending_to_the_file_interleaves_with_our_writes() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut spill = Spill::new(dir.path().join("log"));
        spill.write_all(b"ours 1\n").expect("write");
        let path = spill.to_file().expect("to file").to_path_buf();
        let mut theirs = OpenOptions::new().append(true).open(&path).expect("open");
        theirs.write_all(b"theirs\n").expect("theirs");
        spill.write_all(b"ours 2\n").expect("write");
        let data = spill.finish().read().expect("read");
        assert_eq!(data, b"ours 1\ntheirs\nours 2\n");
    }
}
