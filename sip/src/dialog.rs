//! Dialogs (RFC 3261 §12): the state a call leg needs to send in-dialog requests.
//!
//! A `Dialog` is plain data created from the INVITE (UAS) or from the INVITE and a
//! 1xx/2xx with a To tag (UAC). It builds BYE/INFO/re-INVITE with increasing CSeq and
//! the ACK for a 2xx, routed by the route set (loose or strict, §12.2.1.1).

use std::net::SocketAddr;

use crate::error::Error;
use crate::message::{Method, Request, RequestBuilder, Response, name_addr, param};
use crate::transport::{Peer, Transport};

/// How we appear in requests we send: Via sent-by and Contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalEndpoint {
    /// Transport named in our Via.
    pub transport: Transport,
    /// Address named in our Via.
    pub sent_by: SocketAddr,
    /// Our Contact URI, e.g. "sip:switchboard@127.0.0.1:5060;transport=udp".
    pub contact: String,
}

/// Where a dialog is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response; may still fail.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
    /// Ended (BYE sent or received, or the INVITE failed).
    Terminated,
}

/// One SIP dialog: identifiers, target, route set and our CSeq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialog {
    /// Call-ID shared by both sides.
    pub call_id: String,
    /// Our tag (From in our requests).
    pub local_tag: String,
    /// The other side's tag (To in our requests).
    pub remote_tag: String,
    /// Our URI (From in our requests).
    pub local_uri: String,
    /// The other side's URI (To in our requests).
    pub remote_uri: String,
    /// Where requests go: the other side's Contact URI.
    pub remote_target: String,
    /// Route header values in the order our requests carry them.
    pub route_set: Vec<String>,
    /// The last CSeq number we used.
    pub local_cseq: u32,
    /// Transport and address our requests are sent to.
    pub peer: Peer,
    /// Early, Confirmed or Terminated.
    pub state: DialogState,
}

fn uri_of(value: &str, header: &'static str) -> Result<String, Error> {
    name_addr(value)
        .map(|n| n.uri.to_string())
        .ok_or(Error::InvalidHeader(header))
}

impl Dialog {
    /// The dialog we (UAS) create when answering `invite` with a tagged 1xx or 2xx.
    pub fn uas(invite: &Request, local_tag: String, peer: Peer) -> Result<Dialog, Error> {
        Ok(Dialog {
            call_id: invite.call_id()?,
            local_tag,
            remote_tag: invite.from_tag().ok_or(Error::InvalidHeader("From"))?,
            local_uri: uri_of(&invite.to_header()?, "To")?,
            remote_uri: uri_of(&invite.from_header()?, "From")?,
            remote_target: invite
                .contact_uri()
                .ok_or(Error::MissingHeader("Contact"))?,
            route_set: invite.header_values("Record-Route"),
            local_cseq: 0,
            peer,
            state: DialogState::Early,
        })
    }

    /// The dialog we (UAC) get from a 101–299 with a To tag answering our `invite`.
    pub fn uac(invite: &Request, response: &Response, peer: Peer) -> Result<Dialog, Error> {
        let state = match response.status() {
            101..=199 => DialogState::Early,
            200..=299 => DialogState::Confirmed,
            _ => return Err(Error::NoDialog),
        };
        let remote_target = match (response.contact_uri(), state) {
            (Some(c), _) => c,
            (None, DialogState::Early) => invite.uri(),
            (None, _) => return Err(Error::MissingHeader("Contact")),
        };
        let mut route_set = response.header_values("Record-Route");
        route_set.reverse();
        Ok(Dialog {
            call_id: invite.call_id()?,
            local_tag: invite.from_tag().ok_or(Error::InvalidHeader("From"))?,
            remote_tag: response.to_tag().ok_or(Error::InvalidHeader("To"))?,
            local_uri: uri_of(&invite.from_header()?, "From")?,
            remote_uri: uri_of(&invite.to_header()?, "To")?,
            remote_target,
            route_set,
            local_cseq: invite.cseq()?.0,
            peer,
            state,
        })
    }

    /// The next in-dialog request (BYE, INFO, re-INVITE, ...) with CSeq one higher.
    pub fn request(&mut self, method: Method, local: &LocalEndpoint, branch: String) -> Request {
        self.local_cseq = self.local_cseq.saturating_add(1);
        self.build(method, self.local_cseq, local, &branch, true)
    }

    /// The ACK for a 2xx to our INVITE with CSeq `invite_cseq` (a new transaction: new branch).
    pub fn ack(&self, invite_cseq: u32, local: &LocalEndpoint, branch: String) -> Request {
        self.build(Method::Ack, invite_cseq, local, &branch, false)
    }

