//! The media driver: one task per call owning the call's RTP sockets.
//!
//! It plays prompts and hold music to the patient, reports DTMF, bridges the
//! patient and the agent, and records the bridged call (each side placed by its
//! RTP timestamps on a [`Timeline`], written on the tick). Packets are relayed
//! the moment they arrive, at the length they came (any ptime up to 60 ms; no
//! jitter buffer on the path). Mid-call changes follow the signalling: a new
//! address re-latches the leg, a new codec is transcoded, and a phone that
//! holds gets nothing sent to it — when it is the agent's, the patient hears
//! hold music meanwhile and the recording marks the hold. Nothing is allocated
//! per packet: every buffer lives on the task's stack frame or in the state
//! built when the call starts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::record_sink::SinkFile;
use callcore::pii::mask_addr;
use callcore::records::{Gap, GapChannel, Hold, RecordingDone};
use callcore::{CallId, Leg, MediaEvent};
use media::codec::Codec;
use media::latch::{Admit, Latch};
use media::leg::{LegMedia, Received};
use media::player::PromptPlayer;
use media::prompt::Prompt;
use media::{FRAME_SAMPLES, MAX_PACKET_SAMPLES};
use recordings::timeline::{Channel, FrameInfo, Timeline, TimelineConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{Span, debug, warn};

type Frame = [i16; FRAME_SAMPLES];
const SILENCE: Frame = [0; FRAME_SAMPLES];
/// One frame of prompt or hold music.
const FRAME: Duration = Duration::from_millis(20);
/// The tick of a bridged call: recording frames written in batches of five, liveness checked.
const BRIDGED_TICK: Duration = Duration::from_millis(100);
/// Largest RTP datagram we accept; G.711 at 20 ms is 172 bytes.
const MAX_PACKET: usize = 1500;

/// What the driver asks of a call's media (call control's
/// [`callcore::MediaCommand`] with its prompts and sockets resolved).
// A handful of commands per call: the size of `Bridge` costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum MediaCommand {
    /// Play a prompt once to the patient; `PromptFinished` with the same generation follows.
    Play { prompt: Prompt, generation: u64 },
    /// Loop a prompt to the patient until told otherwise (hold music).
    Hold { prompt: Prompt },
    /// Stop whatever plays; the patient hears silence.
    Silence,
    /// The agent's leg answered at `at`: bridge it with the patient. `recording`:
    /// place both sides on a timeline that starts at `at`, for the file a `Record` brings.
    Bridge {
        agent: AgentLeg,
        recording: bool,
        at: Instant,
    },
    /// The recording's file (`None`: it could not be created; nothing is recorded).
    Record(Option<SinkFile>),
    /// A phone changed its leg's media mid-call (see [`callcore::MediaCommand::Update`]).
    Update {
        leg: Leg,
        remote: SocketAddr,
        codec: Codec,
        telephone_event: Option<u8>,
        flow: Flow,
    },
    /// The consulted agent answered at `at` (see [`callcore::MediaCommand::Consult`]).
    Consult {
        leg: AgentLeg,
        agent_side: Option<AgentLeg>,
        at: Instant,
    },
    /// The consultation ended (see [`callcore::MediaCommand::ConsultEnd`]).
    ConsultEnd { transfer: bool, at: Instant },
    /// The agent's leg was transferred away at `at` (see [`callcore::MediaCommand::Unbridge`]).
    Unbridge { at: Instant },
    /// Record the patient alone from `at` (see [`callcore::MediaCommand::RecordAlone`]).
    RecordAlone { at: Instant },
    /// The call was hung up at `at`: finish the recording there and stop.
    Stop { at: Instant },
}

/// The agent's side of the bridge. The socket is registered with the runtime's
/// reactor by the media task, when the bridge arrives there.
#[derive(Debug)]
pub struct AgentLeg {
    pub socket: std::net::UdpSocket,
    /// Where packets are taken from and sent to (starts at the SDP address).
    pub latch: Latch,
    pub media: LegMedia,
}

/// The patient's side, known once the INVITE has been answered.
#[derive(Debug)]
pub struct PatientLeg {
    pub socket: std::net::UdpSocket,
    /// Where packets are taken from and sent to (starts at the SDP address).
    pub latch: Latch,
    pub media: LegMedia,
}

/// Which way a leg's audio flows, as its phone last signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// The phone takes our audio (false: it holds the call).
    pub send: bool,
    /// The phone sends (false: no RTP is expected from it).
    pub receive: bool,
}

impl Flow {
    pub const BOTH: Flow = Flow {
        send: true,
        receive: true,
    };
}

