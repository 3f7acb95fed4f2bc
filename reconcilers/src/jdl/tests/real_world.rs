//! Files as grid users write them for the gLite WMS and DIRAC: these must read.

use super::*;

const GLITE_HOSTNAME: &str = r#"///////////////////////////////////////////////
// hostname.jdl: the gLite user guide's first job
///////////////////////////////////////////////
[
  Type = "Job";
  JobType = "Normal";
  Executable = "/bin/hostname";
  Arguments = "-f";
  StdOutput = "hostname.out";
  StdError = "hostname.err";
  OutputSandbox = {"hostname.out","hostname.err"};
  VirtualOrganisation = "biomed";
  Requirements = other.GlueCEInfoTotalCPUs > 2 &&
                 member("VO-biomed-SW", other.GlueHostApplicationSoftwareRunTimeEnvironment);
  Rank = -other.GlueCEStateEstimatedResponseTime;
  RetryCount = 3;
  ShallowRetryCount = 10;
  MyProxyServer = "myproxy.cern.ch";
]
"#;

#[test]
fn a_glite_user_guide_job_reads_with_its_requirements_and_rank_kept() {
    let (job, warnings) = parse_job(GLITE_HOSTNAME).expect("reads");
    assert_eq!(job.job_type, JobType::Normal);
    assert_eq!(job.executable.as_deref(), Some("/bin/hostname"));
    assert_eq!(job.arguments.as_deref(), Some("-f"));
    assert_eq!(job.output_sandbox, strs(&["hostname.out", "hostname.err"]));
    assert_eq!(job.retry_count, Some(3));
    assert_eq!(job.shallow_retry_count, Some(10));
    let names: Vec<&str> = job.other.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "VirtualOrganisation",
            "Requirements",
            "Rank",
            "MyProxyServer"
        ]
    );
    assert_eq!(
        other(&job, "Requirements"),
        Some(&Value::Expr(
            "other.GlueCEInfoTotalCPUs > 2 &&\n                 member(\"VO-biomed-SW\", \
             other.GlueHostApplicationSoftwareRunTimeEnvironment)"
                .into()
        ))
    );
    let places: Vec<(u32, u32)> = warnings.iter().map(|w| (w.line, w.col)).collect();
    assert_eq!(places, [(13, 3), (15, 3)], "{warnings:#?}");
}

const GLITE_ANALYSIS: &str = r#"# Analysis job submitted through the WMS
# (mixed spellings as found in the wild)
[
  executable = "analysis.sh";   # shipped below
  arguments = "--events 1000 --out result.root";
  stdoutput = "analysis.out";
  stderror = "analysis.err";
  inputsandbox = {
    "analysis.sh",
    "file:///home/user/config/analysis.cfg",   // absolute URI
    "lib/libAna.so"
  };
  outputsandbox = {"analysis.out", "analysis.err", "result.root"};
  environment = {"ANA_DEBUG=1", "LD_LIBRARY_PATH=."};
  /* retry once on failure, more on infrastructure problems */
  retrycount = 1;
  shallowretrycount = 3;
  prologue = "setup_env.sh";
  prologuearguments = "--quiet";
  epilogue = "cleanup.sh";
  PerusalFileEnable = true;
  PerusalTimeInterval = 1000;
  virtualorganisation = "atlas";
  requirements = (other.GlueCEPolicyMaxCPUTime > 720) && (other.GlueHostMainMemoryRAMSize >= 2048);
]
"#;

#[test]
fn a_glite_analysis_job_with_lowercase_names_and_all_comment_kinds_reads() {
    let (job, _) = parse_job(GLITE_ANALYSIS).expect("reads");
    assert_eq!(job.executable.as_deref(), Some("analysis.sh"));
    assert_eq!(job.input_sandbox.len(), 3);
    assert_eq!(
        job.input_sandbox[1],
        "file:///home/user/config/analysis.cfg"
    );
    assert_eq!(
        job.environment,
        vec![
            ("ANA_DEBUG".to_string(), "1".to_string()),
            ("LD_LIBRARY_PATH".to_string(), ".".to_string())
        ]
    );
    assert_eq!(job.prologue, strs(&["setup_env.sh"]));
    assert_eq!(job.prologue_arguments.as_deref(), Some("--quiet"));
    assert_eq!(job.epilogue.as_deref(), Some("cleanup.sh"));
    assert_eq!(job.retry_count, Some(1));
    assert_eq!(job.shallow_retry_count, Some(3));
    assert_eq!(other(&job, "PerusalTimeInterval"), Some(&Value::Int(1000)));
    assert_eq!(
        other(&job, "VirtualOrganisation"),
        Some(&Value::Str("atlas".into()))
    );
}

