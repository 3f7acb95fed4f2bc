//! From the syntax tree to a `JobDescription`, with every validation finding.
//!
//! Unlike syntax errors, validation findings are all collected: a user fixing a
//! file wants the whole list at once. Each message names the attribute and says
//! what to write instead.

use super::attrs::{self, *};
use super::dag;
use super::fields::{
    count, environment, input_sandbox, sandbox_name, single, strings, unterminated_quote,
};
use super::lexer::{diagnostic, Pos};
use super::parser::{Kind, Node, Record, Stmt};
use super::{Diagnostic, JobDescription, JobType, Severity, Value};
use std::collections::HashMap;

/// Where a record sits: the job itself, or a DAG/collection node (which may name a
/// `File` or hold a `Description` instead of an Executable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Top,
    Node,
}

pub(crate) fn lower(top: &Record) -> (JobDescription, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    duplicates(top, &mut diags);
    let job = lower_job(top, Scope::Top, &mut diags);
    (job, diags)
}

pub(crate) fn error(diags: &mut Vec<Diagnostic>, pos: Pos, message: impl Into<String>) {
    diags.push(diagnostic(Severity::Error, pos, message));
}

pub(crate) fn warning(diags: &mut Vec<Diagnostic>, pos: Pos, message: impl Into<String>) {
    diags.push(diagnostic(Severity::Warning, pos, message));
}

/// A name given twice in one record is an error wherever the record is.
fn duplicates(rec: &Record, diags: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<String, &Stmt> = HashMap::new();
    for stmt in &rec.stmts {
        let key = stmt.name.to_ascii_lowercase();
        if let Some(first) = seen.get(&key) {
            error(
                diags,
                stmt.name_pos,
                format!(
                    "`{}` is given twice, at {} and at {}; keep one",
                    stmt.name, first.name_pos, stmt.name_pos
                ),
            );
        } else {
            seen.insert(key, stmt);
        }
        duplicates_in(&stmt.value, diags);
    }
}

fn duplicates_in(node: &Node, diags: &mut Vec<Diagnostic>) {
    match &node.kind {
        Kind::List(items) => items.iter().for_each(|item| duplicates_in(item, diags)),
        Kind::Record(rec) => duplicates(rec, diags),
        _ => {}
    }
}

