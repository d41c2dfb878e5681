//! RTP for every call from one place: the paced 20 ms sender (all calls in one loop, one
//! reused buffer, no allocation per packet) and the receive path that reads markers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use media::rtp::{RtpPacket, RtpSender};
use tokio::net::UdpSocket;

use crate::calls::{Call, Phase, StreamRx};
use crate::marker::{self, Direction, Marker};
use crate::stats::Histogram;

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
    /// This step's packets, per socket, sent together by [`Sender::flush`].
    pub patient_batch: &'a mut Batch,
    pub agent_batch: &'a mut Batch,
}

/// Microseconds since `epoch`.
pub fn us_since(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX)
}

impl Sender<'_> {
    /// Sends this step's queued packets (one `sendmmsg` per socket).
    pub fn flush(&mut self) {
        self.patient_batch.flush(self.patient_socket, self.errors);
        self.agent_batch.flush(self.agent_socket, self.errors);
    }

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
        let packet = buf.get(..n).unwrap_or_default();
        self.patient_batch
            .push(self.patient_socket, packet, dest, self.errors);
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
        let batch = match dir {
            Direction::PatientToAgent => &mut *self.patient_batch,
            Direction::AgentToPatient => &mut *self.agent_batch,
        };
        let packet = buf.get(..n).unwrap_or_default();
        batch.push_marked(socket, packet, dest, (m, self.epoch), self.errors);
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

/// Length of the RTP header [`write_marked`] writes (no CSRC, no extension).
const RTP_HEADER: usize = 12;
/// Packets sent per `sendmmsg` at most.
pub const SEND_BATCH: usize = 64;
/// Longest packet a [`Batch`] holds (RTP header + 20 ms of G.711 is 172 bytes).
const BATCH_PACKET: usize = 256;

/// Packets for one socket, sent together with one `sendmmsg` (a slot's calls at once):
/// sent one `sendto` each, the generator spent on syscalls nearly what the relay it
/// measures does. Full or flushed, the batch goes out at once (no waiting).
///
/// A marked packet's send time is stamped again right before the `sendmmsg`: a
/// generator descheduled between building a packet and sending it would otherwise
/// count its own lateness as the server's relay delay.
pub struct Batch {
    bufs: Box<[[u8; BATCH_PACKET]; SEND_BATCH]>,
    lens: [usize; SEND_BATCH],
    dests: Vec<Option<nix::sys::socket::SockaddrStorage>>,
    /// The marker of each queued packet that has one, and the run's epoch.
    markers: [Option<Marker>; SEND_BATCH],
    epoch: Option<Instant>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            bufs: Box::new([[0; BATCH_PACKET]; SEND_BATCH]),
            lens: [0; SEND_BATCH],
            dests: Vec::with_capacity(SEND_BATCH),
            markers: [None; SEND_BATCH],
            epoch: None,
        }
    }
}

impl Batch {
    /// Queues `packet` for `dest`, sending the batch on `socket` first if it is full.
    pub fn push(&mut self, socket: &UdpSocket, packet: &[u8], dest: SocketAddr, errors: &mut u64) {
        // An empty packet is one that could not be written: an error, as `send` counts it.
        if packet.is_empty() {
            *errors += 1;
            return;
        }
        if self.dests.len() == SEND_BATCH {
            self.flush(socket, errors);
        }
        let i = self.dests.len();
        let (Some(buf), Some(len)) = (self.bufs.get_mut(i), self.lens.get_mut(i)) else {
            *errors += 1;
            return;
        };
        let Some(dst) = buf.get_mut(..packet.len()) else {
            *errors += 1;
            return;
        };
        dst.copy_from_slice(packet);
        *len = packet.len();
        if let Some(m) = self.markers.get_mut(i) {
            *m = None;
        }
        self.dests
            .push(Some(nix::sys::socket::SockaddrStorage::from(dest)));
    }

