//! The ACD: agents, queues and ring-out timers tied into one sans-IO state machine.
//!
//! Inputs are `handle_*`-style methods taking `now`; outputs are drained with
//! [`Acd::poll_event`], and [`Acd::poll_timeout`] says when to call [`Acd::handle_timeout`].
//! Offers are made inside the input that makes them possible (enqueue, an agent becoming
//! Ready, a call ending, a ring-out), so nothing has to poll.
//!
//! Pairing: waiting callers are served in order (highest queue priority, then longest wait),
//! each by the free agent its queue's [`Strategy`] picks among those of the lowest level
//! its escalation allows. Longest idle, the default, means an agent that just missed an
//! offer (it is now the most recently idle) is offered that same call again only if no
//! other free agent who serves that queue is there to take it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::agent::{Activity, Agent, AgentConfig, AgentState, AgentView, IdleKey, ReadyKey};
use crate::error::Error;
use crate::journal::{CallbackResult, EndedBy, Entry, Logged, OfferEnd};
use crate::queue::{Caller, CallerView, ExitReason, LeaveWhen, Overflow, Queue, QueueConfig};
use crate::strategy::{Rng, Strategy};
use crate::timer::{Timer, Timers};
use crate::{AgentId, CallId};

/// The order callers are served in: queue priority (higher first), then arrival, then
/// the ACD's sequence number.
type ServeOrder = (std::cmp::Reverse<i32>, Instant, u64);
/// What the ACD asks call control to do, or tells it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcdEvent {
    /// Ring this agent now for this caller; the ACD rings it out after `ring_timeout`.
    Offer {
        /// The waiting call.
        call: CallId,
        /// The agent whose phone should ring.
        agent: AgentId,
        /// The queue the caller waits in.
        queue: String,
        /// How long the caller has waited since `enqueue`.
        waited: Duration,
        /// How long the phone may ring before the ACD rings it out.
        ring_timeout: Duration,
    },
    /// The offer ended unanswered (timeout, or the agent went offline): cancel the INVITE.
    /// The miss is counted and the caller, still in its place, is offered to the next agent.
    RingOut {
        /// The call whose offer ended.
        call: CallId,
        /// The agent who missed it.
        agent: AgentId,
    },
    /// Another phone ringing for the same caller (ring-all) answered first: cancel this
    /// agent's INVITE. Not a miss; the agent is free again in its place in idle order.
    Withdrawn {
        /// The call.
        call: CallId,
        /// The agent whose phone stops ringing.
        agent: AgentId,
    },
    /// The agent answered: bridge the caller to the agent.
    Connected {
        /// The call.
        call: CallId,
        /// The agent now talking.
        agent: AgentId,
        /// How long the caller waited from `enqueue` to the answer.
        waited: Duration,
    },
    /// A rule (max wait, a full queue, nobody to answer) sent the caller out of `queue`
    /// with nowhere else to go: call control ends the call.
    Exited {
        /// The call.
        call: CallId,
        /// The queue it left.
        queue: String,
        /// Which rule.
        reason: ExitReason,
    },
    /// The caller is to be called back (it pressed the callback key, or a rule whose
    /// overflow is a callback sent it): it keeps its place in `queue`; call control tells
    /// the patient so and lets the line go. Offers of it come as for any caller.
    Callback {
        /// The call.
        call: CallId,
        /// The queue it keeps its place in.
        queue: String,
    },
    /// A rule sent the caller from one queue into its overflow queue (wait and seniority kept).
    Moved {
        /// The call.
        call: CallId,
        /// The queue it left.
        from: String,
        /// The queue it now waits in.
        to: String,
    },
    /// The agent's state changed (an input, a ring-out, a wrap-up ending): tell the desks.
    AgentState {
        /// The agent.
        agent: AgentId,
        /// Its state now.
        state: AgentState,
        /// Why it is not ready (`None` in any other state).
        reason: Option<String>,
    },
}

/// The automatic call distributor (sans-IO: no clock, no sockets).
#[derive(Debug)]
pub struct Acd {
    queues: Vec<Queue>,
    queue_index: HashMap<String, usize>,
    agents: Vec<Agent>,
    agent_index: HashMap<AgentId, usize>,
    /// Ready agents, longest idle first: what `dispatch` walks instead of every agent.
    ready: BTreeSet<(ReadyKey, usize)>,
    /// Each agent's key in `ready`, if it is there.
    ready_key: Vec<Option<ReadyKey>>,
    /// Agents changed since `ready` was last brought up to date.
    touched: Vec<usize>,
    /// The agent talking in each connected call.
    talking: HashMap<CallId, usize>,
    /// Queue index of every waiting or offered call.
    calls: HashMap<CallId, usize>,
    timers: Timers,
    events: VecDeque<AcdEvent>,
    journal: VecDeque<Entry>,
    /// The latest `now` seen; earlier `now`s are treated as this one.
    clock: Option<Instant>,
    /// Orders things that happen at the same instant.
    seq: u64,
    /// Each queue's round-robin memory: the agent index its next search starts at.
    round_robin: Vec<usize>,
    /// Per queue: the one level all its agents have, if they share one (no level scan then).
    shared_level: Vec<Option<u32>>,
    /// Per queue: the queue its overflow goes to (`None`: call control ends the call).
    overflow_to: Vec<Option<usize>>,
    /// An agent's shown state changed since the leave rules were last checked.
    states_changed: bool,
    /// For [`Strategy::Random`].
    rng: Rng,
    /// Callers with no number to call back: a callback rule sends them on as `hangup` would.
    uncallable: std::collections::HashSet<CallId>,
    /// Per queue: when its last few callers were answered (the wait estimate's pace).
    answers: Vec<VecDeque<Instant>>,
}

impl Acd {
    /// Builds an ACD with every agent Offline and every queue empty.
    pub fn new(queues: Vec<QueueConfig>, agents: Vec<AgentConfig>) -> Result<Self, Error> {
        let mut queue_index = HashMap::new();
        let mut built_queues = Vec::with_capacity(queues.len());
        for config in queues {
            if config.ring_timeout.is_zero() {
                return Err(Error::ZeroRingTimeout(config.name));
            }
            if queue_index.contains_key(&config.name) {
                return Err(Error::DuplicateQueue(config.name));
            }
            queue_index.insert(config.name.clone(), built_queues.len());
            built_queues.push(Queue::new(config));
        }
        let mut agent_index = HashMap::new();
        let mut built_agents = Vec::with_capacity(agents.len());
        for config in agents {
            if agent_index.contains_key(&config.id) {
                return Err(Error::DuplicateAgent(config.id));
            }
            let mut served: Vec<(usize, u32)> = Vec::with_capacity(config.queues.len());
            for name in &config.queues {
                let q = *queue_index
                    .get(name)
                    .ok_or_else(|| Error::UnknownQueue(name.clone()))?;
                if !served.iter().any(|(i, _)| *i == q) {
                    served.push((q, config.level(name)));
                }
            }
            agent_index.insert(config.id.clone(), built_agents.len());
            built_agents.push(Agent::new(config.id, served, config.max_missed_rings));
        }
        let built_queues_len = built_queues.len();
        let mut overflow_to = Vec::with_capacity(built_queues_len);
        for (q, queue) in built_queues.iter().enumerate() {
            overflow_to.push(match &queue.config.overflow {
                Overflow::Hangup | Overflow::Callback | Overflow::Voicemail => None,
                Overflow::Queue(name) => match queue_index.get(name) {
                    Some(&to) if to != q => Some(to),
                    _ => {
                        return Err(Error::BadOverflow(queue.config.name.clone(), name.clone()));
                    }
                },
            });
        }
        let shared_level = (0..built_queues_len)
            .map(|q| {
                let mut levels = built_agents.iter().filter_map(|a| a.level_in(q));
                let first = levels.next().unwrap_or(1);
                levels.all(|l| l == first).then_some(first)
            })
            .collect();
        Ok(Acd {
            shared_level,
            overflow_to,
            states_changed: false,
            queues: built_queues,
            queue_index,
            ready: BTreeSet::new(),
            ready_key: vec![None; built_agents.len()],
            touched: Vec::new(),
            talking: HashMap::new(),
            agents: built_agents,
            agent_index,
            calls: HashMap::new(),
            timers: Timers::default(),
            events: VecDeque::new(),
            journal: VecDeque::new(),
            clock: None,
            seq: 0,
            round_robin: vec![0; built_queues_len],
            rng: Rng::new(0x5eed_acd0),
            uncallable: std::collections::HashSet::new(),
            answers: (0..built_queues_len).map(|_| VecDeque::new()).collect(),
        })
    }

