//! The clinic's numbers, computed from the event log ([`crate::journal`]) alone.
//!
//! Every figure counts the entries stamped inside the window `[from, to)`: a call that
//! waited across the window's start counts where its answer or abandon falls. Agent state
//! times are the parts of each state inside the window (the state an agent was in at `from`
//! comes from the last `agent_state` entry before it). The formulas, as the API states them:
//!
//! - `answer_rate` = answered ÷ (answered + abandoned), short abandons (caller gone within
//!   [`SHORT_ABANDON_MS`]) counted apart and left out of both.
//! - `asa_ms` (average speed of answer) = mean wait of answered calls.
//! - `mean_wait_ms` = mean wait of every call that stopped waiting (answered, abandoned,
//!   short abandons and overflowed included).
//! - `service_level` = answered within the threshold ÷ (answered + abandoned), short
//!   abandons left out.
//! - `answered_within_rings` = answers whose phone rang no longer than the queue's rings ×
//!   ring cycle ÷ answers; `answered_on_first_ring` = calls answered by the first agent
//!   offered ÷ answers.
//! - `aht_ms` (average handle time) = (talk + wrap-up) ÷ completed calls.
//! - per agent: `occupancy` = (ringing + talking + on hold + wrap-up) ÷ (that + ready).
//! - a transferred caller is one patient's call: `offered`, `answered`, the abandons, the
//!   overflows, the waits and the service level count its first wait only. The waits that
//!   transfers began are `transferred_in` (and how they ended is not counted again); the
//!   transfers agents made are `transferred`; per agent, `answered` counts every answer.
//! - callbacks are counted apart: a caller who left the line to be called back
//!   (`callbacks_requested`) stopped waiting then (its wait is in `mean_wait_ms`), is
//!   neither answered nor abandoned; `callbacks_completed` reached the patient,
//!   `callbacks_failed` were given up after every retry. Per agent, `answered` counts the
//!   agent's answer of a callback.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::agent::AgentState;
use crate::journal::Logged;

/// Callers who hang up within this wait are short abandons (dialled by mistake, or the
/// greeting answered what they wanted); counted, but not against the answer rate.
pub const SHORT_ABANDON_MS: u64 = 5_000;

/// The service level threshold unless asked otherwise: 20 s (the 80/20 convention).
pub const DEFAULT_SERVICE_LEVEL_MS: u64 = 20_000;

/// What to compute: the window (milliseconds since the Unix epoch) and the filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub from_ms: i64,
    /// End of the window (exclusive); states still open are counted up to `min(to, now)`.
    pub to_ms: i64,
    pub now_ms: i64,
    /// Only calls of this queue (agent state times are not per queue).
    pub queue: Option<String>,
    /// Only this agent in the per-agent rows.
    pub agent: Option<String>,
    pub service_level_ms: u64,
}

/// The figures for a window. Ratios are fractions (0.0–1.0), `None` when nothing was measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Kpis {
    /// Calls that started waiting in a queue.
    pub offered: u64,
    pub answered: u64,
    /// Callers who hung up while waiting, short abandons excluded.
    pub abandoned: u64,
    /// Callers who hung up within [`SHORT_ABANDON_MS`].
    pub short_abandoned: u64,
    /// Callers a rule sent out (max wait, full queue, nobody to answer), to an overflow
    /// queue or to the end of the call; not in the answer rate of this queue.
    pub overflowed: u64,
    /// Calls agents handed on (to a queue or another agent).
    pub transferred: u64,
    /// Waits that began with a transfer (not in `offered`: the patient was answered before).
    pub transferred_in: u64,
    /// Callers who left the line to be called back, keeping their place.
    pub callbacks_requested: u64,
    /// Callbacks whose patient answered.
    pub callbacks_completed: u64,
    /// Callbacks given up (every dial failed).
    pub callbacks_failed: u64,
    /// Callbacks closed unmade: the patient got through on a call of their own.
    pub callbacks_closed: u64,
    /// Messages left (overflow `voicemail`); each is also a callback asked for.
    pub voicemails: u64,
    pub answer_rate: Option<f64>,
    pub asa_ms: Option<u64>,
    pub mean_wait_ms: Option<u64>,
    pub longest_wait_ms: Option<u64>,
    pub service_level_threshold_ms: u64,
    pub service_level: Option<f64>,
    pub answered_within_rings: Option<f64>,
    pub answered_on_first_ring: Option<f64>,
    /// Rings that ended unanswered (rang out, declined, logged out).
    pub missed_rings: u64,
    pub completed: u64,
    pub talk_ms: u64,
    pub wrap_up_ms: u64,
    pub aht_ms: Option<u64>,
    pub agents: Vec<AgentKpis>,
}

