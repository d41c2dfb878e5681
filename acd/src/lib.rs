//! Switchboard's automatic call distributor (ACD): queues, agents, offers and ring-out, as a
//! sans-IO state machine. Call control feeds it inputs with `now` and acts on its events.
//!
//! - [`agent`] — agent states (logged out, not ready, ready, ringing, talking, on hold,
//!   wrap-up), idle order, misses.
//! - [`queue`] — queue configuration and waiting callers in arrival order.
//! - [`strategy`] — how a queue picks among free agents (longest idle, round robin, …), levels.
//! - [`journal`] — the event log: every fact about callers and agents, in order.
//! - [`kpi`] — the clinic's numbers (answer rate, ASA, service level, occupancy, …) from it.
//! - `timer` — the named timers (ring-out per offer, decline pause, wrap-up end) as data.
//! - [`acd`] — [`Acd`], which pairs the longest-idle Ready agent with the best caller.
//! - [`error`] — the crate's one error type, [`Error`].
//!
//! Choices worth knowing:
//! - A ring-out (or a decline, or going offline while ringing) counts a miss and leaves the
//!   agent Ready but most recently idle, so the next free agent rings first; the caller keeps
//!   its place and its wait. A lone free agent is offered the same caller again at once.
//! - After `max_missed_rings` misses in a row (default 2) the agent goes not ready with
//!   reason `missed`; the desk setting it ready again starts the count afresh.
//! - When a call ends the agent does its queue's wrap-up: offered nothing from any queue
//!   until it ends by itself, or the desk ends it (ready / not ready) or extends it.
//! - A decline also pauses the agent's offers until its ring would have timed out, so a
//!   phone that rejects everything cannot loop INVITEs.
//! - NotReady asked for while ringing or talking takes effect when the offer or call ends.
//! - An abandon during an offer emits nothing: call control cancels the INVITE itself; the
//!   agent keeps its place in idle order and no miss is counted.

pub mod acd;
pub mod agent;
pub mod error;
pub mod journal;
pub mod kpi;
pub mod queue;
pub mod strategy;
mod timer;

pub use acd::{Acd, AcdEvent};
pub use agent::{AgentConfig, AgentState, AgentView, MISSED};
pub use error::Error;
pub use journal::{CallbackResult, EndedBy, Entry, Logged, OfferEnd};
pub use queue::{CallerView, ExitReason, LeaveWhen, Overflow, QueueConfig};
pub use strategy::Strategy;

/// Identifies a call across call control and the ACD.
pub type CallId = u64;
/// An agent's id: the SIP user and desk login.
pub type AgentId = String;
