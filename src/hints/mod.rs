//! Hints: messages that make a loop run now. Locally they are in-process wake-ups
//! or HTTP calls; on AWS they travel through SNS. A hint never carries state that
//! exists nowhere else: losing every hint only slows drover down.
//!
//! Senders hold an `Arc<dyn Hints>`; a receiver is named by its address (the
//! `http(s)://host:port` its API answers on). `receive` is the controller's
//! `POST /sns` endpoint and `verify` checks what arrives there.

pub mod http;
#[cfg(feature = "aws")]
pub mod receive;
#[cfg(feature = "aws")]
pub mod sns;
#[cfg(feature = "aws")]
pub mod verify;

/// The controller's handle on its SNS receiver; nothing can be one in a build
/// without AWS support.
#[cfg(feature = "aws")]
pub type SnsReceiverRef = std::sync::Arc<receive::SnsReceiver>;
#[cfg(not(feature = "aws"))]
pub type SnsReceiverRef = std::convert::Infallible;

pub use http::HttpHints;
#[cfg(feature = "aws")]
pub use sns::{create_topic, subscribe, SnsHints};

use async_trait::async_trait;
use reconcilers::messages::Message;

/// SNS refuses longer Subjects; the receiver's address travels as the Subject.
pub const MAX_SUBJECT_LEN: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum HintError {
    #[error("sending hint {kind} to {receiver}: {source}")]
    Http {
        kind: String,
        receiver: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("sending hint {kind} to {receiver}: HTTP {status}")]
    Status {
        kind: String,
        receiver: String,
        status: u16,
    },
    #[error(
        "receiver address `{0}` cannot be an SNS Subject: it must be 1 to 100 printable ASCII characters"
    )]
    BadSubject(String),
    #[error("publishing hint {kind} for {receiver} to {topic}: {detail}")]
    Publish {
        kind: String,
        receiver: String,
        topic: String,
        detail: String,
    },
    #[error("subscribing {endpoint} to {topic}: {detail}")]
    Subscribe {
        endpoint: String,
        topic: String,
        detail: String,
    },
    #[error("unsubscribing {subscription}: {detail}")]
    Unsubscribe {
        subscription: String,
        detail: String,
    },
    #[error("creating SNS topic {name}: {detail}")]
    CreateTopic { name: String, detail: String },
}

/// One narrow trait for the hint transport (HTTP locally, SNS on AWS).
#[async_trait]
pub trait Hints: Send + Sync + 'static {
    /// Sends `msg` to the receiver at `receiver` (its address). An error is only
    /// worth a log line: the receiver's loops find the work at their next interval.
    async fn publish(&self, receiver: &str, msg: &Message) -> Result<(), HintError>;
    fn name(&self) -> &'static str;
}

/// Drops every hint: everything still happens, at the loops' intervals.
pub struct NoHints;

#[async_trait]
impl Hints for NoHints {
    async fn publish(&self, receiver: &str, msg: &Message) -> Result<(), HintError> {
        tracing::trace!(receiver, kind = msg.kind(), "hint dropped (hints = none)");
        Ok(())
    }
    fn name(&self) -> &'static str {
        "none"
    }
}

/// A receiver's address in one spelling: senders, subscriptions and the
/// receiver's own check must agree byte for byte (a filter policy is exact).
pub fn normalize_address(address: &str) -> String {
    address.trim().trim_end_matches('/').to_string()
}

/// SNS Subjects are at most 100 printable ASCII characters, no line breaks.
pub fn check_subject(address: &str) -> Result<(), HintError> {
    let ok = !address.is_empty()
        && address.len() <= MAX_SUBJECT_LEN
        && address.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(HintError::BadSubject(address.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_short_printable_ascii() {
        assert!(check_subject("http://10.0.0.5:7070").is_ok());
        assert!(check_subject(&format!("http://{}", "a".repeat(93))).is_ok());
        let long = format!("http://{}", "a".repeat(94));
        let err = check_subject(&long).unwrap_err().to_string();
        assert!(err.contains("1 to 100 printable ASCII"), "{err}");
        assert!(check_subject("http://h\n:1").is_err());
        assert!(check_subject("http://hé:1").is_err());
        assert!(check_subject("").is_err());
    }

    #[test]
    fn addresses_lose_their_trailing_slash() {
        assert_eq!(normalize_address(" http://a:1/ "), "http://a:1");
    }
}
