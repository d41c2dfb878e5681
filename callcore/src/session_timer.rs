//! RFC 4028 session timers, where a phone asks for them.
//!
//! A phone that puts `Session-Expires` in its INVITE (or its 200 OK) gets the
//! timer it asked for, with the phone as the refresher whenever the RFC lets
//! us choose: it re-INVITEs or UPDATEs every interval, and a call whose
//! refreshes stop (the phone vanished, a NAT binding died) is hung up
//! `min(32 s, interval / 3)` before the interval runs out (§10). Where we must
//! refresh (the patient's phone set `refresher=uas`, or does not support the
//! extension), we send an UPDATE at half the interval; a phone that does not
//! know UPDATE turns our refreshing off rather than ending its call.
//! Intervals below [`MIN_SE`] are refused with 422 (§8.1).

use std::time::{Duration, Instant};

/// The smallest interval we accept (RFC 4028's recommended minimum, 90 s).
pub const MIN_SE: u32 = 90;

/// Who refreshes, as the `refresher` parameter says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The side that sent the INVITE.
    Uac,
    /// The side that answered it.
    Uas,
}

impl Refresher {
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A `Session-Expires` value: `delta-seconds [;refresher=uac|uas]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub seconds: u32,
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    /// Parses a header value; `None` if the delta is not a number.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(';');
        let seconds = parts.next()?.trim().parse().ok()?;
        let mut refresher = None;
        for p in parts {
            let (name, v) = p.split_once('=').unwrap_or((p, ""));
            if name.trim().eq_ignore_ascii_case("refresher") {
                refresher = match v.trim().to_ascii_lowercase().as_str() {
                    "uac" => Some(Refresher::Uac),
                    "uas" => Some(Refresher::Uas),
                    _ => None,
                };
            }
        }
        Some(Self { seconds, refresher })
    }

    /// The header value.
    pub fn header(&self) -> String {
        match self.refresher {
            Some(r) => format!("{};refresher={}", self.seconds, r.as_str()),
            None => self.seconds.to_string(),
        }
    }
}

/// One leg's running session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionTimer {
    pub interval: Duration,
    /// We send the refreshes (else the phone does, and we watch).
    pub we_refresh: bool,
    /// When to act next: refresh (ours) or hang up (theirs).
    pub deadline: Instant,
}

impl SessionTimer {
    /// A timer for `seconds`, started (or refreshed) at `now`.
    pub fn new(now: Instant, seconds: u32, we_refresh: bool) -> Self {
        let interval = Duration::from_secs(u64::from(seconds));
        let mut t = Self {
            interval,
            we_refresh,
            deadline: now,
        };
        t.refreshed(now);
        t
    }

    /// A refresh went through at `now`: the next deadline.
    pub fn refreshed(&mut self, now: Instant) {
        let after = if self.we_refresh {
            self.interval / 2
        } else {
            // §10: the side that doesn't refresh ends the session this much early.
            self.interval - (self.interval / 3).min(Duration::from_secs(32))
        };
        self.deadline = now + after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_phones_send_and_writes_it_back() {
        let se = SessionExpires::parse("1800;refresher=uac").expect("parse");
        assert_eq!(se.seconds, 1800);
        assert_eq!(se.refresher, Some(Refresher::Uac));
        assert_eq!(se.header(), "1800;refresher=uac");
        let bare = SessionExpires::parse(" 90 ").expect("parse");
        assert_eq!((bare.seconds, bare.refresher), (90, None));
        assert_eq!(SessionExpires::parse("soon"), None);
    }

    #[test]
    fn the_watcher_gives_up_before_the_interval_and_the_refresher_refreshes_at_half() {
        let t0 = Instant::now();
        let theirs = SessionTimer::new(t0, 1800, false);
        assert_eq!(theirs.deadline, t0 + Duration::from_secs(1800 - 32));
        let short = SessionTimer::new(t0, 90, false);
        assert_eq!(short.deadline, t0 + Duration::from_secs(60));
        let mut ours = SessionTimer::new(t0, 1800, true);
        assert_eq!(ours.deadline, t0 + Duration::from_secs(900));
        ours.refreshed(t0 + Duration::from_secs(900));
        assert_eq!(ours.deadline, t0 + Duration::from_secs(1800));
    }
}
