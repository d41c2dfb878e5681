//! The run: one task owning every agent and call, driven by a `select!` over the SIP
//! socket, the two RTP sockets, desk events and one 2 ms tick that paces all media (each
//! call in one of ten slots, so the calls' packets are spread over the 20 ms as real
//! phones' are, not sent in one burst), launches calls and fires timers. Agents' desks are
//! small tasks feeding it a channel.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use futures_util::stream::SelectAll;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sip::dialog::LocalEndpoint;
use sip::ids::IdGen;
use sip::transaction::{TimerConfig, TransactionKey, TransactionLayer};
use sip::transport::{Peer, Transport};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::calls::{Agent, Call, Phase};
use crate::desk::{self, DeskEvent, DeskMsg, DeskNote, DeskRead, DeskStream};
use crate::marker::{Direction, tone_frame};
use crate::media_io::{self, Arrival, Sender};
use crate::procstat::{self, ProcSample};
use crate::recording_check;
use crate::relay_cpu::SteadyWindow;
use crate::server_config::agent_credentials;
use crate::stats::{Histogram, Samples};
use crate::summary::{self, CallCounts, ProcFigures, Summary};

/// Who hangs up each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ByeFrom {
    Patient,
    Agent,
    /// Even calls the patient, odd calls the agent.
    Mixed,
}

/// Everything `run` was asked for.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub bind: IpAddr,
    pub agents: usize,
    pub first_agent_id: u32,
    pub calls: usize,
    pub rate: f64,
    pub hold: Duration,
    pub answer_delay_ms: (u64, u64),
    pub no_answer_pct: f64,
    pub bye_from: ByeFrom,
    pub digit_event: u8,
    pub seed: u64,
    pub server_pid: Option<u32>,
    pub recordings: Option<PathBuf>,
    pub check_recordings: usize,
    pub deadline: Option<Duration>,
    pub setup_timeout: Duration,
    /// Measure the server's CPU per stream over this long once every call is bridged.
    pub steady: Option<Duration>,
    pub verbose: bool,
}

/// What a client or server transaction of ours is for.
#[derive(Debug, Clone, Copy)]
pub enum TxFor {
    Register(usize),
    PatientInvite(u32),
    PatientBye(u32),
    AgentBye(u32),
    /// The server's INVITE to an agent (call, leg generation).
    AgentInvite(u32, u32),
}

/// Named timers; the engine keeps them in one heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    AgentAnswer { call: u32, generation: u32 },
    Hangup { call: u32 },
    SendBye { call: u32 },
    RetryReady { agent: usize },
    Reregister { agent: usize },
}

/// In-flight packets get this long after the senders stop, before the BYE.
pub const DRAIN: Duration = Duration::from_millis(300);
/// The media clock's step: a tenth of a packet time; call `i` sends in slot `i % SLOTS`.
pub const TICK: Duration = Duration::from_millis(2);
/// Ticks per 20 ms packet time.
pub const SLOTS: u64 = 10;
/// How long the end of the run waits for BYEs to be answered.
const WIND_DOWN: Duration = Duration::from_secs(3);

