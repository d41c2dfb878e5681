//! The patient's leg: a new call is answered at once, then the IVR runs.
//!
//! The call is answered with 200 OK before the greeting so that the patient
//! hears it from the first moment; the IVR then routes the call into a queue,
//! where hold music plays until an agent answers. Nothing is allocated for a
//! call that overload control refuses: the 503 goes out before a port is taken.

use std::net::SocketAddr;
use std::time::Instant;

use ivr::{IvrOutput, IvrSession};
use sip::dialog::Dialog;
use sip::message::{Request, response_to};
use sip::sdp;
use sip::transaction::TransactionKey;
use sip::transport::Peer;
use tracing::{info, info_span, warn};

use crate::CallId;
use crate::call::{Call, PatientLookup, Phase, Side};
use crate::control::{BindFor, Core, Due};
use crate::io::{LegSpec, MediaCommand, Metric, Output, PortToken};
use crate::pii::mask_phone;

/// A new call's INVITE, accepted so far, waiting for its RTP port.
#[derive(Debug)]
pub(crate) struct PendingInvite {
    key: TransactionKey,
    request: Request,
    peer: Peer,
    sip_call_id: String,
    offer: sdp::MediaDescription,
    /// The session timer the INVITE asked for (RFC 4028).
    timer: Option<crate::refresh::Negotiated>,
}

/// Maps the SDP codec onto the media crate's.
pub fn media_codec(codec: sdp::Codec) -> media::codec::Codec {
    match codec {
        sdp::Codec::Pcmu => media::codec::Codec::Pcmu,
        sdp::Codec::Pcma => media::codec::Codec::Pcma,
    }
}

/// How a call joins a queue.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Joining<'a> {
    /// From the IVR.
    New,
    /// Agent `from` transferred it (to ring `to_agent` first, if given).
    Transfer {
        from: &'a str,
        to_agent: Option<&'a str>,
    },
}

impl Core {
    /// A new INVITE from a patient: refuse it under overload, else bind its port.
    pub(crate) fn handle_new_call(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: Request,
        peer: Peer,
    ) {
        // An agent's phone dialling a colleague while on a call: a consultation, no new call.
        if self.phone_consult(now, &key, &request, peer) {
            return;
        }
        // Refused before anything is allocated for it.
        if let Some(why) = self.overload() {
            self.emit(Output::Metric(Metric::CallRefused(why)));
            if let Some(refused) = self.shed_log.refused(now) {
                warn!(
                    reason = why.as_str(),
                    refused,
                    calls = self.calls.len(),
                    capacity = self.config.capacity,
                    lag_ms = self.lag.as_millis() as u64,
                    queued = self.inbound_depth,
                    "shedding load: new calls get 503"
                );
            }
            self.refuse(now, &key, &request, 503, "Service Unavailable");
            return;
        }
        self.transactions
            .send_response(now, &key, response_to(&request, 100, "Trying", None));
        let Ok(sip_call_id) = request.call_id() else {
            self.refuse(now, &key, &request, 400, "Bad Request");
            return;
        };
        if self.by_sip_call_id.contains_key(&sip_call_id) {
            // A forked or repeated INVITE for a call we already have.
            self.refuse(now, &key, &request, 482, "Loop Detected");
            return;
        }
        let offer = match sdp::parse(request.body()) {
            Ok(offer) if offer.codecs.iter().any(|c| self.config.codecs.contains(c)) => offer,
            Ok(_) => {
                info!("rejecting call: no codec in common");
                self.refuse(now, &key, &request, 488, "Not Acceptable Here");
                return;
            }
            Err(e) => {
                info!(error = %e, "rejecting call: no usable SDP offer");
                self.refuse(now, &key, &request, 488, "Not Acceptable Here");
                return;
            }
        };
        let timer = match crate::refresh::negotiate_as_uas(&request) {
            Ok(timer) => timer,
            Err(()) => {
                let r = crate::refresh::interval_too_small(&request);
                self.transactions.send_response(now, &key, r);
                return;
            }
        };
        let pending = PendingInvite {
            key,
            request,
            peer,
            sip_call_id,
            offer,
            timer,
        };
        if let Err(BindFor::Patient(pending)) =
            self.bind_port(BindFor::Patient(Box::new(pending)), 0)
        {
            self.refuse_unbound(now, *pending);
        }
    }

