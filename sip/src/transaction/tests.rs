//! Every timer in simulated time: t0 + Duration, jumping to poll_timeout().

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::message::{RequestBuilder, cancel_for, parse, response_to};
use crate::transport::Transport;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn phone() -> SocketAddr {
    addr("192.168.1.20:5060")
}

fn request(method: Method, branch: &str, transport: Transport) -> Request {
    RequestBuilder::new(method.clone(), "sip:1001@192.168.1.20")
        .via(transport, addr("10.0.0.1:5060"), branch)
        .max_forwards(70)
        .from("<sip:switchboard@10.0.0.1>;tag=ft")
        .to("<sip:1001@192.168.1.20>")
        .call_id("call-1")
        .cseq(1)
        .build()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

type Timed<T> = Vec<(u128, T)>;

/// Runs the layer's timers until `until`; returns (ms since t0, transmit) and events with times.
fn run(
    layer: &mut TransactionLayer,
    t0: Instant,
    until: Duration,
) -> (Timed<Transmit>, Timed<TransactionEvent>) {
    let mut sent = Vec::new();
    let mut events = Vec::new();
    let mut now = t0;
    loop {
        while let Some(t) = layer.poll_transmit() {
            sent.push((ms(now - t0), t));
        }
        while let Some(e) = layer.poll_event() {
            events.push((ms(now - t0), e));
        }
        match layer.poll_timeout() {
            Some(at) if at <= t0 + until => {
                now = at.max(now);
                layer.handle_timeout(now);
            }
            _ => return (sent, events),
        }
    }
}

fn drain(layer: &mut TransactionLayer) -> (Vec<Transmit>, Vec<TransactionEvent>) {
    let mut t = Vec::new();
    let mut e = Vec::new();
    while let Some(x) = layer.poll_transmit() {
        t.push(x);
    }
    while let Some(x) = layer.poll_event() {
        e.push(x);
    }
    (t, e)
}

fn as_request(bytes: &[u8]) -> Request {
    match parse(bytes) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("expected request, got {other:?}"),
    }
}

fn as_response_status(bytes: &[u8]) -> u16 {
    match parse(bytes) {
        Ok(SipMessage::Response(r)) => r.status(),
        other => panic!("not a response: {other:?}"),
    }
}

fn layer() -> TransactionLayer {
    TransactionLayer::new(TimerConfig::default())
}

#[test]
fn invite_over_udp_without_answer_retransmits_then_timer_b() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(
        t0,
        Peer::udp(phone()),
        request(Method::Invite, "z9hG4bKinv", Transport::Udp),
    );
    let (sent, events) = run(&mut l, t0, Duration::from_secs(100));
    let times: Vec<u128> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert!(sent.iter().all(|(_, t)| t.bytes == sent[0].1.bytes));
    assert_eq!(events, vec![(32000, TransactionEvent::Timeout { key })]);
    assert_eq!(l.transaction_count(), 0);
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn invite_over_tcp_is_sent_once_and_still_times_out() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(
        t0,
        Peer::tcp(phone()),
        request(Method::Invite, "z9hG4bKtcp", Transport::Tcp),
    );
    let (sent, events) = run(&mut l, t0, Duration::from_secs(100));
    assert_eq!(sent.len(), 1);
    assert_eq!(events, vec![(32000, TransactionEvent::Timeout { key })]);
}

#[test]
fn provisional_stops_invite_retransmission_and_timer_b() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite = request(Method::Invite, "z9hG4bKprov", Transport::Udp);
    let key = l.send_request(t0, Peer::udp(phone()), invite.clone());
    let _ = drain(&mut l);
    l.handle_message(
        t0 + Duration::from_millis(200),
        Peer::udp(phone()),
        response_to(&invite, 180, "Ringing", Some("tt")).into(),
    );
    let (_, events) = drain(&mut l);
    assert!(
        matches!(&events[..], [TransactionEvent::Response { key: k, response }] if *k == key && response.status() == 180)
    );
    assert_eq!(
        l.poll_timeout(),
        Some(t0 + Duration::from_millis(200) + Duration::from_secs(180)),
        "no A, no B in Proceeding: only Timer C"
    );
    assert_eq!(l.transaction_count(), 1);
}