    /// Seeds [`Strategy::Random`] (a run with the same seed and inputs replays exactly).
    pub fn set_seed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    /// Starts the fewest-calls and least-talk-time counts afresh (say, at the clinic's
    /// midnight); nothing else changes.
    pub fn reset_counts(&mut self) {
        for a in &mut self.agents {
            a.answered_calls = 0;
            a.talk_time = Duration::ZERO;
        }
    }

    /// Registration up or down. Coming online makes the agent Ready (misses in a row
    /// forgotten); a re-registration while
    /// online changes nothing. Going offline while ringing rings the offer out at once
    /// (RingOut, miss counted, next agent offered); while talking the call goes on and the
    /// agent is Offline once it ends.
    pub fn agent_online(&mut self, now: Instant, agent: &str, online: bool) -> Result<(), Error> {
        let now = self.tick(now);
        let a = self.agent_idx(agent)?;
        if online == self.agents[a].online {
            return Ok(());
        }
        if online {
            let idle = self.next_idle_key(now);
            let ag = self.agent_mut(a);
            ag.online = true;
            ag.ready_requested = true;
            ag.reason = None;
            ag.consecutive_misses = 0;
            if ag.activity == Activity::Idle {
                ag.idle = Some(idle);
            }
        } else {
            self.agent_mut(a).online = false;
            match self.agents[a].activity {
                Activity::Ringing { call, .. } => self.ring_out(now, call, a, OfferEnd::LoggedOut),
                Activity::WrapUp { .. } => self.end_wrap_up(now, a),
                // Call control ends a consultation the phone can no longer take part in.
                Activity::Idle | Activity::Talking { .. } | Activity::Consulting { .. } => {}
            }
        }
        self.dispatch(now);
        Ok(())
    }

    /// The desk switches Ready / NotReady (`reason` is kept for the view while not ready).
    /// While ringing or talking the change takes effect when the offer or call ends. During
    /// wrap-up either ends it at once: Ready ends after-call work early, NotReady goes on a
    /// break. Ready also clears the count of misses in a row (after a `missed` pause too).
    /// Returns the agent's state afterwards.
    pub fn set_ready(
        &mut self,
        now: Instant,
        agent: &str,
        ready: bool,
        reason: Option<&str>,
    ) -> Result<AgentState, Error> {
        let now = self.tick(now);
        let a = self.agent_idx(agent)?;
        if !self.agents[a].online {
            return Err(Error::AgentOffline(agent.to_string()));
        }
        if ready {
            let idle = self.next_idle_key(now);
            let ag = self.agent_mut(a);
            ag.reason = None;
            ag.consecutive_misses = 0;
            if !ag.ready_requested {
                ag.ready_requested = true;
                if ag.activity == Activity::Idle {
                    ag.idle = Some(idle);
                }
            }
        } else {
            let ag = self.agent_mut(a);
            ag.ready_requested = false;
            ag.reason = reason.map(str::to_string);
        }
        if matches!(self.agents[a].activity, Activity::WrapUp { .. }) {
            self.end_wrap_up(now, a);
        }
        self.dispatch(now);
        Ok(self.agents[a].state())
    }

    /// The agent needs more after-call work: its wrap-up ends `by` later than it would have.
    /// Returns when it ends now. `NotInWrapUp` if the agent is not in wrap-up.
    pub fn extend_wrap_up(
        &mut self,
        now: Instant,
        agent: &str,
        by: Duration,
    ) -> Result<Instant, Error> {
        let now = self.tick(now);
        let a = self.agent_idx(agent)?;
        let Activity::WrapUp { call, until } = self.agents[a].activity else {
            return Err(Error::NotInWrapUp(agent.to_string()));
        };
        let until = until.max(now).checked_add(by).unwrap_or(until);
        self.agent_mut(a).activity = Activity::WrapUp { call, until };
        self.timers.set(Timer::WrapUpEnd(a), until);
        self.dispatch(now);
        Ok(until)
    }

    /// The agent's phone put the connected `call` on hold (`held`) or took it off. Only the
    /// state changes (`on_hold`); the call, its talk time and the agent's place are unchanged.
    pub fn hold(&mut self, now: Instant, call: CallId, held: bool) -> Result<(), Error> {
        let now = self.tick(now);
        let a = self.talking_agent(call).ok_or(Error::NotConnected(call))?;
        if let Activity::Talking {
            call,
            queue,
            since,
            waited,
            held: was,
        } = self.agents[a].activity
            && was != held
        {
            self.agent_mut(a).activity = Activity::Talking {
                call,
                queue,
                since,
                waited,
                held,
            };
        }
        self.dispatch(now);
        Ok(())
    }

    /// A caller starts waiting in `queue` (the wait clock starts now) and is offered at once
    /// if an agent is free.
    pub fn enqueue(&mut self, now: Instant, call: CallId, queue: &str) -> Result<(), Error> {
        let now = self.tick(now);
        let q = *self
            .queue_index
            .get(queue)
            .ok_or_else(|| Error::UnknownQueue(queue.to_string()))?;
        if self.calls.contains_key(&call) || self.talking_agent(call).is_some() {
            return Err(Error::DuplicateCall(call));
        }
        let seq = self.next_seq();
        if let Some(reason) = self.turned_away(q) {
            if self.queues[q].config.overflow == Overflow::Callback
                && !self.uncallable.contains(&call)
            {
                // Called back instead: it joins, and leaves the line at once.
                self.join(now, call, q, seq, false);
                self.become_callback(now, call, q, Some(reason));
                self.dispatch(now);
                return Ok(());
            }
            self.route_out(now, call, q, now, seq, reason, false);
            self.dispatch(now);
            return Ok(());
        }
        self.join(now, call, q, seq, false);
        self.dispatch(now);
        Ok(())
    }

    /// As [`Acd::enqueue`], for a caller who cannot be called back (no number): the
    /// callback key does nothing for it, and a rule whose overflow is `callback` ends its
    /// wait as `hangup` would (`Exited`).
    pub fn enqueue_without_callback(
        &mut self,
        now: Instant,
        call: CallId,
        queue: &str,
    ) -> Result<(), Error> {
        let fresh = self.uncallable.insert(call);
        let result = self.enqueue(now, call, queue);
        if result.is_err() && fresh {
            self.uncallable.remove(&call);
        }
        result
    }

    /// The caller starts waiting at the end of queue `q`: logged, its deadlines armed.
    fn join(&mut self, now: Instant, call: CallId, q: usize, seq: u64, transferred: bool) {
        self.queues[q].push(call, now, seq, transferred);
        self.calls.insert(call, q);
        let position = self.queues[q].callers().len();
        let queue = self.queues[q].config.name.clone();
        self.log(
            now,
            Some(call),
            Logged::Enqueued {
                queue,
                position,
                transferred,
            },
        );
        self.arm_escalation(call, q, now, Duration::ZERO);
        self.arm_max_wait(call, q, now);
    }

    /// Whether `agent` could be offered a call right now (ready: logged in, not paused,
    /// not ringing, talking or in wrap-up); if not, the state it is in.
    pub fn is_free(&self, agent: &str) -> Result<Result<(), AgentState>, Error> {
        let state = self.agents[self.agent_idx(agent)?].state();
        Ok(if state == AgentState::Ready {
            Ok(())
        } else {
            Err(state)
        })
    }

    /// Whether `agent` may hand the caller it talks to on to `queue` (and first to
    /// `to_agent`): why not, if not. A queue must take the caller (not full, someone to
    /// answer, as its rules say); an agent must be available now, and not `agent` itself.
    pub fn check_transfer(
        &self,
        now: Instant,
        agent: &str,
        queue: &str,
        to_agent: Option<&str>,
    ) -> Result<(), Error> {
        self.transfer_plan(now, agent, queue, to_agent).map(|_| ())
    }

