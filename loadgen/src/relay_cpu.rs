//! What relaying costs a process over a measured window, normalised per 1,000 streams, so
//! Switchboard and rtpengine can be compared under the same load (issue 5, item 8).
//!
//! A *stream* is one direction of one call's media: 50 packets a second of 20 ms PCMU,
//! received on one port and sent on from another. A bridged Switchboard call is two
//! streams, and so is an rtpengine session with media both ways.
//!
//! For Switchboard the window is [`SteadyWindow`]: it opens when every planned call is
//! bridged (so setup, the IVR and the ramp are outside it) and closes after its length or
//! as soon as a call leaves the bridge, whichever is first.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::procstat::{self, ProcSample};

/// One process's CPU and memory over a window.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcCost {
    pub pid: String,
    /// utime + stime spent inside the window, ms.
    pub cpu_ms: f64,
    /// `cpu_ms` per second of window (10 ms/s is 1 % of a core).
    pub cpu_ms_per_s: f64,
    /// `cpu_ms_per_s` divided by thousands of streams.
    pub cpu_ms_per_s_per_1000_streams: f64,
    pub rss_start_kb: u64,
    pub rss_end_kb: u64,
    /// VmHWM at the end: the process's peak since it started, window or not.
    pub rss_peak_kb: u64,
}

impl ProcCost {
    /// The cost between two samples of the same process, `streams` relayed throughout.
    pub fn between(pid: &str, first: &ProcSample, last: &ProcSample, streams: u64) -> Self {
        let wall = last.at.saturating_duration_since(first.at).as_secs_f64();
        let cpu_ms = (last.cpu_s - first.cpu_s).max(0.0) * 1000.0;
        let per_s = if wall > 0.0 { cpu_ms / wall } else { 0.0 };
        ProcCost {
            pid: pid.to_owned(),
            cpu_ms,
            cpu_ms_per_s: per_s,
            cpu_ms_per_s_per_1000_streams: if streams > 0 {
                per_s * 1000.0 / streams as f64
            } else {
                0.0
            },
            rss_start_kb: first.rss_kb,
            rss_end_kb: last.rss_kb,
            rss_peak_kb: last.hwm_kb.max(last.rss_kb),
        }
    }
}

/// The relay's and the generator's cost over one measured window.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowFigures {
    /// Wall time of the window, s.
    pub window_s: f64,
    /// Streams relayed throughout the window.
    pub streams: u64,
    /// The process relaying (Switchboard or rtpengine).
    pub relay: ProcCost,
    /// This generator, for scale: it sends and receives every stream's packets itself.
    pub generator: ProcCost,
    /// CPU the rest of the machine used meanwhile, ms per s (all cores, less the relay and
    /// the generator): well above zero means the figures shared the machine with others.
    pub others_cpu_ms_per_s: Option<f64>,
}

/// Samples of the relay (if its pid is known) and of this process, taken together.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub relay: Option<ProcSample>,
    pub generator: Option<ProcSample>,
    /// The machine's busy CPU seconds (all cores).
    pub machine_busy_s: Option<f64>,
}

impl Pair {
    /// Reads both now.
    pub fn sample(relay_pid: Option<u32>) -> Self {
        Pair {
            relay: relay_pid.and_then(|p| procstat::sample(&p.to_string())),
            generator: procstat::sample("self"),
            machine_busy_s: procstat::machine_busy_s(),
        }
    }

    /// The figures from `self` to `last`; `None` if the relay could not be read both times.
    pub fn figures_to(
        &self,
        last: &Pair,
        relay_pid: Option<u32>,
        streams: u64,
    ) -> Option<WindowFigures> {
        let (r0, r1) = (self.relay?, last.relay?);
        let pid = relay_pid.map(|p| p.to_string()).unwrap_or_default();
        let me = std::process::id().to_string();
        let window_s = r1.at.saturating_duration_since(r0.at).as_secs_f64();
        let relay = ProcCost::between(&pid, &r0, &r1, streams);
        let generator = match (self.generator, last.generator) {
            (Some(g0), Some(g1)) => ProcCost::between(&me, &g0, &g1, streams),
            _ => ProcCost::default(),
        };
        let others_cpu_ms_per_s = match (self.machine_busy_s, last.machine_busy_s) {
            (Some(b0), Some(b1)) if window_s > 0.0 => Some(
                ((b1 - b0).max(0.0) * 1000.0 / window_s
                    - relay.cpu_ms_per_s
                    - generator.cpu_ms_per_s)
                    .max(0.0),
            ),
            _ => None,
        };
        Some(WindowFigures {
            window_s,
            streams,
            relay,
            generator,
            others_cpu_ms_per_s,
        })
    }
}

