//! Hints over plain HTTP, the local form: the message's JSON is POSTed to the
//! receiver's `/v1/messages`, the endpoint workers report to.

use super::{normalize_address, HintError, Hints};
use async_trait::async_trait;
use reconcilers::messages::Message;
use std::time::Duration;

/// A hint is worth little after a few seconds: the receiver's interval is near.
const HINT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct HttpHints {
    client: reqwest::Client,
    /// The submit token: a controller's API takes hints only from its cluster.
    token: Option<String>,
}

impl HttpHints {
    pub fn new() -> HttpHints {
        let client = reqwest::Client::builder()
            .timeout(HINT_TIMEOUT)
            .build()
            .unwrap_or_default();
        HttpHints {
            client,
            token: None,
        }
    }

    /// Sends hints with the cluster's submit token.
    pub fn with_token(mut self, token: &str) -> HttpHints {
        self.token = Some(token.to_string());
        self
    }
}

impl Default for HttpHints {
    fn default() -> Self {
        HttpHints::new()
    }
}

#[async_trait]
impl Hints for HttpHints {
    async fn publish(&self, receiver: &str, msg: &Message) -> Result<(), HintError> {
        let url = format!("{}/v1/messages", normalize_address(receiver));
        let mut req = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(msg.to_json());
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|source| HintError::Http {
            kind: msg.kind().to_string(),
            receiver: receiver.to_string(),
            source,
        })?;
        if !resp.status().is_success() {
            return Err(HintError::Status {
                kind: msg.kind().to_string(),
                receiver: receiver.to_string(),
                status: resp.status().as_u16(),
            });
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "http"
    }
}