/// The statements of a job-level record that need a look at the whole record.
#[derive(Default)]
struct Seen<'a> {
    type_: Option<(&'a Stmt, TypeWord)>,
    job_type: Option<(&'a Stmt, TypeWord)>,
    nodes: Option<&'a Stmt>,
    dependencies: Option<&'a Stmt>,
    parameters: Option<&'a Stmt>,
    file: Option<&'a Stmt>,
    description: Option<&'a Stmt>,
}

pub(crate) fn lower_job(rec: &Record, scope: Scope, diags: &mut Vec<Diagnostic>) -> JobDescription {
    let mut job = JobDescription::default();
    let mut seen = Seen::default();
    for stmt in &rec.stmts {
        let Some(canon) = attrs::canonical(&stmt.name) else {
            let mut message = format!("unknown attribute `{}`, kept but not used", stmt.name);
            if let Some(meant) = attrs::did_you_mean(&stmt.name) {
                message.push_str(&format!("; did you mean `{meant}`?"));
            }
            warning(diags, stmt.name_pos, message);
            job.other
                .push((stmt.name.clone(), to_value(&stmt.value, diags)));
            continue;
        };
        match canon {
            TYPE => seen.type_ = type_word(stmt, canon, diags).map(|t| (stmt, t)),
            JOB_TYPE => seen.job_type = type_word(stmt, canon, diags).map(|t| (stmt, t)),
            JOB_NAME => job.job_name = single(stmt, canon, diags),
            EXECUTABLE => {
                job.executable = single(stmt, canon, diags);
                if job.executable.as_deref() == Some("") {
                    error(
                        diags,
                        stmt.value.pos,
                        "`Executable` is empty; name the program to run",
                    );
                }
            }
            ARGUMENTS | PROLOGUE_ARGUMENTS | EPILOGUE_ARGUMENTS => {
                let value = single(stmt, canon, diags);
                if let Some(q) = value.as_deref().and_then(unterminated_quote) {
                    error(
                        diags,
                        stmt.value.pos,
                        format!(
                            "`{canon}` has an unterminated `{q}` quote; it is split into \
                             words like a shell command line, so quotes must pair \
                             (write `\\{q}` for a literal one)"
                        ),
                    );
                }
                match canon {
                    ARGUMENTS => job.arguments = value,
                    PROLOGUE_ARGUMENTS => job.prologue_arguments = value,
                    _ => job.epilogue_arguments = value,
                }
            }
            STD_INPUT | STD_OUTPUT | STD_ERROR => {
                let value = single(stmt, canon, diags);
                if let Some(name) = &value {
                    sandbox_name(name, &format!("`{canon}`"), stmt.value.pos, diags);
                }
                match canon {
                    STD_INPUT => job.std_input = value,
                    STD_OUTPUT => job.std_output = value,
                    _ => job.std_error = value,
                }
            }
            EPILOGUE => {
                job.epilogue = single(stmt, canon, diags);
                if job.epilogue.as_deref() == Some("") {
                    error(
                        diags,
                        stmt.value.pos,
                        "`Epilogue` is empty; name a script or leave it out",
                    );
                }
            }
            PROLOGUE => {
                let entries = strings(stmt, canon, diags);
                for (entry, pos) in &entries {
                    if entry.is_empty() {
                        error(diags, *pos, "`Prologue` has an empty entry; name a script");
                    }
                }
                job.prologue = entries.into_iter().map(|(s, _)| s).collect();
            }
            INPUT_SANDBOX => {
                let entries = strings(stmt, canon, diags);
                input_sandbox(&entries, diags);
                job.input_sandbox = entries.into_iter().map(|(s, _)| s).collect();
            }
            OUTPUT_SANDBOX => {
                let entries = strings(stmt, canon, diags);
                for (entry, pos) in &entries {
                    sandbox_name(entry, "`OutputSandbox` entry", *pos, diags);
                }
                job.output_sandbox = entries.into_iter().map(|(s, _)| s).collect();
            }
            ENVIRONMENT => job.environment = environment(stmt, diags),
            RETRY_COUNT => job.retry_count = count(stmt, canon, 0, u32::MAX.into(), diags),
            SHALLOW_RETRY_COUNT => {
                job.shallow_retry_count = count(stmt, canon, 0, u32::MAX.into(), diags)
            }
            MAX_WALL_TIME => job.max_wall_time = count(stmt, canon, 1, u64::MAX, diags),
            _ => {
                kept(stmt, canon, &mut seen, diags);
                job.other
                    .push((canon.to_string(), to_value(&stmt.value, diags)));
            }
        }
    }
    job.job_type = job_type(&seen, scope, diags);
    whole_job(rec, scope, &job, &seen, diags);
    job
}

/// Attributes drover keeps without acting on them; some still deserve a check.
fn kept<'a>(stmt: &'a Stmt, canon: &str, seen: &mut Seen<'a>, diags: &mut Vec<Diagnostic>) {
    match canon {
        REQUIREMENTS | RANK => warning(
            diags,
            stmt.name_pos,
            format!("`{canon}` is kept, not evaluated by drover yet"),
        ),
        DEFAULT_NODE_RETRY_COUNT | DEFAULT_NODE_SHALLOW_RETRY_COUNT => {
            count::<u32>(stmt, canon, 0, u32::MAX.into(), diags);
        }
        PARAMETER_START => {
            count::<u64>(stmt, canon, 0, i64::MAX as u64, diags);
        }
        PARAMETER_STEP => {
            count::<u64>(stmt, canon, 1, i64::MAX as u64, diags);
        }
        PARAMETERS => {
            seen.parameters = Some(stmt);
            match &stmt.value.kind {
                Kind::Int(n) if *n > 0 => {}
                Kind::List(items) if !items.is_empty() => {}
                _ => error(
                    diags,
                    stmt.value.pos,
                    "`Parameters` must be how many jobs to make (a number above 0) or a \
                     non-empty list of values, such as `Parameters = {\"a\", \"b\"};`",
                ),
            }
        }
        NODES => seen.nodes = Some(stmt),
        DEPENDENCIES => seen.dependencies = Some(stmt),
        FILE => seen.file = Some(stmt),
        DESCRIPTION => seen.description = Some(stmt),
        _ => {}
    }
}

/// What `Type` or `JobType` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TypeWord {
    Job,
    Normal,
    Parametric,
    Dag,
    Collection,
}

fn type_word(stmt: &Stmt, canon: &str, diags: &mut Vec<Diagnostic>) -> Option<TypeWord> {
    let word = single(stmt, canon, diags)?;
    let found = [
        ("Job", TypeWord::Job),
        ("Normal", TypeWord::Normal),
        ("Parametric", TypeWord::Parametric),
        ("DAG", TypeWord::Dag),
        ("Collection", TypeWord::Collection),
    ]
    .into_iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(word.trim()));
    if found.is_none() {
        error(
            diags,
            stmt.value.pos,
            format!(
                "`{canon} = \"{word}\"` is not a job type drover knows; use \"Job\" (or \
                 \"Normal\"), \"Parametric\", \"DAG\" or \"Collection\""
            ),
        );
    }
    found.map(|(_, t)| t)
}

