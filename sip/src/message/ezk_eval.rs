//! Evaluation of `ezk-sip-types` 0.6.5 (the maintained SIP types crate of kbalt/ezk) as a
//! replacement for our hand-written `parse.rs`/`header.rs`, on the same inputs as
//! `rsip_defects.rs` and `tests.rs`.
//!
//! Result: ezk gets far more right than rsip (IPv6, ':' in URI params, compact names,
//! outbound Contact, SHA-256 Digest, whitespace before ':', reason phrases, Content-Length),
//! but it cannot replace our parser:
//!
//! * ezk-sip-types has no whole-message parser or serialiser. The framing (start line,
//!   header lines, Content-Length, body) lives in ezk-sip-core's transport layer, an async
//!   endpoint stack. `ezk_parse` below rebuilds that loop from the types crate's public
//!   pieces (`PullParser`, `MessageLine`, `Line`, `Headers`, `ContentLength`), i.e. the part
//!   we would have to keep hand-writing anyway.
//! * On that path it rejects or misreads inputs we must handle; each `*_defect` test below
//!   shows one, next to our parser getting it right.
//!
//! If a test here starts failing on its ezk half, ezk changed for that case.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use ezk_sip_types::header::typed::{
    AlgorithmValue, AuthResponse, CSeq, CallID, Contact, ContentLength, ContentType, FromTo, Via,
};
use ezk_sip_types::host::Host;
use ezk_sip_types::msg::{Line, MessageLine, PullParser};
use ezk_sip_types::parse::Parse;
use ezk_sip_types::print::AppendCtx;
use ezk_sip_types::uri::SipUriUserPart;
use ezk_sip_types::{Headers, Method as EzkMethod, Name};

use super::{SipMessage, parse};

/// One message as ezk's pieces give it.
struct Ezk {
    line: MessageLine,
    headers: Headers,
    body: Bytes,
}

/// Whole-message parse built from ezk-sip-types' public API, the same steps as
/// ezk-sip-core's `transport/parse.rs` (`parse_complete_sip`): ezk-sip-types itself has none.
fn ezk_parse(bytes: &[u8]) -> Result<Ezk, String> {
    let buffer = Bytes::copy_from_slice(bytes);
    let mut parser = PullParser::new(&buffer, 0);
    let mut line = None;
    let mut headers = Headers::new();
    for item in &mut parser {
        let l = item.map_err(|_| "incomplete head".to_string())?;
        let l = std::str::from_utf8(l).map_err(|_| "not utf-8".to_string())?;
        if line.is_none() {
            let (_, m) = MessageLine::parse(&buffer)(l).map_err(|e| format!("start line: {e}"))?;
            line = Some(m);
        } else {
            let (_, h) = Line::parse(&buffer, l).map_err(|e| format!("header line: {e}"))?;
            headers.insert(h.name, h.value);
        }
    }
    let head_end = parser.head_end();
    let body = match headers.get_named::<ContentLength>() {
        Ok(len) if len.0 == 0 => Bytes::new(),
        Ok(len) if buffer.len() >= head_end + len.0 => buffer.slice(head_end..head_end + len.0),
        Ok(_) => return Err("body shorter than content-length".into()),
        // sip-core: "no valid content-length given, guessing body length from udp frame"
        Err(_) => buffer.slice(head_end..),
    };
    Ok(Ezk {
        line: line.ok_or("no start line")?,
        headers,
        body,
    })
}

/// Serialisation built the same way: start line, `Headers`' Display, blank line, body.
fn ezk_print(m: &Ezk) -> Vec<u8> {
    let mut out = format!("{}\r\n{}\r\n", m.line.default_print_ctx(), m.headers).into_bytes();
    out.extend_from_slice(&m.body);
    out
}

fn ezk_ok(text: &[u8]) -> Ezk {
    match ezk_parse(text) {
        Ok(m) => m,
        Err(e) => panic!("ezk failed: {e}"),
    }
}

