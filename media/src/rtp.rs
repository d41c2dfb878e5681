//! RFC 3550 RTP packets: a bounds-checked borrowing parser and a header writer.

use crate::error::Error;

/// Length of the fixed RTP header.
pub const HEADER_LEN: usize = 12;

/// A header extension (RFC 3550 §5.3.1), borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    /// The profile-defined 16-bit identifier.
    pub profile: u16,
    /// The extension data (a multiple of 4 bytes).
    pub data: &'a [u8],
}

/// A parsed RTP packet borrowing its payload from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Marker bit (start of a talkspurt for audio, start of an event for RFC 4733).
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Raw contributing sources, 4 bytes each (see [`RtpPacket::csrcs`]).
    csrc_bytes: &'a [u8],
    /// Header extension, when the X bit is set.
    pub extension: Option<RtpExtension<'a>>,
    /// Payload with any padding removed.
    pub payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Result<u16, Error> {
    match b.get(at..at + 2) {
        Some(&[x, y]) => Ok(u16::from_be_bytes([x, y])),
        _ => Err(Error::RtpTooShort),
    }
}

fn be32(b: &[u8], at: usize) -> Result<u32, Error> {
    match b.get(at..at + 4) {
        Some(&[a, b2, c, d]) => Ok(u32::from_be_bytes([a, b2, c, d])),
        _ => Err(Error::RtpTooShort),
    }
}

impl<'a> RtpPacket<'a> {
    /// Parses an RTP packet; short or malformed input gives `Err`, never a panic.
    pub fn parse(buf: &'a [u8]) -> Result<RtpPacket<'a>, Error> {
        let &[b0, b1, ..] = buf else {
            return Err(Error::RtpTooShort);
        };
        if buf.len() < HEADER_LEN {
            return Err(Error::RtpTooShort);
        }
        let version = b0 >> 6;
        if version != 2 {
            return Err(Error::RtpVersion(version));
        }
        let padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_count = usize::from(b0 & 0x0F);
        let seq = be16(buf, 2)?;
        let timestamp = be32(buf, 4)?;
        let ssrc = be32(buf, 8)?;

        let mut pos = HEADER_LEN + 4 * csrc_count;
        let csrc_bytes = buf.get(HEADER_LEN..pos).ok_or(Error::RtpTooShort)?;

        let extension = if has_extension {
            let profile = be16(buf, pos)?;
            let words = usize::from(be16(buf, pos + 2)?);
            let start = pos + 4;
            let end = start + 4 * words;
            let data = buf.get(start..end).ok_or(Error::RtpTooShort)?;
            pos = end;
            Some(RtpExtension { profile, data })
        } else {
            None
        };

        let mut payload = buf.get(pos..).ok_or(Error::RtpTooShort)?;
        if padding {
            let &count = payload.last().ok_or(Error::RtpPadding)?;
            let count = usize::from(count);
            if count == 0 || count > payload.len() {
                return Err(Error::RtpPadding);
            }
            payload = payload
                .get(..payload.len() - count)
                .ok_or(Error::RtpPadding)?;
        }

        Ok(RtpPacket {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7F,
            seq,
            timestamp,
            ssrc,
            csrc_bytes,
            extension,
            payload,
        })
    }

    /// Number of contributing sources.
    pub fn csrc_count(&self) -> usize {
        self.csrc_bytes.len() / 4
    }

    /// The contributing sources in order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrc_bytes.chunks_exact(4).filter_map(|c| match *c {
            [a, b, c, d] => Some(u32::from_be_bytes([a, b, c, d])),
            _ => None,
        })
    }
}

/// Sending state of one RTP stream: writes headers and advances seq/timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpSender {
    /// Our synchronisation source.
    pub ssrc: u32,
    /// Sequence number of the next packet.
    pub seq: u16,
    /// Timestamp of the next packet.
    pub ts: u32,
}

impl RtpSender {
    /// A sender starting at the given SSRC, sequence number and timestamp (random per RFC 3550).
    pub fn new(ssrc: u32, seq: u16, ts: u32) -> Self {
        RtpSender { ssrc, seq, ts }
    }

