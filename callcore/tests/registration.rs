//! Agents' phones registering: a refused REGISTER is kept per agent with its reason and
//! masked source (what ops read on `/api/agents`), and a later success does not hide it.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use callcore::{Core, Output};
use common::{CORE_SIP, agent_id, core_for};
use sip::auth::{Algorithm, Credentials, compute_response};
use sip::message::{Method, RequestBuilder, Response, SipMessage};
use sip::transport::{Peer, Transport};

const PHONE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 7, 41)), 5062);

/// The responses the core sent the phone, oldest first.
fn responses(core: &mut Core) -> Vec<Response> {
    responses_to(core, PHONE)
}

/// The responses the core sent to `to`, oldest first.
fn responses_to(core: &mut Core, to: SocketAddr) -> Vec<Response> {
    let mut out = Vec::new();
    while let Some(o) = core.poll_output() {
        if let Output::Transmit(t) = o
            && t.peer.addr == to
            && let Ok(SipMessage::Response(r)) = sip::message::parse(&t.bytes)
        {
            out.push(r);
        }
    }
    out
}

/// A REGISTER for agent `id`, answering `challenge` with `password` if given.
fn register(
    core: &mut Core,
    now: Instant,
    id: &str,
    cseq: u32,
    answer: Option<(&Response, &str)>,
) -> Response {
    register_from(core, now, id, cseq, answer, PHONE)
}

/// [`register`] as it arrives from `source` (the phone's Via still says [`PHONE`]).
fn register_from(
    core: &mut Core,
    now: Instant,
    id: &str,
    cseq: u32,
    answer: Option<(&Response, &str)>,
    source: SocketAddr,
) -> Response {
    let uri = format!("sip:{}", CORE_SIP);
    let mut b = RequestBuilder::new(Method::Register, &uri)
        .via(Transport::Udp, PHONE, &format!("z9hG4bK-r{id}-{cseq}"))
        .from(&format!("<sip:{id}@{}>;tag=r{id}", CORE_SIP.ip()))
        .to(&format!("<sip:{id}@{}>", CORE_SIP.ip()))
        .call_id(&format!("reg-{id}"))
        .cseq(cseq)
        .contact(&format!("sip:{id}@{PHONE}"))
        .max_forwards(70)
        .header("Expires", "3600")
        .header("User-Agent", "baresip v1.0.0 (x86_64/linux)");
    if let Some((challenge, password)) = answer {
        let header = challenge
            .header_values("WWW-Authenticate")
            .into_iter()
            .next()
            .expect("a challenge");
        assert!(header.contains("algorithm=MD5"), "MD5 offered: {header}");
        let start = header.find("nonce=\"").expect("nonce") + 7;
        let nonce = header[start..]
            .split('"')
            .next()
            .expect("quoted")
            .to_owned();
        let mut creds = Credentials {
            username: id.to_owned(),
            realm: common::REALM.to_owned(),
            nonce,
            uri: uri.clone(),
            response: String::new(),
            algorithm: Algorithm::Md5,
            qop: Some("auth".to_owned()),
            nc: Some("00000001".to_owned()),
            cnonce: Some("c0ffee".to_owned()),
            opaque: None,
        };
        creds.response = compute_response(&creds, "REGISTER", password).expect("qop=auth");
        b = b.header("Authorization", &creds.to_header());
    }
    core.handle_sip(now, now, Peer::udp(source), &b.build().to_bytes());
    responses_to(core, source).pop().expect("a response")
}

