//! The canonical writer and `format`.

use super::*;

#[test]
fn the_seed_layout_formats_to_the_canonical_form() {
    let src = "Prologue = {setup.sh}
InputSandbox = {data.csv, analyse.py}
OutputSandbox = {result.tar.gz}
Arguments = --rows 1000 data.csv
Executable = analyse.py
";
    assert_eq!(
        format(src).expect("formats"),
        r#"[
  Type = "Job";
  Executable = "analyse.py";
  Arguments = "--rows 1000 data.csv";
  InputSandbox = {"data.csv", "analyse.py"};
  OutputSandbox = {"result.tar.gz"};
  Prologue = {"setup.sh"};
]
"#
    );
}

#[test]
fn every_field_is_written_in_the_fixed_order_with_canonical_spelling() {
    let job = JobDescription {
        job_type: JobType::Parametric,
        executable: Some("run.sh".into()),
        arguments: Some("-v".into()),
        prologue: strs(&["a.sh", "/opt/b.sh"]),
        prologue_arguments: Some("--pa".into()),
        epilogue: Some("end.sh".into()),
        epilogue_arguments: Some("--ea".into()),
        input_sandbox: strs(&["run.sh"]),
        output_sandbox: strs(&["out.tgz"]),
        std_input: Some("in.txt".into()),
        std_output: Some("out.txt".into()),
        std_error: Some("err.txt".into()),
        environment: vec![("A".into(), "1=2".into())],
        retry_count: Some(1),
        shallow_retry_count: Some(2),
        max_wall_time: Some(60),
        job_name: Some("name".into()),
        other: vec![("Parameters".into(), Value::Int(4))],
    };
    let text = job.to_canonical();
    assert_eq!(
        text,
        r#"[
  Type = "Job";
  JobType = "Parametric";
  JobName = "name";
  Executable = "run.sh";
  Arguments = "-v";
  StdInput = "in.txt";
  StdOutput = "out.txt";
  StdError = "err.txt";
  InputSandbox = {"run.sh"};
  OutputSandbox = {"out.tgz"};
  Prologue = {"a.sh", "/opt/b.sh"};
  PrologueArguments = "--pa";
  Epilogue = "end.sh";
  EpilogueArguments = "--ea";
  Environment = {"A=1=2"};
  RetryCount = 1;
  ShallowRetryCount = 2;
  MaxWallTime = 60;
  Parameters = 4;
]
"#
    );
    assert_eq!(super::job(&text), job);
}

#[test]
fn dag_and_collection_jobs_write_their_type() {
    let nodes = Value::List(vec![Value::Str("a.jdl".into())]);
    for (job_type, word) in [(JobType::Dag, "DAG"), (JobType::Collection, "Collection")] {
        let job = JobDescription {
            job_type,
            other: vec![("Nodes".into(), nodes.clone())],
            ..Default::default()
        };
        let text = job.to_canonical();
        assert!(text.contains(&format!("Type = \"{word}\";")), "{text}");
        assert_eq!(super::job(&text), job);
    }
}

#[test]
fn strings_are_quoted_with_escapes() {
    let job = JobDescription {
        executable: Some("run.sh".into()),
        arguments: Some("say \"hi\"\\ \n\t\r é".into()),
        ..Default::default()
    };
    let text = job.to_canonical();
    assert!(
        text.contains(r#"Arguments = "say \"hi\"\\ \n\t\r é";"#),
        "{text}"
    );
    assert_eq!(super::job(&text), job);
}

#[test]
fn an_explicitly_empty_list_is_left_out_and_reads_back_as_empty() {
    let formatted =
        format("Executable = a; InputSandbox = {}; Environment = {};").expect("formats");
    assert_eq!(
        formatted,
        "[\n  Type = \"Job\";\n  Executable = \"a\";\n]\n"
    );
    assert!(job(&formatted).input_sandbox.is_empty());
}

#[test]
fn reals_round_trip_exactly() {
    for r in [
        0.1,
        1.0,
        -0.0,
        1e-7,
        1e16,
        123456.789,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        f64::INFINITY,
    ] {
        let job = JobDescription {
            executable: Some("a".into()),
            other: vec![("Ratio".into(), Value::Real(r))],
            ..Default::default()
        };
        let back = super::job(&job.to_canonical());
        assert_eq!(back, job, "{r:?}");
        let Some(Value::Real(b)) = other(&back, "Ratio") else {
            panic!("{back:?}")
        };
        assert_eq!(b.to_bits(), r.to_bits(), "{r:?}");
    }
}

#[test]
fn expressions_and_nested_values_in_other_are_written_back_as_read() {
    let src = "Executable = a
Requirements = other.A > 2 &&
   member(\"x\", other.B)
Rank = -other.C
Nodes = { [ NodeName = n; Executable = b; Flags = { 1, 2.5, true, {} } ], \"c.jdl\" }
Empty = []
";
    let formatted = format(src).expect("formats");
    assert_eq!(
        formatted,
        r#"[
  Type = "Job";
  Executable = "a";
  Requirements = other.A > 2 &&
   member("x", other.B);
  Rank = -other.C;
  Nodes = {
    [
      NodeName = "n";
      Executable = "b";
      Flags = {1, 2.5, true, {}};
    ],
    "c.jdl"
  };
  Empty = [];
]
"#
    );
    assert_eq!(job(&formatted), job(src));
}

#[test]
fn format_refuses_a_text_with_errors() {
    let diagnostics = format("Executable = a; RetryCount = -1;").expect_err("an error");
    assert!(diagnostics.iter().any(Diagnostic::is_error));
}

#[test]
fn a_huge_max_wall_time_round_trips() {
    let job = JobDescription {
        executable: Some("a".into()),
        max_wall_time: Some(u64::MAX),
        retry_count: Some(u32::MAX),
        ..Default::default()
    };
    assert_eq!(super::job(&job.to_canonical()), job);
}
