//! Server INVITE transaction (RFC 3261 §17.2.1, RFC 6026 §7.1).
//!
//! Proceeding --300-699--> Completed (Timers G, H) --ACK--> Confirmed (Timer I)
//!      \--2xx--> Accepted (2xx re-sent on Timer G over UDP until the ACK; Timer L)
//! 100 Trying is the TU's job; a retransmitted INVITE gets the last response again.
//! Timer N: a TU that gives no final response in time gets a 408 sent for it.
//! Once the 2xx is ACKed, the transaction lingers only T4 (UDP) to absorb strays.

use std::time::{Duration, Instant};

use super::TimerConfig;
use super::timer::{Timer, Timers};
use super::{Ctx, Status, TransactionEvent};
use crate::message::{Request, Response, response_to};
use crate::transport::Peer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
}

#[derive(Debug)]
pub(super) struct ServerInvite {
    state: State,
    call_id: Option<String>,
    cseq: Option<u32>,
    peer: Peer,
    /// The INVITE, kept until a final response is sent (Timer N answers it).
    invite: Option<Request>,
    last_response: Option<Vec<u8>>,
    g_interval: Duration,
    acked: bool,
    pub(super) timers: Timers,
}

impl ServerInvite {
    pub(super) fn new(now: Instant, invite: Request, peer: Peer, cfg: &TimerConfig) -> Self {
        let mut timers = Timers::default();
        timers.set_after(Timer::N, now, cfg.timer_n);
        ServerInvite {
            state: State::Proceeding,
            call_id: invite.call_id().ok(),
            cseq: invite.cseq().ok().map(|(n, _)| n),
            peer,
            invite: Some(invite),
            last_response: None,
            g_interval: Duration::ZERO,
            acked: false,
            timers,
        }
    }

    /// (Call-ID, CSeq) while this transaction is Accepted: the ACK to its 2xx
    /// goes up once, and its retransmissions are absorbed.
    pub(super) fn awaited_ack_id(&self) -> Option<(String, u32)> {
        if self.state != State::Accepted {
            return None;
        }
        Some((self.call_id.clone()?, self.cseq?))
    }

    /// The INVITE came again: re-send the last provisional or final response
    /// (absorbed once the final is ACKed, RFC 6026 §7.1).
    pub(super) fn on_retransmission(&mut self, ctx: &mut Ctx<'_>) {
        if self.state == State::Confirmed || self.acked {
            return;
        }
        if let Some(bytes) = &self.last_response {
            ctx.out.send(self.peer, bytes.clone());
        }
    }

    pub(super) fn send_response(&mut self, now: Instant, resp: Response, ctx: &mut Ctx<'_>) {
        let status = resp.status();
        let allowed = match self.state {
            State::Proceeding => true,
            // The TU may re-send its 2xx itself; keep it as the one we retransmit.
            State::Accepted => (200..300).contains(&status),
            State::Completed | State::Confirmed => false,
        };
        if !allowed {
            tracing::debug!(status, "response on finished server invite ignored");
            return;
        }
        let bytes = resp.to_bytes();
        ctx.out.send(self.peer, bytes.clone());
        self.last_response = Some(bytes);
        if status < 200 || self.state == State::Accepted {
            return;
        }
        self.invite = None;
        self.timers.cancel(Timer::N);
        let udp = !self.peer.transport.is_reliable();
        if udp {
            self.g_interval = ctx.cfg.t1;
            self.timers.set_after(Timer::G, now, self.g_interval);
        }
        if status < 300 {
            self.state = State::Accepted;
            self.timers.set_after(Timer::L, now, ctx.cfg.t1x64());
        } else {
            self.state = State::Completed;
            self.timers.set_after(Timer::H, now, ctx.cfg.t1x64());
        }
    }

    /// An ACK for this INVITE: for a non-2xx it confirms; for the 2xx it goes up once.
    pub(super) fn on_ack(&mut self, now: Instant, request: Request, peer: Peer, ctx: &mut Ctx<'_>) {
        match self.state {
            State::Completed => {
                self.state = State::Confirmed;
                self.timers.cancel(Timer::G);
                self.timers.cancel(Timer::H);
                let i = if self.peer.transport.is_reliable() {
                    Duration::ZERO
                } else {
                    ctx.cfg.t4
                };
                self.timers.set_after(Timer::I, now, i);
            }
            State::Accepted if !self.acked => {
                self.acked = true;
                self.timers.cancel(Timer::G);
                // Nothing more can come but strays: linger T4 on UDP, not 64*T1.
                let linger = if self.peer.transport.is_reliable() {
                    Duration::ZERO
                } else {
                    ctx.cfg.t4
                };
                self.timers.set_after(Timer::L, now, linger);
                ctx.out.event(TransactionEvent::Ack { request, peer });
            }
            _ => {}
        }
    }

    pub(super) fn on_timer(&mut self, timer: Timer, now: Instant, ctx: &mut Ctx<'_>) -> Status {
        match timer {
            Timer::G if matches!(self.state, State::Completed | State::Accepted) && !self.acked => {
                if let Some(bytes) = &self.last_response {
                    ctx.out.send(self.peer, bytes.clone());
                }
                self.g_interval = (self.g_interval * 2).min(ctx.cfg.t2);
                self.timers.set_after(Timer::G, now, self.g_interval);
                Status::Alive
            }
            Timer::H if self.state == State::Completed => {
                ctx.out.event(TransactionEvent::Timeout {
                    key: ctx.key.clone(),
                });
                Status::Terminated
            }
            Timer::L => {
                if !self.acked {
                    ctx.out.event(TransactionEvent::Timeout {
                        key: ctx.key.clone(),
                    });
                }
                Status::Terminated
            }
            Timer::I => Status::Terminated,
            Timer::N if self.state == State::Proceeding => {
                tracing::warn!("no final response to an INVITE in time: answering 408");
                if let Some(invite) = self.invite.take() {
                    let timeout = response_to(&invite, 408, "Request Timeout", None);
                    self.send_response(now, timeout, ctx);
                }
                ctx.out.event(TransactionEvent::Timeout {
                    key: ctx.key.clone(),
                });
                if self.state == State::Proceeding {
                    Status::Terminated
                } else {
                    Status::Alive
                }
            }
            _ => Status::Alive,
        }
    }
}
