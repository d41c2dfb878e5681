//! Symmetric RTP: which source a leg's packets are taken from, and where its packets go.
//!
//! A leg starts knowing only the address its SDP named. The first valid RTP packet latches
//! the leg to its source (a phone behind NAT sends from another address than it signalled),
//! and from then on packets from anywhere else are dropped before they are decoded, relayed
//! or recorded — a host that guesses the port cannot talk into the call. Two ways to move:
//! - the SDP address itself wins over a learned one while the latch is young (the first
//!   packets of a call can race, and the signalled address is the one we trust most);
//! - a new source that proves it is the same stream (the latched SSRC with the next sequence
//!   numbers, as after a NAT rebinding) is followed, as rtpengine's learning mode does.
//!
//! Sans-IO and allocation-free: the shell asks [`Latch::admit`] per packet and sends to
//! [`Latch::target`].

use std::net::SocketAddr;

/// Packets within which the SDP address may still take over from a learned source.
const YOUNG_PACKETS: u32 = 50;
/// How far ahead of the last accepted sequence number a moved stream may be.
const SEQ_WINDOW: u16 = 64;

/// One leg's latch.
#[derive(Debug, Clone)]
pub struct Latch {
    signalled: SocketAddr,
    latched: Option<Source>,
    /// Packets accepted since the latch was set.
    accepted: u32,
    /// Packets dropped for coming from elsewhere.
    rejected: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Source {
    addr: SocketAddr,
    ssrc: u32,
    seq: u16,
}

/// What to do with a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// From the leg's source: use it.
    Accept,
    /// From the leg's new source (latched now, or moved): use it, and note the move.
    Latched(SocketAddr),
    /// From anywhere else (or not RTP): drop it.
    Reject,
    /// RTCP (RFC 5761 packet types 192-223) or STUN (first byte 0-3, RFC 7983): not
    /// media, never latched on, dropped without counting as injection. Phones send
    /// both around their RTP (Linphone probes with STUN as a call starts; RTCP may go to
    /// our port + 1, another leg's port); we take part in neither.
    NotMedia,
}

impl Latch {
    /// A leg whose SDP named `signalled`.
    pub fn new(signalled: SocketAddr) -> Self {
        Latch {
            signalled,
            latched: None,
            accepted: 0,
            rejected: 0,
        }
    }

    /// Where this leg's packets go: the latched source, else the signalled address.
    pub fn target(&self) -> SocketAddr {
        self.latched.map_or(self.signalled, |s| s.addr)
    }

    /// The phone signalled a new address (re-INVITE or UPDATE): packets go there
    /// now and the leg latches afresh to the first valid packet (a phone that moved
    /// sends from its new address); the same address keeps the latch as it is.
    pub fn signal(&mut self, signalled: SocketAddr) {
        if signalled == self.signalled {
            return;
        }
        self.signalled = signalled;
        self.latched = None;
        self.accepted = 0;
    }

    /// Packets dropped so far for coming from somewhere else.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Decides on one packet from `from`.
    pub fn admit(&mut self, from: SocketAddr, packet: &[u8]) -> Admit {
        if is_rtcp(packet) || is_stun(packet) {
            return Admit::NotMedia;
        }
        let Some((ssrc, seq)) = header(packet) else {
            self.rejected += 1;
            return Admit::Reject;
        };
        let here = Source {
            addr: from,
            ssrc,
            seq,
        };
        let Some(current) = self.latched else {
            return self.latch(here);
        };
        if from == current.addr {
            self.accepted = self.accepted.saturating_add(1);
            self.latched = Some(here);
            return Admit::Accept;
        }
        let young = self.accepted < YOUNG_PACKETS;
        let same_stream =
            ssrc == current.ssrc && seq.wrapping_sub(current.seq).wrapping_sub(1) < SEQ_WINDOW;
        if (young && from == self.signalled) || same_stream {
            return self.latch(here);
        }
        self.rejected += 1;
        Admit::Reject
    }

    fn latch(&mut self, source: Source) -> Admit {
        self.latched = Some(source);
        self.accepted = 1;
        Admit::Latched(source.addr)
    }
}

/// Whether a version 2 packet is RTCP by its packet type (RFC 5761 §4).
fn is_rtcp(packet: &[u8]) -> bool {
    matches!(packet, [first, pt, ..] if first >> 6 == 2 && (192..=223).contains(pt))
}

/// Whether a packet is STUN by its first byte (RFC 7983 §7: 0-3) and its magic cookie.
fn is_stun(packet: &[u8]) -> bool {
    packet.len() >= 20 && matches!(packet, [0..=3, _, _, _, 0x21, 0x12, 0xA4, 0x42, ..])
}

