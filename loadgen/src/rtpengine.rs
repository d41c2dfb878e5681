//! `switchboard-load rtpengine`: the load of `run`'s bridged calls — paced 20 ms PCMU
//! both ways, every packet marked — relayed by an rtpengine daemon instead of Switchboard,
//! to put a known media relay's CPU beside Switchboard's (issue 5, item 8).
//!
//! Two local sockets play the two ends, *caller* and *callee*, of every session, as the
//! patients' and agents' sockets do in `run`. Each session is set up over the ng control
//! protocol as a SIP proxy would: `offer` with the caller's SDP, `answer` with the
//! callee's, so rtpengine opens a port for each side and forwards between them. Then:
//! a warm-up (media flows, nothing counted), the measured window (rtpengine's CPU and
//! RSS from /proc at both ends, every packet sent inside it counted as expected on the
//! far side), a short drain, and a `delete` of every session.
//!
//! The marker's directions name the two ends as in `run`: `PatientToAgent` is
//! caller → callee, `AgentToPatient` is callee → caller. rtpengine forwards payloads
//! unchanged, so the marker, built to survive Switchboard's transcoding, survives here too.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use media::rtp::RtpSender;
use serde::Serialize;
use sip::sdp::{self, Codec};
use tokio::net::UdpSocket;
use tokio::time::MissedTickBehavior;

use crate::calls::StreamRx;
use crate::engine::{SLOTS, TICK};
use crate::marker::{Direction, tone_frame};
use crate::media_io::{self, PT_EVENT, us_since};
use crate::ng::{NgClient, NgError};
use crate::relay_cpu::{Pair, WindowFigures};
use crate::stats::{Histogram, Samples};
use crate::summary;

/// In-flight packets get this long after the senders stop.
const DRAIN: Duration = Duration::from_millis(300);
/// Deletes that time out one after another before the rest are skipped (daemon gone).
const MAX_DELETE_TIMEOUTS: u32 = 3;
const CODECS: [Codec; 1] = [Codec::Pcmu];

/// Everything `rtpengine` was asked for.
#[derive(Debug, Clone)]
pub struct RtpengineConfig {
    /// rtpengine's `--listen-ng` address.
    pub ng: SocketAddr,
    /// Local address of the two media sockets and the control socket.
    pub bind: IpAddr,
    /// Streams to relay; two per session (one each way), so an even number.
    pub streams: usize,
    /// Length of the measured window.
    pub seconds: Duration,
    /// Media before the window, not counted.
    pub warmup: Duration,
    /// rtpengine's pid, for CPU and memory.
    pub pid: Option<u32>,
    /// How long to keep pinging for a daemon that is still starting.
    pub wait_for_daemon: Duration,
    pub seed: u64,
    pub allow_remote: bool,
    pub verbose: bool,
}

/// What the rtpengine phase measured.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RelaySummary {
    pub sessions: u64,
    pub streams: u64,
    /// `offer` sent → `answer` replied, per session.
    pub setup: crate::stats::Distribution,
    /// rtpengine's and the generator's cost over the measured window.
    pub window: Option<WindowFigures>,
    pub caller_to_callee: summary::Direction,
    pub callee_to_caller: summary::Direction,
    /// Packets received that carried no marker of ours.
    pub unmarked_packets: u64,
    /// How late the generator's 20 ms sender ticks ran.
    pub sender_lag: crate::stats::Distribution,
    pub rtp_send_errors: u64,
    /// Sessions whose `delete` failed or was skipped.
    pub delete_failures: u64,
    pub violations: Vec<String>,
}

/// One relayed session: where each end sends, and what each end has sent and received.
struct Session {
    call_id: String,
    from_tag: String,
    /// By marker direction: the rtpengine port the caller sends to, then the callee's.
    dest: [SocketAddr; 2],
    tx: [RtpSender; 2],
    next_seq: [u32; 2],
    window_sent: [u32; 2],
    rx: [StreamRx; 2],
}

