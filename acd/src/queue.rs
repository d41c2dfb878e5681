//! A queue: its configuration and its waiting callers in arrival order.

use std::time::{Duration, Instant};

use crate::strategy::Strategy;
use crate::{AgentId, CallId};

/// How one queue is served: its priority against other queues and how long an agent's phone rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The queue's name, as routed to by the IVR (`queue:NAME`).
    pub name: String,
    /// Higher goes first across queues; equal priority is first come, first served.
    pub priority: i32,
    /// How long an offer rings before it rings out (`answer_within_rings × ring_cycle_ms`).
    pub ring_timeout: Duration,
    /// After-call work once a call of this queue ends: the agent is offered nothing, from
    /// any queue, for this long (zero: free at once).
    pub wrap_up: Duration,
    /// How the queue picks among its free agents.
    pub strategy: Strategy,
    /// Escalation, like app_queue's penalty rules: `(wait, highest level)` steps in order of
    /// wait; a caller who has waited at least `wait` may ring agents up to that level. Empty:
    /// every level may ring at once (lower levels still first).
    pub escalation: Vec<(Duration, u32)>,
    /// A caller who has waited this long in the queue leaves it for `overflow` (a phone
    /// ringing for them then rings to its end first).
    pub max_wait: Option<Duration>,
    /// A caller arriving when this many wait goes straight to `overflow`.
    pub max_callers: Option<usize>,
    /// When nobody will come: callers leave (and newcomers skip) the queue for `overflow`.
    pub leave_when: LeaveWhen,
    /// Where callers go when a rule above sends them out.
    pub overflow: Overflow,
}

/// When a queue is given up on because nobody can answer it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LeaveWhen {
    /// Callers wait whoever is there (the default).
    #[default]
    Never,
    /// No agent of the queue is logged in.
    NoneLoggedIn,
    /// No agent of the queue is ready or on a call (all logged out or not ready).
    NoneReady,
}

/// Where a caller sent out of a queue goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Call control ends the call (after whatever it plays).
    #[default]
    Hangup,
    /// Into another queue, keeping the wait and seniority of the first.
    Queue(String),
    /// The caller is called back: told so and let go, it keeps its place in this queue.
    Callback,
    /// The caller leaves a message (call control records it), then is called back in
    /// its place: to the ACD the wait ends as with `Hangup` (`Exited`).
    Voicemail,
}

/// Why a caller was sent out of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// Waited `max_wait`.
    Timeout,
    /// The queue held `max_callers`.
    Full,
    /// `leave_when`: nobody can answer.
    NoAgents,
    /// The caller pressed the queue's exit key.
    Key,
}

impl QueueConfig {
    /// Builds a queue config from the config file's `answer_within_rings` and `ring_cycle_ms`.
    pub fn from_rings(
        name: impl Into<String>,
        priority: i32,
        answer_within_rings: u32,
        ring_cycle_ms: u64,
    ) -> Self {
        let ms = ring_cycle_ms.saturating_mul(u64::from(answer_within_rings));
        QueueConfig {
            name: name.into(),
            priority,
            ring_timeout: Duration::from_millis(ms),
            wrap_up: Duration::ZERO,
            strategy: Strategy::LongestIdle,
            escalation: Vec::new(),
            max_wait: None,
            max_callers: None,
            leave_when: LeaveWhen::Never,
            overflow: Overflow::Hangup,
        }
    }

    /// The same queue sending callers to `overflow` after `max_wait`, beyond `max_callers`
    /// and when `leave_when` holds.
    #[must_use]
    pub fn with_overflow(
        mut self,
        overflow: Overflow,
        max_wait: Option<Duration>,
        max_callers: Option<usize>,
        leave_when: LeaveWhen,
    ) -> Self {
        self.overflow = overflow;
        self.max_wait = max_wait;
        self.max_callers = max_callers;
        self.leave_when = leave_when;
        self
    }

