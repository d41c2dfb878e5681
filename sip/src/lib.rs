//! SIP for Switchboard, sans-IO: messages in, messages and timers out.
//!
//! Layers, each knowing only the one below it (PJSIP's order):
//! message → transport framing → transaction → dialog; beside them the
//! session pieces a B2BUA needs (SDP offer/answer, digest auth, registrar).
//!
//! Messages are our own types (`message`); rsip 0.4 is not used on the parse path
//! because it rejects or mangles what real phones send (IPv6 and tel: request URIs,
//! folded headers, compact names, ...; see `message::rsip_defects` tests). The
//! maintained `ezk-sip-types` 0.6.5 was evaluated too and does not replace it either
//! (no whole-message parser, tel: request URIs, escaped display names, method
//! prefixes, ...; see `message::ezk_eval` tests).

pub mod auth;
pub mod dialog;
pub mod digest_client;
pub mod error;
pub mod framing;
pub mod ids;
pub mod message;
pub mod nat;
pub mod registrar;
pub mod sdp;
pub mod transaction;
pub mod transport;

pub use dialog::{Dialog, DialogState, LocalEndpoint};
pub use error::Error;
pub use message::{Method, Request, RequestBuilder, Response, SipMessage};
pub use transaction::{TimerConfig, TransactionEvent, TransactionKey, TransactionLayer};
pub use transport::{Peer, Transmit, Transport};
