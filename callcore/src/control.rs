//! The core: every call's signalling state and every sans-IO part under it.
//!
//! Inputs (SIP bytes, media events, ports bound, patient records read,
//! screen-pops delivered, commands) and deadlines are handled one at a time;
//! after each, the outputs of the transaction layer, the registrar, the ACD and
//! the IVR sessions are drained into one queue of [`Output`]s. Every deadline
//! of the core is in one heap; [`Core::poll_timeout`] is its top.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acd::{Acd, AcdEvent};
use chrono::{DateTime, Utc};
use deadlines::Deadlines;
use ivr::Menus;
use sip::dialog::LocalEndpoint;
use sip::ids::IdGen;
use sip::message::{Method, Request, SipMessage, response_to};
use sip::registrar::{
    Abandoned, Account, Refusal as RegisterRefusal, Registrar, RegistrationChange,
};
use sip::transaction::{TransactionEvent, TransactionKey, TransactionLayer};
use sip::transport::{Peer, Transport};
use tracing::{debug, info, warn};

use crate::CallId;
use crate::call::{Call, Side, millis};
use crate::config::CoreConfig;
use crate::desk::{AgentView, ControlError, DeskEvent, RegistrationFailure};
use crate::io::{Live, MediaEvent, Metric, Output, PortToken, Refusal};
use crate::patient::PendingInvite;
use crate::pii::mask_addr;
use crate::ports::Ports;
use crate::records::{EventRecord, Patient};

/// Why a client transaction was started, so its responses reach the right place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientTx {
    /// The INVITE to an agent's phone for offer `seq` of `call`: a late answer
    /// to an earlier offer of the same call to the same agent is not this one's.
    AgentInvite {
        call: CallId,
        agent: String,
        seq: u64,
        /// Which of the offer's INVITEs (one per registered phone of the agent).
        fork: usize,
    },
    /// The INVITE that dials a callback's patient through the trunk.
    Callback { call: CallId },
    /// An INVITE to a phone of the agent consulted about `call` (attended transfer).
    ConsultInvite { call: CallId, fork: usize },
    /// Our session refresh (UPDATE) on a leg of `call`.
    Refresh { call: CallId, leg: crate::io::Leg },
    /// A CANCEL or BYE whose answer changes nothing.
    Fire,
}

/// What an RTP port is being bound for.
#[derive(Debug)]
pub(crate) enum BindFor {
    /// A new call's patient leg: its INVITE is answered once the port is bound.
    Patient(Box<PendingInvite>),
    /// Offer `seq` of `call`: its INVITE goes out once the port is bound.
    Agent { call: CallId, seq: u64 },
    /// The leg that dials a callback's patient.
    Callback { call: CallId },
    /// The leg of the agent consulted about `call`.
    Consult { call: CallId },
    /// The consulting agent's phone's own consultation leg (it dialled the colleague).
    ConsultPhone { call: CallId },
}

/// The owner of a deadline in the core's heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Due {
    Transactions,
    Registrar,
    Acd,
    /// A call's IVR (digit timeout).
    Ivr(CallId),
    /// A leg's session timer (RFC 4028): refresh, or give up on the phone.
    Session(CallId, crate::io::Leg),
    /// A waiting caller's next position / wait announcement.
    Announce(CallId),
    /// A callback: the patient's phone rang its time, or the next try is due.
    Callback(CallId),
    /// The oldest stale INVITE is forgotten.
    Stale,
    /// A voicemail reached its longest length.
    Voicemail(CallId),
    /// The consulted agent's phone rang its time.
    Consult(CallId),
}

/// At most one WARN about refused calls per this long.
const SHED_LOG_EVERY: Duration = Duration::from_secs(10);
/// Ports tried for one leg before the call is refused.
pub(crate) const BIND_ATTEMPTS: u32 = 8;

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

