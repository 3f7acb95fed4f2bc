//! Parametric jobs: one description for many jobs. `Parameters` is how many jobs
//! (a number, with optional `ParameterStart` and `ParameterStep`) or the list of
//! their values; `_PARAM_` in the job's strings stands for each job's value.
//!
//! Expansion turns the parametric description into plain ones, one per value, so
//! that everything downstream (packing, the controller, the worker) only ever sees
//! plain jobs.

use super::{
    attrs::{PARAMETERS, PARAMETER_START, PARAMETER_STEP},
    JobDescription, JobType, Value,
};

/// What `_PARAM_` is replaced with, as gLite spells it.
pub const PARAM_PLACEHOLDER: &str = "_PARAM_";

/// The most jobs one parametric description may make: a typo such as
/// `Parameters = 10000000;` must be an error, not ten million submissions.
pub const MAX_PARAMETRIC_JOBS: u64 = 100_000;

/// Why a parametric description cannot be expanded. Validation already refuses
/// most of these; expansion checks again because it may be handed any description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("the job is not parametric (`JobType = \"Parametric\"`), there is nothing to expand")]
    NotParametric,
    #[error("a parametric job needs `Parameters`: how many jobs to make, or a list of values")]
    NoParameters,
    #[error("`{attribute}` must be {expected}, not {found}")]
    BadValue {
        attribute: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error(
        "`Parameters` makes {count} jobs, more than the {MAX_PARAMETRIC_JOBS} one submission may \
         make; split it into several submissions"
    )]
    TooMany { count: u64 },
    #[error(
        "`ParameterStart + ParameterStep * Parameters` is past the largest number a JDL holds"
    )]
    Overflow,
}

/// The value of `_PARAM_` for each job, in order.
pub fn parameter_values(desc: &JobDescription) -> Result<Vec<String>, ExpandError> {
    if desc.job_type != JobType::Parametric {
        return Err(ExpandError::NotParametric);
    }
    let attr = |name: &str| {
        desc.other
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    };
    match attr(PARAMETERS).ok_or(ExpandError::NoParameters)? {
        Value::List(items) => {
            if items.is_empty() {
                return Err(bad(
                    PARAMETERS,
                    "a number above 0 or a non-empty list",
                    "{}",
                ));
            }
            if items.len() as u64 > MAX_PARAMETRIC_JOBS {
                return Err(ExpandError::TooMany {
                    count: items.len() as u64,
                });
            }
            items.iter().map(list_item).collect()
        }
        Value::Int(count) => {
            let count = positive(*count, PARAMETERS, 1)?;
            if count > MAX_PARAMETRIC_JOBS {
                return Err(ExpandError::TooMany { count });
            }
            let start = match attr(PARAMETER_START) {
                Some(v) => whole(v, PARAMETER_START, 0)?,
                None => 0,
            };
            let step = match attr(PARAMETER_STEP) {
                Some(v) => whole(v, PARAMETER_STEP, 1)?,
                None => 1,
            };
            let last = step
                .checked_mul(count - 1)
                .and_then(|span| start.checked_add(span))
                .filter(|last| *last <= i64::MAX as u64);
            if last.is_none() {
                return Err(ExpandError::Overflow);
            }
            Ok((0..count).map(|i| (start + step * i).to_string()).collect())
        }
        other => Err(bad(
            PARAMETERS,
            "a number above 0 or a non-empty list",
            &describe(other),
        )),
    }
}

/// One plain job per parameter value, `_PARAM_` replaced in every string drover
/// acts on (Executable, Arguments, the sandboxes, the standard streams, the
/// scripts, Environment values, JobName). The parametric attributes are dropped.
pub fn expand(desc: &JobDescription) -> Result<Vec<JobDescription>, ExpandError> {
    let jobs = expand_with_values(desc)?;
    Ok(jobs.into_iter().map(|(_, job)| job).collect())
}

/// As [`expand`], each job with its `_PARAM_` value (for messages that name it).
pub fn expand_with_values(
    desc: &JobDescription,
) -> Result<Vec<(String, JobDescription)>, ExpandError> {
    let values = parameter_values(desc)?;
    let mut template = desc.clone();
    template.job_type = JobType::Normal;
    template.other.retain(|(key, _)| {
        ![PARAMETERS, PARAMETER_START, PARAMETER_STEP]
            .iter()
            .any(|p| key.eq_ignore_ascii_case(p))
    });
    Ok(values
        .into_iter()
        .map(|value| {
            let job = substitute(&template, &value);
            (value, job)
        })
        .collect())
}

fn substitute(template: &JobDescription, value: &str) -> JobDescription {
    let one = |s: &String| s.replace(PARAM_PLACEHOLDER, value);
    let opt = |s: &Option<String>| s.as_ref().map(one);
    let all = |list: &Vec<String>| list.iter().map(one).collect::<Vec<_>>();
    JobDescription {
        job_type: JobType::Normal,
        executable: opt(&template.executable),
        arguments: opt(&template.arguments),
        prologue: all(&template.prologue),
        prologue_arguments: opt(&template.prologue_arguments),
        epilogue: opt(&template.epilogue),
        epilogue_arguments: opt(&template.epilogue_arguments),
        input_sandbox: all(&template.input_sandbox),
        output_sandbox: all(&template.output_sandbox),
        std_input: opt(&template.std_input),
        std_output: opt(&template.std_output),
        std_error: opt(&template.std_error),
        environment: template
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), one(v)))
            .collect(),
        retry_count: template.retry_count,
        shallow_retry_count: template.shallow_retry_count,
        max_wall_time: template.max_wall_time,
        job_name: opt(&template.job_name),
        other: template.other.clone(),
    }
}

/// A list item as the text `_PARAM_` becomes.
fn list_item(value: &Value) -> Result<String, ExpandError> {
    match value {
        Value::Str(s) => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        Value::Real(x) => Ok(x.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(bad(
            PARAMETERS,
            "a list of strings or numbers",
            &format!("a list holding {}", describe(other)),
        )),
    }
}

fn positive(n: i64, attribute: &'static str, min: i64) -> Result<u64, ExpandError> {
    if n >= min {
        Ok(n as u64)
    } else {
        Err(bad(
            attribute,
            "a whole number in range",
            &format!("{n} (the least is {min})"),
        ))
    }
}

fn whole(value: &Value, attribute: &'static str, min: i64) -> Result<u64, ExpandError> {
    match value {
        Value::Int(n) => positive(*n, attribute, min),
        other => Err(bad(attribute, "a whole number", &describe(other))),
    }
}

fn bad(attribute: &'static str, expected: &'static str, found: &str) -> ExpandError {
    ExpandError::BadValue {
        attribute,
        expected,
        found: found.to_string(),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Str(s) => format!("the string {s:?}"),
        Value::Int(n) => format!("{n}"),
        Value::Real(x) => format!("{x}"),
        Value::Bool(b) => format!("{b}"),
        Value::List(_) => "a list".into(),
        Value::Record(_) => "a record".into(),
        Value::Expr(e) => format!("the expression `{e}`"),
    }
}
