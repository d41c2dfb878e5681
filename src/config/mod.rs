//! The TOML config: typed sections, the embedded demo clinic, and `switchboard check`.
//!
//! [`Config::check_str`] reports every problem it can find as `FILE:LINE:COL: message`:
//! all syntax errors; unknown keys and wrong types (the first one in each section, each
//! `[[agents]]`/`[[queues]]`/`[[users]]` entry and each menu, because serde stops there);
//! then every semantic problem ([`validate`]) at the offending value.

mod parse;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The demo clinic's config, printed by `switchboard default-config`.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// The names of the prompts built into the binary (see `prompts/`).
pub const BUILTIN_PROMPTS: [&str; 6] = [
    "greeting",
    "invalid",
    "hold",
    "queue_thanks",
    "callback_confirm",
    "voicemail_greeting",
];

/// The whole configuration (one TOML file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[clinic]`.
    pub clinic: Clinic,
    /// `[sip]`.
    pub sip: Sip,
    /// `[http]`.
    #[serde(default)]
    pub http: Http,
    /// `[storage]`.
    #[serde(default)]
    pub storage: Storage,
    /// `[[agents]]`.
    pub agents: Vec<Agent>,
    /// `[[queues]]`.
    pub queues: Vec<Queue>,
    /// `[ivr]`.
    pub ivr: Ivr,
    /// `[recording]`.
    #[serde(default)]
    pub recording: Recording,
    /// `[qa]`.
    #[serde(default)]
    pub qa: Qa,
    /// `[[users]]`: QA and ops logins.
    #[serde(default)]
    pub users: Vec<User>,
    /// `[callback]`: how patients who asked to be called back are dialled (absent: no
    /// queue may offer callbacks).
    #[serde(default)]
    pub callback: Option<Callback>,
    /// `[desk]`: the agent desk's wrap-up codes.
    #[serde(default)]
    pub desk: Desk,
    /// `[crm]`: the clinic's HIS/CRM asked for the caller's record (absent: the stored one only).
    #[serde(default)]
    pub crm: Option<Crm>,
    /// The directory of the config file: relative `[ivr.prompts]` paths start here.
    #[serde(skip, default = "current_dir")]
    pub dir: PathBuf,
}

fn current_dir() -> PathBuf {
    PathBuf::from(".")
}

/// `[clinic]`: who answers, where, in which language.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clinic {
    /// Shown on the desk and in logs.
    pub name: String,
    /// IANA time zone; call dates in the API are local to it.
    #[serde(deserialize_with = "de_timezone")]
    pub timezone: chrono_tz::Tz,
    /// Language of the built-in prompts.
    #[serde(default)]
    pub language: Language,
}

/// Language of the built-in prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Mandarin Chinese.
    #[default]
    Zh,
    /// English.
    En,
}

impl Language {
    /// The code used in the config and as the `prompts/` subdirectory: "zh" or "en".
    pub fn code(self) -> &'static str {
        match self {
            Language::Zh => "zh",
            Language::En => "en",
        }
    }
}

/// `[sip]`: sockets, advertised address, RTP ports, codecs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sip {
    /// SIP over UDP listens here (none: no UDP).
    pub udp: Option<SocketAddr>,
    /// SIP over TCP listens here (none: no TCP).
    pub tcp: Option<SocketAddr>,
    /// The address written into Via, Contact and SDP.
    pub advertise: IpAddr,
    /// Inclusive RTP port range, one port per call leg.
    #[serde(default)]
    pub rtp_ports: PortRange,
    /// Offered/accepted codecs in order of preference.
    #[serde(default = "default_codecs")]
    pub codecs: Vec<Codec>,
    /// Digest authentication realm for agents.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Digest algorithms agents are challenged with, in this order. MD5 only by default:
    /// Debian 12's baresip refuses a 401 naming any algorithm it lacks, even beside MD5.
    #[serde(default = "default_digest")]
    pub digest: Vec<Digest>,
    /// A call whose phones send no RTP for this long is hung up (0: never).
    #[serde(default = "default_media_timeout_ms")]
    pub media_timeout_ms: u64,
    /// Concurrent calls carried; a new call beyond it gets `503` with
    /// `Retry-After` (0: as many as `rtp_ports` holds, two ports a call).
    #[serde(default)]
    pub max_calls: usize,
    /// Call control further behind than this (ms from a message's arrival to
    /// its handling) refuses new calls with `503` until it has caught up.
    #[serde(default = "default_max_lag_ms")]
    pub max_lag_ms: u64,
    /// The `Retry-After` (seconds) a refused caller is given.
    #[serde(default = "default_retry_after_s")]
    pub retry_after_s: u32,
    /// SIP over TCP: connections open at once; beyond, new ones are closed at accept.
    #[serde(default = "default_tcp_max_connections")]
    pub tcp_max_connections: usize,
    /// SIP over TCP: connections open at once from one IP address.
    #[serde(default = "default_tcp_max_per_source")]
    pub tcp_max_per_source: usize,
    /// SIP over TCP: a connection that carries nothing (not even a CRLF keep-alive)
    /// for this long is closed (0: never).
    #[serde(default = "default_tcp_idle_timeout_s")]
    pub tcp_idle_timeout_s: u64,
    /// Where calls to a registered agent phone go: `auto` (its Contact, or where its
    /// REGISTER came from when it is behind NAT), `contact` or `source`.
    #[serde(default)]
    pub nat: Nat,
    /// A phone behind NAT on UDP is sent a keep-alive (OPTIONS) this often (0: never).
    #[serde(default = "default_nat_keepalive_s")]
    pub nat_keepalive_s: u64,
}

