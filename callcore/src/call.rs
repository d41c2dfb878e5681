//! One patient call: its legs, where it is in its life, and what it owns.
//!
//! Everything a call holds is reachable from its [`Call`]: the RTP ports of
//! both legs, the offer ringing now, the agent leg waiting to be bridged, the
//! recording. When the call goes, each of them is given back from here.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ivr::IvrSession;
use sip::dialog::Dialog;
use sip::message::Request;
use sip::transaction::TransactionKey;
use sip::transport::Peer;

use crate::io::{Leg, LegSpec, PortToken};
use crate::records::{CallRecord, Outcome, Patient, Recording, RecordingDone};
use crate::refresh::Negotiated;
use crate::session_timer::SessionTimer;

/// Which side ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Patient,
    Agent,
    /// The IVR, a timeout, overload of the agent side, or shutdown.
    System,
}

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// In the IVR menus.
    Ivr,
    /// Waiting in a queue (an offer may be ringing).
    Queued,
    /// Bridged with an agent.
    Connected,
    /// The patient left the line to be called back: waiting for its turn (in its queue or
    /// for the next try), an agent's answer, or the patient's phone to be answered.
    Callback,
    /// Leaving a message (a queue's overflow is `voicemail`): the invitation, then recording.
    Voicemail,
    /// Hung up; waiting for the media task to finish the recording.
    Ending,
}

/// A callback: what is left of the call while the patient is off the line.
#[derive(Debug, Default)]
pub(crate) struct Callback {
    /// Dials made so far.
    pub attempts: u32,
    /// Closed unmade: the patient got through on a call of their own.
    pub closed: bool,
    /// The message the patient left first (its recording id), if any.
    pub voicemail: Option<String>,
    /// The confirmation playing (its prompt generation) before the line is let go.
    pub confirming: Option<u64>,
    /// The first line's port once it was let go: it closes when its media task stops.
    pub line_port: Option<PortToken>,
    /// The first line's media task has not reported `Stopped` yet (a new one for the
    /// dialled leg cannot start before).
    pub media_running: bool,
    /// The dial in progress, once an agent answered.
    pub dial: Option<Dial>,
}

/// One dial of the patient for a callback.
#[derive(Debug)]
pub(crate) struct Dial {
    /// The INVITE (`None` while its port is bound).
    pub invite: Option<Request>,
    /// The dialled leg's port.
    pub rtp: Option<PortToken>,
    /// Our SDP offer.
    pub sdp: Option<String>,
    /// When the INVITE went out.
    pub started: Instant,
    /// Its client transaction.
    pub key: Option<TransactionKey>,
}

/// The patient's leg: the call the patient made, or the one a callback dialled.
#[derive(Debug)]
pub(crate) struct PatientLeg {
    pub dialog: Dialog,
    pub peer: Peer,
    pub sip_call_id: String,
    /// The server transaction of the patient's INVITE (its 2xx waits for an ACK);
    /// `None` for a leg we dialled.
    pub invite: Option<TransactionKey>,
    /// The leg's port (the media task holds its socket).
    pub port: PortToken,
    /// Our SDP to the patient (the latest, after any re-INVITE), and the media it
    /// settled (our direction: whether we send, whether the phone does).
    pub sdp: String,
    pub media: sip::sdp::Negotiated,
    pub timer: Option<(SessionTimer, Negotiated)>,
}

/// One INVITE of an offer: an agent registered on a desk phone and a softphone
/// is rung on both, the first to answer wins and the others are cancelled.
#[derive(Debug)]
pub(crate) struct Fork {
    pub invite: Request,
    pub peer: Peer,
    /// Out of the race: refused, timed out, or cancelled.
    pub over: bool,
}

/// One offer of a call to an agent: the screen-pop, then the INVITE to each of its phones.
/// An offer that ends unanswered leaves the call's `ringing` at once.
#[derive(Debug)]
pub(crate) struct Offer {
    pub agent: String,
    pub seq: u64,
    pub forks: Vec<Fork>,
    /// The agent leg's port, bound before the INVITE names it.
    pub rtp: Option<PortToken>,
    pub dialog: Option<Dialog>,
    /// Our SDP offer in the INVITE (kept for re-INVITEs from the agent's phone).
    pub sdp: Option<String>,
    pub pop_started: Instant,
}

/// An ACD offer waiting for the caller's patient record.
#[derive(Debug, Clone)]
pub(crate) struct DeferredOffer {
    pub agent: String,
    pub queue: String,
    pub waited: Duration,
    pub ring_timeout: Duration,
}

/// The caller's patient record: still being read, or read.
#[derive(Debug, Clone)]
pub(crate) enum PatientLookup {
    /// The lookup runs; offers the ACD made meanwhile (several under ring-all) wait here for it.
    Pending(Vec<DeferredOffer>),
    /// The record (`None`: no patient has this number) and the caller's earlier calls;
    /// boxed, so a call carries a pointer, not the whole profile.
    Done(Box<(Option<Patient>, Vec<crate::records::PastCall>)>),
}

