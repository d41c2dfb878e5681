//! What one ACD input costs with many agents: 2,000 agents, all but a few talking, and
//! callers arriving and hanging up in a long queue (the shape of a busy call center);
//! then the same with a max-wait and an escalation deadline per waiting caller.
//!
//! Run: `cargo bench -p acd --bench dispatch` (figures go in BENCHMARKS.md).

use std::time::{Duration, Instant};

use acd::{Acd, AgentConfig, QueueConfig};

const AGENTS: usize = 2_000;
const INPUTS: u64 = 200_000;

/// An ACD of [`AGENTS`] agents in one queue "q" (`queue`), every one online and ready at `t0`.
fn online_acd(t0: Instant, queue: QueueConfig) -> Acd {
    let agents = (0..AGENTS)
        .map(|i| AgentConfig::new(format!("a{i}"), &["q"]))
        .collect();
    let mut acd = Acd::new(vec![queue], agents).expect("acd");
    for i in 0..AGENTS {
        acd.agent_online(t0, &format!("a{i}"), true)
            .expect("online");
    }
    acd
}

fn main() {
    let t0 = Instant::now();
    let mut acd = online_acd(t0, QueueConfig::from_rings("q", 0, 3, 5000));
    // Every agent takes a call: all busy.
    for call in 0..AGENTS as u64 {
        acd.enqueue(t0, call, "q").expect("enqueue");
    }
    while let Some(ev) = acd.poll_event() {
        if let acd::AcdEvent::Offer { call, agent, .. } = ev {
            acd.answered(t0, call, &agent).expect("answer");
        }
    }
    while acd.poll_event().is_some() {}
    // Callers come and go while nobody is free: each input dispatches.
    let (per, _) = churn(&mut acd, t0, AGENTS as u64);
    println!("acd dispatch, {AGENTS} agents all talking: {per:?} per input ({INPUTS} inputs)");

    // The other extreme: every agent ready and idle; each caller is offered at once
    // and hangs up while ringing.
    let mut acd = online_acd(t0, QueueConfig::from_rings("q", 0, 3, 5000));
    let start = Instant::now();
    for call in 0..INPUTS / 2 {
        let now = t0 + Duration::from_millis(call);
        acd.enqueue(now, call, "q").expect("enqueue");
        acd.abandon(now, call);
        while acd.poll_event().is_some() {}
        while acd.poll_log().is_some() {}
    }
    let per = start.elapsed() / u32::try_from(INPUTS).unwrap_or(u32::MAX);
    println!("acd dispatch, {AGENTS} agents all ready: {per:?} per input ({INPUTS} inputs)");

    // A long queue with a deadline per caller: 2,000 callers waiting, each with a
    // max-wait and an escalation timer; call control asks for the next deadline after
    // every input, as its loop does. First with every agent talking, then with every
    // agent ready but none allowed to ring yet (escalation starts at level 2 after 30 min):
    // each input walks the queue heads and finds nobody.
    let everyone = vec![(Duration::ZERO, 1), (Duration::from_secs(1_800), 2)];
    let nobody_yet = vec![(Duration::from_secs(1_800), 2)];
    for (steps, shape) in [
        (everyone, "agents talking"),
        (nobody_yet, "agents ready, none eligible"),
    ] {
        let per = waiting_with_deadlines(t0, steps);
        println!(
            "acd dispatch, {AGENTS} {shape}, {AGENTS} callers waiting with deadlines: {per:?} per input ({INPUTS} inputs)"
        );
    }
}

/// Per-input cost with [`AGENTS`] callers waiting in a queue with `escalation` steps
/// and a max wait, after a first [`AGENTS`] callers were offered (and answered).
fn waiting_with_deadlines(t0: Instant, escalation: Vec<(Duration, u32)>) -> Duration {
    let queue = QueueConfig::from_rings("q", 0, 3, 5000)
        .with_overflow(
            acd::Overflow::Hangup,
            Some(Duration::from_secs(3_600)),
            None,
            acd::LeaveWhen::Never,
        )
        .with_escalation(escalation);
    let mut acd = online_acd(t0, queue);
    let mut next = 0u64;
    for _ in 0..2 * AGENTS {
        acd.enqueue(t0, next, "q").expect("enqueue");
        next += 1;
        while let Some(ev) = acd.poll_event() {
            if let acd::AcdEvent::Offer { call, agent, .. } = ev {
                acd.answered(t0, call, &agent).expect("answer");
            }
        }
    }
    while acd.poll_log().is_some() {}
    let (per, soonest) = churn(&mut acd, t0, next);
    assert!(
        soonest.is_some(),
        "the waiting callers' deadlines are armed"
    );
    per
}

/// [`INPUTS`] inputs from `t0` on, one a millisecond: a caller (ids from `next`) joins,
/// then hangs up, and so on; after each, the events and log are drained and the next
/// deadline asked for, as call control's loop does. The time per input, the last deadline.
fn churn(acd: &mut Acd, t0: Instant, mut next: u64) -> (Duration, Option<Instant>) {
    let start = Instant::now();
    let mut soonest = None;
    for i in 0..INPUTS {
        let now = t0 + Duration::from_millis(i);
        if i % 2 == 0 {
            acd.enqueue(now, next, "q").expect("enqueue");
            next += 1;
        } else {
            acd.abandon(now, next - 1);
        }
        while acd.poll_event().is_some() {}
        while acd.poll_log().is_some() {}
        soonest = acd.poll_timeout();
    }
    let per = start.elapsed() / u32::try_from(INPUTS).unwrap_or(u32::MAX);
    (per, soonest)
}
