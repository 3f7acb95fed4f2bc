//! Reading the values of drover's own attributes: one string, a list of strings,
//! a count, the environment, and the rules for names in the sandbox.

use super::attrs::{ENVIRONMENT, MAX_WALL_TIME};
use super::lexer::Pos;
use super::parser::{Kind, Stmt};
use super::validate::{describe, error, short, warning};
use super::{is_safe_sandbox_name, Diagnostic};
use std::collections::{HashMap, HashSet};

/// One string. A list is refused rather than guessed at: `Executable = {a, b}` is
/// a mistake whichever element was meant.
pub(crate) fn single(stmt: &Stmt, canon: &str, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match &stmt.value.kind {
        Kind::Str(s) => Some(s.clone()),
        other => {
            error(
                diags,
                stmt.value.pos,
                format!("`{canon}` takes one string, not {}", describe(other)),
            );
            None
        }
    }
}

/// A list of strings, where a single string is a one-element list.
pub(crate) fn strings(stmt: &Stmt, canon: &str, diags: &mut Vec<Diagnostic>) -> Vec<(String, Pos)> {
    match &stmt.value.kind {
        Kind::Str(s) => vec![(s.clone(), stmt.value.pos)],
        Kind::List(items) => items
            .iter()
            .filter_map(|item| match &item.kind {
                Kind::Str(s) => Some((s.clone(), item.pos)),
                other => {
                    error(
                        diags,
                        item.pos,
                        format!(
                            "entries of `{canon}` must be strings, not {}",
                            describe(other)
                        ),
                    );
                    None
                }
            })
            .collect(),
        other => {
            error(
                diags,
                stmt.value.pos,
                format!(
                    "`{canon}` takes a string or a list of strings, such as `{canon} = \
                     {{\"a\", \"b\"}};`, not {}",
                    describe(other)
                ),
            );
            Vec::new()
        }
    }
}

/// A whole number in `min..=max`. Sloppy files quote them (`RetryCount = "3";`),
/// which gLite accepted, so that is only a warning.
pub(crate) fn count<T: TryFrom<u64>>(
    stmt: &Stmt,
    canon: &str,
    min: u64,
    max: u64,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    let pos = stmt.value.pos;
    let bad_kind = |what: String, diags: &mut Vec<Diagnostic>| {
        error(
            diags,
            pos,
            format!("`{canon}` must be a whole number, such as `{canon} = 3;`, not {what}"),
        );
    };
    let n: i128 = match &stmt.value.kind {
        Kind::Int(n) => i128::from(*n),
        Kind::UInt(n) => i128::from(*n),
        Kind::Str(s) => match s.trim().parse::<i128>() {
            Ok(n) => {
                warning(
                    diags,
                    pos,
                    format!("`{canon}` is written as a string; write `{canon} = {n};`"),
                );
                n
            }
            Err(_) => {
                bad_kind(format!("\"{}\"", short(s)), diags);
                return None;
            }
        },
        other => {
            bad_kind(describe(other).to_string(), diags);
            return None;
        }
    };
    if n < i128::from(min) {
        let unit = if canon == MAX_WALL_TIME {
            " seconds"
        } else {
            ""
        };
        error(
            diags,
            pos,
            format!("`{canon}` must be at least {min}{unit}, not {n}"),
        );
        return None;
    }
    if n > i128::from(max) {
        error(
            diags,
            pos,
            format!("`{canon}` is too large: {n} (at most {max})"),
        );
        return None;
    }
    u64::try_from(n).ok().and_then(|n| T::try_from(n).ok())
}

pub(crate) fn environment(stmt: &Stmt, diags: &mut Vec<Diagnostic>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut keys: HashSet<String> = HashSet::new();
    for (entry, pos) in strings(stmt, ENVIRONMENT, diags) {
        let Some((key, value)) = entry.split_once('=') else {
            error(
                diags,
                pos,
                format!(
                    "`Environment` entry `{}` must be `NAME=value`",
                    short(&entry)
                ),
            );
            continue;
        };
        if !is_env_name(key) {
            error(
                diags,
                pos,
                format!(
                    "`Environment` entry `{}`: `{}` is not a variable name (letters, digits \
                     and `_`, not starting with a digit)",
                    short(&entry),
                    short(key)
                ),
            );
            continue;
        }
        if !keys.insert(key.to_string()) {
            warning(
                diags,
                pos,
                format!("`Environment` sets `{key}` twice; the last value wins"),
            );
        }
        out.push((key.to_string(), value.to_string()));
    }
    out
}

fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A name inside the job's folder; `what` is how the message names it.
pub(crate) fn sandbox_name(name: &str, what: &str, pos: Pos, diags: &mut Vec<Diagnostic>) {
    if is_safe_sandbox_name(name) {
        return;
    }
    let why = if name.is_empty() {
        "is empty".to_string()
    } else if name.starts_with('/') {
        format!("`{}` is an absolute path", short(name))
    } else if name.contains('\0') {
        format!("`{}` contains a NUL character", short(name))
    } else if name.contains('\\') {
        format!("`{}` contains `\\`; separate folders with `/`", short(name))
    } else {
        format!("`{}` climbs out of the job's folder with `..`", short(name))
    };
    error(
        diags,
        pos,
        format!("{what} {why}; name a file relative to the job's folder"),
    );
}

/// Each InputSandbox file lands in the sandbox under its base name, so two with
/// one base name would overwrite each other. Globs are checked after expansion, at
/// submit time, since only then are the names known.
pub(crate) fn input_sandbox(entries: &[(String, Pos)], diags: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, (&str, Pos)> = HashMap::new();
    for (entry, pos) in entries {
        if entry.is_empty() {
            error(
                diags,
                *pos,
                "`InputSandbox` has an empty entry; name a file",
            );
            continue;
        }
        let base = base_name(entry);
        if matches!(base, "" | "." | "..") {
            error(
                diags,
                *pos,
                format!("`InputSandbox` entry `{}` names no file", short(entry)),
            );
            continue;
        }
        if base.contains(['*', '?', '[']) {
            continue;
        }
        if let Some((first, first_pos)) = seen.get(base) {
            error(
                diags,
                *pos,
                format!(
                    "`InputSandbox` entries `{}` (at {first_pos}) and `{}` both land in the \
                     sandbox as `{}`; rename one",
                    short(first),
                    short(entry),
                    short(base)
                ),
            );
        } else {
            seen.insert(base, (entry, *pos));
        }
    }
}

fn base_name(entry: &str) -> &str {
    let path = entry.strip_prefix("file://").unwrap_or(entry);
    let path = path.trim_end_matches('/');
    path.rsplit('/').next().unwrap_or(path)
}

/// The quote left open in a shell-style command line, if any.
pub(crate) fn unterminated_quote(s: &str) -> Option<char> {
    let mut chars = s.chars();
    let mut open: Option<char> = None;
    while let Some(c) = chars.next() {
        match (open, c) {
            (None, '\\') | (Some('"'), '\\') => {
                chars.next();
            }
            (None, '\'' | '"') => open = Some(c),
            (Some(q), c) if c == q => open = None,
            _ => {}
        }
    }
    open
}