/// `[sip] nat` as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Nat {
    #[default]
    Auto,
    Contact,
    Source,
}

impl From<Nat> for sip::nat::NatPolicy {
    fn from(n: Nat) -> Self {
        match n {
            Nat::Auto => sip::nat::NatPolicy::Auto,
            Nat::Contact => sip::nat::NatPolicy::Contact,
            Nat::Source => sip::nat::NatPolicy::Source,
        }
    }
}

fn default_nat_keepalive_s() -> u64 {
    sip::registrar::DEFAULT_KEEPALIVE.as_secs()
}

impl Sip {
    /// How many calls may run at once: `max_calls`, or what the port range holds.
    pub fn call_capacity(&self) -> usize {
        let by_ports = self.rtp_ports.calls();
        match self.max_calls {
            0 => by_ports,
            n => n.min(by_ports),
        }
    }

    /// The limits on SIP over TCP connections.
    pub fn tcp_limits(&self) -> crate::sip_io::TcpLimits {
        crate::sip_io::TcpLimits {
            max_connections: self.tcp_max_connections,
            max_per_source: self.tcp_max_per_source,
            idle: (self.tcp_idle_timeout_s > 0)
                .then(|| Duration::from_secs(self.tcp_idle_timeout_s)),
        }
    }

    /// The RTP inactivity limit, if any.
    pub fn media_timeout(&self) -> Option<Duration> {
        (self.media_timeout_ms > 0).then(|| Duration::from_millis(self.media_timeout_ms))
    }
}

fn default_media_timeout_ms() -> u64 {
    30_000
}

fn default_max_lag_ms() -> u64 {
    250
}

fn default_retry_after_s() -> u32 {
    5
}

fn default_tcp_max_connections() -> usize {
    1024
}

fn default_tcp_max_per_source() -> usize {
    32
}

fn default_tcp_idle_timeout_s() -> u64 {
    600
}

fn default_codecs() -> Vec<Codec> {
    vec![Codec::Pcmu, Codec::Pcma]
}

fn default_realm() -> String {
    "switchboard".to_owned()
}

/// An inclusive port range written `[first, last]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The first port.
    pub first: u16,
    /// The last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// The ports as a range.
    pub fn range(self) -> RangeInclusive<u16> {
        self.first..=self.last
    }

    /// How many ports the range holds (0 when reversed).
    pub fn len(self) -> usize {
        if self.last < self.first {
            0
        } else {
            usize::from(self.last - self.first) + 1
        }
    }

    /// How many calls the range carries: two ports a call, one per leg.
    pub fn calls(self) -> usize {
        self.len() / 2
    }

    /// Whether the range holds no port (reversed).
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange {
            first: 20000,
            last: 23999,
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ports = Vec::<u16>::deserialize(deserializer)?;
        match ports.as_slice() {
            [first, last] => Ok(PortRange {
                first: *first,
                last: *last,
            }),
            _ => Err(serde::de::Error::custom(format!(
                "expected two ports [first, last], found {}",
                ports.len()
            ))),
        }
    }
}

/// A digest algorithm as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Digest {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "SHA-256")]
    Sha256,
}

