//! Packs a job for submission: reads and checks the JDL, finds every file it ships
//! (InputSandbox, a relative Executable, relative Prologue/Epilogue scripts), and
//! streams the input archive: each shipped file at the root under its base name,
//! plus the rewritten canonical JDL at `.drover/job.jdl`.
//!
//! Everything is checked before the first byte is written, so a caller that
//! uploads only on `Ok` never uploads half a job. `plan_*` does the checking alone
//! (for a caller that wants the job id first), `pack_*` checks and writes.

mod digest;
mod error;
mod inputs;
mod parametric;
#[cfg(test)]
mod tests;

pub use error::PackError;
pub use parametric::plan_parametric_file;

use crate::archive::ArchiveWriter;
use inputs::{Ctx, Item, ItemKind, NodeKind};
use reconcilers::jdl::{
    decode_source, is_safe_sandbox_name, parse_job, Diagnostic, JobDescription, JobType,
};
use std::{
    collections::HashMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
};

/// Where the rewritten JDL sits inside the input archive. `.drover` is reserved:
/// no shipped file may be called that.
pub const JOB_JDL_PATH: &str = ".drover/job.jdl";

/// Bounds on what a submission may ship.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackLimits {
    /// The input sandbox (the files' sizes plus the JDL) may not be larger.
    pub max_input_bytes: u64,
}

impl Default for PackLimits {
    fn default() -> Self {
        PackLimits {
            max_input_bytes: 1 << 30,
        }
    }
}

/// One thing at the archive's root: a file, or a folder with everything in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedFile {
    /// Its name in the sandbox (the base name of what the JDL named).
    pub name: String,
    /// Where it was read from on this machine.
    pub source: PathBuf,
    /// Its size; for a folder, the sizes of all the files in it.
    pub bytes: u64,
}

/// A job ready to submit: what the worker will read, and what was shipped.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedJob {
    /// The job as the worker sees it: shipped files named by their sandbox names,
    /// InputSandbox listing every shipped name.
    pub description: JobDescription,
    /// `description` in canonical form, as stored at [`JOB_JDL_PATH`].
    pub jdl: String,
    pub files: Vec<ShippedFile>,
    /// Things the user should know but that do not stop the submission (the JDL's
    /// own warnings among them), each a whole line to print as is:
    /// `FILE: warning: MSG` or `FILE:LINE:COL: warning: MSG`.
    pub warnings: Vec<String>,
}

/// A checked job whose input archive has not been written yet.
#[derive(Debug)]
pub struct PackPlan {
    job: PackedJob,
    file: String,
    items: Vec<Item>,
}

impl PackPlan {
    /// The input's size as the limits count it: the files plus the JDL.
    pub fn input_bytes(&self) -> u64 {
        self.job.files.iter().map(|f| f.bytes).sum::<u64>() + self.job.jdl.len() as u64
    }
}

/// Reads, checks and packs the JDL at `path`, streaming the input archive into
/// `out`. On `Err`, nothing was written unless the error is [`PackError::Write`]
/// or [`PackError::Changed`] (a file changed under us): then discard `out`.
#[cfg(test)]
pub fn pack_jdl_file(
    path: &Path,
    limits: &PackLimits,
    out: &mut impl Write,
) -> Result<PackedJob, PackError> {
    plan_jdl_file(path, limits)?.write_archive(out)
}

/// Checks and packs a job described in memory, with relative paths taken from
/// `base_dir`; `source_name` is what messages call it (a file name, or
/// "command line").
#[cfg(test)]
pub fn pack_description(
    job: JobDescription,
    base_dir: &Path,
    source_name: &str,
    limits: &PackLimits,
    out: &mut impl Write,
) -> Result<PackedJob, PackError> {
    plan_description(job, base_dir, source_name, limits)?.write_archive(out)
}

