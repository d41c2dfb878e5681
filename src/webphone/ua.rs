//! [`AgentUa`]: the SIP phone a browser agent has, sans-IO. It registers as the agent with
//! Switchboard's own SIP side (digest, as any phone), keeps the registration fresh, takes
//! offered calls (180 at once, 200 when the agent clicks Answer, 603 on Decline), answers
//! CANCEL, BYE and in-dialog requests, and unregisters when the page goes away.
//!
//! Bytes in through [`AgentUa::handle_sip`], out through [`AgentUa::poll_transmit`];
//! what the browser should know through [`AgentUa::poll_event`]; one deadline at
//! [`AgentUa::poll_timeout`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip::dialog::{Dialog, LocalEndpoint};
use sip::ids::IdGen;
use sip::message::{Method, Request, RequestBuilder, Response, response_to};
use sip::sdp::{self, Codec, Negotiated};
use sip::transaction::{TimerConfig, TransactionEvent, TransactionKey, TransactionLayer};
use sip::transport::{Peer, Transmit, Transport};

/// The registration's lifetime we ask for; refreshed at half of what is granted.
const EXPIRES_S: u32 = 120;
/// Challenges answered in a row before the registration is given up.
const MAX_AUTH_TRIES: u32 = 2;

/// What the browser is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UaEvent {
    /// The agent's browser phone is registered (calls can be offered to it).
    Registered,
    /// The registration was refused (status) or could not be answered.
    RegistrationFailed(String),
    /// A call rings (`call_id`: the SIP Call-ID of the agent leg).
    Ringing { call_id: String },
    /// The agent answered: media flows with Switchboard's agent-leg RTP at `remote`.
    Talking { negotiated: Negotiated },
    /// The call rang out, was taken back (CANCEL) or hung up (BYE).
    Ended,
}

#[derive(Debug)]
struct Offered {
    key: TransactionKey,
    invite: Request,
    local_tag: String,
}

#[derive(Debug)]
enum CallState {
    Idle,
    Ringing(Offered),
    Talking {
        dialog: Dialog,
        /// Our last SDP (re-INVITEs are answered with it, one version up).
        sdp: String,
    },
}

/// See the module documentation.
pub struct AgentUa {
    agent: String,
    password: String,
    server: Peer,
    local: LocalEndpoint,
    local_rtp: SocketAddr,
    codecs: Vec<Codec>,
    tl: TransactionLayer,
    ids: IdGen,
    register_call_id: String,
    register_cseq: u32,
    register_key: Option<TransactionKey>,
    auth_tries: u32,
    refresh_at: Option<Instant>,
    registered: bool,
    closing: bool,
    call: CallState,
    events: VecDeque<UaEvent>,
}

impl AgentUa {
    /// A phone for `agent`, whose SIP socket is `local_sip` and RTP socket `local_rtp`,
    /// registering with Switchboard at `server`. `codecs`: what it answers with, best first.
    pub fn new(
        agent: &str,
        password: &str,
        server: SocketAddr,
        local_sip: SocketAddr,
        local_rtp: SocketAddr,
        codecs: Vec<Codec>,
        seed: u64,
    ) -> Self {
        let mut ids = IdGen::new(seed);
        Self {
            agent: agent.to_owned(),
            password: password.to_owned(),
            server: Peer {
                transport: Transport::Udp,
                addr: server,
            },
            local: LocalEndpoint {
                transport: Transport::Udp,
                sent_by: local_sip,
                contact: format!("sip:{agent}@{local_sip};transport=udp"),
            },
            local_rtp,
            codecs,
            tl: TransactionLayer::new(TimerConfig::default()),
            register_call_id: ids.call_id(),
            ids,
            register_cseq: 0,
            register_key: None,
            auth_tries: 0,
            refresh_at: None,
            registered: false,
            closing: false,
            call: CallState::Idle,
            events: VecDeque::new(),
        }
    }

    /// Sends the first REGISTER.
    pub fn start(&mut self, now: Instant) {
        self.register(now, None);
    }

    /// The page went away: hang up a call in progress, and unregister.
    pub fn close(&mut self, now: Instant) {
        self.closing = true;
        self.refresh_at = None;
        match std::mem::replace(&mut self.call, CallState::Idle) {
            CallState::Ringing(o) => {
                let busy = response_to(
                    &o.invite,
                    480,
                    "Temporarily Unavailable",
                    Some(&o.local_tag),
                );
                self.tl.send_response(now, &o.key, busy);
            }
            CallState::Talking { mut dialog, .. } => {
                let bye = dialog.request(Method::Bye, &self.local, self.ids.branch());
                self.tl.send_request(now, self.server, bye);
            }
            CallState::Idle => {}
        }
        self.auth_tries = 0;
        self.register(now, None);
    }

