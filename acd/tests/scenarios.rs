//! What callers and agents notice, driven in simulated time.

mod common;

use std::time::Instant;

use acd::{Acd, AcdEvent, AgentConfig, AgentState, EndedBy, Error, QueueConfig};
use common::*;

#[test]
fn longest_idle_agent_gets_the_offer() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A, B, C]); // idle since t0, t0+1, t0+2
    acd.enqueue(t0 + secs(5), 1, "appointments").expect("queue");
    assert_eq!(drain(&mut acd), vec![offer(1, A, "appointments", secs(0))]);
    acd.answered(t0 + secs(7), 1, A).expect("offered");
    acd.call_ended(t0 + secs(20), A, EndedBy::Agent)
        .expect("talking");
    assert_eq!(drain(&mut acd), vec![connected(1, A, secs(2))]);

    // A just ended a call; B has been idle since t0+1 s, C since t0+2 s.
    acd.enqueue(t0 + secs(30), 2, "enquiries").expect("queue");
    assert_eq!(drain(&mut acd), vec![offer(2, B, "enquiries", secs(0))]);
    acd.enqueue(t0 + secs(31), 3, "enquiries").expect("queue");
    assert_eq!(drain(&mut acd), vec![offer(3, C, "enquiries", secs(0))]);
    acd.enqueue(t0 + secs(32), 4, "enquiries").expect("queue");
    assert_eq!(drain(&mut acd), vec![offer(4, A, "enquiries", secs(0))]);
    let view = acd.agent(A).expect("agent");
    assert_eq!(view.state, AgentState::Ringing);
    assert_eq!(view.current_call, Some(4));
}

#[test]
fn urgent_caller_enqueued_later_is_offered_first() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A]);
    acd.enqueue(t0, 100, "enquiries").expect("queue");
    acd.answered(t0, 100, A).expect("offered");
    drain(&mut acd);

    acd.enqueue(t0 + secs(1), 1, "appointments").expect("queue");
    acd.enqueue(t0 + secs(2), 2, "enquiries").expect("queue");
    acd.enqueue(t0 + secs(3), 3, "urgent").expect("queue");
    assert_eq!(drain(&mut acd), vec![], "the only agent is talking");
    assert_eq!(acd.waiting("urgent"), Ok(1));

    acd.call_ended(t0 + secs(10), A, EndedBy::Agent)
        .expect("talking");
    assert_eq!(drain(&mut acd), vec![offer(3, A, "urgent", secs(7))]);
    acd.answered(t0 + secs(11), 3, A).expect("offered");
    acd.call_ended(t0 + secs(20), A, EndedBy::Agent)
        .expect("talking");
    // Then first come, first served across the equal-priority queues.
    assert_eq!(
        drain(&mut acd),
        vec![
            connected(3, A, secs(8)),
            offer(1, A, "appointments", secs(19))
        ]
    );
    acd.answered(t0 + secs(21), 1, A).expect("offered");
    acd.call_ended(t0 + secs(30), A, EndedBy::Agent)
        .expect("talking");
    assert_eq!(
        drain(&mut acd),
        vec![
            connected(1, A, secs(20)),
            offer(2, A, "enquiries", secs(28))
        ]
    );
}

#[test]
fn ring_out_at_exactly_fifteen_seconds_then_next_agent_at_same_instant() {
    let t0 = Instant::now();
    let mut acd = demo();
    acd.enqueue(t0, 1, "appointments").expect("queue"); // nobody online yet
    acd.agent_online(t0 + secs(2), A, true).expect("agent");
    acd.agent_online(t0 + secs(3), B, true).expect("agent");
    assert_eq!(drain(&mut acd), vec![offer(1, A, "appointments", secs(2))]);
    assert_eq!(acd.poll_timeout(), Some(t0 + secs(17)));

    acd.handle_timeout(t0 + secs(17) - ms(1));
    assert_eq!(drain(&mut acd), vec![], "still ringing at 14.999 s");
    assert_eq!(state(&acd, A), AgentState::Ringing);
    assert_eq!(missed(&acd, A), 0);

    acd.handle_timeout(t0 + secs(17));
    assert_eq!(
        drain(&mut acd),
        vec![
            ring_out(1, A),
            // The caller's wait still counts from enqueue, not from the first offer.
            offer(1, B, "appointments", secs(17)),
        ]
    );
    assert_eq!(missed(&acd, A), 1);
    assert_eq!(
        state(&acd, A),
        AgentState::Ready,
        "a miss leaves the agent Ready"
    );
    assert_eq!(acd.caller_wait(1, t0 + secs(20)), Some(secs(20)));
    assert_eq!(acd.poll_timeout(), Some(t0 + secs(32)));

    acd.answered(t0 + secs(20), 1, B).expect("offered");
    assert_eq!(drain(&mut acd), vec![connected(1, B, secs(20))]);
    assert_eq!(acd.caller_wait(1, t0 + secs(99)), Some(secs(20)));
}

