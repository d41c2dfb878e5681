//! Timers as data: the named deadlines of the ACD and the heap holding them.

use std::time::Instant;

use deadlines::Deadlines;

use crate::CallId;

/// A named ACD timer; at most one of each name is armed at a time. Deadlines that
/// fall at the same instant fire in this order (ring-outs first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// The offer of this call rings out (the agent did not answer in time).
    RingOut(CallId),
    /// The agent (index) who declined an offer may be offered calls again.
    DeclinePause(usize),
    /// The agent's (index) after-call work ends.
    WrapUpEnd(usize),
    /// The call's wait reaches its queue's next escalation step: more agents may ring.
    Escalate(CallId),
    /// The call has waited its queue's `max_wait`.
    MaxWait(CallId),
}

/// Armed timers with their deadlines: one heap keyed by name ([`deadlines::Deadlines`],
/// the structure the rest of call control uses), so arming, disarming and the next
/// deadline cost O(log n) with a deadline per waiting caller — a vector scanned per
/// poll cost 5 µs an input with 2,000 callers waiting (BENCHMARKS.md, ACD).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    armed: Deadlines<Timer>,
}

impl Timers {
    /// Arms `timer` for `at`, replacing an earlier deadline of the same name.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.armed.set(timer, Some(at));
    }

    /// Disarms `timer`; nothing happens if it is not armed.
    pub(crate) fn cancel(&mut self, timer: Timer) {
        self.armed.set(timer, None);
    }

    /// The soonest deadline, if any timer is armed.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.armed.next()
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        self.armed.pop_due(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_at_deadline_not_before_and_in_deadline_order() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.set(Timer::RingOut(2), t0 + Duration::from_secs(15));
        timers.set(Timer::RingOut(1), t0 + Duration::from_secs(10));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(timers.pop_due(t0 + Duration::from_millis(9_999)), None);
        let late = t0 + Duration::from_secs(20);
        assert_eq!(timers.pop_due(late), Some(Timer::RingOut(1)));
        assert_eq!(timers.pop_due(late), Some(Timer::RingOut(2)));
        assert_eq!(timers.pop_due(late), None);
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn set_replaces_and_cancel_disarms() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.set(Timer::RingOut(1), t0 + Duration::from_secs(5));
        timers.set(Timer::RingOut(1), t0 + Duration::from_secs(7));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(7)));
        timers.set(Timer::DeclinePause(0), t0 + Duration::from_secs(1));
        timers.cancel(Timer::DeclinePause(0));
        timers.cancel(Timer::RingOut(9));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(7)));
    }
}
