//! Calls to an agent go where its phone asked for them: the registered Contact,
//! not the address the REGISTER happened to come from (a phone that registers
//! from another port than it listens on, a third-party registration). The real
//! server runs in-process; the phone is two raw UDP sockets.

mod common;

use std::time::Duration;

use common::{call, final_response, request, rtp_of, start, start_with, wait_request};
use sip::auth::{Algorithm, Credentials, compute_response};
use tokio::net::UdpSocket;

/// Registers agent 1001 from `from` with its Contact on `contact`'s port (MD5 digest).
async fn register(server: std::net::SocketAddr, from: &UdpSocket, contact: &UdpSocket) {
    register_with(server, from, contact, "").await
}

/// [`register`] with `extra` header lines (each ending in CRLF) in both REGISTERs.
async fn register_with(
    server: std::net::SocketAddr,
    from: &UdpSocket,
    contact: &UdpSocket,
    extra: &str,
) {
    let listen = contact.local_addr().expect("addr");
    let headers = format!("Expires: 300\r\n{extra}");
    let first = request("REGISTER", "sip:127.0.0.1", from, &headers, "")
        .replace(
            "From: <sip:13800000002@127.0.0.1>",
            "From: <sip:1001@127.0.0.1>",
        )
        .replace("To: <sip:127.0.0.1>", "To: <sip:1001@127.0.0.1>")
        .replace(
            &format!(
                "Contact: <sip:13800000002@{};transport=udp>",
                from.local_addr().expect("addr")
            ),
            &format!("Contact: <sip:1001@{listen}>"),
        );
    assert!(
        first.contains(&format!("Contact: <sip:1001@{listen}>")),
        "{first}"
    );
    from.send_to(first.as_bytes(), server).await.expect("send");
    let challenge = final_response(from, 2000).await.expect("a challenge");
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("nonce")
        .to_owned();
    let mut creds = Credentials {
        username: "1001".into(),
        realm: "switchboard".into(),
        nonce,
        uri: "sip:127.0.0.1".into(),
        response: String::new(),
        algorithm: Algorithm::Md5,
        qop: Some("auth".into()),
        nc: Some("00000001".into()),
        cnonce: Some("c0ffee".into()),
        opaque: None,
    };
    creds.response = compute_response(&creds, "REGISTER", "demo-1001").expect("qop=auth");
    let second = first
        .replace("CSeq: 1 REGISTER", "CSeq: 2 REGISTER")
        .replace("branch=z9hG4bKregister", "branch=z9hG4bKregister2")
        .replace(
            "Expires: 300\r\n",
            &format!("Expires: 300\r\nAuthorization: {}\r\n", creds.to_header()),
        );
    assert!(extra.lines().all(|l| second.contains(l)), "{second}");
    from.send_to(second.as_bytes(), server).await.expect("send");
    let ok = final_response(from, 2000).await.expect("a verdict");
    assert!(ok.starts_with("SIP/2.0 200"), "registered: {ok}");
}

