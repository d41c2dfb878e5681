//! RTP for every call from one place: the paced 20 ms sender (all calls in one loop, one
//! reused buffer, no allocation per packet) and the receive path that reads markers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use media::rtp::{RtpPacket, RtpSender};
use tokio::net::UdpSocket;

use crate::calls::{Call, Phase, StreamRx};
use crate::marker::{self, Direction, Marker};
use crate::stats::Samples;

/// RTP payload type of PCMU.
pub const PT_PCMU: u8 = 0;
/// RTP payload type we offer and answer for telephone-event.
pub const PT_EVENT: u8 = 101;
/// Media is measured from this long after the agent's leg is confirmed (the server
/// starts bridging when it has the agent's 200; packets before that are not relayed).
pub const WINDOW_GRACE: Duration = Duration::from_millis(100);
/// RFC 4733 packets per digit: three while the key is down, three end packets.
const DTMF_PACKETS: u8 = 6;

/// Where packets go and how they look; shared by all calls.
pub struct Sender<'a> {
    pub patient_socket: &'a UdpSocket,
    pub agent_socket: &'a UdpSocket,
    pub epoch: Instant,
    pub patient_tone: &'a [u8; 160],
    pub agent_tone: &'a [u8; 160],
    pub digit_event: u8,
    pub errors: &'a mut u64,
}

/// Microseconds since `epoch`.
pub fn us_since(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX)
}

impl Sender<'_> {
    /// One 20 ms step of one call: the digit, then audio from the patient and, once
    /// bridged, from the agent.
    pub fn tick(&mut self, call: &mut Call, now: Instant, buf: &mut [u8]) {
        match call.phase {
            Phase::Dialling => self.send_digit(call, now, buf),
            Phase::Waiting => self.send_audio(call, Direction::PatientToAgent, buf),
            Phase::Bridged => {
                if call.window_start_us.is_none()
                    && call.bridged_at.is_some_and(|b| now >= b + WINDOW_GRACE)
                {
                    call.window_start_us = Some(us_since(self.epoch, Instant::now()));
                }
                self.send_audio(call, Direction::PatientToAgent, buf);
                self.send_audio(call, Direction::AgentToPatient, buf);
            }
            _ => {}
        }
    }

    fn send_digit(&mut self, call: &mut Call, now: Instant, buf: &mut [u8]) {
        let Some(dest) = call.patient_rtp_remote else {
            return;
        };
        let step = call.dtmf_step;
        if step == 0 {
            call.dtmf_ts = call.patient_rtp.ts;
            call.digit_at = Some(now);
        }
        let end = step >= 3;
        let duration: u16 = if end {
            4 * 160
        } else {
            (u16::from(step) + 1) * 160
        };
        let [d0, d1] = duration.to_be_bytes();
        let payload = [self.digit_event, if end { 0x80 | 10 } else { 10 }, d0, d1];
        call.patient_rtp.ts = call.dtmf_ts;
        let n = call
            .patient_rtp
            .write(buf, PT_EVENT, step == 0, &payload, 0);
        send(self.patient_socket, buf, n, dest, self.errors);
        call.dtmf_step += 1;
        if call.dtmf_step >= DTMF_PACKETS {
            call.patient_rtp.ts = call.dtmf_ts.wrapping_add(u32::from(DTMF_PACKETS) * 160);
            call.phase = Phase::Waiting;
        }
    }

    fn send_audio(&mut self, call: &mut Call, dir: Direction, buf: &mut [u8]) {
        let (socket, dest, tone) = match dir {
            Direction::PatientToAgent => (
                self.patient_socket,
                call.patient_rtp_remote,
                self.patient_tone,
            ),
            Direction::AgentToPatient => (
                self.agent_socket,
                call.leg
                    .as_ref()
                    .filter(|l| l.acked && !l.ended)
                    .and_then(|l| l.remote_rtp),
                self.agent_tone,
            ),
        };
        let Some(dest) = dest else { return };
        let d = dir.index();
        let m = Marker {
            call: call.index,
            direction: dir,
            seq: call.next_seq[d],
            sent_us: us_since(self.epoch, Instant::now()),
        };
        let sender: &mut RtpSender = match dir {
            Direction::PatientToAgent => &mut call.patient_rtp,
            Direction::AgentToPatient => &mut call.agent_rtp,
        };
        let n = write_marked(sender, tone, &m, buf);
        send(socket, buf, n, dest, self.errors);
        call.next_seq[d] = call.next_seq[d].wrapping_add(1);
        if call.window_start_us.is_some_and(|w| m.sent_us >= w) {
            call.window_sent[d] += 1;
        }
    }
}

/// Writes one 20 ms PCMU packet into `buf`: `tone` with `m` in its first bytes, the next
/// RTP header of `sender`. Returns the packet's length.
pub fn write_marked(sender: &mut RtpSender, tone: &[u8; 160], m: &Marker, buf: &mut [u8]) -> usize {
    let mut payload = *tone;
    marker::encode(m, &mut payload);
    sender.write(buf, PT_PCMU, false, &payload, 160)
}

/// Sends `buf[..n]` without waiting (a full socket buffer counts as an error, like loss).
pub fn send(socket: &UdpSocket, buf: &[u8], n: usize, dest: SocketAddr, errors: &mut u64) {
    let ok = buf
        .get(..n)
        .filter(|b| !b.is_empty())
        .is_some_and(|b| socket.try_send_to(b, dest).is_ok());
    if !ok {
        *errors += 1;
    }
}

