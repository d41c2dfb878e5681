//! Attended transfer: the agent consults another agent before handing the caller over.
//!
//! From the desk (`consult`, then `consult_complete` or `consult_cancel`): the consulted
//! agent's desk gets the caller's pop (saying who asks) and its phones ring; the caller
//! keeps talking with the agent meanwhile. When the consulted agent answers, the two agents
//! talk and the caller hears the queue's hold music (the recording marks the agent's side
//! as held). Completing hands the caller to the consulted agent (the first agent's phone is
//! hung up, after-call work follows; the recording goes on with the new agent); cancelling,
//! a refusal, a ring-out or the consulted agent hanging up brings the caller back to the
//! first agent. The first agent hanging up completes the transfer once the consulted agent
//! answered (before, it becomes a blind transfer to that agent), so the caller is never
//! dropped. The agent's phone starts the same consultation by dialling the colleague
//! through us, and completes it with REFER/Replaces (`consult_phone`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip::message::{Method, Response};
use sip::transaction::TransactionKey;
use tracing::{debug, info, warn};

use crate::CallId;
use crate::agent::AnswerProblem;
use crate::call::{Offer, PatientLookup, Phase, millis};
use crate::control::{BindFor, ClientTx, Core, Due};
use crate::desk::{AgentView, ControlError, DeskEvent};
use crate::io::{Leg, LegSpec, MediaCommand, Output, PortToken};
use crate::patient::media_codec;
use crate::transfer::TransferTarget;

/// A consultation in progress on a call.
#[derive(Debug)]
pub(crate) struct Consult {
    /// The agent who asked (talking with the caller).
    pub from: String,
    /// Its INVITEs to the consulted agent's phones (`offer.agent` is that agent).
    pub offer: Offer,
    /// The consulted agent's leg once it answered: its SIP Call-ID, port and media.
    pub sip_call_id: Option<String>,
    pub port: Option<PortToken>,
    pub media: Option<sip::sdp::Negotiated>,
    /// The consulted leg, answered but not yet joined in the media (the consulting phone's
    /// own leg is still being set up).
    pub consulted_leg: Option<LegSpec>,
    /// The consulting agent's phone placed the consultation as a call of its own.
    pub phone: Option<crate::consult_phone::PhoneSide>,
}

impl Consult {
    /// The consulted agent answered.
    fn answered(&self) -> bool {
        self.port.is_some()
    }

    /// The agents talk (the consulted leg is in the media).
    fn joined(&self) -> bool {
        self.port.is_some() && self.consulted_leg.is_none()
    }
}

/// Why a consultation ended without a transfer (the desk's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsultEnd {
    Cancelled,
    Declined,
    NoAnswer,
    HungUp,
}

impl ConsultEnd {
    fn as_str(self) -> &'static str {
        match self {
            ConsultEnd::Cancelled => "cancelled",
            ConsultEnd::Declined => "declined",
            ConsultEnd::NoAnswer => "no_answer",
            ConsultEnd::HungUp => "hung_up",
        }
    }
}

