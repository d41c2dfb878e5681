//! Blind transfer from the desk: the agent hands the caller on to a queue.
//!
//! The agent's leg is hung up (BYE) and its media dropped, the agent's part of
//! the call ends in the ACD (after-call work follows, as after any call), and
//! the caller joins the target queue with its hold music, announcements and
//! rules, as a caller coming from the IVR does. The patient's leg, its media
//! task and the recording go on: the next agent's answer joins the same
//! recording, with the gap between the two agents marked as held.

use std::time::Instant;

use sip::message::Method;
use tracing::info;

use crate::call::Phase;
use crate::control::{Core, Due};
use crate::desk::{AgentView, ControlError, DeskEvent};
use crate::io::{Leg, MediaCommand, Output};

impl Core {
    /// Transfers the call `agent` is talking on to `queue` (blind: nobody is
    /// asked first). Refused, changing nothing, when the agent is on no call or
    /// the queue does not exist.
    pub fn transfer_to_queue(
        &mut self,
        now: Instant,
        agent: &str,
        queue: &str,
    ) -> Result<AgentView, ControlError> {
        if !self.acd.queue_configs().any(|q| q.name == queue) {
            return Err(ControlError::Rejected(format!("no queue named `{queue}`")));
        }
        let id = self
            .calls
            .iter()
            .find(|(_, c)| c.phase == Phase::Connected && c.agent.as_deref() == Some(agent))
            .map(|(id, _)| *id)
            .ok_or_else(|| {
                ControlError::Rejected("no call to transfer: the agent is not on a call".into())
            })?;
        let Some(c) = self.calls.get(&id) else {
            return Err(ControlError::Unavailable);
        };
        let local = self.leg_local(c, Leg::Agent);
        let branch = self.ids.branch();
        let Some(c) = self.calls.get_mut(&id) else {
            return Err(ControlError::Unavailable);
        };
        let _entered = c.span.clone().entered();
        info!(%agent, %queue, "blind transfer to a queue");
        // The agent's leg goes: a late request from its phone no longer finds the call.
        let bye =
            c.agent_dialog.take().zip(local).map(|(mut dialog, local)| {
                (dialog.peer, dialog.request(Method::Bye, &local, branch))
            });
        c.agent_sip_call_id = None;
        c.agent_sdp = None;
        c.agent_media = None;
        c.agent_timer = None;
        let port = c.agent_port.take();
        let call_id = c.call_id.clone();
        drop(_entered);
        self.deadlines.set(Due::Session(id, Leg::Agent), None);
        self.emit(Output::Media {
            call: id,
            command: MediaCommand::Unbridge { at: now },
        });
        // The media task closes the agent's socket as it drops the leg.
        if let Some(token) = port {
            self.socket_closed(token);
        }
        if let Some((peer, bye)) = bye {
            self.fire(now, peer, bye);
        }
        if let Err(e) = self.acd.call_ended(now, agent, acd::EndedBy::Transferred) {
            tracing::warn!(error = %e, "queue did not take the transfer");
        }
        self.emit(Output::Desk {
            agent: agent.to_owned(),
            event: DeskEvent::Ended {
                call_id,
                reason: "transferred".to_owned(),
            },
        });
        self.route_to_queue(now, id, queue.to_owned());
        let view = self
            .acd
            .agent(agent)
            .map(|a| self.agent_view(now, a))
            .map_err(|_| ControlError::UnknownAgent);
        self.drain(now);
        view
    }
}
