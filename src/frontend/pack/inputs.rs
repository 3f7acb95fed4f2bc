//! Turns what a JDL names (InputSandbox entries, scripts) into files on this machine:
//! `file://` URIs, globs, folders walked into trees, links checked to stay inside.
//! Nothing here writes; everything that could fail while writing is looked at here.

use super::PackError;
use reconcilers::jdl::is_safe_sandbox_name;
use std::{
    ffi::OsString,
    fs,
    path::{Component, Path, PathBuf},
};

/// The name the job's own files must never use: the archive keeps drover's
/// rewritten JDL under it.
pub(super) const RESERVED: &str = ".drover";

/// How many links one link may go through before it is taken for a loop
/// (Linux's own limit).
const MAX_LINK_HOPS: u32 = 40;

/// One thing shipped at the archive's root under `name`.
#[derive(Debug)]
pub(super) struct Item {
    pub name: String,
    /// The entry as written in the JDL (for messages).
    pub entry: String,
    /// The attribute that named it (InputSandbox, Executable, ...).
    pub attribute: &'static str,
    pub source: PathBuf,
    pub bytes: u64,
    pub kind: ItemKind,
}

#[derive(Debug)]
pub(super) enum ItemKind {
    File,
    /// A folder: every node under it, the folder itself first, parents before
    /// children, in name order.
    Tree(Vec<Node>),
}

#[derive(Debug)]
pub(super) struct Node {
    /// The archive path (`name/sub/file`).
    pub name: String,
    pub path: PathBuf,
    pub kind: NodeKind,
}

#[derive(Debug)]
pub(super) enum NodeKind {
    Dir,
    File { bytes: u64 },
    Link { target: PathBuf },
}

/// Who a problem is reported against; every error starts with the JDL file.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    pub file: &'a str,
    pub base_dir: &'a Path,
}

/// The paths an InputSandbox entry stands for: one for a plain path or URI, each
/// match (in name order) for a glob.
pub(super) fn expand_entry(ctx: Ctx<'_>, entry: &str) -> Result<Vec<PathBuf>, PackError> {
    let path = local_path(ctx, entry)?;
    if !path.contains(['*', '?']) {
        let full = ctx.base_dir.join(&path);
        if !exists(&full) {
            return Err(PackError::NotFound {
                file: ctx.file.to_string(),
                attribute: "InputSandbox",
                entry: entry.to_string(),
                looked_for: full,
            });
        }
        return Ok(vec![full]);
    }
    // Only `*` and `?` are wildcards (JDL.md); brackets in names are literal.
    let literal: String = path
        .chars()
        .map(|c| match c {
            '[' => "[[]".to_string(),
            ']' => "[]]".to_string(),
            c => c.to_string(),
        })
        .collect();
    let pattern = if Path::new(&path).is_absolute() {
        literal
    } else {
        let base = ctx.base_dir.to_str().ok_or_else(|| PackError::BadPattern {
            file: ctx.file.to_string(),
            entry: entry.to_string(),
            reason: "the JDL's folder is not valid UTF-8".to_string(),
        })?;
        format!(
            "{}/{literal}",
            glob::Pattern::escape(base.trim_end_matches('/'))
        )
    };
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        // As in a shell: `*` does not pick up hidden files.
        require_literal_leading_dot: true,
    };
    let bad = |reason: String| PackError::BadPattern {
        file: ctx.file.to_string(),
        entry: entry.to_string(),
        reason,
    };
    let mut matches = Vec::new();
    for found in glob::glob_with(&pattern, options).map_err(|e| bad(e.to_string()))? {
        matches.push(found.map_err(|e| bad(e.to_string()))?);
    }
    if matches.is_empty() {
        return Err(PackError::GlobNoMatch {
            file: ctx.file.to_string(),
            entry: entry.to_string(),
            pattern,
        });
    }
    Ok(matches)
}