enum Playing {
    Nothing,
    Prompt {
        player: PromptPlayer,
        generation: u64,
    },
    Hold(PromptPlayer),
}

/// A leg in the call's media task: its socket on the runtime's reactor.
struct LegIo {
    socket: UdpSocket,
    latch: Latch,
    media: LegMedia,
}

impl LegIo {
    /// Must run inside the runtime (tokio registers the socket with the current reactor).
    fn open(socket: std::net::UdpSocket, latch: Latch, media: LegMedia) -> std::io::Result<Self> {
        Ok(Self {
            socket: UdpSocket::from_std(socket)?,
            latch,
            media,
        })
    }
}

/// The call once an agent answered: the agent's leg (none between a transfer and
/// the next answer) and the recording, which runs from the first answer to hang-up
/// across transfers.
struct Bridge {
    agent: Option<LegIo>,
    /// The agent the agent consults (an attended transfer): the two talk, the patient
    /// hears hold music.
    consulted: Option<LegIo>,
    /// The consulting agent's own second leg, when its phone placed the consultation
    /// (its leg with the patient is held meanwhile).
    consulting: Option<LegIo>,
    recording: Option<Recorder>,
}

impl Bridge {
    /// Whether the patient hears an agent now: one is there, its phone does not hold the
    /// call and it consults nobody. Else the patient hears what plays (hold music), and the
    /// recording marks the agent's side as held.
    fn agent_heard(&self, agent_flow: Flow) -> bool {
        agent_flow.send && self.agent.is_some() && self.consulted.is_none()
    }

    /// The tick: slow while the patient hears an agent, 20 ms while it hears what plays.
    fn tick(&self, agent_flow: Flow) -> Duration {
        if self.agent_heard(agent_flow) {
            BRIDGED_TICK
        } else {
            FRAME
        }
    }
}

/// A bridged call's recording: each side placed on one timeline by its RTP
/// timestamps, written out in 20 ms frames on the tick, off the relay path.
/// A late tick writes more frames, never fewer; hang-up writes the tail. The
/// file arrives a moment after the bridge (it is created off this task): until
/// then the timeline holds the audio.
struct Recorder {
    writer: Option<SinkFile>,
    timeline: Timeline,
    /// Frames had to be dropped (warned about once per call).
    warned: bool,
    gaps: GapMarks,
    holds: HoldMarks,
    /// The latest `now` frames were taken at (the end can't be before it).
    polled_at: Instant,
    /// The call's span, the parent of what is logged.
    span: Span,
}

/// Holds per channel as they are signalled: a held side's silence is not a gap.
struct HoldMarks {
    start: Instant,
    /// The open hold of each channel (left, right): its first frame.
    open: [Option<u64>; 2],
    /// Closed holds: channel, first frame, frames.
    done: Vec<(usize, u64, u64)>,
}

impl HoldMarks {
    fn new(start: Instant) -> Self {
        Self {
            start,
            open: [None, None],
            done: Vec::new(),
        }
    }

    fn frame_at(&self, at: Instant) -> u64 {
        let ms = at.saturating_duration_since(self.start).as_millis();
        u64::try_from(ms / 20).unwrap_or(u64::MAX)
    }

    /// Channel `i`'s side holds from `at` (`on`), or stops holding.
    fn set(&mut self, at: Instant, i: usize, on: bool) {
        let frame = self.frame_at(at);
        let Some(slot) = self.open.get_mut(i) else {
            return;
        };
        match (*slot, on) {
            (None, true) => *slot = Some(frame),
            (Some(first), false) => {
                *slot = None;
                if self.done.len() < MAX_GAPS {
                    self.done.push((i, first, frame.saturating_sub(first)));
                }
            }
            _ => {}
        }
    }

    /// Whether channel `i` is held at frame `index`.
    fn covers(&self, i: usize, index: u64) -> bool {
        let open = self.open.get(i).copied().flatten();
        open.is_some_and(|first| index >= first)
            || self
                .done
                .iter()
                .any(|&(c, first, n)| c == i && index >= first && index < first + n)
    }

    fn finish(mut self, ended: Instant) -> Vec<Hold> {
        self.set(ended, 0, false);
        self.set(ended, 1, false);
        let mut holds: Vec<Hold> = self
            .done
            .iter()
            .filter(|&&(_, _, n)| n > 0)
            .map(|&(i, first, n)| Hold {
                by: if i == 0 {
                    GapChannel::Caller
                } else {
                    GapChannel::Agent
                },
                at_ms: first * 20,
                ms: n * 20,
            })
            .collect();
        holds.sort_by_key(|h| h.at_ms);
        holds
    }
}

