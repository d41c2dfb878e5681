//! Callers sent out of a queue: max wait, a full queue, nobody to answer; into another queue
//! (keeping their wait and seniority) or back to call control.

mod common;

use std::time::Instant;

use acd::{
    Acd, AcdEvent, AgentConfig, EndedBy, Error, ExitReason, LeaveWhen, Logged, Overflow,
    QueueConfig,
};
use common::*;

fn moved(call: u64, from: &str, to: &str) -> AcdEvent {
    AcdEvent::Moved {
        call,
        from: from.into(),
        to: to.into(),
    }
}

fn exited(call: u64, queue: &str, reason: ExitReason) -> AcdEvent {
    AcdEvent::Exited {
        call,
        queue: queue.into(),
        reason,
    }
}

#[test]
fn a_caller_past_max_wait_moves_to_the_overflow_queue_ahead_of_later_callers() {
    let t0 = Instant::now();
    let queues = vec![
        QueueConfig::from_rings("appointments", 0, 3, 5000).with_overflow(
            Overflow::Queue("enquiries".into()),
            Some(secs(30)),
            None,
            LeaveWhen::Never,
        ),
        QueueConfig::from_rings("enquiries", 0, 3, 5000),
    ];
    // Nobody serves appointments; A serves enquiries and is busy.
    let mut acd = Acd::new(queues, vec![AgentConfig::new(A, &["enquiries"])]).expect("config");
    acd.agent_online(t0, A, true).expect("agent");
    acd.enqueue(t0, 1, "enquiries").expect("queue");
    acd.answered(t0 + secs(1), 1, A).expect("offered");
    acd.enqueue(t0 + secs(2), 2, "appointments").expect("queue");
    acd.enqueue(t0 + secs(10), 3, "enquiries").expect("queue");
    drain(&mut acd);
    acd.handle_timeout(t0 + secs(32) - ms(1));
    assert_eq!(drain(&mut acd), vec![]);
    acd.handle_timeout(t0 + secs(32));
    assert_eq!(drain(&mut acd), vec![moved(2, "appointments", "enquiries")]);
    let waiting: Vec<u64> = acd
        .callers("enquiries", t0 + secs(32))
        .expect("queue")
        .iter()
        .map(|c| c.call)
        .collect();
    assert_eq!(
        waiting,
        [2, 3],
        "it arrived before call 3 and keeps that place"
    );
    assert_eq!(
        acd.caller_wait(2, t0 + secs(32)),
        Some(secs(30)),
        "its wait goes on"
    );
    acd.call_ended(t0 + secs(40), A, EndedBy::Caller)
        .expect("talking");
    assert_eq!(drain(&mut acd), vec![offer(2, A, "enquiries", secs(38))]);
    let log: Vec<&'static str> = std::iter::from_fn(|| acd.poll_log())
        .filter(|e| e.call == Some(2) && !matches!(e.event, Logged::AgentState { .. }))
        .map(|e| e.event.kind())
        .collect();
    assert_eq!(log, ["enqueued", "exited", "enqueued", "offered"]);
}

#[test]
fn max_wait_lets_a_ringing_phone_ring_to_its_end_then_hands_the_call_back() {
    let t0 = Instant::now();
    let queue = QueueConfig::from_rings("urgent", 0, 3, 5000).with_overflow(
        Overflow::Hangup,
        Some(secs(10)),
        None,
        LeaveWhen::Never,
    );
    let mut acd = Acd::new(vec![queue], vec![AgentConfig::new(A, &["urgent"])]).expect("config");
    acd.agent_online(t0, A, true).expect("agent");
    acd.enqueue(t0, 1, "urgent").expect("queue");
    acd.handle_timeout(t0 + secs(10));
    assert_eq!(
        drain(&mut acd),
        vec![offer(1, A, "urgent", secs(0))],
        "still ringing"
    );
    acd.handle_timeout(t0 + secs(15));
    assert_eq!(
        drain(&mut acd),
        vec![ring_out(1, A), exited(1, "urgent", ExitReason::Timeout)],
        "the INVITE is cancelled first, then call control takes the caller back"
    );
    assert_eq!(acd.waiting("urgent"), Ok(0));
    assert_eq!(acd.poll_timeout(), None);
    // Answered inside the last ring: the call is the agent's, no exit.
    acd.enqueue(t0 + secs(20), 2, "urgent").expect("queue");
    acd.handle_timeout(t0 + secs(30));
    acd.answered(t0 + secs(31), 2, A).expect("offered");
    assert_eq!(drain(&mut acd).last(), Some(&connected(2, A, secs(11))));
    assert_eq!(acd.poll_timeout(), None, "no max-wait timer left");
}

