//! Validation: what each attribute must hold, what each job type needs, and the
//! warnings for what drover keeps without using.

use super::*;

fn has_error(src: &str, needle: &str) -> Diagnostic {
    let errors = errors(src);
    errors
        .iter()
        .find(|d| d.message.contains(needle))
        .cloned()
        .unwrap_or_else(|| panic!("no error containing {needle:?} in:\n{src}\n{errors:#?}"))
}

fn has_warning(src: &str, needle: &str) -> Diagnostic {
    let warnings = warnings(src);
    warnings
        .iter()
        .find(|d| d.message.contains(needle))
        .cloned()
        .unwrap_or_else(|| panic!("no warning containing {needle:?} in:\n{src}\n{warnings:#?}"))
}

#[test]
fn a_plain_job_needs_an_executable() {
    let (line, col, message) = the_error("StdOutput = out\n");
    assert_eq!((line, col), (1, 1));
    assert!(message.contains("no `Executable`"), "{message}");
    let (line, col, _) = the_error("# comment\n  [ StdOutput = out ]");
    assert_eq!((line, col), (2, 3));
}

#[test]
fn an_empty_executable_is_an_error() {
    has_error("Executable = \"\";", "`Executable` is empty");
}

#[test]
fn string_attributes_refuse_lists() {
    let e = has_error(
        "Executable = {a, b};",
        "`Executable` takes one string, not a list",
    );
    assert_eq!((e.line, e.col), (1, 14));
}

#[test]
fn list_attributes_refuse_records_inside() {
    has_error(
        "Executable = a; InputSandbox = {a.txt, [x = 1]};",
        "entries of `InputSandbox` must be strings, not a record",
    );
}

#[test]
fn retry_counts_must_be_whole_numbers_of_zero_or_more() {
    let job = job("Executable = a; RetryCount = 3; ShallowRetryCount = 0; MaxWallTime = 3600;");
    assert_eq!(job.retry_count, Some(3));
    assert_eq!(job.shallow_retry_count, Some(0));
    assert_eq!(job.max_wall_time, Some(3600));
    let e = has_error(
        "Executable = a; RetryCount = -1;",
        "`RetryCount` must be at least 0, not -1",
    );
    assert_eq!((e.line, e.col), (1, 30));
    has_error(
        "Executable = a; ShallowRetryCount = many;",
        "`ShallowRetryCount` must be a whole number",
    );
    has_error("Executable = a; RetryCount = \"three\";", "not \"three\"");
    has_error("Executable = a; RetryCount = 2.5;", "not a real number");
    has_error("Executable = a; RetryCount = 4294967296;", "too large");
}

#[test]
fn a_quoted_retry_count_is_accepted_with_a_warning() {
    let (job, warnings) = parse_job("Executable = a; RetryCount = \"3\";").expect("accepted");
    assert_eq!(job.retry_count, Some(3));
    assert!(
        warnings[0].message.contains("write `RetryCount = 3;`"),
        "{warnings:?}"
    );
}

#[test]
fn max_wall_time_must_be_above_zero_and_may_be_very_large() {
    has_error(
        "Executable = a; MaxWallTime = 0;",
        "`MaxWallTime` must be at least 1 seconds",
    );
    has_error("Executable = a; MaxWallTime = -5;", "at least 1");
    assert_eq!(
        job("Executable = a; MaxWallTime = 18446744073709551615;").max_wall_time,
        Some(u64::MAX)
    );
}

#[test]
fn an_integer_above_i64_is_refused_where_it_cannot_be_kept() {
    has_error(
        "Executable = a; Foo = 18446744073709551615;",
        "too large here",
    );
}