impl Core {
    /// `agent` consults `to` about the call it is talking in: that agent, or whoever that
    /// queue gives (its strategy among its ready agents). Refused, changing nothing, when
    /// `agent` is on no call or consults already, or the agent is unknown, not registered or
    /// on a call, or nobody in the queue is free.
    pub fn consult(
        &mut self,
        now: Instant,
        agent: &str,
        to: &TransferTarget,
    ) -> Result<AgentView, ControlError> {
        let id = self.connected_call_of(agent)?;
        if self.calls.get(&id).is_some_and(|c| c.consult.is_some()) {
            return Err(ControlError::Rejected(
                "the agent is consulting already: complete or cancel that first".into(),
            ));
        }
        let ring_timeout = self.ring_timeout_of(id);
        let to = match to {
            TransferTarget::Agent(to) => {
                if !self.config.agents.contains_key(to) {
                    return Err(ControlError::Rejected(format!("no agent `{to}`")));
                }
                if self.registrar.lookup(to, now).is_none() {
                    return Err(ControlError::Rejected(format!(
                        "agent {to} has no phone registered"
                    )));
                }
                self.acd.consult(now, agent, to).map(|_| to.clone())
            }
            TransferTarget::Queue(queue) => {
                self.acd.consult_queue(now, agent, queue).map(|(_, to)| to)
            }
        };
        let to = match to {
            Ok(to) => to,
            Err(e) => {
                let why = match e {
                    acd::Error::AgentNotFree(a, state) if a == agent => {
                        format!("an agent cannot consult itself ({state})")
                    }
                    acd::Error::AgentNotFree(a, state) => {
                        format!("agent {a} is not free to be consulted ({state})")
                    }
                    acd::Error::UnknownQueue(q) => format!("no queue named `{q}`"),
                    acd::Error::QueueRefuses(q, _) => {
                        format!("nobody in queue `{q}` is free to be consulted")
                    }
                    e => e.to_string(),
                };
                self.drain(now);
                return Err(ControlError::Rejected(why));
            }
        };
        let to = to.as_str();
        // A hold from the desk gives way: the caller is with the agent while the colleague
        // rings, and on hold again (for the consultation) once the two talk.
        self.set_desk_hold(now, id, false);
        let seq = self.next_offer;
        self.next_offer += 1;
        let hold = self.hold_prompt(id);
        let Some(c) = self.calls.get_mut(&id) else {
            return Err(ControlError::Unavailable);
        };
        c.span
            .in_scope(|| info!(%agent, %to, "consulting another agent"));
        c.consult = Some(Box::new(Consult {
            from: agent.to_owned(),
            offer: Offer {
                agent: to.to_owned(),
                seq,
                forks: Vec::new(),
                rtp: None,
                dialog: None,
                sdp: None,
                pop_started: now,
            },
            sip_call_id: None,
            port: None,
            media: None,
            consulted_leg: None,
            phone: None,
        }));
        let (patient, history) = match &c.patient {
            PatientLookup::Done(found) => (found.0.clone(), found.1.clone()),
            PatientLookup::Pending(_) => (None, Vec::new()),
        };
        let call_id = c.call_id.clone();
        let event = DeskEvent::Offer {
            call_id: call_id.clone(),
            caller: c.caller.clone(),
            patient,
            ivr_path: c.ivr_path.clone(),
            queue: c.queue.clone().unwrap_or_default(),
            waited_ms: c.wait_ms.unwrap_or(0),
            ring_timeout_ms: millis(ring_timeout),
            callback: false,
            voicemail: None,
            consult_from: Some(agent.to_owned()),
            tendency: crate::records::tendency(&history),
            history,
        };
        // What the caller hears once the agents talk (the media plays it only then).
        if let Some(prompt) = hold {
            self.emit(Output::Media {
                call: id,
                command: MediaCommand::Hold { prompt },
            });
        }
        self.deadlines
            .set(Due::Consult(id), now.checked_add(ring_timeout));
        self.emit(Output::ScreenPop {
            agent: to.to_owned(),
            call: id,
            seq,
            event,
        });
        self.tell_consult(agent, &call_id, to, "ringing", None);
        self.desk_change(now, agent, Ok(()))
    }

    /// `agent` hands its caller to the agent it consulted, who has answered.
    pub fn consult_complete(
        &mut self,
        now: Instant,
        agent: &str,
    ) -> Result<AgentView, ControlError> {
        let id = self.connected_call_of(agent)?;
        let answered = self
            .calls
            .get(&id)
            .and_then(|c| c.consult.as_ref())
            .map(|k| k.joined());
        match answered {
            None => Err(ControlError::Rejected("the agent consults nobody".into())),
            Some(false) => Err(ControlError::Rejected(
                "the consulted agent has not answered yet: wait, or cancel".into(),
            )),
            Some(true) => {
                self.hand_over(now, id, true);
                self.desk_change(now, agent, Ok(()))
            }
        }
    }

    /// `agent` ends its consultation: the consulted agent's phone is hung up (or stops
    /// ringing) and the caller is back with `agent`.
    pub fn consult_cancel(&mut self, now: Instant, agent: &str) -> Result<AgentView, ControlError> {
        let id = self.connected_call_of(agent)?;
        if self.calls.get(&id).is_none_or(|c| c.consult.is_none()) {
            return Err(ControlError::Rejected("the agent consults nobody".into()));
        }
        self.end_consult(now, id, ConsultEnd::Cancelled, true);
        self.desk_change(now, agent, Ok(()))
    }

    /// The connected call `agent` talks in, or why there is none.
    pub(crate) fn connected_call_of(&self, agent: &str) -> Result<CallId, ControlError> {
        self.acd
            .agent(agent)
            .map_err(|_| ControlError::UnknownAgent)?
            .current_call
            .filter(|id| {
                self.calls.get(id).is_some_and(|c| {
                    c.phase == Phase::Connected && c.agent.as_deref() == Some(agent)
                })
            })
            .ok_or_else(|| ControlError::Rejected("the agent is not on a call".into()))
    }

