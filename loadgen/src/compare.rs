//! `switchboard-load compare-relay`: one side-by-side summary of a Switchboard run
//! (`run --steady-s --json`) and an rtpengine run (`rtpengine --json`) of the same load,
//! ending in the ratio issue 5's target is about: "RTP relay CPU per 1,000 streams: below
//! rtpengine userspace, same run".
//!
//! Each input is the generator's output; the summary is its last line that starts `{`.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::relay_cpu::WindowFigures;
use crate::summary::Direction;

/// One relay's figures, whichever relay it was.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub window: WindowFigures,
    /// The two directions in the order caller→callee (patient→agent), then back.
    pub directions: [Direction; 2],
}

/// Both sides and their ratio.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub switchboard: Side,
    pub rtpengine: Side,
    /// Switchboard's CPU per 1,000 streams over rtpengine's; the target is below 1.
    pub cpu_ratio: Option<f64>,
    pub notes: Vec<String>,
}

/// The last line of `text` that holds a JSON object.
fn last_json(text: &str, what: &str) -> Result<serde_json::Value> {
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("{what}: no JSON summary line (was it run with --json?)"))?;
    serde_json::from_str(line).with_context(|| format!("{what}: the JSON summary is not JSON"))
}

fn field<T: DeserializeOwned>(v: &serde_json::Value, key: &str, what: &str) -> Result<T> {
    let x = v
        .get(key)
        .filter(|x| !x.is_null())
        .with_context(|| format!("{what}: the summary has no {key:?}"))?;
    serde_json::from_value(x.clone()).with_context(|| format!("{what}: {key:?} is unreadable"))
}

/// Reads Switchboard's side from `run --steady-s S --json` output.
pub fn switchboard_side(text: &str) -> Result<Side> {
    let what = "switchboard summary";
    let v = last_json(text, what)?;
    let window: WindowFigures = match field(&v, "steady", what) {
        Ok(w) => w,
        Err(e) => {
            let note = v.get("steady_note").and_then(|n| n.as_str()).unwrap_or("");
            bail!("{e:#} {note}");
        }
    };
    Ok(Side {
        window,
        directions: [
            field(&v, "patient_to_agent", what)?,
            field(&v, "agent_to_patient", what)?,
        ],
    })
}

/// Reads rtpengine's side from `rtpengine --json` output.
pub fn rtpengine_side(text: &str) -> Result<Side> {
    let what = "rtpengine summary";
    let v = last_json(text, what)?;
    Ok(Side {
        window: field(&v, "window", what)?,
        directions: [
            field(&v, "caller_to_callee", what)?,
            field(&v, "callee_to_caller", what)?,
        ],
    })
}

/// Puts the two sides together.
pub fn compare(switchboard: Side, rtpengine: Side, notes: Vec<String>) -> Comparison {
    let a = switchboard.window.relay.cpu_ms_per_s_per_1000_streams;
    let b = rtpengine.window.relay.cpu_ms_per_s_per_1000_streams;
    Comparison {
        cpu_ratio: (b > 0.0).then(|| a / b),
        switchboard,
        rtpengine,
        notes,
    }
}