/// Gaps per channel as frames are written: runs of frames that hold silence
/// no packet brought, at most [`MAX_GAPS`] of them (then no more are marked).
struct GapMarks {
    /// The open run of each channel (left, right): first frame, frames.
    open: [Option<(u64, u64)>; 2],
    done: Vec<Gap>,
}

/// Gaps marked per recording; a recording with more is mostly gaps anyway.
const MAX_GAPS: usize = 512;

impl GapMarks {
    fn new() -> Self {
        Self {
            open: [None, None],
            done: Vec::with_capacity(16),
        }
    }

    fn frame(&mut self, info: &FrameInfo) {
        for (i, channel) in [Channel::Left, Channel::Right].into_iter().enumerate() {
            let missing = info.missing(channel) > 0;
            match (self.open[i], missing) {
                (Some((first, n)), true) if first + n == info.index => {
                    self.open[i] = Some((first, n + 1))
                }
                (Some(_), true) => {
                    self.close(i);
                    self.open[i] = Some((info.index, 1));
                }
                (None, true) => self.open[i] = Some((info.index, 1)),
                (Some(_), false) => self.close(i),
                (None, false) => {}
            }
        }
    }

    fn close(&mut self, i: usize) {
        let Some((first, frames)) = self.open[i].take() else {
            return;
        };
        if self.done.len() >= MAX_GAPS {
            return;
        }
        let channel = if i == 0 {
            GapChannel::Caller
        } else {
            GapChannel::Agent
        };
        self.done.push(Gap {
            channel,
            at_ms: first * 20,
            ms: frames * 20,
        });
    }

    /// Frames up to `last` (the last `n` of them) never reached the file.
    fn lost(&mut self, last: u64, n: usize) {
        if n == 0 {
            return;
        }
        let frames = n as u64;
        let first = (last + 1).saturating_sub(frames);
        for channel in [GapChannel::Caller, GapChannel::Agent] {
            if self.done.len() < MAX_GAPS {
                self.done.push(Gap {
                    channel,
                    at_ms: first * 20,
                    ms: frames * 20,
                });
            }
        }
    }

    fn finish(mut self) -> Vec<Gap> {
        self.close(0);
        self.close(1);
        self.done
            .sort_by_key(|g| (g.at_ms, g.channel == GapChannel::Agent));
        self.done
    }
}

/// The recording's timeline: a channel that sends nothing holds frames back 500 ms
/// (then they are written with that channel silent, marked as a gap); the ring holds
/// 900 ms, about 31 KB a call (the default 2 s would be 70 KB). A stall of the process
/// up to about 400 ms loses nothing.
const TIMELINE: TimelineConfig = TimelineConfig {
    max_delay: Duration::from_millis(500),
    capacity_ms: 900,
    resync_after: Duration::from_secs(3),
};

/// How long a hung-up call's media waits for a recording file still being created.
const RECORDING_FILE_WAIT: Duration = Duration::from_secs(2);

impl Recorder {
    fn new(start: Instant, span: Span) -> Self {
        Self {
            span,
            writer: None,
            timeline: Timeline::new(start, TIMELINE),
            warned: false,
            gaps: GapMarks::new(),
            holds: HoldMarks::new(start),
            polled_at: start,
        }
    }

    /// Hands every frame that is final at `now` to the recordings thread (once the
    /// file is there); frames it had no room for are marked as gaps on both sides.
    fn write_due(&mut self, now: Instant) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        self.polled_at = self.polled_at.max(now);
        let mut left = SILENCE;
        let mut right = SILENCE;
        let mut last = None;
        while let Some(mut info) = self.timeline.poll_frame(now, &mut left, &mut right) {
            // A held side is silent by design: not a gap.
            if self.holds.covers(0, info.index) {
                info.left_missing = 0;
            }
            if self.holds.covers(1, info.index) {
                info.right_missing = 0;
            }
            self.gaps.frame(&info);
            last = Some(info.index);
            let dropped = writer.write_frame(&left, &right);
            self.gaps.lost(info.index, dropped);
        }
        let dropped = writer.flush();
        if let Some(index) = last {
            self.gaps.lost(index, dropped);
        }
        if writer.dropped_frames() > 0 && !self.warned {
            warn!(parent: &self.span, "recordings thread backed up: frames dropped and marked as gaps");
            self.warned = true;
        }
    }

    /// Hang-up at `ended`: the tail is written, the file finished; its length and gaps.
    async fn finish(mut self, ended: Instant) -> Result<RecordingDone, String> {
        // Frames already written stay: a hang-up handled late still ends where it was.
        let ended = ended.max(self.polled_at);
        self.timeline.finish(ended);
        self.write_due(ended);
        let stats = self.timeline.stats();
        debug!(
            parent: &self.span,
            frames = stats.frames_final,
            caller_gap_frames = stats.left.missing_frames,
            agent_gap_frames = stats.right.missing_frames,
            late_packets = stats.left.late_packets + stats.right.late_packets,
            "recording finished"
        );
        let writer = self.writer.ok_or("the recording file was never created")?;
        let duration_ms = writer.finish().await?;
        Ok(RecordingDone {
            duration_ms,
            gaps: self.gaps.finish(),
            holds: self.holds.finish(ended),
        })
    }
}

