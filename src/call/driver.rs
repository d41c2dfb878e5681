//! The driver: the async shell around call control's sans-IO core.
//!
//! One task owns the [`Core`]. It feeds it SIP messages, media events, HTTP
//! commands and the answers to what it asked for (a port bound, a patient
//! record read, a screen-pop delivered, a recording file created), sleeps
//! until the core's next deadline, and applies the core's outputs in order:
//! bytes onto sockets, commands to media tasks, rows to the store writer,
//! events to desks. Nothing here decides anything about a call.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callcore::{CallId, Core, LegSpec, MediaEvent, Metric, Output, PortToken};
use media::leg::LegMedia;
use recordings::writer::{RecordingWriter, frames_in_ms};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, trace, warn};

use super::media::{self as call_media, AgentLeg, MediaCommand, PatientLeg, now};
use crate::config::Config;
use crate::control::{ConsultStep, ControlCommand};
use crate::events::DeskHub;
use crate::metrics::Metrics;
use crate::prompts::Prompts;
use crate::sip_io::{Inbound, SipIo};
use crate::storage::Storage;
use crate::storage::writer::StoreWriter;

/// Everything the driver is built from.
pub struct DriverParts {
    pub config: Arc<Config>,
    pub prompts: Arc<Prompts>,
    pub storage: Storage,
    /// Where call records and recording rows go (written off this task).
    pub store: StoreWriter,
    pub hub: DeskHub,
    pub metrics: Metrics,
    pub sip: SipIo,
    pub udp_local: Option<SocketAddr>,
    pub tcp_local: Option<SocketAddr>,
    pub seed: u64,
    /// The ACD, built from the config's queues and agents.
    pub acd: acd::Acd,
    /// The thread recording files are written on.
    pub record_sink: super::record_sink::RecordSink,
    /// Callbacks the last run kept, each with its call's record: they wait again.
    pub pending_callbacks: Vec<(crate::storage::CallRecord, crate::storage::PendingCallback)>,
}

/// Answers from helper tasks to what the core asked for.
#[derive(Debug)]
enum Answer {
    PopDelivered {
        call: CallId,
        seq: u64,
    },
    /// The clinic's CRM gave a fresher record than the store's.
    PatientUpdated {
        call: CallId,
        patient: Box<crate::storage::Patient>,
    },
    PatientLoaded {
        call: CallId,
        found: Box<(
            Option<crate::storage::Patient>,
            Vec<callcore::records::PastCall>,
        )>,
    },
    RecordingOpened {
        call: CallId,
        file: Result<RecordingWriter, String>,
    },
}

/// Inbound SIP messages queued beyond which new calls are refused.
const INBOUND_SHED_DEPTH: usize = 512;
/// How long shutdown waits for media tasks to finish their recordings.
const SHUTDOWN_MEDIA_WAIT: Duration = Duration::from_secs(2);

/// The call-control task.
pub struct Driver {
    core: Core,
    /// The clinic's zone: its midnight starts the ACD's daily counts afresh.
    timezone: chrono_tz::Tz,
    sip: SipIo,
    hub: DeskHub,
    store: StoreWriter,
    metrics: Metrics,
    /// Finds the pop's patient record and caller history.
    lookup: super::lookup::Lookup,
    prompts: Arc<Prompts>,
    record_sink: super::record_sink::RecordSink,
    rtp_ip: IpAddr,
    /// Each call's media task.
    media: HashMap<CallId, mpsc::UnboundedSender<MediaCommand>>,
    /// Sockets bound for the core and not yet handed to a media task.
    sockets: HashMap<PortToken, std::net::UdpSocket>,
    media_events: mpsc::UnboundedSender<MediaEvent>,
    answers: mpsc::UnboundedSender<Answer>,
    inbound_depth: usize,
}

