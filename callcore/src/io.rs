//! What goes into the core besides SIP, and everything that comes out.
//!
//! The shell applies [`Output`]s in the order [`crate::Core::poll_output`]
//! gives them: a screen-pop before the INVITE that follows it, a port bound
//! before the SDP that names it, a record written after the change it records.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sip::transport::Transmit;

use crate::CallId;
use crate::desk::DeskEvent;
use crate::records::{CallRecord, EventRecord, PendingCallback, Recording, RecordingDone};

/// One RTP socket the shell bound for the core; it holds the socket until a
/// media command names the token, or [`Output::ReleaseRtp`] gives it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortToken(pub u64);

/// Something for the shell to do.
#[derive(Debug)]
pub enum Output {
    /// Put this SIP message on the wire.
    Transmit(Transmit),
    /// Bind an RTP socket on `port` of the advertised address, then call
    /// [`crate::Core::handle_port_bound`] with the token.
    BindRtp { token: PortToken, port: u16 },
    /// Close the socket bound for `token` (it was never handed to media).
    ReleaseRtp { token: PortToken },
    /// Tell a call's media task something (the first command is `Start`).
    Media { call: CallId, command: MediaCommand },
    /// Queue the screen-pop to the agent's desks now, then call
    /// [`crate::Core::handle_pop_delivered`] once they have it (or a cap passed).
    ScreenPop {
        agent: String,
        call: CallId,
        seq: u64,
        event: DeskEvent,
    },
    /// Publish an event to the agent's desks.
    Desk { agent: String, event: DeskEvent },
    /// Read the caller's patient record, then call
    /// [`crate::Core::handle_patient_loaded`].
    LookupPatient { call: CallId, phone: String },
    /// Create the recording's file, then call [`crate::Core::handle_recording_opened`]
    /// and hand the file to the call's media (which already buffers the bridge's audio).
    OpenRecording {
        call: CallId,
        path: PathBuf,
        header_interval_ms: u64,
    },
    /// Write (or rewrite) a call record.
    StoreCall(CallRecord),
    /// Write (or rewrite) a recording's index row.
    StoreRecording(Recording),
    /// Append an entry to the event log (never rewritten).
    StoreEvent(EventRecord),
    /// Keep (or update) a callback still to be made, or, with `None`, forget it: it
    /// reached the patient or was given up.
    StoreCallback {
        call_id: String,
        pending: Option<PendingCallback>,
    },
    /// Count or observe something on `/metrics`.
    Metric(Metric),
}

/// One leg's media as negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegSpec {
    /// The socket the shell bound (see [`Output::BindRtp`]).
    pub token: PortToken,
    /// Where the phone wants its RTP.
    pub remote: SocketAddr,
    pub codec: media::codec::Codec,
    /// The phone's telephone-event payload type, if it offered one.
    pub telephone_event: Option<u8>,
    /// Our SSRC towards the phone.
    pub ssrc: u32,
}

