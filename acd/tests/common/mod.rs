//! Shared test helpers: the demo clinic's queues and agents, and event draining.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use acd::{Acd, AcdEvent, AgentConfig, AgentState, QueueConfig};

pub const A: &str = "1001";
pub const B: &str = "1002";
pub const C: &str = "1003";

/// The three queues of config/demo.toml (3 rings of 5000 ms each).
pub fn demo_queues() -> Vec<QueueConfig> {
    vec![
        QueueConfig::from_rings("appointments", 0, 3, 5000),
        QueueConfig::from_rings("enquiries", 0, 3, 5000),
        QueueConfig::from_rings("urgent", 10, 3, 5000),
    ]
}

/// The three agents of config/demo.toml, each serving every queue.
pub fn demo_agents() -> Vec<AgentConfig> {
    [A, B, C]
        .iter()
        .map(|id| AgentConfig::new(*id, &["appointments", "enquiries", "urgent"]))
        .collect()
}

pub fn demo() -> Acd {
    match Acd::new(demo_queues(), demo_agents()) {
        Ok(acd) => acd,
        Err(e) => panic!("demo config rejected: {e}"),
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The call events waiting (offers, ring-outs, connects), without the agent-state news.
pub fn drain(acd: &mut Acd) -> Vec<AcdEvent> {
    std::iter::from_fn(|| acd.poll_event())
        .filter(|e| !matches!(e, AcdEvent::AgentState { .. }))
        .collect()
}

/// Every event waiting, agent-state news included.
pub fn drain_all(acd: &mut Acd) -> Vec<AcdEvent> {
    std::iter::from_fn(|| acd.poll_event()).collect()
}

/// The event log's entries waiting, as (kind, call) pairs.
pub fn log_kinds(acd: &mut Acd) -> Vec<(&'static str, Option<u64>)> {
    std::iter::from_fn(|| acd.poll_log())
        .map(|e| (e.event.kind(), e.call))
        .collect()
}

pub fn offer(call: u64, agent: &str, queue: &str, waited: Duration) -> AcdEvent {
    AcdEvent::Offer {
        call,
        agent: agent.to_string(),
        queue: queue.to_string(),
        waited,
        ring_timeout: secs(15),
    }
}

pub fn ring_out(call: u64, agent: &str) -> AcdEvent {
    AcdEvent::RingOut {
        call,
        agent: agent.to_string(),
    }
}

pub fn connected(call: u64, agent: &str, waited: Duration) -> AcdEvent {
    AcdEvent::Connected {
        call,
        agent: agent.to_string(),
        waited,
    }
}

pub fn state(acd: &Acd, agent: &str) -> AgentState {
    match acd.agent(agent) {
        Ok(view) => view.state,
        Err(e) => panic!("{e}"),
    }
}

pub fn missed(acd: &Acd, agent: &str) -> u32 {
    match acd.agent(agent) {
        Ok(view) => view.missed_rings,
        Err(e) => panic!("{e}"),
    }
}

/// Brings agents online one after another, 1 s apart from `t0`, and drains nothing.
pub fn online_in_order(acd: &mut Acd, t0: Instant, agents: &[&str]) {
    for (i, agent) in agents.iter().enumerate() {
        acd.agent_online(t0 + secs(i as u64), agent, true)
            .expect("configured agent");
    }
}
