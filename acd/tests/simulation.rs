//! Longer runs: a busy clinic morning, and seeded random inputs checked against invariants.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use acd::{Acd, AcdEvent, AgentConfig, AgentState, EndedBy, Error, QueueConfig};
use common::*;

/// What an agent does when its phone rings.
#[derive(Debug, Clone, Copy)]
enum Reaction {
    Answer(Duration),
    Decline(Duration),
    Ignore,
}

#[derive(Debug, Clone)]
enum Action {
    Enqueue(u64, &'static str),
    Answer(u64, &'static str),
    Decline(u64, &'static str),
    End(&'static str),
    Ready(&'static str, bool),
}

#[test]
fn three_agents_ten_callers_all_connected_exactly_once() {
    let t0 = Instant::now();
    let mut acd = demo();
    let agents = [A, B, C];
    online_in_order(&mut acd, t0, &agents);
    let mut pending: Vec<(Instant, Action)> = Vec::new();
    for i in 0..10u64 {
        let queue = match i {
            4 | 8 => "urgent",
            _ if i % 2 == 0 => "appointments",
            _ => "enquiries",
        };
        pending.push((t0 + secs(5 + 3 * i), Action::Enqueue(i, queue)));
    }
    // C takes a break in the middle of the morning.
    pending.push((t0 + secs(40), Action::Ready(C, false)));
    pending.push((t0 + secs(100), Action::Ready(C, true)));

    let mut offers_seen: BTreeMap<&str, u32> = BTreeMap::new();
    let mut connected_count: BTreeMap<u64, u32> = BTreeMap::new();
    let mut ringing: BTreeMap<&str, u64> = BTreeMap::new();
    let mut now = t0 + secs(2);
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 1_000, "runaway simulation");
        while let Some(event) = acd.poll_event() {
            match event {
                AcdEvent::Offer { call, agent, .. } => {
                    let agent = agents
                        .iter()
                        .copied()
                        .find(|a| *a == agent)
                        .expect("configured agent");
                    assert_eq!(ringing.insert(agent, call), None, "agent rang twice");
                    assert!(
                        ringing.values().filter(|&&c| c == call).count() == 1,
                        "call offered twice"
                    );
                    let n = offers_seen.entry(agent).or_default();
                    *n += 1;
                    // A answers quickly; B ignores its first ring; C declines every second.
                    let reaction = match (agent, *n) {
                        (a, _) if a == A => Reaction::Answer(secs(4)),
                        (b, 1) if b == B => Reaction::Ignore,
                        (b, _) if b == B => Reaction::Answer(secs(2)),
                        (_, n) if n % 2 == 0 => Reaction::Decline(secs(1)),
                        _ => Reaction::Answer(secs(6)),
                    };
                    match reaction {
                        Reaction::Answer(d) => pending.push((now + d, Action::Answer(call, agent))),
                        Reaction::Decline(d) => {
                            pending.push((now + d, Action::Decline(call, agent)))
                        }
                        Reaction::Ignore => {}
                    }
                }
                AcdEvent::RingOut { call, agent } => {
                    assert_eq!(ringing.remove(agent.as_str()), Some(call));
                }
                AcdEvent::Connected { call, agent, .. } => {
                    let agent = agents
                        .iter()
                        .copied()
                        .find(|a| *a == agent)
                        .expect("configured agent");
                    assert_eq!(ringing.remove(agent), Some(call));
                    *connected_count.entry(call).or_default() += 1;
                    let talk = 20 + 5 * (call % 4);
                    pending.push((now + secs(talk), Action::End(agent)));
                }
                AcdEvent::AgentState { .. }
                | AcdEvent::Withdrawn { .. }
                | AcdEvent::Exited { .. }
                | AcdEvent::Moved { .. }
                | AcdEvent::Callback { .. } => {}
            }
        }
        let next_action = pending.iter().map(|(at, _)| *at).min();
        let next = match (next_action, acd.poll_timeout()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => break,
            },
        };
        assert!(next >= now, "simulated time goes forward");
        now = next;
        acd.handle_timeout(now);
        let (due, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(at, _)| *at <= now);
        pending = later;
        for (_, action) in due {
            match action {
                Action::Enqueue(call, queue) => acd.enqueue(now, call, queue).expect("queue"),
                Action::Answer(call, agent) => acd.answered(now, call, agent).expect("offered"),
                Action::Decline(call, agent) => {
                    ringing.remove(agent);
                    acd.declined(now, call, agent).expect("offered")
                }
                Action::End(agent) => acd.call_ended(now, agent, EndedBy::Agent).expect("talking"),
                Action::Ready(agent, ready) => acd
                    .set_ready(now, agent, ready, Some("break"))
                    .map(|_| ())
                    .expect("online"),
            }
        }
    }
    let expected: BTreeMap<u64, u32> = (0..10).map(|c| (c, 1)).collect();
    assert_eq!(
        connected_count, expected,
        "every caller connected exactly once"
    );
    assert!(
        now < t0 + secs(600),
        "the morning finished in {:?}",
        now - t0
    );
    for q in ["appointments", "enquiries", "urgent"] {
        assert_eq!(acd.waiting(q), Ok(0));
    }
    assert!(acd.agents().iter().all(|a| a.state == AgentState::Ready));
    assert_eq!(missed(&acd, A), 0);
    assert_eq!(missed(&acd, B), 1, "B ignored its first ring");
    assert!(
        missed(&acd, C) >= 1,
        "C declined at least once: {offers_seen:?}"
    );
}

/// A tiny xorshift64: the tests' only randomness, seeded so a failure replays.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const AGENTS: [&str; 3] = [A, B, C];
const QUEUES: [&str; 3] = ["appointments", "enquiries", "urgent"];
/// Each queue's priority and wrap-up, as `random_config` sets them.
const PRIORITY: [i32; 3] = [0, 0, 10];
const WRAP_UP_MS: [u64; 3] = [8_000, 0, 3_000];

fn queue_index(name: &str) -> usize {
    QUEUES
        .iter()
        .position(|q| *q == name)
        .expect("events name configured queues")
}

/// `ring_all`: appointments (served by two agents) rings all its free agents at once.
fn random_config(ring_all: bool) -> (Vec<QueueConfig>, Vec<AgentConfig>) {
    let queues = vec![
        QueueConfig::from_rings("appointments", PRIORITY[0], 3, 5000)
            .with_wrap_up(ms(WRAP_UP_MS[0]))
            .with_strategy(if ring_all {
                acd::Strategy::RingAll
            } else {
                acd::Strategy::RoundRobin
            }),
        QueueConfig::from_rings("enquiries", PRIORITY[1], 2, 4000)
            .with_wrap_up(ms(WRAP_UP_MS[1]))
            .with_strategy(acd::Strategy::FewestCalls)
            .with_overflow(
                acd::Overflow::Queue("appointments".into()),
                Some(secs(40)),
                None,
                acd::LeaveWhen::Never,
            ),
        QueueConfig::from_rings("urgent", PRIORITY[2], 1, 7000)
            .with_wrap_up(ms(WRAP_UP_MS[2]))
            .with_strategy(acd::Strategy::Random)
            .with_overflow(
                acd::Overflow::Hangup,
                None,
                Some(2),
                acd::LeaveWhen::NoneReady,
            ),
    ];
    let served: [&[&str]; 3] = [&QUEUES, &["appointments", "urgent"], &["enquiries"]];
    let agents = AGENTS
        .iter()
        .zip(served)
        .map(|(id, qs)| AgentConfig::new(*id, qs))
        .collect();
    (queues, agents)
}

/// What the test knows from the inputs it gave and the events it saw.
#[derive(Default)]
struct Model {
    online: BTreeSet<&'static str>,
    ready: BTreeSet<&'static str>,
    /// agent -> (call, offered at, ring timeout)
    ringing: BTreeMap<&'static str, (u64, Instant, Duration)>,
    /// agent -> (call, queue index)
    talking: BTreeMap<&'static str, (u64, usize)>,
    held: BTreeSet<&'static str>,
    wrap_until: BTreeMap<&'static str, Instant>,
    misses_in_row: BTreeMap<&'static str, u32>,
    paused_until: BTreeMap<&'static str, Instant>,
    enqueued: BTreeSet<u64>,
    /// Callers not yet connected or gone, per queue, in arrival order.
    waiting: [Vec<u64>; 3],
    abandoned: BTreeSet<u64>,
    /// Callers a queue rule handed back to call control.
    exited: BTreeSet<u64>,
    /// Callers a queue rule moved to its overflow queue.
    moves: u32,
    connected: BTreeMap<u64, u32>,
    /// When each caller joined its first queue (a callback waits again in that place).
    enqueued_at: BTreeMap<u64, Instant>,
    /// Callers who left the line to be called back.
    callbacks: BTreeSet<u64>,
    /// Of those, the ones call control has not let go of yet (offered to nobody).
    parked: BTreeSet<u64>,
    /// Callbacks' dials that did not reach the patient, per call.
    unreached: BTreeMap<u64, u32>,
    /// Callbacks waiting for their next try: (call, queue index).
    retrying: Vec<(u64, usize)>,
    /// Callbacks given up.
    failed: BTreeSet<u64>,
    /// The last state the ACD announced per agent.
    announced: BTreeMap<&'static str, AgentState>,
    /// Appointments rings all its free agents at once.
    ring_all: bool,
    /// Rings stopped because another phone answered (ring-all).
    withdrawn: u32,
    /// Offers and connects announced as events, to compare with the event log.
    offers: u32,
    connects: u32,
    logged_offers: u32,
    logged_connects: u32,
}

fn agent_name(id: &str) -> &'static str {
    AGENTS
        .iter()
        .copied()
        .find(|a| *a == id)
        .expect("events name configured agents")
}

impl Model {
    fn offered_to(&self, call: u64) -> Option<&'static str> {
        self.ringing
            .iter()
            .find(|(_, (c, _, _))| *c == call)
            .map(|(a, _)| *a)
    }