/// SSRC and sequence number of an RTP version 2 packet, if `packet` is one.
fn header(packet: &[u8]) -> Option<(u32, u16)> {
    let first = *packet.first()?;
    if first >> 6 != 2 || packet.len() < 12 {
        return None;
    }
    let seq = u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]);
    let ssrc = u32::from_be_bytes(packet.get(8..12)?.try_into().ok()?);
    Some((ssrc, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    fn rtp(ssrc: u32, seq: u16) -> [u8; 172] {
        let mut p = [0u8; 172];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    }

    #[test]
    fn rtcp_and_stun_are_never_latched_on_nor_counted_as_injection() {
        let mut latch = Latch::new(addr("10.0.0.1:4000"));
        // A receiver report from another call's phone (its RTCP goes to our port + 1).
        let mut rr = [0u8; 32];
        rr[0] = 0x81;
        rr[1] = 201;
        assert_eq!(latch.admit(addr("10.0.0.7:4001"), &rr), Admit::NotMedia);
        assert_eq!(latch.target(), addr("10.0.0.1:4000"), "not latched to it");
        assert_eq!(latch.rejected(), 0);
        assert_eq!(
            latch.admit(addr("10.0.0.1:4000"), &rtp(7, 1)),
            Admit::Latched(addr("10.0.0.1:4000"))
        );
        assert_eq!(
            latch.admit(addr("10.0.0.1:4000"), &rr),
            Admit::NotMedia,
            "not audio either"
        );
        // A STUN binding request, as Linphone sends from its RTP port as a call starts.
        let mut stun = [0u8; 20];
        stun[..2].copy_from_slice(&[0x00, 0x01]);
        stun[4..8].copy_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        let mut fresh = Latch::new(addr("10.0.0.1:4000"));
        assert_eq!(fresh.admit(addr("10.0.0.1:4000"), &stun), Admit::NotMedia);
        assert_eq!(fresh.rejected(), 0, "not counted as injection");
        assert_eq!(
            fresh.admit(addr("10.0.0.1:4000"), &rtp(7, 1)),
            Admit::Latched(addr("10.0.0.1:4000"))
        );
    }

    #[test]
    fn a_signalled_move_relatches_and_the_old_source_is_dropped() {
        let mut latch = Latch::new(addr("10.0.0.1:4000"));
        for seq in 0..100 {
            assert_ne!(
                latch.admit(addr("10.0.0.1:4000"), &rtp(7, seq)),
                Admit::Reject
            );
        }
        latch.signal(addr("10.0.0.1:4000"));
        assert_eq!(
            latch.admit(addr("10.0.0.9:4000"), &rtp(8, 0)),
            Admit::Reject,
            "same address: latch kept"
        );
        latch.signal(addr("10.0.0.2:5000"));
        assert_eq!(
            latch.target(),
            addr("10.0.0.2:5000"),
            "sends to the new address at once"
        );
        assert_eq!(
            latch.admit(addr("10.0.0.2:5000"), &rtp(9, 500)),
            Admit::Latched(addr("10.0.0.2:5000"))
        );
        for seq in 501..520 {
            assert_eq!(
                latch.admit(addr("10.0.0.2:5000"), &rtp(9, seq)),
                Admit::Accept
            );
        }
        assert_eq!(
            latch.admit(addr("10.0.0.1:4000"), &rtp(30, 0)),
            Admit::Reject,
            "the old address with another stream is dropped"
        );
    }

    #[test]
    fn latches_to_the_first_source_and_drops_an_injector() {
        let phone = addr("203.0.113.5:40000"); // behind NAT: not what its SDP said
        let mut l = Latch::new(addr("192.168.1.20:4000"));
        assert_eq!(l.target(), addr("192.168.1.20:4000"));
        assert_eq!(l.admit(phone, &rtp(7, 100)), Admit::Latched(phone));
        assert_eq!(l.target(), phone, "answers go where the phone really is");
        for seq in 101..200 {
            assert_eq!(l.admit(phone, &rtp(7, seq)), Admit::Accept);
        }
        // Another host that found the port, with its own stream or a guessed SSRC.
        let injector = addr("198.51.100.9:5004");
        assert_eq!(l.admit(injector, &rtp(99, 1)), Admit::Reject);
        assert_eq!(l.admit(injector, &rtp(7, 5000)), Admit::Reject);
        assert_eq!(l.target(), phone);
        assert_eq!(l.rejected(), 2);
        // Not RTP at all.
        assert_eq!(l.admit(phone, b"hello"), Admit::Reject);
    }

    #[test]
    fn the_signalled_address_wins_while_the_latch_is_young() {
        let sdp = addr("192.168.1.20:4000");
        let early = addr("198.51.100.9:5004");
        let mut l = Latch::new(sdp);
        assert_eq!(l.admit(early, &rtp(99, 1)), Admit::Latched(early));
        assert_eq!(l.admit(sdp, &rtp(7, 10)), Admit::Latched(sdp));
        assert_eq!(l.admit(early, &rtp(99, 2)), Admit::Reject);
        // Once settled, not even the SDP address takes over without proving itself.
        let mut m = Latch::new(sdp);
        let phone = addr("203.0.113.5:40000");
        for seq in 0..=u16::try_from(YOUNG_PACKETS).expect("small") {
            m.admit(phone, &rtp(7, seq));
        }
        assert_eq!(m.admit(sdp, &rtp(1234, 1)), Admit::Reject);
        assert_eq!(m.target(), phone);
    }

    #[test]
    fn follows_the_same_stream_to_a_new_address() {
        let old = addr("203.0.113.5:40000");
        let new = addr("203.0.113.5:40002"); // the home router rebound the mapping
        let mut l = Latch::new(addr("192.168.1.20:4000"));
        for seq in 65_500..65_535 {
            l.admit(old, &rtp(7, seq));
        }
        // Sequence numbers continue across the wrap.
        assert_eq!(l.admit(new, &rtp(7, 3)), Admit::Latched(new));
        assert_eq!(l.target(), new);
        // A copy of a packet already taken, from the old address, does not move it back.
        assert_eq!(l.admit(old, &rtp(7, 3)), Admit::Reject);
        // A replay of old sequence numbers from a third place does not move it.
        assert_eq!(
            l.admit(addr("198.51.100.9:5004"), &rtp(7, 1)),
            Admit::Reject
        );
    }
}