    /// The same queue choosing agents by `strategy`.
    #[must_use]
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The same queue with escalation steps `(wait, highest level)`.
    #[must_use]
    pub fn with_escalation(mut self, steps: Vec<(Duration, u32)>) -> Self {
        self.escalation = steps;
        self
    }

    /// The highest agent level a caller who has waited `waited` may ring.
    pub fn max_level(&self, waited: Duration) -> u32 {
        if self.escalation.is_empty() {
            return u32::MAX;
        }
        self.escalation
            .iter()
            .take_while(|(after, _)| *after <= waited)
            .last()
            .map_or(0, |(_, level)| *level)
    }

    /// The wait at which the next escalation step after `waited` widens the agents.
    pub fn next_escalation(&self, waited: Duration) -> Option<Duration> {
        self.escalation
            .iter()
            .map(|(after, _)| *after)
            .find(|after| *after > waited)
    }

    /// The same queue with `wrap_up` of after-call work.
    #[must_use]
    pub fn with_wrap_up(mut self, wrap_up: Duration) -> Self {
        self.wrap_up = wrap_up;
        self
    }
}

/// One waiting caller as shown to ops: who, how long, and which agent is ringing for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerView {
    /// The call.
    pub call: CallId,
    /// Time since `enqueue`; an offer that rang out does not reset it.
    pub waited: Duration,
    /// The agent whose phone is ringing for this caller, if any (under ring-all, the
    /// first of those ringing; `ringing` has them all).
    pub offered_to: Option<AgentId>,
    /// Every agent whose phone rings for this caller.
    pub ringing: Vec<AgentId>,
    /// A callback: the patient is not on the line and is dialled when an agent answers.
    pub callback: bool,
    /// A callback not offered yet: call control is still letting its line go.
    pub parked: bool,
}

/// A caller in a queue (waiting, or being offered to one agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub(crate) call: CallId,
    pub(crate) enqueued_at: Instant,
    /// ACD-wide arrival number: breaks ties between callers enqueued at the same instant.
    pub(crate) seq: u64,
    /// Indices of the agents whose phones ring for this caller (several under ring-all).
    pub(crate) ringing: Vec<usize>,
    /// The caller's `max_wait` passed while a phone rang: it leaves when that ring ends.
    pub(crate) overdue: bool,
    /// This wait began with a transfer (the patient was answered before).
    pub(crate) transferred: bool,
    /// The agent who transferred the caller here: not rung for it again while another
    /// agent serves the queue.
    pub(crate) handed_by: Option<usize>,
    /// A callback: the patient left the line keeping this place (no max wait, no leave
    /// rules, not counted against `max_callers`).
    pub(crate) callback: bool,
    /// A callback whose line call control has not let go yet: kept in place, offered to
    /// nobody until [`crate::Acd::callback_ready`].
    pub(crate) parked: bool,
}

impl Caller {
    /// Whether it can be offered now: no phone rings for it and it is not parked.
    pub(crate) fn offerable(&self) -> bool {
        self.ringing.is_empty() && !self.parked
    }
}

/// A configured queue and its callers, oldest first.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) config: QueueConfig,
    callers: Vec<Caller>,
}

impl Queue {
    pub(crate) fn new(config: QueueConfig) -> Self {
        Queue {
            config,
            callers: Vec::new(),
        }
    }

    /// Appends a caller; the ACD's clock never goes backwards, so this keeps arrival order.
    pub(crate) fn push(&mut self, call: CallId, now: Instant, seq: u64, transferred: bool) {
        self.callers.push(Caller {
            call,
            enqueued_at: now,
            seq,
            ringing: Vec::new(),
            overdue: false,
            transferred,
            handed_by: None,
            callback: false,
            parked: false,
        });
    }

    /// Puts a caller from another queue in its place by seniority (arrival, then sequence);
    /// returns its position (1: first).
    pub(crate) fn insert_by_seniority(
        &mut self,
        call: CallId,
        enqueued_at: Instant,
        seq: u64,
        transferred: bool,
    ) -> usize {
        let at = self
            .callers
            .partition_point(|c| (c.enqueued_at, c.seq) < (enqueued_at, seq));
        self.callers.insert(
            at,
            Caller {
                call,
                enqueued_at,
                seq,
                ringing: Vec::new(),
                overdue: false,
                transferred,
                handed_by: None,
                callback: false,
                parked: false,
            },
        );
        at + 1
    }