    /// How long the consulted agent's phone may ring: the call's queue's rings.
    fn ring_timeout_of(&self, id: CallId) -> Duration {
        let queue = self.calls.get(&id).and_then(|c| c.queue.clone());
        self.acd
            .queue_configs()
            .find(|q| Some(&q.name) == queue.as_ref())
            .or_else(|| self.acd.queue_configs().next())
            .map_or(Duration::from_secs(15), |q| q.ring_timeout)
    }

    /// Tells the consulting agent's desk how its consultation stands.
    fn tell_consult(
        &mut self,
        from: &str,
        call_id: &str,
        to: &str,
        state: &str,
        reason: Option<&str>,
    ) {
        self.emit(Output::Desk {
            agent: from.to_owned(),
            event: DeskEvent::Consult {
                call_id: call_id.to_owned(),
                agent: to.to_owned(),
                state: state.to_owned(),
                reason: reason.map(str::to_owned),
            },
        });
    }

    /// The consulted agent's desk has the pop: bind its leg's port.
    pub(crate) fn consult_pop_delivered(&mut self, now: Instant, id: CallId, seq: u64) -> bool {
        let live = self
            .calls
            .get(&id)
            .and_then(|c| c.consult.as_ref())
            .is_some_and(|k| k.offer.seq == seq && !k.answered());
        if !live {
            return false;
        }
        if self.bind_port(BindFor::Consult { call: id }, 0).is_err() {
            warn!("no RTP port for the consulted agent's leg");
            self.end_consult(now, id, ConsultEnd::Declined, true);
        }
        true
    }

    /// The consulted agent's port is bound: ring its phones.
    pub(crate) fn ring_consulted(
        &mut self,
        now: Instant,
        id: CallId,
        token: PortToken,
        local: SocketAddr,
    ) {
        let Some(to) = self
            .calls
            .get(&id)
            .and_then(|c| c.consult.as_ref())
            .filter(|k| k.offer.rtp.is_none() && k.offer.forks.is_empty())
            .map(|k| k.offer.agent.clone())
        else {
            self.release_socket(token);
            return;
        };
        let Some((body, forks)) = self.invites_to(now, id, &to, local) else {
            self.release_socket(token);
            self.end_consult(now, id, ConsultEnd::Declined, true);
            return;
        };
        let Some(k) = self.calls.get_mut(&id).and_then(|c| c.consult.as_mut()) else {
            self.release_socket(token);
            return;
        };
        k.offer.sdp = Some(body);
        k.offer.rtp = Some(token);
        let forks = self.send_forks(now, id, forks, |fork| ClientTx::ConsultInvite {
            call: id,
            fork,
        });
        if let Some(k) = self.calls.get_mut(&id).and_then(|c| c.consult.as_mut()) {
            k.offer.forks = forks;
        }
    }

    /// A response on an INVITE to one of the consulted agent's phones (`None`: it timed out).
    pub(crate) fn handle_consult_response(
        &mut self,
        now: Instant,
        (id, fork): (CallId, usize),
        key: &TransactionKey,
        response: Option<Response>,
    ) {
        let status = response.as_ref().map_or(408, Response::status);
        if status < 200 {
            return;
        }
        let Some(response) = response.filter(|_| (200..300).contains(&status)) else {
            self.client_tx.remove(key);
            self.consult_fork_over(now, id, fork);
            return;
        };
        let answer = self
            .calls
            .get(&id)
            .and_then(|c| c.consult.as_ref())
            .and_then(|k| k.offer.answer_on(fork));
        let Some((invite, peer, local)) = self.new_answer(now, answer, &response) else {
            return;
        };
        let (dialog, negotiated) =
            match self.take_answer(now, &invite, &response, peer, &local, "consulted agent") {
                Ok(answer) => answer,
                Err(AnswerProblem::NoDialog) => return,
                Err(AnswerProblem::BadSdp) => {
                    self.consult_fork_over(now, id, fork);
                    return;
                }
            };
        let ssrc = self.ids.next_u32();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let call_id = c.call_id.clone();
        let Some(k) = c.consult.as_mut() else {
            return;
        };
        let others = k.offer.end_others(&invite);
        let winner = invite.call_id().ok();
        let Some(token) = k.offer.rtp.take() else {
            return;
        };
        k.offer.dialog = Some(dialog);
        k.sip_call_id = winner;
        k.port = Some(token);
        k.media = Some(negotiated);
        let (from, to) = (k.from.clone(), k.offer.agent.clone());
        c.span
            .in_scope(|| info!(%to, "consulted agent answered; the agents talk"));
        self.cancel_forks(now, others);
        self.deadlines.set(Due::Consult(id), None);
        if let Err(e) = self.acd.consult_answered(now, &to) {
            debug!(error = %e, "the queue did not take the consultation's answer");
        }
        if let Some(k) = self.calls.get_mut(&id).and_then(|c| c.consult.as_mut()) {
            k.consulted_leg = Some(LegSpec {
                token,
                remote: negotiated.remote,
                codec: media_codec(negotiated.codec),
                telephone_event: negotiated.telephone_event,
                ssrc,
            });
        }
        self.start_consult_media(now, id);
        self.emit(Output::Desk {
            agent: to.clone(),
            event: DeskEvent::Answered {
                call_id: call_id.clone(),
            },
        });
        self.tell_consult(&from, &call_id, &to, "answered", None);
    }