    /// Every phone ringing for the caller stops (it hung up, or was given up).
    fn stop_ringing(&mut self, call: u64) {
        self.ringing.retain(|_, (c, _, _)| *c != call);
    }

    fn leave_queue(&mut self, call: u64) {
        for q in &mut self.waiting {
            q.retain(|c| *c != call);
        }
    }

    /// A ring that ended unanswered: counts towards `missed` (2 in a row: not ready).
    fn missed(&mut self, agent: &'static str) {
        let n = self.misses_in_row.entry(agent).or_default();
        *n += 1;
        if *n >= AgentConfig::DEFAULT_MAX_MISSED_RINGS {
            self.ready.remove(agent);
        }
    }

    /// The desk (or a new registration) made the agent ready: wrap-up over, misses forgotten.
    fn made_ready(&mut self, agent: &'static str) {
        self.ready.insert(agent);
        self.misses_in_row.remove(agent);
    }

    /// Applies one event, checking the invariants an agent or caller would notice.
    fn apply(&mut self, now: Instant, event: AcdEvent, served: &[AgentConfig], seed: u64) {
        match event {
            AcdEvent::Offer {
                call,
                agent,
                queue,
                ring_timeout,
                ..
            } => {
                let agent = agent_name(&agent);
                assert!(
                    !self.ringing.contains_key(agent) && !self.talking.contains_key(agent),
                    "seed {seed}: agent {agent} offered a second call"
                );
                assert!(
                    !self.wrap_until.contains_key(agent),
                    "seed {seed}: {agent} offered during wrap-up"
                );
                let q = queue_index(&queue);
                // Only ring-all rings several phones for one caller, all in one go.
                let ring_all = self.ring_all && q == 0;
                assert!(
                    self.ringing
                        .values()
                        .filter(|(c, _, _)| *c == call)
                        .all(|(_, at, _)| ring_all && *at == now),
                    "seed {seed}: call {call} offered twice"
                );
                assert!(
                    self.online.contains(agent) && self.ready.contains(agent),
                    "seed {seed}: {agent} offered while offline or not ready"
                );
                assert!(
                    self.paused_until.get(agent).is_none_or(|&t| now >= t),
                    "seed {seed}: {agent} offered during its decline pause"
                );
                assert!(self.enqueued.contains(&call) && !self.abandoned.contains(&call));
                // A callback whose dial failed is offered again; anyone else never after
                // it connected.
                assert!(
                    self.connected.get(&call).copied().unwrap_or(0)
                        <= self.unreached.get(&call).copied().unwrap_or(0),
                    "seed {seed}: offered after connect"
                );
                // First come, first served within a queue; a higher queue goes first.
                assert!(
                    !self.parked.contains(&call),
                    "seed {seed}: {call} offered while parked"
                );
                for &earlier in self.waiting[q].iter().take_while(|c| **c != call) {
                    assert!(
                        self.offered_to(earlier).is_some() || self.parked.contains(&earlier),
                        "seed {seed}: call {call} offered before {earlier} in {queue}"
                    );
                }
                let config = served.iter().find(|c| c.id == agent).expect("configured");
                for other in &config.queues {
                    let o = queue_index(other);
                    if PRIORITY[o] > PRIORITY[q] {
                        for &c in &self.waiting[o] {
                            assert!(
                                self.offered_to(c).is_some() || self.parked.contains(&c),
                                "seed {seed}: {agent} got {queue} while {other} call {c} waited"
                            );
                        }
                    }
                }
                self.offers += 1;
                self.ringing.insert(agent, (call, now, ring_timeout));
            }
            AcdEvent::RingOut { call, agent } => {
                let agent = agent_name(&agent);
                let (c, at, timeout) = self.ringing.remove(agent).expect("rang out while ringing");
                assert_eq!(c, call, "seed {seed}");
                assert!(
                    now >= at + timeout || !self.online.contains(agent),
                    "seed {seed}: rang out early"
                );
                self.missed(agent);
            }
            AcdEvent::Connected { call, agent, .. } => {
                let agent = agent_name(&agent);
                let (c, _, _) = self.ringing.remove(agent).expect("connected while ringing");
                assert_eq!(c, call, "seed {seed}");
                let q = (0..3)
                    .find(|&q| self.waiting[q].contains(&call))
                    .expect("a connected caller was waiting");
                self.leave_queue(call);
                self.talking.insert(agent, (call, q));
                self.misses_in_row.remove(agent);
                assert_eq!(
                    self.offered_to(call),
                    None,
                    "seed {seed}: {call} answered while another phone still rings for it"
                );
                let n = self.connected.entry(call).or_default();
                *n += 1;
                let tries = 1 + self.unreached.get(&call).copied().unwrap_or(0);
                assert_eq!(*n, tries, "seed {seed}: call {call} connected twice");
                self.connects += 1;
            }
            AcdEvent::AgentState { agent, state, .. } => {
                self.announced.insert(agent_name(&agent), state);
            }
            AcdEvent::Withdrawn { call, agent } => {
                assert!(
                    self.ring_all,
                    "seed {seed}: a ring withdrawn without ring-all"
                );
                let agent = agent_name(&agent);
                let (c, _, _) = self.ringing.remove(agent).expect("withdrawn while ringing");
                assert_eq!(c, call, "seed {seed}");
                assert!(
                    self.waiting[0].contains(&call),
                    "seed {seed}: {call} withdrawn outside the ring-all queue"
                );
                // Not a miss: the agent's count of misses in a row is unchanged.
                self.withdrawn += 1;
            }
            AcdEvent::Callback { call, queue } => {
                let q = queue_index(&queue);
                assert!(
                    self.waiting[q].contains(&call),
                    "seed {seed}: {call} became a callback in {queue} unseen"
                );
                assert_eq!(self.offered_to(call), None, "seed {seed}: {call} rings");
                assert!(
                    self.callbacks.insert(call),
                    "seed {seed}: {call} became a callback twice"
                );
                self.parked.insert(call);
            }
            AcdEvent::Exited { call, queue, .. } => {
                assert!(
                    !self.callbacks.contains(&call),
                    "seed {seed}: callback {call} sent out by a rule"
                );
                let q = queue_index(&queue);
                assert!(
                    self.waiting[q].contains(&call),
                    "seed {seed}: {call} left {queue} unseen"
                );
                assert_eq!(
                    self.offered_to(call),
                    None,
                    "seed {seed}: {call} left while ringing"
                );
                self.leave_queue(call);
                self.exited.insert(call);
            }
            AcdEvent::Moved { call, from, to } => {
                assert!(
                    !self.callbacks.contains(&call),
                    "seed {seed}: callback {call} moved by a rule"
                );
                let (f, t) = (queue_index(&from), queue_index(&to));
                assert_eq!(
                    self.offered_to(call),
                    None,
                    "seed {seed}: {call} moved while ringing"
                );
                // Call ids are handed out in arrival order: seniority is the id.
                let was = self.waiting[f].len();
                self.waiting[f].retain(|c| *c != call);
                assert!(
                    self.waiting[f].len() < was || f == t,
                    "seed {seed}: {call} moved from {from} without being there"
                );
                let at = self.waiting[t].partition_point(|c| *c < call);
                self.waiting[t].insert(at, call);
                self.moves += 1;
            }
        }
    }

