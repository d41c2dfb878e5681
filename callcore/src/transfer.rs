//! Blind transfer: the agent hands the caller on to a queue or to a free agent,
//! from the desk or from the phone (REFER, RFC 3515, `Refer-To: <sip:QUEUE@…>` or
//! `<sip:AGENT@…>`).
//!
//! The agent's leg is hung up (BYE) and its media dropped, the agent's part of
//! the call ends in the ACD (after-call work follows, as after any call), and
//! the caller joins the target queue with its hold music, announcements and
//! rules, as a caller coming from the IVR does. Handed to an agent, the caller
//! rings that agent at once (refused first if the agent is not free) and, if not
//! answered there, waits in the call's queue like any caller. The patient's leg, its media
//! task and the recording go on: the next agent's answer joins the same
//! recording, with the gap between the two agents marked as held.

use std::time::Instant;

use sip::message::{Method, Request, response_to};
use sip::transaction::TransactionKey;
use tracing::info;

use crate::CallId;
use crate::call::{Phase, Side};
use crate::control::{ClientTx, Core, Due};
use crate::desk::{AgentView, ControlError, DeskEvent};
use crate::io::{Leg, MediaCommand, Output};
use crate::patient::Joining;

impl Core {
    /// Takes call `id`'s agent dialog and builds the BYE that hangs the agent's phone up (sent
    /// by the caller with [`Core::fire`]); `None` without an agent dialog.
    pub(crate) fn take_agent_bye(
        &mut self,
        id: CallId,
    ) -> Option<(sip::transport::Peer, sip::message::Request)> {
        let local = self
            .calls
            .get(&id)
            .and_then(|c| self.leg_local(c, Leg::Agent));
        let branch = self.ids.branch();
        let c = self.calls.get_mut(&id)?;
        let (mut dialog, local) = c.agent_dialog.take().zip(local)?;
        Some((dialog.peer, dialog.request(Method::Bye, &local, branch)))
    }
}

/// Where a blind transfer hands the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// To wait in this queue.
    Queue(String),
    /// To this agent, who must be free (ready) now.
    Agent(String),
}

impl Core {
    /// Transfers the call `agent` is talking on to `to` (blind: nobody is asked
    /// first). Refused, changing nothing, when the agent is on no call, the queue
    /// or agent does not exist, or the agent is not free.
    pub fn transfer(
        &mut self,
        now: Instant,
        agent: &str,
        to: &TransferTarget,
    ) -> Result<AgentView, ControlError> {
        let (id, queue, to_agent) = self.transfer_possible(now, agent, to)?;
        // The agent's leg goes: a late request from its phone no longer finds the call.
        let bye = self.take_agent_bye(id);
        let Some(c) = self.calls.get_mut(&id) else {
            return Err(ControlError::Unavailable);
        };
        let _entered = c.span.clone().entered();
        info!(%agent, ?to, "blind transfer");
        c.agent_sip_call_id = None;
        c.agent_sdp = None;
        c.agent_media = None;
        // Whoever answers next takes the caller off hold (the media resets with the leg).
        c.desk_held = false;
        c.agent_timer = None;
        let port = c.agent_port.take();
        let call_id = c.call_id.clone();
        drop(_entered);
        self.deadlines.set(Due::Session(id, Leg::Agent), None);
        // A session refresh still on its way to the old phone decides nothing any more.
        self.client_tx.retain(
            |_, tx| !matches!(tx, ClientTx::Refresh { call, leg: Leg::Agent } if *call == id),
        );
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
        self.emit(Output::Desk {
            agent: agent.to_owned(),
            event: DeskEvent::Ended {
                call_id,
                reason: "transferred".to_owned(),
            },
        });
        let how = Joining::Transfer {
            from: agent,
            to_agent: to_agent.as_deref(),
        };
        self.route_to_queue(now, id, queue, how);
        self.desk_change(now, agent, Ok(()))
    }

    /// The call `agent` is on, the queue its caller would wait in and the agent it
    /// would ring first; or why `agent` cannot hand its caller to `to`.
    fn transfer_possible(
        &self,
        now: Instant,
        agent: &str,
        to: &TransferTarget,
    ) -> Result<(CallId, String, Option<String>), ControlError> {
        // The ACD knows the call the agent is on; call control, that it is still bridged.
        let (id, c) = self
            .acd
            .agent(agent)
            .ok()
            .and_then(|a| a.current_call)
            .and_then(|id| self.calls.get(&id).map(|c| (id, c)))
            .filter(|(_, c)| c.phase == Phase::Connected && c.agent.as_deref() == Some(agent))
            .ok_or_else(|| {
                ControlError::Rejected("no call to transfer: the agent is not on a call".into())
            })?;
        if c.consult.is_some() {
            return Err(ControlError::Rejected(
                "the agent is consulting: complete or cancel that first".into(),
            ));
        }
        let (queue, to_agent) = match to {
            TransferTarget::Queue(queue) => (queue.clone(), None),
            TransferTarget::Agent(to) => {
                let queue = c
                    .queue
                    .clone()
                    .or_else(|| self.config.fallback_queue.clone())
                    .unwrap_or_default();
                (queue, Some(to.clone()))
            }
        };
        let checked = self
            .acd
            .check_transfer(now, agent, &queue, to_agent.as_deref());
        let refused = |why: String| Err(ControlError::Rejected(why));
        match checked {
            Ok(()) => Ok((id, queue, to_agent)),
            Err(acd::Error::UnknownQueue(q)) => refused(format!("no queue named `{q}`")),
            Err(acd::Error::UnknownAgent(a)) => refused(format!("no agent `{a}`")),
            Err(acd::Error::AgentNotFree(a, state)) if Some(&a) == to_agent.as_ref() => {
                if a == agent {
                    refused("a call cannot be transferred to the agent on it".into())
                } else {
                    refused(format!("agent {a} is not free to take the call ({state})"))
                }
            }
            Err(acd::Error::QueueRefuses(q, why)) => refused(format!(
                "queue `{q}` would turn the caller away now ({})",
                match why {
                    acd::ExitReason::Full => "full",
                    _ => "nobody there to answer",
                }
            )),
            Err(e) => refused(e.to_string()),
        }
    }

