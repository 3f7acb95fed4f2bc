//! IMDSv2 against moto's instance metadata paths: the token flow, the identity a
//! worker logs, and the public address a controller on EC2 advertises.
//!
//! The SDK's IMDS client (rightly) insists on the `x-aws-ec2-metadata-token-ttl-seconds`
//! header that the real service sends with a token; moto leaves it out. A relay
//! on loopback adds it to moto's token answer and passes everything else through.

#![cfg(feature = "aws")]

mod common;

use common::moto::Moto;

/// Starts the relay in front of `moto`; returns its URL.
fn imds_relay(moto: &Moto) -> String {
    use axum::{body::Bytes, http::HeaderMap, routing::any, Router};
    let upstream = moto.url.clone();
    let app = Router::new().fallback(any(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let upstream = upstream.clone();
            async move {
                let mut req = reqwest::Client::new().request(method, format!("{upstream}{uri}"));
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                let resp = req.body(body).send().await.expect("moto answers");
                let status = resp.status();
                let ttl = headers.get("x-aws-ec2-metadata-token-ttl-seconds").cloned();
                let body = resp.bytes().await.expect("body");
                let mut out = axum::response::Response::new(axum::body::Body::from(body));
                *out.status_mut() = status;
                if let Some(ttl) = ttl.filter(|_| uri.path() == "/latest/api/token") {
                    out.headers_mut()
                        .insert("x-aws-ec2-metadata-token-ttl-seconds", ttl);
                }
                out
            }
        },
    ));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    format!("http://{}", rx.recv().expect("relay address"))
}

#[test]
fn the_instance_identity_comes_from_the_metadata_service() {
    let moto = Moto::start();
    let relay = imds_relay(&moto);
    let id = common::block_on(drover::metadata::identity(Some(&relay))).expect("identity");
    assert_eq!(id.instance_id, "i-fake");
    assert_eq!(id.region, "us-east-1");
    assert_eq!(
        id.public_hostname.as_deref(),
        Some("moto-instance.compute-1.amazonaws.com")
    );
}

#[test]
fn a_controller_on_ec2_advertises_its_public_hostname() {
    let moto = Moto::start();
    let mut config = drover::config::ControllerConfig {
        fleet_provider: drover::config::FleetProvider::Ec2,
        ..Default::default()
    };
    config.aws.imds_endpoint = Some(imds_relay(&moto));
    let addr = "0.0.0.0:7700".parse().expect("addr");
    let url = common::block_on(drover::runtime::backends::public_url(&config, addr));
    assert_eq!(url, "http://moto-instance.compute-1.amazonaws.com:7700");
    config.public_url = Some("http://10.1.2.3:7700".into());
    let url = common::block_on(drover::runtime::backends::public_url(&config, addr));
    assert_eq!(url, "http://10.1.2.3:7700", "public_url wins");
}

#[test]
fn without_a_metadata_service_the_listening_address_is_used() {
    let mut config = drover::config::ControllerConfig {
        fleet_provider: drover::config::FleetProvider::Ec2,
        ..Default::default()
    };
    // A closed port: nothing answers.
    config.aws.imds_endpoint = Some("http://127.0.0.1:9".into());
    let addr = "127.0.0.1:7700".parse().expect("addr");
    let url = common::block_on(drover::runtime::backends::public_url(&config, addr));
    assert_eq!(url, "http://127.0.0.1:7700");
}
