//! The ACD's event log: what happened to callers and agents, one entry per fact, in order.
//!
//! Like Asterisk's `queue_log`: enter queue, offer, an offer that ended unanswered (and
//! why), connect with wait and ring time, abandon with position and wait, complete with talk
//! time and who hung up, and every agent state change with its reason. Call control writes
//! the entries down append-only; every KPI ([`crate::kpi`]) is computed from them.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::agent::AgentState;
use crate::{AgentId, CallId};

/// One entry: when, which call (if any), what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: Instant,
    pub call: Option<CallId>,
    pub event: Logged,
}

/// Why an offer ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferEnd {
    /// The phone rang for the queue's rings and nobody answered.
    RangOut,
    /// The phone refused (486/603) or failed.
    Declined,
    /// The agent's registration ended while it rang.
    LoggedOut,
    /// The caller hung up while this phone rang (not the agent's miss).
    CallerHungUp,
    /// Another agent's phone rang for the same caller (ring-all) and answered first (not a miss).
    AnsweredElsewhere,
}

impl OfferEnd {
    /// Whether this counts as the agent's missed ring.
    pub fn is_miss(self) -> bool {
        !matches!(self, OfferEnd::CallerHungUp | OfferEnd::AnsweredElsewhere)
    }
}

/// Who ended a connected call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    Caller,
    Agent,
    /// Call control (media timeout, shutdown, a failed leg).
    System,
    /// The agent transferred the caller on (to another queue): the agent's part ended.
    Transferred,
    /// A callback's patient could not be reached (the agent's part ended).
    Unreached,
}

/// How one dial of a callback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackResult {
    /// The patient answered: bridged with the agent.
    Answered,
    /// The patient's phone rang the whole ring time.
    NoAnswer,
    /// Busy (486/600) or declined (603).
    Busy,
    /// The trunk refused the call or did not answer.
    Failed,
    /// The agent hung up while the patient's phone rang.
    AgentHungUp,
}

/// What happened. Times are in milliseconds so entries store and compare as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Logged {
    /// A caller started waiting; `position` 1 is the head of the queue. `transferred`:
    /// an agent handed the caller on (the call was answered before).
    Enqueued {
        queue: String,
        position: usize,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        transferred: bool,
    },
    /// An agent's phone was rung for the caller.
    Offered {
        agent: AgentId,
        queue: String,
        waited_ms: u64,
        ring_timeout_ms: u64,
    },
    /// The offer ended unanswered after ringing `rang_ms`.
    OfferEnded {
        agent: AgentId,
        queue: String,
        rang_ms: u64,
        why: OfferEnd,
    },
    /// The agent answered (`callback`: a callback's agent, the patient not dialled yet).
    Connected {
        agent: AgentId,
        queue: String,
        waited_ms: u64,
        rang_ms: u64,
        ring_timeout_ms: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        callback: bool,
    },
    /// The caller hung up while waiting (or while a phone rang for them).
    Abandoned {
        queue: String,
        position: usize,
        waited_ms: u64,
    },
    /// A rule sent the caller out of the queue (to `to`, or to call control when `None`).
    Exited {
        queue: String,
        reason: crate::queue::ExitReason,
        waited_ms: u64,
        to: Option<String>,
    },
    /// A connected call ended.
    Completed {
        agent: AgentId,
        queue: String,
        talked_ms: u64,
        by: EndedBy,
    },
    /// The caller left the line to be called back, keeping its place (`rule`: a queue
    /// rule sent it, else it pressed the callback key).
    CallbackRequested {
        queue: String,
        position: usize,
        waited_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<crate::queue::ExitReason>,
        /// It came from a voicemail (overflow `voicemail`; its wait ended at the exit).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        voicemail: bool,
        /// And a message was recorded (not when it hung up during the invitation).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        message: bool,
    },
    /// Attempt `attempt` (1: the first) at dialling the patient for the agent who answered
    /// the callback, after its phone rang `rang_ms`.
    CallbackDialled {
        agent: AgentId,
        queue: String,
        attempt: u32,
        rang_ms: u64,
        result: CallbackResult,
    },
    /// The callback was given up after `attempts` dials.
    CallbackFailed { queue: String, attempts: u32 },
    /// The callback was closed unmade after `attempts` dials: the patient got through to
    /// an agent on a call of their own.
    CallbackClosed { queue: String, attempts: u32 },
    /// The agent's state changed (the entry's call: the call it rings, talks or wraps up).
    AgentState {
        agent: AgentId,
        state: AgentState,
        reason: Option<String>,
    },
}

impl Logged {
    /// The entry's kind as stored (`"enqueued"`, `"agent_state"`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Logged::Enqueued { .. } => "enqueued",
            Logged::Offered { .. } => "offered",
            Logged::OfferEnded { .. } => "offer_ended",
            Logged::Connected { .. } => "connected",
            Logged::Abandoned { .. } => "abandoned",
            Logged::Exited { .. } => "exited",
            Logged::Completed { .. } => "completed",
            Logged::CallbackRequested { .. } => "callback_requested",
            Logged::CallbackDialled { .. } => "callback_dialled",
            Logged::CallbackFailed { .. } => "callback_failed",
            Logged::CallbackClosed { .. } => "callback_closed",
            Logged::AgentState { .. } => "agent_state",
        }
    }

    /// The agent the entry is about, if any.
    pub fn agent(&self) -> Option<&str> {
        match self {
            Logged::Offered { agent, .. }
            | Logged::OfferEnded { agent, .. }
            | Logged::Connected { agent, .. }
            | Logged::Completed { agent, .. }
            | Logged::CallbackDialled { agent, .. }
            | Logged::AgentState { agent, .. } => Some(agent),
            Logged::Enqueued { .. }
            | Logged::Abandoned { .. }
            | Logged::Exited { .. }
            | Logged::CallbackRequested { .. }
            | Logged::CallbackFailed { .. }
            | Logged::CallbackClosed { .. } => None,
        }
    }

    /// The queue the entry is about, if any.
    pub fn queue(&self) -> Option<&str> {
        match self {
            Logged::Enqueued { queue, .. }
            | Logged::Offered { queue, .. }
            | Logged::OfferEnded { queue, .. }
            | Logged::Connected { queue, .. }
            | Logged::Abandoned { queue, .. }
            | Logged::Exited { queue, .. }
            | Logged::Completed { queue, .. }
            | Logged::CallbackRequested { queue, .. }
            | Logged::CallbackDialled { queue, .. }
            | Logged::CallbackFailed { queue, .. }
            | Logged::CallbackClosed { queue, .. } => Some(queue),
            Logged::AgentState { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_serialize_with_their_kind_and_read_back() {
        let entry = Logged::OfferEnded {
            agent: "1001".into(),
            queue: "urgent".into(),
            rang_ms: 15_000,
            why: OfferEnd::RangOut,
        };
        let json = serde_json::to_string(&entry).expect("json");
        assert_eq!(
            json,
            r#"{"kind":"offer_ended","agent":"1001","queue":"urgent","rang_ms":15000,"why":"rang_out"}"#
        );
        assert_eq!(
            serde_json::from_str::<Logged>(&json).ok(),
            Some(entry.clone())
        );
        assert_eq!(entry.kind(), "offer_ended");
        let state = Logged::AgentState {
            agent: "1002".into(),
            state: AgentState::WrapUp,
            reason: None,
        };
        let json = serde_json::to_string(&state).expect("json");
        assert!(json.contains(r#""kind":"agent_state""#) && json.contains(r#""state":"wrap_up""#));
        assert_eq!(state.agent(), Some("1002"));
        assert_eq!(state.queue(), None);
    }
}