/// One agent's figures for the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AgentKpis {
    pub agent: String,
    pub answered: u64,
    pub missed_rings: u64,
    /// Talk time of the calls this agent completed in the window (holds included).
    pub talk_ms: u64,
    /// Time inside the window on a call (talking or on hold), from the state changes.
    pub in_call_ms: u64,
    pub hold_ms: u64,
    pub wrap_up_ms: u64,
    pub ready_ms: u64,
    pub ringing_ms: u64,
    pub not_ready_ms: u64,
    /// Not-ready time by reason (`missed`, `meal`, …; `""` when none was given).
    pub not_ready_by_reason: BTreeMap<String, u64>,
    pub occupancy: Option<f64>,
    /// Satisfaction "likes" from the after-call survey (none is run yet: always `None`).
    pub likes: Option<u64>,
}

/// The formulas above, as the API states them next to the figures.
pub const FORMULAS: &[(&str, &str)] = &[
    (
        "answer_rate",
        "answered / (answered + abandoned); short abandons (waited < 5 s) are left out of both",
    ),
    ("asa_ms", "mean wait of answered calls"),
    (
        "mean_wait_ms",
        "mean wait of every call that stopped waiting (answered, abandoned or overflowed, short abandons included)",
    ),
    (
        "service_level",
        "answered within service_level_threshold_ms / (answered + abandoned), short abandons left out",
    ),
    (
        "answered_within_rings",
        "answers whose phone rang no longer than the queue's rings x ring cycle / answers",
    ),
    (
        "answered_on_first_ring",
        "calls answered by the first agent offered / answers",
    ),
    ("aht_ms", "(talk + wrap-up) / completed calls"),
    (
        "transferred_in",
        "waits that began with a transfer; a transferred caller counts once in offered, answered, abandoned, waits and service level (its first wait); per agent, answered counts every answer",
    ),
    (
        "callbacks_requested",
        "callers who left the line to be called back: not in answered or abandoned (their wait until the request is in mean_wait_ms); callbacks_completed reached the patient, callbacks_failed were given up, callbacks_closed were closed unmade because the patient got through on a call of their own",
    ),
    (
        "voicemails",
        "messages left (overflow voicemail): each is also an overflowed call (its wait counted there) and a callback asked for",
    ),
    (
        "occupancy",
        "(ringing + talking + on hold + wrap-up) / (ringing + talking + on hold + wrap-up + ready)",
    ),
];

/// An entry of the log with its time (ms since the epoch) and its call, as stored.
#[derive(Debug, Clone, Copy)]
pub struct Stamped<'a> {
    pub at_ms: i64,
    pub call: Option<&'a str>,
    pub event: &'a Logged,
}

