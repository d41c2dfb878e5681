//! The menu model (`[ivr.menus.NAME]` in the config) and its validation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize};

use crate::Action;

/// Every key a menu option may use: the sixteen DTMF keys.
pub const DTMF_KEYS: &str = "0123456789*#ABCD";

const DEFAULT_TIMEOUT_MS: u64 = 5000;
const DEFAULT_MAX_TRIES: u32 = 3;

/// One menu: a prompt, the keys the caller may press, and what happens when they do not.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Menu {
    /// Prompt played on entry and before every retry.
    pub prompt: String,
    /// Prompt played before the retry after a wrong key (none: straight back to `prompt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_prompt: Option<String>,
    /// How long to wait for a key once `prompt` has finished, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Failed tries (wrong key or timeout) before `on_fail` is taken.
    #[serde(default = "default_max_tries")]
    pub max_tries: u32,
    /// Where the caller goes after `max_tries` failed tries.
    pub on_fail: Action,
    /// Key ("1", "#", "A", ...) to action.
    #[serde(default, deserialize_with = "dtmf_options")]
    pub options: BTreeMap<String, Action>,
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_max_tries() -> u32 {
    DEFAULT_MAX_TRIES
}

/// Whether `key` is exactly one DTMF key (upper-case A-D).
pub(crate) fn is_dtmf_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if DTMF_KEYS.contains(c))
}

fn bad_key_message(key: &str) -> String {
    format!("option key {key:?} is not a single DTMF key (0-9, *, #, A-D)")
}

fn dtmf_options<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Action>, D::Error> {
    let options = BTreeMap::<String, Action>::deserialize(deserializer)?;
    if let Some(key) = options.keys().find(|key| !is_dtmf_key(key)) {
        return Err(serde::de::Error::custom(bad_key_message(key)));
    }
    Ok(options)
}

/// All configured menus by name (`[ivr.menus]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Menus(pub BTreeMap<String, Menu>);

impl Menus {
    /// The menu of this name.
    pub fn get(&self, name: &str) -> Option<&Menu> {
        self.0.get(name)
    }