/// The call's recording, once the agent answered.
#[derive(Debug, Clone)]
pub(crate) struct CallRecording {
    pub id: String,
    pub path: PathBuf,
    pub started_at: DateTime<Utc>,
}

/// One patient call and, once answered, its agent leg.
pub(crate) struct Call {
    /// Our id of the call (records, desk events, recordings).
    pub call_id: String,
    pub span: tracing::Span,
    pub caller: String,
    pub patient: PatientLookup,
    pub started_at: DateTime<Utc>,
    /// The patient's line: `None` while a callback has no line (between the caller
    /// leaving it and the patient answering the dial).
    pub line: Option<PatientLeg>,
    pub ivr: Option<IvrSession>,
    pub ivr_path: Vec<String>,
    pub prompt_generation: u64,
    pub phase: Phase,
    pub queue: Option<String>,
    pub enqueued_at: Option<Instant>,
    pub wait_ms: Option<u64>,
    /// The offers ringing now: one, or under ring-all one per agent rung (the first
    /// answer takes the call, the ACD withdraws the others).
    pub ringing: Vec<Offer>,
    pub agents_offered: Vec<String>,
    pub offers: Vec<crate::records::OfferRecord>,
    /// A queue rule (max wait, full, nobody to answer) ended the call's wait.
    pub overflowed: bool,
    /// An announcement playing: its prompt generation and the pieces still to play.
    pub announcing: Option<(u64, std::collections::VecDeque<String>)>,
    /// The position told at the last announcement.
    pub announced_position: Option<usize>,
    pub agent: Option<String>,
    pub agent_dialog: Option<Dialog>,
    pub agent_sip_call_id: Option<String>,
    /// The answered agent leg, waiting for the ACD's `Connected` to be bridged.
    pub bridge_pending: Option<LegSpec>,
    /// The agent leg's port once it is bridged (the media task holds its socket).
    pub agent_port: Option<PortToken>,
    /// Our SDP to the agent's phone (the offer, or our latest answer to its
    /// re-INVITE), and the media it settled.
    pub agent_sdp: Option<String>,
    pub agent_media: Option<sip::sdp::Negotiated>,
    pub agent_timer: Option<(SessionTimer, Negotiated)>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub recording: Option<CallRecording>,
    /// Set when the caller asked (or a rule chose) to be called back.
    pub callback: Option<Callback>,
    /// The voicemail invitation playing (its prompt generation).
    pub voicemail_greeting: Option<u64>,
    /// The agent consulting another before handing the caller over (attended transfer).
    /// Boxed: rare, and a call without one carries a pointer.
    pub consult: Option<Box<crate::consult::Consult>>,
    /// The agent put the caller on hold from the desk ([`crate::desk_call`]).
    pub desk_held: bool,
}

impl Offer {
    /// The forks still ringing, as (peer, INVITE), each marked over: to cancel them.
    pub fn end_forks(&mut self) -> Vec<(Peer, Request)> {
        let mut ringing = Vec::new();
        for f in &mut self.forks {
            if !std::mem::replace(&mut f.over, true) {
                ringing.push((f.peer, f.invite.clone()));
            }
        }
        ringing
    }

    /// `winner`'s phone answered: the offer's other INVITEs still ringing, to cancel.
    pub fn end_others(&mut self, winner: &Request) -> Vec<(Peer, Request)> {
        let winner = winner.call_id().ok();
        self.end_forks()
            .into_iter()
            .filter(|(_, other)| other.call_id().ok() != winner)
            .collect()
    }

    /// What a 2xx on INVITE `fork` is: a new answer (that INVITE and where it went), the
    /// winner's retransmission (with the winner's dialog too), or `None`: too late (another
    /// phone won, or this one was given up).
    pub fn answer_on(&self, fork: usize) -> Option<(Request, Peer, Option<Dialog>)> {
        let f = self.forks.get(fork)?;
        match &self.dialog {
            Some(d) if f.invite.call_id().ok().as_ref() == Some(&d.call_id) => {
                Some((f.invite.clone(), f.peer, Some(d.clone())))
            }
            Some(_) => None,
            None if f.over => None,
            None => Some((f.invite.clone(), f.peer, None)),
        }
    }
}

impl Call {
    /// A call in `phase` with nothing yet: no line, no IVR, no queue, no agent; its
    /// patient record still to be read.
    pub fn new(
        call_id: String,
        span: tracing::Span,
        caller: String,
        started_at: DateTime<Utc>,
        phase: Phase,
    ) -> Self {
        Call {
            call_id,
            span,
            caller,
            patient: PatientLookup::Pending(Vec::new()),
            started_at,
            line: None,
            ivr: None,
            ivr_path: Vec::new(),
            prompt_generation: 0,
            phase,
            queue: None,
            enqueued_at: None,
            wait_ms: None,
            ringing: Vec::new(),
            consult: None,
            agents_offered: Vec::new(),
            offers: Vec::new(),
            overflowed: false,
            announcing: None,
            announced_position: None,
            agent: None,
            agent_dialog: None,
            agent_sip_call_id: None,
            bridge_pending: None,
            agent_port: None,
            agent_sdp: None,
            agent_media: None,
            agent_timer: None,
            answered_at: None,
            ended_at: None,
            recording: None,
            callback: None,
            voicemail_greeting: None,
            desk_held: false,
        }
    }