    /// The state the model expects the agent in.
    fn expected_state(&self, agent: &'static str) -> AgentState {
        if self.ringing.contains_key(agent) {
            AgentState::Ringing
        } else if self.talking.contains_key(agent) {
            if self.held.contains(agent) {
                AgentState::OnHold
            } else {
                AgentState::Talking
            }
        } else if self.wrap_until.contains_key(agent) {
            AgentState::WrapUp
        } else if !self.online.contains(agent) {
            AgentState::LoggedOut
        } else if self.ready.contains(agent) {
            AgentState::Ready
        } else {
            AgentState::NotReady
        }
    }
}

fn drain_into(acd: &mut Acd, model: &mut Model, served: &[AgentConfig], now: Instant, seed: u64) {
    while let Some(event) = acd.poll_event() {
        model.apply(now, event, served, seed);
    }
    while let Some(entry) = acd.poll_log() {
        assert!(entry.at <= now, "seed {seed}: logged in the future");
        match entry.event {
            acd::Logged::Offered { .. } => model.logged_offers += 1,
            acd::Logged::Connected {
                rang_ms,
                ring_timeout_ms,
                ..
            } => {
                model.logged_connects += 1;
                assert!(
                    rang_ms <= ring_timeout_ms,
                    "seed {seed}: answered after its rings"
                );
            }
            _ => {}
        }
    }
    assert_eq!(
        model.offers, model.logged_offers,
        "seed {seed}: every offer logged"
    );
    assert_eq!(
        model.connects, model.logged_connects,
        "seed {seed}: every connect logged"
    );
}