impl From<Digest> for sip::auth::Algorithm {
    fn from(d: Digest) -> Self {
        match d {
            Digest::Md5 => sip::auth::Algorithm::Md5,
            Digest::Sha256 => sip::auth::Algorithm::Sha256,
        }
    }
}

fn default_digest() -> Vec<Digest> {
    vec![Digest::Md5]
}

/// An audio codec as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Codec {
    /// G.711 µ-law, payload type 0.
    #[serde(rename = "PCMU")]
    Pcmu,
    /// G.711 A-law, payload type 8.
    #[serde(rename = "PCMA")]
    Pcma,
}

impl Codec {
    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

impl From<Codec> for media::Codec {
    fn from(codec: Codec) -> Self {
        match codec {
            Codec::Pcmu => media::Codec::Pcmu,
            Codec::Pcma => media::Codec::Pcma,
        }
    }
}

impl From<Codec> for sip::sdp::Codec {
    fn from(codec: Codec) -> Self {
        match codec {
            Codec::Pcmu => sip::sdp::Codec::Pcmu,
            Codec::Pcma => sip::sdp::Codec::Pcma,
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// Desk, QA and ops pages, the API, /metrics and /healthz listen here (plain HTTP: keep it
    /// on loopback, or behind a proxy that adds TLS).
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// The same over HTTPS/WSS here (browsers give a page off localhost a microphone only
    /// when it is secure). Needs `tls_cert` and `tls_key`.
    #[serde(default)]
    pub https: Option<SocketAddr>,
    /// PEM file: the server certificate, then any intermediates (relative: to this file).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM file: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: default_http_listen(),
            https: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[storage]`: the database and the recordings directory (relative to the working directory).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// A SQLite file path, or a `postgres://` URL.
    #[serde(default = "default_database")]
    pub database: String,
    /// Where WAV recordings are written.
    #[serde(default = "default_recordings")]
    pub recordings: PathBuf,
}

fn default_database() -> String {
    "data/switchboard.db".to_owned()
}

fn default_recordings() -> PathBuf {
    PathBuf::from("data/recordings")
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            database: default_database(),
            recordings: default_recordings(),
        }
    }
}

/// One `[[agents]]` entry: a SIP phone and a desk login.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// SIP digest user and desk login.
    pub id: String,
    /// Display name (defaults to the id).
    #[serde(default)]
    pub name: String,
    /// SIP digest and desk password.
    pub password: String,
    /// The queues this agent answers.
    #[serde(default)]
    pub queues: Vec<String>,
    /// This agent's digest algorithms, in order, instead of `[sip] digest`.
    #[serde(default)]
    pub digest: Option<Vec<Digest>>,
    /// After this many rings in a row unanswered the agent goes not ready (`missed`); 0: never.
    #[serde(default = "default_max_missed_rings")]
    pub max_missed_rings: u32,
    /// The agent's level per queue (skills): 1 rings before 2; a queue not named is level 1.
    #[serde(default)]
    pub levels: std::collections::BTreeMap<String, u32>,
}

fn default_max_missed_rings() -> u32 {
    acd::AgentConfig::DEFAULT_MAX_MISSED_RINGS
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("password", &"<hidden>")
            .field("queues", &self.queues)
            .field("digest", &self.digest)
            .field("max_missed_rings", &self.max_missed_rings)
            .field("levels", &self.levels)
            .finish()
    }
}