#[test]
fn ringing_phone_that_vanishes_ends_on_timer_c() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite = request(Method::Invite, "z9hG4bKgone", Transport::Udp);
    let key = l.send_request(t0, Peer::udp(phone()), invite.clone());
    l.handle_message(
        t0,
        Peer::udp(phone()),
        response_to(&invite, 180, "Ringing", Some("tt")).into(),
    );
    let _ = drain(&mut l);
    let (_, events) = run(&mut l, t0, Duration::from_secs(600));
    assert_eq!(events, vec![(180_000, TransactionEvent::Timeout { key })]);
    assert_eq!(l.transaction_count(), 0);
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn cancelled_invite_without_any_final_ends_64_t1_after_the_cancel() {
    let t0 = Instant::now();
    let mut l = layer();
    let peer = Peer::udp(phone());
    let invite = request(Method::Invite, "z9hG4bKcgone", Transport::Udp);
    let ikey = l.send_request(t0, peer, invite.clone());
    l.handle_message(
        t0,
        peer,
        response_to(&invite, 180, "Ringing", Some("tt")).into(),
    );
    let t = t0 + Duration::from_secs(15);
    let ckey = l.send_request(t, peer, cancel_for(&invite));
    let _ = drain(&mut l);
    // The phone is gone: neither the CANCEL nor the INVITE is ever answered.
    let (_, events) = run(&mut l, t0, Duration::from_secs(600));
    let mut events: Vec<(u128, TransactionEvent)> = events;
    events.sort_by_key(|(t, _)| *t);
    assert_eq!(
        events,
        vec![
            (47_000, TransactionEvent::Timeout { key: ikey }),
            (47_000, TransactionEvent::Timeout { key: ckey }),
        ]
    );
    assert_eq!(l.transaction_count(), 0, "nothing leaks");
}

#[test]
fn server_invite_the_tu_never_answers_gets_408_on_timer_n() {
    let t0 = Instant::now();
    let mut l = layer();
    let peer = Peer::udp(phone());
    let invite = request(Method::Invite, "z9hG4bKsilent", Transport::Udp);
    l.handle_message(t0, peer, invite.clone().into());
    let key = match drain(&mut l).1.as_slice() {
        [TransactionEvent::Request { key, .. }] => key.clone(),
        other => panic!("unexpected {other:?}"),
    };
    let (sent, events) = run(&mut l, t0, Duration::from_secs(181));
    let first = sent
        .first()
        .map(|(t, m)| (*t, as_response_status(&m.bytes)));
    assert_eq!(first, Some((180_000, 408)));
    assert_eq!(
        events.first(),
        Some(&(180_000, TransactionEvent::Timeout { key }))
    );
    // Then it waits for the ACK to the 408 like any non-2xx, and ends.
    let _ = run(&mut l, t0, Duration::from_secs(600));
    assert_eq!(l.transaction_count(), 0);
}

#[test]
fn server_non_invite_the_tu_never_answers_ends_after_64_t1() {
    let t0 = Instant::now();
    let mut l = layer();
    let peer = Peer::udp(phone());
    l.handle_message(
        t0,
        peer,
        request(Method::Options, "z9hG4bKnoans", Transport::Udp).into(),
    );
    let _ = drain(&mut l);
    let (_, events) = run(&mut l, t0, Duration::from_secs(100));
    assert_eq!(events.len(), 1);
    assert_eq!(events.first().map(|(t, _)| *t), Some(32_000));
    assert_eq!(l.transaction_count(), 0);
}

#[test]
fn acked_2xx_lingers_only_t4_on_udp_and_not_at_all_on_tcp() {
    for (transport, peer, linger) in [
        (Transport::Udp, Peer::udp(phone()), 5_000),
        (Transport::Tcp, Peer::tcp(phone()), 0),
    ] {
        let t0 = Instant::now();
        let mut l = layer();
        let invite = request(Method::Invite, "z9hG4bKlinger", transport);
        l.handle_message(t0, peer, invite.clone().into());
        let key = l.matching_invite(&cancel_for(&invite)).expect("invite tx");
        l.send_response(t0, &key, response_to(&invite, 200, "OK", Some("lt")));
        let t = t0 + Duration::from_millis(100);
        l.handle_message(t, peer, ack_for_2xx(&invite, "z9hG4bKlack").into());
        let _ = drain(&mut l);
        assert_eq!(l.poll_timeout(), Some(t + Duration::from_millis(linger)));
        l.handle_timeout(t + Duration::from_millis(linger));
        assert_eq!(l.transaction_count(), 0);
    }
}