#[test]
fn a_full_queue_sends_newcomers_on_without_entering_it() {
    let t0 = Instant::now();
    let queues = vec![
        QueueConfig::from_rings("appointments", 0, 3, 5000).with_overflow(
            Overflow::Queue("enquiries".into()),
            None,
            Some(1),
            LeaveWhen::Never,
        ),
        QueueConfig::from_rings("enquiries", 0, 3, 5000),
    ];
    let mut acd = Acd::new(queues, demo_agents_in(&["appointments", "enquiries"])).expect("config");
    acd.enqueue(t0, 1, "appointments").expect("queue");
    acd.enqueue(t0 + secs(1), 2, "appointments").expect("queue");
    assert_eq!(drain(&mut acd), vec![moved(2, "appointments", "enquiries")]);
    assert_eq!(
        (acd.waiting("appointments"), acd.waiting("enquiries")),
        (Ok(1), Ok(1))
    );
    let log: Vec<(&'static str, Option<u64>)> = log_kinds(&mut acd);
    assert_eq!(
        log,
        [
            ("enqueued", Some(1)),
            ("exited", Some(2)),
            ("enqueued", Some(2)),
        ],
        "a caller turned away at the door never entered the full queue"
    );
}

#[test]
fn nobody_ready_turns_newcomers_away_and_sends_the_waiting_out() {
    let t0 = Instant::now();
    let queue = QueueConfig::from_rings("urgent", 10, 3, 5000).with_overflow(
        Overflow::Hangup,
        None,
        None,
        LeaveWhen::NoneReady,
    );
    let mut acd = Acd::new(vec![queue], vec![AgentConfig::new(A, &["urgent"])]).expect("config");
    // Nobody logged in: turned away at once.
    acd.enqueue(t0, 1, "urgent").expect("queue");
    assert_eq!(
        drain(&mut acd),
        vec![exited(1, "urgent", ExitReason::NoAgents)]
    );
    // A is on a call: callers wait for A.
    acd.agent_online(t0 + secs(1), A, true).expect("agent");
    acd.enqueue(t0 + secs(2), 2, "urgent").expect("queue");
    acd.answered(t0 + secs(3), 2, A).expect("offered");
    acd.enqueue(t0 + secs(4), 3, "urgent").expect("queue");
    acd.set_ready(t0 + secs(5), A, false, Some("meal"))
        .expect("online");
    assert_eq!(
        acd.waiting("urgent"),
        Ok(1),
        "A is still talking: someone will come"
    );
    drain(&mut acd);
    // The call ends and A goes on the meal break: nobody will come for call 3.
    acd.call_ended(t0 + secs(6), A, EndedBy::Agent)
        .expect("talking");
    assert_eq!(
        drain(&mut acd),
        vec![exited(3, "urgent", ExitReason::NoAgents)]
    );
}

#[test]
fn an_overflow_into_itself_or_nowhere_is_refused() {
    for target in ["urgent", "billing"] {
        let queue = QueueConfig::from_rings("urgent", 0, 3, 5000).with_overflow(
            Overflow::Queue(target.into()),
            Some(secs(5)),
            None,
            LeaveWhen::Never,
        );
        assert_eq!(
            Acd::new(vec![queue], vec![]).err(),
            Some(Error::BadOverflow("urgent".into(), target.into()))
        );
    }
}

/// The demo's three agents, serving `queues`.
fn demo_agents_in(queues: &[&str]) -> Vec<AgentConfig> {
    [A, B, C]
        .iter()
        .map(|id| AgentConfig::new(*id, queues))
        .collect()
}

#[test]
fn exits_are_in_the_kpis_apart_from_abandons() {
    let t0 = Instant::now();
    let queue = QueueConfig::from_rings("urgent", 0, 3, 5000).with_overflow(
        Overflow::Hangup,
        Some(secs(20)),
        None,
        LeaveWhen::Never,
    );
    let mut acd = Acd::new(vec![queue], vec![AgentConfig::new(A, &["urgent"])]).expect("config");
    acd.enqueue(t0, 1, "urgent").expect("queue");
    acd.handle_timeout(t0 + secs(20));
    let entries: Vec<(i64, Logged)> = std::iter::from_fn(|| acd.poll_log())
        .map(|e| {
            let at = i64::try_from(e.at.duration_since(t0).as_millis()).expect("ms");
            (at, e.event)
        })
        .collect();
    let stamped: Vec<acd::kpi::Stamped<'_>> = entries
        .iter()
        .map(|(at, event)| acd::kpi::Stamped {
            at_ms: *at,
            call: None,
            event,
        })
        .collect();
    let window = acd::kpi::Window {
        from_ms: 0,
        to_ms: 60_000,
        now_ms: 60_000,
        queue: None,
        agent: None,
        service_level_ms: 20_000,
    };
    let k = acd::kpi::compute(&[], &stamped, &window);
    assert_eq!((k.offered, k.overflowed, k.abandoned), (1, 1, 0));
    assert_eq!(k.answer_rate, None, "nothing answered or abandoned here");
    assert_eq!(k.mean_wait_ms, Some(20_000));
}

#[test]
fn a_caller_pressing_the_exit_key_leaves_for_the_overflow_unless_a_phone_rings() {
    let t0 = Instant::now();
    let queues = vec![
        QueueConfig::from_rings("appointments", 0, 3, 5000).with_overflow(
            Overflow::Queue("enquiries".into()),
            None,
            None,
            LeaveWhen::Never,
        ),
        QueueConfig::from_rings("enquiries", 0, 3, 5000),
    ];
    let agents = vec![
        AgentConfig::new(A, &["appointments"]),
        AgentConfig::new(B, &["enquiries"]),
    ];
    let mut acd = Acd::new(queues, agents).expect("config");
    acd.agent_online(t0, A, true).expect("agent");
    acd.enqueue(t0 + secs(1), 1, "appointments").expect("queue");
    assert!(
        !acd.leave_by_key(t0 + secs(2), 1),
        "A is ringing for it: it stays"
    );
    acd.answered(t0 + secs(3), 1, A).expect("offered");
    acd.enqueue(t0 + secs(4), 2, "appointments").expect("queue");
    acd.agent_online(t0 + secs(5), B, true).expect("agent");
    drain(&mut acd);
    assert!(acd.leave_by_key(t0 + secs(6), 2));
    assert_eq!(
        drain(&mut acd),
        vec![
            moved(2, "appointments", "enquiries"),
            offer(2, B, "enquiries", secs(2))
        ]
    );
    assert!(!acd.leave_by_key(t0 + secs(7), 99), "unknown call");
}
