//! What one ACD input costs with many agents: 2,000 agents, all but a few talking, and
//! callers arriving and hanging up in a long queue (the shape of a busy call center).
//!
//! Run: `cargo bench -p acd --bench dispatch` (figures go in BENCHMARKS.md).

use std::time::{Duration, Instant};

use acd::{Acd, AgentConfig, QueueConfig};

const AGENTS: usize = 2_000;
const INPUTS: u64 = 200_000;

/// An ACD of [`AGENTS`] agents in one queue, every one online and ready at `t0`.
fn online_acd(t0: Instant) -> Acd {
    let queue = QueueConfig::from_rings("q", 0, 3, 5000);
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
    let mut acd = online_acd(t0);
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
    let start = Instant::now();
    let mut next = AGENTS as u64;
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
    }
    let per = start.elapsed() / u32::try_from(INPUTS).unwrap_or(u32::MAX);
    println!("acd dispatch, {AGENTS} agents all talking: {per:?} per input ({INPUTS} inputs)");

    // The other extreme: every agent ready and idle; each caller is offered at once
    // and hangs up while ringing.
    let mut acd = online_acd(t0);
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
}