#[test]
fn ring_out_goes_round_the_free_agents_before_ringing_the_same_one_again() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A, B]);
    acd.enqueue(t0 + secs(5), 1, "urgent").expect("queue");
    acd.handle_timeout(t0 + secs(20));
    acd.handle_timeout(t0 + secs(35));
    acd.handle_timeout(t0 + secs(50));
    assert_eq!(
        drain(&mut acd),
        vec![
            offer(1, A, "urgent", secs(0)),
            ring_out(1, A),
            offer(1, B, "urgent", secs(15)),
            ring_out(1, B),
            offer(1, A, "urgent", secs(30)),
            ring_out(1, A),
            offer(1, B, "urgent", secs(45)),
        ]
    );
    assert_eq!(missed(&acd, A), 2);
    assert_eq!(missed(&acd, B), 1);
}

#[test]
fn lone_agent_who_rang_out_is_offered_the_same_caller_again() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A]);
    acd.enqueue(t0, 1, "appointments").expect("queue");
    acd.enqueue(t0 + secs(1), 2, "appointments").expect("queue");
    acd.handle_timeout(t0 + secs(15));
    assert_eq!(
        drain(&mut acd),
        vec![
            offer(1, A, "appointments", secs(0)),
            ring_out(1, A),
            offer(1, A, "appointments", secs(15)),
        ],
        "the first caller keeps its place ahead of the second"
    );
}

#[test]
fn missed_rings_count_ring_outs_declines_and_offline_during_ring() {
    let t0 = Instant::now();
    let mut agents = demo_agents();
    for a in &mut agents {
        a.max_missed_rings = 0;
    }
    let mut acd = Acd::new(demo_queues(), agents).expect("config");
    online_in_order(&mut acd, t0, &[A]);
    acd.enqueue(t0, 1, "appointments").expect("queue");
    acd.handle_timeout(t0 + secs(15)); // miss 1, offered again
    acd.declined(t0 + secs(16), 1, A).expect("offered"); // miss 2
    acd.handle_timeout(t0 + secs(30)); // pause over: offered again
    acd.agent_online(t0 + secs(31), A, false).expect("agent"); // miss 3
    assert_eq!(missed(&acd, A), 3);
    assert_eq!(missed(&acd, B), 0);
    acd.agent_online(t0 + secs(40), A, true).expect("agent");
    acd.answered(t0 + secs(41), 1, A).expect("offered");
    assert_eq!(missed(&acd, A), 3, "answering does not reset or add misses");
    let events = drain(&mut acd);
    assert_eq!(events.last(), Some(&connected(1, A, secs(41))));
}

