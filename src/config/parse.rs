//! TOML text → [`Config`], with every syntax and type error as a positioned [`Problem`].

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::{
    Agent, Callback, Clinic, Config, Crm, Desk, Http, Ivr, Problem, Qa, Queue, Recording, Sip,
    Storage, User,
};

/// The top-level sections, and whether each is required.
const SECTIONS: [(&str, bool); 13] = [
    ("clinic", true),
    ("sip", true),
    ("http", false),
    ("storage", false),
    ("agents", true),
    ("queues", true),
    ("ivr", true),
    ("recording", false),
    ("qa", false),
    ("users", false),
    ("callback", false),
    ("desk", false),
    ("crm", false),
];

/// One step of a path into the document: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(key: &str) -> Self {
        Seg::Key(key.to_owned())
    }
}

impl From<usize> for Seg {
    fn from(index: usize) -> Self {
        Seg::Index(index)
    }
}

/// Turns byte offsets and document paths into `FILE:LINE:COL` positions.
pub(super) struct Locator<'i> {
    file: String,
    text: &'i str,
    doc: Spanned<DeTable<'i>>,
}

impl Locator<'_> {
    /// A problem at the value `path` leads to (or the deepest part of it that exists).
    pub(super) fn problem(&self, path: &[Seg], message: String) -> Problem {
        let mut span = None;
        let mut table = Some(self.doc.get_ref());
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        for seg in path {
            let next = match (seg, table, value) {
                (Seg::Key(key), Some(t), _) => t.get(key.as_str()),
                (Seg::Index(i), _, Some(v)) => v.get_ref().as_array().and_then(|a| a.get(*i)),
                _ => None,
            };
            let Some(next) = next else { break };
            span = Some(next.span());
            value = Some(next);
            table = next.get_ref().as_table();
        }
        self.at(span.map_or(0, |s| s.start), message)
    }

    fn at(&self, offset: usize, message: String) -> Problem {
        let (line, col) = line_col(self.text, offset);
        Problem {
            file: self.file.clone(),
            line,
            col,
            message,
        }
    }

    fn error(&self, error: &toml::de::Error, fallback: &Range<usize>) -> Problem {
        let start = error.span().map_or(fallback.start, |s| s.start);
        // toml messages may carry a second line of context; the first says what is wrong.
        let message = error.message().lines().next().unwrap_or("invalid value");
        self.at(start, message.to_owned())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Parses the text; on failure returns every syntax error, or every type error it can find.
pub(super) fn parse<'i>(text: &'i str, file: &str) -> Result<(Config, Locator<'i>), Vec<Problem>> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    let locator = Locator {
        file: file.to_owned(),
        text,
        doc,
    };
    if !errors.is_empty() {
        return Err(errors.iter().map(|e| locator.error(e, &(0..0))).collect());
    }
    let whole = Config::deserialize_from(toml::de::Deserializer::from(locator.doc.clone()));
    match whole {
        Ok(config) => Ok((config, locator)),
        Err(error) => {
            let mut problems = section_problems(&locator);
            if problems.is_empty() {
                problems.push(locator.error(&error, &(0..0)));
            }
            Err(problems)
        }
    }
}

impl Config {
    fn deserialize_from(de: toml::de::Deserializer<'_>) -> Result<Config, toml::de::Error> {
        serde::Deserialize::deserialize(de)
    }
}

/// Deserializes each section (and each array entry and menu) on its own, so one bad
/// section does not hide the problems of the others.
fn section_problems(locator: &Locator<'_>) -> Vec<Problem> {
    let doc = locator.doc.get_ref();
    let mut problems = Vec::new();
    for (key, value) in doc.iter() {
        let name: &str = key.get_ref();
        let mut out = |p: Option<Problem>| problems.extend(p);
        match name {
            "clinic" => out(check::<Clinic>(locator, value)),
            "sip" => out(check::<Sip>(locator, value)),
            "http" => out(check::<Http>(locator, value)),
            "storage" => out(check::<Storage>(locator, value)),
            "recording" => out(check::<Recording>(locator, value)),
            "qa" => out(check::<Qa>(locator, value)),
            "callback" => out(check::<Callback>(locator, value)),
            "desk" => out(check::<Desk>(locator, value)),
            "crm" => out(check::<Crm>(locator, value)),
            "agents" => problems.extend(check_array::<Agent>(locator, value)),
            "queues" => problems.extend(check_array::<Queue>(locator, value)),
            "users" => problems.extend(check_array::<User>(locator, value)),
            "ivr" => problems.extend(check_ivr(locator, value)),
            _ => {
                let known: Vec<String> = SECTIONS.iter().map(|(s, _)| format!("`{s}`")).collect();
                problems.push(locator.at(
                    key.span().start,
                    format!(
                        "unknown section `{name}`, expected one of {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    for (section, required) in SECTIONS {
        if required && doc.get(section).is_none() {
            let header = if matches!(section, "agents" | "queues") {
                format!("[[{section}]]")
            } else {
                format!("[{section}]")
            };
            problems.push(locator.at(0, format!("missing section {header}")));
        }
    }
    problems.sort_by_key(|p| (p.line, p.col));
    problems
}

fn check<T: DeserializeOwned>(
    locator: &Locator<'_>,
    value: &Spanned<DeValue<'_>>,
) -> Option<Problem> {
    let mut owned = value.clone();
    owned.get_mut().make_owned();
    T::deserialize(ValueDeserializer::from(owned))
        .err()
        .map(|e| locator.error(&e, &value.span()))
}

fn check_array<T: DeserializeOwned>(
    locator: &Locator<'_>,
    value: &Spanned<DeValue<'_>>,
) -> Vec<Problem> {
    match value.get_ref().as_array() {
        Some(entries) => entries
            .iter()
            .filter_map(|entry| check::<T>(locator, entry))
            .collect(),
        None => check::<Vec<T>>(locator, value).into_iter().collect(),
    }
}

fn check_ivr(locator: &Locator<'_>, value: &Spanned<DeValue<'_>>) -> Vec<Problem> {
    let Some(whole) = check::<Ivr>(locator, value) else {
        return Vec::new();
    };
    let menus = value
        .get_ref()
        .as_table()
        .and_then(|t| t.get("menus"))
        .and_then(|m| m.get_ref().as_table());
    let per_menu: Vec<Problem> = menus
        .into_iter()
        .flat_map(|menus| menus.iter())
        .filter_map(|(_, menu)| check::<ivr::Menu>(locator, menu))
        .collect();
    if per_menu.is_empty() {
        vec![whole]
    } else {
        // `whole` is one of the menu errors; check the other [ivr] keys again without the menus.
        let mut problems = per_menu;
        if let Some(table) = value.get_ref().as_table() {
            let mut rest = table.clone();
            if let Some(menus) = rest.get_mut("menus") {
                *menus = Spanned::new(menus.span(), DeValue::Table(DeTable::new()));
            }
            let rest = Spanned::new(value.span(), DeValue::Table(rest));
            problems.extend(check::<Ivr>(locator, &rest));
        }
        problems
    }
}