#[test]
fn a_wrong_password_is_shown_to_ops_with_its_reason_and_masked_source() {
    let now = Instant::now();
    let mut core = core_for(5, 4, now);
    let id = agent_id(0);
    let view = |core: &Core| {
        core.agents(now)
            .into_iter()
            .find(|a| a.id == id)
            .expect("agent listed")
    };
    assert_eq!(view(&core).last_registration_failure, None);

    let challenge = register(&mut core, now, &id, 1, None);
    assert_eq!(challenge.status(), 401);
    // The first 401 is the normal start of a registration, not a failure.
    assert_eq!(view(&core).last_registration_failure, None);

    let refused = register(&mut core, now, &id, 2, Some((&challenge, "not-it")));
    assert_eq!(refused.status(), 403);
    let failure = view(&core)
        .last_registration_failure
        .expect("the refusal is kept");
    assert_eq!(failure.status, 403);
    assert_eq!(failure.reason, "wrong_password");
    assert_eq!(failure.source, "192.168.7.*:5062");
    assert_eq!(
        failure.user_agent.as_deref(),
        Some("baresip v1.0.0 (x86_64/linux)")
    );
    assert!(!view(&core).registered);

    // The right password registers; the last failure stays visible.
    let challenge = register(&mut core, now, &id, 3, None);
    let ok = register(&mut core, now, &id, 4, Some((&challenge, "pw-0")));
    assert_eq!(ok.status(), 200);
    let after = view(&core);
    assert!(after.registered);
    assert_eq!(
        after.last_registration_failure.map(|f| f.reason),
        Some("wrong_password".to_owned())
    );
}

#[test]
fn a_phone_that_never_answers_the_challenge_is_reported_after_a_while() {
    let mut now = Instant::now();
    let mut core = core_for(7, 4, now);
    let id = agent_id(1);
    let challenge = register(&mut core, now, &id, 1, None);
    assert_eq!(challenge.status(), 401);
    // The phone gives up silently (it lacks the algorithm). The core's next deadline
    // comes within the wait, and then ops see why.
    let due = core.poll_timeout().expect("a deadline");
    assert!(
        due <= now + sip::registrar::CHALLENGE_ANSWER_WAIT,
        "{:?}",
        due - now
    );
    while let Some(at) = core
        .poll_timeout()
        .filter(|t| *t <= now + sip::registrar::CHALLENGE_ANSWER_WAIT)
    {
        now = now.max(at);
        core.handle_timeout(now);
        responses(&mut core);
    }
    let failure = core
        .agents(now)
        .into_iter()
        .find(|a| a.id == id)
        .and_then(|a| a.last_registration_failure)
        .expect("the unanswered challenge is shown");
    assert_eq!(failure.reason, "challenge_unanswered");
    assert!(failure.detail.contains("MD5"), "{}", failure.detail);
}

#[test]
fn an_unknown_user_is_refused_and_kept_nowhere() {
    let now = Instant::now();
    let mut core = core_for(6, 4, now);
    let challenge = register(&mut core, now, "9999", 1, None);
    let refused = register(&mut core, now, "9999", 2, Some((&challenge, "guess")));
    assert_eq!(refused.status(), 403);
    assert!(
        core.agents(now)
            .iter()
            .all(|a| a.last_registration_failure.is_none())
    );
}

