//! The JDL (gLite-style Job Description Language) that drover reads: a lenient
//! parser with `line:col` errors, a validator, and the canonical writer.
//! See the project's docs/jdl.md for the language as drover reads it.

mod attrs;
mod dag;
mod fields;
mod lexer;
mod parametric;
mod parser;
mod validate;
mod writer;

#[cfg(test)]
mod tests;

pub use parametric::{
    expand as expand_parametric, expand_with_values as expand_parametric_with_values,
    parameter_values, ExpandError, MAX_PARAMETRIC_JOBS, PARAM_PLACEHOLDER,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest JDL drover reads. Real job descriptions are a few KiB; anything
/// near this is a mistake (a data file given as the JDL) or an attack.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;

/// The deepest nesting of `[`, `{` and `(` drover reads; the parser recurses, and
/// this keeps hostile input from overflowing the stack.
pub const MAX_NESTING: usize = 64;

/// A JDL value as written. Bare words are strings; expressions keep their source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Str(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    List(Vec<Value>),
    /// A nested record `[ ... ]` (DAG nodes), attributes in file order.
    Record(Vec<(String, Value)>),
    /// An expression kept as its (trimmed) source text.
    Expr(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Severity {
    Warning,
    Error,
}

/// One finding about a JDL text. Lines and columns count from 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `LINE:COL: error: MESSAGE`; the caller puts the file name in front.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}:{}: {}: {}", self.line, self.col, sev, self.message)
    }
}

/// `Type`/`JobType`, case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum JobType {
    /// `Type = "Job"` with no JobType, or `JobType = "Normal"`.
    #[default]
    Normal,
    Parametric,
    Dag,
    Collection,
}

/// A job as drover acts on it. Attributes drover does not act on (Requirements,
/// Rank, unknown ones) are kept in `other`, in file order, so nothing is lost.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobDescription {
    pub job_type: JobType,
    pub executable: Option<String>,
    pub arguments: Option<String>,
    pub prologue: Vec<String>,
    pub prologue_arguments: Option<String>,
    pub epilogue: Option<String>,
    pub epilogue_arguments: Option<String>,
    pub input_sandbox: Vec<String>,
    pub output_sandbox: Vec<String>,
    pub std_input: Option<String>,
    pub std_output: Option<String>,
    pub std_error: Option<String>,
    /// `Environment = {"K=V", ...}` split at the first `=`.
    pub environment: Vec<(String, String)>,
    pub retry_count: Option<u32>,
    pub shallow_retry_count: Option<u32>,
    pub max_wall_time: Option<u64>,
    pub job_name: Option<String>,
    pub other: Vec<(String, Value)>,
}

/// A sandbox name (OutputSandbox entry, StdInput/StdOutput/StdError, a shipped file's
/// name) must stay inside the job's folder: relative, no `..`, no NUL, not empty.
pub fn is_safe_sandbox_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\0')
        && !name.contains('\\')
        && name.split('/').all(|part| part != "..")
}

/// The seed's archive form of OutputSandbox: a single entry naming a `.tar.gz`,
/// `.tgz` or `.tar` archive. The worker decides at the end of the run whether the
/// job created that file itself (then it is an ordinary output file) or not (then
/// the output archive is stored under this name and holds everything the job
/// created in its folder).
pub fn output_archive_candidate(output_sandbox: &[String]) -> Option<&str> {
    match output_sandbox {
        [only]
            if [".tar.gz", ".tgz", ".tar"]
                .iter()
                .any(|ext| only.ends_with(ext)) =>
        {
            Some(only.as_str())
        }
        _ => None,
    }
}

/// Every error and warning for a JDL text, sorted by position. Syntax errors stop
/// the reading at the first one; validation errors are all reported.
pub fn check(src: &str) -> Vec<Diagnostic> {
    match parse_job(src) {
        Ok((_, warnings)) => warnings,
        Err(diagnostics) => diagnostics,
    }
}

/// `check` for a file's raw bytes: refuses a file over `MAX_SOURCE_BYTES`, invalid
/// UTF-8 and NUL bytes with a positioned error before reading it.
pub fn check_bytes(src: &[u8]) -> Vec<Diagnostic> {
    match decode_source(src) {
        Ok(text) => check(text),
        Err(diagnostic) => vec![diagnostic],
    }
}

/// A file's bytes as JDL text, or the positioned reason they are not: over
/// `MAX_SOURCE_BYTES`, invalid UTF-8 (at the first bad byte) or a NUL byte.
pub fn decode_source(src: &[u8]) -> Result<&str, Diagnostic> {
    if src.len() > MAX_SOURCE_BYTES {
        return Err(too_large(src.len()));
    }
    let text = match std::str::from_utf8(src) {
        Ok(text) => text,
        Err(e) => {
            let valid = src.get(..e.valid_up_to()).unwrap_or_default();
            // The prefix is valid UTF-8 by definition; the fallback only avoids a panic.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            return Err(lexer::diagnostic(
                Severity::Error,
                end_of(prefix),
                "the file is not valid UTF-8 text here; save it as UTF-8",
            ));
        }
    };
    refuse_nul(text)?;
    Ok(text)
}

/// Reads a job: `Ok` with the job and its warnings when there is no error, `Err`
/// with every diagnostic (at least one error) otherwise.
pub fn parse_job(src: &str) -> Result<(JobDescription, Vec<Diagnostic>), Vec<Diagnostic>> {
    if src.len() > MAX_SOURCE_BYTES {
        return Err(vec![too_large(src.len())]);
    }
    refuse_nul(src).map_err(|d| vec![d])?;
    let parsed = match parser::parse(src) {
        Ok(parsed) => parsed,
        Err((error, mut warnings)) => {
            warnings.push(error.into_diagnostic());
            return Err(sorted(warnings));
        }
    };
    let (job, mut diagnostics) = validate::lower(&parsed.top);
    diagnostics.extend(parsed.warnings);
    let diagnostics = sorted(diagnostics);
    if diagnostics.iter().any(Diagnostic::is_error) {
        Err(diagnostics)
    } else {
        Ok((job, diagnostics))
    }
}

/// The canonical form of a JDL text (`drover jdl fmt`); refuses a text with errors,
/// since a value in error cannot be written back faithfully.
pub fn format(src: &str) -> Result<String, Vec<Diagnostic>> {
    parse_job(src).map(|(job, _)| job.to_canonical())
}

fn too_large(len: usize) -> Diagnostic {
    lexer::diagnostic(
        Severity::Error,
        lexer::Pos::START,
        // Readers stop one byte past the limit, so `len` may be less than the
        // file's size: say only that it is over.
        format!(
            "the file is over the {MAX_SOURCE_BYTES} bytes (1 MiB) drover reads as a JDL \
             ({len} bytes or more); is it the right file?"
        ),
    )
}

fn refuse_nul(text: &str) -> Result<(), Diagnostic> {
    match text.find('\0') {
        Some(at) => Err(lexer::diagnostic(
            Severity::Error,
            end_of(text.get(..at).unwrap_or_default()),
            "the file contains a NUL byte; a JDL is text",
        )),
        None => Ok(()),
    }
}

/// The position just after `prefix`.
fn end_of(prefix: &str) -> lexer::Pos {
    let mut cursor = lexer::Cursor::new(prefix);
    while cursor.bump().is_some() {}
    cursor.pos()
}

/// Sorted by position (stable, so findings at one place keep their order), with
/// exact repeats removed: a node's findings can be reached by two paths.
fn sorted(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics.sort_by_key(|d| (d.line, d.col));
    diagnostics.dedup();
    diagnostics
}