    /// Queues a packet written by [`write_marked`] with `marker` (and the run's epoch):
    /// its send time is rewritten when the batch goes out.
    pub fn push_marked(
        &mut self,
        socket: &UdpSocket,
        packet: &[u8],
        dest: SocketAddr,
        (marker, epoch): (Marker, Instant),
        errors: &mut u64,
    ) {
        let before = *errors;
        self.push(socket, packet, dest, errors);
        if *errors != before {
            return;
        }
        let i = self.dests.len() - 1;
        if let Some(m) = self.markers.get_mut(i) {
            *m = Some(marker);
        }
        self.epoch = Some(epoch);
    }

    /// Writes the send time `now` into every queued marker.
    fn stamp(&mut self) {
        let Some(epoch) = self.epoch else { return };
        let now = us_since(epoch, Instant::now());
        let n = self.dests.len();
        for (buf, m) in self.bufs.iter_mut().zip(self.markers.iter_mut()).take(n) {
            let Some(mut marker) = m.take() else { continue };
            marker.sent_us = now;
            if let Some(payload) = buf.get_mut(RTP_HEADER..) {
                marker::encode(&marker, payload);
            }
        }
    }

    /// Sends what is queued with one `sendmmsg`; what the kernel did not take counts as errors.
    pub fn flush(&mut self, socket: &UdpSocket, errors: &mut u64) {
        use nix::sys::socket::{MsgFlags, MultiHeaders, sendmmsg};
        use std::os::fd::AsRawFd;
        let n = self.dests.len();
        if n == 0 {
            return;
        }
        self.stamp();
        let slices: Vec<[std::io::IoSlice<'_>; 1]> = self
            .bufs
            .iter()
            .zip(&self.lens)
            .take(n)
            .map(|(b, &len)| [std::io::IoSlice::new(b.get(..len).unwrap_or_default())])
            .collect();
        let mut headers = MultiHeaders::<nix::sys::socket::SockaddrStorage>::preallocate(n, None);
        let sent = sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            &self.dests,
            [],
            MsgFlags::MSG_DONTWAIT,
        )
        .map_or(0, |r| r.count());
        *errors += (n - sent.min(n)) as u64;
        self.dests.clear();
    }
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

/// Asks the kernel to stamp every datagram's arrival on `socket` (`SO_TIMESTAMPNS`).
pub fn stamp_arrivals(socket: &UdpSocket) -> std::io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::ReceiveTimestampns};
    setsockopt(socket, ReceiveTimestampns, &true).map_err(std::io::Error::from)
}

/// Room for one `SO_TIMESTAMPNS` control message.
pub fn stamp_buffer() -> Vec<u8> {
    nix::cmsg_space!(nix::sys::time::TimeSpec)
}

/// Datagrams read from one RTP socket per wake-up at most (so SIP and the tick get their turn).
pub const RTP_BATCH: usize = 64;

/// Buffers for one `recvmmsg` of up to [`RTP_BATCH`] datagrams.
pub struct RecvBatch {
    bufs: Box<[[u8; BATCH_PACKET]; RTP_BATCH]>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: Box::new([[0; BATCH_PACKET]; RTP_BATCH]),
        }
    }
}

/// Reads up to [`RTP_BATCH`] waiting datagrams from `socket` with one `recvmmsg`, handing
/// each to `packet` with its arrival time in µs since `epoch` (the kernel's stamp where
/// there is one). Datagrams longer than a [`RecvBatch`] buffer are cut (RTP here is 172 bytes).
pub fn drain_stamped(
    socket: &UdpSocket,
    epoch: Instant,
    rx: &mut RecvBatch,
    mut packet: impl FnMut(&[u8], u64),
) {
    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg,
    };
    use std::os::fd::AsRawFd;
    let clock = ArrivalClock::read(epoch);
    let mut got = [(0usize, None::<i64>); RTP_BATCH];
    let received = socket.try_io(tokio::io::Interest::READABLE, || {
        let mut slices: Vec<[std::io::IoSliceMut<'_>; 1]> = rx
            .bufs
            .iter_mut()
            .map(|b| [std::io::IoSliceMut::new(b)])
            .collect();
        let mut headers =
            MultiHeaders::<SockaddrStorage>::preallocate(RTP_BATCH, Some(stamp_buffer()));
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(std::io::Error::from)?;
        let mut n = 0;
        for (slot, msg) in got.iter_mut().zip(results) {
            let stamp = msg.cmsgs().ok().and_then(|mut c| {
                c.find_map(|m| match m {
                    ControlMessageOwned::ScmTimestampns(t) => {
                        Some(t.tv_sec() * 1_000_000 + t.tv_nsec() / 1_000)
                    }
                    _ => None,
                })
            });
            *slot = (msg.bytes, stamp);
            n += 1;
        }
        Ok(n)
    });
    let Ok(n) = received else { return };
    for (buf, (len, stamp)) in rx.bufs.iter().zip(&got).take(n) {
        packet(buf.get(..*len).unwrap_or(buf), clock.arrival_us(*stamp));
    }
}