pub struct Engine {
    pub cfg: RunConfig,
    pub epoch: Instant,
    pub sip_socket: Arc<UdpSocket>,
    pub local_sip: SocketAddr,
    pub patient_local: LocalEndpoint,
    pub server: Peer,
    pub tl: TransactionLayer,
    pub ids: IdGen,
    pub rng: StdRng,
    pub txs: HashMap<TransactionKey, TxFor>,
    pub agents: Vec<Agent>,
    pub agent_by_id: HashMap<String, usize>,
    pub calls: Vec<Call>,
    pub active: Vec<u32>,
    pub call_by_sip_id: HashMap<String, u32>,
    pub leg_by_sip_id: HashMap<String, (u32, u32)>,
    pub patient_rtp: Arc<UdpSocket>,
    pub agent_rtp: Arc<UdpSocket>,
    pub patient_rtp_addr: SocketAddr,
    pub agent_rtp_addr: SocketAddr,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    timer_seq: u64,
    pub desk_tx: mpsc::UnboundedSender<DeskMsg>,
    /// Agents whose INVITE came before their screen-pop was read: look at their desk now.
    pub pop_checks: Vec<(usize, u32)>,
    /// Screen-pops that were already readable when their INVITE was read (lead ~0).
    pub pops_with_invite: u64,
    pub setup: Samples,
    pub queue_to_agent: Samples,
    pub pop_latency: Samples,
    pub pop_lead: Samples,
    pub delays: [Histogram; 2],
    pub tick_lag: Histogram,
    pub invites_before_pop: u64,
    pub anomalies: std::collections::BTreeMap<String, u64>,
    pub missed_events: u64,
    pub prompt_packets: u64,
    pub rtp_send_errors: u64,
    /// The step's outgoing RTP, per socket (one `sendmmsg` each per step).
    patient_batch: crate::media_io::Batch,
    agent_batch: crate::media_io::Batch,
    pub sip_errors: u64,
    patient_tone: [u8; 160],
    agent_tone: [u8; 160],
    calls_start: Option<Instant>,
    next_launch: usize,
    /// Media ticks so far (the slot is `ticks % SLOTS`).
    ticks: u64,
    deadline: Option<Instant>,
    wind_down_until: Option<Instant>,
    server_first: Option<ProcSample>,
    /// Both processes when the calls started (agents registered, desks connected).
    server_ready: Option<ProcSample>,
    self_ready: Option<ProcSample>,
    server_last: Option<ProcSample>,
    server_peak_rss: u64,
    self_first: Option<ProcSample>,
    self_peak_rss: u64,
    peak_active: u64,
    last_proc_sample: Instant,
    steady: Option<SteadyWindow>,
}

async fn bind_udp(ip: IpAddr) -> Result<Arc<UdpSocket>> {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .with_context(|| format!("binding a UDP socket on {ip}"))?;
    Ok(Arc::new(s))
}

impl Engine {
    pub async fn new(cfg: RunConfig, desk_tx: mpsc::UnboundedSender<DeskMsg>) -> Result<Self> {
        let sip_socket = bind_udp(cfg.bind).await?;
        let patient_rtp = bind_udp(cfg.bind).await?;
        let agent_rtp = bind_udp(cfg.bind).await?;
        // The SIP socket too: every agent and patient shares it, and at 200 setups a
        // second a burst overflows the default buffer (lost ACKs and BYEs on our side).
        for s in [&sip_socket, &patient_rtp, &agent_rtp] {
            let got = media_io::widen_receive_buffer(s, media_io::RTP_RECV_BUFFER)
                .context("widening a socket's receive buffer")?;
            if cfg.verbose && got < media_io::RTP_RECV_BUFFER {
                eprintln!("switchboard-load: receive buffer {got} bytes (net.core.rmem_max)");
            }
        }
        for s in [&patient_rtp, &agent_rtp] {
            media_io::stamp_arrivals(s).context("asking for kernel arrival stamps")?;
        }
        let local_sip = sip_socket.local_addr()?;
        let mut agents = Vec::with_capacity(cfg.agents);
        let mut agent_by_id = HashMap::new();
        let mut ids = IdGen::new(cfg.seed);
        for i in 0..cfg.agents {
            let (id, password) = agent_credentials(cfg.first_agent_id, i);
            agent_by_id.insert(id.clone(), i);
            agents.push(Agent {
                id,
                password,
                token: None,
                desk_connected: false,
                registered: false,
                ready: false,
                failed: None,
                register_call_id: ids.call_id(),
                register_cseq: 0,
                auth_attempts: 0,
                ready_attempts: 0,
                pending_offer: None,
                early_invite: None,
                calls_answered: 0,
            });
        }
        Ok(Engine {
            epoch: Instant::now(),
            patient_local: LocalEndpoint {
                transport: Transport::Udp,
                sent_by: local_sip,
                contact: format!("sip:patient@{local_sip}"),
            },
            server: Peer::udp(cfg.sip),
            tl: TransactionLayer::new(TimerConfig::default()),
            rng: StdRng::seed_from_u64(cfg.seed ^ 0x5eed),
            ids,
            txs: HashMap::new(),
            agents,
            agent_by_id,
            calls: Vec::with_capacity(cfg.calls),
            active: Vec::with_capacity(cfg.calls),
            call_by_sip_id: HashMap::new(),
            leg_by_sip_id: HashMap::new(),
            patient_rtp_addr: patient_rtp.local_addr()?,
            agent_rtp_addr: agent_rtp.local_addr()?,
            patient_rtp,
            agent_rtp,
            sip_socket,
            local_sip,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            desk_tx,
            pop_checks: Vec::new(),
            pops_with_invite: 0,
            setup: Samples::with_capacity(cfg.calls),
            queue_to_agent: Samples::with_capacity(cfg.calls),
            pop_latency: Samples::with_capacity(cfg.calls),
            pop_lead: Samples::with_capacity(cfg.calls * 2),
            delays: [Histogram::default(), Histogram::default()],
            tick_lag: Histogram::default(),
            invites_before_pop: 0,
            anomalies: std::collections::BTreeMap::new(),
            missed_events: 0,
            prompt_packets: 0,
            rtp_send_errors: 0,
            patient_batch: crate::media_io::Batch::default(),
            agent_batch: crate::media_io::Batch::default(),
            sip_errors: 0,
            patient_tone: tone_frame(400.0, 6000),
            agent_tone: tone_frame(1000.0, 6000),
            calls_start: None,
            next_launch: 0,
            ticks: 0,
            deadline: None,
            wind_down_until: None,
            server_first: None,
            server_ready: None,
            self_ready: None,
            server_last: None,
            server_peak_rss: 0,
            self_first: None,
            self_peak_rss: 0,
            peak_active: 0,
            last_proc_sample: Instant::now(),
            steady: cfg.steady.map(|d| SteadyWindow::new(d, cfg.server_pid)),
            cfg,
        })
    }