/// The Switchboard run's measured window: all planned calls bridged at once.
#[derive(Debug)]
pub struct SteadyWindow {
    length: Duration,
    server_pid: Option<u32>,
    /// When it opened, how many calls were bridged, and the samples then.
    start: Option<(Instant, usize, Pair)>,
    result: Option<WindowFigures>,
    /// Why there is no figure, or why the window is shorter than asked.
    pub note: Option<String>,
}

impl SteadyWindow {
    /// A window of `length` on the server `server_pid`.
    pub fn new(length: Duration, server_pid: Option<u32>) -> Self {
        SteadyWindow {
            length,
            server_pid,
            start: None,
            result: None,
            note: None,
        }
    }

    /// Called every tick with how many calls are bridged with media flowing.
    pub fn observe(&mut self, now: Instant, bridged: usize, planned: usize) {
        if self.result.is_some() {
            return;
        }
        match self.start {
            None if bridged >= planned && planned > 0 => {
                self.start = Some((now, bridged, Pair::sample(self.server_pid)));
            }
            None => {}
            Some((at, n, _)) => {
                let left = bridged < n;
                if left || now.saturating_duration_since(at) >= self.length {
                    if left {
                        self.note = Some(format!(
                            "a call left the bridge after {:.1} s of the {:.1} s window",
                            now.saturating_duration_since(at).as_secs_f64(),
                            self.length.as_secs_f64()
                        ));
                    }
                    self.close();
                }
            }
        }
    }

    fn close(&mut self) {
        if let Some((_, n, first)) = self.start {
            let last = Pair::sample(self.server_pid);
            self.result = first.figures_to(&last, self.server_pid, 2 * n as u64);
            if self.result.is_none() && self.note.is_none() {
                self.note = Some("the server's /proc could not be read (give --server-pid)".into());
            }
        }
    }

    /// The figures, closing the window now if it is still open; `None` (and a note) if
    /// every planned call was never bridged at once.
    pub fn finish(&mut self) -> Option<WindowFigures> {
        if self.result.is_none() {
            if self.start.is_some() {
                self.close();
            } else if self.note.is_none() {
                self.note = Some("the planned calls were never all bridged at once".into());
            }
        }
        self.result.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64, cpu_s: f64, rss_kb: u64) -> ProcSample {
        ProcSample {
            at: t0 + Duration::from_millis(ms),
            cpu_s,
            rss_kb,
            hwm_kb: rss_kb + 100,
        }
    }

    #[test]
    fn cost_is_normalised_per_second_and_per_thousand_streams() {
        let t0 = Instant::now();
        // 2 s of CPU over 20 s with 500 streams: 100 ms/s, 200 ms/s per 1,000 streams.
        let c = ProcCost::between(
            "7",
            &at(t0, 0, 10.0, 1000),
            &at(t0, 20_000, 12.0, 1500),
            500,
        );
        assert!((c.cpu_ms - 2000.0).abs() < 1e-6);
        assert!((c.cpu_ms_per_s - 100.0).abs() < 1e-6);
        assert!((c.cpu_ms_per_s_per_1000_streams - 200.0).abs() < 1e-6);
        assert_eq!(
            (c.rss_start_kb, c.rss_end_kb, c.rss_peak_kb),
            (1000, 1500, 1600)
        );
        // No streams or no time: zero, not infinity.
        let z = ProcCost::between("7", &at(t0, 0, 1.0, 1), &at(t0, 0, 2.0, 1), 0);
        assert_eq!(
            (z.cpu_ms_per_s, z.cpu_ms_per_s_per_1000_streams),
            (0.0, 0.0)
        );
    }

    #[test]
    fn steady_window_opens_when_all_are_bridged_and_closes_on_time_or_on_a_hangup() {
        let me = Some(std::process::id());
        let t0 = Instant::now();
        let mut w = SteadyWindow::new(Duration::from_secs(5), me);
        w.observe(t0, 9, 10);
        assert!(w.start.is_none(), "not all bridged yet");
        w.observe(t0 + Duration::from_secs(1), 10, 10);
        assert!(w.start.is_some());
        w.observe(t0 + Duration::from_secs(3), 10, 10);
        assert!(w.result.is_none(), "still inside the window");
        w.observe(t0 + Duration::from_secs(6), 10, 10);
        let f = w.finish().expect("own process is readable");
        assert_eq!(f.streams, 20);
        assert!(w.note.is_none());

        let mut early = SteadyWindow::new(Duration::from_secs(5), me);
        early.observe(t0, 4, 4);
        early.observe(t0 + Duration::from_secs(2), 3, 4);
        assert!(early.finish().is_some());
        assert!(
            early
                .note
                .as_deref()
                .is_some_and(|n| n.contains("left the bridge"))
        );

        let mut never = SteadyWindow::new(Duration::from_secs(5), me);
        never.observe(t0, 3, 4);
        assert!(never.finish().is_none());
        assert!(
            never
                .note
                .as_deref()
                .is_some_and(|n| n.contains("never all bridged"))
        );
    }
}
