//! drover on AWS, end to end, against moto: the controller keeps its state in
//! DynamoDB, its blobs in S3, launches EC2 instances (a fleet simulator runs one
//! real `drover worker` per instance moto shows running) and publishes its hints
//! through SNS. Everything is created by `drover init`.

#![cfg(feature = "aws")]

mod common;

use common::{
    aws::{self, drover_aws, Settings},
    fleet_sim::FleetSim,
    moto::Moto,
    wait_for, Controller, TestDir,
};
use std::time::Duration;

const CLUSTER: &str = "e2e";

#[test]
fn twenty_jobs_run_on_ec2_workers_with_dynamodb_s3_and_sns_and_the_fleet_scales_back_to_zero() {
    let moto = Moto::start();
    let dir = TestDir::new();
    let settings = Settings::new(CLUSTER, &moto);
    let port = settings.port;
    let config = settings.write(&dir);
    let config = config.to_str().expect("utf-8 path");

    let check = drover_aws(&dir, &moto, &["config", "check", "--config", config]);
    assert!(
        check.status.success(),
        "config check: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    for round in 0..2 {
        let init = drover_aws(&dir, &moto, &["init", "--config", config]);
        assert!(
            init.status.success(),
            "init (round {round}) failed:\n{}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
    }

    let controller = Controller::start_with_env(
        &dir,
        "data",
        &["--config", config, "--listen", &format!("127.0.0.1:{port}")],
        &moto.env(),
    );
    let sim = FleetSim::in_test_dir(&moto.url, CLUSTER, &dir);

    let jdl = dir.write(
        "echo.jdl",
        "[\n  Executable = \"/bin/sh\";\n  Arguments = \"-c 'echo job $DROVER_JOB_ID > out.txt'\";\n  OutputSandbox = {\"out.txt\"};\n]\n",
    );
    let ids: Vec<String> = (0..20).map(|_| controller.submit(&jdl)).collect();
    for id in &ids {
        let job = controller.wait_done(id, Duration::from_secs(120));
        assert_eq!(
            job["state"],
            "succeeded",
            "{job:#}\ncontroller log:\n{}",
            controller.log_tail()
        );
        let out = dir.join(format!("out-{id}"));
        controller
            .drover(["fetch", id, "--out", out.to_str().expect("utf-8")])
            .expect_ok("fetch");
        assert_eq!(common::read(&out.join("out.txt")), format!("job {id}\n"));
    }

    let launched = controller.metric("drover_instances_launched_total");
    assert!(
        (1.0..=3.0).contains(&launched),
        "launched {launched} instances, max_workers is 3"
    );
    assert!(sim.instance_ids().len() <= 3);

    // Idle for 2 s above min_workers = 0: every instance is terminated.
    wait_for(
        Duration::from_secs(60),
        "the fleet to scale back to zero",
        || (aws::running_instances(&moto, CLUSTER) == 0).then_some(()),
    );
    let idle = controller.metric("drover_instances_terminated_total{reason=\"idle\"}");
    assert_eq!(
        idle, launched,
        "every launched instance ends idle and terminated"
    );
}

#[test]
fn the_frontend_uploads_straight_to_s3_through_a_presigned_url_and_the_limit_still_holds() {
    let moto = Moto::start();
    let dir = TestDir::new();
    let url = &moto.url;
    let config = dir.write(
        "drover.toml",
        &format!(
            "blobs = \"s3://drover-presign/in\"\n[aws]\nendpoint_url = \"{url}\"\n[limits]\nmax_input_bytes = 4000\n"
        ),
    );
    let config = config.to_str().expect("utf-8 path");
    let init = drover_aws(&dir, &moto, &["init", "--config", config]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let controller = Controller::start_with_env(&dir, "data", &["--config", config], &moto.env());

    // The CLI takes the presigned way and the job runs.
    let jdl = dir.write(
        "hi.jdl",
        "Executable = /bin/echo\nArguments = hi\nStdOutput = o.txt\nOutputSandbox = {o.txt}\n",
    );
    let id = controller.submit(&jdl);
    let job = controller.wait_done(&id, Duration::from_secs(60));
    assert_eq!(job["state"], "succeeded", "{job:#}");

    // The URL points at the bucket, not at the controller.
    let (status, body) = common::http(&controller.url, "POST", "/v1/jobs", None);
    assert_eq!(status, 201);
    let id = body["id"].as_str().expect("id").to_string();
    let (status, body) = common::http(
        &controller.url,
        "POST",
        &format!("/v1/jobs/{id}/input-url"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let put_url = body["url"].as_str().expect("url").to_string();
    assert!(
        put_url.starts_with(&format!("{url}/drover-presign/in/jobs/{id}/input.tar.gz?")),
        "{put_url}"
    );
    // An archive over the limit goes up (S3 cannot know the limit) but is refused at submit.
    let status = common::block_on(async {
        reqwest::Client::new()
            .put(&put_url)
            .body(vec![0u8; 5000])
            .send()
            .await
            .expect("PUT")
            .status()
    });
    assert!(status.is_success(), "presigned PUT: {status}");
    let (status, body) = common::http(
        &controller.url,
        "POST",
        &format!("/v1/jobs/{id}/submit"),
        Some(serde_json::json!({"jdl": "Executable = /bin/true\n"})),
    );
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("5000 bytes, over the limit of 4000"),
        "{body}"
    );
    assert_eq!(
        controller.job(&id)["state"],
        "created",
        "nothing was submitted"
    );
}