const WMS_JOB_XML: &str = r#"[
JobType = "Normal";
Executable = "wrapper.sh";
InputSandbox = "job.xml";
Arguments = "job.xml";
StdOutput = "std.out";
StdError = "std.err";
OutputSandbox = {"std.out", "std.err", "output.tar.gz"};
MaxWallTime = 7200;
]"#;

#[test]
fn a_single_string_input_sandbox_as_real_files_write_it_reads() {
    let job = job(WMS_JOB_XML);
    assert_eq!(job.input_sandbox, strs(&["job.xml"]));
    assert_eq!(job.max_wall_time, Some(7200));
    assert_eq!(output_archive_candidate(&job.output_sandbox), None);
}

const DIRAC_JOB: &str = r#"JobName = "Simulation_42";
JobGroup = "sim";
Executable = "$DIRACROOT/scripts/dirac-jobexec";
Arguments = "jobDescription.xml -o LogLevel=INFO";
InputSandbox = {"jobDescription.xml", "simulate.py"};
OutputSandbox = {"std.out", "std.err", "Script1_CodeOutput.log"};
StdOutput = "std.out";
StdError = "std.err";
Priority = 1;
Site = "ANY";
CPUTime = 86400;
Platform = "x86_64-el9"
"#;

#[test]
fn a_dirac_job_reads_without_warnings() {
    let (job, warnings) = parse_job(DIRAC_JOB).expect("reads");
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(job.job_name.as_deref(), Some("Simulation_42"));
    assert_eq!(other(&job, "CPUTime"), Some(&Value::Int(86400)));
}

const PARAMETRIC: &str = r#"[
  JobType = "Parametric";
  Executable = "/bin/echo";
  Arguments = "_PARAM_";
  Parameters = 10;
  ParameterStart = 0;
  ParameterStep = 2;
  StdOutput = "out_PARAM_.txt";
  OutputSandbox = {"out_PARAM_.txt"};
]"#;

#[test]
fn a_parametric_job_from_the_glite_guide_passes_check() {
    assert!(check(PARAMETRIC).is_empty(), "{:#?}", check(PARAMETRIC));
    assert_eq!(job(PARAMETRIC).job_type, JobType::Parametric);
}

const COLLECTION: &str = r#"[
  Type = "Collection";
  VirtualOrganisation = "biomed";
  InputSandbox = {"common.sh"};
  Nodes = {
    [ File = "/home/user/jobs/job1.jdl"; ],
    [
      Executable = "/bin/ls";
      StdOutput = "ls.out";
      OutputSandbox = {"ls.out"};
    ],
    "/home/user/jobs/job3.jdl"
  };
]"#;

#[test]
fn a_collection_with_file_and_inline_nodes_passes_check() {
    assert!(check(COLLECTION).is_empty(), "{:#?}", check(COLLECTION));
    assert_eq!(job(COLLECTION).job_type, JobType::Collection);
}

#[test]
fn real_world_files_survive_formatting_unchanged_in_meaning() {
    for src in [
        GLITE_HOSTNAME,
        GLITE_ANALYSIS,
        WMS_JOB_XML,
        DIRAC_JOB,
        PARAMETRIC,
        COLLECTION,
    ] {
        let formatted = format(src).expect("formats");
        assert_eq!(job(&formatted), job(src), "{formatted}");
        assert_eq!(format(&formatted).expect("formats again"), formatted);
    }
}

/// docs/jdl.md shows users examples; each must read as the page says it does.
#[test]
fn every_jdl_example_in_the_user_docs_reads() {
    let docs = include_str!("../../../../docs/jdl.md");
    let blocks: Vec<&str> = docs.split("```").skip(1).step_by(2).collect();
    let mut read = 0;
    for block in blocks {
        let block = block.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        if block.trim_start().starts_with("drover ") || block.trim_start().starts_with("job.jdl:") {
            continue;
        }
        if let Err(diagnostics) = parse_job(block) {
            panic!("a docs example does not read:\n{block}\n{diagnostics:#?}");
        }
        read += 1;
    }
    assert!(read >= 8, "only {read} examples found");
    let wild = docs
        .split("```")
        .find(|b| b.contains("Analysis job submitted"))
        .expect("the example from the wild");
    let (_, warnings) = parse_job(wild).expect("reads");
    assert_eq!(
        warnings.len(),
        2,
        "the docs promise two warnings: {warnings:#?}"
    );
    let seed = "Prologue = {setup.sh}\nInputSandbox = {data.csv, analyse.py}\n\
                OutputSandbox = {result.tar.gz}\nArguments = --rows 1000 data.csv\n\
                Executable = analyse.py\n";
    let formatted = format(seed).expect("formats");
    assert!(
        docs.contains(&formatted),
        "docs show a different format of the seed:\n{formatted}"
    );
}
