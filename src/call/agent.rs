//! Offers: the screen-pop, the INVITE to the agent's phone, ring-out and answer.
//!
//! Order matters to the agent: the `offer` desk event is written to the
//! agent's desk sockets first, and only then is the phone's INVITE sent, so
//! the caller's record is on screen no later than the phone rings.

use std::time::{Duration, Instant};

use media::leg::LegMedia;
use recordings::writer::{RecordingWriter, frames_in_ms};
use sip::dialog::Dialog;
use sip::message::{Method, RequestBuilder, Response, cancel_for};
use sip::sdp;
use sip::transaction::TransactionKey;
use tracing::{debug, info, warn};

use super::CallId;
use super::control::{ClientTx, Controller, DeferredOffer, Internal, Offer, PatientLookup, Phase};
use super::media::{AgentLeg, MediaCommand};
use super::patient::{media_codec, sdp_codecs};
use crate::events::DeskEvent;

/// RTP payload type we offer for telephone-event.
const TELEPHONE_EVENT_PT: u8 = 101;

impl Controller {
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
        let patient = match &mut c.patient {
            PatientLookup::Pending(deferred) => {
                // The pop carries the record: wait for the lookup (it started at the INVITE).
                *deferred = Some(DeferredOffer {
                    agent,
                    queue,
                    waited,
                    ring_timeout,
                });
                return;
            }
            PatientLookup::Done(patient) => patient.clone(),
        };
        let _entered = c.span.clone().entered();
        let seq = self.next_offer;
        self.next_offer += 1;
        info!(%agent, waited_ms = waited.as_millis() as u64, "offering to agent");
        c.agents_offered.push(agent.clone());
        c.offer = Some(Offer {
            agent: agent.clone(),
            seq,
            invite: None,
            peer: None,
            rtp: None,
            dialog: None,
            cancelled: false,
            pop_started: now,
        });
        let event = DeskEvent::Offer {
            call_id: c.call_id.clone(),
            caller: c.caller.clone(),
            patient,
            ivr_path: c.ivr_path.clone(),
            queue,
            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            ring_timeout_ms: u64::try_from(ring_timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let hub = self.hub.clone();
        let internal = self.internal.clone();
        // Queued to the desk sockets now, before anything else is published.
        let delivered = hub.deliver(&agent, event);
        tokio::spawn(async move {
            let desks = delivered.await;
            let _ = internal.send(Internal::ScreenPopDelivered { call, seq, desks });
        });
    }

    /// The desk has the screen-pop: ring the agent's phone.
    pub(crate) async fn screen_pop_delivered(
        &mut self,
        now: Instant,
        call: CallId,
        seq: u64,
        desks: usize,
    ) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Some(offer) = c.offer.as_ref() else {
            return;
        };
        if offer.seq != seq || offer.cancelled {
            return;
        }
        let agent = offer.agent.clone();
        let span = c.span.clone();
        let _ = desks;
        self.metrics
            .observe_screen_pop(now.saturating_duration_since(offer.pop_started));
        let Some(binding) = self.registrar.lookup(&agent, now).cloned() else {
            info!(%agent, "agent not registered; next agent");
            self.agent_unreachable(now, call, &agent, seq);
            return;
        };
        let Some(local) = self.local_for(binding.peer.transport) else {
            return;
        };
        let (socket, lease) = match self.ports.bind().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "no RTP port for the agent leg");
                self.agent_unreachable(now, call, &agent, seq);
                return;
            }
        };
        let Ok(local_rtp) = socket.local_addr() else {
            return;
        };
        let body = sdp::offer(
            &sdp_codecs(&self.config.sip.codecs),
            TELEPHONE_EVENT_PT,
            local_rtp,
            self.ids.next_u64() >> 1,
        );
        let advertise = self.config.sip.advertise;
        let sip_call_id = self.ids.call_id();
        let caller = c.caller.clone();
        let invite = RequestBuilder::new(Method::Invite, &binding.contact)
            .via(local.transport, local.sent_by, &self.ids.branch())
            .from(&format!(
                "\"{caller}\" <sip:{caller}@{advertise}>;tag={}",
                self.ids.tag()
            ))
            .to(&format!("<sip:{agent}@{advertise}>"))
            .call_id(&sip_call_id)
            .cseq(1)
            .contact(&local.contact)
            .max_forwards(70)
            .header("Subject", "Switchboard queue call")
            .body("application/sdp", body.into_bytes())
            .build();
        span.in_scope(|| debug!(%agent, "ringing agent phone"));
        let key = self
            .transactions
            .send_request(now, binding.peer, invite.clone());
        self.client_tx.insert(
            key,
            ClientTx::AgentInvite {
                call,
                agent: agent.clone(),
                seq,
            },
        );
        self.by_sip_call_id.insert(sip_call_id, call);
        if let Some(offer) = self.calls.get_mut(&call).and_then(|c| c.offer.as_mut()) {
            offer.invite = Some(invite);
            offer.peer = Some(binding.peer);
            offer.rtp = Some((socket, lease));
        }
    }

    /// The ACD's ring timer ran out: cancel the agent's INVITE and count the miss.
    pub(crate) fn ring_out(&mut self, now: Instant, call: CallId, agent: &str) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let _entered = c.span.clone().entered();
        info!(%agent, "agent did not answer in time; moving on");
        let call_id = c.call_id.clone();
        if let PatientLookup::Pending(deferred) = &mut c.patient
            && deferred.as_ref().is_some_and(|d| d.agent == agent)
        {
            *deferred = None;
        }
        if let Some(offer) = c.offer.as_mut().filter(|o| o.agent == agent) {
            offer.cancelled = true;
            if let (Some(invite), Some(peer)) = (offer.invite.as_ref(), offer.peer) {
                if let Ok(cid) = invite.call_id() {
                    self.stale_invites.insert(cid, (invite.clone(), peer));
                }
                let cancel = cancel_for(invite);
                let key = self.transactions.send_request(now, peer, cancel);
                self.client_tx.insert(key, ClientTx::Fire);
            }
        }
        self.metrics.agent_missed_ring();
        self.hub.publish(agent, DeskEvent::Missed { call_id });
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
        let Some(offer) = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.offer.as_mut())
            .filter(|o| o.seq == seq && !o.cancelled)
        else {
            return false;
        };
        offer.cancelled = true;
        if let Err(e) = self.acd.declined(now, call, agent) {
            debug!(error = %e, "decline not applied");
        }
        true
    }

    /// A response on the INVITE to an agent's phone.
    pub(crate) async fn handle_agent_response(
        &mut self,
        now: Instant,
        call: CallId,
        agent: &str,
        seq: u64,
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
            if self.agent_unreachable(now, call, agent, seq) {
                info!(%agent, status, "agent phone refused the call");
            }
            return;
        }
        // 2xx: first or retransmitted.
        let live = self
            .calls
            .get(&call)
            .and_then(|c| c.offer.as_ref())
            .filter(|o| o.seq == seq && !o.cancelled)
            .and_then(|o| Some((o.invite.clone()?, o.peer?, o.dialog.clone())));
        let Some((invite, peer, existing)) = live else {
            // Answered after we moved on (the CANCEL crossed the 200): ACK and hang up.
            self.ack_and_bye_stale(now, &response).await;
            return;
        };
        let Some(local) = self.local_for(peer.transport) else {
            return;
        };
        if let Some(dialog) = existing {
            // A retransmitted 200: send the ACK again.
            let ack = dialog.ack(1, &local, self.ids.branch());
            self.send_stateless(peer, ack);
            return;
        }
        let mut dialog = match Dialog::uac(&invite, &response, peer) {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "bad 200 from agent phone");
                return;
            }
        };
        let ack = dialog.ack(1, &local, self.ids.branch());
        self.send_stateless(peer, ack);
        let negotiated = sdp::parse(response.body())
            .and_then(|answer| sdp::accept_answer(&answer, &sdp_codecs(&self.config.sip.codecs)));
        let negotiated = match negotiated {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "agent phone answered with unusable SDP; hanging up that leg");
                let bye = dialog.request(Method::Bye, &local, self.ids.branch());
                let key = self.transactions.send_request(now, peer, bye);
                self.client_tx.insert(key, ClientTx::Fire);
                self.agent_unreachable(now, call, agent, seq);
                return;
            }
        };
        let ssrc = self.ids.next_u32();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(offer) = c.offer.as_mut() else {
            return;
        };
        offer.dialog = Some(dialog.clone());
        let Some((socket, lease)) = offer.rtp.take() else {
            return;
        };
        let agent_leg = AgentLeg {
            socket,
            lease,
            remote: negotiated.remote,
            media: LegMedia::new(
                media_codec(negotiated.codec),
                negotiated.telephone_event,
                ssrc,
                0,
                0,
            ),
        };
        c.agent_sip_call_id = invite.call_id().ok();
        c.agent_dialog = Some(dialog);
        c.agent = Some(agent.to_owned());
        self.pending_bridge.insert(call, agent_leg);
        if let Err(e) = self.acd.answered(now, call, agent) {
            // The queue moved on (the offer ended as the phone answered): that
            // leg is not this call's; hang it up and free what it holds.
            warn!(error = %e, "answer not accepted by the queue; hanging up the agent leg");
            self.pending_bridge.remove(&call);
            if let Some(c) = self.calls.get_mut(&call) {
                c.agent = None;
                c.agent_sip_call_id = None;
                if let Some(mut dialog) = c.agent_dialog.take() {
                    let bye = dialog.request(Method::Bye, &local, self.ids.branch());
                    let key = self.transactions.send_request(now, peer, bye);
                    self.client_tx.insert(key, ClientTx::Fire);
                }
            }
        }
    }

    /// The ACD connected the call: bridge media, start recording, tell the desk.
    pub(crate) async fn connected(
        &mut self,
        _now: Instant,
        call: CallId,
        agent: &str,
        waited: Duration,
    ) {
        let Some(agent_leg) = self.pending_bridge.remove(&call) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let _entered = c.span.clone().entered();
        c.phase = Phase::Connected;
        c.offer = None;
        c.wait_ms = Some(u64::try_from(waited.as_millis()).unwrap_or(u64::MAX));
        let answered_at = chrono::Utc::now();
        c.answered_at = Some(answered_at);
        info!(%agent, waited_ms = c.wait_ms, "agent answered; bridged");
        let recording = if self.config.recording.enabled {
            let id = format!("r-{}", c.call_id);
            let dir = self
                .config
                .storage
                .recordings
                .join(answered_at.format("%Y-%m-%d").to_string());
            let path = dir.join(format!("{id}.wav"));
            let interval = frames_in_ms(self.config.recording.header_interval_ms);
            let created = std::fs::create_dir_all(&dir)
                .map_err(|e| e.to_string())
                .and_then(|()| RecordingWriter::create(&path, interval).map_err(|e| e.to_string()));
            match created {
                Ok(writer) => {
                    c.recording_id = Some(id.clone());
                    c.recording_started_at = Some(answered_at);
                    self.recording_paths.insert(call, path);
                    Some(writer)
                }
                Err(e) => {
                    warn!(error = %e, "recording could not start; the call goes on unrecorded");
                    None
                }
            }
        } else {
            None
        };
        let _ = c.media.send(MediaCommand::Bridge {
            agent: agent_leg,
            recording,
        });
        self.hub.publish(
            agent,
            DeskEvent::Answered {
                call_id: c.call_id.clone(),
            },
        );
        self.metrics.call_answered();
        let queue = c.queue.clone();
        drop(_entered);
        if let Some(queue) = queue {
            self.update_queue_gauge(&queue);
        }
        self.save_call_record(call);
        self.save_recording_row(call, 0);
    }

    /// A 200 from an agent phone for an offer we already gave up on.
    async fn ack_and_bye_stale(&mut self, now: Instant, response: &Response) {
        let Some((invite, peer)) = self.find_stale_invite(response) else {
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
        let key = self.transactions.send_request(now, peer, bye);
        self.client_tx.insert(key, ClientTx::Fire);
    }
}