/// The local path an entry names: plain paths as they are, `file:` URIs decoded,
/// other URIs refused (drover cannot fetch them for the user).
fn local_path(ctx: Ctx<'_>, entry: &str) -> Result<String, PackError> {
    let bad = |reason: String| PackError::BadFileUri {
        file: ctx.file.to_string(),
        entry: entry.to_string(),
        reason,
    };
    let Some((scheme, rest)) = entry.split_once(':') else {
        return Ok(entry.to_string());
    };
    let is_scheme = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !is_scheme {
        return Ok(entry.to_string());
    }
    if !scheme.eq_ignore_ascii_case("file") {
        // `a:b` is a legal file name; only `scheme://` (and DIRAC's `LFN:`) are URIs.
        if rest.starts_with("//") || scheme.eq_ignore_ascii_case("lfn") {
            return Err(PackError::RemoteUri {
                file: ctx.file.to_string(),
                entry: entry.to_string(),
            });
        }
        return Ok(entry.to_string());
    }
    let path = match rest.strip_prefix("//") {
        Some(after) => {
            let (host, path) = after.find('/').map_or((after, ""), |i| after.split_at(i));
            if !host.is_empty() && !host.eq_ignore_ascii_case("localhost") {
                return Err(bad(format!(
                    "it names the host `{host}`; files are read from this machine"
                )));
            }
            path
        }
        None => rest,
    };
    if !path.starts_with('/') {
        return Err(bad("a file URI holds an absolute path".to_string()));
    }
    percent_decode(path)
        .ok_or_else(|| bad("a `%` escape is not two hex digits or not UTF-8".to_string()))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// The name a path lands under in the sandbox: its last component, which must be a
/// safe, UTF-8, non-reserved name. `entry` is only for messages.
pub(super) fn base_name(
    ctx: Ctx<'_>,
    attribute: &'static str,
    entry: &str,
    path: &Path,
) -> Result<String, PackError> {
    // `dir/.` and `dir/..` would ship a folder under a name the user never wrote.
    // An empty entry would otherwise stand for the JDL's whole folder.
    let last = path.components().next_back().filter(|_| !entry.is_empty());
    let Some(Component::Normal(name)) = last.filter(|_| !ends_with_dot(entry)) else {
        return Err(PackError::NoBaseName {
            file: ctx.file.to_string(),
            attribute,
            entry: entry.to_string(),
        });
    };
    let bad = |name: String, reason| PackError::BadName {
        file: ctx.file.to_string(),
        attribute,
        entry: entry.to_string(),
        name,
        reason,
    };
    let Some(name) = name.to_str() else {
        return Err(bad(
            name.to_string_lossy().into_owned(),
            "the name is not valid UTF-8",
        ));
    };
    if name == RESERVED {
        return Err(bad(
            name.to_string(),
            "drover keeps its own files under that name",
        ));
    }
    if !is_safe_sandbox_name(name) {
        return Err(bad(name.to_string(), "the name holds a `\\` or a NUL"));
    }
    Ok(name.to_string())
}

fn ends_with_dot(entry: &str) -> bool {
    let last = entry.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    last == "." || last == ".."
}

/// Looks at what `path` is (following a link named directly by the user) and, for
/// a folder, at everything under it.
pub(super) fn scan(
    ctx: Ctx<'_>,
    attribute: &'static str,
    entry: &str,
    name: String,
    path: PathBuf,
) -> Result<Item, Vec<PackError>> {
    let unreadable = |p: &Path, source| PackError::Unreadable {
        file: ctx.file.to_string(),
        attribute,
        entry: entry.to_string(),
        path: p.to_path_buf(),
        source,
    };
    let meta = fs::metadata(&path).map_err(|e| vec![unreadable(&path, e)])?;
    if meta.is_file() {
        // Opened now so that a file we may not read fails the check, not the upload.
        fs::File::open(&path).map_err(|e| vec![unreadable(&path, e)])?;
        return Ok(Item {
            name,
            entry: entry.to_string(),
            attribute,
            source: path,
            bytes: meta.len(),
            kind: ItemKind::File,
        });
    }
    if !meta.is_dir() {
        return Err(vec![PackError::NotRegular {
            file: ctx.file.to_string(),
            attribute,
            entry: entry.to_string(),
            path,
        }]);
    }
    let mut walk = Walk {
        ctx,
        entry,
        top: &path,
        top_real: fs::canonicalize(&path).map_err(|e| vec![unreadable(&path, e)])?,
        nodes: Vec::new(),
        bytes: 0,
        problems: Vec::new(),
    };
    walk.nodes.push(Node {
        name: name.clone(),
        path: path.clone(),
        kind: NodeKind::Dir,
    });
    walk.dir(&path, &name, &[]);
    if !walk.problems.is_empty() {
        return Err(walk.problems);
    }
    let (nodes, bytes) = (walk.nodes, walk.bytes);
    Ok(Item {
        name,
        entry: entry.to_string(),
        attribute,
        source: path,
        bytes,
        kind: ItemKind::Tree(nodes),
    })
}

struct Walk<'a> {
    ctx: Ctx<'a>,
    entry: &'a str,
    top: &'a Path,
    top_real: PathBuf,
    nodes: Vec<Node>,
    bytes: u64,
    problems: Vec<PackError>,
}

