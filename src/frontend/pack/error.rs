//! Why a job could not be packed. Every message starts with the JDL file (or
//! "command line" for the flag frontend), names the entry and says what to do,
//! because the person reading it is the one who has to fix the job.

use reconcilers::jdl::{Diagnostic, JobType};
use std::{fmt, io, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(
        "{file}: cannot read the job description: {source}; check the path and its permissions"
    )]
    ReadJdl {
        file: String,
        #[source]
        source: io::Error,
    },

    /// The JDL module's findings, each printed as `FILE:LINE:COL: error: MSG`.
    #[error("{}", DiagnosticList { file, diagnostics })]
    Jdl {
        file: String,
        diagnostics: Vec<Diagnostic>,
    },

    #[error("{file}: {} jobs are not run by drover yet; {}", type_name(*job_type), type_advice(*job_type))]
    Unsupported { file: String, job_type: JobType },

    /// A parametric JDL that cannot be expanded into its jobs.
    #[error("{file}: {source}")]
    Parametric {
        file: String,
        #[source]
        source: reconcilers::jdl::ExpandError,
    },

    #[error("{file}: the job has no Executable; add `Executable = \"name\";` (a file shipped with the job, or an absolute path on the worker)")]
    NoExecutable { file: String },

    #[error("{file}: {attribute}: `{entry}` not found (looked for {}); put the file there or fix the path", looked_for.display())]
    NotFound {
        file: String,
        attribute: &'static str,
        entry: String,
        looked_for: PathBuf,
    },

    #[error("{file}: {attribute}: `{entry}` not found (looked for {} and for `{name}` in InputSandbox); put the script next to the JDL, list it in InputSandbox, or give an absolute path on the worker", looked_for.display())]
    MissingScript {
        file: String,
        attribute: &'static str,
        entry: String,
        name: String,
        looked_for: PathBuf,
    },

    #[error("{file}: InputSandbox: `{entry}` matches no file (pattern {pattern}); fix the pattern or remove the entry")]
    GlobNoMatch {
        file: String,
        entry: String,
        pattern: String,
    },

    #[error("{file}: InputSandbox: `{entry}` is not a usable pattern ({reason}); only `*` and `?` are wildcards")]
    BadPattern {
        file: String,
        entry: String,
        reason: String,
    },

    #[error("{file}: InputSandbox: `{entry}` is a remote URI; drover ships only files from this machine: copy it next to the JDL, or fetch it in the Prologue")]
    RemoteUri { file: String, entry: String },

    #[error("{file}: InputSandbox: `{entry}` is not a usable file URI ({reason}); write `file:///absolute/path` or a plain path")]
    BadFileUri {
        file: String,
        entry: String,
        reason: String,
    },

    #[error("{file}: {attribute}: `{entry}` has no file name to ship it under; name the file or folder itself")]
    NoBaseName {
        file: String,
        attribute: &'static str,
        entry: String,
    },

    #[error("{file}: {attribute}: `{entry}` cannot be shipped as `{name}`: {reason}; rename it")]
    BadName {
        file: String,
        attribute: &'static str,
        entry: String,
        name: String,
        reason: &'static str,
    },

    /// `first` and `second` are the entries as written, each with the path it
    /// stands for: a glob can yield both.
    #[error("{file}: {first} and {second} would both land in the sandbox as `{name}` (each file lands under its base name); rename one of them or list only one")]
    Collision {
        file: String,
        name: String,
        first: String,
        second: String,
    },

    #[error("{file}: {attribute}: `{name}` must name a file inside the job's folder (relative, no `..`, no `\\`); fix the name")]
    UnsafeName {
        file: String,
        attribute: &'static str,
        name: String,
    },

    #[error("{file}: InputSandbox: `{entry}` holds the link {} -> {}, which points outside it (or into a loop); replace the link by a copy of what it points to, or remove it", link.display(), target.display())]
    LinkOutside {
        file: String,
        entry: String,
        link: PathBuf,
        target: PathBuf,
    },

    #[error("{file}: {attribute}: `{entry}` ({}) is not a regular file, folder or link; ship a regular file instead", path.display())]
    NotRegular {
        file: String,
        attribute: &'static str,
        entry: String,
        path: PathBuf,
    },

    #[error("{file}: {attribute}: `{entry}` ({}) is a folder, not a script; name the file to run", path.display())]
    IsFolder {
        file: String,
        attribute: &'static str,
        entry: String,
        path: PathBuf,
    },

    #[error("{file}: {attribute}: cannot read `{entry}` ({}): {source}; check its permissions", path.display())]
    Unreadable {
        file: String,
        attribute: &'static str,
        entry: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{file}: input sandbox is {bytes} bytes, over the limit of {limit}; leave large data out of InputSandbox (the Prologue can fetch it)")]
    TooLarge {
        file: String,
        bytes: u64,
        limit: u64,
    },

    #[error("{file}: {} changed while the input archive was being written; submit again", path.display())]
    Changed { file: String, path: PathBuf },

    /// `step` says where it failed: "adding /home/u/jobs/data.csv", "finishing".
    #[error("{file}: writing the input archive ({step}): {source}")]
    Write {
        file: String,
        step: String,
        #[source]
        source: io::Error,
    },

    /// Several problems, all found before anything was written.
    #[error("{}", ErrorList(.0))]
    Several(Vec<PackError>),
}

impl PackError {
    /// One error as is, several as `Several`; `None` when there is nothing wrong.
    pub(super) fn from_problems(mut problems: Vec<PackError>) -> Option<PackError> {
        match problems.len() {
            0 => None,
            1 => problems.pop(),
            _ => Some(PackError::Several(problems)),
        }
    }

    /// The individual problems (one, or each of `Several`).
    #[cfg(test)]
    pub fn problems(&self) -> &[PackError] {
        match self {
            PackError::Several(all) => all,
            one => std::slice::from_ref(one),
        }
    }
}

fn type_name(t: JobType) -> &'static str {
    match t {
        JobType::Normal => "plain",
        JobType::Parametric => "parametric (`JobType = \"Parametric\"`)",
        JobType::Dag => "DAG (`Type = \"DAG\"`)",
        JobType::Collection => "collection (`Type = \"Collection\"`)",
    }
}

fn type_advice(t: JobType) -> &'static str {
    match t {
        JobType::Parametric => "submit it with `drover submit`, which expands it into its jobs",
        JobType::Dag | JobType::Collection => "submit each node as its own JDL",
        JobType::Normal => "submit it as a plain job",
    }
}

struct DiagnosticList<'a> {
    file: &'a str,
    diagnostics: &'a [Diagnostic],
}

impl fmt::Display for DiagnosticList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{d}", self.file)?;
        }
        Ok(())
    }
}

struct ErrorList<'a>(&'a [PackError]);

impl fmt::Display for ErrorList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
