//! The media driver: one task per call owning the call's RTP sockets.
//!
//! It plays prompts and hold music to the patient, reports DTMF, bridges the
//! patient and the agent, and records the bridged call (each side placed by its
//! RTP timestamps on a [`Timeline`], written on the tick). Packets are relayed
//! the moment they arrive (no jitter buffer on the path), so the bridge adds
//! at most the 20 ms frame the phone already packed. Nothing is allocated per
//! packet: every buffer lives on the task's stack frame or in the state built
//! when the call starts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::record_sink::SinkFile;
use callcore::pii::mask_addr;
use callcore::records::{Gap, GapChannel, RecordingDone};
use callcore::{CallId, Leg, MediaEvent};
use media::FRAME_SAMPLES;
use media::latch::{Admit, Latch};
use media::leg::{LegMedia, Received};
use media::player::PromptPlayer;
use media::prompt::Prompt;
use recordings::timeline::{Channel, FrameInfo, Timeline, TimelineConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{debug, warn};

type Frame = [i16; FRAME_SAMPLES];
const SILENCE: Frame = [0; FRAME_SAMPLES];
/// One frame of prompt or hold music.
const FRAME: Duration = Duration::from_millis(20);
/// The tick of a bridged call: recording frames written in batches of five, liveness checked.
const BRIDGED_TICK: Duration = Duration::from_millis(100);
/// Largest RTP datagram we accept; G.711 at 20 ms is 172 bytes.
const MAX_PACKET: usize = 1500;
/// Decoded samples of the longest packet we place whole (60 ms).
const MAX_PACKET_SAMPLES: usize = 480;

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
    /// The call was hung up at `at`: finish the recording there and stop.
    Stop { at: Instant },
}

/// The agent's side of the bridge.
#[derive(Debug)]
pub struct AgentLeg {
    pub socket: UdpSocket,
    /// Where packets are taken from and sent to (starts at the SDP address).
    pub latch: Latch,
    pub media: LegMedia,
}

/// The patient's side, known once the INVITE has been answered.
#[derive(Debug)]
pub struct PatientLeg {
    pub socket: UdpSocket,
    /// Where packets are taken from and sent to (starts at the SDP address).
    pub latch: Latch,
    pub media: LegMedia,
}

enum Playing {
    Nothing,
    Prompt {
        player: PromptPlayer,
        generation: u64,
    },
    Hold(PromptPlayer),
}

struct Bridge {
    agent: AgentLeg,
    recording: Option<Recorder>,
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
    /// The latest `now` frames were taken at (the end can't be before it).
    polled_at: Instant,
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
    fn new(start: Instant) -> Self {
        Self {
            writer: None,
            timeline: Timeline::new(start, TIMELINE),
            warned: false,
            gaps: GapMarks::new(),
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
        while let Some(info) = self.timeline.poll_frame(now, &mut left, &mut right) {
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
            warn!("recordings thread backed up: frames dropped and marked as gaps");
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
        })
    }
}

/// Tracks when a leg last sent RTP worth keeping a call up for (audio or DTMF,
/// not junk or RTCP), to end calls whose phones vanished without a BYE.
#[derive(Debug)]
struct Liveness {
    timeout: Option<Duration>,
    patient: Instant,
    agent: Option<Instant>,
    reported: bool,
}

