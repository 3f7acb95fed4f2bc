//! Verification of what SNS POSTs to an HTTP(S) subscriber, exactly as AWS
//! documents it ("Verifying the signatures of Amazon SNS messages"): the
//! canonical string of the signed fields, RSA PKCS#1 v1.5 with SHA1
//! (SignatureVersion 1) or SHA256 (2), the public key from the certificate at
//! SigningCertURL, which must be `https://sns.<region>.amazonaws.com/....pem`.
//!
//! Anyone can POST to `/sns`; only a message that passes every check here may
//! wake anything. The checks that need no network come first.

use crate::clock::Clock;
use reconcilers::model::Timestamp;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

/// Certificates are small; anything bigger is not one.
const MAX_CERT_BYTES: usize = 64 << 10;
/// SNS's certificate URLs are few and long-lived; moto makes one per message,
/// so the cache is bounded.
const MAX_CACHED_CERTS: usize = 64;
const CERT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Clocks drift: a message dated slightly ahead of ours is not forged.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// What a verifier accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySettings {
    /// TopicArns whose messages are accepted; every other is refused.
    pub topics: Vec<String>,
    /// Tests only: fetch certificates (and SubscribeURLs) from this base
    /// (scheme, host and port) instead of the SNS host, keeping the path. The
    /// URLs in the message must still name the SNS host.
    pub cert_base_url: Option<String>,
    /// Older messages are refused as replays.
    pub max_age: Duration,
}