impl Walk<'_> {
    fn unreadable(&mut self, path: &Path, source: std::io::Error) {
        self.problems.push(PackError::Unreadable {
            file: self.ctx.file.to_string(),
            attribute: "InputSandbox",
            entry: self.entry.to_string(),
            path: path.to_path_buf(),
            source,
        });
    }

    /// Walks `dir` (archive name `name`, `rel` its components under the top).
    /// Links are never followed: each is stored as a link if it stays inside.
    fn dir(&mut self, dir: &Path, name: &str, rel: &[OsString]) {
        let listing = match fs::read_dir(dir) {
            Ok(listing) => listing,
            Err(e) => return self.unreadable(dir, e),
        };
        let mut children = Vec::new();
        for child in listing {
            match child {
                Ok(child) => children.push(child.file_name()),
                Err(e) => return self.unreadable(dir, e),
            }
        }
        children.sort();
        for child in children {
            let path = dir.join(&child);
            let Some(child_name) = child.to_str().filter(|n| is_safe_sandbox_name(n)) else {
                self.problems.push(PackError::BadName {
                    file: self.ctx.file.to_string(),
                    attribute: "InputSandbox",
                    entry: self.entry.to_string(),
                    name: path.display().to_string(),
                    reason: "the name is not valid UTF-8 or holds a `\\`",
                });
                continue;
            };
            let archive_name = format!("{name}/{child_name}");
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) => {
                    self.unreadable(&path, e);
                    continue;
                }
            };
            let kind = if meta.is_symlink() {
                match self.link(&path, rel) {
                    Some(target) => NodeKind::Link { target },
                    None => continue,
                }
            } else if meta.is_dir() {
                NodeKind::Dir
            } else if meta.is_file() {
                if let Err(e) = fs::File::open(&path) {
                    self.unreadable(&path, e);
                    continue;
                }
                self.bytes += meta.len();
                NodeKind::File { bytes: meta.len() }
            } else {
                self.problems.push(PackError::NotRegular {
                    file: self.ctx.file.to_string(),
                    attribute: "InputSandbox",
                    entry: self.entry.to_string(),
                    path,
                });
                continue;
            };
            let is_dir = matches!(kind, NodeKind::Dir);
            self.nodes.push(Node {
                name: archive_name.clone(),
                path: path.clone(),
                kind,
            });
            if is_dir {
                let mut rel = rel.to_vec();
                rel.push(child);
                self.dir(&path, &archive_name, &rel);
            }
        }
    }

    /// The target to store for the link at `path` (in the folder `rel` under the
    /// top), or `None` (and a problem) when it leads outside the top folder.
    fn link(&mut self, path: &Path, rel: &[OsString]) -> Option<PathBuf> {
        let target = match fs::read_link(path) {
            Ok(target) => target,
            Err(e) => {
                self.unreadable(path, e);
                return None;
            }
        };
        let mut hops = 0;
        let Some(inside) = self.resolve(rel.to_vec(), &target, &mut hops) else {
            self.problems.push(PackError::LinkOutside {
                file: self.ctx.file.to_string(),
                entry: self.entry.to_string(),
                link: path.to_path_buf(),
                target,
            });
            return None;
        };
        if target.is_relative() {
            return Some(target);
        }
        // An absolute link into the folder would point elsewhere on the worker:
        // store it relative to the link's own folder instead.
        let mut relative: PathBuf = rel.iter().map(|_| "..").collect();
        relative.extend(&inside);
        if relative.as_os_str().is_empty() {
            relative.push(".");
        }
        Some(relative)
    }

    /// Resolves `target` as the system would from the folder `at` (components under
    /// the top), going through links, and fails as soon as a step leaves the top.
    /// A purely textual check is not enough: with `a -> .`, `a/..` is outside.
    fn resolve(
        &self,
        mut at: Vec<OsString>,
        target: &Path,
        hops: &mut u32,
    ) -> Option<Vec<OsString>> {
        *hops += 1;
        if *hops > MAX_LINK_HOPS {
            return None;
        }
        let rest = if target.is_absolute() {
            at.clear();
            target
                .strip_prefix(self.top)
                .or_else(|_| target.strip_prefix(&self.top_real))
                .ok()?
        } else {
            target
        };
        for part in rest.components() {
            match part {
                Component::CurDir => {}
                Component::ParentDir => {
                    at.pop()?;
                }
                Component::Normal(name) => {
                    at.push(name.to_os_string());
                    let here: PathBuf = self.top.join(at.iter().collect::<PathBuf>());
                    // A missing step ends the walk through links: what follows is
                    // checked as text (nothing there can be a link yet).
                    if fs::symlink_metadata(&here).is_ok_and(|m| m.is_symlink()) {
                        let next = fs::read_link(&here).ok()?;
                        at.pop();
                        at = self.resolve(at, &next, hops)?;
                    }
                }
                Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        Some(at)
    }
}
