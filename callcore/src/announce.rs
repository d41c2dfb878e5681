//! Telling waiting callers where they are: "You are number 3 in line. Your estimated
//! wait is about 2 minutes.", every `every` of waiting, in the clinic's language, and
//! the queue's periodic message after it.
//!
//! An announcement is a few prompt pieces (`queue_position`, `n_3`, `queue_position_end`,
//! …) played one after another over the hold music, which resumes after the last one.
//! Pieces the media side does not have are left out; an announcement with nothing to say
//! is skipped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::CallId;
use crate::call::Phase;
use crate::control::{Core, Due};
use crate::io::{MediaCommand, Output};

/// Numbers spoken from prompts `n_1` ..= `n_10`.
const MAX_SPOKEN: usize = 10;

impl Core {
    /// Arms the first announcement of a caller who just joined `queue`.
    pub(crate) fn arm_announce(&mut self, now: Instant, id: CallId, queue: &str) {
        let every = self.config.announce.get(queue).map(|a| a.every);
        self.deadlines
            .set(Due::Announce(id), every.and_then(|e| now.checked_add(e)));
    }

    /// A waiting caller's announcement is due: say it (unless there is nothing new) and
    /// arm the next.
    pub(crate) fn announce(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get(&id) else { return };
        let Some(queue) = c.queue.clone().filter(|_| c.phase == Phase::Queued) else {
            return;
        };
        let Some(config) = self.config.announce.get(&queue).cloned() else {
            return;
        };
        self.deadlines
            .set(Due::Announce(id), now.checked_add(config.every));
        let Some((position, _)) = self.acd.position(id) else {
            return;
        };
        let improved = c.announced_position.is_none_or(|p| position < p);
        let tell = improved || !config.only_improved;
        let mut pieces: Vec<String> = Vec::new();
        if config.position && tell {
            if position <= MAX_SPOKEN {
                pieces.extend([
                    "queue_position".to_owned(),
                    format!("n_{position}"),
                    "queue_position_end".to_owned(),
                ]);
            } else {
                pieces.push("queue_position_many".to_owned());
            }
        }
        if config.wait
            && tell
            && let Some(wait) = self.acd.estimated_wait(&queue, position)
        {
            pieces.extend(wait_pieces(wait));
        }
        pieces.extend(config.message.clone());
        let known = &self.config.prompts;
        let mut pieces: VecDeque<String> =
            pieces.into_iter().filter(|p| known.contains(p)).collect();
        let Some(first) = pieces.pop_front() else {
            return;
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.prompt_generation += 1;
        let generation = c.prompt_generation;
        c.announcing = Some((generation, pieces));
        if tell {
            c.announced_position = Some(position);
        }
        c.span.in_scope(|| debug!(position, "queue announcement"));
        self.emit(Output::Media {
            call: id,
            command: MediaCommand::Play {
                prompt: first,
                generation,
            },
        });
    }

    /// One piece of an announcement finished: the next, or the hold music again.
    pub(crate) fn announce_piece_done(&mut self, id: CallId, generation: u64) {
        let hold = self.hold_prompt(id);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some((playing, pieces)) = c.announcing.as_mut() else {
            return;
        };
        if *playing != generation {
            return;
        }
        let command = match pieces.pop_front() {
            Some(prompt) => {
                c.prompt_generation += 1;
                *playing = c.prompt_generation;
                MediaCommand::Play {
                    prompt,
                    generation: c.prompt_generation,
                }
            }
            None => {
                c.announcing = None;
                if c.phase != Phase::Queued {
                    return;
                }
                match hold {
                    Some(prompt) => MediaCommand::Hold { prompt },
                    None => MediaCommand::Silence,
                }
            }
        };
        self.emit(Output::Media { call: id, command });
    }
}

/// "Your estimated wait is about N minutes." (rounded up), "less than a minute", or, beyond
/// what is spoken, nothing.
fn wait_pieces(wait: Duration) -> Vec<String> {
    let minutes = wait.as_secs().div_ceil(60);
    match usize::try_from(minutes).unwrap_or(usize::MAX) {
        0 | 1 if wait < Duration::from_secs(60) => vec!["queue_wait_soon".to_owned()],
        n if n <= MAX_SPOKEN => vec![
            "queue_wait".to_owned(),
            format!("n_{n}"),
            "queue_wait_end".to_owned(),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_spoken_in_whole_minutes_rounded_up() {
        assert_eq!(wait_pieces(Duration::from_secs(20)), ["queue_wait_soon"]);
        assert_eq!(
            wait_pieces(Duration::from_secs(61)),
            ["queue_wait", "n_2", "queue_wait_end"]
        );
        assert_eq!(
            wait_pieces(Duration::from_secs(600)),
            ["queue_wait", "n_10", "queue_wait_end"]
        );
        assert!(wait_pieces(Duration::from_secs(601)).is_empty());
    }
}