    /// Writes one packet (header + `payload`) into `buf` and returns its length, then
    /// advances seq by 1 and ts by `ts_advance`.
    ///
    /// Returns 0 and changes nothing if `buf` is too small.
    pub fn write(
        &mut self,
        buf: &mut [u8],
        pt: u8,
        marker: bool,
        payload: &[u8],
        ts_advance: u32,
    ) -> usize {
        let len = HEADER_LEN + payload.len();
        let Some(out) = buf.get_mut(..len) else {
            return 0;
        };
        let (header, body) = out.split_at_mut(HEADER_LEN);
        header[0] = 0x80; // V=2, no padding, no extension, no CSRC
        header[1] = (pt & 0x7F) | if marker { 0x80 } else { 0 };
        header[2..4].copy_from_slice(&self.seq.to_be_bytes());
        header[4..8].copy_from_slice(&self.ts.to_be_bytes());
        header[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        body.copy_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(ts_advance);
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_packet() -> Vec<u8> {
        // V=2, P=1, X=1, CC=2; M=1, PT=8.
        let mut p = vec![
            0xB2, 0x88, 0x12, 0x34, 0, 0, 0x01, 0x40, 0xDE, 0xAD, 0xBE, 0xEF,
        ];
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs 1, 2
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // extension, 1 word
        p.extend_from_slice(&[1, 2, 3, 4, 5]); // payload
        p.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        p
    }

    #[test]
    fn parses_every_header_field() {
        let bytes = full_packet();
        let p = RtpPacket::parse(&bytes).expect("valid packet");
        assert!(p.marker);
        assert_eq!(p.payload_type, 8);
        assert_eq!(p.seq, 0x1234);
        assert_eq!(p.timestamp, 320);
        assert_eq!(p.ssrc, 0xDEAD_BEEF);
        assert_eq!(p.csrc_count(), 2);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(
            p.extension,
            Some(RtpExtension {
                profile: 0xBEDE,
                data: &[9, 9, 9, 9]
            })
        );
        assert_eq!(p.payload, &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn rejects_bad_version_short_and_bad_padding() {
        let mut bytes = full_packet();
        assert!(matches!(
            RtpPacket::parse(&bytes[..11]),
            Err(Error::RtpTooShort)
        ));
        assert!(matches!(RtpPacket::parse(&[]), Err(Error::RtpTooShort)));
        bytes[0] = 0x40 | (bytes[0] & 0x3F);
        assert!(matches!(
            RtpPacket::parse(&bytes),
            Err(Error::RtpVersion(1))
        ));
        let mut bytes = full_packet();
        let last = bytes.len() - 1;
        bytes[last] = 0;
        assert!(matches!(RtpPacket::parse(&bytes), Err(Error::RtpPadding)));
        bytes[last] = 200;
        assert!(matches!(RtpPacket::parse(&bytes), Err(Error::RtpPadding)));
        // CSRC count claims more than is there.
        let mut bytes = full_packet();
        bytes[0] = 0x8F;
        assert!(matches!(RtpPacket::parse(&bytes), Err(Error::RtpTooShort)));
    }

    #[test]
    fn truncations_and_mutations_never_panic() {
        let mut parsed = 0usize;
        let bases = [full_packet(), {
            let mut s = RtpSender::new(7, 1, 2);
            let mut b = [0u8; 64];
            let n = s.write(&mut b, 0, false, &[0xFF; 20], 160);
            b[..n].to_vec()
        }];
        for base in &bases {
            for len in 0..=base.len() {
                if RtpPacket::parse(&base[..len]).is_ok() {
                    parsed += 1;
                }
            }
            for i in 0..base.len() {
                for v in 0..=255u8 {
                    let mut m = base.clone();
                    m[i] = v;
                    if let Ok(p) = RtpPacket::parse(&m) {
                        parsed += 1;
                        assert!(p.payload.len() <= m.len());
                        assert!(p.csrc_count() <= 15);
                    }
                }
            }
        }
        assert!(
            parsed > 1000,
            "mutations should mostly still parse: {parsed}"
        );
    }

    #[test]
    fn sender_writes_parseable_headers_and_advances() {
        let mut s = RtpSender::new(0x0102_0304, u16::MAX, u32::MAX - 100);
        let mut buf = [0u8; 200];
        let n = s.write(&mut buf, 8, true, &[7; 160], 160);
        assert_eq!(n, 172);
        let p = RtpPacket::parse(&buf[..n]).expect("own packet parses");
        assert!(p.marker);
        assert_eq!(
            (p.payload_type, p.seq, p.timestamp, p.ssrc),
            (8, u16::MAX, u32::MAX - 100, 0x0102_0304)
        );
        assert_eq!(p.payload, &[7; 160]);
        // Wrap-around.
        assert_eq!(s.seq, 0);
        assert_eq!(s.ts, 59);
        let n = s.write(&mut buf, 0, false, &[1; 160], 160);
        let p = RtpPacket::parse(&buf[..n]).expect("own packet parses");
        assert!(!p.marker);
        assert_eq!((p.seq, p.timestamp), (0, 59));
    }

    #[test]
    fn sender_refuses_a_too_small_buffer() {
        let mut s = RtpSender::new(1, 10, 20);
        let mut buf = [0u8; 100];
        assert_eq!(s.write(&mut buf, 0, false, &[0; 160], 160), 0);
        assert_eq!((s.seq, s.ts), (10, 20));
    }
}
