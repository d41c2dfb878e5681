//! `switchboard-load`: a load generator for Switchboard (GitHub issue 5, item 7).
//!
//! - [`server_config`] — `server-config`: a server TOML with M load agents.
//! - [`engine`] — `run`: one task owning all agents and calls, one 20 ms tick for all media;
//!   [`signaling`] (SIP: REGISTER with digest, patients' INVITE/BYE, agent phones),
//!   [`media_io`] (paced marked G.711 and RFC 4733 out, markers in), [`desk`] (per-agent
//!   desk WebSocket tasks), [`http`] (login, agent state).
//! - [`marker`] — the sequence marker that survives the server's µ-law transcoding.
//! - [`stats`], [`procstat`], [`recording_check`], [`summary`] — what is measured and judged.
//! - [`rtpengine`] — `rtpengine`: the same media load relayed by rtpengine, set up over its
//!   ng control protocol ([`ng`], [`bencode`]); [`relay_cpu`] — a relay's CPU per 1,000
//!   streams over a measured window (also `run --steady-s`); [`compare`] — `compare-relay`:
//!   the two side by side, as a ratio (issue 5, item 8; `scripts/relay-compare`).
//!
//! Exit status: 0 all thresholds met, 1 a threshold missed, 2 usage or setup error.

mod bencode;
mod calls;
mod compare;
mod desk;
mod engine;
mod http;
mod marker;
mod media_io;
mod ng;
mod procstat;
mod recording_check;
mod relay_cpu;
mod rtpengine;
mod server_config;
mod signaling;
mod stats;
mod summary;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::engine::{ByeFrom, Engine, RunConfig};
use crate::server_config::ServerConfigSpec;
use crate::summary::Thresholds;

#[derive(Parser)]
#[command(
    name = "switchboard-load",
    version,
    about = "Load generator for Switchboard"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a server config TOML with M load agents (check it with `switchboard check`)
    ServerConfig(ServerConfigArgs),
    /// Register agents, place calls, measure, print one summary
    Run(Box<RunArgs>),
    /// Relay the same paced, marked media through an rtpengine daemon (ng protocol), measure it
    Rtpengine(RtpengineArgs),
    /// Put a `run --steady-s --json` and an `rtpengine --json` output side by side, as a ratio
    CompareRelay(CompareArgs),
    /// Print N loopback ports that are free for both TCP and UDP right now (for scripts)
    FreePorts {
        #[arg(default_value_t = 2)]
        count: usize,
    },
}

#[derive(Args)]
struct ServerConfigArgs {
    /// Number of load agents (ids from --first-agent-id, password load-<id>)
    #[arg(long)]
    agents: usize,
    #[arg(long, default_value_t = 2000)]
    first_agent_id: u32,
    /// SIP listen address (UDP and TCP)
    #[arg(long, default_value = "127.0.0.1:5060")]
    sip: SocketAddr,
    /// HTTP listen address
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Inclusive RTP port range, A-B
    #[arg(long, default_value = "20000-20999", value_parser = parse_port_range)]
    rtp_ports: (u16, u16),
    /// Data directory (database and recordings), relative to the server's working directory
    #[arg(long, default_value = "data")]
    data: String,
    /// ring_cycle_ms of every queue
    #[arg(long, default_value_t = 5000)]
    ring_cycle_ms: u64,
    /// answer_within_rings of every queue
    #[arg(long, default_value_t = 3)]
    answer_within_rings: u32,
    /// Write `[recording] enabled = false` (for a relay-only CPU comparison)
    #[arg(long)]
    no_recording: bool,
    /// Allow non-loopback addresses
    #[arg(long)]
    allow_remote: bool,
}

#[derive(Args)]
struct RtpengineArgs {
    /// rtpengine's ng control address (its --listen-ng)
    #[arg(long, default_value = "127.0.0.1:2223")]
    ng: SocketAddr,
    /// Local address for our sockets
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Streams to relay, two per session (one each way): an even number
    #[arg(long, default_value_t = 200)]
    streams: usize,
    /// Length of the measured window, s
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Media before the measured window, not counted, s
    #[arg(long, default_value_t = 1.0)]
    warmup_s: f64,
    /// rtpengine's pid, for CPU and memory from /proc
    #[arg(long)]
    pid: Option<u32>,
    /// Seconds to keep pinging a daemon that is still starting
    #[arg(long, default_value_t = 10.0)]
    wait_s: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Threshold: RTP loss per direction, percent
    #[arg(long)]
    max_loss_pct: Option<f64>,
    /// Also print the summary as one JSON object (after the text)
    #[arg(long)]
    json: bool,
    /// Progress on stderr
    #[arg(long, short)]
    verbose: bool,
    /// Allow non-loopback addresses
    #[arg(long)]
    allow_remote: bool,
}

