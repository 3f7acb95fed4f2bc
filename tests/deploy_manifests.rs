//! The deployment files of manifests/ stay valid and agree with each other:
//! the CloudFormation template passes cfn-lint, the stand-alone IAM policies
//! are the template's, the controller's systemd unit is the one the template
//! installs (and systemd accepts it), the Prometheus example loads the alert
//! rules, and every example job is run by a test.
//!
//! What needs the AWS SDK (the tables against `drover init`, the worker
//! user-data against the fleet's) is in tests/aws_manifests.rs.

mod common;

use common::{tools, TestDir};
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn json(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_cloudformation_template_passes_cfn_lint() {
    let (ok, said) = output(
        Command::new(tools::cfn_lint())
            .arg("drover.cfn.json")
            .current_dir(repo("manifests/aws")),
    );
    assert!(ok && said.trim().is_empty(), "cfn-lint:\n{said}");
}

/// The template's value with its `Fn::Sub` strings written with the
/// placeholders of the stand-alone policy files.
fn with_placeholders(v: &Value) -> Value {
    const PLACEHOLDERS: &[(&str, &str)] = &[
        ("${AWS::Partition}", "aws"),
        ("${AWS::Region}", "REGION"),
        ("${AWS::AccountId}", "ACCOUNT_ID"),
        ("${TablePrefix}", "TABLE_PREFIX"),
        ("${BlobsBucket}", "BUCKET"),
        ("${BlobsPrefix}", "BLOBS_PREFIX"),
        ("${ClusterName}", "CLUSTER"),
        ("${WorkerRole}", "WORKER_ROLE"),
        ("${HintsTopic}", "TOPIC_ARN"),
    ];
    match v {
        Value::Object(map) if map.len() == 1 && map.contains_key("Fn::Sub") => {
            let mut s = map["Fn::Sub"]
                .as_str()
                .expect("Fn::Sub of a string")
                .to_string();
            for (var, placeholder) in PLACEHOLDERS {
                s = s.replace(var, placeholder);
            }
            assert!(!s.contains("${"), "a variable with no placeholder: {s}");
            Value::String(s)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), with_placeholders(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(with_placeholders).collect()),
        other => other.clone(),
    }
}

#[test]
fn the_iam_policy_files_are_the_templates_policies() {
    let template = json("manifests/aws/drover.cfn.json");
    for (role, file) in [
        ("ControllerRole", "manifests/aws/iam/controller-policy.json"),
        ("WorkerRole", "manifests/aws/iam/worker-policy.json"),
    ] {
        let policies = &template["Resources"][role]["Properties"]["Policies"];
        assert_eq!(policies.as_array().map(Vec::len), Some(1), "{role}");
        assert_eq!(
            with_placeholders(&policies[0]["PolicyDocument"]),
            json(file),
            "{file} differs from the policy of {role} in drover.cfn.json"
        );
    }
    // Least privilege: nothing but DescribeInstances (which has no resource-level
    // permissions) is allowed on every resource.
    let controller = json("manifests/aws/iam/controller-policy.json");
    for s in controller["Statement"].as_array().expect("statements") {
        if s["Resource"] == "*" {
            assert_eq!(s["Action"], "ec2:DescribeInstances", "{s:#}");
        }
        let actions = match &s["Action"] {
            Value::Array(a) => a.clone(),
            one => vec![one.clone()],
        };
        assert!(
            actions
                .iter()
                .all(|a| a.as_str().is_some_and(|a| !a.ends_with(":*"))),
            "a wildcard action is allowed: {s:#}"
        );
    }
    // Instances and volumes are launched, and terminated, only with the cluster's tag.
    let text = read("manifests/aws/iam/controller-policy.json");
    assert!(text.contains("aws:RequestTag/drover:cluster"), "{text}");
    assert!(text.contains("ec2:ResourceTag/drover:cluster"), "{text}");
}

/// The text between `cat > PATH <<'MARK'` and `MARK` in a shell script.
fn heredoc(script: &str, path: &str) -> String {
    let start = format!("cat > {path} <<'");
    let at = script
        .find(&start)
        .unwrap_or_else(|| panic!("no heredoc for {path}"));
    let rest = &script[at + start.len()..];
    let mark_end = rest.find('\'').expect("heredoc mark");
    let mark = &rest[..mark_end];
    let body = &rest[rest.find('\n').expect("heredoc body") + 1..];
    let end = body.find(&format!("\n{mark}\n")).expect("heredoc end");
    format!("{}\n", &body[..end])
}

fn controller_user_data() -> String {
    let template = json("manifests/aws/drover.cfn.json");
    template["Resources"]["Controller"]["Properties"]["UserData"]["Fn::Base64"]["Fn::Sub"]
        .as_str()
        .expect("the controller's user-data")
        .to_string()
}

#[test]
fn the_controller_unit_restarts_for_ever_and_is_the_one_the_template_installs() {
    let unit = read("manifests/aws/drover-controller.service");
    assert_eq!(
        heredoc(
            &controller_user_data(),
            "/etc/systemd/system/drover-controller.service"
        ),
        unit,
        "drover.cfn.json installs another unit than manifests/aws/drover-controller.service"
    );
    for line in [
        "Restart=always",
        "StartLimitIntervalSec=0",
        "ExecStart=/usr/local/bin/drover controller --config /etc/drover/drover.toml",
        "StateDirectory=drover",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "no `{line}` in the unit");
    }
    // systemd's own check, with the binary this test built in place of the
    // image's (`verify` wants the executable to exist).
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        eprintln!("systemd-analyze is not installed: the unit was checked by reading only");
        return;
    };
    let dir = TestDir::new();
    let copy = dir.write(
        "drover-controller.service",
        &unit.replace("/usr/local/bin/drover", common::drover_bin()),
    );
    let (ok, said) = output(Command::new(analyze).arg("verify").arg(&copy));
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}

#[test]
fn the_prometheus_example_is_valid_and_loads_the_alert_rules() {
    let (ok, said) = output(
        Command::new(tools::promtool())
            .args(["check", "config", "prometheus.yml"])
            .current_dir(repo("manifests")),
    );
    assert!(ok, "promtool check config:\n{said}");
    assert!(said.contains("SUCCESS: 1 rule files found"), "{said}");
    assert!(said.contains("alerts.yml"), "{said}");
}

#[test]
fn every_example_job_is_run_by_a_test() {
    let tests = read("tests/run_manifests.rs");
    let root = repo("manifests/jobs");
    let mut jdls = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("manifests/jobs") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "jdl") {
                jdls.push(path);
            }
        }
    }
    assert!(jdls.len() >= 5, "example jobs: {jdls:?}");
    for jdl in jdls {
        let rel = jdl
            .strip_prefix(&root)
            .expect("under manifests/jobs")
            .to_str()
            .expect("utf-8");
        assert!(
            tests.contains(&format!("run_manifest(&dir, \"{rel}\")")),
            "manifests/jobs/{rel} is run by no test in tests/run_manifests.rs"
        );
    }
}
