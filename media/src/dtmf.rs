//! RFC 4733 telephone-events (DTMF over RTP) and the SIP INFO fallback.

use crate::error::Error;
use crate::rtp::RtpPacket;

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0-9, 10 `*`, 11 `#`, 12-15 `A`-`D`, others (flash, tones) exist.
    pub event: u8,
    /// The E bit: this packet reports the end of the event.
    pub end: bool,
    /// Power level in -dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first 4 bytes of a telephone-event payload.
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, Error> {
        let &[event, flags, d0, d1, ..] = payload else {
            return Err(Error::EventTooShort);
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The DTMF digit this event stands for, if it is one.
    pub fn digit(&self) -> Option<char> {
        event_digit(self.event)
    }
}

/// Maps an RFC 4733 event code to its DTMF character (0-9, `*`, `#`, `A`-`D`).
pub fn event_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => char::from_digit(u32::from(event), 10),
        10 => Some('*'),
        11 => Some('#'),
        12 => Some('A'),
        13 => Some('B'),
        14 => Some('C'),
        15 => Some('D'),
        _ => None,
    }
}

/// The RFC 4733 event code of a DTMF character (the inverse of [`event_digit`]).
pub fn digit_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => digit.to_digit(10).and_then(|d| u8::try_from(d).ok()),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(12 + (digit as u8 - b'A')),
        _ => None,
    }
}

/// How many recent events are remembered to drop late or reordered packets.
const RECENT: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Current {
    ssrc: u32,
    timestamp: u32,
    event: u8,
    ended: bool,
    duration: u16,
}

/// Turns a stream of telephone-event packets into one digit per key press.
///
/// An event is keyed by (SSRC, RTP timestamp): the start, interim and three end
/// packets of one press share it. The digit is reported on the first packet seen
/// of an event, so a lost start packet (first packet is an end packet) still
/// yields the digit, and the redundant end packets do not repeat it. Segments of
/// a long event (RFC 4733 §2.5.1.3) continue the previous event rather than start one.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    recent: [Option<(u32, u32)>; RECENT],
    next: usize,
    current: Option<Current>,
}

impl DtmfReceiver {
    /// A receiver that has seen no events.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles an RTP packet already known to carry telephone-event; returns a new digit.
    pub fn handle_packet(&mut self, packet: &RtpPacket<'_>) -> Option<char> {
        let ev = TelephoneEvent::parse(packet.payload).ok()?;
        self.handle_event(packet.ssrc, packet.timestamp, packet.marker, &ev)
    }

    /// Handles one parsed event; returns the digit the first time an event is seen.
    pub fn handle_event(
        &mut self,
        ssrc: u32,
        timestamp: u32,
        marker: bool,
        ev: &TelephoneEvent,
    ) -> Option<char> {
        if let Some(cur) = self.current.as_mut()
            && cur.ssrc == ssrc
            && cur.timestamp == timestamp
        {
            cur.ended |= ev.end;
            cur.duration = cur.duration.max(ev.duration);
            return None;
        }
        if self.recent.contains(&Some((ssrc, timestamp))) {
            return None; // a late packet of an earlier event
        }
        let continues = self.current.is_some_and(|cur| {
            let gap = timestamp.wrapping_sub(cur.timestamp);
            cur.ssrc == ssrc
                && !cur.ended
                && !marker
                && cur.event == ev.event
                && cur.duration >= 0x8000
                && gap > 0
                && gap <= u32::from(cur.duration) + 8000
        });
        self.remember(ssrc, timestamp);
        self.current = Some(Current {
            ssrc,
            timestamp,
            event: ev.event,
            ended: ev.end,
            duration: ev.duration,
        });
        if continues { None } else { ev.digit() }
    }

    fn remember(&mut self, ssrc: u32, timestamp: u32) {
        if let Some(slot) = self.recent.get_mut(self.next) {
            *slot = Some((ssrc, timestamp));
        }
        self.next = (self.next + 1) % RECENT;
    }
}

/// Parses a DTMF digit from a SIP INFO body (`application/dtmf-relay` or `application/dtmf`).
pub fn sip_info_digit(content_type: &str, body: &[u8]) -> Option<char> {
    let mime = content_type.split(';').next()?.trim();
    let text = std::str::from_utf8(body).ok()?;
    if mime.eq_ignore_ascii_case("application/dtmf-relay") {
        text.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| parse_signal(value))
                .flatten()
        })
    } else if mime.eq_ignore_ascii_case("application/dtmf") {
        parse_signal(text)
    } else {
        None
    }
}