#[test]
fn thousands_of_transactions_keep_an_exact_soonest_deadline_and_all_end() {
    let t0 = Instant::now();
    let mut l = layer();
    let peer = Peer::udp(phone());
    let mut invites = Vec::new();
    for i in 0..5000u64 {
        let at = t0 + Duration::from_millis(i % 977);
        let invite = request(Method::Invite, &format!("z9hG4bKmany{i}"), Transport::Udp);
        l.handle_message(at, peer, invite.clone().into());
        let key = l.matching_invite(&cancel_for(&invite)).expect("tx");
        l.send_response(at, &key, response_to(&invite, 200, "OK", Some("lt")));
        if i % 3 == 0 {
            l.handle_message(
                at,
                peer,
                ack_for_2xx(&invite, &format!("z9hG4bKmack{i}")).into(),
            );
        }
        invites.push(invite);
    }
    let _ = drain(&mut l);
    // The soonest deadline is the earliest retransmission of an un-ACKed 2xx
    // (Timer G of transaction 1: transaction 0 was ACKed).
    assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_millis(501)));
    let (_, events) = run(&mut l, t0, Duration::from_secs(100));
    let timeouts = events
        .iter()
        .filter(|(_, e)| matches!(e, TransactionEvent::Timeout { .. }))
        .count();
    assert_eq!(timeouts, 5000 - 1667, "every un-ACKed 2xx times out once");
    assert_eq!(l.transaction_count(), 0);
    assert_eq!(l.poll_timeout(), None);
    assert!(l.timer_count() == 0, "no stale timer left behind");
}

#[test]
fn non_2xx_final_is_acked_by_the_transaction_with_the_same_branch() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite = request(Method::Invite, "z9hG4bKbusy", Transport::Udp);
    let key = l.send_request(t0, Peer::udp(phone()), invite.clone());
    let _ = drain(&mut l);
    let busy = response_to(&invite, 486, "Busy Here", Some("remote"));
    l.handle_message(
        t0 + Duration::from_secs(1),
        Peer::udp(phone()),
        busy.clone().into(),
    );
    let (sent, events) = drain(&mut l);
    assert_eq!(
        events,
        vec![TransactionEvent::Response {
            key: key.clone(),
            response: busy.clone()
        }]
    );
    assert_eq!(sent.len(), 1);
    let ack = as_request(&sent[0].bytes);
    assert_eq!(ack.method(), Method::Ack);
    assert_eq!(ack.top_via_branch().unwrap(), "z9hG4bKbusy");
    assert_eq!(ack.cseq().unwrap(), (1, Method::Ack));
    assert_eq!(ack.to_tag().as_deref(), Some("remote"));
    assert_eq!(ack.uri(), invite.uri());
    // A retransmitted 486 gets the ACK again and is not reported twice.
    l.handle_message(t0 + Duration::from_secs(2), Peer::udp(phone()), busy.into());
    let (sent, events) = drain(&mut l);
    assert_eq!((sent.len(), events.len()), (1, 0));
    assert_eq!(as_request(&sent[0].bytes).method(), Method::Ack);
    // Timer D: 32 s after the first final.
    assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(33)));
    l.handle_timeout(t0 + Duration::from_secs(33));
    assert_eq!(l.transaction_count(), 0);
}

#[test]
fn non_2xx_over_tcp_ends_the_client_transaction_at_once() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite = request(Method::Invite, "z9hG4bKtcpbusy", Transport::Tcp);
    l.send_request(t0, Peer::tcp(phone()), invite.clone());
    l.handle_message(
        t0,
        Peer::tcp(phone()),
        response_to(&invite, 603, "Decline", Some("r")).into(),
    );
    assert_eq!(l.poll_timeout(), Some(t0), "Timer D is zero over TCP");
    l.handle_timeout(t0);
    assert_eq!(l.transaction_count(), 0);
}

