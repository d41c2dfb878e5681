//! Real-world messages (PJSIP, Linphone, MicroSIP, Zoiper), round trips and hostile input.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::transport::Transport;

fn crlf(s: &str) -> Vec<u8> {
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

fn req(bytes: &[u8]) -> Request {
    match parse(bytes) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn resp(bytes: &[u8]) -> Response {
    match parse(bytes) {
        Ok(SipMessage::Response(r)) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// parse(to_bytes(m)) == m, and the Content-Length written matches the body.
fn assert_round_trip(m: &SipMessage) {
    let bytes = m.to_bytes();
    let again = parse(&bytes).expect("our own output parses");
    assert_eq!(
        &again,
        m,
        "round trip changed the message:\n{}",
        String::from_utf8_lossy(&bytes)
    );
    let text = String::from_utf8_lossy(&bytes);
    let body_len = match m {
        SipMessage::Request(r) => r.body().len(),
        SipMessage::Response(r) => r.body().len(),
    };
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    assert_eq!(
        head.split("\r\n")
            .filter(|l| l.starts_with("Content-Length:"))
            .count(),
        1
    );
    assert!(head.ends_with(&format!("\r\nContent-Length: {body_len}")));
}

pub(crate) const PJSIP_REGISTER: &str = "REGISTER sip:127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5062;rport;branch=z9hG4bKPj3c8d2e7a-8d1b-4f0e-9a51-0c1f5d4b6e21
Max-Forwards: 70
From: <sip:1001@127.0.0.1>;tag=2b0f7c1d-5e4a-4c61-8a7e-1f2d3c4b5a69
To: <sip:1001@127.0.0.1>
Call-ID: 7d1e5b2a-3c4f-4e8d-9b0a-6f5e4d3c2b1a
CSeq: 57121 REGISTER
User-Agent: PJSUA v2.15 Linux-6.8.0/x86_64/glibc-2.39
Contact: <sip:1001@127.0.0.1:5062;ob>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-0000c0ffee01>\";reg-id=1
Expires: 300
Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, MESSAGE, OPTIONS
Content-Length:  0

";

#[test]
fn pjsip_register_with_outbound_contact() {
    let r = req(&crlf(PJSIP_REGISTER));
    assert_eq!(r.method(), Method::Register);
    assert_eq!(r.uri(), "sip:127.0.0.1");
    assert_eq!(r.uri_user(), None);
    assert_eq!(r.call_id().unwrap(), "7d1e5b2a-3c4f-4e8d-9b0a-6f5e4d3c2b1a");
    assert_eq!(r.cseq().unwrap(), (57121, Method::Register));
    assert_eq!(
        r.top_via_branch().unwrap(),
        "z9hG4bKPj3c8d2e7a-8d1b-4f0e-9a51-0c1f5d4b6e21"
    );
    assert_eq!(
        r.from_tag().as_deref(),
        Some("2b0f7c1d-5e4a-4c61-8a7e-1f2d3c4b5a69")
    );
    assert_eq!(r.to_tag(), None);
    assert_eq!(r.from_user().as_deref(), Some("1001"));
    assert_eq!(r.to_user().as_deref(), Some("1001"));
    assert_eq!(
        r.contact_uri().as_deref(),
        Some("sip:1001@127.0.0.1:5062;ob")
    );
    let contact = r.header("contact").unwrap();
    assert!(
        contact.ends_with(
            ";+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-0000c0ffee01>\";reg-id=1"
        )
    );
    assert_eq!(
        param(name_addr(&contact).unwrap().params, "reg-id").as_deref(),
        Some("1")
    );
    assert_eq!(r.header("EXPIRES").as_deref(), Some("300"));
    assert_eq!(r.header_values("Allow").len(), 12);
    assert_eq!(
        r.header("User-Agent").as_deref(),
        Some("PJSUA v2.15 Linux-6.8.0/x86_64/glibc-2.39")
    );
    assert!(r.body().is_empty());
    assert_round_trip(&SipMessage::Request(r));
}

#[test]
fn pjsip_register_with_sha256_authorization_keeps_header_whole() {
    let text = PJSIP_REGISTER.replace(
        "Expires: 300\n",
        "Expires: 300\nAuthorization: Digest username=\"1001\", realm=\"switchboard\", nonce=\"5f0c1a2b:3c4d\", uri=\"sip:127.0.0.1\", response=\"9b1f0e1c7d5a3b2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d\", algorithm=SHA-256, cnonce=\"a1b2c3\", qop=auth, nc=00000001\n",
    );
    let r = req(&crlf(&text));
    let auth = r.header("authorization").unwrap();
    assert!(auth.starts_with("Digest username=\"1001\", realm=\"switchboard\""));
    assert!(auth.contains("algorithm=SHA-256"));
    assert!(
        auth.contains("nonce=\"5f0c1a2b:3c4d\""),
        "colon inside nonce kept"
    );
    assert_eq!(
        r.header_values("Authorization").len(),
        1,
        "not split at commas"
    );
    assert_round_trip(&SipMessage::Request(r));
}

const SDP: &str = "v=0
o=- 3915166245 3915166245 IN IP4 192.168.1.10
s=pjmedia
c=IN IP4 192.168.1.10
t=0 0
m=audio 4000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendrecv
";

#[test]
fn linphone_invite_with_sdp_and_unicode_display_name() {
    let sdp = SDP.replace('\n', "\r\n");
    let text = format!(
        "INVITE sip:600@192.168.1.1 SIP/2.0
Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK.xJ3kQ9mZ1;rport
From: \"王医生 \\\"Dr. Wang\\\"\" <sip:1002@192.168.1.1>;tag=Hm3kd9sQ
To: <sip:600@192.168.1.1>
CSeq: 20 INVITE
Call-ID: q8ZtV~x2Lp
Max-Forwards: 70
Supported: replaces, outbound, gruu, timer
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, PRACK, UPDATE
Content-Type: application/sdp
Content-Length: {}
Contact: <sip:1002@192.168.1.10;transport=udp>;+org.linphone.specs=\"lime\"
User-Agent: Linphone-Desktop/5.2.6 (belle-sip/5.2.98)

{sdp}",
        sdp.len()
    );
    let r = req(&crlf(&text));
    assert_eq!(r.method(), Method::Invite);
    assert_eq!(r.uri_user().as_deref(), Some("600"));
    assert_eq!(r.top_via_branch().unwrap(), "z9hG4bK.xJ3kQ9mZ1");
    assert_eq!(r.from_tag().as_deref(), Some("Hm3kd9sQ"));
    let from = r.from_header().unwrap();
    assert_eq!(
        name_addr(&from).unwrap().display.as_deref(),
        Some("王医生 \"Dr. Wang\"")
    );
    assert_eq!(r.from_user().as_deref(), Some("1002"));
    assert_eq!(r.content_type().as_deref(), Some("application/sdp"));
    assert_eq!(r.body(), sdp.as_bytes());
    assert_eq!(r.header("Content-Length"), Some(sdp.len().to_string()));
    assert_eq!(
        r.contact_uri().as_deref(),
        Some("sip:1002@192.168.1.10;transport=udp")
    );
    assert_eq!(
        r.header_values("supported"),
        vec!["replaces", "outbound", "gruu", "timer"]
    );
    assert_round_trip(&SipMessage::Request(r));
}

#[test]
fn microsip_invite_to_tel_style_user() {
    let text = "INVITE sip:+8613800000001@192.168.1.1;user=phone SIP/2.0
Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bKPj8f1c2b3a4d5e6f70
Max-Forwards: 70
From: \"前台 Reception\" <sip:1003@192.168.1.1>;tag=9c8b7a6d5e4f
To: <sip:+8613800000001@192.168.1.1;user=phone>
Contact: \"前台 Reception\" <sip:1003@192.168.1.20:5060;ob>
Call-ID: 0a1b2c3d4e5f40718293a4b5c6d7e8f9
CSeq: 29817 INVITE
Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, MESSAGE, OPTIONS
Supported: replaces, 100rel, timer, norefersub
Session-Expires: 1800
Min-SE: 90
User-Agent: MicroSIP/3.21.5
Content-Length: 0

";
    let r = req(&crlf(text));
    assert_eq!(r.uri_user().as_deref(), Some("+8613800000001"));
    assert_eq!(r.to_user().as_deref(), Some("+8613800000001"));
    assert_eq!(
        r.contact_uri().as_deref(),
        Some("sip:1003@192.168.1.20:5060;ob")
    );
    assert_eq!(
        r.header("x"),
        Some("1800".into()),
        "compact x = Session-Expires"
    );
    assert_round_trip(&SipMessage::Request(r));
}

#[test]
fn zoiper_register_with_rinstance_and_odd_branch() {
    let text = "REGISTER sip:192.168.1.1;transport=UDP SIP/2.0
Via: SIP/2.0/UDP 192.168.1.30:52740;branch=z9hG4bK-524287-1---5a3c8e0f1b2d4c6e;rport
Max-Forwards: 70
Contact: <sip:1004@192.168.1.30:52740;rinstance=5c5b6a7d8e9f0a1b;transport=UDP>
To: <sip:1004@192.168.1.1;transport=UDP>
From: <sip:1004@192.168.1.1;transport=UDP>;tag=3f9a1c7e
Call-ID: MzJhNzE0ZDY4YjQxZTkzMGQ0NzY1YjY2OGE5NDc0ZGE
CSeq: 1 REGISTER
Expires: 60
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE
User-Agent: Z 5.6.6 v2.10.20.4
Allow-Events: presence, kpml, talk
Content-Length: 0

";
    let r = req(&crlf(text));
    assert_eq!(
        r.top_via_branch().unwrap(),
        "z9hG4bK-524287-1---5a3c8e0f1b2d4c6e"
    );
    assert_eq!(r.from_tag().as_deref(), Some("3f9a1c7e"));
    assert_eq!(r.from_user().as_deref(), Some("1004"));
    assert_eq!(
        r.contact_uri().as_deref(),
        Some("sip:1004@192.168.1.30:52740;rinstance=5c5b6a7d8e9f0a1b;transport=UDP")
    );
    assert_eq!(r.header_values("u").len(), 3);
    assert_round_trip(&SipMessage::Request(r));
}

#[test]
fn compact_headers_multiple_vias_ipv6_and_folding() {
    let text = "INVITE sip:1001@[2001:db8::10]:5060;transport=udp SIP/2.0
v: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKtop;received=2001:db8::1
v: SIP/2.0/TCP proxy.example.com:5060;branch=z9hG4bKmid, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKlow
Max-Forwards: 68
f: Alice <sip:alice@example.com>;tag=a1
t: sip:1001@example.com
i: compact-call@example.com
CSeq: 7 INVITE
m: <sip:alice@[2001:db8::1]:5060>
Subject: a subject
 folded over
\tthree lines
c: application/sdp
l: 4

abcdEXTRA";
    let r = req(&crlf(text));
    assert_eq!(r.uri(), "sip:1001@[2001:db8::10]:5060;transport=udp");
    assert_eq!(r.uri_user().as_deref(), Some("1001"));
    assert_eq!(r.top_via_branch().unwrap(), "z9hG4bKtop");
    assert_eq!(r.headers.top_via().unwrap().1, "[2001:db8::1]:5060");
    assert_eq!(r.header_values("Via").len(), 3);
    assert_eq!(r.call_id().unwrap(), "compact-call@example.com");
    assert_eq!(r.from_user().as_deref(), Some("alice"));
    assert_eq!(r.from_tag().as_deref(), Some("a1"));
    assert_eq!(r.to_user().as_deref(), Some("1001"));
    assert_eq!(r.to_header().unwrap(), "sip:1001@example.com");
    assert_eq!(
        r.contact_uri().as_deref(),
        Some("sip:alice@[2001:db8::1]:5060")
    );
    assert_eq!(
        r.header("subject").as_deref(),
        Some("a subject folded over three lines")
    );
    assert_eq!(r.content_type().as_deref(), Some("application/sdp"));
    assert_eq!(r.body(), b"abcd", "body cut at Content-Length");
    let out = String::from_utf8(r.to_bytes()).unwrap();
    assert!(
        out.contains("\r\nVia: SIP/2.0/UDP [2001:db8::1]"),
        "compact names written in full"
    );
    assert!(out.contains("\r\nCall-ID: compact-call@example.com\r\n"));
    assert_round_trip(&SipMessage::Request(r));
}

#[test]
fn lf_only_leading_crlf_and_space_before_colon_are_tolerated() {
    let text = "\r\n\r\nOPTIONS sip:a@b SIP/2.0\nVia : SIP/2.0/UDP h;branch=z9hG4bKx\nCall-ID:\tid1\nCSeq: 1 OPTIONS\n\n";
    let r = req(text.as_bytes());
    assert_eq!(r.method(), Method::Options);
    assert_eq!(r.top_via_branch().unwrap(), "z9hG4bKx");
    assert_eq!(r.call_id().unwrap(), "id1");
}

#[test]
fn tel_uri_and_extension_method() {
    let r = req(b"PUBLISH tel:+8613800000001;phone-context=+86 SIP/2.0\r\nCSeq: 3 PUBLISH\r\n\r\n");
    assert_eq!(r.method(), Method::Other("PUBLISH".into()));
    assert_eq!(r.uri_user().as_deref(), Some("+8613800000001"));
    assert_eq!(r.cseq().unwrap(), (3, Method::Other("PUBLISH".into())));
    let r = req(b"FOOBAR sip:x@y SIP/2.0\r\n\r\n");
    assert_eq!(r.method().as_str(), "FOOBAR");
}

#[test]
fn responses_keep_reason_and_challenge() {
    let text = "SIP/2.0 401 Unauthorized
Via: SIP/2.0/UDP 127.0.0.1:5062;rport=5062;received=127.0.0.1;branch=z9hG4bKPj1
From: <sip:1001@127.0.0.1>;tag=abc
To: <sip:1001@127.0.0.1>;tag=srv1
Call-ID: c1
CSeq: 1 REGISTER
WWW-Authenticate: Digest realm=\"switchboard\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\"
WWW-Authenticate: Digest realm=\"switchboard\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"
Content-Length: 0

";
    let r = resp(&crlf(text));
    assert_eq!(r.status(), 401);
    assert_eq!(r.reason(), "Unauthorized");
    assert_eq!(r.to_tag().as_deref(), Some("srv1"));
    assert_eq!(r.header_values("www-authenticate").len(), 2);
    assert_round_trip(&SipMessage::Response(r));

    let r = resp(b"SIP/2.0 183 Session Progress Now\r\nCSeq: 1 INVITE\r\n\r\n");
    assert_eq!((r.status(), r.reason()), (183, "Session Progress Now"));
    let out = String::from_utf8(r.to_bytes()).unwrap();
    assert!(out.starts_with("SIP/2.0 183 Session Progress Now\r\n"));
}

#[test]
fn missing_or_bad_headers_are_errors_not_panics() {
    let r = req(b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: x OPTIONS\r\nVia: SIP/2.0/UDP h\r\n\r\n");
    assert!(matches!(r.call_id(), Err(Error::MissingHeader("Call-ID"))));
    assert!(matches!(r.cseq(), Err(Error::InvalidHeader("CSeq"))));
    assert!(matches!(
        r.top_via_branch(),
        Err(Error::InvalidHeader("Via"))
    ));
    assert!(r.from_header().is_err());
    assert_eq!(r.from_tag(), None);
    assert_eq!(r.contact_uri(), None);
    let r = req(b"REGISTER sip:a@b SIP/2.0\r\nContact: *\r\nCSeq: 4294967295 REGISTER\r\n\r\n");
    assert_eq!(r.contact_uri(), None);
    assert_eq!(r.cseq().unwrap().0, u32::MAX);
    assert!(
        req(b"X sip:a@b SIP/2.0\r\nCSeq: 4294967296 X\r\n\r\n")
            .cseq()
            .is_err()
    );
}

#[test]
fn malformed_inputs_are_rejected() {
    let cases: &[&[u8]] = &[
        b"",
        b"\r\n\r\n",
        b"garbage",
        b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n",
        b"INVITE sip:a@b SIP/3.0\r\n\r\n",
        b"INVITE  sip:a@b SIP/2.0\r\n\r\n",
        b"INVITE sip:a@b\r\n\r\n",
        b"INVITE nocolon SIP/2.0\r\n\r\n",
        b"SIP/2.0 99 Low\r\n\r\n",
        b"SIP/2.0 700 High\r\n\r\n",
        b"SIP/2.0 2000 OK\r\n\r\n",
        b"SIP/2.0 20x OK\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\n folded-first\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nshort",
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab",
        b"OPTIONS sip:a@b SIP/2.0\r\nSubject: \xff\xfe\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nSubject: a\rInjected: b\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nSubject: a\x00b\r\n\r\n",
    ];
    for case in cases {
        assert!(
            parse(case).is_err(),
            "accepted {:?}",
            String::from_utf8_lossy(case)
        );
    }
}

#[test]
fn huge_inputs_are_rejected() {
    let big = vec![b'A'; 10 * 1024 * 1024];
    assert!(matches!(parse(&big), Err(Error::TooLarge)));
    let mut many = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    while many.len() <= MAX_HEADER_BYTES {
        many.extend_from_slice(b"X-Padding: 0123456789012345678901234567890123456789\r\n");
    }
    many.extend_from_slice(b"\r\n");
    assert!(matches!(parse(&many), Err(Error::TooLarge)));
    let huge_cl = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n";
    assert!(matches!(parse(huge_cl), Err(Error::TooLarge)));
    let overflow = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 999999999999999999999999\r\n\r\n";
    assert!(parse(overflow).is_err());
    let mut body = b"OPTIONS sip:a@b SIP/2.0\r\n\r\n".to_vec();
    body.resize(body.len() + MAX_BODY_BYTES + 1, b'x');
    assert!(matches!(parse(&body), Err(Error::TooLarge)));
}

/// Tiny deterministic generator so the mutation loop needs no extra crate.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

#[test]
fn truncations_and_mutations_never_panic_and_accepted_ones_round_trip() {
    let invite = format!(
        "INVITE sip:+8613800000001@[2001:db8::1]:5060 SIP/2.0\nv: SIP/2.0/UDP [2001:db8::2];branch=z9hG4bK1, SIP/2.0/TCP h;branch=z9hG4bK2\nf: \"王\" <sip:a@b>;tag=1\nt: <sip:c@d>\ni: x\nCSeq: 1 INVITE\nm: <sip:a@[2001:db8::2]>\nc: application/sdp\nl: {}\n\n{}",
        SDP.len() + SDP.matches('\n').count(),
        SDP
    );
    let seeds = [
        PJSIP_REGISTER.to_string(),
        invite,
        "SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nCSeq: 1 INVITE\nContent-Length: 0\n\n"
            .into(),
    ];
    let mut rng = Lcg(0x5eed);
    let mut accepted = 0;
    for seed in &seeds {
        let bytes = crlf(seed);
        for cut in 0..bytes.len() {
            if let Ok(m) = parse(&bytes[..cut]) {
                accepted += 1;
                assert_round_trip(&m);
            }
        }
        for _ in 0..3000 {
            let mut m = bytes.clone();
            for _ in 0..1 + rng.next() % 4 {
                if m.is_empty() {
                    break;
                }
                let i = rng.next() % m.len();
                let specials = b":;<>\"\\, \r\n\t@[]";
                match rng.next() % 4 {
                    0 => m[i] = (rng.next() % 256) as u8,
                    1 => m.insert(i, specials[rng.next() % specials.len()]),
                    2 if !m.is_empty() => {
                        m.remove(i);
                    }
                    _ => m.truncate(i),
                }
            }
            if let Ok(msg) = parse(&m) {
                accepted += 1;
                assert_round_trip(&msg);
                if let SipMessage::Request(r) = &msg {
                    let _ = (
                        r.call_id(),
                        r.cseq(),
                        r.top_via_branch(),
                        r.from_tag(),
                        r.to_user(),
                        r.contact_uri(),
                        r.uri_user(),
                    );
                }
            }
        }
    }
    assert!(
        accepted > 100,
        "mutations should often stay valid, got {accepted}"
    );
}

#[test]
fn builder_response_to_and_cancel() {
    let sent_by: std::net::SocketAddr = "10.0.0.1:5060".parse().unwrap();
    let invite = RequestBuilder::new(Method::Invite, "sip:1001@10.0.0.2:5062")
        .via(Transport::Udp, sent_by, "z9hG4bKaaa")
        .max_forwards(70)
        .from("\"Switchboard\" <sip:switchboard@10.0.0.1>;tag=ft")
        .to("<sip:1001@10.0.0.2>")
        .call_id("cid-1")
        .cseq(1)
        .contact("sip:switchboard@10.0.0.1:5060;transport=udp")
        .header("Record-Route", "<sip:proxy;lr>")
        .header("Content-Length", "999")
        .body("application/sdp", SDP.as_bytes().to_vec())
        .build();
    assert_eq!(invite.cseq().unwrap(), (1, Method::Invite));
    assert_eq!(invite.top_via_branch().unwrap(), "z9hG4bKaaa");
    assert_eq!(
        invite.header("Via").unwrap(),
        "SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKaaa"
    );
    assert_eq!(
        invite.contact_uri().as_deref(),
        Some("sip:switchboard@10.0.0.1:5060;transport=udp")
    );
    assert_eq!(invite.header("Content-Length"), Some(SDP.len().to_string()));
    assert_round_trip(&SipMessage::Request(invite.clone()));

    let ringing = response_to(&invite, 180, "Ringing", Some("tt"));
    assert_eq!(ringing.to_tag().as_deref(), Some("tt"));
    assert_eq!(ringing.call_id().unwrap(), "cid-1");
    assert_eq!(ringing.cseq().unwrap(), (1, Method::Invite));
    assert_eq!(ringing.top_via_branch().unwrap(), "z9hG4bKaaa");
    assert_eq!(
        ringing.header("Record-Route").as_deref(),
        Some("<sip:proxy;lr>")
    );
    let ok = response_to(&invite, 200, "OK", Some("tt"))
        .with_header("Contact", "<sip:switchboard@10.0.0.1>")
        .with_body("application/sdp", b"v=0\r\n".to_vec());
    assert_eq!(ok.body(), b"v=0\r\n");
    assert_round_trip(&SipMessage::Response(ok));
    let busy = response_to(&invite, 486, "Busy Here", None);
    assert_eq!(busy.to_tag(), None);
    assert_eq!(busy.header("Record-Route"), None);

    // A To that already has a tag keeps it.
    let parsed = resp(&response_to(&invite, 200, "OK", Some("tt")).to_bytes());
    let again = response_to(
        &Request {
            headers: parsed.headers.clone(),
            ..invite.clone()
        },
        200,
        "OK",
        Some("zz"),
    );
    assert_eq!(again.to_tag().as_deref(), Some("tt"));

    let cancel = cancel_for(&invite);
    assert_eq!(cancel.method(), Method::Cancel);
    assert_eq!(cancel.uri(), invite.uri());
    assert_eq!(cancel.cseq().unwrap(), (1, Method::Cancel));
    assert_eq!(cancel.top_via_branch().unwrap(), "z9hG4bKaaa");
    assert_eq!(cancel.from_header().unwrap(), invite.from_header().unwrap());
    assert_eq!(cancel.to_header().unwrap(), invite.to_header().unwrap());
    assert!(cancel.body().is_empty());
    assert_eq!(cancel.content_type(), None);
}

#[test]
fn builder_sanitizes_injection() {
    let r = RequestBuilder::new(Method::Options, "sip:a@b\r\nX: y")
        .header("X-Evil", "a\r\nVia: SIP/2.0/UDP evil;branch=z9hG4bKevil")
        .header("Bad Name:", "v")
        .build();
    assert_eq!(r.uri(), "sip:a@bX:y");
    assert_eq!(r.header_values("Via").len(), 0);
    assert_round_trip(&SipMessage::Request(r));
}

#[test]
fn option_tags_are_found_in_lists_in_any_case() {
    let r = req(&crlf(
        "REGISTER sip:clinic.example SIP/2.0\n\
         Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKopt\n\
         From: <sip:1001@clinic.example>;tag=a\nTo: <sip:1001@clinic.example>\n\
         Call-ID: opt\nCSeq: 1 REGISTER\n\
         Supported: 100rel, Timer\nSupported: outbound\nRequire: path\n\
         Content-Length: 0\n\n",
    ));
    assert!(r.lists_option("Supported", "timer"));
    assert!(r.lists_option("supported", "OUTBOUND"));
    assert!(
        !r.lists_option("Supported", "path"),
        "only the header asked"
    );
    assert!(r.lists_option("Require", "path"));
    assert!(!r.lists_option("Require", "100rel"));
    assert!(
        !r.lists_option("Unsupported", "timer"),
        "an absent header lists nothing"
    );
}

#[test]
fn a_refer_names_its_target_and_says_whether_it_replaces_a_dialog() {
    let refer = |refer_to: &str| {
        let text = format!(
            "REFER sip:clinic@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-r\r\n\
             From: <sip:1001@127.0.0.1>;tag=a\r\nTo: <sip:clinic@127.0.0.1>;tag=b\r\nCall-ID: r1\r\n\
             CSeq: 2 REFER\r\n{refer_to}Content-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    };
    assert_eq!(
        refer("Refer-To: <sip:enquiries@127.0.0.1:5060>\r\n").refer_to(),
        Some(("enquiries".to_owned(), false))
    );
    assert_eq!(
        refer("r: sip:1002@127.0.0.1\r\n").refer_to(),
        Some(("1002".to_owned(), false)),
        "compact form, bare URI"
    );
    assert_eq!(
        refer("Refer-To: <sip:1002@127.0.0.1?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\n")
            .refer_to(),
        Some(("1002".to_owned(), true))
    );
    assert_eq!(refer("").refer_to(), None, "no Refer-To");
    assert_eq!(refer("Refer-To: <mailto:x@y>\r\n").refer_to(), None);
    assert_eq!(
        refer("Refer-To: <sip:1002@127.0.0.1?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\n")
            .refer_replaces()
            .as_deref(),
        Some("abc@h"),
        "the replaced dialog's Call-ID, decoded"
    );
    assert_eq!(
        refer("Refer-To: <sip:1002@127.0.0.1?X=1&replaces=k9>\r\n")
            .refer_replaces()
            .as_deref(),
        Some("k9")
    );
    assert_eq!(
        refer("Refer-To: <sip:1002@127.0.0.1>\r\n").refer_replaces(),
        None
    );
    assert_eq!(
        refer("Refer-To: <sip:1002@127.0.0.1?Replaces=a%4>\r\n").refer_replaces(),
        None,
        "a broken escape names nothing"
    );
}