/// Converts kernel arrival stamps (realtime) to µs since the run's monotonic `epoch`: the
/// two clocks' difference, read once per batch of datagrams (so a clock step mid-run moves
/// at most one batch). The realtime read is bracketed by two monotonic ones and the tightest
/// of three brackets kept, so a preemption between the reads does not shift the batch.
#[derive(Debug, Clone, Copy)]
pub struct ArrivalClock {
    realtime_minus_epoch_us: i64,
    now_us: u64,
}

impl ArrivalClock {
    /// Reads both clocks now.
    pub fn read(epoch: Instant) -> Self {
        let mono = || i64::try_from(us_since(epoch, Instant::now())).unwrap_or(i64::MAX);
        let real = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        };
        let mut best: Option<(i64, i64, i64)> = None; // (bracket width, offset, now)
        for _ in 0..3 {
            let (before, r, after) = (mono(), real(), mono());
            let width = after - before;
            if best.is_none_or(|(w, _, _)| width < w) {
                best = Some((width, r - (before + after) / 2, after));
            }
            if width <= 2 {
                break;
            }
        }
        let (_, offset, now) = best.unwrap_or((0, 0, 0));
        ArrivalClock {
            realtime_minus_epoch_us: offset,
            now_us: u64::try_from(now).unwrap_or(0),
        }
    }

    /// When a datagram arrived, µs since the epoch: the kernel's stamp if there is one,
    /// else the time this clock was read.
    pub fn arrival_us(&self, stamp: Option<i64>) -> u64 {
        stamp
            .and_then(|s| u64::try_from(s - self.realtime_minus_epoch_us).ok())
            .unwrap_or(self.now_us)
    }
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
    delays: &mut Histogram,
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
    delays: &mut Histogram,
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

    #[tokio::test]
    async fn a_marked_packet_carries_the_time_it_was_sent_not_queued() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let rx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let epoch = Instant::now();
        let queued = Marker {
            call: 7,
            direction: Direction::PatientToAgent,
            seq: 3,
            sent_us: us_since(epoch, Instant::now()),
        };
        let mut sender = RtpSender::new(0x1234, 0, 0);
        let mut buf = [0u8; 256];
        let n = write_marked(&mut sender, &[0x55; 160], &queued, &mut buf);
        let mut batch = Batch::default();
        let mut errors = 0;
        let dest = rx.local_addr().expect("addr");
        batch.push_marked(
            &tx,
            buf.get(..n).unwrap_or_default(),
            dest,
            (queued, epoch),
            &mut errors,
        );
        // The generator is "descheduled" between building the packet and sending it.
        std::thread::sleep(Duration::from_millis(30));
        let flushed_after = us_since(epoch, Instant::now());
        batch.flush(&tx, &mut errors);
        let mut got = [0u8; 512];
        let (len, _) = tokio::time::timeout(Duration::from_secs(2), rx.recv_from(&mut got))
            .await
            .expect("in time")
            .expect("a packet");
        let m = marker_of(
            got.get(..len).unwrap_or_default(),
            Direction::PatientToAgent,
        )
        .expect("still a valid marker");
        assert_eq!((m.call, m.seq), (7, 3));
        assert!(
            m.sent_us >= flushed_after && m.sent_us >= queued.sent_us + 30_000,
            "stamped at the send: {} µs, queued at {} µs",
            m.sent_us,
            queued.sent_us
        );
    }

    #[tokio::test]
    async fn a_batch_sends_every_queued_packet_to_its_own_destination_in_order() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let (to_a, to_b) = (a.local_addr().expect("addr"), b.local_addr().expect("addr"));
        let mut batch = Batch::default();
        let mut errors = 0;
        // More than one batch's worth: the full batch goes out by itself.
        let total = SEND_BATCH + 10;
        for i in 0..total {
            let packet = [i as u8; 172];
            let dest = if i % 2 == 0 { to_a } else { to_b };
            batch.push(&tx, &packet, dest, &mut errors);
        }
        batch.flush(&tx, &mut errors);
        batch.flush(&tx, &mut errors); // nothing left: sends nothing
        assert_eq!(errors, 0);
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        for (socket, parity) in [(&a, 0usize), (&b, 1)] {
            for _ in 0..total / 2 {
                let (n, from) =
                    tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
                        .await
                        .expect("in time")
                        .expect("a packet");
                assert_eq!((n, from), (172, tx.local_addr().expect("addr")));
                assert_eq!(buf[0] as usize % 2, parity, "to its own destination");
                got.push(buf[0]);
            }
        }
        let evens: Vec<u8> = got[..total / 2].to_vec();
        assert!(evens.windows(2).all(|w| w[0] < w[1]), "in order: {evens:?}");
        assert_eq!(got.len(), total);
    }

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
        let mut delays = Histogram::default();
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

    #[tokio::test]
    async fn kernel_stamps_time_a_packet_when_it_arrived_not_when_it_was_read() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let tx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        stamp_arrivals(&rx).expect("SO_TIMESTAMPNS");
        // The kernel turns stamping on from deferred work: until it has run, datagrams are
        // stamped when read. The generator asks long before media flows; this test waits
        // (bounded) until a probe read 50 ms late carries an earlier stamp.
        let epoch = Instant::now();
        let mut batch = RecvBatch::default();
        let to = rx.local_addr().expect("addr");
        let mut on = false;
        for _ in 0..40 {
            tx.send_to(b"probe", to).await.expect("send");
            let sent = us_since(epoch, Instant::now());
            tokio::time::sleep(Duration::from_millis(50)).await;
            rx.readable().await.expect("readable");
            let mut stamps = Vec::new();
            drain_stamped(&rx, epoch, &mut batch, |_, at| stamps.push(at));
            if stamps.iter().any(|&at| at < sent + 25_000) {
                on = true;
                break;
            }
        }
        assert!(on, "the kernel never started stamping arrivals");
        tx.send_to(b"one", to).await.expect("send");
        let sent_us = us_since(epoch, Instant::now());
        // Read it 300 ms late, as a busy generator would.
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send_to(b"two", to).await.expect("send");
        rx.readable().await.expect("readable");
        let mut got = Vec::new();
        drain_stamped(&rx, epoch, &mut batch, |packet, at| {
            got.push((packet.to_vec(), at))
        });
        assert_eq!(got.len(), 2, "both datagrams in one read");
        assert_eq!(got[0].0, b"one");
        assert_eq!(got[1].0, b"two");
        let arrived = got[0].1;
        // Arrival at sending (clock reads differ by µs), not 300 ms later.
        assert!(
            arrived.abs_diff(sent_us) < 150_000,
            "arrived {arrived} µs, sent {sent_us} µs"
        );
        assert!(
            got[1].1 >= sent_us + 300_000,
            "the second was sent 300 ms later"
        );
        // Nothing more: the readiness is cleared, nothing stale is handed on.
        let mut more = 0;
        drain_stamped(&rx, epoch, &mut batch, |_, _| more += 1);
        assert_eq!(more, 0);
    }
}