#[test]
fn two_ring_outs_in_a_row_make_the_agent_not_ready_missed_until_the_desk_says_ready() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A, B]);
    drain_all(&mut acd);
    acd.enqueue(t0 + secs(2), 1, "appointments").expect("queue");
    // A rings out, B rings out, A rings out again: A's second miss in a row.
    acd.handle_timeout(t0 + secs(17));
    acd.handle_timeout(t0 + secs(32));
    assert_eq!(
        state(&acd, A),
        AgentState::Ringing,
        "one miss is not enough: offered again"
    );
    acd.handle_timeout(t0 + secs(47));
    let view = acd.agent(A).expect("agent");
    assert_eq!(view.state, AgentState::NotReady);
    assert_eq!(view.not_ready_reason.as_deref(), Some(acd::MISSED));
    assert_eq!(view.state_since, Some(t0 + secs(47)));
    let events = drain_all(&mut acd);
    assert!(
        events.contains(&AcdEvent::AgentState {
            agent: A.into(),
            state: AgentState::NotReady,
            reason: Some("missed".into()),
        }),
        "the desk is told at once: {events:?}"
    );
    // B is ringing (its first miss was followed by nothing); it answers, and its count resets.
    assert_eq!(state(&acd, B), AgentState::Ringing);
    acd.answered(t0 + secs(50), 1, B).expect("offered");
    assert_eq!(acd.agent(B).expect("agent").consecutive_misses, 0);
    // A stays away from the next caller until the desk says ready.
    acd.enqueue(t0 + secs(60), 2, "appointments")
        .expect("queue");
    assert_eq!(state(&acd, A), AgentState::NotReady);
    assert_eq!(
        acd.set_ready(t0 + secs(70), A, true, None),
        Ok(AgentState::Ringing)
    );
    assert_eq!(acd.agent(A).expect("agent").consecutive_misses, 0);
    let kinds = log_kinds(&mut acd);
    let ended = kinds.iter().filter(|(k, _)| *k == "offer_ended").count();
    assert_eq!(ended, 3, "every ring-out is in the event log: {kinds:?}");
}

#[test]
fn wrap_up_keeps_every_queue_away_until_it_ends_and_the_desk_can_end_or_extend_it() {
    let t0 = Instant::now();
    let queues = vec![
        QueueConfig::from_rings("appointments", 0, 3, 5000).with_wrap_up(secs(30)),
        QueueConfig::from_rings("enquiries", 0, 3, 5000),
    ];
    let agents = vec![AgentConfig::new(A, &["appointments", "enquiries"])];
    let mut acd = Acd::new(queues, agents).expect("config");
    acd.agent_online(t0, A, true).expect("agent");
    acd.enqueue(t0 + secs(1), 1, "appointments").expect("queue");
    acd.answered(t0 + secs(3), 1, A).expect("offered");
    acd.hold(t0 + secs(10), 1, true).expect("connected");
    assert_eq!(state(&acd, A), AgentState::OnHold);
    acd.hold(t0 + secs(20), 1, false).expect("connected");
    assert_eq!(state(&acd, A), AgentState::Talking);
    acd.call_ended(t0 + secs(60), A, EndedBy::Caller)
        .expect("talking");
    assert_eq!(state(&acd, A), AgentState::WrapUp);
    drain(&mut acd);
    // A caller of the other queue waits: wrap-up is honoured across queues.
    acd.enqueue(t0 + secs(61), 2, "enquiries").expect("queue");
    assert_eq!(drain(&mut acd), vec![]);
    assert_eq!(acd.poll_timeout(), Some(t0 + secs(90)));
    acd.handle_timeout(t0 + secs(90) - ms(1));
    assert_eq!(drain(&mut acd), vec![]);
    acd.handle_timeout(t0 + secs(90));
    assert_eq!(drain(&mut acd), vec![offer(2, A, "enquiries", secs(29))]);
    // enquiries has no wrap-up: free at once after this call.
    acd.answered(t0 + secs(91), 2, A).expect("offered");
    acd.call_ended(t0 + secs(100), A, EndedBy::Agent)
        .expect("talking");
    assert_eq!(state(&acd, A), AgentState::Ready);
    // Another appointments call: the desk extends the wrap-up, then ends it early.
    acd.enqueue(t0 + secs(101), 3, "appointments")
        .expect("queue");
    acd.answered(t0 + secs(102), 3, A).expect("offered");
    acd.call_ended(t0 + secs(110), A, EndedBy::Agent)
        .expect("talking");
    assert_eq!(
        acd.extend_wrap_up(t0 + secs(111), A, secs(15)),
        Ok(t0 + secs(155))
    );
    acd.enqueue(t0 + secs(112), 4, "enquiries").expect("queue");
    acd.handle_timeout(t0 + secs(140));
    assert_eq!(state(&acd, A), AgentState::WrapUp, "extended past its 30 s");
    drain(&mut acd);
    assert_eq!(
        acd.set_ready(t0 + secs(141), A, true, None),
        Ok(AgentState::Ringing)
    );
    assert_eq!(drain(&mut acd), vec![offer(4, A, "enquiries", secs(29))]);
    assert_eq!(
        acd.extend_wrap_up(t0 + secs(142), A, secs(15)),
        Err(Error::NotInWrapUp(A.into()))
    );
    let states: Vec<AgentState> = std::iter::from_fn(|| acd.poll_log())
        .filter_map(|e| match e.event {
            acd::Logged::AgentState { state, .. } => Some(state),
            _ => None,
        })
        .collect();
    use AgentState::*;
    // Free for no time at all between a wrap-up and the offer it lets through: logged as it was.
    assert_eq!(
        states,
        vec![
            Ready, Ringing, Talking, OnHold, Talking, WrapUp, Ready, Ringing, Talking, Ready,
            Ringing, Talking, WrapUp, Ready, Ringing
        ]
    );
}

