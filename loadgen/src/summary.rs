//! The run's one summary (text and JSON) and the command-line thresholds it is held to.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::relay_cpu::WindowFigures;
use crate::stats::Distribution;

#[derive(Debug, Default, Clone, Serialize)]
pub struct CallCounts {
    pub planned: u64,
    pub started: u64,
    /// 200 OK at the patient (the IVR answered).
    pub answered_by_ivr: u64,
    /// An agent answered and media was bridged.
    pub bridged: u64,
    /// Bridged, held for the hold time, and hung up cleanly.
    pub completed: u64,
    pub failed: u64,
    /// 503s (a subset of failed).
    pub refused: u64,
    pub failure_reasons: BTreeMap<String, u64>,
    pub offers: u64,
    pub ring_outs: u64,
    pub missed_events: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Direction {
    /// Marked packets sent inside the measured window.
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub loss_pct: f64,
    pub out_of_order: u64,
    /// Receive time minus send time of each marked packet.
    pub delay: Distribution,
    /// RFC 3550 jitter at the end of each call: mean and worst over calls.
    pub jitter_mean_ms: f64,
    pub jitter_max_ms: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ProcFigures {
    pub pid: String,
    pub cpu_pct: f64,
    pub cpu_ms_per_call: f64,
    pub rss_start_kb: u64,
    /// When the calls started: agents registered, desks connected.
    pub rss_ready_kb: u64,
    pub rss_end_kb: u64,
    pub rss_peak_kb: u64,
    pub peak_active_calls: u64,
    /// (peak RSS − RSS when the calls started) / peak active calls.
    pub kb_per_active_call: f64,
    /// (peak RSS − RSS at start, before any agent registered) / peak active calls.
    pub kb_per_active_call_from_start: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct RecordingFigures {
    pub sampled: u64,
    pub missing: u64,
    pub unreadable: u64,
    pub frames_checked: u64,
    pub silent_frames: u64,
    pub silent_pct: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub duration_s: f64,
    pub agents: u64,
    pub agents_ready: u64,
    pub calls: CallCounts,
    /// Patient INVITE sent → 200 OK received.
    pub setup: Distribution,
    /// Digit sent → first INVITE at an agent's phone.
    pub queue_to_agent: Distribution,
    /// Digit sent → first screen-pop at an agent's desk.
    pub pop_latency: Distribution,
    /// Agent's INVITE arrival − screen-pop arrival (must be ≥ 0).
    pub pop_lead: Distribution,
    /// Agent INVITEs read when their screen-pop was not yet readable on the desk socket.
    pub invites_before_pop: u64,
    /// Screen-pops already readable when their INVITE was read (recorded as lead 0).
    pub pops_with_invite: u64,
    /// Server behaviour a phone would not expect, by kind (not counted as failed calls).
    pub anomalies: BTreeMap<String, u64>,
    pub patient_to_agent: Direction,
    pub agent_to_patient: Direction,
    /// Unmarked packets the patients received (greeting, hold music).
    pub prompt_packets: u64,
    /// How late the generator's 20 ms sender ticks ran.
    pub sender_lag: Distribution,
    pub rtp_send_errors: u64,
    pub sip_errors: u64,
    pub server: Option<ProcFigures>,
    pub generator: ProcFigures,
    pub recordings: Option<RecordingFigures>,
    /// The server's cost per stream while every call was bridged (`run --steady-s`).
    pub steady: Option<WindowFigures>,
    /// Why `steady` is missing or shorter than asked.
    pub steady_note: Option<String>,
    pub violations: Vec<String>,
}

/// Limits given on the command line; `None` is not checked.
#[derive(Debug, Default, Clone)]
pub struct Thresholds {
    pub max_failed: Option<u64>,
    pub max_refused: Option<u64>,
    pub max_loss_pct: Option<f64>,
    pub max_setup_p99_ms: Option<f64>,
    pub max_delay_p99_ms: Option<f64>,
    pub max_jitter_ms: Option<f64>,
    pub min_pop_lead_ms: Option<f64>,
    pub max_recording_gap_pct: Option<f64>,
    pub min_completed: Option<u64>,
    pub max_anomalies: Option<u64>,
}

/// Every threshold the summary misses, as a sentence each.
pub fn check(s: &Summary, t: &Thresholds) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(max) = t.max_failed
        && s.calls.failed > max
    {
        v.push(format!("failed calls {} > {max}", s.calls.failed));
    }
    if let Some(max) = t.max_refused
        && s.calls.refused > max
    {
        v.push(format!("refused calls {} > {max}", s.calls.refused));
    }
    if let Some(max) = t.max_anomalies {
        let n: u64 = s.anomalies.values().sum();
        if n > max {
            let kinds: Vec<String> = s
                .anomalies
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            v.push(format!("anomalies {n} > {max} ({})", kinds.join("; ")));
        }
    }
    if let Some(min) = t.min_completed
        && s.calls.completed < min
    {
        v.push(format!("completed calls {} < {min}", s.calls.completed));
    }
    for (name, d) in [
        ("patient→agent", &s.patient_to_agent),
        ("agent→patient", &s.agent_to_patient),
    ] {
        if let Some(max) = t.max_loss_pct
            && d.loss_pct > max
        {
            v.push(format!("{name} loss {:.3}% > {max}%", d.loss_pct));
        }
        if let Some(max) = t.max_delay_p99_ms
            && d.delay.p99_ms > max
        {
            v.push(format!(
                "{name} delay p99 {:.1} ms > {max} ms",
                d.delay.p99_ms
            ));
        }
        if let Some(max) = t.max_jitter_ms
            && d.jitter_max_ms > max
        {
            v.push(format!(
                "{name} jitter {:.1} ms > {max} ms",
                d.jitter_max_ms
            ));
        }
    }
    if let Some(max) = t.max_setup_p99_ms
        && s.setup.p99_ms > max
    {
        v.push(format!("setup p99 {:.1} ms > {max} ms", s.setup.p99_ms));
    }
    if let Some(min) = t.min_pop_lead_ms {
        if s.pop_lead.count > 0 && s.pop_lead.min_ms < min {
            v.push(format!(
                "screen-pop lead min {:.1} ms < {min} ms",
                s.pop_lead.min_ms
            ));
        }
        if s.invites_before_pop > 0 && min >= 0.0 {
            v.push(format!(
                "{} agent INVITEs arrived before their screen-pop",
                s.invites_before_pop
            ));
        }
    }
    if let Some(max) = t.max_recording_gap_pct {
        match &s.recordings {
            Some(r) if r.missing > 0 || r.unreadable > 0 => v.push(format!(
                "recordings: {} missing, {} unreadable of {} sampled",
                r.missing, r.unreadable, r.sampled
            )),
            Some(r) if r.silent_pct > max => v.push(format!(
                "recordings: {:.2}% silent caller frames > {max}%",
                r.silent_pct
            )),
            Some(_) => {}
            None => v.push("recordings were not checked (give --recordings DIR)".to_owned()),
        }
    }
    v
}

/// The `rtp NAME: sent … jitter …` line of one direction (shared with `rtpengine`).
pub fn rtp_line(o: &mut String, name: &str, d: &Direction) {
    let _ = writeln!(
        o,
        "  rtp {name}: sent {} received {} lost {} ({:.3}%) out-of-order {} jitter mean {:.2} max {:.2} ms",
        d.sent, d.received, d.lost, d.loss_pct, d.out_of_order, d.jitter_mean_ms, d.jitter_max_ms
    );
}

fn dist(out: &mut String, name: &str, d: &Distribution) {
    if d.count == 0 {
        let _ = writeln!(out, "  {name:<22} (none)");
        return;
    }
    let _ = writeln!(
        out,
        "  {name:<22} n={:<6} min {:>8.1}  p50 {:>8.1}  p90 {:>8.1}  p99 {:>8.1}  max {:>8.1} ms",
        d.count, d.min_ms, d.p50_ms, d.p90_ms, d.p99_ms, d.max_ms
    );
}

fn proc_line(out: &mut String, name: &str, p: &ProcFigures) {
    let _ = writeln!(
        out,
        "  {name:<10} pid {:<8} cpu {:>6.1}% ({:.2} ms/call)  rss {} → {} (agents ready) → {} KiB, peak {} KiB, {:.1} KiB per active call (peak {} active; {:.1} counting the agents)",
        p.pid,
        p.cpu_pct,
        p.cpu_ms_per_call,
        p.rss_start_kb,
        p.rss_ready_kb,
        p.rss_end_kb,
        p.rss_peak_kb,
        p.kb_per_active_call,
        p.peak_active_calls,
        p.kb_per_active_call_from_start
    );
}

/// Two lines on a measured window: the relay's and the generator's cost per stream.
pub fn window_lines(out: &mut String, name: &str, w: &WindowFigures) {
    for (who, c) in [("relay", &w.relay), ("generator", &w.generator)] {
        let _ = writeln!(
            out,
            "  {name} {:.1} s, {} streams: {who} pid {} cpu {:.1} ms/s ({:.1} ms/s per 1,000 streams), rss {} → {} KiB (peak {} KiB)",
            w.window_s,
            w.streams,
            c.pid,
            c.cpu_ms_per_s,
            c.cpu_ms_per_s_per_1000_streams,
            c.rss_start_kb,
            c.rss_end_kb,
            c.rss_peak_kb
        );
    }
    if let Some(others) = w.others_cpu_ms_per_s {
        let _ = writeln!(
            out,
            "  {name}: other processes on the machine used {others:.1} ms/s of CPU meanwhile"
        );
    }
}

/// The human-readable summary.
pub fn render_text(s: &Summary) -> String {
    let mut o = String::new();
    let c = &s.calls;
    let _ = writeln!(
        o,
        "switchboard-load summary ({:.1} s, {} agents, {} ready)",
        s.duration_s, s.agents, s.agents_ready
    );
    let _ = writeln!(
        o,
        "  calls: planned {} started {} ivr-answered {} bridged {} completed {} failed {} (refused {})",
        c.planned, c.started, c.answered_by_ivr, c.bridged, c.completed, c.failed, c.refused
    );
    let _ = writeln!(
        o,
        "  offers {} ring-outs {} missed-events {}",
        c.offers, c.ring_outs, c.missed_events
    );
    for (reason, n) in &c.failure_reasons {
        let _ = writeln!(o, "    failure: {reason}: {n}");
    }
    dist(&mut o, "setup (INVITE→200)", &s.setup);
    dist(&mut o, "queue→agent INVITE", &s.queue_to_agent);
    dist(&mut o, "digit→screen-pop", &s.pop_latency);
    dist(&mut o, "pop lead over INVITE", &s.pop_lead);
    let _ = writeln!(
        o,
        "  INVITEs before their screen-pop: {} (pops read with their INVITE, lead 0: {})",
        s.invites_before_pop, s.pops_with_invite
    );
    for (name, d) in [
        ("patient→agent", &s.patient_to_agent),
        ("agent→patient", &s.agent_to_patient),
    ] {
        rtp_line(&mut o, name, d);
        dist(&mut o, &format!("delay {name}"), &d.delay);
    }
    let _ = writeln!(o, "  prompt/hold packets at patients: {}", s.prompt_packets);
    dist(&mut o, "sender tick lag", &s.sender_lag);
    if s.rtp_send_errors > 0 || s.sip_errors > 0 {
        let _ = writeln!(
            o,
            "  send errors: rtp {} sip {}",
            s.rtp_send_errors, s.sip_errors
        );
    }
    for (what, n) in &s.anomalies {
        let _ = writeln!(o, "  anomaly: {what}: {n}");
    }
    if let Some(p) = &s.server {
        proc_line(&mut o, "server", p);
    }
    proc_line(&mut o, "generator", &s.generator);
    if let Some(w) = &s.steady {
        window_lines(&mut o, "all bridged", w);
    }
    if let Some(note) = &s.steady_note {
        let _ = writeln!(o, "  steady window: {note}");
    }
    if let Some(r) = &s.recordings {
        let _ = writeln!(
            o,
            "  recordings: sampled {} missing {} unreadable {}; caller frames checked {} silent {} ({:.2}%)",
            r.sampled, r.missing, r.unreadable, r.frames_checked, r.silent_frames, r.silent_pct
        );
    }
    threshold_lines(&mut o, &s.violations);
    o
}

/// "thresholds: all met", or one "THRESHOLD MISSED" line per violation (shared with `rtpengine`).
pub fn threshold_lines(o: &mut String, violations: &[String]) {
    if violations.is_empty() {
        let _ = writeln!(o, "  thresholds: all met");
    } else {
        for v in violations {
            let _ = writeln!(o, "  THRESHOLD MISSED: {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Summary {
        let mut s = Summary::default();
        s.calls.completed = 50;
        s.patient_to_agent.loss_pct = 0.5;
        s.agent_to_patient.delay.p99_ms = 3.0;
        s.setup = Distribution {
            count: 50,
            p99_ms: 40.0,
            ..Default::default()
        };
        s.pop_lead = Distribution {
            count: 50,
            min_ms: 0.2,
            ..Default::default()
        };
        s.recordings = Some(RecordingFigures {
            sampled: 5,
            frames_checked: 700,
            silent_frames: 1,
            silent_pct: 0.14,
            ..Default::default()
        });
        s
    }

    fn limits() -> Thresholds {
        Thresholds {
            max_failed: Some(0),
            max_refused: None,
            max_loss_pct: Some(1.0),
            max_setup_p99_ms: Some(2000.0),
            max_delay_p99_ms: Some(100.0),
            max_jitter_ms: None,
            min_pop_lead_ms: Some(0.0),
            max_recording_gap_pct: Some(1.0),
            min_completed: Some(50),
            max_anomalies: Some(0),
        }
    }

    #[test]
    fn a_good_run_meets_every_threshold() {
        assert_eq!(check(&good(), &limits()), Vec::<String>::new());
        assert!(check(&good(), &Thresholds::default()).is_empty());
    }

    #[test]
    fn each_miss_is_reported() {
        let t = limits();
        let mut s = good();
        s.calls.failed = 1;
        assert_eq!(check(&s, &t).len(), 1);
        let mut s = good();
        s.agent_to_patient.loss_pct = 1.5;
        assert!(check(&s, &t)[0].contains("agent→patient loss"));
        let mut s = good();
        s.pop_lead.min_ms = -3.0;
        assert!(check(&s, &t)[0].contains("screen-pop lead"));
        let mut s = good();
        s.invites_before_pop = 2;
        assert_eq!(check(&s, &t).len(), 1);
        let mut s = good();
        s.setup.p99_ms = 2500.0;
        assert!(check(&s, &t)[0].contains("setup p99"));
        let mut s = good();
        s.calls.completed = 49;
        assert!(check(&s, &t)[0].contains("completed"));
        let mut s = good();
        s.anomalies.insert("agent's 200 never ACKed".into(), 2);
        assert!(check(&s, &t)[0].contains("anomalies 2 > 0"));
        let mut s = good();
        s.recordings = None;
        assert!(check(&s, &t)[0].contains("not checked"));
        let mut s = good();
        if let Some(r) = s.recordings.as_mut() {
            r.missing = 1;
        }
        assert_eq!(check(&s, &t).len(), 1);
        let mut s = good();
        if let Some(r) = s.recordings.as_mut() {
            r.silent_pct = 2.0;
        }
        assert!(check(&s, &t)[0].contains("silent"));
    }

    #[test]
    fn text_names_violations() {
        let mut s = good();
        s.violations = vec!["failed calls 3 > 0".into()];
        let text = render_text(&s);
        assert!(text.contains("THRESHOLD MISSED: failed calls 3 > 0"));
        assert!(render_text(&good()).contains("all met"));
    }
}