/// Computes the figures. `before`: the last `agent_state` entry of each agent before the
/// window; `entries`: every entry inside it, in the order logged.
pub fn compute(before: &[Stamped<'_>], entries: &[Stamped<'_>], w: &Window) -> Kpis {
    let mut k = Kpis {
        service_level_threshold_ms: w.service_level_ms,
        ..Kpis::default()
    };
    let in_queue = |q: Option<&str>| w.queue.as_deref().is_none_or(|want| q == Some(want));
    let mut agents: BTreeMap<String, AgentKpis> = BTreeMap::new();
    let mut waits_answered: Vec<u64> = Vec::new();
    let mut waits_all: Vec<u64> = Vec::new();
    let mut within_sl = 0u64;
    let mut within_rings = 0u64;
    let mut first_ring = 0u64;
    let mut missed_calls: HashSet<&str> = HashSet::new();
    let mut wrap_of_call: HashSet<&str> = HashSet::new();
    // Calls whose current wait began with a transfer: how it ends is not counted again.
    let mut after_transfer: HashSet<&str> = HashSet::new();

    for e in entries {
        if !in_queue(e.event.queue()) && !matches!(e.event, Logged::AgentState { .. }) {
            continue;
        }
        let transfer_wait = e.call.is_some_and(|c| after_transfer.contains(c));
        match e.event {
            Logged::CallbackRequested {
                waited_ms,
                voicemail,
                message,
                ..
            } => {
                k.callbacks_requested += 1;
                k.voicemails += u64::from(*message);
                // A voicemail's wait was counted at its exit.
                if !*voicemail && e.call.is_none_or(|call| !after_transfer.remove(call)) {
                    waits_all.push(*waited_ms);
                }
            }
            // A callback's agent answered: the patient's wait ended at the request.
            Logged::Connected {
                agent,
                callback: true,
                ..
            } => agent_row(&mut agents, agent).answered += 1,
            Logged::CallbackDialled { result, .. } => {
                if *result == crate::journal::CallbackResult::Answered {
                    k.callbacks_completed += 1;
                }
            }
            Logged::CallbackFailed { .. } => k.callbacks_failed += 1,
            Logged::CallbackClosed { .. } => k.callbacks_closed += 1,
            // A try that did not reach the patient is no handled call (AHT leaves it out).
            Logged::Completed {
                by: crate::journal::EndedBy::Unreached,
                ..
            } => {}
            Logged::Enqueued {
                transferred: true, ..
            } => {
                k.transferred_in += 1;
                if let Some(call) = e.call {
                    after_transfer.insert(call);
                }
            }
            Logged::Enqueued { .. } => k.offered += 1,
            Logged::Connected { agent, .. } if transfer_wait => {
                agent_row(&mut agents, agent).answered += 1;
                if let Some(call) = e.call {
                    after_transfer.remove(call);
                }
            }
            Logged::Abandoned { .. } | Logged::Exited { .. } if transfer_wait => {
                if let Some(call) = e.call {
                    after_transfer.remove(call);
                }
            }
            Logged::OfferEnded { agent, why, .. } => {
                if why.is_miss() {
                    k.missed_rings += 1;
                    agent_row(&mut agents, agent).missed_rings += 1;
                }
                if let Some(call) = e.call {
                    missed_calls.insert(call);
                }
            }
            Logged::Connected {
                agent,
                waited_ms,
                rang_ms,
                ring_timeout_ms,
                ..
            } => {
                k.answered += 1;
                agent_row(&mut agents, agent).answered += 1;
                waits_answered.push(*waited_ms);
                waits_all.push(*waited_ms);
                if *waited_ms <= w.service_level_ms {
                    within_sl += 1;
                }
                if rang_ms <= ring_timeout_ms {
                    within_rings += 1;
                }
                if e.call.is_none_or(|c| !missed_calls.contains(c)) {
                    first_ring += 1;
                }
            }
            Logged::Abandoned { waited_ms, .. } => {
                waits_all.push(*waited_ms);
                if *waited_ms < SHORT_ABANDON_MS {
                    k.short_abandoned += 1;
                } else {
                    k.abandoned += 1;
                }
            }
            Logged::Exited { waited_ms, .. } => {
                k.overflowed += 1;
                waits_all.push(*waited_ms);
            }
            Logged::Completed {
                agent,
                talked_ms,
                by,
                ..
            } => {
                k.completed += 1;
                if *by == crate::journal::EndedBy::Transferred {
                    k.transferred += 1;
                }
                k.talk_ms += talked_ms;
                agent_row(&mut agents, agent).talk_ms += talked_ms;
                if let Some(call) = e.call {
                    wrap_of_call.insert(call);
                }
            }
            Logged::Offered { .. } | Logged::AgentState { .. } => {}
        }
    }

    // Agent state times, clipped to the window.
    let end = w.to_ms.min(w.now_ms).max(w.from_ms);
    let mut open: BTreeMap<&str, OpenState<'_>> = BTreeMap::new();
    for e in before {
        if let Logged::AgentState {
            agent,
            state,
            reason,
        } = e.event
        {
            open.insert(agent, (*state, reason.as_deref(), w.from_ms, e.call));
        }
    }
    let close = |agents: &mut BTreeMap<String, AgentKpis>,
                 k: &mut Kpis,
                 agent: &str,
                 (state, reason, since, call): OpenState<'_>,
                 until: i64| {
        let ms = u64::try_from(until.min(end) - since.max(w.from_ms)).unwrap_or(0);
        let row = agent_row(agents, agent);
        match state {
            AgentState::Ready => row.ready_ms += ms,
            AgentState::Ringing => row.ringing_ms += ms,
            AgentState::Talking => row.in_call_ms += ms,
            AgentState::OnHold => {
                row.in_call_ms += ms;
                row.hold_ms += ms;
            }
            AgentState::WrapUp => {
                // Wrap-up counts towards the queue of the call it follows.
                if w.queue.is_none() || call.is_some_and(|c| wrap_of_call.contains(c)) {
                    row.wrap_up_ms += ms;
                    k.wrap_up_ms += ms;
                }
            }
            AgentState::NotReady => {
                row.not_ready_ms += ms;
                *row.not_ready_by_reason
                    .entry(reason.unwrap_or("").to_owned())
                    .or_default() += ms;
            }
            AgentState::LoggedOut => {}
        }
    };
    for e in entries {
        if let Logged::AgentState {
            agent,
            state,
            reason,
        } = e.event
        {
            if let Some(prev) = open.remove(agent.as_str()) {
                close(&mut agents, &mut k, agent, prev, e.at_ms);
            }
            open.insert(agent, (*state, reason.as_deref(), e.at_ms, e.call));
        }
    }
    for (agent, prev) in std::mem::take(&mut open) {
        close(&mut agents, &mut k, agent, prev, end);
    }

    k.answer_rate = ratio(k.answered, k.answered + k.abandoned);
    k.service_level = ratio(within_sl, k.answered + k.abandoned);
    k.answered_within_rings = ratio(within_rings, k.answered);
    k.answered_on_first_ring = ratio(first_ring, k.answered);
    k.asa_ms = mean(&waits_answered);
    k.mean_wait_ms = mean(&waits_all);
    k.longest_wait_ms = waits_all.iter().copied().max();
    k.aht_ms = (k.completed > 0).then(|| (k.talk_ms + k.wrap_up_ms) / k.completed);
    k.agents = agents
        .into_values()
        .filter(|a| w.agent.as_deref().is_none_or(|want| a.agent == want))
        .map(|mut a| {
            let busy = a.ringing_ms + a.in_call_ms + a.wrap_up_ms;
            a.occupancy = ratio(busy, busy + a.ready_ms);
            a
        })
        .collect();
    k
}

/// An agent's state since when: (state, reason, since ms, the call it is about).
type OpenState<'a> = (AgentState, Option<&'a str>, i64, Option<&'a str>);

fn agent_row<'a>(agents: &'a mut BTreeMap<String, AgentKpis>, id: &str) -> &'a mut AgentKpis {
    agents.entry(id.to_owned()).or_insert_with(|| AgentKpis {
        agent: id.to_owned(),
        ..AgentKpis::default()
    })
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

fn mean(values: &[u64]) -> Option<u64> {
    let n = u64::try_from(values.len()).ok().filter(|n| *n > 0)?;
    Some(values.iter().sum::<u64>() / n)
}