#[test]
fn wrap_up_ends_into_not_ready_and_a_logout_ends_it() {
    let t0 = Instant::now();
    let queues = vec![QueueConfig::from_rings("appointments", 0, 3, 5000).with_wrap_up(secs(30))];
    let agents = vec![AgentConfig::new(A, &["appointments"])];
    let mut acd = Acd::new(queues, agents).expect("config");
    acd.agent_online(t0, A, true).expect("agent");
    for (call, start) in [(1u64, 0u64), (2, 100)] {
        acd.enqueue(t0 + secs(start), call, "appointments")
            .expect("queue");
        acd.answered(t0 + secs(start + 1), call, A)
            .expect("offered");
        acd.call_ended(t0 + secs(start + 10), A, EndedBy::Agent)
            .expect("talking");
        assert_eq!(state(&acd, A), AgentState::WrapUp);
        if call == 1 {
            assert_eq!(
                acd.set_ready(t0 + secs(start + 12), A, false, Some("meal")),
                Ok(AgentState::NotReady)
            );
            assert_eq!(
                acd.agent(A).expect("agent").not_ready_reason.as_deref(),
                Some("meal")
            );
            acd.set_ready(t0 + secs(start + 20), A, true, None)
                .expect("online");
        } else {
            acd.agent_online(t0 + secs(start + 12), A, false)
                .expect("agent");
            assert_eq!(state(&acd, A), AgentState::LoggedOut);
        }
    }
    assert_eq!(acd.poll_timeout(), None, "no wrap-up timer left behind");
}

#[test]
fn declined_offer_moves_on_at_once_and_pauses_the_agent_until_its_ring_would_end() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A, B]);
    acd.enqueue(t0 + secs(10), 1, "enquiries").expect("queue");
    acd.declined(t0 + secs(12), 1, A).expect("offered");
    assert_eq!(
        drain(&mut acd),
        vec![
            offer(1, A, "enquiries", secs(0)),
            offer(1, B, "enquiries", secs(2)),
        ],
        "no RingOut after a decline: the INVITE is already over"
    );
    // B declines too: A is Ready but paused until t0+25 s, B until t0+27 s.
    acd.declined(t0 + secs(13), 1, B).expect("offered");
    assert_eq!(drain(&mut acd), vec![]);
    assert_eq!(state(&acd, A), AgentState::Ready);
    assert_eq!(
        acd.agent(A).expect("agent").paused_until,
        Some(t0 + secs(25))
    );
    assert_eq!(acd.poll_timeout(), Some(t0 + secs(25)));
    acd.handle_timeout(t0 + secs(25) - ms(1));
    assert_eq!(drain(&mut acd), vec![]);
    acd.handle_timeout(t0 + secs(25));
    assert_eq!(drain(&mut acd), vec![offer(1, A, "enquiries", secs(15))]);
    assert_eq!((missed(&acd, A), missed(&acd, B)), (1, 1));
}