fn ezk_request_line(text: &[u8]) -> (EzkMethod, String) {
    match ezk_ok(text).line {
        MessageLine::Request(r) => (r.method, r.uri.default_print_ctx().to_string()),
        MessageLine::Response(_) => panic!("request expected"),
    }
}

fn ours(text: &[u8]) -> super::Request {
    match parse(text) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("our parser failed: {other:?}"),
    }
}

fn crlf(s: &str) -> Vec<u8> {
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

fn user(uri: &ezk_sip_types::uri::SipUri) -> Option<String> {
    match &uri.user_part {
        SipUriUserPart::User(u) => Some(u.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Handled correctly by ezk.
// ---------------------------------------------------------------------------------------

#[test]
fn ezk_handles_ipv6_request_uri_and_via() {
    let text = b"OPTIONS sip:1001@[2001:db8::1]:5060;transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::1]:5060;rport;branch=z9hG4bKa\r\nContent-Length: 0\r\n\r\n";
    let m = ezk_ok(text);
    let MessageLine::Request(r) = &m.line else {
        panic!("request expected")
    };
    assert_eq!(
        r.uri.host_port.host,
        Host::IP6("2001:db8::1".parse().unwrap())
    );
    assert_eq!(r.uri.host_port.port, Some(5060));
    let via: Via = m.headers.get_named().unwrap();
    assert_eq!(
        via.sent_by.default_print_ctx().to_string(),
        "[2001:db8::1]:5060"
    );
    assert_eq!(via.params.get_val("branch").unwrap(), "z9hG4bKa");
    assert_eq!(ours(text).top_via_branch().unwrap(), "z9hG4bKa");
}

#[test]
fn ezk_handles_uri_param_value_with_colon() {
    let (_, uri) = ezk_request_line(b"OPTIONS sip:a@b;maddr=x;foo=a:b SIP/2.0\r\n\r\n");
    assert_eq!(uri, "sip:a@b;maddr=x;foo=a:b");
    let m = ezk_ok(b"OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:1001@x;foo=a:b>;tag=abc\r\n\r\n");
    let to: FromTo = m.headers.get(Name::TO).unwrap();
    assert_eq!(to.uri.uri.uri_params.get_val("foo").unwrap(), "a:b");
    assert_eq!(to.tag.unwrap(), "abc");
}

#[test]
fn ezk_handles_compact_headers_and_multiple_vias() {
    let text = crlf(
        "INVITE sip:1001@[2001:db8::10]:5060;transport=udp SIP/2.0
v: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKtop;received=2001:db8::1
v: SIP/2.0/TCP proxy.example.com:5060;branch=z9hG4bKmid, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKlow
f: Alice <sip:alice@example.com>;tag=a1
t: sip:1001@example.com
i: compact-call@example.com
CSeq: 7 INVITE
m: <sip:alice@[2001:db8::1]:5060>
x: 1800
u: presence, kpml
c: application/sdp
l: 4

abcdEXTRA",
    );
    let m = ezk_ok(&text);
    let via: Via = m.headers.get_named().unwrap();
    assert_eq!(via.params.get_val("branch").unwrap(), "z9hG4bKtop");
    assert_eq!(m.headers.get_named::<Vec<Via>>().unwrap().len(), 3);
    let from: FromTo = m.headers.get(Name::FROM).unwrap();
    assert_eq!(from.tag.unwrap(), "a1");
    assert_eq!(user(&from.uri.uri).as_deref(), Some("alice"));
    let to: FromTo = m.headers.get(Name::TO).unwrap();
    assert_eq!(user(&to.uri.uri).as_deref(), Some("1001"));
    assert_eq!(
        m.headers.get_named::<CallID>().unwrap().0,
        "compact-call@example.com"
    );
    let contact: Contact = m.headers.get_named().unwrap();
    assert_eq!(
        contact.uri.uri.default_print_ctx().to_string(),
        "sip:alice@[2001:db8::1]:5060"
    );
    assert_eq!(
        m.headers.get_named::<ContentType>().unwrap().0,
        "application/sdp"
    );
    assert_eq!(m.headers.get_raw(&Name::from("Session-Expires")).count(), 1);
    assert_eq!(m.headers.get_raw(&Name::ALLOW_EVENTS).count(), 1);
    assert_eq!(&m.body[..], b"abcd", "body cut at Content-Length");
    let out = String::from_utf8(ezk_print(&m)).unwrap();
    assert!(
        out.contains("\r\nCall-ID: compact-call@example.com\r\n"),
        "full names written"
    );
}

#[test]
fn ezk_handles_whitespace_before_colon_and_lf_only_lines() {
    let text = b"OPTIONS sip:a@b SIP/2.0\nVia : SIP/2.0/UDP h;branch=z9hG4bKx\nCall-ID : id1\nCSeq:   1   OPTIONS\n\n";
    let m = ezk_ok(text);
    assert_eq!(m.headers.get_named::<CallID>().unwrap().0, "id1");
    let cseq: CSeq = m.headers.get_named().unwrap();
    assert_eq!((cseq.cseq, cseq.method), (1, EzkMethod::OPTIONS));
    let via: Via = m.headers.get_named().unwrap();
    assert_eq!(via.params.get_val("branch").unwrap(), "z9hG4bKx");
    assert_eq!(ours(text).call_id().unwrap(), "id1");
}

#[test]
fn ezk_handles_pjsip_register_with_outbound_contact() {
    let m = ezk_ok(&crlf(super::tests::PJSIP_REGISTER));
    let via: Via = m.headers.get_named().unwrap();
    assert_eq!(via.transport, "UDP");
    assert_eq!(
        via.sent_by.default_print_ctx().to_string(),
        "127.0.0.1:5062"
    );
    assert_eq!(
        via.params.get_val("branch").unwrap(),
        "z9hG4bKPj3c8d2e7a-8d1b-4f0e-9a51-0c1f5d4b6e21"
    );
    let from: FromTo = m.headers.get(Name::FROM).unwrap();
    assert_eq!(from.tag.unwrap(), "2b0f7c1d-5e4a-4c61-8a7e-1f2d3c4b5a69");
    let to: FromTo = m.headers.get(Name::TO).unwrap();
    assert_eq!(to.tag, None);
    let cseq: CSeq = m.headers.get_named().unwrap();
    assert_eq!((cseq.cseq, cseq.method), (57121, EzkMethod::REGISTER));
    let contact: Contact = m.headers.get_named().unwrap();
    assert_eq!(
        contact.uri.uri.default_print_ctx().to_string(),
        "sip:1001@127.0.0.1:5062;ob"
    );
    assert_eq!(
        contact.params.get_val("+sip.instance").unwrap(),
        "<urn:uuid:00000000-0000-0000-0000-0000c0ffee01>"
    );
    assert_eq!(contact.params.get_val("reg-id").unwrap(), "1");
    // Printing and parsing again gives the same text.
    let once = ezk_print(&m);
    assert_eq!(ezk_print(&ezk_ok(&once)), once);
}

#[test]
fn ezk_handles_sha256_authorization() {
    let text = super::tests::PJSIP_REGISTER.replace(
        "Expires: 300\n",
        "Expires: 300\nAuthorization: Digest username=\"1001\", realm=\"switchboard\", nonce=\"5f0c1a2b:3c4d\", uri=\"sip:127.0.0.1\", response=\"9b1f\", algorithm=SHA-256, cnonce=\"a1b2c3\", qop=auth, nc=00000001\n",
    );
    let m = ezk_ok(&crlf(&text));
    let AuthResponse::Digest(d) = m.headers.get::<AuthResponse>(Name::AUTHORIZATION).unwrap()
    else {
        panic!("digest expected")
    };
    assert_eq!(d.nonce, "5f0c1a2b:3c4d");
    assert!(matches!(
        d.algorithm,
        ezk_sip_types::header::typed::Algorithm::AlgorithmValue(AlgorithmValue::SHA256)
    ));
}

#[test]
fn ezk_handles_plain_extension_method() {
    let text = b"FOOBAR sip:a@b SIP/2.0\r\nCSeq: 1 FOOBAR\r\n\r\n";
    assert_eq!(ezk_request_line(text).0.to_string(), "FOOBAR");
    assert_eq!(ours(text).method().as_str(), "FOOBAR");
}

#[test]
fn ezk_keeps_reason_phrase() {
    let text = b"SIP/2.0 183 Session Progress\r\nContent-Length: 0\r\n\r\n";
    let out = ezk_print(&ezk_ok(text));
    assert!(out.starts_with(b"SIP/2.0 183 Session Progress\r\n"));
}

#[test]
fn ezk_honours_content_length() {
    let m = ezk_ok(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabcdef");
    assert_eq!(&m.body[..], b"abc");
    assert!(ezk_parse(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nshort").is_err());
}

#[test]
fn ezk_keeps_uri_headers_out_of_the_host() {
    let m = ezk_ok(b"OPTIONS sip:1001@b?Subject=x SIP/2.0\r\n\r\n");
    let MessageLine::Request(r) = &m.line else {
        panic!("request expected")
    };
    assert_eq!(r.uri.host_port.host, Host::Name("b".into()));
    assert_eq!(r.uri.header_params.get_val("Subject").unwrap(), "x");
}

// ---------------------------------------------------------------------------------------
// Defects: ezk rejects or misreads; our parser is right.
// ---------------------------------------------------------------------------------------

#[test]
fn tel_request_uri_rejects_whole_message_defect() {
    // RequestLine holds a SipUri only; a tel: Request-URI fails the start line.
    for text in [
        &b"INVITE tel:+8613800000001 SIP/2.0\r\nContent-Length: 0\r\n\r\n"[..],
        b"PUBLISH tel:+8613800000001;phone-context=+86 SIP/2.0\r\nCSeq: 3 PUBLISH\r\n\r\n",
    ] {
        assert!(ezk_parse(text).is_err());
        assert_eq!(ours(text).uri_user().as_deref(), Some("+8613800000001"));
    }
}

#[test]
fn escaped_quote_in_display_name_makes_from_unreadable_defect() {
    // Linphone sends this From; ezk's quoted-string stops at the escaped quote, so
    // From cannot be typed at all: no tag, no URI (dialog matching breaks).
    let text = "INVITE sip:600@192.168.1.1 SIP/2.0\r\nFrom: \"王医生 \\\"Dr. Wang\\\"\" <sip:1002@192.168.1.1>;tag=Hm3kd9sQ\r\n\r\n";
    let m = ezk_ok(text.as_bytes());
    assert!(m.headers.get::<FromTo>(Name::FROM).is_err());
    let r = ours(text.as_bytes());
    assert_eq!(r.from_tag().as_deref(), Some("Hm3kd9sQ"));
    assert_eq!(r.from_user().as_deref(), Some("1002"));
}

#[test]
fn extension_method_with_known_prefix_is_misread_defect() {
    // Method::from_parse matches known names as case-insensitive *prefixes*:
    // INFORM becomes INFO (in the request line and in CSeq), "invite" becomes INVITE.
    // RFC 3261 §7.1: methods are case-sensitive; an unknown one must get a 501.
    let text = b"INFORM sip:a@b SIP/2.0\r\nCSeq: 1 INFORM\r\n\r\n";
    assert_eq!(ezk_request_line(text).0, EzkMethod::INFO);
    let cseq: CSeq = ezk_ok(text).headers.get_named().unwrap();
    assert_eq!(cseq.method, EzkMethod::INFO);
    assert_eq!(ours(text).method().as_str(), "INFORM");
    assert_eq!(ours(text).cseq().unwrap().1.as_str(), "INFORM");

    let text = b"invite sip:a@b SIP/2.0\r\n\r\n";
    assert_eq!(ezk_request_line(text).0, EzkMethod::INVITE);
    assert_eq!(ours(text).method().as_str(), "invite");
}

#[test]
fn folded_header_lines_are_not_unfolded_defect() {
    // The value keeps the raw CRLF + whitespace; callers would have to unfold it.
    let text = b"OPTIONS sip:a@b SIP/2.0\r\nSubject: hello\r\n world\r\nContent-Length: 0\r\n\r\n";
    let m = ezk_ok(text);
    let subject = m.headers.get_raw(&Name::SUBJECT).next().unwrap();
    assert_eq!(subject.as_str(), "hello\r\n world");
    assert_eq!(ours(text).header("Subject").as_deref(), Some("hello world"));
}

#[test]
fn out_of_range_status_codes_are_accepted_defect() {
    // StatusLine takes any run of digits: 99, 700 and 2000 pass, "20x OK" is status 20.
    for (text, code) in [
        (&b"SIP/2.0 99 Low\r\n\r\n"[..], 99),
        (b"SIP/2.0 700 High\r\n\r\n", 700),
        (b"SIP/2.0 2000 OK\r\n\r\n", 2000),
        (b"SIP/2.0 20x OK\r\n\r\n", 20),
    ] {
        match ezk_ok(text).line {
            MessageLine::Response(s) => assert_eq!(s.code.into_u16(), code),
            MessageLine::Request(_) => panic!("response expected"),
        }
        assert!(parse(text).is_err());
    }
}

#[test]
fn invalid_or_conflicting_content_length_is_ignored_defect() {
    // An unparsable Content-Length is treated as absent (body = rest of the frame), and of
    // two different values the first silently wins: both are request-smuggling hazards on TCP.
    for text in [
        &b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\nxyz"[..],
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\nxyz",
    ] {
        assert_eq!(&ezk_ok(text).body[..], b"xyz");
        assert!(parse(text).is_err());
    }
    let text = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab";
    assert_eq!(&ezk_ok(text).body[..], b"a");
    assert!(parse(text).is_err());
}

#[test]
fn leading_crlf_before_start_line_is_rejected_defect() {
    // RFC 3261 §7.5: implementations should ignore CRLFs before the start line.
    let text = b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nCall-ID: id1\r\n\r\n";
    assert!(ezk_parse(text).is_err());
    assert_eq!(ours(text).call_id().unwrap(), "id1");
}

#[test]
fn junk_in_the_head_is_accepted_defect() {
    for text in [
        // A continuation line right after the start line is glued to it and dropped.
        &b"OPTIONS sip:a@b SIP/2.0\r\n folded-first\r\n\r\n"[..],
        // Anything after "SIP/2.0" on the start line is ignored.
        b"INVITE sip:a@b SIP/2.0garbage\r\n\r\n",
        // NUL (and other controls) inside header values pass through.
        b"OPTIONS sip:a@b SIP/2.0\r\nSubject: a\x00b\r\n\r\n",
    ] {
        assert!(ezk_parse(text).is_ok());
        assert!(parse(text).is_err());
    }
}

#[test]
fn headers_are_regrouped_by_name() {
    // Not a defect (RFC 3261 §7.3.1 only fixes the order among same-name headers), but
    // `Headers::insert` appends to the first entry of that name, so interleaved headers
    // come out reordered; our `Headers` keeps wire order.
    let text = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nX-A: 1\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\n\r\n";
    let out = String::from_utf8(ezk_print(&ezk_ok(text))).unwrap();
    assert!(out.contains("z9hG4bK1\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nX-A: 1\r\n"));
    let ours_out = String::from_utf8(ours(text).to_bytes()).unwrap();
    assert!(ours_out.contains("z9hG4bK1\r\nX-A: 1\r\nVia: SIP/2.0/UDP b"));
}