#[derive(Args)]
struct CompareArgs {
    /// Output of `switchboard-load run --steady-s S --json`
    #[arg(long)]
    switchboard: PathBuf,
    /// Output of `switchboard-load rtpengine --json`
    #[arg(long)]
    rtpengine: PathBuf,
    /// A line to print under the table (repeatable), e.g. what Switchboard did besides relaying
    #[arg(long)]
    note: Vec<String>,
    /// Also print the comparison as one JSON object (after the text)
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    /// The server's SIP address (UDP)
    #[arg(long, default_value = "127.0.0.1:5060")]
    sip: SocketAddr,
    /// The server's HTTP address
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Local address for our sockets
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Agents to register (as made by `server-config --agents`)
    #[arg(long, default_value_t = 10)]
    agents: usize,
    #[arg(long, default_value_t = 2000)]
    first_agent_id: u32,
    /// Patient calls to place
    #[arg(long, default_value_t = 50)]
    calls: usize,
    /// New calls per second
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Seconds each call is held once bridged
    #[arg(long, default_value_t = 3.0)]
    hold_s: f64,
    /// Agents answer after a uniform random delay in MIN-MAX ms
    #[arg(long, default_value = "200-800", value_parser = parse_ms_range)]
    answer_delay_ms: (u64, u64),
    /// Percent of offers an agent never answers (the server rings out and moves on)
    #[arg(long, default_value_t = 0.0)]
    no_answer_pct: f64,
    /// Who sends the BYE
    #[arg(long, value_enum, default_value_t = ByeFrom::Mixed)]
    bye_from: ByeFrom,
    /// The IVR digit the patients press
    #[arg(long, default_value_t = '1')]
    digit: char,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The server's pid, for CPU and memory from /proc
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's recordings directory, to check a sample of this run's recordings
    #[arg(long)]
    recordings: Option<PathBuf>,
    /// How many recordings to check
    #[arg(long, default_value_t = 5)]
    check_recordings: usize,
    /// Stop after this many seconds of calls (default: computed from calls, rate, hold, agents)
    #[arg(long)]
    deadline_s: Option<f64>,
    /// Seconds allowed for agents to log in, register and become ready
    #[arg(long, default_value_t = 20.0)]
    setup_timeout_s: f64,
    /// Measure the server's CPU per 1,000 streams over this many seconds from the moment
    /// every planned call is bridged (ends early if a call leaves the bridge)
    #[arg(long)]
    steady_s: Option<f64>,
    /// Also print the summary as one JSON object (after the text)
    #[arg(long)]
    json: bool,
    /// Progress on stderr
    #[arg(long, short)]
    verbose: bool,
    /// Allow non-loopback targets
    #[arg(long)]
    allow_remote: bool,
    /// Threshold: at most this many failed calls
    #[arg(long)]
    max_failed: Option<u64>,
    /// Threshold: at most this many 503-refused calls
    #[arg(long)]
    max_refused: Option<u64>,
    /// Threshold: at least this many completed calls
    #[arg(long)]
    min_completed: Option<u64>,
    /// Threshold: RTP loss per direction, percent
    #[arg(long)]
    max_loss_pct: Option<f64>,
    /// Threshold: setup latency p99, ms
    #[arg(long)]
    max_setup_p99_ms: Option<f64>,
    /// Threshold: added delay p99 per direction, ms
    #[arg(long)]
    max_delay_p99_ms: Option<f64>,
    /// Threshold: worst RFC 3550 jitter per direction, ms
    #[arg(long)]
    max_jitter_ms: Option<f64>,
    /// Threshold: smallest screen-pop lead over the agent's INVITE, ms
    #[arg(long, allow_negative_numbers = true)]
    min_pop_lead_ms: Option<f64>,
    /// Threshold: at most this many anomalies (server behaviour a phone would not expect)
    #[arg(long)]
    max_anomalies: Option<u64>,
    /// Threshold: silent caller frames in checked recordings, percent
    #[arg(long)]
    max_recording_gap_pct: Option<f64>,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("bad number in {s:?}"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("bad number in {s:?}"))?;
    if a > b {
        return Err(format!("{s:?}: the first number is larger than the second"));
    }
    Ok((a, b))
}