    /// `agent` hands the caller it talks to on (a blind transfer), in one step: its part
    /// ends (completed, by transferred; wrap-up follows as after any call) and the caller
    /// waits in `queue`, logged as a wait a transfer began, offered first to `to_agent`
    /// if given (if not answered there, it waits on like any caller). Refused, changing
    /// nothing, for the reasons [`Acd::check_transfer`] gives.
    pub fn transfer(
        &mut self,
        now: Instant,
        agent: &str,
        queue: &str,
        to_agent: Option<&str>,
    ) -> Result<(), Error> {
        let now = self.tick(now);
        let (a, q, target) = self.transfer_plan(now, agent, queue, to_agent)?;
        let Some(call) = self.end_talk(now, a, EndedBy::Transferred) else {
            return Err(Error::NotTalking(agent.to_string()));
        };
        let seq = self.next_seq();
        self.join(now, call, q, seq, true);
        if let Some(c) = self.queues[q].get_mut(call) {
            c.handed_by = Some(a);
        }
        if let Some(t) = target {
            self.offer(now, t, q, call);
        }
        self.dispatch(now);
        Ok(())
    }

    /// The transfer's agent, queue and target agent (indices), or why it cannot be.
    fn transfer_plan(
        &self,
        now: Instant,
        agent: &str,
        queue: &str,
        to_agent: Option<&str>,
    ) -> Result<(usize, usize, Option<usize>), Error> {
        let a = self.agent_idx(agent)?;
        if !matches!(self.agents[a].activity, Activity::Talking { .. }) {
            return Err(Error::NotTalking(agent.to_string()));
        }
        let q = self.queue_idx(queue)?;
        let Some(to) = to_agent else {
            // To a queue: it must take the caller, as it would a newcomer.
            return match self.turned_away(q) {
                Some(why) => Err(Error::QueueRefuses(queue.to_string(), why)),
                None => Ok((a, q, None)),
            };
        };
        let t = self.agent_idx(to)?;
        if t == a || !self.agents[t].is_available(now) {
            let why = match self.agents[t].state() {
                // Ready, but sitting out the rest of a ring it declined.
                AgentState::Ready => "just declined a call",
                state => state.as_str(),
            };
            return Err(Error::AgentNotFree(to.to_string(), why));
        }
        Ok((a, q, Some(t)))
    }

    /// Why queue `q` would turn a newcomer away now (full, nobody to answer), if it would.
    fn turned_away(&self, q: usize) -> Option<ExitReason> {
        let full = self.queues[q]
            .config
            .max_callers
            .is_some_and(|max| self.queues[q].on_the_line() >= max);
        if full {
            Some(ExitReason::Full)
        } else if self.nobody_can_answer(q) {
            Some(ExitReason::NoAgents)
        } else {
            None
        }
    }

    /// The caller hung up. A waiting caller leaves its queue; if it was being offered, the
    /// offer ends silently: no RingOut event (call control cancels the agent's INVITE
    /// itself), no miss counted, and the agent is free again keeping its place in idle order.
    /// A call that is unknown or already connected is left alone (end it with `call_ended`).
    pub fn abandon(&mut self, now: Instant, call: CallId) {
        let now = self.tick(now);
        let Some((caller, position, queue)) = self.leave_queue(now, call) else {
            return;
        };
        let waited = now.saturating_duration_since(caller.enqueued_at);
        self.log(
            now,
            Some(call),
            Logged::Abandoned {
                queue,
                position,
                waited_ms: ms(waited),
            },
        );
        self.dispatch(now);
    }

    /// Takes a waiting (or offered) caller out of its queue, an offer ringing for it ended
    /// silently (not the agent's miss). No dispatch.
    fn leave_queue(&mut self, now: Instant, call: CallId) -> Option<(Caller, usize, String)> {
        self.uncallable.remove(&call);
        let q = self.calls.remove(&call)?;
        let (caller, position) = self.queues[q].remove(call)?;
        let queue = self.queues[q].config.name.clone();
        self.cancel_wait_timers(call);
        self.timers.cancel(Timer::RingOut(call));
        for &a in &caller.ringing {
            self.stop_ring(now, call, a, queue.clone(), OfferEnd::CallerHungUp);
        }
        Some((caller, position, queue))
    }

    /// The waiting caller pressed the queue's exit key: it leaves for the queue's overflow
    /// (`Moved` or `Exited` follows). Returns false, changing nothing, when the caller is
    /// not waiting or a phone is ringing for them (the agent is about to answer).
    pub fn leave_by_key(&mut self, now: Instant, call: CallId) -> bool {
        let now = self.tick(now);
        let left = self.exit(now, call, ExitReason::Key);
        if left {
            self.dispatch(now);
        }
        left
    }

    /// The waiting caller asked to be called back (pressed the queue's callback key): it
    /// keeps its place, its max wait and the leave rules no longer apply, and `Callback`
    /// follows. Returns false, changing nothing, when the caller is not waiting, is a
    /// callback already, was transferred here (it was answered before: it waits on), or a
    /// phone is ringing for them (the agent is about to answer).
    pub fn request_callback(&mut self, now: Instant, call: CallId) -> bool {
        let now = self.tick(now);
        let Some(&q) = self.calls.get(&call) else {
            return false;
        };
        if self.uncallable.contains(&call) {
            return false;
        }
        let askable = self.queues[q]
            .get(call)
            .is_some_and(|c| c.ringing.is_empty() && !c.callback && !c.transferred);
        if !askable {
            return false;
        }
        self.become_callback(now, call, q, None);
        self.dispatch(now);
        true
    }

    /// Caller `call` in queue `q` is a callback from now: logged with its position, its max
    /// wait disarmed, call control told.
    fn become_callback(&mut self, now: Instant, call: CallId, q: usize, rule: Option<ExitReason>) {
        self.timers.cancel(Timer::MaxWait(call));
        let position = self.queues[q].position_of(call).unwrap_or(1);
        let Some(caller) = self.queues[q].get_mut(call) else {
            return;
        };
        caller.callback = true;
        caller.parked = true;
        caller.overdue = false;
        let waited = now.saturating_duration_since(caller.enqueued_at);
        let queue = self.queues[q].config.name.clone();
        self.log(
            now,
            Some(call),
            Logged::CallbackRequested {
                queue: queue.clone(),
                position,
                waited_ms: ms(waited),
                rule,
                voicemail: false,
                message: false,
            },
        );
        self.events.push_back(AcdEvent::Callback { call, queue });
    }

    /// Call control let the callback's line go: it may be offered from now, in its place.
    pub fn callback_ready(&mut self, now: Instant, call: CallId) {
        let now = self.tick(now);
        let Some(&q) = self.calls.get(&call) else {
            return;
        };
        if let Some(c) = self.queues[q].get_mut(call) {
            c.parked = false;
        }
        self.dispatch(now);
    }

    /// The patient answered dial `attempt` of the callback `agent` answered, after ringing
    /// `rang`: logged; the call goes on as any connected call.
    pub fn callback_reached(
        &mut self,
        now: Instant,
        agent: &str,
        attempt: u32,
        rang: Duration,
    ) -> Result<(), Error> {
        let now = self.tick(now);
        self.log_dial(now, agent, attempt, CallbackResult::Answered, rang)
            .map(|_| ())
    }

    /// Logs how dial `attempt` of the callback `agent` talks in ended: the agent's index
    /// and the call.
    fn log_dial(
        &mut self,
        now: Instant,
        agent: &str,
        attempt: u32,
        result: CallbackResult,
        rang: Duration,
    ) -> Result<(usize, CallId), Error> {
        let a = self.agent_idx(agent)?;
        let (call, queue) = self
            .talking_in(a)
            .ok_or_else(|| Error::NotTalking(agent.to_string()))?;
        self.log(
            now,
            Some(call),
            Logged::CallbackDialled {
                agent: agent.to_string(),
                queue,
                attempt,
                rang_ms: ms(rang),
                result,
            },
        );
        Ok((a, call))
    }

