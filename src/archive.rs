//! Job archives (`.tar.gz`): the input archive the frontend packs and the worker
//! unpacks, and the output archive the worker packs and `drover fetch` unpacks.
//! Writing is plain; reading is defensive, because an archive comes from outside.

#[path = "archive_guard.rs"]
mod guard;
#[path = "archive_gzip.rs"]
mod gzip;

use guard::{GuardError, TarGuard};
use gzip::GzWriter;
use std::{
    collections::{BTreeMap, HashSet},
    ffi::OsString,
    fs::File,
    io,
    io::{Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Component, Path, PathBuf},
};

/// Builds a `.tar.gz`, entry by entry, under names chosen by the caller.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<GzWriter<W>>,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(out: W) -> Self {
        // Fast compression, on a reused compressor (`archive_gzip.rs`):
        // archives are mostly small, and packing sits on the job's critical path.
        let mut tar = tar::Builder::new(GzWriter::new(out));
        tar.mode(tar::HeaderMode::Deterministic);
        tar.follow_symlinks(false);
        ArchiveWriter { tar }
    }

    /// Adds the file at `src` under `name`, keeping its permission bits.
    pub fn add_file(&mut self, src: &Path, name: &str) -> io::Result<()> {
        let mut file = File::open(src)?;
        self.tar.append_file(name, &mut file)
    }

    /// Adds a regular file with the given contents and mode.
    pub fn add_bytes(&mut self, name: &str, data: &[u8], mode: u32) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_entry_type(tar::EntryType::Regular);
        self.tar.append_data(&mut header, name, data)
    }

    /// Adds a directory entry (so that empty folders survive the trip).
    pub fn add_dir(&mut self, src: &Path, name: &str) -> io::Result<()> {
        self.tar.append_dir(name, src)
    }

    /// Adds a symbolic link `name -> target` as a link, never following it.
    pub fn add_symlink(&mut self, name: &str, target: &Path) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        self.tar.append_link(&mut header, name, target)
    }

    /// Writes the tar trailer and the gzip footer and hands back the writer.
    pub fn finish(self) -> io::Result<W> {
        self.tar.into_inner()?.finish()
    }
}

/// How much an archive may unpack to: a few bytes of gzip can claim terabytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Total bytes of file contents.
    pub max_bytes: u64,
    /// Entries of any kind (files, folders, links).
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_bytes: 4 << 30,
            max_entries: 100_000,
        }
    }
}

/// What an unpack wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Why an archive was refused or could not be unpacked. Each names the entry, so
/// that the user can find it in the archive they made.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading the archive: {0}")]
    Read(#[source] io::Error),
    #[error("archive entry `{entry}` has an absolute path")]
    Absolute { entry: String },
    #[error("archive entry `{entry}` escapes the folder")]
    Escapes { entry: String },
    #[error("archive entry `{entry}` is a {kind}")]
    Special { entry: String, kind: &'static str },
    #[error("archive entry `{entry}` has a type drover does not unpack ({kind})")]
    Unsupported { entry: String, kind: String },
    #[error("archive holds more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("archive unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("archive entry `{entry}` is a link pointing outside the folder (`{target}`)")]
    LinkOutside { entry: String, target: String },
    #[error("archive entry `{entry}` is a hard link to `{target}`, which is not a file unpacked before it")]
    HardLinkTarget { entry: String, target: String },
    #[error("archive entry `{entry}` is a link without a target")]
    LinkWithoutTarget { entry: String },
    #[error("archive entry `{entry}` goes through the link `{link}`")]
    ThroughLink { entry: String, link: String },
    #[error("{0}")]
    Refused(GuardError),
    #[error("archive entry `{entry}` conflicts with the existing folder `{path}`")]
    Conflict { entry: String, path: String },
    #[error("{}", io_message(action, path, source))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ArchiveError {
    /// A read error, or the guard's refusal said as what it is.
    fn read(e: io::Error) -> ArchiveError {
        match GuardError::of(&e) {
            Some(GuardError::TooLarge { limit }) => ArchiveError::TooLarge { limit: *limit },
            Some(GuardError::TooManyEntries { limit }) => {
                ArchiveError::TooManyEntries { limit: *limit }
            }
            Some(other) => ArchiveError::Refused(other.clone()),
            None => ArchiveError::Read(e),
        }
    }

    fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> ArchiveError + 'p {
        move |source| ArchiveError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A full disk is said plainly: it is the worker's problem, not the archive's.
fn io_message(action: &str, path: &Path, err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            format!(
                "no space left on device while {action} `{}`",
                path.display()
            )
        }
        _ => format!("{action} `{}`: {err}", path.display()),
    }
}