/// Reads and checks the JDL at `path` and everything it ships; writes nothing.
pub fn plan_jdl_file(path: &Path, limits: &PackLimits) -> Result<PackPlan, PackError> {
    let (job, read) = JdlFile::read(path)?;
    let mut plan = plan_description(job, &read.base_dir, &read.file, limits)?;
    read.warn_first(&mut plan);
    Ok(plan)
}

/// A JDL file read and parsed: what messages call it, its warnings, and the
/// folder its relative paths start from.
struct JdlFile {
    /// The path as given.
    file: String,
    /// The parser's findings that are not errors.
    diagnostics: Vec<Diagnostic>,
    base_dir: PathBuf,
}

impl JdlFile {
    /// The job the file describes, and the file.
    fn read(path: &Path) -> Result<(JobDescription, JdlFile), PackError> {
        let file = path.display().to_string();
        let text = read_jdl(path, &file)?;
        let (job, diagnostics) = parse_job(&text).map_err(|diagnostics| PackError::Jdl {
            file: file.clone(),
            diagnostics,
        })?;
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let base_dir = std::path::absolute(folder).map_err(|source| PackError::ReadJdl {
            file: file.clone(),
            source,
        })?;
        let read = JdlFile {
            file,
            diagnostics,
            base_dir,
        };
        Ok((job, read))
    }

    /// Puts the JDL's own warnings before `plan`'s, each as `FILE:LINE:COL: warning: MSG`.
    fn warn_first(&self, plan: &mut PackPlan) {
        let jdl_warnings = self
            .diagnostics
            .iter()
            .filter(|d| !d.is_error())
            .map(|d| format!("{}:{d}", self.file));
        plan.job.warnings.splice(0..0, jdl_warnings);
    }
}

/// Checks a job described in memory and everything it ships; writes nothing.
pub fn plan_description(
    job: JobDescription,
    base_dir: &Path,
    source_name: &str,
    limits: &PackLimits,
) -> Result<PackPlan, PackError> {
    let ctx = Ctx {
        file: source_name,
        base_dir,
    };
    if job.job_type != JobType::Normal {
        return Err(PackError::Unsupported {
            file: source_name.to_string(),
            job_type: job.job_type,
        });
    }
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    check_sandbox_names(ctx, &job, &mut problems);

    let mut shipping = Shipping::default();
    ship_input_sandbox(ctx, &job.input_sandbox, &mut shipping, &mut problems);
    let mut rewritten = job;
    place_scripts(
        ctx,
        &mut rewritten,
        &mut shipping,
        &mut problems,
        &mut warnings,
    );
    if let Some(input) = &rewritten.std_input {
        if !shipping.holds(input) {
            warnings.push(format!(
                "{source_name}: warning: StdInput `{input}` is not in InputSandbox; the Prologue must create it"
            ));
        }
    }
    if let Some(e) = PackError::from_problems(problems) {
        return Err(e);
    }

    rewritten.input_sandbox = shipping.items.iter().map(|i| i.name.clone()).collect();
    let jdl = rewritten.to_canonical();
    let bytes = shipping.items.iter().map(|i| i.bytes).sum::<u64>() + jdl.len() as u64;
    if bytes > limits.max_input_bytes {
        return Err(PackError::TooLarge {
            file: source_name.to_string(),
            bytes,
            limit: limits.max_input_bytes,
        });
    }
    let files = shipping
        .items
        .iter()
        .map(|i| ShippedFile {
            name: i.name.clone(),
            source: i.source.clone(),
            bytes: i.bytes,
        })
        .collect();
    Ok(PackPlan {
        job: PackedJob {
            description: rewritten,
            jdl,
            files,
            warnings,
        },
        file: source_name.to_string(),
        items: shipping.items,
    })
}