/// splitmix64: well-spread SSRCs and SDP session ids from the seed, without an RNG object.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs the phase and returns its summary (thresholds not applied).
pub async fn run(cfg: &RtpengineConfig) -> Result<RelaySummary> {
    if cfg.streams < 2 || !cfg.streams.is_multiple_of(2) {
        bail!("--streams must be an even number of at least 2 (two per session)");
    }
    let caller = UdpSocket::bind(SocketAddr::new(cfg.bind, 0))
        .await
        .context("binding the caller socket")?;
    let callee = UdpSocket::bind(SocketAddr::new(cfg.bind, 0))
        .await
        .context("binding the callee socket")?;
    for s in [&caller, &callee] {
        let got = media_io::widen_receive_buffer(s, media_io::RTP_RECV_BUFFER)
            .context("widening an RTP socket's receive buffer")?;
        log(cfg, format!("RTP receive buffer {got} bytes"));
        media_io::stamp_arrivals(s).context("asking for kernel arrival stamps")?;
    }
    let mut ng = NgClient::connect(cfg.bind, cfg.ng)
        .await
        .context("binding the ng control socket")?;
    wait_for_pong(&mut ng, cfg).await?;

    let n = cfg.streams / 2;
    let mut sessions = Vec::with_capacity(n);
    let mut setup = Samples::with_capacity(n);
    let addrs = (caller.local_addr()?, callee.local_addr()?);
    if let Err(e) = set_up(&mut ng, cfg, addrs, &mut sessions, &mut setup).await {
        tear_down(&mut ng, &sessions, cfg.verbose).await;
        return Err(e);
    }
    log(cfg, format!("{n} sessions set up; pumping media"));
    let mut pumped = pump(cfg, &caller, &callee, &mut sessions).await;
    let delete_failures = tear_down(&mut ng, &sessions, cfg.verbose).await;
    let mut dirs = [summary::Direction::default(), summary::Direction::default()];
    for (d, dir) in dirs.iter_mut().enumerate() {
        let mut jitter_sum = 0.0;
        for s in &sessions {
            let sent = u64::from(s.window_sent[d]);
            let got = u64::from(s.rx[d].received);
            dir.sent += sent;
            dir.received += got;
            dir.lost += sent.saturating_sub(got);
            dir.out_of_order += u64::from(s.rx[d].out_of_order);
            let j = s.rx[d].jitter.max_ms();
            jitter_sum += j;
            dir.jitter_max_ms = dir.jitter_max_ms.max(j);
        }
        dir.jitter_mean_ms = jitter_sum / sessions.len().max(1) as f64;
        dir.loss_pct = if dir.sent > 0 {
            dir.lost as f64 * 100.0 / dir.sent as f64
        } else {
            0.0
        };
        if let Some(delays) = pumped.delays.get_mut(d) {
            dir.delay = delays.distribution();
        }
    }
    let [caller_to_callee, callee_to_caller] = dirs;
    Ok(RelaySummary {
        sessions: n as u64,
        streams: cfg.streams as u64,
        setup: setup.distribution(),
        window: pumped.window,
        caller_to_callee,
        callee_to_caller,
        unmarked_packets: pumped.unmarked,
        sender_lag: pumped.tick_lag.distribution(),
        rtp_send_errors: pumped.send_errors,
        delete_failures,
        violations: Vec::new(),
    })
}

fn log(cfg: &RtpengineConfig, msg: impl std::fmt::Display) {
    if cfg.verbose {
        eprintln!("[rtpengine] {msg}");
    }
}

async fn wait_for_pong(ng: &mut NgClient, cfg: &RtpengineConfig) -> Result<()> {
    let until = Instant::now() + cfg.wait_for_daemon;
    let mut last: Option<NgError> = None;
    // Bounded by the deadline: each try waits for its reply or 200 ms.
    for _ in 0..10_000 {
        if Instant::now() >= until {
            break;
        }
        match ng.ping().await {
            Ok(()) => return Ok(()),
            Err(e @ (NgError::Timeout { .. } | NgError::Io(_))) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("rtpengine answered the ping wrongly"),
        }
    }
    match last {
        Some(e) => Err(e).with_context(|| {
            format!(
                "rtpengine did not answer a ping on {} within {:?}",
                cfg.ng, cfg.wait_for_daemon
            )
        }),
        None => bail!("rtpengine did not answer a ping on {}", cfg.ng),
    }
}

