//! What call control needs to know of the clinic's configuration.
//!
//! The binary builds a [`CoreConfig`] from its TOML config (which it has
//! already checked); the core never reads a file.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use sip::auth::Algorithm;
use sip::sdp::Codec;
use sip::transaction::TimerConfig;

/// Call control's settings.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The address written into Via, Contact and SDP.
    pub advertise: IpAddr,
    /// Our SIP sockets (none: that transport is off).
    pub udp_local: Option<SocketAddr>,
    pub tcp_local: Option<SocketAddr>,
    /// The digest realm.
    pub realm: String,
    /// Digest algorithms agents are challenged with, in this order (empty: MD5 only).
    pub digest: Vec<Algorithm>,
    /// How agent phones are reached (their Contact, or their source behind NAT).
    pub nat: sip::nat::NatPolicy,
    /// Keep-alive interval for phones behind NAT on UDP (`None`: none).
    pub nat_keepalive: Option<Duration>,
    /// Codecs we accept and offer, in order of preference.
    pub codecs: Vec<Codec>,
    /// Calls carried at once; the next INVITE gets 503.
    pub capacity: usize,
    /// Handling delay of a SIP message beyond which new calls get 503.
    pub max_lag: Duration,
    /// Inbound SIP messages queued beyond which new calls get 503.
    pub max_inbound_depth: usize,
    /// The `Retry-After` of a 503, in seconds.
    pub retry_after_s: u32,
    /// A leg silent this long is hung up (`None`: never).
    pub media_timeout: Option<Duration>,
    /// Inclusive RTP port range.
    pub rtp_ports: (u16, u16),
    /// SIP timers.
    pub timers: TimerConfig,
    /// The agents who may register, by id.
    pub agents: HashMap<String, AgentSpec>,
    /// Each queue's hold prompt, by queue name.
    pub hold_prompts: HashMap<String, String>,
    /// Each queue's announcements to waiting callers, by queue name (absent: none).
    pub announce: HashMap<String, Announce>,
    /// The key a waiting caller presses to leave a queue for its overflow, by queue name.
    pub exit_keys: HashMap<String, char>,
    /// The key a waiting caller presses to be called back keeping its place, by queue name.
    pub callback_keys: HashMap<String, char>,
    /// How callbacks dial patients (`None`: no queue calls back).
    pub callback: Option<CallbackConfig>,
    /// Queues whose overflow is a voicemail (the message, then a callback).
    pub voicemail_queues: BTreeSet<String>,
    /// The queue a caller goes to when the IVR cannot run.
    pub fallback_queue: Option<String>,
    /// The IVR's first menu.
    pub ivr_start: String,
    /// Prompt names the media side can play (a missing one is skipped).
    pub prompts: BTreeSet<String>,
    /// Answered calls are recorded here (`None`: recording is off).
    pub recording: Option<RecordingConfig>,
    /// Seeds tags, Call-IDs, branches and SSRCs.
    pub seed: u64,
}

/// One agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    pub name: String,
    pub password: String,
    /// Digest algorithms this agent is challenged with, in order (`None`: [`CoreConfig::digest`]).
    pub digest: Option<Vec<Algorithm>>,
}

/// Where and how recordings are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingConfig {
    /// Recordings go to `dir/YYYY-MM-DD/r-CALLID.wav`, the day the clinic's.
    pub dir: PathBuf,
    /// The clinic's time zone: day folders are its days, as the API's dates are.
    pub timezone: chrono_tz::Tz,
    /// How often the WAV header is brought up to date while recording.
    pub header_interval_ms: u64,
}

impl RecordingConfig {
    /// Where recording `id` that starts at `at` goes: `dir/YYYY-MM-DD/ID.wav`, the
    /// clinic's day.
    pub fn path_for(&self, id: &str, at: chrono::DateTime<chrono::Utc>) -> PathBuf {
        let day = at.with_timezone(&self.timezone).format("%Y-%m-%d");
        self.dir.join(day.to_string()).join(format!("{id}.wav"))
    }
}

/// How patients are called back: through which trunk, how long their phone rings, how
/// often a failed callback is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackConfig {
    /// The outbound SIP trunk (gateway or carrier) the callback's INVITE goes to.
    pub trunk: SocketAddr,
    pub transport: sip::transport::Transport,
    /// The caller id the patient sees (the user part of our From).
    pub caller_id: String,
    /// Put before the patient's number in the Request-URI (say, "0" for an outside line).
    pub dial_prefix: String,
    /// How long the patient's phone rings before the try counts as unanswered.
    pub ring: Duration,
    /// Tries after the first before the callback is given up.
    pub retries: u32,
    /// How long after a failed try the callback waits in its queue again.
    pub retry_after: Duration,
    /// Played to the caller before the line is let go ("we will call you back").
    pub confirm_prompt: String,
    /// Played before a voicemail records; and how long one records at most.
    pub voicemail_prompt: String,
    pub voicemail_max: Duration,
}

/// What a queue tells its waiting callers, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// First after this much waiting, then every this long.
    pub every: Duration,
    /// "You are number N in line."
    pub position: bool,
    /// "Your estimated wait is about N minutes." (once the queue has a pace of answers).
    pub wait: bool,
    /// Only when the caller's position is better than at the last announcement (the
    /// message below is still played).
    pub only_improved: bool,
    /// A prompt played after the place and wait at every announcement (say, "Thank you
    /// for holding"): the queue's periodic message.
    pub message: Option<String>,
}
