use super::*;
use crate::message::{Method, RequestBuilder};

fn register_via(sent_by: &str) -> Request {
    let text = format!(
        "REGISTER sip:clinic.example SIP/2.0\r\nVia: SIP/2.0/UDP {sent_by};rport;branch=z9hG4bKn1\r\n\
         From: <sip:1001@clinic.example>;tag=a\r\nTo: <sip:1001@clinic.example>\r\nCall-ID: n1\r\n\
         CSeq: 1 REGISTER\r\nContact: <sip:1001@{sent_by}>\r\nContent-Length: 0\r\n\r\n"
    );
    match crate::message::parse(text.as_bytes()) {
        Ok(crate::message::SipMessage::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal")
}

#[test]
fn a_phone_is_behind_nat_when_its_via_is_not_where_it_sent_from() {
    let lan = register_via("10.0.0.5:5060");
    assert!(!behind_nat(&lan, addr("10.0.0.5:5060")));
    assert!(
        behind_nat(&lan, addr("203.0.113.7:5060")),
        "another address"
    );
    assert!(behind_nat(&lan, addr("10.0.0.5:61000")), "another port");
    let default_port = register_via("10.0.0.5");
    assert!(!behind_nat(&default_port, addr("10.0.0.5:5060")));
    let named = register_via("phone.example");
    assert!(
        behind_nat(&named, addr("10.0.0.5:5060")),
        "a name cannot be checked"
    );
    let v6 = register_via("[2001:db8::5]:5070");
    assert!(!behind_nat(&v6, addr("[2001:db8::5]:5070")));
    let no_via = RequestBuilder::new(Method::Register, "sip:clinic.example").build();
    assert!(behind_nat(&no_via, addr("10.0.0.5:5060")));
}

#[test]
fn requests_go_to_the_contact_unless_the_phone_is_behind_nat_or_the_policy_says_otherwise() {
    let source = Peer::udp(addr("203.0.113.7:40000"));
    let contact = "sip:1001@10.0.0.5:5062;ob";
    assert_eq!(
        target(NatPolicy::Auto, contact, source, false),
        Peer::udp(addr("10.0.0.5:5062"))
    );
    assert_eq!(target(NatPolicy::Auto, contact, source, true), source);
    assert_eq!(
        target(NatPolicy::Contact, contact, source, true),
        Peer::udp(addr("10.0.0.5:5062"))
    );
    assert_eq!(target(NatPolicy::Source, contact, source, false), source);
    // What cannot be reached as written goes where the REGISTER came from.
    assert_eq!(
        target(NatPolicy::Contact, "sip:1001@phone.example", source, false),
        source
    );
    assert_eq!(
        target(
            NatPolicy::Contact,
            "sip:1001@10.0.0.5:5062;transport=tcp",
            source,
            false
        ),
        source
    );
    assert_eq!(
        target(NatPolicy::Contact, "sip:1001@10.0.0.5", source, false),
        Peer::udp(addr("10.0.0.5:5060")),
        "port 5060 when none is given"
    );
    // Over TCP: the phone's own connection, whatever the policy.
    let tcp = Peer::tcp(addr("203.0.113.7:40001"));
    assert_eq!(target(NatPolicy::Contact, contact, tcp, false), tcp);
}

#[test]
fn uri_addresses() {
    assert_eq!(
        uri_addr("sip:1001@127.0.0.1:5070"),
        Some(addr("127.0.0.1:5070"))
    );
    assert_eq!(
        uri_addr("sip:[2001:db8::1]:5080;transport=udp"),
        Some(addr("[2001:db8::1]:5080"))
    );
    assert_eq!(
        uri_addr("sip:1001@[2001:db8::1]"),
        Some(addr("[2001:db8::1]:5060"))
    );
    assert_eq!(
        uri_addr("sip:1001:secret@10.0.0.1:5060?x=y"),
        Some(addr("10.0.0.1:5060"))
    );
    assert_eq!(uri_addr("tel:+8613800000000"), None);
    assert_eq!(uri_addr("sip:1001@host.example:5060"), None);
    assert_eq!(uri_addr(""), None);
}

#[test]
fn a_route_goes_to_its_first_proxy_when_it_names_an_address() {
    let source = Peer::udp(addr("10.0.0.5:5060"));
    assert_eq!(
        route_target("<sip:10.0.0.9:5070;lr>", source),
        Peer::udp(addr("10.0.0.9:5070"))
    );
    assert_eq!(
        route_target("sip:10.0.0.9;lr", source),
        Peer::udp(addr("10.0.0.9:5060"))
    );
    assert_eq!(route_target("<sip:proxy.example;lr>", source), source);
    assert_eq!(
        route_target("<sip:10.0.0.9:5070;transport=tcp;lr>", source),
        source
    );
    let tcp = Peer::tcp(addr("10.0.0.5:40000"));
    assert_eq!(route_target("<sip:10.0.0.9:5070;lr>", tcp), tcp);
}
