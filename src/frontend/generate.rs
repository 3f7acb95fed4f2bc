//! The seed's flag frontend: a job given as command-line flags instead of a JDL
//! file (`drover submit --executable run.sh --input data.csv -- --rows 10`) is
//! turned into the same `JobDescription` and packed like one.

use reconcilers::jdl::JobDescription;

/// What messages about a flag-built job call it: the `source_name` to pack it
/// under (with the current folder as `base_dir`).
pub const SOURCE_NAME: &str = "command line";

/// Where stdout and stderr go when the flags name no outputs.
const DEFAULT_STDOUT: &str = "stdout.txt";
const DEFAULT_STDERR: &str = "stderr.txt";

/// A job from flags. `arguments` become one `Arguments` string, shell-quoted so
/// that the worker's shell-word split gives back exactly these arguments (spaces,
/// quotes and empty ones included). With no `outputs`, stdout and stderr are
/// written to `stdout.txt` and `stderr.txt` and those two are the OutputSandbox.
pub fn description_from_flags(
    executable: &str,
    arguments: &[String],
    inputs: &[String],
    prologues: &[String],
    outputs: &[String],
) -> JobDescription {
    let mut job = JobDescription {
        executable: Some(executable.to_string()),
        arguments: (!arguments.is_empty()).then(|| shell_words::join(arguments)),
        input_sandbox: inputs.to_vec(),
        prologue: prologues.to_vec(),
        output_sandbox: outputs.to_vec(),
        ..JobDescription::default()
    };
    if outputs.is_empty() {
        job.std_output = Some(DEFAULT_STDOUT.to_string());
        job.std_error = Some(DEFAULT_STDERR.to_string());
        job.output_sandbox = vec![DEFAULT_STDOUT.to_string(), DEFAULT_STDERR.to_string()];
    }
    job
}

#[cfg(test)]
mod tests {
    use super::super::pack::{plan_description, PackLimits};
    use super::*;
    use proptest::prelude::*;
    use reconcilers::jdl::parse_job;
    use std::fs;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_with_spaces_and_quotes_survive_the_shell_word_split() {
        let args = strings(&[
            "--title",
            "two words",
            "it's",
            "say \"hi\"",
            "",
            "$HOME",
            "a\\b",
            "*.csv",
            "tab\there",
        ]);
        let job = description_from_flags("run.sh", &args, &[], &[], &[]);
        let joined = job.arguments.expect("arguments are set");
        assert_eq!(shell_words::split(&joined).expect("splits"), args);
    }

    #[test]
    fn arguments_survive_the_canonical_jdl_and_its_parser() {
        let args = strings(&[
            "--name",
            "Jean \"JJ\" O'Neil",
            "",
            "a;b",
            "{x}",
            "c,d",
            "# not a comment",
        ]);
        let job = description_from_flags("/bin/echo", &args, &[], &[], &[]);
        let (back, _) = parse_job(&job.to_canonical()).expect("canonical JDL parses");
        let joined = back.arguments.expect("arguments are kept");
        assert_eq!(shell_words::split(&joined).expect("splits"), args);
    }

    #[test]
    fn no_arguments_leave_arguments_unset() {
        let job = description_from_flags("/bin/true", &[], &[], &[], &[]);
        assert_eq!(job.arguments, None);
    }

    #[test]
    fn without_outputs_stdout_and_stderr_are_the_output_sandbox() {
        let job = description_from_flags("/bin/hostname", &[], &[], &[], &[]);
        assert_eq!(job.std_output.as_deref(), Some("stdout.txt"));
        assert_eq!(job.std_error.as_deref(), Some("stderr.txt"));
        assert_eq!(job.output_sandbox, strings(&["stdout.txt", "stderr.txt"]));
    }

    #[test]
    fn given_outputs_are_the_output_sandbox_and_std_streams_stay_unnamed() {
        let job = description_from_flags("run.sh", &[], &[], &[], &strings(&["result.tar.gz"]));
        assert_eq!(job.output_sandbox, strings(&["result.tar.gz"]));
        assert_eq!(job.std_output, None);
        assert_eq!(job.std_error, None);
    }

    #[test]
    fn inputs_and_prologues_are_shipped_from_the_given_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("run.sh"), "#!/bin/sh\n").expect("write");
        fs::write(dir.path().join("setup.sh"), "#!/bin/sh\n").expect("write");
        fs::write(dir.path().join("data.csv"), "a,b\n").expect("write");
        let job = description_from_flags(
            "run.sh",
            &strings(&["data.csv"]),
            &strings(&["data.csv"]),
            &strings(&["setup.sh"]),
            &[],
        );
        let plan =
            plan_description(job, dir.path(), SOURCE_NAME, &PackLimits::default()).expect("packs");
        let names: Vec<_> = plan.job().files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["data.csv", "run.sh", "setup.sh"]);
    }

    #[test]
    fn an_unsafe_output_name_from_flags_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let job = description_from_flags("/bin/true", &[], &[], &[], &strings(&["../escape"]));
        let err = plan_description(job, dir.path(), SOURCE_NAME, &PackLimits::default())
            .expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("command line: OutputSandbox: `../escape`"),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn any_arguments_split_back_to_themselves(args in proptest::collection::vec("[^\u{0}]{0,12}", 0..6)) {
            let job = description_from_flags("/bin/echo", &args, &[], &[], &[]);
            let back = match job.arguments {
                Some(joined) => shell_words::split(&joined).expect("splits"),
                None => Vec::new(),
            };
            prop_assert_eq!(back, args);
        }

        #[test]
        fn any_arguments_survive_the_canonical_jdl(args in proptest::collection::vec("[^\u{0}]{0,12}", 1..6)) {
            let job = description_from_flags("/bin/echo", &args, &[], &[], &[]);
            let (back, _) = parse_job(&job.to_canonical()).expect("canonical JDL parses");
            let joined = back.arguments.expect("arguments are kept");
            prop_assert_eq!(shell_words::split(&joined).expect("splits"), args);
        }
    }
}
