//! What call control writes down: call records, recording rows, and the
//! patient record it pops to the agent's desk.
//!
//! The binary's storage module stores these as they are.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A patient record, shown on the agent's desk when the caller's number matches: the
/// profile an agent acts on before the first word.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patient {
    /// Left out of a `PUT /api/patients/{phone}` body, it is the path's.
    #[serde(default)]
    pub phone: String,
    pub name: String,
    pub age: u32,
    /// "female", "male" or "other".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
    /// Visits in all, and in the last twelve months (how often the patient comes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visits: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visits_last_year: Option<u32>,
    /// Local date of the last visit ("2026-11-20") and the doctor seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_visit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_doctor: Option<String>,
    /// Local date and time of the next appointment, e.g. "2026-12-01 09:30".
    pub next_appointment: Option<String>,
    /// "low", "medium" or "high".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_band: Option<String>,
    /// Chronic conditions and treatments ("diabetes", "orthodontics", …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub allergies: Option<String>,
    /// The last complaint and where it stands ("open", "in_progress", "resolved").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_complaint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complaint_status: Option<String>,
    /// "zh" or "en", and when the patient likes to be called ("weekday mornings").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_contact_time: Option<String>,
    pub notes: Option<String>,
}

/// One of the caller's earlier calls, as the pop lists it (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastCall {
    pub call_id: String,
    /// When it started, in the clinic's time zone (RFC 3339 with the clinic's offset).
    pub started_at: String,
    pub outcome: Option<Outcome>,
    pub queue: Option<String>,
    pub agent: Option<String>,
    /// The wrap-up an agent saved for it (the answering agent's first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<PastDisposition>,
}

/// A wrap-up as the next pop shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastDisposition {
    pub code: String,
    pub note: String,
    pub follow_up: bool,
    /// The tone its code is configured with.
    pub tone: Tone,
}

/// How a call went for the patient, as its wrap-up code says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    Positive,
    #[default]
    Neutral,
    Negative,
}

/// The patient's tendency from the wrap-ups of their recent calls (`history`): the more
/// frequent of positive and negative, negative on a tie (the agent is better warned);
/// neutral when the wrap-ups are all neutral; `None` without a wrap-up to go on.
pub fn tendency(history: &[PastCall]) -> Option<Tone> {
    let tones = history
        .iter()
        .filter_map(|c| c.disposition.as_ref().map(|d| d.tone));
    let (mut positive, mut negative, mut any) = (0usize, 0usize, false);
    for tone in tones {
        any = true;
        match tone {
            Tone::Positive => positive += 1,
            Tone::Negative => negative += 1,
            Tone::Neutral => {}
        }
    }
    match (any, negative, positive) {
        (false, _, _) => None,
        (true, 0, 0) => Some(Tone::Neutral),
        (true, n, p) if n >= p => Some(Tone::Negative),
        _ => Some(Tone::Positive),
    }
}

/// How a call ended (SPEC: answered/abandoned/overflow/ivr_only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    Abandoned,
    Overflow,
    IvrOnly,
    /// The caller left the line to be called back and was never reached.
    CallbackFailed,
    /// The caller left the line to be called back, then got through on a call of their
    /// own: the callback was closed unmade.
    CallbackClosed,
}

impl Outcome {
    /// How an ended call ended: answered if an agent answered, abandoned if it
    /// reached a queue, else it never left the IVR.
    pub fn of_ended_call(answered: bool, queued: bool) -> Self {
        if answered {
            Outcome::Answered
        } else if queued {
            Outcome::Abandoned
        } else {
            Outcome::IvrOnly
        }
    }

    /// The name used in the database and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Abandoned => "abandoned",
            Outcome::Overflow => "overflow",
            Outcome::IvrOnly => "ivr_only",
            Outcome::CallbackFailed => "callback_failed",
            Outcome::CallbackClosed => "callback_closed",
        }
    }

    /// The outcome with this name (as [`Outcome::as_str`] gives it).
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "answered" => Outcome::Answered,
            "abandoned" => Outcome::Abandoned,
            "overflow" => Outcome::Overflow,
            "ivr_only" => Outcome::IvrOnly,
            "callback_failed" => Outcome::CallbackFailed,
            "callback_closed" => Outcome::CallbackClosed,
            _ => return None,
        })
    }
}