    /// No RTP port for a new call: 503.
    pub(crate) fn refuse_unbound(&mut self, now: Instant, pending: PendingInvite) {
        warn!("rejecting call: no RTP port");
        self.emit(Output::Metric(Metric::CallRefused(
            crate::io::Refusal::Capacity,
        )));
        self.refuse(
            now,
            &pending.key,
            &pending.request,
            503,
            "Service Unavailable",
        );
    }

    /// A final refusal of an INVITE (503 carries Retry-After).
    fn refuse(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        request: &Request,
        status: u16,
        reason: &str,
    ) {
        let mut response = response_to(request, status, reason, None);
        if status == 503 {
            response = response.with_header("Retry-After", &self.config.retry_after_s.to_string());
        }
        self.transactions.send_response(now, key, response);
    }

    /// The new call's port is bound: answer it, start its media, the IVR and the lookup.
    pub(crate) fn answer_call(
        &mut self,
        now: Instant,
        pending: PendingInvite,
        token: PortToken,
        local_rtp: SocketAddr,
    ) {
        let PendingInvite {
            key,
            request,
            peer,
            sip_call_id,
            offer,
            timer,
        } = pending;
        let session_id = self.ids.next_u64() >> 1;
        let (answer, negotiated) =
            match sdp::answer(&offer, &self.config.codecs, local_rtp, session_id) {
                Ok(a) => a,
                Err(_) => {
                    self.release_socket(token);
                    self.refuse(now, &key, &request, 488, "Not Acceptable Here");
                    return;
                }
            };
        let Some(local) = self.local_for(peer.transport) else {
            self.release_socket(token);
            self.refuse(now, &key, &request, 503, "Service Unavailable");
            return;
        };
        let tag = self.ids.tag();
        let dialog = match Dialog::uas(&request, tag.clone(), peer) {
            Ok(d) => d,
            Err(e) => {
                info!(error = %e, "rejecting call: bad dialog headers");
                self.release_socket(token);
                self.refuse(now, &key, &request, 400, "Bad Request");
                return;
            }
        };
        let ok = response_to(&request, 200, "OK", Some(&tag))
            .with_header("Contact", &format!("<{}>", local.contact))
            .with_header("Allow", crate::refresh::ALLOW)
            .with_header("Supported", "timer")
            .with_body("application/sdp", answer.clone().into_bytes());
        let ok = crate::refresh::with_timer_headers(ok, timer.as_ref());
        self.transactions.send_response(now, &key, ok);

        let id = self.next_call;
        self.next_call += 1;
        let call_id = self.ids.call_id();
        let caller = request
            .from_user()
            .unwrap_or_else(|| "anonymous".to_owned());
        let span = info_span!("call", id = %call_id);
        span.in_scope(|| {
            info!(caller = %mask_phone(&caller), codec = ?negotiated.codec, "call answered by the IVR")
        });
        let patient_leg = LegSpec {
            token,
            remote: negotiated.remote,
            codec: media_codec(negotiated.codec),
            telephone_event: negotiated.telephone_event,
            ssrc: self.ids.next_u32(),
        };
        self.emit(Output::Media {
            call: id,
            command: MediaCommand::Start {
                call_id: call_id.clone(),
                patient: patient_leg,
                media_timeout: self.config.media_timeout,
            },
        });
        // The patient record is read while the greeting plays; an offer made
        // before it arrives waits for it.
        self.emit(Output::LookupPatient {
            call: id,
            phone: caller.clone(),
        });
        let ivr = match IvrSession::new(std::sync::Arc::clone(&self.menus), &self.config.ivr_start)
        {
            Ok(ivr) => Some(ivr),
            Err(e) => {
                warn!(error = %e, "IVR could not start");
                None
            }
        };
        self.emit(Output::Metric(Metric::CallStarted));
        self.by_sip_call_id.insert(sip_call_id.clone(), id);
        self.patient_invites.insert(key.clone(), id);
        let started_at = self.wall(now);
        let line = crate::call::PatientLeg {
            dialog,
            peer,
            sip_call_id,
            invite: Some(key),
            port: token,
            sdp: answer,
            media: negotiated,
            timer: None,
        };
        let mut call = Call::new(call_id, span, caller, started_at, Phase::Ivr);
        call.line = Some(line);
        call.ivr = ivr;
        self.calls.insert(id, call);
        self.save_call_record(id);
        if let Some(n) = timer {
            self.start_session_timer(now, id, crate::io::Leg::Patient, &n);
        }
        match self.calls.get_mut(&id).and_then(|c| c.ivr.as_mut()) {
            Some(ivr) => ivr.start(now),
            None => {
                // Without a working IVR the caller still reaches a person.
                if let Some(queue) = self.config.fallback_queue.clone() {
                    self.route_to_queue(now, id, queue, Joining::New);
                }
            }
        }
        self.drain_ivr(now, id);
    }

