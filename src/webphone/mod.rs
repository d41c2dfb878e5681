//! The browser softphone: an agent with no SIP phone takes calls in the desk page.
//!
//! The page sends a WebRTC offer (audio, PCMU/PCMA and telephone-event only) over the
//! desk WebSocket; [`open`] answers it and starts a gateway task for that page: a str0m
//! session (ICE-lite, DTLS-SRTP) with the page on one side, and on the other a SIP phone
//! of the agent's ([`ua::AgentUa`]) that registers with Switchboard's own SIP side over
//! loopback, like any phone. Call control is not changed by it: a browser agent is an
//! agent whose phone is registered while the page is open, is rung with an INVITE, and
//! talks, holds, transfers, records and hangs up exactly like a desk phone. G.711 frames
//! go across unchanged (no transcoding when both sides use the same law, which they do
//! unless a phone-side offer lacks it), RFC 4733 events from the page's keypad too.
//!
//! - [`ua`]: the SIP phone, sans-IO.
//! - [`session`]: the task holding the sockets, the WebRTC session and the phone.

pub mod session;
pub mod ua;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Once};

use tokio::sync::mpsc;

/// What browser phones need of the running server.
#[derive(Debug, Clone)]
pub struct Site {
    /// Switchboard's own SIP UDP address (the gateway registers there).
    pub sip_server: SocketAddr,
    /// The address the page's media reaches us at (the SIP advertise address).
    pub media_ip: IpAddr,
    /// Each agent's SIP password (the gateway answers the digest challenge as the agent).
    pub passwords: HashMap<String, String>,
    /// Randomness for SIP identifiers.
    pub seed: u64,
}

/// What the page asks of its phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Answer,
    Decline,
}

/// What the page is told of its phone (sent on the desk WebSocket as
/// `{"event":"webphone","state":...}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    MediaConnected,
    Registered,
    Unregistered(String),
    Ringing(String),
    Talking,
    Idle,
    Closed(String),
    /// The phone could not be started (why).
    Failed(String),
}

impl Report {
    /// The JSON the page gets.
    pub fn to_json(&self) -> serde_json::Value {
        let (state, detail) = match self {
            Report::MediaConnected => ("connected", None),
            Report::Registered => ("registered", None),
            Report::Unregistered(why) => ("unregistered", Some(why.as_str())),
            Report::Ringing(call) => ("ringing", Some(call.as_str())),
            Report::Talking => ("talking", None),
            Report::Idle => ("idle", None),
            Report::Closed(why) => ("closed", Some(why.as_str())),
            Report::Failed(why) => ("failed", Some(why.as_str())),
        };
        serde_json::json!({ "event": "webphone", "state": state, "detail": detail })
    }
}

/// Why a page's phone could not be started.
#[derive(Debug, thiserror::Error)]
pub enum WebphoneError {
    #[error("the browser phone is not available on this server")]
    Unavailable,
    #[error("agent {0} has no SIP password configured")]
    NoPassword(String),
    #[error("bad WebRTC offer: {0}")]
    Offer(String),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// A running browser phone: dropping it unregisters the agent's phone and ends the task.
#[derive(Debug)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
}

impl Handle {
    /// Passes a click on to the phone (dropped if the phone is gone or busy).
    pub fn command(&self, c: Command) {
        let _ = self.commands.try_send(c);
    }
}

/// Answers the page's offer and starts its phone. Returns the handle, the SDP answer, and
/// the reports to pass on to the page.
pub async fn open(
    site: Arc<Site>,
    agent: &str,
    offer: &str,
) -> Result<(Handle, String, mpsc::Receiver<Report>), WebphoneError> {
    static CRYPTO: Once = Once::new();
    CRYPTO.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
    let password = site
        .passwords
        .get(agent)
        .cloned()
        .ok_or_else(|| WebphoneError::NoPassword(agent.to_owned()))?;
    let (report_tx, report_rx) = mpsc::channel(64);
    let (session, answer) = session::open(site, agent, &password, offer, report_tx).await?;
    let (command_tx, command_rx) = mpsc::channel(8);
    let span = tracing::info_span!("webphone", agent);
    tokio::spawn(tracing::Instrument::instrument(
        session.run(command_rx),
        span,
    ));
    Ok((
        Handle {
            commands: command_tx,
        },
        answer,
        report_rx,
    ))
}