/// Receive buffer asked for on each of the generator's RTP sockets.
///
/// All calls share one socket per side, and the relay forwards a whole tick's packets at
/// once: 500 calls are 500 packets arriving together, more than the default ~208 KiB holds
/// (each datagram costs about 1 KiB of buffer). The kernel caps this at
/// `net.core.rmem_max`.
pub const RTP_RECV_BUFFER: usize = 4 << 20;

/// Widens a socket's receive buffer to `bytes` (as far as the kernel allows); the size
/// the kernel reports afterwards.
pub fn widen_receive_buffer(socket: &UdpSocket, bytes: usize) -> std::io::Result<usize> {
    let s = socket2::SockRef::from(socket);
    s.set_recv_buffer_size(bytes)?;
    s.recv_buffer_size()
}

/// What a received packet was.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// A marked packet of ours, measured.
    Measured,
    /// Ours but from before the measured window, or for a call no longer tracked.
    Unmeasured,
    /// Not marked: prompts and hold music (or something foreign).
    Unmarked,
}

/// A packet read from the patient (`AgentToPatient`) or agent (`PatientToAgent`) socket.
pub fn receive(
    calls: &mut [Call],
    expected: Direction,
    packet: &[u8],
    received_us: u64,
    delays: &mut Samples,
) -> Arrival {
    let Some(m) = marker_of(packet, expected) else {
        return Arrival::Unmarked;
    };
    let Some(call) = calls.get_mut(m.call as usize) else {
        return Arrival::Unmeasured;
    };
    let rx = &mut call.rx[expected.index()];
    measure(rx, call.window_start_us, &m, received_us, delays)
}

/// The marker of an RTP packet travelling the `expected` way, if it carries one.
pub fn marker_of(packet: &[u8], expected: Direction) -> Option<Marker> {
    let p = RtpPacket::parse(packet).ok()?;
    marker::decode(p.payload).filter(|m| m.direction == expected)
}

/// Counts a marked packet against its stream if it was sent inside the measured window
/// (from `window_start_us` on): reception, reordering, jitter and delay.
pub fn measure(
    rx: &mut StreamRx,
    window_start_us: Option<u64>,
    m: &Marker,
    received_us: u64,
    delays: &mut Samples,
) -> Arrival {
    if window_start_us.is_none_or(|w| m.sent_us < w) {
        return Arrival::Unmeasured;
    }
    rx.received += 1;
    if rx.last_seq.is_some_and(|last| m.seq <= last) {
        rx.out_of_order += 1;
    } else {
        rx.last_seq = Some(m.seq);
    }
    let sent = i64::try_from(m.sent_us).unwrap_or(i64::MAX);
    let recv = i64::try_from(received_us).unwrap_or(i64::MAX);
    rx.jitter.packet(sent, recv);
    delays.push_us(recv - sent);
    Arrival::Measured
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(call: u32, dir: Direction, seq: u32, sent_us: u64) -> Vec<u8> {
        let mut payload = crate::marker::tone_frame(400.0, 6000);
        marker::encode(
            &Marker {
                call,
                direction: dir,
                seq,
                sent_us,
            },
            &mut payload,
        );
        // Through the bridge: decode and re-encode, with the server's own header.
        let payload: Vec<u8> = payload
            .iter()
            .map(|&b| media::g711::ulaw_encode(media::g711::ulaw_decode(b)))
            .collect();
        let mut buf = vec![0u8; 12 + payload.len()];
        let n = RtpSender::new(99, 7, 1234).write(&mut buf, PT_PCMU, false, &payload, 160);
        buf.truncate(n);
        buf
    }

    #[test]
    fn only_marked_packets_inside_the_window_are_measured() {
        let mut calls = vec![
            Call::new(0, "a".into(), (1, 2), false),
            Call::new(1, "b".into(), (3, 4), false),
        ];
        calls[1].window_start_us = Some(1_000_000);
        let mut delays = Samples::with_capacity(8);
        let d = Direction::AgentToPatient;
        // Before the window, wrong direction, unknown call, not ours: not measured.
        assert_eq!(
            receive(
                &mut calls,
                d,
                &packet(1, d, 0, 999_999),
                1_000_500,
                &mut delays
            ),
            Arrival::Unmeasured
        );
        assert_eq!(
            receive(
                &mut calls,
                d,
                &packet(1, Direction::PatientToAgent, 1, 1_000_000),
                1_000_500,
                &mut delays
            ),
            Arrival::Unmarked
        );
        assert_eq!(
            receive(
                &mut calls,
                d,
                &packet(7, d, 1, 1_000_000),
                1_000_500,
                &mut delays
            ),
            Arrival::Unmeasured
        );
        assert_eq!(
            receive(&mut calls, d, &[0x80, 0, 0, 1], 1_000_500, &mut delays),
            Arrival::Unmarked
        );
        // In the window: counted, delay recorded, reordering noticed.
        assert_eq!(
            receive(
                &mut calls,
                d,
                &packet(1, d, 5, 1_100_000),
                1_102_000,
                &mut delays
            ),
            Arrival::Measured
        );
        assert_eq!(
            receive(
                &mut calls,
                d,
                &packet(1, d, 4, 1_080_000),
                1_103_000,
                &mut delays
            ),
            Arrival::Measured
        );
        let rx = calls[1].rx[d.index()];
        assert_eq!((rx.received, rx.out_of_order, rx.last_seq), (2, 1, Some(5)));
        assert_eq!(calls[0].rx[d.index()].received, 0);
        assert_eq!(delays.distribution().max_ms, 23.0);
    }
}