/// Other processes' CPU above this during a window makes its figures suspect, ms per s.
const QUIET_MS_PER_S: f64 = 50.0;

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// The side-by-side table.
pub fn render_text(c: &Comparison) -> String {
    let (s, r) = (&c.switchboard, &c.rtpengine);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "relay comparison, one invocation: Switchboard, then rtpengine (userspace), same load"
    );
    let _ = writeln!(o, "  {:<40} {:>16} {:>16}", "", "switchboard", "rtpengine");
    let mut row = |name: &str, a: String, b: String| {
        let _ = writeln!(o, "  {name:<40} {a:>16} {b:>16}");
    };
    row(
        "measured window, s",
        format!("{:.1}", s.window.window_s),
        format!("{:.1}", r.window.window_s),
    );
    row(
        "streams (one direction of one call)",
        s.window.streams.to_string(),
        r.window.streams.to_string(),
    );
    row(
        "relay CPU, ms per s",
        format!("{:.1}", s.window.relay.cpu_ms_per_s),
        format!("{:.1}", r.window.relay.cpu_ms_per_s),
    );
    row(
        "relay CPU per 1,000 streams, ms per s",
        format!("{:.1}", s.window.relay.cpu_ms_per_s_per_1000_streams),
        format!("{:.1}", r.window.relay.cpu_ms_per_s_per_1000_streams),
    );
    row(
        "relay RSS start / end / peak, MiB",
        format!(
            "{:.1}/{:.1}/{:.1}",
            mib(s.window.relay.rss_start_kb),
            mib(s.window.relay.rss_end_kb),
            mib(s.window.relay.rss_peak_kb)
        ),
        format!(
            "{:.1}/{:.1}/{:.1}",
            mib(r.window.relay.rss_start_kb),
            mib(r.window.relay.rss_end_kb),
            mib(r.window.relay.rss_peak_kb)
        ),
    );
    let loss = |x: &Side| {
        format!(
            "{:.3}/{:.3}",
            x.directions[0].loss_pct, x.directions[1].loss_pct
        )
    };
    row("loss →/←, %", loss(s), loss(r));
    let lost = |x: &Side| {
        format!(
            "{}/{}",
            x.directions[0].lost + x.directions[1].lost,
            x.directions[0].sent + x.directions[1].sent
        )
    };
    row("packets lost / sent", lost(s), lost(r));
    let delay = |x: &Side| {
        format!(
            "{:.1}/{:.1}",
            x.directions[0].delay.p99_ms, x.directions[1].delay.p99_ms
        )
    };
    row("delay p99 →/←, ms", delay(s), delay(r));
    row(
        "generator CPU per 1,000 streams, ms per s",
        format!("{:.1}", s.window.generator.cpu_ms_per_s_per_1000_streams),
        format!("{:.1}", r.window.generator.cpu_ms_per_s_per_1000_streams),
    );
    let others = |x: &Side| {
        x.window
            .others_cpu_ms_per_s
            .map_or("?".to_owned(), |v| format!("{v:.1}"))
    };
    row("other processes' CPU, ms per s", others(s), others(r));
    match c.cpu_ratio {
        Some(x) => {
            let _ = writeln!(
                o,
                "  ratio switchboard/rtpengine, CPU per 1,000 streams: {x:.3} (target below 1: {})",
                if x < 1.0 { "met" } else { "not met" }
            );
        }
        None => {
            let _ = writeln!(
                o,
                "  ratio switchboard/rtpengine: undefined (rtpengine used no measurable CPU)"
            );
        }
    }
    // /proc counts CPU in 10 ms ticks: the smaller window's figures are this coarse.
    let window = s.window.window_s.min(r.window.window_s);
    if window > 0.0 {
        let _ = writeln!(
            o,
            "  CPU figures are ±{:.2} ms per s (10 ms /proc ticks over {window:.1} s)",
            10.0 / window
        );
    }
    let _ = writeln!(
        o,
        "  switchboard's loss and delay cover each call's whole bridged time, rtpengine's the window"
    );
    let busiest = [s, r]
        .iter()
        .filter_map(|x| x.window.others_cpu_ms_per_s)
        .fold(0.0, f64::max);
    if busiest > QUIET_MS_PER_S {
        let _ = writeln!(
            o,
            "  WARNING: other processes used up to {busiest:.0} ms/s of CPU during a window: the machine was not quiet, re-run for clean figures"
        );
    }
    for n in &c.notes {
        let _ = writeln!(o, "  note: {n}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay_cpu::ProcCost;

    fn window(per_1000: f64, streams: u64) -> WindowFigures {
        WindowFigures {
            window_s: 20.0,
            streams,
            relay: ProcCost {
                cpu_ms_per_s_per_1000_streams: per_1000,
                cpu_ms_per_s: per_1000 * streams as f64 / 1000.0,
                ..Default::default()
            },
            generator: ProcCost::default(),
            others_cpu_ms_per_s: Some(3.0),
        }
    }

    #[test]
    fn reads_both_summaries_and_states_the_ratio() {
        let mut sb = crate::summary::Summary {
            steady: Some(window(300.0, 200)),
            ..Default::default()
        };
        sb.patient_to_agent.loss_pct = 0.25;
        let sb_text = format!(
            "switchboard-load summary ...\n  thresholds: all met\n{}\n",
            serde_json::to_string(&sb).expect("serialises")
        );
        let re = crate::rtpengine::RelaySummary {
            window: Some(window(100.0, 200)),
            ..Default::default()
        };
        let re_text = serde_json::to_string(&re).expect("serialises");
        let c = compare(
            switchboard_side(&sb_text).expect("switchboard side"),
            rtpengine_side(&re_text).expect("rtpengine side"),
            vec!["recording on".into()],
        );
        assert_eq!(c.cpu_ratio, Some(3.0));
        let text = render_text(&c);
        assert!(text.contains("3.000 (target below 1: not met)"), "{text}");
        assert!(text.contains("±0.50 ms per s"), "{text}");
        assert!(text.contains("0.250/0.000"), "{text}");
        assert!(text.contains("note: recording on"));
        assert!(!text.contains("WARNING"), "{text}");
        let mut busy = c.clone();
        busy.rtpengine.window.others_cpu_ms_per_s = Some(400.0);
        assert!(render_text(&busy).contains("WARNING: other processes used up to 400 ms/s"));
    }

    #[test]
    fn a_summary_without_its_window_is_an_error_that_says_why() {
        let sb = crate::summary::Summary {
            steady_note: Some("the planned calls were never all bridged at once".into()),
            ..Default::default()
        };
        let e = switchboard_side(&serde_json::to_string(&sb).expect("json"))
            .expect_err("no steady window");
        assert!(format!("{e:#}").contains("never all bridged"), "{e:#}");
        assert!(rtpengine_side("no json here").is_err());
        assert!(rtpengine_side("{not json").is_err());
    }

    #[test]
    fn zero_rtpengine_cpu_gives_no_ratio() {
        let side = |w| Side {
            window: w,
            directions: [Direction::default(), Direction::default()],
        };
        let c = compare(side(window(5.0, 2)), side(window(0.0, 2)), Vec::new());
        assert_eq!(c.cpu_ratio, None);
        assert!(render_text(&c).contains("undefined"));
    }
}