#[test]
fn client_2xx_goes_to_accepted_and_retransmissions_are_delivered_again() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite = request(Method::Invite, "z9hG4bKok", Transport::Udp);
    let key = l.send_request(t0, Peer::udp(phone()), invite.clone());
    let _ = drain(&mut l);
    let ok = response_to(&invite, 200, "OK", Some("r"));
    for i in 1..=3 {
        l.handle_message(
            t0 + Duration::from_secs(i),
            Peer::udp(phone()),
            ok.clone().into(),
        );
        let (sent, events) = drain(&mut l);
        assert!(sent.is_empty(), "the layer never ACKs a 2xx");
        assert_eq!(
            events,
            vec![TransactionEvent::Response {
                key: key.clone(),
                response: ok.clone()
            }]
        );
    }
    // Timer M = 64*T1 after the first 2xx; then late 2xx are stray.
    assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(33)));
    l.handle_timeout(t0 + Duration::from_secs(33));
    assert_eq!(l.transaction_count(), 0);
    l.handle_message(t0 + Duration::from_secs(34), Peer::udp(phone()), ok.into());
    assert_eq!(drain(&mut l).1.len(), 0);
}

#[test]
fn non_invite_retransmits_capped_at_t2_then_timer_f() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(
        t0,
        Peer::udp(phone()),
        request(Method::Bye, "z9hG4bKbye", Transport::Udp),
    );
    let (sent, events) = run(&mut l, t0, Duration::from_secs(100));
    let times: Vec<u128> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        vec![
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert_eq!(events, vec![(32000, TransactionEvent::Timeout { key })]);
}

#[test]
fn non_invite_after_provisional_retransmits_every_t2_and_absorbs_final_retransmissions() {
    let t0 = Instant::now();
    let mut l = layer();
    let bye = request(Method::Bye, "z9hG4bKbye2", Transport::Udp);
    let key = l.send_request(t0, Peer::udp(phone()), bye.clone());
    let _ = drain(&mut l);
    l.handle_message(
        t0 + Duration::from_millis(100),
        Peer::udp(phone()),
        response_to(&bye, 100, "Trying", None).into(),
    );
    let (sent, events) = run(&mut l, t0, Duration::from_millis(9000));
    assert_eq!(events.len(), 1, "the 100 goes up");
    let times: Vec<u128> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![500, 4500, 8500]);
    let ok = response_to(&bye, 200, "OK", None);
    let t = t0 + Duration::from_secs(9);
    l.handle_message(t, Peer::udp(phone()), ok.clone().into());
    l.handle_message(t, Peer::udp(phone()), ok.clone().into());
    let (sent, events) = drain(&mut l);
    assert!(sent.is_empty());
    assert_eq!(
        events,
        vec![TransactionEvent::Response { key, response: ok }]
    );
    assert_eq!(
        l.poll_timeout(),
        Some(t + Duration::from_secs(5)),
        "Timer K = T4"
    );
    l.handle_timeout(t + Duration::from_secs(5));
    assert_eq!(l.transaction_count(), 0);
}

#[test]
fn non_invite_over_tcp_sends_once_and_k_is_zero() {
    let t0 = Instant::now();
    let mut l = layer();
    let bye = request(Method::Bye, "z9hG4bKtcpbye", Transport::Tcp);
    l.send_request(t0, Peer::tcp(phone()), bye.clone());
    assert_eq!(
        l.poll_timeout(),
        Some(t0 + Duration::from_secs(32)),
        "only Timer F"
    );
    l.handle_message(
        t0 + Duration::from_secs(1),
        Peer::tcp(phone()),
        response_to(&bye, 200, "OK", None).into(),
    );
    assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    l.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(l.transaction_count(), 0);
    assert_eq!(drain(&mut l).0.len(), 1);
}