/// The core's view of the clinic's config.
pub fn core_config(
    config: &Config,
    prompts: &Prompts,
    udp_local: Option<SocketAddr>,
    tcp_local: Option<SocketAddr>,
    seed: u64,
) -> callcore::CoreConfig {
    let sip = &config.sip;
    callcore::CoreConfig {
        advertise: sip.advertise,
        udp_local,
        tcp_local,
        realm: sip.realm.clone(),
        codecs: sip
            .codecs
            .iter()
            .map(|c| match c {
                crate::config::Codec::Pcmu => sip::sdp::Codec::Pcmu,
                crate::config::Codec::Pcma => sip::sdp::Codec::Pcma,
            })
            .collect(),
        capacity: sip.call_capacity(),
        max_lag: Duration::from_millis(sip.max_lag_ms),
        max_inbound_depth: INBOUND_SHED_DEPTH,
        retry_after_s: sip.retry_after_s,
        media_timeout: sip.media_timeout(),
        rtp_ports: (sip.rtp_ports.first, sip.rtp_ports.last),
        digest: sip.digest.iter().map(|&d| d.into()).collect(),
        nat: sip.nat.into(),
        nat_keepalive: (sip.nat_keepalive_s > 0).then(|| Duration::from_secs(sip.nat_keepalive_s)),
        timers: sip::transaction::TimerConfig::default(),
        agents: config
            .agents
            .iter()
            .map(|a| {
                let spec = callcore::AgentSpec {
                    name: a.name.clone(),
                    password: a.password.clone(),
                    digest: a
                        .digest
                        .as_ref()
                        .map(|d| d.iter().map(|&x| x.into()).collect()),
                };
                (a.id.clone(), spec)
            })
            .collect(),
        hold_prompts: config
            .queues
            .iter()
            .map(|q| (q.name.clone(), q.hold_prompt.clone()))
            .collect(),
        announce: config
            .queues
            .iter()
            .filter(|q| q.announce_every_ms > 0)
            .map(|q| {
                let announce = callcore::Announce {
                    every: std::time::Duration::from_millis(q.announce_every_ms),
                    position: q.announce_position,
                    wait: q.announce_wait,
                    only_improved: q.announce_only_improved,
                    message: q.announce_message.clone(),
                };
                (q.name.clone(), announce)
            })
            .collect(),
        exit_keys: config
            .queues
            .iter()
            .filter_map(|q| {
                let key = q.exit_key.as_deref()?.chars().next()?;
                Some((q.name.clone(), key))
            })
            .collect(),
        callback_keys: config
            .queues
            .iter()
            .filter_map(|q| {
                let key = q.callback_key.as_deref()?.chars().next()?;
                Some((q.name.clone(), key))
            })
            .collect(),
        callback: config.callback.as_ref().map(|c| callcore::CallbackConfig {
            trunk: c.trunk,
            transport: match c.transport {
                crate::config::TrunkTransport::Udp => sip::transport::Transport::Udp,
                crate::config::TrunkTransport::Tcp => sip::transport::Transport::Tcp,
            },
            caller_id: c.caller_id.clone(),
            dial_prefix: c.dial_prefix.clone(),
            ring: Duration::from_millis(c.ring_ms),
            retries: c.retries,
            retry_after: Duration::from_millis(c.retry_after_ms),
            confirm_prompt: c.confirm_prompt.clone(),
            voicemail_prompt: c.voicemail_prompt.clone(),
            voicemail_max: Duration::from_millis(c.voicemail_max_ms),
        }),
        voicemail_queues: config
            .queues
            .iter()
            .filter(|q| q.overflow.as_deref() == Some("voicemail"))
            .map(|q| q.name.clone())
            .collect(),
        fallback_queue: config.queues.first().map(|q| q.name.clone()),
        ivr_start: config.ivr.start.clone(),
        prompts: prompts.names().into_iter().map(str::to_owned).collect(),
        recording: config.recording.enabled.then(|| callcore::RecordingConfig {
            dir: config.storage.recordings.clone(),
            timezone: config.clinic.timezone,
            header_interval_ms: config.recording.header_interval_ms,
        }),
        seed,
    }
}

