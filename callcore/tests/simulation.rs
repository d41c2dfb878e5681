//! Call control driven in simulated time through thousands of seeded calls.
//!
//! A world of phones (each with its own SIP transaction layer, over a network
//! that loses and delays datagrams) and a shell that answers the core the way
//! the real one does (ports bound, records read, pops delivered, media that
//! plays prompts and reports DTMF, silence and its end). Patients arrive at
//! random, press digits or not, hang up at every phase, vanish without a BYE
//! or never ACK; agents answer late, never, refuse, or vanish mid-ring or
//! mid-call. After every step the core's audit must be clean (no agent booked
//! twice, ACD and calls agree); at the end every call has an outcome, every
//! patient who was answered had the call ended, and nothing is left: no
//! call, transaction, port, timer or map entry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

mod common;

use callcore::desk::DeskEvent;
use callcore::records::CallRecord;
use callcore::{CallId, Core, Leg, MediaCommand, MediaEvent, Output, PortToken};
use common::{
    AGENTS, CALLBACK_KEY, CORE_SIP, MEDIA_TIMEOUT, REALM, TRUNK, agent_id, core_with, local, ms,
    sdp,
};
use deadlines::Deadlines;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sip::auth::{Algorithm, Credentials, compute_response};
use sip::dialog::Dialog;
use sip::message::{Method, Request, RequestBuilder, Response, SipMessage, response_to};
use sip::transaction::{TimerConfig, TransactionEvent, TransactionKey, TransactionLayer};
use sip::transport::{Peer, Transport};

const PROMPT: Duration = Duration::from_millis(1500);

// ---- the world ----------------------------------------------------------------------