    /// One of the consulted agent's phones is out of the race; with none left, the
    /// consultation ends (declined).
    fn consult_fork_over(&mut self, now: Instant, id: CallId, fork: usize) {
        let Some(k) = self.calls.get_mut(&id).and_then(|c| c.consult.as_mut()) else {
            return;
        };
        if let Some(f) = k.offer.forks.get_mut(fork) {
            f.over = true;
        }
        if k.answered() || k.offer.forks.iter().any(|f| !f.over) {
            return;
        }
        self.end_consult(now, id, ConsultEnd::Declined, true);
    }

    /// The consulted agent's phone rang its time.
    pub(crate) fn consult_due(&mut self, now: Instant, id: CallId) {
        let ringing = self
            .calls
            .get(&id)
            .and_then(|c| c.consult.as_ref())
            .is_some_and(|k| !k.answered());
        if ringing {
            self.end_consult(now, id, ConsultEnd::NoAnswer, true);
        }
    }

    /// The consultation of call `id` ends without a transfer (`why`): the consulted
    /// phone is hung up (`tell_phone`: BYE, or CANCEL while it rings), the consulted
    /// agent is free, and the caller is back with the agent who asked.
    pub(crate) fn end_consult(
        &mut self,
        now: Instant,
        id: CallId,
        why: ConsultEnd,
        tell_phone: bool,
    ) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(mut k) = c.consult.take() else {
            return;
        };
        let call_id = c.call_id.clone();
        c.span
            .in_scope(|| info!(to = %k.offer.agent, why = why.as_str(), "consultation ended"));
        self.deadlines.set(Due::Consult(id), None);
        let ringing = k.offer.end_forks();
        if let Some(token) = k.offer.rtp.take() {
            self.release_socket(token);
        }
        match (k.port, k.consulted_leg.take()) {
            // Answered, not joined yet: its socket is still ours.
            (Some(port), Some(_)) => self.release_socket(port),
            (Some(port), None) => {
                // The media task closes the consulted leg's socket as it drops it.
                self.emit(Output::Media {
                    call: id,
                    command: MediaCommand::ConsultEnd {
                        transfer: false,
                        at: now,
                    },
                });
                self.socket_closed(port);
            }
            (None, _) => {}
        }
        if let Some(phone) = k.phone.take() {
            self.end_phone_side(now, phone, why);
        }
        if tell_phone {
            self.cancel_forks(now, ringing);
            self.bye_consulted(now, &mut k);
        }
        if let Some(cid) = &k.sip_call_id {
            self.by_sip_call_id.remove(cid);
        }
        if let Err(e) = self.acd.consult_ended(now, &k.offer.agent) {
            debug!(error = %e, "the queue did not take the consultation's end");
        }
        self.emit(Output::Desk {
            agent: k.offer.agent.clone(),
            event: DeskEvent::Ended {
                call_id: call_id.clone(),
                reason: format!("consult_{}", why.as_str()),
            },
        });
        self.tell_consult(
            &k.from,
            &call_id,
            &k.offer.agent,
            "ended",
            Some(why.as_str()),
        );
    }

    /// Sends BYE on the consulted agent's dialog, if it answered.
    fn bye_consulted(&mut self, now: Instant, k: &mut Consult) {
        let Some(dialog) = k.offer.dialog.as_mut() else {
            return;
        };
        let Some(local) = self.local_for(dialog.peer.transport) else {
            return;
        };
        let bye = dialog.request(Method::Bye, &local, self.ids.branch());
        let peer = dialog.peer;
        self.fire(now, peer, bye);
    }

    /// The consulted agent (answered) takes the caller: its leg becomes the call's agent
    /// leg, the first agent's is hung up (`bye_first`: with a BYE; not when its phone hung
    /// up itself).
    pub(crate) fn hand_over(&mut self, now: Instant, id: CallId, bye_first: bool) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(mut k) = c.consult.take() else {
            return;
        };
        if !k.joined() {
            c.consult = Some(k);
            return;
        }
        let phone = k.phone.take();
        let (Some(dialog), Some(port), Some(media)) = (k.offer.dialog, k.port, k.media) else {
            return;
        };
        let (from, to) = (k.from, k.offer.agent);
        let call_id = c.call_id.clone();
        c.span
            .in_scope(|| info!(%from, %to, "attended transfer completed"));
        let first = c.agent_dialog.replace(dialog);
        let first_port = c.agent_port.replace(port);
        // A late request from the first agent's phone no longer finds the call.
        let first_sip_call_id = std::mem::replace(&mut c.agent_sip_call_id, k.sip_call_id);
        if let Some(cid) = first_sip_call_id {
            self.by_sip_call_id.remove(&cid);
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.agent_sdp = k.offer.sdp;
        c.agent_media = Some(media);
        c.agent_timer = None;
        c.agent = Some(to.clone());
        // Offered the call only now (the ACD logs it so): a consultation that ends is not.
        c.agents_offered.push(to.clone());
        self.deadlines.set(Due::Session(id, Leg::Agent), None);
        self.client_tx.retain(
            |_, tx| !matches!(tx, ClientTx::Refresh { call, leg: Leg::Agent } if *call == id),
        );
        if let Err(e) = self.acd.complete_consult(now, &from, &to) {
            warn!(error = %e, "the queue did not take the attended transfer");
        }
        // The first agent's socket closes as the media task drops its leg.
        self.emit(Output::Media {
            call: id,
            command: MediaCommand::ConsultEnd {
                transfer: true,
                at: now,
            },
        });
        if let Some(token) = first_port {
            self.socket_closed(token);
        }
        // The phone's consultation call is over too (its leg closes with the media's).
        if let Some(phone) = phone {
            self.end_phone_side(now, phone, ConsultEnd::Cancelled);
        }
        if let Some(mut first) = first.filter(|_| bye_first)
            && let Some(local) = self.local_for(first.peer.transport)
        {
            let bye = first.request(Method::Bye, &local, self.ids.branch());
            self.fire(now, first.peer, bye);
        }
        self.emit(Output::Desk {
            agent: from.clone(),
            event: DeskEvent::Ended {
                call_id: call_id.clone(),
                reason: "transferred".to_owned(),
            },
        });
        self.tell_consult(&from, &call_id, &to, "transferred", None);
        self.save_call_record(id);
    }

    /// A BYE on a dialog of a call in consultation, before the usual handling: the
    /// consulted agent hanging up ends the consultation; the consulting agent hanging up
    /// completes the transfer (or, unanswered yet, makes it a blind one). Returns whether
    /// it was handled here.
    pub(crate) fn consult_bye(&mut self, now: Instant, id: CallId, sip_call_id: &str) -> bool {
        if self.phone_consult_bye(now, id, sip_call_id) {
            return true;
        }
        let Some(c) = self.calls.get(&id) else {
            return false;
        };
        let Some(k) = c.consult.as_ref() else {
            return false;
        };
        if k.sip_call_id.as_deref() == Some(sip_call_id) {
            self.end_consult(now, id, ConsultEnd::HungUp, false);
            return true;
        }
        if c.agent_sip_call_id.as_deref() != Some(sip_call_id) {
            return false;
        }
        if k.answered() {
            self.hand_over(now, id, false);
            return true;
        }
        // Not answered yet: the caller goes to that agent as in a blind transfer.
        let (from, to) = (k.from.clone(), k.offer.agent.clone());
        self.end_consult(now, id, ConsultEnd::Cancelled, true);
        if let Some(c) = self.calls.get_mut(&id) {
            // Its phone hung up already: nothing to send it.
            c.agent_dialog = None;
        }
        let target = TransferTarget::Agent(to.clone());
        let fallback = self
            .calls
            .get(&id)
            .and_then(|c| c.queue.clone())
            .or_else(|| self.config.fallback_queue.clone())
            .map(TransferTarget::Queue);
        if self.transfer(now, &from, &target).is_err()
            && let Some(queue) = fallback
            && let Err(e) = self.transfer(now, &from, &queue)
        {
            warn!(error = %e, "the caller could not be handed on after the agent hung up");
            return false;
        }
        true
    }
}