/// One `[[queues]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    /// The name menus route to (`queue:NAME`).
    pub name: String,
    /// Higher goes first; equal priority is first come, first served.
    #[serde(default)]
    pub priority: i32,
    /// An agent's phone rings at most this many cycles...
    #[serde(default = "default_rings")]
    pub answer_within_rings: u32,
    /// ...of this length, then the next free agent rings.
    #[serde(default = "default_ring_cycle_ms")]
    pub ring_cycle_ms: u64,
    /// The prompt looped while callers wait.
    #[serde(default = "default_hold_prompt")]
    pub hold_prompt: String,
    /// After-call work once a call of this queue ends: the agent gets no call from any
    /// queue for this long, unless the desk ends it sooner (0: none).
    #[serde(default)]
    pub wrap_up_ms: u64,
    /// How the queue picks among free agents (`longest_idle`, `round_robin`, `fewest_calls`,
    /// `least_talk_time`, `top_down`, `random`, `ring_all`).
    #[serde(default)]
    pub strategy: acd::Strategy,
    /// Escalation steps: after a caller waited `after_ms`, agents up to `max_level` may ring.
    #[serde(default)]
    pub escalation: Vec<EscalationStep>,
    /// A caller who waited this long goes to `overflow`.
    #[serde(default)]
    pub max_wait_ms: Option<u64>,
    /// A caller arriving when this many wait goes to `overflow`.
    #[serde(default)]
    pub max_callers: Option<usize>,
    /// When nobody can answer (`none_logged_in`, `none_ready`), callers go to `overflow`.
    #[serde(default)]
    pub leave_when: acd::LeaveWhen,
    /// Where the rules above send callers: `"queue:NAME"` or `"hangup"`.
    #[serde(default)]
    pub overflow: Option<String>,
    /// A key (`"0"`–`"9"`, `"*"`, `"#"`) a waiting caller presses to leave for `overflow`.
    #[serde(default)]
    pub exit_key: Option<String>,
    /// A key a waiting caller presses to be called back, keeping its place (needs `[callback]`).
    #[serde(default)]
    pub callback_key: Option<String>,
    /// Tell waiting callers their position and estimated wait this often (0: never).
    #[serde(default)]
    pub announce_every_ms: u64,
    /// Say the position ("You are number 3 in line.").
    #[serde(default = "default_true")]
    pub announce_position: bool,
    /// Say the estimated wait, once the queue has a pace of answers.
    #[serde(default = "default_true")]
    pub announce_wait: bool,
    /// Only when the position improved since the last announcement.
    #[serde(default)]
    pub announce_only_improved: bool,
    /// A prompt played at every announcement after the place and wait (the periodic
    /// message; the built-in `queue_thanks` is "Thank you for holding").
    #[serde(default)]
    pub announce_message: Option<String>,
}

impl Queue {
    /// The overflow as the ACD takes it (`None`: not one of the two forms).
    pub fn overflow_target(&self) -> Option<acd::Overflow> {
        match self.overflow.as_deref() {
            None | Some("hangup") => Some(acd::Overflow::Hangup),
            Some("callback") => Some(acd::Overflow::Callback),
            Some("voicemail") => Some(acd::Overflow::Voicemail),
            Some(s) => s
                .strip_prefix("queue:")
                .map(|q| acd::Overflow::Queue(q.to_owned())),
        }
    }

    /// Whether any rule can send a caller out.
    pub fn has_exit_rules(&self) -> bool {
        self.max_wait_ms.is_some()
            || self.max_callers.is_some()
            || self.exit_key.is_some()
            || self.leave_when != acd::LeaveWhen::Never
    }
}

/// `[callback]`: the outbound trunk callbacks dial through, and how they are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Callback {
    /// The trunk (SIP gateway or carrier) the INVITE to the patient goes to.
    pub trunk: SocketAddr,
    /// `"udp"` (default) or `"tcp"`.
    #[serde(default)]
    pub transport: TrunkTransport,
    /// The caller id the patient sees (the user part of our From).
    #[serde(default = "default_caller_id")]
    pub caller_id: String,
    /// Dialled before the patient's number (an outside-line prefix, say).
    #[serde(default)]
    pub dial_prefix: String,
    /// How long the patient's phone rings before the try counts as unanswered.
    #[serde(default = "default_callback_ring_ms")]
    pub ring_ms: u64,
    /// Tries after the first before the callback is given up.
    #[serde(default = "default_callback_retries")]
    pub retries: u32,
    /// How long after a failed try the callback waits in its queue again.
    #[serde(default = "default_callback_retry_after_ms")]
    pub retry_after_ms: u64,
    /// Played to the caller before the line is let go.
    #[serde(default = "default_confirm_prompt")]
    pub confirm_prompt: String,
    /// A voicemail (overflow `voicemail`) records at most this long.
    #[serde(default = "default_voicemail_max_ms")]
    pub voicemail_max_ms: u64,
    /// Played before a voicemail records ("leave a message after the tone").
    #[serde(default = "default_voicemail_prompt")]
    pub voicemail_prompt: String,
}

fn default_voicemail_max_ms() -> u64 {
    120_000
}
fn default_voicemail_prompt() -> String {
    "voicemail_greeting".to_owned()
}

/// The trunk's transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    #[default]
    Udp,
    Tcp,
}

fn default_caller_id() -> String {
    "clinic".to_owned()
}
fn default_callback_ring_ms() -> u64 {
    30_000
}
fn default_callback_retries() -> u32 {
    2
}
fn default_callback_retry_after_ms() -> u64 {
    300_000
}
fn default_confirm_prompt() -> String {
    "callback_confirm".to_owned()
}