    /// Dial `attempt` of the callback `agent` answered did not reach the patient (its phone
    /// rang `rang`): logged, the agent's part ends (completed, by `unreached`; wrap-up
    /// follows). Call control
    /// retries with [`Acd::requeue_callback`] or gives up with [`Acd::callback_failed`].
    pub fn callback_unreached(
        &mut self,
        now: Instant,
        agent: &str,
        attempt: u32,
        result: CallbackResult,
        rang: Duration,
    ) -> Result<CallId, Error> {
        let now = self.tick(now);
        let (a, call) = self.log_dial(now, agent, attempt, result, rang)?;
        self.end_talk(now, a, EndedBy::Unreached);
        self.dispatch(now);
        Ok(call)
    }

    /// A callback whose dial failed waits again in `queue`, in its place by seniority as
    /// of `since` (when it first joined), to be offered to the next free agent.
    pub fn requeue_callback(
        &mut self,
        now: Instant,
        call: CallId,
        queue: &str,
        since: Instant,
    ) -> Result<(), Error> {
        let now = self.tick(now);
        self.join_as_callback(now, call, queue, since, false)?;
        self.dispatch(now);
        Ok(())
    }

    /// Puts a callback in `queue` by its seniority as of `since` (`parked`: offered to
    /// nobody until [`Acd::callback_ready`]): its queue index and position.
    fn join_as_callback(
        &mut self,
        now: Instant,
        call: CallId,
        queue: &str,
        since: Instant,
        parked: bool,
    ) -> Result<(usize, usize), Error> {
        let q = self.queue_idx(queue)?;
        if self.calls.contains_key(&call) || self.talking_agent(call).is_some() {
            return Err(Error::DuplicateCall(call));
        }
        let seq = self.next_seq();
        let since = since.min(now);
        let position = self.queues[q].insert_by_seniority(call, since, seq, false);
        if let Some(c) = self.queues[q].get_mut(call) {
            c.callback = true;
            c.parked = parked;
        }
        self.calls.insert(call, q);
        self.arm_escalation(call, q, since, now.saturating_duration_since(since));
        Ok((q, position))
    }

    /// The caller left a message after a rule sent it out of `queue` (overflow
    /// `voicemail`): it is called back in its place as of `since`, parked until call control
    /// has let its line go ([`Acd::callback_ready`]). Logged as a callback asked for, by
    /// voicemail.
    pub fn voicemail_callback(
        &mut self,
        now: Instant,
        call: CallId,
        queue: &str,
        since: Instant,
        message: bool,
    ) -> Result<(), Error> {
        let now = self.tick(now);
        let (_, position) = self.join_as_callback(now, call, queue, since, true)?;
        let waited = now.saturating_duration_since(since);
        self.log(
            now,
            Some(call),
            Logged::CallbackRequested {
                queue: queue.to_string(),
                position,
                waited_ms: ms(waited),
                rule: None,
                voicemail: true,
                message,
            },
        );
        Ok(())
    }

    /// Call control gives the callback up after `attempts` dials: logged, and its place,
    /// if it still waits, is let go.
    pub fn callback_failed(&mut self, now: Instant, call: CallId, queue: &str, attempts: u32) {
        let event = Logged::CallbackFailed {
            queue: queue.to_string(),
            attempts,
        };
        self.end_callback(now, call, event);
    }

    /// Call control closes the callback unmade (the patient got through on a call of
    /// their own): logged, its place let go.
    pub fn callback_closed(&mut self, now: Instant, call: CallId, queue: &str, attempts: u32) {
        let event = Logged::CallbackClosed {
            queue: queue.to_string(),
            attempts,
        };
        self.end_callback(now, call, event);
    }

    fn end_callback(&mut self, now: Instant, call: CallId, event: Logged) {
        let now = self.tick(now);
        self.leave_queue(now, call);
        self.log(now, Some(call), event);
        self.dispatch(now);
    }

    /// Call control keeps the waiting callback elsewhere (the adapter stops; the next run
    /// puts it back with [`Acd::requeue_callback`]): its place is let go here, logging
    /// nothing of it (a phone ringing for it stops, not the agent's miss). Returns whether
    /// it was waiting.
    pub fn set_aside(&mut self, now: Instant, call: CallId) -> bool {
        let now = self.tick(now);
        let waited = self.leave_queue(now, call).is_some();
        self.dispatch(now);
        waited
    }

    /// `agent`, talking in a call, consults agent `to` about it before handing the caller
    /// over (an attended transfer). `to` must be logged in and on no call (ready, or not
    /// ready: a supervisor on a break may still be asked). `to` rings (it is offered nothing else) until
    /// [`Acd::consult_answered`], then talks with `agent` until [`Acd::complete_consult`]
    /// hands it the caller or [`Acd::consult_ended`] frees it. Refused, changing nothing,
    /// when `agent` is on no call or `to` is not free. Returns the call.
    pub fn consult(&mut self, now: Instant, agent: &str, to: &str) -> Result<CallId, Error> {
        let now = self.tick(now);
        let a = self.agent_idx(agent)?;
        let Activity::Talking { call, .. } = self.agents[a].activity else {
            return Err(Error::NotTalking(agent.to_string()));
        };
        let b = self.agent_idx(to)?;
        if !self.agents[b].online || self.agents[b].activity != Activity::Idle {
            let why = self.agents[b].state().as_str();
            return Err(Error::AgentNotFree(to.to_string(), why));
        }
        self.agent_mut(b).activity = Activity::Consulting {
            call,
            since: now,
            answered: false,
        };
        self.dispatch(now);
        Ok(call)
    }

    /// `agent` consults whoever `queue` would give a caller now (its strategy among its free
    /// agents, lowest level first, any level escalation may reach; never `agent`). Returns
    /// the call and the agent consulted; `QueueRefuses` (no agents) when nobody is free.
    pub fn consult_queue(
        &mut self,
        now: Instant,
        agent: &str,
        queue: &str,
    ) -> Result<(CallId, AgentId), Error> {
        let now = self.tick(now);
        let a = self.agent_idx(agent)?;
        if !matches!(self.agents[a].activity, Activity::Talking { .. }) {
            return Err(Error::NotTalking(agent.to_string()));
        }
        let q = self.queue_idx(queue)?;
        self.sync_ready(now);
        let Some(b) = self.pick_agent(now, q, Duration::MAX, Some(a)) else {
            return Err(Error::QueueRefuses(queue.to_string(), ExitReason::NoAgents));
        };
        let to = self.agents[b].id.clone();
        let call = self.consult(now, agent, &to)?;
        Ok((call, to))
    }

    /// The consulted agent `to` answered: it talks (with the agent who consulted it).
    pub fn consult_answered(&mut self, now: Instant, to: &str) -> Result<(), Error> {
        let now = self.tick(now);
        let b = self.agent_idx(to)?;
        let Activity::Consulting { call, since, .. } = self.agents[b].activity else {
            return Err(Error::NotConsulting(to.to_string(), String::new()));
        };
        self.agent_mut(b).activity = Activity::Consulting {
            call,
            since,
            answered: true,
        };
        self.dispatch(now);
        Ok(())
    }

    /// The consultation of `to` ended without a transfer (cancelled, refused, not answered,
    /// hung up): `to` is free again (not a miss). The caller stays with the agent who asked.
    pub fn consult_ended(&mut self, now: Instant, to: &str) -> Result<(), Error> {
        let now = self.tick(now);
        let b = self.agent_idx(to)?;
        if !matches!(self.agents[b].activity, Activity::Consulting { .. }) {
            return Err(Error::NotConsulting(to.to_string(), String::new()));
        }
        self.free(now, b);
        self.dispatch(now);
        Ok(())
    }