#[derive(Debug)]
enum Event {
    /// A datagram arrives at the core from `from`.
    ToCore {
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// A datagram from the core arrives at a phone.
    ToPhone {
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    /// A phone does its next planned thing.
    Phone {
        addr: SocketAddr,
        act: Act,
    },
    /// The shell's answers.
    PortBound {
        token: PortToken,
        ok: bool,
    },
    PatientLoaded {
        call: CallId,
    },
    PopDelivered {
        call: CallId,
        seq: u64,
    },
    /// An agent put not ready for missed rings is back at the desk and clicks ready.
    DeskReady {
        agent: String,
    },
    RecordingOpened {
        call: CallId,
        ok: bool,
    },
    Media(MediaEvent),
    /// An agent toggles ready / not ready from the desk.
    Desk {
        agent: usize,
        ready: bool,
    },
    /// A new patient calls.
    Arrival,
    /// An agent hands the call it is on to the queue again, from the desk.
    Transfer {
        agent: String,
    },
    /// The agent consulting a colleague completes the transfer, or cancels it.
    ConsultStep {
        agent: String,
    },
    /// The agent holds (or takes back) the caller from the desk.
    DeskHold {
        agent: String,
        held: bool,
    },
    /// The agent hangs up from the desk.
    DeskHangUp {
        agent: String,
    },
    /// The trunk's far end (a patient called back) does something with call `cid`.
    Trunk {
        cid: String,
        act: Act,
    },
    /// A media task reports silence (if it is still the one that went quiet).
    MediaTimeout {
        call: CallId,
        leg: Leg,
        instance: u64,
    },
}

#[derive(Debug, Clone, Copy)]
enum Act {
    /// Patient: press the menu digit (or a wrong one).
    Digit(char),
    /// Patient: hang up (BYE, or CANCEL if not answered yet).
    HangUp,
    /// Patient or agent: stop sending anything, answer nothing, from now on.
    Vanish,
    /// Agent: answer the ringing call.
    Answer,
    /// Agent: refuse the ringing call.
    Busy,
    /// Agent: put the talking call on hold (re-INVITE `sendonly`), or take it off (`sendrecv`).
    Hold(bool),
    /// Agent: REFER the talking call to the queue (0), to no queue (1), attended (2), or
    /// to agent `n - 3` (3 and up).
    Refer(u8),
}

/// How a patient behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Patient {
    /// Hangs up after this long from the answer.
    HangsUpAfter(Duration),
    /// Vanishes (no BYE, no RTP) after this long from the answer.
    VanishesAfter(Duration),
    /// Never ACKs the 200.
    NoAck,
    /// Sends CANCEL right after the INVITE (crossing the 200), then BYE.
    Cancels,
}

#[derive(Debug)]
struct PatientPhone {
    behaviour: Patient,
    invite: Request,
    invite_key: TransactionKey,
    dialog: Option<Dialog>,
    /// 200 received (the patient was answered).
    answered: bool,
    /// The call ended for the patient (BYE either way, or a final refusal).
    ended: bool,
    refused: Option<u16>,
    call: Option<CallId>,
}

#[derive(Debug, Default)]
struct AgentPhone {
    id: String,
    /// 0 for the agent's desk phone; 1 for its second phone (some agents have two,
    /// and every offer rings both).
    device: u8,
    registered: bool,
    /// INVITEs received and their server transactions, by Call-ID.
    ringing: HashMap<String, (TransactionKey, Request)>,
    /// Answered dialogs, by Call-ID.
    talking: HashMap<String, Dialog>,
    /// Call-IDs this phone vanished for (it answers nothing for them).
    vanished: HashSet<String>,
    /// Answered calls this phone took (for the summary).
    answered: u64,
}

/// The trunk callbacks dial through: each INVITE is a patient's phone called back.
#[derive(Debug, Default)]
struct TrunkPhone {
    /// INVITEs ringing and their server transactions, by Call-ID.
    ringing: HashMap<String, (TransactionKey, Request)>,
    /// Answered calls, by Call-ID.
    talking: HashMap<String, Dialog>,
    /// Call-IDs the far end went silent for (not even a 180).
    vanished: HashSet<String>,
    /// Media address of each call's SDP answer → its Call-ID.
    media: HashMap<SocketAddr, String>,
    invites: u64,
    answered: u64,
}

#[derive(Debug)]
enum Phone {
    Patient(Box<PatientPhone>),
    Agent(Box<AgentPhone>),
    Trunk(Box<TrunkPhone>),
}

struct SimMedia {
    /// Which media task of the call (a callback has a second).
    instance: u64,
    recording: bool,
    opened: Option<bool>,
    stopping: bool,
    timeout_sent: bool,
}

struct World {
    rng: StdRng,
    now: Instant,
    start: Instant,
    seq: u64,
    events: BTreeMap<(Instant, u64), Event>,
    core: Core,
    phones: HashMap<SocketAddr, Phone>,
    layers: HashMap<SocketAddr, TransactionLayer>,
    layer_timers: Deadlines<SocketAddr>,
    /// Patient media address → patient SIP address.
    media_owner: HashMap<SocketAddr, SocketAddr>,
    /// The shell's sockets: bound and not yet handed to media or released.
    sockets: HashSet<PortToken>,
    media: HashMap<CallId, SimMedia>,
    records: HashMap<String, CallRecord>,
    /// Every recording file call control asked for.
    recording_paths: Vec<std::path::PathBuf>,
    /// The event log as call control wrote it, in order.
    log: Vec<callcore::records::EventRecord>,
    agents: Vec<SocketAddr>,
    arrivals_left: u64,
    next_patient: u32,
    loss: f64,
    next_media: u64,
    /// Callbacks call control keeps stored for a restart, by call id.
    pending_callbacks: HashMap<String, callcore::records::PendingCallback>,
    callbacks_stored: u64,
    stats: Stats,
}

#[derive(Debug, Default)]
struct Stats {
    arrivals: u64,
    refused_503: u64,
    answered_by_ivr: u64,
    bridged: u64,
    steps: u64,
    /// INVITEs that reached an agent's second phone (offers ring all of an agent's phones).
    second_phone_invites: u64,
    /// CANCELs that reached a ringing second phone (the other phone answered, or ring-out).
    second_phone_cancels: u64,
    /// Agents' holds and unholds (re-INVITEs) answered 200.
    holds_answered: u64,
    /// Agents made not ready ("missed") after ring-outs in a row.
    missed_pauses: u64,
    /// Calls an agent transferred from the desk (to the queue, or to a free agent).
    transfers: u64,
    agent_transfers: u64,
    /// Agents' REFERs answered 202 (done) and refused (no queue, attended).
    refers_accepted: u64,
    refers_refused: u64,
    /// Patients who pressed the callback key while queued.
    callback_keys: u64,
    /// Callbacks dialled through the trunk, and answered there.
    trunk_invites: u64,
    trunk_answered: u64,
    /// Calls recorded as a callback given up.
    callbacks_failed: u64,
    /// Trunk answers that crossed our CANCEL (call control must ACK and hang them up).
    trunk_crossed: u64,
    /// Messages recorded (callers past the queue's max wait), and callbacks kept at the end.
    voicemails: u64,
    kept_callbacks: u64,
    /// Ring-all offers withdrawn because another agent answered first (the desk told so).
    rings_withdrawn: u64,
    /// Consultations begun from the desk (attended transfers), and of those completed.
    consults: u64,
    consults_completed: u64,
    /// Holds put on from the desk, and calls hung up from it.
    desk_holds: u64,
    desk_hang_ups: u64,
}

impl World {
    fn new(seed: u64, calls: u64, capacity: usize, loss: f64) -> Self {
        let start = Instant::now();
        let mut w = World {
            rng: StdRng::seed_from_u64(seed),
            now: start,
            start,
            seq: 0,
            events: BTreeMap::new(),
            // Even seeds ring every free agent at once (ring-all): the first answer
            // takes the call, the other phones are cancelled.
            core: core_with(
                seed,
                capacity,
                start,
                if seed.is_multiple_of(2) {
                    acd::Strategy::RingAll
                } else {
                    acd::Strategy::LongestIdle
                },
            ),
            phones: HashMap::new(),
            layers: HashMap::new(),
            layer_timers: Deadlines::default(),
            media_owner: HashMap::new(),
            sockets: HashSet::new(),
            media: HashMap::new(),
            records: HashMap::new(),
            log: Vec::new(),
            recording_paths: Vec::new(),
            agents: Vec::new(),
            arrivals_left: calls,
            next_patient: 0,
            loss,
            next_media: 0,
            pending_callbacks: HashMap::new(),
            callbacks_stored: 0,
            stats: Stats::default(),
        };
        w.phones.insert(TRUNK, Phone::Trunk(Box::default()));
        w.layers
            .insert(TRUNK, TransactionLayer::new(TimerConfig::default()));
        for i in 0..AGENTS {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 10 + i as u8)), 5060);
            w.agents.push(addr);
            w.phones.insert(
                addr,
                Phone::Agent(Box::new(AgentPhone {
                    id: agent_id(i),
                    ..AgentPhone::default()
                })),
            );
            w.layers
                .insert(addr, TransactionLayer::new(TimerConfig::default()));
            w.register(addr, None);
            if i % 3 == 0 {
                // A softphone beside the desk phone: same agent, its own registration.
                let soft = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 1, 10 + i as u8)), 5062);
                w.phones.insert(
                    soft,
                    Phone::Agent(Box::new(AgentPhone {
                        id: agent_id(i),
                        device: 1,
                        ..AgentPhone::default()
                    })),
                );
                w.layers
                    .insert(soft, TransactionLayer::new(TimerConfig::default()));
                w.register(soft, None);
            }
        }
        w.at(ms(2000), Event::Arrival);
        w
    }

    fn at(&mut self, after: Duration, ev: Event) {
        self.seq += 1;
        self.events.insert((self.now + after, self.seq), ev);
    }

    fn jitter(&mut self) -> Duration {
        ms(self.rng.random_range(1..20))
    }

    // ---- the network -------------------------------------------------------------

    fn lost(&mut self) -> bool {
        self.rng.random_bool(self.loss)
    }

    /// Everything a phone's transaction layer wants to send, onto the network.
    fn flush_phone(&mut self, addr: SocketAddr) {
        let Some(layer) = self.layers.get_mut(&addr) else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = layer.poll_transmit() {
            out.push(t.bytes);
        }
        let next = layer.poll_timeout();
        self.layer_timers.set(addr, next);
        for bytes in out {
            if !self.lost() {
                let d = self.jitter();
                self.at(d, Event::ToCore { from: addr, bytes });
            }
        }
    }

    // ---- phones ------------------------------------------------------------------

    fn register(&mut self, addr: SocketAddr, challenge: Option<&Response>) {
        let Some(Phone::Agent(agent)) = self.phones.get(&addr) else {
            return;
        };
        let id = agent.id.clone();
        let device = agent.device;
        let index: usize = id.parse::<usize>().map_or(0, |n| n - 3000);
        let uri = format!("sip:{}", CORE_SIP);
        let mut builder = RequestBuilder::new(Method::Register, &uri)
            .via(Transport::Udp, addr, &format!("z9hG4bK-reg-{}", self.seq))
            .from(&format!("<sip:{id}@{}>;tag=r{id}", CORE_SIP.ip()))
            .to(&format!("<sip:{id}@{}>", CORE_SIP.ip()))
            .call_id(&format!("reg-{id}-{device}"))
            .cseq(if challenge.is_some() { 2 } else { 1 })
            .contact(&format!("sip:{id}@{addr}"))
            .max_forwards(70)
            .header("Expires", "3600");
        self.seq += 1;
        if let Some(nonce) = challenge.and_then(md5_nonce) {
            let mut creds = Credentials {
                username: id.clone(),
                realm: REALM.to_owned(),
                nonce,
                uri: uri.clone(),
                response: String::new(),
                algorithm: Algorithm::Md5,
                qop: Some("auth".to_owned()),
                nc: Some("00000001".to_owned()),
                cnonce: Some("simcnonce".to_owned()),
                opaque: None,
            };
            creds.response =
                compute_response(&creds, "REGISTER", &format!("pw-{index}")).unwrap_or_default();
            builder = builder.header("Authorization", &creds.to_header());
        }
        let request = builder.build();
        let now = self.now;
        if let Some(layer) = self.layers.get_mut(&addr) {
            layer.send_request(now, Peer::udp(CORE_SIP), request);
        }
        self.flush_phone(addr);
    }

    fn arrival(&mut self) {
        if self.arrivals_left == 0 {
            return;
        }
        self.arrivals_left -= 1;
        self.stats.arrivals += 1;
        let n = self.next_patient;
        self.next_patient += 1;
        let ip = IpAddr::V4(Ipv4Addr::new(10, 2, (n >> 8) as u8, n as u8));
        let port = 5060 + u16::try_from(n >> 16).unwrap_or(0);
        let addr = SocketAddr::new(ip, port);
        let media = SocketAddr::new(ip, 4000 + u16::try_from(n >> 16).unwrap_or(0));
        let r: f64 = self.rng.random();
        let behaviour = if r < 0.04 {
            Patient::NoAck
        } else if r < 0.07 {
            Patient::Cancels
        } else if r < 0.17 {
            Patient::VanishesAfter(ms(self.rng.random_range(500..90_000)))
        } else if r < 0.30 {
            // Early: in the IVR.
            Patient::HangsUpAfter(ms(self.rng.random_range(100..4_000)))
        } else {
            Patient::HangsUpAfter(ms(self.rng.random_range(4_000..120_000)))
        };
        let caller = format!("138{:08}", n);
        let invite = RequestBuilder::new(Method::Invite, &format!("sip:clinic@{}", CORE_SIP))
            .via(Transport::Udp, addr, &format!("z9hG4bK-inv-{n}"))
            .from(&format!("<sip:{caller}@{ip}>;tag=p{n}"))
            .to(&format!("<sip:clinic@{}>", CORE_SIP.ip()))
            .call_id(&format!("patient-{n}"))
            .cseq(1)
            .contact(&format!("sip:{caller}@{addr}"))
            .max_forwards(70);
        // Some phones ask for session timers (RFC 4028): refreshed by nobody here, so
        // those calls end by the timer unless something ends them first; some leave
        // the refreshing to us.
        let timer: f64 = self.rng.random();
        let invite = if timer < 0.1 {
            invite
                .header("Session-Expires", "90;refresher=uac")
                .header("Supported", "timer")
        } else if timer < 0.2 {
            invite.header("Session-Expires", "90")
        } else {
            invite
        };
        let invite = invite.body("application/sdp", sdp(media)).build();
        let mut layer = TransactionLayer::new(TimerConfig::default());
        let key = layer.send_request(self.now, Peer::udp(CORE_SIP), invite.clone());
        self.layers.insert(addr, layer);
        self.media_owner.insert(media, addr);
        self.phones.insert(
            addr,
            Phone::Patient(Box::new(PatientPhone {
                behaviour,
                invite,
                invite_key: key,
                dialog: None,
                answered: false,
                ended: false,
                refused: None,
                call: None,
            })),
        );
        self.flush_phone(addr);
        if behaviour == Patient::Cancels {
            let cancel = sip::message::cancel_for(&self.patient(addr).invite.clone());
            let now = self.now;
            if let Some(layer) = self.layers.get_mut(&addr) {
                layer.send_request(now, Peer::udp(CORE_SIP), cancel);
            }
            self.flush_phone(addr);
        }
        // Mean 1 s apart: about 60 calls up at once against a capacity of 40,
        // so some are refused, most reach the IVR, many an agent.
        let gap = ms(self.rng.random_range(0..2_000));
        self.at(gap, Event::Arrival);
    }

    fn patient(&mut self, addr: SocketAddr) -> &mut PatientPhone {
        match self.phones.get_mut(&addr) {
            Some(Phone::Patient(p)) => p,
            _ => panic!("no patient phone at {addr}"),
        }
    }

    fn phone_act(&mut self, addr: SocketAddr, act: Act) {
        let now = self.now;
        match self.phones.get_mut(&addr) {
            Some(Phone::Patient(p)) => {
                if p.ended {
                    return;
                }
                match act {
                    Act::Digit(digit) => {
                        if let Some(call) = p.call {
                            self.stats.callback_keys += u64::from(digit == CALLBACK_KEY);
                            self.core
                                .handle_media(now, MediaEvent::Dtmf { call, digit });
                        }
                    }
                    Act::HangUp => {
                        let Some(dialog) = p.dialog.as_mut() else {
                            return;
                        };
                        let bye = dialog.request(
                            Method::Bye,
                            &local(addr),
                            format!("z9hG4bK-bye-{}", self.seq),
                        );
                        self.seq += 1;
                        p.ended = true;
                        if let Some(layer) = self.layers.get_mut(&addr) {
                            layer.send_request(now, Peer::udp(CORE_SIP), bye);
                        }
                        self.flush_phone(addr);
                    }
                    Act::Vanish => {
                        p.ended = true;
                        // Its media goes quiet: the media task notices after the timeout.
                        if let Some(call) = p.call {
                            self.quiet(call, Leg::Patient);
                        }
                        self.layers.remove(&addr);
                        self.layer_timers.set(addr, None);
                    }
                    _ => {}
                }
            }
            Some(Phone::Agent(a)) if matches!(act, Act::Refer(_)) => {
                let Act::Refer(kind) = act else { return };
                let Some(dialog) = a.talking.values_mut().next() else {
                    return; // the call ended meanwhile
                };
                let target = match kind {
                    0 => format!("<sip:general@{CORE_SIP}>"),
                    1 => format!("<sip:nowhere@{CORE_SIP}>"),
                    2 => format!(
                        "<sip:general@{CORE_SIP}?Replaces=x%40y%3Bto-tag%3D1%3Bfrom-tag%3D2>"
                    ),
                    n => format!("<sip:{}@{CORE_SIP}>", agent_id(usize::from(n - 3))),
                };
                let refer = dialog
                    .request(
                        Method::Other("REFER".into()),
                        &local(addr),
                        format!("z9hG4bK-refer-{}", self.seq),
                    )
                    .with_header("Refer-To", &target);
                self.seq += 1;
                if let Some(layer) = self.layers.get_mut(&addr) {
                    layer.send_request(now, Peer::udp(CORE_SIP), refer);
                }
                self.flush_phone(addr);
                return;
            }
            Some(Phone::Agent(a)) if matches!(act, Act::Hold(_)) => {
                let Act::Hold(on) = act else { return };
                let Some(dialog) = a.talking.values_mut().next() else {
                    return; // the call ended meanwhile
                };
                let direction = if on { "sendonly" } else { "sendrecv" };
                let body = String::from_utf8_lossy(&sdp(SocketAddr::new(addr.ip(), 4000)))
                    .replace("a=sendrecv", &format!("a={direction}"));
                let reinvite = dialog
                    .request(
                        Method::Invite,
                        &local(addr),
                        format!("z9hG4bK-hold-{}", self.seq),
                    )
                    .with_body("application/sdp", body.into_bytes());
                self.seq += 1;
                if let Some(layer) = self.layers.get_mut(&addr) {
                    layer.send_request(now, Peer::udp(CORE_SIP), reinvite);
                }
                self.flush_phone(addr);
                return;
            }
            Some(Phone::Agent(a)) => {
                // The agent acts on the call ringing longest (there is at most one).
                let Some(cid) = a.ringing.keys().next().cloned() else {
                    return;
                };
                match act {
                    Act::Answer | Act::Busy => {
                        let Some((key, invite)) = a.ringing.remove(&cid) else {
                            return;
                        };
                        let agent = a.id.clone();
                        let response = if matches!(act, Act::Answer) {
                            let tag = format!("a{}", self.seq);
                            self.seq += 1;
                            let Ok(dialog) = Dialog::uas(&invite, tag.clone(), Peer::udp(CORE_SIP))
                            else {
                                return;
                            };
                            a.talking.insert(cid.clone(), dialog);
                            a.answered += 1;
                            response_to(&invite, 200, "OK", Some(&tag))
                                .with_header("Contact", &format!("<sip:{}@{addr}>", a.id))
                                .with_body("application/sdp", sdp(SocketAddr::new(addr.ip(), 4000)))
                        } else {
                            response_to(&invite, 486, "Busy Here", Some("busy"))
                        };
                        if let Some(layer) = self.layers.get_mut(&addr) {
                            layer.send_response(now, &key, response);
                        }
                        self.flush_phone(addr);
                        if matches!(act, Act::Answer) {
                            // Some agents hand the caller on, from the desk or the phone.
                            if self.rng.random_bool(0.1) {
                                let at = ms(self.rng.random_range(300..30_000));
                                let agent = agent.clone();
                                self.at(at, Event::Transfer { agent });
                            } else if self.rng.random_bool(0.1) {
                                let at = ms(self.rng.random_range(300..30_000));
                                let kind = match self.rng.random_range(0..6) {
                                    0 | 1 => 0,
                                    2 => 1,
                                    3 => 2,
                                    _ => {
                                        3 + u8::try_from(self.rng.random_range(0..AGENTS))
                                            .unwrap_or(0)
                                    }
                                };
                                self.at(
                                    at,
                                    Event::Phone {
                                        addr,
                                        act: Act::Refer(kind),
                                    },
                                );
                            }
                            // Some hold the caller from the desk (the phone may hold too).
                            if self.rng.random_bool(0.15) {
                                let at = ms(self.rng.random_range(300..20_000));
                                let agent = agent.clone();
                                self.at(at, Event::DeskHold { agent, held: true });
                            }
                            // Some agents hold the caller a while, mid-call.
                            if self.rng.random_bool(0.2) {
                                let at = ms(self.rng.random_range(500..20_000));
                                let back = at + ms(self.rng.random_range(500..20_000));
                                self.at(
                                    at,
                                    Event::Phone {
                                        addr,
                                        act: Act::Hold(true),
                                    },
                                );
                                self.at(
                                    back,
                                    Event::Phone {
                                        addr,
                                        act: Act::Hold(false),
                                    },
                                );
                            }
                            // Sometimes the agent hangs up first.
                            if self.rng.random_bool(0.3) {
                                let after = ms(self.rng.random_range(1_000..60_000));
                                self.at(
                                    after,
                                    Event::Phone {
                                        addr,
                                        act: Act::HangUp,
                                    },
                                );
                            } else if self.rng.random_bool(0.04) {
                                let after = ms(self.rng.random_range(1_000..30_000));
                                self.at(
                                    after,
                                    Event::Phone {
                                        addr,
                                        act: Act::Vanish,
                                    },
                                );
                            }
                        }
                    }
                    Act::Vanish => {
                        a.ringing.remove(&cid);
                        a.vanished.insert(cid);
                    }
                    _ => {}
                }
            }
            Some(Phone::Trunk(_)) | None => {}
        }
        // An agent's hang-up or vanish mid-call applies to its talking call.
        if let Some(Phone::Agent(a)) = self.phones.get_mut(&addr)
            && a.ringing.is_empty()
            && matches!(act, Act::HangUp | Act::Vanish)
            && let Some(cid) = a.talking.keys().next().cloned()
        {
            let Some(mut dialog) = a.talking.remove(&cid) else {
                return;
            };
            if matches!(act, Act::Vanish) {
                a.vanished.insert(cid);
                if let Some(call) = self.call_of_agent_dialog(&dialog) {
                    self.quiet(call, Leg::Agent);
                }
                return;
            }
            let bye = dialog.request(
                Method::Bye,
                &local(addr),
                format!("z9hG4bK-abye-{}", self.seq),
            );
            self.seq += 1;
            if let Some(layer) = self.layers.get_mut(&addr) {
                layer.send_request(now, Peer::udp(CORE_SIP), bye);
            }
            self.flush_phone(addr);
        }
    }

    /// The core's call an agent dialog belongs to (through the agents' view).
    fn call_of_agent_dialog(&self, dialog: &Dialog) -> Option<CallId> {
        // The agent INVITE's From carries the caller: find the patient by it.
        let caller = dialog
            .remote_uri
            .split('@')
            .next()
            .and_then(|s| s.strip_prefix("sip:"))?
            .to_owned();
        let n: u32 = caller.strip_prefix("138")?.parse().ok()?;
        let ip = IpAddr::V4(Ipv4Addr::new(10, 2, (n >> 8) as u8, n as u8));
        let addr = SocketAddr::new(ip, 5060 + u16::try_from(n >> 16).unwrap_or(0));
        match self.phones.get(&addr) {
            Some(Phone::Patient(p)) => p.call,
            _ => None,
        }
    }

    /// A leg's phone stopped sending RTP: the media reports it after the timeout.
    fn quiet(&mut self, call: CallId, leg: Leg) {
        if let Some(m) = self.media.get_mut(&call)
            && !m.timeout_sent
        {
            m.timeout_sent = true;
            let instance = m.instance;
            self.at(
                MEDIA_TIMEOUT,
                Event::MediaTimeout {
                    call,
                    leg,
                    instance,
                },
            );
        }
    }

    /// A datagram from the core reaches a phone.
    fn deliver(&mut self, to: SocketAddr, bytes: &[u8]) {
        let Some(layer) = self.layers.get_mut(&to) else {
            return; // vanished, or gone
        };
        let Ok(msg) = sip::message::parse(bytes) else {
            panic!("the core sent an unparsable message");
        };
        layer.handle_message(self.now, Peer::udp(CORE_SIP), msg);
        self.phone_events(to);
    }

    fn phone_events(&mut self, addr: SocketAddr) {
        while let Some(ev) = self.layers.get_mut(&addr).and_then(|l| l.poll_event()) {
            self.phone_event(addr, ev);
        }
        self.flush_phone(addr);
    }

    fn phone_event(&mut self, addr: SocketAddr, ev: TransactionEvent) {
        let now = self.now;
        match self.phones.get(&addr) {
            Some(Phone::Agent(_)) => return self.agent_event(addr, ev),
            Some(Phone::Trunk(_)) => return self.trunk_event(ev),
            _ => {}
        }
        let seq = self.seq;
        self.seq += 1;
        let p = self.patient(addr);
        match ev {
            TransactionEvent::Response { key, response } if key == p.invite_key => {
                let status = response.status();
                if status < 200 {
                    return;
                }
                if status >= 300 {
                    p.refused = Some(status);
                    p.ended = true;
                    return;
                }
                let behaviour = p.behaviour;
                if p.dialog.is_none() {
                    let Ok(dialog) = Dialog::uac(&p.invite, &response, Peer::udp(CORE_SIP)) else {
                        panic!("bad 200 from the core");
                    };
                    p.dialog = Some(dialog);
                    p.answered = true;
                    self.stats.answered_by_ivr += 1;
                    match behaviour {
                        Patient::HangsUpAfter(d) => self.at(
                            d,
                            Event::Phone {
                                addr,
                                act: Act::HangUp,
                            },
                        ),
                        Patient::VanishesAfter(d) => self.at(
                            d,
                            Event::Phone {
                                addr,
                                act: Act::Vanish,
                            },
                        ),
                        Patient::Cancels => self.at(
                            ms(300),
                            Event::Phone {
                                addr,
                                act: Act::HangUp,
                            },
                        ),
                        Patient::NoAck => {}
                    }
                    let r: f64 = self.rng.random();
                    let press = if r < 0.8 {
                        Some('1')
                    } else if r < 0.9 {
                        Some('7')
                    } else {
                        None
                    };
                    if let Some(digit) = press {
                        let after = PROMPT + ms(self.rng.random_range(0..2_500));
                        self.at(
                            after,
                            Event::Phone {
                                addr,
                                act: Act::Digit(digit),
                            },
                        );
                        // Some, once queued, ask to be called back.
                        if digit == '1' && self.rng.random_bool(0.12) {
                            let later = after + ms(self.rng.random_range(500..40_000));
                            self.at(
                                later,
                                Event::Phone {
                                    addr,
                                    act: Act::Digit(CALLBACK_KEY),
                                },
                            );
                        }
                    }
                }
                let p = self.patient(addr);
                if p.behaviour == Patient::NoAck {
                    return;
                }
                if let Some(dialog) = p.dialog.as_ref() {
                    let ack = dialog.ack(1, &local(addr), format!("z9hG4bK-ack-{seq}"));
                    if let Some(layer) = self.layers.get_mut(&addr) {
                        layer.send_stateless(Peer::udp(CORE_SIP), SipMessage::Request(ack));
                    }
                }
            }
            TransactionEvent::Request { key, request, .. } => {
                let update = request.method().as_str() == "UPDATE";
                let status = if request.method() == Method::Bye || update {
                    200
                } else {
                    481
                };
                if request.method() == Method::Bye {
                    p.ended = true;
                }
                let r = response_to(&request, status, "OK", None);
                if let Some(layer) = self.layers.get_mut(&addr) {
                    layer.send_response(now, &key, r);
                }
            }
            _ => {}
        }
    }

    fn trunk(&mut self) -> &mut TrunkPhone {
        match self.phones.get_mut(&TRUNK) {
            Some(Phone::Trunk(t)) => t,
            _ => panic!("no trunk"),
        }
    }

    /// The trunk gets a request from the core: a callback's INVITE, its CANCEL, a BYE.
    fn trunk_event(&mut self, ev: TransactionEvent) {
        let now = self.now;
        let TransactionEvent::Request { key, request, .. } = ev else {
            return;
        };
        let cid = request.call_id().unwrap_or_default();
        if self.trunk().vanished.contains(&cid) {
            return;
        }
        let respond = |w: &mut World, r: Response| {
            if let Some(layer) = w.layers.get_mut(&TRUNK) {
                layer.send_response(now, &key, r);
            }
        };
        match request.method() {
            Method::Invite => {
                assert!(
                    request.uri().contains(&format!("@{TRUNK}")),
                    "a callback dialled {} instead of the trunk",
                    request.uri()
                );
                self.stats.trunk_invites += 1;
                let t = self.trunk();
                t.invites += 1;
                t.ringing
                    .insert(cid.clone(), (key.clone(), request.clone()));
                let r: f64 = self.rng.random();
                if r < 0.08 {
                    self.trunk().vanished.insert(cid);
                    return;
                }
                respond(self, response_to(&request, 180, "Ringing", Some("tr")));
                let (act, after) = if r < 0.6 {
                    // Sometimes just as our ring time runs out.
                    (Act::Answer, self.rng.random_range(500..24_000))
                } else if r < 0.78 {
                    (Act::Busy, self.rng.random_range(200..5_000))
                } else {
                    return; // rings until cancelled
                };
                self.at(ms(after), Event::Trunk { cid, act });
            }
            Method::Cancel => {
                respond(self, response_to(&request, 200, "OK", None));
                if self.trunk().ringing.contains_key(&cid) && self.rng.random_bool(0.25) {
                    // The patient picked up as we gave up: the 200 crosses our CANCEL.
                    self.stats.trunk_crossed += 1;
                    self.trunk_answer(cid, false);
                } else if let Some((ikey, invite)) = self.trunk().ringing.remove(&cid) {
                    let r = response_to(&invite, 487, "Request Terminated", Some("tr"));
                    if let Some(layer) = self.layers.get_mut(&TRUNK) {
                        layer.send_response(now, &ikey, r);
                    }
                }
            }
            Method::Bye => {
                self.trunk().talking.remove(&cid);
                respond(self, response_to(&request, 200, "OK", None));
            }
            _ => respond(self, response_to(&request, 200, "OK", None)),
        }
        self.flush_phone(TRUNK);
    }

    /// The called-back patient answers (and hangs up some time later, if `hangs_up`).
    fn trunk_answer(&mut self, cid: String, hangs_up: bool) {
        self.trunk_respond(cid, true, hangs_up);
    }

    /// The called-back patient answers, is busy, or hangs up.
    fn trunk_act(&mut self, cid: String, act: Act) {
        let now = self.now;
        match act {
            Act::Answer | Act::Busy => self.trunk_respond(cid, matches!(act, Act::Answer), true),
            Act::HangUp => {
                let Some(mut dialog) = self.trunk().talking.remove(&cid) else {
                    return;
                };
                let bye = dialog.request(
                    Method::Bye,
                    &local(TRUNK),
                    format!("z9hG4bK-tbye-{}", self.seq),
                );
                self.seq += 1;
                if let Some(layer) = self.layers.get_mut(&TRUNK) {
                    layer.send_request(now, Peer::udp(CORE_SIP), bye);
                }
            }
            _ => {}
        }
        self.flush_phone(TRUNK);
    }

    /// The trunk's final answer to a ringing callback: 200 (the patient hangs up later if
    /// `hangs_up`) or 486.
    fn trunk_respond(&mut self, cid: String, answer: bool, hangs_up: bool) {
        let now = self.now;
        let Some((key, invite)) = self.trunk().ringing.remove(&cid) else {
            return;
        };
        let response = if answer {
            let n = self.trunk().invites;
            let media = SocketAddr::new(TRUNK.ip(), 6000 + (n % 50_000) as u16);
            let Ok(dialog) = Dialog::uas(&invite, "tr".to_owned(), Peer::udp(CORE_SIP)) else {
                return;
            };
            let t = self.trunk();
            t.talking.insert(cid.clone(), dialog);
            t.media.insert(media, cid.clone());
            t.answered += 1;
            self.stats.trunk_answered += 1;
            if hangs_up {
                // The patient hangs up in the end (unless the agent does first).
                let after = ms(self.rng.random_range(1_000..90_000));
                self.at(
                    after,
                    Event::Trunk {
                        cid: cid.clone(),
                        act: Act::HangUp,
                    },
                );
            }
            response_to(&invite, 200, "OK", Some("tr"))
                .with_header("Contact", &format!("<sip:patient@{TRUNK}>"))
                .with_body("application/sdp", sdp(media))
        } else {
            response_to(&invite, 486, "Busy Here", Some("tr"))
        };
        if let Some(layer) = self.layers.get_mut(&TRUNK) {
            layer.send_response(now, &key, response);
        }
        self.flush_phone(TRUNK);
    }

    fn agent_event(&mut self, addr: SocketAddr, ev: TransactionEvent) {
        let now = self.now;
        let Some(Phone::Agent(a)) = self.phones.get_mut(&addr) else {
            return;
        };
        match ev {
            TransactionEvent::Response { response, .. }
                if response.cseq().is_ok_and(|(_, m)| m == Method::Invite) =>
            {
                // The answer to our hold or unhold: a 2xx is ACKed in its dialog.
                self.stats.holds_answered += u64::from(response.status() == 200);
                assert!(
                    response.status() == 200 || response.status() == 481,
                    "a hold was refused: {}",
                    response.status()
                );
                let cid = response.call_id().unwrap_or_default();
                if let Some(dialog) = a.talking.get(&cid)
                    && response.status() == 200
                {
                    let ack = dialog.ack(
                        dialog.local_cseq,
                        &local(addr),
                        format!("z9hG4bK-hack-{}", self.seq),
                    );
                    self.seq += 1;
                    if let Some(layer) = self.layers.get_mut(&addr) {
                        layer.send_stateless(Peer::udp(CORE_SIP), SipMessage::Request(ack));
                    }
                    self.flush_phone(addr);
                }
            }
            TransactionEvent::Response { response, .. }
                if response
                    .cseq()
                    .is_ok_and(|(_, m)| m == Method::Other("REFER".into())) =>
            {
                let status = response.status();
                assert!(
                    // 403/481: the call was transferred or ended meanwhile (its BYE on the way).
                    matches!(status, 202 | 403 | 404 | 480 | 501 | 481),
                    "a REFER answered {status}"
                );
                self.stats.refers_accepted += u64::from(status == 202);
                self.stats.refers_refused += u64::from(matches!(status, 404 | 480 | 501));
            }
            TransactionEvent::Response { response, .. } => {
                if response.status() == 401 && !a.registered {
                    self.register(addr, Some(&response));
                } else if response.status() == 200 && !a.registered {
                    a.registered = true;
                    if a.device != 0 {
                        return;
                    }
                    let index = self.agents.iter().position(|x| *x == addr).unwrap_or(0);
                    self.at(
                        ms(10),
                        Event::Desk {
                            agent: index,
                            ready: true,
                        },
                    );
                }
            }
            TransactionEvent::Request { key, request, .. } => {
                let cid = request.call_id().unwrap_or_default();
                if a.vanished.contains(&cid) {
                    return;
                }
                let respond = |w: &mut World, r: Response| {
                    if let Some(layer) = w.layers.get_mut(&addr) {
                        layer.send_response(now, &key, r);
                    }
                };
                if a.device != 0 {
                    match request.method() {
                        Method::Invite => self.stats.second_phone_invites += 1,
                        Method::Cancel => self.stats.second_phone_cancels += 1,
                        _ => {}
                    }
                }
                match request.method() {
                    Method::Invite => {
                        a.ringing.insert(cid, (key.clone(), request.clone()));
                        let r: f64 = self.rng.random();
                        let ringing = response_to(&request, 180, "Ringing", Some("ring"));
                        if r < 0.06 {
                            // Unplugged: not even a 180, nothing from now on.
                            self.at(
                                ms(0),
                                Event::Phone {
                                    addr,
                                    act: Act::Vanish,
                                },
                            );
                            return;
                        }
                        respond(self, ringing);
                        let (act, after) = if r < 0.14 {
                            (Act::Vanish, self.rng.random_range(100..8_000))
                        } else if r < 0.24 {
                            (Act::Busy, self.rng.random_range(100..3_000))
                        } else if r < 0.36 {
                            // Never answers: rings out.
                            return;
                        } else {
                            // Answers, sometimes just as the ring-out fires.
                            (Act::Answer, self.rng.random_range(200..11_000))
                        };
                        self.at(ms(after), Event::Phone { addr, act });
                    }
                    Method::Cancel => {
                        respond(self, response_to(&request, 200, "OK", None));
                        let Some(Phone::Agent(a)) = self.phones.get_mut(&addr) else {
                            return;
                        };
                        if let Some((ikey, invite)) = a.ringing.remove(&cid) {
                            let r = response_to(&invite, 487, "Request Terminated", Some("ring"));
                            if let Some(layer) = self.layers.get_mut(&addr) {
                                layer.send_response(now, &ikey, r);
                            }
                        }
                    }
                    Method::Bye => {
                        a.talking.remove(&cid);
                        respond(self, response_to(&request, 200, "OK", None));
                    }
                    _ => respond(self, response_to(&request, 200, "OK", None)),
                }
            }
            _ => {}
        }
    }

    // ---- the shell ---------------------------------------------------------------

    fn apply(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Transmit(t) => {
                    assert_eq!(t.peer.transport, Transport::Udp);
                    if !self.lost() {
                        let d = self.jitter();
                        self.at(
                            d,
                            Event::ToPhone {
                                to: t.peer.addr,
                                bytes: t.bytes,
                            },
                        );
                    }
                }
                Output::BindRtp { token, .. } => {
                    // Now and then another program holds the port.
                    let ok = !self.rng.random_bool(0.03);
                    if ok {
                        assert!(self.sockets.insert(token), "token {token:?} bound twice");
                    }
                    self.at(Duration::ZERO, Event::PortBound { token, ok });
                }
                Output::ReleaseRtp { token } => {
                    assert!(
                        self.sockets.remove(&token),
                        "released {token:?}, never bound or already handed over"
                    );
                }
                Output::Media { call, command } => self.media_command(call, command),
                Output::ScreenPop { call, seq, .. } => {
                    let d = ms(self.rng.random_range(0..150));
                    self.at(d, Event::PopDelivered { call, seq });
                }
                Output::LookupPatient { call, .. } => {
                    let d = ms(self.rng.random_range(0..60));
                    self.at(d, Event::PatientLoaded { call });
                }
                Output::OpenRecording { call, path, .. } => {
                    self.recording_paths.push(path.clone());
                    let ok = !self.rng.random_bool(0.02);
                    let d = ms(self.rng.random_range(0..30));
                    self.at(d, Event::RecordingOpened { call, ok });
                }
                Output::StoreCall(record) => {
                    self.records.insert(record.call_id.clone(), record);
                }
                Output::StoreEvent(entry) => self.log.push(entry),
                Output::StoreCallback { call_id, pending } => match pending {
                    Some(p) => {
                        assert_eq!(p.call_id, call_id);
                        self.callbacks_stored += 1;
                        self.pending_callbacks.insert(call_id, p);
                    }
                    None => {
                        self.pending_callbacks.remove(&call_id);
                    }
                },
                Output::Desk {
                    agent,
                    event: DeskEvent::State { reason, .. },
                } if reason.as_deref() == Some(acd::MISSED) => {
                    self.stats.missed_pauses += 1;
                    let d = ms(self.rng.random_range(5_000..30_000));
                    self.at(d, Event::DeskReady { agent });
                }
                Output::Desk {
                    event: DeskEvent::Ended { reason, .. },
                    ..
                } if reason == "answered_elsewhere" => self.stats.rings_withdrawn += 1,
                Output::StoreRecording(_) | Output::Desk { .. } | Output::Metric(_) => {}
            }
        }
    }

    fn media_command(&mut self, call: CallId, command: MediaCommand) {
        match command {
            MediaCommand::Start { patient, .. } => {
                assert!(
                    self.sockets.remove(&patient.token),
                    "patient leg's socket unknown"
                );
                self.next_media += 1;
                let instance = self.next_media;
                if self.trunk().media.contains_key(&patient.remote) {
                    // A called-back patient, through the trunk.
                    let fresh = SimMedia {
                        instance,
                        recording: false,
                        opened: None,
                        stopping: false,
                        timeout_sent: false,
                    };
                    assert!(
                        self.media.insert(call, fresh).is_none(),
                        "call {call}'s callback media started while the first still ran"
                    );
                    return;
                }
                let owner = self.media_owner.get(&patient.remote).copied();
                let Some(addr) = owner else {
                    panic!("media for an unknown patient {}", patient.remote);
                };
                let p = self.patient(addr);
                p.call = Some(call);
                let gone = p.ended && p.dialog.is_some();
                assert!(
                    self.media
                        .insert(
                            call,
                            SimMedia {
                                instance,
                                recording: false,
                                opened: None,
                                stopping: false,
                                timeout_sent: false,
                            },
                        )
                        .is_none(),
                    "call {call} started twice"
                );
                if gone {
                    self.quiet(call, Leg::Patient);
                }
            }
            MediaCommand::Play { generation, .. } => {
                if self.media.contains_key(&call) {
                    self.at(
                        PROMPT,
                        Event::Media(MediaEvent::PromptFinished { call, generation }),
                    );
                }
            }
            MediaCommand::RecordAlone { .. } => {
                if let Some(m) = self.media.get_mut(&call) {
                    m.recording = true;
                }
            }
            MediaCommand::Consult {
                leg, agent_side, ..
            } => {
                assert!(
                    self.sockets.remove(&leg.token),
                    "consulted agent's socket unknown"
                );
                if let Some(side) = agent_side {
                    assert!(
                        self.sockets.remove(&side.token),
                        "consulting phone's socket unknown"
                    );
                }
            }
            MediaCommand::Hold { .. }
            | MediaCommand::Silence
            | MediaCommand::Update { .. }
            | MediaCommand::ConsultEnd { .. }
            | MediaCommand::Unbridge { .. } => {}
            MediaCommand::Bridge {
                agent, recording, ..
            } => {
                assert!(
                    self.sockets.remove(&agent.token),
                    "agent leg's socket unknown"
                );
                self.stats.bridged += 1;
                if let Some(m) = self.media.get_mut(&call) {
                    m.recording = recording;
                }
            }
            MediaCommand::Stop { .. } => {
                let Some(m) = self.media.get_mut(&call) else {
                    panic!("Stop for call {call} without media");
                };
                if m.stopping {
                    return;
                }
                m.stopping = true;
                let recording = match (m.recording, m.opened) {
                    (true, Some(true)) => Some(Ok(callcore::records::RecordingDone {
                        duration_ms: 12_340,
                        gaps: Vec::new(),
                        holds: Vec::new(),
                    })),
                    (true, None) => Some(Err("the file never came".to_owned())),
                    _ => None,
                };
                let d = ms(self.rng.random_range(0..40));
                self.at(d, Event::Media(MediaEvent::Stopped { call, recording }));
            }
        }
    }

    // ---- the loop ----------------------------------------------------------------

    fn step(&mut self) -> bool {
        let next_event = self.events.keys().next().map(|(t, _)| *t);
        let candidates = [
            next_event,
            self.core.poll_timeout(),
            self.layer_timers.next(),
        ];
        let Some(at) = candidates.into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(at);
        let now = self.now;
        self.stats.steps += 1;
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        } else if self.layer_timers.next().is_some_and(|t| t <= now) {
            while let Some(addr) = self.layer_timers.pop_due(now) {
                if let Some(layer) = self.layers.get_mut(&addr) {
                    layer.handle_timeout(now);
                }
                self.phone_events(addr);
            }
        } else if let Some((_, ev)) = self.events.pop_first() {
            self.event(ev);
        }
        self.apply();
        let findings = self.core.audit();
        assert!(
            findings.is_empty(),
            "after step {} at {:?}: {findings:#?}",
            self.stats.steps,
            now - self.start
        );
        true
    }

    fn event(&mut self, ev: Event) {
        let now = self.now;
        match ev {
            Event::ToCore { from, bytes } => {
                self.core.handle_sip(now, now, Peer::udp(from), &bytes)
            }
            Event::ToPhone { to, bytes } => self.deliver(to, &bytes),
            Event::Phone { addr, act } => self.phone_act(addr, act),
            Event::PortBound { token, ok } => {
                let result = if ok {
                    Ok(SocketAddr::new(CORE_SIP.ip(), 20000))
                } else {
                    Err("address in use".to_owned())
                };
                self.core.handle_port_bound(now, token, result);
            }
            Event::PatientLoaded { call } => {
                self.core.handle_patient_loaded(now, call, None, Vec::new())
            }
            Event::PopDelivered { call, seq } => self.core.handle_pop_delivered(now, call, seq),
            Event::DeskReady { agent } => {
                // Refused only if the phone is unregistered meanwhile.
                let _ = self.core.set_agent_state(now, &agent, true, None);
            }
            Event::RecordingOpened { call, ok } => {
                if let Some(m) = self.media.get_mut(&call)
                    && !m.stopping
                {
                    m.opened = Some(ok);
                    let result = if ok {
                        Ok(())
                    } else {
                        Err("disk full".to_owned())
                    };
                    self.core.handle_recording_opened(now, call, result);
                }
            }
            Event::Media(ev) => {
                let call = match &ev {
                    MediaEvent::Dtmf { call, .. }
                    | MediaEvent::PromptFinished { call, .. }
                    | MediaEvent::MediaTimeout { call, .. }
                    | MediaEvent::Stopped { call, .. } => *call,
                };
                let Some(m) = self.media.get(&call) else {
                    return;
                };
                if matches!(ev, MediaEvent::Stopped { .. }) {
                    self.media.remove(&call);
                } else if m.stopping {
                    return; // a stopping task reports nothing more
                }
                self.core.handle_media(now, ev);
            }
            Event::Desk { agent, ready } => {
                let id = agent_id(agent);
                let _ = self
                    .core
                    .set_agent_state(now, &id, ready, (!ready).then_some("break"));
                // Now and then an agent takes a short break.
                if ready && self.rng.random_bool(0.5) {
                    let after = ms(self.rng.random_range(20_000..200_000));
                    self.at(
                        after,
                        Event::Desk {
                            agent,
                            ready: false,
                        },
                    );
                } else if !ready {
                    let after = ms(self.rng.random_range(5_000..30_000));
                    self.at(after, Event::Desk { agent, ready: true });
                }
            }
            Event::Arrival => self.arrival(),
            Event::Trunk { cid, act } => self.trunk_act(cid, act),
            Event::MediaTimeout {
                call,
                leg,
                instance,
            } => {
                let current = self
                    .media
                    .get(&call)
                    .is_some_and(|m| m.instance == instance && !m.stopping);
                if current {
                    self.core
                        .handle_media(now, MediaEvent::MediaTimeout { call, leg });
                }
            }
            Event::Transfer { agent } => {
                // Refused when the call ended meanwhile.
                // Half hand the caller to a colleague who is free, if one is.
                let agents = self.core.agents(now);
                let free = agents
                    .iter()
                    .find(|a| a.state == "ready" && a.id != agent)
                    .map(|a| a.id.clone());
                // A colleague on no call (ready, or not ready) may be consulted first.
                let idle = agents
                    .iter()
                    .find(|a| matches!(a.state.as_str(), "ready" | "not_ready") && a.id != agent)
                    .map(|a| a.id.clone());
                if let Some(colleague) = idle.filter(|_| self.rng.random_bool(0.6)) {
                    // An attended transfer: consult first, then complete or cancel.
                    let to = callcore::TransferTarget::Agent(colleague);
                    if self.core.consult(now, &agent, &to).is_ok() {
                        self.stats.consults += 1;
                        let after = ms(self.rng.random_range(1_000..25_000));
                        self.at(after, Event::ConsultStep { agent });
                    }
                    return;
                }
                let to = match free.filter(|_| self.rng.random_bool(0.5)) {
                    Some(colleague) => callcore::TransferTarget::Agent(colleague),
                    None => callcore::TransferTarget::Queue("general".into()),
                };
                // Refused when the call ended meanwhile, or the colleague sits out a
                // declined ring (at this load, most of the time).
                if self.core.transfer(now, &agent, &to).is_ok() {
                    self.stats.transfers += 1;
                    if matches!(to, callcore::TransferTarget::Agent(_)) {
                        self.stats.agent_transfers += 1;
                    }
                }
            }
            Event::DeskHold { agent, held } => {
                // Refused when the call ended, was handed on, or a consultation runs.
                let Ok(view) = self.core.hold_from_desk(now, &agent, held) else {
                    return;
                };
                if held {
                    self.stats.desk_holds += 1;
                    assert_eq!(view.state, "on_hold", "agent {agent} held from the desk");
                    let after = ms(self.rng.random_range(500..15_000));
                    if self.rng.random_bool(0.25) {
                        self.at(after, Event::DeskHangUp { agent });
                    } else {
                        self.at(after, Event::DeskHold { agent, held: false });
                    }
                }
            }
            Event::DeskHangUp { agent } => {
                if let Ok(view) = self.core.hang_up_from_desk(now, &agent) {
                    self.stats.desk_hang_ups += 1;
                    assert!(
                        !matches!(view.state.as_str(), "talking" | "on_hold"),
                        "agent {agent} still on the call it hung up: {view:?}"
                    );
                }
            }
            Event::ConsultStep { agent } => {
                // Refused when the consultation or the call ended meanwhile, or the
                // colleague has not answered (then it is cancelled).
                if self.rng.random_bool(0.7) && self.core.consult_complete(now, &agent).is_ok() {
                    self.stats.consults_completed += 1;
                } else {
                    let _ = self.core.consult_cancel(now, &agent);
                }
            }
        }
    }
}