/// One `[[queues]] escalation` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    pub after_ms: u64,
    pub max_level: u32,
}

/// The longest wrap-up a queue may give (an hour: longer is a typo, not a policy).
pub const MAX_WRAP_UP_MS: u64 = 3_600_000;

fn default_rings() -> u32 {
    3
}

fn default_ring_cycle_ms() -> u64 {
    5000
}

fn default_hold_prompt() -> String {
    "hold".to_owned()
}

impl Queue {
    /// How long one agent's phone rings before the call moves on: rings × cycle.
    pub fn ring_timeout(&self) -> Duration {
        Duration::from_millis(
            self.ring_cycle_ms
                .saturating_mul(u64::from(self.answer_within_rings)),
        )
    }
}

/// `[ivr]`: the start menu, prompt files and menus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ivr {
    /// The menu every dialled number reaches.
    pub start: String,
    /// Prompt name → audio file (relative to the config file's directory).
    #[serde(default)]
    pub prompts: BTreeMap<String, PathBuf>,
    /// Menu name → menu.
    pub menus: BTreeMap<String, ivr::Menu>,
}

/// `[recording]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    /// Record every answered queue call.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often the WAV header is brought up to date while recording.
    #[serde(default = "default_header_interval_ms")]
    pub header_interval_ms: u64,
}

fn default_true() -> bool {
    true
}

fn default_header_interval_ms() -> u64 {
    1000
}

impl Default for Recording {
    fn default() -> Self {
        Recording {
            enabled: true,
            header_interval_ms: default_header_interval_ms(),
        }
    }
}

/// `[qa]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qa {
    /// Recordings sampled for QA each day.
    #[serde(default = "default_daily_sample")]
    pub daily_sample: usize,
    /// Sampling seed: the same day always gives the same sample.
    #[serde(default)]
    pub seed: u64,
}

fn default_daily_sample() -> usize {
    30
}

impl Default for Qa {
    fn default() -> Self {
        Qa {
            daily_sample: default_daily_sample(),
            seed: 0,
        }
    }
}

/// `[desk]`: what the agent desk offers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Desk {
    /// The wrap-up codes an agent picks after a call (a disposition), in the order shown.
    #[serde(default = "default_dispositions")]
    pub dispositions: Vec<Disposition>,
}

impl Default for Desk {
    fn default() -> Self {
        Desk {
            dispositions: default_dispositions(),
        }
    }
}

/// `[crm]`: a lookup webhook to the clinic's HIS/CRM. At every call the stored record goes
/// into the pop at once; the CRM's answer, if it comes within `timeout_ms`, refreshes the pop
/// and the stored record. A slow or failing CRM never delays the ring.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crm {
    /// `GET` this URL (`http://` or `https://`) with `{phone}` replaced by the caller's number;
    /// the answer is a patient record as JSON (the fields of `PUT /api/patients`), 404 for none.
    pub url: String,
    /// How long an answer is waited for.
    #[serde(default = "default_crm_timeout_ms")]
    pub timeout_ms: u64,
    /// Sent as `Authorization: Bearer TOKEN`, if set.
    #[serde(default)]
    pub token: Option<String>,
}

impl std::fmt::Debug for Crm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crm")
            .field("url", &self.url)
            .field("timeout_ms", &self.timeout_ms)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

fn default_crm_timeout_ms() -> u64 {
    800
}

/// The longest `[crm] timeout_ms` allowed.
pub const MAX_CRM_TIMEOUT_MS: u64 = 5_000;

/// One wrap-up code (`[[desk.dispositions]]`).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Disposition {
    /// What is stored on the call record: letters, digits, `-` or `_`.
    pub code: String,
    /// What the desk shows in English.
    pub label: String,
    /// What the desk shows in Chinese (absent: the English label).
    #[serde(default)]
    pub label_zh: Option<String>,
    /// How the call went for the patient; the next pop sums the recent ones up as the
    /// patient's tendency.
    #[serde(default)]
    pub tone: Tone,
}

pub use callcore::records::Tone;