/// The ACD's views agree with the model, and no free agent sits beside a waiting caller.
fn check_views(acd: &Acd, model: &Model, served: &[AgentConfig], now: Instant, seed: u64) {
    for view in acd.agents() {
        let agent = agent_name(&view.id);
        let expect_call = model
            .ringing
            .get(agent)
            .map(|r| r.0)
            .or(model.talking.get(agent).map(|t| t.0));
        if view.state != AgentState::WrapUp {
            assert_eq!(view.current_call, expect_call, "seed {seed}: {agent}");
        }
        let expect_state = model.expected_state(agent);
        assert_eq!(view.state, expect_state, "seed {seed}: {agent}");
        assert_eq!(
            model
                .announced
                .get(agent)
                .copied()
                .unwrap_or(AgentState::LoggedOut),
            view.state,
            "seed {seed}: {agent}'s desk was told its state"
        );
        if view.state == AgentState::Ready && view.paused_until.is_none() {
            let config = served.iter().find(|c| c.id == view.id).expect("configured");
            for q in &config.queues {
                let callers = acd.callers(q, now).expect("queue");
                assert!(
                    callers.iter().all(|c| c.offered_to.is_some() || c.parked),
                    "seed {seed}: {agent} is free while a caller waits in {q}"
                );
            }
        }
    }
    for (agent, (_, at, timeout)) in &model.ringing {
        assert!(
            *at + *timeout > now,
            "seed {seed}: {agent} still rings after its deadline"
        );
    }
}

