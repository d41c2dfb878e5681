//! Per-leg RTP logic: incoming packets to audio or DTMF, outgoing frames to packets.
//!
//! Sans-IO and allocation-free: the driver hands in datagrams and frame buffers.

use crate::codec::Codec;
use crate::dtmf::DtmfReceiver;
use crate::rtp::{HEADER_LEN, RtpPacket, RtpSender};
use crate::{FRAME_SAMPLES, MAX_PACKET_SAMPLES};

/// Relayed packets' numbers on our stream: the sender's plus these (wrapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RelayMap {
    ssrc: u32,
    seq: u16,
    ts: u32,
}

/// What an incoming RTP packet turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// This many samples of decoded audio were written to the buffer (at most its length).
    Audio(usize),
    /// A new DTMF digit (reported once per key press).
    Dtmf(char),
    /// Nothing to act on: malformed, comfort noise, another payload type, or a repeated event packet.
    Ignored,
}

/// The length of one RFC 4733 packet [`LegMedia::write_digit`] writes.
pub const DIGIT_PACKET_LEN: usize = HEADER_LEN + 4;

/// The media state of one call leg: negotiated codec, DTMF receiver and RTP sender.
#[derive(Debug, Clone)]
pub struct LegMedia {
    codec: Codec,
    telephone_event_pt: Option<u8>,
    sender: RtpSender,
    dtmf: DtmfReceiver,
    sent_first: bool,
    /// SSRC, sequence number and RTP timestamp of the last audio packet received.
    last_audio: (u32, u16, u32),
    /// How the stream relayed to this leg maps onto ours (see [`LegMedia::write_relayed`]).
    relay: Option<RelayMap>,
    /// The last audio packet's payload as received, up to [`MAX_PACKET_SAMPLES`]
    /// (for a relay to a leg with the same codec: no decode-encode round trip).
    last_payload: [u8; MAX_PACKET_SAMPLES],
    last_payload_len: usize,
}

impl LegMedia {
    /// Media for a leg that negotiated `codec` (and telephone-event on `telephone_event_pt`).
    pub fn new(
        codec: Codec,
        telephone_event_pt: Option<u8>,
        ssrc: u32,
        initial_seq: u16,
        initial_ts: u32,
    ) -> Self {
        LegMedia {
            codec,
            telephone_event_pt,
            sender: RtpSender::new(ssrc, initial_seq, initial_ts),
            dtmf: DtmfReceiver::new(),
            sent_first: false,
            last_audio: (0, 0, 0),
            relay: None,
            last_payload: [0; MAX_PACKET_SAMPLES],
            last_payload_len: 0,
        }
    }

    /// The leg's codec or telephone-event type changed mid-call (re-INVITE or
    /// UPDATE): packets are read and written in the new one from now on; our
    /// stream goes on (same SSRC, sequence and timestamp running on).
    pub fn renegotiate(&mut self, codec: Codec, telephone_event_pt: Option<u8>) {
        self.codec = codec;
        self.telephone_event_pt = telephone_event_pt;
        self.last_payload_len = 0;
        // What is relayed to it next (after a hold, say) continues our stream from here.
        self.relay = None;
    }

    /// Handles one received datagram; decoded audio goes to `pcm_out`.
    ///
    /// Audio beyond `pcm_out.len()` samples is dropped (a 160-sample frame keeps
    /// 20 ms; [`MAX_PACKET_SAMPLES`] holds any ptime up to 60 ms); after a short
    /// packet the rest of `pcm_out` is silence. Ignored packets leave `pcm_out` untouched.
    pub fn handle_rtp(&mut self, packet: &[u8], pcm_out: &mut [i16]) -> Received {
        let Ok(packet) = RtpPacket::parse(packet) else {
            return Received::Ignored;
        };
        if Some(packet.payload_type) == self.telephone_event_pt {
            return match self.dtmf.handle_packet(&packet) {
                Some(digit) => Received::Dtmf(digit),
                None => Received::Ignored,
            };
        }
        if packet.payload_type == self.codec.payload_type() && !packet.payload.is_empty() {
            let n = self.codec.decode(packet.payload, pcm_out);
            if let Some(rest) = pcm_out.get_mut(n..) {
                rest.fill(0);
            }
            self.last_audio = (packet.ssrc, packet.seq, packet.timestamp);
            let keep = packet.payload.len().min(MAX_PACKET_SAMPLES);
            if let (Some(dst), Some(src)) = (
                self.last_payload.get_mut(..keep),
                packet.payload.get(..keep),
            ) {
                dst.copy_from_slice(src);
            }
            self.last_payload_len = keep;
            return Received::Audio(n);
        }
        // Comfort noise (PT 13) and anything not negotiated.
        Received::Ignored
    }

