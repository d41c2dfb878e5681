//! Which free agent a queue rings: each strategy, levels (skills), and escalation.
//!
//! Agents are configured A, B, C but come online C, B, A, so "longest idle" (C first) and
//! configuration order (A first) disagree and every strategy shows its own choice.

mod common;

use std::time::{Duration, Instant};

use acd::{Acd, AcdEvent, AgentConfig, EndedBy, QueueConfig, Strategy};
use common::*;

fn acd_with(strategy: Strategy, agents: Vec<AgentConfig>) -> Acd {
    let queue = QueueConfig::from_rings("q", 0, 3, 5000).with_strategy(strategy);
    Acd::new(vec![queue], agents).expect("config")
}

fn three(strategy: Strategy, t0: Instant) -> Acd {
    let agents = [A, B, C].map(|id| AgentConfig::new(id, &["q"])).to_vec();
    let mut acd = acd_with(strategy, agents);
    for (i, id) in [C, B, A].iter().enumerate() {
        acd.agent_online(t0 + secs(i as u64), id, true)
            .expect("agent");
    }
    acd
}

/// Places `calls` callers one after another; each is answered at once and talks
/// `talk(n)`. Returns who answered each.
fn run_calls(
    acd: &mut Acd,
    t0: Instant,
    calls: u64,
    talk: impl Fn(u64) -> Duration,
) -> Vec<String> {
    let mut who = Vec::new();
    let mut now = t0 + secs(10);
    for call in 1..=calls {
        acd.enqueue(now, call, "q").expect("queue");
        let agent = drain(acd)
            .into_iter()
            .find_map(|e| match e {
                AcdEvent::Offer { agent, .. } => Some(agent),
                _ => None,
            })
            .expect("a free agent is offered the call");
        acd.answered(now, call, &agent).expect("offered");
        now += talk(call);
        acd.call_ended(now, &agent, EndedBy::Caller)
            .expect("talking");
        now += secs(1);
        who.push(agent);
        while acd.poll_log().is_some() {}
    }
    who
}

#[test]
fn longest_idle_rings_the_agent_free_for_longest() {
    let t0 = Instant::now();
    let mut acd = three(Strategy::LongestIdle, t0);
    assert_eq!(run_calls(&mut acd, t0, 4, |_| secs(5)), [C, B, A, C]);
}

#[test]
fn round_robin_goes_on_from_the_agent_it_rang_last_in_configuration_order() {
    let t0 = Instant::now();
    let mut acd = three(Strategy::RoundRobin, t0);
    assert_eq!(run_calls(&mut acd, t0, 5, |_| secs(5)), [A, B, C, A, B]);
}

#[test]
fn top_down_rings_the_first_free_agent_in_configuration_order() {
    let t0 = Instant::now();
    let mut acd = three(Strategy::TopDown, t0);
    assert_eq!(run_calls(&mut acd, t0, 3, |_| secs(5)), [A, A, A]);
    // A busy: the next in order.
    acd.enqueue(t0 + secs(100), 50, "q").expect("queue");
    acd.answered(t0 + secs(100), 50, A).expect("offered to A");
    acd.enqueue(t0 + secs(101), 51, "q").expect("queue");
    assert_eq!(drain(&mut acd).last(), Some(&offer(51, B, "q", secs(0))));
}

#[test]
fn fewest_calls_and_least_talk_time_even_out_the_work() {
    let t0 = Instant::now();
    let mut acd = three(Strategy::FewestCalls, t0);
    // Ties go to the longest idle: C, B, A, then C again (all on one call).
    assert_eq!(run_calls(&mut acd, t0, 4, |_| secs(5)), [C, B, A, C]);

    let mut acd = three(Strategy::LeastTalkTime, t0);
    // C talks 50 s, B 10 s, A 30 s: then B (10 s) has talked least, then B again (20 s).
    let talk = |call: u64| secs([50, 10, 30, 10, 10][usize::try_from(call - 1).unwrap_or(0)]);
    assert_eq!(run_calls(&mut acd, t0, 5, talk), [C, B, A, B, B]);
    // The counts start afresh when told (the clinic's midnight): ties by idle order again.
    acd.reset_counts();
    assert_eq!(run_calls(&mut acd, t0 + secs(1000), 1, |_| secs(5)), [C]);
}

#[test]
fn random_spreads_calls_over_every_free_agent_and_replays_with_its_seed() {
    let t0 = Instant::now();
    let runs: Vec<Vec<String>> = (0..2)
        .map(|_| {
            let mut acd = three(Strategy::Random, t0);
            acd.set_seed(42);
            run_calls(&mut acd, t0, 300, |_| secs(5))
        })
        .collect();
    assert_eq!(runs[0], runs[1], "the same seed, the same choices");
    for agent in [A, B, C] {
        let n = runs[0].iter().filter(|a| *a == agent).count();
        assert!(n > 60, "{agent} got {n} of 300");
    }
}

