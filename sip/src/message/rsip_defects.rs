//! Evidence for why `parse` does not go through rsip 0.4: each test feeds rsip a
//! message real phones send, shows what rsip does wrong, and shows our parser right.
//! If a test here starts failing on its rsip half, rsip got fixed for that case.

#![allow(clippy::unwrap_used)]

use std::convert::TryFrom;

use rsip::prelude::{HeadersExt, ToTypedHeader, UntypedHeader};

use super::{SipMessage, parse};

fn rsip_parse(text: &str) -> Result<rsip::SipMessage, rsip::Error> {
    rsip::SipMessage::try_from(text)
}

fn ours(text: &str) -> super::Request {
    match parse(text.as_bytes()) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("our parser failed: {other:?}"),
    }
}

#[test]
fn ipv6_request_uri_is_rejected_by_rsip() {
    // rsip splits host:port at the first ':' so "[2001" becomes the host.
    let text =
        "OPTIONS sip:1001@[2001:db8::1]:5060;transport=tcp SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    assert!(rsip_parse(text).is_err());
    assert_eq!(
        ours(text).uri(),
        "sip:1001@[2001:db8::1]:5060;transport=tcp"
    );
}

#[test]
fn ipv6_via_cannot_be_typed_by_rsip() {
    let via = rsip::headers::Via::new("SIP/2.0/UDP [2001:db8::1]:5060;rport;branch=z9hG4bKa");
    assert!(via.typed().is_err());
    let r = ours(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::1]:5060;rport;branch=z9hG4bKa\r\n\r\n",
    );
    assert_eq!(r.top_via_branch().unwrap(), "z9hG4bKa");
}

#[test]
fn uri_param_value_with_colon_rejects_request_and_truncates_headers() {
    // In the request line the whole message is rejected ...
    let text = "OPTIONS sip:a@b;maddr=x;foo=a:b SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    assert!(rsip_parse(text).is_err());
    assert_eq!(ours(text).uri(), "sip:a@b;maddr=x;foo=a:b");
    // ... in a To header the value is silently cut at ':'.
    let to = rsip::headers::To::new("<sip:1001@x;foo=a:b>;tag=abc")
        .typed()
        .unwrap();
    assert_eq!(to.uri.to_string(), "sip:1001@x;foo=a");
    let r = ours("OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:1001@x;foo=a:b>;tag=abc\r\n\r\n");
    assert_eq!(
        super::name_addr(&r.to_header().unwrap()).unwrap().uri,
        "sip:1001@x;foo=a:b"
    );
    assert_eq!(r.to_tag().as_deref(), Some("abc"));
}

#[test]
fn tel_request_uri_is_rejected_by_rsip() {
    let text = "INVITE tel:+8613800000001 SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    assert!(rsip_parse(text).is_err());
    assert_eq!(ours(text).uri_user().as_deref(), Some("+8613800000001"));
}

#[test]
fn folded_header_rejects_whole_message_in_rsip() {
    let text = "OPTIONS sip:a@b SIP/2.0\r\nSubject: hello\r\n world\r\nContent-Length: 0\r\n\r\n";
    assert!(rsip_parse(text).is_err());
    assert_eq!(ours(text).header("Subject").as_deref(), Some("hello world"));
}

#[test]
fn whitespace_before_header_colon_rejected_by_rsip() {
    let text = "OPTIONS sip:a@b SIP/2.0\r\nCall-ID : x\r\nContent-Length: 0\r\n\r\n";
    assert!(rsip_parse(text).is_err());
    assert_eq!(ours(text).call_id().unwrap(), "x");
}

#[test]
fn extension_method_rejected_by_rsip() {
    // RFC 3261 §8.2.1 wants a 501 for unknown methods, so we must be able to parse them.
    let text = "FOOBAR sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    assert!(rsip_parse(text).is_err());
    assert_eq!(ours(text).method().as_str(), "FOOBAR");
}

#[test]
fn compact_headers_are_not_recognised_by_rsip() {
    let text = "OPTIONS sip:a@b SIP/2.0\r\ni: abc\r\nf: <sip:1@x>;tag=1\r\nl: 0\r\n\r\n";
    let m = rsip_parse(text).unwrap();
    assert!(
        m.call_id_header().is_err(),
        "rsip keeps `i:` as an unknown header"
    );
    let r = ours(text);
    assert_eq!(r.call_id().unwrap(), "abc");
    assert_eq!(r.from_tag().as_deref(), Some("1"));
}

#[test]
fn outbound_contact_cannot_be_typed_by_rsip() {
    let c = rsip::headers::Contact::new(
        "<sip:1001@127.0.0.1:5062;ob>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-0000c0ffee01>\";reg-id=1",
    );
    assert!(c.typed().is_err());
    let r = ours(&super::tests::PJSIP_REGISTER.replace('\n', "\r\n"));
    assert_eq!(
        r.contact_uri().as_deref(),
        Some("sip:1001@127.0.0.1:5062;ob")
    );
}

#[test]
fn sha256_authorization_cannot_be_typed_by_rsip() {
    let a = rsip::headers::Authorization::new(
        "Digest username=\"1001\", realm=\"switchboard\", nonce=\"abc\", uri=\"sip:127.0.0.1\", response=\"00\", algorithm=SHA-256, cnonce=\"xyz\", qop=auth, nc=00000001",
    );
    assert!(a.typed().is_err());
}

#[test]
fn cseq_with_extra_whitespace_cannot_be_typed_by_rsip() {
    assert!(rsip::headers::CSeq::new("  1   INVITE").typed().is_err());
    let r = ours("OPTIONS sip:a@b SIP/2.0\r\nCSeq:   1   INVITE\r\n\r\n");
    assert_eq!(r.cseq().unwrap().0, 1);
}

#[test]
fn reason_phrases_are_rewritten_by_rsip() {
    let text = "SIP/2.0 183 Session Progress\r\nContent-Length: 0\r\n\r\n";
    let out = rsip_parse(text).unwrap().to_string();
    assert!(
        out.starts_with("SIP/2.0 183 SessionProgress\r\n"),
        "got {out:?}"
    );
    let ours = parse(text.as_bytes()).unwrap().to_bytes();
    assert!(ours.starts_with(b"SIP/2.0 183 Session Progress\r\n"));
}

#[test]
fn content_length_is_ignored_by_rsip() {
    let text = "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabcdef";
    assert_eq!(rsip_parse(text).unwrap().body(), b"abcdef");
    assert_eq!(ours(text).body(), b"abc");
}

#[test]
fn uri_headers_become_part_of_the_host_in_rsip() {
    let text = "OPTIONS sip:1001@b?Subject=x SIP/2.0\r\n\r\n";
    match rsip_parse(text).unwrap() {
        rsip::SipMessage::Request(r) => assert_eq!(r.uri.host().to_string(), "b?Subject=x"),
        rsip::SipMessage::Response(_) => panic!("request expected"),
    }
    assert_eq!(ours(text).uri_user().as_deref(), Some("1001"));
}
