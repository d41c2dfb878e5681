//! Switchboard's call control, sans IO: a back-to-back user agent (B2BUA) that
//! answers patients, runs the IVR, queues them, offers them to agents and
//! bridges the two legs.
//!
//! Like quinn-proto's `Endpoint` under quinn's driver: the [`Core`] owns every
//! call's signalling state and the sans-IO parts below it (SIP transactions,
//! registrar, ACD, IVR sessions). It never touches a socket, a file, a clock
//! or a task: inputs come in through `handle_*(now, …)`, the next deadline is
//! [`Core::poll_timeout`], and everything to do comes out of
//! [`Core::poll_output`] as an [`Output`] (transmit, bind a port, media
//! command, screen-pop, desk event, store write, metric) for the shell to
//! apply in order. Calls are handles ([`CallId`]).
//!
//! - [`config`]: what the core needs to know of the clinic.
//! - [`io`]: outputs, media commands and events, metrics, live counts.
//! - [`call`]: one call and everything it holds.
//! - [`control`]: the core: inputs, timers, draining the parts; [`patient`],
//!   [`agent`] and [`finish`] are its call flow (the patient's leg and IVR,
//!   offers to agents, hanging up); [`transfer`] hands a caller on to a queue;
//!   `callback` lets the caller off the line keeping its place, then dials it back.
//! - [`session_timer`]: RFC 4028 session timers (refreshes and mid-call changes
//!   handled in `refresh`); `keepalive`: OPTIONS to agent phones behind NAT.
//! - [`ports`]: RTP port numbers.
//! - [`records`], [`desk`]: what is written down and what desks are told.
//! - [`pii`]: masking of phone numbers in logs.

mod agent;
mod announce;
mod audit;
pub mod call;
mod callback;
pub mod config;
pub mod consult;
mod consult_phone;
pub mod control;
pub mod desk;
mod desk_call;
mod finish;
pub mod io;
mod keepalive;
mod patient;
pub mod pii;
pub mod ports;
pub mod records;
mod refresh;
pub mod session_timer;
pub mod transfer;
mod voicemail;

pub use crate::config::{AgentSpec, Announce, CallbackConfig, CoreConfig, RecordingConfig};
pub use crate::control::Core;
pub use crate::io::{
    Leg, LegSpec, Live, MediaCommand, MediaEvent, Metric, Output, PortToken, Refusal,
};
pub use crate::patient::media_codec;
pub use crate::transfer::TransferTarget;

/// A call's handle inside call control (the ACD's call id too).
pub type CallId = u64;