    /// `agent` hands its caller to the agent `to` it consulted (answered): logged as a
    /// transfer to `to` that `to` answered at once (the caller's part with `agent` completed,
    /// by transferred; a wait a transfer began; `to` offered and connected), so the KPIs
    /// count it as they count a blind transfer. No `Offer` or `Connected` event: call
    /// control joins the legs itself. `agent` goes to its wrap-up.
    pub fn complete_consult(&mut self, now: Instant, agent: &str, to: &str) -> Result<(), Error> {
        let now = self.tick(now);
        let a = self.agent_idx(agent)?;
        let b = self.agent_idx(to)?;
        let Activity::Talking { call, queue: q, .. } = self.agents[a].activity else {
            return Err(Error::NotTalking(agent.to_string()));
        };
        if !matches!(
            self.agents[b].activity,
            Activity::Consulting { call: c, answered: true, .. } if c == call
        ) {
            return Err(Error::NotConsulting(to.to_string(), agent.to_string()));
        }
        self.end_talk(now, a, EndedBy::Transferred);
        self.agent_mut(b).activity = Activity::Idle;
        let seq = self.next_seq();
        self.join(now, call, q, seq, true);
        if let Some(c) = self.queues[q].get_mut(call) {
            c.handed_by = Some(a);
        }
        self.ring(now, b, q, call);
        self.connect(now, call, b);
        self.dispatch(now);
        Ok(())
    }

    /// The call agent `a` talks in, and its queue's name.
    fn talking_in(&self, a: usize) -> Option<(CallId, String)> {
        match self.agents[a].activity {
            Activity::Talking { call, queue, .. } => {
                Some((call, self.queues[queue].config.name.clone()))
            }
            _ => None,
        }
    }

    /// Call control has no such call any more (its dialogs are over): whatever the ACD still
    /// holds of it is let go, as an abandon (waiting or ringing) or a call end (talking).
    /// Returns whether there was anything: call control's reconciliation, never needed
    /// when every input arrived.
    pub fn forget(&mut self, now: Instant, call: CallId) -> bool {
        if self.calls.contains_key(&call) {
            self.abandon(now, call);
            return true;
        }
        if let Some(a) = self.talking_agent(call) {
            let agent = self.agents[a].id.clone();
            return self.call_ended(now, &agent, EndedBy::System).is_ok();
        }
        false
    }

    /// The agent's phone answered (200 OK): the caller is connected. An answer for an offer
    /// that already ended (a 200 OK racing the ring-out) is `NotOffered`, and call control
    /// must hang up that agent leg.
    pub fn answered(&mut self, now: Instant, call: CallId, agent: &str) -> Result<(), Error> {
        let now = self.tick(now);
        let a = self.offered_agent(call, agent)?;
        let event = self.connect(now, call, a);
        self.events.push_back(event);
        self.dispatch(now);
        Ok(())
    }

    /// Agent `a`, ringing for `call`, is connected to it (logged); the event to announce it.
    fn connect(&mut self, now: Instant, call: CallId, a: usize) -> AcdEvent {
        self.timers.cancel(Timer::RingOut(call));
        self.cancel_wait_timers(call);
        let rang = self.rang(now, a);
        // The queue the phone rings for; the caller waits there (an offer keeps its place).
        let q = match self.agents[a].activity {
            Activity::Ringing { queue, .. } => queue,
            _ => self.calls.get(&call).copied().unwrap_or_default(),
        };
        self.calls.remove(&call);
        self.uncallable.remove(&call);
        let (enqueued_at, callback, ringing) = self.queues[q]
            .remove(call)
            .map_or((now, false, Vec::new()), |(caller, _)| {
                (caller.enqueued_at, caller.callback, caller.ringing)
            });
        let waited = now.saturating_duration_since(enqueued_at);
        // Ring-all: the other phones ringing for this caller stop, no miss for them.
        for other in ringing.into_iter().filter(|&o| o != a) {
            self.withdraw(now, call, other, q);
        }
        let ag = self.agent_mut(a);
        ag.activity = Activity::Talking {
            call,
            queue: q,
            since: now,
            waited,
            held: false,
        };
        ag.consecutive_misses = 0;
        ag.answered_calls = ag.answered_calls.saturating_add(1);
        self.talking.insert(call, a);
        if let Some(recent) = self.answers.get_mut(q) {
            if recent.len() == ANSWERS_KEPT {
                recent.pop_front();
            }
            recent.push_back(now);
        }
        let config = &self.queues[q].config;
        let (queue, ring_timeout) = (config.name.clone(), config.ring_timeout);
        let agent = self.agents[a].id.clone();
        self.log(
            now,
            Some(call),
            Logged::Connected {
                agent: agent.clone(),
                queue,
                waited_ms: ms(waited),
                rang_ms: ms(rang),
                ring_timeout_ms: ms(ring_timeout),
                callback,
            },
        );
        AcdEvent::Connected {
            call,
            agent,
            waited,
        }
    }

    /// The agent's phone rejected the offer (486/603) or failed. Like a ring-out without the
    /// wait: the miss is counted and the caller is offered to the next agent at once. No
    /// RingOut event (the INVITE is already over). So a phone that rejects everything cannot
    /// loop INVITEs, the agent stays Ready but is not offered any call before the moment its
    /// ring would have timed out.
    pub fn declined(&mut self, now: Instant, call: CallId, agent: &str) -> Result<(), Error> {
        let now = self.tick(now);
        let a = self.offered_agent(call, agent)?;
        let until = match self.agents[a].activity {
            Activity::Ringing { until, .. } => until,
            _ => now,
        };
        self.end_offer(now, call, a, OfferEnd::Declined);
        if until > now {
            self.agent_mut(a).paused_until = Some(until);
            self.timers.set(Timer::DeclinePause(a), until);
        }
        self.leave_if_overdue(now, call);
        self.dispatch(now);
        Ok(())
    }

    /// The agent's call ended (`by` whom): the agent goes into its queue's wrap-up (none
    /// configured, or logged out meanwhile: free at once, idle since now) and the next
    /// caller is offered.
    pub fn call_ended(&mut self, now: Instant, agent: &str, by: EndedBy) -> Result<(), Error> {
        let now = self.tick(now);
        let a = self.agent_idx(agent)?;
        if self.end_talk(now, a, by).is_none() {
            return Err(Error::NotTalking(agent.to_string()));
        }
        self.dispatch(now);
        Ok(())
    }

    /// Agent `a`'s call ends (`by`): logged, talk time counted, wrap-up or free. No dispatch.
    /// The call, if the agent was talking.
    fn end_talk(&mut self, now: Instant, a: usize, by: EndedBy) -> Option<CallId> {
        let Activity::Talking {
            call, queue, since, ..
        } = self.agents[a].activity
        else {
            return None;
        };
        let agent = self.agents[a].id.clone();
        self.talking.remove(&call);
        let talked = now.saturating_duration_since(since);
        let ag = self.agent_mut(a);
        ag.talk_time = ag.talk_time.saturating_add(talked);
        let config = &self.queues[queue].config;
        let (name, wrap_up) = (config.name.clone(), config.wrap_up);
        self.log(
            now,
            Some(call),
            Logged::Completed {
                agent,
                queue: name,
                talked_ms: ms(talked),
                by,
            },
        );
        match now.checked_add(wrap_up) {
            Some(until) if !wrap_up.is_zero() && self.agents[a].online => {
                self.agent_mut(a).activity = Activity::WrapUp { call, until };
                self.timers.set(Timer::WrapUpEnd(a), until);
            }
            _ => self.free(now, a),
        }
        Some(call)
    }