    pub fn schedule(&mut self, at: Instant, timer: Timer) {
        self.timer_seq += 1;
        self.timers.push(Reverse((at, self.timer_seq, timer)));
    }

    /// Counts something the server did that a phone would not expect (not a call failure).
    pub fn anomaly(&mut self, what: &str) {
        *self.anomalies.entry(what.to_owned()).or_default() += 1;
    }

    pub fn log(&self, msg: impl std::fmt::Display) {
        if self.cfg.verbose {
            eprintln!("[{:>8.3}] {msg}", self.epoch.elapsed().as_secs_f64());
        }
    }

    /// Runs setup, the calls and the wind-down; returns the summary (thresholds not applied).
    pub async fn run(mut self, mut desk_rx: mpsc::UnboundedReceiver<DeskMsg>) -> Result<Summary> {
        for (i, a) in self.agents.iter().enumerate() {
            tokio::spawn(desk::connect(
                i,
                self.cfg.http,
                a.id.clone(),
                a.password.clone(),
                self.desk_tx.clone(),
            ));
        }
        let mut desks: SelectAll<DeskStream> = SelectAll::new();
        self.sample_procs(true);
        let sip_socket = self.sip_socket.clone();
        let patient_rtp = self.patient_rtp.clone();
        let agent_rtp = self.agent_rtp.clone();
        let mut sip_buf = vec![0u8; 65_536];
        let mut rx_batch = media_io::RecvBatch::default();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let setup_deadline = Instant::now() + self.cfg.setup_timeout;
        // Hard stop whatever happens: setup + the computed deadline is checked in tick().
        loop {
            tokio::select! {
                r = sip_socket.recv_from(&mut sip_buf) => {
                    let now = Instant::now();
                    match r {
                        Ok((n, from)) => {
                            let bytes = sip_buf.get(..n).unwrap_or_default();
                            self.on_sip_datagram(now, from, bytes);
                            self.check_pops(&mut desks).await;
                        }
                        Err(_) => self.sip_errors += 1,
                    }
                }
                r = patient_rtp.readable() => {
                    if r.is_ok() {
                        self.drain_rtp(&patient_rtp, Direction::AgentToPatient, &mut rx_batch);
                    }
                }
                r = agent_rtp.readable() => {
                    if r.is_ok() {
                        self.drain_rtp(&agent_rtp, Direction::PatientToAgent, &mut rx_batch);
                    }
                }
                msg = desk_rx.recv() => {
                    if let Some(msg) = msg {
                        self.on_desk(msg, &mut desks);
                    }
                }
                Some((agent, read)) = desks.next(), if !desks.is_empty() => self.on_desk_read(agent, read),
                scheduled = ticker.tick() => {
                    let now = Instant::now();
                    self.tick_lag.push_us(i64::try_from(now.saturating_duration_since(scheduled.into_std()).as_micros()).unwrap_or(i64::MAX));
                    if self.calls_start.is_none() && (self.setup_done() || now >= setup_deadline)
                            && !self.start_calls(now) {
                                let problems: Vec<String> = self.agents.iter().filter_map(|a| a.failed.clone()).take(5).collect();
                                bail!("no agent became ready within {:?}: {}", self.cfg.setup_timeout, problems.join("; "));
                            }
                    if self.tick(now) {
                        break;
                    }
                }
            }
            self.flush_sip();
        }
        drop(desks);
        self.sample_procs(false);
        Ok(self.summarise())
    }

