//! Client non-INVITE transaction (RFC 3261 §17.1.2): Trying → Proceeding → Completed.

use std::time::{Duration, Instant};

use super::timer::{Timer, Timers};
use super::{Ctx, Status, TransactionEvent};
use crate::message::{Request, Response};
use crate::transport::Peer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
}

#[derive(Debug)]
pub(super) struct ClientNonInvite {
    state: State,
    bytes: Vec<u8>,
    peer: Peer,
    e_interval: Duration,
    pub(super) timers: Timers,
}

impl ClientNonInvite {
    /// Sends the request and starts Timers E (UDP) and F.
    pub(super) fn new(now: Instant, peer: Peer, request: Request, ctx: &mut Ctx<'_>) -> Self {
        let bytes = request.to_bytes();
        ctx.out.send(peer, bytes.clone());
        let mut timers = Timers::default();
        if !peer.transport.is_reliable() {
            timers.set_after(Timer::E, now, ctx.cfg.t1);
        }
        timers.set_after(Timer::F, now, ctx.cfg.t1x64());
        ClientNonInvite {
            state: State::Trying,
            bytes,
            peer,
            e_interval: ctx.cfg.t1,
            timers,
        }
    }

    pub(super) fn on_response(
        &mut self,
        now: Instant,
        resp: Response,
        ctx: &mut Ctx<'_>,
    ) -> Status {
        match (self.state, resp.status()) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                ctx.out.event(TransactionEvent::Response {
                    key: ctx.key.clone(),
                    response: resp,
                });
            }
            (State::Trying | State::Proceeding, _) => {
                self.state = State::Completed;
                self.timers.cancel(Timer::E);
                self.timers.cancel(Timer::F);
                let k = if self.peer.transport.is_reliable() {
                    Duration::ZERO
                } else {
                    ctx.cfg.t4
                };
                self.timers.set_after(Timer::K, now, k);
                ctx.out.event(TransactionEvent::Response {
                    key: ctx.key.clone(),
                    response: resp,
                });
            }
            (State::Completed, _) => {}
        }
        Status::Alive
    }

    pub(super) fn on_timer(&mut self, timer: Timer, now: Instant, ctx: &mut Ctx<'_>) -> Status {
        match (timer, self.state) {
            (Timer::E, State::Trying | State::Proceeding) => {
                ctx.out.send(self.peer, self.bytes.clone());
                self.e_interval = match self.state {
                    State::Trying => (self.e_interval * 2).min(ctx.cfg.t2),
                    _ => ctx.cfg.t2,
                };
                self.timers.set_after(Timer::E, now, self.e_interval);
                Status::Alive
            }
            (Timer::F, State::Trying | State::Proceeding) => {
                ctx.out.event(TransactionEvent::Timeout {
                    key: ctx.key.clone(),
                });
                Status::Terminated
            }
            (Timer::K, _) => Status::Terminated,
            _ => Status::Alive,
        }
    }
}
