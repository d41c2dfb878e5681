//! RFC 3261 §17 transactions, sans-IO: one `TransactionLayer` for the whole endpoint.
//!
//! Four state machines, one per file (PJSIP's split): client INVITE, client non-INVITE,
//! server INVITE (with RFC 6026 Accepted), server non-INVITE. The layer routes each
//! message to its transaction by key (RFC 3261 §17.1.3 / §17.2.3), absorbs
//! retransmissions, re-sends stored responses, and reports only what the TU must act on.
//! Timers are data (`Timer` + deadline); `handle_timeout(now)` fires everything due.

mod client_invite;
mod client_non_invite;
#[cfg(test)]
mod pair_tests;
mod server_invite;
mod server_non_invite;
#[cfg(test)]
mod tests;
mod timer;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::message::{Method, Request, Response, SipMessage};
use crate::transport::{Peer, Transmit};

pub use timer::Timer;

use client_invite::ClientInvite;
use client_non_invite::ClientNonInvite;
use server_invite::ServerInvite;
use server_non_invite::ServerNonInvite;

/// RFC 3261 timer base values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (500 ms).
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Longest time a message stays in the network (5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J (UDP), L and M.
    pub(crate) fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// Whether we sent the request (client) or received it (server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Role {
    Client,
    Server,
}

/// Identifies one transaction: role, top-Via branch, sent-by (server side) and method
/// (ACK maps to INVITE; CANCEL is its own transaction).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    role: Role,
    branch: String,
    sent_by: String,
    method: Method,
}

impl TransactionKey {
    /// The Via branch (for logs).
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The transaction's method (INVITE for an ACK to a non-2xx).
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// True for a transaction created by a received request.
    pub fn is_server(&self) -> bool {
        self.role == Role::Server
    }

    fn server(req: &Request) -> Option<Self> {
        let (_, sent_by, branch) = req.headers.top_via().ok()?;
        let method = match req.method() {
            Method::Ack => Method::Invite,
            m => m,
        };
        Some(TransactionKey {
            role: Role::Server,
            branch,
            sent_by,
            method,
        })
    }

    fn client(branch: String, method: Method) -> Self {
        TransactionKey {
            role: Role::Client,
            branch,
            sent_by: String::new(),
            method,
        }
    }
}

/// What the transaction user must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransactionEvent {
    /// A new request (a new server transaction), including CANCEL, BYE, REGISTER, ...
    Request {
        key: TransactionKey,
        request: Request,
        peer: Peer,
    },
    /// The ACK to a 2xx we sent (ends its retransmission), or an ACK matching nothing.
    Ack { request: Request, peer: Peer },
    /// A response on a client transaction: provisional, final, and 2xx retransmissions.
    Response {
        key: TransactionKey,
        response: Response,
    },
    /// Client: Timer B/F. Server INVITE: no ACK for our final (Timer H, or L for a 2xx).
    Timeout { key: TransactionKey },
}

/// Queued outputs shared by all transactions.
#[derive(Debug, Default)]
pub(super) struct Output {
    transmits: VecDeque<Transmit>,
    events: VecDeque<TransactionEvent>,
}

impl Output {
    pub(super) fn send(&mut self, peer: Peer, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit { peer, bytes });
    }

    pub(super) fn event(&mut self, event: TransactionEvent) {
        self.events.push_back(event);
    }
}

/// What a transaction handler needs from the layer.
pub(super) struct Ctx<'a> {
    pub cfg: &'a TimerConfig,
    pub key: &'a TransactionKey,
    pub out: &'a mut Output,
}

/// Whether a transaction lives on after handling an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    Alive,
    Terminated,
}

#[derive(Debug)]
#[allow(clippy::enum_variant_names)]
enum Tx {
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
}

impl Tx {
    fn next_timer(&self) -> Option<(Timer, Instant)> {
        match self {
            Tx::ClientInvite(t) => t.timers.next(),
            Tx::ClientNonInvite(t) => t.timers.next(),
            Tx::ServerInvite(t) => t.timers.next(),
            Tx::ServerNonInvite(t) => t.timers.next(),
        }
    }