impl Driver {
    /// Runs call control until `shutdown`; hangs up every call on the way out.
    pub async fn run(
        mut parts: DriverParts,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<ControlCommand>,
        shutdown: CancellationToken,
    ) {
        let (media_tx, mut media_rx) = mpsc::unbounded_channel();
        let (answer_tx, mut answer_rx) = mpsc::unbounded_channel();
        let pending_callbacks = std::mem::take(&mut parts.pending_callbacks);
        let mut d = Self::new(parts, media_tx, answer_tx);
        for (record, pending) in pending_callbacks {
            let now = d.tick();
            d.core.restore_callback(now, record, pending);
        }
        d.apply();
        // One sleep, reset only when the soonest deadline changes.
        let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        let midnight = tokio::time::sleep(until_midnight(d.timezone, chrono::Utc::now()));
        tokio::pin!(midnight);
        loop {
            let deadline = d.core.poll_timeout();
            if deadline != armed {
                let at = deadline.map_or_else(far, tokio::time::Instant::from_std);
                sleep.as_mut().reset(at);
                armed = deadline;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                msg = inbound.recv() => match msg {
                    Some(msg) => {
                        trace!(woke = "sip");
                        d.inbound_depth = inbound.len();
                        d.core.set_inbound_depth(d.inbound_depth);
                        let now = d.tick();
                        d.core.handle_sip(now, msg.received_at, msg.peer, &msg.bytes);
                    }
                    None => break,
                },
                ev = media_rx.recv() => if let Some(ev) = ev {
                    trace!(woke = "media");
                    d.media_event(ev);
                },
                answer = answer_rx.recv() => if let Some(answer) = answer {
                    trace!(woke = "answer");
                    d.answer(answer);
                },
                cmd = commands.recv() => if let Some(cmd) = cmd {
                    trace!(woke = "command");
                    d.command(cmd);
                },
                () = &mut sleep, if armed.is_some() => {
                    trace!(woke = "timer");
                    armed = None;
                    let now = d.tick();
                    d.core.handle_timeout(now);
                }
                () = &mut midnight => {
                    let wall = chrono::Utc::now();
                    tracing::info!("the clinic's day begins: fewest-calls and talk-time counts start afresh");
                    d.core.new_day();
                    midnight
                        .as_mut()
                        .reset(tokio::time::Instant::now() + until_midnight(d.timezone, wall));
                }
            }
            d.apply();
            d.publish_gauges();
        }
        let now = d.tick();
        d.core.shutdown(now);
        d.apply();
        // Let media tasks finish their recordings so the index has their lengths.
        let wait = tokio::time::sleep(SHUTDOWN_MEDIA_WAIT);
        tokio::pin!(wait);
        while !d.media.is_empty() {
            tokio::select! {
                () = &mut wait => break,
                ev = media_rx.recv() => match ev {
                    Some(ev) => d.media_event(ev),
                    None => break,
                },
            }
            d.apply();
        }
    }

    fn new(
        parts: DriverParts,
        media_events: mpsc::UnboundedSender<MediaEvent>,
        answers: mpsc::UnboundedSender<Answer>,
    ) -> Self {
        let config = parts.config;
        let core_config = core_config(
            &config,
            &parts.prompts,
            parts.udp_local,
            parts.tcp_local,
            parts.seed,
        );
        let core = Core::new(
            core_config,
            config.menus(),
            parts.acd,
            now(),
            chrono::Utc::now(),
        );
        Self {
            core,
            timezone: config.clinic.timezone,
            sip: parts.sip,
            hub: parts.hub,
            store: parts.store,
            metrics: parts.metrics,
            lookup: super::lookup::Lookup::new(&config, parts.storage),
            prompts: parts.prompts,
            record_sink: parts.record_sink,
            rtp_ip: config.sip.advertise,
            media: HashMap::new(),
            sockets: HashMap::new(),
            media_events,
            answers,
            inbound_depth: 0,
        }
    }

    /// The time now, with the core's wall clock brought up to date.
    fn tick(&mut self) -> Instant {
        let now = now();
        self.core.set_wall_clock(now, chrono::Utc::now());
        now
    }

    fn media_event(&mut self, ev: MediaEvent) {
        if let MediaEvent::Stopped { call, .. } = &ev {
            self.media.remove(call);
        }
        let now = self.tick();
        self.core.handle_media(now, ev);
    }

    fn answer(&mut self, answer: Answer) {
        let now = self.tick();
        match answer {
            Answer::PopDelivered { call, seq } => self.core.handle_pop_delivered(now, call, seq),
            Answer::PatientUpdated { call, patient } => {
                self.core.handle_patient_updated(now, call, *patient)
            }
            Answer::PatientLoaded { call, found } => {
                let (patient, history) = *found;
                self.core.handle_patient_loaded(now, call, patient, history)
            }
            Answer::RecordingOpened { call, file } => {
                let adopted = file.and_then(|writer| {
                    self.record_sink
                        .adopt(writer)
                        .ok_or_else(|| "the recordings thread is gone".to_owned())
                });
                let result = adopted.as_ref().map(|_| ()).map_err(Clone::clone);
                self.core.handle_recording_opened(now, call, result);
                self.send_media(call, MediaCommand::Record(adopted.ok()));
            }
        }
    }