fn parse_ms_range(s: &str) -> Result<(u64, u64), String> {
    let r = parse_range(s)?;
    if r.1 > 3_600_000 {
        return Err("answer delay over an hour".into());
    }
    Ok(r)
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = parse_range(s)?;
    let a = u16::try_from(a).map_err(|_| "port over 65535".to_owned())?;
    let b = u16::try_from(b).map_err(|_| "port over 65535".to_owned())?;
    if a == 0 {
        return Err("port 0".into());
    }
    Ok((a, b))
}

fn loopback_only(addrs: &[IpAddr], allow_remote: bool) -> Result<(), String> {
    match addrs.iter().find(|a| !a.is_loopback()) {
        Some(a) if !allow_remote => Err(format!(
            "{a} is not a loopback address (give --allow-remote to target it)"
        )),
        _ => Ok(()),
    }
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("switchboard-load: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::ServerConfig(a) => {
            if let Err(e) = loopback_only(&[a.sip.ip(), a.http.ip()], a.allow_remote) {
                return usage_error(e);
            }
            if a.agents == 0 {
                return usage_error("--agents must be at least 1");
            }
            let spec = ServerConfigSpec {
                agents: a.agents,
                first_agent_id: a.first_agent_id,
                sip: a.sip,
                http: a.http,
                rtp_ports: a.rtp_ports,
                data_dir: a.data,
                ring_cycle_ms: a.ring_cycle_ms,
                answer_within_rings: a.answer_within_rings,
                recording: !a.no_recording,
            };
            print!("{}", server_config::render(&spec));
            ExitCode::SUCCESS
        }
        Command::Run(a) => run(*a),
        Command::Rtpengine(a) => relay_rtpengine(a),
        Command::CompareRelay(a) => compare_relay(a),
        Command::FreePorts { count } => match free_ports(count.min(64)) {
            Ok(ports) => {
                let text: Vec<String> = ports.iter().map(u16::to_string).collect();
                println!("{}", text.join(" "));
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(format!("free ports: {e}")),
        },
    }
}

/// Ports the OS hands out for TCP on 127.0.0.1 that are free for UDP too (all held until
/// every one is found, so they are distinct).
fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..count * 20 {
        if ports.len() == count {
            break;
        }
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) {
            ports.push(port);
            held.push((tcp, udp));
        }
    }
    if ports.len() < count {
        return Err(std::io::Error::other(
            "not enough ports free for both TCP and UDP",
        ));
    }
    Ok(ports)
}

