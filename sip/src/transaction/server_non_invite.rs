//! Server non-INVITE transaction (RFC 3261 §17.2.2): Trying → Proceeding → Completed (Timer J).
//! Timer N (64*T1, when the client has given up): a TU that never answered ends it.

use std::time::{Duration, Instant};

use super::timer::{Timer, Timers};
use super::{Ctx, Status, TimerConfig, TransactionEvent};
use crate::message::Response;
use crate::transport::Peer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
}

#[derive(Debug)]
pub(super) struct ServerNonInvite {
    state: State,
    peer: Peer,
    last_response: Option<Vec<u8>>,
    pub(super) timers: Timers,
}

impl ServerNonInvite {
    pub(super) fn new(now: Instant, peer: Peer, cfg: &TimerConfig) -> Self {
        let mut timers = Timers::default();
        timers.set_after(Timer::N, now, cfg.t1x64());
        ServerNonInvite {
            state: State::Trying,
            peer,
            last_response: None,
            timers,
        }
    }

    /// The request came again: absorbed in Trying, else the last response is re-sent.
    pub(super) fn on_retransmission(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(bytes) = &self.last_response {
            ctx.out.send(self.peer, bytes.clone());
        }
    }

    pub(super) fn send_response(&mut self, now: Instant, resp: Response, ctx: &mut Ctx<'_>) {
        if self.state == State::Completed {
            tracing::debug!("response after final on server non-invite ignored");
            return;
        }
        let bytes = resp.to_bytes();
        ctx.out.send(self.peer, bytes.clone());
        self.last_response = Some(bytes);
        if resp.status() < 200 {
            self.state = State::Proceeding;
            return;
        }
        self.state = State::Completed;
        self.timers.cancel(Timer::N);
        let j = if self.peer.transport.is_reliable() {
            Duration::ZERO
        } else {
            ctx.cfg.t1x64()
        };
        self.timers.set_after(Timer::J, now, j);
    }

    pub(super) fn on_timer(&mut self, timer: Timer, _now: Instant, ctx: &mut Ctx<'_>) -> Status {
        match timer {
            Timer::J => Status::Terminated,
            Timer::N if self.state != State::Completed => {
                ctx.out.event(TransactionEvent::Timeout {
                    key: ctx.key.clone(),
                });
                Status::Terminated
            }
            _ => Status::Alive,
        }
    }
}
