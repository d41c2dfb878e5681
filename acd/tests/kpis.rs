//! KPI arithmetic from a known morning: the ACD writes the event log, the KPIs are computed
//! from it, and every figure is checked against one worked out by hand (in the comments).

mod common;

use std::time::Instant;

use acd::kpi::{self, Kpis, Stamped, Window};
use acd::{Acd, AgentConfig, EndedBy, Entry, Logged, QueueConfig};
use common::*;

/// Fires every timer due up to `to`, in deadline order.
fn advance(acd: &mut Acd, to: Instant) {
    while let Some(at) = acd.poll_timeout().filter(|at| *at <= to) {
        acd.handle_timeout(at);
    }
}

/// The morning, second by second (t = seconds from t0). Returns the log with times in ms.
fn morning() -> Vec<(i64, Entry)> {
    let t0 = Instant::now();
    let t = |s: u64| t0 + secs(s);
    let queues = vec![
        QueueConfig::from_rings("appointments", 0, 3, 5000).with_wrap_up(secs(10)),
        QueueConfig::from_rings("urgent", 10, 3, 5000),
    ];
    let agents = vec![
        AgentConfig::new(A, &["appointments", "urgent"]),
        AgentConfig::new(B, &["appointments", "urgent"]),
    ];
    let mut acd = Acd::new(queues, agents).expect("config");
    acd.agent_online(t(0), A, true).expect("agent");
    acd.agent_online(t(1), B, true).expect("agent");
    // Call 1: A rings 10..14, answers after a 4 s wait; talks until 60, wrap-up to 70.
    acd.enqueue(t(10), 1, "appointments").expect("queue");
    acd.answered(t(14), 1, A).expect("offered");
    // Call 2: B rings 20..35 and misses; rung again at once, answers at 37 (waited 17).
    acd.enqueue(t(20), 2, "appointments").expect("queue");
    advance(&mut acd, t(36));
    acd.answered(t(37), 2, B).expect("offered");
    // Call 3 hangs up after 2 s: a short abandon.
    acd.enqueue(t(40), 3, "urgent").expect("queue");
    acd.abandon(t(42), 3);
    // Call 4 waits from 50; A's call ends at 60, its wrap-up at 70: A rings 70..75.
    acd.enqueue(t(50), 4, "urgent").expect("queue");
    acd.call_ended(t(60), A, EndedBy::Caller).expect("talking");
    advance(&mut acd, t(74));
    acd.answered(t(75), 4, A).expect("offered");
    // B ends call 2 at 90 (wrap-up to 100); A ends call 4 at 95 (urgent: no wrap-up)
    // and goes for a meal at 96.
    acd.call_ended(t(90), B, EndedBy::Agent).expect("talking");
    acd.call_ended(t(95), A, EndedBy::Agent).expect("talking");
    acd.set_ready(t(96), A, false, Some("meal"))
        .expect("online");
    advance(&mut acd, t(109));
    // Call 5: B declines at 111 (paused until 125), rings 125..140 and misses again: two
    // misses in a row, B is not ready ("missed"). The caller gives up at 150 (waited 40).
    acd.enqueue(t(110), 5, "appointments").expect("queue");
    acd.declined(t(111), 5, B).expect("offered");
    advance(&mut acd, t(149));
    acd.abandon(t(150), 5);
    advance(&mut acd, t(200));
    std::iter::from_fn(|| acd.poll_log())
        .map(|e| {
            let ms = i64::try_from(e.at.duration_since(t0).as_millis()).expect("ms");
            (ms, e)
        })
        .collect()
}

