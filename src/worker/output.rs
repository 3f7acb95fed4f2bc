//! Packs a job's OutputSandbox into its output archive: the named files, folders
//! and globs, or (the archive form) everything the attempt created in the sandbox.

use super::spill::{Spill, Spilled};
use crate::archive::{link_stays_inside, ArchiveWriter};
use reconcilers::jdl::{is_safe_sandbox_name, output_archive_candidate};
use std::cell::Cell;
use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

/// The sandbox's contents before anything ran, so that the archive form can tell
/// what the attempt created. Paths are relative to the sandbox.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    paths: HashSet<PathBuf>,
}

impl Snapshot {
    /// Lists the sandbox without following links. A folder that cannot be read
    /// is listed as itself only: whatever is in it will count as created.
    pub fn take(sandbox: &Path) -> io::Result<Snapshot> {
        let mut paths = HashSet::new();
        fs::read_dir(sandbox)?;
        let mut todo = vec![PathBuf::new()];
        while let Some(dir) = todo.pop() {
            let Ok(listing) = fs::read_dir(sandbox.join(&dir)) else {
                continue;
            };
            for entry in listing.flatten() {
                let rel = dir.join(entry.file_name());
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(rel.clone());
                }
                paths.insert(rel);
            }
        }
        Ok(Snapshot { paths })
    }

    pub fn contains(&self, rel: &Path) -> bool {
        self.paths.contains(rel)
    }
}

/// A written output archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputArchive {
    /// In memory when small (it rides with the report), else the file.
    pub archive: Spilled,
    pub bytes: u64,
    pub entries: u64,
    /// In the archive form, the name the archive is stored under (`result.tar.gz`);
    /// `None` when it holds the OutputSandbox files by their names.
    pub stored_as: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("output archive is {bytes} bytes, over the limit of {limit}")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("{action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Packs the output archive of `output_sandbox`, in memory while it is small and
/// in the file `archive` past that (see `spill.rs`); `None` when the
/// job asks for no output. Entries that are missing, escape the sandbox or cannot
/// be read are skipped with a line in `notes`: a missing output file is the job's
/// business, not a reason to lose the others. An archive over `max_bytes` is
/// removed. `snapshot` is needed for the archive form only.
pub fn collect_output(
    sandbox: &Path,
    output_sandbox: &[String],
    snapshot: Option<&Snapshot>,
    archive: &Path,
    max_bytes: u64,
    notes: &mut Vec<String>,
) -> Result<Option<OutputArchive>, OutputError> {
    if output_sandbox.is_empty() {
        return Ok(None);
    }
    let failed = Rc::new(Cell::new(false));
    let sink = LimitedFile {
        file: Spill::new(archive.to_path_buf()),
        bytes: 0,
        limit: max_bytes,
        failed: Rc::clone(&failed),
    };
    let mut packer = Packer {
        sandbox,
        archive,
        failed,
        writer: ArchiveWriter::new(sink),
        added: HashSet::new(),
        notes,
    };
    // The archive form applies only when the job did not make that file itself.
    let stored_as = match (output_archive_candidate(output_sandbox), snapshot) {
        (Some(name), Some(snapshot)) if fs::symlink_metadata(sandbox.join(name)).is_err() => {
            packer.add_created(Path::new(""), snapshot)?;
            Some(name.to_string())
        }
        _ => {
            for entry in output_sandbox {
                packer.add_entry(entry)?;
            }
            None
        }
    };
    let entries = packer.added.len() as u64;
    let sink = packer
        .writer
        .finish()
        .and_then(LimitedFile::into_inner)
        .map_err(|source| OutputError::Io {
            action: "writing the output archive",
            path: archive.to_path_buf(),
            source,
        })?;
    if sink.bytes > max_bytes {
        let _ = fs::remove_file(archive);
        return Err(OutputError::TooLarge {
            bytes: sink.bytes,
            limit: max_bytes,
        });
    }
    Ok(Some(OutputArchive {
        archive: sink.file.finish(),
        bytes: sink.bytes,
        entries,
        stored_as,
    }))
}

struct Packer<'a> {
    sandbox: &'a Path,
    archive: &'a Path,
    /// Set by the sink when writing the archive failed, to tell that apart from
    /// failing to read a file going into it.
    failed: Rc<Cell<bool>>,
    writer: ArchiveWriter<LimitedFile>,
    added: HashSet<PathBuf>,
    notes: &'a mut Vec<String>,
}