/// Unpacks the `.tar.gz` file at `path` into `dest`; see [`unpack_tar_gz`].
pub fn unpack_tar_gz_file(
    path: &Path,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackStats, ArchiveError> {
    let file = File::open(path).map_err(ArchiveError::io("opening", path))?;
    unpack_tar_gz(io::BufReader::new(file), dest, limits)
}

/// Unpacks a `.tar.gz` into `dest` (created if missing) and never writes outside it.
///
/// Refused: absolute names, `..`, device files and fifos, hard links to anything but
/// a file unpacked before, symbolic links that end up outside `dest` (checked on the
/// finished tree, since two links that are harmless alone can climb out together),
/// and any entry whose path goes through a link. Bombs are stopped in the stream
/// (see `guard`), before the tar reader buffers or decompresses them. Symbolic links are created last, so
/// no file is ever written through one. Modes are kept without setuid/setgid.
pub fn unpack_tar_gz(
    reader: impl io::Read,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackStats, ArchiveError> {
    unpack(reader, dest, limits, None).map(|(stats, _)| stats)
}

/// drover's own folder in a job's input archive (the JDL as `.drover/job.jdl`).
pub const DROVER_DIR: &str = ".drover";

/// Files kept in memory, by their path inside the archive.
pub type OwnFiles = BTreeMap<String, Vec<u8>>;

/// Unpacks a job's input archive as [`unpack_tar_gz`] does, except drover's own
/// files (under [`DROVER_DIR`]): they are not the job's business, so they are
/// returned, by their names in the archive, instead of written to `dest`.
pub fn unpack_job_input(
    reader: impl io::Read,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<(UnpackStats, OwnFiles), ArchiveError> {
    unpack(reader, dest, limits, Some(OwnFiles::new()))
        .map(|(stats, own)| (stats, own.unwrap_or_default()))
}

fn unpack(
    reader: impl io::Read,
    dest: &Path,
    limits: &UnpackLimits,
    set_aside: Option<OwnFiles>,
) -> Result<(UnpackStats, Option<OwnFiles>), ArchiveError> {
    std::fs::create_dir_all(dest).map_err(ArchiveError::io("creating", dest))?;
    let guarded = TarGuard::new(
        flate2::read::GzDecoder::new(reader),
        limits.max_bytes,
        limits.max_entries,
    );
    let mut archive = tar::Archive::new(guarded);
    let mut unpacker = Unpacker {
        dest,
        limits,
        stats: UnpackStats::default(),
        files: HashSet::new(),
        links: Vec::new(),
        dirs: Vec::new(),
        set_aside,
    };
    for entry in archive.entries().map_err(ArchiveError::read)? {
        let mut entry = entry.map_err(ArchiveError::read)?;
        unpacker.entry(&mut entry)?;
    }
    let set_aside = unpacker.set_aside.take();
    unpacker.finish().map(|stats| (stats, set_aside))
}

struct Unpacker<'a> {
    dest: &'a Path,
    limits: &'a UnpackLimits,
    stats: UnpackStats,
    /// Regular files written so far: the only valid hard-link targets.
    files: HashSet<PathBuf>,
    /// Symbolic links (path, target, entry name), created at the end.
    links: Vec<(PathBuf, PathBuf, String)>,
    /// Folders and their modes, applied at the end so that a read-only folder can
    /// still be filled.
    dirs: Vec<(PathBuf, u32)>,
    /// The files under `DROVER_DIR`, kept here instead of written (when set).
    set_aside: Option<OwnFiles>,
}

impl Unpacker<'_> {
    fn entry<R: io::Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ArchiveError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        self.stats.entries += 1;
        if self.stats.entries > self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        let raw = entry.path().map_err(ArchiveError::read)?.into_owned();
        let name = raw.display().to_string();
        let rel = relative_inside(&raw, &name)?;
        if self.set_aside.is_some() && rel.starts_with(DROVER_DIR) {
            return self.keep_in_memory(entry, rel.display().to_string());
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        match kind {
            tar::EntryType::Directory => {
                if rel.as_os_str().is_empty() {
                    return Ok(());
                }
                self.make_parents(&rel, &name)?;
                self.make_dir(&rel, &name)?;
                self.dirs.push((rel, mode));
                Ok(())
            }
            _ if rel.as_os_str().is_empty() => Err(ArchiveError::Escapes { entry: name }),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.write_file(entry, &rel, &name, mode)
            }
            tar::EntryType::Symlink => {
                let target = link_target(entry, &name)?;
                if target.is_absolute() || !lexically_inside(rel.parent(), &target) {
                    return Err(ArchiveError::LinkOutside {
                        entry: name,
                        target: target.display().to_string(),
                    });
                }
                self.links.push((rel, target, name));
                Ok(())
            }
            tar::EntryType::Link => self.hard_link(entry, &rel, &name),
            tar::EntryType::Block | tar::EntryType::Char => Err(ArchiveError::Special {
                entry: name,
                kind: "device file",
            }),
            tar::EntryType::Fifo => Err(ArchiveError::Special {
                entry: name,
                kind: "fifo",
            }),
            other => Err(ArchiveError::Unsupported {
                entry: name,
                kind: format!("{other:?}"),
            }),
        }
    }

    /// A file of drover's own (kept by its path inside the archive, as
    /// `.drover/job.jdl`), read into memory within the same limits; its
    /// folders and anything else under `DROVER_DIR` are left out.
    fn keep_in_memory<R: io::Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: String,
    ) -> Result<(), ArchiveError> {
        if !matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            return Ok(());
        }
        let room = self.limits.max_bytes.saturating_sub(self.stats.bytes);
        let mut data = Vec::new();
        io::Read::take(&mut *entry, room.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(ArchiveError::read)?;
        self.stats.bytes += data.len() as u64;
        if self.stats.bytes > self.limits.max_bytes {
            return Err(ArchiveError::TooLarge {
                limit: self.limits.max_bytes,
            });
        }
        if let Some(kept) = &mut self.set_aside {
            kept.insert(name, data);
        }
        Ok(())
    }

    fn write_file<R: io::Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        name: &str,
        mode: u32,
    ) -> Result<(), ArchiveError> {
        // Checked against the header first, so that a bomb is refused before a byte
        // of it lands on disk.
        if self.stats.bytes.saturating_add(entry.size()) > self.limits.max_bytes {
            return Err(ArchiveError::TooLarge {
                limit: self.limits.max_bytes,
            });
        }
        let path = self.make_parents(rel, name)?;
        self.clear_path(&path, name)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(ArchiveError::io("creating", &path))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ArchiveError::read(e)),
            };
            self.stats.bytes += n as u64;
            if self.stats.bytes > self.limits.max_bytes {
                return Err(ArchiveError::TooLarge {
                    limit: self.limits.max_bytes,
                });
            }
            file.write_all(&buf[..n])
                .map_err(ArchiveError::io("writing", &path))?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(ArchiveError::io("setting the mode of", &path))?;
        self.files.insert(rel.to_path_buf());
        Ok(())
    }

    fn hard_link<R: io::Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        rel: &Path,
        name: &str,
    ) -> Result<(), ArchiveError> {
        let raw = link_target(entry, name)?;
        let outside = || ArchiveError::LinkOutside {
            entry: name.to_string(),
            target: raw.display().to_string(),
        };
        let target = match relative_inside(&raw, name) {
            Ok(t) if !t.as_os_str().is_empty() => t,
            _ => return Err(outside()),
        };
        if !self.files.contains(&target) {
            return Err(ArchiveError::HardLinkTarget {
                entry: name.to_string(),
                target: raw.display().to_string(),
            });
        }
        if target == rel {
            return Ok(());
        }
        let path = self.make_parents(rel, name)?;
        self.clear_path(&path, name)?;
        std::fs::hard_link(self.dest.join(&target), &path)
            .map_err(ArchiveError::io("linking", &path))?;
        self.files.insert(rel.to_path_buf());
        Ok(())
    }

    /// Creates the folders above `rel`, refusing to go through a link or a file.
    fn make_parents(&self, rel: &Path, name: &str) -> Result<PathBuf, ArchiveError> {
        let mut prefix = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for part in parent.components() {
                prefix.push(part);
                self.make_dir(&prefix, name)?;
            }
        }
        Ok(self.dest.join(rel))
    }

    fn make_dir(&self, rel: &Path, name: &str) -> Result<(), ArchiveError> {
        let path = self.dest.join(rel);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => Err(ArchiveError::ThroughLink {
                entry: name.to_string(),
                link: rel.display().to_string(),
            }),
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(ArchiveError::Conflict {
                entry: name.to_string(),
                path: rel.display().to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&path).map_err(ArchiveError::io("creating", &path))
            }
            Err(e) => Err(ArchiveError::io("inspecting", &path)(e)),
        }
    }

    /// A later entry replaces an earlier file or link of the same name (as tar
    /// does); removing instead of truncating never writes through a hard link.
    fn clear_path(&self, path: &Path, name: &str) -> Result<(), ArchiveError> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => Err(ArchiveError::Conflict {
                entry: name.to_string(),
                path: path
                    .strip_prefix(self.dest)
                    .unwrap_or(path)
                    .display()
                    .to_string(),
            }),
            Ok(_) => std::fs::remove_file(path).map_err(ArchiveError::io("replacing", path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ArchiveError::io("inspecting", path)(e)),
        }
    }

    fn finish(mut self) -> Result<UnpackStats, ArchiveError> {
        let links = std::mem::take(&mut self.links);
        for (rel, target, name) in &links {
            let path = self.make_parents(rel, name)?;
            self.clear_path(&path, name)?;
            std::os::unix::fs::symlink(target, &path)
                .map_err(ArchiveError::io("creating the link", &path))?;
        }
        // Only the finished tree tells where a chain of links really ends.
        for (rel, target, name) in &links {
            if !link_stays_inside(self.dest, rel) {
                let path = self.dest.join(rel);
                let _ = std::fs::remove_file(&path);
                return Err(ArchiveError::LinkOutside {
                    entry: name.clone(),
                    target: target.display().to_string(),
                });
            }
        }
        for (rel, mode) in &self.dirs {
            let path = self.dest.join(rel);
            let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if is_dir {
                // The owner keeps rwx: the worker must be able to clean the folder up.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o700))
                    .map_err(ArchiveError::io("setting the mode of", &path))?;
            }
        }
        Ok(self.stats)
    }
}

