//! The two negotiable audio codecs and slice encode/decode without allocation.

use crate::g711;

/// A G.711 codec at 8 kHz, as negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// µ-law, static payload type 0.
    Pcmu,
    /// A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551): 0 for PCMU, 8 for PCMA.
    pub const fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The codec with this static payload type, if it is one of ours.
    pub const fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The SDP encoding name ("PCMU" / "PCMA").
    pub const fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Encodes `min(pcm.len(), out.len())` samples into `out`; returns how many were written.
    pub fn encode(self, pcm: &[i16], out: &mut [u8]) -> usize {
        let n = pcm.len().min(out.len());
        let enc: fn(i16) -> u8 = match self {
            Codec::Pcmu => g711::ulaw_encode,
            Codec::Pcma => g711::alaw_encode,
        };
        for (o, &s) in out.iter_mut().zip(pcm) {
            *o = enc(s);
        }
        n
    }

    /// Decodes `min(data.len(), out.len())` codes into `out`; returns how many were written.
    pub fn decode(self, data: &[u8], out: &mut [i16]) -> usize {
        let n = data.len().min(out.len());
        let dec: fn(u8) -> i16 = match self {
            Codec::Pcmu => g711::ulaw_decode,
            Codec::Pcma => g711::alaw_decode,
        };
        for (o, &c) in out.iter_mut().zip(data) {
            *o = dec(c);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_types_are_the_static_ones() {
        assert_eq!(Codec::Pcmu.payload_type(), 0);
        assert_eq!(Codec::Pcma.payload_type(), 8);
        assert_eq!(Codec::from_payload_type(0), Some(Codec::Pcmu));
        assert_eq!(Codec::from_payload_type(8), Some(Codec::Pcma));
        assert_eq!(Codec::from_payload_type(18), None);
    }

    #[test]
    fn encode_then_decode_stays_close_and_respects_lengths() {
        let pcm: Vec<i16> = (0..160)
            .map(|i| ((i * 397) % 20000 - 10000) as i16)
            .collect();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut bytes = [0u8; 160];
            assert_eq!(codec.encode(&pcm, &mut bytes), 160);
            let mut back = [0i16; 160];
            assert_eq!(codec.decode(&bytes, &mut back), 160);
            for (a, b) in pcm.iter().zip(back.iter()) {
                assert!(
                    (i32::from(*a) - i32::from(*b)).abs() <= 700,
                    "{codec:?} {a} vs {b}"
                );
            }
            // Short output buffer: only what fits.
            let mut small = [0u8; 10];
            assert_eq!(codec.encode(&pcm, &mut small), 10);
            let mut small_pcm = [0i16; 4];
            assert_eq!(codec.decode(&bytes, &mut small_pcm), 4);
        }
    }

    #[test]
    fn silence_encodes_to_the_codec_silence_byte() {
        let mut out = [0u8; 3];
        Codec::Pcmu.encode(&[0, 0, 0], &mut out);
        assert_eq!(out, [0xFF; 3]);
        Codec::Pcma.encode(&[0, 0, 0], &mut out);
        assert_eq!(out, [0xD5; 3]);
    }
}
