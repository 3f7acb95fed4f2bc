//! The controller's Prometheus metrics, in one registry, exported on `/metrics`.
//!
//! Call sites stay one line: they call the functions at the bottom of this file
//! (`job_written`, `jobs_observed`, `instances_observed`, `message_received`,
//! `aws_call`, ...), which know which series a fact moves. docs/operations.md
//! lists every metric; tests/metrics.rs checks the live output with promtool and
//! that every name the dashboards and alert rules use is exported.

use prometheus::{
    core::Collector, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use reconcilers::{
    dispatch::JobCounts,
    messages::Message,
    model::{AttemptOutcome, Instance, InstanceState, Job, JobState, TerminateReason, Timestamp},
};
use std::{
    sync::{LazyLock, Mutex},
    time::Duration,
};

pub struct Metrics {
    pub registry: Registry,
    pub build_info: IntGaugeVec,
    pub jobs: IntGaugeVec,
    pub jobs_oldest: IntGaugeVec,
    pub job_transitions: IntCounterVec,
    pub attempts: IntCounterVec,
    pub retries: IntCounterVec,
    pub submit_seconds: HistogramVec,
    pub dispatch_seconds: HistogramVec,
    pub run_seconds: HistogramVec,
    pub workers: IntGaugeVec,
    pub heartbeats: IntCounter,
    pub lost_workers: IntCounter,
    pub instances: IntGaugeVec,
    pub instance_seconds: IntCounter,
    pub instances_launched: IntCounter,
    pub instances_terminated: IntCounterVec,
    pub reconcile_runs: IntCounterVec,
    pub reconcile_seconds: HistogramVec,
    pub reconcile_last_success: IntGaugeVec,
    pub messages: IntCounterVec,
    pub hints: IntCounterVec,
    pub stale_reports: IntCounter,
    pub aws_calls: IntCounterVec,
    pub aws_call_seconds: HistogramVec,
    pub leader: IntGauge,
    pub auth_refusals: IntCounterVec,
}

/// The loops `runtime::spawn_loops` starts, so their series exist from the start.
const RECONCILERS: [&str; 4] = ["jobs", "fleet", "heartbeats", "gc"];
/// The states `drover_jobs` and `drover_jobs_oldest_age_seconds` report: the
/// ones a job waits in (terminal states only grow, `job_transitions` counts them).
const ACTIVE_STATES: [JobState; 4] = [
    JobState::Created,
    JobState::Queued,
    JobState::Assigned,
    JobState::Running,
];
/// Outcomes of an attempt that lead to a retry when retries remain.
const RETRY_REASONS: [AttemptOutcome; 3] = [
    AttemptOutcome::Failed,
    AttemptOutcome::FailedBeforeRun,
    AttemptOutcome::WorkerLost,
];
const TERMINATE_REASONS: [TerminateReason; 5] = [
    TerminateReason::Idle,
    TerminateReason::Lost,
    TerminateReason::NeverRegistered,
    TerminateReason::Leaked,
    TerminateReason::Shutdown,
];
/// The message kinds that are hints (a loop should run now); the others
/// (ping, started, finished) are workers' reports.
const HINT_KINDS: [&str; 4] = ["job_submitted", "cancel", "worker_lost", "assignment"];
const KNOWN_KINDS: [&str; 7] = [
    "ping",
    "started",
    "finished",
    "job_submitted",
    "cancel",
    "worker_lost",
    "assignment",
];

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    IntGaugeVec::new(Opts::new(name, help), labels)
}

