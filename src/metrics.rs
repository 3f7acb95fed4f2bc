//! The controller's Prometheus metrics, in one registry, exported on `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::{sync::LazyLock, time::Duration};

pub struct Metrics {
    pub registry: Registry,
    pub jobs: IntGaugeVec,
    pub job_transitions: IntCounterVec,
    pub workers: IntGaugeVec,
    pub heartbeats: IntCounter,
    pub lost_workers: IntCounter,
    pub instances_launched: IntCounter,
    pub instances_terminated: IntCounterVec,
    pub reconcile_runs: IntCounterVec,
    pub reconcile_seconds: HistogramVec,
    pub messages: IntCounterVec,
    pub stale_reports: IntCounter,
}

fn build() -> prometheus::Result<Metrics> {
    let registry = Registry::new();
    let m = Metrics {
        jobs: IntGaugeVec::new(Opts::new("drover_jobs", "Jobs by state"), &["state"])?,
        job_transitions: IntCounterVec::new(
            Opts::new("drover_job_transitions_total", "Job state changes written"),
            &["from", "to"],
        )?,
        workers: IntGaugeVec::new(Opts::new("drover_workers", "Workers by state"), &["state"])?,
        heartbeats: IntCounter::new("drover_heartbeats_received_total", "Worker pings received")?,
        lost_workers: IntCounter::new("drover_workers_lost_total", "Workers declared lost")?,
        instances_launched: IntCounter::new(
            "drover_instances_launched_total",
            "Instances launched",
        )?,
        instances_terminated: IntCounterVec::new(
            Opts::new(
                "drover_instances_terminated_total",
                "Instances terminated, by reason",
            ),
            &["reason"],
        )?,
        reconcile_runs: IntCounterVec::new(
            Opts::new(
                "drover_reconcile_runs_total",
                "Reconcile ticks by reconciler and result",
            ),
            &["reconciler", "result"],
        )?,
        reconcile_seconds: HistogramVec::new(
            HistogramOpts::new(
                "drover_reconcile_duration_seconds",
                "Reconcile tick duration",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["reconciler"],
        )?,
        messages: IntCounterVec::new(
            Opts::new(
                "drover_messages_received_total",
                "Messages received, by kind",
            ),
            &["kind"],
        )?,
        stale_reports: IntCounter::new(
            "drover_stale_reports_total",
            "Worker reports refused because their attempt is no longer current",
        )?,
        registry,
    };
    m.registry.register(Box::new(m.jobs.clone()))?;
    m.registry.register(Box::new(m.job_transitions.clone()))?;
    m.registry.register(Box::new(m.workers.clone()))?;
    m.registry.register(Box::new(m.heartbeats.clone()))?;
    m.registry.register(Box::new(m.lost_workers.clone()))?;
    m.registry
        .register(Box::new(m.instances_launched.clone()))?;
    m.registry
        .register(Box::new(m.instances_terminated.clone()))?;
    m.registry.register(Box::new(m.reconcile_runs.clone()))?;
    m.registry.register(Box::new(m.reconcile_seconds.clone()))?;
    m.registry.register(Box::new(m.messages.clone()))?;
    m.registry.register(Box::new(m.stale_reports.clone()))?;
    Ok(m)
}

/// Built once; the names and labels are constants, so building cannot fail at run time
/// unless the code itself is wrong (a test below builds it).
pub static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| build().expect("metric definitions are valid"));

pub fn reconcile_done(reconciler: &str, result: &str, took: Duration) {
    METRICS
        .reconcile_runs
        .with_label_values(&[reconciler, result])
        .inc();
    METRICS
        .reconcile_seconds
        .with_label_values(&[reconciler])
        .observe(took.as_secs_f64());
}

/// The Prometheus text format.
pub fn render() -> String {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&METRICS.registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_definitions_are_valid_and_render() {
        super::build().expect("valid metrics");
        super::reconcile_done("jobs", "ok", std::time::Duration::from_millis(3));
        assert!(super::render()
            .contains("drover_reconcile_runs_total{reconciler=\"jobs\",result=\"ok\"} "));
    }
}