    /// Encodes one 20 ms frame into an RTP packet in `out`; returns its length
    /// (12 + 160 bytes), or 0 if `out` is too small.
    pub fn write_audio(&mut self, pcm: &[i16; FRAME_SAMPLES], out: &mut [u8]) -> usize {
        // Our own audio between relayed packets: the next relayed one maps anew.
        self.relay = None;
        let mut payload = [0u8; FRAME_SAMPLES];
        self.codec.encode(pcm, &mut payload);
        if out.len() < HEADER_LEN + FRAME_SAMPLES {
            return 0;
        }
        let marker = !self.sent_first;
        let n = self.sender.write(
            out,
            self.codec.payload_type(),
            marker,
            &payload,
            FRAME_SAMPLES as u32,
        );
        if n > 0 {
            self.sent_first = true;
        }
        n
    }

    /// Relays a packet another leg received (`from`: its SSRC, sequence number and
    /// timestamp) as one packet of ours with the same payload, keeping the sender's
    /// spacing: our sequence number and timestamp are the sender's plus a fixed offset,
    /// set when its stream starts (a new SSRC, or after audio of our own). A packet
    /// lost before us is a gap the receiving phone sees and conceals, not a jump in
    /// time; a late one goes out with its own, older numbers. Returns the length, or 0.
    pub fn write_relayed(
        &mut self,
        payload: &[u8],
        from: (u32, u16, u32),
        out: &mut [u8],
    ) -> usize {
        let (ssrc, seq, ts) = from;
        let map = match self.relay {
            Some(m) if m.ssrc == ssrc => m,
            _ => {
                let m = RelayMap {
                    ssrc,
                    seq: self.sender.seq.wrapping_sub(seq),
                    ts: self.sender.ts.wrapping_sub(ts),
                };
                self.relay = Some(m);
                m
            }
        };
        let next = (self.sender.seq, self.sender.ts);
        self.sender.seq = seq.wrapping_add(map.seq);
        self.sender.ts = ts.wrapping_add(map.ts);
        // Older than the next packet we would have sent: out of order on the way in.
        let late = (self.sender.seq.wrapping_sub(next.0) as i16) < 0;
        let n = self.write_encoded(payload, out);
        if late || n == 0 {
            (self.sender.seq, self.sender.ts) = next;
        }
        n
    }

    /// [`LegMedia::write_relayed`] for a transcoding relay: decoded audio of any length
    /// up to [`MAX_PACKET_SAMPLES`] encoded in this leg's codec (the packet length kept).
    pub fn write_pcm_relayed(
        &mut self,
        pcm: &[i16],
        from: (u32, u16, u32),
        out: &mut [u8],
    ) -> usize {
        let mut payload = [0u8; MAX_PACKET_SAMPLES];
        let n = self.codec.encode(pcm, &mut payload);
        self.write_relayed(payload.get(..n).unwrap_or_default(), from, out)
    }

    /// Sends a payload already encoded in this leg's codec (what
    /// [`LegMedia::last_payload`] of a leg with the same codec holds) as one packet
    /// of the same length: a 30 ms packet in is a 30 ms packet out, its timestamp
    /// advanced by what it holds. Returns the packet's length, or 0 if `out` is too
    /// small or the payload empty.
    pub fn write_encoded(&mut self, payload: &[u8], out: &mut [u8]) -> usize {
        let payload = payload.get(..MAX_PACKET_SAMPLES).unwrap_or(payload);
        if payload.is_empty() || out.len() < HEADER_LEN + payload.len() {
            return 0;
        }
        let marker = !self.sent_first;
        let n = self.sender.write(
            out,
            self.codec.payload_type(),
            marker,
            payload,
            payload.len() as u32,
        );
        if n > 0 {
            self.sent_first = true;
        }
        n
    }

