//! The message factory: every message that crosses a process boundary (worker
//! reports, hints between controllers and workers, SNS notifications) is parsed
//! here, in one place, into one typed enum.
//!
//! Messages are facts or hints, never the only copy of state: a lost message only
//! delays a reconcile loop. Parsing never fails: anything unreadable becomes
//! `Message::Unknown`, which the receiver logs and acknowledges (a no-op), as
//! Karpenter's interruption parser does. Receiving a message twice is harmless
//! because every effect is a conditional write fenced by the attempt number.

use crate::model::{AttemptOutcome, EmptyLogs, JobId, WorkerId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A job a worker holds, fenced by its attempt number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HeldJob {
    pub job: JobId,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// A worker is alive (PING). It says which attempts it holds and how many slots
    /// are free, so the controller can tell it which of them are stale.
    Ping {
        worker: WorkerId,
        held: Vec<HeldJob>,
        free_slots: u32,
    },
    /// A job was submitted: the jobs loop should dispatch now.
    JobSubmitted { job: JobId },
    /// Assignments wait for a worker: it should ask for them now.
    Assignment { worker: WorkerId },
    /// A worker started an attempt.
    Started {
        worker: WorkerId,
        job: JobId,
        attempt: u32,
    },
    /// A worker finished an attempt (with or without an uploaded output archive).
    Finished {
        worker: WorkerId,
        job: JobId,
        attempt: u32,
        outcome: AttemptOutcome,
        exit_code: Option<i32>,
        reason: Option<String>,
        has_output: bool,
        /// The logs the worker did not upload because they were empty (absent
        /// from older workers' reports: none, then).
        #[serde(default)]
        empty_logs: EmptyLogs,
        /// Small logs and a small output archive sent with the report instead of
        /// uploaded one by one: base64, by blob name (`stdout`, `stderr`,
        /// `worker`, `output`). Stored before the report is applied.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        attached: BTreeMap<String, String>,
    },
    /// A job was cancelled: its worker should stop it.
    Cancel { job: JobId },
    /// A worker was declared lost: the fleet loop should replace it.
    WorkerLost { worker: WorkerId },
    /// Anything else. Logged and acknowledged, never acted on.
    #[serde(skip)]
    Unknown { kind: String, detail: String },
}

impl Message {
    /// Parses a message body (JSON with a `type` field). Never fails.
    pub fn parse(body: &[u8]) -> Message {
        let value: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return Message::Unknown {
                    kind: "unreadable".into(),
                    detail: format!("not JSON: {e}"),
                }
            }
        };
        let kind = value
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("(no type)")
            .to_string();
        match serde_json::from_value::<Message>(value) {
            Ok(msg) => msg,
            Err(e) => Message::Unknown {
                kind,
                detail: e.to_string(),
            },
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising a plain enum of strings and numbers cannot fail; Unknown is
        // skipped by serde and written by hand.
        match self {
            Message::Unknown { kind, .. } => serde_json::json!({ "type": kind }).to_string(),
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }

    /// The message's type, for logs and metric labels.
    pub fn kind(&self) -> &str {
        match self {
            Message::Ping { .. } => "ping",
            Message::JobSubmitted { .. } => "job_submitted",
            Message::Assignment { .. } => "assignment",
            Message::Started { .. } => "started",
            Message::Finished { .. } => "finished",
            Message::Cancel { .. } => "cancel",
            Message::WorkerLost { .. } => "worker_lost",
            Message::Unknown { kind, .. } => kind,
        }
    }

    /// The worker a worker-sent message speaks for, to check it against the
    /// caller's identity.
    pub fn sender(&self) -> Option<&WorkerId> {
        match self {
            Message::Ping { worker, .. }
            | Message::Started { worker, .. }
            | Message::Finished { worker, .. } => Some(worker),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_survives_a_round_trip() {
        let msgs = vec![
            Message::Ping {
                worker: WorkerId::new("w1"),
                held: vec![HeldJob {
                    job: JobId::new("j1"),
                    attempt: 2,
                }],
                free_slots: 1,
            },
            Message::JobSubmitted {
                job: JobId::new("j1"),
            },
            Message::Assignment {
                worker: WorkerId::new("w1"),
            },
            Message::Started {
                worker: WorkerId::new("w1"),
                job: JobId::new("j1"),
                attempt: 1,
            },
            Message::Finished {
                worker: WorkerId::new("w1"),
                job: JobId::new("j1"),
                attempt: 1,
                outcome: AttemptOutcome::Failed,
                exit_code: Some(3),
                reason: Some("exit code 3".into()),
                has_output: true,
                empty_logs: EmptyLogs {
                    stderr: true,
                    ..EmptyLogs::default()
                },
                attached: BTreeMap::from([("worker".into(), "aGk=".into())]),
            },
            Message::Cancel {
                job: JobId::new("j1"),
            },
            Message::WorkerLost {
                worker: WorkerId::new("w1"),
            },
        ];
        for m in msgs {
            assert_eq!(Message::parse(m.to_json().as_bytes()), m);
        }
    }

    #[test]
    fn unknown_type_becomes_unknown_with_its_kind() {
        let m = Message::parse(br#"{"type":"reboot","worker":"w1"}"#);
        assert_eq!(m.kind(), "reboot");
        assert!(matches!(m, Message::Unknown { .. }));
    }

    #[test]
    fn garbage_becomes_unknown_not_a_panic() {
        for body in [
            &b""[..],
            b"\xff\xfe",
            b"[1,2]",
            b"{\"type\":7}",
            b"{\"type\":\"ping\"}",
        ] {
            assert!(matches!(Message::parse(body), Message::Unknown { .. }));
        }
    }
}