#[test]
fn caller_abandoning_while_waiting_leaves_and_is_never_offered() {
    let t0 = Instant::now();
    let mut acd = demo();
    acd.enqueue(t0, 1, "appointments").expect("queue");
    acd.enqueue(t0 + secs(1), 2, "appointments").expect("queue");
    assert_eq!(acd.waiting("appointments"), Ok(2));
    acd.abandon(t0 + secs(5), 1);
    assert_eq!(acd.waiting("appointments"), Ok(1));
    assert_eq!(acd.caller_wait(1, t0 + secs(6)), None);
    online_in_order(&mut acd, t0 + secs(10), &[A, B]);
    acd.handle_timeout(t0 + secs(60));
    let events = drain(&mut acd);
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, AcdEvent::Offer { call: 1, .. })),
        "{events:?}"
    );
    assert_eq!(events.first(), Some(&offer(2, A, "appointments", secs(9))));
    acd.abandon(t0 + secs(61), 1); // twice, or unknown: no effect
    acd.abandon(t0 + secs(61), 999);
}

#[test]
fn abandon_during_offer_returns_the_agent_without_a_miss() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A, B]);
    acd.enqueue(t0 + secs(5), 1, "appointments").expect("queue");
    assert_eq!(drain(&mut acd), vec![offer(1, A, "appointments", secs(0))]);
    acd.abandon(t0 + secs(8), 1);
    assert_eq!(
        drain(&mut acd),
        vec![],
        "call control cancels the INVITE itself"
    );
    let view = acd.agent(A).expect("agent");
    assert_eq!(view.state, AgentState::Ready);
    assert_eq!(view.current_call, None);
    assert_eq!(view.missed_rings, 0);
    assert_eq!(view.ready_since, Some(t0), "keeps its place in idle order");
    assert_eq!(acd.poll_timeout(), None, "the ring-out timer is gone");
    acd.handle_timeout(t0 + secs(30));
    assert_eq!(drain(&mut acd), vec![]);
    assert_eq!(acd.waiting("appointments"), Ok(0));
    assert!(matches!(
        acd.answered(t0 + secs(30), 1, A),
        Err(Error::NotOffered { call: 1, .. })
    ));
    acd.enqueue(t0 + secs(40), 2, "appointments")
        .expect("queue");
    assert_eq!(drain(&mut acd), vec![offer(2, A, "appointments", secs(0))]);
}

#[test]
fn agent_going_offline_during_ring_rings_out_and_next_agent_is_offered() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A, B]);
    acd.enqueue(t0 + secs(5), 1, "urgent").expect("queue");
    acd.agent_online(t0 + secs(9), A, false).expect("agent");
    assert_eq!(
        drain(&mut acd),
        vec![
            offer(1, A, "urgent", secs(0)),
            ring_out(1, A),
            offer(1, B, "urgent", secs(4)),
        ]
    );
    assert_eq!(state(&acd, A), AgentState::LoggedOut);
    assert_eq!(missed(&acd, A), 1);
    // B rings out too: the offline agent is not tried, B rings again.
    acd.handle_timeout(t0 + secs(24));
    assert_eq!(
        drain(&mut acd),
        vec![ring_out(1, B), offer(1, B, "urgent", secs(19))]
    );
    assert_eq!(
        acd.set_ready(t0 + secs(25), A, true, None),
        Err(Error::AgentOffline(A.into()))
    );
}

#[test]
fn agent_going_offline_while_talking_keeps_the_call_and_is_offline_after() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A]);
    acd.enqueue(t0, 1, "urgent").expect("queue");
    acd.answered(t0 + secs(1), 1, A).expect("offered");
    acd.agent_online(t0 + secs(2), A, false).expect("agent");
    assert_eq!(state(&acd, A), AgentState::Talking);
    acd.enqueue(t0 + secs(3), 2, "urgent").expect("queue");
    acd.call_ended(t0 + secs(9), A, EndedBy::Agent)
        .expect("talking");
    assert_eq!(state(&acd, A), AgentState::LoggedOut);
    assert_eq!(
        drain(&mut acd),
        vec![offer(1, A, "urgent", secs(0)), connected(1, A, secs(1))],
        "caller 2 is not offered to the offline agent"
    );
    assert_eq!(acd.waiting("urgent"), Ok(1));
}