#[test]
fn environment_entries_split_at_the_first_equals_sign() {
    let job = job("Executable = a; Environment = {\"PATH=/bin:/usr/bin\", OPTS=a=b, \"EMPTY=\"};");
    assert_eq!(
        job.environment,
        vec![
            ("PATH".to_string(), "/bin:/usr/bin".to_string()),
            ("OPTS".to_string(), "a=b".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]
    );
}

#[test]
fn environment_entries_need_a_valid_name_and_an_equals_sign() {
    let e = has_error(
        "Executable = a;\nEnvironment = {\"A=1\", \"NOVALUE\"};",
        "`NOVALUE` must be `NAME=value`",
    );
    assert_eq!((e.line, e.col), (2, 23));
    has_error(
        "Executable = a; Environment = {\"1X=2\"};",
        "`1X` is not a variable name",
    );
    has_error(
        "Executable = a; Environment = {\"MY-VAR=2\"};",
        "`MY-VAR` is not a variable name",
    );
    has_warning(
        "Executable = a; Environment = {\"A=1\", \"A=2\"};",
        "sets `A` twice",
    );
}

#[test]
fn sandbox_names_must_stay_inside_the_job_folder() {
    let e = has_error(
        "Executable = a;\nOutputSandbox = {\"ok.txt\", \"../escape\"};",
        "`../escape` climbs out",
    );
    assert_eq!((e.line, e.col), (2, 28));
    has_error(
        "Executable = a; OutputSandbox = {\"/etc/passwd\"};",
        "is an absolute path",
    );
    has_error(
        "Executable = a; StdOutput = ../out.txt;",
        "`StdOutput` `../out.txt` climbs out",
    );
    has_error(
        "Executable = a; StdError = \"/tmp/err\";",
        "`StdError` `/tmp/err` is an absolute path",
    );
    has_error("Executable = a; StdInput = \"a/../../in\";", "`StdInput`");
    has_error(
        "Executable = a; StdOutput = \"dir\\\\out\";",
        "separate folders with `/`",
    );
    has_error("Executable = a; StdOutput = \"\";", "`StdOutput` is empty");
    assert!(check("Executable = a; OutputSandbox = {\"out/*.txt\", \"a..b\"};").is_empty());
}

#[test]
fn input_sandbox_entries_with_one_base_name_collide() {
    let src =
        "Executable = a;\nInputSandbox = {\"a/data.txt\", \"run.sh\",\n  \"/abs/b/data.txt\"};";
    let e = has_error(src, "both land in the sandbox as `data.txt`");
    assert_eq!((e.line, e.col), (3, 3));
    assert!(
        e.message.contains("`a/data.txt` (at 2:17)"),
        "{}",
        e.message
    );
    assert!(check(
        "Executable = a; InputSandbox = {\"a/*.txt\", \"b/*.txt\", \"file:///x/y.txt\"};"
    )
    .is_empty());
    has_error(
        "Executable = a; InputSandbox = {\"x/..\"};",
        "names no file",
    );
    has_error("Executable = a; InputSandbox = {\"\"};", "empty entry");
}

#[test]
fn arguments_must_pair_their_shell_quotes() {
    has_error(
        "Executable = a; Arguments = \"--name 'x\";",
        "unterminated `'` quote",
    );
    has_error(
        "Executable = a; PrologueArguments = \"\\\"x\";",
        "`PrologueArguments` has an unterminated",
    );
    assert!(check("Executable = a; Arguments = \"--name 'a b' \\\"c d\\\" e\\\\ f\";").is_empty());
}

#[test]
fn job_types_are_read_whatever_their_case() {
    assert_eq!(
        job("Type = \"job\"; Executable = a").job_type,
        JobType::Normal
    );
    assert_eq!(
        job("JobType = NORMAL; Executable = a").job_type,
        JobType::Normal
    );
    assert_eq!(
        job("Type = Job; JobType = parametric; Parameters = 3; Executable = a").job_type,
        JobType::Parametric
    );
    assert_eq!(
        job("Type = dag; Nodes = { \"a.jdl\" }").job_type,
        JobType::Dag
    );
    assert_eq!(
        job("Type = \"Collection\"; Nodes = { [ Executable = a ] }").job_type,
        JobType::Collection
    );
}

#[test]
fn an_unknown_job_type_is_an_error() {
    let e = has_error(
        "Executable = a; JobType = \"Interactive\";",
        "not a job type drover knows",
    );
    assert_eq!((e.line, e.col), (1, 27));
}

#[test]
fn type_and_job_type_must_not_disagree() {
    has_error(
        "Type = DAG; JobType = Parametric; Parameters = 2; Nodes = {\"a.jdl\"}; Executable = a",
        "say different job types",
    );
}

#[test]
fn a_parametric_job_needs_parameters() {
    has_error(
        "JobType = \"Parametric\"; Executable = a;",
        "needs `Parameters`",
    );
    has_error(
        "JobType = \"Parametric\"; Parameters = 0; Executable = a;",
        "`Parameters` must be",
    );
    has_error(
        "JobType = \"Parametric\"; Parameters = 2; ParameterStep = 0; Executable = a;",
        "`ParameterStep` must be at least 1",
    );
    assert!(check("JobType = Parametric; Parameters = {\"x\", \"y\"}; Executable = a;").is_empty());
    has_warning(
        "Parameters = 3; Executable = a;",
        "ignored unless `JobType = \"Parametric\"`",
    );
}

#[test]
fn a_dag_needs_nodes_each_with_an_executable_or_a_file() {
    has_error("Type = \"DAG\";", "a DAG needs `Nodes`");
    let e = has_error(
        "Type = \"DAG\";\nNodes = {\n  [ NodeName = a; File = \"a.jdl\"; ],\n  [ NodeName = b; StdOutput = o ]\n};",
        "this node has no `Executable`",
    );
    assert_eq!((e.line, e.col), (4, 3));
    has_error(
        "Type = DAG; Nodes = { [ File = \"\" ] };",
        "a node's `File` must name",
    );
    has_error("Type = DAG; Nodes = { 42 };", "a node must be a record");
    has_error(
        "Type = DAG; Nodes = \"a.jdl\";",
        "`Nodes` must be a list of nodes",
    );
    has_error(
        "Type = DAG; Nodes = { [ Executable = a; OutputSandbox = {\"../x\"} ] };",
        "climbs out",
    );
    has_error(
        "Type = DAG; Nodes = { [ Description = [ StdOutput = o ] ] };",
        "no `Executable`",
    );
    has_error(
        "Type = DAG; Nodes = { [ Type = DAG; Nodes = {\"x.jdl\"} ] };",
        "must be a plain job",
    );
}

#[test]
fn a_dag_in_the_list_form_with_dependencies_passes_check() {
    let src = "[
  Type = \"DAG\";
  Nodes = {
    [ NodeName = \"prepare\"; Executable = \"prep.sh\"; ],
    [ NodeName = \"analyse\"; File = \"analyse.jdl\"; ],
    [ NodeName = \"merge\"; Description = [ Executable = \"merge.sh\"; ]; ]
  };
  Dependencies = { {\"prepare\", \"analyse\"}, {{prepare, analyse}, merge} };
]";
    assert!(check(src).is_empty(), "{:#?}", check(src));
    assert_eq!(job(src).job_type, JobType::Dag);
}

#[test]
fn a_dag_in_the_old_record_form_passes_check() {
    let src = "[
  type = \"dag\";
  nodes = [
    nodeA = [ file = \"nodeA.jdl\"; ];
    nodeB = [ description = [ executable = \"/bin/ls\"; stdoutput = \"ls.out\"; ]; ];
    dependencies = { {nodeA, nodeB} };
  ];
]";
    assert!(check(src).is_empty(), "{:#?}", check(src));
    let job = job(src);
    let Some(Value::Record(nodes)) = other(&job, "Nodes") else {
        panic!("Nodes kept as a record: {job:?}");
    };
    assert_eq!(nodes[0].0, "nodeA");
    assert_eq!(
        nodes[0].1,
        Value::Record(vec![("File".into(), Value::Str("nodeA.jdl".into()))])
    );
}

#[test]
fn dependencies_must_name_known_nodes_as_pairs() {
    has_error(
        "Type = DAG; Nodes = { [NodeName = a; Executable = x] }; Dependencies = { {a, b} };",
        "names the node `b`, which is not in `Nodes`",
    );
    has_error(
        "Type = DAG; Nodes = { [NodeName = a; Executable = x] }; Dependencies = { {a} };",
        "must be a pair",
    );
    has_warning(
        "Type = Collection; Nodes = { \"a.jdl\" }; Dependencies = { {a, b} };",
        "ignored in a collection",
    );
}

#[test]
fn nodes_are_ignored_with_a_warning_in_a_plain_job() {
    has_warning(
        "Executable = a; Nodes = { \"a.jdl\" };",
        "`Nodes` is ignored",
    );
}

#[test]
fn unknown_attributes_are_kept_with_a_warning() {
    let (job, warnings) = parse_job("Executable = a;\nFrobnicate = 3;").expect("only a warning");
    assert_eq!(other(&job, "Frobnicate"), Some(&Value::Int(3)));
    assert_eq!(warnings.len(), 1);
    assert_eq!((warnings[0].line, warnings[0].col), (2, 1));
    assert_eq!(
        warnings[0].message,
        "unknown attribute `Frobnicate`, kept but not used"
    );
}

#[test]
fn a_typo_of_a_known_name_gets_a_did_you_mean() {
    let w = has_warning(
        "Executable = a; StdOuput = \"o\";",
        "unknown attribute `StdOuput`",
    );
    assert!(
        w.message.ends_with("did you mean `StdOutput`?"),
        "{}",
        w.message
    );
    let w = has_warning(
        "Executable = a; requirments = true;",
        "did you mean `Requirements`?",
    );
    assert_eq!((w.line, w.col), (1, 17));
}

#[test]
fn known_glite_attributes_are_kept_quietly() {
    let job = job("Executable = a; virtualorganisation = \"biomed\"; MyProxyServer = \"px.cern.ch\"; PerusalFileEnable = true;");
    assert_eq!(
        other(&job, "VirtualOrganisation"),
        Some(&Value::Str("biomed".into()))
    );
    assert!(
        check("Executable = a; VirtualOrganisation = \"biomed\"; DefaultNodeRetryCount = 2;")
            .is_empty()
    );
}

#[test]
fn requirements_and_rank_are_kept_but_not_evaluated() {
    let diagnostics = warnings("Executable = a;\nRequirements = other.X > 1;\nRank = other.Y;");
    let messages: Vec<_> = diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "`Requirements` is kept, not evaluated by drover yet",
            "`Rank` is kept, not evaluated by drover yet"
        ]
    );
}

#[test]
fn every_validation_error_is_reported_sorted_by_position() {
    let src = "StdOutput = \"../o\";
RetryCount = -2;
OutputSandbox = {\"/x\"};
Environment = {\"NOPE\"};
";
    let errors = errors(src);
    let places: Vec<(u32, u32)> = errors.iter().map(|d| (d.line, d.col)).collect();
    assert_eq!(
        places,
        [(1, 1), (1, 13), (2, 14), (3, 18), (4, 16)],
        "{errors:#?}"
    );
}

#[test]
fn a_diagnostic_displays_as_line_col_severity_message() {
    let d = &errors("Executable = a; RetryCount = -1;")[0];
    assert_eq!(
        d.to_string(),
        "1:30: error: `RetryCount` must be at least 0, not -1"
    );
    let w = &warnings("Executable = a; Foo = 1;")[0];
    assert_eq!(
        w.to_string(),
        "1:17: warning: unknown attribute `Foo`, kept but not used"
    );
}
