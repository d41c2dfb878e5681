//! HTTPS and WSS with a certificate from files, over real sockets.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::http::tls::{TlsError, TlsListener, server_config};

/// A self-signed certificate for 127.0.0.1 written as PEM files in `dir`; its DER for clients.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("certificate");
    let cert = dir.join("desk.crt");
    let key = dir.join("desk.key");
    std::fs::write(&cert, made.cert.pem()).expect("write");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write");
    (cert, key, made.cert.der().to_vec())
}

fn client(der: &[u8]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
        .expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_to(
    addr: std::net::SocketAddr,
    der: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    client(der).connect(name, tcp).await.expect("handshake")
}

#[tokio::test]
async fn the_desk_is_served_over_https_and_its_websocket_over_wss() {
    let f = fixture();
    let (cert, key, der) = certificate(f.dir.path());
    let config = server_config(&cert, &key).expect("config");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(crate::http::serve_tls(
        TlsListener::new(tcp, config).expect("listener"),
        f.state.clone(),
        shutdown.clone(),
    ));

    // A client that opens a connection and never says hello holds nobody up.
    let _silent = tokio::net::TcpStream::connect(addr).await.expect("connect");

    let mut tls = tls_to(addr, &der).await;
    tls.write_all(b"GET /desk HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut page = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut page))
        .await
        .expect("in time")
        .ok();
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.starts_with("HTTP/1.1 200"),
        "{}",
        &page[..page.len().min(200)]
    );
    assert!(page.contains("const DISPOSITIONS"), "the desk page");

    // The desk's WebSocket over the same TLS: authenticated as on plain HTTP.
    let token = f.token("1001", Role::Agent);
    let stream = tls_to(addr, &der).await;
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("wss://127.0.0.1:{}/ws/desk?token={token}", addr.port()),
        stream,
    )
    .await
    .expect("upgrade");
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("message");
    let first: Value = serde_json::from_str(first.to_text().expect("text")).expect("json");
    assert_eq!(first["event"], "state", "{first}");
    let stream = tls_to(addr, &der).await;
    let refused = tokio_tungstenite::client_async(
        format!("wss://127.0.0.1:{}/ws/desk?token=nope", addr.port()),
        stream,
    )
    .await;
    assert!(refused.is_err(), "no token, no socket");

    shutdown.cancel();
    drop(ws);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

#[test]
fn a_certificate_or_key_that_cannot_be_used_says_which_file_and_why() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key, _) = certificate(dir.path());
    let missing = dir.path().join("nope.pem");
    assert!(matches!(
        server_config(&missing, &key),
        Err(TlsError::Read { .. })
    ));
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a pem file").expect("write");
    let e = server_config(&junk, &key).expect_err("no certificate");
    assert!(
        e.to_string().contains("junk.pem: no PEM certificate"),
        "{e}"
    );
    let e = server_config(&cert, &junk).expect_err("no key");
    assert!(
        e.to_string().contains("junk.pem: no PEM private key"),
        "{e}"
    );
    // A key of another certificate.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("dir");
    let (_, other_key, _) = certificate(&other);
    let e = server_config(&cert, &other_key).expect_err("mismatch");
    assert!(matches!(e, TlsError::Rustls(_)), "{e}");
}
