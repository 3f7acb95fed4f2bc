//! Parametric JDL: parsing and expansion into plain jobs.

use reconcilers::jdl::{self, expand_parametric, ExpandError, JobType, MAX_PARAMETRIC_JOBS};

fn parse(src: &str) -> jdl::JobDescription {
    match jdl::parse_job(src) {
        Ok((job, _)) => job,
        Err(diags) => panic!("{src}: {diags:#?}"),
    }
}

#[test]
fn a_count_makes_that_many_jobs_with_param_replaced_everywhere() {
    let job = parse(
        r#"[
          JobType = "Parametric";
          Executable = "/bin/echo";
          Arguments = "--seed _PARAM_";
          Parameters = 3;
          InputSandbox = {"in__PARAM_.txt"};
          StdOutput = "out_PARAM_.txt";
          StdError = "err_PARAM_.txt";
          OutputSandbox = {"out_PARAM_.txt", "err_PARAM_.txt"};
          Environment = {"SEED=_PARAM_"};
          JobName = "sweep-_PARAM_";
        ]"#,
    );
    let jobs = expand_parametric(&job).unwrap();
    assert_eq!(jobs.len(), 3);
    for (i, j) in jobs.iter().enumerate() {
        assert_eq!(j.job_type, JobType::Normal);
        assert_eq!(j.arguments.as_deref(), Some(format!("--seed {i}").as_str()));
        assert_eq!(j.input_sandbox, vec![format!("in_{i}.txt")]);
        assert_eq!(
            j.std_output.as_deref(),
            Some(format!("out{i}.txt").as_str())
        );
        assert_eq!(j.std_error.as_deref(), Some(format!("err{i}.txt").as_str()));
        assert_eq!(
            j.output_sandbox,
            vec![format!("out{i}.txt"), format!("err{i}.txt")]
        );
        assert_eq!(j.environment, vec![("SEED".to_string(), i.to_string())]);
        assert_eq!(j.job_name.as_deref(), Some(format!("sweep-{i}").as_str()));
        assert!(
            !j.other.iter().any(|(k, _)| k.starts_with("Parameter")),
            "{:?}",
            j.other
        );
        // Each expanded job is a plain job the parser reads back unchanged.
        let again = parse(&j.to_canonical());
        assert_eq!(&again, j);
    }
}

#[test]
fn start_and_step_give_the_values() {
    let job = parse(
        "JobType = Parametric; Executable = a; Arguments = _PARAM_; Parameters = 4; \
         ParameterStart = 10; ParameterStep = 5;",
    );
    let args: Vec<_> = expand_parametric(&job)
        .unwrap()
        .into_iter()
        .map(|j| j.arguments.unwrap())
        .collect();
    assert_eq!(args, ["10", "15", "20", "25"]);
}

#[test]
fn a_list_gives_its_values_in_order() {
    let job = parse(
        r#"JobType = "Parametric"; Executable = "a"; Arguments = "_PARAM_";
           Parameters = {"alpha", "beta", 7};"#,
    );
    let args: Vec<_> = expand_parametric(&job)
        .unwrap()
        .into_iter()
        .map(|j| j.arguments.unwrap())
        .collect();
    assert_eq!(args, ["alpha", "beta", "7"]);
}

#[test]
fn too_many_jobs_is_a_clear_error() {
    let count = MAX_PARAMETRIC_JOBS + 1;
    let job = parse(&format!(
        "JobType = Parametric; Executable = a; Parameters = {count};"
    ));
    let err = expand_parametric(&job).unwrap_err();
    assert_eq!(err, ExpandError::TooMany { count });
    assert!(err.to_string().contains("split it"), "{err}");
}

#[test]
fn a_range_past_the_largest_number_is_refused() {
    let job = parse(&format!(
        "JobType = Parametric; Executable = a; Parameters = 3; ParameterStart = {}; ParameterStep = 1000;",
        i64::MAX - 10
    ));
    assert_eq!(expand_parametric(&job).unwrap_err(), ExpandError::Overflow);
}

#[test]
fn a_plain_job_has_nothing_to_expand() {
    let job = parse("Executable = a;");
    assert_eq!(
        expand_parametric(&job).unwrap_err(),
        ExpandError::NotParametric
    );
}

#[test]
fn a_list_of_records_is_refused_with_the_reason() {
    let mut job = parse("JobType = Parametric; Executable = a; Parameters = 2;");
    for (key, value) in &mut job.other {
        if key == "Parameters" {
            *value = jdl::Value::List(vec![jdl::Value::Record(Vec::new())]);
        }
    }
    let err = expand_parametric(&job).unwrap_err().to_string();
    assert!(err.contains("a list of strings or numbers"), "{err}");
}