/// What call control asks of a call's media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// The call was answered: start its media with the patient's leg.
    /// `media_timeout`: report [`MediaEvent::MediaTimeout`] after that much silence.
    Start {
        /// Our id of the call, for the media task's log span.
        call_id: String,
        patient: LegSpec,
        media_timeout: Option<Duration>,
    },
    /// Play a prompt once; [`MediaEvent::PromptFinished`] with the generation follows.
    Play { prompt: String, generation: u64 },
    /// Loop a prompt until told otherwise (hold music).
    Hold { prompt: String },
    /// Stop whatever plays.
    Silence,
    /// The agent answered at `at`: bridge the legs. `recording`: buffer both sides
    /// for the file that [`Output::OpenRecording`] opens; the file starts at `at`.
    Bridge {
        agent: LegSpec,
        recording: bool,
        at: std::time::Instant,
    },
    /// A phone changed its leg's media mid-call (re-INVITE or UPDATE): send to
    /// `remote` in `codec` from now on (re-latching there if the address moved).
    /// `send`: the phone takes our audio (else it holds the call: nothing is sent
    /// to it, and when it is the agent's, the patient hears the hold music that a
    /// `Hold` brings instead). `receive`: the phone sends (else no RTP is expected
    /// from it, and its silence does not end the call).
    Update {
        leg: Leg,
        remote: SocketAddr,
        codec: media::codec::Codec,
        telephone_event: Option<u8>,
        send: bool,
        receive: bool,
    },
    /// The agent's leg was transferred away at `at`: drop it (its socket closes), let
    /// the patient hear what plays (the next `Hold`), keep recording the patient with the
    /// agent's side marked as held until the next `Bridge` brings the next agent into
    /// the same recording.
    Unbridge { at: std::time::Instant },
    /// The agent consults another (an attended transfer), whose phone answered at `at` with
    /// `leg`: the two agents talk, the patient hears what plays (the next `Hold`) and the
    /// recording marks the agent's side as held.
    /// `agent_side`: the consulting agent's phone called the colleague itself (a second
    /// leg of its own), which talks with the consulted leg instead of the agent's leg.
    Consult {
        leg: LegSpec,
        agent_side: Option<LegSpec>,
        at: std::time::Instant,
    },
    /// The consultation ended at `at`. `transfer`: the consulted agent's leg becomes the
    /// agent's, bridged to the patient (the first agent's socket closes; the recording goes
    /// on with the new agent); else its socket closes and the first agent is back with the
    /// patient.
    ConsultEnd {
        transfer: bool,
        at: std::time::Instant,
    },
    /// Record the patient alone from `at` (a voicemail) into the file that
    /// [`Output::OpenRecording`] opens; the agent's channel stays silent, marked held.
    RecordAlone { at: std::time::Instant },
    /// The call was hung up at `at`: finish the recording there (so its length is
    /// the talk time however late this is handled), release the sockets, report `Stopped`.
    Stop { at: std::time::Instant },
}

/// One of a call's two legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leg {
    Patient,
    Agent,
}

/// What a call's media reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    Dtmf {
        call: CallId,
        digit: char,
    },
    PromptFinished {
        call: CallId,
        generation: u64,
    },
    /// No RTP from this leg's phone for the media timeout (reported once).
    MediaTimeout {
        call: CallId,
        leg: Leg,
    },
    /// The media task ended; its sockets are closed. `recording`: the
    /// recording's length and gaps, or why it failed (`None`: nothing was recorded).
    Stopped {
        call: CallId,
        recording: Option<Result<RecordingDone, String>>,
    },
}

/// Why a new call was refused with 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The configured number of calls is up (or the RTP range is full).
    Capacity,
    /// Call control is behind (lag or inbound queue depth).
    Lag,
}

impl Refusal {
    /// The reason as logged and as the metric's label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Capacity => "capacity",
            Refusal::Lag => "lag",
        }
    }
}

/// A counter or an observation for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    CallStarted,
    CallAnswered,
    CallAbandoned,
    CallRefused(Refusal),
    AgentMissedRing,
    MediaTimeout,
    /// A callback was given up (the patient never reached).
    CallbackFailed,
    /// Offer made → the desks have the pop.
    ScreenPop(Duration),
    /// Callers waiting on the line in a queue now (callbacks, off the line, not counted).
    QueueWaiting {
        queue: String,
        waiting: usize,
    },
}

/// The core's live counts (gauges on `/metrics`; all zero when idle).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    pub calls: usize,
    pub transactions: usize,
    pub transaction_timers: usize,
    pub rtp_ports: usize,
    /// Entries of the core's maps beyond one per call (SIP Call-IDs, client
    /// transactions, stale INVITEs, pending binds), to see a leak.
    pub entries: usize,
    /// Deadlines in the one timer heap.
    pub timers: usize,
}