fn md5_nonce(challenge: &Response) -> Option<String> {
    challenge
        .header_values("WWW-Authenticate")
        .into_iter()
        .find(|v| v.contains("algorithm=MD5"))
        .and_then(|v| {
            let start = v.find("nonce=\"")? + 7;
            let end = v[start..].find('"')? + start;
            Some(v[start..end].to_owned())
        })
}

/// Runs one seeded world to the end and checks everything.
fn run(seed: u64, calls: u64, capacity: usize, loss: f64) -> Stats {
    let mut w = World::new(seed, calls, capacity, loss);
    // Bounded: every call ends within minutes of simulated time; registrations
    // expire an hour after the last refresh; stop well after that.
    let mut steps = 0u64;
    while w.step() {
        steps += 1;
        assert!(steps < 50_000_000, "the simulation did not settle");
        if w.arrivals_left == 0 && w.now - w.start > Duration::from_secs(6 * 3600) {
            break;
        }
    }
    // Callbacks still waiting (their agents' registrations ran out) are kept for the next
    // run when the adapter stops: set aside, stored, their records open.
    let now = w.now;
    w.core.shutdown(now);
    w.apply();
    for _ in 0..1_000_000 {
        if !w.step() {
            break;
        }
    }
    // Every patient answered had the call ended; every refusal was a 503 or 488-class answer.
    let mut refused = 0;
    for phone in w.phones.values() {
        if let Phone::Patient(p) = phone {
            if let Some(status) = p.refused {
                assert!(
                    status == 503 || p.behaviour == Patient::Cancels,
                    "patient refused with {status}"
                );
                refused += 1;
                continue;
            }
            let vanished_or_noack =
                matches!(p.behaviour, Patient::VanishesAfter(_) | Patient::NoAck);
            assert!(
                p.answered,
                "a patient ({:?}) got no final answer to the INVITE",
                p.behaviour
            );
            assert!(
                p.ended || vanished_or_noack,
                "an answered patient ({:?}, call {:?}) never had the call ended",
                p.behaviour,
                p.call
            );
        }
    }
    let mut stats = w.stats;
    stats.refused_503 = refused;
    stats.voicemails = w
        .recording_paths
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("v-"))
        })
        .count() as u64;
    stats.kept_callbacks = w.pending_callbacks.len() as u64;
    stats.callbacks_failed = w
        .records
        .values()
        .filter(|r| r.outcome == Some(callcore::records::Outcome::CallbackFailed))
        .count() as u64;
    // Every call has an outcome, but the callbacks kept for the next run.
    for (id, r) in &w.records {
        assert!(
            (r.ended_at.is_some() && r.outcome.is_some()) || w.pending_callbacks.contains_key(id),
            "call {id} has no outcome: {r:?}"
        );
    }
    for id in w.pending_callbacks.keys() {
        let open = w.records.get(id).is_some_and(|r| r.outcome.is_none());
        assert!(open, "seed {seed}: kept callback {id} has a closed record");
    }
    // Recordings are filed under the clinic's day of the answer, never UTC's.
    for (id, r) in &w.records {
        let (Some(answered), Some(_)) = (r.answered_at, &r.recording_id) else {
            continue;
        };
        let day = answered
            .with_timezone(&chrono_tz::Asia::Shanghai)
            .format("%Y-%m-%d")
            .to_string();
        let file = format!("r-{id}.wav");
        if let Some(path) = w.recording_paths.iter().find(|p| p.ends_with(&file)) {
            assert!(
                path.parent().is_some_and(|d| d.ends_with(&day)),
                "seed {seed}: {path:?} is not in the clinic's day {day}"
            );
        }
    }
    let late = w
        .records
        .values()
        .filter_map(|r| r.answered_at)
        .filter(|t| t.with_timezone(&chrono_tz::Asia::Shanghai).date_naive() != t.date_naive())
        .count();
    assert!(
        late > 0,
        "seed {seed}: the run never crossed the clinic's midnight"
    );
    // The event log tells each call's story as the records do: the KPIs rest on it.
    assert!(
        w.log.windows(2).all(|p| p[0].at <= p[1].at),
        "seed {seed}: the event log is in time order"
    );
    let mut told: HashMap<&str, Vec<&'static str>> = HashMap::new();
    for entry in &w.log {
        if let acd::Logged::AgentState { .. } = entry.event {
            continue;
        }
        let call = entry
            .call_id
            .as_deref()
            .unwrap_or_else(|| panic!("seed {seed}: a call's entry names no call: {entry:?}"));
        let kinds = told.entry(call).or_default();
        kinds.push(entry.event.kind());
        if let acd::Logged::Completed {
            by: acd::EndedBy::Transferred,
            ..
        } = entry.event
        {
            kinds.push("transferred");
        }
    }
    for (id, r) in &w.records {
        let kinds = told.get(id.as_str()).cloned().unwrap_or_default();
        let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
        let callback = count("callback_requested") == 1;
        if r.outcome.is_none() {
            // A callback kept for the next run: its story goes on there.
            assert!(callback, "seed {seed}: open call {id} logged as {kinds:?}");
            continue;
        }
        match r.outcome {
            // A callback: every agent's answer is followed by a dial, answered or not.
            // Then the call is any answered call (a transfer queues it again).
            Some(callcore::records::Outcome::Answered) if callback => assert!(
                count("callback_dialled") >= 1
                    && count("connected") >= count("callback_dialled")
                    && count("completed") == count("connected")
                    && count("enqueued") == 1 + count("transferred")
                    && count("connected") - count("callback_dialled") + 1 + count("abandoned")
                        == count("enqueued")
                    && count("callback_failed") == 0,
                "seed {seed}: answered callback {id} logged as {kinds:?}"
            ),
            Some(callcore::records::Outcome::CallbackFailed) => assert!(
                callback
                    && count("enqueued") == 1
                    && count("callback_dialled") == count("connected")
                    && count("completed") == count("connected")
                    && count("callback_failed") == 1
                    && count("abandoned") == 0,
                "seed {seed}: failed callback {id} logged as {kinds:?}"
            ),
            Some(callcore::records::Outcome::CallbackClosed) => assert!(
                callback && count("callback_closed") == 1 && count("callback_failed") == 0,
                "seed {seed}: closed callback {id} logged as {kinds:?}"
            ),
            // Each transfer queues the caller again; each wait ends answered or abandoned.
            Some(callcore::records::Outcome::Answered) => assert!(
                count("connected") >= 1
                    && count("completed") == count("connected")
                    && count("enqueued") == 1 + count("transferred")
                    && count("connected") + count("abandoned") == count("enqueued"),
                "seed {seed}: answered call {id} logged as {kinds:?}"
            ),
            Some(callcore::records::Outcome::Abandoned) => assert!(
                count("enqueued") == 1 && count("abandoned") == 1 && count("connected") == 0,
                "seed {seed}: abandoned call {id} logged as {kinds:?}"
            ),
            _ => assert!(
                count("enqueued") == 0,
                "seed {seed}: call {id} never queued but logged as {kinds:?}"
            ),
        }
        assert_eq!(
            count("offered"),
            r.agents_offered.len(),
            "seed {seed}: call {id}: one offer entry per agent offered"
        );
        // The record tells every offer's end: the answer last, if there was one.
        let offered: Vec<&str> = r.offers.iter().map(|o| o.agent.as_str()).collect();
        assert_eq!(offered, r.agents_offered, "seed {seed}: call {id}");
        assert!(
            r.offers
                .iter()
                .all(|o| o.ended.is_some() && o.rang_ms.is_some()),
            "seed {seed}: call {id} has an offer with no end: {:?}",
            r.offers
        );
        let answers = r
            .offers
            .iter()
            .filter(|o| o.ended.as_deref() == Some("answered"))
            .count();
        assert_eq!(
            answers,
            count("connected"),
            "seed {seed}: call {id}: {:?}",
            r.offers
        );
        // The record names the agent who answered last (a callback given up names none).
        if answers > 0 && r.outcome != Some(callcore::records::Outcome::CallbackFailed) {
            assert_eq!(
                r.offers
                    .iter()
                    .rfind(|o| o.ended.as_deref() == Some("answered"))
                    .map(|o| o.agent.as_str()),
                r.agent.as_deref(),
                "seed {seed}: call {id}"
            );
        }
    }
    if let Some(Phone::Trunk(t)) = w.phones.get(&TRUNK) {
        assert!(
            t.talking.is_empty(),
            "seed {seed}: called-back patients still on the line: {:?}",
            t.talking.keys().collect::<Vec<_>>()
        );
    }

    let asked = w
        .log
        .iter()
        .filter(|e| matches!(e.event, acd::Logged::CallbackRequested { .. }))
        .count() as u64;
    assert!(
        w.callbacks_stored >= asked,
        "seed {seed}: {asked} callbacks asked for, {} stored",
        w.callbacks_stored
    );
    let live = w.core.live();
    assert_eq!(
        live,
        callcore::Live::default(),
        "seed {seed}: something is left after every call ended"
    );
    assert!(
        w.sockets.is_empty(),
        "the shell still holds sockets {:?}",
        w.sockets
    );
    assert!(w.media.is_empty(), "media tasks still running");
    let agents_answered: u64 = w
        .phones
        .values()
        .map(|p| match p {
            Phone::Agent(a) => a.answered,
            _ => 0,
        })
        .sum();
    assert!(agents_answered > 0);
    stats
}

