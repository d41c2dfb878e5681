//! One agent: registration, what the desk asked for, what the phone is doing, idle order, misses.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{AgentId, CallId};

/// What an agent is doing, as the desk and ops pages show it (`"not_ready"` etc. in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// The phone is not registered; never offered calls.
    LoggedOut,
    /// Registered but away (on a break, or `missed` after consecutive ring-outs); never offered calls.
    NotReady,
    /// Free and waiting for a call.
    Ready,
    /// A call is being offered: the phone is ringing.
    Ringing,
    /// In a call with a caller.
    Talking,
    /// In a call the agent's phone holds (the caller hears hold music).
    OnHold,
    /// After-call work: the call ended, the agent finishes its notes; no call is offered
    /// from any queue until it ends (its time, or the agent ends it from the desk).
    WrapUp,
}

impl AgentState {
    /// The name the API and the event log use (`"logged_out"`, `"wrap_up"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::LoggedOut => "logged_out",
            AgentState::NotReady => "not_ready",
            AgentState::Ready => "ready",
            AgentState::Ringing => "ringing",
            AgentState::Talking => "talking",
            AgentState::OnHold => "on_hold",
            AgentState::WrapUp => "wrap_up",
        }
    }

    /// The state of that name (as [`AgentState::as_str`] gives it).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            AgentState::LoggedOut,
            AgentState::NotReady,
            AgentState::Ready,
            AgentState::Ringing,
            AgentState::Talking,
            AgentState::OnHold,
            AgentState::WrapUp,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// The reason an agent put not ready after consecutive ring-outs is given.
pub const MISSED: &str = "missed";

/// Which queues an agent serves, and when its misses make it not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// SIP user and desk login, e.g. `"1001"`.
    pub id: AgentId,
    /// Names of the queues this agent answers.
    pub queues: Vec<String>,
    /// After this many offers in a row rang out or were declined, the agent goes not ready
    /// with reason [`MISSED`] (0: never).
    pub max_missed_rings: u32,
    /// The agent's level in a queue (skills): level 1 rings before level 2. A queue not
    /// named here is level 1.
    pub levels: Vec<(String, u32)>,
}

impl AgentConfig {
    /// An agent serving `queues`, made not ready after [`AgentConfig::DEFAULT_MAX_MISSED_RINGS`] misses in a row.
    pub fn new(id: impl Into<AgentId>, queues: &[&str]) -> Self {
        AgentConfig {
            id: id.into(),
            queues: queues.iter().map(|q| (*q).to_string()).collect(),
            max_missed_rings: Self::DEFAULT_MAX_MISSED_RINGS,
            levels: Vec::new(),
        }
    }

    /// The same agent at `level` in `queue`.
    #[must_use]
    pub fn with_level(mut self, queue: &str, level: u32) -> Self {
        self.levels.push((queue.to_string(), level));
        self
    }

    /// The agent's level in `queue`.
    pub fn level(&self, queue: &str) -> u32 {
        self.levels
            .iter()
            .rev()
            .find(|(q, _)| q == queue)
            .map_or(1, |(_, l)| *l)
    }

    /// Two ring-outs in a row: the agent is not at the phone.
    pub const DEFAULT_MAX_MISSED_RINGS: u32 = 2;
}

/// A snapshot of one agent for the desk and ops views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    /// The agent.
    pub id: AgentId,
    /// What the agent is doing now.
    pub state: AgentState,
    /// When the agent entered that state.
    pub state_since: Option<Instant>,
    /// The call ringing, connected or in wrap-up on the agent's phone.
    pub current_call: Option<CallId>,
    /// Offers that rang out, were declined, or rang while the agent went offline.
    pub missed_rings: u32,
    /// Of those, how many in a row since the agent last answered or was set ready.
    pub consecutive_misses: u32,
    /// While Ready: when the agent last became free (became Ready, ended a call or missed an offer).
    pub ready_since: Option<Instant>,
    /// Whether the desk wants the agent Ready (takes effect after the current offer or call).
    pub ready_requested: bool,
    /// The reason the desk gave for NotReady (or [`MISSED`]), kept while not ready.
    pub not_ready_reason: Option<String>,
    /// After a decline the agent stays Ready but is not offered calls before this instant.
    pub paused_until: Option<Instant>,
    /// While in wrap-up: when it ends by itself.
    pub wrap_up_until: Option<Instant>,
}

