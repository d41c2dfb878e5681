//! `serve` with `[http] https`: the real server answers over TLS with the configured
//! certificate, beside plain HTTP on loopback.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn serve_answers_https_with_the_configured_certificate() {
    let certs = tempfile::tempdir().expect("dir");
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("cert");
    let (cert, key) = (certs.path().join("desk.crt"), certs.path().join("desk.key"));
    std::fs::write(&cert, made.cert.pem()).expect("write");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write");
    let https_port = common::free_port();
    let https = format!(
        "[http]\nhttps = \"127.0.0.1:{https_port}\"\ntls_cert = {:?}\ntls_key = {:?}",
        cert.to_string_lossy(),
        key.to_string_lossy()
    );
    let _server = common::start_with(22400, &[("[http]", &https)]).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.cert.der().clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut answer = String::new();
    // The listener is up by the time SIP answers OPTIONS, but allow a moment.
    for _ in 0..50 {
        let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", https_port)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut bytes)).await;
        answer = String::from_utf8_lossy(&bytes).into_owned();
        break;
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"sip\":true"), "{answer}");
}
