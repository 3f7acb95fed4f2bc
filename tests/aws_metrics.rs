//! The AWS calls on `/metrics`: every request the controller sends through the
//! SDK is counted once per attempt by service, operation and outcome, in one
//! place (the SDK interceptor of `src/aws.rs`; the blobs' S3 requests, which
//! go through object_store, by its HTTP connector), and a throttled answer is
//! told apart from other errors.

#![cfg(feature = "aws")]

mod common;

use common::{
    aws::{self, metrics_text, Settings},
    fault_proxy::{FaultProxy, Match},
    moto::Moto,
    wait_for, TestDir,
};
use std::time::Duration;

/// The sum of the samples of `name` that carry every label of `labels`.
fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

const JOB: &str = "[ Executable = \"/bin/true\"; ]\n";

#[test]
fn aws_calls_are_counted_by_service_operation_and_outcome_and_throttling_is_its_own_outcome() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url);
    let dir = TestDir::new();
    let mut s = Settings::new("metered", &moto);
    // The controller's clients go through the proxy; no instance is needed.
    s.endpoint_url = proxy.url.clone();
    s.max_workers = 0;
    let config = s.write(&dir);
    aws::init(&dir, &moto, &config);
    let ctl = aws::start_controller(&dir, &config, &moto);

    // The loops read DynamoDB and list EC2 instances on every tick.
    wait_for(
        Duration::from_secs(20),
        "successful DynamoDB and EC2 calls on /metrics",
        || {
            let m = metrics_text(&ctl);
            let scans = sum(
                &m,
                "drover_aws_calls_total",
                &["service=\"dynamodb\"", "outcome=\"ok\""],
            );
            let lists = sum(
                &m,
                "drover_aws_calls_total",
                &[
                    "service=\"ec2\"",
                    "operation=\"DescribeInstances\"",
                    "outcome=\"ok\"",
                ],
            );
            (scans > 0.0 && lists > 0.0).then_some(())
        },
    );
    let m = metrics_text(&ctl);
    assert!(
        sum(
            &m,
            "drover_aws_call_duration_seconds_count",
            &["service=\"dynamodb\""]
        ) > 0.0,
        "{m}"
    );
    assert_eq!(
        sum(&m, "drover_aws_calls_total", &["outcome=\"throttled\""]),
        0.0,
        "nothing was throttled yet: {m}"
    );

    // Throttling, in each service's own wire format: exactly the refused
    // requests are counted as throttled, each under its service.
    for (what, service, n) in [
        (Match::AnyDynamoDb, "dynamodb", 3),
        (Match::AnyEc2, "ec2", 2),
    ] {
        proxy.refuse_next(n, what.clone());
        wait_for(
            Duration::from_secs(20),
            &format!("the proxy to refuse {n} {service} requests"),
            || (proxy.count(&what).1 >= n).then_some(()),
        );
        let counted = wait_for(
            Duration::from_secs(10),
            &format!("{n} throttled {service} calls on /metrics"),
            || {
                let m = metrics_text(&ctl);
                let t = sum(
                    &m,
                    "drover_aws_calls_total",
                    &[&format!("service=\"{service}\""), "outcome=\"throttled\""],
                );
                (t >= n as f64).then_some(t)
            },
        );
        assert_eq!(counted, n as f64, "throttled {service} calls");
    }
    // The job blobs go through object_store, not the SDK: counted all the
    // same. A submit checks the input's size and writes the JDL through the
    // controller; two of those requests are refused with S3's SlowDown.
    proxy.refuse_next(2, Match::AnyS3);
    let id = ctl.submit(&dir.write("job.jdl", JOB));
    assert!(!id.is_empty());
    assert_eq!(
        proxy.count(&Match::AnyS3).1,
        2,
        "the proxy refused two S3 requests"
    );
    let m = metrics_text(&ctl);
    assert_eq!(
        sum(
            &m,
            "drover_aws_calls_total",
            &["service=\"s3\"", "outcome=\"throttled\""]
        ),
        2.0,
        "{m}"
    );
    assert!(
        sum(
            &m,
            "drover_aws_calls_total",
            &[
                "service=\"s3\"",
                "operation=\"PutObject\"",
                "outcome=\"ok\""
            ]
        ) >= 1.0,
        "{m}"
    );

    // The retries after the refusals went through: the loops still succeed.
    let m = metrics_text(&ctl);
    assert_eq!(
        sum(&m, "drover_aws_calls_total", &["outcome=\"error\""]),
        0.0,
        "a throttled call was counted as a plain error: {m}"
    );

    // With the AWS series in, the output still passes promtool's checks.
    let mut promtool = std::process::Command::new(common::tools::promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting promtool");
    std::io::Write::write_all(&mut promtool.stdin.take().expect("stdin"), m.as_bytes())
        .expect("writing to promtool");
    let out = promtool.wait_with_output().expect("promtool's output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
}
