//! The patient's leg: a new call is answered at once, then the IVR runs.
//!
//! The call is answered with 200 OK before the greeting so that the patient
//! hears it from the first moment; the IVR then routes the call into a queue,
//! where hold music plays until an agent answers.

use std::sync::Arc;
use std::time::Instant;

use ivr::{IvrOutput, IvrSession};
use media::leg::LegMedia;
use sip::dialog::Dialog;
use sip::message::{Request, response_to};
use sip::sdp;
use sip::transaction::TransactionKey;
use sip::transport::Peer;
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

use super::CallId;
use super::control::{Call, Controller, Phase};
use super::finish::Side;
use super::media::{self as call_media, MediaCommand, PatientLeg};
use crate::pii::mask_phone;

/// Maps the SDP codec onto the media crate's.
pub(crate) fn media_codec(codec: sdp::Codec) -> media::codec::Codec {
    match codec {
        sdp::Codec::Pcmu => media::codec::Codec::Pcmu,
        sdp::Codec::Pcma => media::codec::Codec::Pcma,
    }
}

/// The configured codecs in the SDP crate's terms.
pub(crate) fn sdp_codecs(codecs: &[crate::config::Codec]) -> Vec<sdp::Codec> {
    codecs
        .iter()
        .map(|c| match c {
            crate::config::Codec::Pcmu => sdp::Codec::Pcmu,
            crate::config::Codec::Pcma => sdp::Codec::Pcma,
        })
        .collect()
}

