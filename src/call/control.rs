//! The controller: one task that owns all call signalling state.
//!
//! Inputs (SIP messages, media events, HTTP commands, screen-pop
//! confirmations) and timers are handled one at a time; after each, the
//! outputs of every sans-IO core are drained. Timers are the cores' own
//! deadlines: the loop sleeps until the soonest.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acd::{Acd, AcdEvent};
use ivr::{IvrSession, Menus};
use sip::dialog::{Dialog, LocalEndpoint};
use sip::ids::IdGen;
use sip::message::{Method, Request, SipMessage, response_to};
use sip::registrar::{Registrar, RegistrationChange};
use sip::transaction::{TimerConfig, TransactionEvent, TransactionKey, TransactionLayer};
use sip::transport::{Peer, Transport};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::CallId;
use super::media::{MediaCommand, MediaEvent};
use super::ports::PortPool;
use crate::config::Config;
use crate::control::{AgentView, ControlCommand, ControlError};
use crate::events::{DeskEvent, DeskHub};
use crate::metrics::{Metrics, Refusal};
use crate::prompts::Prompts;
use crate::sip_io::{Inbound, SipIo};
use crate::storage::Storage;
use deadlines::Deadlines;

/// Everything the controller is built from.
pub struct ControllerParts {
    pub config: Arc<Config>,
    pub prompts: Arc<Prompts>,
    pub storage: Storage,
    /// Where call records and recording rows go (written off this task).
    pub store: crate::storage::writer::StoreWriter,
    pub hub: DeskHub,
    pub metrics: Metrics,
    pub sip: SipIo,
    pub udp_local: Option<SocketAddr>,
    pub tcp_local: Option<SocketAddr>,
    pub seed: u64,
    /// The ACD, built from the config's queues and agents.
    pub acd: Acd,
}

/// Why a client transaction was started, so its responses reach the right place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientTx {
    /// The INVITE to an agent's phone for an offer of `call`.
    /// `seq` is the offer's: a late answer to an earlier offer of the same
    /// call to the same agent (re-offered after a ring-out) is not this one's.
    AgentInvite {
        call: CallId,
        agent: String,
        seq: u64,
    },
    /// A CANCEL or BYE whose answer changes nothing.
    Fire,
}

/// One offer of a call to an agent: the screen-pop, then the INVITE.
#[derive(Debug)]
pub(crate) struct Offer {
    pub agent: String,
    pub seq: u64,
    pub invite: Option<Request>,
    pub peer: Option<Peer>,
    pub rtp: Option<(UdpSocket, super::ports::Lease)>,
    pub dialog: Option<Dialog>,
    pub cancelled: bool,
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
    /// The lookup runs; an offer the ACD made meanwhile waits here for it.
    Pending(Option<DeferredOffer>),
    /// The record (`None`: no patient has this number).
    Done(Option<crate::storage::Patient>),
}

/// Where a call is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// In the IVR menus.
    Ivr,
    /// Waiting in a queue (an offer may be ringing).
    Queued,
    /// Bridged with an agent.
    Connected,
    /// Hung up; waiting for the media task to finish the recording.
    Ending,
}