/// Every parked callback's line is let go: they may be offered.
fn release_parked(acd: &mut Acd, model: &mut Model, now: Instant) {
    for call in std::mem::take(&mut model.parked) {
        acd.callback_ready(now, call);
    }
}

/// A callback's next try: it waits again in queue `q`, in its place as of its first arrival.
fn requeue(acd: &mut Acd, model: &mut Model, call: u64, q: usize, now: Instant) {
    let since = model.enqueued_at[&call];
    acd.requeue_callback(now, call, QUEUES[q], since)
        .expect("not in the acd");
    let at =
        model.waiting[q].partition_point(|c| model.enqueued_at.get(c).is_some_and(|t| *t <= since));
    model.waiting[q].insert(at, call);
}

/// Returns how many callers were handed back, how many moved queue, and how many callbacks
/// were asked for.
fn random_run(seed: u64) -> (usize, u32, usize, u32) {
    let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let ring_all = seed % 2 == 1;
    let (queues, agents) = random_config(ring_all);
    let mut acd = Acd::new(queues, agents.clone()).expect("valid config");
    let mut model = Model {
        ring_all,
        ..Model::default()
    };
    let t0 = Instant::now();
    let mut now = t0;
    let mut next_call = 1u64;

    for _ in 0..600 {
        // Time passes: sometimes not at all, sometimes exactly to the next deadline.
        match rng.below(4) {
            0 => {}
            1 => now = acd.poll_timeout().map_or(now, |t| t.max(now)),
            _ => now += Duration::from_millis(rng.next() % 12_000),
        }
        if acd.poll_timeout().is_some_and(|t| t <= now) {
            model.wrap_until.retain(|_, t| *t > now);
            acd.handle_timeout(now);
            drain_into(&mut acd, &mut model, &agents, now, seed);
        }
        model.paused_until.retain(|_, t| *t > now);
        // Call control lets the lines of parked callbacks go, sooner or later.
        if rng.chance(40) {
            release_parked(&mut acd, &mut model, now);
            drain_into(&mut acd, &mut model, &agents, now, seed);
        }

        let agent = AGENTS[rng.below(3)];
        match rng.below(11) {
            0 | 1 => {
                if rng.chance(5) {
                    assert!(acd.enqueue(now, next_call, "billing").is_err());
                } else {
                    let q = rng.below(3);
                    model.enqueued.insert(next_call);
                    model.enqueued_at.insert(next_call, now);
                    model.waiting[q].push(next_call);
                    acd.enqueue(now, next_call, QUEUES[q]).expect("known queue");
                    // Unless turned away at the door (then the ACD holds nothing of it).
                    if acd.caller_wait(next_call, now).is_some() {
                        assert_eq!(
                            acd.enqueue(now, next_call, QUEUES[q]),
                            Err(Error::DuplicateCall(next_call))
                        );
                    }
                }
                next_call += 1;
            }
            2 if rng.chance(40) => {
                // A waiting caller asks to be called back: it keeps its place.
                let call = 1 + (rng.next() % next_call);
                let waiting = model.waiting.iter().any(|q| q.contains(&call));
                let expect =
                    waiting && model.offered_to(call).is_none() && !model.callbacks.contains(&call);
                assert_eq!(
                    acd.request_callback(now, call),
                    expect,
                    "seed {seed}: callback of {call}"
                );
            }
            2 if !model.retrying.is_empty() => {
                // A callback's next try is due: it waits again in its place.
                let (call, q) = model.retrying.remove(rng.below(model.retrying.len()));
                requeue(&mut acd, &mut model, call, q, now);
            }
            2 => {
                let call = 1 + (rng.next() % next_call);
                if model.callbacks.contains(&call)
                    && model.waiting.iter().any(|q| q.contains(&call))
                {
                    // Call control gives a waiting callback up (say, at shutdown).
                    model.stop_ringing(call);
                    model.leave_queue(call);
                    model.failed.insert(call);
                    acd.callback_failed(now, call, "appointments", 0);
                    drain_into(&mut acd, &mut model, &agents, now, seed);
                    check_views(&acd, &model, &agents, now, seed);
                    continue;
                }
                model.stop_ringing(call);
                if model.enqueued.contains(&call) && !model.connected.contains_key(&call) {
                    model.abandoned.insert(call);
                }
                model.leave_queue(call);
                acd.abandon(now, call);
            }
            3 | 4 => {
                if let Some((&a, &(call, _, _))) = model.ringing.iter().nth(rng.below(3)) {
                    acd.answered(now, call, a).expect("offered");
                } else {
                    assert!(acd.answered(now, next_call + 7, agent).is_err());
                }
            }
            5 => {
                if let Some((&a, &(call, at, timeout))) = model.ringing.iter().next() {
                    model.ringing.remove(a);
                    model.paused_until.insert(a, at + timeout);
                    model.missed(a);
                    acd.declined(now, call, a).expect("offered");
                } else {
                    assert!(acd.declined(now, 1, agent).is_err());
                }
            }
            6 if model
                .talking
                .get(agent)
                .is_some_and(|(call, _)| model.callbacks.contains(call))
                && rng.chance(50) =>
            {
                // The callback's patient is not reached: the agent's part ends; the
                // callback tries again later, or is given up.
                let Some((call, q)) = model.talking.remove(agent) else {
                    continue;
                };
                let tries = model.unreached.entry(call).or_default();
                *tries += 1;
                let attempt = *tries;
                let ended = acd
                    .callback_unreached(
                        now,
                        agent,
                        attempt,
                        acd::CallbackResult::NoAnswer,
                        secs(20),
                    )
                    .expect("talking");
                assert_eq!(ended, call, "seed {seed}");
                model.held.remove(agent);
                if WRAP_UP_MS[q] > 0 && model.online.contains(agent) {
                    model.wrap_until.insert(agent, now + ms(WRAP_UP_MS[q]));
                }
                if rng.chance(70) {
                    model.retrying.push((call, q));
                } else {
                    model.failed.insert(call);
                    acd.callback_failed(now, call, QUEUES[q], attempt);
                }
            }
            6 => {
                let result = acd.call_ended(now, agent, EndedBy::Caller);
                if let Some((_, q)) = model.talking.remove(agent) {
                    result.expect("talking");
                    model.held.remove(agent);
                    if WRAP_UP_MS[q] > 0 && model.online.contains(agent) {
                        model.wrap_until.insert(agent, now + ms(WRAP_UP_MS[q]));
                    }
                } else {
                    assert_eq!(result, Err(Error::NotTalking(agent.into())));
                }
            }
            7 => {
                let online = rng.chance(70);
                acd.agent_online(now, agent, online).expect("known agent");
                if online && model.online.insert(agent) {
                    model.made_ready(agent);
                }
                if !online {
                    model.online.remove(agent);
                    model.wrap_until.remove(agent);
                }
            }
            8 => {
                // The agent's phone holds or resumes the call; or the desk extends wrap-up.
                if let Some(&(call, _)) = model.talking.get(agent) {
                    let held = rng.chance(50);
                    acd.hold(now, call, held).expect("connected");
                    if held {
                        model.held.insert(agent);
                    } else {
                        model.held.remove(agent);
                    }
                } else if let Some(until) = model.wrap_until.get_mut(agent) {
                    let ends = acd.extend_wrap_up(now, agent, secs(5)).expect("in wrap-up");
                    *until += secs(5);
                    assert_eq!(ends, *until, "seed {seed}");
                } else {
                    assert_eq!(
                        acd.extend_wrap_up(now, agent, secs(5)),
                        Err(Error::NotInWrapUp(agent.into()))
                    );
                    assert_eq!(
                        acd.hold(now, next_call, true),
                        Err(Error::NotConnected(next_call))
                    );
                }
            }
            _ => {
                let ready = rng.chance(60);
                let result = acd.set_ready(now, agent, ready, Some("random"));
                if model.online.contains(agent) {
                    result.expect("online");
                    if !model.ringing.contains_key(agent) && !model.talking.contains_key(agent) {
                        model.wrap_until.remove(agent);
                    }
                    if ready {
                        model.made_ready(agent);
                    } else {
                        model.ready.remove(agent);
                    }
                } else {
                    assert_eq!(result, Err(Error::AgentOffline(agent.into())));
                }
            }
        }
        drain_into(&mut acd, &mut model, &agents, now, seed);
        check_views(&acd, &model, &agents, now, seed);
    }

    // Callbacks waiting for a try wait again; then every agent comes back and answers at
    // once: everyone still waiting must connect.
    for (call, q) in std::mem::take(&mut model.retrying) {
        requeue(&mut acd, &mut model, call, q, now);
    }
    release_parked(&mut acd, &mut model, now);
    for agent in AGENTS {
        acd.agent_online(now, agent, true).expect("known agent");
        if model.online.insert(agent) {
            model.made_ready(agent);
        }
        acd.set_ready(now, agent, true, None).expect("online");
        if !model.ringing.contains_key(agent) && !model.talking.contains_key(agent) {
            model.wrap_until.remove(agent);
        }
        model.made_ready(agent);
    }
    drain_into(&mut acd, &mut model, &agents, now, seed);
    let mut finished = false;
    for _ in 0..2_000 {
        let offers: Vec<_> = model.ringing.iter().map(|(a, r)| (*a, r.0)).collect();
        for (agent, call) in offers {
            // Under ring-all the first answer stops the others' rings.
            if model.ringing.get(agent).is_some_and(|r| r.0 == call) {
                acd.answered(now, call, agent).expect("offered");
                drain_into(&mut acd, &mut model, &agents, now, seed);
            }
        }
        drain_into(&mut acd, &mut model, &agents, now, seed);
        now += secs(1);
        let talking: Vec<_> = model.talking.iter().map(|(a, t)| (*a, t.1)).collect();
        for (agent, q) in talking {
            acd.call_ended(now, agent, EndedBy::Agent).expect("talking");
            model.talking.remove(agent);
            model.held.remove(agent);
            if WRAP_UP_MS[q] > 0 {
                model.wrap_until.insert(agent, now + ms(WRAP_UP_MS[q]));
            }
        }
        drain_into(&mut acd, &mut model, &agents, now, seed);
        model.wrap_until.retain(|_, t| *t > now);
        acd.handle_timeout(now);
        drain_into(&mut acd, &mut model, &agents, now, seed);
        check_views(&acd, &model, &agents, now, seed);
        let waiting: usize = QUEUES
            .iter()
            .map(|q| acd.waiting(q).unwrap_or(usize::MAX))
            .sum();
        if waiting == 0
            && model.ringing.is_empty()
            && model.talking.is_empty()
            && model.wrap_until.is_empty()
        {
            finished = true;
            break;
        }
    }
    assert!(
        finished,
        "seed {seed}: callers still waiting after the drain"
    );
    for call in &model.enqueued {
        let times = model.connected.get(call).copied().unwrap_or(0);
        let tries = model.unreached.get(call).copied().unwrap_or(0);
        let gone = model.abandoned.contains(call) || model.exited.contains(call);
        let expected = if model.failed.contains(call) {
            tries
        } else {
            u32::from(!gone) + tries
        };
        assert_eq!(times, expected, "seed {seed}: call {call}");
    }
    assert_eq!(
        acd.poll_timeout(),
        None,
        "seed {seed}: no timer left when idle"
    );
    (
        model.exited.len(),
        model.moves,
        model.callbacks.len(),
        model.withdrawn,
    )
}

#[test]
fn random_inputs_keep_offers_exclusive_and_connect_every_caller() {
    let (mut exits, mut moves, mut callbacks, mut withdrawn) = (0, 0, 0, 0);
    for seed in 1..=200 {
        let (e, m, c, w) = random_run(seed);
        exits += e;
        moves += m;
        callbacks += c;
        withdrawn += w;
    }
    assert!(
        exits > 0 && moves > 0 && callbacks > 0 && withdrawn > 0,
        "the rules ran: {exits} exits, {moves} moves, {callbacks} callbacks, \
         {withdrawn} ring-all rings stopped by another's answer"
    );
}