/// Call control, sans IO. See the crate's documentation.
pub struct Core {
    pub(crate) config: CoreConfig,
    pub(crate) menus: Arc<Menus>,
    pub(crate) udp_local: Option<LocalEndpoint>,
    pub(crate) tcp_local: Option<LocalEndpoint>,
    pub(crate) transactions: TransactionLayer,
    pub(crate) registrar: Registrar,
    /// The last refused REGISTER of each configured agent (bounded by the agents).
    pub(crate) registration_failures: HashMap<String, RegistrationFailure>,
    pub(crate) acd: Acd,
    pub(crate) ids: IdGen,
    pub(crate) ports: Ports,
    /// Every bound socket not yet closed: token → port number.
    pub(crate) sockets: HashMap<PortToken, u16>,
    /// Binds asked of the shell and not answered yet.
    pub(crate) binding: HashMap<PortToken, (BindFor, u32)>,
    pub(crate) calls: HashMap<CallId, Call>,
    /// SIP Call-ID of either leg (and of offers that rang out) → the call.
    pub(crate) by_sip_call_id: HashMap<String, CallId>,
    /// The server transaction of each call's INVITE → the call.
    pub(crate) patient_invites: HashMap<TransactionKey, CallId>,
    pub(crate) client_tx: HashMap<TransactionKey, ClientTx>,
    /// INVITEs of offers we gave up on, by SIP Call-ID, to hang up a late answer.
    pub(crate) stale_invites: HashMap<String, (Request, Peer)>,
    /// When each stale INVITE is forgotten (64*T1 after its CANCEL: no 200 comes later),
    /// in that order; it outlives its call, so an answer crossing a last CANCEL is hung up.
    pub(crate) stale_expiry: VecDeque<(Instant, String)>,
    pub(crate) next_call: CallId,
    pub(crate) next_offer: u64,
    pub(crate) next_token: u64,
    pub(crate) deadlines: Deadlines<Due>,
    /// Arrival-to-handling delay of the last SIP message.
    pub(crate) lag: Duration,
    /// SIP messages waiting in the shell's inbound queue.
    pub(crate) inbound_depth: usize,
    pub(crate) shed_log: ShedLog,
    pub(crate) outputs: VecDeque<Output>,
    /// The wall clock at one instant: record times are derived from it.
    pub(crate) clock: (Instant, DateTime<Utc>),
}

