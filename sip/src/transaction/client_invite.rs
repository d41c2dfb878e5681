//! Client INVITE transaction (RFC 3261 §17.1.1, RFC 6026 §7.2).
//!
//! Calling --1xx--> Proceeding --300-699--> Completed (ACK sent here, Timer D)
//!    \__________________\______2xx_______> Accepted (Timer M; 2xx retransmissions go up)
//! Proceeding without a final ends on Timer C (3 min, or 64*T1 after a CANCEL).

use std::time::{Duration, Instant};

use super::timer::{Timer, Timers};
use super::{Ctx, Status, TimerConfig, TransactionEvent};
use crate::message::{Request, Response, ack_for_non_2xx};
use crate::transport::Peer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Calling,
    Proceeding,
    Completed,
    Accepted,
}

#[derive(Debug)]
pub(super) struct ClientInvite {
    state: State,
    request: Request,
    bytes: Vec<u8>,
    peer: Peer,
    a_interval: Duration,
    ack: Option<Vec<u8>>,
    cancelled: bool,
    /// A CANCEL asked for before any provisional response: it may not be sent until one
    /// comes (RFC 3261 §9.1), and is dropped if a final response comes first.
    held_cancel: Option<Box<(Peer, Request, super::TransactionKey)>>,
    pub(super) timers: Timers,
}

/// What becomes of a held CANCEL after a response.
#[derive(Debug)]
pub(super) enum HeldCancel {
    /// A provisional came: send it now.
    Send(Peer, Request),
    /// A final came first: nothing to cancel; its transaction ends unsent.
    Drop(super::TransactionKey),
}

impl ClientInvite {
    /// Sends the INVITE and starts Timers A (UDP) and B.
    pub(super) fn new(now: Instant, peer: Peer, request: Request, ctx: &mut Ctx<'_>) -> Self {
        let bytes = request.to_bytes();
        ctx.out.send(peer, bytes.clone());
        let mut timers = Timers::default();
        if !peer.transport.is_reliable() {
            timers.set_after(Timer::A, now, ctx.cfg.t1);
        }
        timers.set_after(Timer::B, now, ctx.cfg.t1x64());
        ClientInvite {
            state: State::Calling,
            request,
            bytes,
            peer,
            a_interval: ctx.cfg.t1,
            ack: None,
            cancelled: false,
            held_cancel: None,
            timers,
        }
    }

    /// Whether no response came yet (a CANCEL must wait for a provisional).
    pub(super) fn awaiting_provisional(&self) -> bool {
        self.state == State::Calling
    }

    /// Keeps a CANCEL until a provisional response comes.
    pub(super) fn hold_cancel(&mut self, peer: Peer, cancel: Request, key: super::TransactionKey) {
        self.held_cancel = Some(Box::new((peer, cancel, key)));
    }

    /// The held CANCEL, once a response decided its fate.
    pub(super) fn take_held_cancel(&mut self) -> Option<HeldCancel> {
        match self.state {
            State::Calling => None,
            State::Proceeding => self
                .held_cancel
                .take()
                .map(|held| HeldCancel::Send(held.0, held.1)),
            State::Completed | State::Accepted => {
                self.held_cancel.take().map(|held| HeldCancel::Drop(held.2))
            }
        }
    }

    /// The held CANCEL's key, when the INVITE ends with it still held (Timer B).
    pub(super) fn held_cancel_key(&mut self) -> Option<super::TransactionKey> {
        self.held_cancel.take().map(|held| held.2)
    }

    /// A CANCEL for this INVITE went out: without a final response within
    /// 64*T1 the transaction is over (RFC 3261 §9.1).
    pub(super) fn cancel_sent(&mut self, now: Instant, cfg: &TimerConfig) {
        if matches!(self.state, State::Calling | State::Proceeding) {
            self.cancelled = true;
            let at = now + cfg.t1x64();
            let sooner = self
                .timers
                .get(Timer::C)
                .map_or(at, |existing| existing.min(at));
            self.timers.set(Timer::C, sooner);
        }
    }

    pub(super) fn on_response(
        &mut self,
        now: Instant,
        resp: Response,
        ctx: &mut Ctx<'_>,
    ) -> Status {
        let status = resp.status();
        match (self.state, status) {
            (State::Calling | State::Proceeding, 100..=199) => {
                if !self.cancelled {
                    self.timers.set_after(Timer::C, now, ctx.cfg.timer_c);
                }
                self.state = State::Proceeding;
                self.timers.cancel(Timer::A);
                self.timers.cancel(Timer::B);
                self.deliver(resp, ctx);
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                self.state = State::Accepted;
                self.timers.cancel(Timer::A);
                self.timers.cancel(Timer::B);
                self.timers.cancel(Timer::C);
                self.timers.set_after(Timer::M, now, ctx.cfg.t1x64());
                self.deliver(resp, ctx);
            }
            (State::Accepted, 200..=299) => self.deliver(resp, ctx),
            (State::Calling | State::Proceeding, _) if status >= 300 => {
                self.state = State::Completed;
                self.timers.cancel(Timer::A);
                self.timers.cancel(Timer::B);
                self.timers.cancel(Timer::C);
                let ack = ack_for_non_2xx(&self.request, &resp).to_bytes();
                ctx.out.send(self.peer, ack.clone());
                self.ack = Some(ack);
                let d = if self.peer.transport.is_reliable() {
                    Duration::ZERO
                } else {
                    Duration::from_secs(32).max(ctx.cfg.t1x64())
                };
                self.timers.set_after(Timer::D, now, d);
                self.deliver(resp, ctx);
            }
            (State::Completed, 300..) => {
                if let Some(ack) = &self.ack {
                    ctx.out.send(self.peer, ack.clone());
                }
            }
            _ => {}
        }
        Status::Alive
    }

    fn deliver(&self, response: Response, ctx: &mut Ctx<'_>) {
        ctx.out.event(TransactionEvent::Response {
            key: ctx.key.clone(),
            response,
        });
    }

    pub(super) fn on_timer(&mut self, timer: Timer, now: Instant, ctx: &mut Ctx<'_>) -> Status {
        match timer {
            Timer::A if self.state == State::Calling => {
                ctx.out.send(self.peer, self.bytes.clone());
                self.a_interval *= 2;
                self.timers.set_after(Timer::A, now, self.a_interval);
                Status::Alive
            }
            Timer::B if self.state == State::Calling => {
                ctx.out.event(TransactionEvent::Timeout {
                    key: ctx.key.clone(),
                });
                Status::Terminated
            }
            Timer::C if matches!(self.state, State::Calling | State::Proceeding) => {
                ctx.out.event(TransactionEvent::Timeout {
                    key: ctx.key.clone(),
                });
                Status::Terminated
            }
            Timer::D | Timer::M => Status::Terminated,
            _ => Status::Alive,
        }
    }
}
