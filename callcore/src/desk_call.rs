//! Third-party call control from the desk: an agent on a SIP phone holds, takes back or
//! hangs up the caller from the desk page, and we do it in the middle (we anchor the
//! media, so neither phone is asked for anything).
//!
//! Hold: the caller hears the queue's hold music, the agent's phone hears nothing and what
//! it sends goes nowhere, the recording marks the agent's side as held, the agent's state
//! is `on_hold`. The phone's own hold (a re-INVITE `sendonly`) and the desk's are one hold
//! to the caller: it ends when neither holds. Hang-up: both phones get a BYE; the call
//! ends as the agent's hang-up (after-call work follows).

use std::time::Instant;

use tracing::{info, warn};

use crate::CallId;
use crate::call::{Phase, Side};
use crate::control::Core;
use crate::desk::{AgentView, ControlError};
use crate::io::{Leg, MediaCommand, Output};
use crate::patient::media_codec;

impl Core {
    /// The desk holds (`held`) or takes back the caller `agent` is talking to. Holding a
    /// held call (or taking back one not held) changes nothing. Refused while the agent
    /// consults (the caller is on hold for that already) or is on no call.
    pub fn hold_from_desk(
        &mut self,
        now: Instant,
        agent: &str,
        held: bool,
    ) -> Result<AgentView, ControlError> {
        let id = self.desk_call(agent, "hold")?;
        if self.calls.get(&id).is_some_and(|c| c.consult.is_some()) {
            return Err(ControlError::Rejected(
                "the agent is consulting: the caller is on hold already".into(),
            ));
        }
        self.set_desk_hold(now, id, held);
        self.desk_change(now, agent, Ok(()))
    }

    /// The desk hangs up the call `agent` is talking to: both phones get a BYE.
    pub fn hang_up_from_desk(
        &mut self,
        now: Instant,
        agent: &str,
    ) -> Result<AgentView, ControlError> {
        let id = self.desk_call(agent, "hang up")?;
        if let Some(c) = self.calls.get(&id) {
            c.span.in_scope(|| info!(%agent, "hung up from the desk"));
        }
        // The agent's phone is hung up here; the call then ends as the agent's hang-up.
        if let Some((peer, bye)) = self.take_agent_bye(id) {
            self.fire(now, peer, bye);
        }
        self.hang_up(now, id, Side::Agent, "agent_hangup_desk");
        self.desk_change(now, agent, Ok(()))
    }

    /// The call `agent` is connected to, or why the desk cannot `what` it.
    fn desk_call(&self, agent: &str, what: &str) -> Result<CallId, ControlError> {
        self.acd
            .agent(agent)
            .ok()
            .and_then(|a| a.current_call)
            .filter(|id| {
                self.calls.get(id).is_some_and(|c| {
                    c.phase == Phase::Connected && c.agent.as_deref() == Some(agent)
                })
            })
            .ok_or_else(|| {
                ControlError::Rejected(format!("nothing to {what}: the agent is not on a call"))
            })
    }

    /// Puts the desk's hold of call `id` on or off: the media, the hold music and the
    /// agent's state follow, unless the agent's phone holds the call too.
    pub(crate) fn set_desk_hold(&mut self, now: Instant, id: CallId, held: bool) {
        let prompt = self.hold_prompt(id);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.desk_held == held {
            return;
        }
        c.desk_held = held;
        c.span.in_scope(|| info!(held, "hold from the desk"));
        let Some(media) = c.agent_media else {
            return;
        };
        let phone_holds = !media.direction.sends();
        self.emit(Output::Media {
            call: id,
            command: MediaCommand::Update {
                leg: Leg::Agent,
                remote: media.remote,
                codec: media_codec(media.codec),
                telephone_event: media.telephone_event,
                send: !held && !phone_holds,
                receive: media.direction.receives(),
            },
        });
        // While the phone holds, the caller is on hold already and stays so.
        if !phone_holds {
            let command = match (held, prompt) {
                (true, Some(prompt)) => MediaCommand::Hold { prompt },
                _ => MediaCommand::Silence,
            };
            self.emit(Output::Media { call: id, command });
        }
        // The agent's state says whether the caller is held, whoever holds.
        if let Err(e) = self.acd.hold(now, id, held || phone_holds) {
            warn!(error = %e, "the queue did not take the hold");
        }
    }
}