    fn command(&mut self, cmd: ControlCommand) {
        let now = self.tick();
        match cmd {
            ControlCommand::Agents { reply } => {
                let _ = reply.send(self.core.agents(now));
            }
            ControlCommand::Queues { reply } => {
                let _ = reply.send(self.core.queues(now));
            }
            ControlCommand::SetAgentState {
                agent,
                ready,
                reason,
                reply,
            } => {
                let result = self
                    .core
                    .set_agent_state(now, &agent, ready, reason.as_deref());
                let _ = reply.send(result);
            }
            ControlCommand::ExtendWrapUp { agent, by, reply } => {
                let _ = reply.send(self.core.extend_wrap_up(now, &agent, by));
            }
            ControlCommand::Transfer { agent, to, reply } => {
                let _ = reply.send(self.core.transfer(now, &agent, &to));
            }
            ControlCommand::Hold { agent, held, reply } => {
                let _ = reply.send(self.core.hold_from_desk(now, &agent, held));
            }
            ControlCommand::HangUp { agent, reply } => {
                let _ = reply.send(self.core.hang_up_from_desk(now, &agent));
            }
            ControlCommand::Consult { agent, step, reply } => {
                let result = match step {
                    ConsultStep::Start(to) => self.core.consult(now, &agent, &to),
                    ConsultStep::Complete => self.core.consult_complete(now, &agent),
                    ConsultStep::Cancel => self.core.consult_cancel(now, &agent),
                };
                let _ = reply.send(result);
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// Applies every output of the core, in order.
    fn apply(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Transmit(t) => self.sip.send(t),
                Output::BindRtp { token, port } => {
                    let bound = super::ports::bind(self.rtp_ip, port)
                        .and_then(|s| Ok((s.local_addr()?, s)))
                        .map_err(|e| e.to_string());
                    let result = bound.map(|(addr, socket)| {
                        self.sockets.insert(token, socket);
                        addr
                    });
                    let now = now();
                    self.core.handle_port_bound(now, token, result);
                }
                Output::ReleaseRtp { token } => {
                    self.sockets.remove(&token);
                }
                Output::Media { call, command } => self.media_command(call, command),
                Output::ScreenPop {
                    agent,
                    call,
                    seq,
                    event,
                } => {
                    // A patient record shown to an agent is a view of it: audited (off
                    // this task, after the pop is on its way).
                    let viewed = match &event {
                        callcore::desk::DeskEvent::Offer {
                            patient: Some(p), ..
                        } => Some(p.phone.clone()),
                        _ => None,
                    };
                    // Queued to the desk sockets now, before anything else is published.
                    let delivered = self.hub.deliver(&agent, event);
                    if let Some(phone) = viewed {
                        self.store.audit(&agent, "patient_pop", &phone);
                    }
                    let answers = self.answers.clone();
                    tokio::spawn(async move {
                        let _desks = delivered.await;
                        let _ = answers.send(Answer::PopDelivered { call, seq });
                    });
                }
                Output::Desk { agent, event } => {
                    if let callcore::desk::DeskEvent::Patient { patient, .. } = &event {
                        self.store.audit(&agent, "patient_pop", &patient.phone);
                    }
                    self.hub.publish(&agent, event);
                }
                Output::LookupPatient { call, phone } => {
                    let lookup = self.lookup.clone();
                    let answers = self.answers.clone();
                    let metrics = self.metrics.clone();
                    tokio::spawn(async move {
                        // The CRM is asked at once, beside the store; its answer only follows
                        // the stored one, so the pop never waits for it.
                        let asked = lookup.crm().cloned().map(|crm| {
                            let phone = phone.clone();
                            tokio::spawn(async move { crm.lookup(&phone).await })
                        });
                        let stored = {
                            let (lookup, phone) = (lookup.clone(), phone.clone());
                            tokio::task::spawn_blocking(move || lookup.find(&phone)).await
                        };
                        let found = stored.unwrap_or_else(|e| {
                            warn!(error = %e, "patient lookup task failed");
                            (None, Vec::new())
                        });
                        let known = found.0.clone();
                        let _ = answers.send(Answer::PatientLoaded {
                            call,
                            found: Box::new(found),
                        });
                        let Some(asked) = asked else { return };
                        match asked.await {
                            Ok(Ok(Some(fresh))) if known.as_ref() != Some(&fresh) => {
                                let _ = answers.send(Answer::PatientUpdated {
                                    call,
                                    patient: Box::new(fresh.clone()),
                                });
                                // The store stays a current fallback for when the CRM is down.
                                tokio::task::spawn_blocking(move || lookup.keep(&fresh));
                            }
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                metrics.crm_failed();
                                warn!(error = %e, "CRM lookup gave nothing; the pop keeps the stored record");
                            }
                            Err(e) => warn!(error = %e, "CRM lookup task failed"),
                        }
                    });
                }
                Output::OpenRecording {
                    call,
                    path,
                    header_interval_ms,
                } => {
                    let answers = self.answers.clone();
                    tokio::task::spawn_blocking(move || {
                        let file = path
                            .parent()
                            .map_or(Ok(()), std::fs::create_dir_all)
                            .map_err(|e| e.to_string())
                            .and_then(|()| {
                                RecordingWriter::create(&path, frames_in_ms(header_interval_ms))
                                    .map_err(|e| e.to_string())
                            });
                        let _ = answers.send(Answer::RecordingOpened { call, file });
                    });
                }
                Output::StoreCall(record) => self.store.call(record),
                Output::StoreRecording(row) => self.store.recording(row),
                Output::StoreEvent(entry) => self.store.event(entry),
                Output::StoreCallback { call_id, pending } => self.store.callback(call_id, pending),
                Output::Metric(metric) => self.metric(metric),
            }
        }
    }

