//! Shared by the integration tests: the real server in-process on its own
//! loopback ports, and raw SIP messages to drive it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use switchboard::config::Config;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

pub struct Server {
    pub sip: SocketAddr,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn free_port() -> u16 {
    // Bind both UDP and TCP on the same port so SIP can use it for both.
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair on loopback");
}

pub async fn start(rtp_base: u16) -> Server {
    start_with(rtp_base, &[]).await
}

/// The demo config on free ports, with `(demo line, replacement)` edits.
pub async fn start_with(rtp_base: u16, edits: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let sip_port = free_port();
    // Each probe's socket is closed before the next: the same port can come back.
    let http_port = std::iter::repeat_with(free_port)
        .find(|p| *p != sip_port)
        .unwrap_or_else(free_port);
    let text = switchboard::config::DEMO_CONFIG
        .replace("127.0.0.1:5060", &format!("127.0.0.1:{sip_port}"))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{http_port}"))
        .replace(
            "[20000, 23999]",
            &format!("[{rtp_base}, {}]", rtp_base + 49),
        )
        .replace(
            "data/switchboard.db",
            &dir.path().join("db.sqlite").to_string_lossy(),
        )
        .replace(
            "data/recordings",
            &dir.path().join("recordings").to_string_lossy(),
        );
    // Calls placed back to back reach the same agent at once: the demo's wrap-up is off
    // unless a test edits it in.
    let mut text = if edits.iter().any(|(from, _)| from.contains("wrap_up_ms")) {
        text
    } else {
        text.replace("wrap_up_ms = 10000", "wrap_up_ms = 0")
    };
    // Likewise the announcements over the hold music, which tests of hold audio don't expect.
    if !edits
        .iter()
        .any(|(from, _)| from.contains("announce_every_ms"))
    {
        text = text.replace("announce_every_ms = 30000", "announce_every_ms = 0");
    }
    for (from, to) in edits {
        assert!(text.contains(from), "demo config has no {from:?}");
        text = text.replace(from, to);
    }
    let config = match Config::check_str(&text, "test.toml") {
        Ok(c) => c,
        Err(problems) => panic!("test config invalid: {problems:?}"),
    };
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = switchboard::serve::run(config, token).await {
            eprintln!("server stopped: {e:#}");
        }
    });
    let sip = SocketAddr::from(([127, 0, 0, 1], sip_port));
    let server = Server {
        sip,
        shutdown,
        _dir: dir,
    };
    // Ready once it answers OPTIONS (bounded).
    let probe = UdpSocket::bind("127.0.0.1:0").await.expect("probe socket");
    for _ in 0..100 {
        let options = request("OPTIONS", "sip:clinic@127.0.0.1", &probe, "", "");
        let _ = probe.send_to(options.as_bytes(), sip).await;
        if let Some(r) = recv(&probe, 100).await
            && r.starts_with("SIP/2.0 200")
        {
            return server;
        }
    }
    panic!("server did not come up");
}

pub fn request(method: &str, uri: &str, from: &UdpSocket, extra: &str, body: &str) -> String {
    let local = from.local_addr().expect("addr");
    request_from(method, uri, "UDP", local, extra, body)
}

pub fn request_from(
    method: &str,
    uri: &str,
    transport: &str,
    local: SocketAddr,
    extra: &str,
    body: &str,
) -> String {
    let branch = format!("z9hG4bK{}{}", method.to_lowercase(), local.port());
    format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:13800000002@127.0.0.1>;tag=edge{port}\r\n\
         To: <{uri}>\r\n\
         Call-ID: edge-{method}-{port}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:13800000002@{local};transport={t}>\r\n\
         {extra}\
         Content-Length: {len}\r\n\r\n{body}",
        port = local.port(),
        t = transport.to_lowercase(),
        len = body.len(),
    )
}

pub async fn recv(socket: &UdpSocket, ms: u64) -> Option<String> {
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_millis(ms), socket.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// Responses until one with a final status (>= 200) or the time runs out.
pub async fn final_response(socket: &UdpSocket, ms: u64) -> Option<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    while tokio::time::Instant::now() < deadline {
        let r = recv(socket, 200).await?;
        if !r.starts_with("SIP/2.0 1") {
            return Some(r);
        }
    }
    None
}

pub fn sdp(codecs: &str, rtpmaps: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP {codecs}\r\n{rtpmaps}a=sendrecv\r\n"
    )
}

/// An INVITE with a PCMU offer from `s`, with its own Call-ID and branch.
pub fn invite(s: &UdpSocket, tag: &str) -> String {
    let body = sdp(
        "0 101",
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    request(
        "INVITE",
        "sip:clinic@127.0.0.1",
        s,
        "Content-Type: application/sdp\r\n",
        &body,
    )
    .replace("Call-ID: edge-INVITE-", &format!("Call-ID: {tag}-"))
    .replace("branch=z9hG4bKinvite", &format!("branch=z9hG4bK{tag}"))
}

/// The ACK for a 200 OK to `invite`.
pub fn ack_for(invite: &str, ok: &str) -> String {
    let header = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    format!(
        "ACK sip:switchboard@127.0.0.1 SIP/2.0\r\n{via};branch=z9hG4bKack{n}\r\n\
         Max-Forwards: 70\r\n{from}\r\n{to}\r\n{cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        via = header(invite, "Via:")
            .split(";branch")
            .next()
            .unwrap_or_default(),
        n = invite.len(),
        from = header(invite, "From:"),
        to = header(ok, "To:"),
        cid = header(invite, "Call-ID:"),
    )
}

/// Places a call from a new socket: INVITE, the final response, and the ACK if it was 2xx.
pub async fn call(server: SocketAddr, tag: &str) -> (UdpSocket, String) {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let inv = invite(&s, tag);
    s.send_to(inv.as_bytes(), server).await.expect("send");
    let response = final_response(&s, 3000).await.expect("a final response");
    if response.starts_with("SIP/2.0 200") {
        s.send_to(ack_for(&inv, &response).as_bytes(), server)
            .await
            .expect("ack");
    }
    (s, response)
}

/// The RTP address in a 200 OK's SDP answer.
pub fn rtp_of(ok: &str) -> SocketAddr {
    let port = ok
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse::<u16>().ok())
        .expect("m=audio port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits (bounded) for a request from the server; answers it 200 OK.
pub async fn wait_request(s: &UdpSocket, method: &str, ms: u64) -> Option<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    while tokio::time::Instant::now() < deadline {
        let Some(m) = recv(s, 100).await else {
            continue;
        };
        if m.starts_with(&format!("{method} ")) {
            return Some(m);
        }
    }
    None
}