    /// Problems ops must fix before serving, one sentence each (empty: the menus are usable).
    ///
    /// Checks the start menu, every menu and queue an action names, option keys, empty
    /// prompts, `max_tries = 0`, `timeout_ms = 0`, and `on_fail` chains that loop between
    /// menus without waiting for the caller.
    pub fn validate(&self, start: &str, known_queue: impl Fn(&str) -> bool) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.0.contains_key(start) {
            problems.push(format!("ivr.start: unknown menu {start:?}"));
        }
        for (name, menu) in &self.0 {
            let at = format!("ivr.menus.{name}");
            if menu.prompt.is_empty() {
                problems.push(format!("{at}.prompt: is empty"));
            }
            if menu.invalid_prompt.as_deref() == Some("") {
                problems.push(format!(
                    "{at}.invalid_prompt: is empty (remove it to skip it)"
                ));
            }
            if menu.timeout_ms == 0 {
                problems.push(format!("{at}.timeout_ms: must be more than 0"));
            }
            if menu.max_tries == 0 {
                problems.push(format!("{at}.max_tries: must be at least 1"));
            }
            self.check_action(
                &format!("{at}.on_fail"),
                &menu.on_fail,
                &known_queue,
                &mut problems,
            );
            for (key, action) in &menu.options {
                let key_at = format!("{at}.options.{key:?}");
                if !is_dtmf_key(key) {
                    problems.push(format!("{key_at}: {}", bad_key_message(key)));
                }
                self.check_action(&key_at, action, &known_queue, &mut problems);
            }
        }
        for cycle in self.on_fail_cycles() {
            problems.push(format!(
                "ivr.menus.{}.on_fail: loops through menus {} without end; a silent caller would never leave",
                cycle[0],
                cycle.join(" -> ")
            ));
        }
        problems
    }

    fn check_action(
        &self,
        at: &str,
        action: &Action,
        known_queue: &impl Fn(&str) -> bool,
        problems: &mut Vec<String>,
    ) {
        match action {
            Action::Queue(queue) if !known_queue(queue) => {
                problems.push(format!("{at}: unknown queue {queue:?}"));
            }
            Action::Menu(menu) if !self.0.contains_key(menu) => {
                problems.push(format!("{at}: unknown menu {menu:?}"));
            }
            _ => {}
        }
    }

    /// Each loop of `on_fail = "menu:..."` links once, starting at its smallest name, closed.
    fn on_fail_cycles(&self) -> Vec<Vec<String>> {
        let mut cycles = Vec::new();
        let mut reported = BTreeSet::new();
        for start in self.0.keys() {
            let mut chain = vec![start.as_str()];
            let mut current = start.as_str();
            while let Some(Action::Menu(next)) = self.0.get(current).map(|menu| &menu.on_fail) {
                if let Some(at) = chain.iter().position(|name| name == next) {
                    let members = &chain[at..];
                    let first = members.iter().min().copied().unwrap_or(next.as_str());
                    if reported.insert(first) {
                        let from = members.iter().position(|name| *name == first).unwrap_or(0);
                        let mut cycle: Vec<String> = members[from..]
                            .iter()
                            .chain(&members[..from])
                            .map(|name| (*name).to_owned())
                            .collect();
                        cycle.push(first.to_owned());
                        cycles.push(cycle);
                    }
                    break;
                }
                if !self.0.contains_key(next.as_str()) {
                    break;
                }
                chain.push(next);
                current = next;
            }
        }
        cycles
    }

    /// The first `menu:NAME` action naming a menu that does not exist, if any.
    pub(crate) fn first_unknown_menu(&self) -> Option<&str> {
        self.0
            .values()
            .flat_map(|menu| std::iter::once(&menu.on_fail).chain(menu.options.values()))
            .find_map(|action| match action {
                Action::Menu(name) if !self.0.contains_key(name) => Some(name.as_str()),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = include_str!("../../config/demo.toml");

    fn demo_menus() -> Menus {
        let config: toml::Table = toml::from_str(DEMO).expect("demo config is valid toml");
        let menus = config
            .get("ivr")
            .and_then(|ivr| ivr.get("menus"))
            .expect("demo config has [ivr.menus]")
            .clone();
        menus.try_into().expect("demo menus deserialize")
    }

    fn parse(text: &str) -> Result<Menu, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn demo_config_menus_deserialize_as_written() {
        let menus = demo_menus();
        let main = menus.get("main").expect("main menu");
        assert_eq!(main.prompt, "greeting");
        assert_eq!(main.invalid_prompt.as_deref(), Some("invalid"));
        assert_eq!(main.timeout_ms, 5000);
        assert_eq!(main.max_tries, 3);
        assert_eq!(main.on_fail, Action::Queue("enquiries".into()));
        assert_eq!(
            main.options.get("1"),
            Some(&Action::Queue("appointments".into()))
        );
        assert_eq!(main.options.get("9"), Some(&Action::Queue("urgent".into())));
        assert_eq!(main.options.len(), 4);
    }

    #[test]
    fn demo_config_menus_validate_clean() {
        let queues = ["appointments", "enquiries", "urgent"];
        let problems = demo_menus().validate("main", |q| queues.contains(&q));
        assert_eq!(problems, Vec::<String>::new());
    }

    #[test]
    fn defaults_apply_when_omitted() {
        let menu = parse("prompt = \"p\"\non_fail = \"hangup\"").expect("minimal menu");
        assert_eq!(menu.timeout_ms, 5000);
        assert_eq!(menu.max_tries, 3);
        assert_eq!(menu.invalid_prompt, None);
        assert!(menu.options.is_empty());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = parse("prompt = \"p\"\non_fail = \"hangup\"\ntimeout = 3").expect_err("typo");
        assert!(err.to_string().contains("unknown field `timeout`"), "{err}");
    }

    #[test]
    fn bad_option_keys_are_rejected_when_read() {
        for key in ["12", "a", "E", "", "x"] {
            let text =
                format!("prompt = \"p\"\non_fail = \"hangup\"\n[options]\n{key:?} = \"hangup\"");
            let err = parse(&text).expect_err(key);
            assert!(
                err.to_string().contains("is not a single DTMF key"),
                "{key}: {err}"
            );
        }
        let text = "prompt = \"p\"\non_fail = \"hangup\"\n[options]\n\"*\" = \"hangup\"\n\"#\" = \"hangup\"\n\"D\" = \"hangup\"";
        assert_eq!(parse(text).expect("star, hash, D").options.len(), 3);
    }

    #[test]
    fn bad_actions_are_rejected_when_read() {
        let err = parse("prompt = \"p\"\non_fail = \"queue\"").expect_err("no name");
        assert!(
            err.to_string().contains("invalid action \"queue\""),
            "{err}"
        );
    }

    fn menu(on_fail: &str, options: &[(&str, &str)]) -> Menu {
        Menu {
            prompt: "p".into(),
            invalid_prompt: None,
            timeout_ms: 5000,
            max_tries: 3,
            on_fail: on_fail.parse().expect("test action"),
            options: options
                .iter()
                .map(|(k, a)| ((*k).to_owned(), a.parse().expect("test action")))
                .collect(),
        }
    }

    #[test]
    fn validate_reports_every_problem_ops_must_fix() {
        let mut bad = menu(
            "queue:nowhere",
            &[
                ("1", "menu:missing"),
                ("11", "queue:sales"),
                ("2", "menu:ok"),
            ],
        );
        bad.max_tries = 0;
        bad.timeout_ms = 0;
        bad.prompt.clear();
        bad.invalid_prompt = Some(String::new());
        let menus = Menus(BTreeMap::from([
            ("main".to_owned(), bad),
            ("ok".to_owned(), menu("hangup", &[])),
        ]));
        let problems = menus.validate("start", |q| q == "sales");
        let expected = [
            "ivr.start: unknown menu \"start\"",
            "ivr.menus.main.prompt: is empty",
            "ivr.menus.main.invalid_prompt: is empty (remove it to skip it)",
            "ivr.menus.main.timeout_ms: must be more than 0",
            "ivr.menus.main.max_tries: must be at least 1",
            "ivr.menus.main.on_fail: unknown queue \"nowhere\"",
            "ivr.menus.main.options.\"1\": unknown menu \"missing\"",
            "ivr.menus.main.options.\"11\": option key \"11\" is not a single DTMF key (0-9, *, #, A-D)",
        ];
        assert_eq!(problems, expected);
    }

    #[test]
    fn validate_reports_on_fail_loops_once() {
        let menus = Menus(BTreeMap::from([
            ("main".to_owned(), menu("menu:b", &[("1", "queue:q")])),
            ("b".to_owned(), menu("menu:c", &[])),
            ("c".to_owned(), menu("menu:b", &[])),
            ("self".to_owned(), menu("menu:self", &[])),
        ]));
        let problems = menus.validate("main", |_| true);
        assert_eq!(
            problems,
            [
                "ivr.menus.b.on_fail: loops through menus b -> c -> b without end; a silent caller would never leave",
                "ivr.menus.self.on_fail: loops through menus self -> self without end; a silent caller would never leave",
            ]
        );
    }

    #[test]
    fn first_unknown_menu_finds_dangling_references() {
        let menus = Menus(BTreeMap::from([(
            "main".to_owned(),
            menu("hangup", &[("3", "menu:gone")]),
        )]));
        assert_eq!(menus.first_unknown_menu(), Some("gone"));
        assert_eq!(demo_menus().first_unknown_menu(), None);
    }
}
