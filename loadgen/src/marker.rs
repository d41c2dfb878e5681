//! The sequence marker carried inside each generated G.711 frame.
//!
//! The server decodes every packet to PCM and re-encodes it for the other leg with its
//! own SSRC, sequence numbers and timestamps, so RTP headers tell us nothing end to end.
//! Instead the first [`MARKER_LEN`] payload bytes carry a marker, one 4-bit nibble per
//! byte, as µ-law codes that survive a decode → encode round trip exactly:
//! even positions `0x40 | n`, odd positions `0xC0 | n` (never `0x7F`/`0xFF`, the two
//! codes for zero that collapse into one). The rest of the frame is a tone.
//!
//! Layout (nibbles): magic (4), call index and direction (8), sequence (8),
//! send time in µs since the run started (12), checksum (2).

/// Payload bytes the marker occupies at the start of a 160-byte frame.
pub const MARKER_LEN: usize = 34;

const MAGIC: u16 = 0xB5A7;

/// Which way a marked packet travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the patient, to be received by the agent.
    PatientToAgent,
    /// Sent by the agent, to be received by the patient.
    AgentToPatient,
}

impl Direction {
    /// 0 or 1, for indexing per-direction tables.
    pub fn index(self) -> usize {
        match self {
            Direction::PatientToAgent => 0,
            Direction::AgentToPatient => 1,
        }
    }
}

/// What one marked frame says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The generator's call index (fits in 31 bits).
    pub call: u32,
    /// Which leg sent it.
    pub direction: Direction,
    /// Per call and direction, starting at 0.
    pub seq: u32,
    /// Send time, µs since the run's epoch (48 bits, ~8.9 years).
    pub sent_us: u64,
}

fn nibble_byte(pos: usize, n: u8) -> u8 {
    if pos.is_multiple_of(2) {
        0x40 | (n & 0x0F)
    } else {
        0xC0 | (n & 0x0F)
    }
}

fn push_bits(out: &mut [u8], pos: &mut usize, value: u64, nibbles: usize, sum: &mut u8) {
    for i in (0..nibbles).rev() {
        let n = ((value >> (4 * i)) & 0x0F) as u8;
        *sum = sum.wrapping_mul(31).wrapping_add(n);
        if let Some(b) = out.get_mut(*pos) {
            *b = nibble_byte(*pos, n);
        }
        *pos += 1;
    }
}

/// Writes the marker into `out[..MARKER_LEN]` (does nothing if `out` is shorter).
pub fn encode(marker: &Marker, out: &mut [u8]) {
    if out.len() < MARKER_LEN {
        return;
    }
    let dir = match marker.direction {
        Direction::PatientToAgent => 0u64,
        Direction::AgentToPatient => 1,
    };
    let mut pos = 0;
    let mut sum = 0u8;
    push_bits(out, &mut pos, u64::from(MAGIC), 4, &mut sum);
    push_bits(
        out,
        &mut pos,
        (u64::from(marker.call & 0x7FFF_FFFF) << 1) | dir,
        8,
        &mut sum,
    );
    push_bits(out, &mut pos, u64::from(marker.seq), 8, &mut sum);
    push_bits(
        out,
        &mut pos,
        marker.sent_us & 0xFFFF_FFFF_FFFF,
        12,
        &mut sum,
    );
    let check = u64::from(sum);
    let mut ignored = 0u8;
    push_bits(out, &mut pos, check, 2, &mut ignored);
}

fn read_bits(payload: &[u8], pos: &mut usize, nibbles: usize, sum: &mut u8) -> Option<u64> {
    let mut v = 0u64;
    for _ in 0..nibbles {
        let b = *payload.get(*pos)?;
        let expected_high = if (*pos).is_multiple_of(2) { 0x40 } else { 0xC0 };
        if b & 0xF0 != expected_high {
            return None;
        }
        let n = b & 0x0F;
        *sum = sum.wrapping_mul(31).wrapping_add(n);
        v = (v << 4) | u64::from(n);
        *pos += 1;
    }
    Some(v)
}

