//! One caller walking the menus: a sans-IO state machine.
//!
//! Inputs: [`IvrSession::start`], [`IvrSession::handle_digit`],
//! [`IvrSession::handle_prompt_finished`], [`IvrSession::handle_timeout`].
//! Outputs: [`IvrSession::poll_output`] and [`IvrSession::poll_timeout`].
//!
//! Rules: the menu prompt plays on entry; a key pressed while any prompt plays stops it
//! (barge-in: [`IvrOutput::StopPrompt`] first) and counts. A configured key is taken; any
//! other key is a failed try, answered by `invalid_prompt` (if set) and then the menu prompt.
//! The digit timeout starts when the menu prompt finishes; expiry is a failed try and the
//! menu prompt plays again. After `max_tries` failed tries `on_fail` is taken. Entering a
//! menu resets its try count. After a route or hang-up all input is ignored.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::menu::is_dtmf_key;
use crate::{Action, Error, Menus};

/// What the session asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IvrOutput {
    /// Start playing this prompt, replacing whatever plays now.
    Play {
        /// Prompt name (built-in or from `[ivr.prompts]`).
        prompt: String,
    },
    /// Stop the prompt that is playing (the caller pressed a key).
    StopPrompt,
    /// Hand the caller to this ACD queue; the session is over.
    Route {
        /// Queue name.
        queue: String,
    },
    /// End the call; the session is over.
    Hangup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PromptKind {
    /// The menu's own prompt: when it finishes, the digit timeout starts.
    Menu,
    /// The invalid-key prompt: when it finishes, the menu prompt plays.
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotStarted,
    Prompting(PromptKind),
    /// The digit timeout is running.
    Waiting {
        deadline: Instant,
    },
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Invalid,
    Timeout,
}

/// One caller's walk through the menus, from the start menu to a queue or hang-up.
#[derive(Debug)]
pub struct IvrSession {
    menus: Arc<Menus>,
    menu: String,
    tries: u32,
    state: State,
    /// Counts `Play` outputs, so a late "finished" for an older prompt can be told apart.
    generation: u64,
    outputs: VecDeque<IvrOutput>,
    path: Vec<String>,
    /// Latest `now` seen; time going backwards is ignored.
    now: Option<Instant>,
}

impl IvrSession {
    /// A session that will start at menu `start`.
    ///
    /// Fails with [`Error::UnknownMenu`] if `start`, or any menu an action names, is missing.
    pub fn new(menus: Arc<Menus>, start: &str) -> Result<Self, Error> {
        if menus.get(start).is_none() {
            return Err(Error::UnknownMenu(start.to_owned()));
        }
        if let Some(missing) = menus.first_unknown_menu() {
            return Err(Error::UnknownMenu(missing.to_owned()));
        }
        Ok(IvrSession {
            menus,
            menu: start.to_owned(),
            tries: 0,
            state: State::NotStarted,
            generation: 0,
            outputs: VecDeque::new(),
            path: Vec::new(),
            now: None,
        })
    }

    /// Plays the start menu's prompt; later calls do nothing.
    pub fn start(&mut self, now: Instant) {
        self.clock(now);
        if self.state == State::NotStarted {
            let start = self.menu.clone();
            self.enter(&start);
        }
    }

    /// A key from the caller (RFC 4733 or SIP INFO). Lower-case a-d count as A-D; anything
    /// that is not a DTMF key is ignored, as are keys before `start` and after the end.
    pub fn handle_digit(&mut self, now: Instant, digit: char) {
        self.clock(now);
        let digit = digit.to_ascii_uppercase();
        let mut key = [0u8; 4];
        if !is_dtmf_key(digit.encode_utf8(&mut key)) {
            return;
        }
        match self.state {
            State::NotStarted | State::Done => return,
            State::Prompting(_) => self.outputs.push_back(IvrOutput::StopPrompt),
            State::Waiting { .. } => {}
        }
        let action = self
            .menus
            .get(&self.menu)
            .and_then(|menu| menu.options.get(digit.encode_utf8(&mut key) as &str))
            .cloned();
        match action {
            Some(action) => {
                self.path.push(format!("{}:{digit}", self.menu));
                self.act(&action);
            }
            None => {
                self.path.push(format!("{}:invalid", self.menu));
                self.fail(Failure::Invalid);
            }
        }
    }

