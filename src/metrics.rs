//! Counters and gauges for `/metrics`, rendered in the Prometheus text format.
//!
//! Call control calls the small methods below as things happen; everything is
//! an atomic (or a tiny map for per-queue gauges), so they are cheap and never block long.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the screen-pop latency histogram buckets (20 ms is the
/// target a p99 is judged against, so the buckets bracket it closely).
const POP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5,
];

/// Call control's live counts, published after every turn of its loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Calls in progress (every phase, until their media task finished).
    pub calls_active: u64,
    /// Live SIP transactions.
    pub transactions: u64,
    /// Entries in the transaction timer heap.
    pub transaction_timers: u64,
    /// RTP ports bound.
    pub rtp_ports_in_use: u64,
    /// Entries of call control's maps (SIP Call-IDs, client transactions, stale
    /// INVITEs, pending bridges): they return to 0 when no call is up.
    pub control_entries: u64,
    /// How far behind call control was at its last message (µs from arrival to handling).
    pub control_lag_micros: u64,
    /// Messages waiting for call control.
    pub inbound_queue: u64,
    /// 1 while new calls are being refused for load.
    pub shedding: u64,
}

impl Gauges {
    /// (name, help, value) of each gauge, in the units Prometheus expects.
    fn rows(&self) -> [(&'static str, &'static str, f64); 8] {
        [
            (
                "switchboard_calls_active",
                "Calls in progress.",
                self.calls_active as f64,
            ),
            (
                "switchboard_sip_transactions",
                "Live SIP transactions.",
                self.transactions as f64,
            ),
            (
                "switchboard_sip_transaction_timers",
                "Entries in the SIP transaction timer heap.",
                self.transaction_timers as f64,
            ),
            (
                "switchboard_rtp_ports_in_use",
                "RTP ports bound.",
                self.rtp_ports_in_use as f64,
            ),
            (
                "switchboard_control_entries",
                "Entries in call control's per-call maps.",
                self.control_entries as f64,
            ),
            (
                "switchboard_control_lag_seconds",
                "Arrival-to-handling delay of the last SIP message.",
                self.control_lag_micros as f64 / 1e6,
            ),
            (
                "switchboard_inbound_queue",
                "SIP messages waiting for call control.",
                self.inbound_queue as f64,
            ),
            (
                "switchboard_shedding",
                "1 while new calls are refused for load.",
                self.shedding as f64,
            ),
        ]
    }
}

pub use callcore::Refusal;

#[derive(Default)]
struct Inner {
    calls_total: AtomicU64,
    calls_answered_total: AtomicU64,
    calls_abandoned_total: AtomicU64,
    agent_missed_rings_total: AtomicU64,
    media_timeouts_total: AtomicU64,
    callbacks_failed_total: AtomicU64,
    crm_failures_total: AtomicU64,
    refused_capacity_total: AtomicU64,
    refused_lag_total: AtomicU64,
    gauges: Mutex<Gauges>,
    queue_waiting: Mutex<BTreeMap<String, u64>>,
    pop_buckets: [AtomicU64; POP_BUCKETS.len()],
    pop_count: AtomicU64,
    pop_sum_micros: AtomicU64,
}

