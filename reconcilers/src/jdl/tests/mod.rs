//! Tests of the JDL reader, validator and writer, one file per theme.

mod hostile;
mod props;
mod real_world;
mod syntax;
mod validation;
mod writer;

use super::*;

/// The job in `src`, which must have no error.
fn job(src: &str) -> JobDescription {
    match parse_job(src) {
        Ok((job, _)) => job,
        Err(diagnostics) => panic!("unexpected errors in:\n{src}\n{diagnostics:#?}"),
    }
}

fn errors(src: &str) -> Vec<Diagnostic> {
    check(src)
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect()
}

fn warnings(src: &str) -> Vec<Diagnostic> {
    check(src).into_iter().filter(|d| !d.is_error()).collect()
}

/// The only error in `src` as (line, col, message).
fn the_error(src: &str) -> (u32, u32, String) {
    let errors = errors(src);
    assert_eq!(
        errors.len(),
        1,
        "expected exactly one error in:\n{src}\n{errors:#?}"
    );
    let e = &errors[0];
    (e.line, e.col, e.message.clone())
}

fn other<'a>(job: &'a JobDescription, name: &str) -> Option<&'a Value> {
    job.other.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}
