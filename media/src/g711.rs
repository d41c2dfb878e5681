//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA) companding of 16-bit linear samples.
//!
//! Decoding uses 256-entry tables built at compile time; encoding follows the
//! segment search of the ITU reference (14-bit µ-law, 13-bit A-law magnitudes),
//! saturating out-of-range inputs to the largest code.

const ULAW_BIAS: i32 = 0x21; // 33, in 14-bit units
const ULAW_CLIP: i32 = 8159; // largest 14-bit magnitude µ-law represents

/// Decoded value of every µ-law code, indexed by code.
static ULAW_TABLE: [i16; 256] = build_ulaw_table();
/// Decoded value of every A-law code, indexed by code.
static ALAW_TABLE: [i16; 256] = build_alaw_table();

const fn ulaw_decode_slow(code: u8) -> i16 {
    let u = !code;
    let mantissa = (u & 0x0F) as i32;
    let segment = ((u & 0x70) >> 4) as i32;
    // 14-bit magnitude: ((2q + 33) << s) - 33, scaled to 16 bits.
    let magnitude = (((2 * mantissa + ULAW_BIAS) << segment) - ULAW_BIAS) << 2;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode_slow(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mantissa = (a & 0x0F) as i32;
    let segment = ((a & 0x70) >> 4) as i32;
    // 13-bit magnitude, scaled to 16 bits.
    let magnitude = if segment == 0 {
        (2 * mantissa + 1) << 3
    } else {
        ((2 * mantissa + 33) << (segment - 1)) << 3
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_ulaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_decode_slow(i as u8);
        i += 1;
    }
    table
}

const fn build_alaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_decode_slow(i as u8);
        i += 1;
    }
    table
}

/// Encodes one linear sample as µ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 2; // 14-bit
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    let biased = pcm.min(ULAW_CLIP) + ULAW_BIAS; // 33..=8192
    // Segment s holds biased values in [64 << (s-1), 64 << s); segment 0 is below 64.
    let bits = 32 - biased.leading_zeros() as i32; // 6..=14
    let segment = bits - 6;
    if segment > 7 {
        return 0x7F ^ mask; // only the clip value 8192 lands here
    }
    let mantissa = (biased >> (segment + 1)) & 0x0F;
    ((segment << 4) as u8 | mantissa as u8) ^ mask
}

/// Decodes one µ-law code to a linear sample.
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TABLE[usize::from(code)]
}

/// Encodes one linear sample as A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let mut pcm = i32::from(sample) >> 3; // 13-bit
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    // pcm is 0..=4095 here, so it always fits segment 7 at most.
    let bits = 32 - pcm.leading_zeros() as i32; // 0..=12
    let segment = (bits - 5).clamp(0, 7);
    let mantissa = if segment < 2 {
        (pcm >> 1) & 0x0F
    } else {
        (pcm >> segment) & 0x0F
    };
    ((segment << 4) as u8 | mantissa as u8) ^ mask
}

/// Decodes one A-law code to a linear sample.
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TABLE[usize::from(code)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// µ-law per G.711 Table 2a: code bits are inverted on the line; the sign bit set means
    /// positive; decision value at the middle of each interval: (2q+33)*2^s - 33 (14-bit).
    fn ulaw_spec(code: u8) -> i16 {
        let inv = !code;
        let positive = code & 0x80 != 0;
        let s = u32::from((inv >> 4) & 0x07);
        let q = i32::from(inv & 0x0F);
        let value14 = (2 * q + 33) * 2i32.pow(s) - 33;
        let v = value14 * 4;
        (if positive { v } else { -v }) as i16
    }

    /// A-law per G.711 Table 1a: even bits inverted on the line (xor 0x55); sign bit set means
    /// positive; segment 0 value 2q+1, segment s>0 value (2q+33)*2^(s-1) (13-bit).
    fn alaw_spec(code: u8) -> i16 {
        let e = code ^ 0x55;
        let positive = e & 0x80 != 0;
        let s = u32::from((e >> 4) & 0x07);
        let q = i32::from(e & 0x0F);
        let value13 = if s == 0 {
            2 * q + 1
        } else {
            (2 * q + 33) * 2i32.pow(s - 1)
        };
        let v = value13 * 8;
        (if positive { v } else { -v }) as i16
    }

    #[test]
    fn ulaw_decodes_every_code_to_the_itu_value() {
        for c in 0..=255u8 {
            assert_eq!(ulaw_decode(c), ulaw_spec(c), "code {c:#04x}");
        }
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
    }

    #[test]
    fn alaw_decodes_every_code_to_the_itu_value() {
        for c in 0..=255u8 {
            assert_eq!(alaw_decode(c), alaw_spec(c), "code {c:#04x}");
        }
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
    }

    #[test]
    fn ulaw_round_trips_every_code() {
        for c in 0..=255u8 {
            let expected = if c == 0x7F { 0xFF } else { c };
            assert_eq!(ulaw_encode(ulaw_decode(c)), expected, "code {c:#04x}");
        }
    }

    #[test]
    fn alaw_round_trips_every_code() {
        for c in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(c)), c, "code {c:#04x}");
        }
    }

    #[test]
    fn extremes_saturate_to_the_largest_codes() {
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
    }

    #[test]
    fn encoding_is_monotonic_and_error_is_bounded() {
        // Every 16-bit input decodes back to within half a quantisation step of its segment.
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for x in i16::MIN..=i16::MAX {
            let du = ulaw_decode(ulaw_encode(x));
            let da = alaw_decode(alaw_encode(x));
            assert!(du >= prev_u && da >= prev_a, "not monotonic at {x}");
            prev_u = du;
            prev_a = da;
            let err_u = (i32::from(du) - i32::from(x)).abs();
            let err_a = (i32::from(da) - i32::from(x)).abs();
            // Half a step is at most |x|/16 (plus the smallest step); above the top code clips.
            let clip = if i32::from(x).abs() > 32000 { 700 } else { 0 };
            let limit_u = i32::from(x).abs() / 16 + 8 + clip;
            let limit_a = i32::from(x).abs() / 16 + 16 + clip;
            assert!(err_u <= limit_u, "µ-law error {err_u} at {x}");
            assert!(err_a <= limit_a, "A-law error {err_a} at {x}");
        }
    }
}