impl Core {
    /// A core for `config`, with the IVR's menus and the ACD built from the
    /// same config; `now`/`wall`: the clock at this moment.
    pub fn new(
        config: CoreConfig,
        menus: Menus,
        acd: Acd,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Self {
        let advertise = config.advertise;
        let local = |transport: Transport, addr: SocketAddr| {
            let sent_by = SocketAddr::new(advertise, addr.port());
            let name = match transport {
                Transport::Udp => "udp",
                Transport::Tcp => "tcp",
            };
            LocalEndpoint {
                transport,
                sent_by,
                contact: format!("sip:switchboard@{sent_by};transport={name}"),
            }
        };
        let (first, last) = config.rtp_ports;
        Self {
            menus: Arc::new(menus),
            udp_local: config.udp_local.map(|a| local(Transport::Udp, a)),
            tcp_local: config.tcp_local.map(|a| local(Transport::Tcp, a)),
            transactions: TransactionLayer::new(config.timers),
            registrar: Registrar::new(config.realm.clone(), config.seed)
                .with_algorithms(config.digest.clone())
                .with_nat(config.nat, config.nat_keepalive),
            registration_failures: HashMap::new(),
            acd,
            ids: IdGen::new(config.seed.wrapping_add(1)),
            ports: Ports::new(first, last),
            sockets: HashMap::new(),
            binding: HashMap::new(),
            calls: HashMap::new(),
            by_sip_call_id: HashMap::new(),
            patient_invites: HashMap::new(),
            client_tx: HashMap::new(),
            stale_invites: HashMap::new(),
            stale_expiry: VecDeque::new(),
            next_call: 1,
            next_offer: 1,
            next_token: 1,
            deadlines: Deadlines::default(),
            lag: Duration::ZERO,
            inbound_depth: 0,
            shed_log: ShedLog::default(),
            outputs: VecDeque::new(),
            clock: (now, wall),
            config,
        }
    }

    // ---- inputs ----------------------------------------------------------------------

    /// Re-reads the wall clock (record times follow it from here on).
    pub fn set_wall_clock(&mut self, now: Instant, wall: DateTime<Utc>) {
        self.clock = (now, wall);
    }

    /// How many SIP messages wait in the shell's inbound queue (for overload control).
    pub fn set_inbound_depth(&mut self, depth: usize) {
        self.inbound_depth = depth;
    }

    /// A SIP message from `peer`, taken off the socket at `received_at`.
    pub fn handle_sip(&mut self, now: Instant, received_at: Instant, peer: Peer, bytes: &[u8]) {
        self.lag = now.saturating_duration_since(received_at);
        match sip::message::parse(bytes) {
            Ok(parsed) => self.transactions.handle_message(now, peer, parsed),
            Err(e) => debug!(error = %e, "dropping unparsable SIP message"),
        }
        self.drain(now);
    }

    /// An event from a call's media task.
    pub fn handle_media(&mut self, now: Instant, ev: MediaEvent) {
        match ev {
            MediaEvent::Dtmf { call, digit } => self.digit(now, call, digit),
            MediaEvent::PromptFinished { call, generation } => {
                self.prompt_finished(now, call, generation)
            }
            MediaEvent::MediaTimeout { call, leg } => {
                // Sent just before a transfer dropped the agent's leg: nothing to end.
                let gone = leg == crate::io::Leg::Agent
                    && self
                        .calls
                        .get(&call)
                        .is_some_and(|c| c.agent_dialog.is_none());
                if gone {
                    return;
                }
                self.emit(Output::Metric(Metric::MediaTimeout));
                let reason = match leg {
                    crate::io::Leg::Patient => "caller_media_timeout",
                    crate::io::Leg::Agent => "agent_media_timeout",
                };
                self.hang_up(now, call, Side::System, reason);
            }
            MediaEvent::Stopped { call, recording } => self.media_stopped(now, call, recording),
        }
        self.drain(now);
    }

    /// The socket for `token` was bound (its local address), or could not be.
    pub fn handle_port_bound(
        &mut self,
        now: Instant,
        token: PortToken,
        result: Result<SocketAddr, String>,
    ) {
        self.port_bound(now, token, result);
        self.drain(now);
    }

    /// The caller's patient record was read (`None`: no record, or the read failed), with
    /// the caller's earlier (ended) calls, newest first.
    pub fn handle_patient_loaded(
        &mut self,
        now: Instant,
        call: CallId,
        patient: Option<Patient>,
        history: Vec<crate::records::PastCall>,
    ) {
        self.patient_loaded(now, call, patient, history);
        self.drain(now);
    }

    /// A fresher record of the caller came (the clinic's CRM answered after the stored
    /// lookup): later pops carry it, and desks already showing the call's pop get it.
    pub fn handle_patient_updated(&mut self, now: Instant, call: CallId, patient: Patient) {
        self.patient_updated(call, patient);
        self.drain(now);
    }

    /// The screen-pop of offer `seq` reached the agent's desks (or the cap passed).
    pub fn handle_pop_delivered(&mut self, now: Instant, call: CallId, seq: u64) {
        self.screen_pop_delivered(now, call, seq);
        self.drain(now);
    }

    /// The recording's file was created, or could not be.
    pub fn handle_recording_opened(
        &mut self,
        now: Instant,
        call: CallId,
        result: Result<(), String>,
    ) {
        self.recording_opened(call, result);
        self.drain(now);
    }

    /// Every agent as ops see it.
    pub fn agents(&self, now: Instant) -> Vec<AgentView> {
        self.acd
            .agents()
            .into_iter()
            .map(|a| self.agent_view(now, a))
            .collect()
    }

    /// Every queue as ops see it live: who waits how long, and its agents by state.
    pub fn queues(&self, now: Instant) -> Vec<crate::desk::QueueView> {
        let agents = self.acd.agents();
        self.acd
            .queue_configs()
            .map(|q| {
                let callers: Vec<crate::desk::WaitingCaller> = self
                    .acd
                    .callers(&q.name, now)
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let call = self.calls.get(&c.call);
                        crate::desk::WaitingCaller {
                            call_id: call.map(|call| call.call_id.clone()).unwrap_or_default(),
                            caller: call
                                .map(|call| crate::pii::mask_phone(&call.caller))
                                .unwrap_or_default(),
                            position: i + 1,
                            waited_ms: millis(c.waited),
                            ringing: c.offered_to,
                            callback: c.callback,
                        }
                    })
                    .collect();
                let mut by_state = std::collections::BTreeMap::new();
                for a in agents.iter().filter(|a| self.acd.serves(&a.id, &q.name)) {
                    *by_state.entry(a.state.as_str().to_owned()).or_insert(0) += 1;
                }
                crate::desk::QueueView {
                    name: q.name.clone(),
                    priority: q.priority,
                    strategy: q.strategy.as_str().to_owned(),
                    // On the line: a callback's patient is not holding.
                    longest_wait_ms: callers
                        .iter()
                        .filter(|c| !c.callback)
                        .map(|c| c.waited_ms)
                        .max(),
                    callbacks: callers.iter().filter(|c| c.callback).count(),
                    callers,
                    agents: by_state,
                }
            })
            .collect()
    }

    /// An agent sets themselves ready or not ready (with a reason).
    pub fn set_agent_state(
        &mut self,
        now: Instant,
        agent: &str,
        ready: bool,
        reason: Option<&str>,
    ) -> Result<AgentView, ControlError> {
        let result = self.acd.set_ready(now, agent, ready, reason).map(|_| ());
        self.desk_change(now, agent, result)
    }

    /// An agent in wrap-up needs `by` more of it.
    pub fn extend_wrap_up(
        &mut self,
        now: Instant,
        agent: &str,
        by: Duration,
    ) -> Result<AgentView, ControlError> {
        let result = self.acd.extend_wrap_up(now, agent, by).map(|_| ());
        self.desk_change(now, agent, result)
    }

    /// After a change the desk asked the ACD for: the agent's view, or why it was refused.
    pub(crate) fn desk_change(
        &mut self,
        now: Instant,
        agent: &str,
        result: Result<(), acd::Error>,
    ) -> Result<AgentView, ControlError> {
        let result = match result {
            Ok(()) => self
                .acd
                .agent(agent)
                .map(|a| self.agent_view(now, a))
                .map_err(|_| ControlError::UnknownAgent),
            Err(acd::Error::UnknownAgent(_)) => Err(ControlError::UnknownAgent),
            Err(acd::Error::AgentOffline(_)) => Err(ControlError::Rejected(
                "the agent's phone is not registered: register it, then set the state".to_owned(),
            )),
            Err(e) => Err(ControlError::Rejected(e.to_string())),
        };
        self.drain(now);
        result
    }

    /// The clinic's day begins: the ACD's per-day counts (fewest calls, least talk time)
    /// start afresh.
    pub fn new_day(&mut self) {
        self.acd.reset_counts();
    }

    /// Hangs up every call (the process is stopping).
    pub fn shutdown(&mut self, now: Instant) {
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            self.hang_up(now, id, Side::System, "shutdown");
        }
        self.drain(now);
    }

    // ---- time ------------------------------------------------------------------------

    /// The soonest deadline of anything in the core.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    /// Fires every deadline due at `now`, soonest first.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Bounded: each owner is disarmed when popped and re-armed by the drain
        // (an IVR later than now), so one pass pops each owner at most once.
        for _ in 0..self.deadlines.len() + 16 {
            let Some(due) = self.deadlines.pop_due(now) else {
                break;
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
                    for a in self.registrar.abandoned(now) {
                        self.challenge_abandoned(now, a);
                    }
                    for binding in self.registrar.due_keepalives(now) {
                        self.send_keepalive(&binding);
                    }
                }
                Due::Acd => self.acd.handle_timeout(now),
                Due::Ivr(id) => self.ivr_timeout(now, id),
                Due::Session(id, leg) => self.session_due(now, id, leg),
                Due::Announce(id) => self.announce(now, id),
                Due::Callback(id) => self.callback_due(now, id),
                Due::Stale => self.forget_stale(now),
                Due::Voicemail(id) => self.voicemail_done(now, id, Side::System, false),
                Due::Consult(id) => self.consult_due(now, id),
            }
        }
        self.drain(now);
    }

    // ---- outputs ---------------------------------------------------------------------

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The live counts (gauges; all zero once every call ended and timers ran out).
    pub fn live(&self) -> Live {
        Live {
            calls: self.calls.len(),
            transactions: self.transactions.transaction_count(),
            transaction_timers: self.transactions.timer_count(),
            rtp_ports: self.ports.in_use(),
            entries: self.by_sip_call_id.len()
                + self.patient_invites.len()
                + self.client_tx.len()
                + self.stale_invites.len()
                + self.sockets.len()
                + self.binding.len(),
            timers: self.deadlines.len(),
        }
    }

    /// The arrival-to-handling delay of the last SIP message.
    pub fn lag(&self) -> Duration {
        self.lag
    }

    /// Why a new call cannot be carried now, if it cannot.
    pub fn overload(&self) -> Option<Refusal> {
        let starting = self
            .binding
            .values()
            .filter(|(b, _)| matches!(b, BindFor::Patient(_)))
            .count();
        let busy = self.calls.len() + starting;
        if busy >= self.config.capacity {
            // A callback waiting off the line holds no port: it is not a call carried.
            // (Counted only near capacity, so the scan costs nothing in normal running.)
            let off_line = self
                .calls
                .values()
                .filter(|c| {
                    c.phase == crate::call::Phase::Callback
                        && c.line.is_none()
                        && c.agent_dialog.is_none()
                        && c.ringing.is_empty()
                        && c.callback
                            .as_ref()
                            .is_some_and(|cb| cb.dial.is_none() && !cb.media_running)
                })
                .count();
            if busy - off_line >= self.config.capacity {
                return Some(Refusal::Capacity);
            }
        }
        if self.lag > self.config.max_lag || self.inbound_depth > self.config.max_inbound_depth {
            return Some(Refusal::Lag);
        }
        None
    }

    // ---- inside ----------------------------------------------------------------------

    pub(crate) fn emit(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    /// The wall-clock time at `now`.
    pub(crate) fn wall(&self, now: Instant) -> DateTime<Utc> {
        let (at, wall) = self.clock;
        let since = now.saturating_duration_since(at);
        wall + chrono::Duration::from_std(since).unwrap_or(chrono::Duration::zero())
    }

    /// Our endpoint for a transport (the one a peer reached us on).
    pub(crate) fn local_for(&self, transport: Transport) -> Option<LocalEndpoint> {
        match transport {
            Transport::Udp => self.udp_local.clone().or_else(|| self.tcp_local.clone()),
            Transport::Tcp => self.tcp_local.clone().or_else(|| self.udp_local.clone()),
        }
    }

    /// Our endpoint towards a call's leg (the transport its phone reached us on).
    pub(crate) fn leg_local(
        &self,
        c: &crate::call::Call,
        leg: crate::io::Leg,
    ) -> Option<LocalEndpoint> {
        match leg {
            crate::io::Leg::Patient => c
                .line
                .as_ref()
                .and_then(|l| self.local_for(l.peer.transport)),
            crate::io::Leg::Agent => c
                .agent_dialog
                .as_ref()
                .and_then(|d| self.local_for(d.peer.transport)),
        }
    }

    /// A fresh token for a socket.
    pub(crate) fn token(&mut self) -> PortToken {
        let t = PortToken(self.next_token);
        self.next_token += 1;
        t
    }

    /// Closes a socket no media task holds: the shell drops it, the port is free.
    pub(crate) fn release_socket(&mut self, token: PortToken) {
        if let Some(port) = self.sockets.remove(&token) {
            self.ports.put(port);
            self.emit(Output::ReleaseRtp { token });
        }
    }

    /// A media task closed this socket: its port is free.
    pub(crate) fn socket_closed(&mut self, token: PortToken) {
        if let Some(port) = self.sockets.remove(&token) {
            self.ports.put(port);
        }
    }

    /// Asks the shell to bind the next free port for `purpose` (the
    /// `attempt`-th try); gives `purpose` back if no port is free.
    pub(crate) fn bind_port(&mut self, purpose: BindFor, attempt: u32) -> Result<(), BindFor> {
        let Some(port) = self.ports.take() else {
            return Err(purpose);
        };
        let token = self.token();
        self.sockets.insert(token, port);
        self.binding.insert(token, (purpose, attempt));
        self.emit(Output::BindRtp { token, port });
        Ok(())
    }

    fn port_bound(&mut self, now: Instant, token: PortToken, result: Result<SocketAddr, String>) {
        let Some((purpose, attempt)) = self.binding.remove(&token) else {
            return;
        };
        let error = match result {
            Ok(local) => {
                match purpose {
                    BindFor::Patient(pending) => self.answer_call(now, *pending, token, local),
                    BindFor::Agent { call, seq } => self.ring_agent(now, call, seq, token, local),
                    BindFor::Callback { call } => self.send_dial(now, call, token, local),
                    BindFor::Consult { call } => self.ring_consulted(now, call, token, local),
                    BindFor::ConsultPhone { call } => {
                        self.consult_phone_bound(now, call, token, local)
                    }
                }
                return;
            }
            Err(e) => e,
        };
        // Taken by another program: that port goes to the back of the line; try the next.
        debug!(error = %error, "RTP port could not be bound; trying another");
        self.socket_closed(token);
        let purpose = if attempt + 1 < BIND_ATTEMPTS {
            match self.bind_port(purpose, attempt + 1) {
                Ok(()) => return,
                Err(purpose) => purpose,
            }
        } else {
            purpose
        };
        warn!(error = %error, "no RTP port could be bound");
        match purpose {
            BindFor::Patient(pending) => self.refuse_unbound(now, *pending),
            BindFor::Agent { call, seq } => {
                let agent = self
                    .calls
                    .get(&call)
                    .and_then(|c| c.ringing.iter().find(|o| o.seq == seq))
                    .map(|o| o.agent.clone());
                if let Some(agent) = agent {
                    self.agent_unreachable(now, call, &agent, seq);
                }
            }
            BindFor::Callback { call } => {
                self.dial_failed(now, call, acd::CallbackResult::Failed, false)
            }
            BindFor::Consult { call } | BindFor::ConsultPhone { call } => {
                self.end_consult(now, call, crate::consult::ConsultEnd::Declined, true)
            }
        }
    }

    /// Drains every part's outputs until nothing is left to do.
    pub(crate) fn drain(&mut self, now: Instant) {
        // Bounded: each pass handles what the previous one produced; a runaway
        // would be a bug, so stop after many passes rather than spin.
        for _ in 0..1000 {
            let mut progressed = false;
            while let Some(ev) = self.transactions.poll_event() {
                progressed = true;
                self.handle_transaction_event(now, ev);
            }
            while let Some(ev) = self.acd.poll_event() {
                progressed = true;
                self.handle_acd_event(now, ev);
            }
            while let Some(entry) = self.acd.poll_log() {
                self.store_log_entry(entry);
            }
            while let Some(t) = self.transactions.poll_transmit() {
                self.outputs.push_back(Output::Transmit(t));
            }
            if !progressed {
                self.arm_cores();
                return;
            }
        }
        self.arm_cores();
        warn!("call control drain did not settle");
    }

    /// Puts the transaction layer's, registrar's and ACD's next deadlines in the heap.
    fn arm_cores(&mut self) {
        self.deadlines
            .set(Due::Transactions, self.transactions.poll_timeout());
        self.deadlines
            .set(Due::Registrar, self.registrar.poll_timeout());
        self.deadlines.set(Due::Acd, self.acd.poll_timeout());
    }

    fn handle_transaction_event(&mut self, now: Instant, ev: TransactionEvent) {
        match ev {
            TransactionEvent::Request { key, request, peer } => {
                self.handle_request(now, key, request, peer)
            }
            TransactionEvent::Ack { request, .. } => {
                debug!(call_id = ?request.call_id().ok(), "ack");
            }
            TransactionEvent::Response { key, response } => match self.client_tx.get(&key).cloned()
            {
                Some(ClientTx::AgentInvite {
                    call,
                    agent,
                    seq,
                    fork,
                }) => {
                    self.handle_agent_response(now, (call, &agent, seq, fork), &key, response);
                }
                Some(ClientTx::Callback { call }) => {
                    self.handle_dial_response(now, call, &key, response);
                }
                Some(ClientTx::ConsultInvite { call, fork }) => {
                    self.handle_consult_response(now, (call, fork), &key, Some(response));
                }
                Some(ClientTx::Refresh { call, leg }) if response.status() >= 200 => {
                    self.client_tx.remove(&key);
                    self.refresh_answered(now, call, leg, Some(response.status()));
                }
                // A CANCEL's or BYE's final answer: nothing more will come.
                Some(ClientTx::Fire) if response.status() >= 200 => {
                    self.client_tx.remove(&key);
                }
                // A 200 to an INVITE of a call that is gone (it crossed our CANCEL).
                None if (200..300).contains(&response.status())
                    && response.cseq().is_ok_and(|(_, m)| m == Method::Invite) =>
                {
                    self.ack_and_bye_stale(now, &response);
                }
                _ => {}
            },
            TransactionEvent::Timeout { key } => match self.client_tx.remove(&key) {
                Some(ClientTx::AgentInvite {
                    call,
                    agent,
                    seq,
                    fork,
                }) => {
                    self.fork_over(now, call, &agent, seq, fork, None);
                }
                Some(ClientTx::Refresh { call, leg }) => {
                    self.refresh_answered(now, call, leg, None)
                }
                Some(ClientTx::Callback { call }) => self.dial_timed_out(now, call, &key),
                Some(ClientTx::ConsultInvite { call, fork }) => {
                    self.handle_consult_response(now, (call, fork), &key, None)
                }
                Some(ClientTx::Fire) => {}
                None => self.server_timeout(now, &key),
            },
        }
    }

    fn handle_request(&mut self, now: Instant, key: TransactionKey, request: Request, peer: Peer) {
        if !matches!(request.method(), Method::Ack | Method::Cancel) {
            let unsupported = crate::refresh::unsupported(&request);
            if !unsupported.is_empty() {
                info!(method = %request.method().as_str(), require = ?unsupported, "refused: extension we lack (420)");
                let response = response_to(&request, 420, "Bad Extension", None)
                    .with_header("Unsupported", &unsupported.join(", "));
                self.transactions.send_response(now, &key, response);
                return;
            }
        }
        match request.method() {
            Method::Register => self.handle_register(now, key, request, peer),
            Method::Options => {
                let response = response_to(&request, 200, "OK", None)
                    .with_header("Allow", &format!("{}, REGISTER", crate::refresh::ALLOW))
                    .with_header("Accept", "application/sdp")
                    .with_header(
                        "Supported",
                        &crate::refresh::EXTENSIONS
                            .iter()
                            .chain(&crate::refresh::REGISTER_EXTENSIONS)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", "),
                    );
                self.transactions.send_response(now, &key, response);
            }
            Method::Invite if request.to_tag().is_none() => {
                self.handle_new_call(now, key, request, peer)
            }
            Method::Invite => self.handle_refresh(now, key, request),
            Method::Other(m) if m == "UPDATE" => self.handle_refresh(now, key, request),
            Method::Other(m) if m == "REFER" => self.handle_refer(now, key, request),
            Method::Bye => self.handle_bye(now, key, request),
            Method::Cancel => self.handle_cancel(now, key, request),
            Method::Info => self.handle_info(now, key, request),
            Method::Ack => {}
            _ => {
                let response = response_to(&request, 405, "Method Not Allowed", None)
                    .with_header("Allow", &format!("{}, REGISTER", crate::refresh::ALLOW));
                self.transactions.send_response(now, &key, response);
            }
        }
    }

    fn handle_register(&mut self, now: Instant, key: TransactionKey, request: Request, peer: Peer) {
        let agents = &self.config.agents;
        let account_of = |user: &str| {
            agents.get(user).map(|a| Account {
                password: a.password.clone(),
                algorithms: a.digest.clone(),
            })
        };
        let (response, change) = self
            .registrar
            .handle_register(now, &request, peer, &account_of);
        self.transactions.send_response(now, &key, response);
        match change {
            Some(RegistrationChange::Registered { user }) => {
                info!(agent = %user, transport = ?peer.transport, "agent registered");
                if let Err(e) = self.acd.agent_online(now, &user, true) {
                    warn!(error = %e, agent = %user, "registered user is not an agent");
                }
            }
            Some(RegistrationChange::Unregistered { user }) => {
                info!(agent = %user, "agent unregistered");
                let _ = self.acd.agent_online(now, &user, false);
            }
            Some(RegistrationChange::Rejected {
                user,
                status,
                reason,
            }) => self.registration_refused(now, &request, peer, user, status, reason),
            _ => {}
        }
    }

    /// A phone that got a 401 and never answered it: said plainly for our agents (the
    /// usual cause is a digest algorithm the phone lacks), at debug for anyone else.
    fn challenge_abandoned(&mut self, now: Instant, a: Abandoned) {
        let offered: Vec<&str> = a.offered.iter().map(|x| x.name()).collect();
        let offered = offered.join(", ");
        let source = mask_addr(a.peer.addr);
        if !self.config.agents.contains_key(&a.user) {
            debug!(user = %a.user, %source, "a challenged REGISTER was never answered");
            return;
        }
        warn!(
            agent = %a.user,
            %source,
            offered = %offered,
            user_agent = a.user_agent.as_deref().unwrap_or("-"),
            "registration refused: the phone never answered the digest challenge; it may not support {offered}"
        );
        let failure = RegistrationFailure {
            at: self
                .wall(now)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            status: 401,
            reason: "challenge_unanswered".to_owned(),
            detail: format!("the phone never answered the 401 offering {offered}"),
            source,
            user_agent: a.user_agent,
        };
        self.registration_failures.insert(a.user, failure);
    }

    /// Logs a refused REGISTER once, with its reason and masked source, and keeps it for
    /// `/api/agents` when the user is one of ours. A stale nonce is routine (phones retry
    /// at once by themselves): logged at debug and not kept.
    fn registration_refused(
        &mut self,
        now: Instant,
        request: &Request,
        peer: Peer,
        user: Option<String>,
        status: u16,
        reason: RegisterRefusal,
    ) {
        let source = mask_addr(peer.addr);
        let user_agent = request.header("User-Agent");
        if reason == RegisterRefusal::StaleNonce {
            debug!(user = ?user, %source, "registration re-challenged: stale nonce");
            return;
        }
        warn!(
            user = ?user,
            status,
            reason = reason.code(),
            %source,
            user_agent = user_agent.as_deref().unwrap_or("-"),
            "registration refused: {reason}"
        );
        let Some(user) = user.filter(|u| self.config.agents.contains_key(u)) else {
            return;
        };
        let failure = RegistrationFailure {
            at: self
                .wall(now)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            status,
            reason: reason.code().to_owned(),
            detail: reason.to_string(),
            source,
            user_agent,
        };
        self.registration_failures.insert(user, failure);
    }

    fn handle_acd_event(&mut self, now: Instant, ev: AcdEvent) {
        match ev {
            AcdEvent::Offer {
                call,
                agent,
                queue,
                waited,
                ring_timeout,
            } => self.offer(now, call, agent, queue, waited, ring_timeout),
            AcdEvent::RingOut { call, agent } => self.ring_out(now, call, &agent, true),
            AcdEvent::Withdrawn { call, agent } => self.ring_out(now, call, &agent, false),
            AcdEvent::Connected {
                call,
                agent,
                waited,
            } => self.connected(now, call, &agent, waited),
            AcdEvent::Callback { call, .. } => self.callback_requested(now, call),
            AcdEvent::Moved { call, from, to } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.span
                        .in_scope(|| info!(%from, %to, "queue rule: moved to the overflow queue"));
                    c.queue = Some(to.clone());
                }
                self.update_queue_gauge(&from);
                self.update_queue_gauge(&to);
                self.save_call_record(call);
            }
            AcdEvent::Exited {
                call,
                queue,
                reason,
            } => {
                let why = match reason {
                    acd::ExitReason::Timeout => "queue_timeout",
                    acd::ExitReason::Full => "queue_full",
                    acd::ExitReason::NoAgents => "no_agents",
                    acd::ExitReason::Key => "queue_exit_key",
                };
                if self.voicemail_start(now, call, &queue) {
                    self.update_queue_gauge(&queue);
                    return;
                }
                if let Some(c) = self.calls.get_mut(&call) {
                    c.span
                        .in_scope(|| info!(%queue, reason = why, "queue rule: the call ends"));
                    c.overflowed = true;
                }
                self.hang_up(now, call, Side::System, why);
                self.update_queue_gauge(&queue);
            }
            AcdEvent::AgentState {
                agent,
                state,
                reason,
            } => {
                info!(%agent, state = state.as_str(), reason = reason.as_deref().unwrap_or(""), "agent state");
                self.emit(Output::Desk {
                    agent,
                    event: DeskEvent::State {
                        state: state.as_str().to_owned(),
                        reason,
                    },
                });
            }
        }
    }

    /// Writes the ACD's event log entry down, naming the call by its call id; an offer's
    /// start and end also go into the call's record (who rang, how long, why it ended).
    pub(crate) fn store_log_entry(&mut self, entry: acd::Entry) {
        let call = entry
            .call
            .and_then(|id| self.calls.get_mut(&id).map(|c| (id, c)));
        let call_id = call.as_ref().map(|(_, c)| c.call_id.clone());
        if let Some((id, c)) = call {
            let ended = match &entry.event {
                acd::Logged::Offered { agent, .. } => {
                    c.offers.push(crate::records::OfferRecord {
                        agent: agent.clone(),
                        rang_ms: None,
                        ended: None,
                    });
                    None
                }
                acd::Logged::OfferEnded {
                    agent,
                    rang_ms,
                    why,
                    ..
                } => Some((agent, *rang_ms, offer_end_name(*why))),
                acd::Logged::Connected { agent, rang_ms, .. } => {
                    Some((agent, *rang_ms, "answered"))
                }
                _ => None,
            };
            if let Some((agent, rang_ms, why)) = ended {
                if let Some(o) = c
                    .offers
                    .iter_mut()
                    .rev()
                    .find(|o| o.agent == *agent && o.ended.is_none())
                {
                    o.rang_ms = Some(rang_ms);
                    o.ended = Some(why.to_owned());
                }
                self.save_call_record(id);
            }
        }
        self.emit(Output::StoreEvent(EventRecord {
            at: self.wall(entry.at),
            call_id,
            event: entry.event,
        }));
    }

    fn agent_view(&self, now: Instant, a: acd::AgentView) -> AgentView {
        let current_call = a
            .current_call
            .and_then(|id| self.calls.get(&id))
            .map(|c| c.call_id.clone());
        AgentView {
            name: self
                .config
                .agents
                .get(&a.id)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            state: a.state.as_str().to_owned(),
            reason: a.not_ready_reason.clone(),
            in_state_ms: a
                .state_since
                .map(|since| millis(now.saturating_duration_since(since))),
            wrap_up_left_ms: a
                .wrap_up_until
                .map(|until| millis(until.saturating_duration_since(now))),
            consecutive_misses: a.consecutive_misses,
            registered: self.registrar.lookup(&a.id, now).is_some(),
            current_call,
            missed_rings: a.missed_rings,
            last_registration_failure: self.registration_failures.get(&a.id).cloned(),
            phones: self
                .registrar
                .contacts(&a.id, now)
                .into_iter()
                .map(|b| crate::desk::RegisteredPhone {
                    transport: b.target.transport.as_str().to_ascii_lowercase(),
                    address: mask_addr(b.target.addr),
                    behind_nat: b.behind_nat,
                    user_agent: b.user_agent.clone(),
                })
                .collect(),
            id: a.id,
        }
    }

    /// An INVITE we CANCELled: a 200 that crosses the CANCEL is ACKed and hung up (for
    /// 64*T1, as long as one can come).
    pub(crate) fn remember_stale(&mut self, now: Instant, invite: Request, peer: Peer) {
        let Ok(cid) = invite.call_id() else {
            return;
        };
        let until = now + self.config.timers.t1 * 64;
        self.stale_invites.insert(cid.clone(), (invite, peer));
        self.stale_expiry.push_back((until, cid));
        self.arm_stale();
    }

    /// Forgets the stale INVITEs whose time is up.
    fn forget_stale(&mut self, now: Instant) {
        while let Some((until, _)) = self.stale_expiry.front()
            && *until <= now
        {
            if let Some((_, cid)) = self.stale_expiry.pop_front() {
                self.stale_invites.remove(&cid);
            }
        }
        self.arm_stale();
    }

    fn arm_stale(&mut self) {
        let next = self.stale_expiry.front().map(|(at, _)| *at);
        self.deadlines.set(Due::Stale, next);
    }

    /// Sends a request outside any transaction's retransmission (ACK to a 2xx).
    pub(crate) fn send_stateless(&mut self, peer: Peer, request: Request) {
        self.transactions
            .send_stateless(peer, SipMessage::Request(request));
    }

    /// Sends a request whose answer changes nothing (CANCEL, BYE).
    pub(crate) fn fire(&mut self, now: Instant, peer: Peer, request: Request) {
        let key = self.transactions.send_request(now, peer, request);
        self.client_tx.insert(key, ClientTx::Fire);
    }
}

/// How the call record names the way an offer ended.
fn offer_end_name(why: acd::OfferEnd) -> &'static str {
    match why {
        acd::OfferEnd::RangOut => "rang_out",
        acd::OfferEnd::Declined => "declined",
        acd::OfferEnd::LoggedOut => "logged_out",
        acd::OfferEnd::CallerHungUp => "caller_hung_up",
        acd::OfferEnd::AnsweredElsewhere => "answered_elsewhere",
    }
}