/// What the agent's phone is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    /// No call on the phone.
    Idle,
    /// Ringing for `call` of queue `queue` since `since`; rings out at `until`.
    Ringing {
        call: CallId,
        queue: usize,
        since: Instant,
        until: Instant,
    },
    /// Connected to `call` since `since`; the caller had waited `waited` in the queue.
    /// `held`: the agent's phone holds the call.
    Talking {
        call: CallId,
        queue: usize,
        since: Instant,
        waited: Duration,
        held: bool,
    },
    /// After-call work for `call` until `until`.
    WrapUp { call: CallId, until: Instant },
    /// Consulted about `call` by the agent talking in it (an attended transfer): ringing
    /// since `since` until `answered`, then talking with that agent.
    Consulting {
        call: CallId,
        since: Instant,
        answered: bool,
    },
}

/// The idle-order key: smaller means idle for longer (ties broken by the order things happened).
pub(crate) type IdleKey = (Instant, u64);

/// The order of ready agents: those idle longest first, then those never idle yet.
pub(crate) type ReadyKey = (bool, Option<IdleKey>);

/// One configured agent.
#[derive(Debug)]
pub(crate) struct Agent {
    pub(crate) id: AgentId,
    /// Indices of the queues served, with the agent's level in each.
    pub(crate) queues: Vec<(usize, u32)>,
    /// Calls answered and talk time since the counts were last reset (for the strategies).
    pub(crate) answered_calls: u64,
    pub(crate) talk_time: Duration,
    pub(crate) online: bool,
    pub(crate) ready_requested: bool,
    pub(crate) reason: Option<String>,
    pub(crate) activity: Activity,
    /// Set whenever the agent becomes free; `None` until it first does.
    pub(crate) idle: Option<IdleKey>,
    pub(crate) missed_rings: u32,
    pub(crate) consecutive_misses: u32,
    pub(crate) max_missed_rings: u32,
    pub(crate) paused_until: Option<Instant>,
    /// The state (and reason) last written to the event log, and since when.
    pub(crate) logged: (AgentState, Option<String>),
    pub(crate) state_since: Option<Instant>,
}

impl Agent {
    pub(crate) fn new(id: AgentId, queues: Vec<(usize, u32)>, max_missed_rings: u32) -> Self {
        Agent {
            id,
            queues,
            answered_calls: 0,
            talk_time: Duration::ZERO,
            online: false,
            ready_requested: false,
            reason: None,
            activity: Activity::Idle,
            idle: None,
            missed_rings: 0,
            consecutive_misses: 0,
            max_missed_rings,
            paused_until: None,
            logged: (AgentState::LoggedOut, None),
            state_since: None,
        }
    }

    /// The state derived from registration, the desk's wish and the phone's activity.
    pub(crate) fn state(&self) -> AgentState {
        match self.activity {
            Activity::Ringing { .. }
            | Activity::Consulting {
                answered: false, ..
            } => AgentState::Ringing,
            Activity::Consulting { answered: true, .. } => AgentState::Talking,
            Activity::Talking { held: false, .. } => AgentState::Talking,
            Activity::Talking { held: true, .. } => AgentState::OnHold,
            Activity::WrapUp { .. } => AgentState::WrapUp,
            Activity::Idle if !self.online => AgentState::LoggedOut,
            Activity::Idle if self.ready_requested => AgentState::Ready,
            Activity::Idle => AgentState::NotReady,
        }
    }

    /// The reason shown with the state: only while not ready.
    pub(crate) fn shown_reason(&self) -> Option<String> {
        match self.state() {
            AgentState::NotReady => self.reason.clone(),
            _ => None,
        }
    }

    /// The agent's level in queue `q`, if it serves it.
    pub(crate) fn level_in(&self, q: usize) -> Option<u32> {
        self.queues.iter().find(|(i, _)| *i == q).map(|(_, l)| *l)
    }

    /// Whether the ACD may offer this agent a call at `now`.
    pub(crate) fn is_available(&self, now: Instant) -> bool {
        self.state() == AgentState::Ready && self.paused_until.is_none_or(|until| now >= until)
    }

    /// The call on the agent's phone, ringing, connected or in wrap-up.
    pub(crate) fn current_call(&self) -> Option<CallId> {
        match self.activity {
            Activity::Idle => None,
            Activity::Ringing { call, .. }
            | Activity::Talking { call, .. }
            | Activity::WrapUp { call, .. }
            | Activity::Consulting { call, .. } => Some(call),
        }
    }