    fn media_command(&mut self, call: CallId, command: callcore::MediaCommand) {
        use callcore::MediaCommand as C;
        let command = match command {
            C::Start {
                call_id,
                patient,
                media_timeout,
            } => {
                let Some(leg) = self.patient_leg(&patient) else {
                    warn!("no socket for the patient leg; ending the call");
                    self.stopped_without_media(call);
                    return;
                };
                let (tx, rx) = mpsc::unbounded_channel();
                self.media.insert(call, tx);
                let span = info_span!("call", id = %call_id);
                tokio::spawn(call_media::run(
                    call,
                    leg,
                    rx,
                    self.media_events.clone(),
                    media_timeout,
                    span,
                ));
                return;
            }
            C::Play { prompt, generation } => match self.prompts.get(&prompt) {
                Some(prompt) => MediaCommand::Play { prompt, generation },
                None => {
                    warn!(%prompt, "prompt missing; skipping it");
                    let _ = self
                        .media_events
                        .send(MediaEvent::PromptFinished { call, generation });
                    return;
                }
            },
            C::Hold { prompt } => match self.prompts.get(&prompt) {
                Some(prompt) => MediaCommand::Hold { prompt },
                None => return,
            },
            C::Silence => MediaCommand::Silence,
            C::Bridge {
                agent,
                recording,
                at,
            } => {
                let Some(socket) = self.sockets.remove(&agent.token) else {
                    warn!("no socket for the agent leg");
                    return;
                };
                MediaCommand::Bridge {
                    agent: AgentLeg {
                        socket,
                        latch: media::Latch::new(agent.remote),
                        media: leg_media(&agent),
                    },
                    recording,
                    at,
                }
            }
            C::Update {
                leg,
                remote,
                codec,
                telephone_event,
                send,
                receive,
            } => MediaCommand::Update {
                leg,
                remote,
                codec,
                telephone_event,
                flow: super::media::Flow { send, receive },
            },
            C::Consult {
                leg,
                agent_side,
                at,
            } => {
                let Some(leg) = self.agent_leg(&leg) else {
                    warn!("no socket for the consulted agent's leg");
                    return;
                };
                let agent_side = match agent_side {
                    Some(spec) => match self.agent_leg(&spec) {
                        Some(leg) => Some(leg),
                        None => {
                            warn!("no socket for the consulting phone's leg");
                            return;
                        }
                    },
                    None => None,
                };
                MediaCommand::Consult {
                    leg,
                    agent_side,
                    at,
                }
            }
            C::ConsultEnd { transfer, at } => MediaCommand::ConsultEnd { transfer, at },
            C::Unbridge { at } => MediaCommand::Unbridge { at },
            C::RecordAlone { at } => MediaCommand::RecordAlone { at },
            C::Stop { at } => MediaCommand::Stop { at },
        };
        self.send_media(call, command);
    }