    /// Writes a key press as RFC 4733 packets into `out` (a start, then the end three
    /// times, all at the stream's current timestamp: one 100 ms event); returns how many
    /// were written, each [`DIGIT_PACKET_LEN`] bytes. None when this leg negotiated no
    /// telephone-event or `digit` is not a DTMF character.
    pub fn write_digit(
        &mut self,
        digit: char,
        out: &mut [[u8; DIGIT_PACKET_LEN]; 4],
    ) -> Option<usize> {
        let pt = self.telephone_event_pt?;
        let event = crate::dtmf::digit_event(digit)?;
        // Volume 10 dBm0 below the maximum; 160 then 800 samples (20, then 100 ms).
        let reports: [[u8; 4]; 4] = [
            [event, 10, 0, 160],
            [event, 0x80 | 10, 0x03, 0x20],
            [event, 0x80 | 10, 0x03, 0x20],
            [event, 0x80 | 10, 0x03, 0x20],
        ];
        for (i, (report, packet)) in reports.iter().zip(out.iter_mut()).enumerate() {
            // The event keeps one timestamp; its packets advance the sequence only.
            self.sender.write(packet, pt, i == 0, report, 0);
        }
        // The audio after it starts where the event ended.
        self.sender.ts = self.sender.ts.wrapping_add(800);
        self.relay = None;
        Some(reports.len())
    }

    /// The last [`Received::Audio`] packet's payload, encoded as received.
    pub fn last_payload(&self) -> &[u8] {
        self.last_payload
            .get(..self.last_payload_len)
            .unwrap_or_default()
    }

    /// SSRC and RTP timestamp of the last [`Received::Audio`] packet: where a
    /// recording places it.
    pub fn last_audio(&self) -> (u32, u32) {
        (self.last_audio.0, self.last_audio.2)
    }

    /// SSRC, sequence number and timestamp of the last [`Received::Audio`] packet: what
    /// a relay of it to another leg keeps the spacing of.
    pub fn last_header(&self) -> (u32, u16, u32) {
        self.last_audio
    }

