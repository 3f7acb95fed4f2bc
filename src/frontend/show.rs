//! How jobs look on a terminal: `drover status` and `drover jobs`.

use reconcilers::model::{Job, Timestamp};

fn time(t: Option<Timestamp>) -> String {
    match t {
        Some(t) => {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.0);
            humantime::format_rfc3339_millis(at).to_string()
        }
        None => "-".to_string(),
    }
}

fn took(from: Option<Timestamp>, to: Option<Timestamp>) -> String {
    match (from, to) {
        (Some(a), Some(b)) => format!("{:.3}s", b.since(a) as f64 / 1000.0),
        _ => "-".to_string(),
    }
}

pub fn print_job(job: &Job) {
    println!("job:       {}", job.id);
    if let Some(name) = &job.spec.name {
        println!("name:      {name}");
    }
    println!("state:     {}", job.state);
    if let Some(code) = job.exit_code {
        println!("exit code: {code}");
    }
    if let Some(reason) = &job.reason {
        println!("reason:    {reason}");
    }
    println!("created:   {}", time(Some(job.created_at)));
    println!("finished:  {}", time(job.finished_at));
    println!(
        "retries:   RetryCount {}, ShallowRetryCount {}",
        job.spec.retry_count, job.spec.shallow_retry_count
    );
    if job.attempts.is_empty() {
        return;
    }
    println!("attempts:");
    println!(
        "  {:<3} {:<16} {:<18} {:<9} {:<5} reason",
        "#", "worker", "outcome", "ran", "exit"
    );
    for a in &job.attempts {
        let outcome = a.outcome.map_or(
            if a.started_at.is_some() {
                "running"
            } else {
                "assigned"
            },
            |o| o.as_str(),
        );
        println!(
            "  {:<3} {:<16} {:<18} {:<9} {:<5} {}",
            a.number,
            a.worker,
            outcome,
            took(a.started_at, a.finished_at),
            a.exit_code.map_or("-".to_string(), |c| c.to_string()),
            a.reason.as_deref().unwrap_or("")
        );
    }
}

pub fn print_jobs(jobs: &[Job]) {
    println!(
        "{:<16} {:<10} {:<5} {:<8} {:<24} name",
        "id", "state", "exit", "attempts", "created"
    );
    for j in jobs {
        println!(
            "{:<16} {:<10} {:<5} {:<8} {:<24} {}",
            j.id,
            j.state,
            j.exit_code.map_or("-".to_string(), |c| c.to_string()),
            j.attempts.len(),
            time(Some(j.created_at)),
            j.spec.name.as_deref().unwrap_or("")
        );
    }
}