/// The wrap-up codes of a config without a `[desk]` section (the demo's).
fn default_dispositions() -> Vec<Disposition> {
    let code = |code: &str, label: &str, zh: &str, tone: Tone| Disposition {
        code: code.to_owned(),
        label: label.to_owned(),
        label_zh: Some(zh.to_owned()),
        tone,
    };
    vec![
        code("booked", "Appointment booked", "已预约", Tone::Positive),
        code(
            "rescheduled",
            "Appointment changed",
            "已改约",
            Tone::Neutral,
        ),
        code("answered", "Question answered", "已解答", Tone::Positive),
        code("complaint", "Complaint", "投诉", Tone::Negative),
        code("follow_up", "Needs a call back", "需回访", Tone::Neutral),
        code(
            "urgent_referred",
            "Urgent: sent to a doctor",
            "紧急转医生",
            Tone::Neutral,
        ),
        code("wrong_number", "Wrong number", "打错电话", Tone::Neutral),
    ]
}

/// Who a login is (`agent`, `qa` or `ops`): the same roles the API checks.
pub use crate::auth::Role;

/// One `[[users]]` entry: a QA or ops login (role is qa or ops).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Login password.
    pub password: String,
    /// `qa` or `ops`.
    pub role: Role,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<hidden>")
            .field("role", &self.role)
            .finish()
    }
}

fn de_timezone<'de, D: Deserializer<'de>>(deserializer: D) -> Result<chrono_tz::Tz, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown timezone `{name}`, expected an IANA name like `Asia/Shanghai`"
        ))
    })
}

/// One problem in a config file, rendered as `FILE:LINE:COL: message` (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Why a config file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrors {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file was read but has problems (every one of them, one per line).
    #[error("{}", render(.0))]
    Invalid(Vec<Problem>),
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigErrors {
    /// The problems found (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigErrors::Invalid(problems) => problems,
            ConfigErrors::Read { .. } => &[],
        }
    }
}

impl Config {
    /// The embedded demo clinic.
    pub fn demo() -> Config {
        Config::check_str(DEMO_CONFIG, "demo.toml")
            .expect("the embedded demo config is valid: config::tests::demo_parses_and_validates")
    }

    /// Reads and checks a config file; relative prompt paths start in its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigErrors::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::check_str(&text, &path.display().to_string()).map_err(ConfigErrors::Invalid)
    }

    /// Parses and checks config text; `file_name` prefixes every problem and locates
    /// relative prompt files (its directory).
    pub fn check_str(text: &str, file_name: &str) -> Result<Config, Vec<Problem>> {
        let (mut config, locator) = parse::parse(text, file_name)?;
        config.dir = match Path::new(file_name).parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => current_dir(),
        };
        let issues = validate::validate(&config);
        if issues.is_empty() {
            Ok(config)
        } else {
            let mut problems: Vec<Problem> = issues
                .into_iter()
                .map(|issue| locator.problem(&issue.path, issue.message))
                .collect();
            problems.sort_by_key(|p| (p.line, p.col));
            Err(problems)
        }
    }

    /// `[http]`'s certificate and key files, resolved against the config's directory, when
    /// HTTPS is on.
    pub fn tls_files(&self) -> Option<(PathBuf, PathBuf)> {
        self.http.https?;
        let cert = self.dir.join(self.http.tls_cert.as_ref()?);
        let key = self.dir.join(self.http.tls_key.as_ref()?);
        Some((cert, key))
    }

    /// The queue of this name.
    pub fn queue(&self, name: &str) -> Option<&Queue> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// The agent with this id.
    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// The QA/ops user with this name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// How long an agent's phone rings for a call from this queue (rings × cycle).
    pub fn ring_timeout(&self, queue: &str) -> Option<Duration> {
        self.queue(queue).map(Queue::ring_timeout)
    }

    /// The menus as the IVR session wants them.
    pub fn menus(&self) -> ivr::Menus {
        ivr::Menus(self.ivr.menus.clone())
    }

    /// The file configured for a prompt name, resolved against the config's directory.
    pub fn prompt_path(&self, name: &str) -> Option<PathBuf> {
        self.ivr.prompts.get(name).map(|path| self.dir.join(path))
    }

    /// A one-line summary: "3 agents, 3 queues, 1 menu".
    pub fn summary(&self) -> String {
        fn count(n: usize, what: &str) -> String {
            if n == 1 {
                format!("1 {what}")
            } else {
                format!("{n} {what}s")
            }
        }
        let mut parts = vec![
            count(self.agents.len(), "agent"),
            count(self.queues.len(), "queue"),
            count(self.ivr.menus.len(), "menu"),
        ];
        if !self.users.is_empty() {
            parts.push(count(self.users.len(), "user"));
        }
        parts.join(", ")
    }
}
