//! Callbacks in the ACD: the caller leaves the line keeping its place; a failed dial waits
//! again in that place; a queue rule can make callers callbacks instead of hanging up.

mod common;

use std::time::Instant;

use acd::{
    Acd, AcdEvent, AgentConfig, CallbackResult, EndedBy, ExitReason, LeaveWhen, Logged, Overflow,
    QueueConfig,
};
use common::*;

fn callback(call: u64, queue: &str) -> AcdEvent {
    AcdEvent::Callback {
        call,
        queue: queue.into(),
    }
}

fn order(acd: &Acd, queue: &str, now: Instant) -> Vec<(u64, bool)> {
    acd.callers(queue, now)
        .expect("queue")
        .iter()
        .map(|c| (c.call, c.callback))
        .collect()
}

#[test]
fn a_caller_who_asks_for_a_callback_keeps_its_place_and_is_offered_in_turn() {
    let t0 = Instant::now();
    let mut acd = demo();
    acd.agent_online(t0, A, true).expect("agent");
    acd.enqueue(t0, 1, "enquiries").expect("queue");
    acd.answered(t0 + secs(1), 1, A).expect("offered");
    acd.enqueue(t0 + secs(2), 2, "enquiries").expect("queue");
    acd.enqueue(t0 + secs(3), 3, "enquiries").expect("queue");
    drain(&mut acd);
    assert!(acd.request_callback(t0 + secs(10), 2));
    assert_eq!(drain(&mut acd), vec![callback(2, "enquiries")]);
    // Parked while call control lets the line go: B, free, is not rung for it.
    acd.agent_online(t0 + secs(11), B, true).expect("agent");
    assert_eq!(drain(&mut acd), vec![offer(3, B, "enquiries", secs(8))]);
    acd.callback_ready(t0 + secs(12), 2);
    assert_eq!(drain(&mut acd), vec![]);
    assert!(
        !acd.request_callback(t0 + secs(11), 2),
        "already a callback"
    );
    assert!(
        !acd.request_callback(t0 + secs(11), 1),
        "talking, not waiting"
    );
    assert_eq!(
        order(&acd, "enquiries", t0 + secs(12)),
        [(2, true), (3, false)],
        "call 2 keeps its place ahead of call 3"
    );
    // A frees up: the callback is first.
    acd.call_ended(t0 + secs(20), A, EndedBy::Caller)
        .expect("talking");
    assert_eq!(drain(&mut acd), vec![offer(2, A, "enquiries", secs(18))]);
    // While it rings, it cannot ask again (nor could it: its line is gone).
    assert!(!acd.request_callback(t0 + secs(21), 2));
    let log: Vec<Logged> = std::iter::from_fn(|| acd.poll_log())
        .filter(|e| e.call == Some(2))
        .map(|e| e.event)
        .collect();
    assert!(log.contains(&Logged::CallbackRequested {
        queue: "enquiries".into(),
        position: 1,
        waited_ms: 8_000,
        rule: None,
        voicemail: false,
        message: false,
    }));
}

