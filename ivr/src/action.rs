//! What a menu option or a failed menu leads to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Where a caller goes next: a queue, another menu, or the end of the call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Hand the caller to the ACD queue of this name (`"queue:NAME"`).
    Queue(String),
    /// Enter the menu of this name with a fresh try count (`"menu:NAME"`).
    Menu(String),
    /// End the call (`"hangup"`).
    Hangup,
}

impl FromStr for Action {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidAction(s.to_owned());
        if s == "hangup" {
            return Ok(Action::Hangup);
        }
        let (kind, name) = s.split_once(':').ok_or_else(invalid)?;
        if name.is_empty() || name.trim() != name || name.contains(':') {
            return Err(invalid());
        }
        match kind {
            "queue" => Ok(Action::Queue(name.to_owned())),
            "menu" => Ok(Action::Menu(name.to_owned())),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Queue(name) => write!(f, "queue:{name}"),
            Action::Menu(name) => write!(f, "menu:{name}"),
            Action::Hangup => f.write_str("hangup"),
        }
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!("queue:urgent".parse(), Ok(Action::Queue("urgent".into())));
        assert_eq!("menu:hours".parse(), Ok(Action::Menu("hours".into())));
        assert_eq!("hangup".parse(), Ok(Action::Hangup));
    }

    #[test]
    fn rejects_everything_else_with_a_helpful_message() {
        for bad in [
            "",
            "queue",
            "queue:",
            "menu:",
            "Queue:x",
            "hangup:now",
            "transfer:1001",
            "queue: x",
            "queue:a:b",
            " hangup",
        ] {
            let err = bad.parse::<Action>().expect_err(bad);
            assert_eq!(err, Error::InvalidAction(bad.to_owned()));
            assert!(err.to_string().contains("\"queue:NAME\""), "{err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["queue:enquiries", "menu:main", "hangup"] {
            let action: Action = text.parse().expect("valid action");
            assert_eq!(action.to_string(), text);
        }
    }

    #[test]
    fn deserializes_from_a_string_and_reports_bad_ones() {
        #[derive(Deserialize, Debug)]
        struct Holder {
            on_fail: Action,
        }
        let ok: Holder = toml::from_str("on_fail = \"queue:enquiries\"").expect("valid toml");
        assert_eq!(ok.on_fail, Action::Queue("enquiries".into()));
        let err = toml::from_str::<Holder>("on_fail = \"voicemail\"").expect_err("invalid action");
        assert!(
            err.to_string().contains("invalid action \"voicemail\""),
            "{err}"
        );
    }
}
