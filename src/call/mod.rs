//! Call control's shell: the async driver around the sans-IO [`callcore::Core`].
//!
//! The core decides everything about calls; this module moves bytes and
//! events for it. Each call's media runs in a task of its own ([`media`]),
//! driven by commands and reporting events.
//!
//! - [`driver`]: the task that owns the core, its event loop, and applies its outputs.
//! - [`crm`]: the clinic's HIS/CRM asked for the caller's record, beside the stored lookup.
//! - [`lookup`]: what the screen-pop knows about a caller (record, recent calls, wrap-ups).
//! - [`media`]: the per-call media task (prompts, DTMF, bridge, recording).
//! - [`ports`]: binding the RTP ports the core picks.
//! - [`record_sink`]: the thread that writes every recording file.

pub mod crm;
pub mod driver;
pub mod lookup;
pub mod media;
pub mod ports;
pub mod record_sink;

pub use driver::{Driver, DriverParts};

/// A call's handle inside call control.
pub type CallId = callcore::CallId;