    /// Fires every timer due at or before `now` (ring-outs, decline pauses), then offers.
    /// Timers fire only here, never inside other inputs.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.tick(now);
        let mut fired = false;
        while let Some(timer) = self.timers.pop_due(now) {
            fired = true;
            match timer {
                Timer::RingOut(call) => {
                    let ringing = self
                        .calls
                        .get(&call)
                        .and_then(|&q| self.queues[q].get(call))
                        .map(|caller| caller.ringing.clone())
                        .unwrap_or_default();
                    for a in ringing {
                        self.ring_out(now, call, a, OfferEnd::RangOut);
                    }
                }
                Timer::DeclinePause(a) => {
                    if a < self.agents.len() {
                        self.agent_mut(a).paused_until = None;
                    }
                }
                Timer::MaxWait(call) => {
                    if let Some(&q) = self.calls.get(&call)
                        && let Some(caller) = self.queues[q].get_mut(call)
                    {
                        if !caller.ringing.is_empty() {
                            caller.overdue = true;
                        } else {
                            self.exit(now, call, ExitReason::Timeout);
                        }
                    }
                }
                Timer::Escalate(call) => {
                    if let Some(&q) = self.calls.get(&call)
                        && let Some(caller) = self.queues[q].get(call)
                    {
                        let waited = now.saturating_duration_since(caller.enqueued_at);
                        self.arm_escalation(call, q, caller.enqueued_at, waited);
                    }
                }
                Timer::WrapUpEnd(a) => {
                    if matches!(
                        self.agents.get(a).map(|ag| ag.activity),
                        Some(Activity::WrapUp { .. })
                    ) {
                        self.end_wrap_up(now, a);
                    }
                }
            }
        }
        if fired {
            self.dispatch(now);
        }
    }

    /// The next thing call control must act on.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<AcdEvent> {
        self.events.pop_front()
    }

    /// The next entry of the event log, oldest first (drain it after every input).
    #[must_use]
    pub fn poll_log(&mut self) -> Option<Entry> {
        self.journal.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// All agents in configuration order.
    pub fn agents(&self) -> Vec<AgentView> {
        self.agents.iter().map(Agent::view).collect()
    }

    /// One agent.
    pub fn agent(&self, agent: &str) -> Result<AgentView, Error> {
        Ok(self.agents[self.agent_idx(agent)?].view())
    }

    /// Where a waiting caller is in its queue (1: next) and how many wait there.
    pub fn position(&self, call: CallId) -> Option<(usize, usize)> {
        let q = *self.calls.get(&call)?;
        let queue = &self.queues[q];
        Some((queue.position_of(call)?, queue.callers().len()))
    }

    /// How long a caller at `position` of `queue` can expect to wait from `now`: the
    /// queue's recent pace of answers (the last few answers' spacing) times the position.
    /// `None` until the queue has answered two calls.
    pub fn estimated_wait(&self, queue: &str, position: usize) -> Option<Duration> {
        let recent = self.answers.get(*self.queue_index.get(queue)?)?;
        let (first, last) = (recent.front()?, recent.back()?);
        let gaps = u32::try_from(recent.len().checked_sub(1)?)
            .ok()
            .filter(|n| *n > 0)?;
        let pace = last.saturating_duration_since(*first) / gaps;
        pace.checked_mul(u32::try_from(position).unwrap_or(u32::MAX))
    }

    /// Whether `agent` serves `queue`.
    pub fn serves(&self, agent: &str, queue: &str) -> bool {
        match (self.agent_index.get(agent), self.queue_index.get(queue)) {
            (Some(&a), Some(&q)) => self.agents[a].level_in(q).is_some(),
            _ => false,
        }
    }

    /// Every queue's configuration, in configuration order.
    pub fn queue_configs(&self) -> impl Iterator<Item = &QueueConfig> {
        self.queues.iter().map(|q| &q.config)
    }

    /// How many callers are in `queue`, including those whose offer is ringing.
    pub fn waiting(&self, queue: &str) -> Result<usize, Error> {
        Ok(self.queues[self.queue_idx(queue)?].callers().len())
    }

    /// How many callers of `queue` are on the line (waiting or being offered; callbacks
    /// left out).
    pub fn on_the_line(&self, queue: &str) -> Result<usize, Error> {
        Ok(self.queues[self.queue_idx(queue)?].on_the_line())
    }

    /// The callers in `queue`, longest waiting first, with their wait at `now`.
    pub fn callers(&self, queue: &str, now: Instant) -> Result<Vec<CallerView>, Error> {
        let q = self.queue_idx(queue)?;
        Ok(self.queues[q]
            .callers()
            .iter()
            .map(|c| CallerView {
                call: c.call,
                waited: now.saturating_duration_since(c.enqueued_at),
                offered_to: c
                    .ringing
                    .first()
                    .and_then(|&a| self.agents.get(a))
                    .map(|a| a.id.clone()),
                ringing: c
                    .ringing
                    .iter()
                    .filter_map(|&a| self.agents.get(a))
                    .map(|a| a.id.clone())
                    .collect(),
                callback: c.callback,
                parked: c.parked,
            })
            .collect())
    }

    /// How long a caller has waited at `now`; for a connected call, the wait until the answer.
    /// `None` for a call the ACD does not know (never enqueued, abandoned or ended).
    pub fn caller_wait(&self, call: CallId, now: Instant) -> Option<Duration> {
        if let Some(caller) = self
            .calls
            .get(&call)
            .and_then(|&q| self.queues[q].get(call))
        {
            return Some(now.saturating_duration_since(caller.enqueued_at));
        }
        self.talking_agent(call)
            .and_then(|a| match self.agents[a].activity {
                Activity::Talking { waited, .. } => Some(waited),
                _ => None,
            })
    }

    // ---- internals ----

    fn log(&mut self, at: Instant, call: Option<CallId>, event: Logged) {
        self.journal.push_back(Entry { at, call, event });
    }

    /// How long agent `a`'s phone has rung (zero when it is not ringing).
    fn rang(&self, now: Instant, a: usize) -> Duration {
        match self.agents[a].activity {
            Activity::Ringing { since, .. } => now.saturating_duration_since(since),
            _ => Duration::ZERO,
        }
    }

    /// Agent `a`'s phone is free from now: idle since now.
    fn free(&mut self, now: Instant, a: usize) {
        let idle = self.next_idle_key(now);
        let ag = self.agent_mut(a);
        ag.activity = Activity::Idle;
        ag.idle = Some(idle);
    }

    /// Ends agent `a`'s after-call work now.
    fn end_wrap_up(&mut self, now: Instant, a: usize) {
        self.timers.cancel(Timer::WrapUpEnd(a));
        self.free(now, a);
    }

    /// Moves the clock forward to `now` (time going backwards is ignored) and returns it.
    fn tick(&mut self, now: Instant) -> Instant {
        let now = match self.clock {
            Some(clock) if clock > now => clock,
            _ => now,
        };
        self.clock = Some(now);
        now
    }

    fn next_seq(&mut self) -> u64 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn next_idle_key(&mut self, now: Instant) -> IdleKey {
        (now, self.next_seq())
    }

    fn agent_idx(&self, agent: &str) -> Result<usize, Error> {
        self.agent_index
            .get(agent)
            .copied()
            .ok_or_else(|| Error::UnknownAgent(agent.to_string()))
    }

    fn queue_idx(&self, queue: &str) -> Result<usize, Error> {
        self.queue_index
            .get(queue)
            .copied()
            .ok_or_else(|| Error::UnknownQueue(queue.to_string()))
    }

    fn talking_agent(&self, call: CallId) -> Option<usize> {
        self.talking.get(&call).copied()
    }

    /// The index of `agent` if its phone is ringing for `call`.
    fn offered_agent(&self, call: CallId, agent: &str) -> Result<usize, Error> {
        let a = self.agent_idx(agent)?;
        match self.agents[a].activity {
            Activity::Ringing { call: c, .. } if c == call => Ok(a),
            _ => Err(Error::NotOffered {
                call,
                agent: agent.to_string(),
            }),
        }
    }

    /// Agent `a`'s phone no longer rings for the caller; with no other phone ringing for
    /// it, the caller waits again (its place and wait time unchanged).
    fn release_offer(&mut self, call: CallId, a: usize) {
        let Some(caller) = self
            .calls
            .get(&call)
            .and_then(|&q| self.queues[q].get_mut(call))
        else {
            return;
        };
        caller.ringing.retain(|&r| r != a);
        if caller.ringing.is_empty() {
            self.timers.cancel(Timer::RingOut(call));
        }
    }

    /// Agent `a`'s phone stops ringing for `call` (of queue `q`) because another answered:
    /// logged, no miss, free again keeping its place in idle order.
    fn withdraw(&mut self, now: Instant, call: CallId, a: usize, q: usize) {
        if !matches!(self.agents[a].activity, Activity::Ringing { call: c, .. } if c == call) {
            return;
        }
        let queue = self.queues[q].config.name.clone();
        let agent = self.stop_ring(now, call, a, queue, OfferEnd::AnsweredElsewhere);
        self.events.push_back(AcdEvent::Withdrawn { call, agent });
    }

    /// Agent `a`'s phone stops ringing for `call` through no fault of the agent's (`why`):
    /// logged, free again keeping its place in idle order. Returns the agent's id.
    fn stop_ring(
        &mut self,
        now: Instant,
        call: CallId,
        a: usize,
        queue: String,
        why: OfferEnd,
    ) -> AgentId {
        let rang = self.rang(now, a);
        self.agent_mut(a).activity = Activity::Idle;
        let agent = self.agents[a].id.clone();
        self.log(
            now,
            Some(call),
            Logged::OfferEnded {
                agent: agent.clone(),
                queue,
                rang_ms: ms(rang),
                why,
            },
        );
        agent
    }

    /// Ends agent `a`'s unanswered offer of `call` (`why`): logged, miss counted (perhaps
    /// making the agent not ready), most recently idle.
    fn end_offer(&mut self, now: Instant, call: CallId, a: usize, why: OfferEnd) {
        let rang = self.rang(now, a);
        let queue = self
            .calls
            .get(&call)
            .map(|&q| self.queues[q].config.name.clone())
            .unwrap_or_default();
        self.release_offer(call, a);
        let idle = self.next_idle_key(now);
        let ag = self.agent_mut(a);
        ag.miss(idle);
        let agent = ag.id.clone();
        self.log(
            now,
            Some(call),
            Logged::OfferEnded {
                agent,
                queue,
                rang_ms: ms(rang),
                why,
            },
        );
    }

    /// Ends agent `a`'s unanswered offer of `call` and tells call control to cancel it.
    fn ring_out(&mut self, now: Instant, call: CallId, a: usize, why: OfferEnd) {
        self.end_offer(now, call, a, why);
        let agent = self.agents[a].id.clone();
        self.events.push_back(AcdEvent::RingOut { call, agent });
        self.leave_if_overdue(now, call);
    }

    /// A caller whose `max_wait` passed while a phone rang leaves now that the ring is over.
    fn leave_if_overdue(&mut self, now: Instant, call: CallId) {
        let overdue = self
            .calls
            .get(&call)
            .and_then(|&q| self.queues[q].get(call))
            .is_some_and(|c| c.overdue && c.ringing.is_empty());
        if overdue {
            self.exit(now, call, ExitReason::Timeout);
        }
    }

    /// Arms the caller's `max_wait` in queue `q`, counted from `joined`.
    fn arm_max_wait(&mut self, call: CallId, q: usize, joined: Instant) {
        if let Some(at) = self.queues[q]
            .config
            .max_wait
            .and_then(|wait| joined.checked_add(wait))
        {
            self.timers.set(Timer::MaxWait(call), at);
        }
    }

    /// Whether queue `q`'s `leave_when` holds: nobody who could answer it is there.
    fn nobody_can_answer(&self, q: usize) -> bool {
        let mut members = self.agents.iter().filter(|a| a.level_in(q).is_some());
        match self.queues[q].config.leave_when {
            LeaveWhen::Never => false,
            LeaveWhen::NoneLoggedIn => members.all(|a| a.state() == AgentState::LoggedOut),
            LeaveWhen::NoneReady => {
                members.all(|a| matches!(a.state(), AgentState::LoggedOut | AgentState::NotReady))
            }
        }
    }

    /// Sends the waiting (unoffered) callers of every queue nobody can answer out of it.
    fn apply_leave_rules(&mut self, now: Instant) {
        for q in 0..self.queues.len() {
            if self.queues[q].config.leave_when == LeaveWhen::Never
                || !self.queues[q]
                    .callers()
                    .iter()
                    .any(|c| c.ringing.is_empty() && !c.callback)
                || !self.nobody_can_answer(q)
            {
                continue;
            }
            let leaving: Vec<CallId> = self.queues[q]
                .callers()
                .iter()
                .filter(|c| c.ringing.is_empty() && !c.callback)
                .map(|c| c.call)
                .collect();
            for call in leaving {
                self.exit(now, call, ExitReason::NoAgents);
            }
        }
    }

    /// Takes an unoffered caller out of its queue for `reason` and routes it on; false
    /// (nothing changed) when it is not waiting or a phone rings for it.
    fn exit(&mut self, now: Instant, call: CallId, reason: ExitReason) -> bool {
        let Some(&q) = self.calls.get(&call) else {
            return false;
        };
        if self.queues[q]
            .get(call)
            .is_none_or(|c| !c.ringing.is_empty() || c.callback)
        {
            return false;
        }
        let calls_back = matches!(
            self.queues[q].config.overflow,
            Overflow::Callback | Overflow::Voicemail
        ) && !self.uncallable.contains(&call);
        if calls_back && self.queues[q].get(call).is_some_and(|c| c.transferred) {
            // Answered before (its recording runs): it waits on rather than be cut off.
            return false;
        }
        if self.queues[q].config.overflow == Overflow::Callback && !self.uncallable.contains(&call)
        {
            self.become_callback(now, call, q, Some(reason));
            return true;
        }
        self.calls.remove(&call);
        let Some((caller, _)) = self.queues[q].remove(call) else {
            return false;
        };
        self.cancel_wait_timers(call);
        self.route_out(
            now,
            call,
            q,
            caller.enqueued_at,
            caller.seq,
            reason,
            caller.transferred,
        );
        true
    }

    /// Disarms the timers a waiting caller has (escalation, max wait).
    fn cancel_wait_timers(&mut self, call: CallId) {
        self.timers.cancel(Timer::Escalate(call));
        self.timers.cancel(Timer::MaxWait(call));
    }

    /// A caller leaving queue `q` (or refused at its door) goes to its overflow: another
    /// queue, in its place by seniority, or back to call control. The overflow queue's
    /// own door rules are not applied (two full queues must not bounce a caller forever);
    /// its `max_wait` counts from now.
    /// `transferred`: the caller's wait began with a transfer (its move says so too).
    #[allow(clippy::too_many_arguments)]
    fn route_out(
        &mut self,
        now: Instant,
        call: CallId,
        q: usize,
        enqueued_at: Instant,
        seq: u64,
        reason: ExitReason,
        transferred: bool,
    ) {
        let from = self.queues[q].config.name.clone();
        let to = self.overflow_to.get(q).copied().flatten();
        let waited = now.saturating_duration_since(enqueued_at);
        self.log(
            now,
            Some(call),
            Logged::Exited {
                queue: from.clone(),
                reason,
                waited_ms: ms(waited),
                to: to.map(|t| self.queues[t].config.name.clone()),
            },
        );
        match to {
            Some(t) => {
                let position =
                    self.queues[t].insert_by_seniority(call, enqueued_at, seq, transferred);
                self.calls.insert(call, t);
                let name = self.queues[t].config.name.clone();
                self.log(
                    now,
                    Some(call),
                    Logged::Enqueued {
                        queue: name.clone(),
                        position,
                        transferred,
                    },
                );
                self.arm_escalation(call, t, enqueued_at, waited);
                self.arm_max_wait(call, t, now);
                self.events.push_back(AcdEvent::Moved {
                    call,
                    from,
                    to: name,
                });
            }
            None => {
                self.uncallable.remove(&call);
                self.events.push_back(AcdEvent::Exited {
                    call,
                    queue: from,
                    reason,
                });
            }
        }
    }

    /// Agent `a`, to change: its place among the ready agents is brought up to date
    /// before the next dispatch. Every change to an agent goes through here.
    fn agent_mut(&mut self, a: usize) -> &mut Agent {
        self.touched.push(a);
        &mut self.agents[a]
    }

    /// Brings `ready` up to date with the agents changed since the last time, and logs
    /// (and tells call control) every state that changed.
    fn sync_ready(&mut self, now: Instant) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for a in touched {
            if let Some(old) = self.ready_key.get_mut(a).and_then(Option::take) {
                self.ready.remove(&(old, a));
            }
            let Some(agent) = self.agents.get_mut(a) else {
                continue;
            };
            let state = agent.state();
            if state == AgentState::Ready {
                // Never idle yet sorts after every agent that was.
                let key = (agent.idle.is_none(), agent.idle);
                self.ready.insert((key, a));
                if let Some(slot) = self.ready_key.get_mut(a) {
                    *slot = Some(key);
                }
            }
            let shown = (state, agent.shown_reason());
            if agent.logged != shown {
                self.states_changed = true;
                agent.logged = shown.clone();
                agent.state_since = Some(now);
                let call = agent.current_call();
                let (state, reason) = shown;
                let id = agent.id.clone();
                self.log(
                    now,
                    call,
                    Logged::AgentState {
                        agent: id.clone(),
                        state,
                        reason: reason.clone(),
                    },
                );
                self.events.push_back(AcdEvent::AgentState {
                    agent: id,
                    state,
                    reason,
                });
            }
        }
    }

    /// Arms the caller's next escalation step after `waited` (if its queue has one).
    fn arm_escalation(&mut self, call: CallId, q: usize, enqueued_at: Instant, waited: Duration) {
        if let Some(after) = self.queues[q].config.next_escalation(waited)
            && let Some(at) = enqueued_at.checked_add(after)
        {
            self.timers.set(Timer::Escalate(call), at);
        }
    }

    /// Offers waiting callers to free agents: callers in order (queue priority, then
    /// wait), each to the agent its queue's strategy picks. Nothing is walked when no
    /// agent is ready or no caller waits unoffered.
    fn dispatch(&mut self, now: Instant) {
        self.sync_ready(now);
        if std::mem::take(&mut self.states_changed) {
            self.apply_leave_rules(now);
        }
        if self.ready.is_empty() || self.queues.iter().all(|q| q.next_unoffered().is_none()) {
            return;
        }
        // Each queue's callers are in seniority order already: the callers in order are a
        // merge of the queues' heads, so a pass costs the offers it makes (plus the callers
        // it skips because a phone rings for them), not a sort of everyone waiting.
        let mut next = vec![0usize; self.queues.len()];
        // A queue whose caller found no agent is done for this pass: its later callers
        // have waited less, so escalation lets them ring no more agents.
        let mut exhausted = vec![false; self.queues.len()];
        loop {
            let mut best: Option<(ServeOrder, usize, CallId, Option<usize>)> = None;
            for (q, queue) in self.queues.iter().enumerate() {
                if exhausted[q] {
                    continue;
                }
                let callers = queue.callers();
                while callers.get(next[q]).is_some_and(|c| !c.offerable()) {
                    next[q] += 1;
                }
                let Some(c) = callers.get(next[q]) else {
                    exhausted[q] = true;
                    continue;
                };
                let key = (
                    std::cmp::Reverse(queue.config.priority),
                    c.enqueued_at,
                    c.seq,
                );
                if best.as_ref().is_none_or(|(k, ..)| key < *k) {
                    best = Some((key, q, c.call, c.handed_by));
                }
            }
            let Some(((_, enqueued_at, _), q, call, handed_by)) = best else {
                break;
            };
            next[q] += 1;
            let waited = now.saturating_duration_since(enqueued_at);
            // The agent who handed this caller on is passed over while the queue has
            // another agent (free or not).
            let avoid = handed_by.filter(|&h| {
                self.agents
                    .iter()
                    .enumerate()
                    .any(|(i, a)| i != h && a.level_in(q).is_some())
            });
            if self.queues[q].config.strategy == Strategy::RingAll {
                let all: Vec<usize> = self.eligible(now, q, waited, avoid).collect();
                if all.is_empty() {
                    if avoid.is_none() {
                        exhausted[q] = true;
                    }
                    continue;
                }
                for a in all {
                    self.offer(now, a, q, call);
                }
                continue;
            }
            match self.pick_agent(now, q, waited, avoid) {
                Some(a) => self.offer(now, a, q, call),
                // Only this caller may be out of luck: later ones may take that agent.
                None if avoid.is_some() => {}
                None => exhausted[q] = true,
            }
        }
        // Offers made agents ringing: take them out of `ready` now.
        self.sync_ready(now);
    }

    /// The free agent queue `q`'s strategy gives a caller who has waited `waited`: among
    /// the free agents serving `q` at a level escalation allows, those of the lowest level,
    /// then the strategy's choice.
    fn pick_agent(
        &mut self,
        now: Instant,
        q: usize,
        waited: Duration,
        avoid: Option<usize>,
    ) -> Option<usize> {
        let strategy = self.queues[q].config.strategy;
        let n = self.agents.len().max(1);
        // Each arm walks the candidates anew: the walk borrows the ACD only while it runs.
        let best = || self.eligible(now, q, waited, avoid);
        let picked = match strategy {
            Strategy::LongestIdle | Strategy::RingAll => best().next(),
            Strategy::TopDown => best().min(),
            Strategy::RoundRobin => {
                let start = self.round_robin[q] % n;
                best().min_by_key(|a| (a + n - start) % n)
            }
            Strategy::FewestCalls => best()
                .enumerate()
                .min_by_key(|(i, a)| (self.agents[*a].answered_calls, *i))
                .map(|(_, a)| a),
            Strategy::LeastTalkTime => best()
                .enumerate()
                .min_by_key(|(i, a)| (self.agents[*a].talk_time, *i))
                .map(|(_, a)| a),
            Strategy::Random => {
                let all: Vec<usize> = best().collect();
                let i = self.rng.below(all.len());
                all.get(i).copied()
            }
        };
        if let Some(a) = picked {
            self.round_robin[q] = a + 1;
        }
        picked
    }

    /// The free agents a caller of queue `q` who has waited `waited` may ring, longest
    /// idle first: those serving `q` at the lowest level among the levels escalation allows.
    fn eligible(
        &self,
        now: Instant,
        q: usize,
        waited: Duration,
        avoid: Option<usize>,
    ) -> impl Iterator<Item = usize> + '_ {
        let max_level = self.queues[q].config.max_level(waited);
        // `ready` iterates longest idle first: that order breaks every strategy's ties.
        let candidates = self.ready.iter().filter_map(move |&(_, a)| {
            let agent = &self.agents[a];
            let level = agent.level_in(q)?;
            (level <= max_level && agent.is_available(now) && Some(a) != avoid)
                .then_some((level, a))
        });
        let lowest = match self.shared_level.get(q).copied().flatten() {
            Some(level) if level <= max_level => Some(level),
            Some(_) => None,
            None => candidates.clone().map(|(level, _)| level).min(),
        };
        candidates
            .filter(move |(level, _)| Some(*level) == lowest)
            .map(|(_, a)| a)
    }

    fn offer(&mut self, now: Instant, a: usize, q: usize, call: CallId) {
        if let Some(event) = self.ring(now, a, q, call) {
            self.events.push_back(event);
        }
    }

    /// Agent `a`'s phone rings for `call` of queue `q` (logged, ring-out armed); the event
    /// to announce it.
    fn ring(&mut self, now: Instant, a: usize, q: usize, call: CallId) -> Option<AcdEvent> {
        let queue = &mut self.queues[q];
        let ring_timeout = queue.config.ring_timeout;
        let queue_name = queue.config.name.clone();
        let caller = queue.get_mut(call)?;
        caller.ringing.push(a);
        let waited = now.saturating_duration_since(caller.enqueued_at);
        let until = now.checked_add(ring_timeout).unwrap_or(now);
        self.agent_mut(a).activity = Activity::Ringing {
            call,
            queue: q,
            since: now,
            until,
        };
        self.timers.set(Timer::RingOut(call), until);
        let agent = self.agents[a].id.clone();
        self.log(
            now,
            Some(call),
            Logged::Offered {
                agent: agent.clone(),
                queue: queue_name.clone(),
                waited_ms: ms(waited),
                ring_timeout_ms: ms(ring_timeout),
            },
        );
        Some(AcdEvent::Offer {
            call,
            agent,
            queue: queue_name,
            waited,
            ring_timeout,
        })
    }
}

/// Answers remembered per queue for the wait estimate.
const ANSWERS_KEPT: usize = 10;

/// A duration in whole milliseconds (saturating), as the event log keeps it.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
