//! Hostile input: deep nesting, huge files, bytes that are not text.

use super::*;

#[test]
fn nesting_up_to_the_limit_reads() {
    // The outer `[` is one level, so 63 braces make 64.
    let src = format!(
        "[ Executable = a; Deep = {}{} ]",
        "{".repeat(63),
        "}".repeat(63)
    );
    assert!(errors(&src).is_empty(), "{:#?}", check(&src));
}

#[test]
fn nesting_beyond_the_limit_is_an_error_not_a_stack_overflow() {
    let src = format!(
        "[ Executable = a; Deep = {}{} ]",
        "{".repeat(64),
        "}".repeat(64)
    );
    let (line, col, message) = the_error(&src);
    assert_eq!((line, col), (1, 26 + 63));
    assert!(message.contains("nesting deeper than 64"), "{message}");
    for open in ["{", "[a=", "{[b=", "(", "{(", "Requirements = ("] {
        let src = format!("Executable = a; X = {}", open.repeat(60_000));
        let errors = errors(&src);
        assert_eq!(errors.len(), 1, "{open}");
        assert!(
            errors[0].message.contains("nesting deeper than 64"),
            "{open}: {errors:?}"
        );
    }
}

#[test]
fn nesting_in_an_expression_counts_towards_the_limit() {
    let src = format!(
        "[ Executable = a; Rank = {}x{} ]",
        "(".repeat(64),
        ")".repeat(64)
    );
    assert!(the_error(&src).2.contains("nesting deeper than 64"));
    let src = format!(
        "[ Executable = a; Rank = {}x{} ]",
        "(".repeat(63),
        ")".repeat(63)
    );
    assert!(errors(&src).is_empty());
}

#[test]
fn a_file_over_one_mebibyte_is_refused() {
    let mut src = String::from("Executable = a;\n");
    while src.len() <= MAX_SOURCE_BYTES {
        src.push_str("# padding padding padding padding padding padding padding\n");
    }
    let (line, col, message) = the_error(&src);
    assert_eq!((line, col), (1, 1));
    assert!(message.contains("1 MiB"), "{message}");
    assert_eq!(check_bytes(src.as_bytes()), check(&src));
    assert!(parse_job(&src).is_err());
}

#[test]
fn a_file_just_under_the_limit_reads() {
    let mut src = String::from("Executable = a;\n");
    let line = "# padding padding padding padding padding padding padding\n";
    while src.len() + line.len() <= MAX_SOURCE_BYTES {
        src.push_str(line);
    }
    assert!(check(&src).is_empty());
}

#[test]
fn invalid_utf8_is_refused_where_it_starts() {
    let d = check_bytes(b"Executable = a;\nJobName = \"caf\xe9\";\n");
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].line, d[0].col), (2, 15));
    assert!(d[0].message.contains("not valid UTF-8"), "{}", d[0].message);
    let d = check_bytes(
        "Jöb = \"\u{1F600}"
            .as_bytes()
            .iter()
            .chain(b"\xff")
            .copied()
            .collect::<Vec<_>>()
            .as_slice(),
    );
    assert_eq!((d[0].line, d[0].col), (1, 9));
}

#[test]
fn a_nul_byte_is_refused_where_it_stands() {
    let d = check_bytes(b"Executable = a;\nArguments = \"x\0y\";");
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].line, d[0].col), (2, 15));
    assert!(d[0].message.contains("NUL"), "{}", d[0].message);
    assert_eq!(check("Executable = a;\nArguments = \"x\0y\";"), d);
}

#[test]
fn valid_bytes_are_checked_like_text() {
    let src = "Executable = a;\nStdOuput = o;\n";
    assert_eq!(check_bytes(src.as_bytes()), check(src));
    assert_eq!(decode_source(src.as_bytes()), Ok(src));
}

#[test]
fn an_empty_or_blank_file_only_lacks_an_executable() {
    for src in ["", "  \n\n", "# nothing\n", "[]", "[ ]"] {
        let (line, col, message) = the_error(src);
        assert_eq!((line, col), (1, 1), "{src:?}");
        assert!(message.contains("no `Executable`"), "{message}");
    }
}

#[test]
fn a_very_long_unknown_name_is_cheap_to_check() {
    let src = format!("Executable = a; {} = 1;", "x".repeat(500_000));
    assert_eq!(warnings(&src).len(), 1);
}

#[test]
fn many_statements_on_one_line_are_cheap_to_check() {
    let mut src = String::from("Executable = a;");
    for i in 0..40_000 {
        src.push_str(&format!("A{i} = {i};"));
    }
    assert_eq!(warnings(&src).len(), 40_000);
}

#[test]
fn a_long_line_of_unclosed_quotes_is_cheap_to_read() {
    let src = format!("Executable = a\nJobName = x{}\n", "\"\\".repeat(400_000));
    assert!(errors(&src).is_empty());
}

#[test]
fn many_environment_entries_and_dependencies_are_cheap_to_check() {
    let entries: Vec<String> = (0..50_000).map(|i| format!("V{i}=1")).collect();
    let src = format!("Executable = a; Environment = {{{}}};", entries.join(","));
    assert!(check(&src).is_empty());
    let nodes: Vec<String> = (0..10_000)
        .map(|i| format!("[NodeName=n{i};File=f]"))
        .collect();
    let deps: Vec<String> = (1..10_000)
        .map(|i| format!("{{n{},n{i}}}", i - 1))
        .collect();
    let src = format!(
        "Type=DAG;Nodes={{{}}};Dependencies={{{}}};",
        nodes.join(","),
        deps.join(",")
    );
    assert!(check(&src).is_empty());
}