    fn fire_due(&mut self, now: Instant, ctx: &mut Ctx<'_>) -> Status {
        match self {
            Tx::ClientInvite(t) => t.timers.take_due(now).map(|tm| t.on_timer(tm, now, ctx)),
            Tx::ClientNonInvite(t) => t.timers.take_due(now).map(|tm| t.on_timer(tm, now, ctx)),
            Tx::ServerInvite(t) => t.timers.take_due(now).map(|tm| t.on_timer(tm, now, ctx)),
            Tx::ServerNonInvite(t) => t.timers.take_due(now).map(|tm| t.on_timer(tm, now, ctx)),
        }
        .unwrap_or(Status::Alive)
    }
}

/// The endpoint's transaction layer: messages and time in, transmits and events out.
#[derive(Debug)]
pub struct TransactionLayer {
    config: TimerConfig,
    /// Transactions with their creation number (deterministic tie-breaks).
    txs: HashMap<TransactionKey, (u64, Tx)>,
    next_seq: u64,
    out: Output,
    last_now: Option<Instant>,
}

impl TransactionLayer {
    /// An empty layer with these timer values.
    pub fn new(config: TimerConfig) -> Self {
        TransactionLayer {
            config,
            txs: HashMap::new(),
            next_seq: 0,
            out: Output::default(),
            last_now: None,
        }
    }

    /// Live transactions (for metrics and tests).
    pub fn transaction_count(&self) -> usize {
        self.txs.len()
    }