#[test]
fn server_invite_absorbs_retransmission_and_resends_last_provisional() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite = request(Method::Invite, "z9hG4bKsrv", Transport::Udp);
    let peer = Peer::udp(phone());
    l.handle_message(t0, peer, invite.clone().into());
    let (sent, events) = drain(&mut l);
    assert!(sent.is_empty(), "100 Trying is the TU's job");
    let key = match &events[..] {
        [
            TransactionEvent::Request {
                key,
                request,
                peer: p,
            },
        ] if *request == invite && *p == peer => key.clone(),
        other => panic!("unexpected {other:?}"),
    };
    l.handle_message(t0, peer, invite.clone().into());
    assert_eq!(
        drain(&mut l),
        (vec![], vec![]),
        "absorbed, nothing to re-send yet"
    );
    let ringing = response_to(&invite, 180, "Ringing", Some("lt"));
    l.send_response(t0, &key, ringing.clone());
    assert_eq!(
        drain(&mut l).0,
        vec![Transmit {
            peer,
            bytes: ringing.to_bytes()
        }]
    );
    l.handle_message(t0 + Duration::from_secs(1), peer, invite.into());
    assert_eq!(
        drain(&mut l),
        (
            vec![Transmit {
                peer,
                bytes: ringing.to_bytes()
            }],
            vec![]
        )
    );
}

#[test]
fn server_invite_non_2xx_retransmits_until_ack_then_timer_i() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite = request(Method::Invite, "z9hG4bKsrv486", Transport::Udp);
    let peer = Peer::udp(phone());
    l.handle_message(t0, peer, invite.clone().into());
    let key = l
        .matching_invite(&cancel_for(&invite))
        .expect("invite tx exists");
    let _ = drain(&mut l);
    let busy = response_to(&invite, 486, "Busy Here", Some("lt"));
    l.send_response(t0, &key, busy.clone());
    let (sent, _) = run(&mut l, t0, Duration::from_millis(12000));
    let times: Vec<u128> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        vec![0, 500, 1500, 3500, 7500, 11500],
        "Timer G doubles to T2"
    );
    // A retransmitted INVITE gets the final again.
    let t = t0 + Duration::from_millis(12000);
    l.handle_message(t, peer, invite.clone().into());
    assert_eq!(drain(&mut l).0.len(), 1);
    // The ACK (same branch) is absorbed and ends retransmission; Timer I = T4.
    let ack = crate::message::ack_for_non_2xx(&invite, &busy);
    l.handle_message(t, peer, ack.clone().into());
    assert_eq!(drain(&mut l), (vec![], vec![]));
    assert_eq!(l.poll_timeout(), Some(t + Duration::from_secs(5)));
    l.handle_message(t + Duration::from_secs(1), peer, ack.into());
    l.handle_message(t + Duration::from_secs(1), peer, invite.into());
    assert_eq!(
        drain(&mut l),
        (vec![], vec![]),
        "Confirmed absorbs everything"
    );
    l.handle_timeout(t + Duration::from_secs(5));
    assert_eq!(l.transaction_count(), 0);
}

#[test]
fn server_invite_non_2xx_without_ack_times_out_on_timer_h() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite = request(Method::Invite, "z9hG4bKsrvH", Transport::Udp);
    l.handle_message(t0, Peer::udp(phone()), invite.clone().into());
    let key = l.matching_invite(&cancel_for(&invite)).expect("invite tx");
    let _ = drain(&mut l);
    l.send_response(
        t0,
        &key,
        response_to(&invite, 480, "Temporarily Unavailable", Some("lt")),
    );
    let (_, events) = run(&mut l, t0, Duration::from_secs(100));
    assert_eq!(events, vec![(32000, TransactionEvent::Timeout { key })]);
    assert_eq!(l.transaction_count(), 0);
}

fn ack_for_2xx(invite: &Request, branch: &str) -> Request {
    RequestBuilder::new(Method::Ack, "sip:switchboard@10.0.0.1")
        .via(Transport::Udp, addr("192.168.1.20:5060"), branch)
        .from(&invite.from_header().unwrap())
        .to(&format!("{};tag=lt", invite.to_header().unwrap()))
        .call_id(&invite.call_id().unwrap())
        .cseq(invite.cseq().unwrap().0)
        .build()
}

