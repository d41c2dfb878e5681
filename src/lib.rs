//! Switchboard: a SIP/RTP call-center adapter for clinics.
//!
//! The binary's parts, outside in:
//! - [`config`]: the TOML config, its checks, the embedded demo clinic.
//! - [`storage`]: SQLite (patients, calls, recordings, audit log); [`patients`]: the
//!   checks on patient records and the CSV import.
//! - [`auth`], [`http`], [`events`], [`metrics`]: users and tokens, the HTTP API,
//!   desk pages and WebSocket, the desk event hub, Prometheus metrics.
//! - [`control`]: the commands HTTP sends to call control.
//! - [`sip_io`], [`call`]: sockets around the sans-IO SIP stack, and the async
//!   driver around call control's sans-IO core (the `callcore` crate).
//! - [`knowledge`]: the knowledge base (articles and their versions, search by the `kb` crate).
//! - [`prompts`], [`pii`]: built-in prompts, masking of personal data in logs.

pub mod auth;
pub mod call;
pub mod config;
pub mod control;
pub mod events;
pub mod http;
pub mod knowledge;
pub mod metrics;
pub mod patients;
pub use callcore::pii;
pub mod prompts;
pub mod serve;
pub mod sip_io;
pub mod storage;
pub mod webphone;
