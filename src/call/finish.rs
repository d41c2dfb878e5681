//! Hanging up, and writing what happened to storage.
//!
//! A call ends when either leg hangs up (or the IVR, or shutdown, ends it):
//! the other leg gets a BYE or a CANCEL, the ACD is told, the media task
//! finishes the recording, and the call record is written with its outcome.

use std::time::Instant;

use recordings::writer::RecordingInfo;
use sip::message::{Method, Response, cancel_for};
use sip::transaction::TransactionKey;
use sip::transport::Peer;
use tracing::{info, warn};

use super::CallId;
use super::control::{Call, ClientTx, Controller, Phase};
use super::media::MediaCommand;
use crate::events::DeskEvent;
use crate::storage::{CallRecord, Outcome, Recording};

/// Which side ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Patient,
    Agent,
    /// The IVR, a timeout or shutdown.
    System,
}

impl Controller {
    /// Ends a call from `side`: the other legs are released, the record is written.
    pub(crate) async fn hang_up(&mut self, now: Instant, id: CallId, side: Side, reason: &str) {
        let Some(c) = self.calls.get(&id) else { return };
        let patient_local = self.local_for(c.patient_peer.transport);
        let agent_local = c
            .agent_dialog
            .as_ref()
            .and_then(|d| self.local_for(d.peer.transport));
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.phase == Phase::Ending {
            return;
        }
        let _entered = c.span.clone().entered();
        info!(?side, %reason, "call ending");
        let was = std::mem::replace(&mut c.phase, Phase::Ending);
        c.ended_at = Some(chrono::Utc::now());
        c.ivr = None;
        if let super::control::PatientLookup::Pending(deferred) = &mut c.patient {
            *deferred = None;
        }
        self.deadlines.set(super::control::Due::Ivr(id), None);
        if was == Phase::Queued {
            c.wait_ms = c.enqueued_at.map(|t| {
                u64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(u64::MAX)
            });
        }
        let mut to_send = Vec::new();
        // The patient's leg, unless the patient hung up.
        if side != Side::Patient
            && let Some(local) = patient_local
        {
            let bye = c
                .patient_dialog
                .request(Method::Bye, &local, self.ids.branch());
            to_send.push((c.patient_peer, bye));
        }
        // A ringing offer is cancelled.
        if let Some(offer) = c.offer.take()
            && let (Some(invite), Some(peer)) = (offer.invite.as_ref(), offer.peer)
        {
            if !offer.cancelled {
                to_send.push((peer, cancel_for(invite)));
            }
            if let Ok(cid) = invite.call_id() {
                self.stale_invites.insert(cid, (invite.clone(), peer));
            }
        }
        // The agent's leg, unless the agent hung up.
        if side != Side::Agent
            && let (Some(dialog), Some(local)) = (c.agent_dialog.as_mut(), agent_local)
        {
            let bye = dialog.request(Method::Bye, &local, self.ids.branch());
            to_send.push((dialog.peer, bye));
        }
        let _ = c.media.send(MediaCommand::Stop);
        let agent = c.agent.clone();
        let call_id = c.call_id.clone();
        drop(_entered);
        for (peer, request) in to_send {
            let key = self.transactions.send_request(now, peer, request);
            self.client_tx.insert(key, ClientTx::Fire);
        }
        match was {
            Phase::Connected => {
                if let Some(agent) = agent.as_deref() {
                    if let Err(e) = self.acd.call_ended(now, agent) {
                        warn!(error = %e, "queue did not take the call end");
                    }
                    self.hub.publish(
                        agent,
                        DeskEvent::Ended {
                            call_id,
                            reason: reason.to_owned(),
                        },
                    );
                    self.publish_state(agent);
                }
            }
            Phase::Queued => {
                self.acd.abandon(now, id);
                if let Some(queue) = self.calls.get(&id).and_then(|c| c.queue.clone()) {
                    self.update_queue_gauge(&queue);
                }
                if side == Side::Patient {
                    self.metrics.call_abandoned();
                }
            }
            Phase::Ivr | Phase::Ending => {}
        }
        self.save_call_record(id);
    }