#[test]
fn thousands_of_seeded_calls_end_with_an_outcome_and_leave_nothing_behind() {
    let calls: u64 = std::env::var("SIM_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut total = Stats::default();
    for seed in [1, 2, 3] {
        let s = run(seed, calls, 40, 0.02);
        assert!(
            s.bridged > calls / 10,
            "seed {seed}: too few calls reached an agent: {s:?}"
        );
        assert!(
            s.refused_503 > 0,
            "seed {seed}: the load never reached capacity: {s:?}"
        );
        assert!(
            s.second_phone_invites > 0 && s.second_phone_cancels > 0,
            "seed {seed}: agents' second phones were never rung and cancelled: {s:?}"
        );
        assert!(
            s.holds_answered > 0,
            "seed {seed}: no agent ever held a call: {s:?}"
        );
        assert!(
            s.missed_pauses > 0,
            "seed {seed}: no agent ever missed two rings in a row: {s:?}"
        );
        assert!(
            s.transfers > 0,
            "seed {seed}: no call was ever transferred: {s:?}"
        );
        total.arrivals += s.arrivals;
        total.answered_by_ivr += s.answered_by_ivr;
        total.bridged += s.bridged;
        total.refused_503 += s.refused_503;
        total.steps += s.steps;
        total.second_phone_invites += s.second_phone_invites;
        total.second_phone_cancels += s.second_phone_cancels;
        total.holds_answered += s.holds_answered;
        total.missed_pauses += s.missed_pauses;
        total.transfers += s.transfers;
        total.agent_transfers += s.agent_transfers;
        total.refers_accepted += s.refers_accepted;
        total.refers_refused += s.refers_refused;
        total.callback_keys += s.callback_keys;
        total.trunk_invites += s.trunk_invites;
        total.trunk_answered += s.trunk_answered;
        total.callbacks_failed += s.callbacks_failed;
        total.trunk_crossed += s.trunk_crossed;
        total.voicemails += s.voicemails;
        total.kept_callbacks += s.kept_callbacks;
        total.rings_withdrawn += s.rings_withdrawn;
        total.consults += s.consults;
        total.consults_completed += s.consults_completed;
        total.desk_holds += s.desk_holds;
        total.desk_hang_ups += s.desk_hang_ups;
        assert_eq!(
            s.rings_withdrawn > 0,
            seed.is_multiple_of(2),
            "seed {seed}: rings withdrawn only under ring-all: {s:?}"
        );
    }
    assert!(
        total.desk_holds > 0 && total.desk_hang_ups > 0,
        "the desk never held or never hung up a call: {total:?}"
    );
    assert!(
        total.consults_completed > 0 && total.consults > total.consults_completed,
        "consultations were never both completed and cancelled: {total:?}"
    );
    assert!(
        total.voicemails > 0 && total.kept_callbacks > 0,
        "no message was left, or no callback kept at the stop: {total:?}"
    );
    assert!(
        total.trunk_crossed > 0,
        "no trunk answer ever crossed a CANCEL: {total:?}"
    );
    assert!(
        total.trunk_answered > 0 && total.callbacks_failed > 0,
        "callbacks were never both completed and given up: {total:?}"
    );
    assert!(
        total.refers_accepted > 0 && total.refers_refused > 0,
        "phones' REFERs were never both done and refused: {total:?}"
    );
    eprintln!("simulated: {total:?}");
}

#[test]
fn a_lossless_network_at_low_load_refuses_nobody() {
    let s = run(7, 300, 200, 0.0);
    assert_eq!(s.refused_503, 0, "{s:?}");
    assert!(s.bridged > 30, "{s:?}");
}