/// Splits the log at `from` the way storage does: each agent's last state before, and
/// everything inside `[from, to)`.
fn kpis(log: &[(i64, Entry)], from_s: i64, to_s: i64, queue: Option<&str>) -> Kpis {
    let (from_ms, to_ms) = (from_s * 1000, to_s * 1000);
    let mut before: Vec<Stamped<'_>> = Vec::new();
    for (at, e) in log.iter().filter(|(at, _)| *at < from_ms) {
        if let Logged::AgentState { agent, .. } = &e.event {
            before.retain(|s| s.event.agent() != Some(agent.as_str()));
            before.push(Stamped {
                at_ms: *at,
                call: None,
                event: &e.event,
            });
        }
    }
    let calls: Vec<String> = log
        .iter()
        .map(|(_, e)| e.call.map(|c| format!("c{c}")).unwrap_or_default())
        .collect();
    let inside: Vec<Stamped<'_>> = log
        .iter()
        .zip(&calls)
        .filter(|((at, _), _)| *at >= from_ms && *at < to_ms)
        .map(|((at, e), call)| Stamped {
            at_ms: *at,
            call: (!call.is_empty()).then_some(call.as_str()),
            event: &e.event,
        })
        .collect();
    kpi::compute(
        &before,
        &inside,
        &Window {
            from_ms,
            to_ms,
            now_ms: 200_000,
            queue: queue.map(str::to_owned),
            agent: None,
            service_level_ms: kpi::DEFAULT_SERVICE_LEVEL_MS,
        },
    )
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn the_mornings_figures_match_the_ones_worked_out_by_hand() {
    let log = morning();
    let k = kpis(&log, 0, 200, None);
    assert_eq!(k.offered, 5);
    assert_eq!(k.answered, 3, "calls 1, 2, 4");
    assert_eq!((k.abandoned, k.short_abandoned), (1, 1), "call 5; call 3");
    assert!(
        close(k.answer_rate, 0.75),
        "3 / (3 + 1): {:?}",
        k.answer_rate
    );
    assert_eq!(k.asa_ms, Some(15_333), "(4 + 17 + 25) / 3 s");
    assert_eq!(k.mean_wait_ms, Some(17_600), "(4 + 17 + 25 + 2 + 40) / 5 s");
    assert_eq!(k.longest_wait_ms, Some(40_000));
    assert!(close(k.service_level, 0.5), "calls 1, 2 within 20 s, of 4");
    assert!(close(k.answered_within_rings, 1.0));
    assert!(
        close(k.answered_on_first_ring, 2.0 / 3.0),
        "call 2 rang out at B first"
    );
    assert_eq!(k.missed_rings, 3, "B: ring-out, decline, ring-out");
    assert_eq!(k.completed, 3);
    assert_eq!(k.talk_ms, 119_000, "46 + 53 + 20 s");
    assert_eq!(k.wrap_up_ms, 20_000, "A 60..70, B 90..100");
    assert_eq!(k.aht_ms, Some(46_333), "(119 + 20) / 3 s");

    let a = &k.agents[0];
    assert_eq!(a.agent, A);
    assert_eq!((a.answered, a.missed_rings, a.talk_ms), (2, 0, 66_000));
    assert_eq!(a.ready_ms, 11_000, "0..10, 70..70, 95..96");
    assert_eq!(a.ringing_ms, 9_000, "10..14, 70..75");
    assert_eq!(a.in_call_ms, 66_000);
    assert_eq!(a.wrap_up_ms, 10_000);
    assert_eq!(a.not_ready_ms, 104_000, "96..200");
    assert_eq!(a.not_ready_by_reason.get("meal"), Some(&104_000));
    assert!(close(a.occupancy, 85.0 / 96.0), "{:?}", a.occupancy);

    let b = &k.agents[1];
    assert_eq!(b.agent, B);
    assert_eq!((b.answered, b.missed_rings, b.talk_ms), (1, 3, 53_000));
    assert_eq!(b.ready_ms, 43_000, "1..20, 35..35, 100..110, 111..125");
    assert_eq!(b.ringing_ms, 33_000, "20..35, 35..37, 110..111, 125..140");
    assert_eq!(b.wrap_up_ms, 10_000);
    assert_eq!(
        b.not_ready_by_reason.get("missed"),
        Some(&60_000),
        "140..200"
    );
    assert!(close(b.occupancy, 96.0 / 139.0), "{:?}", b.occupancy);
    assert_eq!(b.likes, None);
}

#[test]
fn a_queue_filter_counts_only_its_calls_and_their_wrap_up() {
    let log = morning();
    let k = kpis(&log, 0, 200, Some("urgent"));
    assert_eq!((k.offered, k.answered), (2, 1), "calls 3 and 4");
    assert_eq!((k.abandoned, k.short_abandoned), (0, 1));
    assert!(close(k.answer_rate, 1.0));
    assert_eq!(k.asa_ms, Some(25_000));
    assert!(close(k.service_level, 0.0), "call 4 waited 25 s");
    assert_eq!((k.completed, k.talk_ms, k.wrap_up_ms), (1, 20_000, 0));
    assert_eq!(k.aht_ms, Some(20_000));
    assert_eq!(k.missed_rings, 0, "B's misses were appointments calls");
}

#[test]
fn a_window_counts_what_falls_inside_it_and_clips_agent_states() {
    let log = morning();
    let k = kpis(&log, 50, 100, None);
    assert_eq!(k.offered, 1, "call 4 entered at 50");
    assert_eq!(k.answered, 1, "call 4 at 75");
    assert_eq!(k.completed, 3, "calls 1 (60), 2 (90) and 4 (95)");
    let a = &k.agents[0];
    assert_eq!(
        a.in_call_ms, 30_000,
        "talking 50..60 (from before the window), 75..95"
    );
    assert_eq!(a.wrap_up_ms, 10_000);
    assert_eq!(a.ringing_ms, 5_000);
    assert_eq!(a.ready_ms, 1_000);
    assert_eq!(a.not_ready_ms, 4_000, "96..100");
    let empty = kpis(&log, 300, 400, None);
    assert_eq!(empty.offered, 0);
    assert_eq!(empty.answer_rate, None, "nothing measured is not 0 %");
    assert_eq!(empty.asa_ms, None);
}

#[test]
fn a_transferred_caller_counts_once_and_every_answer_counts_for_its_agent() {
    let t0 = Instant::now();
    let t = |s: u64| t0 + secs(s);
    let queues = vec![
        QueueConfig::from_rings("appointments", 0, 3, 5000),
        QueueConfig::from_rings("urgent", 10, 3, 5000),
    ];
    let agents = vec![
        AgentConfig::new(A, &["appointments"]),
        AgentConfig::new(B, &["urgent"]),
    ];
    let mut acd = Acd::new(queues, agents).expect("config");
    acd.agent_online(t(0), A, true).expect("agent");
    // Call 1: A answers after 4 s, hands the caller to urgent at 30, B answers at 33.
    acd.enqueue(t(10), 1, "appointments").expect("queue");
    acd.answered(t(14), 1, A).expect("offered");
    acd.agent_online(t(29), B, true).expect("agent");
    acd.set_ready(t(29), B, false, Some("admin"))
        .expect("online");
    acd.set_ready(t(30), B, true, None).expect("online");
    acd.transfer(t(30), A, "urgent", None).expect("transfer");
    acd.answered(t(33), 1, B).expect("offered");
    acd.call_ended(t(60), B, EndedBy::Caller).expect("talking");
    // Call 2: answered by A, handed to B who is busy: abandoned there after 40 s.
    acd.enqueue(t(70), 2, "appointments").expect("queue");
    acd.answered(t(72), 2, A).expect("offered");
    acd.enqueue(t(80), 3, "urgent").expect("queue");
    acd.answered(t(80), 3, B).expect("offered");
    acd.transfer(t(90), A, "urgent", None).expect("transfer");
    acd.abandon(t(130), 2);
    acd.call_ended(t(140), B, EndedBy::Caller).expect("talking");
    let log: Vec<(i64, Entry)> = std::iter::from_fn(|| acd.poll_log())
        .map(|e| {
            let ms = i64::try_from(e.at.duration_since(t0).as_millis()).expect("ms");
            (ms, e)
        })
        .collect();
    let k = kpis(&log, 0, 200, None);
    assert_eq!(k.offered, 3, "calls 1, 2, 3 once each");
    assert_eq!(k.transferred_in, 2);
    assert_eq!(k.transferred, 2, "A handed on calls 1 and 2");
    assert_eq!(k.answered, 3, "each call's first answer");
    assert_eq!(
        k.abandoned, 0,
        "call 2 was answered before its caller gave up"
    );
    assert!(close(k.answer_rate, 1.0), "{:?}", k.answer_rate);
    assert_eq!(
        k.asa_ms,
        Some(2_000),
        "(4 + 2 + 0) / 3 s: the first waits only"
    );
    assert_eq!(k.completed, 4, "A twice (transferred), B twice");
    let answered = |id: &str| k.agents.iter().find(|a| a.agent == id).map(|a| a.answered);
    assert_eq!((answered(A), answered(B)), (Some(2), Some(2)));
    // Filtered to urgent: the transferred waits are not its offered calls.
    let urgent = kpis(&log, 0, 200, Some("urgent"));
    assert_eq!(
        (urgent.offered, urgent.transferred_in, urgent.answered),
        (1, 2, 1)
    );
}

#[test]
fn callbacks_are_counted_apart_from_answers_and_abandons() {
    let t0 = Instant::now();
    let t = |s: u64| t0 + secs(s);
    let queues = vec![QueueConfig::from_rings("appointments", 0, 3, 5000)];
    let mut acd = Acd::new(queues, vec![AgentConfig::new(A, &["appointments"])]).expect("config");
    acd.agent_online(t(0), A, true).expect("agent");
    // Call 1 is answered after 2 s and talks until 100.
    acd.enqueue(t(10), 1, "appointments").expect("queue");
    acd.answered(t(12), 1, A).expect("offered");
    // Call 2 waits 10 s, asks for a callback; A answers it at 102, the patient at 110.
    acd.enqueue(t(20), 2, "appointments").expect("queue");
    assert!(acd.request_callback(t(30), 2));
    acd.callback_ready(t(30), 2);
    // Call 3 waits 20 s and asks too; its first dial fails, its second is given up.
    acd.enqueue(t(40), 3, "appointments").expect("queue");
    assert!(acd.request_callback(t(60), 3));
    acd.callback_ready(t(60), 3);
    acd.call_ended(t(100), A, EndedBy::Caller).expect("talking");
    acd.answered(t(102), 2, A).expect("offered");
    acd.callback_reached(t(110), A, 1, secs(8))
        .expect("talking");
    acd.call_ended(t(150), A, EndedBy::Caller).expect("talking");
    acd.answered(t(151), 3, A).expect("offered");
    acd.callback_unreached(t(181), A, 1, acd::CallbackResult::NoAnswer, secs(30))
        .expect("talking");
    acd.callback_failed(t(181), 3, "appointments", 1);
    let log: Vec<(i64, Entry)> = std::iter::from_fn(|| acd.poll_log())
        .map(|e| {
            let ms = i64::try_from(e.at.duration_since(t0).as_millis()).expect("ms");
            (ms, e)
        })
        .collect();
    let k = kpis(&log, 0, 200, None);
    assert_eq!(k.offered, 3);
    assert_eq!(
        (k.answered, k.abandoned),
        (1, 0),
        "only call 1 was answered on the line; no callback is an abandon"
    );
    assert!(close(k.answer_rate, 1.0), "{:?}", k.answer_rate);
    assert_eq!(k.asa_ms, Some(2_000), "call 1's wait only");
    assert_eq!(
        (
            k.callbacks_requested,
            k.callbacks_completed,
            k.callbacks_failed
        ),
        (2, 1, 1)
    );
    assert_eq!(
        k.mean_wait_ms,
        Some(32_000 / 3),
        "(2 + 10 + 20) / 3 s: a callback's wait ends at its request"
    );
    let a = k.agents.iter().find(|a| a.agent == A).expect("A");
    assert_eq!(a.answered, 3, "A answered call 1 and both callbacks");
    assert_eq!(
        k.completed, 2,
        "calls 1 and 2: 3's unreached try is no handled call"
    );
    // A window that opens after the requests still counts the callbacks' answers apart.
    let later = kpis(&log, 100, 200, None);
    assert_eq!(
        (later.offered, later.answered, later.asa_ms),
        (0, 0, None),
        "{later:?}"
    );
    assert_eq!((later.callbacks_completed, later.callbacks_failed), (1, 1));
}