#[test]
fn a_lower_level_rings_first_and_a_higher_one_only_when_it_is_busy() {
    let t0 = Instant::now();
    let agents = vec![
        AgentConfig::new(A, &["q"]),
        AgentConfig::new(B, &["q"]).with_level("q", 2),
    ];
    let mut acd = acd_with(Strategy::LongestIdle, agents);
    acd.agent_online(t0, B, true).expect("agent"); // B idle longer...
    acd.agent_online(t0 + secs(1), A, true).expect("agent");
    acd.enqueue(t0 + secs(2), 1, "q").expect("queue");
    assert_eq!(
        drain(&mut acd),
        vec![offer(1, A, "q", secs(0))],
        "...but A is level 1"
    );
    acd.answered(t0 + secs(3), 1, A).expect("offered");
    acd.enqueue(t0 + secs(4), 2, "q").expect("queue");
    let events = drain(&mut acd);
    assert_eq!(
        events.last(),
        Some(&offer(2, B, "q", secs(0))),
        "level 2 when level 1 is busy"
    );
}

#[test]
fn escalation_widens_the_agents_rung_as_the_caller_waits() {
    let t0 = Instant::now();
    let queue = QueueConfig::from_rings("q", 0, 3, 5000)
        .with_escalation(vec![(Duration::ZERO, 1), (secs(20), 2)]);
    let agents = vec![
        AgentConfig::new(A, &["q"]),
        AgentConfig::new(B, &["q"]).with_level("q", 2),
    ];
    let mut acd = Acd::new(vec![queue], agents).expect("config");
    online_in_order(&mut acd, t0, &[A, B]);
    acd.enqueue(t0 + secs(2), 1, "q").expect("queue");
    acd.answered(t0 + secs(3), 1, A).expect("offered");
    drain(&mut acd);
    // A is busy; B is free but level 2: the caller waits its 20 s first.
    acd.enqueue(t0 + secs(10), 2, "q").expect("queue");
    assert_eq!(drain(&mut acd), vec![]);
    assert_eq!(acd.poll_timeout(), Some(t0 + secs(30)));
    acd.handle_timeout(t0 + secs(30) - ms(1));
    assert_eq!(drain(&mut acd), vec![]);
    acd.handle_timeout(t0 + secs(30));
    assert_eq!(drain(&mut acd), vec![offer(2, B, "q", secs(20))]);
    // A third caller: B's ring ends and A frees up first, so A (level 1) takes it at once.
    acd.enqueue(t0 + secs(31), 3, "q").expect("queue");
    acd.call_ended(t0 + secs(32), A, EndedBy::Agent)
        .expect("talking");
    assert_eq!(drain(&mut acd), vec![offer(3, A, "q", secs(1))]);
    acd.abandon(t0 + secs(33), 2);
    acd.abandon(t0 + secs(33), 3);
    assert_eq!(
        acd.poll_timeout(),
        None,
        "no escalation timer left for gone callers"
    );
}

#[test]
fn a_caller_handed_to_a_free_agent_rings_that_agent_ahead_of_the_queue_then_waits_in_it() {
    let t0 = Instant::now();
    // A minute of wrap-up: the agent who hands the caller on cannot be rung back.
    let queue = QueueConfig::from_rings("q", 0, 3, 5000).with_wrap_up(secs(60));
    let agents = [A, B, C].map(|id| AgentConfig::new(id, &["q"])).to_vec();
    let mut acd = Acd::new(vec![queue], agents).expect("config");
    for (i, id) in [C, B, A].iter().enumerate() {
        acd.agent_online(t0 + secs(i as u64), id, true)
            .expect("agent");
    }
    let now = t0 + secs(10);
    // Two agents take calls 1 and 2; the third is free.
    for call in [1, 2] {
        acd.enqueue(now, call, "q").expect("queue");
        let agent = drain(&mut acd)
            .into_iter()
            .find_map(|e| match e {
                AcdEvent::Offer { agent, .. } => Some(agent),
                _ => None,
            })
            .expect("offered");
        acd.answered(now, call, &agent).expect("answer");
    }
    let on = |acd: &Acd, call| {
        acd.agents()
            .into_iter()
            .find(|a| a.current_call == Some(call))
            .map(|a| a.id)
            .expect("talking")
    };
    let (from, busy) = (on(&acd, 1), on(&acd, 2));
    let free = [A, B, C]
        .into_iter()
        .find(|id| *id != from && *id != busy)
        .expect("one agent is free");
    drain_all(&mut acd);
    for to in [&busy, &from] {
        assert_eq!(
            acd.transfer(now, &from, "q", Some(to)),
            Err(acd::Error::AgentNotFree(to.clone(), "talking")),
            "a talking agent (or the agent itself) is not handed a caller"
        );
    }
    assert!(drain(&mut acd).is_empty(), "a refusal changes nothing");
    acd.transfer(now, &from, "q", Some(free))
        .expect("a free agent");
    let offers: Vec<(u64, String)> = drain(&mut acd)
        .into_iter()
        .filter_map(|e| match e {
            AcdEvent::Offer { call, agent, .. } => Some((call, agent)),
            _ => None,
        })
        .collect();
    assert_eq!(
        offers,
        [(1, free.to_owned())],
        "rung at once, that agent only"
    );
    // Refused there, the caller stays in the queue and is offered to the next free agent.
    acd.declined(now + secs(3), 1, free).expect("offered");
    let events = drain_all(&mut acd);
    assert!(
        !events.iter().any(|e| matches!(e, AcdEvent::Offer { .. })),
        "nobody else is free: {events:?}"
    );
    assert_eq!(acd.position(1), Some((1, 1)), "waiting in the queue");
    // While the agent who declined sits out the rest of that ring, the next agent to
    // come free takes the caller.
    acd.call_ended(now + secs(10), &busy, EndedBy::Caller)
        .expect("talking");
    acd.set_ready(now + secs(10), &busy, true, None)
        .expect("wrap-up ended from the desk");
    let offered = drain(&mut acd).into_iter().find_map(|e| match e {
        AcdEvent::Offer { call: 1, agent, .. } => Some(agent),
        _ => None,
    });
    assert_eq!(
        offered.as_deref(),
        Some(busy.as_str()),
        "the next free agent rings"
    );
}

