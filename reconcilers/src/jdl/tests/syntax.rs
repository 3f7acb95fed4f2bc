//! Reading: the syntax JDL.md describes, its leniencies, and where errors point.

use super::*;

#[test]
fn the_bracketed_example_from_the_spec_reads_as_a_plain_job() {
    let job = job(r#"[
  Executable = "/bin/hostname";
  StdOutput = "std.out";
  StdError = "std.err";
  OutputSandbox = {"std.out", "std.err"};
]"#);
    assert_eq!(job.job_type, JobType::Normal);
    assert_eq!(job.executable.as_deref(), Some("/bin/hostname"));
    assert_eq!(job.std_output.as_deref(), Some("std.out"));
    assert_eq!(job.std_error.as_deref(), Some("std.err"));
    assert_eq!(job.output_sandbox, strs(&["std.out", "std.err"]));
    assert!(job.other.is_empty());
    assert!(check("[ Executable = \"/bin/hostname\"; ]").is_empty());
}

#[test]
fn the_seed_layout_without_brackets_semicolons_or_quotes_reads() {
    let src = "Prologue = {setup.sh}
InputSandbox = {data.csv, analyse.py}
OutputSandbox = {result.tar.gz}
Arguments = --rows 1000 data.csv
Executable = analyse.py
";
    let (job, warnings) = parse_job(src).expect("the seed's layout reads");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(job.prologue, strs(&["setup.sh"]));
    assert_eq!(job.input_sandbox, strs(&["data.csv", "analyse.py"]));
    assert_eq!(job.output_sandbox, strs(&["result.tar.gz"]));
    assert_eq!(job.arguments.as_deref(), Some("--rows 1000 data.csv"));
    assert_eq!(job.executable.as_deref(), Some("analyse.py"));
    assert_eq!(
        output_archive_candidate(&job.output_sandbox),
        Some("result.tar.gz")
    );
}

#[test]
fn the_seed_writes_executable_with_no_spaces_semicolon_or_quotes() {
    assert_eq!(
        job("Executable=executableName").executable.as_deref(),
        Some("executableName")
    );
}

#[test]
fn names_are_case_insensitive() {
    let job = job("EXECUTABLE = a.sh\nstdoutput = out.txt\nStdError = err.txt\n");
    assert_eq!(job.executable.as_deref(), Some("a.sh"));
    assert_eq!(job.std_output.as_deref(), Some("out.txt"));
    assert_eq!(job.std_error.as_deref(), Some("err.txt"));
}

#[test]
fn the_last_semicolon_is_optional_and_a_newline_ends_a_complete_value() {
    let job = job("[ Executable = \"a\"; StdOutput = \"o\" ]");
    assert_eq!(job.std_output.as_deref(), Some("o"));
    let job = super::job("Executable = \"a\"\nStdOutput = \"o\"\nRetryCount = 2\n");
    assert_eq!(job.retry_count, Some(2));
}

#[test]
fn stray_semicolons_are_harmless() {
    assert_eq!(
        job(";; Executable = a;;\n;").executable.as_deref(),
        Some("a")
    );
}