#[test]
fn server_2xx_is_retransmitted_until_the_ack_arrives() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite = request(Method::Invite, "z9hG4bKsrv200", Transport::Udp);
    let peer = Peer::udp(phone());
    l.handle_message(t0, peer, invite.clone().into());
    let key = l.matching_invite(&cancel_for(&invite)).expect("invite tx");
    let _ = drain(&mut l);
    let ok = response_to(&invite, 200, "OK", Some("lt"));
    l.send_response(t0, &key, ok.clone());
    let (sent, _) = run(&mut l, t0, Duration::from_millis(8000));
    let times: Vec<u128> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![0, 500, 1500, 3500, 7500]);
    assert!(sent.iter().all(|(_, t)| t.bytes == ok.to_bytes()));
    let t = t0 + Duration::from_secs(8);
    // A retransmitted INVITE before the ACK gets the 2xx again.
    l.handle_message(t, peer, invite.clone().into());
    assert_eq!(drain(&mut l).0.len(), 1);
    // The ACK has its own branch; matched by Call-ID + CSeq, reported once.
    let ack = ack_for_2xx(&invite, "z9hG4bKack");
    l.handle_message(t, peer, ack.clone().into());
    assert_eq!(
        drain(&mut l),
        (
            vec![],
            vec![TransactionEvent::Ack {
                request: ack.clone(),
                peer
            }]
        )
    );
    l.handle_message(t, peer, ack.into());
    l.handle_message(t, peer, invite.into());
    assert_eq!(
        drain(&mut l),
        (vec![], vec![]),
        "duplicate ACK and late INVITE absorbed"
    );
    let (sent, events) = run(&mut l, t, Duration::from_secs(100));
    assert!(
        sent.is_empty() && events.is_empty(),
        "no retransmission, no timeout after the ACK"
    );
    assert_eq!(l.transaction_count(), 0, "Timer L ended it");
}

#[test]
fn server_2xx_without_ack_times_out_after_64_t1() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite = request(Method::Invite, "z9hG4bKnoack", Transport::Udp);
    l.handle_message(t0, Peer::udp(phone()), invite.clone().into());
    let key = l.matching_invite(&cancel_for(&invite)).expect("invite tx");
    let _ = drain(&mut l);
    l.send_response(t0, &key, response_to(&invite, 200, "OK", Some("lt")));
    let (sent, events) = run(&mut l, t0, Duration::from_secs(100));
    let times: Vec<u128> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        vec![
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert_eq!(events, vec![(32000, TransactionEvent::Timeout { key })]);
}

#[test]
fn server_2xx_over_tcp_is_sent_once_and_still_waits_for_the_ack() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite = request(Method::Invite, "z9hG4bKtcp200", Transport::Tcp);
    let peer = Peer::tcp(phone());
    l.handle_message(t0, peer, invite.clone().into());
    let key = l.matching_invite(&cancel_for(&invite)).expect("invite tx");
    let _ = drain(&mut l);
    l.send_response(t0, &key, response_to(&invite, 200, "OK", Some("lt")));
    let (sent, events) = run(&mut l, t0, Duration::from_secs(10));
    assert_eq!((sent.len(), events.len()), (1, 0));
    let ack = ack_for_2xx(&invite, "z9hG4bKtcpack");
    l.handle_message(t0 + Duration::from_secs(10), peer, ack.clone().into());
    assert_eq!(
        drain(&mut l).1,
        vec![TransactionEvent::Ack { request: ack, peer }]
    );
}

#[test]
fn server_non_invite_absorbs_then_resends_final_and_j_depends_on_transport() {
    let t0 = Instant::now();
    for (transport, peer, j) in [
        (Transport::Udp, Peer::udp(phone()), Duration::from_secs(32)),
        (Transport::Tcp, Peer::tcp(phone()), Duration::ZERO),
    ] {
        let mut l = layer();
        let bye = request(Method::Bye, "z9hG4bKsbye", transport);
        l.handle_message(t0, peer, bye.clone().into());
        let key = match drain(&mut l).1.as_slice() {
            [TransactionEvent::Request { key, .. }] => key.clone(),
            other => panic!("unexpected {other:?}"),
        };
        l.handle_message(t0, peer, bye.clone().into());
        assert_eq!(drain(&mut l), (vec![], vec![]), "absorbed in Trying");
        let ok = response_to(&bye, 200, "OK", None);
        l.send_response(t0, &key, ok.clone());
        assert_eq!(drain(&mut l).0.len(), 1);
        l.handle_message(t0, peer, bye.into());
        assert_eq!(
            drain(&mut l).0,
            vec![Transmit {
                peer,
                bytes: ok.to_bytes()
            }]
        );
        assert_eq!(l.poll_timeout(), Some(t0 + j));
        l.handle_timeout(t0 + j);
        assert_eq!(l.transaction_count(), 0);
    }
}