/// One call as stored (the caller in full; mask it before showing it to anyone
/// but the agent taking the call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub call_id: String,
    pub caller: String,
    pub started_at: DateTime<Utc>,
    pub ivr_path: Vec<String>,
    pub queue: Option<String>,
    pub wait_ms: Option<u64>,
    pub agents_offered: Vec<String>,
    /// Every offer in order: who rang, how long, and why it ended.
    pub offers: Vec<OfferRecord>,
    pub agent: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `None` while the call is still in progress.
    pub outcome: Option<Outcome>,
    pub recording_id: Option<String>,
    pub satisfaction: Option<u8>,
    /// The message the caller left (a voicemail's recording id), if any.
    pub voicemail_id: Option<String>,
}

impl CallRecord {
    /// A fresh record for a call that just arrived; fill the rest as it goes.
    pub fn new(
        call_id: impl Into<String>,
        caller: impl Into<String>,
        started_at: DateTime<Utc>,
    ) -> Self {
        Self {
            call_id: call_id.into(),
            caller: caller.into(),
            started_at,
            ivr_path: Vec::new(),
            queue: None,
            wait_ms: None,
            agents_offered: Vec::new(),
            offers: Vec::new(),
            agent: None,
            answered_at: None,
            ended_at: None,
            outcome: None,
            recording_id: None,
            satisfaction: None,
            voicemail_id: None,
        }
    }
}

/// A callback still to be made, kept so it survives a restart (a `kill -9` too): which
/// queue it waits in, since when (its place), and the tries made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCallback {
    pub call_id: String,
    pub queue: String,
    /// When the caller first joined the queue: its place among the others.
    pub since: DateTime<Utc>,
    pub attempts: u32,
    /// The message the caller left first, if any (its recording id).
    pub voicemail: Option<String>,
}

/// One entry of the queue event log as stored: when, which call, what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub at: DateTime<Utc>,
    /// The call's id (as in call records), if the entry is about a call.
    pub call_id: Option<String>,
    pub event: acd::Logged,
}

/// One offer of a call to an agent, as the call record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferRecord {
    pub agent: String,
    /// How long the phone rang (`None` while it still rings).
    pub rang_ms: Option<u64>,
    /// `answered`, `rang_out`, `declined`, `logged_out` or `caller_hung_up` (`None`: ringing).
    pub ended: Option<String>,
}

/// One recorded call (a stereo WAV file on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub id: String,
    pub call_id: String,
    pub agent: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub channels: u16,
    /// Stretches where a channel is silence because no packet arrived for it
    /// (placed by RTP timestamp; audio that came late or out of order is not a gap).
    pub gaps: Vec<Gap>,
    /// Stretches a phone held the call (re-INVITE `sendonly`/`inactive`): its
    /// channel is silent there by design, not a gap.
    pub holds: Vec<Hold>,
    /// The WAV file: absolute, relative to the working directory, or relative to
    /// the recordings directory (the audio endpoint accepts all three, but only
    /// inside the recordings directory).
    pub path: String,
}

/// Which side of a stereo recording a gap is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapChannel {
    /// The left channel.
    Caller,
    /// The right channel.
    Agent,
}

/// A stretch of a recording's channel that no packet brought (silence written in its place).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub channel: GapChannel,
    /// Where it starts, from the start of the file.
    pub at_ms: u64,
    pub ms: u64,
}

/// A stretch of a recording during which one side held the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The side whose phone held (the caller heard hold music when the agent held).
    pub by: GapChannel,
    /// Where it starts, from the start of the file.
    pub at_ms: u64,
    pub ms: u64,
}

/// What a finished recording holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingDone {
    pub duration_ms: u64,
    pub gaps: Vec<Gap>,
    pub holds: Vec<Hold>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn past(tone: Option<Tone>) -> PastCall {
        PastCall {
            call_id: "c".into(),
            started_at: "2026-12-01T10:00:00+08:00".into(),
            outcome: Some(Outcome::Answered),
            queue: None,
            agent: None,
            disposition: tone.map(|tone| PastDisposition {
                code: "x".into(),
                note: String::new(),
                follow_up: false,
                tone,
            }),
        }
    }

    #[test]
    fn the_tendency_is_the_commoner_of_positive_and_negative_with_ties_negative() {
        use Tone::*;
        let of =
            |tones: &[Option<Tone>]| tendency(&tones.iter().map(|t| past(*t)).collect::<Vec<_>>());
        assert_eq!(of(&[]), None);
        assert_eq!(of(&[None, None]), None, "no wrap-up to go on");
        assert_eq!(of(&[Some(Neutral), None]), Some(Neutral));
        assert_eq!(
            of(&[Some(Positive), Some(Positive), Some(Negative)]),
            Some(Positive)
        );
        assert_eq!(
            of(&[Some(Positive), Some(Negative), Some(Neutral)]),
            Some(Negative)
        );
        assert_eq!(of(&[Some(Negative), None]), Some(Negative));
    }
}