/// Tracks when a leg last sent RTP (audio, DTMF or comfort noise from the latched
/// source; not RTCP, STUN or junk), to end calls whose phones vanished without a BYE.
#[derive(Debug)]
struct Liveness {
    timeout: Option<Duration>,
    patient: Instant,
    agent: Option<Instant>,
    reported: bool,
}

impl Liveness {
    /// The leg that has been silent past the timeout, once. A leg whose phone said
    /// it sends nothing (`expected` false: patient, agent) is not counted.
    fn check(&mut self, now: Instant, expected: (bool, bool)) -> Option<Leg> {
        let timeout = self.timeout?;
        if self.reported {
            return None;
        }
        let quiet = |last: Instant| now.saturating_duration_since(last) >= timeout;
        let leg = if expected.0 && quiet(self.patient) {
            Leg::Patient
        } else if expected.1 && self.agent.is_some_and(quiet) {
            Leg::Agent
        } else {
            return None;
        };
        self.reported = true;
        Some(leg)
    }
}

/// Runs one call's media until `Stop` or until call control goes away.
///
/// `media_timeout`: report [`MediaEvent::MediaTimeout`] once a leg has sent no
/// RTP for that long. `span`: the call's, the parent of everything logged here
/// (named on each event, not entered on every poll of the task).
pub async fn run(
    call: CallId,
    patient: PatientLeg,
    mut commands: mpsc::UnboundedReceiver<MediaCommand>,
    events: mpsc::UnboundedSender<MediaEvent>,
    media_timeout: Option<Duration>,
    span: Span,
) {
    let mut patient = match LegIo::open(patient.socket, patient.latch, patient.media) {
        Ok(leg) => leg,
        Err(e) => {
            warn!(parent: &span, error = %e, "cannot use the patient's RTP socket; ending the call");
            let _ = events.send(MediaEvent::Stopped {
                call,
                recording: None,
            });
            return;
        }
    };
    let mut alive = Liveness {
        timeout: media_timeout,
        patient: now(),
        agent: None,
        reported: false,
    };
    // 20 ms while we play to the patient; once bridged only the recording and the
    // liveness check need the tick, so it slows to BRIDGED_TICK (5 times fewer wake-ups).
    let mut ticker = tokio::time::interval(FRAME);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut playing = Playing::Nothing;
    let mut patient_flow = Flow::BOTH;
    let mut agent_flow = Flow::BOTH;
    let mut stopped_at: Option<Instant> = None;
    let mut bridge: Option<Bridge> = None;
    let mut patient_buf = [0u8; MAX_PACKET];
    let mut agent_buf = [0u8; MAX_PACKET];
    let mut consulted_buf = [0u8; MAX_PACKET];
    let mut consulting_buf = [0u8; MAX_PACKET];
    let mut out = [0u8; MAX_PACKET];
    let mut pcm: Frame = SILENCE;
    let mut decoded = [0i16; MAX_PACKET_SAMPLES];

    loop {
        // Branches in random order (tokio's default): a flood of datagrams at one leg's
        // port cannot starve the other leg, the commands or the tick.
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { break };
                match command {
                    MediaCommand::Play { prompt, generation } => {
                        playing = Playing::Prompt { player: PromptPlayer::new(prompt, false), generation };
                    }
                    MediaCommand::Hold { prompt } => playing = Playing::Hold(PromptPlayer::new(prompt, true)),
                    MediaCommand::Silence => playing = Playing::Nothing,
                    MediaCommand::Bridge { agent, recording, at } => {
                        let agent = match LegIo::open(agent.socket, agent.latch, agent.media) {
                            Ok(agent) => agent,
                            Err(e) => {
                                // Call control hears the call end as a media stop.
                                warn!(parent: &span, error = %e, "cannot use the agent's RTP socket; ending the call");
                                break;
                            }
                        };
                        playing = Playing::Nothing;
                        alive.agent = Some(now());
                        match bridge.as_mut() {
                            // The next agent after a transfer: the recording goes on.
                            Some(b) => {
                                if let Some(r) = b.recording.as_mut() {
                                    r.holds.set(at, 1, false);
                                }
                                b.agent = Some(agent);
                            }
                            None => {
                                let recording = recording.then(|| Recorder::new(at, span.clone()));
                                bridge = Some(Bridge { agent: Some(agent), consulted: None, consulting: None, recording });
                            }
                        }
                        agent_flow = Flow::BOTH;
                        ticker = bridged_ticker(BRIDGED_TICK);
                    }
                    MediaCommand::Unbridge { at } => {
                        // The agent's leg goes (its socket closes); the patient hears what
                        // plays next (hold music) and the recording marks the agent's side
                        // as held until the next agent answers.
                        if let Some(b) = bridge.as_mut() {
                            b.agent = None;
                            if let Some(r) = b.recording.as_mut() {
                                r.holds.set(at, 1, true);
                            }
                        }
                        alive.agent = None;
                        agent_flow = Flow::BOTH;
                        ticker = bridged_ticker(FRAME);
                    }
                    MediaCommand::Consult { leg, agent_side, at } => {
                        let Some(b) = bridge.as_mut() else { continue };
                        let opened = LegIo::open(leg.socket, leg.latch, leg.media).and_then(|leg| {
                            let side = agent_side
                                .map(|s| LegIo::open(s.socket, s.latch, s.media))
                                .transpose()?;
                            Ok((leg, side))
                        });
                        let (leg, side) = match opened {
                            Ok(legs) => legs,
                            Err(e) => {
                                warn!(parent: &span, error = %e, "cannot use a consultation's RTP socket; ending the call");
                                break;
                            }
                        };
                        b.consulted = Some(leg);
                        b.consulting = side;
                        if let Some(r) = b.recording.as_mut() {
                            r.holds.set(at, 1, true);
                        }
                        // The patient hears hold music on the 20 ms tick meanwhile.
                        ticker = bridged_ticker(b.tick(agent_flow));
                    }
                    MediaCommand::ConsultEnd { transfer, at } => {
                        let Some(b) = bridge.as_mut() else { continue };
                        b.consulting = None;
                        let Some(consulted) = b.consulted.take() else { continue };
                        if transfer {
                            // The first agent's socket closes as its leg drops.
                            b.agent = Some(consulted);
                            agent_flow = Flow::BOTH;
                            alive.agent = Some(now());
                        }
                        // Back to an agent, unless the agent's phone still holds the call.
                        let heard = b.agent_heard(agent_flow);
                        if let Some(r) = b.recording.as_mut() {
                            r.holds.set(at, 1, !heard);
                        }
                        ticker = bridged_ticker(b.tick(agent_flow));
                    }
                    MediaCommand::RecordAlone { at } => {
                        // A voicemail: the patient's side only, nobody on the other.
                        if bridge.is_none() {
                            let mut recorder = Recorder::new(at, span.clone());
                            recorder.holds.set(at, 1, true);
                            bridge = Some(Bridge { agent: None, consulted: None, consulting: None, recording: Some(recorder) });
                            ticker = bridged_ticker(FRAME);
                        }
                    }
                    MediaCommand::Record(writer) => record_to(bridge.as_mut(), writer),
                    MediaCommand::Update { leg, remote, codec, telephone_event, flow } => {
                        let now = now();
                        let (latch, media, was) = match leg {
                            Leg::Patient => (&mut patient.latch, &mut patient.media, &mut patient_flow),
                            Leg::Agent => match bridge.as_mut().and_then(|b| b.agent.as_mut()) {
                                Some(a) => (&mut a.latch, &mut a.media, &mut agent_flow),
                                None => continue,
                            },
                        };
                        latch.signal(remote);
                        media.renegotiate(codec, telephone_event);
                        if flow.receive && !was.receive {
                            // Its silence counts from now, not from before it went quiet.
                            match leg {
                                Leg::Patient => alive.patient = now,
                                Leg::Agent => alive.agent = Some(now),
                            }
                        }
                        *was = flow;
                        debug!(parent: &span, ?leg, source = %mask_addr(remote), ?codec, ?flow, "leg media changed");
                        if let Some(b) = bridge.as_mut() {
                            // The agent's side is held while the patient does not hear it
                            // (its phone holds, or it consults another).
                            let (channel, held) = match leg {
                                Leg::Patient => (0, !flow.send),
                                Leg::Agent => (1, !b.agent_heard(agent_flow)),
                            };
                            if let Some(r) = b.recording.as_mut() {
                                r.holds.set(now, channel, held);
                            }
                            // While the agent holds, the patient hears hold music on a 20 ms tick.
                            let tick = b.tick(agent_flow);
                            if ticker.period() != tick {
                                ticker = bridged_ticker(tick);
                            }
                        }
                    }
                    MediaCommand::Stop { at } => {
                        stopped_at = Some(at);
                        break;
                    }
                }
            }
            received = patient.socket.recv_from(&mut patient_buf) => {
                let Ok((n, from)) = received else { continue };
                let Some(packet) = patient_buf.get(..n) else { continue };
                if !admitted(&mut patient.latch, from, packet, Leg::Patient, &span) {
                    continue;
                }
                // Any RTP from the phone keeps the call up: audio, a digit, or the comfort
                // noise a phone with silence suppression sends while its user listens.
                let now = now();
                alive.patient = now;
                match patient.media.handle_rtp(packet, &mut decoded) {
                    Received::Dtmf(digit) => {
                        let _ = events.send(MediaEvent::Dtmf { call, digit });
                    }
                    Received::Audio(n) => {
                        if let Some(b) = bridge.as_mut() {
                            // While the agent consults another, the patient is not heard.
                            let consulting = b.consulted.is_some();
                            if let Some(agent) = b.agent.as_mut().filter(|_| agent_flow.send && !consulting) {
                                let len = relay(&patient.media, decoded.get(..n).unwrap_or_default(), &mut agent.media, &mut out);
                                if let Some(bytes) = out.get(..len) {
                                    let _ = agent.socket.try_send_to(bytes, agent.latch.target());
                                }
                            }
                            if let Some(r) = b.recording.as_mut() {
                                let (ssrc, ts) = patient.media.last_audio();
                                let samples = decoded.get(..n).unwrap_or_default();
                                r.timeline.push(now, Channel::Left, ssrc, ts, samples);
                            }
                        }
                    }
                    Received::Ignored => {}
                }
            }
            received = recv_on(bridge.as_ref().and_then(|b| b.consulted.as_ref()), &mut consulted_buf) => {
                // The consulted agent talks with the agent only: not heard by the patient,
                // not recorded.
                let Ok((n, from)) = received else { continue };
                let Some(b) = bridge.as_mut() else { continue };
                let Some(consulted) = b.consulted.as_mut() else { continue };
                let Some(packet) = consulted_buf.get(..n) else { continue };
                if !admitted(&mut consulted.latch, from, packet, Leg::Agent, &span) {
                    continue;
                }
                if let Received::Audio(n) = consulted.media.handle_rtp(packet, &mut decoded)
                    && let Some(agent) = b.consulting.as_mut().or(b.agent.as_mut())
                {
                    let len = relay(&consulted.media, decoded.get(..n).unwrap_or_default(), &mut agent.media, &mut out);
                    if let Some(bytes) = out.get(..len) {
                        let _ = agent.socket.try_send_to(bytes, agent.latch.target());
                    }
                }
            }
            received = recv_on(bridge.as_ref().and_then(|b| b.consulting.as_ref()), &mut consulting_buf) => {
                // The consulting phone's own leg talks with the consulted agent only.
                let Ok((n, from)) = received else { continue };
                let Some(b) = bridge.as_mut() else { continue };
                let Some(consulting) = b.consulting.as_mut() else { continue };
                let Some(packet) = consulting_buf.get(..n) else { continue };
                if !admitted(&mut consulting.latch, from, packet, Leg::Agent, &span) {
                    continue;
                }
                if let Received::Audio(n) = consulting.media.handle_rtp(packet, &mut decoded)
                    && let Some(consulted) = b.consulted.as_mut()
                {
                    let len = relay(&consulting.media, decoded.get(..n).unwrap_or_default(), &mut consulted.media, &mut out);
                    if let Some(bytes) = out.get(..len) {
                        let _ = consulted.socket.try_send_to(bytes, consulted.latch.target());
                    }
                }
            }
            received = recv_on(bridge.as_ref().and_then(|b| b.agent.as_ref()), &mut agent_buf) => {
                let Ok((n, from)) = received else { continue };
                let Some(b) = bridge.as_mut() else { continue };
                let Some(agent) = b.agent.as_mut() else { continue };
                let Some(packet) = agent_buf.get(..n) else { continue };
                if !admitted(&mut agent.latch, from, packet, Leg::Agent, &span) {
                    continue;
                }
                let now = now();
                alive.agent = Some(now);
                let received = agent.media.handle_rtp(packet, &mut decoded);
                if let Received::Dtmf(digit) = received {
                    // A key the agent pressed (a browser phone's keypad, a desk phone's) goes
                    // on to the patient as RFC 4733, when the patient hears the agent.
                    let heard = agent_flow.send && patient_flow.send && b.consulted.is_none();
                    let mut packets = [[0u8; media::leg::DIGIT_PACKET_LEN]; 4];
                    if heard && let Some(n) = patient.media.write_digit(digit, &mut packets) {
                        for p in packets.iter().take(n) {
                            let _ = patient.socket.try_send_to(p, patient.latch.target());
                        }
                        debug!(parent: &span, "agent's key relayed to the patient");
                    }
                    continue;
                }
                if let Received::Audio(n) = received {
                    if b.consulting.is_some() && b.consulted.is_some() {
                        // The phone consults on a leg of its own: this one is held.
                        continue;
                    }
                    if let Some(consulted) = b.consulted.as_mut() {
                        // Consulting: the agent is heard by the consulted agent only.
                        let len = relay(&agent.media, decoded.get(..n).unwrap_or_default(), &mut consulted.media, &mut out);
                        if let Some(bytes) = out.get(..len) {
                            let _ = consulted.socket.try_send_to(bytes, consulted.latch.target());
                        }
                        continue;
                    }
                    if !agent_flow.send {
                        // The agent holds: what its phone sends (its own music, or the
                        // agent's voice) is neither heard by the patient nor recorded.
                        continue;
                    }
                    if !patient_flow.send {
                        continue;
                    }
                    let len = relay(&agent.media, decoded.get(..n).unwrap_or_default(), &mut patient.media, &mut out);
                    if let Some(bytes) = out.get(..len) {
                        let _ = patient.socket.try_send_to(bytes, patient.latch.target());
                    }
                    if let Some(r) = b.recording.as_mut() {
                        let (ssrc, ts) = agent.media.last_audio();
                        let samples = decoded.get(..n).unwrap_or_default();
                        r.timeline.push(now, Channel::Right, ssrc, ts, samples);
                    }
                }
            }
            _ = ticker.tick() => {
                if let Some(leg) = alive.check(now(), (patient_flow.receive, agent_flow.receive)) {
                    warn!(parent: &span, ?leg, "no RTP from the phone: ending the call");
                    let _ = events.send(MediaEvent::MediaTimeout { call, leg });
                }
                if let Some(b) = bridge.as_mut() {
                    if let Some(r) = b.recording.as_mut() {
                        r.write_due(now());
                    }
                    if b.agent_heard(agent_flow) {
                        continue;
                    }
                    // The agent holds, consults another, or was transferred away: the
                    // patient hears what plays (hold music).
                }
                let finished = match &mut playing {
                    Playing::Nothing => { pcm = SILENCE; None }
                    Playing::Hold(player) => { player.next_frame(&mut pcm); None }
                    Playing::Prompt { player, generation } => {
                        if player.next_frame(&mut pcm) { None } else { Some(*generation) }
                    }
                };
                let len = patient.media.write_audio(&pcm, &mut out);
                if let Some(bytes) = out.get(..len).filter(|_| patient_flow.send) {
                    let _ = patient.socket.try_send_to(bytes, patient.latch.target());
                }
                if let Some(generation) = finished {
                    playing = Playing::Nothing;
                    let _ = events.send(MediaEvent::PromptFinished { call, generation });
                }
            }
        }
    }

    let ended = stopped_at.unwrap_or_else(now);
    let mut recording = bridge.and_then(|b| b.recording);
    if recording.as_ref().is_some_and(|r| r.writer.is_none()) {
        // The file is still being created: wait for it (bounded), then finish.
        recording = wait_for_file(recording, &mut commands).await;
    }
    let recording = match recording {
        Some(r) => Some(r.finish(ended).await),
        None => None,
    };
    debug!(parent: &span, "media stopped");
    let _ = events.send(MediaEvent::Stopped { call, recording });
}