    /// Time never runs backwards inside the layer.
    fn clamp(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |last| last.max(now));
        self.last_now = Some(now);
        now
    }

    fn insert(&mut self, key: TransactionKey, tx: Tx) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.txs.insert(key, (seq, tx));
    }

    /// A received message: retransmissions are absorbed, stored responses re-sent.
    pub fn handle_message(&mut self, now: Instant, peer: Peer, msg: SipMessage) {
        let now = self.clamp(now);
        match msg {
            SipMessage::Request(req) => self.handle_request(now, peer, req),
            SipMessage::Response(resp) => self.handle_response(now, resp),
        }
    }

    fn handle_request(&mut self, now: Instant, peer: Peer, req: Request) {
        let Some(key) = TransactionKey::server(&req) else {
            tracing::debug!("request without usable top via dropped");
            return;
        };
        let cfg = self.config;
        if req.method() == Method::Ack {
            if let Some((_, Tx::ServerInvite(tx))) = self.txs.get_mut(&key) {
                let mut ctx = Ctx {
                    cfg: &cfg,
                    key: &key,
                    out: &mut self.out,
                };
                tx.on_ack(now, req, peer, &mut ctx);
                return;
            }
            // An ACK to a 2xx has its own branch: match the Accepted INVITE by Call-ID and CSeq.
            let id = (req.call_id().ok(), req.cseq().ok().map(|(n, _)| n));
            let accepted = self.txs.iter_mut().find_map(|(k, (_, tx))| match tx {
                Tx::ServerInvite(t) if t.awaits_2xx_ack(id.0.as_deref(), id.1) => {
                    Some((k.clone(), t))
                }
                _ => None,
            });
            match accepted {
                Some((k, tx)) => {
                    let mut ctx = Ctx {
                        cfg: &cfg,
                        key: &k,
                        out: &mut self.out,
                    };
                    tx.on_ack(now, req, peer, &mut ctx);
                }
                None => self.out.event(TransactionEvent::Ack { request: req, peer }),
            }
            return;
        }
        if let Some((_, tx)) = self.txs.get_mut(&key) {
            let mut ctx = Ctx {
                cfg: &cfg,
                key: &key,
                out: &mut self.out,
            };
            match tx {
                Tx::ServerInvite(t) => t.on_retransmission(&mut ctx),
                Tx::ServerNonInvite(t) => t.on_retransmission(&mut ctx),
                _ => {}
            }
            return;
        }
        let tx = if key.method == Method::Invite {
            Tx::ServerInvite(ServerInvite::new(req.clone(), peer))
        } else {
            Tx::ServerNonInvite(ServerNonInvite::new(peer))
        };
        self.insert(key.clone(), tx);
        self.out.event(TransactionEvent::Request {
            key,
            request: req,
            peer,
        });
    }

    fn handle_response(&mut self, now: Instant, resp: Response) {
        let (Ok(branch), Ok((_, method))) = (resp.top_via_branch(), resp.cseq()) else {
            tracing::debug!("response without via branch or cseq dropped");
            return;
        };
        let key = TransactionKey::client(branch, method);
        let cfg = self.config;
        let status = match self.txs.get_mut(&key) {
            Some((_, tx)) => {
                let mut ctx = Ctx {
                    cfg: &cfg,
                    key: &key,
                    out: &mut self.out,
                };
                match tx {
                    Tx::ClientInvite(t) => t.on_response(now, resp, &mut ctx),
                    Tx::ClientNonInvite(t) => t.on_response(now, resp, &mut ctx),
                    _ => Status::Alive,
                }
            }
            None => {
                tracing::debug!(branch = key.branch(), "stray response dropped");
                Status::Alive
            }
        };
        if status == Status::Terminated {
            self.txs.remove(&key);
        }
    }

    /// Sends a request and starts its client transaction (an ACK is sent statelessly).
    pub fn send_request(&mut self, now: Instant, peer: Peer, request: Request) -> TransactionKey {
        let now = self.clamp(now);
        let branch = request.top_via_branch().unwrap_or_default();
        let key = TransactionKey::client(branch, request.method());
        let cfg = self.config;
        let mut ctx = Ctx {
            cfg: &cfg,
            key: &key,
            out: &mut self.out,
        };
        let tx = match request.method() {
            Method::Ack => {
                ctx.out.send(peer, request.to_bytes());
                return key;
            }
            Method::Invite => Tx::ClientInvite(ClientInvite::new(now, peer, request, &mut ctx)),
            _ => Tx::ClientNonInvite(ClientNonInvite::new(now, peer, request, &mut ctx)),
        };
        self.insert(key.clone(), tx);
        key
    }

    /// Sends a response on a server transaction (a 2xx to INVITE is re-sent over UDP until ACKed).
    pub fn send_response(&mut self, now: Instant, key: &TransactionKey, response: Response) {
        let now = self.clamp(now);
        let cfg = self.config;
        let Some((_, tx)) = self.txs.get_mut(key) else {
            tracing::debug!(
                branch = key.branch(),
                "response for unknown transaction dropped"
            );
            return;
        };
        let mut ctx = Ctx {
            cfg: &cfg,
            key,
            out: &mut self.out,
        };
        match tx {
            Tx::ServerInvite(t) => t.send_response(now, response, &mut ctx),
            Tx::ServerNonInvite(t) => t.send_response(now, response, &mut ctx),
            _ => tracing::debug!("send_response on a client transaction ignored"),
        }
    }

    /// Sends a message outside any transaction (the ACK for a 2xx).
    pub fn send_stateless(&mut self, peer: Peer, msg: SipMessage) {
        self.out.send(peer, msg.to_bytes());
    }

    /// The server INVITE transaction a received CANCEL targets (RFC 3261 §9.2).
    pub fn matching_invite(&self, cancel: &Request) -> Option<TransactionKey> {
        let mut key = TransactionKey::server(cancel)?;
        key.method = Method::Invite;
        self.txs.contains_key(&key).then_some(key)
    }

    /// Fires every timer due at or before `now`, soonest first.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        let cfg = self.config;
        loop {
            let due = self
                .txs
                .iter()
                .filter_map(|(k, (seq, tx))| tx.next_timer().map(|(_, at)| (at, *seq, k)))
                .filter(|(at, _, _)| *at <= now)
                .min_by_key(|(at, seq, _)| (*at, *seq))
                .map(|(_, _, k)| k.clone());
            let Some(key) = due else { break };
            let status = match self.txs.get_mut(&key) {
                Some((_, tx)) => {
                    let mut ctx = Ctx {
                        cfg: &cfg,
                        key: &key,
                        out: &mut self.out,
                    };
                    tx.fire_due(now, &mut ctx)
                }
                None => Status::Alive,
            };
            if status == Status::Terminated {
                self.txs.remove(&key);
            }
        }
    }

    /// The next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event for the transaction user.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.out.events.pop_front()
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.txs
            .values()
            .filter_map(|(_, tx)| tx.next_timer().map(|(_, at)| at))
            .min()
    }
}
