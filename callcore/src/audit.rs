//! Consistency checks over the core's state, for tests and simulations.
//!
//! Each finding is one sentence naming the call or agent; none means the
//! core's calls, offers and the ACD's agent states agree.

use std::collections::HashMap;

use crate::call::{PatientLookup, Phase};
use crate::control::Core;

impl Core {
    /// What is inconsistent right now (empty: nothing). Meant to be called
    /// between inputs; it walks every call and agent, so not on a hot path.
    #[doc(hidden)]
    pub fn audit(&self) -> Vec<String> {
        let mut found = Vec::new();
        // Agent → the calls it is ringing for or talking in.
        let mut busy: HashMap<&str, Vec<u64>> = HashMap::new();
        for (&id, c) in &self.calls {
            match c.phase {
                Phase::Connected => match c.agent.as_deref() {
                    Some(agent) => busy.entry(agent).or_default().push(id),
                    None => found.push(format!("call {id} is connected without an agent")),
                },
                Phase::Queued if c.queue.is_none() => {
                    found.push(format!("call {id} is queued without a queue"))
                }
                Phase::Callback => {
                    let Some(cb) = c.callback.as_ref() else {
                        found.push(format!(
                            "call {id} waits to be called back but is no callback"
                        ));
                        continue;
                    };
                    // An agent who answered talks while the patient's phone rings.
                    match (c.agent.as_deref(), cb.dial.is_some()) {
                        (Some(agent), true) => busy.entry(agent).or_default().push(id),
                        (None, false) => {}
                        (agent, dialling) => found.push(format!(
                            "callback {id} has agent {agent:?} but dialling is {dialling}"
                        )),
                    }
                }
                _ => {}
            }
            if c.phase != Phase::Ending {
                for o in &c.ringing {
                    busy.entry(o.agent.as_str()).or_default().push(id);
                }
                if let Some(k) = &c.consult {
                    busy.entry(k.offer.agent.as_str()).or_default().push(id);
                }
                if let PatientLookup::Pending(deferred) = &c.patient {
                    for d in deferred {
                        busy.entry(d.agent.as_str()).or_default().push(id);
                    }
                }
            }
        }
        for (agent, calls) in &busy {
            if calls.len() > 1 {
                found.push(format!(
                    "agent {agent} is booked for calls {calls:?} at once"
                ));
            }
        }
        for a in self.acd.agents() {
            let ours = busy.get(a.id.as_str()).and_then(|c| c.first().copied());
            match a.state {
                acd::AgentState::Ringing | acd::AgentState::Talking | acd::AgentState::OnHold => {
                    if a.current_call.is_none() || a.current_call != ours {
                        found.push(format!(
                            "agent {} is {:?} for {:?} but call control has {:?}",
                            a.id, a.state, a.current_call, ours
                        ));
                    }
                }
                _ => {
                    if let Some(call) = ours {
                        found.push(format!(
                            "agent {} is {:?} but booked for call {call}",
                            a.id, a.state
                        ));
                    }
                }
            }
        }
        found
    }
}
