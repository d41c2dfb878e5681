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

use deadlines::Deadlines;
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
    /// Timer C: how long a client INVITE waits for a final response once a
    /// provisional came (3 min); 64*T1 once a CANCEL went out.
    pub timer_c: Duration,
    /// Timer N: how long a server INVITE waits for the transaction user's final
    /// response before answering 408 itself (3 min). Server non-INVITEs wait 64*T1.
    pub timer_n: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(180),
            timer_n: Duration::from_secs(180),
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

/// One live transaction.
#[derive(Debug)]
struct Entry {
    key: TransactionKey,
    tx: Tx,
    /// Call-ID and CSeq of an Accepted server INVITE awaiting its ACK.
    ack_id: Option<(String, u32)>,
}

/// The endpoint's transaction layer: messages and time in, transmits and events out.
///
/// Lookups are O(1): by key (an index), by id, and the ACK to a 2xx by Call-ID and CSeq.
/// Every transaction's soonest deadline sits in one [`Deadlines`] heap, so
/// `poll_timeout` is O(1) and each timer costs O(log n).
#[derive(Debug)]
pub struct TransactionLayer {
    config: TimerConfig,
    /// Transactions by id; ids grow with creation (deterministic tie-breaks).
    txs: HashMap<u64, Entry>,
    index: HashMap<TransactionKey, u64>,
    /// Accepted server INVITEs by (Call-ID, CSeq): where an ACK to a 2xx goes.
    awaiting_ack: HashMap<(String, u32), u64>,
    /// Each transaction's soonest timer, by id.
    deadlines: Deadlines<u64>,
    next_id: u64,
    out: Output,
    last_now: Option<Instant>,
}

impl TransactionLayer {
    /// An empty layer with these timer values.
    pub fn new(config: TimerConfig) -> Self {
        TransactionLayer {
            config,
            txs: HashMap::new(),
            index: HashMap::new(),
            awaiting_ack: HashMap::new(),
            deadlines: Deadlines::default(),
            next_id: 0,
            out: Output::default(),
            last_now: None,
        }
    }

    /// Live transactions (for metrics and tests).
    pub fn transaction_count(&self) -> usize {
        self.txs.len()
    }

    /// Entries in the timer heap, stale ones included (for metrics and tests).
    pub fn timer_count(&self) -> usize {
        self.deadlines.entries()
    }

