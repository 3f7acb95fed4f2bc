//! The client's error reports against real HTTP servers on loopback: what the
//! controller answers, an unreachable S3, and bodies too large (or endless) to
//! read whole. What S3 itself answers is tested against moto in tests/cli.rs.

use super::*;
use axum::{body::Body as AxumBody, http::StatusCode as Status, routing::get, Router};

/// Serves `app` on a loopback port until the test ends; returns its address.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A body that never ends: a reader without a cap would never return.
fn endless() -> AxumBody {
    let chunk = axum::body::Bytes::from(vec![b'x'; 1024]);
    AxumBody::from_stream(futures::stream::repeat_with(move || {
        Ok::<_, std::io::Error>(chunk.clone())
    }))
}

/// Stands where S3 would (a proxy in front of it, say) and answers endlessly.
/// What S3 itself answers is tested against moto (tests/cli.rs).
fn s3() -> Router {
    Router::new().route(
        "/bucket/endless",
        axum::routing::put(|| async { (Status::BAD_REQUEST, endless()) }),
    )
}

async fn upload(url: &str) -> ClientError {
    let client = Client::new("127.0.0.1:9");
    let body = Body::from("input archive");
    let sent = tokio::time::timeout(
        Duration::from_secs(20),
        client.upload_presigned_body(url, body, 13),
    );
    sent.await
        .expect("the upload answered (an error body is not read to its end)")
        .expect_err("S3 refused the upload")
}

#[tokio::test]
async fn an_endless_s3_error_body_is_read_to_four_kib_only() {
    let base = serve(s3()).await;
    let err = upload(&format!("{base}/bucket/endless")).await;
    let text = err.to_string();
    assert!(
        text.starts_with("S3 answered 400 Bad Request: xxxx"),
        "{text:.80}"
    );
    assert!(text.ends_with(" [...]"), "{text:.80}");
    let xs = text.bytes().filter(|&b| b == b'x').count();
    assert_eq!(xs, S3_ERROR_BYTES);
}

#[tokio::test]
async fn an_unreachable_s3_is_named_by_host_without_the_signature() {
    // A port just freed: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = upload(&format!("http://{addr}/bucket/key?X-Amz-Signature=secret")).await;
    let text = err.to_string();
    assert!(matches!(err, ClientError::Storage { .. }), "{err:?}");
    assert!(
        text.starts_with(&format!("uploading to S3 at {addr}: ")),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
    assert!(!text.contains("controller"), "{text}");
}

#[tokio::test]
async fn a_controller_error_is_its_message_and_an_endless_one_is_cut() {
    let app = Router::new()
        .route(
            "/v1/jobs/j-gone",
            get(|| async {
                let body = r#"{"error":"job j-gone not found"}"#;
                (Status::NOT_FOUND, body)
            }),
        )
        .route(
            "/v1/jobs/j-proxy",
            get(|| async { (Status::BAD_GATEWAY, endless()) }),
        );
    let client = Client::new(&serve(app).await);
    let err = client.job(&JobId::new("j-gone")).await.unwrap_err();
    assert_eq!(err.status(), Some(Status::NOT_FOUND));
    assert_eq!(err.to_string(), "job j-gone not found");

    let proxied = JobId::new("j-proxy");
    let read = tokio::time::timeout(Duration::from_secs(20), client.job(&proxied));
    let err = read.await.expect("answered").unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("controller answered 502 Bad Gateway: xxx"),
        "{text:.80}"
    );
    assert!(text.ends_with(" [...]"), "{text:.80}");
    let xs = text.bytes().filter(|&b| b == b'x').count();
    assert_eq!(xs, CONTROLLER_ERROR_BYTES);
}