#[test]
fn comments_of_all_three_kinds_are_skipped() {
    let job = job("# a hash comment
[
  // a slash comment
  Executable = \"run.sh\"; # after a statement
  /* a block
     comment */ Arguments = \"-v\"; // after another
  StdOutput /* inside */ = /* here too */ \"out\";
]
/* trailing */");
    assert_eq!(job.executable.as_deref(), Some("run.sh"));
    assert_eq!(job.arguments.as_deref(), Some("-v"));
    assert_eq!(job.std_output.as_deref(), Some("out"));
}

#[test]
fn string_escapes_are_decoded() {
    let job = job(r#"Executable = "a"; Arguments = "say \"hi\" \\ \n\t\r";"#);
    assert_eq!(job.arguments.as_deref(), Some("say \"hi\" \\ \n\t\r"));
}

#[test]
fn an_unknown_escape_is_kept_as_written_with_a_warning() {
    let (job, warnings) = parse_job(r#"Executable = "C:\bin\x""#).expect("reads");
    assert_eq!(job.executable.as_deref(), Some(r"C:\bin\x"));
    assert_eq!(warnings.len(), 2);
    assert!(warnings[0].message.contains("unknown escape `\\b`"));
    assert_eq!((warnings[0].line, warnings[0].col), (1, 17));
}

#[test]
fn integers_reals_and_booleans_in_any_case_are_literals() {
    let job = job("Executable = a
Count = 3
Ratio = 2.5
Tiny = -1e-3
Huge = 1E16
Half = .5
On = TRUE
Off = False
");
    assert_eq!(other(&job, "Count"), Some(&Value::Int(3)));
    assert_eq!(other(&job, "Ratio"), Some(&Value::Real(2.5)));
    assert_eq!(other(&job, "Tiny"), Some(&Value::Real(-1e-3)));
    assert_eq!(other(&job, "Huge"), Some(&Value::Real(1e16)));
    assert_eq!(other(&job, "Half"), Some(&Value::Real(0.5)));
    assert_eq!(other(&job, "On"), Some(&Value::Bool(true)));
    assert_eq!(other(&job, "Off"), Some(&Value::Bool(false)));
}

#[test]
fn lists_may_be_empty_nested_or_end_with_a_comma() {
    let job = job("Executable = a; Empty = {}; Nested = {{\"a\", \"b\"}, {}}; Trailing = {1, 2,};");
    assert_eq!(other(&job, "Empty"), Some(&Value::List(vec![])));
    let ab = Value::List(vec![Value::Str("a".into()), Value::Str("b".into())]);
    assert_eq!(
        other(&job, "Nested"),
        Some(&Value::List(vec![ab, Value::List(vec![])]))
    );
    assert_eq!(
        other(&job, "Trailing"),
        Some(&Value::List(vec![Value::Int(1), Value::Int(2)]))
    );
}

#[test]
fn nested_records_keep_their_attributes_in_order() {
    let job = job("Executable = a; Site = [ name = \"CERN\"; cores = 8; flags = {x} ];");
    assert_eq!(
        other(&job, "Site"),
        Some(&Value::Record(vec![
            ("name".into(), Value::Str("CERN".into())),
            ("cores".into(), Value::Int(8)),
            ("flags".into(), Value::List(vec![Value::Expr("x".into())])),
        ]))
    );
}

#[test]
fn bare_words_run_to_a_semicolon_comma_brace_or_end_of_line_trimmed() {
    let job = job("Executable =   /bin/hostname   ; Arguments = -n 5 input.txt
InputSandbox = { data.txt , lib/helper.py }
JobName = my job   # a comment after a space ends it
");
    assert_eq!(job.executable.as_deref(), Some("/bin/hostname"));
    assert_eq!(job.arguments.as_deref(), Some("-n 5 input.txt"));
    assert_eq!(job.input_sandbox, strs(&["data.txt", "lib/helper.py"]));
    assert_eq!(job.job_name.as_deref(), Some("my job"));
}

#[test]
fn a_bare_word_keeps_double_slashes_and_hashes_inside_it() {
    let job = job("Executable = a\nInputSandbox = {file:///home/u/data.txt, x#1.txt}\n");
    assert_eq!(
        job.input_sandbox,
        strs(&["file:///home/u/data.txt", "x#1.txt"])
    );
}

#[test]
fn inside_brackets_a_bare_word_also_stops_at_the_closing_bracket() {
    assert_eq!(
        job("[ Executable = /bin/hostname ]").executable.as_deref(),
        Some("/bin/hostname")
    );
}

#[test]
fn a_single_value_where_a_list_is_expected_is_a_one_element_list() {
    assert_eq!(
        job("Executable = a; InputSandbox = \"job.xml\";").input_sandbox,
        strs(&["job.xml"])
    );
    assert_eq!(
        job("Executable = a; InputSandbox = job.xml;").input_sandbox,
        strs(&["job.xml"])
    );
    assert_eq!(
        job("Executable = a; Prologue = \"/bin/false\";").prologue,
        strs(&["/bin/false"])
    );
}

#[test]
fn rank_with_a_leading_minus_is_an_expression_kept_as_source() {
    let job = job("Executable = a; Rank = -other.GlueCEStateEstimatedResponseTime;");
    assert_eq!(
        other(&job, "Rank"),
        Some(&Value::Expr(
            "-other.GlueCEStateEstimatedResponseTime".into()
        ))
    );
}

#[test]
fn requirements_are_kept_as_trimmed_source_text() {
    let job = job(
        "Executable = a;\nRequirements =   other.GlueCEInfoTotalCPUs > 2 && member(\"X\", other.Y)  ;",
    );
    assert_eq!(
        other(&job, "Requirements"),
        Some(&Value::Expr(
            "other.GlueCEInfoTotalCPUs > 2 && member(\"X\", other.Y)".into()
        ))
    );
}

#[test]
fn a_multi_line_expression_goes_on_after_a_trailing_or_before_a_leading_operator() {
    let job = job("Executable = a
Requirements = other.A > 2 &&
               other.B == \"x\"
Rank = other.C
     + other.D
StdOutput = out
");
    assert_eq!(
        other(&job, "Requirements"),
        Some(&Value::Expr(
            "other.A > 2 &&\n               other.B == \"x\"".into()
        ))
    );
    assert_eq!(
        other(&job, "Rank"),
        Some(&Value::Expr("other.C\n     + other.D".into()))
    );
    assert_eq!(job.std_output.as_deref(), Some("out"));
}

#[test]
fn unknown_attributes_with_non_literal_values_are_expressions() {
    let job = job("Executable = a; MyThing = foo bar; Server = gsiftp://host/dir;");
    assert_eq!(other(&job, "MyThing"), Some(&Value::Expr("foo bar".into())));
    assert_eq!(
        other(&job, "Server"),
        Some(&Value::Expr("gsiftp://host/dir".into()))
    );
}

#[test]
fn a_list_compared_in_an_expression_is_kept_as_an_expression() {
    let job = job("Executable = a; Check = {1, 2} == other.X;");
    assert_eq!(
        other(&job, "Check"),
        Some(&Value::Expr("{1, 2} == other.X".into()))
    );
}

#[test]
fn names_may_contain_dots() {
    let job = job("Executable = a; Parameters.JOB_ID = 3;");
    assert_eq!(other(&job, "Parameters.JOB_ID"), Some(&Value::Int(3)));
}

#[test]
fn crlf_line_endings_and_a_byte_order_mark_are_accepted() {
    let job = job("\u{feff}Executable = run.sh\r\nArguments = -v\r\nStdOutput = \"o\"\r\n");
    assert_eq!(job.executable.as_deref(), Some("run.sh"));
    assert_eq!(job.arguments.as_deref(), Some("-v"));
    assert_eq!(job.std_output.as_deref(), Some("o"));
}

#[test]
fn an_unterminated_string_points_at_its_opening_quote() {
    let (line, col, message) = the_error("[\n  Executable = \"run.sh;\n  StdOutput = \"o\";\n]");
    assert_eq!((line, col), (2, 16));
    assert!(message.contains("unterminated string"), "{message}");
}

#[test]
fn a_missing_equals_sign_points_where_it_should_be() {
    let (line, col, message) = the_error("Executable \"run.sh\";");
    assert_eq!((line, col), (1, 12));
    assert!(
        message.contains("expected `=` after `Executable`"),
        "{message}"
    );
    let (line, col, _) = the_error("[\n  Executable = a;\n  StdOutput\n]");
    assert_eq!((line, col), (3, 12));
}

#[test]
fn an_unclosed_list_names_where_it_was_opened() {
    let (line, col, message) = the_error("InputSandbox = {\"a\", \"b\";\nExecutable = x;");
    assert_eq!((line, col), (1, 25));
    assert!(message.contains("list opened at 1:16"), "{message}");
    let (line, col, message) = the_error("Executable = x;\nInputSandbox = {\"a\",\n  \"b\"\n");
    assert_eq!((line, col), (4, 1));
    assert!(
        message.contains("list opened at 2:16 is not closed"),
        "{message}"
    );
}

#[test]
fn an_extra_closing_brace_is_an_error_where_it_stands() {
    let (line, col, message) = the_error("Executable = x;\nOutputSandbox = {\"a\"}};");
    assert_eq!((line, col), (2, 22));
    assert!(message.contains("found `}`"), "{message}");
}

#[test]
fn a_duplicate_attribute_names_both_positions() {
    let (line, col, message) = the_error("Executable = a\nStdOutput = o\n  executable = b\n");
    assert_eq!((line, col), (3, 3));
    assert!(
        message.contains("1:1") && message.contains("3:3"),
        "{message}"
    );
    assert!(message.contains("given twice"), "{message}");
}

#[test]
fn a_missing_closing_bracket_names_the_opening_one() {
    let (line, col, message) = the_error("[\n  Executable = \"a\";\n");
    assert_eq!((line, col), (3, 1));
    assert!(
        message.contains("missing `]` to close the `[` at 1:1"),
        "{message}"
    );
}

#[test]
fn a_closing_bracket_without_an_opening_one_is_an_error() {
    let (line, col, message) = the_error("Executable = \"a\";\n]");
    assert_eq!((line, col), (2, 1));
    assert!(message.contains("no `[`"), "{message}");
}

#[test]
fn text_after_the_closing_bracket_is_an_error() {
    let (line, col, _) = the_error("[ Executable = \"a\"; ]\nStdOutput = \"o\";");
    assert_eq!((line, col), (2, 1));
}

#[test]
fn two_statements_on_a_line_need_a_semicolon() {
    let (line, col, message) = the_error("Executable = \"a\" StdOutput = \"o\"");
    assert_eq!((line, col), (1, 18));
    assert!(message.contains("expected `;`"), "{message}");
}

#[test]
fn a_missing_value_is_an_error_at_the_equals_sign() {
    let (line, col, message) = the_error("Arguments =\nExecutable = a\n");
    assert_eq!((line, col), (1, 12));
    assert!(
        message.contains("missing value for `Arguments`"),
        "{message}"
    );
    let (line, col, _) = the_error("Executable = a; StdOutput = ;");
    assert_eq!((line, col), (1, 28));
}

#[test]
fn an_unterminated_block_comment_points_at_its_start() {
    let (line, col, message) = the_error("Executable = a;\n  /* never closed\n");
    assert_eq!((line, col), (2, 3));
    assert!(message.contains("unterminated comment"), "{message}");
}

#[test]
fn unbalanced_parentheses_in_an_expression_are_errors() {
    let (line, col, message) =
        the_error("Executable = a;\nRequirements = member(\"x\", other.Y;\n");
    assert_eq!((line, col), (3, 1));
    assert!(message.contains("`(` at 2:22 is not closed"), "{message}");
    let (line, col, _) = the_error("Executable = a;\nRank = other.X);");
    assert_eq!((line, col), (2, 15));
    let (line, col, message) = the_error("Executable = a;\nRank = f(x];");
    assert_eq!((line, col), (2, 11));
    assert!(message.contains("does not match"), "{message}");
}

#[test]
fn columns_count_characters_not_bytes() {
    let (line, col, _) = the_error("JobName = \"héllo wörld\" Executable = a");
    assert_eq!((line, col), (1, 25));
}

#[test]
fn a_name_must_start_with_a_letter() {
    let (line, col, message) = the_error("Executable = a;\n  1Foo = 2;");
    assert_eq!((line, col), (2, 3));
    assert!(message.contains("expected an attribute name"), "{message}");
}

#[test]
fn an_integer_out_of_range_is_an_error() {
    let (line, col, message) = the_error("Executable = a; Big = 123456789012345678901234567890;");
    assert_eq!((line, col), (1, 23));
    assert!(message.contains("out of range"), "{message}");
}

#[test]
fn after_a_syntax_error_nothing_else_is_reported() {
    let diagnostics = check("Frobnicate = 1\nExecutable \"x\"\nStdOutput = \"../x\"");
    let errors: Vec<_> = diagnostics.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 1, "{diagnostics:#?}");
    assert_eq!((errors[0].line, errors[0].col), (2, 12));
}

#[test]
fn quotes_inside_a_bare_word_protect_what_they_enclose() {
    let job = job("Executable = a\nArguments = --title \"a, b; c\" --x 'd}e'\nJobName = it's; StdOutput = o\n");
    assert_eq!(
        job.arguments.as_deref(),
        Some("--title \"a, b; c\" --x 'd}e'")
    );
    assert_eq!(job.job_name.as_deref(), Some("it's"));
}

#[test]
fn a_brace_in_an_unquoted_value_suggests_quotes() {
    let (line, col, message) = the_error("Executable = a\nArguments = -e {x}\n");
    assert_eq!((line, col), (2, 18));
    assert!(
        message.ends_with("put the value in quotes if it contains `,` or `}`"),
        "{message}"
    );
}

#[test]
fn an_expression_may_start_on_the_next_line_unless_a_statement_does() {
    let job = job("Executable = a\nRequirements =\n  other.X > 1\n");
    assert_eq!(
        other(&job, "Requirements"),
        Some(&Value::Expr("other.X > 1".into()))
    );
    let (line, col, message) = the_error("Requirements =\nExecutable = a\n");
    assert_eq!((line, col), (1, 15));
    assert!(
        message.contains("missing value for `Requirements`"),
        "{message}"
    );
}
