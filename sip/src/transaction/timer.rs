//! RFC 3261 §17 / RFC 6026 transaction timers as data: a named timer and its deadline.

use std::time::{Duration, Instant};

/// The timers a transaction can run (RFC 3261 Table 4, RFC 6026 L and M).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Client INVITE: retransmit the INVITE (UDP), interval doubling from T1.
    A,
    /// Client INVITE: give up waiting for any response (64*T1).
    B,
    /// Client INVITE: absorb retransmitted non-2xx finals (≥ 32 s UDP, 0 TCP).
    D,
    /// Client non-INVITE: retransmit the request (UDP), interval doubling to T2.
    E,
    /// Client non-INVITE: give up (64*T1).
    F,
    /// Client non-INVITE: absorb retransmitted finals (T4 UDP, 0 TCP).
    K,
    /// Server INVITE: re-send the final response (UDP), interval doubling to T2;
    /// used for 3xx–6xx in Completed and for the 2xx in Accepted (RFC 3261 §13.3.1.4).
    G,
    /// Server INVITE: give up waiting for the ACK to a non-2xx (64*T1).
    H,
    /// Server INVITE: absorb ACK retransmissions (T4 UDP, 0 TCP).
    I,
    /// Server non-INVITE: absorb request retransmissions (64*T1 UDP, 0 TCP).
    J,
    /// Server INVITE Accepted: stop waiting for the ACK to the 2xx (64*T1).
    L,
    /// Client INVITE Accepted: keep accepting 2xx retransmissions (64*T1).
    M,
    /// Client INVITE Proceeding: give up when no final response comes (RFC 3261
    /// §16.6's Timer C, > 3 min), or 64*T1 after a CANCEL went out (§9.1): a phone
    /// unplugged while ringing never answers the CANCEL nor the INVITE.
    C,
    /// Server transaction: the transaction user gave no final response in time
    /// (a safety net: the transaction answers for it and ends).
    N,
}

const ALL: [Timer; 14] = [
    Timer::A,
    Timer::B,
    Timer::D,
    Timer::E,
    Timer::F,
    Timer::K,
    Timer::G,
    Timer::H,
    Timer::I,
    Timer::J,
    Timer::L,
    Timer::M,
    Timer::C,
    Timer::N,
];

/// Deadlines of one transaction, one slot per timer.
#[derive(Clone, Debug, Default)]
pub(super) struct Timers {
    slots: [Option<Instant>; 14],
}

impl Timers {
    fn slot(timer: Timer) -> usize {
        ALL.iter().position(|t| *t == timer).unwrap_or(0)
    }

    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        if let Some(s) = self.slots.get_mut(Self::slot(timer)) {
            *s = Some(at);
        }
    }

    pub(super) fn set_after(&mut self, timer: Timer, now: Instant, after: Duration) {
        self.set(timer, now + after);
    }

    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots.get(Self::slot(timer)).copied().flatten()
    }

    pub(super) fn cancel(&mut self, timer: Timer) {
        if let Some(s) = self.slots.get_mut(Self::slot(timer)) {
            *s = None;
        }
    }

    /// The soonest timer; ties go to the earlier one in RFC order.
    pub(super) fn next(&self) -> Option<(Timer, Instant)> {
        ALL.iter()
            .zip(self.slots.iter())
            .filter_map(|(t, at)| at.map(|at| (*t, at)))
            .min_by_key(|(_, at)| *at)
    }

    /// Clears and returns the soonest timer due at or before `now`.
    pub(super) fn take_due(&mut self, now: Instant) -> Option<Timer> {
        let (timer, at) = self.next()?;
        if at > now {
            return None;
        }
        self.cancel(timer);
        Some(timer)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn soonest_first_and_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set_after(Timer::B, t0, Duration::from_secs(32));
        t.set_after(Timer::A, t0, Duration::from_millis(500));
        assert_eq!(t.next(), Some((Timer::A, t0 + Duration::from_millis(500))));
        assert_eq!(t.take_due(t0), None);
        assert_eq!(t.take_due(t0 + Duration::from_secs(40)), Some(Timer::A));
        assert_eq!(t.take_due(t0 + Duration::from_secs(40)), Some(Timer::B));
        assert_eq!(t.take_due(t0 + Duration::from_secs(40)), None);
        t.set(Timer::M, t0);
        t.cancel(Timer::M);
        assert_eq!(t.next(), None);
    }
}