    fn setup_done(&self) -> bool {
        self.agents.iter().all(|a| a.ready || a.failed.is_some())
    }

    /// Starts the call phase; false if no agent is ready.
    fn start_calls(&mut self, now: Instant) -> bool {
        let ready = self.agents.iter().filter(|a| a.ready).count();
        if ready == 0 {
            return false;
        }
        for a in self.agents.iter().filter(|a| !a.ready) {
            eprintln!(
                "switchboard-load: agent {} not ready: {}",
                a.id,
                a.failed.as_deref().unwrap_or("timed out")
            );
        }
        let n = self.cfg.calls as f64;
        let (lo, hi) = self.cfg.answer_delay_ms;
        let per_call =
            self.cfg.hold.as_secs_f64() + (lo + hi) as f64 / 2000.0 + DRAIN.as_secs_f64() + 0.5;
        let arrivals = n / self.cfg.rate;
        let service = n * per_call / ready as f64;
        let estimate =
            arrivals.max(service) + self.cfg.hold.as_secs_f64() + hi as f64 / 1000.0 + 20.0;
        let estimate = if self.cfg.no_answer_pct > 0.0 {
            estimate * 1.5 + 30.0
        } else {
            estimate
        };
        let limit = self
            .cfg
            .deadline
            .unwrap_or(Duration::from_secs_f64(estimate.min(86_400.0)));
        self.deadline = Some(now + limit);
        self.calls_start = Some(now);
        if let Some(pid) = self.cfg.server_pid {
            self.server_ready = procstat::sample(&pid.to_string());
        }
        self.self_ready = procstat::sample("self");
        self.log(format!(
            "{ready} agents ready; {} calls at {}/s; deadline {:.0} s",
            self.cfg.calls,
            self.cfg.rate,
            limit.as_secs_f64()
        ));
        true
    }

    /// The 20 ms step; true when the run is over.
    fn tick(&mut self, now: Instant) -> bool {
        // Launch the calls that are due.
        if let Some(start) = self.calls_start
            && self.wind_down_until.is_none()
        {
            while self.next_launch < self.cfg.calls {
                let due = start + Duration::from_secs_f64(self.next_launch as f64 / self.cfg.rate);
                if due > now {
                    break;
                }
                let i = self.next_launch as u32;
                self.next_launch += 1;
                self.launch(now, i);
            }
        }
        // Media for every live call.
        let mut buf = [0u8; 256];
        {
            let mut sender = Sender {
                patient_socket: &self.patient_rtp,
                agent_socket: &self.agent_rtp,
                epoch: self.epoch,
                patient_tone: &self.patient_tone,
                agent_tone: &self.agent_tone,
                digit_event: self.cfg.digit_event,
                errors: &mut self.rtp_send_errors,
                patient_batch: &mut self.patient_batch,
                agent_batch: &mut self.agent_batch,
            };
            let slot = self.ticks % SLOTS;
            for &i in &self.active {
                if u64::from(i) % SLOTS != slot {
                    continue;
                }
                if let Some(call) = self.calls.get_mut(i as usize) {
                    sender.tick(call, now, &mut buf);
                }
            }
            sender.flush();
        }
        self.ticks += 1;
        // Timers.
        for _ in 0..100_000 {
            match self.timers.peek() {
                Some(Reverse((at, _, _))) if *at <= now => {}
                _ => break,
            }
            let Some(Reverse((_, _, timer))) = self.timers.pop() else {
                break;
            };
            self.on_timer(now, timer);
        }
        self.tl.handle_timeout(now);
        let calls = &self.calls;
        self.active.retain(|&i| {
            calls
                .get(i as usize)
                .is_some_and(|c| c.phase != Phase::Done)
        });
        self.peak_active = self.peak_active.max(self.active.len() as u64);
        if self.steady.is_some() {
            let calls = &self.calls;
            let bridged = self
                .active
                .iter()
                .filter(|&&i| {
                    calls
                        .get(i as usize)
                        .is_some_and(|c| c.phase == Phase::Bridged && c.window_start_us.is_some())
                })
                .count();
            if let Some(w) = self.steady.as_mut() {
                w.observe(now, bridged, self.cfg.calls);
            }
        }
        if now.saturating_duration_since(self.last_proc_sample) >= Duration::from_secs(1) {
            self.sample_procs(false);
        }
        let Some(_) = self.calls_start else {
            return false;
        };
        if let Some(until) = self.wind_down_until {
            return self.active.is_empty() || now >= until;
        }
        if self.next_launch >= self.cfg.calls && self.active.is_empty() {
            return true;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.log("deadline reached: hanging up everything");
            self.wind_down(now);
        }
        false
    }