    /// The negotiated codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The sender state (SSRC, next seq and timestamp).
    pub fn sender(&self) -> &RtpSender {
        &self.sender
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digit_goes_out_as_one_rfc4733_event_the_other_side_reads_once() {
        let mut agent_side = LegMedia::new(Codec::Pcmu, Some(101), 0x1234, 10, 8000);
        let mut out = [[0u8; DIGIT_PACKET_LEN]; 4];
        assert_eq!(agent_side.write_digit('5', &mut out), Some(4));
        let mut patient_side = LegMedia::new(Codec::Pcmu, Some(101), 1, 1, 1);
        let mut pcm = [0i16; 160];
        let heard: Vec<Received> = out
            .iter()
            .map(|p| patient_side.handle_rtp(p, &mut pcm))
            .collect();
        assert_eq!(heard[0], Received::Dtmf('5'));
        assert!(
            heard[1..].iter().all(|r| *r == Received::Ignored),
            "{heard:?}"
        );
        let packets: Vec<RtpPacket<'_>> = out
            .iter()
            .filter_map(|p| RtpPacket::parse(p).ok())
            .collect();
        assert!(
            packets
                .iter()
                .all(|p| p.timestamp == 8000 && p.payload_type == 101)
        );
        assert_eq!(
            packets.iter().map(|p| p.seq).collect::<Vec<_>>(),
            [10, 11, 12, 13]
        );
        assert!(packets[0].marker && !packets[1].marker);
        // Audio after it goes on past the event.
        assert_eq!(agent_side.sender().ts, 8800);
        // No telephone-event negotiated, or not a digit: nothing.
        assert_eq!(
            LegMedia::new(Codec::Pcmu, None, 1, 1, 1).write_digit('5', &mut out),
            None
        );
        assert_eq!(agent_side.write_digit('x', &mut out), None);
    }
    use crate::tone::{ToneGenerator, dominant_frequency};

    fn packet(pt: u8, marker: bool, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut s = RtpSender::new(0xABCD, seq, ts);
        let mut buf = vec![0u8; 12 + payload.len()];
        let n = s.write(&mut buf, pt, marker, payload, 0);
        buf.truncate(n);
        buf
    }

    #[test]
    fn first_packet_has_marker_then_seq_and_ts_advance() {
        let mut leg = LegMedia::new(Codec::Pcmu, Some(101), 0x1234, 65535, 1000);
        let mut out = [0u8; 200];
        let pcm = [0i16; 160];
        let n = leg.write_audio(&pcm, &mut out);
        assert_eq!(n, 172);
        let p = RtpPacket::parse(&out[..n]).expect("valid");
        assert!(p.marker);
        assert_eq!(
            (p.payload_type, p.seq, p.timestamp, p.ssrc),
            (0, 65535, 1000, 0x1234)
        );
        assert!(p.payload.iter().all(|&b| b == 0xFF), "µ-law silence");
        let n = leg.write_audio(&pcm, &mut out);
        let p = RtpPacket::parse(&out[..n]).expect("valid");
        assert!(!p.marker);
        assert_eq!((p.seq, p.timestamp), (0, 1160));
        assert_eq!(
            leg.write_audio(&pcm, &mut [0u8; 100]),
            0,
            "too small buffer"
        );
        assert_eq!(leg.sender().seq, 1, "a refused write does not advance");
    }

    #[test]
    fn same_codec_relay_passes_the_payload_through_unchanged_at_its_own_length() {
        let mut rx = LegMedia::new(Codec::Pcmu, Some(101), 1, 0, 0);
        let mut tx = LegMedia::new(Codec::Pcmu, Some(101), 2, 500, 8000);
        let payload: Vec<u8> = (0..480u16).map(|i| (i as u8).wrapping_mul(7)).collect();
        let mut pcm = [0i16; MAX_PACKET_SAMPLES];
        let mut out = [0u8; 600];
        let mut ts = 8000;
        // ptime 10, 20, 30, 40, 60 ms: every sample goes on, each packet as long as it came.
        for (seq, ms) in [10usize, 20, 30, 40, 60].into_iter().enumerate() {
            let samples = ms * 8;
            let sent = &payload[..samples];
            assert_eq!(
                rx.handle_rtp(&packet(0, false, seq as u16, 1600, sent), &mut pcm),
                Received::Audio(samples)
            );
            assert_eq!(rx.last_payload(), sent, "kept as received");
            let n = tx.write_encoded(rx.last_payload(), &mut out);
            let p = RtpPacket::parse(&out[..n]).expect("valid");
            assert_eq!(p.payload, sent, "{ms} ms relayed byte for byte");
            assert_eq!(
                (p.ssrc, p.seq, p.timestamp),
                (2, 500 + seq as u16, ts),
                "with the sending leg's own header"
            );
            ts += samples as u32;
        }
        assert_eq!(
            tx.sender().ts,
            ts,
            "the timestamp ran on by every sample sent"
        );
        assert_eq!(
            tx.write_encoded(&payload[..160], &mut [0u8; 100]),
            0,
            "too small buffer"
        );
        assert_eq!(tx.write_encoded(&[], &mut out), 0, "nothing to send");
    }

    #[test]
    fn a_renegotiated_leg_takes_and_sends_the_new_codec_on_the_same_stream() {
        let mut leg = LegMedia::new(Codec::Pcmu, Some(101), 9, 100, 1000);
        let mut out = [0u8; 200];
        let pcm = [0i16; 160];
        leg.write_audio(&pcm, &mut out);
        leg.renegotiate(Codec::Pcma, Some(96));
        let n = leg.write_audio(&pcm, &mut out);
        let p = RtpPacket::parse(&out[..n]).expect("valid");
        assert_eq!(
            (p.payload_type, p.ssrc, p.seq, p.timestamp),
            (8, 9, 101, 1160)
        );
        assert!(!p.marker, "the stream goes on");
        let mut got = [0i16; 480];
        assert_eq!(
            leg.handle_rtp(&packet(0, false, 1, 0, &[0xFF; 160]), &mut got),
            Received::Ignored,
            "the old codec is no longer taken"
        );
        assert_eq!(
            leg.handle_rtp(&packet(8, false, 2, 160, &[0xD5; 160]), &mut got),
            Received::Audio(160)
        );
    }

    #[test]
    fn a_relay_keeps_the_senders_gaps_and_order_and_continues_after_our_own_audio() {
        let mut tx = LegMedia::new(Codec::Pcmu, None, 2, 500, 8000);
        let mut out = [0u8; 600];
        let payload = [0x55u8; 160];
        let mut sent = |tx: &mut LegMedia, from: (u32, u16, u32)| {
            let n = tx.write_relayed(&payload, from, &mut out);
            let p = RtpPacket::parse(&out[..n]).expect("valid");
            (p.seq, p.timestamp)
        };
        // The sender's stream starts where ours is.
        assert_eq!(sent(&mut tx, (7, 1000, 160_000)), (500, 8000));
        // Two packets lost before us: the receiver sees the same gap, in numbers and time.
        assert_eq!(sent(&mut tx, (7, 1003, 160_480)), (503, 8480));
        // A late one goes out with its own, older numbers; the stream goes on after it.
        assert_eq!(sent(&mut tx, (7, 1002, 160_320)), (502, 8320));
        assert_eq!(sent(&mut tx, (7, 1004, 160_640)), (504, 8640));
        assert_eq!((tx.sender().seq, tx.sender().ts), (505, 8800));
        // Our own audio (hold music), then the sender again: mapped anew, no jump back.
        tx.write_audio(&[0; 160], &mut [0u8; 200]);
        assert_eq!(sent(&mut tx, (7, 1500, 240_000)), (506, 8960));
        // A new SSRC (the phone restarted its stream) maps anew too.
        assert_eq!(sent(&mut tx, (9, 3, 30)), (507, 9120));
    }

    #[test]
    fn a_transcoding_relay_keeps_the_packet_length_too() {
        let mut rx = LegMedia::new(Codec::Pcmu, None, 1, 0, 0);
        let mut tx = LegMedia::new(Codec::Pcma, None, 2, 0, 0);
        let mut pcm = [0i16; MAX_PACKET_SAMPLES];
        let Received::Audio(n) = rx.handle_rtp(&packet(0, false, 1, 0, &[0x80; 240]), &mut pcm)
        else {
            panic!("audio expected");
        };
        let mut out = [0u8; 600];
        let len = tx.write_pcm_relayed(&pcm[..n], rx.last_header(), &mut out);
        let p = RtpPacket::parse(&out[..len]).expect("valid");
        assert_eq!(
            (p.payload_type, p.payload.len()),
            (8, 240),
            "30 ms of A-law"
        );
        assert_eq!(tx.sender().ts, 240);
    }

    #[test]
    fn audio_round_trips_between_two_legs() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut a = LegMedia::new(codec, Some(101), 1, 0, 0);
            let mut b = LegMedia::new(codec, Some(101), 2, 0, 0);
            let mut tone = ToneGenerator::new(440.0, 8000);
            let mut got = Vec::new();
            for _ in 0..10 {
                let mut frame = [0i16; 160];
                tone.fill(&mut frame);
                let mut wire = [0u8; 172];
                let n = a.write_audio(&frame, &mut wire);
                let mut pcm = [0i16; 160];
                assert_eq!(b.handle_rtp(&wire[..n], &mut pcm), Received::Audio(160));
                got.extend_from_slice(&pcm);
            }
            assert_eq!(
                dominant_frequency(&got, &[350.0, 440.0, 480.0, 620.0], 8000),
                Some(440.0)
            );
        }
    }

    #[test]
    fn dtmf_press_gives_one_digit() {
        let mut leg = LegMedia::new(Codec::Pcma, Some(101), 1, 0, 0);
        let mut pcm = [0i16; 160];
        let mut digits = Vec::new();
        let ts = 8000;
        let mut events = vec![(true, [7u8, 0x0A, 0, 160])];
        events.extend([(false, [7u8, 0x0A, 1, 64]), (false, [7, 0x0A, 1, 224])]);
        events.extend([(false, [7u8, 0x8A, 3, 32]); 3]);
        for (i, (marker, payload)) in events.iter().enumerate() {
            match leg.handle_rtp(&packet(101, *marker, i as u16, ts, payload), &mut pcm) {
                Received::Dtmf(d) => digits.push(d),
                Received::Ignored => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(digits, vec!['7']);
    }

    #[test]
    fn other_payloads_and_garbage_are_ignored() {
        let mut leg = LegMedia::new(Codec::Pcmu, None, 1, 0, 0);
        let mut pcm = [42i16; 160];
        assert_eq!(
            leg.handle_rtp(&packet(13, false, 1, 0, &[40]), &mut pcm),
            Received::Ignored
        );
        assert_eq!(
            leg.handle_rtp(&packet(8, false, 1, 0, &[0xD5; 160]), &mut pcm),
            Received::Ignored
        );
        assert_eq!(
            leg.handle_rtp(&packet(101, false, 1, 0, &[1, 0x80, 0, 160]), &mut pcm),
            Received::Ignored,
            "no telephone-event negotiated"
        );
        assert_eq!(leg.handle_rtp(&[1, 2, 3], &mut pcm), Received::Ignored);
        assert_eq!(
            leg.handle_rtp(&packet(0, false, 1, 0, &[]), &mut pcm),
            Received::Ignored
        );
        assert!(
            pcm.iter().all(|&s| s == 42),
            "ignored packets do not touch the frame"
        );
    }

    #[test]
    fn long_and_short_audio_payloads() {
        let mut leg = LegMedia::new(Codec::Pcmu, None, 1, 0, 0);
        let mut pcm = [0i16; 160];
        assert_eq!(
            leg.handle_rtp(&packet(0, false, 1, 0, &[0x80; 240]), &mut pcm),
            Received::Audio(160)
        );
        assert_eq!(
            leg.handle_rtp(&packet(0, false, 2, 0, &[0x00; 80]), &mut pcm),
            Received::Audio(80)
        );
        assert_eq!(pcm[79], -32124);
        assert!(
            pcm[80..].iter().all(|&s| s == 0),
            "rest of a short frame is silence"
        );
    }
}