fn link_target<R: io::Read>(
    entry: &tar::Entry<'_, R>,
    name: &str,
) -> Result<PathBuf, ArchiveError> {
    match entry.link_name().map_err(ArchiveError::read)? {
        Some(target) if !target.as_os_str().is_empty() => Ok(target.into_owned()),
        _ => Err(ArchiveError::LinkWithoutTarget {
            entry: name.to_string(),
        }),
    }
}

/// An entry name as a clean relative path (`./` dropped), or why it is refused.
fn relative_inside(raw: &Path, name: &str) -> Result<PathBuf, ArchiveError> {
    let mut rel = PathBuf::new();
    for part in raw.components() {
        match part {
            Component::Normal(p) => rel.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(ArchiveError::Escapes {
                    entry: name.to_string(),
                })
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ArchiveError::Absolute {
                    entry: name.to_string(),
                })
            }
        }
    }
    Ok(rel)
}

/// Whether `target`, read from the folder `from` (relative to the root), stays
/// inside the root when only its own `..` are counted.
fn lexically_inside(from: Option<&Path>, target: &Path) -> bool {
    let mut depth: usize = from.map_or(0, |f| f.components().count());
    for part in target.components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth == 0 => return false,
            Component::ParentDir => depth -= 1,
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Whether the symbolic link at `rel` (relative to `root`, its folders real ones)
/// ends up inside `root` when every link on the way is followed as the kernel
/// would. A chain longer than the kernel's 40 links counts as outside.
pub(crate) fn link_stays_inside(root: &Path, rel: &Path) -> bool {
    let mut hops = 0;
    let base: Vec<OsString> = rel
        .parent()
        .map(|p| p.iter().map(OsString::from).collect())
        .unwrap_or_default();
    let Ok(target) = std::fs::read_link(root.join(rel)) else {
        return false;
    };
    resolve_inside(root, base, &target, &mut hops).is_some()
}

fn resolve_inside(
    root: &Path,
    mut at: Vec<OsString>,
    target: &Path,
    hops: &mut u32,
) -> Option<Vec<OsString>> {
    for part in target.components() {
        match part {
            Component::Normal(p) => {
                at.push(p.to_os_string());
                let here: PathBuf = root.join(at.iter().collect::<PathBuf>());
                let is_link =
                    std::fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink());
                if is_link {
                    *hops += 1;
                    if *hops > 40 {
                        return None;
                    }
                    let next = std::fs::read_link(&here).ok()?;
                    at.pop();
                    at = resolve_inside(root, at, &next, hops)?;
                }
            }
            Component::CurDir => {}
            Component::ParentDir => {
                at.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(at)
}

#[cfg(test)]
#[path = "archive_tests.rs"]
pub(crate) mod tests;