    /// Which leg a SIP Call-ID belongs to.
    pub fn side_of(&self, sip_call_id: &str) -> Option<Side> {
        if self
            .line
            .as_ref()
            .is_some_and(|l| l.sip_call_id == sip_call_id)
        {
            Some(Side::Patient)
        } else if self.agent_sip_call_id.as_deref() == Some(sip_call_id) {
            Some(Side::Agent)
        } else {
            None
        }
    }

    /// The offer with this sequence, if it is still live (not given up on).
    pub fn live_offer(&mut self, seq: u64) -> Option<&mut Offer> {
        self.ringing.iter_mut().find(|o| o.seq == seq)
    }

    /// Takes offer `seq` out of the ringing ones (it ended), if it is still live.
    pub fn take_offer(&mut self, seq: u64) -> Option<Offer> {
        let i = self.ringing.iter().position(|o| o.seq == seq)?;
        Some(self.ringing.remove(i))
    }

    /// The caller's wait so far, if queued.
    pub fn waited_ms(&self, now: Instant) -> Option<u64> {
        self.enqueued_at
            .map(|t| millis(now.saturating_duration_since(t)))
    }

    /// The stored record of the call as it stands.
    pub fn record(&self) -> CallRecord {
        let outcome = self.ended_at.map(|_| {
            if self.callback.as_ref().is_some_and(|cb| cb.closed) {
                Outcome::CallbackClosed
            } else if self.callback.is_some() && self.answered_at.is_none() {
                Outcome::CallbackFailed
            } else if self.overflowed && self.answered_at.is_none() {
                Outcome::Overflow
            } else {
                Outcome::of_ended_call(self.answered_at.is_some(), self.queue.is_some())
            }
        });
        CallRecord {
            call_id: self.call_id.clone(),
            caller: self.caller.clone(),
            started_at: self.started_at,
            ivr_path: self.ivr_path.clone(),
            queue: self.queue.clone(),
            wait_ms: self.wait_ms,
            agents_offered: self.agents_offered.clone(),
            offers: self.offers.clone(),
            agent: self.agent.clone(),
            answered_at: self.answered_at,
            ended_at: self.ended_at,
            outcome,
            recording_id: self
                .recording
                .as_ref()
                .map(|r| r.id.clone())
                .filter(|id| !id.starts_with("v-")),
            satisfaction: None,
            voicemail_id: self
                .callback
                .as_ref()
                .and_then(|cb| cb.voicemail.clone())
                .or_else(|| {
                    self.recording
                        .as_ref()
                        .map(|r| r.id.clone())
                        .filter(|id| id.starts_with("v-"))
                }),
        }
    }

    /// The session timer slot of a leg (`None`: the patient has no line now).
    pub fn timer_mut(&mut self, leg: Leg) -> Option<&mut Option<(SessionTimer, Negotiated)>> {
        match leg {
            Leg::Patient => self.line.as_mut().map(|l| &mut l.timer),
            Leg::Agent => Some(&mut self.agent_timer),
        }
    }

    /// A leg's running session timer and what it was negotiated as.
    pub fn timer(&self, leg: Leg) -> Option<(SessionTimer, Negotiated)> {
        match leg {
            Leg::Patient => self.line.as_ref().and_then(|l| l.timer),
            Leg::Agent => self.agent_timer,
        }
    }

    /// The recording's index row for what the media wrote, if the call is recorded.
    pub fn recording_row(&self, done: RecordingDone) -> Option<Recording> {
        let r = self.recording.as_ref()?;
        Some(Recording {
            id: r.id.clone(),
            call_id: self.call_id.clone(),
            agent: self.agent.clone().unwrap_or_default(),
            started_at: r.started_at,
            duration_ms: done.duration_ms,
            channels: 2,
            gaps: done.gaps,
            holds: done.holds,
            path: r.path.to_string_lossy().into_owned(),
        })
    }

    /// Every port the call holds that no media task holds: the ringing
    /// offers' and the answered-but-unbridged agent leg's. Taken out, so each
    /// is given back once.
    pub fn take_unbridged_ports(&mut self) -> Vec<PortToken> {
        let mut tokens = Vec::new();
        tokens.extend(self.ringing.iter_mut().filter_map(|o| o.rtp.take()));
        if let Some(k) = self.consult.as_mut() {
            tokens.extend(k.offer.rtp.take());
            if let Some(phone) = k.phone.as_mut().filter(|p| !p.in_media) {
                tokens.extend(phone.port.take().map(|(token, _)| token));
            }
        }
        if let Some(leg) = self.bridge_pending.take() {
            tokens.push(leg.token);
        }
        tokens
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