    /// Sends a command to a call's media task; a task that is gone counts as stopped.
    fn send_media(&mut self, call: CallId, command: MediaCommand) {
        let stop = matches!(command, MediaCommand::Stop { .. });
        let sent = self
            .media
            .get(&call)
            .is_some_and(|tx| tx.send(command).is_ok());
        if !sent && stop {
            self.stopped_without_media(call);
        }
    }

    /// The call has no media task (it died, or never started): say it stopped.
    fn stopped_without_media(&mut self, call: CallId) {
        self.media.remove(&call);
        let _ = self.media_events.send(MediaEvent::Stopped {
            call,
            recording: None,
        });
    }

    /// An agent-side leg from its bound socket (the consulted agent's, or a consulting
    /// phone's own).
    fn agent_leg(&mut self, spec: &LegSpec) -> Option<AgentLeg> {
        let socket = self.sockets.remove(&spec.token)?;
        Some(AgentLeg {
            socket,
            latch: media::Latch::new(spec.remote),
            media: leg_media(spec),
        })
    }

    fn patient_leg(&mut self, spec: &LegSpec) -> Option<PatientLeg> {
        let socket = self.sockets.remove(&spec.token)?;
        Some(PatientLeg {
            socket,
            latch: media::Latch::new(spec.remote),
            media: leg_media(spec),
        })
    }

    fn metric(&self, metric: Metric) {
        let m = &self.metrics;
        match metric {
            Metric::CallStarted => m.call_started(),
            Metric::CallAnswered => m.call_answered(),
            Metric::CallAbandoned => m.call_abandoned(),
            Metric::CallRefused(why) => m.call_refused(why),
            Metric::AgentMissedRing => m.agent_missed_ring(),
            Metric::MediaTimeout => m.media_timeout(),
            Metric::CallbackFailed => m.callback_failed(),
            Metric::ScreenPop(latency) => m.observe_screen_pop(latency),
            Metric::QueueWaiting { queue, waiting } => m.set_queue_waiting(&queue, waiting),
        }
    }

    /// Publishes the live counts to `/metrics`.
    fn publish_gauges(&self) {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        let live = self.core.live();
        self.metrics.set_gauges(crate::metrics::Gauges {
            calls_active: n(live.calls),
            transactions: n(live.transactions),
            transaction_timers: n(live.transaction_timers),
            rtp_ports_in_use: n(live.rtp_ports),
            control_entries: n(live.entries + self.sockets.len()),
            control_lag_micros: u64::try_from(self.core.lag().as_micros()).unwrap_or(u64::MAX),
            inbound_queue: n(self.inbound_depth),
            shedding: u64::from(self.core.overload().is_some()),
        });
    }
}

/// A leg's media state as negotiated.
fn leg_media(spec: &LegSpec) -> LegMedia {
    LegMedia::new(spec.codec, spec.telephone_event, spec.ssrc, 0, 0)
}

/// How long from `now` until the next midnight in the clinic's zone `tz` (at least a second,
/// so a clock sitting on midnight does not spin).
fn until_midnight(tz: chrono_tz::Tz, now: chrono::DateTime<chrono::Utc>) -> Duration {
    let today = now.with_timezone(&tz).date_naive();
    let next = today
        .succ_opt()
        .map(|day| crate::storage::local_day_start(day, tz));
    next.and_then(|t| (t - now).to_std().ok())
        .unwrap_or(Duration::from_secs(86_400))
        .max(Duration::from_secs(1))
}

#[cfg(test)]
mod midnight_tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_next_midnight_is_the_clinics() {
        let tz: chrono_tz::Tz = "Asia/Shanghai".parse().expect("tz");
        // 15:58 UTC is 23:58 in Shanghai: two minutes to go, though UTC's day has hours left.
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 12, 2, 15, 58, 0)
            .single()
            .expect("valid");
        assert_eq!(until_midnight(tz, now), Duration::from_secs(120));
        let on = chrono::Utc
            .with_ymd_and_hms(2026, 12, 2, 16, 0, 0)
            .single()
            .expect("valid");
        assert_eq!(until_midnight(tz, on), Duration::from_secs(86_400));
    }
}