impl Packer<'_> {
    fn add_entry(&mut self, entry: &str) -> Result<(), OutputError> {
        if !is_safe_sandbox_name(entry) {
            self.notes.push(format!(
                "OutputSandbox: `{entry}` is not a name inside the sandbox, skipped"
            ));
            return Ok(());
        }
        let matches = if entry.contains(['*', '?', '[']) {
            self.glob(entry)
        } else {
            let rel: PathBuf = Path::new(entry)
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            let found = fs::symlink_metadata(self.sandbox.join(&rel)).is_ok();
            if found && !rel.as_os_str().is_empty() {
                vec![rel]
            } else {
                vec![]
            }
        };
        if matches.is_empty() {
            self.notes
                .push(format!("OutputSandbox: `{entry}` not found"));
        }
        // A glob walks into linked folders; what it finds there is skipped, with
        // one note per entry rather than one per file.
        let mut through: Option<(PathBuf, usize)> = None;
        for rel in matches {
            match self.link_on_the_way(&rel) {
                Some(link) => {
                    through.get_or_insert((link, 0)).1 += 1;
                }
                None => self.add_path(&rel)?,
            }
        }
        if let Some((link, count)) = through {
            let what = if count == 1 {
                "1 match".to_string()
            } else {
                format!("{count} matches")
            };
            self.notes.push(format!(
                "OutputSandbox: `{entry}` goes through the link `{}`, skipped ({what})",
                link.display()
            ));
        }
        Ok(())
    }

    /// Matches `pattern` inside the sandbox, the way a shell would (`*` does not
    /// match a leading dot).
    fn glob(&mut self, pattern: &str) -> Vec<PathBuf> {
        let root = glob::Pattern::escape(&self.sandbox.to_string_lossy());
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let paths = match glob::glob_with(&format!("{root}/{pattern}"), options) {
            Ok(paths) => paths,
            Err(e) => {
                self.notes.push(format!(
                    "OutputSandbox: `{pattern}` is not a valid pattern ({e})"
                ));
                return vec![];
            }
        };
        let mut found = Vec::new();
        for path in paths {
            match path {
                Ok(path) => {
                    if let Ok(rel) = path.strip_prefix(self.sandbox) {
                        found.push(rel.to_path_buf());
                    }
                }
                Err(e) => self.notes.push(format!("OutputSandbox: `{pattern}`: {e}")),
            }
        }
        found
    }

    /// The first folder above `rel` that is a link: following it could leave the
    /// sandbox (a glob would happily walk into `link/*`).
    fn link_on_the_way(&self, rel: &Path) -> Option<PathBuf> {
        let mut prefix = PathBuf::new();
        for part in rel.parent()?.components() {
            prefix.push(part);
            let meta = fs::symlink_metadata(self.sandbox.join(&prefix)).ok()?;
            if meta.file_type().is_symlink() {
                return Some(prefix);
            }
        }
        None
    }

    /// Adds one file, link or folder (with everything in it), never following links.
    fn add_path(&mut self, rel: &Path) -> Result<(), OutputError> {
        if self.added.contains(rel) {
            return Ok(());
        }
        let path = self.sandbox.join(rel);
        let Some(name) = rel.to_str() else {
            self.notes.push(format!(
                "OutputSandbox: `{}` has a name that is not UTF-8, skipped",
                rel.display()
            ));
            return Ok(());
        };
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                self.notes.push(format!(
                    "OutputSandbox: `{name}` cannot be read ({e}), skipped"
                ));
                return Ok(());
            }
        };
        let kind = meta.file_type();
        let written = if kind.is_symlink() {
            let target = fs::read_link(&path).unwrap_or_default();
            if !link_stays_inside(self.sandbox, rel) {
                self.notes.push(format!(
                    "OutputSandbox: `{name}` is a link pointing outside the sandbox (`{}`), skipped",
                    target.display()
                ));
                return Ok(());
            }
            self.writer.add_symlink(name, &target)
        } else if kind.is_dir() {
            self.writer.add_dir(&path, name)
        } else if kind.is_file() {
            // Opened first so that an unreadable file is skipped before its header
            // is in the archive (a half-written entry would spoil the rest).
            if let Err(e) = fs::File::open(&path) {
                self.notes.push(format!(
                    "OutputSandbox: `{name}` cannot be read ({e}), skipped"
                ));
                return Ok(());
            }
            self.writer.add_file(&path, name)
        } else {
            self.notes.push(format!(
                "OutputSandbox: `{name}` is not a file, folder or link, skipped"
            ));
            return Ok(());
        };
        self.check(written, &path)?;
        self.added.insert(rel.to_path_buf());
        if kind.is_dir() {
            for child in self.children(rel) {
                self.add_path(&child)?;
            }
        }
        Ok(())
    }

    /// Adds what is in `dir` but not in `snapshot`, looking into old folders for
    /// new things.
    fn add_created(&mut self, dir: &Path, snapshot: &Snapshot) -> Result<(), OutputError> {
        for rel in self.children(dir) {
            if !snapshot.contains(&rel) {
                self.add_path(&rel)?;
                continue;
            }
            let is_dir = fs::symlink_metadata(self.sandbox.join(&rel)).is_ok_and(|m| m.is_dir());
            if is_dir {
                self.add_created(&rel, snapshot)?;
            }
        }
        Ok(())
    }

    /// The entries of a folder, sorted so that archives are reproducible.
    fn children(&mut self, dir: &Path) -> Vec<PathBuf> {
        match fs::read_dir(self.sandbox.join(dir)) {
            Ok(listing) => {
                let mut names: Vec<PathBuf> =
                    listing.flatten().map(|e| dir.join(e.file_name())).collect();
                names.sort();
                names
            }
            Err(e) => {
                self.notes.push(format!(
                    "OutputSandbox: the folder `{}` cannot be listed ({e}), skipped",
                    dir.display()
                ));
                vec![]
            }
        }
    }

    fn check(&self, written: io::Result<()>, source_path: &Path) -> Result<(), OutputError> {
        written.map_err(|source| {
            if self.failed.get() {
                OutputError::Io {
                    action: "writing the output archive",
                    path: self.archive.to_path_buf(),
                    source,
                }
            } else {
                OutputError::Io {
                    action: "adding to the output archive",
                    path: source_path.to_path_buf(),
                    source,
                }
            }
        })
    }
}

/// The archive (in memory, or its file once big), counting what goes into it. Past the limit it stops writing
/// (no need to fill the disk with an archive that will be thrown away) but keeps
/// counting, so that the error can say how big the archive would have been.
struct LimitedFile {
    file: Spill,
    bytes: u64,
    limit: u64,
    failed: Rc<Cell<bool>>,
}

impl LimitedFile {
    fn into_inner(mut self) -> io::Result<LimitedFile> {
        self.flush()?;
        Ok(self)
    }
}

impl Write for LimitedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let before = self.bytes;
        self.bytes += buf.len() as u64;
        if before <= self.limit {
            self.file
                .write_all(buf)
                .inspect_err(|_| self.failed.set(true))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.bytes > self.limit {
            return Ok(());
        }
        self.file.flush().inspect_err(|_| self.failed.set(true))
    }
}

#[cfg(test)]
mod tests;
