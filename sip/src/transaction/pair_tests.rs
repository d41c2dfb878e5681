//! Two transaction layers over a seeded lossy network in simulated time (quinn's `Pair`):
//! INVITE/180/200/ACK then BYE/200 must complete despite loss, within a step bound.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::message::{RequestBuilder, response_to};
use crate::transport::Transport;

const LATENCY: Duration = Duration::from_millis(20);
const MAX_STEPS: usize = 20_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Caller,
    Callee,
}

/// Which datagrams the network loses.
#[derive(Clone, Copy, Debug)]
enum Loss {
    EveryNth(u64),
    /// Percent lost, decided by a seeded generator.
    Random {
        seed: u64,
        percent: u64,
    },
}

struct Net {
    loss: Loss,
    sent: u64,
    dropped: u64,
    state: u64,
    in_flight: Vec<(Instant, Side, Transmit)>,
}

impl Net {
    fn lose(&mut self) -> bool {
        self.sent += 1;
        let lost = match self.loss {
            Loss::EveryNth(n) => self.sent.is_multiple_of(n),
            Loss::Random { percent, .. } => {
                self.state = self
                    .state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (self.state >> 33) % 100 < percent
            }
        };
        self.dropped += u64::from(lost);
        lost
    }
}

#[derive(Default)]
struct Outcome {
    caller_got_200: usize,
    callee_acks: usize,
    callee_got_bye: usize,
    bye_done: bool,
    timeouts: usize,
    invites_seen_by_callee: usize,
    elapsed: Duration,
    dropped: u64,
}

fn caller_addr() -> SocketAddr {
    "10.0.0.1:5060".parse().expect("addr")
}

fn callee_addr() -> SocketAddr {
    "10.0.0.2:5060".parse().expect("addr")
}

fn base(method: Method, branch: &str, cseq: u32, to_tag: Option<&str>) -> Request {
    let to = match to_tag {
        Some(t) => format!("<sip:1001@10.0.0.2>;tag={t}"),
        None => "<sip:1001@10.0.0.2>".to_string(),
    };
    RequestBuilder::new(method, "sip:1001@10.0.0.2")
        .via(Transport::Udp, caller_addr(), branch)
        .max_forwards(70)
        .from("<sip:switchboard@10.0.0.1>;tag=caller")
        .to(&to)
        .call_id("pair-call")
        .cseq(cseq)
        .contact("sip:switchboard@10.0.0.1")
        .build()
}

fn simulate(loss: Loss) -> Outcome {
    let t0 = Instant::now();
    let mut now = t0;
    let seed = match loss {
        Loss::Random { seed, .. } => seed,
        Loss::EveryNth(_) => 0,
    };
    let mut net = Net {
        loss,
        sent: 0,
        dropped: 0,
        state: seed,
        in_flight: Vec::new(),
    };
    let mut caller = TransactionLayer::new(TimerConfig::default());
    let mut callee = TransactionLayer::new(TimerConfig::default());
    let mut out = Outcome::default();

    let invite_key = caller.send_request(
        now,
        Peer::udp(callee_addr()),
        base(Method::Invite, "z9hG4bKinv", 1, None),
    );
    let mut bye_key: Option<TransactionKey> = None;

    for _ in 0..MAX_STEPS {
        let mut busy = false;
        for (side, layer) in [(Side::Caller, &mut caller), (Side::Callee, &mut callee)] {
            while let Some(t) = layer.poll_transmit() {
                busy = true;
                if !net.lose() {
                    net.in_flight.push((now + LATENCY, side, t));
                }
            }
        }
        // Callee TU: answer INVITE with 180 + 200, BYE with 200.
        while let Some(e) = callee.poll_event() {
            busy = true;
            match e {
                TransactionEvent::Request { key, request, .. } => match request.method() {
                    Method::Invite => {
                        out.invites_seen_by_callee += 1;
                        callee.send_response(
                            now,
                            &key,
                            response_to(&request, 180, "Ringing", Some("callee")),
                        );
                        let ok = response_to(&request, 200, "OK", Some("callee"))
                            .with_header("Contact", "<sip:1001@10.0.0.2>");
                        callee.send_response(now, &key, ok);
                    }
                    Method::Bye => {
                        out.callee_got_bye += 1;
                        callee.send_response(now, &key, response_to(&request, 200, "OK", None));
                    }
                    _ => {}
                },
                TransactionEvent::Ack { .. } => out.callee_acks += 1,
                TransactionEvent::Timeout { .. } => out.timeouts += 1,
                TransactionEvent::Response { .. } => {}
            }
        }
        // Caller TU: ACK every 2xx (same ACK each time), then hang up once.
        while let Some(e) = caller.poll_event() {
            busy = true;
            match e {
                TransactionEvent::Response { key, response }
                    if key == invite_key && response.status() == 200 =>
                {
                    out.caller_got_200 += 1;
                    let ack = base(Method::Ack, "z9hG4bKack", 1, Some("callee"));
                    caller.send_stateless(Peer::udp(callee_addr()), ack.into());
                    if bye_key.is_none() {
                        let bye = base(Method::Bye, "z9hG4bKbye", 2, Some("callee"));
                        bye_key = Some(caller.send_request(now, Peer::udp(callee_addr()), bye));
                    }
                }
                TransactionEvent::Response { key, response }
                    if Some(&key) == bye_key.as_ref() && response.status() == 200 =>
                {
                    out.bye_done = true;
                    out.elapsed = now - t0;
                }
                TransactionEvent::Timeout { .. } => out.timeouts += 1,
                _ => {}
            }
        }
        if busy {
            continue;
        }
        let next = [
            net.in_flight.iter().map(|(at, _, _)| *at).min(),
            caller.poll_timeout(),
            callee.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            out.dropped = net.dropped;
            return out;
        };
        now = now.max(next);
        let (due, later): (Vec<_>, Vec<_>) =
            net.in_flight.drain(..).partition(|(at, _, _)| *at <= now);
        net.in_flight = later;
        for (_, from, t) in due {
            let msg = crate::message::parse(&t.bytes).expect("layers send valid messages");
            match from {
                Side::Caller => callee.handle_message(now, Peer::udp(caller_addr()), msg),
                Side::Callee => caller.handle_message(now, Peer::udp(callee_addr()), msg),
            }
        }
        caller.handle_timeout(now);
        callee.handle_timeout(now);
    }
    panic!("simulation did not settle within {MAX_STEPS} steps");
}