#[test]
fn a_phone_behind_nat_is_kept_reachable_with_keepalives_at_its_source() {
    let t0 = Instant::now();
    let mut core = core_for(6, 4, t0);
    let router = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)), 40_000);
    let behind = agent_id(0);
    let challenge = register_from(&mut core, t0, &behind, 1, None, router);
    let ok = register_from(
        &mut core,
        t0,
        &behind,
        2,
        Some((&challenge, "pw-0")),
        router,
    );
    assert_eq!(ok.status(), 200);
    // A phone on the clinic's network (its Via is where it sends from) gets none.
    let lan = agent_id(1);
    let challenge = register(&mut core, t0, &lan, 1, None);
    assert_eq!(
        register(&mut core, t0, &lan, 2, Some((&challenge, "pw-1"))).status(),
        200
    );

    let mut pings = Vec::new();
    let mut now = t0;
    for _ in 0..4 {
        now += std::time::Duration::from_secs(25);
        core.handle_timeout(now);
        while let Some(o) = core.poll_output() {
            if let Output::Transmit(t) = o
                && let Ok(SipMessage::Request(r)) = sip::message::parse(&t.bytes)
                && r.method() == Method::Options
            {
                pings.push((now, t.peer.addr, r.uri().to_owned()));
            }
        }
    }
    assert_eq!(pings.len(), 4, "one OPTIONS every 25 s: {pings:?}");
    assert!(
        pings
            .iter()
            .all(|(_, to, uri)| *to == router && uri.contains(&behind)),
        "to the router's address, for the phone behind it: {pings:?}"
    );
    assert!(
        core.agents(now).iter().filter(|a| a.registered).count() == 2,
        "both phones still registered"
    );
    // Ops see where each agent's phone is reached, masked, and which is behind NAT.
    let agents = core.agents(now);
    let phones = |id: &str| {
        agents
            .iter()
            .find(|a| a.id == id)
            .map(|a| a.phones.clone())
            .unwrap_or_default()
    };
    let nat = phones(&behind);
    assert_eq!(nat.len(), 1);
    assert_eq!(
        (
            nat[0].address.as_str(),
            nat[0].behind_nat,
            nat[0].transport.as_str()
        ),
        ("203.0.113.*:40000", true, "udp")
    );
    assert_eq!(
        nat[0].user_agent.as_deref(),
        Some("baresip v1.0.0 (x86_64/linux)")
    );
    let on_lan = phones(&lan);
    assert_eq!(
        (on_lan[0].address.as_str(), on_lan[0].behind_nat),
        ("192.168.7.*:5062", false)
    );
}

/// The desk events and event log entries the core put out since the last look.
fn desk_and_log(core: &mut Core) -> (Vec<callcore::desk::DeskEvent>, Vec<acd::Logged>) {
    let (mut desk, mut log) = (Vec::new(), Vec::new());
    while let Some(o) = core.poll_output() {
        match o {
            Output::Desk { event, .. } => desk.push(event),
            Output::StoreEvent(entry) => log.push(entry.event),
            _ => {}
        }
    }
    (desk, log)
}

#[test]
fn the_desk_hears_every_state_change_and_the_event_log_keeps_it() {
    use callcore::desk::DeskEvent;
    let t0 = Instant::now();
    let mut core = core_for(8, 4, t0);
    let id = agent_id(2);
    let challenge = register(&mut core, t0, &id, 1, None);
    assert_eq!(
        register(&mut core, t0, &id, 2, Some((&challenge, "pw-2"))).status(),
        200
    );
    let view = core
        .set_agent_state(t0, &id, false, Some("meal"))
        .expect("registered");
    assert_eq!(
        (view.state.as_str(), view.reason.as_deref()),
        ("not_ready", Some("meal"))
    );
    let (desk, log) = desk_and_log(&mut core);
    assert_eq!(
        desk,
        vec![DeskEvent::State {
            state: "not_ready".into(),
            reason: Some("meal".into())
        }],
        "told once, by call control"
    );
    assert_eq!(
        log,
        vec![acd::Logged::AgentState {
            agent: id.clone(),
            state: acd::AgentState::NotReady,
            reason: Some("meal".into())
        }]
    );
    // The registration runs out: the agent is logged out and the desk shows it.
    let later = t0 + std::time::Duration::from_secs(3_700);
    while let Some(at) = core.poll_timeout().filter(|t| *t <= later) {
        core.handle_timeout(at);
    }
    core.handle_timeout(later);
    let (desk, log) = desk_and_log(&mut core);
    assert!(
        desk.contains(&DeskEvent::State {
            state: "logged_out".into(),
            reason: None
        }),
        "{desk:?}"
    );
    assert!(
        log.iter().any(|e| matches!(
            e,
            acd::Logged::AgentState {
                state: acd::AgentState::LoggedOut,
                ..
            }
        )),
        "{log:?}"
    );
    let v = core
        .agents(later)
        .into_iter()
        .find(|a| a.id == id)
        .expect("agent");
    assert_eq!(v.state, "logged_out");
    assert_eq!(
        v.in_state_ms,
        Some(100_000),
        "expired at 3,600 s, looked at 3,700 s"
    );
}