/// The tick of a bridged call, first due one period from now.
fn bridged_ticker(period: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// The driver's answer to the recording's file: the file, or none at all.
fn record_to(bridge: Option<&mut Bridge>, writer: Option<SinkFile>) {
    let Some(b) = bridge else { return };
    match writer {
        Some(w) => {
            if let Some(r) = b.recording.as_mut() {
                r.writer = Some(w);
            }
        }
        None => b.recording = None,
    }
}

/// After `Stop`, waits up to [`RECORDING_FILE_WAIT`] for the recording's file.
async fn wait_for_file(
    mut recording: Option<Recorder>,
    commands: &mut mpsc::UnboundedReceiver<MediaCommand>,
) -> Option<Recorder> {
    let deadline = tokio::time::sleep(RECORDING_FILE_WAIT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return recording,
            command = commands.recv() => match command {
                Some(MediaCommand::Record(Some(w))) => {
                    if let Some(r) = recording.as_mut() {
                        r.writer = Some(w);
                    }
                    return recording;
                }
                Some(MediaCommand::Record(None)) | None => return None,
                Some(_) => {}
            },
        }
    }
}

/// The media's clock: tokio's, so tests can pause and advance it.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Relays the packet `from` just received to `to` at the length it came (any ptime
/// up to 60 ms, every sample) and with the sender's spacing (a loss before us stays a
/// gap the phone conceals): the payload as it came when both legs use the same codec,
/// else transcoded from `decoded`.
fn relay(from: &LegMedia, decoded: &[i16], to: &mut LegMedia, out: &mut [u8]) -> usize {
    if from.codec() == to.codec() {
        return to.write_relayed(from.last_payload(), from.last_header(), out);
    }
    to.write_pcm_relayed(decoded, from.last_header(), out)
}

