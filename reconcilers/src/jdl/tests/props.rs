//! Properties: whatever a job holds, writing it and reading it back gives the same
//! job; and no text makes the reader panic.

use super::super::attrs;
use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

/// Text as users write it, and worse: quotes, backslashes, newlines, JDL
/// punctuation, and non-ASCII. Never NUL, which no JDL may hold.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z \"\\\\\n\t\r;,{}\\[\\]()#/=*éü€😀]{0,12}",
        "[^\\x00]{0,8}",
    ]
}

fn non_empty_text() -> impl Strategy<Value = String> {
    text().prop_filter("non-empty", |s| !s.is_empty())
}

/// One component of a sandbox name: no `/`, `\` or NUL, never `..`.
fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_ .\"';,{}#=*é€-]{1,8}".prop_filter("not `..`", |s| s != "..")
}

fn sandbox_name() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..4).prop_map(|parts| parts.join("/"))
}

/// InputSandbox entries with distinct base names, so they do not collide.
fn input_sandbox() -> impl Strategy<Value = Vec<String>> {
    let base = segment().prop_filter("names a file", |s| s != "." && !s.contains(['*', '?', '[']));
    let prefix = prop_oneof![
        Just(String::new()),
        Just("/data/".to_string()),
        Just("lib/".to_string())
    ];
    prop::collection::btree_set(base, 0..4).prop_flat_map(move |bases: BTreeSet<String>| {
        let n = bases.len();
        (Just(bases), prop::collection::vec(prefix.clone(), n)).prop_map(|(bases, prefixes)| {
            bases
                .into_iter()
                .zip(prefixes)
                .map(|(b, p)| p + &b)
                .collect()
        })
    })
}

/// A command line whose shell quotes pair up.
fn command_line() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        "[a-z0-9 =.é-]{1,5}",
        "'[^'\\x00]{0,4}'",
        "\"([^\"\\\\\\x00]|\\\\[^\\x00]){0,4}\"",
        "\\\\[^\\x00]",
    ];
    prop::collection::vec(token, 0..5).prop_map(|tokens| tokens.concat())
}

fn env_name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,8}"
}

/// A name for `other`: an identifier drover does not know.
fn other_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_.]{0,10}"
        .prop_filter("not a known name", |n| attrs::canonical(n).is_none())
}

/// Expressions as `Requirements` and `Rank` hold them; each reads back as itself.
const EXPRESSIONS: &[&str] = &[
    "other.GlueCEInfoTotalCPUs > 2",
    "member(\"VO-biomed\", other.GlueHostApplicationSoftwareRunTimeEnvironment)",
    "-other.GlueCEStateEstimatedResponseTime",
    "a && (b || !c)",
    "other.X == \"a;b,c}\"",
    "isList(other.Z) ? 1 : 2",
    "foo bar",
    "gsiftp://host/dir",
    "other.A > 2 &&\n    other.B < 3",
    "x\n  + y",
    "{1, 2} == other.L",
];

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        text().prop_map(Value::Str),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("not NaN", |r| !r.is_nan())
            .prop_map(Value::Real),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(EXPRESSIONS).prop_map(|e| Value::Expr(e.to_string())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            fields(inner).prop_map(Value::Record),
        ]
    })
}

/// Attributes with distinct names (case-insensitively, as the reader compares them).
fn fields(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec((other_name(), value), 0..4).prop_map(|mut fields| {
        let mut seen = BTreeSet::new();
        fields.retain(|(name, _)| seen.insert(name.to_ascii_lowercase()));
        fields
    })
}

prop_compose! {
    fn job()(
        job_type in prop_oneof![
            Just(JobType::Normal),
            Just(JobType::Parametric),
            Just(JobType::Dag),
            Just(JobType::Collection),
        ],
        executable in non_empty_text(),
        drop_executable in any::<bool>(),
        arguments in prop::option::of(command_line()),
        prologue in prop::collection::vec(non_empty_text(), 0..3),
        prologue_arguments in prop::option::of(command_line()),
        epilogue in prop::option::of(non_empty_text()),
        epilogue_arguments in prop::option::of(command_line()),
        input_sandbox in input_sandbox(),
        output_sandbox in prop::collection::vec(sandbox_name(), 0..4),
        std_input in prop::option::of(sandbox_name()),
        std_output in prop::option::of(sandbox_name()),
        std_error in prop::option::of(sandbox_name()),
        environment in prop::collection::vec((env_name(), text()), 0..4),
        retry_count in prop::option::of(any::<u32>()),
        shallow_retry_count in prop::option::of(any::<u32>()),
        max_wall_time in prop::option::of(1..=u64::MAX),
        job_name in prop::option::of(text()),
        mut other in fields(value()),
        parameters in 1..1000i64,
        nodes in prop::collection::vec(sandbox_name().prop_filter("not blank", |n| !n.trim().is_empty()), 1..3),
    ) -> JobDescription {
        // What each job type needs to be valid, so that it reads back at all.
        let mut executable = Some(executable);
        match job_type {
            JobType::Normal => {}
            JobType::Parametric => other.push(("Parameters".into(), Value::Int(parameters))),
            JobType::Dag | JobType::Collection => {
                if drop_executable {
                    executable = None;
                }
                let nodes = nodes.into_iter().map(Value::Str).collect();
                other.insert(0, ("Nodes".into(), Value::List(nodes)));
            }
        }
        JobDescription {
            job_type,
            executable,
            arguments,
            prologue,
            prologue_arguments,
            epilogue,
            epilogue_arguments,
            input_sandbox,
            output_sandbox,
            std_input,
            std_output,
            std_error,
            environment,
            retry_count,
            shallow_retry_count,
            max_wall_time,
            job_name,
            other,
        }
    }
}

/// JDL-looking noise: the punctuation the reader cares about, in any order.
fn jdl_noise() -> impl Strategy<Value = String> {
    "[\\[\\]{}()\"\\\\;,=#/*a-zA-Z0-9 \n\t.&|<>!+-]{0,80}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_written_job_reads_back_as_the_same_job(job in job()) {
        let text = job.to_canonical();
        match parse_job(&text) {
            Ok((back, _)) => prop_assert_eq!(back, job, "{}", text),
            Err(diagnostics) => prop_assert!(false, "{}\n{:#?}", text, diagnostics),
        }
    }

    #[test]
    fn check_never_panics_on_any_text(src in any::<String>()) {
        let _ = check(&src);
    }

    #[test]
    fn check_bytes_never_panics_on_any_bytes(src in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = check_bytes(&src);
    }

    #[test]
    fn whatever_reads_formats_to_text_that_reads_the_same(src in jdl_noise()) {
        let src = format!("Executable = a\n{src}");
        if let Ok((job, _)) = parse_job(&src) {
            let text = job.to_canonical();
            match parse_job(&text) {
                Ok((back, _)) => prop_assert_eq!(back, job, "{}", text),
                Err(diagnostics) => prop_assert!(false, "{}\n{:#?}", text, diagnostics),
            }
        }
    }
}
