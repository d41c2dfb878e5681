//! Timers as data: the named deadlines of the ACD and a small table holding them.

use std::time::Instant;

use crate::CallId;

/// A named ACD timer; at most one of each name is armed at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Armed timers with their deadlines; a handful at most, so a vector is enough.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    entries: Vec<(Timer, Instant)>,
}

impl Timers {
    /// Arms `timer` for `at`, replacing an earlier deadline of the same name.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        match self.entries.iter_mut().find(|(t, _)| *t == timer) {
            Some(entry) => entry.1 = at,
            None => self.entries.push((timer, at)),
        }
    }

    /// Disarms `timer`; nothing happens if it is not armed.
    pub(crate) fn cancel(&mut self, timer: Timer) {
        self.entries.retain(|(t, _)| *t != timer);
    }

    /// The soonest deadline, if any timer is armed.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.entries.iter().map(|(_, at)| *at).min()
    }

    /// Removes and returns the earliest timer due at or before `now` (first armed wins a tie).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let (index, _) = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, (_, at))| *at <= now)
            .min_by_key(|(i, (_, at))| (*at, *i))?;
        Some(self.entries.remove(index).0)
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