    /// The prompt last asked for has finished playing. Starts the digit timeout after the
    /// menu prompt, or plays the menu prompt after the invalid prompt. Ignored when no prompt
    /// is playing (a stopped prompt, a repeated report).
    ///
    /// A driver that can report finishes late should prefer
    /// [`IvrSession::handle_prompt_finished_of`], which also ignores finishes of older prompts.
    pub fn handle_prompt_finished(&mut self, now: Instant) {
        self.handle_prompt_finished_of(now, self.generation);
    }

    /// Like [`IvrSession::handle_prompt_finished`], for the prompt that was current when
    /// [`IvrSession::prompt_generation`] returned `generation`; a finish for any older
    /// prompt is ignored.
    pub fn handle_prompt_finished_of(&mut self, now: Instant, generation: u64) {
        let now = self.clock(now);
        if generation != self.generation {
            return;
        }
        match self.state {
            State::Prompting(PromptKind::Menu) => {
                let timeout = self.menus.get(&self.menu).map_or(0, |menu| menu.timeout_ms);
                let deadline = now + Duration::from_millis(timeout);
                self.state = State::Waiting { deadline };
            }
            State::Prompting(PromptKind::Invalid) => self.play_menu_prompt(),
            State::NotStarted | State::Waiting { .. } | State::Done => {}
        }
    }

    /// Fires the digit timeout if it is due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        if let State::Waiting { deadline } = self.state
            && deadline <= now
        {
            self.path.push(format!("{}:timeout", self.menu));
            self.fail(Failure::Timeout);
        }
    }

    /// The next thing the driver must do, in order.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<IvrOutput> {
        self.outputs.pop_front()
    }

    /// When [`IvrSession::handle_timeout`] must next be called (the digit timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// What the caller did, for the call record: `["main:1"]`, or
    /// `["main:timeout", "main:timeout", "main:timeout", "main:fallback"]`.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// Identifies the prompt of the latest [`IvrOutput::Play`], for
    /// [`IvrSession::handle_prompt_finished_of`].
    pub fn prompt_generation(&self) -> u64 {
        self.generation
    }

    /// The menu the caller is in.
    pub fn current_menu(&self) -> &str {
        &self.menu
    }

    /// Whether the session has routed or hung up (all further input is ignored).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn clock(&mut self, now: Instant) -> Instant {
        let now = match self.now {
            Some(seen) if seen > now => seen,
            _ => now,
        };
        self.now = Some(now);
        now
    }

    fn act(&mut self, action: &Action) {
        match action {
            Action::Queue(queue) => self.finish(IvrOutput::Route {
                queue: queue.clone(),
            }),
            Action::Hangup => self.finish(IvrOutput::Hangup),
            Action::Menu(name) => self.enter(name),
        }
    }

    fn finish(&mut self, output: IvrOutput) {
        self.outputs.push_back(output);
        self.state = State::Done;
    }

    fn enter(&mut self, name: &str) {
        if self.menus.get(name).is_none() {
            // `new` checked every menu name, so this is unreachable; end the call rather than panic.
            self.path.push(format!("{name}:missing"));
            self.finish(IvrOutput::Hangup);
            return;
        }
        name.clone_into(&mut self.menu);
        self.tries = 0;
        self.play_menu_prompt();
    }

    fn fail(&mut self, failure: Failure) {
        let menus = Arc::clone(&self.menus);
        let Some(menu) = menus.get(&self.menu) else {
            self.finish(IvrOutput::Hangup);
            return;
        };
        self.tries = self.tries.saturating_add(1);
        if self.tries >= menu.max_tries {
            self.path.push(format!("{}:fallback", self.menu));
            self.act(&menu.on_fail);
            return;
        }
        match (&menu.invalid_prompt, failure) {
            (Some(invalid), Failure::Invalid) => self.play(invalid.clone(), PromptKind::Invalid),
            _ => self.play(menu.prompt.clone(), PromptKind::Menu),
        }
    }

    fn play_menu_prompt(&mut self) {
        match self.menus.get(&self.menu) {
            Some(menu) => {
                let prompt = menu.prompt.clone();
                self.play(prompt, PromptKind::Menu);
            }
            None => self.finish(IvrOutput::Hangup),
        }
    }

    fn play(&mut self, prompt: String, kind: PromptKind) {
        self.generation = self.generation.wrapping_add(1);
        self.outputs.push_back(IvrOutput::Play { prompt });
        self.state = State::Prompting(kind);
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
