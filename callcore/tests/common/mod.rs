//! What the call core's tests share: a core for a small clinic, phones' SDP.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use callcore::{Core, CoreConfig};
use ivr::{Action, Menu, Menus};
use sip::dialog::LocalEndpoint;
use sip::transaction::TimerConfig;
use sip::transport::Transport;

pub const CORE_SIP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 5060);
pub const REALM: &str = "sim.clinic";
pub const AGENTS: usize = 8;
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
pub const RING_TIMEOUT: Duration = Duration::from_secs(10);
/// The trunk callbacks dial through, and their policy.
pub const TRUNK: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 9, 1)), 5060);
pub const CALLBACK_KEY: char = '2';
pub const MAX_WAIT: Duration = Duration::from_secs(45);
pub const CALLBACK_RING: Duration = Duration::from_secs(20);
pub const CALLBACK_RETRIES: u32 = 1;
pub const CALLBACK_RETRY_AFTER: Duration = Duration::from_secs(30);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn menus() -> Menus {
    let mut options = BTreeMap::new();
    options.insert("1".to_owned(), Action::Queue("general".to_owned()));
    options.insert("9".to_owned(), Action::Hangup);
    let main = Menu {
        prompt: "greeting".to_owned(),
        invalid_prompt: Some("invalid".to_owned()),
        timeout_ms: 3000,
        max_tries: 2,
        on_fail: Action::Queue("general".to_owned()),
        options,
    };
    Menus(BTreeMap::from([("main".to_owned(), main)]))
}

/// The wall clock when a test core starts: two minutes before midnight in the clinic's
/// Shanghai (15:58 UTC), so a run crosses the clinic's day while UTC's stays the same.
pub const WALL_START: chrono::DateTime<chrono::Utc> =
    match chrono::DateTime::from_timestamp(1_796_227_080, 0) {
        Some(t) => t,
        None => chrono::DateTime::<chrono::Utc>::MIN_UTC,
    };

pub fn agent_id(i: usize) -> String {
    format!("{}", 3000 + i)
}

pub fn core_for(seed: u64, capacity: usize, now: Instant) -> Core {
    core_with(seed, capacity, now, acd::Strategy::LongestIdle)
}

/// A test core whose queue picks agents by `strategy`.
pub fn core_with(seed: u64, capacity: usize, now: Instant, strategy: acd::Strategy) -> Core {
    let agents = (0..AGENTS)
        .map(|i| {
            let spec = callcore::AgentSpec {
                name: format!("Agent {i}"),
                password: format!("pw-{i}"),
                digest: None,
            };
            (agent_id(i), spec)
        })
        .collect();
    let config = CoreConfig {
        advertise: CORE_SIP.ip(),
        udp_local: Some(CORE_SIP),
        tcp_local: None,
        realm: REALM.to_owned(),
        digest: Vec::new(),
        nat: sip::nat::NatPolicy::Auto,
        nat_keepalive: Some(Duration::from_secs(25)),
        codecs: vec![sip::sdp::Codec::Pcmu, sip::sdp::Codec::Pcma],
        capacity,
        max_lag: ms(250),
        max_inbound_depth: 512,
        retry_after_s: 5,
        media_timeout: Some(MEDIA_TIMEOUT),
        // Enough ports for every call's two legs, and a few to spare.
        rtp_ports: (
            20000,
            20000 + u16::try_from(capacity * 2 + 8).expect("ports"),
        ),
        timers: TimerConfig::default(),
        agents,
        hold_prompts: HashMap::from([("general".to_owned(), "hold".to_owned())]),
        announce: HashMap::new(),
        exit_keys: HashMap::new(),
        callback_keys: HashMap::from([("general".to_owned(), CALLBACK_KEY)]),
        callback: Some(callcore::CallbackConfig {
            trunk: TRUNK,
            transport: Transport::Udp,
            caller_id: "clinic".to_owned(),
            dial_prefix: String::new(),
            ring: CALLBACK_RING,
            retries: CALLBACK_RETRIES,
            retry_after: CALLBACK_RETRY_AFTER,
            confirm_prompt: "callback_confirm".to_owned(),
            voicemail_prompt: "voicemail_greeting".to_owned(),
            voicemail_max: Duration::from_secs(60),
        }),
        voicemail_queues: ["general".to_owned()].into(),
        fallback_queue: Some("general".to_owned()),
        ivr_start: "main".to_owned(),
        prompts: [
            "greeting",
            "invalid",
            "hold",
            "callback_confirm",
            "voicemail_greeting",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect(),
        recording: Some(callcore::RecordingConfig {
            timezone: chrono_tz::Asia::Shanghai,
            dir: "/sim/recordings".into(),
            header_interval_ms: 1000,
        }),
        seed,
    };
    let acd = acd::Acd::new(
        vec![acd::QueueConfig {
            name: "general".to_owned(),
            priority: 0,
            ring_timeout: RING_TIMEOUT,
            wrap_up: std::time::Duration::ZERO,
            strategy,
            escalation: Vec::new(),
            // Callers who wait this long leave a message (and are called back).
            max_wait: Some(MAX_WAIT),
            max_callers: None,
            leave_when: acd::LeaveWhen::Never,
            overflow: acd::Overflow::Voicemail,
        }],
        (0..AGENTS)
            .map(|i| acd::AgentConfig::new(agent_id(i), &["general"]))
            .collect(),
    )
    .expect("acd");
    Core::new(config, menus(), acd, now, WALL_START)
}

pub fn local(addr: SocketAddr) -> LocalEndpoint {
    LocalEndpoint {
        transport: Transport::Udp,
        sent_by: addr,
        contact: format!("sip:phone@{addr}"),
    }
}

pub fn sdp(media: SocketAddr) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        ip = media.ip(),
        port = media.port()
    )
    .into_bytes()
}
