//! One agent: registration, what the desk asked for, what the phone is doing, idle order, misses.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{AgentId, CallId};

/// What an agent is doing, as the desk and ops pages show it (`"not_ready"` etc. in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// The phone is not registered; never offered calls.
    Offline,
    /// Registered but on a break (the desk said so); never offered calls.
    NotReady,
    /// Free and waiting for a call.
    Ready,
    /// A call is being offered: the phone is ringing.
    Ringing,
    /// In a call with a caller.
    Talking,
}

/// Which queues an agent serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// SIP user and desk login, e.g. `"1001"`.
    pub id: AgentId,
    /// Names of the queues this agent answers.
    pub queues: Vec<String>,
}

/// A snapshot of one agent for the desk and ops views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    /// The agent.
    pub id: AgentId,
    /// What the agent is doing now.
    pub state: AgentState,
    /// The call ringing or connected on the agent's phone.
    pub current_call: Option<CallId>,
    /// Offers that rang out, were declined, or rang while the agent went offline.
    pub missed_rings: u32,
    /// While Ready: when the agent last became free (became Ready, ended a call or missed an offer).
    pub ready_since: Option<Instant>,
    /// Whether the desk wants the agent Ready (takes effect after the current offer or call).
    pub ready_requested: bool,
    /// The reason the desk gave for NotReady, kept while not ready.
    pub not_ready_reason: Option<String>,
    /// After a decline the agent stays Ready but is not offered calls before this instant.
    pub paused_until: Option<Instant>,
}

/// What the agent's phone is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    /// No call on the phone.
    Idle,
    /// Ringing for `call`; rings out at `until`.
    Ringing { call: CallId, until: Instant },
    /// Connected to `call`; the caller had waited `waited` in the queue.
    Talking { call: CallId, waited: Duration },
}

/// The idle-order key: smaller means idle for longer (ties broken by the order things happened).
pub(crate) type IdleKey = (Instant, u64);

/// The order of ready agents: those idle longest first, then those never idle yet.
pub(crate) type ReadyKey = (bool, Option<IdleKey>);

/// One configured agent.
#[derive(Debug)]
pub(crate) struct Agent {
    pub(crate) id: AgentId,
    /// Indices of the queues served.
    pub(crate) queues: Vec<usize>,
    pub(crate) online: bool,
    pub(crate) ready_requested: bool,
    pub(crate) reason: Option<String>,
    pub(crate) activity: Activity,
    /// Set whenever the agent becomes free; `None` until it first does.
    pub(crate) idle: Option<IdleKey>,
    pub(crate) missed_rings: u32,
    pub(crate) paused_until: Option<Instant>,
}

impl Agent {
    pub(crate) fn new(id: AgentId, queues: Vec<usize>) -> Self {
        Agent {
            id,
            queues,
            online: false,
            ready_requested: false,
            reason: None,
            activity: Activity::Idle,
            idle: None,
            missed_rings: 0,
            paused_until: None,
        }
    }

    /// The state derived from registration, the desk's wish and the phone's activity.
    pub(crate) fn state(&self) -> AgentState {
        match self.activity {
            Activity::Ringing { .. } => AgentState::Ringing,
            Activity::Talking { .. } => AgentState::Talking,
            Activity::Idle if !self.online => AgentState::Offline,
            Activity::Idle if self.ready_requested => AgentState::Ready,
            Activity::Idle => AgentState::NotReady,
        }
    }

    /// Whether the ACD may offer this agent a call at `now`.
    pub(crate) fn is_available(&self, now: Instant) -> bool {
        self.state() == AgentState::Ready && self.paused_until.is_none_or(|until| now >= until)
    }

    /// The call on the agent's phone, ringing or connected.
    pub(crate) fn current_call(&self) -> Option<CallId> {
        match self.activity {
            Activity::Idle => None,
            Activity::Ringing { call, .. } | Activity::Talking { call, .. } => Some(call),
        }
    }

    /// Ends an offer that was not answered: the phone is free, the miss counted, idle order reset.
    pub(crate) fn miss(&mut self, idle: IdleKey) {
        self.activity = Activity::Idle;
        self.missed_rings = self.missed_rings.saturating_add(1);
        self.idle = Some(idle);
    }

    pub(crate) fn view(&self) -> AgentView {
        let state = self.state();
        AgentView {
            id: self.id.clone(),
            state,
            current_call: self.current_call(),
            missed_rings: self.missed_rings,
            ready_since: match state {
                AgentState::Ready => self.idle.map(|(since, _)| since),
                _ => None,
            },
            ready_requested: self.ready_requested,
            not_ready_reason: self.reason.clone(),
            paused_until: self.paused_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_the_phone_to_be_free() {
        let t0 = Instant::now();
        let mut a = Agent::new("1001".into(), vec![0]);
        assert_eq!(a.state(), AgentState::Offline);
        a.online = true;
        a.ready_requested = true;
        a.idle = Some((t0, 0));
        assert!(a.is_available(t0));
        a.activity = Activity::Talking {
            call: 7,
            waited: Duration::ZERO,
        };
        a.ready_requested = false;
        assert_eq!(a.state(), AgentState::Talking);
        a.activity = Activity::Idle;
        assert_eq!(a.state(), AgentState::NotReady);
        assert!(!a.is_available(t0));
    }

    #[test]
    fn paused_agent_is_ready_but_not_available_until_the_pause_ends() {
        let t0 = Instant::now();
        let mut a = Agent::new("1001".into(), vec![0]);
        a.online = true;
        a.ready_requested = true;
        a.paused_until = Some(t0 + Duration::from_secs(3));
        assert_eq!(a.state(), AgentState::Ready);
        assert!(!a.is_available(t0 + Duration::from_millis(2_999)));
        assert!(a.is_available(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn state_names_are_snake_case() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, StrDeserializer};
        let names = [
            ("offline", AgentState::Offline),
            ("not_ready", AgentState::NotReady),
            ("ready", AgentState::Ready),
            ("ringing", AgentState::Ringing),
            ("talking", AgentState::Talking),
        ];
        for (name, state) in names {
            let de: StrDeserializer<'_, Error> = name.into_deserializer();
            assert_eq!(AgentState::deserialize(de).ok(), Some(state), "{name}");
        }
    }
}