/// RFC 4733 digit `event` (0-9) to the IVR: three updates, then three end packets.
async fn press(rtp: &UdpSocket, to: std::net::SocketAddr, event: u8) {
    for (i, end) in [false, false, false, true, true, true]
        .into_iter()
        .enumerate()
    {
        let seq = 100 + i as u16;
        let mut p = vec![0x80, if i == 0 { 0x80 | 101 } else { 101 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&8000u32.to_be_bytes());
        p.extend_from_slice(&0x5eed_u32.to_be_bytes());
        let duration = 160 * (i as u16 + 1);
        p.extend_from_slice(&[event, if end { 0x8A } else { 0x0A }]);
        p.extend_from_slice(&duration.to_be_bytes());
        rtp.send_to(&p, to).await.expect("rtp");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A patient calls (`tag` names the call) and presses 1 for the queue; the patient's
/// signalling socket is returned (kept open for the call's length).
async fn patient_presses_1(server: std::net::SocketAddr, tag: &str) -> UdpSocket {
    let (patient, ok) = call(server, tag).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let media = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    tokio::time::sleep(Duration::from_millis(300)).await;
    press(&media, rtp_of(&ok), 1).await;
    patient
}

/// Registers from one socket with the Contact on another, then has a patient press 1:
/// the agent's INVITE arrives on one of them (which, and the other gets nothing).
async fn invite_goes_to_contact(server: &common::Server) -> bool {
    let registers_from = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let listens_on = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    register(server.sip, &registers_from, &listens_on).await;

    let _patient = patient_presses_1(server.sip, "contact").await;

    let contact = listens_on.local_addr().expect("addr");
    let (at_contact, at_source) = tokio::join!(
        wait_request(&listens_on, "INVITE", 8000),
        wait_request(&registers_from, "INVITE", 8000)
    );
    match (at_contact, at_source) {
        (Some(invite), None) => {
            assert!(
                invite.starts_with(&format!("INVITE sip:1001@{contact}")),
                "{invite}"
            );
            true
        }
        (None, Some(_)) => false,
        other => panic!("the INVITE went to exactly one place: {other:?}"),
    }
}

#[tokio::test]
async fn the_agent_is_called_at_its_registered_contact_not_where_it_registered_from() {
    let server = start(42300).await;
    assert!(
        invite_goes_to_contact(&server).await,
        "the INVITE went where the REGISTER came from, not to the Contact"
    );
}

#[tokio::test]
async fn with_nat_source_the_agent_is_called_where_it_registered_from() {
    let server = start_with(
        42400,
        &[(
            "realm = \"switchboard\"",
            "realm = \"switchboard\"\nnat = \"source\"",
        )],
    )
    .await;
    assert!(
        !invite_goes_to_contact(&server).await,
        "nat = \"source\" was not followed"
    );
}

/// The header lines of `message` named `name`, in order.
fn header_lines<'a>(message: &'a str, name: &str) -> Vec<&'a str> {
    message
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .collect()
}

/// A final response to `request` with `status`, as the phone behind a proxy would send it.
fn respond(request: &str, status: &str) -> String {
    let copy = |name: &str| {
        request
            .lines()
            .filter(|l| l.starts_with(&format!("{name}:")))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
    };
    format!(
        "SIP/2.0 {status}\r\n{}{}{};tag=busy\r\n{}{}Content-Length: 0\r\n\r\n",
        copy("Via"),
        copy("From"),
        copy("To").trim_end(),
        copy("Call-ID"),
        copy("CSeq"),
    )
}

#[tokio::test]
async fn an_agent_registered_through_a_proxy_is_called_through_it() {
    let server = start(42500).await;
    // An edge proxy (one socket) relays the REGISTER of a phone that listens elsewhere,
    // naming itself and a second proxy in Path (RFC 3327).
    let proxy = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let phone = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let at = proxy.local_addr().expect("addr");
    let path = format!("Path: <sip:{at};lr>\r\nPath: <sip:far.example.net;lr>\r\n");
    register_with(
        server.sip,
        &proxy,
        &phone,
        &format!("Require: path\r\n{path}"),
    )
    .await;

    let _patient = patient_presses_1(server.sip, "viaproxy").await;

    let (at_proxy, at_phone) = tokio::join!(
        wait_request(&proxy, "INVITE", 8000),
        wait_request(&phone, "INVITE", 1000)
    );
    assert!(at_phone.is_none(), "the proxy is skipped: {at_phone:?}");
    let invite = at_proxy.expect("the INVITE reaches the proxy");
    let contact = phone.local_addr().expect("addr");
    assert!(
        invite.starts_with(&format!("INVITE sip:1001@{contact}")),
        "for the phone's Contact: {invite}"
    );
    let route = [
        format!("<sip:{at};lr>"),
        "<sip:far.example.net;lr>".to_owned(),
    ];
    assert_eq!(header_lines(&invite, "Route"), route, "{invite}");

    // The phone is busy: the ACK of the refusal follows the same route.
    proxy
        .send_to(respond(&invite, "486 Busy Here").as_bytes(), server.sip)
        .await
        .expect("send");
    let ack = wait_request(&proxy, "ACK", 4000).await.expect("the ACK");
    assert_eq!(header_lines(&ack, "Route"), route, "{ack}");
}

/// Agent 1001 on two phones; a patient presses 1 and both ring. The desk phone refuses
/// with `status`; returns what reached the softphone within 2 s after: its CANCEL, if any.
async fn one_of_two_phones_refuses(rtp_base: u16, status: &str) -> Option<String> {
    let server = start(rtp_base).await;
    let desk = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let soft = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    // Each registers itself (its own REGISTER Call-ID): two devices of one agent.
    register(server.sip, &desk, &desk).await;
    register(server.sip, &soft, &soft).await;

    let _patient = patient_presses_1(server.sip, "twophones").await;
    let (at_desk, at_soft) = tokio::join!(
        wait_request(&desk, "INVITE", 8000),
        wait_request(&soft, "INVITE", 8000)
    );
    let invite = at_desk.expect("the desk phone rings");
    let ringing = at_soft.expect("the softphone rings too");
    // It says so (a CANCEL may only follow a provisional response, RFC 3261 §9.1).
    soft.send_to(respond(&ringing, "180 Ringing").as_bytes(), server.sip)
        .await
        .expect("send");
    desk.send_to(respond(&invite, status).as_bytes(), server.sip)
        .await
        .expect("send");
    wait_request(&soft, "CANCEL", 2000).await
}

#[tokio::test]
async fn an_agent_declining_on_one_phone_stops_the_other_ringing() {
    let cancel = one_of_two_phones_refuses(42600, "603 Decline").await;
    assert!(
        cancel.is_some(),
        "a 6xx declines everywhere (RFC 3261 §16.7): the softphone is cancelled"
    );
}

#[tokio::test]
async fn a_busy_phone_leaves_the_agents_other_phone_ringing() {
    let cancel = one_of_two_phones_refuses(42700, "486 Busy Here").await;
    assert!(
        cancel.is_none(),
        "a busy desk phone is no reason to stop the softphone: {cancel:?}"
    );
}