    /// Where a caller is (1: first), if it is here.
    pub(crate) fn position_of(&self, call: CallId) -> Option<usize> {
        self.callers
            .iter()
            .position(|c| c.call == call)
            .map(|i| i + 1)
    }

    /// Removes a caller, returning it and its position (1: it was first) if it was here.
    pub(crate) fn remove(&mut self, call: CallId) -> Option<(Caller, usize)> {
        let position = self.position_of(call)?;
        Some((self.callers.remove(position - 1), position))
    }

    pub(crate) fn get(&self, call: CallId) -> Option<&Caller> {
        self.callers.iter().find(|c| c.call == call)
    }

    pub(crate) fn get_mut(&mut self, call: CallId) -> Option<&mut Caller> {
        self.callers.iter_mut().find(|c| c.call == call)
    }

    /// The longest-waiting caller not currently being offered to an agent (nor parked).
    pub(crate) fn next_unoffered(&self) -> Option<&Caller> {
        self.callers.iter().find(|c| c.offerable())
    }

    /// Callers in the queue, oldest first (including those being offered).
    pub(crate) fn callers(&self) -> &[Caller] {
        &self.callers
    }

    /// Callers on the line (callbacks left it).
    pub(crate) fn on_the_line(&self) -> usize {
        self.callers.iter().filter(|c| !c.callback).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_timeout_is_rings_times_cycle() {
        let q = QueueConfig::from_rings("appointments", 0, 3, 5000);
        assert_eq!(q.ring_timeout, Duration::from_secs(15));
        let huge = QueueConfig::from_rings("x", 0, u32::MAX, u64::MAX);
        assert_eq!(huge.ring_timeout, Duration::from_millis(u64::MAX));
    }

    #[test]
    fn escalation_widens_the_levels_with_the_wait() {
        let q = QueueConfig::from_rings("q", 0, 3, 5000).with_escalation(vec![
            (Duration::ZERO, 1),
            (Duration::from_secs(30), 2),
            (Duration::from_secs(60), 5),
        ]);
        assert_eq!(q.max_level(Duration::ZERO), 1);
        assert_eq!(q.max_level(Duration::from_millis(29_999)), 1);
        assert_eq!(q.max_level(Duration::from_secs(30)), 2);
        assert_eq!(q.max_level(Duration::from_secs(600)), 5);
        assert_eq!(
            q.next_escalation(Duration::from_secs(10)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(q.next_escalation(Duration::from_secs(60)), None);
        let open = QueueConfig::from_rings("q", 0, 3, 5000);
        assert_eq!(open.max_level(Duration::ZERO), u32::MAX);
        let late = QueueConfig::from_rings("q", 0, 3, 5000)
            .with_escalation(vec![(Duration::from_secs(5), 1)]);
        assert_eq!(
            late.max_level(Duration::ZERO),
            0,
            "nobody before the first step"
        );
    }

    #[test]
    fn offered_callers_keep_their_place_but_are_skipped() {
        let t0 = Instant::now();
        let mut q = Queue::new(QueueConfig::from_rings("q", 0, 3, 5000));
        q.push(1, t0, 0, false);
        q.push(2, t0, 1, false);
        if let Some(c) = q.get_mut(1) {
            c.ringing.push(0);
        }
        assert_eq!(q.next_unoffered().map(|c| c.call), Some(2));
        if let Some(c) = q.get_mut(1) {
            c.ringing.clear();
        }
        assert_eq!(q.next_unoffered().map(|c| c.call), Some(1));
        assert_eq!(q.remove(1).map(|(c, at)| (c.call, at)), Some((1, 1)));
        assert_eq!(q.remove(1), None);
        assert_eq!(q.callers().len(), 1);
    }
}
