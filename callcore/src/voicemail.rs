//! Voicemail: a queue rule whose overflow is `voicemail` lets the caller leave a message.
//!
//! The caller hears the invitation (and its tone), then the patient's side is recorded
//! alone (`v-CALLID.wav`, listed like any recording, the agent's channel silent and marked
//! held) until the patient hangs up, presses `#`, or the longest message is reached. The
//! message then becomes its call-back task: the call is a callback in its first place
//! ([`crate::callback`]), its pop naming the message, and the patient is dialled back when
//! an agent answers. A caller with no number to call back is not invited (the call ends
//! as `hangup` would).

use std::time::Instant;

use tracing::info;

use crate::CallId;
use crate::call::{CallRecording, Callback, Phase, Side};
use crate::control::{Core, Due};
use crate::io::{MediaCommand, Output};

impl Core {
    /// A rule sent the caller out of `queue`, whose overflow is a voicemail: invite the
    /// message. Returns false (nothing done) when the caller cannot be called back.
    pub(crate) fn voicemail_start(&mut self, now: Instant, id: CallId, queue: &str) -> bool {
        let prompt = self
            .config
            .callback
            .as_ref()
            .map(|c| c.voicemail_prompt.clone())
            .filter(|p| self.config.prompts.contains(p));
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        // Never a caller answered before (transferred here: it has its recording).
        if c.phase != Phase::Queued
            || c.answered_at.is_some()
            || self.config.recording.is_none()
            || !self.config.voicemail_queues.contains(queue)
            || !crate::callback::dialable(&c.caller)
        {
            return false;
        }
        c.span
            .in_scope(|| info!(%queue, "queue rule: the caller may leave a message"));
        c.phase = Phase::Voicemail;
        c.overflowed = true;
        c.wait_ms = c.waited_ms(now);
        c.announcing = None;
        self.deadlines.set(Due::Announce(id), None);
        match prompt {
            Some(prompt) => {
                c.prompt_generation += 1;
                let generation = c.prompt_generation;
                c.voicemail_greeting = Some(generation);
                self.emit(Output::Media {
                    call: id,
                    command: MediaCommand::Play { prompt, generation },
                });
            }
            None => self.voicemail_record(now, id),
        }
        self.save_call_record(id);
        true
    }

    /// The invitation finished (`generation`): whether it was this call's (recording starts).
    pub(crate) fn voicemail_prompt_finished(
        &mut self,
        now: Instant,
        id: CallId,
        generation: u64,
    ) -> bool {
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        if c.phase != Phase::Voicemail || c.voicemail_greeting != Some(generation) {
            return false;
        }
        c.voicemail_greeting = None;
        self.voicemail_record(now, id);
        true
    }

    /// The message records from now, at most `voicemail_max`.
    fn voicemail_record(&mut self, now: Instant, id: CallId) {
        let started_at = self.wall(now);
        let recording = self.config.recording.clone();
        let max = self.config.callback.as_ref().map(|c| c.voicemail_max);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let open = recording.map(|r| {
            let rid = format!("v-{}", c.call_id);
            let path = r.path_for(&rid, started_at);
            c.recording = Some(CallRecording {
                id: rid,
                path: path.clone(),
                started_at,
            });
            (path, r.header_interval_ms)
        });
        c.span.in_scope(|| info!("recording the caller's message"));
        self.emit(Output::Media {
            call: id,
            command: MediaCommand::RecordAlone { at: now },
        });
        if let Some((path, header_interval_ms)) = open {
            self.emit(Output::OpenRecording {
                call: id,
                path,
                header_interval_ms,
            });
        }
        self.deadlines
            .set(Due::Voicemail(id), max.and_then(|m| now.checked_add(m)));
    }

    /// The message is over (`side`: the patient hung up, or `#` / its longest length /
    /// anything else ended it): the line goes (its media stopped, unless `media_gone`) and
    /// the message is the call's call-back task.
    pub(crate) fn voicemail_done(
        &mut self,
        now: Instant,
        id: CallId,
        side: Side,
        media_gone: bool,
    ) {
        self.deadlines.set(Due::Voicemail(id), None);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.phase != Phase::Voicemail {
            return;
        }
        let message = c.recording.as_ref().map(|r| r.id.clone());
        c.span
            .in_scope(|| info!(?side, message = ?message, "the message is left; the caller will be called back"));
        c.phase = Phase::Callback;
        c.voicemail_greeting = None;
        c.callback = Some(Callback {
            media_running: true,
            voicemail: message,
            ..Callback::default()
        });
        let (queue, since) = (c.queue.clone(), c.enqueued_at);
        let message = c.recording.is_some();
        self.let_line_go(now, id, side, !media_gone);
        if let (Some(queue), Some(since)) = (queue, since) {
            if let Err(e) = self.acd.voicemail_callback(now, id, &queue, since, message) {
                tracing::warn!(error = %e, "the message's callback could not wait in its queue");
                self.callback_give_up(now, id, "requeue_failed");
                return;
            }
            self.update_queue_gauge(&queue);
        }
        self.store_pending(id, true);
        self.save_call_record(id);
    }
}