fn histogram_vec(
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> prometheus::Result<HistogramVec> {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
}

/// Seconds, from a millisecond to a day: waits and run times of batch jobs.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
];
const RUN_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
    86400.0,
];
const TICK_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const AWS_CALL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn build() -> prometheus::Result<Metrics> {
    let m = Metrics {
        registry: Registry::new(),
        build_info: gauge_vec(
            "drover_build_info",
            "Always 1; the drover version as a label",
            &["version"],
        )?,
        jobs: gauge_vec("drover_jobs", "Jobs not finished yet, by state", &["state"])?,
        jobs_oldest: gauge_vec(
            "drover_jobs_oldest_age_seconds",
            "How long the oldest job in each unfinished state has been in it (0 when none)",
            &["state"],
        )?,
        job_transitions: counter_vec(
            "drover_job_transitions_total",
            "Job state changes written",
            &["from", "to"],
        )?,
        attempts: counter_vec(
            "drover_job_attempts_total",
            "Attempts that ended, by outcome",
            &["outcome"],
        )?,
        retries: counter_vec(
            "drover_job_retries_total",
            "Jobs requeued for another attempt, by the outcome of the one that ended",
            &["reason"],
        )?,
        submit_seconds: histogram_vec(
            "drover_job_submit_duration_seconds",
            "From the job id's allocation to the job queued (input upload and submit)",
            &[],
            LATENCY_BUCKETS,
        )?,
        dispatch_seconds: histogram_vec(
            "drover_job_dispatch_duration_seconds",
            "From the job queued to an attempt assigned to a worker",
            &[],
            LATENCY_BUCKETS,
        )?,
        run_seconds: histogram_vec(
            "drover_job_run_duration_seconds",
            "From an attempt started on its worker to its end, by outcome",
            &["outcome"],
            RUN_BUCKETS,
        )?,
        workers: gauge_vec("drover_workers", "Workers by state", &["state"])?,
        heartbeats: IntCounter::new("drover_heartbeats_received_total", "Worker pings received")?,
        lost_workers: IntCounter::new("drover_workers_lost_total", "Workers declared lost")?,
        instances: gauge_vec(
            "drover_instances",
            "Worker instances the controller has recorded, by state",
            &["state"],
        )?,
        instance_seconds: IntCounter::new(
            "drover_instance_seconds_total",
            "Seconds of instance time (launching or running instances), the cost proxy",
        )?,
        instances_launched: IntCounter::new(
            "drover_instances_launched_total",
            "Instances launched (scale-ups)",
        )?,
        instances_terminated: counter_vec(
            "drover_instances_terminated_total",
            "Instances terminated, by reason",
            &["reason"],
        )?,
        reconcile_runs: counter_vec(
            "drover_reconcile_runs_total",
            "Reconcile ticks by reconciler and result",
            &["reconciler", "result"],
        )?,
        reconcile_seconds: histogram_vec(
            "drover_reconcile_duration_seconds",
            "Reconcile tick duration",
            &["reconciler"],
            TICK_BUCKETS,
        )?,
        reconcile_last_success: gauge_vec(
            "drover_reconcile_last_success_timestamp_seconds",
            "Unix time of each reconciler's last successful tick (0 before the first)",
            &["reconciler"],
        )?,
        messages: counter_vec(
            "drover_messages_received_total",
            "Messages received (worker reports and hints), by kind",
            &["kind"],
        )?,
        hints: counter_vec(
            "drover_hints_received_total",
            "Hints received, by transport (http, sns) and kind",
            &["source", "kind"],
        )?,
        stale_reports: IntCounter::new(
            "drover_stale_reports_total",
            "Worker reports refused because their attempt is no longer current",
        )?,
        aws_calls: counter_vec(
            "drover_aws_calls_total",
            "AWS API requests sent (retries included), by service, operation and outcome (ok, throttled, server_error, transient_error, error)",
            &["service", "operation", "outcome"],
        )?,
        aws_call_seconds: histogram_vec(
            "drover_aws_call_duration_seconds",
            "AWS API request duration (one attempt), by service",
            &["service"],
            AWS_CALL_BUCKETS,
        )?,
        leader: IntGauge::new(
            "drover_leader",
            "1 while this controller holds the leader lease (runs the reconcilers), else 0",
        )?,
        auth_refusals: counter_vec(
            "drover_api_auth_refusals_total",
            "API requests refused at the door, by reason (no_token, unknown_token, wrong_role)",
            &["reason"],
        )?,
    };
    for c in collectors(&m) {
        m.registry.register(c)?;
    }
    initialise(&m);
    Ok(m)
}

/// Every collector defined here. `render` also uses the list to declare (HELP
/// and TYPE) the ones with no sample yet: the registry leaves those out, and a
/// dashboard or an alert rule must still find their names on a fresh controller.
fn collectors(m: &Metrics) -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(m.build_info.clone()),
        Box::new(m.jobs.clone()),
        Box::new(m.jobs_oldest.clone()),
        Box::new(m.job_transitions.clone()),
        Box::new(m.attempts.clone()),
        Box::new(m.retries.clone()),
        Box::new(m.submit_seconds.clone()),
        Box::new(m.dispatch_seconds.clone()),
        Box::new(m.run_seconds.clone()),
        Box::new(m.workers.clone()),
        Box::new(m.heartbeats.clone()),
        Box::new(m.lost_workers.clone()),
        Box::new(m.instances.clone()),
        Box::new(m.instance_seconds.clone()),
        Box::new(m.instances_launched.clone()),
        Box::new(m.instances_terminated.clone()),
        Box::new(m.reconcile_runs.clone()),
        Box::new(m.reconcile_seconds.clone()),
        Box::new(m.reconcile_last_success.clone()),
        Box::new(m.messages.clone()),
        Box::new(m.hints.clone()),
        Box::new(m.stale_reports.clone()),
        Box::new(m.aws_calls.clone()),
        Box::new(m.aws_call_seconds.clone()),
        Box::new(m.leader.clone()),
        Box::new(m.auth_refusals.clone()),
    ]
}

