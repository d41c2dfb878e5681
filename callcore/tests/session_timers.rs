//! RFC 4028 session timers on the patient's leg, in simulated time: the phone that asks
//! for a timer gets it, refreshes keep the call, a call whose refreshes stop is hung up
//! before the interval ends, and where we must refresh we do (and stop if the phone
//! cannot take UPDATE). In-dialog refreshes that change nothing are answered 200 with
//! the same SDP; a real media change (hold, a new address) is answered one SDP version
//! up and the media follows it; an offer with no codec we use gets 488 and the call
//! goes on.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use callcore::{Core, MediaCommand, Output};
use common::{CORE_SIP, core_for, local, sdp};
use sip::dialog::Dialog;
use sip::message::{Method, Request, RequestBuilder, Response, SipMessage, response_to};
use sip::transport::{Peer, Transport};

const PHONE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)), 5060);
const MEDIA: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)), 4000);

/// One patient phone and the core, with every output applied at once.
struct Bench {
    core: Core,
    now: Instant,
    /// SIP messages the core sent the phone, oldest first.
    inbox: Vec<SipMessage>,
    /// Commands the core gave the call's media, oldest first.
    media: Vec<MediaCommand>,
    branch: u32,
}

impl Bench {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            core: core_for(11, 10, now),
            now,
            inbox: Vec::new(),
            media: Vec::new(),
            branch: 0,
        }
    }

    fn apply(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit(t) if t.peer.addr == PHONE => {
                    let msg = sip::message::parse(&t.bytes).expect("the core sends parsable SIP");
                    self.inbox.push(msg);
                }
                Output::BindRtp { token, port } => {
                    let addr = SocketAddr::new(CORE_SIP.ip(), port);
                    self.core.handle_port_bound(self.now, token, Ok(addr));
                }
                Output::LookupPatient { call, .. } => {
                    self.core
                        .handle_patient_loaded(self.now, call, None, Vec::new())
                }
                Output::Media { command, .. } => self.media.push(command),
                _ => {}
            }
        }
    }

    fn send(&mut self, msg: SipMessage) {
        let now = self.now;
        self.core
            .handle_sip(now, now, Peer::udp(PHONE), &msg.to_bytes());
        self.apply();
    }

    /// Lets `d` of simulated time pass, firing every deadline on the way.
    fn wait(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(at) = self.core.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(at);
            self.core.handle_timeout(self.now);
            self.apply();
        }
        self.now = end;
    }

    fn next_branch(&mut self) -> String {
        self.branch += 1;
        format!("z9hG4bK-st-{}", self.branch)
    }

    /// The responses received so far to requests with `method`.
    fn responses(&self, method: &str) -> Vec<Response> {
        self.inbox
            .iter()
            .filter_map(|m| match m {
                SipMessage::Response(r)
                    if r.cseq().map(|(_, m)| m.as_str() == method).unwrap_or(false) =>
                {
                    Some(r.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// The first final response to the INVITE.
    fn invite_answer(&self) -> Option<Response> {
        self.responses("INVITE")
            .into_iter()
            .find(|r| r.status() >= 200)
    }

    /// Requests the core sent the phone, by method (retransmissions counted once).
    fn requests(&self, method: &str) -> Vec<Request> {
        let mut seen = std::collections::HashSet::new();
        self.inbox
            .iter()
            .filter_map(|m| match m {
                SipMessage::Request(r) if r.method().as_str() == method => Some(r.clone()),
                _ => None,
            })
            .filter(|r| seen.insert(r.top_via_branch().unwrap_or_default()))
            .collect()
    }

    /// INVITE with `extra` headers; returns the INVITE and, if answered 200, the dialog
    /// (after sending the ACK).
    fn call(&mut self, extra: &[(&str, &str)]) -> (Request, Option<Dialog>) {
        let branch = self.next_branch();
        let mut b = RequestBuilder::new(Method::Invite, &format!("sip:clinic@{CORE_SIP}"))
            .via(Transport::Udp, PHONE, &branch)
            .from(&format!("<sip:13800000077@{}>;tag=st", PHONE.ip()))
            .to(&format!("<sip:clinic@{}>", CORE_SIP.ip()))
            .call_id("session-timer-call")
            .cseq(1)
            .contact(&format!("sip:13800000077@{PHONE}"))
            .max_forwards(70);
        for (name, value) in extra {
            b = b.header(name, value);
        }
        let invite = b.body("application/sdp", sdp(MEDIA)).build();
        self.send(SipMessage::Request(invite.clone()));
        let ok = self.invite_answer();
        let dialog = match ok {
            Some(ok) if ok.status() == 200 => {
                let d = Dialog::uac(&invite, &ok, Peer::udp(CORE_SIP)).expect("dialog");
                let ack = d.ack(1, &local(PHONE), self.next_branch());
                self.send(SipMessage::Request(ack));
                Some(d)
            }
            _ => None,
        };
        (invite, dialog)
    }

    /// The final response to an in-dialog request the phone sends.
    fn in_dialog(
        &mut self,
        dialog: &mut Dialog,
        method: Method,
        extra: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Response {
        let branch = self.next_branch();
        let mut req = dialog.request(method.clone(), &local(PHONE), branch);
        for (name, value) in extra {
            req = req.with_header(name, value);
        }
        if let Some(body) = body {
            req = req.with_body("application/sdp", body);
        }
        let before = self.responses(method.as_str()).len();
        self.send(SipMessage::Request(req));
        let got = self.responses(method.as_str());
        let r = got
            .get(before..)
            .and_then(|new| new.iter().find(|r| r.status() >= 200))
            .cloned();
        let r = r.unwrap_or_else(|| panic!("no final answer to the phone's {}", method.as_str()));
        if method == Method::Invite && r.status() == 200 {
            let ack = dialog.ack(dialog.local_cseq, &local(PHONE), self.next_branch());
            self.send(SipMessage::Request(ack));
        }
        r
    }

    /// Answers every request the core sent since `seen` with `status`; returns how many.
    fn answer_requests(&mut self, method: &str, seen: usize, status: u16) -> usize {
        let reqs = self.requests(method);
        let new: Vec<Request> = reqs.get(seen..).unwrap_or_default().to_vec();
        for r in &new {
            let resp = response_to(r, status, "Answer", None);
            self.send(SipMessage::Response(resp));
        }
        new.len()
    }
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.header(name)
}

#[test]
fn a_phone_that_refreshes_keeps_its_call_and_one_that_stops_is_hung_up_before_the_interval() {
    let mut b = Bench::new();
    let (_, dialog) = b.call(&[
        ("Session-Expires", "90;refresher=uac"),
        ("Supported", "timer"),
    ]);
    let mut dialog = dialog.expect("the call is answered");
    let ok = b
        .invite_answer()
        .filter(|r| r.status() == 200)
        .expect("200");
    assert_eq!(
        header(&ok, "Session-Expires").as_deref(),
        Some("90;refresher=uac")
    );
    assert_eq!(header(&ok, "Require").as_deref(), Some("timer"));

    // The phone refreshes every 45 s with UPDATE: the call stays up for many intervals.
    for _ in 0..6 {
        b.wait(Duration::from_secs(45));
        let r = b.in_dialog(
            &mut dialog,
            Method::Other("UPDATE".into()),
            &[
                ("Session-Expires", "90;refresher=uac"),
                ("Supported", "timer"),
            ],
            None,
        );
        assert_eq!(r.status(), 200, "a refresh is answered 200");
        assert_eq!(
            header(&r, "Session-Expires").as_deref(),
            Some("90;refresher=uac")
        );
    }
    assert!(b.requests("BYE").is_empty(), "a refreshed call was hung up");
    assert_eq!(b.core.live().calls, 1);

    // Refreshes stop: the core gives up 30 s before the 90 s are out (min(32, 90/3)).
    b.wait(Duration::from_secs(59));
    assert!(
        b.requests("BYE").is_empty(),
        "hung up before the session could have expired"
    );
    b.wait(Duration::from_secs(2));
    assert_eq!(
        b.requests("BYE").len(),
        1,
        "the call whose refreshes stopped is hung up with a BYE"
    );
}

#[test]
fn an_interval_below_90_s_gets_422_with_min_se_and_nothing_is_allocated() {
    let mut b = Bench::new();
    let (_, dialog) = b.call(&[("Session-Expires", "60"), ("Supported", "timer")]);
    assert!(dialog.is_none());
    let r = b.invite_answer().expect("a final answer");
    assert_eq!(r.status(), 422);
    assert_eq!(header(&r, "Min-SE").as_deref(), Some("90"));
    assert_eq!(
        b.core.live().rtp_ports,
        0,
        "a port was taken for a refused call"
    );
    assert_eq!(b.core.live().calls, 0);
}

#[test]
fn where_the_phone_cannot_refresh_we_do_and_stop_if_it_does_not_take_update() {
    let mut b = Bench::new();
    // Session-Expires without `Supported: timer`: the phone can't refresh, so we do (§9).
    let (_, dialog) = b.call(&[("Session-Expires", "120")]);
    assert!(dialog.is_some());
    let ok = b
        .invite_answer()
        .filter(|r| r.status() == 200)
        .expect("200");
    assert_eq!(
        header(&ok, "Session-Expires").as_deref(),
        Some("120;refresher=uas")
    );
    assert_eq!(
        header(&ok, "Require"),
        None,
        "Require: timer to a phone that doesn't support it"
    );

    b.wait(Duration::from_secs(59));
    assert!(
        b.requests("UPDATE").is_empty(),
        "refreshed before half the interval"
    );
    b.wait(Duration::from_secs(2));
    assert_eq!(
        b.answer_requests("UPDATE", 0, 200),
        1,
        "our refresh at half the interval"
    );
    b.wait(Duration::from_secs(61));
    assert_eq!(b.answer_requests("UPDATE", 1, 405), 1, "the next refresh");
    // UPDATE unknown to the phone: refreshes stop, the call goes on.
    b.wait(Duration::from_secs(600));
    assert_eq!(
        b.requests("UPDATE").len(),
        2,
        "refreshes went on after a 405"
    );
    assert!(
        b.requests("BYE").is_empty(),
        "a phone without UPDATE lost its call"
    );
}

#[test]
fn a_refresh_reinvite_gets_the_same_sdp_and_a_media_change_is_followed_without_ending_the_call() {
    let mut b = Bench::new();
    let (_, dialog) = b.call(&[]);
    let mut dialog = dialog.expect("answered");
    let first = b
        .invite_answer()
        .filter(|r| r.status() == 200)
        .expect("200");
    let version = |r: &Response| {
        let body = String::from_utf8_lossy(r.body()).into_owned();
        let o = body
            .lines()
            .find(|l| l.starts_with("o="))
            .map(str::to_owned);
        o.and_then(|o| o.split_whitespace().nth(2).map(str::to_owned))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("an o= line with a version")
    };

    let same = b.in_dialog(&mut dialog, Method::Invite, &[], Some(sdp(MEDIA)));
    assert_eq!(
        same.status(),
        200,
        "a re-INVITE that changes nothing is accepted"
    );
    assert_eq!(
        same.body(),
        first.body(),
        "the answer is our SDP unchanged (same o= version)"
    );
    let updates = |b: &Bench| {
        b.media
            .iter()
            .filter_map(|m| match m {
                MediaCommand::Update {
                    remote,
                    send,
                    receive,
                    ..
                } => Some((*remote, *send, *receive)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(
        updates(&b).is_empty(),
        "nothing changed, nothing to tell the media"
    );

    let moved = SocketAddr::new(MEDIA.ip(), 4002);
    let changed = b.in_dialog(&mut dialog, Method::Invite, &[], Some(sdp(moved)));
    assert_eq!(changed.status(), 200, "a new media address is taken");
    assert_eq!(version(&changed), version(&first) + 1, "a new SDP version");
    assert_eq!(
        updates(&b),
        vec![(moved, true, true)],
        "the media sends to the new address"
    );

    // Hold: the phone sends only; we must not send to it, and expect its RTP still.
    let held = String::from_utf8_lossy(&sdp(moved)).replace("a=sendrecv", "a=sendonly");
    let on_hold = b.in_dialog(&mut dialog, Method::Invite, &[], Some(held.into_bytes()));
    assert_eq!(on_hold.status(), 200);
    assert!(
        String::from_utf8_lossy(on_hold.body()).contains("a=recvonly"),
        "hold answered recvonly"
    );
    assert_eq!(version(&on_hold), version(&first) + 2);
    assert_eq!(updates(&b).last(), Some(&(moved, false, true)));
    // A session refresh while held keeps the hold (our SDP as last sent).
    let bodyless = b.in_dialog(&mut dialog, Method::Invite, &[], None);
    assert_eq!(bodyless.status(), 200);
    assert_eq!(
        bodyless.body(),
        on_hold.body(),
        "the held session as it stands"
    );
    // Unhold with UPDATE: answered with SDP in the 200.
    let resumed = b.in_dialog(
        &mut dialog,
        Method::Other("UPDATE".into()),
        &[],
        Some(sdp(moved)),
    );
    assert_eq!(resumed.status(), 200);
    assert!(String::from_utf8_lossy(resumed.body()).contains("a=sendrecv"));
    assert_eq!(updates(&b).last(), Some(&(moved, true, true)));

    // No codec we use: refused, the call goes on as it was.
    let g729 = String::from_utf8_lossy(&sdp(MEDIA))
        .replace("RTP/AVP 0 101", "RTP/AVP 18 101")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000");
    let n = updates(&b).len();
    let refused = b.in_dialog(&mut dialog, Method::Invite, &[], Some(g729.into_bytes()));
    assert_eq!(refused.status(), 488, "an offer without a codec we use");
    assert_eq!(updates(&b).len(), n, "the media was not touched");
    assert!(
        b.requests("BYE").is_empty(),
        "the call ended over a mid-call change"
    );
    assert_eq!(b.core.live().calls, 1);
}

#[test]
fn a_phone_requiring_100rel_is_answered_and_one_requiring_an_unknown_extension_gets_420() {
    let mut b = Bench::new();
    let (_, dialog) = b.call(&[("Require", "100rel"), ("Supported", "100rel, timer")]);
    assert!(dialog.is_some(), "a phone requiring 100rel is answered");
    let provisional: Vec<u16> = b
        .responses("INVITE")
        .iter()
        .map(Response::status)
        .filter(|s| *s < 200)
        .collect();
    assert!(
        provisional.iter().all(|s| *s == 100),
        "only 100 Trying before the 200 (nothing to send reliably): {provisional:?}"
    );

    let mut b = Bench::new();
    let (_, dialog) = b.call(&[("Require", "100rel, x-teleport")]);
    assert!(dialog.is_none());
    let refused = b.invite_answer().expect("a final answer");
    assert_eq!(refused.status(), 420);
    assert_eq!(
        header(&refused, "Unsupported").as_deref(),
        Some("x-teleport")
    );
    assert_eq!(b.core.live().calls, 0);
    assert_eq!(b.core.live().rtp_ports, 0, "nothing was allocated");
}