impl VerifySettings {
    pub fn new(topics: Vec<String>) -> VerifySettings {
        VerifySettings {
            topics,
            cert_base_url: None,
            max_age: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnsType {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

/// A message attribute as SNS writes it into an HTTP delivery. Not signed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attribute {
    #[serde(rename = "Type")]
    pub data_type: String,
    #[serde(rename = "Value")]
    pub value: String,
}

/// The JSON body SNS POSTs to an HTTP(S) endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope {
    #[serde(rename = "Type")]
    pub kind: String,
    pub message_id: String,
    pub topic_arn: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    pub signature_version: String,
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    #[serde(rename = "SubscribeURL", default)]
    pub subscribe_url: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(rename = "UnsubscribeURL", default)]
    pub unsubscribe_url: Option<String>,
    #[serde(default)]
    pub message_attributes: Option<HashMap<String, Attribute>>,
}

/// A message whose signature, certificate, topic and age all passed.
#[derive(Debug, Clone)]
pub struct Verified {
    pub kind: SnsType,
    pub envelope: Envelope,
}

#[derive(Debug, thiserror::Error)]
pub enum RefusedSns {
    #[error("the body is not an SNS message: {0}")]
    NotSns(String),
    #[error("unknown SNS message Type `{0}`")]
    UnknownType(String),
    #[error("{kind} {message_id} has no {field}")]
    Missing {
        kind: String,
        message_id: String,
        field: &'static str,
    },
    #[error("unknown TopicArn {0}")]
    UnknownTopic(String),
    #[error("TopicArn {0} is not arn:PARTITION:sns:REGION:ACCOUNT:NAME")]
    BadTopicArn(String),
    #[error("Timestamp `{0}` is not an RFC 3339 UTC time")]
    BadTimestamp(String),
    #[error("message is {age} old: refused as a replay")]
    Replay { age: String },
    #[error("message is dated {ahead} in the future: refused")]
    FromTheFuture { ahead: String },
    #[error("{field} `{url}` is not a URL")]
    BadUrl { field: &'static str, url: String },
    #[error("{field} {url} is not https")]
    NotHttps { field: &'static str, url: String },
    #[error("{field} host `{host}` is not {expected}")]
    WrongHost {
        field: &'static str,
        host: String,
        expected: String,
    },
    #[error("SigningCertURL path `{0}` does not end in .pem")]
    NotPem(String),
    #[error("unknown SignatureVersion `{0}` (1 or 2)")]
    UnknownSignatureVersion(String),
    #[error("Signature is not base64: {0}")]
    SignatureNotBase64(String),
    #[error("fetching the signing certificate {url}: {detail}")]
    CertUnreachable { url: String, detail: String },
    #[error("signing certificate {url}: {detail}")]
    BadCert { url: String, detail: String },
    #[error("signing certificate {url} is not valid now (valid from {from} to {to})")]
    CertNotValidNow {
        url: String,
        from: String,
        to: String,
    },
    #[error("signature does not verify")]
    BadSignature,
}

impl RefusedSns {
    /// Our side failed, not the message: worth a retry by SNS (503), not a 403.
    pub fn is_transient(&self) -> bool {
        matches!(self, RefusedSns::CertUnreachable { .. })
    }
}

/// The parts of a signing certificate that verification needs.
struct SigningCert {
    /// The RSAPublicKey DER (the SubjectPublicKeyInfo's key bits), as ring wants it.
    rsa_public_key: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

pub struct Verifier {
    settings: VerifySettings,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    /// By SigningCertURL (as in the message), fetched once.
    certs: Mutex<HashMap<String, Arc<SigningCert>>>,
}

impl Verifier {
    pub fn new(settings: VerifySettings, clock: Arc<dyn Clock>) -> Verifier {
        let http = reqwest::Client::builder()
            .timeout(CERT_FETCH_TIMEOUT)
            // A redirect could leave the SNS host the URL was checked against.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Verifier {
            settings,
            clock,
            http,
            certs: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &VerifySettings {
        &self.settings
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Every check, cheapest first; the certificate is fetched last.
    pub async fn verify(&self, body: &[u8]) -> Result<Verified, RefusedSns> {
        let envelope: Envelope =
            serde_json::from_slice(body).map_err(|e| RefusedSns::NotSns(e.to_string()))?;
        let kind = match envelope.kind.as_str() {
            "Notification" => SnsType::Notification,
            "SubscriptionConfirmation" => SnsType::SubscriptionConfirmation,
            "UnsubscribeConfirmation" => SnsType::UnsubscribeConfirmation,
            other => return Err(RefusedSns::UnknownType(other.to_string())),
        };
        let to_sign = string_to_sign(kind, &envelope)?;
        if !self.settings.topics.contains(&envelope.topic_arn) {
            return Err(RefusedSns::UnknownTopic(envelope.topic_arn.clone()));
        }
        self.check_age(&envelope.timestamp)?;
        let sns_host = sns_host_of(&envelope.topic_arn)?;
        let cert_url = check_sns_url("SigningCertURL", &envelope.signing_cert_url, &sns_host)?;
        if !cert_url.path().ends_with(".pem") || cert_url.query().is_some() {
            return Err(RefusedSns::NotPem(cert_url.path().to_string()));
        }
        if kind == SnsType::SubscriptionConfirmation {
            if let Some(url) = &envelope.subscribe_url {
                check_sns_url("SubscribeURL", url, &sns_host)?;
            }
        }
        let algorithm: &'static dyn signature::VerificationAlgorithm =
            match envelope.signature_version.as_str() {
                "1" => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                "2" => &signature::RSA_PKCS1_2048_8192_SHA256,
                other => return Err(RefusedSns::UnknownSignatureVersion(other.to_string())),
            };
        use base64::Engine as _;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(envelope.signature.trim())
            .map_err(|e| RefusedSns::SignatureNotBase64(e.to_string()))?;
        let cert = self
            .certificate(&envelope.signing_cert_url, &cert_url)
            .await?;
        let now_secs = (self.clock.now().millis() / 1000) as i64;
        if now_secs < cert.not_before || now_secs > cert.not_after {
            return Err(RefusedSns::CertNotValidNow {
                url: envelope.signing_cert_url.clone(),
                from: format_unix(cert.not_before),
                to: format_unix(cert.not_after),
            });
        }
        UnparsedPublicKey::new(algorithm, &cert.rsa_public_key)
            .verify(to_sign.as_bytes(), &sig)
            .map_err(|_| RefusedSns::BadSignature)?;
        Ok(Verified { kind, envelope })
    }

    fn check_age(&self, timestamp: &str) -> Result<(), RefusedSns> {
        let sent = humantime::parse_rfc3339(timestamp)
            .map_err(|_| RefusedSns::BadTimestamp(timestamp.to_string()))?;
        let sent_ms = sent
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| RefusedSns::BadTimestamp(timestamp.to_string()))?
            .as_millis() as u64;
        let now = self.clock.now();
        let age = Duration::from_millis(now.since(Timestamp(sent_ms)));
        if age > self.settings.max_age {
            return Err(RefusedSns::Replay { age: rounded(age) });
        }
        let ahead = Duration::from_millis(Timestamp(sent_ms).since(now));
        if ahead > MAX_CLOCK_SKEW {
            return Err(RefusedSns::FromTheFuture {
                ahead: rounded(ahead),
            });
        }
        Ok(())
    }

    /// The URL a checked SNS URL is fetched from: itself, or (tests) the same
    /// path and query on the configured base.
    pub fn fetch_url(&self, checked: &url::Url) -> String {
        match &self.settings.cert_base_url {
            None => checked.to_string(),
            Some(base) => {
                let mut rebased = base.trim_end_matches('/').to_string();
                rebased.push_str(checked.path());
                if let Some(q) = checked.query() {
                    rebased.push('?');
                    rebased.push_str(q);
                }
                rebased
            }
        }
    }

    async fn certificate(&self, key: &str, url: &url::Url) -> Result<Arc<SigningCert>, RefusedSns> {
        if let Some(cert) = self.cached(key) {
            return Ok(cert);
        }
        let fetch = self.fetch_url(url);
        let unreachable = |detail: String| RefusedSns::CertUnreachable {
            url: fetch.clone(),
            detail,
        };
        let bad = |detail: String| RefusedSns::BadCert {
            url: fetch.clone(),
            detail,
        };
        let mut resp = self
            .http
            .get(&fetch)
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(bad(format!("HTTP {}", resp.status())));
        }
        let mut pem = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable(e.to_string()))? {
            pem.extend_from_slice(&chunk);
            if pem.len() > MAX_CERT_BYTES {
                return Err(bad(format!("larger than {MAX_CERT_BYTES} bytes")));
            }
        }
        let cert = Arc::new(parse_cert(&pem).map_err(bad)?);
        let mut certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        if certs.len() >= MAX_CACHED_CERTS {
            certs.clear();
        }
        certs.insert(key.to_string(), cert.clone());
        Ok(cert)
    }

    fn cached(&self, key: &str) -> Option<Arc<SigningCert>> {
        let certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        certs.get(key).cloned()
    }
}

fn parse_cert(pem: &[u8]) -> Result<SigningCert, String> {
    use x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_PKCS1_RSAENCRYPTION {
        return Err(format!("the key is {}, not RSA", spki.algorithm.algorithm));
    }
    Ok(SigningCert {
        rsa_public_key: spki.subject_public_key.data.to_vec(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The canonical string AWS signs: `Key\nValue\n` for each signed field in
/// this order. The Subject is signed when present, which moto forgets.
pub fn string_to_sign(kind: SnsType, e: &Envelope) -> Result<String, RefusedSns> {
    let missing = |field| RefusedSns::Missing {
        kind: e.kind.clone(),
        message_id: e.message_id.clone(),
        field,
    };
    let mut fields: Vec<(&str, &str)> = vec![("Message", &e.message), ("MessageId", &e.message_id)];
    match kind {
        SnsType::Notification => {
            if let Some(subject) = &e.subject {
                fields.push(("Subject", subject));
            }
            fields.push(("Timestamp", &e.timestamp));
        }
        SnsType::SubscriptionConfirmation | SnsType::UnsubscribeConfirmation => {
            let url = e
                .subscribe_url
                .as_deref()
                .ok_or_else(|| missing("SubscribeURL"))?;
            let token = e.token.as_deref().ok_or_else(|| missing("Token"))?;
            fields.push(("SubscribeURL", url));
            fields.push(("Timestamp", &e.timestamp));
            fields.push(("Token", token));
        }
    }
    fields.push(("TopicArn", &e.topic_arn));
    fields.push(("Type", &e.kind));
    let mut s = String::new();
    for (k, v) in fields {
        s.push_str(k);
        s.push('\n');
        s.push_str(v);
        s.push('\n');
    }
    Ok(s)
}

/// `sns.<region>.amazonaws.com` for the topic's region (`.com.cn` in China).
pub fn sns_host_of(topic_arn: &str) -> Result<String, RefusedSns> {
    let bad = || RefusedSns::BadTopicArn(topic_arn.to_string());
    let parts: Vec<&str> = topic_arn.split(':').collect();
    let [_, partition, "sns", region, _, _] = parts.as_slice() else {
        return Err(bad());
    };
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        return Err(bad());
    }
    let domain = match *partition {
        "aws-cn" => "amazonaws.com.cn",
        _ => "amazonaws.com",
    };
    Ok(format!("sns.{region}.{domain}"))
}

/// An SNS-provided URL must be https on exactly the SNS host: no port, no
/// user, no longer host that merely starts with it.
pub fn check_sns_url(
    field: &'static str,
    url: &str,
    sns_host: &str,
) -> Result<url::Url, RefusedSns> {
    let parsed = url::Url::parse(url).map_err(|_| RefusedSns::BadUrl {
        field,
        url: url.to_string(),
    })?;
    if parsed.scheme() != "https" {
        return Err(RefusedSns::NotHttps {
            field,
            url: url.to_string(),
        });
    }
    let host = parsed.host_str().unwrap_or_default();
    let exact = host == sns_host
        && parsed.port().is_none()
        && parsed.username().is_empty()
        && parsed.password().is_none();
    if !exact {
        let shown = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        return Err(RefusedSns::WrongHost {
            field,
            host: shown,
            expected: sns_host.to_string(),
        });
    }
    Ok(parsed)
}

fn rounded(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn format_unix(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: &str) -> Envelope {
        Envelope {
            kind: kind.into(),
            message_id: "m-1".into(),
            topic_arn: "arn:aws:sns:us-east-1:123456789012:hints".into(),
            subject: None,
            message: "hello".into(),
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            signature_version: "2".into(),
            signature: String::new(),
            signing_cert_url: String::new(),
            subscribe_url: None,
            token: None,
            unsubscribe_url: None,
            message_attributes: None,
        }
    }

    #[test]
    fn notifications_sign_the_subject_only_when_present() {
        let mut e = envelope("Notification");
        let without = string_to_sign(SnsType::Notification, &e).unwrap();
        assert_eq!(
            without,
            "Message\nhello\nMessageId\nm-1\nTimestamp\n2026-01-01T00:00:00.000Z\n\
             TopicArn\narn:aws:sns:us-east-1:123456789012:hints\nType\nNotification\n"
        );
        e.subject = Some("http://a:1".into());
        let with = string_to_sign(SnsType::Notification, &e).unwrap();
        assert!(
            with.contains("MessageId\nm-1\nSubject\nhttp://a:1\nTimestamp\n"),
            "{with}"
        );
    }

    #[test]
    fn confirmations_sign_their_url_and_token() {
        let mut e = envelope("SubscriptionConfirmation");
        assert!(matches!(
            string_to_sign(SnsType::SubscriptionConfirmation, &e),
            Err(RefusedSns::Missing {
                field: "SubscribeURL",
                ..
            })
        ));
        e.subscribe_url =
            Some("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription".into());
        e.token = Some("tok".into());
        e.subject = Some("ignored".into());
        let s = string_to_sign(SnsType::SubscriptionConfirmation, &e).unwrap();
        assert_eq!(
            s,
            "Message\nhello\nMessageId\nm-1\nSubscribeURL\nhttps://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription\n\
             Timestamp\n2026-01-01T00:00:00.000Z\nToken\ntok\n\
             TopicArn\narn:aws:sns:us-east-1:123456789012:hints\nType\nSubscriptionConfirmation\n"
        );
    }

    #[test]
    fn only_the_exact_sns_host_of_the_topic_region_passes() {
        let host = sns_host_of("arn:aws:sns:us-east-1:123456789012:hints").unwrap();
        assert_eq!(host, "sns.us-east-1.amazonaws.com");
        let ok = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem";
        assert!(check_sns_url("SigningCertURL", ok, &host).is_ok());
        for (url, why) in [
            (
                "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
                "is not sns.us-east-1",
            ),
            ("https://evil.example/x.pem", "host `evil.example` is not"),
            (
                "https://sns.eu-west-1.amazonaws.com/x.pem",
                "is not sns.us-east-1",
            ),
            (
                "https://sns.us-east-1.amazonaws.com:8443/x.pem",
                ":8443` is not",
            ),
            ("https://a@sns.us-east-1.amazonaws.com/x.pem", "is not"),
            ("http://sns.us-east-1.amazonaws.com/x.pem", "is not https"),
            ("not a url", "is not a URL"),
        ] {
            let err = check_sns_url("SigningCertURL", url, &host)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
        assert_eq!(
            sns_host_of("arn:aws-cn:sns:cn-north-1:1:t").unwrap(),
            "sns.cn-north-1.amazonaws.com.cn"
        );
        assert!(sns_host_of("arn:aws:sns:us-east-1.evil.com:1:t").is_err());
        assert!(sns_host_of("arn:aws:sqs:us-east-1:1:t").is_err());
    }
}
