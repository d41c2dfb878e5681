//! A call's life at the edges: refused when the adapter is full, ended when a
//! phone goes silent without a BYE. The real server runs in-process.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{final_response, recv, request, sdp, start_with};
use tokio::net::UdpSocket;

/// An INVITE with a PCMU offer from `s`, with its own Call-ID and branch.
fn invite(s: &UdpSocket, tag: &str) -> String {
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
fn ack_for(invite: &str, ok: &str) -> String {
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
async fn call(server: SocketAddr, tag: &str) -> (UdpSocket, String) {
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
fn rtp_of(ok: &str) -> SocketAddr {
    let port = ok
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse::<u16>().ok())
        .expect("m=audio port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits (bounded) for a request from the server; answers it 200 OK.
async fn wait_request(s: &UdpSocket, method: &str, ms: u64) -> Option<String> {
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

#[tokio::test]
async fn a_call_beyond_capacity_gets_503_with_retry_after_and_room_comes_back() {
    let server = start_with(
        42000,
        &[
            ("max_calls = 0 ", "max_calls = 1 "),
            ("retry_after_s = 5 ", "retry_after_s = 7 "),
        ],
    )
    .await;
    let (first, ok) = call(server.sip, "cap1").await;
    assert!(
        ok.starts_with("SIP/2.0 200"),
        "the first call is carried: {ok}"
    );
    let (_second, refused) = call(server.sip, "cap2").await;
    assert!(
        refused.starts_with("SIP/2.0 503"),
        "the second call is refused: {refused}"
    );
    assert!(
        refused.lines().any(|l| l == "Retry-After: 7"),
        "with the configured Retry-After: {refused}"
    );
    assert!(
        !refused.contains("m=audio"),
        "a refused call gets no media: {refused}"
    );
    // The first caller hangs up: the next call is carried again.
    let bye = request("BYE", "sip:switchboard@127.0.0.1", &first, "", "")
        .replace("Call-ID: edge-BYE-", "Call-ID: cap1-")
        .replace("CSeq: 1 BYE", "CSeq: 2 BYE")
        .replace(
            "To: <sip:switchboard@127.0.0.1>",
            ok.lines().find(|l| l.starts_with("To:")).expect("To"),
        );
    first
        .send_to(bye.as_bytes(), server.sip)
        .await
        .expect("bye");
    let bye_ok = final_response(&first, 3000).await.expect("BYE answered");
    assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
    let mut carried = None;
    for attempt in 0..20 {
        let (_s, r) = call(server.sip, &format!("cap3x{attempt}")).await;
        if r.starts_with("SIP/2.0 200") {
            carried = Some(r);
            break;
        }
        // The first call's media may still be finishing: bounded retry.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(carried.is_some(), "room for a call once the first ended");
}

#[tokio::test]
async fn a_caller_who_goes_silent_without_bye_is_hung_up_and_one_who_talks_is_not() {
    let server = start_with(
        42100,
        &[("media_timeout_ms = 30000", "media_timeout_ms = 1500")],
    )
    .await;
    let (silent, ok_silent) = call(server.sip, "quiet").await;
    assert!(ok_silent.starts_with("SIP/2.0 200"), "{ok_silent}");
    let (talker, ok_talker) = call(server.sip, "talky").await;
    assert!(ok_talker.starts_with("SIP/2.0 200"), "{ok_talker}");
    let rtp = rtp_of(&ok_talker);
    // The talker sends 20 ms PCMU packets for 4 s; the silent one sends nothing.
    let mut packet = [0xFFu8; 172];
    packet[0] = 0x80;
    packet[1] = 0; // PCMU, no marker
    let mut bye_to_talker = None;
    for i in 0..200u16 {
        packet[2..4].copy_from_slice(&i.to_be_bytes());
        packet[4..8].copy_from_slice(&(u32::from(i) * 160).to_be_bytes());
        talker.send_to(&packet, rtp).await.expect("rtp");
        if let Some(m) = recv(&talker, 20).await
            && m.starts_with("BYE ")
        {
            bye_to_talker = Some(m);
            break;
        }
    }
    assert!(
        bye_to_talker.is_none(),
        "a caller still sending RTP keeps the call: {bye_to_talker:?}"
    );
    // The silent caller was hung up by then (1.5 s of silence, checked every 20 ms).
    let bye = wait_request(&silent, "BYE", 3000).await;
    let bye = bye.expect("the silent caller gets a BYE");
    assert!(bye.contains("Call-ID: quiet-"), "{bye}");
}
