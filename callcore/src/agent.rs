//! Offers: the screen-pop, the INVITE to the agent's phone, ring-out and answer.
//!
//! Order matters to the agent: the `offer` desk event is queued to the agent's
//! desks first ([`Output::ScreenPop`]), and only when the shell says they have
//! it is the phone's INVITE sent, so the caller's record is on screen no later
//! than the phone rings.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip::dialog::Dialog;
use sip::message::{Method, RequestBuilder, Response, cancel_for};
use sip::sdp;
use sip::transaction::TransactionKey;
use tracing::{debug, info, warn};

use crate::CallId;
use crate::call::{CallRecording, DeferredOffer, Offer, PatientLookup, Phase, millis};
use crate::control::{BindFor, ClientTx, Core};
use crate::desk::DeskEvent;
use crate::io::{LegSpec, MediaCommand, Metric, Output, PortToken};
use crate::patient::media_codec;

/// RTP payload type we offer for telephone-event.
pub(crate) const TELEPHONE_EVENT_PT: u8 = 101;

/// Why a 2xx to one of our INVITEs cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerProblem {
    /// No dialog can be made of it (logged; nothing sent).
    NoDialog,
    /// Its SDP answer is unusable (the leg was ACKed and hung up).
    BadSdp,
}

impl Core {
    /// The ACD picked `agent` for `call`: screen-pop first.
    pub(crate) fn offer(
        &mut self,
        now: Instant,
        call: CallId,
        agent: String,
        queue: String,
        waited: Duration,
        ring_timeout: Duration,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            self.acd.abandon(now, call);
            return;
        };
        let (patient, history) = match &mut c.patient {
            PatientLookup::Pending(deferred) => {
                // The pop carries the record: wait for the lookup (it started at the INVITE).
                deferred.push(DeferredOffer {
                    agent,
                    queue,
                    waited,
                    ring_timeout,
                });
                return;
            }
            PatientLookup::Done(found) => (found.0.clone(), found.1.clone()),
        };
        let seq = self.next_offer;
        self.next_offer += 1;
        c.span
            .in_scope(|| info!(%agent, waited_ms = millis(waited), "offering to agent"));
        c.agents_offered.push(agent.clone());
        c.ringing.push(Offer {
            agent: agent.clone(),
            seq,
            forks: Vec::new(),
            rtp: None,
            dialog: None,
            sdp: None,
            pop_started: now,
        });
        let event = DeskEvent::Offer {
            call_id: c.call_id.clone(),
            caller: c.caller.clone(),
            patient,
            ivr_path: c.ivr_path.clone(),
            queue,
            waited_ms: millis(waited),
            ring_timeout_ms: millis(ring_timeout),
            callback: c.phase == Phase::Callback,
            voicemail: c
                .callback
                .as_ref()
                .filter(|_| c.phase == Phase::Callback)
                .and_then(|cb| cb.voicemail.clone()),
            consult_from: None,
            tendency: crate::records::tendency(&history),
            history,
        };
        self.emit(Output::ScreenPop {
            agent,
            call,
            seq,
            event,
        });
    }

    /// The desk has the screen-pop: bind the agent leg's port.
    pub(crate) fn screen_pop_delivered(&mut self, now: Instant, call: CallId, seq: u64) {
        if self.consult_pop_delivered(now, call, seq) {
            return;
        }
        let Some(offer) = self.calls.get_mut(&call).and_then(|c| c.live_offer(seq)) else {
            return;
        };
        let agent = offer.agent.clone();
        let latency = now.saturating_duration_since(offer.pop_started);
        self.emit(Output::Metric(Metric::ScreenPop(latency)));
        if self.registrar.lookup(&agent, now).is_none() {
            info!(%agent, "agent not registered; next agent");
            self.agent_unreachable(now, call, &agent, seq);
            return;
        }
        if self.bind_port(BindFor::Agent { call, seq }, 0).is_err() {
            warn!("no RTP port for the agent leg");
            self.agent_unreachable(now, call, &agent, seq);
        }
    }

    /// The agent leg's port is bound: ring the agent's phone.
    pub(crate) fn ring_agent(
        &mut self,
        now: Instant,
        call: CallId,
        seq: u64,
        token: PortToken,
        local_rtp: SocketAddr,
    ) {
        let Some(agent) = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.live_offer(seq))
            .map(|o| o.agent.clone())
        else {
            // The offer ended while the port was being bound.
            self.release_socket(token);
            return;
        };
        let Some((body, forks)) = self.invites_to(now, call, &agent, local_rtp) else {
            self.release_socket(token);
            self.agent_unreachable(now, call, &agent, seq);
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.span
            .in_scope(|| debug!(%agent, phones = forks.len(), "ringing agent phone"));
        let Some(offer) = c.live_offer(seq) else {
            self.release_socket(token);
            return;
        };
        offer.sdp = Some(body);
        offer.rtp = Some(token);
        let forks = self.send_forks(now, call, forks, |fork| ClientTx::AgentInvite {
            call,
            agent: agent.clone(),
            seq,
            fork,
        });
        if let Some(offer) = self.calls.get_mut(&call).and_then(|c| c.live_offer(seq)) {
            offer.forks = forks;
        }
    }

    /// Sends an offer's INVITEs (one per phone), each a client transaction `tx(fork)`
    /// answers come back to; returns them as the offer's forks.
    pub(crate) fn send_forks(
        &mut self,
        now: Instant,
        call: CallId,
        invites: Vec<(sip::transport::Peer, sip::Request)>,
        tx: impl Fn(usize) -> ClientTx,
    ) -> Vec<crate::call::Fork> {
        let mut forks = Vec::with_capacity(invites.len());
        for (fork, (peer, invite)) in invites.into_iter().enumerate() {
            if let Ok(sip_call_id) = invite.call_id() {
                self.by_sip_call_id.insert(sip_call_id, call);
            }
            forks.push(crate::call::Fork {
                invite: invite.clone(),
                peer,
                over: false,
            });
            let key = self.transactions.send_request(now, peer, invite);
            self.client_tx.insert(key, tx(fork));
        }
        forks
    }

    /// The INVITEs that ring every phone `agent` registered for `call` (the first to
    /// answer wins), with our SDP offer of `local_rtp`; `None` if no phone is registered.
    pub(crate) fn invites_to(
        &mut self,
        now: Instant,
        call: CallId,
        agent: &str,
        local_rtp: SocketAddr,
    ) -> Option<(String, Vec<(sip::transport::Peer, sip::Request)>)> {
        let phones: Vec<_> = self
            .registrar
            .contacts(agent, now)
            .into_iter()
            .filter_map(|b| Some((b.clone(), self.local_for(b.target.transport)?)))
            .collect();
        if phones.is_empty() {
            return None;
        }
        // The agent's phone is asked for the caller's packet size, if the caller
        // named one (then neither side needs to repacketise); else it packs its own.
        let ptime = self
            .calls
            .get(&call)
            .and_then(|c| c.line.as_ref())
            .and_then(|l| l.media.ptime);
        let body = sdp::offer(
            &self.config.codecs,
            TELEPHONE_EVENT_PT,
            local_rtp,
            self.ids.next_u64() >> 1,
            ptime,
        );
        let advertise = self.config.advertise;
        let caller = self.calls.get(&call)?.caller.clone();
        let mut forks = Vec::with_capacity(phones.len());
        for (binding, local) in phones {
            let mut invite = RequestBuilder::new(Method::Invite, &binding.contact)
                .via(local.transport, local.sent_by, &self.ids.branch())
                .from(&format!(
                    "\"{caller}\" <sip:{caller}@{advertise}>;tag={}",
                    self.ids.tag()
                ))
                .to(&format!("<sip:{agent}@{advertise}>"))
                .call_id(&self.ids.call_id())
                .cseq(1)
                .contact(&local.contact)
                .max_forwards(70)
                .header("Subject", "Switchboard queue call");
            // Registered through proxies: the INVITE follows their Path (RFC 3327 §5.2),
            // and so do its CANCEL and ACK, which copy its Route headers.
            for proxy in &binding.path {
                invite = invite.header("Route", proxy);
            }
            let invite = invite
                .body("application/sdp", body.clone().into_bytes())
                .build();
            forks.push((binding.target, invite));
        }
        Some((body, forks))
    }

    /// The ACD's ring timer ran out (`missed`), or under ring-all another agent answered
    /// first: cancel the agent's INVITE; count the miss, or tell the desk the call was taken.
    pub(crate) fn ring_out(&mut self, now: Instant, call: CallId, agent: &str, missed: bool) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.span.in_scope(|| {
            if missed {
                info!(%agent, "agent did not answer in time; moving on");
            } else {
                debug!(%agent, "another agent answered; this phone stops ringing");
            }
        });
        let call_id = c.call_id.clone();
        if let PatientLookup::Pending(deferred) = &mut c.patient {
            deferred.retain(|d| d.agent != agent);
        }
        let mut ringing = Vec::new();
        let mut port = None;
        if let Some(i) = c.ringing.iter().position(|o| o.agent == agent) {
            let mut offer = c.ringing.remove(i);
            port = offer.rtp.take();
            ringing = offer.end_forks();
        }
        if let Some(token) = port {
            self.release_socket(token);
        }
        self.cancel_forks(now, ringing);
        let event = if missed {
            self.emit(Output::Metric(Metric::AgentMissedRing));
            DeskEvent::Missed { call_id }
        } else {
            DeskEvent::Ended {
                call_id,
                reason: "answered_elsewhere".to_owned(),
            }
        };
        self.emit(Output::Desk {
            agent: agent.to_owned(),
            event,
        });
    }

    /// The agent's phone could not be reached or refused: the ACD tries the next agent.
    ///
    /// Only offer `seq` of the call is declined: an answer or timeout of an
    /// earlier offer (the same agent may be offered the call again after a
    /// ring-out) changes nothing. Returns whether the offer was still live.
    pub(crate) fn agent_unreachable(
        &mut self,
        now: Instant,
        call: CallId,
        agent: &str,
        seq: u64,
    ) -> bool {
        let Some(mut offer) = self.calls.get_mut(&call).and_then(|c| c.take_offer(seq)) else {
            return false;
        };
        let port = offer.rtp.take();
        if let Some(token) = port {
            self.release_socket(token);
        }
        if let Err(e) = self.acd.declined(now, call, agent) {
            debug!(error = %e, "decline not applied");
        }
        true
    }

    /// CANCELs INVITEs still ringing; a 200 that crosses a CANCEL is ACKed and hung up.
    pub(crate) fn cancel_forks(
        &mut self,
        now: Instant,
        ringing: Vec<(sip::transport::Peer, sip::Request)>,
    ) {
        for (peer, invite) in ringing {
            let cancel = cancel_for(&invite);
            self.remember_stale(now, invite, peer);
            self.fire(now, peer, cancel);
        }
    }

    /// One of an offer's INVITEs is out of the race (`status`: refused with it; `None`:
    /// no answer). When it was the last one ringing, the ACD tries the next agent; a
    /// 6xx (the agent declined everywhere, RFC 3261 §16.7) cancels the others too.
    pub(crate) fn fork_over(
        &mut self,
        now: Instant,
        call: CallId,
        agent: &str,
        seq: u64,
        fork: usize,
        status: Option<u16>,
    ) {
        let Some(offer) = self.calls.get_mut(&call).and_then(|c| c.live_offer(seq)) else {
            return;
        };
        if let Some(f) = offer.forks.get_mut(fork) {
            f.over = true;
        }
        if offer.dialog.is_some() {
            // Another of the agent's phones answered: this one was cancelled, nothing more.
            return;
        }
        let declined = status.is_some_and(|s| s >= 600);
        let others = if declined {
            offer.end_forks()
        } else {
            Vec::new()
        };
        let ringing = offer.forks.iter().filter(|f| !f.over).count();
        self.cancel_forks(now, others);
        if ringing > 0 {
            debug!(%agent, ?status, ringing, "one of the agent's phones is out; the others ring on");
            return;
        }
        if self.agent_unreachable(now, call, agent, seq) {
            match status {
                Some(status) => info!(%agent, status, "agent phone refused the call"),
                None => info!(%agent, "agent phone did not answer"),
            }
        }
    }

    /// A response on the INVITE to one of an agent's phones.
    pub(crate) fn handle_agent_response(
        &mut self,
        now: Instant,
        (call, agent, seq, fork): (CallId, &str, u64, usize),
        key: &TransactionKey,
        response: Response,
    ) {
        let status = response.status();
        if status < 200 {
            return;
        }
        if status >= 300 {
            self.client_tx.remove(key);
            // The INVITE is over (487 after our CANCEL, or a refusal): no late 200 can follow.
            if let Ok(cid) = response.call_id() {
                self.stale_invites.remove(&cid);
            }
            self.fork_over(now, call, agent, seq, fork, Some(status));
            return;
        }
        // 2xx: the first answer wins the offer.
        let answer = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.live_offer(seq))
            .and_then(|o| o.answer_on(fork));
        let Some((invite, peer, local)) = self.new_answer(now, answer, &response) else {
            return;
        };
        let (dialog, negotiated) =
            match self.take_answer(now, &invite, &response, peer, &local, "agent phone") {
                Ok(answer) => answer,
                Err(AnswerProblem::NoDialog) => return,
                Err(AnswerProblem::BadSdp) => {
                    self.fork_over(now, call, agent, seq, fork, Some(488));
                    return;
                }
            };
        let ssrc = self.ids.next_u32();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(offer) = c.live_offer(seq) else {
            return;
        };
        offer.dialog = Some(dialog.clone());
        // This phone won: the agent's other phones stop ringing.
        let others = offer.end_others(&invite);
        let winner = invite.call_id().ok();
        let our_sdp = offer.sdp.clone();
        let Some(token) = offer.rtp.take() else {
            return;
        };
        c.agent_sdp = our_sdp;
        c.agent_media = Some(negotiated);
        c.bridge_pending = Some(LegSpec {
            token,
            remote: negotiated.remote,
            codec: media_codec(negotiated.codec),
            telephone_event: negotiated.telephone_event,
            ssrc,
        });
        c.agent_sip_call_id = winner;
        c.agent_dialog = Some(dialog);
        c.agent = Some(agent.to_owned());
        self.cancel_forks(now, others);
        match self.acd.answered(now, call, agent) {
            Ok(()) => {
                if let Some(n) = crate::refresh::negotiated_as_uac(&response) {
                    self.start_session_timer(now, call, crate::io::Leg::Agent, &n);
                }
            }
            Err(e) => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.take_offer(seq);
                }
                self.answer_refused(now, call, &local, &e);
            }
        }
    }

    /// A 2xx on one of an offer's INVITEs, as [`crate::call::Offer::answer_on`] tells it:
    /// too late (the CANCEL crossed the 200), it is ACKed and hung up; the winner's
    /// retransmission is ACKed again. A new answer: its INVITE, peer and our endpoint.
    pub(crate) fn new_answer(
        &mut self,
        now: Instant,
        answer: Option<(sip::Request, sip::transport::Peer, Option<Dialog>)>,
        response: &Response,
    ) -> Option<(
        sip::Request,
        sip::transport::Peer,
        sip::dialog::LocalEndpoint,
    )> {
        let Some((invite, peer, existing)) = answer else {
            self.ack_and_bye_stale(now, response);
            return None;
        };
        let local = self.local_for(peer.transport)?;
        if let Some(dialog) = existing {
            let ack = dialog.ack(1, &local, self.ids.branch());
            self.send_stateless(peer, ack);
            return None;
        }
        Some((invite, peer, local))
    }

    /// A 2xx to an INVITE of ours (to an agent's phone, or a callback's dial): ACKed, its
    /// dialog and the media its SDP answer settles. An answer with SDP we cannot use is
    /// hung up at once.
    pub(crate) fn take_answer(
        &mut self,
        now: Instant,
        invite: &sip::Request,
        response: &Response,
        peer: sip::transport::Peer,
        local: &sip::dialog::LocalEndpoint,
        who: &str,
    ) -> Result<(Dialog, sdp::Negotiated), AnswerProblem> {
        let mut dialog = Dialog::uac(invite, response, peer).map_err(|e| {
            warn!(error = %e, "bad 200 from the {who}");
            AnswerProblem::NoDialog
        })?;
        let ack = dialog.ack(1, local, self.ids.branch());
        self.send_stateless(peer, ack);
        let negotiated = sdp::parse(response.body())
            .and_then(|answer| sdp::accept_answer(&answer, &self.config.codecs));
        match negotiated {
            Ok(n) => Ok((dialog, n)),
            Err(e) => {
                warn!(error = %e, "the {who} answered with unusable SDP; hanging up that leg");
                let bye = dialog.request(Method::Bye, local, self.ids.branch());
                self.fire(now, peer, bye);
                Err(AnswerProblem::BadSdp)
            }
        }
    }

    /// The ACD would not take the agent's answer: hang up that leg, free its port.
    fn answer_refused(
        &mut self,
        now: Instant,
        call: CallId,
        local: &sip::dialog::LocalEndpoint,
        e: &acd::Error,
    ) {
        // The queue moved on (the offer ended as the phone answered): that
        // leg is not this call's; hang it up and free what it holds.
        warn!(error = %e, "answer not accepted by the queue; hanging up the agent leg");
        let branch = self.ids.branch();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.agent = None;
        c.agent_sip_call_id = None;
        let leg = c.bridge_pending.take();
        let bye = c
            .agent_dialog
            .take()
            .map(|mut d| (d.peer, d.request(Method::Bye, local, branch)));
        if let Some(leg) = leg {
            self.release_socket(leg.token);
        }
        if let Some((peer, bye)) = bye {
            self.fire(now, peer, bye);
        }
    }

    /// The ACD connected the call: bridge media, start recording, tell the desk (for a
    /// callback, the patient is dialled first).
    pub(crate) fn connected(&mut self, now: Instant, call: CallId, agent: &str, waited: Duration) {
        if self
            .calls
            .get(&call)
            .is_some_and(|c| c.phase == Phase::Callback)
        {
            self.callback_answered(now, call, agent);
            return;
        }
        self.bridge(now, call, agent, waited);
    }

    /// The agent's leg joins the patient's: bridge media, start recording, tell the desk.
    pub(crate) fn bridge(&mut self, now: Instant, call: CallId, agent: &str, waited: Duration) {
        let answered_at = self.wall(now);
        let recording = self.config.recording.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(leg) = c.bridge_pending.take() else {
            return;
        };
        let _entered = c.span.clone().entered();
        c.phase = Phase::Connected;
        // The answered offer is done; any other still ringing was withdrawn already.
        let leftover: Vec<PortToken> = c.ringing.drain(..).filter_map(|o| o.rtp).collect();
        // A transferred caller's record keeps the wait before the first answer.
        c.wait_ms.get_or_insert(millis(waited));
        // A transferred caller was answered when the first agent answered.
        let first_answer = c.answered_at.is_none();
        c.answered_at.get_or_insert(answered_at);
        c.agent_port = Some(leg.token);
        info!(%agent, waited_ms = c.wait_ms, "agent answered; bridged");
        let call_id = c.call_id.clone();
        // After a transfer the recording started at the first answer goes on.
        let continued = c.recording.is_some();
        let open = recording.filter(|_| !continued).map(|r| {
            let id = format!("r-{call_id}");
            let path = r.path_for(&id, answered_at);
            c.recording = Some(CallRecording {
                id,
                path: path.clone(),
                started_at: answered_at,
            });
            (path, r.header_interval_ms)
        });
        let queue = c.queue.clone();
        drop(_entered);
        for token in leftover {
            self.release_socket(token);
        }
        self.emit(Output::Media {
            call,
            command: MediaCommand::Bridge {
                agent: leg,
                recording: open.is_some() || continued,
                at: now,
            },
        });
        if let Some((path, header_interval_ms)) = open {
            self.emit(Output::OpenRecording {
                call,
                path,
                header_interval_ms,
            });
        }
        self.emit(Output::Desk {
            agent: agent.to_owned(),
            event: DeskEvent::Answered { call_id },
        });
        if first_answer {
            self.emit(Output::Metric(Metric::CallAnswered));
        }
        // The patient got through: nothing left to call back.
        self.close_callbacks_of(now, call);
        if let Some(queue) = queue {
            self.update_queue_gauge(&queue);
        }
        self.save_call_record(call);
    }

    /// The recording's file exists (its row is written) or could not be created.
    pub(crate) fn recording_opened(&mut self, call: CallId, result: Result<(), String>) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        match result {
            Ok(()) => self.save_recording_row(call, crate::records::RecordingDone::default()),
            Err(e) => {
                c.span.in_scope(
                    || warn!(error = %e, "recording could not start; the call goes on unrecorded"),
                );
                c.recording = None;
                self.save_call_record(call);
            }
        }
    }

    /// A 200 for an INVITE we already gave up on (an offer, a callback's dial).
    pub(crate) fn ack_and_bye_stale(&mut self, now: Instant, response: &Response) {
        let Some((invite, peer)) = response
            .call_id()
            .ok()
            .and_then(|cid| self.stale_invites.remove(&cid))
        else {
            return;
        };
        let Some(local) = self.local_for(peer.transport) else {
            return;
        };
        let Ok(mut dialog) = Dialog::uac(&invite, response, peer) else {
            return;
        };
        let ack = dialog.ack(1, &local, self.ids.branch());
        self.send_stateless(peer, ack);
        let bye = dialog.request(Method::Bye, &local, self.ids.branch());
        self.fire(now, peer, bye);
    }
}