/// Creates the series a dashboard or an alert compares against, at 0: a rate
/// of errors that is 0 is an answer, one that is absent is a gap.
fn initialise(m: &Metrics) {
    for reason in AUTH_REFUSAL_REASONS {
        m.auth_refusals.with_label_values(&[reason]).inc_by(0);
    }
    m.build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    for state in ACTIVE_STATES {
        m.jobs.with_label_values(&[state.as_str()]);
        m.jobs_oldest.with_label_values(&[state.as_str()]);
    }
    for (from, to) in [
        (JobState::Created, JobState::Queued),
        (JobState::Queued, JobState::Assigned),
        (JobState::Assigned, JobState::Running),
        (JobState::Running, JobState::Succeeded),
        (JobState::Running, JobState::Failed),
        (JobState::Queued, JobState::Cancelled),
    ] {
        m.job_transitions
            .with_label_values(&[from.as_str(), to.as_str()]);
    }
    for outcome in [
        AttemptOutcome::Succeeded,
        AttemptOutcome::Failed,
        AttemptOutcome::FailedBeforeRun,
        AttemptOutcome::WorkerLost,
        AttemptOutcome::Cancelled,
    ] {
        m.attempts.with_label_values(&[outcome.as_str()]);
    }
    for reason in RETRY_REASONS {
        m.retries.with_label_values(&[reason.as_str()]);
    }
    m.submit_seconds.with_label_values(&[] as &[&str]);
    m.dispatch_seconds.with_label_values(&[] as &[&str]);
    for outcome in [AttemptOutcome::Succeeded, AttemptOutcome::Failed] {
        m.run_seconds.with_label_values(&[outcome.as_str()]);
    }
    for state in ["active", "lost"] {
        m.workers.with_label_values(&[state]);
    }
    for state in [
        InstanceState::Launching,
        InstanceState::Running,
        InstanceState::Terminating,
    ] {
        m.instances.with_label_values(&[state.as_str()]);
    }
    for reason in TERMINATE_REASONS {
        m.instances_terminated.with_label_values(&[reason.as_str()]);
    }
    for reconciler in RECONCILERS {
        for result in ["ok", "error"] {
            m.reconcile_runs.with_label_values(&[reconciler, result]);
        }
        m.reconcile_seconds.with_label_values(&[reconciler]);
        m.reconcile_last_success.with_label_values(&[reconciler]);
    }
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
    if result == "ok" {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        METRICS
            .reconcile_last_success
            .with_label_values(&[reconciler])
            .set(now);
    }
}

fn seconds_between(later: Timestamp, earlier: Timestamp) -> f64 {
    later.since(earlier) as f64 / 1000.0
}

/// After every job write (`Controller::job_written`): transitions, attempts,
/// retries and the latency histograms, all read from the two versions.
pub fn job_written(before: &Job, after: &Job) {
    let m = &*METRICS;
    if before.state != after.state {
        m.job_transitions
            .with_label_values(&[before.state.as_str(), after.state.as_str()])
            .inc();
    }
    // Attempts that ended in this write: an outcome that was not there before.
    for (i, attempt) in after.attempts.iter().enumerate() {
        let Some(outcome) = attempt.outcome else {
            continue;
        };
        let had = before.attempts.get(i).and_then(|a| a.outcome).is_some();
        if had {
            continue;
        }
        m.attempts.with_label_values(&[outcome.as_str()]).inc();
        if let (Some(started), Some(finished)) = (attempt.started_at, attempt.finished_at) {
            m.run_seconds
                .with_label_values(&[outcome.as_str()])
                .observe(seconds_between(finished, started));
        }
        if after.state == JobState::Queued && RETRY_REASONS.contains(&outcome) {
            m.retries.with_label_values(&[outcome.as_str()]).inc();
        }
    }
    match (before.state, after.state) {
        (JobState::Created, JobState::Queued) => {
            if let Some(queued) = after.queued_at {
                m.submit_seconds
                    .with_label_values(&[] as &[&str])
                    .observe(seconds_between(queued, after.created_at));
            }
        }
        (JobState::Queued, JobState::Assigned) => {
            if let (Some(queued), Some(a)) = (before.queued_at, after.current_attempt()) {
                m.dispatch_seconds
                    .with_label_values(&[] as &[&str])
                    .observe(seconds_between(a.assigned_at, queued));
            }
        }
        _ => {}
    }
}

