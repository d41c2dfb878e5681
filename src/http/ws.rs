//! `GET /ws/desk?token=`: the agent's live desk event stream.
//!
//! On connect the desk gets a `state` event with the agent's current state, then
//! every event call control publishes for that agent. Each event is acked to the
//! [`DeskHub`](crate::events::DeskHub) right after `send().await` returns, which
//! is what lets `deliver()` wait for the screen-pop to be written.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};

use super::{ApiError, AppState};
use crate::auth::{AuthRejection, AuthUser, Role};
use crate::events::{DeskEvent, DeskSubscription};

/// Read buffer of a desk socket.
const DESK_READ_BUFFER: usize = 4 * 1024;
/// Unsent events a desk socket may hold before writes fail (a stalled desk).
const DESK_MAX_WRITE_BUFFER: usize = 1024 * 1024;
/// The largest message or frame a desk may send.
const DESK_MAX_MESSAGE: usize = 64 * 1024;

/// How often an idle desk socket is pinged (finds dead connections).
const PING_EVERY: Duration = Duration::from_secs(20);

/// Upgrades an agent's authenticated request to the desk WebSocket.
pub async fn desk(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let user = user?;
    user.require(&[Role::Agent])?;
    let upgrade = upgrade.map_err(|_| ApiError::bad_request("websocket upgrade required"))?;
    // Subscribe now, so nothing published during the handshake is lost.
    let sub = state.hub.subscribe(&user.name);
    // Desk sockets carry small JSON events out and nothing but pongs in: small buffers
    // (tungstenite's defaults are 128 KiB each way, per socket: 1,000 agents would
    // hold 250 MiB) and a small cap on what a desk may send.
    let upgrade = upgrade
        .read_buffer_size(DESK_READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(DESK_MAX_WRITE_BUFFER)
        .max_message_size(DESK_MAX_MESSAGE)
        .max_frame_size(DESK_MAX_MESSAGE);
    Ok(upgrade.on_upgrade(move |socket| run(socket, sub, state, user.name)))
}

/// What a desk sends: its browser phone's offer and clicks.
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "webphone", rename_all = "snake_case")]
enum FromDesk {
    /// Turn the browser phone on (or again): the page's WebRTC offer.
    Offer {
        sdp: String,
    },
    Answer,
    Decline,
    /// Turn it off.
    Close,
}

/// The desk's browser phone, while it is on.
struct Phone {
    handle: crate::webphone::Handle,
    reports: tokio::sync::mpsc::Receiver<crate::webphone::Report>,
}

async fn next_report(phone: &mut Option<Phone>) -> Option<crate::webphone::Report> {
    match phone {
        Some(p) => p.reports.recv().await,
        None => std::future::pending().await,
    }
}

/// Acts on a message from the desk; the answer to send back, if any.
async fn from_desk(
    text: &str,
    state: &AppState,
    agent: &str,
    phone: &mut Option<Phone>,
) -> Option<serde_json::Value> {
    let msg = match serde_json::from_str::<FromDesk>(text) {
        Ok(m) => m,
        Err(e) => {
            return Some(
                serde_json::json!({"event": "error", "error": format!("bad desk message: {e}")}),
            );
        }
    };
    match msg {
        FromDesk::Offer { sdp } => {
            *phone = None; // a new offer replaces the phone (unregistering the old one first)
            let opened = match state.webphone.clone() {
                Some(site) => crate::webphone::open(site, agent, &sdp).await,
                None => Err(crate::webphone::WebphoneError::Unavailable),
            };
            match opened {
                Ok((handle, answer, reports)) => {
                    *phone = Some(Phone { handle, reports });
                    Some(serde_json::json!({"event": "webphone", "state": "answer", "sdp": answer}))
                }
                Err(e) => {
                    tracing::warn!(agent, error = %e, "browser phone refused");
                    Some(crate::webphone::Report::Failed(e.to_string()).to_json())
                }
            }
        }
        FromDesk::Answer => command(phone, crate::webphone::Command::Answer),
        FromDesk::Decline => command(phone, crate::webphone::Command::Decline),
        FromDesk::Close => {
            *phone = None;
            Some(crate::webphone::Report::Closed("turned off".into()).to_json())
        }
    }
}

/// Passes a click to the phone, if it is on; nothing to answer.
fn command(phone: &Option<Phone>, c: crate::webphone::Command) -> Option<serde_json::Value> {
    if let Some(p) = phone {
        p.handle.command(c);
    }
    None
}

async fn run(socket: WebSocket, mut sub: DeskSubscription, state: AppState, agent: String) {
    tracing::info!(agent, "desk connected");
    let mut phone: Option<Phone> = None;
    let (mut sink, mut stream) = socket.split();
    // The current state is looked up alongside the event loop: call control may be
    // busy awaiting this very desk's screen-pop ack, so it must not hold up delivery.
    let initial = current_state(&state, &agent);
    tokio::pin!(initial);
    let mut initial_sent = false;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            biased;
            event = &mut initial, if !initial_sent => {
                initial_sent = true;
                let Ok(json) = serde_json::to_string(&event) else { continue };
                if sink.send(Message::text(json)).await.is_err() {
                    break;
                }
            }
            () = state.shutdown.cancelled() => {
                let close = CloseFrame { code: 1001, reason: "server shutting down".into() };
                let _ = sink.send(Message::Close(Some(close))).await;
                break;
            }
            delivery = sub.recv() => {
                let Some(delivery) = delivery else { break };
                if sink.send(Message::text(delivery.json())).await.is_err() {
                    break;
                }
                delivery.ack();
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(Message::Text(text))) => {
                    if let Some(answer) = from_desk(&text, &state, &agent, &mut phone).await
                        && sink.send(Message::text(answer.to_string())).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(_)) => {} // pings are answered by the library
            },
            report = next_report(&mut phone) => {
                let Some(report) = report else {
                    phone = None; // the phone's task ended
                    continue;
                };
                if sink.send(Message::text(report.to_json().to_string())).await.is_err() {
                    break;
                }
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    // Dropping the phone unregisters it: the agent is reachable only while the page is open.
    drop(phone);
    tracing::info!(agent, "desk disconnected");
}

/// The agent's state as call control knows it ("logged_out" if it does not answer).
async fn current_state(state: &AppState, agent: &str) -> DeskEvent {
    let agents = tokio::time::timeout(Duration::from_secs(1), state.control.agents()).await;
    match agents {
        Ok(Ok(list)) => match list.into_iter().find(|a| a.id == agent) {
            Some(a) => DeskEvent::State {
                state: a.state,
                reason: a.reason,
            },
            None => DeskEvent::State {
                state: "logged_out".into(),
                reason: Some("unknown agent".into()),
            },
        },
        _ => DeskEvent::State {
            state: "logged_out".into(),
            reason: Some("call control unavailable".into()),
        },
    }
}
