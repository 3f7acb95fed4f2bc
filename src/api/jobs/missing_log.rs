//! What `GET /v1/jobs/{id}/logs` answers for a log whose blob is missing. A
//! worker does not upload an empty log (a quiet job saves three requests) and
//! says so in its report: only such a log reads as empty. Any other missing log
//! was never uploaded, and the answer says why: the attempt still runs, was lost
//! with its worker, was cancelled, or its worker's upload failed.

use crate::blobs::LogStream;
use reconcilers::model::{AttemptOutcome, Job};

#[derive(Debug, PartialEq, Eq)]
pub enum MissingLog {
    /// The worker reported this log empty.
    Empty,
    /// There is no such log; why, for people.
    NotThere(String),
}

/// The answer for the log `stream` (called `name` by the caller) of `attempt`
/// of `job`, whose blob was not found.
pub fn missing_log(job: &Job, attempt: u32, stream: LogStream, name: &str) -> MissingLog {
    let id = &job.id;
    let Some(a) = job.attempts.iter().find(|a| a.number == attempt) else {
        return MissingLog::NotThere(format!(
            "job {id} has no attempt {attempt} (it has had {})",
            job.attempts.len()
        ));
    };
    let reported_empty = match stream {
        LogStream::Stdout => a.empty_logs.stdout,
        LogStream::Stderr => a.empty_logs.stderr,
        LogStream::Worker => a.empty_logs.worker,
    };
    if reported_empty {
        return MissingLog::Empty;
    }
    let worker = &a.worker;
    let why = match (a.finished_at, a.outcome) {
        (None, _) => format!(
            "job {id} attempt {attempt} has no {name} log yet: logs are uploaded when it \
             ends, and it is still on worker {worker}"
        ),
        (Some(_), Some(AttemptOutcome::WorkerLost)) => format!(
            "job {id} attempt {attempt} was lost with worker {worker}; its {name} was never \
             uploaded"
        ),
        (Some(_), Some(AttemptOutcome::Cancelled)) => format!(
            "job {id} attempt {attempt} was cancelled on worker {worker} before it ended; its \
             {name} was never uploaded"
        ),
        (Some(_), _) => format!(
            "job {id} attempt {attempt} ended on worker {worker}, but its {name} log never \
             reached the controller (the worker's upload failed; its own log says why)"
        ),
    };
    MissingLog::NotThere(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconcilers::model::{Attempt, EmptyLogs, JobId, Timestamp, WorkerId};

    fn job_with(finished: bool, outcome: Option<AttemptOutcome>, empty: EmptyLogs) -> Job {
        let mut job = Job::new(JobId::new("j-1"), Timestamp(1));
        job.attempts.push(Attempt {
            number: 1,
            worker: WorkerId::new("w-1"),
            assigned_at: Timestamp(2),
            started_at: Some(Timestamp(3)),
            finished_at: Some(Timestamp(4)),
            exit_code: None,
            outcome: Some(AttemptOutcome::WorkerLost),
            reason: None,
            has_output: false,
            empty_logs: EmptyLogs::default(),
        });
        job.attempts.push(Attempt {
            number: 2,
            worker: WorkerId::new("w-3"),
            assigned_at: Timestamp(5),
            started_at: Some(Timestamp(6)),
            finished_at: finished.then_some(Timestamp(7)),
            exit_code: None,
            outcome,
            reason: None,
            has_output: false,
            empty_logs: empty,
        });
        job
    }

    fn not_there(answer: MissingLog) -> String {
        match answer {
            MissingLog::NotThere(why) => why,
            MissingLog::Empty => panic!("answered as empty"),
        }
    }

    #[test]
    fn a_log_the_worker_reported_empty_reads_as_empty() {
        let empty = EmptyLogs {
            stderr: true,
            ..EmptyLogs::default()
        };
        let job = job_with(true, Some(AttemptOutcome::Succeeded), empty);
        assert_eq!(
            missing_log(&job, 2, LogStream::Stderr, "stderr"),
            MissingLog::Empty
        );
        let why = not_there(missing_log(&job, 2, LogStream::Stdout, "stdout"));
        assert!(why.contains("upload failed"), "{why}");
    }

    /// Regression: a lost worker's attempt read as an empty log.
    #[test]
    fn a_lost_attempts_log_is_not_there_and_says_it_was_lost_with_its_worker() {
        let job = job_with(true, Some(AttemptOutcome::WorkerLost), EmptyLogs::default());
        let why = not_there(missing_log(&job, 2, LogStream::Stdout, "stdout"));
        assert_eq!(
            why,
            "job j-1 attempt 2 was lost with worker w-3; its stdout was never uploaded"
        );
    }

    #[test]
    fn a_cancelled_running_or_unknown_attempt_says_which() {
        let cancelled = job_with(true, Some(AttemptOutcome::Cancelled), EmptyLogs::default());
        let why = not_there(missing_log(&cancelled, 2, LogStream::Worker, "worker"));
        assert!(why.contains("cancelled on worker w-3"), "{why}");
        let running = job_with(false, None, EmptyLogs::default());
        let why = not_there(missing_log(&running, 2, LogStream::Stdout, "stdout"));
        assert!(why.contains("still on worker w-3"), "{why}");
        let why = not_there(missing_log(&running, 7, LogStream::Stdout, "stdout"));
        assert!(why.contains("has no attempt 7 (it has had 2)"), "{why}");
    }
}
