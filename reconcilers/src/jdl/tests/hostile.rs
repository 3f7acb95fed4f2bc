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

/// What the fuzz target (`reconcilers/fuzz`) checks, for one input: no panic,
/// and whatever reads is written back as text that reads as the same job.
fn survives(data: &[u8]) {
    let _ = check_bytes(data);
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((job, _)) = parse_job(src) else {
        return;
    };
    let text = job.to_canonical();
    match parse_job(&text) {
        Ok((back, _)) => {
            assert_eq!(
                back, job,
                "the canonical form reads back differently:\n{text}"
            );
            assert_eq!(back.to_canonical(), text, "formatting is not idempotent");
        }
        Err(d) => panic!("the canonical form of {src:?} does not read:\n{text}\n{d:#?}"),
    }
}

/// The fuzzer's job in every test run, bounded and deterministic: real jobs,
/// mutated by a fixed-seed generator with the fuzz dictionary's pieces (and
/// bytes that are not text), must never panic the reader or the writer.
#[test]
fn seeded_mutations_of_real_jobs_never_panic_and_round_trip() {
    const SEEDS: [&str; 5] = [
        include_str!("../../../../manifests/jobs/hello.jdl"),
        include_str!("../../../../manifests/jobs/fail3.jdl"),
        "Executable = analyse.py\nArguments = --rows 1000 data.csv\nInputSandbox = {data.csv}\n\
         OutputSandbox = {result.tar.gz}\n",
        "[ Type = \"DAG\"; Nodes = { [ NodeName = \"a\"; File = \"a.jdl\"; ], \
         [ NodeName = \"b\"; File = \"b.jdl\"; ] }; Dependencies = { { a, b } }; ]",
        "[ Executable = \"/bin/sh\"; Arguments = \"-c 'echo \\\"hi\\\"'\"; \
         Environment = {\"A=1\", \"B=2\"}; Requirements = other.GlueCEStateStatus == \"Production\" \
         && (other.Memory > 100 || true); Rank = -other.Load; MaxWallTime = 60; ]",
    ];
    const PIECES: [&[u8]; 28] = [
        b"[",
        b"]",
        b"{",
        b"}",
        b"(",
        b")",
        b";",
        b",",
        b"=",
        b"\"",
        b"\\\"",
        b"\\",
        b"\n",
        b"#",
        b"//",
        b"/*",
        b"*/",
        b"\0",
        b"\xff",
        b"\xc3",
        b"\xe2\x82",
        b"Executable",
        b"Arguments",
        b"Type = \"DAG\";",
        b"Nodes",
        b"Parameters",
        b"&&",
        b"1e999",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |below: usize| {
        // xorshift64*: fast, and the same sequence on every run.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % below.max(1)
    };
    for round in 0..20_000 {
        let mut data = SEEDS[round % SEEDS.len()].as_bytes().to_vec();
        for _ in 0..1 + next(6) {
            let at = next(data.len() + 1);
            match next(4) {
                0 => {
                    let piece = PIECES[next(PIECES.len())];
                    data.splice(at..at, piece.iter().copied());
                }
                1 if at < data.len() => {
                    let end = (at + 1 + next(16)).min(data.len());
                    data.drain(at..end);
                }
                2 if at < data.len() => data[at] = next(256) as u8,
                _ => {
                    // Repeat a slice: runs of the same piece (deep nesting, long lines).
                    let end = (at + 1 + next(8)).min(data.len());
                    let slice = data[at.min(end)..end].to_vec();
                    for _ in 0..next(64) {
                        data.splice(at..at, slice.iter().copied());
                    }
                }
            }
        }
        survives(&data);
    }
}