    /// Request-URI and Route values per RFC 3261 §12.2.1.1 (loose or strict first hop).
    fn target(&self) -> (String, Vec<String>) {
        let Some(first) = self.route_set.first() else {
            return (self.remote_target.clone(), Vec::new());
        };
        let first_uri = name_addr(first)
            .map(|n| n.uri.to_string())
            .unwrap_or_else(|| first.clone());
        if is_loose(&first_uri) {
            return (self.remote_target.clone(), self.route_set.clone());
        }
        let mut routes: Vec<String> = self.route_set.iter().skip(1).cloned().collect();
        routes.push(format!("<{}>", self.remote_target));
        (first_uri, routes)
    }

    fn build(
        &self,
        method: Method,
        cseq: u32,
        local: &LocalEndpoint,
        branch: &str,
        contact: bool,
    ) -> Request {
        let (uri, routes) = self.target();
        let to = if self.remote_tag.is_empty() {
            format!("<{}>", self.remote_uri)
        } else {
            format!("<{}>;tag={}", self.remote_uri, self.remote_tag)
        };
        let mut b = RequestBuilder::new(method, &uri)
            .via(local.transport, local.sent_by, branch)
            .max_forwards(70)
            .from(&format!("<{}>;tag={}", self.local_uri, self.local_tag))
            .to(&to)
            .call_id(&self.call_id)
            .cseq(cseq);
        if contact {
            b = b.contact(&local.contact);
        }
        for r in routes {
            b = b.header("Route", &r);
        }
        b.build()
    }
}