    /// Ends every live call (BYE on each confirmed dialog) and stops launching.
    fn wind_down(&mut self, now: Instant) {
        self.wind_down_until = Some(now + WIND_DOWN);
        let live: Vec<u32> = self.active.clone();
        for i in live {
            let Some(c) = self.calls.get_mut(i as usize) else {
                continue;
            };
            match c.phase {
                Phase::Waiting | Phase::Dialling => {
                    c.fail("never reached an agent before the deadline")
                }
                Phase::Inviting => c.fail("no answer to the INVITE before the deadline"),
                Phase::Bridged | Phase::Draining => {}
                _ => c.fail("did not end before the deadline"),
            }
            self.hang_up_all(now, i);
        }
    }

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::AgentAnswer { call, generation } => self.agent_answer(now, call, generation),
            Timer::Hangup { call } => {
                let Some(c) = self.calls.get_mut(call as usize) else {
                    return;
                };
                if c.phase == Phase::Bridged {
                    c.phase = Phase::Draining;
                    c.hangup_at = Some(now);
                    self.schedule(now + DRAIN, Timer::SendBye { call });
                }
            }
            Timer::SendBye { call } => {
                let from_agent = self
                    .calls
                    .get(call as usize)
                    .is_some_and(|c| c.bye_from_agent);
                if self
                    .calls
                    .get(call as usize)
                    .is_some_and(|c| c.phase == Phase::Draining)
                {
                    self.send_bye(now, call, from_agent);
                }
            }
            Timer::RetryReady { agent } => self.post_ready(agent),
            Timer::Reregister { agent } => self.send_register(now, agent, None),
        }
    }

    /// Reads what waits on one RTP socket, each packet timed by the kernel's arrival stamp.
    fn drain_rtp(&mut self, socket: &UdpSocket, dir: Direction, rx: &mut media_io::RecvBatch) {
        let epoch = self.epoch;
        media_io::drain_stamped(socket, epoch, rx, |packet, at| {
            self.on_rtp(dir, packet, at);
        });
    }

    fn on_rtp(&mut self, dir: Direction, packet: &[u8], received: u64) {
        let delays = &mut self.delays[dir.index()];
        let arrival = media_io::receive(&mut self.calls, dir, packet, received, delays);
        if arrival == Arrival::Unmarked && dir == Direction::AgentToPatient {
            self.prompt_packets += 1;
        }
    }

    fn on_desk(&mut self, msg: DeskMsg, desks: &mut SelectAll<DeskStream>) {
        let a = msg.agent;
        match msg.note {
            DeskNote::Connected { token, ws } => {
                if let Some(agent) = self.agents.get_mut(a) {
                    agent.token = Some(token);
                    agent.desk_connected = true;
                }
                desks.push(DeskStream::new(a, ws));
                self.send_register(Instant::now(), a, None);
            }
            DeskNote::Failed(e) => {
                if let Some(agent) = self.agents.get_mut(a) {
                    agent.failed = Some(e);
                }
            }
            DeskNote::ReadyResult(status) => {
                let Some(agent) = self.agents.get_mut(a) else {
                    return;
                };
                match status {
                    200 => agent.ready = true,
                    409 if agent.ready_attempts < 20 => {
                        agent.ready_attempts += 1;
                        self.schedule(
                            Instant::now() + Duration::from_millis(200),
                            Timer::RetryReady { agent: a },
                        );
                    }
                    s => agent.failed = Some(format!("agent state change: HTTP {s}")),
                }
            }
        }
    }

    fn on_desk_read(&mut self, a: usize, read: DeskRead) {
        match read {
            DeskRead::Event(DeskEvent::Offer { call_id, caller }, at) => {
                self.on_offer(a, at, call_id, &caller)
            }
            DeskRead::Event(DeskEvent::Missed, _) => self.missed_events += 1,
            DeskRead::Event(DeskEvent::Other, _) => {}
            DeskRead::Closed => {
                if let Some(agent) = self.agents.get_mut(a) {
                    agent.desk_connected = false;
                }
            }
        }
    }

    /// For each agent whose INVITE was read before its screen-pop: read what its desk
    /// socket already holds. A pop found now was there when the INVITE was read (lead
    /// ~0, recorded as 0); a pop still missing arrived after the INVITE, for certain.
    async fn check_pops(&mut self, desks: &mut SelectAll<DeskStream>) {
        if self.pop_checks.is_empty() {
            return;
        }
        // Let the runtime poll the OS for readiness first: a socket whose readiness was
        // never fetched would look empty though its data is there (the INVITE itself may
        // have been read on readiness left over from an earlier datagram).
        tokio::task::yield_now().await;
        for (a, ci) in std::mem::take(&mut self.pop_checks) {
            let invite_at = match self.agents.get(a).and_then(|x| x.early_invite) {
                Some((c, t)) if c == ci => t,
                _ => continue,
            };
            if let Some(stream) = desks.iter_mut().find(|d| d.agent == a) {
                for _ in 0..64 {
                    let Some((_, read)) = desk::read_now(stream).await else {
                        break;
                    };
                    let read = match read {
                        DeskRead::Event(DeskEvent::Offer { call_id, caller }, _) => {
                            self.pops_with_invite += 1;
                            DeskRead::Event(DeskEvent::Offer { call_id, caller }, invite_at)
                        }
                        other => other,
                    };
                    self.on_desk_read(a, read);
                }
            }
            let still_missing = self
                .agents
                .get(a)
                .and_then(|x| x.early_invite)
                .is_some_and(|(c, _)| c == ci);
            if still_missing {
                self.invites_before_pop += 1;
                self.log(format!(
                    "call {ci}: agent {a}'s INVITE came before its screen-pop was readable"
                ));
            }
        }
        // Reading a desk directly moved its socket's wake-up from the set to this task:
        // put every desk back so the set polls each of them again.
        let all: Vec<DeskStream> = std::mem::take(desks).into_iter().collect();
        desks.extend(all);
    }

    /// Sets an agent ready over HTTP (in its own task); the result comes back as a desk note.
    pub fn post_ready(&mut self, a: usize) {
        let Some(token) = self.agents.get(a).and_then(|x| x.token.clone()) else {
            return;
        };
        let http = self.cfg.http;
        let tx = self.desk_tx.clone();
        tokio::spawn(async move {
            let status = crate::http::set_ready(http, &token, true)
                .await
                .unwrap_or(0);
            let _ = tx.send(DeskMsg {
                agent: a,
                note: DeskNote::ReadyResult(status),
            });
        });
    }

    fn on_offer(&mut self, a: usize, at: Instant, server_call_id: String, caller: &str) {
        let Some(ci) = crate::calls::call_of_caller(caller) else {
            return;
        };
        let Some(call) = self.calls.get_mut(ci as usize) else {
            return;
        };
        call.server_call_id = Some(server_call_id);
        if call.first_offer_at.is_none() {
            call.first_offer_at = Some(at);
            if let Some(d) = call.digit_at {
                self.pop_latency.push_us(signed_us(at, d));
            }
        }
        let Some(agent) = self.agents.get_mut(a) else {
            return;
        };
        match agent.early_invite.take() {
            Some((c, invite_at)) if c == ci => {
                self.pop_lead.push_us(signed_us(invite_at, at));
            }
            other => {
                agent.early_invite = other;
                agent.pending_offer = Some((ci, at));
            }
        }
    }

    fn sample_procs(&mut self, first: bool) {
        self.last_proc_sample = Instant::now();
        if let Some(pid) = self.cfg.server_pid
            && let Some(s) = procstat::sample(&pid.to_string())
        {
            self.server_peak_rss = self.server_peak_rss.max(s.rss_kb).max(s.hwm_kb);
            if first || self.server_first.is_none() {
                self.server_first = Some(s);
            }
            self.server_last = Some(s);
        }
        if let Some(s) = procstat::sample("self") {
            self.self_peak_rss = self.self_peak_rss.max(s.rss_kb).max(s.hwm_kb);
            if first {
                self.self_first = Some(s);
            }
        }
    }

    fn summarise(&mut self) -> Summary {
        let mut counts = CallCounts {
            planned: self.cfg.calls as u64,
            ..Default::default()
        };
        let mut dirs = [summary::Direction::default(), summary::Direction::default()];
        let mut jitters: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for c in &self.calls {
            counts.started += 1;
            counts.answered_by_ivr += u64::from(c.answered_at.is_some());
            counts.bridged += u64::from(c.bridged_at.is_some());
            counts.offers += u64::from(c.offers);
            counts.ring_outs += u64::from(c.ring_outs);
            let failure = match (c.failure, c.phase) {
                (Some(f), _) => Some(f),
                (None, Phase::Done) if c.bridged_at.is_none() => {
                    Some("ended without reaching an agent")
                }
                (None, Phase::Done) => None,
                (None, _) => Some("did not end before the run stopped"),
            };
            match failure {
                Some(f) => {
                    if self.cfg.verbose {
                        eprintln!(
                            "switchboard-load: call {} ({}) failed: {f}; phase {:?}, offers {}, ring-outs {}, server call {:?}",
                            c.index, c.caller, c.phase, c.offers, c.ring_outs, c.server_call_id
                        );
                    }
                    counts.failed += 1;
                    counts.refused += u64::from(c.refused);
                    *counts.failure_reasons.entry(f.to_owned()).or_default() += 1;
                }
                None => counts.completed += 1,
            }
            if c.window_start_us.is_some() {
                for d in 0..2 {
                    let sent = u64::from(c.window_sent[d]);
                    let got = u64::from(c.rx[d].received);
                    dirs[d].sent += sent;
                    dirs[d].received += got;
                    dirs[d].lost += sent.saturating_sub(got);
                    dirs[d].out_of_order += u64::from(c.rx[d].out_of_order);
                    jitters[d].push(c.rx[d].jitter.max_ms());
                }
            }
        }
        counts.missed_events = self.missed_events;
        for d in 0..2 {
            dirs[d].loss_pct = if dirs[d].sent > 0 {
                dirs[d].lost as f64 * 100.0 / dirs[d].sent as f64
            } else {
                0.0
            };
            dirs[d].delay = self.delays[d].distribution();
            let js = &jitters[d];
            if !js.is_empty() {
                dirs[d].jitter_mean_ms = js.iter().sum::<f64>() / js.len() as f64;
                dirs[d].jitter_max_ms = js.iter().copied().fold(0.0, f64::max);
            }
        }
        let calls_done = (counts.completed.max(1)) as f64;
        let server = match (self.server_first, self.server_last) {
            (Some(a), Some(b)) => Some(proc_figures(
                self.cfg
                    .server_pid
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                &a,
                self.server_ready.as_ref(),
                &b,
                self.server_peak_rss,
                self.peak_active,
                calls_done,
            )),
            _ => None,
        };
        let self_last = procstat::sample("self");
        let generator = match (self.self_first, self_last) {
            (Some(a), Some(b)) => proc_figures(
                std::process::id().to_string(),
                &a,
                self.self_ready.as_ref(),
                &b,
                self.self_peak_rss,
                self.peak_active,
                calls_done,
            ),
            _ => ProcFigures::default(),
        };
        let recordings = self.cfg.recordings.clone().map(|dir| {
            std::thread::sleep(Duration::from_millis(300));
            recording_check::check(&dir, &self.recording_sample(), 5)
        });
        let [p2a, a2p] = dirs;
        let steady = self.steady.as_mut().and_then(SteadyWindow::finish);
        let steady_note = self.steady.as_mut().and_then(|w| w.note.take());
        Summary {
            duration_s: self.calls_start.map_or(0.0, |s| s.elapsed().as_secs_f64()),
            agents: self.agents.len() as u64,
            agents_ready: self.agents.iter().filter(|a| a.ready).count() as u64,
            calls: counts,
            setup: self.setup.distribution(),
            queue_to_agent: self.queue_to_agent.distribution(),
            pop_latency: self.pop_latency.distribution(),
            pop_lead: self.pop_lead.distribution(),
            invites_before_pop: self.invites_before_pop,
            pops_with_invite: self.pops_with_invite,
            anomalies: std::mem::take(&mut self.anomalies),
            patient_to_agent: p2a,
            agent_to_patient: a2p,
            prompt_packets: self.prompt_packets,
            sender_lag: self.tick_lag.distribution(),
            rtp_send_errors: self.rtp_send_errors,
            sip_errors: self.sip_errors,
            server,
            generator,
            recordings,
            steady,
            steady_note,
            violations: Vec::new(),
        }
    }

    /// Up to `check_recordings` completed calls, spread evenly over the run.
    fn recording_sample(&self) -> Vec<recording_check::Expected> {
        let done: Vec<&Call> = self
            .calls
            .iter()
            .filter(|c| {
                c.failure.is_none()
                    && c.server_call_id.is_some()
                    && c.bridged_at.is_some()
                    && c.hangup_at.is_some()
            })
            .collect();
        let k = self.cfg.check_recordings.min(done.len());
        (0..k)
            .filter_map(|j| done.get(j * done.len() / k.max(1)))
            .filter_map(|c| {
                let span = c.hangup_at?.saturating_duration_since(c.bridged_at?);
                Some(recording_check::Expected {
                    server_call_id: c.server_call_id.clone()?,
                    tone_frames: (span.as_millis() / 20) as usize,
                })
            })
            .collect()
    }
}

