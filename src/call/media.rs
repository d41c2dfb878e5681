//! The media driver: one task per call owning the call's RTP sockets.
//!
//! It plays prompts and hold music to the patient, reports DTMF, bridges the
//! patient and the agent, and records the bridged call. Packets are relayed
//! the moment they arrive (no jitter buffer on the path), so the bridge adds
//! at most the 20 ms frame the phone already packed. Nothing is allocated per
//! packet: every buffer lives on the task's stack frame or in the state built
//! when the call starts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use media::FRAME_SAMPLES;
use media::leg::{LegMedia, Received};
use media::player::PromptPlayer;
use media::prompt::Prompt;
use recordings::writer::{RecordingInfo, RecordingWriter};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{debug, warn};

use super::CallId;
use super::ports::Lease;

type Frame = [i16; FRAME_SAMPLES];
const SILENCE: Frame = [0; FRAME_SAMPLES];
/// Largest RTP datagram we accept; G.711 at 20 ms is 172 bytes.
const MAX_PACKET: usize = 1500;

/// What call control asks of a call's media.
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
    /// The agent's leg has answered: bridge it with the patient, recording if given a writer.
    Bridge {
        agent: AgentLeg,
        recording: Option<RecordingWriter>,
    },
    /// The call is over: finish the recording and stop.
    Stop,
}

/// The agent's side of the bridge.
#[derive(Debug)]
pub struct AgentLeg {
    pub socket: UdpSocket,
    pub lease: Lease,
    pub remote: SocketAddr,
    pub media: LegMedia,
}

/// What a call's media reports back to call control.
#[derive(Debug)]
pub enum MediaEvent {
    Dtmf {
        call: CallId,
        digit: char,
    },
    PromptFinished {
        call: CallId,
        generation: u64,
    },
    /// No RTP from this leg's phone for the configured media timeout (reported once).
    MediaTimeout {
        call: CallId,
        leg: Leg,
    },
    Stopped {
        call: CallId,
        recording: Option<Result<RecordingInfo, String>>,
    },
}

/// The patient's side, known once the INVITE has been answered.
#[derive(Debug)]
pub struct PatientLeg {
    pub socket: UdpSocket,
    pub lease: Lease,
    pub remote: SocketAddr,
    pub media: LegMedia,
}

/// Which leg's phone went quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    Patient,
    Agent,
}

/// A fixed-capacity queue of frames: absorbs arrival jitter between the two
/// legs so that the recording's channels stay aligned.
struct FrameQueue {
    frames: [Frame; 4],
    head: usize,
    len: usize,
}

impl FrameQueue {
    const fn new() -> Self {
        Self {
            frames: [SILENCE; 4],
            head: 0,
            len: 0,
        }
    }

    fn push(&mut self, frame: &Frame) {
        let cap = self.frames.len();
        if self.len == cap {
            // Full: the oldest frame is dropped (the phone sent faster than the clock).
            self.head = (self.head + 1) % cap;
            self.len -= 1;
        }
        let tail = (self.head + self.len) % cap;
        self.frames[tail] = *frame;
        self.len += 1;
    }

