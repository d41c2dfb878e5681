//! What the agent's desk is told, and how agents look to ops.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pii::Pii;
use crate::records::Patient;

/// One message on the desk WebSocket (SPEC.md "Desk events").
///
/// `Debug` masks the caller's number and hides the patient record, so events
/// can be logged; the JSON sent to the agent's own desk carries them in full.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
// One per offer or state change, never per packet: the pop's size costs nothing here.
#[allow(clippy::large_enum_variant)]
pub enum DeskEvent {
    /// The screen-pop: this agent is being offered the call.
    Offer {
        call_id: String,
        caller: String,
        patient: Option<Patient>,
        ivr_path: Vec<String>,
        queue: String,
        waited_ms: u64,
        ring_timeout_ms: u64,
        /// A callback: the patient is dialled once the agent answers.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        callback: bool,
        /// The message the patient left before (its recording id), for a voicemail's callback.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voicemail: Option<String>,
        /// A consultation: the agent talking with the caller asks this one first (an
        /// attended transfer); the caller comes over only if that agent completes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        consult_from: Option<String>,
        /// The caller's earlier calls, newest first (a known patient or not).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        history: Vec<crate::records::PastCall>,
        /// The patient's tendency from the wrap-ups of those calls
        /// ([`crate::records::tendency`]; absent without any).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tendency: Option<crate::records::Tone>,
    },
    /// The agent's consultation of another agent (an attended transfer) changed: `state` is
    /// "ringing", "answered" (the two talk, the caller hears hold music), "transferred"
    /// (the caller went over) or "ended" (`reason`: "cancelled", "declined", "no_answer",
    /// "hung_up"; the caller is back with this agent).
    Consult {
        call_id: String,
        agent: String,
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The pop's record of the caller, refreshed (the clinic's CRM answered after the pop).
    Patient { call_id: String, patient: Patient },
    /// The agent answered the call.
    Answered { call_id: String },
    /// The call is over.
    Ended { call_id: String, reason: String },
    /// The agent's phone rang out; the call goes to someone else.
    Missed { call_id: String },
    /// The agent's state changed ("logged_out", "not_ready", "ready", "ringing", "talking",
    /// "on_hold", "wrap_up").
    State {
        state: String,
        reason: Option<String>,
    },
}

impl fmt::Debug for DeskEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeskEvent::Offer {
                call_id,
                caller,
                patient,
                ivr_path,
                queue,
                waited_ms,
                ring_timeout_ms,
                callback,
                voicemail,
                consult_from,
                history,
                tendency,
            } => f
                .debug_struct("Offer")
                .field("call_id", call_id)
                .field("caller", &Pii(caller))
                .field("patient", &patient.as_ref().map(|_| "<matched>"))
                .field("ivr_path", ivr_path)
                .field("queue", queue)
                .field("waited_ms", waited_ms)
                .field("ring_timeout_ms", ring_timeout_ms)
                .field("callback", callback)
                .field("voicemail", voicemail)
                .field("consult_from", consult_from)
                .field("history", &history.len())
                .field("tendency", tendency)
                .finish(),
            DeskEvent::Consult {
                call_id,
                agent,
                state,
                reason,
            } => f
                .debug_struct("Consult")
                .field("call_id", call_id)
                .field("agent", agent)
                .field("state", state)
                .field("reason", reason)
                .finish(),
            DeskEvent::Patient { call_id, .. } => f
                .debug_struct("Patient")
                .field("call_id", call_id)
                .field("patient", &"<matched>")
                .finish(),
            DeskEvent::Answered { call_id } => f
                .debug_struct("Answered")
                .field("call_id", call_id)
                .finish(),
            DeskEvent::Ended { call_id, reason } => f
                .debug_struct("Ended")
                .field("call_id", call_id)
                .field("reason", reason)
                .finish(),
            DeskEvent::Missed { call_id } => {
                f.debug_struct("Missed").field("call_id", call_id).finish()
            }
            DeskEvent::State { state, reason } => f
                .debug_struct("State")
                .field("state", state)
                .field("reason", reason)
                .finish(),
        }
    }
}

/// One agent as ops and QA see it (`GET /api/agents`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    /// "logged_out", "not_ready", "ready", "ringing", "talking", "on_hold" or "wrap_up".
    pub state: String,
    /// Why not ready (a desk reason, or "missed" after consecutive ring-outs).
    pub reason: Option<String>,
    /// How long the agent has been in this state (`null`: since start-up, never changed).
    pub in_state_ms: Option<u64>,
    /// While in wrap-up: how long until it ends by itself.
    pub wrap_up_left_ms: Option<u64>,
    pub registered: bool,
    pub current_call: Option<String>,
    pub missed_rings: u32,
    /// Of those, how many in a row (at `max_missed_rings` the agent goes not ready, "missed").
    pub consecutive_misses: u32,
    /// The last REGISTER refused for this agent, kept after a later success so ops can
    /// see what went wrong (`null`: none since start-up).
    pub last_registration_failure: Option<RegistrationFailure>,
    /// Every phone registered as this agent (a desk phone and a softphone ring together).
    pub phones: Vec<RegisteredPhone>,
}

/// One registered phone of an agent, as ops see it on `GET /api/agents`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RegisteredPhone {
    /// "udp" or "tcp".
    pub transport: String,
    /// Where calls to it go, masked (`192.168.1.*:5062`).
    pub address: String,
    /// Its Via did not name the address it registered from: calls go there, with keep-alives.
    pub behind_nat: bool,
    /// Its User-Agent, if it sent one.
    pub user_agent: Option<String>,
}

/// A refused REGISTER, as ops see it on `GET /api/agents`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RegistrationFailure {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The SIP status sent (401, 403, 423, 400).
    pub status: u16,
    /// A stable code: `wrong_password`, `unknown_user`, `unsupported_algorithm`, …
    pub reason: String,
    /// The same in words.
    pub detail: String,
    /// Where the REGISTER came from, masked (`192.168.1.*:5060`).
    pub source: String,
    /// The phone's User-Agent, if it sent one.
    pub user_agent: Option<String>,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlError {
    #[error("no such agent")]
    UnknownAgent,
    #[error("{0}")]
    Rejected(String),
    #[error("call control is not running")]
    Unavailable,
}

/// One queue as ops see it live (`GET /api/queues`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueView {
    pub name: String,
    pub priority: i32,
    pub strategy: String,
    /// Callers waiting, longest first (those whose offer rings included).
    pub callers: Vec<WaitingCaller>,
    /// The longest wait of a caller on the line (callbacks left out).
    pub longest_wait_ms: Option<u64>,
    /// Of the callers, how many wait to be called back (off the line).
    pub callbacks: usize,
    /// Agents serving the queue, by state (`ready`, `ringing`, …).
    pub agents: std::collections::BTreeMap<String, u32>,
}

/// One waiting caller on the live queue panel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WaitingCaller {
    pub call_id: String,
    /// Masked (`138****0001`).
    pub caller: String,
    pub position: usize,
    pub waited_ms: u64,
    /// The agent whose phone rings for them, if any.
    pub ringing: Option<String>,
    /// Left the line to be called back (keeps the place).
    pub callback: bool,
}
