//! The controller's `POST /sns`: SNS deliveries of hints. Each one is verified
//! (`verify`), then a Notification's message goes through the message factory
//! and wakes the loop it concerns; a SubscriptionConfirmation is confirmed.
//! Anything refused gets 403 with the reason and changes nothing.
//!
//! Only hints are taken here. Worker reports (ping, started, finished) carry
//! facts that must come from the worker itself, over `/v1/messages`.

use super::{
    normalize_address,
    sns::RECEIVER_ATTRIBUTE,
    verify::{check_sns_url, sns_host_of, RefusedSns, SnsType, Verified, Verifier, VerifySettings},
};
use crate::{clock::Clock, runtime::wakeups::Wakeups, runtime::Controller};
use axum::{extract::State, http::StatusCode};
use bytes::Bytes;
use reconcilers::messages::Message;
use std::sync::Arc;

/// SNS messages are at most 256 KiB; the envelope adds a few hundred bytes.
pub const MAX_SNS_BODY: usize = 300 << 10;

/// What `POST /sns` needs: the verifier and this controller's own address.
pub struct SnsReceiver {
    /// The address senders name as Subject / `receiver` attribute.
    address: String,
    verifier: Verifier,
}

impl SnsReceiver {
    /// `address`: this controller's address as senders and the subscription's
    /// filter policy spell it (its public URL, `http(s)://host:port`).
    pub fn new(address: &str, settings: VerifySettings, clock: Arc<dyn Clock>) -> SnsReceiver {
        SnsReceiver {
            address: normalize_address(address),
            verifier: Verifier::new(settings, clock),
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub async fn verify(&self, body: &[u8]) -> Result<Verified, RefusedSns> {
        self.verifier.verify(body).await
    }

    /// Verifies and acts; the answer SNS gets.
    pub async fn handle(&self, body: &[u8], wake: &Wakeups) -> (StatusCode, String) {
        if body.len() > MAX_SNS_BODY {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("an SNS message is at most {MAX_SNS_BODY} bytes\n"),
            );
        }
        let verified = match self.verify(body).await {
            Ok(v) => v,
            Err(refused) => {
                tracing::warn!(reason = %refused, "refused an SNS message");
                let status = if refused.is_transient() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::FORBIDDEN
                };
                return (status, format!("{refused}\n"));
            }
        };
        let e = &verified.envelope;
        match verified.kind {
            SnsType::Notification => self.notification(&verified, wake),
            SnsType::SubscriptionConfirmation => self.confirm(&verified).await,
            SnsType::UnsubscribeConfirmation => {
                tracing::info!(topic = %e.topic_arn, message_id = %e.message_id, "SNS unsubscribed this endpoint");
                (StatusCode::OK, "unsubscribe noted\n".into())
            }
        }
    }

    /// The receiver a Notification names: the Subject (signed) if any, else
    /// the `receiver` attribute (not signed, but the message still came from
    /// one of our topics). Naming neither, it is for every subscriber.
    fn addressed_to_us(&self, v: &Verified) -> Result<(), String> {
        let e = &v.envelope;
        let named = e.subject.clone().or_else(|| {
            e.message_attributes
                .as_ref()
                .and_then(|a| a.get(RECEIVER_ATTRIBUTE))
                .map(|a| a.value.clone())
        });
        match named {
            Some(n) if normalize_address(&n) != self.address => Err(n),
            _ => Ok(()),
        }
    }

    fn notification(&self, v: &Verified, wake: &Wakeups) -> (StatusCode, String) {
        let e = &v.envelope;
        if let Err(other) = self.addressed_to_us(v) {
            // Not forged, only misrouted (a filter policy missing or stale):
            // acknowledged so SNS does not retry, and ignored.
            tracing::info!(receiver = %other, us = %self.address, message_id = %e.message_id, "ignored an SNS hint for another receiver");
            return (
                StatusCode::OK,
                format!("addressed to {other}, not {}: ignored\n", self.address),
            );
        }
        let msg = Message::parse(e.message.as_bytes());
        crate::metrics::message_received("sns", &msg);
        match &msg {
            Message::JobSubmitted { .. } | Message::Cancel { .. } => wake.jobs.notify_one(),
            Message::WorkerLost { .. } => wake.fleet.notify_one(),
            Message::Assignment { worker } => wake.wake_worker(worker),
            Message::Ping { .. } | Message::Started { .. } | Message::Finished { .. } => {
                tracing::info!(kind = msg.kind(), message_id = %e.message_id, "ignored a worker report sent over SNS: workers report to /v1/messages");
                return (
                    StatusCode::OK,
                    format!(
                        "{} is a worker report, not taken over SNS: ignored\n",
                        msg.kind()
                    ),
                );
            }
            Message::Unknown { kind, detail } => {
                tracing::info!(kind, detail, message_id = %e.message_id, "ignored an unknown SNS message");
                return (StatusCode::OK, format!("unknown message {kind}: ignored\n"));
            }
        }
        tracing::debug!(kind = msg.kind(), message_id = %e.message_id, "SNS hint");
        (StatusCode::OK, format!("{}: woken\n", msg.kind()))
    }

    /// Confirms by GETting the (signed, SNS-host) SubscribeURL.
    async fn confirm(&self, v: &Verified) -> (StatusCode, String) {
        let e = &v.envelope;
        // `verify` checked these already; a SubscriptionConfirmation has a URL.
        let checked = e
            .subscribe_url
            .as_deref()
            .ok_or_else(|| "no SubscribeURL".to_string())
            .and_then(|url| {
                let host = sns_host_of(&e.topic_arn).map_err(|r| r.to_string())?;
                check_sns_url("SubscribeURL", url, &host).map_err(|r| r.to_string())
            });
        let url = match checked {
            Ok(u) => self.verifier.fetch_url(&u),
            Err(reason) => return (StatusCode::FORBIDDEN, format!("{reason}\n")),
        };
        match self.verifier.http().get(&url).send().await {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(topic = %e.topic_arn, "confirmed the SNS subscription");
                (StatusCode::OK, "subscription confirmed\n".into())
            }
            Ok(resp) => {
                tracing::warn!(%url, status = %resp.status(), "confirming the SNS subscription");
                (
                    StatusCode::BAD_GATEWAY,
                    format!("confirming at {url}: HTTP {}\n", resp.status()),
                )
            }
            Err(err) => {
                tracing::warn!(%url, error = %err, "confirming the SNS subscription");
                (
                    StatusCode::BAD_GATEWAY,
                    format!("confirming at {url}: {err}\n"),
                )
            }
        }
    }
}

/// The whole of `POST /sns`, for the route and for tests.
pub async fn handle_sns(
    receiver: &SnsReceiver,
    wake: &Wakeups,
    body: &[u8],
) -> (StatusCode, String) {
    receiver.handle(body, wake).await
}

/// The route: `.route("/sns", post(crate::hints::receive::handler))`.
pub async fn handler(State(c): State<Arc<Controller>>, body: Bytes) -> (StatusCode, String) {
    match receiver_of(&c) {
        Some(receiver) => handle_sns(&receiver, &c.wake, &body).await,
        None => (
            StatusCode::NOT_FOUND,
            "this controller takes no SNS hints (hints is not sns://...)\n".into(),
        ),
    }
}

/// The controller's receiver, if its hints travel by SNS.
fn receiver_of(c: &Controller) -> Option<Arc<SnsReceiver>> {
    c.sns.clone()
}