    fn pop_into(&mut self, out: &mut Frame) {
        if self.len == 0 {
            *out = SILENCE;
            return;
        }
        *out = self.frames[self.head];
        self.head = (self.head + 1) % self.frames.len();
        self.len -= 1;
    }
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
    recording: Option<RecordingWriter>,
    left: FrameQueue,
    right: FrameQueue,
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
        patient: super::control::now(),
        agent: None,
        reported: false,
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut playing = Playing::Nothing;
    let mut bridge: Option<Bridge> = None;
    let mut patient_buf = [0u8; MAX_PACKET];
    let mut agent_buf = [0u8; MAX_PACKET];
    let mut out = [0u8; MAX_PACKET];
    let mut pcm: Frame = SILENCE;
    let mut recording_error: Option<String> = None;

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
                    MediaCommand::Bridge { agent, recording } => {
                        playing = Playing::Nothing;
                        alive.agent = Some(super::control::now());
                        bridge = Some(Bridge { agent, recording, left: FrameQueue::new(), right: FrameQueue::new() });
                    }
                    MediaCommand::Stop => break,
                }
            }
            received = patient.socket.recv_from(&mut patient_buf) => {
                let Ok((n, _from)) = received else { continue };
                let Some(packet) = patient_buf.get(..n) else { continue };
                match patient.media.handle_rtp(packet, &mut pcm) {
                    Received::Dtmf(digit) => {
                        alive.patient = super::control::now();
                        let _ = events.send(MediaEvent::Dtmf { call, digit });
                    }
                    Received::Audio(_) => {
                        alive.patient = super::control::now();
                        if let Some(b) = bridge.as_mut() {
                            let len = b.agent.media.write_audio(&pcm, &mut out);
                            if let Some(bytes) = out.get(..len) {
                                let _ = b.agent.socket.try_send_to(bytes, b.agent.remote);
                            }
                            if b.recording.is_some() {
                                b.left.push(&pcm);
                            }
                        }
                    }
                    Received::Ignored => {}
                }
            }
            received = recv_agent(bridge.as_ref(), &mut agent_buf) => {
                let Ok(n) = received else { continue };
                let Some(b) = bridge.as_mut() else { continue };
                let Some(packet) = agent_buf.get(..n) else { continue };
                if let Received::Audio(_) = b.agent.media.handle_rtp(packet, &mut pcm) {
                    alive.agent = Some(super::control::now());
                    let len = patient.media.write_audio(&pcm, &mut out);
                    if let Some(bytes) = out.get(..len) {
                        let _ = patient.socket.try_send_to(bytes, patient.remote);
                    }
                    if b.recording.is_some() {
                        b.right.push(&pcm);
                    }
                }
            }
            _ = ticker.tick() => {
                if let Some(leg) = alive.check(super::control::now()) {
                    warn!(?leg, "no RTP from the phone: ending the call");
                    let _ = events.send(MediaEvent::MediaTimeout { call, leg });
                }
                if let Some(b) = bridge.as_mut() {
                    record_tick(b, &mut recording_error);
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
                    let _ = patient.socket.try_send_to(bytes, patient.remote);
                }
                if let Some(generation) = finished {
                    playing = Playing::Nothing;
                    let _ = events.send(MediaEvent::PromptFinished { call, generation });
                }
            }
        }
    }

    let recording = bridge
        .and_then(|b| b.recording)
        .map(|writer| match recording_error {
            Some(e) => Err(e),
            None => writer.finish().map_err(|e| e.to_string()),
        });
    debug!("media stopped");
    let _ = events.send(MediaEvent::Stopped { call, recording });
}

/// One 20 ms step of the recording: a frame from each side (silence if none came).
fn record_tick(b: &mut Bridge, error: &mut Option<String>) {
    let Some(writer) = b.recording.as_mut() else {
        return;
    };
    if error.is_some() {
        return;
    }
    let mut left = SILENCE;
    let mut right = SILENCE;
    b.left.pop_into(&mut left);
    b.right.pop_into(&mut right);
    if let Err(e) = writer.write_frame(&left, &right) {
        warn!(error = %e, "recording stopped: write failed");
        *error = Some(e.to_string());
    }
}

async fn recv_agent(bridge: Option<&Bridge>, buf: &mut [u8]) -> std::io::Result<usize> {
    match bridge {
        Some(b) => b.agent.socket.recv_from(buf).await.map(|(n, _)| n),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_queue_keeps_order_drops_oldest_and_pads_with_silence() {
        let mut q = FrameQueue::new();
        let mut out = SILENCE;
        q.pop_into(&mut out);
        assert_eq!(out, SILENCE, "empty queue gives silence");
        for v in 1..=5i16 {
            q.push(&[v; FRAME_SAMPLES]);
        }
        // Capacity 4: frame 1 was dropped.
        for v in 2..=5i16 {
            q.pop_into(&mut out);
            assert_eq!(out[0], v);
        }
        q.pop_into(&mut out);
        assert_eq!(out, SILENCE);
    }
}