    /// The media task is done: the recording is final and the call can go.
    pub(crate) fn media_stopped(
        &mut self,
        id: CallId,
        recording: Option<Result<RecordingInfo, String>>,
    ) {
        let duration_ms = match recording {
            Some(Ok(info)) => Some(info.duration_ms),
            Some(Err(e)) => {
                warn!(error = %e, "recording ended with an error");
                None
            }
            None => None,
        };
        if let Some(ms) = duration_ms {
            self.save_recording_row(id, ms);
        }
        self.save_call_record(id);
        self.calls.remove(&id);
        self.recording_paths.remove(&id);
        self.pending_bridge.remove(&id);
        self.deadlines.set(super::control::Due::Ivr(id), None);
        // Every SIP Call-ID of the call: the patient's, the answering agent's, and
        // those of offers that rang out; and the answered agent INVITE's transaction.
        let by_sip_call_id = &self.by_sip_call_id;
        self.stale_invites
            .retain(|cid, _| by_sip_call_id.get(cid) != Some(&id));
        self.by_sip_call_id.retain(|_, call| *call != id);
        self.client_tx
            .retain(|_, tx| !matches!(tx, ClientTx::AgentInvite { call, .. } if *call == id));
    }

    /// Publishes how many callers wait in `queue`.
    pub(crate) fn update_queue_gauge(&self, queue: &str) {
        if let Ok(n) = self.acd.waiting(queue) {
            self.metrics.set_queue_waiting(queue, n);
        }
    }

    /// A server transaction gave up (our 200 was never ACKed): the patient is gone.
    pub(crate) async fn server_timeout(&mut self, now: Instant, key: &TransactionKey) {
        // Only a patient's INVITE is answered with a 2xx that waits for an ACK:
        // without one the patient's phone never took the call.
        let unconfirmed = self
            .calls
            .values()
            .find(|c| &c.patient_invite == key)
            .map(|c| c.id);
        if let Some(id) = unconfirmed {
            self.hang_up(now, id, Side::System, "no_ack").await;
        }
    }

    /// The INVITE of an offer we already moved on from, by the response's Call-ID.
    pub(crate) fn find_stale_invite(
        &mut self,
        response: &Response,
    ) -> Option<(sip::message::Request, Peer)> {
        let cid = response.call_id().ok()?;
        self.stale_invites.remove(&cid)
    }

    /// Writes (or rewrites) the call's record.
    pub(crate) fn save_call_record(&self, id: CallId) {
        let Some(c) = self.calls.get(&id) else { return };
        self.store.call(call_record(c));
    }

    /// Writes (or rewrites) the call's recording index row.
    pub(crate) fn save_recording_row(&self, id: CallId, duration_ms: u64) {
        let Some(c) = self.calls.get(&id) else { return };
        let (Some(rec_id), Some(started_at), Some(path)) = (
            c.recording_id.clone(),
            c.recording_started_at,
            self.recording_paths.get(&id),
        ) else {
            return;
        };
        let row = Recording {
            id: rec_id,
            call_id: c.call_id.clone(),
            agent: c.agent.clone().unwrap_or_default(),
            started_at,
            duration_ms,
            channels: 2,
            path: path.to_string_lossy().into_owned(),
        };
        self.store.recording(row);
    }
}

/// The stored record of a call as it stands.
fn call_record(c: &Call) -> CallRecord {
    let outcome = c
        .ended_at
        .map(|_| Outcome::of_ended_call(c.answered_at.is_some(), c.queue.is_some()));
    CallRecord {
        call_id: c.call_id.clone(),
        caller: c.caller.clone(),
        started_at: c.started_at,
        ivr_path: c.ivr_path.clone(),
        queue: c.queue.clone(),
        wait_ms: c.wait_ms,
        agents_offered: c.agents_offered.clone(),
        agent: c.agent.clone(),
        answered_at: c.answered_at,
        ended_at: c.ended_at,
        outcome,
        recording_id: c.recording_id.clone(),
        satisfaction: None,
    }
}