#[test]
fn a_failed_dial_ends_the_agents_part_and_the_retry_waits_in_the_original_place() {
    let t0 = Instant::now();
    let mut acd = demo();
    acd.agent_online(t0, A, true).expect("agent");
    acd.enqueue(t0, 1, "enquiries").expect("queue");
    acd.answered(t0 + secs(1), 1, A).expect("offered");
    acd.enqueue(t0 + secs(2), 2, "enquiries").expect("queue");
    assert!(acd.request_callback(t0 + secs(5), 2));
    acd.callback_ready(t0 + secs(6), 2);
    acd.call_ended(t0 + secs(10), A, EndedBy::Caller)
        .expect("talking");
    acd.answered(t0 + secs(12), 2, A).expect("offered");
    // The patient's phone rings 30 s unanswered.
    let call = acd
        .callback_unreached(t0 + secs(42), A, 1, CallbackResult::NoAnswer, secs(30))
        .expect("talking");
    assert_eq!(call, 2);
    assert_eq!(state(&acd, A), acd::AgentState::Ready, "no wrap-up here");
    // Two new callers arrive while the callback waits for its next try.
    acd.enqueue(t0 + secs(50), 3, "enquiries").expect("queue");
    acd.enqueue(t0 + secs(60), 4, "enquiries").expect("queue");
    drain(&mut acd);
    acd.requeue_callback(t0 + secs(100), 2, "enquiries", t0 + secs(2))
        .expect("requeued");
    assert_eq!(
        order(&acd, "enquiries", t0 + secs(100)),
        [(2, true), (3, false), (4, false)],
        "the callback waits ahead of 3 and 4, who came later (A already rings for 3)"
    );
    let ringing = acd.callers("enquiries", t0 + secs(100)).expect("queue");
    assert_eq!(ringing[1].offered_to.as_deref(), Some(A));
    let tries: Vec<(u32, CallbackResult, u64)> = std::iter::from_fn(|| acd.poll_log())
        .filter_map(|e| match e.event {
            Logged::CallbackDialled {
                attempt,
                result,
                rang_ms,
                ..
            } => Some((attempt, result, rang_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(tries, [(1, CallbackResult::NoAnswer, 30_000)]);
    // Given up: its place is let go and the log says so.
    acd.callback_failed(t0 + secs(101), 2, "enquiries", 1);
    assert_eq!(
        order(&acd, "enquiries", t0 + secs(101)),
        [(3, false), (4, false)]
    );
    let log: Vec<&str> = std::iter::from_fn(|| acd.poll_log())
        .map(|e| e.event.kind())
        .collect();
    assert!(log.contains(&"callback_failed"), "{log:?}");
}

#[test]
fn a_queue_whose_overflow_is_a_callback_keeps_its_callers_instead_of_hanging_up() {
    let t0 = Instant::now();
    let queues = vec![
        QueueConfig::from_rings("appointments", 0, 3, 5000).with_overflow(
            Overflow::Callback,
            Some(secs(30)),
            Some(1),
            LeaveWhen::NoneLoggedIn,
        ),
    ];
    let mut acd = Acd::new(queues, vec![AgentConfig::new(A, &["appointments"])]).expect("config");
    // Nobody logged in: the first caller becomes a callback at the door.
    acd.enqueue(t0, 1, "appointments").expect("queue");
    assert_eq!(drain(&mut acd), vec![callback(1, "appointments")]);
    acd.callback_ready(t0, 1);
    acd.agent_online(t0 + secs(1), A, true).expect("agent");
    assert_eq!(
        drain(&mut acd),
        vec![offer(1, A, "appointments", secs(1))],
        "the callback is offered when someone logs in"
    );
    acd.answered(t0 + secs(2), 1, A).expect("offered");
    // Past max wait: call 2 becomes a callback (no exit), and a full queue makes call 4 one:
    // callbacks are not on the line, so call 3 got in.
    acd.enqueue(t0 + secs(10), 2, "appointments")
        .expect("queue");
    drain(&mut acd);
    acd.handle_timeout(t0 + secs(40));
    assert_eq!(drain(&mut acd), vec![callback(2, "appointments")]);
    acd.enqueue(t0 + secs(41), 3, "appointments")
        .expect("queue");
    acd.enqueue(t0 + secs(42), 4, "appointments")
        .expect("queue");
    assert_eq!(drain(&mut acd), vec![callback(4, "appointments")]);
    // A logs out: the leave rule leaves callbacks where they are; call 3 becomes one.
    acd.agent_online(t0 + secs(50), A, false).expect("agent");
    acd.call_ended(t0 + secs(51), A, EndedBy::Caller)
        .expect("talking");
    assert_eq!(drain(&mut acd), vec![callback(3, "appointments")]);
    assert_eq!(
        order(&acd, "appointments", t0 + secs(52)),
        [(2, true), (3, true), (4, true)]
    );
    let rules: Vec<Option<ExitReason>> = std::iter::from_fn(|| acd.poll_log())
        .filter_map(|e| match e.event {
            Logged::CallbackRequested { rule, .. } => Some(rule),
            Logged::Exited { .. } => panic!("no caller exits a callback queue"),
            _ => None,
        })
        .collect();
    assert_eq!(
        rules,
        [
            Some(ExitReason::NoAgents),
            Some(ExitReason::Timeout),
            Some(ExitReason::Full),
            Some(ExitReason::NoAgents),
        ]
    );
}

#[test]
fn a_caller_with_no_number_is_never_made_a_callback_a_callback_rule_ends_its_wait() {
    let t0 = Instant::now();
    let queues = vec![
        QueueConfig::from_rings("appointments", 0, 3, 5000).with_overflow(
            Overflow::Callback,
            Some(secs(30)),
            None,
            LeaveWhen::Never,
        ),
    ];
    let mut acd = Acd::new(queues, vec![AgentConfig::new(A, &["appointments"])]).expect("config");
    acd.enqueue_without_callback(t0, 1, "appointments")
        .expect("queue");
    assert!(!acd.request_callback(t0 + secs(1), 1), "no number to call");
    acd.handle_timeout(t0 + secs(30));
    assert_eq!(
        drain(&mut acd),
        vec![AcdEvent::Exited {
            call: 1,
            queue: "appointments".into(),
            reason: ExitReason::Timeout,
        }]
    );
}

#[test]
fn a_message_left_after_a_rule_waits_as_a_parked_callback_in_its_first_place() {
    let t0 = Instant::now();
    let queues = vec![
        QueueConfig::from_rings("appointments", 0, 3, 5000).with_overflow(
            Overflow::Voicemail,
            Some(secs(30)),
            None,
            LeaveWhen::Never,
        ),
    ];
    let mut acd = Acd::new(queues, vec![AgentConfig::new(A, &["appointments"])]).expect("config");
    acd.enqueue(t0, 1, "appointments").expect("queue");
    acd.enqueue(t0 + secs(5), 2, "appointments").expect("queue");
    acd.handle_timeout(t0 + secs(30));
    assert_eq!(
        drain(&mut acd),
        vec![AcdEvent::Exited {
            call: 1,
            queue: "appointments".into(),
            reason: ExitReason::Timeout,
        }],
        "to the ACD the wait ends; call control records the message"
    );
    acd.voicemail_callback(t0 + secs(60), 1, "appointments", t0, true)
        .expect("a callback now");
    acd.agent_online(t0 + secs(61), A, true).expect("agent");
    assert_eq!(
        drain(&mut acd),
        vec![offer(2, A, "appointments", secs(56))],
        "parked while its line goes: call 2 first"
    );
    assert_eq!(
        order(&acd, "appointments", t0 + secs(61)),
        [(1, true), (2, false)]
    );
    let requested: Vec<bool> = std::iter::from_fn(|| acd.poll_log())
        .filter_map(|e| match e.event {
            Logged::CallbackRequested { voicemail, .. } => Some(voicemail),
            _ => None,
        })
        .collect();
    assert_eq!(requested, [true]);
}