/// After the jobs loop read the unfinished jobs and the workers: the gauges.
pub fn jobs_observed(counts: &JobCounts, workers: &[reconcilers::model::Worker], now: Timestamp) {
    observe_jobs(&METRICS, counts, workers, now)
}

fn observe_jobs(
    m: &Metrics,
    counts: &JobCounts,
    workers: &[reconcilers::model::Worker],
    now: Timestamp,
) {
    // Counted by the store's read (`Store::dispatch_view`), not over every job here.
    for state in ACTIVE_STATES {
        let count = counts.get(state);
        let oldest_ms = count.oldest.map_or(0, |since| now.since(since));
        m.jobs
            .with_label_values(&[state.as_str()])
            .set(count.jobs as i64);
        m.jobs_oldest
            .with_label_values(&[state.as_str()])
            .set((oldest_ms / 1000) as i64);
    }
    for state in [
        reconcilers::model::WorkerState::Active,
        reconcilers::model::WorkerState::Lost,
    ] {
        let n = workers.iter().filter(|w| w.state == state).count() as i64;
        m.workers.with_label_values(&[state.as_str()]).set(n);
    }
}

/// Instance time counted so far: the time up to which it was counted. Only the
/// leader counts (its fleet loop reads the instance records), so the count is
/// forgotten when leadership ends: a controller that leads again later counts
/// from then, not the time it followed, which the other leader counted.
#[derive(Default)]
struct InstanceClock {
    counted_to: Option<Timestamp>,
}

impl InstanceClock {
    /// The instance-seconds of `billed` instances since the last count, in whole
    /// seconds (the remainder waits for the next count); 0 on the first count.
    fn count(&mut self, billed: u64, now: Timestamp) -> u64 {
        let Some(prev) = self.counted_to else {
            self.counted_to = Some(now);
            return 0;
        };
        let secs = now.since(prev) / 1000;
        if secs > 0 {
            self.counted_to = Some(prev.plus_ms(secs * 1000));
        }
        secs * billed
    }
}

static INSTANCE_CLOCK: Mutex<InstanceClock> = Mutex::new(InstanceClock { counted_to: None });

fn instance_clock() -> std::sync::MutexGuard<'static, InstanceClock> {
    INSTANCE_CLOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Leadership ended (or began anew): the next count starts from its own tick.
pub fn instance_count_reset() {
    *instance_clock() = InstanceClock::default();
}

/// After the fleet loop read the instance records: the gauge by state, and the
/// instance time since the last tick (the cost proxy: launching and running
/// instances are billed; terminating ones mostly are not any more).
pub fn instances_observed(instances: &[Instance], now: Timestamp) {
    let m = &*METRICS;
    for state in [
        InstanceState::Launching,
        InstanceState::Running,
        InstanceState::Terminating,
    ] {
        let n = instances.iter().filter(|i| i.state == state).count() as i64;
        m.instances.with_label_values(&[state.as_str()]).set(n);
    }
    let billed = instances
        .iter()
        .filter(|i| i.state != InstanceState::Terminating)
        .count() as u64;
    let secs = instance_clock().count(billed, now);
    if secs > 0 {
        m.instance_seconds.inc_by(secs);
    }
}

pub fn instance_terminated(reason: TerminateReason) {
    METRICS
        .instances_terminated
        .with_label_values(&[reason.as_str()])
        .inc();
}

/// A message's kind as a label: only the kinds drover knows, so that a sender of
/// made-up kinds cannot grow the series without bound.
fn kind_label(msg: &Message) -> &'static str {
    let kind = msg.kind();
    KNOWN_KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("unknown")
}

/// A message taken on `/v1/messages` (`source` = "http") or `/sns` ("sns").
pub fn message_received(source: &str, msg: &Message) {
    let kind = kind_label(msg);
    METRICS.messages.with_label_values(&[kind]).inc();
    if HINT_KINDS.contains(&kind) {
        METRICS.hints.with_label_values(&[source, kind]).inc();
    }
}

