//! Hanging up, and writing what happened down.
//!
//! A call ends when either leg hangs up (or the IVR, a timeout, or shutdown
//! ends it): the other leg gets a BYE or a CANCEL, the ACD is told, the media
//! task finishes the recording, and the call record is written with its
//! outcome. When the media task reports `Stopped`, everything the call held
//! is given back.

use std::time::Instant;

use sip::message::{Method, cancel_for};
use sip::transaction::TransactionKey;
use tracing::{info, warn};

use crate::CallId;
use crate::call::{PatientLookup, Phase, Side};
use crate::control::{ClientTx, Core, Due};
use crate::desk::DeskEvent;
use crate::io::{Leg, MediaCommand, Metric, Output};
use crate::records::RecordingDone;

impl Core {
    /// Ends a call from `side`: the other legs are released, the record is written.
    pub(crate) fn hang_up(&mut self, now: Instant, id: CallId, side: Side, reason: &str) {
        let ended_at = self.wall(now);
        let Some(c) = self.calls.get(&id) else { return };
        let patient_local = self.leg_local(c, Leg::Patient);
        let agent_local = self.leg_local(c, Leg::Agent);
        let patient_branch = self.ids.branch();
        let agent_branch = self.ids.branch();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.phase == Phase::Ending {
            return;
        }
        if c.consult.is_some() {
            // A consultation still running goes with the call.
            self.end_consult(now, id, crate::consult::ConsultEnd::Cancelled, true);
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.phase == Phase::Callback {
            self.callback_hang_up(now, id, side, reason);
            return;
        }
        if c.phase == Phase::Voicemail {
            // However the message ends, the patient is called back (after a restart, if
            // the adapter is stopping).
            self.voicemail_done(now, id, side, false);
            if reason == "shutdown" {
                self.callback_set_aside(now, id);
            }
            return;
        }
        let _entered = c.span.clone().entered();
        info!(?side, %reason, "call ending");
        let was = std::mem::replace(&mut c.phase, Phase::Ending);
        c.ended_at = Some(ended_at);
        c.ivr = None;
        if let PatientLookup::Pending(deferred) = &mut c.patient {
            deferred.clear();
        }
        if was == Phase::Queued && c.answered_at.is_none() {
            c.wait_ms = c.waited_ms(now);
        }
        let mut to_send = Vec::new();
        // The patient's leg, unless the patient hung up.
        if side != Side::Patient
            && let (Some(local), Some(line)) = (patient_local, c.line.as_mut())
        {
            let bye = line.dialog.request(Method::Bye, &local, patient_branch);
            to_send.push((line.peer, bye));
        }
        // Ringing offers are cancelled, on every phone still ringing.
        let mut stale = Vec::new();
        for offer in &mut c.ringing {
            for (peer, invite) in offer.end_forks() {
                to_send.push((peer, cancel_for(&invite)));
                stale.push((invite, peer));
            }
        }
        // The agent's leg, unless the agent hung up.
        if side != Side::Agent
            && let (Some(dialog), Some(local)) = (c.agent_dialog.as_mut(), agent_local)
        {
            let bye = dialog.request(Method::Bye, &local, agent_branch);
            to_send.push((dialog.peer, bye));
        }
        let unbridged = c.take_unbridged_ports();
        c.ringing.clear();
        let agent = c.agent.clone();
        let call_id = c.call_id.clone();
        let queue = c.queue.clone();
        let answered = c.answered_at.is_some();
        drop(_entered);
        self.deadlines.set(Due::Ivr(id), None);
        self.deadlines.set(Due::Session(id, Leg::Patient), None);
        self.deadlines.set(Due::Session(id, Leg::Agent), None);
        self.deadlines.set(Due::Announce(id), None);
        for token in unbridged {
            self.release_socket(token);
        }
        for (invite, peer) in stale {
            self.remember_stale(now, invite, peer);
        }
        self.emit(Output::Media {
            call: id,
            command: MediaCommand::Stop { at: now },
        });
        for (peer, request) in to_send {
            self.fire(now, peer, request);
        }
        match was {
            Phase::Connected => {
                if let Some(agent) = agent.as_deref() {
                    let by = match side {
                        Side::Patient => acd::EndedBy::Caller,
                        Side::Agent => acd::EndedBy::Agent,
                        Side::System => acd::EndedBy::System,
                    };
                    if let Err(e) = self.acd.call_ended(now, agent, by) {
                        warn!(error = %e, "queue did not take the call end");
                    }
                    self.emit(Output::Desk {
                        agent: agent.to_owned(),
                        event: DeskEvent::Ended {
                            call_id,
                            reason: reason.to_owned(),
                        },
                    });
                }
            }
            Phase::Queued => {
                self.acd.abandon(now, id);
                if let Some(queue) = queue {
                    self.update_queue_gauge(&queue);
                }
                // A caller transferred on was answered before: not an abandoned call.
                if side == Side::Patient && !answered {
                    self.emit(Output::Metric(Metric::CallAbandoned));
                }
            }
            Phase::Ivr | Phase::Callback | Phase::Voicemail | Phase::Ending => {}
        }
        self.save_call_record(id);
    }

    /// The media task is done: the recording is final and the call can go.
    pub(crate) fn media_stopped(
        &mut self,
        now: Instant,
        id: CallId,
        recording: Option<Result<crate::records::RecordingDone, String>>,
    ) {
        // Media that stopped by itself while a message recorded: the message is over.
        if self
            .calls
            .get(&id)
            .is_some_and(|c| c.phase == Phase::Voicemail)
        {
            self.voicemail_done(now, id, Side::System, true);
        }
        // A callback's first line: the call stays.
        if self.callback_media_stopped(now, id, recording.clone()) {
            return;
        }
        // Media that stopped by itself (it could not use a socket): the call ends properly
        // first, both phones told, its record closed.
        if self
            .calls
            .get(&id)
            .is_some_and(|c| c.phase != Phase::Ending)
        {
            self.hang_up(now, id, Side::System, "media_failed");
        }
        match recording {
            Some(Ok(done)) => self.save_recording_row(id, done),
            Some(Err(e)) => warn!(error = %e, "recording ended with an error"),
            None => {}
        }
        self.save_call_record(id);
        // Reconciled against the dialogs: a call that is gone holds no agent or place.
        if self.acd.forget(now, id) {
            let call = self.calls.get(&id).map(|c| c.call_id.clone());
            warn!(?call, "the queue still held an ended call; released it");
        }
        // What the ACD logged of the call is written under its id while it still has one.
        while let Some(entry) = self.acd.poll_log() {
            self.store_log_entry(entry);
        }
        let Some(mut c) = self.calls.remove(&id) else {
            return;
        };
        if let Some(line) = c.line.take() {
            self.socket_closed(line.port);
            if let Some(key) = line.invite {
                self.patient_invites.remove(&key);
            }
        }
        if let Some(token) = c.agent_port {
            self.socket_closed(token);
        }
        for token in c.take_unbridged_ports() {
            self.release_socket(token);
        }
        self.deadlines.set(Due::Ivr(id), None);
        self.deadlines.set(Due::Session(id, Leg::Patient), None);
        self.deadlines.set(Due::Session(id, Leg::Agent), None);
        self.deadlines.set(Due::Callback(id), None);
        self.deadlines.set(Due::Voicemail(id), None);
        self.deadlines.set(Due::Consult(id), None);
        // Every SIP Call-ID of the call: the patient's, the answering agent's, and
        // those of offers that rang out; and the agent INVITEs' client transactions.
        self.by_sip_call_id.retain(|_, call| *call != id);
        self.client_tx.retain(|_, tx| match tx {
            ClientTx::AgentInvite { call, .. }
            | ClientTx::Refresh { call, .. }
            | ClientTx::Callback { call }
            | ClientTx::ConsultInvite { call, .. } => *call != id,
            ClientTx::Fire => true,
        });
    }

    /// Publishes how many callers wait in `queue`.
    pub(crate) fn update_queue_gauge(&mut self, queue: &str) {
        if let Ok(waiting) = self.acd.on_the_line(queue) {
            self.emit(Output::Metric(Metric::QueueWaiting {
                queue: queue.to_owned(),
                waiting,
            }));
        }
    }

    /// A server transaction gave up (our 200 was never ACKed): the patient is gone.
    pub(crate) fn server_timeout(&mut self, now: Instant, key: &TransactionKey) {
        // Only a patient's INVITE is answered with a 2xx that waits for an ACK:
        // without one the patient's phone never took the call.
        if let Some(id) = self.patient_invites.get(key).copied() {
            self.hang_up(now, id, Side::System, "no_ack");
        }
    }

    /// Writes (or rewrites) the call's record.
    pub(crate) fn save_call_record(&mut self, id: CallId) {
        if let Some(record) = self.calls.get(&id).map(|c| c.record()) {
            self.emit(Output::StoreCall(record));
        }
    }

    /// Writes (or rewrites) the call's recording index row.
    pub(crate) fn save_recording_row(&mut self, id: CallId, done: RecordingDone) {
        if let Some(row) = self.calls.get(&id).and_then(|c| c.recording_row(done)) {
            self.emit(Output::StoreRecording(row));
        }
    }
}