/// One patient call and, once answered, its agent leg.
pub(crate) struct Call {
    pub id: CallId,
    pub call_id: String,
    pub span: tracing::Span,
    pub caller: String,
    /// The caller's patient record, looked up off this task.
    pub patient: PatientLookup,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub patient_dialog: Dialog,
    pub patient_peer: Peer,
    pub patient_sip_call_id: String,
    /// The server transaction of the patient's INVITE (its 2xx waits for an ACK).
    pub patient_invite: TransactionKey,
    pub media: mpsc::UnboundedSender<MediaCommand>,
    pub ivr: Option<IvrSession>,
    pub ivr_path: Vec<String>,
    pub prompt_generation: u64,
    pub phase: Phase,
    pub queue: Option<String>,
    pub enqueued_at: Option<Instant>,
    pub wait_ms: Option<u64>,
    pub offer: Option<Offer>,
    pub agents_offered: Vec<String>,
    pub agent: Option<String>,
    pub agent_dialog: Option<Dialog>,
    pub agent_sip_call_id: Option<String>,
    pub answered_at: Option<chrono::DateTime<chrono::Utc>>,
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    pub recording_id: Option<String>,
    pub recording_started_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Messages the controller sends itself from helper tasks.
#[derive(Debug)]
pub(crate) enum Internal {
    /// The screen-pop for offer `seq` reached the agent's desk (or the cap passed).
    ScreenPopDelivered {
        call: CallId,
        seq: u64,
        desks: usize,
    },
    /// The caller's patient record was looked up (off this task).
    PatientLoaded {
        call: CallId,
        patient: Option<crate::storage::Patient>,
    },
}

/// The call-control task's state.
pub struct Controller {
    pub(crate) config: Arc<Config>,
    pub(crate) prompts: Arc<Prompts>,
    pub(crate) menus: Arc<Menus>,
    pub(crate) storage: Storage,
    pub(crate) store: crate::storage::writer::StoreWriter,
    pub(crate) hub: DeskHub,
    pub(crate) metrics: Metrics,
    pub(crate) sip: SipIo,
    pub(crate) udp_local: Option<LocalEndpoint>,
    pub(crate) tcp_local: Option<LocalEndpoint>,
    pub(crate) transactions: TransactionLayer,
    pub(crate) registrar: Registrar,
    pub(crate) acd: Acd,
    pub(crate) ids: IdGen,
    pub(crate) ports: PortPool,
    pub(crate) calls: HashMap<CallId, Call>,
    /// SIP Call-ID of either leg → the call it belongs to.
    pub(crate) by_sip_call_id: HashMap<String, CallId>,
    pub(crate) client_tx: HashMap<TransactionKey, ClientTx>,
    /// Agent legs answered, waiting for the ACD's `Connected` to bridge them.
    pub(crate) pending_bridge: HashMap<CallId, super::media::AgentLeg>,
    /// Where each recorded call's WAV file is.
    pub(crate) recording_paths: HashMap<CallId, std::path::PathBuf>,
    /// INVITEs of offers we gave up on, by SIP Call-ID, to hang up a late answer.
    pub(crate) stale_invites: HashMap<String, (Request, Peer)>,
    pub(crate) next_call: CallId,
    pub(crate) next_offer: u64,
    pub(crate) media_events: mpsc::UnboundedSender<MediaEvent>,
    pub(crate) internal: mpsc::UnboundedSender<Internal>,
    /// Every core's next deadline, one heap.
    pub(crate) deadlines: Deadlines<Due>,
    /// Arrival-to-handling delay of the last SIP message.
    pub(crate) lag: Duration,
    /// SIP messages waiting in the inbound queue at the last loop turn.
    pub(crate) inbound_depth: usize,
    /// Rate-limits the WARN about refused calls.
    pub(crate) shed_log: ShedLog,
}

/// The owner of a deadline in [`Controller::deadlines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Due {
    Transactions,
    Registrar,
    Acd,
    /// A call's IVR (digit timeout).
    Ivr(CallId),
}

/// Inbound messages waiting beyond which new calls are refused.
const INBOUND_SHED_DEPTH: usize = 512;
/// At most one WARN about refused calls per this long.
const SHED_LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts refused calls and says so at most once per [`SHED_LOG_EVERY`].
#[derive(Debug, Default)]
pub(crate) struct ShedLog {
    last: Option<Instant>,
    refused: u64,
}

impl ShedLog {
    /// Counts one refusal; the WARN to write now, if it is time for one.
    pub(crate) fn refused(&mut self, now: Instant) -> Option<u64> {
        self.refused += 1;
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= SHED_LOG_EVERY);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.refused))
    }
}