/// `offer` and `answer` for each session in turn.
async fn set_up(
    ng: &mut NgClient,
    cfg: &RtpengineConfig,
    (caller, callee): (SocketAddr, SocketAddr),
    sessions: &mut Vec<Session>,
    setup: &mut Samples,
) -> Result<()> {
    let tag = format!("{:x}", mix(cfg.seed ^ u64::from(std::process::id())) >> 32);
    for i in 0..cfg.streams / 2 {
        let seed = mix(cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        let call_id = format!("sbload-{tag}-{i}");
        let from_tag = format!("caller-{i}");
        let to_tag = format!("callee-{i}");
        let started = Instant::now();
        let offer = sdp::offer(&CODECS, PT_EVENT, caller, seed >> 1, Some(20));
        let to_callee = ng
            .offer(&call_id, &from_tag, &offer)
            .await
            .with_context(|| format!("session {i}: offer"))?;
        // Only a session rtpengine knows about needs deleting; record it before answering.
        sessions.push(Session {
            call_id: call_id.clone(),
            from_tag: from_tag.clone(),
            dest: [caller, callee],
            tx: [
                RtpSender::new(seed as u32, (seed >> 32) as u16, (seed >> 16) as u32),
                RtpSender::new((seed >> 32) as u32, seed as u16, (seed >> 8) as u32),
            ],
            next_seq: [0; 2],
            window_sent: [0; 2],
            rx: [StreamRx::default(); 2],
        });
        let offered = sdp::parse(to_callee.as_bytes())
            .with_context(|| format!("session {i}: rtpengine's offer SDP"))?;
        let (answer, at_callee) = sdp::answer(&offered, &CODECS, callee, (seed >> 2) ^ 1)
            .with_context(|| format!("session {i}: answering rtpengine's offer"))?;
        let to_caller = ng
            .answer(&call_id, &from_tag, &to_tag, &answer)
            .await
            .with_context(|| format!("session {i}: answer"))?;
        let answered = sdp::parse(to_caller.as_bytes())
            .and_then(|a| sdp::accept_answer(&a, &CODECS))
            .with_context(|| format!("session {i}: rtpengine's answer SDP"))?;
        for (who, to) in [("caller", answered.remote), ("callee", at_callee.remote)] {
            if to.port() == 0 {
                bail!("session {i}: rtpengine gave the {who} port 0");
            }
            if !to.ip().is_loopback() && !cfg.allow_remote {
                bail!(
                    "session {i}: rtpengine wants the {who}'s media sent to {to}, not loopback (run it with --interface=127.0.0.1)"
                );
            }
        }
        if let Some(s) = sessions.last_mut() {
            s.dest = [answered.remote, at_callee.remote];
        }
        setup.push_us(i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX));
    }
    Ok(())
}

/// Deletes every session; how many could not be deleted.
async fn tear_down(ng: &mut NgClient, sessions: &[Session], verbose: bool) -> u64 {
    let mut failures = 0u64;
    let mut timeouts_in_a_row = 0;
    for (i, s) in sessions.iter().enumerate() {
        if timeouts_in_a_row >= MAX_DELETE_TIMEOUTS {
            let skipped = (sessions.len() - i) as u64;
            if verbose {
                eprintln!("[rtpengine] no replies to delete: skipping {skipped} more");
            }
            return failures + skipped;
        }
        match ng.delete(&s.call_id, &s.from_tag).await {
            Ok(()) => timeouts_in_a_row = 0,
            Err(e) => {
                failures += 1;
                if matches!(e, NgError::Timeout { .. }) {
                    timeouts_in_a_row += 1;
                }
                if verbose {
                    eprintln!("[rtpengine] delete {}: {e}", s.call_id);
                }
            }
        }
    }
    failures
}

struct Pumped {
    window: Option<WindowFigures>,
    delays: [Histogram; 2],
    tick_lag: Histogram,
    unmarked: u64,
    send_errors: u64,
}