impl Controller {
    /// A new INVITE from a patient: answer, start media and the IVR.
    pub(crate) async fn handle_new_call(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: Request,
        peer: Peer,
    ) {
        // Refused before anything is allocated for it.
        if let Some(why) = self.overload() {
            self.metrics.call_refused(why);
            if let Some(refused) = self.shed_log.refused(now) {
                warn!(
                    reason = why.as_str(),
                    refused,
                    calls = self.calls.len(),
                    capacity = self.config.sip.call_capacity(),
                    lag_ms = self.lag.as_millis() as u64,
                    queued = self.inbound_depth,
                    "shedding load: new calls get 503"
                );
            }
            let retry = self.config.sip.retry_after_s.to_string();
            let busy = response_to(&request, 503, "Service Unavailable", None)
                .with_header("Retry-After", &retry);
            self.transactions.send_response(now, &key, busy);
            return;
        }
        self.transactions
            .send_response(now, &key, response_to(&request, 100, "Trying", None));
        let Ok(sip_call_id) = request.call_id() else {
            self.transactions.send_response(
                now,
                &key,
                response_to(&request, 400, "Bad Request", None),
            );
            return;
        };
        if self.by_sip_call_id.contains_key(&sip_call_id) {
            // A forked or repeated INVITE for a call we already have.
            self.transactions.send_response(
                now,
                &key,
                response_to(&request, 482, "Loop Detected", None),
            );
            return;
        }
        let ours = sdp_codecs(&self.config.sip.codecs);
        let offer = match sdp::parse(request.body()) {
            Ok(offer) => offer,
            Err(e) => {
                info!(error = %e, "rejecting call: no usable SDP offer");
                self.transactions.send_response(
                    now,
                    &key,
                    response_to(&request, 488, "Not Acceptable Here", None),
                );
                return;
            }
        };
        let (socket, lease) = match self.ports.bind().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "rejecting call: no RTP port");
                self.transactions.send_response(
                    now,
                    &key,
                    response_to(&request, 503, "Service Unavailable", None),
                );
                return;
            }
        };
        let Ok(local_rtp) = socket.local_addr() else {
            return;
        };
        let session_id = self.ids.next_u64() >> 1;
        let (answer, negotiated) = match sdp::answer(&offer, &ours, local_rtp, session_id) {
            Ok(a) => a,
            Err(_) => {
                self.transactions.send_response(
                    now,
                    &key,
                    response_to(&request, 488, "Not Acceptable Here", None),
                );
                return;
            }
        };
        let Some(local) = self.local_for(peer.transport) else {
            return;
        };
        let tag = self.ids.tag();
        let dialog = match Dialog::uas(&request, tag.clone(), peer) {
            Ok(d) => d,
            Err(e) => {
                info!(error = %e, "rejecting call: bad dialog headers");
                self.transactions.send_response(
                    now,
                    &key,
                    response_to(&request, 400, "Bad Request", None),
                );
                return;
            }
        };
        let ok = response_to(&request, 200, "OK", Some(&tag))
            .with_header("Contact", &format!("<{}>", local.contact))
            .with_header("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO")
            .with_body("application/sdp", answer.into_bytes());
        self.transactions.send_response(now, &key, ok);

        let id = self.next_call;
        self.next_call += 1;
        let call_id = self.ids.call_id();
        let caller = request
            .from_user()
            .unwrap_or_else(|| "anonymous".to_owned());
        let span = info_span!("call", id = %call_id);
        let _entered = span.enter();
        info!(caller = %mask_phone(&caller), codec = ?negotiated.codec, "call answered by the IVR");

        let (media_tx, media_rx) = mpsc::unbounded_channel();
        let leg = PatientLeg {
            socket,
            lease,
            remote: negotiated.remote,
            media: LegMedia::new(
                media_codec(negotiated.codec),
                negotiated.telephone_event,
                self.ids.next_u32(),
                0,
                0,
            ),
        };
        tokio::spawn(
            call_media::run(
                id,
                leg,
                media_rx,
                self.media_events.clone(),
                self.config.sip.media_timeout(),
            )
            .instrument(span.clone()),
        );
        // The patient record is read on the blocking pool while the greeting
        // plays; an offer made before it arrives waits for it.
        let storage = self.storage.clone();
        let internal = self.internal.clone();
        let phone = caller.clone();
        tokio::task::spawn_blocking(move || {
            let patient = match storage.patient_by_phone(&phone) {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, "patient lookup failed");
                    None
                }
            };
            let _ = internal.send(super::control::Internal::PatientLoaded { call: id, patient });
        });
        let ivr = match IvrSession::new(Arc::clone(&self.menus), &self.config.ivr.start) {
            Ok(ivr) => Some(ivr),
            Err(e) => {
                warn!(error = %e, "IVR could not start");
                None
            }
        };
        drop(_entered);
        self.metrics.call_started();
        self.by_sip_call_id.insert(sip_call_id.clone(), id);
        self.calls.insert(
            id,
            Call {
                id,
                call_id,
                span,
                caller,
                patient: super::control::PatientLookup::Pending(None),
                started_at: chrono::Utc::now(),
                patient_dialog: dialog,
                patient_peer: peer,
                patient_sip_call_id: sip_call_id,
                patient_invite: key.clone(),
                media: media_tx,
                ivr,
                ivr_path: Vec::new(),
                prompt_generation: 0,
                phase: Phase::Ivr,
                queue: None,
                enqueued_at: None,
                wait_ms: None,
                offer: None,
                agents_offered: Vec::new(),
                agent: None,
                agent_dialog: None,
                agent_sip_call_id: None,
                answered_at: None,
                ended_at: None,
                recording_id: None,
                recording_started_at: None,
            },
        );
        self.save_call_record(id);
        match self.calls.get_mut(&id).and_then(|c| c.ivr.as_mut()) {
            Some(ivr) => ivr.start(now),
            None => {
                // Without a working IVR the caller still reaches a person.
                let fallback = self.config.queues.first().map(|q| q.name.clone());
                if let Some(queue) = fallback {
                    self.route_to_queue(now, id, queue);
                }
            }
        }
        self.drain_ivr(now, id).await;
    }

    /// A digit from RTP (RFC 4733) or SIP INFO.
    pub(crate) async fn digit(&mut self, now: Instant, call: CallId, digit: char) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let _entered = c.span.clone().entered();
        tracing::debug!(%digit, "digit");
        if let Some(ivr) = c.ivr.as_mut() {
            ivr.handle_digit(now, digit);
        }
        drop(_entered);
        self.drain_ivr(now, call).await;
    }

    /// Carries out what the call's IVR session asks for, then re-arms its deadline.
    pub(crate) async fn drain_ivr(&mut self, now: Instant, id: CallId) {
        self.drain_ivr_outputs(now, id).await;
        let next = self
            .calls
            .get(&id)
            .and_then(|c| c.ivr.as_ref())
            .and_then(IvrSession::poll_timeout);
        self.deadlines.set(super::control::Due::Ivr(id), next);
    }

    async fn drain_ivr_outputs(&mut self, now: Instant, id: CallId) {
        loop {
            let Some(c) = self.calls.get_mut(&id) else {
                return;
            };
            let Some(ivr) = c.ivr.as_mut() else { return };
            let Some(output) = ivr.poll_output() else {
                return;
            };
            let generation = ivr.prompt_generation();
            match output {
                IvrOutput::Play { prompt } => match self.prompts.get(&prompt) {
                    Some(p) => {
                        c.prompt_generation = generation;
                        let _ = c.media.send(MediaCommand::Play {
                            prompt: p,
                            generation,
                        });
                    }
                    None => {
                        warn!(%prompt, "prompt missing; skipping it");
                        ivr.handle_prompt_finished_of(now, generation);
                    }
                },
                IvrOutput::StopPrompt => {
                    let _ = c.media.send(MediaCommand::Silence);
                }
                IvrOutput::Route { queue } => {
                    c.ivr_path = ivr.path().to_vec();
                    c.ivr = None;
                    self.route_to_queue(now, id, queue);
                    return;
                }
                IvrOutput::Hangup => {
                    c.ivr_path = ivr.path().to_vec();
                    c.ivr = None;
                    self.hang_up(now, id, Side::System, "ivr_hangup").await;
                    return;
                }
            }
        }
    }

    fn route_to_queue(&mut self, now: Instant, id: CallId, queue: String) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let _entered = c.span.clone().entered();
        let hold = self
            .config
            .queue(&queue)
            .map(|q| q.hold_prompt.clone())
            .and_then(|name| self.prompts.get(&name));
        if let Some(prompt) = hold {
            let _ = c.media.send(MediaCommand::Hold { prompt });
        }
        c.phase = Phase::Queued;
        c.queue = Some(queue.clone());
        c.enqueued_at = Some(now);
        info!(%queue, path = ?c.ivr_path, "queued");
        if let Err(e) = self.acd.enqueue(now, id, &queue) {
            warn!(error = %e, %queue, "could not queue the call");
        }
        self.update_queue_gauge(&queue);
        drop(_entered);
        self.save_call_record(id);
    }

    /// A re-INVITE: keep the session as negotiated and answer with our SDP again.
    pub(crate) fn handle_reinvite(&mut self, now: Instant, key: TransactionKey, request: Request) {
        let known = request
            .call_id()
            .ok()
            .and_then(|cid| self.by_sip_call_id.get(&cid).copied());
        let response = match known {
            // Changing media mid-call isn't supported yet: refuse politely, the
            // call carries on as it was (RFC 3261 §14.2).
            Some(_) => response_to(&request, 488, "Not Acceptable Here", None),
            None => response_to(&request, 481, "Call/Transaction Does Not Exist", None),
        };
        self.transactions.send_response(now, &key, response);
    }

    /// SIP INFO: DTMF fallback for phones that don't send RFC 4733.
    pub(crate) async fn handle_info(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: Request,
    ) {
        let call = request
            .call_id()
            .ok()
            .and_then(|cid| self.by_sip_call_id.get(&cid).copied());
        let Some(call) = call else {
            let r = response_to(&request, 481, "Call/Transaction Does Not Exist", None);
            self.transactions.send_response(now, &key, r);
            return;
        };
        self.transactions
            .send_response(now, &key, response_to(&request, 200, "OK", None));
        let content_type = request.content_type().unwrap_or_default();
        if let Some(digit) = media::dtmf::sip_info_digit(&content_type, request.body()) {
            self.digit(now, call, digit).await;
        }
    }

    /// BYE from either leg.
    pub(crate) async fn handle_bye(&mut self, now: Instant, key: TransactionKey, request: Request) {
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
        let side = match self.calls.get(&id) {
            Some(c) if c.patient_sip_call_id == sip_call_id => Side::Patient,
            Some(c) if c.agent_sip_call_id.as_deref() == Some(sip_call_id.as_str()) => Side::Agent,
            _ => return,
        };
        let reason = match side {
            Side::Patient => "caller_hangup",
            _ => "agent_hangup",
        };
        self.hang_up(now, id, side, reason).await;
    }

    /// CANCEL of a patient's INVITE we have not answered yet.
    pub(crate) async fn handle_cancel(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: Request,
    ) {
        let invite = self.transactions.matching_invite(&request);
        let status = if invite.is_some() { 200 } else { 481 };
        let reason = if invite.is_some() {
            "OK"
        } else {
            "Call/Transaction Does Not Exist"
        };
        self.transactions
            .send_response(now, &key, response_to(&request, status, reason, None));
        // Calls are answered at once, so a CANCEL normally finds its INVITE
        // already answered: the patient's BYE follows and ends the call.
    }
}