impl Controller {
    /// Runs call control until `shutdown`; hangs up every call on the way out.
    pub async fn run(
        parts: ControllerParts,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<ControlCommand>,
        shutdown: CancellationToken,
    ) {
        let (media_tx, mut media_rx) = mpsc::unbounded_channel();
        let (internal_tx, mut internal_rx) = mpsc::unbounded_channel();
        let mut ctl = Self::new(parts, media_tx, internal_tx);
        // One sleep, reset only when the soonest deadline changes.
        let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            let deadline = ctl.deadlines.next();
            if deadline != armed {
                let at = deadline.map_or_else(far, tokio::time::Instant::from_std);
                sleep.as_mut().reset(at);
                armed = deadline;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                msg = inbound.recv() => match msg {
                    Some(msg) => {
                        ctl.inbound_depth = inbound.len();
                        ctl.handle_inbound(now(), msg).await
                    }
                    None => break,
                },
                ev = media_rx.recv() => if let Some(ev) = ev { ctl.handle_media_event(now(), ev).await },
                ev = internal_rx.recv() => if let Some(ev) = ev { ctl.handle_internal(now(), ev).await },
                cmd = commands.recv() => if let Some(cmd) = cmd { ctl.handle_command(now(), cmd) },
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    ctl.handle_timeout(now()).await;
                }
            }
            ctl.drain(now()).await;
            ctl.publish_gauges();
        }
        ctl.shutdown(now()).await;
    }

    fn new(
        parts: ControllerParts,
        media_events: mpsc::UnboundedSender<MediaEvent>,
        internal: mpsc::UnboundedSender<Internal>,
    ) -> Self {
        let config = parts.config;
        let advertise = config.sip.advertise;
        let local = |transport: Transport, addr: SocketAddr| {
            let sent_by = SocketAddr::new(advertise, addr.port());
            let t = match transport {
                Transport::Udp => "udp",
                Transport::Tcp => "tcp",
            };
            LocalEndpoint {
                transport,
                sent_by,
                contact: format!("sip:switchboard@{sent_by};transport={t}"),
            }
        };
        let crate::config::PortRange { first, last } = config.sip.rtp_ports;
        Self {
            menus: Arc::new(config.menus()),
            prompts: parts.prompts,
            storage: parts.storage,
            store: parts.store,
            hub: parts.hub,
            metrics: parts.metrics,
            sip: parts.sip,
            udp_local: parts.udp_local.map(|a| local(Transport::Udp, a)),
            tcp_local: parts.tcp_local.map(|a| local(Transport::Tcp, a)),
            transactions: TransactionLayer::new(TimerConfig::default()),
            registrar: Registrar::new(config.sip.realm.clone(), parts.seed),
            acd: parts.acd,
            ids: IdGen::new(parts.seed.wrapping_add(1)),
            ports: PortPool::new(advertise, first, last),
            calls: HashMap::new(),
            by_sip_call_id: HashMap::new(),
            client_tx: HashMap::new(),
            pending_bridge: HashMap::new(),
            recording_paths: HashMap::new(),
            stale_invites: HashMap::new(),
            next_call: 1,
            next_offer: 1,
            media_events,
            internal,
            config,
            deadlines: Deadlines::default(),
            lag: Duration::ZERO,
            inbound_depth: 0,
            shed_log: ShedLog::default(),
        }
    }

    /// Our endpoint for a transport (the one a peer reached us on).
    pub(crate) fn local_for(&self, transport: Transport) -> Option<LocalEndpoint> {
        match transport {
            Transport::Udp => self.udp_local.clone().or_else(|| self.tcp_local.clone()),
            Transport::Tcp => self.tcp_local.clone().or_else(|| self.udp_local.clone()),
        }
    }

    /// Fires every deadline due at `now`, soonest first.
    async fn handle_timeout(&mut self, now: Instant) {
        // Bounded: each owner is disarmed when popped; the cores are re-armed
        // by the drain that follows (an IVR re-arms itself in drain_ivr, later
        // than now), so one pass pops each owner at most once.
        for _ in 0..self.deadlines.len() + 16 {
            let Some(due) = self.deadlines.pop_due(now) else {
                return;
            };
            tracing::trace!(?due, "timer");
            match due {
                Due::Transactions => self.transactions.handle_timeout(now),
                Due::Registrar => {
                    for user in self.registrar.handle_timeout(now) {
                        info!(agent = %user, "registration expired");
                        if let Err(e) = self.acd.agent_online(now, &user, false) {
                            warn!(error = %e, "unknown agent");
                        }
                    }
                }
                Due::Acd => self.acd.handle_timeout(now),
                Due::Ivr(id) => {
                    if let Some(ivr) = self.calls.get_mut(&id).and_then(|c| c.ivr.as_mut()) {
                        ivr.handle_timeout(now);
                    }
                    self.drain_ivr(now, id).await;
                }
            }
        }
    }

    /// Puts the transaction layer's, registrar's and ACD's next deadlines in the heap.
    fn arm_cores(&mut self) {
        self.deadlines
            .set(Due::Transactions, self.transactions.poll_timeout());
        self.deadlines
            .set(Due::Registrar, self.registrar.poll_timeout());
        self.deadlines.set(Due::Acd, self.acd.poll_timeout());
    }

    /// Publishes the live counts to `/metrics`.
    fn publish_gauges(&self) {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        let entries = self.by_sip_call_id.len()
            + self.client_tx.len()
            + self.stale_invites.len()
            + self.pending_bridge.len()
            + self.recording_paths.len();
        self.metrics.set_gauges(crate::metrics::Gauges {
            calls_active: n(self.calls.len()),
            transactions: n(self.transactions.transaction_count()),
            transaction_timers: n(self.transactions.timer_count()),
            rtp_ports_in_use: n(self.ports.in_use()),
            control_entries: n(entries),
            control_lag_micros: u64::try_from(self.lag.as_micros()).unwrap_or(u64::MAX),
            inbound_queue: n(self.inbound_depth),
            shedding: u64::from(self.overload().is_some()),
        });
    }

    /// Why a new call cannot be carried now, if it cannot.
    pub(crate) fn overload(&self) -> Option<Refusal> {
        if self.calls.len() >= self.config.sip.call_capacity() {
            return Some(Refusal::Capacity);
        }
        let max_lag = Duration::from_millis(self.config.sip.max_lag_ms);
        if self.lag > max_lag || self.inbound_depth > INBOUND_SHED_DEPTH {
            return Some(Refusal::Lag);
        }
        None
    }

    async fn handle_inbound(&mut self, now: Instant, msg: Inbound) {
        self.lag = now.saturating_duration_since(msg.received_at);
        match sip::message::parse(&msg.bytes) {
            Ok(parsed) => self.transactions.handle_message(now, msg.peer, parsed),
            Err(e) => debug!(error = %e, "dropping unparsable SIP message"),
        }
    }

    /// Drains every core's outputs until nothing is left to do.
    pub(crate) async fn drain(&mut self, now: Instant) {
        // Bounded: each pass handles what the previous one produced; a
        // runaway would be a bug, so stop after many passes rather than spin.
        for _ in 0..1000 {
            let mut progressed = false;
            while let Some(ev) = self.transactions.poll_event() {
                progressed = true;
                self.handle_transaction_event(now, ev).await;
            }
            while let Some(ev) = self.acd.poll_event() {
                progressed = true;
                self.handle_acd_event(now, ev).await;
            }
            while let Some(t) = self.transactions.poll_transmit() {
                self.sip.send(t);
            }
            if !progressed {
                self.arm_cores();
                return;
            }
        }
        self.arm_cores();
        warn!("call control drain did not settle");
    }

    async fn handle_transaction_event(&mut self, now: Instant, ev: TransactionEvent) {
        match ev {
            TransactionEvent::Request { key, request, peer } => {
                self.handle_request(now, key, request, peer).await
            }
            TransactionEvent::Ack { request, .. } => {
                debug!(call_id = ?request.call_id().ok(), "ack");
            }
            TransactionEvent::Response { key, response } => match self.client_tx.get(&key).cloned()
            {
                Some(ClientTx::AgentInvite { call, agent, seq }) => {
                    self.handle_agent_response(now, call, &agent, seq, &key, response)
                        .await;
                }
                // A CANCEL's or BYE's final answer: nothing more will come.
                Some(ClientTx::Fire) if response.status() >= 200 => {
                    self.client_tx.remove(&key);
                }
                _ => {}
            },
            TransactionEvent::Timeout { key } => match self.client_tx.remove(&key) {
                Some(ClientTx::AgentInvite { call, agent, seq }) => {
                    self.agent_unreachable(now, call, &agent, seq);
                }
                Some(ClientTx::Fire) => {}
                None => self.server_timeout(now, &key).await,
            },
        }
    }

    async fn handle_request(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: Request,
        peer: Peer,
    ) {
        match request.method() {
            Method::Register => {
                let config = Arc::clone(&self.config);
                let password_of = |user: &str| config.agent(user).map(|a| a.password.clone());
                let (response, change) =
                    self.registrar
                        .handle_register(now, &request, peer, &password_of);
                self.transactions.send_response(now, &key, response);
                match change {
                    Some(RegistrationChange::Registered { user }) => {
                        info!(agent = %user, transport = ?peer.transport, "agent registered");
                        if let Err(e) = self.acd.agent_online(now, &user, true) {
                            warn!(error = %e, agent = %user, "registered user is not an agent");
                        }
                        self.publish_state(&user);
                    }
                    Some(RegistrationChange::Unregistered { user }) => {
                        info!(agent = %user, "agent unregistered");
                        let _ = self.acd.agent_online(now, &user, false);
                        self.publish_state(&user);
                    }
                    Some(RegistrationChange::Rejected { user, status }) => {
                        warn!(user = ?user, status, "registration rejected");
                    }
                    _ => {}
                }
            }
            Method::Options => {
                let response = response_to(&request, 200, "OK", None)
                    .with_header("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO")
                    .with_header("Accept", "application/sdp");
                self.transactions.send_response(now, &key, response);
            }
            Method::Invite if request.to_tag().is_none() => {
                self.handle_new_call(now, key, request, peer).await
            }
            Method::Invite => self.handle_reinvite(now, key, request),
            Method::Bye => self.handle_bye(now, key, request).await,
            Method::Cancel => self.handle_cancel(now, key, request).await,
            Method::Info => self.handle_info(now, key, request).await,
            Method::Ack => {}
            _ => {
                let response = response_to(&request, 405, "Method Not Allowed", None)
                    .with_header("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO");
                self.transactions.send_response(now, &key, response);
            }
        }
    }

    async fn handle_acd_event(&mut self, now: Instant, ev: AcdEvent) {
        // Every ACD event changes the agent's state: the desk shows it.
        let agent = match ev {
            AcdEvent::Offer {
                call,
                agent,
                queue,
                waited,
                ring_timeout,
            } => {
                self.offer(now, call, agent.clone(), queue, waited, ring_timeout);
                agent
            }
            AcdEvent::RingOut { call, agent } => {
                self.ring_out(now, call, &agent);
                agent
            }
            AcdEvent::Connected {
                call,
                agent,
                waited,
            } => {
                self.connected(now, call, &agent, waited).await;
                agent
            }
        };
        self.publish_state(&agent);
    }

    async fn handle_internal(&mut self, now: Instant, ev: Internal) {
        match ev {
            Internal::ScreenPopDelivered { call, seq, desks } => {
                self.screen_pop_delivered(now, call, seq, desks).await
            }
            Internal::PatientLoaded { call, patient } => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                let before = std::mem::replace(&mut c.patient, PatientLookup::Done(patient));
                if let PatientLookup::Pending(Some(d)) = before {
                    self.offer(now, call, d.agent, d.queue, d.waited, d.ring_timeout);
                }
            }
        }
    }

    async fn handle_media_event(&mut self, now: Instant, ev: MediaEvent) {
        match ev {
            MediaEvent::Dtmf { call, digit } => self.digit(now, call, digit).await,
            MediaEvent::PromptFinished { call, generation } => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                if c.prompt_generation != generation {
                    return;
                }
                if let Some(ivr) = c.ivr.as_mut() {
                    ivr.handle_prompt_finished(now);
                }
                self.drain_ivr(now, call).await;
            }
            MediaEvent::MediaTimeout { call, leg } => {
                self.metrics.media_timeout();
                let reason = match leg {
                    super::media::Leg::Patient => "caller_media_timeout",
                    super::media::Leg::Agent => "agent_media_timeout",
                };
                self.hang_up(now, call, super::finish::Side::System, reason)
                    .await;
            }
            MediaEvent::Stopped { call, recording } => self.media_stopped(call, recording),
        }
    }

    fn handle_command(&mut self, now: Instant, cmd: ControlCommand) {
        match cmd {
            ControlCommand::Agents { reply } => {
                let _ = reply.send(self.agent_views(now));
            }
            ControlCommand::SetAgentState {
                agent,
                ready,
                reason,
                reply,
            } => {
                let result = match self.acd.set_ready(now, &agent, ready, reason.as_deref()) {
                    Ok(_) => {
                        self.publish_state(&agent);
                        self.agent_views(now)
                            .into_iter()
                            .find(|v| v.id == agent)
                            .ok_or(ControlError::UnknownAgent)
                    }
                    Err(acd::Error::UnknownAgent(_)) => Err(ControlError::UnknownAgent),
                    Err(acd::Error::AgentOffline(_)) => Err(ControlError::Rejected(
                        "the agent's phone is not registered: register it, then set the state"
                            .to_owned(),
                    )),
                    Err(e) => Err(ControlError::Rejected(e.to_string())),
                };
                let _ = reply.send(result);
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    pub(crate) fn agent_views(&self, now: Instant) -> Vec<AgentView> {
        self.acd
            .agents()
            .into_iter()
            .map(|a| {
                let current_call = a
                    .current_call
                    .and_then(|id| self.calls.get(&id))
                    .map(|c| c.call_id.clone());
                AgentView {
                    name: self
                        .config
                        .agent(&a.id)
                        .map(|c| c.name.clone())
                        .unwrap_or_default(),
                    state: agent_state_name(a.state).to_owned(),
                    reason: a.not_ready_reason.clone(),
                    registered: self.registrar.lookup(&a.id, now).is_some(),
                    current_call,
                    missed_rings: a.missed_rings,
                    id: a.id,
                }
            })
            .collect()
    }

    pub(crate) fn publish_state(&self, agent: &str) {
        let Some(view) = self.acd.agents().into_iter().find(|a| a.id == agent) else {
            return;
        };
        self.hub.publish(
            agent,
            DeskEvent::State {
                state: agent_state_name(view.state).to_owned(),
                reason: view.not_ready_reason.clone(),
            },
        );
    }

    /// Sends a request outside any transaction's retransmission (ACK to a 2xx).
    pub(crate) fn send_stateless(&mut self, peer: Peer, request: Request) {
        self.transactions
            .send_stateless(peer, SipMessage::Request(request));
    }

    async fn shutdown(&mut self, now: Instant) {
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            self.hang_up(now, id, super::finish::Side::System, "shutdown")
                .await;
        }
        self.drain(now).await;
    }
}

/// The controller's clock: tokio's, so tests can pause and advance it.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The API's name for an agent state.
pub(crate) fn agent_state_name(state: acd::AgentState) -> &'static str {
    match state {
        acd::AgentState::Offline => "offline",
        acd::AgentState::NotReady => "not_ready",
        acd::AgentState::Ready => "ready",
        acd::AgentState::Ringing => "ringing",
        acd::AgentState::Talking => "talking",
        #[allow(unreachable_patterns)]
        _ => "unknown",
    }
}
