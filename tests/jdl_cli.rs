//! `drover jdl check` and `drover jdl fmt`: diagnostics as FILE:LINE:COL, exit 1
//! only on errors, and a canonical form that checks clean and means the same job.

mod common;

use common::{manifests_dir, TestDir};
use std::ffi::OsStr;

#[test]
fn check_names_file_line_and_column_of_an_error_and_exits_1() {
    let dir = TestDir::new();
    dir.write(
        "broken.jdl",
        "[\n  Executable = \"/bin/true\";\n  Arguments = \"x\"\n  StdOutput = ;\n]\n",
    );
    let run = dir.drover(["jdl", "check", "broken.jdl"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    let line = run.stdout.lines().next().unwrap_or("");
    assert!(line.starts_with("broken.jdl:4:14: error: "), "{run:#?}");
    assert!(line.contains("StdOutput"), "{run:#?}");
}

#[test]
fn check_reports_an_unterminated_string_where_it_starts() {
    let dir = TestDir::new();
    dir.write(
        "open.jdl",
        "Executable = \"/bin/true\";\nArguments = \"never closed;\n",
    );
    let run = dir.drover(["jdl", "check", "open.jdl"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.starts_with("open.jdl:2:"), "{run:#?}");
    assert!(run.stdout.contains(": error: "), "{run:#?}");
}

#[test]
fn check_of_a_duplicate_attribute_is_an_error() {
    let dir = TestDir::new();
    dir.write(
        "twice.jdl",
        "Executable = \"/bin/true\";\nexecutable = \"/bin/false\";\n",
    );
    let run = dir.drover(["jdl", "check", "twice.jdl"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.starts_with("twice.jdl:2:1: error: "), "{run:#?}");
}

#[test]
fn check_warns_about_unknown_attributes_and_exits_0() {
    let dir = TestDir::new();
    dir.write(
        "warn.jdl",
        "Executable = \"/bin/true\";\nStdOuput = \"x\";\nFooBar = 3;\n",
    );
    let run = dir.drover(["jdl", "check", "warn.jdl"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run:#?}");
    assert!(lines[0].starts_with("warn.jdl:2:1: warning: "), "{run:#?}");
    assert!(
        lines[0].contains("StdOuput") && lines[0].contains("did you mean `StdOutput`"),
        "{run:#?}"
    );
    assert!(
        lines[1].starts_with("warn.jdl:3:1: warning: ") && lines[1].contains("FooBar"),
        "{run:#?}"
    );
    assert!(!run.stdout.contains("error"), "{run:#?}");
}

#[test]
fn check_of_several_files_fails_if_any_has_an_error() {
    let dir = TestDir::new();
    dir.write("good.jdl", "Executable = \"/bin/true\";\n");
    dir.write("bad.jdl", "Executable = ;\n");
    let run = dir.drover(["jdl", "check", "good.jdl", "bad.jdl"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.contains("bad.jdl:1:"), "{run:#?}");
    assert!(!run.stdout.contains("good.jdl"), "{run:#?}");
    let missing = dir.drover(["jdl", "check", "absent.jdl"]);
    assert_eq!(missing.code, Some(1), "{missing:#?}");
    assert!(
        missing.stdout.contains("absent.jdl") && missing.stdout.contains("cannot read"),
        "{missing:#?}"
    );
}

#[test]
fn every_example_manifest_checks_clean() {
    let dir = TestDir::new();
    for rel in [
        "hello.jdl",
        "fail3.jdl",
        "wordcount/wordcount.jdl",
        "analyse/analyse.jdl",
        "retry/retry.jdl",
    ] {
        let run = dir.drover([
            OsStr::new("jdl"),
            OsStr::new("check"),
            manifests_dir().join(rel).as_os_str(),
        ]);
        assert_eq!(run.code, Some(0), "{rel}: {run:#?}");
        assert!(!run.stdout.contains("error"), "{rel}: {run:#?}");
    }
}

#[test]
fn fmt_prints_a_canonical_form_that_check_accepts_and_that_is_stable() {
    let dir = TestDir::new();
    for rel in [
        "hello.jdl",
        "fail3.jdl",
        "wordcount/wordcount.jdl",
        "analyse/analyse.jdl",
        "retry/retry.jdl",
    ] {
        let fmt = dir.drover([
            OsStr::new("jdl"),
            OsStr::new("fmt"),
            manifests_dir().join(rel).as_os_str(),
        ]);
        assert_eq!(fmt.code, Some(0), "{rel}: {fmt:#?}");
        let canonical = fmt.stdout.clone();
        assert!(
            canonical.starts_with("[\n") && canonical.trim_end().ends_with(']'),
            "{rel}: bracketed: {canonical}"
        );
        for line in canonical.lines().filter(|l| l.starts_with("  ")) {
            assert!(
                line.ends_with(';'),
                "{rel}: one statement per line, each ended by `;`: {line:?}"
            );
        }
        dir.write("canonical.jdl", &canonical);
        let check = dir.drover(["jdl", "check", "canonical.jdl"]);
        assert_eq!(
            check.code,
            Some(0),
            "{rel}: the canonical form checks: {check:#?}\n{canonical}"
        );
        assert!(
            check.stdout.is_empty(),
            "{rel}: and checks clean: {check:#?}"
        );
        let again = dir
            .drover(["jdl", "fmt", "canonical.jdl"])
            .expect_ok("fmt of the canonical form");
        assert_eq!(again.stdout, canonical, "{rel}: formatting is idempotent");
    }
}

#[test]
fn fmt_of_the_seed_layout_quotes_the_bare_words() {
    let dir = TestDir::new();
    let fmt = dir
        .drover([
            OsStr::new("jdl"),
            OsStr::new("fmt"),
            manifests_dir().join("analyse/analyse.jdl").as_os_str(),
        ])
        .expect_ok("fmt");
    for expected in [
        "  Executable = \"analyse.py\";",
        "  Arguments = \"--rows 3 data.csv\";",
        "  OutputSandbox = {\"result.tar.gz\"};",
        "  Prologue = {\"setup.sh\"};",
    ] {
        assert!(
            fmt.stdout.lines().any(|l| l == expected),
            "missing `{expected}` in:\n{}",
            fmt.stdout
        );
    }
    assert!(
        fmt.stdout.contains("\"data.csv\"") && fmt.stdout.contains("\"analyse.py\""),
        "{}",
        fmt.stdout
    );
}

#[test]
fn fmt_keeps_unknown_attributes_and_refuses_a_broken_file() {
    let dir = TestDir::new();
    dir.write("warn.jdl", "Executable = \"/bin/true\";\nFooBar = 3;\n");
    let fmt = dir.drover(["jdl", "fmt", "warn.jdl"]).expect_ok("fmt");
    assert!(fmt.stdout.contains("FooBar = 3;"), "{fmt:#?}");
    dir.write("broken.jdl", "Executable = ;\n");
    let bad = dir.drover(["jdl", "fmt", "broken.jdl"]);
    assert_eq!(bad.code, Some(1), "{bad:#?}");
    assert!(bad.stdout.is_empty(), "{bad:#?}");
    assert!(bad.stderr.contains("broken.jdl:1:"), "{bad:#?}");
}