#[test]
fn not_ready_agents_are_never_offered_and_keep_their_reason() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A, B]);
    assert_eq!(
        acd.set_ready(t0 + secs(2), A, false, Some("lunch")),
        Ok(AgentState::NotReady)
    );
    assert_eq!(
        acd.set_ready(t0 + secs(2), B, false, None),
        Ok(AgentState::NotReady)
    );
    acd.enqueue(t0 + secs(3), 1, "urgent").expect("queue");
    acd.handle_timeout(t0 + secs(100));
    assert_eq!(drain(&mut acd), vec![]);
    let view = acd.agent(A).expect("agent");
    assert_eq!(view.not_ready_reason.as_deref(), Some("lunch"));
    assert_eq!(view.ready_since, None);

    // Re-registration while NotReady does not make the agent Ready.
    acd.agent_online(t0 + secs(101), A, true).expect("agent");
    assert_eq!(state(&acd, A), AgentState::NotReady);

    assert_eq!(
        acd.set_ready(t0 + secs(110), B, true, None),
        Ok(AgentState::Ringing),
        "offered the moment it is Ready"
    );
    assert_eq!(drain(&mut acd), vec![offer(1, B, "urgent", secs(107))]);
    assert_eq!(
        acd.agent(A).expect("agent").not_ready_reason.as_deref(),
        Some("lunch")
    );
}

#[test]
fn not_ready_while_ringing_or_talking_takes_effect_after() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A]);
    acd.enqueue(t0, 1, "appointments").expect("queue");
    acd.enqueue(t0, 2, "appointments").expect("queue");
    assert_eq!(
        acd.set_ready(t0 + secs(1), A, false, Some("break")),
        Ok(AgentState::Ringing),
        "the ring goes on"
    );
    acd.answered(t0 + secs(2), 1, A).expect("offered");
    acd.call_ended(t0 + secs(30), A, EndedBy::Agent)
        .expect("talking");
    assert_eq!(state(&acd, A), AgentState::NotReady);
    assert_eq!(
        drain(&mut acd),
        vec![
            offer(1, A, "appointments", secs(0)),
            connected(1, A, secs(2))
        ],
        "caller 2 is not offered after the call"
    );

    // Ready again during a ring-out: NotReady requested while ringing, the ring runs out.
    acd.set_ready(t0 + secs(40), A, true, None).expect("online");
    acd.set_ready(t0 + secs(41), A, false, None)
        .expect("online");
    acd.handle_timeout(t0 + secs(55));
    assert_eq!(
        drain(&mut acd),
        vec![offer(2, A, "appointments", secs(40)), ring_out(2, A)]
    );
    assert_eq!(state(&acd, A), AgentState::NotReady);
    assert_eq!(acd.poll_timeout(), None);

    // Back to Ready while talking: Ready once the call ends.
    acd.set_ready(t0 + secs(60), A, true, None).expect("online");
    acd.answered(t0 + secs(61), 2, A).expect("offered");
    acd.set_ready(t0 + secs(62), A, false, None)
        .expect("online");
    assert_eq!(
        acd.set_ready(t0 + secs(63), A, true, None),
        Ok(AgentState::Talking)
    );
    acd.call_ended(t0 + secs(70), A, EndedBy::Agent)
        .expect("talking");
    assert_eq!(state(&acd, A), AgentState::Ready);
    assert_eq!(
        acd.agent(A).expect("agent").ready_since,
        Some(t0 + secs(70))
    );
}

#[test]
fn two_callers_one_agent_first_come_first_served() {
    let t0 = Instant::now();
    let mut acd = demo();
    acd.enqueue(t0, 7, "enquiries").expect("queue");
    acd.enqueue(t0 + ms(1), 3, "enquiries").expect("queue");
    online_in_order(&mut acd, t0 + secs(4), &[A]);
    acd.answered(t0 + secs(5), 7, A).expect("offered");
    acd.call_ended(t0 + secs(50), A, EndedBy::Agent)
        .expect("talking");
    acd.answered(t0 + secs(51), 3, A).expect("offered");
    assert_eq!(
        drain(&mut acd),
        vec![
            offer(7, A, "enquiries", secs(4)),
            connected(7, A, secs(5)),
            offer(3, A, "enquiries", secs(50) - ms(1)),
            connected(3, A, secs(51) - ms(1)),
        ]
    );
}

