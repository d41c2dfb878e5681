//! Agents' desks: log in over HTTP, open the desk WebSocket, and read its events.
//!
//! Connecting happens in a small task per agent; the open socket is then handed to the
//! engine, which reads every desk itself ([`DeskStream`] in one `SelectAll`), on the same
//! thread as the SIP socket. That makes the order of "screen-pop read" and "INVITE read"
//! meaningful, and lets the engine look at an agent's socket the moment an INVITE comes
//! in without its pop: if the pop is not readable then, it really came after the INVITE.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::Stream;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A desk event, reduced to what the generator measures.
#[derive(Debug, Clone)]
pub enum DeskEvent {
    Offer { call_id: String, caller: String },
    Missed,
    Other,
}

/// What a desk reports to the engine.
pub enum DeskNote {
    /// Logged in and the socket is open: the engine reads it from now on.
    Connected { token: String, ws: Box<Ws> },
    /// Login or socket failed; the agent takes no part.
    Failed(String),
    /// `POST /api/agents/me/state` answered with this status (0: no answer).
    ReadyResult(u16),
}

pub struct DeskMsg {
    pub agent: usize,
    pub note: DeskNote,
}

/// Parses one desk event's JSON text.
pub fn parse_event(text: &str) -> DeskEvent {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return DeskEvent::Other;
    };
    let s = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    match v.get("event").and_then(|e| e.as_str()) {
        Some("offer") => DeskEvent::Offer {
            call_id: s("call_id"),
            caller: s("caller"),
        },
        Some("missed") => DeskEvent::Missed,
        _ => DeskEvent::Other,
    }
}

/// Logs agent `agent` in and opens its desk socket; the outcome goes to `out`.
pub async fn connect(
    agent: usize,
    http: SocketAddr,
    user: String,
    password: String,
    out: mpsc::UnboundedSender<DeskMsg>,
) {
    let note = match connect_inner(http, &user, &password).await {
        Ok((token, ws)) => DeskNote::Connected {
            token,
            ws: Box::new(ws),
        },
        Err(e) => DeskNote::Failed(e),
    };
    let _ = out.send(DeskMsg { agent, note });
}

async fn connect_inner(
    http: SocketAddr,
    user: &str,
    password: &str,
) -> Result<(String, Ws), String> {
    let token = crate::http::login(http, user, password)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let url = format!("ws://{http}/ws/desk?token={token}");
    let connect = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    );
    match connect.await {
        Ok(Ok((ws, _))) => Ok((token, ws)),
        Ok(Err(e)) => Err(format!("desk socket for {user}: {e}")),
        Err(_) => Err(format!("desk socket for {user}: connect timed out")),
    }
}

/// What `desk` already holds, without waiting (the task's waker stays registered).
pub async fn read_now(desk: &mut DeskStream) -> Option<(usize, DeskRead)> {
    std::future::poll_fn(|cx| match Pin::new(&mut *desk).poll_next(cx) {
        Poll::Ready(item) => Poll::Ready(item),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// What reading a desk socket gave.
#[derive(Debug)]
pub enum DeskRead {
    Event(DeskEvent, Instant),
    Closed,
}

/// One agent's open desk socket as a stream of `(agent, read)`; ends after `Closed`.
pub struct DeskStream {
    pub agent: usize,
    ws: Box<Ws>,
    done: bool,
}

impl DeskStream {
    pub fn new(agent: usize, ws: Box<Ws>) -> Self {
        DeskStream {
            agent,
            ws,
            done: false,
        }
    }
}

impl Stream for DeskStream {
    type Item = (usize, DeskRead);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let agent = self.agent;
        // Bounded: control frames (pings) are skipped, at most this many per poll.
        for _ in 0..64 {
            match Pin::new(&mut *self.ws).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(Message::Text(t)))) => {
                    return Poll::Ready(Some((
                        agent,
                        DeskRead::Event(parse_event(t.as_str()), Instant::now()),
                    )));
                }
                Poll::Ready(Some(Ok(Message::Close(_)) | Err(_)) | None) => {
                    self.done = true;
                    return Poll::Ready(Some((agent, DeskRead::Closed)));
                }
                Poll::Ready(Some(Ok(_))) => continue,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse() {
        let e = parse_event(
            r#"{"event":"offer","call_id":"c1","caller":"13900000007","patient":null,"ivr_path":["main:1"],"queue":"appointments","waited_ms":12,"ring_timeout_ms":15000}"#,
        );
        assert!(
            matches!(e, DeskEvent::Offer { ref call_id, ref caller } if call_id == "c1" && caller == "13900000007")
        );
        assert!(matches!(
            parse_event(r#"{"event":"missed","call_id":"c1"}"#),
            DeskEvent::Missed
        ));
        assert!(matches!(
            parse_event(r#"{"event":"state","state":"ready","reason":null}"#),
            DeskEvent::Other
        ));
        assert!(matches!(parse_event("not json"), DeskEvent::Other));
    }
}
