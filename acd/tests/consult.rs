//! Attended transfer: an agent consults another about its caller, then hands the caller
//! over or takes the call back.

mod common;

use std::time::Instant;

use acd::{AcdEvent, AgentState, EndedBy, Error};
use common::*;

/// A (1001) talks with call 1; B and C are ready. Returns the ACD and the time.
fn a_talking() -> (acd::Acd, Instant) {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A, B, C]);
    acd.enqueue(t0 + secs(5), 1, "appointments").expect("queue");
    assert_eq!(drain(&mut acd), [offer(1, A, "appointments", secs(0))]);
    acd.answered(t0 + secs(7), 1, A).expect("offered");
    drain(&mut acd);
    while acd.poll_log().is_some() {}
    (acd, t0 + secs(10))
}

#[test]
fn a_consulted_agent_is_busy_and_takes_the_caller_when_the_transfer_completes() {
    let (mut acd, now) = a_talking();
    assert_eq!(acd.consult(now, A, B), Ok(1));
    assert_eq!(state(&acd, B), AgentState::Ringing);
    // Busy while consulted: the next caller rings C, not B.
    acd.enqueue(now + secs(1), 2, "appointments")
        .expect("queue");
    assert_eq!(drain(&mut acd), [offer(2, C, "appointments", secs(0))]);
    acd.consult_answered(now + secs(3), B).expect("consulted");
    assert_eq!(state(&acd, B), AgentState::Talking);
    assert_eq!(
        acd.complete_consult(now + secs(3), A, C),
        Err(Error::NotConsulting(C.into(), A.into()))
    );
    while acd.poll_log().is_some() {}

    acd.complete_consult(now + secs(20), A, B)
        .expect("answered");
    // Call control joins the legs itself: no offer or connect to act on.
    assert!(
        drain(&mut acd).iter().all(|e| !matches!(
            e,
            AcdEvent::Offer { call: 1, .. } | AcdEvent::Connected { call: 1, .. }
        )),
        "no event for call control to act on"
    );
    assert_eq!(acd.agent(B).expect("B").current_call, Some(1));
    assert_eq!(state(&acd, B), AgentState::Talking);
    assert_eq!(acd.agent(A).expect("A").current_call, None);
    // Logged as a transfer that B answered at once: the KPIs count it like a blind one.
    let kinds: Vec<_> = log_kinds(&mut acd)
        .into_iter()
        .filter(|(_, call)| *call == Some(1))
        .map(|(kind, _)| kind)
        .collect();
    assert_eq!(kinds, ["completed", "enqueued", "offered", "connected"]);
    acd.call_ended(now + secs(40), B, EndedBy::Caller)
        .expect("B talks with the caller");
}

#[test]
fn consulting_a_queue_asks_the_agent_its_strategy_gives_never_the_one_asking() {
    let (mut acd, now) = a_talking();
    // Longest idle among B and C (both came online before A answered): B.
    assert_eq!(
        acd.consult_queue(now, A, "enquiries"),
        Ok((1, B.to_string()))
    );
    acd.consult_ended(now + secs(1), B).expect("consulted");
    acd.set_ready(now + secs(1), B, false, Some("break"))
        .expect("online");
    acd.set_ready(now + secs(1), C, false, Some("break"))
        .expect("online");
    assert_eq!(
        acd.consult_queue(now + secs(2), A, "enquiries"),
        Err(Error::QueueRefuses(
            "enquiries".into(),
            acd::ExitReason::NoAgents
        )),
        "nobody ready: a queue consults no one (an agent may still be named)"
    );
    assert_eq!(acd.consult(now + secs(2), A, C), Ok(1));
    assert!(matches!(
        acd.consult_queue(now, A, "nowhere"),
        Err(Error::UnknownQueue(_))
    ));
}

#[test]
fn a_consultation_that_ends_frees_the_consulted_agent_without_a_miss() {
    let (mut acd, now) = a_talking();
    acd.consult(now, A, B).expect("B is free");
    assert_eq!(
        acd.consult(now, A, B),
        Err(Error::AgentNotFree(B.into(), "ringing")),
        "one consultation of B at a time"
    );
    assert_eq!(
        acd.consult(now, A, A),
        Err(Error::AgentNotFree(A.into(), "talking"))
    );
    assert_eq!(acd.consult(now, B, C), Err(Error::NotTalking(B.into())));
    acd.consult_ended(now + secs(4), B).expect("consulted");
    assert_eq!(state(&acd, B), AgentState::Ready);
    assert_eq!(missed(&acd, B), 0);
    assert_eq!(
        acd.agent(A).expect("A").current_call,
        Some(1),
        "A keeps the caller"
    );
    assert!(acd.consult_ended(now + secs(5), B).is_err());
    // A complete without an answer is refused.
    acd.consult(now + secs(6), A, C).expect("C is free");
    assert_eq!(
        acd.complete_consult(now + secs(7), A, C),
        Err(Error::NotConsulting(C.into(), A.into()))
    );
}
