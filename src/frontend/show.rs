//! How jobs look on a terminal: `drover status` and `drover jobs`.

use super::table::Table;
use reconcilers::model::{Attempt, Job, Timestamp};

/// An RFC 3339 time in UTC, to the second.
pub fn time(t: Option<Timestamp>) -> String {
    match t {
        Some(t) => {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.0);
            humantime::format_rfc3339_seconds(at).to_string()
        }
        None => "-".to_string(),
    }
}

/// A duration for people: `850ms`, `12.3s`, `4m05s`, `2h10m`.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

fn took(from: Option<Timestamp>, to: Option<Timestamp>) -> String {
    match (from, to) {
        (Some(a), Some(b)) => duration_ms(b.since(a)),
        _ => "-".to_string(),
    }
}

fn outcome(a: &Attempt) -> &'static str {
    match a.outcome {
        Some(o) => o.as_str(),
        None if a.started_at.is_some() => "running",
        None => "assigned",
    }
}

pub fn print_job(job: &Job) {
    print!("{}", render_job(job));
}

/// `drover status`: the job, then its timings, then every attempt.
pub fn render_job(job: &Job) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<11}{v}\n"));
    line("job:", job.id.to_string());
    if let Some(name) = &job.spec.name {
        line("name:", name.clone());
    }
    line("state:", job.state.to_string());
    if let Some(code) = job.exit_code {
        line("exit code:", code.to_string());
    }
    if let Some(reason) = &job.reason {
        line("reason:", reason.clone());
    }
    if let Some(w) = job.worker() {
        line("worker:", w.to_string());
    }
    line("created:", time(Some(job.created_at)));
    let first_start = job.attempts.iter().find_map(|a| a.started_at);
    line(
        "queued:",
        format!(
            "{} (waited {})",
            time(job.queued_at),
            took(job.queued_at, first_start.or(job.finished_at))
        ),
    );
    line("finished:", time(job.finished_at));
    line("took:", took(Some(job.created_at), job.finished_at));
    line(
        "retries:",
        format!(
            "{} of RetryCount {}, {} of ShallowRetryCount {}",
            job.deep_failures(),
            job.spec.retry_count,
            job.shallow_failures(),
            job.spec.shallow_retry_count
        ),
    );
    if job.attempts.is_empty() {
        return out;
    }
    let mut t = Table::new(&["#", "worker", "outcome", "started", "ran", "exit", "reason"]);
    for a in &job.attempts {
        t.row(vec![
            a.number.to_string(),
            a.worker.to_string(),
            outcome(a).to_string(),
            time(a.started_at),
            took(a.started_at, a.finished_at),
            a.exit_code.map_or("-".to_string(), |c| c.to_string()),
            a.reason.clone().unwrap_or_default(),
        ]);
    }
    out.push_str("attempts:\n");
    for l in t.render().lines() {
        out.push_str(&format!("  {l}\n"));
    }
    out
}

pub fn print_jobs(jobs: &[Job]) {
    print!("{}", render_jobs(jobs));
}

/// `drover jobs`: one line per job, newest first.
pub fn render_jobs(jobs: &[Job]) -> String {
    if jobs.is_empty() {
        return "no jobs (submit one with `drover submit FILE` or `drover apply -f FILE`)\n"
            .to_string();
    }
    let mut t = Table::new(&[
        "id", "state", "exit", "tries", "worker", "created", "ran", "name",
    ]);
    for j in jobs {
        let ran = j
            .current_attempt()
            .map_or("-".to_string(), |a| took(a.started_at, a.finished_at));
        t.row(vec![
            j.id.to_string(),
            j.state.to_string(),
            j.exit_code.map_or("-".to_string(), |c| c.to_string()),
            j.attempts.len().to_string(),
            j.current_attempt()
                .map_or("-".to_string(), |a| a.worker.to_string()),
            time(Some(j.created_at)),
            ran,
            j.spec.name.clone().unwrap_or_default(),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(12_345), "12.3s");
        assert_eq!(duration_ms(245_000), "4m05s");
        assert_eq!(duration_ms(7_800_000), "2h10m");
    }
}
