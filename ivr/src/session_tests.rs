//! Every path through the demo clinic menu, in simulated time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::Menu;

fn action(text: &str) -> Action {
    text.parse().expect("test action")
}

/// The demo clinic's main menu, plus "3" to an opening-hours sub-menu with its own tries.
fn clinic() -> Arc<Menus> {
    let main = Menu {
        prompt: "greeting".into(),
        invalid_prompt: Some("invalid".into()),
        timeout_ms: 5000,
        max_tries: 3,
        on_fail: action("queue:enquiries"),
        options: BTreeMap::from([
            ("1".into(), action("queue:appointments")),
            ("2".into(), action("queue:enquiries")),
            ("9".into(), action("queue:urgent")),
            ("0".into(), action("queue:enquiries")),
            ("3".into(), action("menu:hours")),
            ("#".into(), action("hangup")),
        ]),
    };
    let hours = Menu {
        prompt: "hours".into(),
        invalid_prompt: None,
        timeout_ms: 2000,
        max_tries: 3,
        on_fail: action("hangup"),
        options: BTreeMap::from([
            ("*".into(), action("menu:main")),
            ("A".into(), action("queue:appointments")),
        ]),
    };
    Arc::new(Menus(BTreeMap::from([
        ("main".into(), main),
        ("hours".into(), hours),
    ])))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn play(prompt: &str) -> IvrOutput {
    IvrOutput::Play {
        prompt: prompt.into(),
    }
}

fn route(queue: &str) -> IvrOutput {
    IvrOutput::Route {
        queue: queue.into(),
    }
}

fn drain(session: &mut IvrSession) -> Vec<IvrOutput> {
    std::iter::from_fn(|| session.poll_output()).collect()
}

fn started(t0: Instant) -> IvrSession {
    let mut session = IvrSession::new(clinic(), "main").expect("main exists");
    session.start(t0);
    assert_eq!(drain(&mut session), [play("greeting")]);
    session
}

/// Lets the current prompt finish at `at`, then lets the digit timeout expire; returns the outputs.
fn silent_try(session: &mut IvrSession, at: Instant) -> Vec<IvrOutput> {
    session.handle_prompt_finished(at);
    let deadline = session.poll_timeout().expect("digit timeout running");
    session.handle_timeout(deadline);
    drain(session)
}

#[test]
fn no_timer_runs_while_the_greeting_plays() {
    let t0 = Instant::now();
    let mut session = started(t0);
    assert_eq!(session.poll_timeout(), None);
    session.handle_timeout(t0 + ms(60_000));
    assert_eq!(drain(&mut session), []);
    assert!(session.path().is_empty());
}

#[test]
fn digit_during_prompt_barges_in_and_routes() {
    let t0 = Instant::now();
    let mut session = started(t0);
    session.handle_digit(t0 + ms(1200), '1');
    assert_eq!(
        drain(&mut session),
        [IvrOutput::StopPrompt, route("appointments")]
    );
    assert_eq!(session.path(), ["main:1"]);
    assert!(session.is_done());
    assert_eq!(session.poll_timeout(), None);
}

#[test]
fn digit_after_prompt_routes_without_stop() {
    let t0 = Instant::now();
    let mut session = started(t0);
    session.handle_prompt_finished(t0 + ms(3000));
    assert_eq!(session.poll_timeout(), Some(t0 + ms(8000)));
    session.handle_digit(t0 + ms(4000), '9');
    assert_eq!(drain(&mut session), [route("urgent")]);
    assert_eq!(session.path(), ["main:9"]);
    assert_eq!(session.poll_timeout(), None);
    session.handle_timeout(t0 + ms(8000));
    assert_eq!(drain(&mut session), []);
}

#[test]
fn three_invalid_digits_fall_back_to_enquiries() {
    let t0 = Instant::now();
    let mut session = started(t0);
    // 1st: wrong key during the greeting.
    session.handle_digit(t0 + ms(500), '5');
    assert_eq!(
        drain(&mut session),
        [IvrOutput::StopPrompt, play("invalid")]
    );
    // 2nd: wrong key during the invalid prompt also counts.
    session.handle_digit(t0 + ms(900), '6');
    assert_eq!(
        drain(&mut session),
        [IvrOutput::StopPrompt, play("invalid")]
    );
    session.handle_prompt_finished(t0 + ms(2000));
    assert_eq!(drain(&mut session), [play("greeting")]);
    assert_eq!(
        session.poll_timeout(),
        None,
        "timer waits for the greeting to end"
    );
    session.handle_prompt_finished(t0 + ms(6000));
    // 3rd: wrong key while waiting.
    session.handle_digit(t0 + ms(7000), '7');
    assert_eq!(drain(&mut session), [route("enquiries")]);
    assert_eq!(
        session.path(),
        [
            "main:invalid",
            "main:invalid",
            "main:invalid",
            "main:fallback"
        ]
    );
    assert!(session.is_done());
}

#[test]
fn three_timeouts_fall_back_to_enquiries() {
    let t0 = Instant::now();
    let mut session = started(t0);
    session.handle_prompt_finished(t0 + ms(4000));
    let deadline = t0 + ms(9000);
    assert_eq!(session.poll_timeout(), Some(deadline));
    session.handle_timeout(deadline - ms(1));
    assert_eq!(drain(&mut session), [], "not due yet");
    session.handle_timeout(deadline);
    // A timeout replays the menu prompt, not the invalid prompt.
    assert_eq!(drain(&mut session), [play("greeting")]);
    assert_eq!(session.poll_timeout(), None);
    assert_eq!(
        silent_try(&mut session, t0 + ms(13_000)),
        [play("greeting")]
    );
    assert_eq!(
        silent_try(&mut session, t0 + ms(22_000)),
        [route("enquiries")]
    );
    assert_eq!(
        session.path(),
        [
            "main:timeout",
            "main:timeout",
            "main:timeout",
            "main:fallback"
        ]
    );
}

#[test]
fn mixed_failures_then_a_valid_key_routes() {
    let t0 = Instant::now();
    let mut session = started(t0);
    session.handle_digit(t0 + ms(100), '4');
    session.handle_prompt_finished(t0 + ms(1500)); // invalid prompt done
    assert_eq!(
        drain(&mut session),
        [IvrOutput::StopPrompt, play("invalid"), play("greeting")]
    );
    assert_eq!(silent_try(&mut session, t0 + ms(5500)), [play("greeting")]);
    session.handle_digit(t0 + ms(6000), '2');
    assert_eq!(
        drain(&mut session),
        [IvrOutput::StopPrompt, route("enquiries")]
    );
    assert_eq!(session.path(), ["main:invalid", "main:timeout", "main:2"]);
}

#[test]
fn mixed_failures_count_together_toward_fallback() {
    let t0 = Instant::now();
    let mut session = started(t0);
    assert_eq!(silent_try(&mut session, t0 + ms(4000)), [play("greeting")]);
    session.handle_digit(t0 + ms(10_000), 'B');
    assert_eq!(
        drain(&mut session),
        [IvrOutput::StopPrompt, play("invalid")]
    );
    session.handle_prompt_finished(t0 + ms(11_000));
    assert_eq!(drain(&mut session), [play("greeting")]);
    assert_eq!(
        silent_try(&mut session, t0 + ms(15_000)),
        [route("enquiries")]
    );
    assert_eq!(
        session.path(),
        [
            "main:timeout",
            "main:invalid",
            "main:timeout",
            "main:fallback"
        ]
    );
}

#[test]
fn sub_menu_has_its_own_tries_and_going_back_resets_them() {
    let t0 = Instant::now();
    let mut session = started(t0);
    // Two failures in main: one more would fall back.
    session.handle_digit(t0 + ms(100), '5');
    session.handle_digit(t0 + ms(200), '5');
    drain(&mut session);
    session.handle_digit(t0 + ms(300), '3');
    assert_eq!(drain(&mut session), [IvrOutput::StopPrompt, play("hours")]);
    assert_eq!(session.current_menu(), "hours");
    // Hours has no invalid prompt: a wrong key goes straight back to its prompt.
    session.handle_digit(t0 + ms(400), '1');
    assert_eq!(drain(&mut session), [IvrOutput::StopPrompt, play("hours")]);
    // Hours' own timeout (2 s) applies.
    session.handle_prompt_finished(t0 + ms(3000));
    assert_eq!(session.poll_timeout(), Some(t0 + ms(5000)));
    session.handle_timeout(t0 + ms(5000));
    assert_eq!(drain(&mut session), [play("hours")]);
    // Back to main with "*": tries reset, so two more failures do not fall back.
    session.handle_digit(t0 + ms(6000), '*');
    assert_eq!(
        drain(&mut session),
        [IvrOutput::StopPrompt, play("greeting")]
    );
    session.handle_digit(t0 + ms(6100), '8');
    session.handle_digit(t0 + ms(6200), '8');
    assert_eq!(
        drain(&mut session),
        [
            IvrOutput::StopPrompt,
            play("invalid"),
            IvrOutput::StopPrompt,
            play("invalid")
        ]
    );
    assert!(!session.is_done());
    session.handle_digit(t0 + ms(6300), '0');
    assert_eq!(
        drain(&mut session),
        [IvrOutput::StopPrompt, route("enquiries")]
    );
    assert_eq!(
        session.path(),
        [
            "main:invalid",
            "main:invalid",
            "main:3",
            "hours:invalid",
            "hours:timeout",
            "hours:*",
            "main:invalid",
            "main:invalid",
            "main:0",
        ]
    );
}

#[test]
fn sub_menu_fallback_hangs_up() {
    let t0 = Instant::now();
    let mut session = started(t0);
    session.handle_digit(t0, '3');
    drain(&mut session);
    for _ in 0..3 {
        session.handle_digit(t0, '9');
    }
    assert_eq!(
        drain(&mut session),
        [
            IvrOutput::StopPrompt,
            play("hours"),
            IvrOutput::StopPrompt,
            play("hours"),
            IvrOutput::StopPrompt,
            IvrOutput::Hangup,
        ]
    );
    assert_eq!(
        session.path(),
        [
            "main:3",
            "hours:invalid",
            "hours:invalid",
            "hours:invalid",
            "hours:fallback"
        ]
    );
}

#[test]
fn stale_prompt_finished_is_ignored() {
    let t0 = Instant::now();
    let mut session = started(t0);
    let greeting = session.prompt_generation();
    session.handle_digit(t0 + ms(500), '5');
    assert_eq!(
        drain(&mut session),
        [IvrOutput::StopPrompt, play("invalid")]
    );
    let invalid = session.prompt_generation();
    assert_ne!(greeting, invalid);
    // The driver reports the stopped greeting late: it must not cut the invalid prompt short.
    session.handle_prompt_finished_of(t0 + ms(600), greeting);
    assert_eq!(drain(&mut session), []);
    assert_eq!(session.poll_timeout(), None);
    session.handle_prompt_finished_of(t0 + ms(2000), invalid);
    assert_eq!(drain(&mut session), [play("greeting")]);
    session.handle_prompt_finished(t0 + ms(6000));
    assert_eq!(session.poll_timeout(), Some(t0 + ms(11_000)));
    // A repeated finish must not restart (push back) the running timer.
    session.handle_prompt_finished(t0 + ms(9000));
    session.handle_prompt_finished_of(t0 + ms(9000), invalid);
    assert_eq!(session.poll_timeout(), Some(t0 + ms(11_000)));
    assert_eq!(drain(&mut session), []);
}

#[test]
fn prompt_finished_after_routing_is_ignored() {
    let t0 = Instant::now();
    let mut session = started(t0);
    session.handle_digit(t0 + ms(100), '1');
    drain(&mut session);
    session.handle_prompt_finished(t0 + ms(200));
    assert_eq!(session.poll_timeout(), None);
    assert_eq!(drain(&mut session), []);
}

#[test]
fn digits_after_routing_are_ignored() {
    let t0 = Instant::now();
    let mut session = started(t0);
    session.handle_digit(t0 + ms(100), '1');
    assert_eq!(
        drain(&mut session),
        [IvrOutput::StopPrompt, route("appointments")]
    );
    for digit in ['2', '5', '#', '3'] {
        session.handle_digit(t0 + ms(200), digit);
    }
    session.handle_timeout(t0 + ms(100_000));
    assert_eq!(drain(&mut session), []);
    assert_eq!(session.path(), ["main:1"]);
}

#[test]
fn hangup_option_ends_the_call() {
    let t0 = Instant::now();
    let mut session = started(t0);
    session.handle_digit(t0, '#');
    assert_eq!(
        drain(&mut session),
        [IvrOutput::StopPrompt, IvrOutput::Hangup]
    );
    assert!(session.is_done());
}

#[test]
fn non_dtmf_input_and_input_before_start_are_ignored() {
    let t0 = Instant::now();
    let mut session = IvrSession::new(clinic(), "main").expect("main exists");
    session.handle_digit(t0, '1');
    session.handle_prompt_finished(t0);
    assert_eq!(drain(&mut session), []);
    session.start(t0);
    session.start(t0);
    assert_eq!(drain(&mut session), [play("greeting")], "start plays once");
    session.handle_digit(t0, 'x');
    session.handle_digit(t0, ' ');
    assert_eq!(drain(&mut session), []);
    assert!(session.path().is_empty());
}

#[test]
fn lower_case_letter_keys_match_upper_case_options() {
    let t0 = Instant::now();
    let mut session = started(t0);
    session.handle_digit(t0, '3');
    drain(&mut session);
    session.handle_digit(t0, 'a');
    assert_eq!(
        drain(&mut session),
        [IvrOutput::StopPrompt, route("appointments")]
    );
    assert_eq!(session.path(), ["main:3", "hours:A"]);
}

#[test]
fn time_going_backwards_does_not_shorten_the_timeout() {
    let t0 = Instant::now();
    let mut session = started(t0);
    session.handle_digit(t0 + ms(10_000), '5'); // the driver has seen t0 + 10 s
    session.handle_prompt_finished(t0 + ms(11_000));
    drain(&mut session);
    session.handle_prompt_finished(t0 + ms(1_000)); // stale clock
    assert_eq!(session.poll_timeout(), Some(t0 + ms(16_000)));
}

#[test]
fn max_tries_one_falls_back_at_the_first_failure() {
    let mut menus = (*clinic()).clone();
    if let Some(main) = menus.0.get_mut("main") {
        main.max_tries = 1;
    }
    let t0 = Instant::now();
    let mut session = IvrSession::new(Arc::new(menus), "main").expect("main exists");
    session.start(t0);
    assert_eq!(
        silent_try(&mut session, t0),
        [play("greeting"), route("enquiries")]
    );
    assert_eq!(session.path(), ["main:timeout", "main:fallback"]);
}

#[test]
fn new_rejects_unknown_menus() {
    assert_eq!(
        IvrSession::new(clinic(), "night").err(),
        Some(Error::UnknownMenu("night".into()))
    );
    let mut menus = (*clinic()).clone();
    if let Some(hours) = menus.0.get_mut("hours") {
        hours.on_fail = action("menu:holidays");
    }
    assert_eq!(
        IvrSession::new(Arc::new(menus), "main").err(),
        Some(Error::UnknownMenu("holidays".into()))
    );
}