fn run(a: RunArgs) -> ExitCode {
    if let Err(e) = loopback_only(&[a.sip.ip(), a.http.ip(), a.bind], a.allow_remote) {
        return usage_error(e);
    }
    if a.agents == 0 || a.calls == 0 {
        return usage_error("--agents and --calls must be at least 1");
    }
    if !(a.rate > 0.0 && a.rate <= 10_000.0) {
        return usage_error("--rate must be in (0, 10000]");
    }
    if !(a.hold_s >= 0.0 && a.hold_s <= 3600.0) {
        return usage_error("--hold-s must be in [0, 3600]");
    }
    if !(0.0..=100.0).contains(&a.no_answer_pct) {
        return usage_error("--no-answer-pct must be in [0, 100]");
    }
    let digit_event = match a.digit {
        '0'..='9' => a.digit as u8 - b'0',
        '*' => 10,
        '#' => 11,
        _ => return usage_error("--digit must be 0-9, * or #"),
    };
    if a.recordings.is_some() && a.check_recordings == 0 {
        return usage_error("--check-recordings must be at least 1 with --recordings");
    }
    let cfg = RunConfig {
        sip: a.sip,
        http: a.http,
        bind: a.bind,
        agents: a.agents,
        first_agent_id: a.first_agent_id,
        calls: a.calls,
        rate: a.rate,
        hold: Duration::from_secs_f64(a.hold_s),
        answer_delay_ms: a.answer_delay_ms,
        no_answer_pct: a.no_answer_pct,
        bye_from: a.bye_from,
        digit_event,
        seed: a.seed,
        server_pid: a.server_pid,
        recordings: a.recordings.clone(),
        check_recordings: a.check_recordings,
        deadline: a
            .deadline_s
            .filter(|d| *d > 0.0 && *d < 86_400.0)
            .map(Duration::from_secs_f64),
        setup_timeout: Duration::from_secs_f64(a.setup_timeout_s.clamp(1.0, 600.0)),
        steady: a
            .steady_s
            .filter(|s| *s > 0.0 && *s <= 3600.0)
            .map(Duration::from_secs_f64),
        verbose: a.verbose,
    };
    let thresholds = Thresholds {
        max_failed: a.max_failed,
        max_refused: a.max_refused,
        max_loss_pct: a.max_loss_pct,
        max_setup_p99_ms: a.max_setup_p99_ms,
        max_delay_p99_ms: a.max_delay_p99_ms,
        max_jitter_ms: a.max_jitter_ms,
        min_pop_lead_ms: a.min_pop_lead_ms,
        max_recording_gap_pct: a.max_recording_gap_pct,
        min_completed: a.min_completed,
        max_anomalies: a.max_anomalies,
    };
    // One thread: every agent's desk socket and every call's SIP and RTP are read by the
    // same loop, so their order of arrival is the order they are handled in.
    let runtime = match current_thread_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async move {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let engine = Engine::new(cfg, tx).await?;
        engine.run(rx).await
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let mut summary = match result {
        Ok(s) => s,
        Err(e) => return usage_error(format!("{e:#}")),
    };
    summary.violations = summary::check(&summary, &thresholds);
    report(
        &summary::render_text(&summary),
        &summary,
        a.json,
        &summary.violations,
    )
}

fn relay_rtpengine(a: RtpengineArgs) -> ExitCode {
    if let Err(e) = loopback_only(&[a.ng.ip(), a.bind], a.allow_remote) {
        return usage_error(e);
    }
    if a.streams < 2 || !a.streams.is_multiple_of(2) || a.streams > 20_000 {
        return usage_error("--streams must be even, in [2, 20000]");
    }
    let window_ok = a.seconds > 0.0 && a.seconds <= 3600.0;
    if !window_ok || !(0.0..=60.0).contains(&a.warmup_s) {
        return usage_error("--seconds must be in (0, 3600] and --warmup-s in [0, 60]");
    }
    let cfg = rtpengine::RtpengineConfig {
        ng: a.ng,
        bind: a.bind,
        streams: a.streams,
        seconds: Duration::from_secs_f64(a.seconds),
        warmup: Duration::from_secs_f64(a.warmup_s),
        pid: a.pid,
        wait_for_daemon: Duration::from_secs_f64(a.wait_s.clamp(0.5, 120.0)),
        seed: a.seed,
        allow_remote: a.allow_remote,
        verbose: a.verbose,
    };
    // One thread, as `run`: the same sender and receive loop shape on both sides.
    let runtime = match current_thread_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(rtpengine::run(&cfg));
    runtime.shutdown_timeout(Duration::from_secs(1));
    let mut summary = match result {
        Ok(s) => s,
        Err(e) => return usage_error(format!("rtpengine: {e:#}")),
    };
    summary.violations = rtpengine::check(&summary, a.max_loss_pct);
    report(
        &rtpengine::render_text(&summary),
        &summary,
        a.json,
        &summary.violations,
    )
}

/// A one-thread tokio runtime, or the usage error saying why there is none.
fn current_thread_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| usage_error(format!("tokio runtime: {e}")))
}

/// Prints a summary (and its JSON, if asked); exit 0 when no threshold was missed, else 1.
fn report<S: serde::Serialize>(
    text: &str,
    summary: &S,
    json: bool,
    violations: &[String],
) -> ExitCode {
    print!("{text}");
    if json {
        match serde_json::to_string(summary) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("switchboard-load: summary as JSON: {e}"),
        }
    }
    if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn compare_relay(a: CompareArgs) -> ExitCode {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))
    };
    let (sb, re) = match (read(&a.switchboard), read(&a.rtpengine)) {
        (Ok(s), Ok(r)) => (s, r),
        (Err(e), _) | (_, Err(e)) => return usage_error(e),
    };
    let sides = compare::switchboard_side(&sb).and_then(|s| Ok((s, compare::rtpengine_side(&re)?)));
    let (s, r) = match sides {
        Ok(x) => x,
        Err(e) => return usage_error(format!("{e:#}")),
    };
    let c = compare::compare(s, r, a.note);
    print!("{}", compare::render_text(&c));
    if a.json {
        match serde_json::to_string(&c) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("switchboard-load: comparison as JSON: {e}"),
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_loopback() {
        assert_eq!(parse_ms_range("100-600"), Ok((100, 600)));
        assert_eq!(parse_ms_range("250"), Ok((250, 250)));
        assert!(parse_ms_range("600-100").is_err());
        assert_eq!(parse_port_range("40000-40999"), Ok((40000, 40999)));
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("1-70000").is_err());
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        let remote: IpAddr = "10.1.2.3".parse().expect("ip");
        assert!(loopback_only(&[lo], false).is_ok());
        assert!(loopback_only(&[lo, remote], false).is_err());
        assert!(loopback_only(&[remote], true).is_ok());
    }
}