#[test]
fn agent_serves_only_its_queues() {
    let t0 = Instant::now();
    let agents = vec![
        AgentConfig::new(A, &["appointments"]),
        AgentConfig::new(B, &["urgent", "enquiries"]),
    ];
    let mut acd = Acd::new(demo_queues(), agents).expect("valid config");
    online_in_order(&mut acd, t0, &[A]);
    acd.enqueue(t0 + secs(1), 1, "urgent").expect("queue");
    acd.enqueue(t0 + secs(2), 2, "enquiries").expect("queue");
    assert_eq!(
        drain(&mut acd),
        vec![],
        "A does not serve urgent or enquiries"
    );
    acd.agent_online(t0 + secs(3), B, true).expect("agent");
    acd.enqueue(t0 + secs(4), 3, "appointments").expect("queue");
    assert_eq!(
        drain(&mut acd),
        vec![
            offer(1, B, "urgent", secs(2)),
            offer(3, A, "appointments", secs(0)),
        ]
    );
    acd.handle_timeout(t0 + secs(18));
    assert_eq!(
        drain(&mut acd),
        vec![ring_out(1, B), offer(1, B, "urgent", secs(17))],
        "A is free but does not serve urgent"
    );
}

#[test]
fn unknown_names_and_wrong_inputs_are_errors_not_panics() {
    let t0 = Instant::now();
    let mut acd = demo();
    assert_eq!(
        acd.enqueue(t0, 1, "billing"),
        Err(Error::UnknownQueue("billing".into()))
    );
    assert_eq!(
        acd.agent_online(t0, "9999", true),
        Err(Error::UnknownAgent("9999".into()))
    );
    assert_eq!(
        acd.set_ready(t0, "9999", true, None),
        Err(Error::UnknownAgent("9999".into()))
    );
    assert_eq!(
        acd.call_ended(t0, "9999", EndedBy::Agent),
        Err(Error::UnknownAgent("9999".into()))
    );
    assert_eq!(
        acd.answered(t0, 1, "9999"),
        Err(Error::UnknownAgent("9999".into()))
    );
    assert_eq!(
        acd.waiting("billing"),
        Err(Error::UnknownQueue("billing".into()))
    );
    assert!(acd.callers("billing", t0).is_err());
    assert!(acd.agent("9999").is_err());

    online_in_order(&mut acd, t0, &[A, B]);
    acd.enqueue(t0, 1, "urgent").expect("queue");
    assert_eq!(
        acd.enqueue(t0, 1, "enquiries"),
        Err(Error::DuplicateCall(1))
    );
    assert!(matches!(
        acd.answered(t0, 1, B),
        Err(Error::NotOffered { call: 1, .. })
    ));
    assert!(matches!(
        acd.declined(t0, 2, A),
        Err(Error::NotOffered { call: 2, .. })
    ));
    assert_eq!(
        acd.call_ended(t0, A, EndedBy::Agent),
        Err(Error::NotTalking(A.into()))
    );
    // A 200 OK racing the ring-out is refused; call control hangs that leg up.
    // (The clock is at t0+1 s since B came online then: A rings out at t0+16 s.)
    acd.handle_timeout(t0 + secs(16));
    assert!(matches!(
        acd.answered(t0 + secs(16), 1, A),
        Err(Error::NotOffered { call: 1, .. })
    ));
    acd.answered(t0 + secs(17), 1, B).expect("offered to B now");
    assert_eq!(acd.enqueue(t0, 1, "urgent"), Err(Error::DuplicateCall(1)));

    let bad_agent = vec![AgentConfig::new(A, &["billing"])];
    assert_eq!(
        Acd::new(demo_queues(), bad_agent).err(),
        Some(Error::UnknownQueue("billing".into()))
    );
    assert_eq!(
        Acd::new(vec![QueueConfig::from_rings("q", 0, 0, 5000)], vec![]).err(),
        Some(Error::ZeroRingTimeout("q".into()))
    );
    let mut twice = demo_queues();
    twice.push(QueueConfig::from_rings("urgent", 1, 1, 1000));
    assert_eq!(
        Acd::new(twice, vec![]).err(),
        Some(Error::DuplicateQueue("urgent".into()))
    );
    let mut agents = demo_agents();
    agents.push(AgentConfig::new(A, &[]));
    assert_eq!(
        Acd::new(demo_queues(), agents).err(),
        Some(Error::DuplicateAgent(A.into()))
    );
}