fn assert_call_completed(loss: Loss) -> Outcome {
    let out = simulate(loss);
    eprintln!(
        "{loss:?}: 200s={} acks={} byes={} done={} timeouts={} elapsed={:?}",
        out.caller_got_200,
        out.callee_acks,
        out.callee_got_bye,
        out.bye_done,
        out.timeouts,
        out.elapsed
    );
    assert!(
        out.caller_got_200 >= 1,
        "{loss:?}: caller never saw the 200"
    );
    assert_eq!(
        out.callee_acks, 1,
        "{loss:?}: the 2xx ACK goes up exactly once"
    );
    assert_eq!(
        out.invites_seen_by_callee, 1,
        "{loss:?}: INVITE retransmissions absorbed"
    );
    assert_eq!(
        out.callee_got_bye, 1,
        "{loss:?}: BYE retransmissions absorbed"
    );
    assert!(out.bye_done, "{loss:?}: BYE never completed");
    assert_eq!(out.timeouts, 0, "{loss:?}: nothing timed out");
    assert!(
        out.elapsed < Duration::from_secs(32),
        "{loss:?}: took {:?}",
        out.elapsed
    );
    out
}

#[test]
fn lossless_call_completes_in_a_few_round_trips() {
    let out = assert_call_completed(Loss::EveryNth(u64::MAX));
    assert_eq!(out.caller_got_200, 1);
    assert!(out.elapsed <= LATENCY * 4, "took {:?}", out.elapsed);
}

#[test]
fn call_completes_when_every_nth_datagram_is_lost() {
    let mut slow = 0;
    // A lossless call is 6 datagrams (INVITE 180 200 ACK BYE 200); n <= 6 always hits one.
    for n in [3, 4, 5, 6] {
        let out = assert_call_completed(Loss::EveryNth(n));
        assert!(out.dropped > 0, "n={n}: nothing was lost");
        if out.elapsed > LATENCY * 4 {
            slow += 1;
        }
    }
    assert!(
        slow >= 3,
        "loss should have cost retransmissions, slow runs: {slow}"
    );
}

#[test]
fn call_completes_under_seeded_random_loss() {
    let mut slow = 0;
    for seed in 1..=20 {
        let out = assert_call_completed(Loss::Random { seed, percent: 30 });
        if out.elapsed > LATENCY * 4 {
            slow += 1;
        }
    }
    assert!(
        slow >= 10,
        "30% loss should have hurt most runs, slow runs: {slow}"
    );
}

#[test]
fn losing_every_second_datagram_starves_the_bye_and_timer_f_reports_it() {
    // Request and response alternate in lockstep, so every 200 to the BYE is the
    // even datagram: a real failure the TU must hear about, not a hang.
    let out = simulate(Loss::EveryNth(2));
    assert_eq!(out.callee_acks, 1);
    assert_eq!(out.callee_got_bye, 1);
    assert!(!out.bye_done);
    assert_eq!(out.timeouts, 1);
}