/// The next datagram on `leg`'s socket; never, while there is no such leg.
async fn recv_on(leg: Option<&LegIo>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match leg {
        Some(leg) => leg.socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Whether a packet from `from` belongs to the leg (symmetric RTP, [`Latch`]). A latch or
/// move is logged; the first packet dropped from elsewhere is warned about, then every
/// 1,000th, with the source masked.
fn admitted(latch: &mut Latch, from: SocketAddr, packet: &[u8], leg: Leg, span: &Span) -> bool {
    match latch.admit(from, packet) {
        Admit::Accept => true,
        Admit::Latched(to) => {
            debug!(parent: span, ?leg, source = %mask_addr(to), "RTP latched");
            true
        }
        Admit::NotMedia => false,
        Admit::Reject => {
            let n = latch.rejected();
            if n % 1000 == 1 {
                warn!(parent: span, ?leg, source = %mask_addr(from), dropped = n, "RTP from an unexpected source dropped");
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(index: u64, left_missing: u16, right_missing: u16) -> FrameInfo {
        FrameInfo {
            index,
            left_missing,
            right_missing,
        }
    }

    #[test]
    fn gaps_are_runs_of_frames_without_packets_per_channel() {
        let mut marks = GapMarks::new();
        // Agent silent for the first 3 frames; the caller loses frames 5-6 and half of 9.
        for i in 0..12u64 {
            let left = match i {
                5 | 6 => 160,
                9 => 80,
                _ => 0,
            };
            let right = if i < 3 { 160 } else { 0 };
            marks.frame(&info(i, left, right));
        }
        let gaps = marks.finish();
        let at = |channel, at_ms, ms| Gap { channel, at_ms, ms };
        assert_eq!(
            gaps,
            vec![
                at(GapChannel::Agent, 0, 60),
                at(GapChannel::Caller, 100, 40),
                at(GapChannel::Caller, 180, 20),
            ]
        );
    }

    #[test]
    fn a_held_side_is_marked_as_a_hold_and_its_silence_is_not_a_gap() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut holds = HoldMarks::new(start);
        holds.set(at(1_000), 1, true);
        holds.set(at(1_500), 1, true); // a second hold offer changes nothing
        assert!(
            holds.covers(1, 50) && holds.covers(1, 10_000),
            "open: held from frame 50 on"
        );
        holds.set(at(3_000), 1, false);
        holds.set(at(4_000), 0, true); // the caller holds to the end
        assert!(!holds.covers(1, 49) && holds.covers(1, 149) && !holds.covers(1, 150));
        assert!(!holds.covers(0, 100) && holds.covers(0, 200));
        assert_eq!(
            holds.finish(at(5_000)),
            vec![
                Hold {
                    by: GapChannel::Agent,
                    at_ms: 1_000,
                    ms: 2_000
                },
                Hold {
                    by: GapChannel::Caller,
                    at_ms: 4_000,
                    ms: 1_000
                },
            ]
        );
    }

    #[test]
    fn a_gap_still_open_at_hang_up_is_marked_and_marks_are_bounded() {
        let mut marks = GapMarks::new();
        marks.frame(&info(0, 0, 0));
        marks.frame(&info(1, 160, 0));
        assert_eq!(
            marks.finish(),
            vec![Gap {
                channel: GapChannel::Caller,
                at_ms: 20,
                ms: 20
            }]
        );
        let mut many = GapMarks::new();
        for i in 0..(4 * MAX_GAPS as u64) {
            many.frame(&info(i, if i % 2 == 0 { 160 } else { 0 }, 0));
        }
        assert_eq!(many.finish().len(), MAX_GAPS);
    }
}