    /// The final NOTIFY of a REFER on dialog `sip_call_id` of call `id` (the agent's leg, or
    /// the consultation its phone placed): the implicit subscription ends at once, the
    /// transfer being done on our side.
    fn notify_refer_done(&mut self, now: Instant, id: CallId, sip_call_id: &str) {
        let branch = self.ids.branch();
        let Some(peer) = self
            .calls
            .get_mut(&id)
            .and_then(|c| refer_dialog(c, sip_call_id))
            .map(|d| d.peer)
        else {
            return;
        };
        let Some(local) = self.local_for(peer.transport) else {
            return;
        };
        let Some(dialog) = self
            .calls
            .get_mut(&id)
            .and_then(|c| refer_dialog(c, sip_call_id))
        else {
            return;
        };
        let notify = dialog
            .request(Method::Other("NOTIFY".into()), &local, branch)
            .with_header("Event", "refer")
            .with_header("Subscription-State", "terminated;reason=noresource")
            .with_body(
                "message/sipfrag;version=2.0",
                b"SIP/2.0 200 OK\r\n".to_vec(),
            );
        self.fire(now, peer, notify);
    }

    /// REFER on the agent's leg: a blind transfer to the queue or agent the `Refer-To` names.
    /// Accepted with 202 and a final NOTIFY (`SIP/2.0 200 OK`), then done as from the
    /// desk. Refused with 403 from the patient's leg or outside a connected call, 404
    /// for a target that is no queue or agent, 480 for an agent who is not free. With
    /// `Replaces` (attended, RFC 3891): on either of the consulting phone's calls naming the
    /// other, the caller goes to the colleague it consulted (see [`crate::consult`]); 501 when
    /// it names no such pair.
    pub(crate) fn handle_refer(&mut self, now: Instant, key: TransactionKey, request: Request) {
        let refuse = |core: &mut Self, code: u16, reason: &str| {
            info!(code, %reason, "REFER refused");
            let r = response_to(&request, code, reason, None);
            core.transactions.send_response(now, &key, r);
        };
        let found = request
            .call_id()
            .ok()
            .and_then(|cid| self.by_sip_call_id.get(&cid).copied().map(|id| (id, cid)));
        let Some((id, sip_call_id)) = found else {
            return refuse(self, 481, "Call/Transaction Does Not Exist");
        };
        if let Some(replaces) = request.refer_replaces() {
            // Attended: the consulting phone joins its two calls (the caller's and the
            // consultation it placed through us), on either one naming the other.
            let Some(id) = self.replaces_target(&sip_call_id, &replaces) else {
                return refuse(self, 501, "Attended transfer names no consultation here");
            };
            self.transactions.send_response(
                now,
                &key,
                response_to(&request, 202, "Accepted", None),
            );
            self.notify_refer_done(now, id, &sip_call_id);
            self.hand_over(now, id, true);
            return;
        }
        let Some(c) = self.calls.get(&id) else {
            return refuse(self, 481, "Call/Transaction Does Not Exist");
        };
        let agent = match (c.side_of(&sip_call_id), c.phase, c.agent.clone()) {
            (Some(Side::Agent), Phase::Connected, Some(agent)) => agent,
            _ => return refuse(self, 403, "Only the agent of a connected call transfers"),
        };
        let target = match request.refer_to() {
            None => return refuse(self, 400, "Missing or bad Refer-To"),
            Some((_, true)) => return refuse(self, 501, "Attended transfer is not supported"),
            Some((user, false)) => user,
        };
        let to = if self.acd.queue_configs().any(|q| q.name == target) {
            TransferTarget::Queue(target)
        } else if self.acd.is_free(&target).is_ok() {
            TransferTarget::Agent(target)
        } else {
            return refuse(self, 404, "No queue or agent by that name");
        };
        if self.transfer_possible(now, &agent, &to).is_err() {
            return refuse(self, 480, "Temporarily Unavailable");
        }
        self.transactions
            .send_response(now, &key, response_to(&request, 202, "Accepted", None));
        self.notify_refer_done(now, id, &sip_call_id);
        if let Err(e) = self.transfer(now, &agent, &to) {
            tracing::warn!(error = %e, "transfer from the phone failed");
        }
    }
}

/// The dialog of call `c` a REFER came on: the agent's leg, or the consultation the
/// agent's phone placed.
fn refer_dialog<'a>(
    c: &'a mut crate::call::Call,
    sip_call_id: &str,
) -> Option<&'a mut sip::dialog::Dialog> {
    if c.agent_sip_call_id.as_deref() == Some(sip_call_id) {
        return c.agent_dialog.as_mut();
    }
    c.consult
        .as_mut()
        .and_then(|k| k.phone.as_mut())
        .filter(|p| p.sip_call_id == sip_call_id)
        .and_then(|p| p.dialog.as_mut())
}