    /// Whether the SIP side has nothing more to send (after [`Self::close`]).
    pub fn is_done(&self) -> bool {
        self.closing && self.register_key.is_none() && self.tl.poll_timeout().is_none()
    }

    pub fn is_registered(&self) -> bool {
        self.registered
    }

    fn register(&mut self, now: Instant, authorization: Option<String>) {
        self.register_cseq += 1;
        let host = self.server.addr;
        let uri = format!("sip:{host}");
        let expires = if self.closing { 0 } else { EXPIRES_S };
        let mut b = RequestBuilder::new(Method::Register, &uri)
            .via(Transport::Udp, self.local.sent_by, &self.ids.branch())
            .max_forwards(70)
            .from(&format!(
                "<sip:{}@{}>;tag={}",
                self.agent,
                host.ip(),
                self.ids.tag()
            ))
            .to(&format!("<sip:{}@{}>", self.agent, host.ip()))
            .call_id(&self.register_call_id)
            .cseq(self.register_cseq)
            .contact(&self.local.contact)
            .header("Expires", &expires.to_string())
            .header("User-Agent", "Switchboard browser phone");
        if let Some(auth) = authorization {
            b = b.header("Authorization", &auth);
        }
        self.register_key = Some(self.tl.send_request(now, self.server, b.build()));
    }

    /// The agent clicked Answer: 200 with our SDP. `false` if nothing rings or the offer
    /// has no codec in common (then the call is refused with 488).
    pub fn answer(&mut self, now: Instant) -> bool {
        let CallState::Ringing(o) = std::mem::replace(&mut self.call, CallState::Idle) else {
            return false;
        };
        let session = self.ids.next_u64() >> 1;
        let answered = sdp::parse(o.invite.body())
            .and_then(|offer| sdp::answer(&offer, &self.codecs, self.local_rtp, session));
        let dialog = Dialog::uas(&o.invite, o.local_tag.clone(), self.server);
        let (Ok((body, negotiated)), Ok(dialog)) = (answered, dialog) else {
            let refuse = response_to(&o.invite, 488, "Not Acceptable Here", Some(&o.local_tag));
            self.tl.send_response(now, &o.key, refuse);
            self.events.push_back(UaEvent::Ended);
            return false;
        };
        let ok = response_to(&o.invite, 200, "OK", Some(&o.local_tag))
            .with_header("Contact", &format!("<{}>", self.local.contact))
            .with_body("application/sdp", body.clone().into_bytes());
        self.tl.send_response(now, &o.key, ok);
        self.call = CallState::Talking { dialog, sdp: body };
        self.events.push_back(UaEvent::Talking { negotiated });
        true
    }

    /// The agent clicked Decline: 603, and Switchboard offers the call on.
    pub fn decline(&mut self, now: Instant) {
        if let CallState::Ringing(o) = std::mem::replace(&mut self.call, CallState::Idle) {
            let no = response_to(&o.invite, 603, "Decline", Some(&o.local_tag));
            self.tl.send_response(now, &o.key, no);
            self.events.push_back(UaEvent::Ended);
        }
    }

    /// A datagram from Switchboard's SIP side (anything else is not ours and ignored).
    pub fn handle_sip(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        if from != self.server.addr {
            return;
        }
        let Ok(msg) = sip::message::parse(bytes) else {
            return;
        };
        self.tl.handle_message(now, self.server, msg);
        self.drain(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.tl.handle_timeout(now);
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            self.auth_tries = 0;
            self.register(now, None);
        }
        self.drain(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.tl.poll_timeout(), self.refresh_at]
            .into_iter()
            .flatten()
            .min()
    }

    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tl.poll_transmit()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    fn drain(&mut self, now: Instant) {
        while let Some(ev) = self.tl.poll_event() {
            match ev {
                TransactionEvent::Request { key, request, .. } => {
                    self.on_request(now, key, request)
                }
                TransactionEvent::Response { key, response } => {
                    if self.register_key.as_ref() == Some(&key) {
                        self.on_register_response(now, &response);
                    }
                }
                TransactionEvent::Timeout { key } => {
                    if self.register_key.as_ref() == Some(&key) {
                        self.register_key = None;
                        if !self.closing {
                            self.registered = false;
                            self.events.push_back(UaEvent::RegistrationFailed(
                                "Switchboard did not answer the REGISTER".into(),
                            ));
                            self.refresh_at = Some(now + Duration::from_secs(5));
                        }
                    }
                }
                TransactionEvent::Ack { .. } => {}
            }
        }
    }

