//! The SIP surface against raw messages: what a misbehaving or unusual phone
//! meets. Each test runs the real server in-process on its own loopback ports.

mod common;

use std::time::Duration;

use common::{final_response, recv, request, request_from, sdp, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

#[tokio::test]
async fn garbage_is_ignored_and_the_server_keeps_answering() {
    let server = start(41000).await;
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let invite = request("INVITE", "sip:clinic@127.0.0.1", &s, "", "");
    let junk: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02garbage".to_vec(),
        b"INVITE sip:x SIP/2.0\r\n".to_vec(),
        invite.as_bytes()[..invite.len() / 2].to_vec(),
        b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
        vec![0xFF; 4000],
        "INVITE sip:clinic@127.0.0.1 SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n"
            .into(),
    ];
    for j in &junk {
        s.send_to(j, server.sip).await.expect("send");
    }
    let options = request("OPTIONS", "sip:clinic@127.0.0.1", &s, "", "");
    s.send_to(options.as_bytes(), server.sip)
        .await
        .expect("send");
    let mut answered = false;
    for _ in 0..10 {
        match recv(&s, 500).await {
            Some(r) if r.starts_with("SIP/2.0 200") && r.contains("OPTIONS") => {
                answered = true;
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    assert!(answered, "OPTIONS after garbage must still get 200 OK");
}

#[tokio::test]
async fn an_offer_with_no_common_codec_gets_488() {
    let server = start(41100).await;
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let body = sdp(
        "111 9",
        "a=rtpmap:111 opus/48000/2\r\na=rtpmap:9 G722/8000\r\n",
    );
    let invite = request(
        "INVITE",
        "sip:clinic@127.0.0.1",
        &s,
        "Content-Type: application/sdp\r\n",
        &body,
    );
    s.send_to(invite.as_bytes(), server.sip)
        .await
        .expect("send");
    let response = final_response(&s, 3000).await.expect("a final response");
    assert!(response.starts_with("SIP/2.0 488"), "got: {response}");
}

#[tokio::test]
async fn a_call_over_tcp_is_answered_with_loopback_sdp_and_ends_with_bye() {
    let server = start(41200).await;
    let mut tcp = TcpStream::connect(server.sip).await.expect("connect");
    let local = tcp.local_addr().expect("addr");
    let body = sdp(
        "8 101",
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    let invite = request_from(
        "INVITE",
        "sip:clinic@127.0.0.1",
        "TCP",
        local,
        "Content-Type: application/sdp\r\n",
        &body,
    );
    tcp.write_all(invite.as_bytes()).await.expect("write");
    let mut got = String::new();
    let mut buf = vec![0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !got.contains("SIP/2.0 200") || !got.contains("m=audio") {
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .expect("200 OK within 3 s")
            .expect("read");
        assert!(n > 0, "connection closed early; got: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let ok = &got[got.find("SIP/2.0 200").expect("200")..];
    assert!(
        ok.contains("c=IN IP4 127.0.0.1"),
        "SDP must advertise loopback: {ok}"
    );
    assert!(
        ok.contains("RTP/AVP 8 101"),
        "answer keeps the offered PCMA and telephone-event: {ok}"
    );
    assert!(
        ok.lines().any(|l| l.starts_with("Contact:")
            && l.contains("127.0.0.1")
            && l.contains("transport=tcp")),
        "Contact advertises 127.0.0.1 over TCP: {ok}"
    );
    let to_line = ok
        .lines()
        .find(|l| l.starts_with("To:"))
        .expect("To header")
        .to_owned();
    let ack_and_bye = |method: &str, cseq: u32| {
        format!(
            "{method} sip:switchboard@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/TCP {local};branch=z9hG4bK{method}{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:13800000002@127.0.0.1>;tag=edge{port}\r\n\
             {to_line}\r\n\
             Call-ID: edge-INVITE-{port}\r\n\
             CSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            port = local.port()
        )
    };
    tcp.write_all(ack_and_bye("ACK", 1).as_bytes())
        .await
        .expect("ack");
    tcp.write_all(ack_and_bye("BYE", 2).as_bytes())
        .await
        .expect("bye");
    let mut after = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !after.contains("CSeq: 2 BYE") {
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .expect("BYE answered within 3 s")
            .expect("read");
        assert!(n > 0, "connection closed early");
        after.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let bye_response = &after[..after.find("CSeq: 2 BYE").expect("bye response")];
    let status = bye_response
        .rfind("SIP/2.0 ")
        .map(|i| &bye_response[i..i + 11]);
    assert_eq!(status, Some("SIP/2.0 200"), "BYE gets 200 OK: {after}");
}

#[tokio::test]
async fn register_with_a_wrong_password_is_challenged_then_forbidden() {
    let server = start(41300).await;
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let register = request("REGISTER", "sip:127.0.0.1", &s, "Expires: 300\r\n", "")
        .replace(
            "From: <sip:13800000002@127.0.0.1>",
            "From: <sip:1001@127.0.0.1>",
        )
        .replace("To: <sip:127.0.0.1>", "To: <sip:1001@127.0.0.1>");
    s.send_to(register.as_bytes(), server.sip)
        .await
        .expect("send");
    let challenge = final_response(&s, 2000).await.expect("a challenge");
    assert!(challenge.starts_with("SIP/2.0 401"), "got: {challenge}");
    let www = challenge
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:") && l.contains("MD5"))
        .expect("an MD5 challenge");
    let nonce = www
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("nonce");
    let auth = format!(
        "Authorization: Digest username=\"1001\", realm=\"switchboard\", nonce=\"{nonce}\", \
         uri=\"sip:127.0.0.1\", response=\"00000000000000000000000000000000\", algorithm=MD5\r\n"
    );
    let second = register
        .replace("CSeq: 1 REGISTER", "CSeq: 2 REGISTER")
        .replace("branch=z9hG4bKregister", "branch=z9hG4bKregister2")
        .replace("Expires: 300\r\n", &format!("Expires: 300\r\n{auth}"));
    s.send_to(second.as_bytes(), server.sip)
        .await
        .expect("send");
    let verdict = final_response(&s, 2000).await.expect("a verdict");
    assert!(
        verdict.starts_with("SIP/2.0 403") || verdict.starts_with("SIP/2.0 401"),
        "a wrong password is refused: {verdict}"
    );
    assert!(!verdict.starts_with("SIP/2.0 200"));
}

/// Whether the server closed `stream` within `ms` (EOF or reset), reading whatever comes.
async fn closed_within(stream: &mut TcpStream, ms: u64) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// An OPTIONS over `stream`, answered 200 on it.
async fn options_over(stream: &mut TcpStream) -> bool {
    let local = stream.local_addr().expect("addr");
    let options = request_from("OPTIONS", "sip:clinic@127.0.0.1", "TCP", local, "", "");
    if stream.write_all(options.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"),
        _ => false,
    }
}

#[tokio::test]
async fn tcp_connections_beyond_the_per_source_cap_are_closed_and_idle_ones_are_dropped() {
    let server = common::start_with(
        41300,
        &[(
            "retry_after_s = 5 ",
            "tcp_max_per_source = 3\ntcp_idle_timeout_s = 2\nretry_after_s = 5 ",
        )],
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(server.sip).await.expect("connect");
        assert!(
            options_over(&mut s).await,
            "a connection within the cap is served"
        );
        open.push(s);
    }
    let mut fourth = TcpStream::connect(server.sip)
        .await
        .expect("the kernel accepts");
    assert!(
        closed_within(&mut fourth, 2000).await,
        "the fourth connection from one source was not closed"
    );
    // A connection that keeps sending CRLF keep-alives stays; silent ones go after 2 s.
    let mut alive = open.pop().expect("one");
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        alive.write_all(b"\r\n\r\n").await.expect("keep-alive");
    }
    for s in &mut open {
        assert!(
            closed_within(s, 1500).await,
            "an idle connection was kept past the idle timeout"
        );
    }
    assert!(
        options_over(&mut alive).await,
        "the connection that kept alive was closed"
    );
    // Room again: a new connection is served.
    let mut again = TcpStream::connect(server.sip).await.expect("connect");
    assert!(
        options_over(&mut again).await,
        "no room came back after the idle ones closed"
    );
}

#[tokio::test]
async fn a_tcp_message_that_never_completes_does_not_hold_the_connection_forever() {
    let server = common::start_with(
        41400,
        &[(
            "retry_after_s = 5 ",
            "tcp_idle_timeout_s = 3\nretry_after_s = 5 ",
        )],
    )
    .await;
    let mut s = TcpStream::connect(server.sip).await.expect("connect");
    // Half a message, then a byte every half second: never idle, never complete.
    s.write_all(b"OPTIONS sip:clinic@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1")
        .await
        .expect("write");
    let started = tokio::time::Instant::now();
    let mut closed = false;
    for _ in 0..20 {
        if s.write_all(b"0").await.is_err() || closed_within(&mut s, 500).await {
            closed = true;
            break;
        }
    }
    let after = started.elapsed();
    assert!(
        closed,
        "a slow sender kept its half message open for {after:?}"
    );
    assert!(
        after >= Duration::from_secs(2),
        "closed after {after:?}, before the limit"
    );
}