/// A signal is either the character itself or the event code ("10" for `*`).
fn parse_signal(value: &str) -> Option<char> {
    let value = value.trim();
    let mut chars = value.chars();
    let first = chars.next()?;
    if chars.next().is_none() {
        let c = first.to_ascii_uppercase();
        return matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c);
    }
    value.parse::<u8>().ok().and_then(event_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: u8, end: bool, duration: u16) -> TelephoneEvent {
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
    }

    /// Packets of one press as a typical phone sends them: start (marker), interims, 3 ends.
    fn press(rx: &mut DtmfReceiver, ts: u32, event: u8) -> Vec<char> {
        let mut got = Vec::new();
        got.extend(rx.handle_event(1, ts, true, &ev(event, false, 160)));
        for d in [320, 480, 640] {
            got.extend(rx.handle_event(1, ts, false, &ev(event, false, d)));
        }
        for _ in 0..3 {
            got.extend(rx.handle_event(1, ts, false, &ev(event, true, 800)));
        }
        got
    }

    #[test]
    fn parses_the_payload_fields() {
        let e = TelephoneEvent::parse(&[11, 0x8A, 0x03, 0x20]).expect("4 bytes");
        assert_eq!(e, ev(11, true, 800));
        assert_eq!(e.digit(), Some('#'));
        assert!(TelephoneEvent::parse(&[1, 2, 3]).is_err());
    }

    #[test]
    fn maps_all_sixteen_events() {
        let all: String = (0..16).filter_map(event_digit).collect();
        assert_eq!(all, "0123456789*#ABCD");
        assert_eq!(event_digit(16), None);
    }

    #[test]
    fn one_digit_per_press_even_with_repeated_end_packets() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(press(&mut rx, 1000, 1), vec!['1']);
        assert_eq!(
            press(&mut rx, 5000, 1),
            vec!['1'],
            "same digit pressed again"
        );
        assert_eq!(press(&mut rx, 9000, 11), vec!['#']);
    }

    #[test]
    fn lost_start_packet_still_gives_the_digit_once() {
        let mut rx = DtmfReceiver::new();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.extend(rx.handle_event(1, 2000, false, &ev(5, true, 800)));
        }
        assert_eq!(got, vec!['5']);
    }

    #[test]
    fn late_packets_of_an_earlier_event_are_dropped() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(press(&mut rx, 1000, 1), vec!['1']);
        assert_eq!(press(&mut rx, 3000, 2), vec!['2']);
        assert_eq!(rx.handle_event(1, 1000, false, &ev(1, true, 800)), None);
    }

    #[test]
    fn long_event_segments_continue_the_press() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(
            rx.handle_event(1, 0, true, &ev(0, false, 0xFFFF)),
            Some('0')
        );
        // Next segment: timestamp advanced by the previous duration, no marker.
        assert_eq!(rx.handle_event(1, 0xFFFF, false, &ev(0, false, 400)), None);
        assert_eq!(rx.handle_event(1, 0xFFFF, false, &ev(0, true, 800)), None);
        // A new press afterwards is reported.
        assert_eq!(
            rx.handle_event(1, 0x2_0000, true, &ev(0, false, 160)),
            Some('0')
        );
    }

    #[test]
    fn a_new_ssrc_with_the_same_timestamp_is_a_new_press() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(press(&mut rx, 1000, 3), vec!['3']);
        assert_eq!(
            rx.handle_event(2, 1000, true, &ev(3, false, 160)),
            Some('3')
        );
    }

    #[test]
    fn non_digit_events_give_nothing() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(rx.handle_event(1, 10, true, &ev(16, false, 160)), None);
    }

    #[test]
    fn sip_info_bodies() {
        assert_eq!(
            sip_info_digit("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            sip_info_digit("Application/DTMF-Relay; x=y", b"signal= #\r\nDuration=250"),
            Some('#')
        );
        assert_eq!(
            sip_info_digit("application/dtmf-relay", b"Signal=10\r\nDuration=160"),
            Some('*')
        );
        assert_eq!(
            sip_info_digit("application/dtmf-relay", b"Duration=160"),
            None
        );
        assert_eq!(sip_info_digit("application/dtmf", b"5"), Some('5'));
        assert_eq!(sip_info_digit("application/dtmf", b" d\r\n"), Some('D'));
        assert_eq!(sip_info_digit("application/dtmf", b"11"), Some('#'));
        assert_eq!(sip_info_digit("application/dtmf", b"x"), None);
        assert_eq!(sip_info_digit("text/plain", b"5"), None);
        assert_eq!(sip_info_digit("application/dtmf", &[0xFF, 0xFE]), None);
    }
}
