//! `/metrics` as Prometheus and Grafana see it: the live output of a real
//! controller passes `promtool check metrics`, the alert rules pass their
//! `promtool test rules` unit tests, every dashboard query parses, and every
//! metric name the dashboards and rules use is exported by a fresh controller.

mod common;

use common::{tools::promtool, Controller, TestDir};
use serde_json::Value;
use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn scrape(ctl: &Controller) -> String {
    common::block_on(async {
        let resp = reqwest::get(format!("{}/metrics", ctl.url))
            .await
            .expect("GET /metrics");
        assert_eq!(resp.status(), 200, "GET /metrics");
        resp.text().await.expect("metrics body")
    })
}

/// Runs promtool with `args`, `stdin` piped in; the exit status and what it said.
fn promtool_run(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(repo("grafana"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(stdin.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool's output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

const JOB: &str = r#"[
  Executable = "/bin/sh";
  Arguments = "-c 'echo measured > out.txt'";
  OutputSandbox = {"out.txt"};
]
"#;

/// Fails twice: once, then once more on its one retry.
const FAILS: &str = r#"[
  Executable = "/bin/false";
  RetryCount = 1;
]
"#;

#[test]
fn live_metrics_after_a_job_pass_promtool_check_metrics() {
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let id = ctl.submit(&dir.write("job.jdl", JOB));
    let job = ctl.wait_done(&id, Duration::from_secs(60));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let failing = ctl.submit(&dir.write("fails.jdl", FAILS));
    let job = ctl.wait_done(&failing, Duration::from_secs(60));
    assert_eq!(job["state"], "failed", "{job:#}");

    let text = scrape(&ctl);
    // The jobs moved the series a scrape after them should show: three
    // attempts dispatched, one retry after a failed run.
    for series in [
        "drover_job_transitions_total{from=\"running\",to=\"succeeded\"} 1",
        "drover_job_attempts_total{outcome=\"succeeded\"} 1",
        "drover_job_submit_duration_seconds_count 2",
        "drover_job_dispatch_duration_seconds_count 3",
        "drover_job_run_duration_seconds_count{outcome=\"succeeded\"} 1",
        "drover_job_attempts_total{outcome=\"failed\"} 2",
        "drover_job_retries_total{reason=\"failed\"} 1",
        "drover_job_transitions_total{from=\"running\",to=\"queued\"} 1",
        "drover_instances_launched_total 1",
    ] {
        assert!(
            text.lines().any(|l| l == series),
            "no `{series}` in:\n{text}"
        );
    }
    let (ok, said) = promtool_run(&["check", "metrics"], &text);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics: {said}\non:\n{text}"
    );
}

/// Every `drover_*` name in `text`, without the `_bucket`/`_sum`/`_count` a
/// query adds to a histogram's name (the caller checks what is left).
fn drover_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("drover_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if boundary {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// The names a scrape declares (`# TYPE name type`), with a histogram's series names.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

fn dashboards() -> Vec<(PathBuf, Value)> {
    let mut found: Vec<_> = std::fs::read_dir(repo("grafana/dashboards"))
        .expect("grafana/dashboards")
        .map(|e| e.expect("dashboard entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    found.sort();
    assert!(found.len() >= 3, "expected the three dashboards: {found:?}");
    found
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read a dashboard");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p, json)
        })
        .collect()
}

/// Every PromQL query of a dashboard (`targets[].expr`), with the panel's title.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or("?").to_string();
                out.push((title, expr.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_metric_the_dashboards_and_alerts_use_is_exported_by_a_fresh_controller() {
    let mut used = BTreeSet::new();
    for (_, d) in dashboards() {
        for (_, expr) in queries(&d) {
            used.extend(drover_names(&expr));
        }
    }
    let rules = std::fs::read_to_string(repo("grafana/alerts.yml")).expect("alerts.yml");
    let exprs: String = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    used.extend(drover_names(&exprs));
    assert!(used.len() >= 15, "too few names found: {used:?}");

    // Fresh: nothing has happened yet, so the names must be declared anyway.
    let dir = TestDir::new();
    let ctl = Controller::start(&dir);
    let exported = exported_names(&scrape(&ctl));
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "used by grafana/ but not exported by the controller: {missing:?}"
    );
}

#[test]
fn alert_rules_are_valid_and_pass_their_promtool_unit_tests() {
    let (ok, said) = promtool_run(&["check", "rules", "alerts.yml"], "");
    assert!(ok, "promtool check rules: {said}");
    let (ok, said) = promtool_run(&["test", "rules", "alerts_test.yml"], "");
    assert!(ok, "promtool test rules: {said}");
    // Every alert has a test of its own.
    let rules = std::fs::read_to_string(repo("grafana/alerts.yml")).expect("alerts.yml");
    let tests = std::fs::read_to_string(repo("grafana/alerts_test.yml")).expect("tests");
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "alert {alert} has no test in alerts_test.yml"
        );
    }
}

#[test]
fn dashboard_queries_parse_as_promql() {
    // promtool parses PromQL in rule files: each query becomes a recording rule,
    // with Grafana's variables replaced by values.
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut n = 0;
    for (path, d) in dashboards() {
        for (title, expr) in queries(&d) {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$__interval", "1m")
                .replace("$__range", "6h");
            let record = format!("dashboard_query_{n}");
            n += 1;
            rules.push_str(&format!(
                "      # {}: {}\n      - record: {record}\n        expr: {}\n",
                path.file_name().and_then(|s| s.to_str()).unwrap_or("?"),
                title.replace('\n', " "),
                serde_json::to_string(&expr).expect("a JSON string is a YAML string")
            ));
        }
    }
    assert!(n >= 30, "too few dashboard queries: {n}");
    let dir = TestDir::new();
    let file = dir.write("dashboard_queries.yml", &rules);
    let (ok, said) = promtool_run(&["check", "rules", file.to_str().expect("path")], "");
    assert!(ok, "a dashboard query does not parse: {said}\n{rules}");
}

#[test]
fn dashboards_are_in_provisioning_form_with_the_datasource_as_a_variable() {
    let mut uids = BTreeSet::new();
    for (path, d) in dashboards() {
        let name = path.display();
        let uid = d["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no uid"));
        assert!(uids.insert(uid.to_string()), "{name}: uid {uid} used twice");
        assert!(d["title"].as_str().is_some(), "{name}: no title");
        // Provisioned dashboards carry no numeric id (Grafana assigns one).
        assert!(d.get("id").is_none_or(Value::is_null), "{name}: has an id");
        let vars = d["templating"]["list"].as_array().expect("templating");
        assert!(
            vars.iter().any(|v| v["type"] == "datasource"
                && v["name"] == "datasource"
                && v["query"] == "prometheus"),
            "{name}: no `datasource` variable of type prometheus"
        );
        for panel in d["panels"].as_array().expect("panels") {
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}: panel {} does not use the datasource variable",
                panel["title"]
            );
        }
    }
    let provider = std::fs::read_to_string(repo("grafana/provisioning/dashboards/drover.yml"))
        .expect("dashboard provider");
    assert!(provider.contains("type: file"), "{provider}");
    let datasource =
        std::fs::read_to_string(repo("grafana/provisioning/datasources/prometheus.yml"))
            .expect("datasource");
    assert!(datasource.contains("type: prometheus"), "{datasource}");
}