#[test]
fn a_transfer_into_a_queue_that_would_turn_the_caller_away_is_refused() {
    let t0 = Instant::now();
    let queues = vec![
        QueueConfig::from_rings("q", 0, 3, 5000),
        QueueConfig::from_rings("full", 0, 3, 5000).with_overflow(
            acd::Overflow::Hangup,
            None,
            Some(0),
            acd::LeaveWhen::Never,
        ),
        QueueConfig::from_rings("empty", 0, 3, 5000).with_overflow(
            acd::Overflow::Hangup,
            None,
            None,
            acd::LeaveWhen::NoneReady,
        ),
    ];
    // Only B serves "empty", and B is away.
    let agents = vec![
        AgentConfig::new(A, &["q", "full"]),
        AgentConfig::new(B, &["empty"]),
    ];
    let mut acd = Acd::new(queues, agents).expect("config");
    acd.agent_online(t0, A, true).expect("agent");
    acd.agent_online(t0, B, true).expect("agent");
    acd.set_ready(t0, B, false, Some("meal")).expect("online");
    acd.enqueue(t0, 1, "q").expect("queue");
    acd.answered(t0, 1, A).expect("offered");
    drain_all(&mut acd);
    for (queue, why) in [
        ("full", acd::ExitReason::Full),
        ("empty", acd::ExitReason::NoAgents),
    ] {
        assert_eq!(
            acd.transfer(t0 + secs(5), A, queue, None),
            Err(acd::Error::QueueRefuses(queue.into(), why))
        );
    }
    assert!(drain_all(&mut acd).is_empty(), "the call goes on untouched");
    assert_eq!(
        acd.agent(A).expect("agent").current_call,
        Some(1),
        "still talking"
    );
}