#[test]
fn cancel_is_its_own_transaction_and_finds_its_invite() {
    let t0 = Instant::now();
    let mut l = layer();
    let peer = Peer::udp(phone());
    let invite = request(Method::Invite, "z9hG4bKc1", Transport::Udp);
    l.handle_message(t0, peer, invite.clone().into());
    let cancel = cancel_for(&invite);
    l.handle_message(t0, peer, cancel.clone().into());
    let events = drain(&mut l).1;
    let (ikey, ckey) = match &events[..] {
        [
            TransactionEvent::Request { key: a, .. },
            TransactionEvent::Request {
                key: b, request, ..
            },
        ] => {
            assert_eq!(request.method(), Method::Cancel);
            (a.clone(), b.clone())
        }
        other => panic!("unexpected {other:?}"),
    };
    assert_ne!(ikey, ckey);
    assert_eq!(l.matching_invite(&cancel), Some(ikey.clone()));
    assert_eq!(ckey.method(), &Method::Cancel);
    assert!(ikey.is_server() && ikey.branch() == "z9hG4bKc1");
    // Another sent-by or branch does not match (RFC 3261 §17.2.3).
    assert_eq!(
        l.matching_invite(&cancel_for(&request(
            Method::Invite,
            "z9hG4bKother",
            Transport::Udp
        ))),
        None
    );
    let other_host = RequestBuilder::new(Method::Cancel, "sip:1001@192.168.1.20")
        .via(Transport::Udp, addr("10.9.9.9:5060"), "z9hG4bKc1")
        .build();
    assert_eq!(l.matching_invite(&other_host), None);
}

#[test]
fn client_cancel_and_invite_get_their_own_responses() {
    let t0 = Instant::now();
    let mut l = layer();
    let peer = Peer::udp(phone());
    let invite = request(Method::Invite, "z9hG4bKcc", Transport::Udp);
    let ikey = l.send_request(t0, peer, invite.clone());
    l.handle_message(
        t0,
        peer,
        response_to(&invite, 180, "Ringing", Some("r")).into(),
    );
    let cancel = cancel_for(&invite);
    let ckey = l.send_request(t0 + Duration::from_secs(1), peer, cancel.clone());
    assert_ne!(ikey, ckey);
    let _ = drain(&mut l);
    l.handle_message(
        t0 + Duration::from_secs(1),
        peer,
        response_to(&cancel, 200, "OK", Some("r")).into(),
    );
    l.handle_message(
        t0 + Duration::from_secs(1),
        peer,
        response_to(&invite, 487, "Request Terminated", Some("r")).into(),
    );
    let (sent, events) = drain(&mut l);
    let keys: Vec<(TransactionKey, u16)> = events
        .into_iter()
        .map(|e| match e {
            TransactionEvent::Response { key, response } => (key, response.status()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(keys, vec![(ckey, 200), (ikey, 487)]);
    assert_eq!(sent.len(), 1, "ACK for the 487");
}

#[test]
fn time_going_backwards_is_ignored() {
    let t0 = Instant::now();
    let mut l = layer();
    l.handle_timeout(t0 + Duration::from_secs(10));
    l.send_request(
        t0,
        Peer::udp(phone()),
        request(Method::Invite, "z9hG4bKback", Transport::Udp),
    );
    assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_millis(10_500)));
    l.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(drain(&mut l).0.len(), 1, "nothing fired at an earlier time");
}

#[test]
fn late_handle_timeout_fires_everything_due_once() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(
        t0,
        Peer::udp(phone()),
        request(Method::Invite, "z9hG4bKlate", Transport::Udp),
    );
    let _ = drain(&mut l);
    l.handle_timeout(t0 + Duration::from_secs(40));
    let (sent, events) = drain(&mut l);
    assert_eq!(sent.len(), 1, "one catch-up retransmission, not a burst");
    assert_eq!(events, vec![TransactionEvent::Timeout { key }]);
}

