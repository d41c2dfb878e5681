//! Callbacks: the caller leaves the line and keeps its place.
//!
//! A waiting caller presses the queue's callback key (or a queue rule whose overflow is
//! `callback` sends it): it hears that it will be called back, the line is let go, and
//! the ACD keeps its place. When its turn comes the agent is offered it like any caller
//! (the pop says `callback`); once the agent answers, the patient is dialled through the
//! configured trunk and, when the patient answers, the two are bridged and recorded as
//! any call. A dial that is not answered, is refused, or that the agent abandons is tried
//! again after `retry_after`, in the same place; after the last try the callback is given
//! up, logged (`callback_failed`) and recorded with that outcome, never dropped silently.

use std::net::SocketAddr;
use std::time::Instant;

use acd::CallbackResult;
use sip::message::{Method, RequestBuilder, Response};
use sip::sdp;
use sip::transaction::TransactionKey;
use sip::transport::{Peer, Transport};
use tracing::{info, warn};

use crate::CallId;
use crate::agent::{AnswerProblem, TELEPHONE_EVENT_PT};
use crate::call::{Call, Callback, Dial, Phase, Side, millis};
use crate::control::{BindFor, ClientTx, Core, Due};
use crate::desk::DeskEvent;
use crate::io::{Leg, LegSpec, MediaCommand, Metric, Output, PortToken};
use crate::patient::media_codec;