#[test]
fn the_agent_who_transferred_a_caller_is_not_rung_for_it_again_but_takes_others() {
    let t0 = Instant::now();
    // No wrap-up: the agent who hands the caller on is free at once.
    let queue = QueueConfig::from_rings("q", 0, 3, 5000);
    let agents = [A, B].map(|id| AgentConfig::new(id, &["q"])).to_vec();
    let mut acd = Acd::new(vec![queue], agents).expect("config");
    acd.agent_online(t0, A, true).expect("agent");
    acd.agent_online(t0 + secs(1), B, true).expect("agent");
    let now = t0 + secs(10);
    for (call, agent) in [(1, A), (2, B)] {
        acd.enqueue(now, call, "q").expect("queue");
        acd.answered(now, call, agent).expect("offered");
    }
    drain_all(&mut acd);
    acd.transfer(now + secs(5), A, "q", None).expect("transfer");
    let offers = |acd: &mut Acd| -> Vec<(u64, String)> {
        drain_all(acd)
            .into_iter()
            .filter_map(|e| match e {
                AcdEvent::Offer { call, agent, .. } => Some((call, agent)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        offers(&mut acd),
        [],
        "A is free but not rung for the caller it handed on"
    );
    // A newcomer is A's to take; the transferred caller waits for B.
    acd.enqueue(now + secs(6), 3, "q").expect("queue");
    assert_eq!(offers(&mut acd), [(3, A.to_owned())]);
    acd.call_ended(now + secs(8), B, EndedBy::Caller)
        .expect("talking");
    assert_eq!(offers(&mut acd), [(1, B.to_owned())]);
}

#[test]
fn ring_all_rings_every_free_agent_of_the_lowest_level_and_the_first_answer_takes_the_call() {
    let t0 = Instant::now();
    let agents = vec![
        AgentConfig::new(A, &["q"]),
        AgentConfig::new(B, &["q"]),
        AgentConfig::new(C, &["q"]).with_level("q", 2),
    ];
    let mut acd = acd_with(Strategy::RingAll, agents);
    online_in_order(&mut acd, t0, &[C, B, A]);
    let now = t0 + secs(10);
    acd.enqueue(now, 1, "q").expect("queue");
    let rung: Vec<String> = drain(&mut acd)
        .into_iter()
        .filter_map(|e| match e {
            AcdEvent::Offer { call: 1, agent, .. } => Some(agent),
            _ => None,
        })
        .collect();
    // Level 2 (C) waits while level 1 is free; B before A: longest idle first.
    assert_eq!(rung, [B, A]);
    let callers = acd.callers("q", now).expect("queue");
    assert_eq!(callers[0].ringing, [B, A]);
    while acd.poll_log().is_some() {}

    // A answers: B's phone stops, not a miss, and B is free for the next caller.
    acd.answered(now + secs(3), 1, A).expect("offered to A");
    let events = drain(&mut acd);
    assert_eq!(
        events,
        [
            AcdEvent::Withdrawn {
                call: 1,
                agent: B.to_string()
            },
            connected(1, A, secs(3)),
        ]
    );
    assert_eq!(missed(&acd, B), 0);
    assert_eq!(state(&acd, B), acd::AgentState::Ready);
    let ended: Vec<_> = std::iter::from_fn(|| acd.poll_log())
        .filter_map(|e| match e.event {
            acd::Logged::OfferEnded { agent, why, .. } => Some((agent, why)),
            _ => None,
        })
        .collect();
    assert_eq!(ended, [(B.to_string(), acd::OfferEnd::AnsweredElsewhere)]);
    assert!(!acd::OfferEnd::AnsweredElsewhere.is_miss());
    assert!(
        matches!(
            acd.answered(now + secs(3), 1, B),
            Err(acd::Error::NotOffered { .. })
        ),
        "a second answer loses the race (call control hangs it up)"
    );

    // The next caller rings B (A talks; C still waits for level 1 to be busy).
    acd.enqueue(now + secs(4), 2, "q").expect("queue");
    let rung: Vec<String> = drain(&mut acd)
        .into_iter()
        .filter_map(|e| match e {
            AcdEvent::Offer { agent, .. } => Some(agent),
            _ => None,
        })
        .collect();
    assert_eq!(rung, [B]);

    // One phone declining leaves the others ringing; the ring-out misses everyone left.
    acd.call_ended(now + secs(5), A, EndedBy::Caller)
        .expect("talking");
    acd.answered(now + secs(5), 2, B).expect("offered to B");
    acd.call_ended(now + secs(6), B, EndedBy::Caller)
        .expect("talking");
    acd.enqueue(now + secs(6), 3, "q").expect("queue");
    let rung: Vec<String> = drain(&mut acd)
        .into_iter()
        .filter_map(|e| match e {
            AcdEvent::Offer { call: 3, agent, .. } => Some(agent),
            _ => None,
        })
        .collect();
    assert_eq!(rung, [A, B], "level 2 (C) waits while level 1 is free");
    acd.declined(now + secs(7), 3, B).expect("offered to B");
    assert_eq!(acd.callers("q", now + secs(7)).expect("q")[0].ringing, [A]);
    assert_eq!(drain(&mut acd), [], "A rings on");
    acd.handle_timeout(now + secs(6) + secs(15));
    let events = drain(&mut acd);
    assert_eq!(events[0], ring_out(3, A));
    assert_eq!((missed(&acd, A), missed(&acd, B)), (1, 1));
    // Both free again: both ring again, B (idle longer now) first.
    assert_eq!(
        events[1..],
        [offer(3, B, "q", secs(15)), offer(3, A, "q", secs(15))]
    );
    acd.abandon(now + secs(22), 3);
    assert_eq!(drain(&mut acd), [], "the caller's hang-up is no miss");
    assert_eq!((missed(&acd, A), missed(&acd, B)), (1, 1));

    // A caller hanging up stops every phone ringing for it, no miss.
    acd.enqueue(now + secs(40), 4, "q").expect("queue");
    assert_eq!(drain(&mut acd).len(), 2, "A and B ring (C is level 2)");
    acd.abandon(now + secs(41), 4);
    assert_eq!(drain(&mut acd), []);
    assert_eq!(
        [A, B].map(|a| state(&acd, a)),
        [acd::AgentState::Ready, acd::AgentState::Ready]
    );
}