/// Warm-up, measured window, drain: one task, one 2 ms tick pacing the streams in ten slots, as `run`.
async fn pump(
    cfg: &RtpengineConfig,
    caller: &UdpSocket,
    callee: &UdpSocket,
    sessions: &mut [Session],
) -> Pumped {
    let tones = [tone_frame(400.0, 6000), tone_frame(1000.0, 6000)];
    let mut out = Pumped {
        window: None,
        delays: [Histogram::default(), Histogram::default()],
        tick_lag: Histogram::default(),
        unmarked: 0,
        send_errors: 0,
    };
    let epoch = Instant::now();
    let window_from = epoch + cfg.warmup;
    let stop = window_from + cfg.seconds;
    let end = stop + DRAIN;
    let mut window_start_us: Option<u64> = None;
    let mut first: Option<Pair> = None;
    let mut buf = [0u8; 256];
    let mut rx = media_io::RecvBatch::default();
    let mut ticks: u64 = 0;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    // Ends at `end`: the ticker fires every 2 ms whatever else arrives.
    loop {
        tokio::select! {
            r = callee.readable() => {
                if r.is_ok() {
                    media_io::drain_stamped(callee, epoch, &mut rx, |packet, at| {
                        receive(sessions, Direction::PatientToAgent, packet, at, window_start_us, &mut out);
                    });
                }
            }
            r = caller.readable() => {
                if r.is_ok() {
                    media_io::drain_stamped(caller, epoch, &mut rx, |packet, at| {
                        receive(sessions, Direction::AgentToPatient, packet, at, window_start_us, &mut out);
                    });
                }
            }
            scheduled = ticker.tick() => {
                let now = Instant::now();
                out.tick_lag.push_us(i64::try_from(now.saturating_duration_since(scheduled.into_std()).as_micros()).unwrap_or(i64::MAX));
                if now >= end {
                    break;
                }
                if window_start_us.is_none() && now >= window_from {
                    first = Some(Pair::sample(cfg.pid));
                    window_start_us = Some(us_since(epoch, Instant::now()));
                    log(cfg, "measured window opens");
                }
                if now < stop {
                    send_slot(sessions, ticks % SLOTS, [caller, callee], &tones, epoch, window_start_us, &mut buf, &mut out.send_errors);
                    ticks += 1;
                } else if out.window.is_none() && let Some(f) = first.take() {
                    let last = Pair::sample(cfg.pid);
                    out.window = f.figures_to(&last, cfg.pid, cfg.streams as u64);
                    log(cfg, "measured window closes; draining");
                }
            }
        }
    }
    out
}

fn receive(
    sessions: &mut [Session],
    dir: Direction,
    packet: &[u8],
    received: u64,
    window_start_us: Option<u64>,
    out: &mut Pumped,
) {
    let Some(m) = media_io::marker_of(packet, dir) else {
        out.unmarked += 1;
        return;
    };
    let d = dir.index();
    let (Some(s), Some(delays)) = (sessions.get_mut(m.call as usize), out.delays.get_mut(d)) else {
        return;
    };
    if let Some(rx) = s.rx.get_mut(d) {
        media_io::measure(rx, window_start_us, &m, received, delays);
    }
}

/// One 20 ms packet each way for every session in `slot` (session `i` is in `i % SLOTS`).
#[allow(clippy::too_many_arguments)]
fn send_slot(
    sessions: &mut [Session],
    slot: u64,
    sockets: [&UdpSocket; 2],
    tones: &[[u8; 160]; 2],
    epoch: Instant,
    window_start_us: Option<u64>,
    buf: &mut [u8],
    errors: &mut u64,
) {
    for (i, s) in sessions.iter_mut().enumerate() {
        if i as u64 % SLOTS != slot {
            continue;
        }
        for dir in [Direction::PatientToAgent, Direction::AgentToPatient] {
            let d = dir.index();
            let m = crate::marker::Marker {
                call: i as u32,
                direction: dir,
                seq: s.next_seq[d],
                sent_us: us_since(epoch, Instant::now()),
            };
            let n = media_io::write_marked(&mut s.tx[d], &tones[d], &m, buf);
            media_io::send(sockets[d], buf, n, s.dest[d], errors);
            s.next_seq[d] = s.next_seq[d].wrapping_add(1);
            if window_start_us.is_some_and(|w| m.sent_us >= w) {
                s.window_sent[d] += 1;
            }
        }
    }
}

/// Every threshold the summary misses, as a sentence each.
pub fn check(s: &RelaySummary, max_loss_pct: Option<f64>) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(max) = max_loss_pct {
        for (name, d) in [
            ("caller→callee", &s.caller_to_callee),
            ("callee→caller", &s.callee_to_caller),
        ] {
            if d.loss_pct > max {
                v.push(format!("{name} loss {:.3}% > {max}%", d.loss_pct));
            }
        }
    }
    if s.window.is_none() {
        v.push("rtpengine's CPU was not measured (give --pid)".into());
    }
    v
}

