//! Call control: a back-to-back user agent (B2BUA).
//!
//! The patient's leg and the agent's leg are separate SIP dialogs. One task,
//! the [`Controller`], owns every sans-IO core (transactions, registrar, ACD,
//! IVR sessions) and every call's signalling state; each call's media runs in
//! its own task ([`media`]), driven by commands and reporting events.
//!
//! - [`control`]: the controller, its event loop and its timers.
//! - [`patient`]: the patient's leg: INVITE, IVR, in-dialog requests.
//! - [`agent`]: offers: screen-pop, INVITE to the agent's phone, ring-out, answer.
//! - [`finish`]: hanging up and writing the call record.
//! - [`media`]: the per-call media task (prompts, DTMF, bridge, recording).
//! - [`ports`]: RTP port allocation.

pub mod agent;
pub mod control;
pub mod finish;
pub mod media;
pub mod patient;
pub mod ports;

pub use control::{Controller, ControllerParts};

/// A call's handle inside call control (the ACD's call id).
pub type CallId = u64;