impl Liveness {
    /// The leg that has been silent past the timeout, once.
    fn check(&mut self, now: Instant) -> Option<Leg> {
        let timeout = self.timeout?;
        if self.reported {
            return None;
        }
        let quiet = |last: Instant| now.saturating_duration_since(last) >= timeout;
        let leg = if quiet(self.patient) {
            Leg::Patient
        } else if self.agent.is_some_and(quiet) {
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
/// RTP for that long.
pub async fn run(
    call: CallId,
    mut patient: PatientLeg,
    mut commands: mpsc::UnboundedReceiver<MediaCommand>,
    events: mpsc::UnboundedSender<MediaEvent>,
    media_timeout: Option<Duration>,
) {
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
    let mut stopped_at: Option<Instant> = None;
    let mut bridge: Option<Bridge> = None;
    let mut patient_buf = [0u8; MAX_PACKET];
    let mut agent_buf = [0u8; MAX_PACKET];
    let mut out = [0u8; MAX_PACKET];
    let mut pcm: Frame = SILENCE;
    let mut decoded = [0i16; MAX_PACKET_SAMPLES];

    loop {
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
                        playing = Playing::Nothing;
                        alive.agent = Some(now());
                        let recording = recording.then(|| Recorder::new(at));
                        bridge = Some(Bridge { agent, recording });
                        ticker = tokio::time::interval_at(tokio::time::Instant::now() + BRIDGED_TICK, BRIDGED_TICK);
                        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    }
                    MediaCommand::Record(writer) => record_to(bridge.as_mut(), writer),
                    MediaCommand::Stop { at } => {
                        stopped_at = Some(at);
                        break;
                    }
                }
            }
            received = patient.socket.recv_from(&mut patient_buf) => {
                let Ok((n, from)) = received else { continue };
                let Some(packet) = patient_buf.get(..n) else { continue };
                if !admitted(&mut patient.latch, from, packet, Leg::Patient) {
                    continue;
                }
                match patient.media.handle_rtp(packet, &mut decoded) {
                    Received::Dtmf(digit) => {
                        alive.patient = now();
                        let _ = events.send(MediaEvent::Dtmf { call, digit });
                    }
                    Received::Audio(n) => {
                        let now = now();
                        alive.patient = now;
                        if let Some(b) = bridge.as_mut() {
                            let len = relay(&patient.media, &decoded, &mut pcm, &mut b.agent.media, &mut out);
                            if let Some(bytes) = out.get(..len) {
                                let _ = b.agent.socket.try_send_to(bytes, b.agent.latch.target());
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
            received = recv_agent(bridge.as_ref(), &mut agent_buf) => {
                let Ok((n, from)) = received else { continue };
                let Some(b) = bridge.as_mut() else { continue };
                let Some(packet) = agent_buf.get(..n) else { continue };
                if !admitted(&mut b.agent.latch, from, packet, Leg::Agent) {
                    continue;
                }
                if let Received::Audio(n) = b.agent.media.handle_rtp(packet, &mut decoded) {
                    let now = now();
                    alive.agent = Some(now);
                    let len = relay(&b.agent.media, &decoded, &mut pcm, &mut patient.media, &mut out);
                    if let Some(bytes) = out.get(..len) {
                        let _ = patient.socket.try_send_to(bytes, patient.latch.target());
                    }
                    if let Some(r) = b.recording.as_mut() {
                        let (ssrc, ts) = b.agent.media.last_audio();
                        let samples = decoded.get(..n).unwrap_or_default();
                        r.timeline.push(now, Channel::Right, ssrc, ts, samples);
                    }
                }
            }
            _ = ticker.tick() => {
                if let Some(leg) = alive.check(now()) {
                    warn!(?leg, "no RTP from the phone: ending the call");
                    let _ = events.send(MediaEvent::MediaTimeout { call, leg });
                }
                if let Some(b) = bridge.as_mut() {
                    if let Some(r) = b.recording.as_mut() {
                        r.write_due(now());
                    }
                    continue;
                }
                let finished = match &mut playing {
                    Playing::Nothing => { pcm = SILENCE; None }
                    Playing::Hold(player) => { player.next_frame(&mut pcm); None }
                    Playing::Prompt { player, generation } => {
                        if player.next_frame(&mut pcm) { None } else { Some(*generation) }
                    }
                };
                let len = patient.media.write_audio(&pcm, &mut out);
                if let Some(bytes) = out.get(..len) {
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
    debug!("media stopped");
    let _ = events.send(MediaEvent::Stopped { call, recording });
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

/// Relays the packet `from` just received to `to` as one 20 ms frame: the payload as
/// it came when both legs use the same codec, else transcoded through `pcm`.
fn relay(
    from: &LegMedia,
    decoded: &[i16; MAX_PACKET_SAMPLES],
    pcm: &mut Frame,
    to: &mut LegMedia,
    out: &mut [u8],
) -> usize {
    if from.codec() == to.codec() {
        return to.write_encoded(from.last_payload(), out);
    }
    copy_frame(decoded, pcm);
    to.write_audio(pcm, out)
}

/// The first 20 ms of a decoded packet, for the relay (which sends 20 ms frames).
fn copy_frame(decoded: &[i16; MAX_PACKET_SAMPLES], frame: &mut Frame) {
    if let Some(head) = decoded.get(..FRAME_SAMPLES) {
        frame.copy_from_slice(head);
    }
}

async fn recv_agent(
    bridge: Option<&Bridge>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match bridge {
        Some(b) => b.agent.socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Whether a packet from `from` belongs to the leg (symmetric RTP, [`Latch`]). A latch or
/// move is logged; the first packet dropped from elsewhere is warned about, then every
/// 1,000th, with the source masked.
fn admitted(latch: &mut Latch, from: SocketAddr, packet: &[u8], leg: Leg) -> bool {
    match latch.admit(from, packet) {
        Admit::Accept => true,
        Admit::Latched(to) => {
            debug!(?leg, source = %mask_addr(to), "RTP latched");
            true
        }
        Admit::Reject => {
            let n = latch.rejected();
            if n % 1000 == 1 {
                warn!(?leg, source = %mask_addr(from), dropped = n, "RTP from an unexpected source dropped");
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