/// True when a route URI carries the `lr` parameter (loose routing, RFC 3261 §19.1.1).
fn is_loose(uri: &str) -> bool {
    let host_part = uri.rsplit_once('@').map_or(uri, |(_, h)| h);
    host_part
        .split_once(';')
        .is_some_and(|(_, params)| param(&format!(";{params}"), "lr").is_some())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::message::{SipMessage, parse, response_to};

    fn local() -> LocalEndpoint {
        LocalEndpoint {
            transport: Transport::Udp,
            sent_by: "10.0.0.1:5060".parse().expect("addr"),
            contact: "sip:switchboard@10.0.0.1:5060;transport=udp".into(),
        }
    }

    fn peer() -> Peer {
        Peer::udp("192.168.1.20:5060".parse().expect("addr"))
    }

    fn incoming_invite() -> Request {
        let text = "INVITE sip:600@10.0.0.1 SIP/2.0\r
Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bKPjin\r
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r
Max-Forwards: 70\r
From: \"王医生\" <sip:1002@10.0.0.1>;tag=caller-tag\r
To: <sip:600@10.0.0.1>\r
Contact: <sip:1002@192.168.1.20:5060;ob>\r
Call-ID: dlg-1\r
CSeq: 314 INVITE\r
Content-Length: 0\r
\r
";
        match parse(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("bad fixture: {other:?}"),
        }
    }

    fn round_trip(r: &Request) -> Request {
        match parse(&r.to_bytes()) {
            Ok(SipMessage::Request(x)) => x,
            other => panic!("did not parse back: {other:?}"),
        }
    }

    #[test]
    fn uas_dialog_from_invite_and_bye_with_increasing_cseq() {
        let invite = incoming_invite();
        let mut d = Dialog::uas(&invite, "our-tag".into(), peer()).unwrap();
        assert_eq!(d.call_id, "dlg-1");
        assert_eq!(
            (d.local_tag.as_str(), d.remote_tag.as_str()),
            ("our-tag", "caller-tag")
        );
        assert_eq!(d.local_uri, "sip:600@10.0.0.1");
        assert_eq!(d.remote_uri, "sip:1002@10.0.0.1");
        assert_eq!(d.remote_target, "sip:1002@192.168.1.20:5060;ob");
        assert_eq!(
            d.route_set,
            vec!["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        assert_eq!(d.state, DialogState::Early);

        let bye = round_trip(&d.request(Method::Bye, &local(), "z9hG4bKbye1".into()));
        assert_eq!(bye.method(), Method::Bye);
        assert_eq!(bye.uri(), "sip:1002@192.168.1.20:5060;ob");
        assert_eq!(bye.header_values("Route"), d.route_set);
        assert_eq!(bye.from_tag().as_deref(), Some("our-tag"));
        assert_eq!(bye.to_tag().as_deref(), Some("caller-tag"));
        assert_eq!(bye.to_user().as_deref(), Some("1002"));
        assert_eq!(bye.call_id().unwrap(), "dlg-1");
        assert_eq!(bye.top_via_branch().unwrap(), "z9hG4bKbye1");
        let c1 = bye.cseq().unwrap();
        let info = d.request(Method::Info, &local(), "z9hG4bKinfo".into());
        let c2 = info.cseq().unwrap();
        assert_eq!(c1, (1, Method::Bye));
        assert_eq!(c2, (2, Method::Info));
        assert_eq!(d.local_cseq, 2);
    }

    #[test]
    fn uac_dialog_from_200_reverses_record_route_and_acks() {
        let invite = RequestBuilder::new(Method::Invite, "sip:1001@192.168.1.20")
            .via(Transport::Udp, local().sent_by, "z9hG4bKout")
            .from("<sip:switchboard@10.0.0.1>;tag=ours")
            .to("<sip:1001@192.168.1.20>")
            .call_id("dlg-2")
            .cseq(7)
            .contact(&local().contact)
            .build();
        let ok = response_to(&invite, 200, "OK", Some("theirs"))
            .with_header("Record-Route", "<sip:p2.example.com;lr>")
            .with_header("Record-Route", "<sip:p1.example.com;lr>")
            .with_header("Contact", "<sip:1001@192.168.1.20:5062;transport=udp>");
        let mut d = Dialog::uac(&invite, &ok, peer()).unwrap();
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(d.remote_target, "sip:1001@192.168.1.20:5062;transport=udp");
        assert_eq!(
            d.route_set,
            vec!["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        assert_eq!(d.local_cseq, 7);

        let ack = round_trip(&d.ack(7, &local(), "z9hG4bKack".into()));
        assert_eq!(ack.method(), Method::Ack);
        assert_eq!(ack.cseq().unwrap(), (7, Method::Ack));
        assert_eq!(ack.uri(), d.remote_target);
        assert_eq!(ack.to_tag().as_deref(), Some("theirs"));
        assert_eq!(ack.top_via_branch().unwrap(), "z9hG4bKack");
        assert_eq!(ack.header_values("Route"), d.route_set);
        assert_eq!(d.local_cseq, 7, "ACK does not use a new CSeq");
        let bye = d.request(Method::Bye, &local(), "z9hG4bKb".into());
        assert_eq!(bye.cseq().unwrap(), (8, Method::Bye));
    }

    #[test]
    fn strict_first_route_goes_into_the_request_uri() {
        let mut d = Dialog::uas(&incoming_invite(), "t".into(), peer()).unwrap();
        d.route_set = vec![
            "<sip:strict.example.com>".into(),
            "<sip:p2.example.com;lr>".into(),
        ];
        let bye = d.request(Method::Bye, &local(), "z9hG4bKs".into());
        assert_eq!(bye.uri(), "sip:strict.example.com");
        assert_eq!(
            bye.header_values("Route"),
            vec!["<sip:p2.example.com;lr>", "<sip:1002@192.168.1.20:5060;ob>"]
        );
        assert!(is_loose("sip:user@p.example.com;transport=tcp;lr"));
        assert!(!is_loose("sip:lr@p.example.com"));
    }

    #[test]
    fn early_dialog_without_contact_targets_the_request_uri() {
        let invite = RequestBuilder::new(Method::Invite, "sip:1001@192.168.1.20")
            .from("<sip:a@x>;tag=f")
            .to("<sip:1001@192.168.1.20>")
            .call_id("c")
            .cseq(1)
            .build();
        let ringing = response_to(&invite, 180, "Ringing", Some("r"));
        let d = Dialog::uac(&invite, &ringing, peer()).unwrap();
        assert_eq!(d.state, DialogState::Early);
        assert_eq!(d.remote_target, "sip:1001@192.168.1.20");
    }

    #[test]
    fn dialogs_are_refused_without_the_needed_headers() {
        let invite = incoming_invite();
        let no_tag = invite
            .clone()
            .without_header("From")
            .with_header("From", "<sip:1002@10.0.0.1>");
        assert!(matches!(
            Dialog::uas(&no_tag, "t".into(), peer()),
            Err(Error::InvalidHeader("From"))
        ));
        let no_contact = invite.clone().without_header("Contact");
        assert!(matches!(
            Dialog::uas(&no_contact, "t".into(), peer()),
            Err(Error::MissingHeader("Contact"))
        ));

        let ours = invite
            .clone()
            .without_header("From")
            .with_header("From", "<sip:sb@10.0.0.1>;tag=x");
        let busy = response_to(&ours, 486, "Busy Here", Some("r"));
        assert!(matches!(
            Dialog::uac(&ours, &busy, peer()),
            Err(Error::NoDialog)
        ));
        let untagged = response_to(&ours, 200, "OK", None).with_header("Contact", "<sip:a@b>");
        assert!(matches!(
            Dialog::uac(&ours, &untagged, peer()),
            Err(Error::InvalidHeader("To"))
        ));
        let no_contact_ok = response_to(&ours, 200, "OK", Some("r"));
        assert!(matches!(
            Dialog::uac(&ours, &no_contact_ok, peer()),
            Err(Error::MissingHeader("Contact"))
        ));
    }
}
