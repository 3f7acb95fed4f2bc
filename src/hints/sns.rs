//! Hints over SNS: one topic per cluster, every receiver subscribed over HTTP(S)
//! with a filter policy on the `receiver` message attribute, so each endpoint
//! gets only its own hints. The Subject also names the receiver: unlike message
//! attributes it is covered by SNS's signature.

use super::{check_subject, normalize_address, HintError, Hints};
use async_trait::async_trait;
use aws_sdk_sns::{error::DisplayErrorContext, types::MessageAttributeValue, Client};
use reconcilers::messages::Message;

/// The message attribute (and filter policy key) naming the receiver.
pub const RECEIVER_ATTRIBUTE: &str = "receiver";
/// Where a receiver's API takes SNS deliveries.
pub const SNS_PATH: &str = "/sns";

pub struct SnsHints {
    client: Client,
    topic_arn: String,
    /// Whether the receiver's address also goes in the Subject (the rule, and
    /// signed by SNS). moto signs Notifications without their Subject, so a
    /// cluster run on moto turns this off; see docs/aws-sns.md.
    with_subject: bool,
}

impl SnsHints {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> SnsHints {
        SnsHints {
            client,
            topic_arn: topic_arn.into(),
            with_subject: true,
        }
    }

    /// Publishes without a Subject: the receiver is named by the message
    /// attribute alone. For moto, whose signatures leave the Subject out.
    pub fn without_subject(mut self) -> SnsHints {
        self.with_subject = false;
        self
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }
}

#[async_trait]
impl Hints for SnsHints {
    async fn publish(&self, receiver: &str, msg: &Message) -> Result<(), HintError> {
        let address = normalize_address(receiver);
        // Checked even without a Subject: the same address is the filter policy
        // value, and an address SNS refuses as a Subject is a configuration error.
        check_subject(&address)?;
        let publish_error = |detail: String| HintError::Publish {
            kind: msg.kind().to_string(),
            receiver: address.clone(),
            topic: self.topic_arn.clone(),
            detail,
        };
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(&address)
            .build()
            .map_err(|e| publish_error(e.to_string()))?;
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(msg.to_json())
            .message_attributes(RECEIVER_ATTRIBUTE, attribute);
        if self.with_subject {
            request = request.subject(&address);
        }
        request
            .send()
            .await
            .map_err(|e| publish_error(DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "sns"
    }
}

/// Subscribes the receiver at `address` (its `http(s)://host:port`): SNS
/// delivers to `<address>/sns`, only messages whose `receiver` attribute is
/// `address`. Returns the subscription's ARN (pending until the receiver
/// confirms it, which `POST /sns` does by itself). Subscribing twice returns
/// the same subscription.
pub async fn subscribe(
    client: &Client,
    topic_arn: &str,
    address: &str,
) -> Result<String, HintError> {
    let address = normalize_address(address);
    let endpoint = format!("{address}{SNS_PATH}");
    let error = |detail: String| HintError::Subscribe {
        endpoint: endpoint.clone(),
        topic: topic_arn.to_string(),
        detail,
    };
    let protocol = match address.split_once("://") {
        Some(("http", _)) => "http",
        Some(("https", _)) => "https",
        _ => {
            return Err(error(
                "the address must start with http:// or https://".into(),
            ))
        }
    };
    check_subject(&address).map_err(|e| error(e.to_string()))?;
    let filter = serde_json::json!({ RECEIVER_ATTRIBUTE: [address] }).to_string();
    let out = client
        .subscribe()
        .topic_arn(topic_arn)
        .protocol(protocol)
        .endpoint(&endpoint)
        .attributes("FilterPolicy", filter)
        .attributes("FilterPolicyScope", "MessageAttributes")
        .return_subscription_arn(true)
        .send()
        .await
        .map_err(|e| error(DisplayErrorContext(&e).to_string()))?;
    out.subscription_arn()
        .map(str::to_string)
        .ok_or_else(|| error("SNS returned no SubscriptionArn".into()))
}

/// Removes a subscription (a controller leaving for good).
pub async fn unsubscribe(client: &Client, subscription_arn: &str) -> Result<(), HintError> {
    client
        .unsubscribe()
        .subscription_arn(subscription_arn)
        .send()
        .await
        .map_err(|e| HintError::Unsubscribe {
            subscription: subscription_arn.to_string(),
            detail: DisplayErrorContext(&e).to_string(),
        })?;
    Ok(())
}

/// Creates the cluster's topic, or finds it: CreateTopic with the same name
/// returns the existing topic, so `drover init` can run twice.
pub async fn create_topic(client: &Client, name: &str) -> Result<String, HintError> {
    let error = |detail: String| HintError::CreateTopic {
        name: name.to_string(),
        detail,
    };
    let out = client
        .create_topic()
        .name(name)
        .send()
        .await
        .map_err(|e| error(DisplayErrorContext(&e).to_string()))?;
    out.topic_arn()
        .map(str::to_string)
        .ok_or_else(|| error("SNS returned no TopicArn".into()))
}