#[test]
fn time_going_backwards_is_ignored() {
    let t0 = Instant::now() + secs(1000);
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A]);
    acd.enqueue(t0 + secs(10), 1, "urgent").expect("queue");
    assert_eq!(acd.poll_timeout(), Some(t0 + secs(25)));
    acd.handle_timeout(t0); // earlier than the enqueue: treated as t0+10 s
    assert_eq!(state(&acd, A), AgentState::Ringing);
    acd.answered(t0 + secs(5), 1, A).expect("offered");
    assert_eq!(
        drain(&mut acd),
        vec![offer(1, A, "urgent", secs(0)), connected(1, A, secs(0))]
    );
}

#[test]
fn views_show_who_waits_and_who_rings() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A]);
    acd.enqueue(t0 + secs(1), 1, "appointments").expect("queue");
    acd.enqueue(t0 + secs(2), 2, "appointments").expect("queue");
    let callers = acd.callers("appointments", t0 + secs(4)).expect("queue");
    assert_eq!(callers.len(), 2);
    assert_eq!((callers[0].call, callers[0].waited), (1, secs(3)));
    assert_eq!(callers[0].offered_to.as_deref(), Some(A));
    assert_eq!((callers[1].call, callers[1].offered_to.clone()), (2, None));
    let views = acd.agents();
    assert_eq!(views.len(), 3);
    assert_eq!(views[0].current_call, Some(1));
    assert_eq!(views[1].state, AgentState::LoggedOut);
    assert_eq!(acd.caller_wait(2, t0 + secs(4)), Some(secs(2)));
}

#[test]
fn forgetting_an_ended_call_frees_whatever_the_acd_still_held_of_it() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A, B]);
    acd.enqueue(t0 + secs(2), 1, "appointments").expect("queue"); // rings A
    acd.enqueue(t0 + secs(2), 2, "appointments").expect("queue"); // rings B
    acd.answered(t0 + secs(3), 2, B).expect("offered");
    acd.enqueue(t0 + secs(4), 3, "appointments").expect("queue"); // waits
    drain(&mut acd);
    // Call control lost all three (say, a missed input): forgetting them frees everyone.
    for call in [1, 2, 3] {
        assert!(acd.forget(t0 + secs(5), call), "call {call} was held");
    }
    assert_eq!(
        (state(&acd, A), state(&acd, B)),
        (AgentState::Ready, AgentState::Ready)
    );
    assert_eq!(acd.waiting("appointments"), Ok(0));
    assert!(!acd.forget(t0 + secs(6), 2), "nothing left of it");
    assert_eq!(
        acd.poll_timeout(),
        None,
        "no ring-out left for a forgotten call"
    );
}

#[test]
fn the_wait_estimate_follows_the_queues_recent_pace_of_answers() {
    let t0 = Instant::now();
    let mut acd = demo();
    online_in_order(&mut acd, t0, &[A]);
    assert_eq!(
        acd.estimated_wait("appointments", 1),
        None,
        "nothing answered yet"
    );
    // Answers 40 s apart.
    for (call, at) in [(1u64, 10u64), (2, 50), (3, 90)] {
        acd.enqueue(t0 + secs(at - 5), call, "appointments")
            .expect("queue");
        acd.answered(t0 + secs(at), call, A).expect("offered");
        acd.call_ended(t0 + secs(at + 1), A, EndedBy::Agent)
            .expect("talking");
    }
    assert_eq!(acd.estimated_wait("appointments", 1), Some(secs(40)));
    assert_eq!(acd.estimated_wait("appointments", 3), Some(secs(120)));
    assert_eq!(acd.estimated_wait("urgent", 1), None, "per queue");
    acd.set_ready(t0 + secs(95), A, false, None)
        .expect("online");
    acd.enqueue(t0 + secs(100), 4, "appointments")
        .expect("queue");
    acd.enqueue(t0 + secs(101), 5, "appointments")
        .expect("queue");
    assert_eq!(acd.position(5), Some((2, 2)));
    assert_eq!(acd.position(4), Some((1, 2)));
    assert_eq!(acd.position(3), None, "answered: not waiting");
}