/// `Type` says Job, DAG or Collection and `JobType` refines Job, but either may
/// carry any of the words; they only clash when both name something special.
fn job_type(seen: &Seen<'_>, scope: Scope, diags: &mut Vec<Diagnostic>) -> JobType {
    let special = |t: TypeWord| match t {
        TypeWord::Job | TypeWord::Normal => None,
        TypeWord::Parametric => Some(JobType::Parametric),
        TypeWord::Dag => Some(JobType::Dag),
        TypeWord::Collection => Some(JobType::Collection),
    };
    let from_type = seen.type_.and_then(|(s, t)| special(t).map(|j| (s, j)));
    let from_job_type = seen.job_type.and_then(|(s, t)| special(t).map(|j| (s, j)));
    let result = match (from_type, from_job_type) {
        (Some((a, ta)), Some((b, tb))) if ta != tb => {
            error(
                diags,
                b.value.pos,
                format!(
                    "`{}` (at {}) and `{}` say different job types; keep one",
                    a.name, a.value.pos, b.name
                ),
            );
            ta
        }
        (Some((_, t)), _) | (None, Some((_, t))) => t,
        (None, None) => JobType::Normal,
    };
    if scope == Scope::Node && result != JobType::Normal {
        if let Some((stmt, _)) = from_type.or(from_job_type) {
            error(
                diags,
                stmt.value.pos,
                "a DAG or collection node must be a plain job; nested DAGs, collections \
                 and parametric nodes are not supported",
            );
        }
    }
    result
}

/// Checks that need the whole record: what each job type requires.
fn whole_job(
    rec: &Record,
    scope: Scope,
    job: &JobDescription,
    seen: &Seen<'_>,
    diags: &mut Vec<Diagnostic>,
) {
    if scope == Scope::Node {
        if let Some(file) = seen.file {
            match &file.value.kind {
                Kind::Str(s) if !s.trim().is_empty() => {}
                _ => error(
                    diags,
                    file.value.pos,
                    "a node's `File` must name the node's JDL file, such as `File = \"a.jdl\";`",
                ),
            }
        }
        if let Some(desc) = seen.description {
            match &desc.value.kind {
                Kind::Record(inner) => {
                    lower_job(inner, Scope::Node, diags);
                }
                _ => error(
                    diags,
                    desc.value.pos,
                    "a node's `Description` must be a record `[ Executable = ...; ]`",
                ),
            }
        }
    }
    let plain = matches!(job.job_type, JobType::Normal | JobType::Parametric);
    let delegated = scope == Scope::Node && (seen.file.is_some() || seen.description.is_some());
    if plain && job.executable.is_none() && !delegated {
        let message = match scope {
            Scope::Top => {
                "this job has no `Executable`; add one, such as `Executable = \"run.sh\";`"
            }
            Scope::Node => {
                "this node has no `Executable`, `File` or `Description`; add one, such as \
                 `Executable = \"run.sh\";` or `File = \"node.jdl\";`"
            }
        };
        error(diags, rec.open, message);
    }
    match (job.job_type, seen.parameters) {
        (JobType::Parametric, None) => error(
            diags,
            seen.type_
                .or(seen.job_type)
                .map_or(rec.open, |(s, _)| s.value.pos),
            "a parametric job needs `Parameters`: how many jobs to make, or a list of \
             values, such as `Parameters = 10;`",
        ),
        (JobType::Parametric, Some(_)) | (_, None) => {}
        (_, Some(p)) => warning(
            diags,
            p.name_pos,
            "`Parameters` is ignored unless `JobType = \"Parametric\"`",
        ),
    }
    match job.job_type {
        JobType::Dag | JobType::Collection => {
            let type_pos = seen
                .type_
                .or(seen.job_type)
                .map_or(rec.open, |(s, _)| s.value.pos);
            dag::check(job.job_type, type_pos, seen.nodes, seen.dependencies, diags);
        }
        _ => {
            if let Some(nodes) = seen.nodes {
                warning(
                    diags,
                    nodes.name_pos,
                    "`Nodes` is ignored unless `Type = \"DAG\"` or `Type = \"Collection\"`",
                );
            }
        }
    }
}

/// The value kept in `other`, with known names in records respelt canonically.
pub(crate) fn to_value(node: &Node, diags: &mut Vec<Diagnostic>) -> Value {
    match &node.kind {
        Kind::Str(s) => Value::Str(s.clone()),
        Kind::Int(i) => Value::Int(*i),
        Kind::UInt(u) => {
            error(
                diags,
                node.pos,
                format!("the integer {u} is too large here (at most {})", i64::MAX),
            );
            Value::Int(i64::MAX)
        }
        Kind::Real(r) => Value::Real(*r),
        Kind::Bool(b) => Value::Bool(*b),
        Kind::Expr(e) => Value::Expr(e.clone()),
        Kind::List(items) => Value::List(items.iter().map(|i| to_value(i, diags)).collect()),
        Kind::Record(rec) => Value::Record(
            rec.stmts
                .iter()
                .map(|s| (canonical_name(&s.name), to_value(&s.value, diags)))
                .collect(),
        ),
    }
}

pub(crate) fn canonical_name(name: &str) -> String {
    attrs::canonical(name).map_or_else(|| name.to_string(), str::to_string)
}

pub(crate) fn describe(kind: &Kind) -> &'static str {
    match kind {
        Kind::Str(_) => "a string",
        Kind::Int(_) | Kind::UInt(_) => "a number",
        Kind::Real(_) => "a real number",
        Kind::Bool(_) => "true or false",
        Kind::List(_) => "a list",
        Kind::Record(_) => "a record",
        Kind::Expr(_) => "an expression",
    }
}

/// A user's value, cut short for a message.
pub(crate) fn short(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}
