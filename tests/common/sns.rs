//! Signed SNS deliveries for the tests: a TEST-ONLY key, a certificate for it,
//! AWS's canonical string to sign, written out independently of drover's
//! receiver, and SignatureVersion 2 signing.

use base64::Engine as _;
use serde_json::{json, Value};

pub const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";

/// A TEST-ONLY RSA 2048 key (made with `openssl genpkey` for these tests; it
/// signs nothing else). rcgen with ring cannot generate RSA keys, and ring
/// cannot sign with SHA1, which the SignatureVersion 1 fixture below needs.
pub const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCZeJsR9FWoKHZk\n\
Ab1TPrG4ePg04w55gFj6I4IqwcbIKHWBsDcCac1xvlVxpV9CJW7qBVILRmWMOeRn\n\
iP+7T2ZNbAI9KY24W5MB66Mk06sj71RfLUZUJCAyTY2JvRF2wkEFdnLSTBuyUwBl\n\
IQlatuFbUICt4/RYc3K2lYoJXJ/BJaunZD4uF3wV3TqFeX5Kn3l41YAsQWutiR+Q\n\
eAX+q1nTuIdXmPuVZ/RvZefguObx/bOA996k94MP9BhoosLb3HfXquuHRfIhHBmy\n\
rgcBFVJtdC07ik4zzIuu7HSO0RKHQS3eRsOHtxjtHFFLaf4fYV9JIOm0eCiK+Gew\n\
btWaXmUzAgMBAAECggEACWyjFSysb+mgL479ydVhQ4NGNrU0x9hOXnn8vdRteRAm\n\
+yJPlnnZ0GDQTWzK1zyGPZ+7BI87oCtT79m1XpLHJPz7fDcHiWkyM119hL7s1QWW\n\
6EtW9MbNJVmm1e0C3AicxpGaBnj/AGnhbdRkByqQ1zMv273SXPYl9rljIyUJeGpX\n\
5oI2LWwzI+DPLx4gF91ejqrfCemofhpBrhW+rlbBK5FdL7+SaSL0UuMhzrAmUIbm\n\
qFV2mpQJoQKEwI+SjYj0Uhl2M/4kwgjtCFiE4sun9bDvTgAk/LrrDSgqy1DG3oUE\n\
+zxHUSAjTip4tvBiQAeV3Db5Q3auHupclpjQ+3WyNQKBgQDS7oJN+cc9dBqUuh91\n\
SbiDwG5G6RGofrmuXIOAR2+DYaTkBSaVAUD8mjPu5cseb4vEAPksfImIaawEKLeR\n\
DVcpiiN5gUAFMC5hDs6zZjZqU9x18ZET9mHerPTCNa6U9bJ548d11VVJbcwzOy2p\n\
qnpcWGPprpVlq5eAiynjISyeDQKBgQC6QyHzR+nLz2dtJ2h2GJFQPE3MV+k5e0k0\n\
0KHgIfG7IuEtw06cF/YmT2zlLU+dqB7ZQNJ1eJHXmOHXLbzAcji6Z8AaXw4+GLys\n\
YLpzGpkDr05v4/IamgoY6v2FJ3NT2mX+CV2WL9s/RfNZaufwTr8igPxDEoQahYes\n\
VyVcDJGAPwKBgQCYhNW7xEyI5xcBS8PLb074FYCnzYdzKo7gwQxlCUJc4ZH1PrQz\n\
MgDnpii/KXHBxC5vv7RssnBQLviu2TJCtD6+TqBwD0FXfwtKKwbTOalHIPRcZBvf\n\
L1x9QtqIQ4DFPROch1OGpIdS3Q22Tagq8pYfh9pW8mIcbgLSc84J6cb1UQKBgDXV\n\
vXRRbrOnqJ8V6s1nYGiuZVYQeqpQheIsAv2DEhkiha7yakAXdN+xySmcJQzOUMw+\n\
PhYR2SVVXMESySFeYiMOZam5m6Y7BB1Wf81Q/LTh8GvKmGkz6IM3ODtKIb00vJHm\n\
JxSHlHj/QMyxZ4Q/XmMcoMzKB0CbI5GeRoAKaeuFAoGAYnzBuS2B0u/7f+EcKblx\n\
Owm7SgoRlZu7KUKzw3Uvnx0dY6Ficz9G8pmIpZaz1FRYb9VQdOAfX5eLh8GkNefv\n\
8fMsMBKz1R/sZFSq5KQ2h59vD3X1cpmwxt9Gitf6MLO+6qQDrzxxigv1fKiQ9t8Y\n\
GIXfAgzXp2wqzrxu7HAbMJo=\n\
-----END PRIVATE KEY-----";

pub fn key_der() -> Vec<u8> {
    let b64: String = TEST_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("the test key is base64")
}

/// A self-signed certificate for TEST_KEY_PEM, valid between the two dates.
pub fn cert_pem(from: (i32, u8, u8), to: (i32, u8, u8)) -> String {
    let key = rcgen::KeyPair::from_pem(TEST_KEY_PEM).expect("rcgen reads the test key");
    let mut params =
        rcgen::CertificateParams::new(vec!["sns.amazonaws.com".to_string()]).expect("params");
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    params
        .self_signed(&key)
        .expect("self-signed certificate")
        .pem()
}

/// AWS's canonical string, written out here independently of the receiver's.
pub fn canonical(m: &Value) -> String {
    let keys: &[&str] = match m["Type"].as_str() {
        Some("Notification") => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        _ => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
    };
    keys.iter()
        .filter_map(|k| m[*k].as_str().map(|v| format!("{k}\n{v}\n")))
        .collect()
}

/// Signs with SHA256 (SignatureVersion 2) under the test key.
pub fn sign_v2(m: &mut Value) {
    let key = ring::signature::RsaKeyPair::from_pkcs8(&key_der()).expect("ring reads the test key");
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        canonical(m).as_bytes(),
        &mut sig,
    )
    .expect("signing");
    m["SignatureVersion"] = json!("2");
    m["Signature"] = json!(base64::engine::general_purpose::STANDARD.encode(sig));
}

/// `POST <base>/sns` of a body as SNS sends it; the status and the text.
pub async fn post_sns(base: &str, body: &Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/sns"))
        .header("Content-Type", "text/plain; charset=UTF-8")
        .header("x-amz-sns-message-type", "Notification")
        .body(body.to_string())
        .send()
        .await
        .expect("POST /sns");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}