/// Whether `number` can be dialled back: digits, with a leading `+` allowed.
pub(crate) fn dialable(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    (3..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

impl Core {
    /// The ACD made `id` a callback: the patient is told, then the line is let go.
    pub(crate) fn callback_requested(&mut self, now: Instant, id: CallId) {
        let prompt = self
            .config
            .callback
            .as_ref()
            .map(|c| c.confirm_prompt.clone())
            .filter(|p| self.config.prompts.contains(p));
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.phase != Phase::Queued {
            return;
        }
        let _entered = c.span.clone().entered();
        c.phase = Phase::Callback;
        c.wait_ms = c.waited_ms(now);
        c.announcing = None;
        let mut callback = Callback {
            media_running: true,
            ..Callback::default()
        };
        info!(queue = ?c.queue, waited_ms = c.wait_ms, "the caller will be called back, keeping its place");
        let play = prompt.map(|prompt| {
            c.prompt_generation += 1;
            callback.confirming = Some(c.prompt_generation);
            (prompt, c.prompt_generation)
        });
        c.callback = Some(callback);
        let queue = c.queue.clone();
        drop(_entered);
        self.deadlines.set(Due::Announce(id), None);
        match play {
            Some((prompt, generation)) => self.emit(Output::Media {
                call: id,
                command: MediaCommand::Play { prompt, generation },
            }),
            None => self.let_line_go(now, id, Side::System, true),
        }
        if let Some(queue) = queue {
            self.update_queue_gauge(&queue);
        }
        self.store_pending(id, true);
        self.save_call_record(id);
    }

    /// The confirmation finished (`generation`): whether it was this call's, and the line
    /// is let go.
    pub(crate) fn callback_prompt_finished(
        &mut self,
        now: Instant,
        id: CallId,
        generation: u64,
    ) -> bool {
        let confirming = self
            .calls
            .get(&id)
            .and_then(|c| c.callback.as_ref())
            .and_then(|cb| cb.confirming);
        if confirming != Some(generation) {
            return false;
        }
        self.let_line_go(now, id, Side::System, true);
        true
    }

    /// Lets the patient's first line go, the callback standing: a BYE unless the patient
    /// hung up, the media stopped (`stop_media`: unless it stopped by itself), the line's
    /// SIP state forgotten.
    pub(crate) fn let_line_go(&mut self, now: Instant, id: CallId, side: Side, stop_media: bool) {
        let local = self
            .calls
            .get(&id)
            .and_then(|c| self.leg_local(c, Leg::Patient));
        let branch = self.ids.branch();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(cb) = c.callback.as_mut() else {
            return;
        };
        let Some(mut line) = c.line.take() else {
            return;
        };
        cb.confirming = None;
        // Its port closes with the media task.
        cb.line_port = Some(line.port);
        let bye = match (side, local) {
            (Side::Patient, _) | (_, None) => None,
            (_, Some(local)) => Some(line.dialog.request(Method::Bye, &local, branch)),
        };
        c.span
            .in_scope(|| info!(?side, "the caller's line is let go until the callback"));
        self.by_sip_call_id.remove(&line.sip_call_id);
        if let Some(key) = &line.invite {
            self.patient_invites.remove(key);
        }
        self.deadlines.set(Due::Session(id, Leg::Patient), None);
        if stop_media {
            self.emit(Output::Media {
                call: id,
                command: MediaCommand::Stop { at: now },
            });
        }
        if let Some(bye) = bye {
            self.fire(now, line.peer, bye);
        }
        self.save_call_record(id);
    }

    /// The first line's media task stopped: its port is free, and the ACD may offer the
    /// callback from now. Returns false when the call is not a callback off the line.
    pub(crate) fn callback_media_stopped(
        &mut self,
        now: Instant,
        id: CallId,
        recording: Option<Result<crate::records::RecordingDone, String>>,
    ) -> bool {
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        if c.phase != Phase::Callback {
            return false;
        }
        let Some(cb) = c.callback.as_mut() else {
            return false;
        };
        cb.media_running = false;
        let line_up = c.line.is_some();
        let port = cb.line_port.take();
        // The message the caller left is indexed; the call back gets its own recording.
        let lost = match recording {
            Some(Ok(done)) => {
                self.save_recording_row(id, done);
                false
            }
            Some(Err(e)) => {
                warn!(error = %e, "the message could not be recorded");
                true
            }
            None => false,
        };
        if let Some(c) = self.calls.get_mut(&id) {
            c.recording = None;
            if lost && let Some(cb) = c.callback.as_mut() {
                cb.voicemail = None;
            }
        }
        if let Some(port) = port {
            self.socket_closed(port);
        }
        if line_up {
            // It stopped by itself (its socket failed): the line goes now.
            self.let_line_go(now, id, Side::System, false);
        }
        // Its place may be offered now (the dialled leg's media can start).
        self.acd.callback_ready(now, id);
        true
    }

    /// A hang-up while the call is a callback: the patient leaving the first line changes
    /// nothing; the agent hanging up while the patient's phone rings fails this try; a
    /// shutdown gives the callback up.
    pub(crate) fn callback_hang_up(&mut self, now: Instant, id: CallId, side: Side, reason: &str) {
        let Some(cb) = self.calls.get(&id).and_then(|c| c.callback.as_ref()) else {
            return;
        };
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let (line_up, dialling) = (c.line.is_some(), cb.dial.is_some());
        match side {
            _ if reason == "shutdown" => self.callback_set_aside(now, id),
            Side::Agent if dialling => {
                self.cancel_dial(now, id);
                self.dial_failed(now, id, CallbackResult::AgentHungUp, true);
            }
            Side::Patient | Side::System if line_up => self.let_line_go(now, id, side, true),
            _ => {
                if let Some(c) = self.calls.get(&id) {
                    c.span
                        .in_scope(|| info!(?side, %reason, "ignored while waiting to call back"));
                }
            }
        }
    }

    /// The agent answered the callback's offer: the patient is dialled.
    pub(crate) fn callback_answered(&mut self, now: Instant, id: CallId, agent: &str) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(cb) = c.callback.as_mut() else {
            return;
        };
        cb.attempts += 1;
        cb.dial = Some(Dial {
            invite: None,
            rtp: None,
            sdp: None,
            started: now,
            key: None,
        });
        c.ringing.clear();
        let attempt = cb.attempts;
        // The desk hears `answered` once the patient answers (the call is connected then).
        c.span.in_scope(
            || info!(%agent, attempt, "agent answered the callback; dialling the patient"),
        );
        if self.config.callback.is_none()
            || self.bind_port(BindFor::Callback { call: id }, 0).is_err()
        {
            warn!("no trunk or no RTP port to dial the patient");
            self.dial_failed(now, id, CallbackResult::Failed, false);
        }
        self.save_call_record(id);
    }

    /// The dialled leg's port is bound: the INVITE goes to the trunk.
    pub(crate) fn send_dial(
        &mut self,
        now: Instant,
        id: CallId,
        token: PortToken,
        rtp: SocketAddr,
    ) {
        let Some(cfg) = self.config.callback.clone() else {
            self.release_socket(token);
            return;
        };
        let waiting = self
            .calls
            .get(&id)
            .and_then(|c| c.callback.as_ref())
            .and_then(|cb| cb.dial.as_ref())
            .is_some_and(|d| d.invite.is_none() && d.rtp.is_none());
        if !waiting {
            // The try ended while the port was bound.
            self.release_socket(token);
            return;
        }
        let (Some(local), Some(caller), Some(peer)) = (
            self.local_for(cfg.transport),
            self.calls.get(&id).map(|c| c.caller.clone()),
            self.trunk_peer(),
        ) else {
            warn!("no way to reach the trunk; the try fails");
            self.release_socket(token);
            self.dial_failed(now, id, CallbackResult::Failed, false);
            return;
        };
        let body = sdp::offer(
            &self.config.codecs,
            TELEPHONE_EVENT_PT,
            rtp,
            self.ids.next_u64() >> 1,
            None,
        );
        let transport = match cfg.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        };
        // An international (+) number is dialled as it is; a national one after the prefix.
        let prefix = if caller.starts_with('+') {
            ""
        } else {
            cfg.dial_prefix.as_str()
        };
        let target = format!("sip:{prefix}{caller}@{};user=phone{transport}", cfg.trunk);
        let advertise = self.config.advertise;
        let invite = RequestBuilder::new(Method::Invite, &target)
            .via(local.transport, local.sent_by, &self.ids.branch())
            .from(&format!(
                "<sip:{}@{advertise}>;tag={}",
                cfg.caller_id,
                self.ids.tag()
            ))
            .to(&format!("<{target}>"))
            .call_id(&self.ids.call_id())
            .cseq(1)
            .contact(&local.contact)
            .max_forwards(70)
            .header("Subject", "Switchboard callback")
            .body("application/sdp", body.clone().into_bytes())
            .build();
        if let Ok(cid) = invite.call_id() {
            self.by_sip_call_id.insert(cid, id);
        }
        let key = self.transactions.send_request(now, peer, invite.clone());
        self.client_tx
            .insert(key.clone(), ClientTx::Callback { call: id });
        let Some(dial) = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.callback.as_mut())
            .and_then(|cb| cb.dial.as_mut())
        else {
            return;
        };
        dial.invite = Some(invite);
        dial.rtp = Some(token);
        dial.sdp = Some(body);
        dial.started = now;
        dial.key = Some(key);
        self.deadlines
            .set(Due::Callback(id), now.checked_add(cfg.ring));
    }

    /// A response to the INVITE that dials the patient.
    pub(crate) fn handle_dial_response(
        &mut self,
        now: Instant,
        id: CallId,
        key: &TransactionKey,
        response: Response,
    ) {
        let status = response.status();
        if status < 200 {
            return;
        }
        let live = self
            .calls
            .get(&id)
            .and_then(|c| c.callback.as_ref())
            .and_then(|cb| cb.dial.as_ref())
            .filter(|d| d.key.as_ref() == Some(key))
            .and_then(|d| Some((d.invite.clone()?, d.rtp?, d.sdp.clone()?, d.started)));
        if status >= 300 {
            self.client_tx.remove(key);
            if let Ok(cid) = response.call_id() {
                self.stale_invites.remove(&cid);
            }
            if live.is_some() {
                let result = match status {
                    486 | 600 | 603 => CallbackResult::Busy,
                    _ => CallbackResult::Failed,
                };
                if let Some(c) = self.calls.get(&id) {
                    c.span
                        .in_scope(|| info!(status, "the patient's line refused the callback"));
                }
                self.dial_failed(now, id, result, false);
            }
            return;
        }
        let Some((invite, token, our_sdp, started)) = live else {
            // A retransmitted 200 of the leg now bridged, or one after we gave up.
            let bridged = self
                .calls
                .get(&id)
                .and_then(|c| c.line.as_ref())
                .filter(|l| Some(l.sip_call_id.as_str()) == response.call_id().ok().as_deref());
            match bridged.map(|l| (l.dialog.clone(), l.peer)) {
                Some((dialog, peer)) => {
                    if let Some(local) = self.local_for(peer.transport) {
                        let ack = dialog.ack(1, &local, self.ids.branch());
                        self.send_stateless(peer, ack);
                    }
                }
                None => self.ack_and_bye_stale(now, &response),
            }
            return;
        };
        let Some(peer) = self.trunk_peer() else {
            return;
        };
        let Some(local) = self.local_for(peer.transport) else {
            return;
        };
        let (dialog, negotiated) =
            match self.take_answer(now, &invite, &response, peer, &local, "trunk") {
                Ok(answer) => answer,
                Err(AnswerProblem::NoDialog) => return,
                Err(AnswerProblem::BadSdp) => {
                    self.deadlines.set(Due::Callback(id), None);
                    self.dial_failed(now, id, CallbackResult::Failed, false);
                    return;
                }
            };
        self.deadlines.set(Due::Callback(id), None);
        let ssrc = self.ids.next_u32();
        let media_timeout = self.config.media_timeout;
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let attempt = c.callback.as_ref().map_or(1, |cb| cb.attempts);
        if let Some(cb) = c.callback.as_mut() {
            cb.dial = None;
        }
        c.line = Some(crate::call::PatientLeg {
            dialog,
            peer,
            sip_call_id: invite.call_id().unwrap_or_default(),
            invite: None,
            port: token,
            sdp: our_sdp,
            media: negotiated,
            timer: None,
        });
        let (call_id, agent) = (c.call_id.clone(), c.agent.clone().unwrap_or_default());
        c.span
            .in_scope(|| info!(%agent, attempt, "the patient answered the callback"));
        self.emit(Output::Media {
            call: id,
            command: MediaCommand::Start {
                call_id,
                patient: LegSpec {
                    token,
                    remote: negotiated.remote,
                    codec: media_codec(negotiated.codec),
                    telephone_event: negotiated.telephone_event,
                    ssrc,
                },
                media_timeout,
            },
        });
        if let Some(n) = crate::refresh::negotiated_as_uac(&response) {
            self.start_session_timer(now, id, Leg::Patient, &n);
        }
        // Reached: nothing left to call back after a restart.
        self.store_pending(id, false);
        let rang = now.saturating_duration_since(started);
        if let Err(e) = self.acd.callback_reached(now, &agent, attempt, rang) {
            warn!(error = %e, "the queue did not take the callback's answer");
        }
        let waited = std::time::Duration::from_millis(
            self.calls.get(&id).and_then(|c| c.wait_ms).unwrap_or(0),
        );
        self.bridge(now, id, &agent, waited);
    }

    /// The dial's transaction gave up (the trunk never answered).
    pub(crate) fn dial_timed_out(&mut self, now: Instant, id: CallId, key: &TransactionKey) {
        let live = self
            .calls
            .get(&id)
            .and_then(|c| c.callback.as_ref())
            .and_then(|cb| cb.dial.as_ref())
            .is_some_and(|d| d.key.as_ref() == Some(key));
        if live {
            self.deadlines.set(Due::Callback(id), None);
            self.dial_failed(now, id, CallbackResult::Failed, false);
        }
    }

    /// The callback's deadline: the patient's phone rang its time (the try failed), the
    /// wait before the next try is over (it waits in its queue again), or the callback
    /// was given up with no media left to stop (the call goes).
    pub(crate) fn callback_due(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let Some(cb) = c.callback.as_ref() else {
            return;
        };
        if c.phase == Phase::Ending {
            // Given up with nothing left running: the call goes.
            self.media_stopped(now, id, None);
            return;
        }
        if cb.dial.is_some() {
            c.span
                .in_scope(|| info!("the patient did not answer the callback"));
            self.cancel_dial(now, id);
            self.dial_failed(now, id, CallbackResult::NoAnswer, false);
            return;
        }
        let (Some(queue), Some(since)) = (c.queue.clone(), c.enqueued_at) else {
            return;
        };
        c.span
            .in_scope(|| info!(%queue, "calling back again: waiting in the queue in its place"));
        if let Err(e) = self.acd.requeue_callback(now, id, &queue, since) {
            warn!(error = %e, "the callback could not wait again");
            self.callback_give_up(now, id, "requeue_failed");
            return;
        }
        self.update_queue_gauge(&queue);
    }

    /// CANCELs the dial's INVITE if it went out (a 200 crossing it is ACKed and hung up).
    fn cancel_dial(&mut self, now: Instant, id: CallId) {
        let Some(invite) = self
            .calls
            .get(&id)
            .and_then(|c| c.callback.as_ref())
            .and_then(|cb| cb.dial.as_ref())
            .and_then(|d| d.invite.clone())
        else {
            return;
        };
        if let Some(peer) = self.trunk_peer() {
            self.cancel_forks(now, vec![(peer, invite)]);
        }
    }

    /// Where a callback's INVITE goes.
    fn trunk_peer(&self) -> Option<Peer> {
        self.config.callback.as_ref().map(|cfg| Peer {
            transport: cfg.transport,
            addr: cfg.trunk,
        })
    }

    /// The try did not reach the patient: the agent's leg ends (`agent_gone`: the agent
    /// hung up itself), the ACD logs it, and the callback waits for its next try or is
    /// given up after the last.
    pub(crate) fn dial_failed(
        &mut self,
        now: Instant,
        id: CallId,
        result: CallbackResult,
        agent_gone: bool,
    ) {
        let (retries, retry_after) = self
            .config
            .callback
            .as_ref()
            .map_or((0, std::time::Duration::ZERO), |c| {
                (c.retries, c.retry_after)
            });
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(cb) = c.callback.as_mut() else {
            return;
        };
        let Some(dial) = cb.dial.take() else {
            return;
        };
        let attempt = cb.attempts;
        let rang = now.saturating_duration_since(dial.started);
        c.span.in_scope(|| {
            info!(
                ?result,
                attempt,
                rang_ms = millis(rang),
                "the callback did not reach the patient"
            )
        });
        // The dial's Call-ID stays the call's until it goes (a 200 crossing our CANCEL
        // is ACKed and hung up meanwhile).
        if let Some(token) = dial.rtp {
            self.release_socket(token);
        }
        if let Some(agent) = self.end_callback_agent(now, id, agent_gone, "callback_unreached")
            && let Err(e) = self
                .acd
                .callback_unreached(now, &agent, attempt, result, rang)
        {
            warn!(error = %e, "the queue did not take the callback's failed try");
        }
        if attempt <= retries {
            self.deadlines
                .set(Due::Callback(id), now.checked_add(retry_after));
            self.store_pending(id, true);
            self.save_call_record(id);
        } else {
            self.callback_give_up(now, id, "unreached");
        }
    }

    /// The callback is given up (`why`: every try failed, its queue is gone): anything
    /// still up is ended, the ACD logs it, the record says `callback_failed`, the stored
    /// callback is forgotten, the call goes.
    pub(crate) fn callback_give_up(&mut self, now: Instant, id: CallId, why: &str) {
        self.end_callback(now, id, Some(why));
    }

    /// A patient waiting for a callback got through to an agent on `call`: their callbacks
    /// are closed unmade (a dial in progress is cancelled), outcome `callback_closed`.
    pub(crate) fn close_callbacks_of(&mut self, now: Instant, call: CallId) {
        let Some(caller) = self.calls.get(&call).map(|c| c.caller.clone()) else {
            return;
        };
        let waiting: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(id, c)| **id != call && c.phase == Phase::Callback && c.caller == caller)
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.end_callback(now, id, None);
        }
    }

    /// Ends the callback: given up for `failed` (a reason), or closed (`None`: the patient
    /// got through); logged, forgotten, recorded, the call goes.
    fn end_callback(&mut self, now: Instant, id: CallId, failed: Option<&str>) {
        let Some((attempts, queue)) = self.callback_wind_down(now, id) else {
            return;
        };
        let ended_at = self.wall(now);
        if let Some(c) = self.calls.get_mut(&id) {
            c.ended_at = Some(ended_at);
            if let Some(cb) = c.callback.as_mut() {
                cb.closed = failed.is_none();
            }
            c.span.in_scope(|| match failed {
                Some(why) => {
                    warn!(attempts, reason = %why, "callback given up: the patient was not reached")
                }
                None => info!(
                    attempts,
                    "callback closed: the patient got through on a call of their own"
                ),
            });
        }
        match failed {
            Some(_) => {
                self.acd.callback_failed(now, id, &queue, attempts);
                self.emit(Output::Metric(Metric::CallbackFailed));
            }
            None => self.acd.callback_closed(now, id, &queue, attempts),
        }
        self.store_pending(id, false);
        self.save_call_record(id);
        self.update_queue_gauge(&queue);
    }

    /// The adapter stops with the callback still to be made: anything up is ended, its
    /// place let go here, and it stays stored (its record open) for the next run, which
    /// puts it back in its place ([`Core::restore_callback`]). A try in progress is not
    /// counted.
    pub(crate) fn callback_set_aside(&mut self, now: Instant, id: CallId) {
        let dialling = self
            .calls
            .get(&id)
            .and_then(|c| c.callback.as_ref())
            .is_some_and(|cb| cb.dial.is_some());
        if dialling && let Some(cb) = self.calls.get_mut(&id).and_then(|c| c.callback.as_mut()) {
            cb.attempts = cb.attempts.saturating_sub(1);
        }
        let Some((attempts, queue)) = self.callback_wind_down(now, id) else {
            return;
        };
        if let Some(c) = self.calls.get(&id) {
            c.span
                .in_scope(|| info!(attempts, %queue, "callback kept for the next run"));
        }
        self.acd.set_aside(now, id);
        self.store_pending(id, true);
    }

    /// Ends whatever a callback has up (the line, an offer ringing, the agent's leg, a dial)
    /// and marks the call as ending; it goes once no media task is left. Its tries and queue.
    fn callback_wind_down(&mut self, now: Instant, id: CallId) -> Option<(u32, String)> {
        self.cancel_dial(now, id);
        if let Some(agent) = self.end_callback_agent(now, id, false, "callback_ended")
            && let Err(e) = self.acd.call_ended(now, &agent, acd::EndedBy::System)
        {
            warn!(error = %e, "queue did not take the call end");
        }
        let line_up = self
            .calls
            .get(&id)
            .is_some_and(|c| c.callback.is_some() && c.line.is_some());
        if line_up {
            self.let_line_go(now, id, Side::System, true);
        }
        let c = self.calls.get_mut(&id)?;
        let cb = c.callback.as_mut()?;
        let attempts = cb.attempts;
        let media_running = cb.media_running;
        // The offers ringing for it stop ringing.
        let mut ringing = Vec::new();
        let mut offer_ports = Vec::new();
        for mut offer in c.ringing.drain(..) {
            ringing.extend(offer.end_forks());
            offer_ports.extend(offer.rtp.take());
        }
        let dial_port = cb.dial.take().and_then(|d| d.rtp);
        c.phase = Phase::Ending;
        let queue = c.queue.clone().unwrap_or_default();
        for token in dial_port.into_iter().chain(offer_ports) {
            self.release_socket(token);
        }
        self.cancel_forks(now, ringing);
        // No media task left to report `Stopped`: the call goes at once, through its
        // deadline, so the ACD's log of its end is written under its id first.
        self.deadlines
            .set(Due::Callback(id), (!media_running).then_some(now));
        Some((attempts, queue))
    }

    /// The agent's part of a callback ends (its leg hung up unless `agent_gone`, its desk
    /// told `reason`, what the leg held released): the agent, if one had answered.
    fn end_callback_agent(
        &mut self,
        now: Instant,
        id: CallId,
        agent_gone: bool,
        reason: &str,
    ) -> Option<String> {
        let local = self
            .calls
            .get(&id)
            .and_then(|c| self.leg_local(c, Leg::Agent));
        let branch = self.ids.branch();
        let c = self.calls.get_mut(&id)?;
        let bye = match (c.agent_dialog.take(), local) {
            (Some(mut d), Some(local)) if !agent_gone => {
                Some((d.peer, d.request(Method::Bye, &local, branch)))
            }
            _ => None,
        };
        let agent_cid = c.agent_sip_call_id.take();
        let pending = c.bridge_pending.take();
        c.agent_timer = None;
        c.agent_media = None;
        c.agent_sdp = None;
        let agent = c.agent.take();
        let call_id = c.call_id.clone();
        if let Some(cid) = agent_cid {
            self.by_sip_call_id.remove(&cid);
        }
        if let Some(leg) = pending {
            self.release_socket(leg.token);
        }
        self.deadlines.set(Due::Session(id, Leg::Agent), None);
        if let Some((peer, bye)) = bye {
            self.fire(now, peer, bye);
        }
        let agent = agent?;
        self.emit(Output::Desk {
            agent: agent.clone(),
            event: DeskEvent::Ended {
                call_id,
                reason: reason.to_owned(),
            },
        });
        Some(agent)
    }

    /// Stores the callback as it stands (`keep`), or that it is done with.
    pub(crate) fn store_pending(&mut self, id: CallId, keep: bool) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let pending = match (keep, c.callback.as_ref(), &c.queue, c.enqueued_at) {
            (true, Some(cb), Some(queue), Some(since)) => Some(crate::records::PendingCallback {
                call_id: c.call_id.clone(),
                queue: queue.clone(),
                since: self.wall(since),
                attempts: cb.attempts,
                voicemail: cb.voicemail.clone(),
            }),
            _ => None,
        };
        let call_id = c.call_id.clone();
        self.emit(Output::StoreCallback { call_id, pending });
    }

    /// A callback the last run kept (it stopped, or died, before making it): it waits
    /// again in its queue, in its place as of `pending.since`; the record goes on.
    pub fn restore_callback(
        &mut self,
        now: Instant,
        record: crate::records::CallRecord,
        pending: crate::records::PendingCallback,
    ) {
        let id = self.next_call;
        self.next_call += 1;
        let span = tracing::info_span!("call", id = %record.call_id);
        let mut c = Call::new(
            record.call_id,
            span,
            record.caller,
            record.started_at,
            Phase::Callback,
        );
        let behind = (self.wall(now) - pending.since)
            .to_std()
            .unwrap_or_default();
        let since = now.checked_sub(behind).unwrap_or(now);
        c.ivr_path = record.ivr_path;
        c.agents_offered = record.agents_offered;
        c.offers = record.offers;
        c.wait_ms = record.wait_ms;
        c.queue = Some(pending.queue.clone());
        c.enqueued_at = Some(since);
        c.callback = Some(Callback {
            attempts: pending.attempts,
            voicemail: pending.voicemail.clone(),
            ..Callback::default()
        });
        let phone = c.caller.clone();
        c.span.in_scope(|| {
            info!(queue = %pending.queue, attempts = pending.attempts, "a callback from the last run waits again in its place")
        });
        self.calls.insert(id, c);
        self.emit(Output::LookupPatient { call: id, phone });
        if let Err(e) = self.acd.requeue_callback(now, id, &pending.queue, since) {
            warn!(error = %e, "the callback's queue cannot take it");
            self.callback_give_up(now, id, "queue_gone");
        }
        self.update_queue_gauge(&pending.queue);
        self.drain(now);
    }
}
