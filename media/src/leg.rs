//! Per-leg RTP logic: incoming packets to audio or DTMF, outgoing frames to packets.
//!
//! Sans-IO and allocation-free: the driver hands in datagrams and frame buffers.

use crate::FRAME_SAMPLES;
use crate::codec::Codec;
use crate::dtmf::DtmfReceiver;
use crate::rtp::{HEADER_LEN, RtpPacket, RtpSender};

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

/// The media state of one call leg: negotiated codec, DTMF receiver and RTP sender.
#[derive(Debug, Clone)]
pub struct LegMedia {
    codec: Codec,
    telephone_event_pt: Option<u8>,
    sender: RtpSender,
    dtmf: DtmfReceiver,
    sent_first: bool,
    /// SSRC and RTP timestamp of the last audio packet received.
    last_audio: (u32, u32),
    /// The first 20 ms of the last audio packet's payload, as received (for a
    /// relay to a leg with the same codec: no decode-encode round trip).
    last_payload: [u8; FRAME_SAMPLES],
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
            last_audio: (0, 0),
            last_payload: [0; FRAME_SAMPLES],
            last_payload_len: 0,
        }
    }

    /// Handles one received datagram; decoded audio goes to `pcm_out`.
    ///
    /// Audio beyond `pcm_out.len()` samples is dropped (a 160-sample frame keeps
    /// 20 ms; 480 holds any ptime up to 60 ms); after a short packet the rest of
    /// `pcm_out` is silence. Ignored packets leave `pcm_out` untouched.
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
            self.last_audio = (packet.ssrc, packet.timestamp);
            let keep = packet.payload.len().min(FRAME_SAMPLES);
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

    /// Sends one 20 ms frame already encoded in this leg's codec (what
    /// [`LegMedia::last_payload`] of a leg with the same codec holds): a short
    /// payload is padded with silence to 20 ms. Returns the packet's length, or 0
    /// if `out` is too small.
    pub fn write_encoded(&mut self, payload: &[u8], out: &mut [u8]) -> usize {
        if out.len() < HEADER_LEN + FRAME_SAMPLES {
            return 0;
        }
        let mut frame = [0u8; FRAME_SAMPLES];
        let keep = payload.len().min(FRAME_SAMPLES);
        if let (Some(dst), Some(src)) = (frame.get_mut(..keep), payload.get(..keep)) {
            dst.copy_from_slice(src);
        }
        if keep < FRAME_SAMPLES {
            let silence = [0i16; FRAME_SAMPLES];
            if let (Some(rest), Some(pcm)) = (frame.get_mut(keep..), silence.get(keep..)) {
                self.codec.encode(pcm, rest);
            }
        }
        let marker = !self.sent_first;
        let n = self.sender.write(
            out,
            self.codec.payload_type(),
            marker,
            &frame,
            FRAME_SAMPLES as u32,
        );
        if n > 0 {
            self.sent_first = true;
        }
        n
    }

    /// The first 20 ms of the last [`Received::Audio`] packet's payload, encoded as received.
    pub fn last_payload(&self) -> &[u8] {
        self.last_payload
            .get(..self.last_payload_len)
            .unwrap_or_default()
    }

    /// SSRC and RTP timestamp of the last [`Received::Audio`] packet: where a
    /// recording places it.
    pub fn last_audio(&self) -> (u32, u32) {
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
    fn same_codec_relay_passes_the_payload_through_unchanged_and_pads_a_short_one() {
        let mut rx = LegMedia::new(Codec::Pcmu, Some(101), 1, 0, 0);
        let mut tx = LegMedia::new(Codec::Pcmu, Some(101), 2, 500, 8000);
        let payload: Vec<u8> = (0..160u8).map(|i| i.wrapping_mul(7)).collect();
        let mut pcm = [0i16; 480];
        assert_eq!(
            rx.handle_rtp(&packet(0, false, 9, 1600, &payload), &mut pcm),
            Received::Audio(160)
        );
        assert_eq!(rx.last_payload(), &payload[..], "kept as received");
        let mut out = [0u8; 200];
        let n = tx.write_encoded(rx.last_payload(), &mut out);
        let p = RtpPacket::parse(&out[..n]).expect("valid");
        assert_eq!(p.payload, &payload[..], "relayed byte for byte");
        assert_eq!(
            (p.ssrc, p.seq, p.timestamp),
            (2, 500, 8000),
            "with the sending leg's own header"
        );
        // 10 ms (80 bytes) in: 20 ms out, the rest µ-law silence.
        assert_eq!(
            rx.handle_rtp(&packet(0, false, 10, 1760, &payload[..80]), &mut pcm),
            Received::Audio(80)
        );
        let n = tx.write_encoded(rx.last_payload(), &mut out);
        let p = RtpPacket::parse(&out[..n]).expect("valid");
        assert_eq!(&p.payload[..80], &payload[..80]);
        assert!(
            p.payload[80..].iter().all(|&b| b == 0xFF),
            "padded with silence"
        );
        assert_eq!(p.timestamp, 8160, "20 ms on");
        assert_eq!(
            tx.write_encoded(&payload, &mut [0u8; 100]),
            0,
            "too small buffer"
        );
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