/// The process's metrics; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field(
                "calls_total",
                &self.inner.calls_total.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// An empty set of metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// A call arrived (an INVITE was accepted).
    pub fn call_started(&self) {
        self.inner.calls_total.fetch_add(1, Ordering::Relaxed);
    }

    /// An agent answered a queued call.
    pub fn call_answered(&self) {
        self.inner
            .calls_answered_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A caller hung up while waiting or ringing.
    pub fn call_abandoned(&self) {
        self.inner
            .calls_abandoned_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// An agent's phone rang out (or rejected) without an answer.
    pub fn agent_missed_ring(&self) {
        self.inner
            .agent_missed_rings_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A call was hung up because a phone stopped sending RTP.
    pub fn media_timeout(&self) {
        self.inner
            .media_timeouts_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A callback was given up without reaching the patient.
    pub fn callback_failed(&self) {
        self.inner
            .callbacks_failed_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A CRM lookup timed out or failed (the pop kept the stored record).
    pub fn crm_failed(&self) {
        self.inner
            .crm_failures_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A new call was refused with 503.
    pub fn call_refused(&self, why: Refusal) {
        let counter = match why {
            Refusal::Capacity => &self.inner.refused_capacity_total,
            Refusal::Lag => &self.inner.refused_lag_total,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Publishes call control's live counts.
    pub fn set_gauges(&self, g: Gauges) {
        *self.inner.gauges.lock().unwrap_or_else(|p| p.into_inner()) = g;
    }

    /// How many callers are waiting in `queue` right now.
    pub fn set_queue_waiting(&self, queue: &str, waiting: usize) {
        let mut map = self
            .inner
            .queue_waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.insert(queue.to_owned(), u64::try_from(waiting).unwrap_or(u64::MAX));
    }

    /// Time from the queue picking an agent to the desk confirming the screen-pop.
    pub fn observe_screen_pop(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        for (bound, count) in POP_BUCKETS.iter().zip(&self.inner.pop_buckets) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.inner.pop_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.inner
            .pop_sum_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let i = &self.inner;
        let mut out = String::with_capacity(2048);
        let counters = [
            ("switchboard_calls_total", "Calls received.", &i.calls_total),
            (
                "switchboard_calls_answered_total",
                "Queued calls answered by an agent.",
                &i.calls_answered_total,
            ),
            (
                "switchboard_calls_abandoned_total",
                "Calls the caller hung up before an answer.",
                &i.calls_abandoned_total,
            ),
            (
                "switchboard_agent_missed_rings_total",
                "Offers that rang out at an agent.",
                &i.agent_missed_rings_total,
            ),
            (
                "switchboard_media_timeouts_total",
                "Calls hung up because a phone sent no RTP.",
                &i.media_timeouts_total,
            ),
            (
                "switchboard_callbacks_failed_total",
                "Callbacks given up without reaching the patient.",
                &i.callbacks_failed_total,
            ),
            (
                "switchboard_crm_failures_total",
                "CRM lookups that timed out or failed (the pop kept the stored record).",
                &i.crm_failures_total,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let name = "switchboard_calls_refused_total";
        let _ = writeln!(
            out,
            "# HELP {name} New calls refused with 503.\n# TYPE {name} counter"
        );
        for (why, value) in [
            (Refusal::Capacity, &i.refused_capacity_total),
            (Refusal::Lag, &i.refused_lag_total),
        ] {
            let _ = writeln!(
                out,
                "{name}{{reason=\"{}\"}} {}",
                why.as_str(),
                value.load(Ordering::Relaxed)
            );
        }
        let gauges = *i.gauges.lock().unwrap_or_else(|p| p.into_inner());
        for (name, help, value) in gauges.rows() {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_queue_waiting Callers waiting on the line per queue (callbacks not counted).\n# TYPE switchboard_queue_waiting gauge"
        );
        {
            let map = i.queue_waiting.lock().unwrap_or_else(|p| p.into_inner());
            for (queue, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "switchboard_queue_waiting{{queue=\"{}\"}} {n}",
                    escape_label(queue)
                );
            }
        }
        let name = "switchboard_screen_pop_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time until the desk confirmed the screen-pop.\n# TYPE {name} histogram"
        );
        for (bound, count) in POP_BUCKETS.iter().zip(&i.pop_buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let count = i.pop_count.load(Ordering::Relaxed);
        let sum = i.pop_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
        );
        out
    }
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histogram_render() {
        let m = Metrics::new();
        m.call_started();
        m.call_started();
        m.call_answered();
        m.call_abandoned();
        m.agent_missed_ring();
        m.set_queue_waiting("urgent", 3);
        m.set_queue_waiting("urgent", 2);
        m.observe_screen_pop(Duration::from_millis(3));
        m.observe_screen_pop(Duration::from_millis(200));
        m.media_timeout();
        m.callback_failed();
        m.call_refused(Refusal::Capacity);
        m.call_refused(Refusal::Capacity);
        m.call_refused(Refusal::Lag);
        m.set_gauges(Gauges {
            calls_active: 7,
            rtp_ports_in_use: 13,
            control_lag_micros: 1500,
            shedding: 1,
            ..Gauges::default()
        });
        let text = m.render();
        for line in [
            "switchboard_media_timeouts_total 1",
            "switchboard_callbacks_failed_total 1",
            "switchboard_calls_refused_total{reason=\"capacity\"} 2",
            "switchboard_calls_refused_total{reason=\"lag\"} 1",
            "switchboard_calls_active 7",
            "switchboard_rtp_ports_in_use 13",
            "switchboard_sip_transactions 0",
            "switchboard_control_lag_seconds 0.0015",
            "switchboard_shedding 1",
            "switchboard_calls_total 2",
            "switchboard_calls_answered_total 1",
            "switchboard_calls_abandoned_total 1",
            "switchboard_agent_missed_rings_total 1",
            "switchboard_queue_waiting{queue=\"urgent\"} 2",
            "switchboard_screen_pop_latency_seconds_bucket{le=\"0.0025\"} 0",
            "switchboard_screen_pop_latency_seconds_bucket{le=\"0.005\"} 1",
            "switchboard_screen_pop_latency_seconds_bucket{le=\"0.25\"} 2",
            "switchboard_screen_pop_latency_seconds_bucket{le=\"+Inf\"} 2",
            "switchboard_screen_pop_latency_seconds_count 2",
            "switchboard_screen_pop_latency_seconds_sum 0.203",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