    /// Ends an offer that was not answered: the phone is free, the miss counted, idle order
    /// reset. After `max_missed_rings` in a row the agent is made not ready (`missed`);
    /// returns whether that happened now.
    pub(crate) fn miss(&mut self, idle: IdleKey) -> bool {
        self.activity = Activity::Idle;
        self.missed_rings = self.missed_rings.saturating_add(1);
        self.consecutive_misses = self.consecutive_misses.saturating_add(1);
        self.idle = Some(idle);
        let limit = self.max_missed_rings;
        if limit > 0 && self.consecutive_misses >= limit && self.ready_requested {
            self.ready_requested = false;
            self.reason = Some(MISSED.to_string());
            return true;
        }
        false
    }

    pub(crate) fn view(&self) -> AgentView {
        let state = self.state();
        AgentView {
            id: self.id.clone(),
            state,
            state_since: self.state_since,
            current_call: self.current_call(),
            missed_rings: self.missed_rings,
            consecutive_misses: self.consecutive_misses,
            ready_since: match state {
                AgentState::Ready => self.idle.map(|(since, _)| since),
                _ => None,
            },
            ready_requested: self.ready_requested,
            not_ready_reason: self.shown_reason(),
            paused_until: self.paused_until,
            wrap_up_until: match self.activity {
                Activity::WrapUp { until, .. } => Some(until),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_the_phone_to_be_free() {
        let t0 = Instant::now();
        let mut a = Agent::new("1001".into(), vec![(0, 1)], 2);
        assert_eq!(a.state(), AgentState::LoggedOut);
        a.online = true;
        a.ready_requested = true;
        a.idle = Some((t0, 0));
        assert!(a.is_available(t0));
        a.activity = Activity::Talking {
            call: 7,
            queue: 0,
            since: t0,
            waited: Duration::ZERO,
            held: false,
        };
        a.ready_requested = false;
        assert_eq!(a.state(), AgentState::Talking);
        a.activity = Activity::WrapUp {
            call: 7,
            until: t0 + Duration::from_secs(30),
        };
        assert_eq!(a.state(), AgentState::WrapUp);
        assert!(!a.is_available(t0));
        a.activity = Activity::Idle;
        assert_eq!(a.state(), AgentState::NotReady);
        assert!(!a.is_available(t0));
    }

    #[test]
    fn paused_agent_is_ready_but_not_available_until_the_pause_ends() {
        let t0 = Instant::now();
        let mut a = Agent::new("1001".into(), vec![(0, 1)], 2);
        a.online = true;
        a.ready_requested = true;
        a.paused_until = Some(t0 + Duration::from_secs(3));
        assert_eq!(a.state(), AgentState::Ready);
        assert!(!a.is_available(t0 + Duration::from_millis(2_999)));
        assert!(a.is_available(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn consecutive_misses_make_the_agent_not_ready_once() {
        let t0 = Instant::now();
        let mut a = Agent::new("1001".into(), vec![(0, 1)], 2);
        a.online = true;
        a.ready_requested = true;
        assert!(!a.miss((t0, 1)));
        assert_eq!(a.state(), AgentState::Ready);
        assert!(a.miss((t0, 2)));
        assert_eq!(a.state(), AgentState::NotReady);
        assert_eq!(a.shown_reason().as_deref(), Some(MISSED));
        assert!(!a.miss((t0, 3)), "already not ready");
        let mut never = Agent::new("1002".into(), vec![(0, 1)], 0);
        never.online = true;
        never.ready_requested = true;
        for n in 0..10 {
            assert!(!never.miss((t0, n)));
        }
        assert_eq!(never.state(), AgentState::Ready);
    }

    #[test]
    fn state_names_are_snake_case() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, StrDeserializer};
        let names = [
            ("logged_out", AgentState::LoggedOut),
            ("not_ready", AgentState::NotReady),
            ("ready", AgentState::Ready),
            ("ringing", AgentState::Ringing),
            ("talking", AgentState::Talking),
            ("on_hold", AgentState::OnHold),
            ("wrap_up", AgentState::WrapUp),
        ];
        for (name, state) in names {
            let de: StrDeserializer<'_, Error> = name.into_deserializer();
            assert_eq!(AgentState::deserialize(de).ok(), Some(state), "{name}");
            assert_eq!(state.as_str(), name);
            assert_eq!(AgentState::from_name(name), Some(state));
        }
        assert_eq!(AgentState::from_name("offline"), None);
    }
}