/// `a − b` in µs, negative when `a` is earlier.
pub fn signed_us(a: Instant, b: Instant) -> i64 {
    match a.checked_duration_since(b) {
        Some(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        None => -i64::try_from(b.saturating_duration_since(a).as_micros()).unwrap_or(i64::MAX),
    }
}

/// `ready`: the sample taken when the calls started; memory per call is counted
/// from it, so the agents' registrations and desk sockets are not charged to calls.
fn proc_figures(
    pid: String,
    first: &ProcSample,
    ready: Option<&ProcSample>,
    last: &ProcSample,
    peak_rss: u64,
    peak_active: u64,
    calls: f64,
) -> ProcFigures {
    let peak = peak_rss.max(last.rss_kb);
    let ready_kb = ready.map_or(first.rss_kb, |r| r.rss_kb);
    let per_call = |base: u64| {
        if peak_active > 0 {
            peak.saturating_sub(base) as f64 / peak_active as f64
        } else {
            0.0
        }
    };
    ProcFigures {
        pid,
        cpu_pct: procstat::cpu_percent(first, last),
        cpu_ms_per_call: (last.cpu_s - first.cpu_s).max(0.0) * 1000.0 / calls,
        rss_start_kb: first.rss_kb,
        rss_ready_kb: ready_kb,
        rss_end_kb: last.rss_kb,
        rss_peak_kb: peak,
        peak_active_calls: peak_active,
        kb_per_active_call: per_call(ready_kb),
        kb_per_active_call_from_start: per_call(first.rss_kb),
    }
}

/// Picks a uniformly random delay in `lo..=hi` ms.
pub fn random_delay(rng: &mut StdRng, (lo, hi): (u64, u64)) -> Duration {
    Duration::from_millis(if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rss_kb: u64) -> ProcSample {
        ProcSample {
            at: Instant::now(),
            cpu_s: 0.0,
            rss_kb,
            hwm_kb: rss_kb,
        }
    }

    #[test]
    fn memory_per_call_is_counted_from_when_the_agents_were_ready() {
        // 20 MB at start, 40 MB once 1,000 agents are logged in, 140 MB at 1,000 calls.
        let f = proc_figures(
            "1".into(),
            &sample(20_000),
            Some(&sample(40_000)),
            &sample(130_000),
            140_000,
            1_000,
            1_000.0,
        );
        assert_eq!(f.rss_ready_kb, 40_000);
        assert!((f.kb_per_active_call - 100.0).abs() < 1e-9);
        assert!((f.kb_per_active_call_from_start - 120.0).abs() < 1e-9);
        // Without a ready sample (no call started) both count from the start.
        let f = proc_figures(
            "1".into(),
            &sample(20_000),
            None,
            &sample(30_000),
            30_000,
            10,
            10.0,
        );
        assert!((f.kb_per_active_call - 1_000.0).abs() < 1e-9);
    }
}
