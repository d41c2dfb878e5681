//! SIP for Switchboard, sans-IO: messages in, messages and timers out.
//!
//! Layers, each knowing only the one below it (PJSIP's order):
//! message → transport framing → transaction → dialog; beside them the
//! session pieces a B2BUA needs (SDP offer/answer, digest auth, registrar).

pub mod error;
pub mod transport;
pub mod message;
pub mod framing;
pub mod ids;
pub mod transaction;
pub mod dialog;
pub mod sdp;
pub mod auth;
pub mod registrar;

pub use error::Error;