/// Reads a marker from the start of a payload; `None` for anything else (prompts, music).
pub fn decode(payload: &[u8]) -> Option<Marker> {
    let mut pos = 0;
    let mut sum = 0u8;
    if read_bits(payload, &mut pos, 4, &mut sum)? != u64::from(MAGIC) {
        return None;
    }
    let call_dir = read_bits(payload, &mut pos, 8, &mut sum)?;
    let seq = read_bits(payload, &mut pos, 8, &mut sum)?;
    let sent_us = read_bits(payload, &mut pos, 12, &mut sum)?;
    let mut ignored = 0u8;
    let check = read_bits(payload, &mut pos, 2, &mut ignored)?;
    if check != u64::from(sum) {
        return None;
    }
    Some(Marker {
        call: (call_dir >> 1) as u32,
        direction: if call_dir & 1 == 0 {
            Direction::PatientToAgent
        } else {
            Direction::AgentToPatient
        },
        seq: seq as u32,
        sent_us,
    })
}

/// One 20 ms µ-law frame of a sine at `freq` Hz (pick a frequency with a whole number of
/// cycles in 20 ms, e.g. 400 or 1000 Hz, so consecutive frames join without a click).
pub fn tone_frame(freq: f64, amplitude: i16) -> [u8; media::FRAME_SAMPLES] {
    let mut pcm = [0i16; media::FRAME_SAMPLES];
    media::tone::ToneGenerator::new(freq, amplitude).fill(&mut pcm);
    let mut out = [0u8; media::FRAME_SAMPLES];
    media::codec::Codec::Pcmu.encode(&pcm, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::g711::{ulaw_decode, ulaw_encode};

    fn through_server(frame: &[u8]) -> Vec<u8> {
        // What the bridge does: decode to PCM, re-encode with the same codec.
        frame.iter().map(|&b| ulaw_encode(ulaw_decode(b))).collect()
    }

    #[test]
    fn ulaw_round_trip_is_exact_except_the_two_zero_codes() {
        let broken: Vec<u8> = (0..=255u8)
            .filter(|&b| ulaw_encode(ulaw_decode(b)) != b)
            .collect();
        // If this changes, the nibble alphabet above must be re-checked.
        assert_eq!(broken, vec![0x7F]);
        for n in 0..16u8 {
            for pos in 0..2 {
                let b = nibble_byte(pos, n);
                assert_eq!(ulaw_encode(ulaw_decode(b)), b, "code {b:#04x}");
            }
        }
    }

    #[test]
    fn marker_survives_ulaw_transcoding() {
        let mut frame = tone_frame(400.0, 8000);
        let m = Marker {
            call: 123_456,
            direction: Direction::AgentToPatient,
            seq: 0xDEAD_BEEF,
            sent_us: 0x0000_1234_5678_9ABC,
        };
        encode(&m, &mut frame);
        let after = through_server(&frame);
        assert_eq!(decode(&after), Some(m));
        let m2 = Marker {
            direction: Direction::PatientToAgent,
            call: 0,
            seq: 0,
            sent_us: 0,
        };
        encode(&m2, &mut frame);
        assert_eq!(decode(&through_server(&frame)), Some(m2));
    }

    #[test]
    fn corrupted_or_foreign_payloads_are_rejected() {
        let mut frame = [0xFFu8; 160];
        assert_eq!(decode(&frame), None, "silence");
        let m = Marker {
            call: 7,
            direction: Direction::PatientToAgent,
            seq: 42,
            sent_us: 1_000_000,
        };
        encode(&m, &mut frame);
        assert!(decode(&frame).is_some());
        for i in 4..MARKER_LEN {
            let mut bad = frame;
            bad[i] ^= 0x01; // one nibble off by one
            assert_eq!(
                decode(&bad),
                None,
                "flipped nibble {i} must fail the checksum"
            );
        }
        assert_eq!(decode(&frame[..MARKER_LEN - 1]), None, "short");
        assert_eq!(decode(&tone_frame(1000.0, 8000)), None, "plain tone");
    }

    #[test]
    fn tone_frame_is_never_digital_silence() {
        let frame = tone_frame(400.0, 8000);
        let mut pcm = [0i16; 160];
        media::codec::Codec::Pcmu.decode(&frame, &mut pcm);
        assert!(pcm.iter().filter(|&&s| s != 0).count() > 100);
    }
}