    /// The caller's record arrived: an offer waiting for it goes ahead.
    pub(crate) fn patient_loaded(
        &mut self,
        now: Instant,
        call: CallId,
        patient: Option<crate::records::Patient>,
        history: Vec<crate::records::PastCall>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let before = std::mem::replace(
            &mut c.patient,
            PatientLookup::Done(Box::new((patient, history))),
        );
        if let PatientLookup::Pending(deferred) = before {
            for d in deferred {
                self.offer(now, call, d.agent, d.queue, d.waited, d.ring_timeout);
            }
        }
    }

    /// A fresher record of the caller: it replaces the stored one in the call's lookup (the
    /// shell sends it only after the stored one), and each agent ringing for, talking on or
    /// consulted about the call is sent it.
    pub(crate) fn patient_updated(&mut self, call: CallId, patient: crate::records::Patient) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let PatientLookup::Done(found) = &mut c.patient else {
            c.span
                .in_scope(|| warn!("a fresher record came before the stored one; ignored"));
            return;
        };
        found.0 = Some(patient.clone());
        let mut agents: Vec<String> = c.ringing.iter().map(|o| o.agent.clone()).collect();
        if c.phase == Phase::Connected
            && let Some(agent) = &c.agent
        {
            agents.push(agent.clone());
        }
        if let Some(k) = &c.consult {
            agents.push(k.offer.agent.clone());
        }
        let call_id = c.call_id.clone();
        c.span
            .in_scope(|| info!(desks = agents.len(), "the caller's record was refreshed"));
        for agent in agents {
            self.emit(Output::Desk {
                agent,
                event: crate::desk::DeskEvent::Patient {
                    call_id: call_id.clone(),
                    patient: patient.clone(),
                },
            });
        }
    }

    /// A digit from RTP (RFC 4733) or SIP INFO.
    pub(crate) fn digit(&mut self, now: Instant, call: CallId, digit: char) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.span.in_scope(|| tracing::debug!(%digit, "digit"));
        if c.phase == Phase::Queued {
            let callback = c
                .queue
                .as_ref()
                .and_then(|q| self.config.callback_keys.get(q));
            if callback == Some(&digit) {
                // Refused for a caller with no number, or while a phone rings for it.
                let asked = self.acd.request_callback(now, call);
                if let Some(c) = self.calls.get(&call) {
                    c.span.in_scope(
                        || info!(%digit, asked, "the caller pressed the queue's callback key"),
                    );
                }
                return;
            }
            let exit = c.queue.as_ref().and_then(|q| self.config.exit_keys.get(q));
            if exit == Some(&digit) {
                let left = self.acd.leave_by_key(now, call);
                if let Some(c) = self.calls.get(&call) {
                    c.span.in_scope(
                        || info!(%digit, left, "the caller pressed the queue's exit key"),
                    );
                }
            }
            return;
        }
        if c.phase == Phase::Voicemail {
            if digit == '#' && c.voicemail_greeting.is_none() {
                self.voicemail_done(now, call, Side::System, false);
            }
            return;
        }
        if let Some(ivr) = c.ivr.as_mut() {
            ivr.handle_digit(now, digit);
        }
        self.drain_ivr(now, call);
    }

    /// The media finished playing prompt `generation`.
    pub(crate) fn prompt_finished(&mut self, now: Instant, call: CallId, generation: u64) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.prompt_generation != generation {
            return;
        }
        if self.callback_prompt_finished(now, call, generation)
            || self.voicemail_prompt_finished(now, call, generation)
        {
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.announcing.is_some() {
            self.announce_piece_done(call, generation);
            return;
        }
        if let Some(ivr) = c.ivr.as_mut() {
            ivr.handle_prompt_finished(now);
        }
        self.drain_ivr(now, call);
    }

    /// The call's IVR deadline (a digit timeout) passed.
    pub(crate) fn ivr_timeout(&mut self, now: Instant, call: CallId) {
        if let Some(ivr) = self.calls.get_mut(&call).and_then(|c| c.ivr.as_mut()) {
            ivr.handle_timeout(now);
        }
        self.drain_ivr(now, call);
    }

    /// Carries out what the call's IVR session asks for, then re-arms its deadline.
    pub(crate) fn drain_ivr(&mut self, now: Instant, id: CallId) {
        self.drain_ivr_outputs(now, id);
        let next = self
            .calls
            .get(&id)
            .and_then(|c| c.ivr.as_ref())
            .and_then(IvrSession::poll_timeout);
        self.deadlines.set(Due::Ivr(id), next);
    }

    fn drain_ivr_outputs(&mut self, now: Instant, id: CallId) {
        // Bounded: an IVR that keeps asking without an input is a bug.
        for _ in 0..1000 {
            let Some(c) = self.calls.get_mut(&id) else {
                return;
            };
            let Some(ivr) = c.ivr.as_mut() else { return };
            let Some(output) = ivr.poll_output() else {
                return;
            };
            let generation = ivr.prompt_generation();
            match output {
                IvrOutput::Play { prompt } => {
                    if self.config.prompts.contains(&prompt) {
                        c.prompt_generation = generation;
                        self.emit(Output::Media {
                            call: id,
                            command: MediaCommand::Play { prompt, generation },
                        });
                    } else {
                        warn!(%prompt, "prompt missing; skipping it");
                        ivr.handle_prompt_finished_of(now, generation);
                    }
                }
                IvrOutput::StopPrompt => self.emit(Output::Media {
                    call: id,
                    command: MediaCommand::Silence,
                }),
                IvrOutput::Route { queue } => {
                    c.ivr_path = ivr.path().to_vec();
                    c.ivr = None;
                    self.route_to_queue(now, id, queue, Joining::New);
                    return;
                }
                IvrOutput::Hangup => {
                    c.ivr_path = ivr.path().to_vec();
                    c.ivr = None;
                    self.hang_up(now, id, Side::System, "ivr_hangup");
                    return;
                }
            }
        }
    }

    /// Queues the call in `queue` (hold music, announcements, rules), as a new caller or
    /// as one an agent transferred (handed to a free agent first: if that fails it just
    /// waits in the queue).
    pub(crate) fn route_to_queue(&mut self, now: Instant, id: CallId, queue: String, how: Joining) {
        let hold = self.config.hold_prompts.get(&queue).cloned();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let _entered = c.span.clone().entered();
        c.phase = Phase::Queued;
        c.queue = Some(queue.clone());
        c.enqueued_at = Some(now);
        // Announcements in this queue start afresh ("only when improved" included).
        c.announced_position = None;
        let caller = c.caller.clone();
        info!(%queue, path = ?c.ivr_path, "queued");
        if let Some(prompt) = hold.filter(|p| self.config.prompts.contains(p)) {
            self.emit(Output::Media {
                call: id,
                command: MediaCommand::Hold { prompt },
            });
        }
        let queued = match how {
            // A caller with no number to dial back is never made a callback.
            Joining::New if crate::callback::dialable(&caller) => self.acd.enqueue(now, id, &queue),
            Joining::New => self.acd.enqueue_without_callback(now, id, &queue),
            Joining::Transfer { from, to_agent } => {
                self.acd.transfer(now, from, &queue, to_agent).or_else(|e| {
                    // Checked just before, so not expected: end the agent's part and queue.
                    warn!(error = %e, %queue, "the transfer was refused late; queueing the caller");
                    let _ = self.acd.call_ended(now, from, acd::EndedBy::Transferred);
                    self.acd.enqueue(now, id, &queue)
                })
            }
        };
        if let Err(e) = queued {
            warn!(error = %e, %queue, "could not queue the call");
        }
        self.arm_announce(now, id, &queue);
        self.update_queue_gauge(&queue);
        drop(_entered);
        self.save_call_record(id);
    }

    /// SIP INFO: DTMF fallback for phones that don't send RFC 4733.
    pub(crate) fn handle_info(&mut self, now: Instant, key: TransactionKey, request: Request) {
        let found = request
            .call_id()
            .ok()
            .and_then(|cid| self.by_sip_call_id.get(&cid).copied().map(|id| (id, cid)));
        let Some((call, sip_call_id)) = found else {
            let r = response_to(&request, 481, "Call/Transaction Does Not Exist", None);
            self.transactions.send_response(now, &key, r);
            return;
        };
        self.transactions
            .send_response(now, &key, response_to(&request, 200, "OK", None));
        // Only the caller's keys steer the call (not an agent's phone, nor a transferred one).
        let from_patient = self
            .calls
            .get(&call)
            .is_some_and(|c| c.side_of(&sip_call_id) == Some(Side::Patient));
        if !from_patient {
            return;
        }
        let content_type = request.content_type().unwrap_or_default();
        if let Some(digit) = media::dtmf::sip_info_digit(&content_type, request.body()) {
            self.digit(now, call, digit);
        }
    }

    /// BYE from either leg.
    pub(crate) fn handle_bye(&mut self, now: Instant, key: TransactionKey, request: Request) {
        let found = request
            .call_id()
            .ok()
            .and_then(|cid| self.by_sip_call_id.get(&cid).copied().map(|id| (id, cid)));
        let Some((id, sip_call_id)) = found else {
            let r = response_to(&request, 481, "Call/Transaction Does Not Exist", None);
            self.transactions.send_response(now, &key, r);
            return;
        };
        self.transactions
            .send_response(now, &key, response_to(&request, 200, "OK", None));
        if self.consult_bye(now, id, &sip_call_id) {
            return;
        }
        let side = self.calls.get(&id).and_then(|c| c.side_of(&sip_call_id));
        let Some(side) = side else {
            return;
        };
        let reason = match side {
            Side::Patient => "caller_hangup",
            _ => "agent_hangup",
        };
        self.hang_up(now, id, side, reason);
    }

    /// CANCEL of a patient's INVITE.
    pub(crate) fn handle_cancel(&mut self, now: Instant, key: TransactionKey, request: Request) {
        let invite = self.transactions.matching_invite(&request);
        let (status, reason) = match invite {
            Some(_) => (200, "OK"),
            None => (481, "Call/Transaction Does Not Exist"),
        };
        self.transactions
            .send_response(now, &key, response_to(&request, status, reason, None));
        if let Some(invite) = invite {
            self.cancel_phone_consult(now, &invite);
        }
        // Calls are answered at once, so a CANCEL normally finds its INVITE
        // already answered: the patient's BYE follows and ends the call.
    }
}