#[test]
fn stray_ack_goes_up_and_stray_response_and_viales_request_are_dropped() {
    let t0 = Instant::now();
    let mut l = layer();
    let peer = Peer::udp(phone());
    let invite = request(Method::Invite, "z9hG4bKs", Transport::Udp);
    let ack = ack_for_2xx(&invite, "z9hG4bKstray");
    l.handle_message(t0, peer, ack.clone().into());
    assert_eq!(
        drain(&mut l).1,
        vec![TransactionEvent::Ack { request: ack, peer }]
    );
    l.handle_message(t0, peer, response_to(&invite, 200, "OK", None).into());
    let no_via = RequestBuilder::new(Method::Options, "sip:a@b")
        .call_id("x")
        .cseq(1)
        .build();
    l.handle_message(t0, peer, no_via.into());
    assert_eq!(drain(&mut l), (vec![], vec![]));
    assert_eq!(l.transaction_count(), 0);
}

#[test]
fn timers_scale_with_config() {
    let t0 = Instant::now();
    let cfg = TimerConfig {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(400),
        t4: Duration::from_secs(1),
        ..TimerConfig::default()
    };
    let mut l = TransactionLayer::new(cfg);
    l.send_request(
        t0,
        Peer::udp(phone()),
        request(Method::Options, "z9hG4bKcfg", Transport::Udp),
    );
    let (sent, events) = run(&mut l, t0, Duration::from_secs(100));
    let times: Vec<u128> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(&times[..5], &[0, 100, 300, 700, 1100]);
    assert_eq!(events.last().map(|(t, _)| *t), Some(6400));
}

#[test]
fn a_cancel_before_any_provisional_waits_for_one_then_goes_out() {
    let t0 = Instant::now();
    let mut l = layer();
    let peer = Peer::udp(phone());
    let invite = request(Method::Invite, "z9hG4bKheld", Transport::Udp);
    l.send_request(t0, peer, invite.clone());
    let _ = drain(&mut l);
    let ckey = l.send_request(t0 + Duration::from_millis(100), peer, cancel_for(&invite));
    let (sent, _) = drain(&mut l);
    assert!(sent.is_empty(), "no CANCEL before a provisional response");
    let t = t0 + Duration::from_millis(300);
    l.handle_message(t, peer, response_to(&invite, 100, "Trying", None).into());
    let (sent, _) = drain(&mut l);
    let methods: Vec<Method> = sent.iter().map(|m| as_request(&m.bytes).method()).collect();
    assert_eq!(methods, [Method::Cancel], "sent once the 100 came");
    let cancel = as_request(&sent[0].bytes);
    l.handle_message(t, peer, response_to(&cancel, 200, "OK", None).into());
    let (_, events) = drain(&mut l);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TransactionEvent::Response { key, .. } if *key == ckey)),
        "the CANCEL's answer reaches the TU on its key: {events:?}"
    );
}

#[test]
fn a_held_cancel_whose_invite_ends_first_is_never_sent_and_ends_as_a_timeout() {
    let t0 = Instant::now();
    let mut l = layer();
    let peer = Peer::udp(phone());
    // A final answer comes first.
    let invite = request(Method::Invite, "z9hG4bKbusy", Transport::Udp);
    l.send_request(t0, peer, invite.clone());
    let ckey = l.send_request(t0, peer, cancel_for(&invite));
    let _ = drain(&mut l);
    l.handle_message(
        t0,
        peer,
        response_to(&invite, 486, "Busy Here", Some("b")).into(),
    );
    let (sent, events) = drain(&mut l);
    assert!(
        sent.iter()
            .all(|m| as_request(&m.bytes).method() == Method::Ack),
        "only the ACK of the 486"
    );
    assert!(
        events.contains(&TransactionEvent::Timeout { key: ckey }),
        "{events:?}"
    );
    // Nothing ever comes: Timer B ends the INVITE, and the CANCEL with it, unsent.
    let silent = request(Method::Invite, "z9hG4bKgone", Transport::Udp);
    let ikey = l.send_request(t0, peer, silent.clone());
    let ckey = l.send_request(t0, peer, cancel_for(&silent));
    let (sent, events) = run(&mut l, t0, Duration::from_secs(100));
    assert!(
        sent.iter()
            .all(|(_, m)| as_request(&m.bytes).method() == Method::Invite),
        "retransmissions of the INVITE only"
    );
    assert_eq!(
        events.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        vec![
            TransactionEvent::Timeout { key: ikey },
            TransactionEvent::Timeout { key: ckey },
        ]
    );
    assert_eq!(l.transaction_count(), 0, "nothing leaks");
}
