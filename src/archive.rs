//! Job archives (`.tar.gz`): the input archive the frontend packs and the worker
//! unpacks, and the output archive the worker packs and `drover fetch` unpacks.
//! Writing is plain; reading is defensive, because an archive comes from outside.

use flate2::{write::GzEncoder, Compression};
use std::{
    collections::HashSet,
    ffi::OsString,
    fs::File,
    io,
    io::{Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Component, Path, PathBuf},
};

/// Builds a `.tar.gz`, entry by entry, under names chosen by the caller.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<GzEncoder<W>>,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(out: W) -> Self {
        // Fast compression: archives are mostly small, and packing sits on the
        // job's critical path.
        let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::fast()));
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
/// and any entry whose path goes through a link. Symbolic links are created last, so
/// no file is ever written through one. Modes are kept without setuid/setgid.
pub fn unpack_tar_gz(
    reader: impl io::Read,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackStats, ArchiveError> {
    std::fs::create_dir_all(dest).map_err(ArchiveError::io("creating", dest))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let mut unpacker = Unpacker {
        dest,
        limits,
        stats: UnpackStats::default(),
        files: HashSet::new(),
        links: Vec::new(),
        dirs: Vec::new(),
    };
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        unpacker.entry(&mut entry)?;
    }
    unpacker.finish()
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
        let raw = entry.path().map_err(ArchiveError::Read)?.into_owned();
        let name = raw.display().to_string();
        let rel = relative_inside(&raw, &name)?;
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
                Err(e) => return Err(ArchiveError::Read(e)),
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
    match entry.link_name().map_err(ArchiveError::Read)? {
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
mod tests {
    use super::*;
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
        fn unpack(
            &self,
            archive: &[u8],
            limits: &UnpackLimits,
        ) -> Result<UnpackStats, ArchiveError> {
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
        let err =
            unpack_tar_gz_file(&path, &fx.dest(), &UnpackLimits::default()).expect_err("missing");
        assert!(
            err.to_string()
                .starts_with(&format!("opening `{}`: ", path.display())),
            "{err}"
        );
    }
}