/// The human-readable summary.
pub fn render_text(s: &RelaySummary) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "switchboard-load rtpengine summary ({} sessions, {} streams)",
        s.sessions, s.streams
    );
    let d = &s.setup;
    let _ = writeln!(
        o,
        "  setup (offer→answer)   n={:<6} p50 {:.2}  p99 {:.2}  max {:.2} ms",
        d.count, d.p50_ms, d.p99_ms, d.max_ms
    );
    for (name, d) in [
        ("caller→callee", &s.caller_to_callee),
        ("callee→caller", &s.callee_to_caller),
    ] {
        summary::rtp_line(&mut o, name, d);
        let x = &d.delay;
        let _ = writeln!(
            o,
            "  delay {name}         n={:<6} p50 {:.2}  p99 {:.2}  max {:.2} ms",
            x.count, x.p50_ms, x.p99_ms, x.max_ms
        );
    }
    let l = &s.sender_lag;
    let _ = writeln!(
        o,
        "  sender tick lag        p50 {:.2}  p99 {:.2}  max {:.2} ms; send errors {}; unmarked packets {}; failed deletes {}",
        l.p50_ms, l.p99_ms, l.max_ms, s.rtp_send_errors, s.unmarked_packets, s.delete_failures
    );
    if let Some(w) = &s.window {
        summary::window_lines(&mut o, "window", w);
    }
    summary::threshold_lines(&mut o, &s.violations);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_sent_in_the_window_are_counted_on_the_far_side() {
        let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let mut sessions = vec![Session {
            call_id: "c".into(),
            from_tag: "f".into(),
            dest: [a, a],
            tx: [RtpSender::new(1, 1, 1), RtpSender::new(2, 2, 2)],
            next_seq: [0; 2],
            window_sent: [0; 2],
            rx: [StreamRx::default(); 2],
        }];
        let mut out = Pumped {
            window: None,
            delays: [Histogram::default(), Histogram::default()],
            tick_lag: Histogram::default(),
            unmarked: 0,
            send_errors: 0,
        };
        let tone = tone_frame(400.0, 6000);
        let mut buf = [0u8; 256];
        let received = 2_001_000;
        let mut packet = |seq: u32, sent_us: u64, dir: Direction| {
            let m = crate::marker::Marker {
                call: 0,
                direction: dir,
                seq,
                sent_us,
            };
            let mut tx = RtpSender::new(9, 9, 9);
            let n = media_io::write_marked(&mut tx, &tone, &m, &mut buf);
            buf[..n].to_vec()
        };
        let before = packet(0, 0, Direction::PatientToAgent);
        let inside = packet(1, 2_000_000, Direction::PatientToAgent);
        let wrong_way = packet(2, 2_000_000, Direction::AgentToPatient);
        let w = Some(1_000_000);
        let d = Direction::PatientToAgent;
        receive(&mut sessions, d, &before, received, w, &mut out);
        receive(&mut sessions, d, &inside, received, w, &mut out);
        receive(&mut sessions, d, &wrong_way, received, w, &mut out);
        receive(&mut sessions, d, b"not rtp", received, w, &mut out);
        assert_eq!(sessions[0].rx[0].received, 1);
        assert_eq!(sessions[0].rx[1].received, 0);
        assert_eq!(out.unmarked, 2);
    }

    #[test]
    fn loss_threshold_and_missing_cpu_are_reported() {
        let mut s = RelaySummary {
            window: Some(WindowFigures::default()),
            ..Default::default()
        };
        assert!(check(&s, Some(1.0)).is_empty());
        s.callee_to_caller.loss_pct = 2.0;
        assert!(check(&s, Some(1.0))[0].contains("callee→caller loss"));
        assert!(check(&s, None).is_empty());
        s.window = None;
        assert!(check(&s, None)[0].contains("not measured"));
        s.violations = check(&s, None);
        assert!(render_text(&s).contains("THRESHOLD MISSED: rtpengine's CPU"));
    }

    #[test]
    fn seeds_spread() {
        assert_ne!(mix(1), mix(2));
        assert_ne!(mix(0) as u32, 0);
    }
}