    fn on_register_response(&mut self, now: Instant, response: &Response) {
        let status = response.status();
        match status {
            100..=199 => return,
            200..=299 => {
                self.auth_tries = 0;
                if !self.closing {
                    let granted =
                        sip::registrar::granted_expiry(response).unwrap_or(u64::from(EXPIRES_S));
                    self.refresh_at = Some(now + Duration::from_secs((granted / 2).max(10)));
                    if !self.registered {
                        self.registered = true;
                        self.events.push_back(UaEvent::Registered);
                    }
                }
            }
            401 | 407 if self.auth_tries < MAX_AUTH_TRIES => {
                self.auth_tries += 1;
                let header = if status == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                let uri = format!("sip:{}", self.server.addr);
                let cnonce = self.ids.tag();
                let auth =
                    sip::digest_client::pick(&response.header_values(header)).and_then(|c| {
                        sip::digest_client::authorization(
                            &c,
                            &self.agent,
                            &self.password,
                            "REGISTER",
                            &uri,
                            &cnonce,
                        )
                    });
                match auth {
                    Some(auth) => return self.register(now, Some(auth)),
                    None => self.failed("no digest challenge this phone can answer".into()),
                }
            }
            s => self.failed(format!("REGISTER answered {s}")),
        }
        self.register_key = None;
    }

    fn failed(&mut self, why: String) {
        if !self.closing {
            self.registered = false;
            self.events.push_back(UaEvent::RegistrationFailed(why));
        }
    }

    fn on_request(&mut self, now: Instant, key: TransactionKey, request: Request) {
        match request.method() {
            Method::Invite if request.to_tag().is_some() => self.on_reinvite(now, &key, &request),
            Method::Invite => self.on_invite(now, key, request),
            Method::Cancel => {
                self.tl
                    .send_response(now, &key, response_to(&request, 200, "OK", None));
                let cancelled = matches!(&self.call, CallState::Ringing(o)
                    if Some(&o.key) == self.tl.matching_invite(&request).as_ref());
                if cancelled
                    && let CallState::Ringing(o) =
                        std::mem::replace(&mut self.call, CallState::Idle)
                {
                    let gone =
                        response_to(&o.invite, 487, "Request Terminated", Some(&o.local_tag));
                    self.tl.send_response(now, &o.key, gone);
                    self.events.push_back(UaEvent::Ended);
                }
            }
            Method::Bye => {
                let ours = matches!(&self.call, CallState::Talking { dialog, .. }
                    if request.call_id().is_ok_and(|id| id == dialog.call_id));
                let status = if ours {
                    (200, "OK")
                } else {
                    (481, "Call/Transaction Does Not Exist")
                };
                self.tl
                    .send_response(now, &key, response_to(&request, status.0, status.1, None));
                if ours {
                    self.call = CallState::Idle;
                    self.events.push_back(UaEvent::Ended);
                }
            }
            Method::Ack => {}
            // OPTIONS keep-alives, UPDATE (a session refresh), INFO, NOTIFY: fine.
            _ => self
                .tl
                .send_response(now, &key, response_to(&request, 200, "OK", None)),
        }
    }

    fn on_invite(&mut self, now: Instant, key: TransactionKey, invite: Request) {
        let tag = self.ids.tag();
        if self.closing || !matches!(self.call, CallState::Idle) {
            let busy = response_to(&invite, 486, "Busy Here", Some(&tag));
            self.tl.send_response(now, &key, busy);
            return;
        }
        let ringing = response_to(&invite, 180, "Ringing", Some(&tag))
            .with_header("Contact", &format!("<{}>", self.local.contact));
        self.tl.send_response(now, &key, ringing);
        let call_id = invite.call_id().unwrap_or_default();
        self.call = CallState::Ringing(Offered {
            key,
            invite,
            local_tag: tag,
        });
        self.events.push_back(UaEvent::Ringing { call_id });
    }

