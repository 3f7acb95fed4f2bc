//! The canonical form of a job, as `drover jdl fmt` writes it: bracketed, one
//! attribute per line, quoted strings, `;` after each statement, drover's attributes
//! first in a fixed order and then the others as they came. Reading it back gives
//! the same `JobDescription`; the property tests hold the writer and the parser to
//! that.

use super::attrs::*;
use super::{JobDescription, JobType, Value};
use std::fmt::Write;

const INDENT: &str = "  ";

impl JobDescription {
    /// The canonical JDL text of this job.
    ///
    /// Empty lists and `None` are left out, since reading nothing back gives them.
    /// A value in `other` is written as it is, so it reads back the same only if it
    /// could have been read: names that are identifiers (in their canonical spelling
    /// when drover knows them) and not one of the fields, `Expr` text that is an
    /// expression (not a single literal, no top-level `;`), and no NUL in strings.
    pub fn to_canonical(&self) -> String {
        let mut out = String::from("[\n");
        let mut stmt = |name: &str, value: String| {
            let _ = writeln!(out, "{INDENT}{name} = {value};");
        };
        let (type_word, job_type_word) = match self.job_type {
            JobType::Normal => ("Job", None),
            JobType::Parametric => ("Job", Some("Parametric")),
            JobType::Dag => ("DAG", None),
            JobType::Collection => ("Collection", None),
        };
        stmt(TYPE, quote(type_word));
        if let Some(word) = job_type_word {
            stmt(JOB_TYPE, quote(word));
        }
        let strings = [
            (JOB_NAME, &self.job_name),
            (EXECUTABLE, &self.executable),
            (ARGUMENTS, &self.arguments),
            (STD_INPUT, &self.std_input),
            (STD_OUTPUT, &self.std_output),
            (STD_ERROR, &self.std_error),
        ];
        for (name, value) in strings {
            if let Some(s) = value {
                stmt(name, quote(s));
            }
        }
        for (name, list) in [
            (INPUT_SANDBOX, &self.input_sandbox),
            (OUTPUT_SANDBOX, &self.output_sandbox),
            (PROLOGUE, &self.prologue),
        ] {
            if !list.is_empty() {
                stmt(name, quote_list(list.iter().map(String::as_str)));
            }
        }
        for (name, value) in [
            (PROLOGUE_ARGUMENTS, &self.prologue_arguments),
            (EPILOGUE, &self.epilogue),
            (EPILOGUE_ARGUMENTS, &self.epilogue_arguments),
        ] {
            if let Some(s) = value {
                stmt(name, quote(s));
            }
        }
        if !self.environment.is_empty() {
            let pairs: Vec<String> = self
                .environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            stmt(ENVIRONMENT, quote_list(pairs.iter().map(String::as_str)));
        }
        if let Some(n) = self.retry_count {
            stmt(RETRY_COUNT, n.to_string());
        }
        if let Some(n) = self.shallow_retry_count {
            stmt(SHALLOW_RETRY_COUNT, n.to_string());
        }
        if let Some(n) = self.max_wall_time {
            stmt(MAX_WALL_TIME, n.to_string());
        }
        for (name, value) in &self.other {
            let mut text = String::new();
            write_value(&mut text, value, 1);
            stmt(name, text);
        }
        out.push_str("]\n");
        out
    }
}

fn write_value(out: &mut String, value: &Value, depth: usize) {
    match value {
        Value::Str(s) => out.push_str(&quote(s)),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Real(r) => out.push_str(&real(*r)),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Expr(e) => out.push_str(e),
        Value::List(items) if items.iter().any(has_record) => {
            out.push_str("{\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&INDENT.repeat(depth + 1));
                write_value(out, item, depth + 1);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&INDENT.repeat(depth));
            out.push('}');
        }
        Value::List(items) => {
            out.push('{');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item, depth);
            }
            out.push('}');
        }
        Value::Record(fields) if fields.is_empty() => out.push_str("[]"),
        Value::Record(fields) => {
            out.push_str("[\n");
            for (name, field) in fields {
                out.push_str(&INDENT.repeat(depth + 1));
                out.push_str(name);
                out.push_str(" = ");
                write_value(out, field, depth + 1);
                out.push_str(";\n");
            }
            out.push_str(&INDENT.repeat(depth));
            out.push(']');
        }
    }
}

fn has_record(value: &Value) -> bool {
    match value {
        Value::Record(_) => true,
        Value::List(items) => items.iter().any(has_record),
        _ => false,
    }
}

/// The shortest text that reads back as exactly this number (`{:?}` always has a
/// `.` or an exponent, so it reads back as a real, not an integer). Infinities
/// are written as an overflowing literal, which reads back as the same infinity.
fn real(r: f64) -> String {
    if r.is_infinite() {
        if r > 0.0 { "1e999" } else { "-1e999" }.to_string()
    } else {
        format!("{r:?}")
    }
}

pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.map(quote).collect();
    format!("{{{}}}", quoted.join(", "))
}