    /// Time never runs backwards inside the layer.
    fn clamp(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |last| last.max(now));
        self.last_now = Some(now);
        now
    }

    fn insert(&mut self, key: TransactionKey, tx: Tx) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.index.insert(key.clone(), id);
        self.txs.insert(
            id,
            Entry {
                key,
                tx,
                ack_id: None,
            },
        );
        self.rearm(id);
        id
    }

    /// Brings the heap up to date with transaction `id`'s soonest timer, and
    /// keeps the ACK index in step with its state.
    fn rearm(&mut self, id: u64) {
        let Some(entry) = self.txs.get_mut(&id) else {
            return;
        };
        self.deadlines
            .set(id, entry.tx.next_timer().map(|(_, at)| at));
        let ack_id = match &entry.tx {
            Tx::ServerInvite(t) => t.awaited_ack_id(),
            _ => None,
        };
        if ack_id != entry.ack_id {
            if let Some(old) = entry.ack_id.take() {
                self.awaiting_ack.remove(&old);
            }
            if let Some(new) = ack_id.clone() {
                self.awaiting_ack.insert(new, id);
            }
            entry.ack_id = ack_id;
        }
    }

    fn remove(&mut self, id: u64) {
        self.deadlines.set(id, None);
        if let Some(mut entry) = self.txs.remove(&id) {
            self.index.remove(&entry.key);
            if let Some(ack_id) = entry.ack_id {
                self.awaiting_ack.remove(&ack_id);
            }
            // An INVITE that ended with its CANCEL still held: that CANCEL ends unsent.
            if let Tx::ClientInvite(t) = &mut entry.tx
                && let Some(key) = t.held_cancel_key()
            {
                self.out.event(TransactionEvent::Timeout { key });
            }
        }
    }

    /// After a transaction handled an input: forget it, or re-arm its timer.
    fn settle(&mut self, id: u64, status: Status) {
        match status {
            Status::Terminated => self.remove(id),
            Status::Alive => self.rearm(id),
        }
    }

    fn ctx_parts(&mut self, id: u64) -> Option<(&mut Tx, Ctx<'_>)> {
        let entry = self.txs.get_mut(&id)?;
        Some((
            &mut entry.tx,
            Ctx {
                cfg: &self.config,
                key: &entry.key,
                out: &mut self.out,
            },
        ))
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
        if req.method() == Method::Ack {
            // An ACK to a non-2xx has the INVITE's branch; an ACK to a 2xx has its own
            // and is matched to the Accepted INVITE by Call-ID and CSeq.
            let target = self.index.get(&key).copied().or_else(|| {
                let call_id = req.call_id().ok()?;
                let (cseq, _) = req.cseq().ok()?;
                self.awaiting_ack.get(&(call_id, cseq)).copied()
            });
            let tx = target.and_then(|id| Some((id, self.ctx_parts(id)?)));
            match tx {
                Some((id, (Tx::ServerInvite(t), mut ctx))) => {
                    t.on_ack(now, req, peer, &mut ctx);
                    self.settle(id, Status::Alive);
                }
                _ => self.out.event(TransactionEvent::Ack { request: req, peer }),
            }
            return;
        }
        if let Some(id) = self.index.get(&key).copied() {
            if let Some((tx, mut ctx)) = self.ctx_parts(id) {
                match tx {
                    Tx::ServerInvite(t) => t.on_retransmission(&mut ctx),
                    Tx::ServerNonInvite(t) => t.on_retransmission(&mut ctx),
                    _ => {}
                }
            }
            return;
        }
        let tx = if key.method == Method::Invite {
            Tx::ServerInvite(ServerInvite::new(now, req.clone(), peer, &self.config))
        } else {
            Tx::ServerNonInvite(ServerNonInvite::new(now, peer, &self.config))
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
        let Some(id) = self.index.get(&key).copied() else {
            tracing::debug!(branch = key.branch(), "stray response dropped");
            return;
        };
        let mut held = None;
        let status = match self.ctx_parts(id) {
            Some((Tx::ClientInvite(t), mut ctx)) => {
                let status = t.on_response(now, resp, &mut ctx);
                held = t.take_held_cancel();
                status
            }
            Some((Tx::ClientNonInvite(t), mut ctx)) => t.on_response(now, resp, &mut ctx),
            _ => Status::Alive,
        };
        self.settle(id, status);
        match held {
            Some(client_invite::HeldCancel::Send(peer, cancel)) => {
                self.send_request(now, peer, cancel);
            }
            Some(client_invite::HeldCancel::Drop(key)) => {
                self.out.event(TransactionEvent::Timeout { key });
            }
            None => {}
        }
    }

    /// Sends a request and starts its client transaction (an ACK is sent statelessly).
    ///
    /// A CANCEL also bounds the INVITE it cancels: without a final response
    /// within 64*T1 that INVITE ends with a `Timeout` (RFC 3261 §9.1). A CANCEL for an
    /// INVITE that has had no provisional response yet is held until one comes; if a
    /// final response (or Timer B) comes first, nothing is sent and the CANCEL's key ends
    /// with a `Timeout`.
    pub fn send_request(&mut self, now: Instant, peer: Peer, request: Request) -> TransactionKey {
        let now = self.clamp(now);
        let branch = request.top_via_branch().unwrap_or_default();
        let method = request.method();
        let key = TransactionKey::client(branch, method.clone());
        if method == Method::Ack {
            self.out.send(peer, request.to_bytes());
            return key;
        }
        if method == Method::Cancel {
            let invite = TransactionKey::client(key.branch.clone(), Method::Invite);
            if let Some(id) = self.index.get(&invite).copied() {
                let mut held = false;
                if let Some((Tx::ClientInvite(t), ctx)) = self.ctx_parts(id) {
                    t.cancel_sent(now, ctx.cfg);
                    // Not before a provisional response (RFC 3261 §9.1): it waits for one.
                    if t.awaiting_provisional() {
                        t.hold_cancel(peer, request.clone(), key.clone());
                        held = true;
                    }
                }
                self.rearm(id);
                if held {
                    return key;
                }
            }
        }
        let mut ctx = Ctx {
            cfg: &self.config,
            key: &key,
            out: &mut self.out,
        };
        let tx = match method {
            Method::Invite => Tx::ClientInvite(ClientInvite::new(now, peer, request, &mut ctx)),
            _ => Tx::ClientNonInvite(ClientNonInvite::new(now, peer, request, &mut ctx)),
        };
        if let Some(old) = self.index.get(&key).copied() {
            // The same branch again replaces the old transaction.
            self.remove(old);
        }
        self.insert(key.clone(), tx);
        key
    }

    /// Sends a response on a server transaction (a 2xx to INVITE is re-sent over UDP until ACKed).
    pub fn send_response(&mut self, now: Instant, key: &TransactionKey, response: Response) {
        let now = self.clamp(now);
        let Some(id) = self.index.get(key).copied() else {
            tracing::debug!(
                branch = key.branch(),
                "response for unknown transaction dropped"
            );
            return;
        };
        match self.ctx_parts(id) {
            Some((Tx::ServerInvite(t), mut ctx)) => t.send_response(now, response, &mut ctx),
            Some((Tx::ServerNonInvite(t), mut ctx)) => t.send_response(now, response, &mut ctx),
            _ => tracing::debug!("send_response on a client transaction ignored"),
        }
        self.settle(id, Status::Alive);
    }

    /// Sends a message outside any transaction (the ACK for a 2xx).
    pub fn send_stateless(&mut self, peer: Peer, msg: SipMessage) {
        self.out.send(peer, msg.to_bytes());
    }

    /// The server INVITE transaction a received CANCEL targets (RFC 3261 §9.2).
    pub fn matching_invite(&self, cancel: &Request) -> Option<TransactionKey> {
        let mut key = TransactionKey::server(cancel)?;
        key.method = Method::Invite;
        self.index.contains_key(&key).then_some(key)
    }

    /// Fires every timer due at or before `now`, soonest first (ties in creation order).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        // Bounded: each transaction fires at most a few timers per call; the
        // bound only guards against a state machine that re-arms in the past.
        for _ in 0..16 * self.txs.len() + 16 {
            let Some(id) = self.deadlines.pop_due(now) else {
                break;
            };
            let status = match self.ctx_parts(id) {
                Some((tx, mut ctx)) => tx.fire_due(now, &mut ctx),
                None => Status::Alive,
            };
            self.settle(id, status);
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

    /// When `handle_timeout` should next be called: O(1), the top of the heap.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.next()
    }
}