    /// A re-INVITE in our call (a session refresh): the same media, answered again.
    fn on_reinvite(&mut self, now: Instant, key: &TransactionKey, request: &Request) {
        let answer = match &self.call {
            CallState::Talking { dialog, sdp }
                if request.call_id().is_ok_and(|id| id == dialog.call_id) =>
            {
                Some(sdp.clone())
            }
            _ => None,
        };
        let response = match answer {
            Some(body) => response_to(request, 200, "OK", None)
                .with_header("Contact", &format!("<{}>", self.local.contact))
                .with_body("application/sdp", body.into_bytes()),
            None => response_to(request, 481, "Call/Transaction Does Not Exist", None),
        };
        self.tl.send_response(now, key, response);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip::auth::{Algorithm, challenge_header, parse_authorization, verify};
    use sip::message::{SipMessage, parse};

    const SERVER: &str = "127.0.0.1:5060";
    const SIP: &str = "127.0.0.1:40000";
    const RTP: &str = "127.0.0.1:40002";

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn ua() -> AgentUa {
        AgentUa::new(
            "1001",
            "demo-1001",
            addr(SERVER),
            addr(SIP),
            addr(RTP),
            vec![Codec::Pcmu, Codec::Pcma],
            7,
        )
    }

    /// Everything the phone sent, parsed.
    fn sent(ua: &mut AgentUa) -> Vec<SipMessage> {
        let mut out = Vec::new();
        while let Some(t) = ua.poll_transmit() {
            assert_eq!(t.peer.addr, addr(SERVER), "only Switchboard is spoken to");
            out.push(parse(&t.bytes).expect("the phone sends what parses"));
        }
        out
    }

    fn only_request(ua: &mut AgentUa) -> Request {
        let mut all = sent(ua);
        assert_eq!(all.len(), 1, "{all:?}");
        match all.remove(0) {
            SipMessage::Request(r) => r,
            SipMessage::Response(r) => panic!("a response: {}", r.status()),
        }
    }

    fn responses(ua: &mut AgentUa) -> Vec<u16> {
        sent(ua)
            .into_iter()
            .filter_map(|m| match m {
                SipMessage::Response(r) => Some(r.status()),
                SipMessage::Request(_) => None,
            })
            .collect()
    }

    fn deliver(ua: &mut AgentUa, now: Instant, msg: impl Into<SipMessage>) {
        ua.handle_sip(now, addr(SERVER), &msg.into().to_bytes());
    }

    fn events(ua: &mut AgentUa) -> Vec<UaEvent> {
        std::iter::from_fn(|| ua.poll_event()).collect()
    }

    /// Registered through a digest challenge; returns the time.
    fn registered(ua: &mut AgentUa) -> Instant {
        let t0 = Instant::now();
        ua.start(t0);
        let first = only_request(ua);
        assert_eq!(first.method(), Method::Register);
        assert!(first.header("Authorization").is_none());
        let challenge = response_to(&first, 401, "Unauthorized", Some("srv")).with_header(
            "WWW-Authenticate",
            &challenge_header("switchboard", "n0nce", Algorithm::Sha256),
        );
        deliver(ua, t0, challenge);
        let second = only_request(ua);
        let creds = parse_authorization(
            &second
                .header("Authorization")
                .expect("answers the challenge"),
        )
        .expect("digest");
        assert_eq!(
            (creds.username.as_str(), creds.algorithm),
            ("1001", Algorithm::Sha256)
        );
        assert!(
            verify(&creds, "REGISTER", "demo-1001"),
            "the agent's password proves it"
        );
        assert_eq!(second.header("Expires").as_deref(), Some("120"));
        let ok = response_to(&second, 200, "OK", Some("srv")).with_header("Expires", "120");
        deliver(ua, t0, ok);
        assert_eq!(events(ua), [UaEvent::Registered]);
        assert!(ua.is_registered());
        t0
    }

    fn invite(call_id: &str) -> Request {
        let offer = sdp::offer(
            &[Codec::Pcmu, Codec::Pcma],
            101,
            addr("127.0.0.1:30000"),
            1,
            Some(20),
        );
        RequestBuilder::new(Method::Invite, &format!("sip:1001@{SIP}"))
            .via(Transport::Udp, addr(SERVER), &format!("z9hG4bK-{call_id}"))
            .max_forwards(70)
            .from(&format!("<sip:switchboard@{SERVER}>;tag=sb1"))
            .to(&format!("<sip:1001@{SIP}>"))
            .call_id(call_id)
            .cseq(1)
            .contact(&format!("sip:switchboard@{SERVER}"))
            .body("application/sdp", offer.into_bytes())
            .build()
    }

    /// A request inside the dialog the phone's answer `ok` made.
    fn in_dialog(method: Method, ok_to: &str, call_id: &str, cseq: u32) -> Request {
        RequestBuilder::new(method, &format!("sip:1001@{SIP}"))
            .via(
                Transport::Udp,
                addr(SERVER),
                &format!("z9hG4bK-{call_id}-{cseq}"),
            )
            .max_forwards(70)
            .from(&format!("<sip:switchboard@{SERVER}>;tag=sb1"))
            .to(ok_to)
            .call_id(call_id)
            .cseq(cseq)
            .build()
    }

    #[test]
    fn registers_with_digest_refreshes_and_unregisters_on_close() {
        let mut ua = ua();
        let t0 = registered(&mut ua);
        // Refreshed at half the granted time, not before (the REGISTER's transaction
        // lingers 5 s first, Timer K).
        ua.handle_timeout(t0 + Duration::from_secs(6));
        assert!(sent(&mut ua).is_empty());
        let refresh = ua.poll_timeout().expect("a refresh is due");
        assert!(
            refresh >= t0 + Duration::from_secs(59),
            "{:?}",
            refresh - t0
        );
        ua.handle_timeout(t0 + Duration::from_secs(61));
        let again = only_request(&mut ua);
        assert_eq!(again.method(), Method::Register);

        ua.close(t0 + Duration::from_secs(62));
        let bye = sent(&mut ua);
        let last = bye.iter().rev().find_map(|m| match m {
            SipMessage::Request(r) => Some(r),
            SipMessage::Response(_) => None,
        });
        assert_eq!(
            last.and_then(|r| r.header("Expires")).as_deref(),
            Some("0"),
            "unregisters"
        );
    }

    #[test]
    fn a_refused_registration_is_reported() {
        let mut ua = ua();
        let t0 = Instant::now();
        ua.start(t0);
        let first = only_request(&mut ua);
        deliver(
            &mut ua,
            t0,
            response_to(&first, 403, "Forbidden", Some("srv")),
        );
        assert_eq!(
            events(&mut ua),
            [UaEvent::RegistrationFailed("REGISTER answered 403".into())]
        );
        assert!(!ua.is_registered());
    }

    #[test]
    fn rings_then_answers_with_g711_and_hangs_up_on_bye() {
        let mut ua = ua();
        let t0 = registered(&mut ua);
        deliver(&mut ua, t0, invite("c1"));
        assert_eq!(responses(&mut ua), [180]);
        assert_eq!(
            events(&mut ua),
            [UaEvent::Ringing {
                call_id: "c1".into()
            }]
        );
        // A second call while one rings is refused.
        deliver(&mut ua, t0, invite("c2"));
        assert_eq!(responses(&mut ua), [486]);

        assert!(ua.answer(t0));
        let ok = sent(&mut ua)
            .into_iter()
            .find_map(|m| match m {
                SipMessage::Response(r) if r.status() == 200 => Some(r),
                _ => None,
            })
            .expect("200 OK");
        let answer = sdp::parse(ok.body()).expect("an SDP answer");
        assert_eq!(answer.codecs.first(), Some(&Codec::Pcmu));
        assert_eq!(
            (answer.addr, answer.port),
            (addr(RTP).ip(), addr(RTP).port())
        );
        let Some(UaEvent::Talking { negotiated }) = events(&mut ua).pop() else {
            panic!("not talking");
        };
        assert_eq!(negotiated.remote, addr("127.0.0.1:30000"));
        assert_eq!(negotiated.telephone_event, Some(101));

        let to = ok.to_header().expect("To");
        deliver(&mut ua, t0, in_dialog(Method::Options, &to, "c1", 2));
        assert_eq!(responses(&mut ua), [200], "keep-alives are answered");
        deliver(&mut ua, t0, in_dialog(Method::Bye, &to, "c1", 3));
        assert_eq!(responses(&mut ua), [200]);
        assert_eq!(events(&mut ua), [UaEvent::Ended]);
        deliver(&mut ua, t0, in_dialog(Method::Bye, &to, "c1", 4));
        assert_eq!(responses(&mut ua), [481], "a BYE for no call");
    }

    #[test]
    fn a_cancel_or_a_decline_ends_the_ringing() {
        let mut ua = ua();
        let t0 = registered(&mut ua);
        let ringing = invite("c1");
        deliver(&mut ua, t0, ringing.clone());
        let _ = sent(&mut ua);
        let _ = events(&mut ua);
        deliver(&mut ua, t0, sip::message::cancel_for(&ringing));
        let mut got = responses(&mut ua);
        got.sort_unstable();
        assert_eq!(got, [200, 487]);
        assert_eq!(events(&mut ua), [UaEvent::Ended]);
        assert!(!ua.answer(t0), "nothing rings any more");

        deliver(&mut ua, t0, invite("c2"));
        let _ = sent(&mut ua);
        let _ = events(&mut ua);
        ua.decline(t0);
        assert_eq!(responses(&mut ua), [603]);
        assert_eq!(events(&mut ua), [UaEvent::Ended]);
    }
}