fn ship_input_sandbox(
    ctx: Ctx<'_>,
    entries: &[String],
    shipping: &mut Shipping,
    problems: &mut Vec<PackError>,
) {
    for entry in entries {
        let paths = match inputs::expand_entry(ctx, entry) {
            Ok(paths) => paths,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        for path in paths {
            if let Err(e) = ship(ctx, shipping, "InputSandbox", entry, &path) {
                problems.extend(e);
            }
        }
    }
}

/// Places the Executable, the Prologue and the Epilogue (after InputSandbox, which
/// they may come from) and renames the shipped ones to their sandbox names.
fn place_scripts(
    ctx: Ctx<'_>,
    job: &mut JobDescription,
    shipping: &mut Shipping,
    problems: &mut Vec<PackError>,
    warnings: &mut Vec<String>,
) {
    match job.executable.clone().filter(|e| !e.is_empty()) {
        None => problems.push(PackError::NoExecutable {
            file: ctx.file.to_string(),
        }),
        Some(exe) => match place_script(ctx, shipping, "Executable", &exe) {
            Ok(Place::Worker) => {}
            Ok(Place::Sandbox(name)) => job.executable = Some(name),
            // Kept as written: the Prologue creates it at that path in the job's folder.
            Ok(Place::Nowhere { looked_for }) if is_safe_sandbox_name(&exe) => {
                warnings.push(unshipped_executable(ctx, &exe, &looked_for, job));
            }
            Ok(Place::Nowhere { looked_for }) => problems.push(PackError::NotFound {
                file: ctx.file.to_string(),
                attribute: "Executable",
                entry: exe,
                looked_for,
            }),
            Err(e) => problems.extend(e),
        },
    }
    let mut prologue = Vec::with_capacity(job.prologue.len());
    for script in &job.prologue {
        match required_script(ctx, shipping, "Prologue", script) {
            Ok(name) => prologue.push(name),
            Err(e) => problems.extend(e),
        }
    }
    job.prologue = prologue;
    if let Some(script) = job.epilogue.take() {
        match required_script(ctx, shipping, "Epilogue", &script) {
            Ok(name) => job.epilogue = Some(name),
            Err(e) => problems.extend(e),
        }
    }
}

impl PackPlan {
    /// The job as it will be submitted.
    pub fn job(&self) -> &PackedJob {
        &self.job
    }

    /// Streams the input archive into `out`: the JDL first (a reader can stop
    /// there), then the shipped files in order. Fails, leaving `out` to be
    /// discarded, if a file changed size since it was checked: the size limit
    /// was decided on the checked sizes.
    pub fn write_archive(self, out: &mut impl Write) -> Result<PackedJob, PackError> {
        let file = &self.file;
        let failed = |step: String| {
            move |source| PackError::Write {
                file: file.clone(),
                step,
                source,
            }
        };
        let adding = |path: &Path| format!("adding {}", path.display());
        let mut archive = ArchiveWriter::new(&mut *out);
        archive
            .add_bytes(JOB_JDL_PATH, self.job.jdl.as_bytes(), 0o644)
            .map_err(failed(format!("adding {JOB_JDL_PATH}")))?;
        for item in &self.items {
            match &item.kind {
                ItemKind::File => {
                    unchanged(file, &item.source, item.bytes)?;
                    archive
                        .add_file(&item.source, &item.name)
                        .map_err(failed(adding(&item.source)))?;
                }
                ItemKind::Tree(nodes) => {
                    for node in nodes {
                        match &node.kind {
                            NodeKind::Dir => archive.add_dir(&node.path, &node.name),
                            NodeKind::File { bytes } => {
                                unchanged(file, &node.path, *bytes)?;
                                archive.add_file(&node.path, &node.name)
                            }
                            NodeKind::Link { target } => archive.add_symlink(&node.name, target),
                        }
                        .map_err(failed(adding(&node.path)))?;
                    }
                }
            }
        }
        archive
            .finish()
            .and_then(|out| out.flush())
            .map_err(failed("finishing".to_string()))?;
        tracing::debug!(
            file = %self.file,
            files = self.job.files.len(),
            "packed the input archive"
        );
        Ok(self.job)
    }
}

fn unchanged(file: &str, path: &Path, bytes: u64) -> Result<(), PackError> {
    match fs::metadata(path) {
        Ok(meta) if meta.len() == bytes => Ok(()),
        _ => Err(PackError::Changed {
            file: file.to_string(),
            path: path.to_path_buf(),
        }),
    }
}

/// Reads the JDL as bytes so that bad encoding (or a file far too large to be
/// a JDL) is reported with its place by the JDL module, not as an I/O error.
fn read_jdl(path: &Path, file: &str) -> Result<String, PackError> {
    let bytes = crate::jdl_file::read(path).map_err(|source| PackError::ReadJdl {
        file: file.to_string(),
        source,
    })?;
    match decode_source(&bytes) {
        Ok(text) => Ok(text.to_string()),
        Err(diagnostic) => Err(PackError::Jdl {
            file: file.to_string(),
            diagnostics: vec![diagnostic],
        }),
    }
}

/// The JDL module checks sandbox names already; a description built in memory
/// (the flag frontend) has not been through it, and the worker must never be
/// handed a name that leaves its folder.
fn check_sandbox_names(ctx: Ctx<'_>, job: &JobDescription, problems: &mut Vec<PackError>) {
    let named = job
        .output_sandbox
        .iter()
        .map(|n| ("OutputSandbox", n))
        .chain(job.std_input.iter().map(|n| ("StdInput", n)))
        .chain(job.std_output.iter().map(|n| ("StdOutput", n)))
        .chain(job.std_error.iter().map(|n| ("StdError", n)));
    for (attribute, name) in named {
        if !is_safe_sandbox_name(name) {
            problems.push(PackError::UnsafeName {
                file: ctx.file.to_string(),
                attribute,
                name: name.clone(),
            });
        }
    }
}

/// What is shipped so far, by sandbox name.
#[derive(Default)]
struct Shipping {
    items: Vec<Item>,
    by_name: HashMap<String, usize>,
}

impl Shipping {
    fn get(&self, name: &str) -> Option<&Item> {
        self.by_name.get(name).map(|&i| &self.items[i])
    }

    /// Whether `name` is in the sandbox, at the root or inside a shipped folder.
    fn holds(&self, name: &str) -> bool {
        let name = name.trim_start_matches("./");
        self.get(name).is_some()
            || self.items.iter().any(|i| match &i.kind {
                ItemKind::Tree(nodes) => nodes.iter().any(|n| n.name == name),
                ItemKind::File => false,
            })
    }

    /// Whether `name` is a file inside a shipped folder (`data/bin/run.sh`).
    fn holds_file_in_tree(&self, name: &str) -> bool {
        self.items.iter().any(|i| match &i.kind {
            ItemKind::Tree(nodes) => nodes
                .iter()
                .any(|n| n.name == name && matches!(n.kind, NodeKind::File { .. })),
            ItemKind::File => false,
        })
    }
}

/// Adds what `path` holds under its base name. The same file listed twice (a
/// glob and a plain entry) ships once; two different files under one name are an
/// error that names both.
fn ship(
    ctx: Ctx<'_>,
    shipping: &mut Shipping,
    attribute: &'static str,
    entry: &str,
    path: &Path,
) -> Result<String, Vec<PackError>> {
    let name = inputs::base_name(ctx, attribute, entry, path).map_err(|e| vec![e])?;
    if let Some(first) = shipping.get(&name) {
        let same = match (fs::canonicalize(&first.source), fs::canonicalize(path)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Ok(name);
        }
        return Err(vec![PackError::Collision {
            file: ctx.file.to_string(),
            name,
            first: format!("`{}` ({})", first.entry, first.source.display()),
            second: format!("`{entry}` ({})", path.display()),
        }]);
    }
    let item = inputs::scan(ctx, attribute, entry, name.clone(), path.to_path_buf())?;
    shipping.by_name.insert(name.clone(), shipping.items.len());
    shipping.items.push(item);
    Ok(name)
}

/// Where a script the job runs comes from.
enum Place {
    /// An absolute path: taken from the worker, not shipped.
    Worker,
    /// Shipped; this is its name in the sandbox.
    Sandbox(String),
    /// Relative, but neither in InputSandbox nor next to the JDL.
    Nowhere { looked_for: PathBuf },
}

/// Finds a relative script in InputSandbox (by base name, or inside a shipped
/// folder under the path as written), else next to the JDL, where it is shipped.
fn place_script(
    ctx: Ctx<'_>,
    shipping: &mut Shipping,
    attribute: &'static str,
    entry: &str,
) -> Result<Place, Vec<PackError>> {
    let path = Path::new(entry);
    if path.is_absolute() {
        return Ok(Place::Worker);
    }
    let name = inputs::base_name(ctx, attribute, entry, path).map_err(|e| vec![e])?;
    let full = ctx.base_dir.join(path);
    // A script shipped earlier from next to the JDL does not count here: the same
    // base name from another folder is a collision, found by `ship` below.
    if let Some(item) = shipping
        .get(&name)
        .filter(|i| i.attribute == "InputSandbox")
    {
        return match item.kind {
            ItemKind::File => Ok(Place::Sandbox(name)),
            ItemKind::Tree(_) => Err(vec![PackError::IsFolder {
                file: ctx.file.to_string(),
                attribute,
                entry: entry.to_string(),
                path: item.source.clone(),
            }]),
        };
    }
    let in_sandbox = entry.trim_start_matches("./");
    if shipping.holds_file_in_tree(in_sandbox) {
        return Ok(Place::Sandbox(in_sandbox.to_string()));
    }
    match fs::metadata(&full) {
        Ok(meta) if meta.is_dir() => Err(vec![PackError::IsFolder {
            file: ctx.file.to_string(),
            attribute,
            entry: entry.to_string(),
            path: full,
        }]),
        Ok(_) => ship(ctx, shipping, attribute, entry, &full).map(Place::Sandbox),
        Err(_) => Ok(Place::Nowhere { looked_for: full }),
    }
}

/// A Prologue or Epilogue script: relative ones must exist, because nothing runs
/// before them that could create them.
fn required_script(
    ctx: Ctx<'_>,
    shipping: &mut Shipping,
    attribute: &'static str,
    entry: &str,
) -> Result<String, Vec<PackError>> {
    match place_script(ctx, shipping, attribute, entry)? {
        Place::Worker => Ok(entry.to_string()),
        Place::Sandbox(name) => Ok(name),
        Place::Nowhere { looked_for } => Err(vec![PackError::MissingScript {
            file: ctx.file.to_string(),
            attribute,
            entry: entry.to_string(),
            name: Path::new(entry)
                .file_name()
                .map_or_else(|| entry.to_string(), |n| n.to_string_lossy().into_owned()),
            looked_for,
        }]),
    }
}

/// Not an error: the Prologue may create the Executable; the worker fails the job
/// with a clear reason if it is still missing when it is to run.
fn unshipped_executable(
    ctx: Ctx<'_>,
    exe: &str,
    looked_for: &Path,
    job: &JobDescription,
) -> String {
    let file = ctx.file;
    let looked = format!("looked for {} and in InputSandbox", looked_for.display());
    if job.prologue.is_empty() {
        let hint = if exe.contains('/') {
            String::new()
        } else {
            format!("; a program on the worker needs an absolute path, e.g. /usr/bin/{exe}")
        };
        format!(
            "{file}: warning: Executable `{exe}` is not shipped ({looked}) and there is no Prologue to create it: \
             the job will fail unless it is put next to the JDL or listed in InputSandbox{hint}"
        )
    } else {
        format!("{file}: warning: Executable `{exe}` is not shipped ({looked}); the Prologue must create it")
    }
}