/// Why the API's door refused a request (the only values of `reason`).
pub const AUTH_REFUSAL_REASONS: [&str; 3] = ["no_token", "unknown_token", "wrong_role"];

/// A request refused by the API's bearer-token check; counted, not logged at
/// info, so that unauthenticated callers cannot flood the log.
pub fn auth_refused(reason: &'static str) {
    METRICS.auth_refusals.with_label_values(&[reason]).inc();
}

/// One AWS request's end, as the SDK interceptor in `crate::aws` saw it.
pub fn aws_call(service: &str, operation: &str, outcome: &str, took: Duration) {
    METRICS
        .aws_calls
        .with_label_values(&[service, operation, outcome])
        .inc();
    METRICS
        .aws_call_seconds
        .with_label_values(&[service])
        .observe(took.as_secs_f64());
}

/// The Prometheus text format. Families with no sample yet are declared (HELP
/// and TYPE): the registry drops them, but their names must be there to find.
pub fn render() -> String {
    render_metrics(&METRICS)
}

fn render_metrics(metrics: &Metrics) -> String {
    let families = metrics.registry.gather();
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&families, &mut out);
    let mut text = String::from_utf8(out).unwrap_or_default();
    for collector in collectors(metrics) {
        for family in collector.collect() {
            if families.iter().any(|f| f.name() == family.name()) {
                continue;
            }
            let kind = format!("{:?}", family.get_field_type()).to_lowercase();
            text.push_str(&format!(
                "# HELP {} {}\n# TYPE {} {}\n",
                family.name(),
                family.help(),
                family.name(),
                kind
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_definitions_are_valid_and_render() {
        build().expect("valid metrics");
        reconcile_done("jobs", "ok", Duration::from_millis(3));
        assert!(
            render().contains("drover_reconcile_runs_total{reconciler=\"jobs\",result=\"ok\"} ")
        );
    }

    #[test]
    fn families_without_samples_are_still_declared() {
        // A registry of its own: no AWS call moved it, so that family has no sample.
        let text = render_metrics(&build().expect("valid metrics"));
        assert!(
            text.contains("# TYPE drover_aws_calls_total counter\n"),
            "{text}"
        );
        assert!(!text.contains("drover_aws_calls_total{"), "{text}");
    }

    #[test]
    fn the_oldest_job_of_each_state_is_measured_from_when_it_entered_it() {
        use reconcilers::model::{JobId, Timestamp};
        let now = Timestamp(100_000);
        let mut old = Job::new(JobId::new("j-old"), Timestamp(0));
        old.state = JobState::Queued;
        old.queued_at = Some(Timestamp(40_000));
        let mut young = Job::new(JobId::new("j-young"), Timestamp(0));
        young.state = JobState::Queued;
        young.queued_at = Some(Timestamp(90_000));
        let m = build().expect("valid metrics");
        observe_jobs(&m, &JobCounts::of(&[young, old]), &[], now);
        let text = render_metrics(&m);
        assert!(text.contains("drover_jobs{state=\"queued\"} 2\n"), "{text}");
        assert!(
            text.contains("drover_jobs_oldest_age_seconds{state=\"queued\"} 60\n"),
            "{text}"
        );
        assert!(
            text.contains("drover_jobs_oldest_age_seconds{state=\"running\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn made_up_message_kinds_share_one_label() {
        let msg = Message::parse(br#"{"type": "never-heard-of-it-123"}"#);
        assert_eq!(kind_label(&msg), "unknown");
        let ping = Message::parse(br#"{"type": "job_submitted", "job": "j1"}"#);
        assert_eq!(kind_label(&ping), "job_submitted");
    }

    #[test]
    fn instance_time_is_counted_once_and_not_for_the_time_a_controller_followed() {
        let mut clock = InstanceClock::default();
        assert_eq!(
            clock.count(3, Timestamp(10_000)),
            0,
            "the first tick starts the count"
        );
        assert_eq!(
            clock.count(3, Timestamp(12_500)),
            6,
            "2 whole seconds of 3 instances"
        );
        assert_eq!(
            clock.count(3, Timestamp(13_000)),
            3,
            "the half second left over counts now"
        );
        // Leadership ends; another controller counts the next minute. This one
        // leads again: it counts from its first tick, not the minute it followed.
        clock = InstanceClock::default();
        assert_eq!(clock.count(3, Timestamp(73_000)), 0);
        assert_eq!(clock.count(3, Timestamp(74_000)), 3);
    }
}
