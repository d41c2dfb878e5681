//! Semantic checks that serde cannot make: references between sections, ranges, files.

use std::collections::HashSet;

use super::parse::Seg;
use super::{BUILTIN_PROMPTS, Config, Digest, Role};

/// A semantic problem at a path into the document (located by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Issue {
    pub(super) path: Vec<Seg>,
    pub(super) message: String,
}

/// Collects issues; `at(path, message)` records one.
#[derive(Default)]
struct Issues(Vec<Issue>);

impl Issues {
    fn at<const N: usize>(&mut self, path: [Seg; N], message: String) {
        self.0.push(Issue {
            path: path.into(),
            message,
        });
    }
}

fn k(key: &str) -> Seg {
    Seg::from(key)
}

fn i(index: usize) -> Seg {
    Seg::from(index)
}

/// Every semantic problem of a parsed config, in document order of sections.
pub(super) fn validate(config: &Config) -> Vec<Issue> {
    let mut issues = Issues::default();
    clinic(config, &mut issues);
    sip(config, &mut issues);
    agents(config, &mut issues);
    queues(config, &mut issues);
    ivr(config, &mut issues);
    callback(config, &mut issues);
    if config.recording.header_interval_ms == 0 {
        issues.at(
            [k("recording"), k("header_interval_ms")],
            "header_interval_ms must be above 0".into(),
        );
    }
    users(config, &mut issues);
    desk(config, &mut issues);
    crm(config, &mut issues);
    https(config, &mut issues);
    issues.0
}

fn clinic(config: &Config, issues: &mut Issues) {
    if config.clinic.name.trim().is_empty() {
        issues.at([k("clinic"), k("name")], "clinic name is empty".into());
    }
}

fn sip(config: &Config, issues: &mut Issues) {
    let sip = &config.sip;
    if sip.udp.is_none() && sip.tcp.is_none() {
        issues.at([k("sip")], "no SIP listener: set udp, tcp or both".into());
    }
    if sip.advertise.is_unspecified() {
        issues.at(
            [k("sip"), k("advertise")],
            format!(
                "advertise {} is not an address phones can reach",
                sip.advertise
            ),
        );
    }
    let ports = sip.rtp_ports;
    let at = [k("sip"), k("rtp_ports")];
    if ports.last < ports.first {
        issues.at(
            at,
            format!(
                "rtp_ports [{}, {}] is reversed: write [first, last]",
                ports.first, ports.last
            ),
        );
    } else if ports.len() < 2 {
        issues.at(
            at,
            format!(
                "rtp_ports holds {} port; a call needs one per leg, so at least 2",
                ports.len()
            ),
        );
    }
    if ports.first == 0 || ports.last == 0 {
        issues.at(
            [k("sip"), k("rtp_ports")],
            "rtp_ports must not include port 0".into(),
        );
    }
    if sip.codecs.is_empty() {
        issues.at(
            [k("sip"), k("codecs")],
            "codecs is empty: list \"PCMU\", \"PCMA\" or both".into(),
        );
    }
    let mut seen = HashSet::new();
    for (n, codec) in sip.codecs.iter().enumerate() {
        if !seen.insert(codec) {
            issues.at(
                [k("sip"), k("codecs"), i(n)],
                format!("codec {} is listed twice", codec.name()),
            );
        }
    }
    digest_list(&sip.digest, issues, [k("sip"), k("digest")], "[sip] digest");
    if sip.realm.trim().is_empty() {
        issues.at([k("sip"), k("realm")], "realm is empty".into());
    }
    let room = ports.calls();
    if sip.max_calls > room && ports.len() >= 2 {
        issues.at(
            [k("sip"), k("max_calls")],
            format!(
                "max_calls {} is more than rtp_ports holds: {} ports carry {room} calls (two ports a call); widen rtp_ports or lower max_calls",
                sip.max_calls,
                ports.len()
            ),
        );
    }
    for (key, value) in [
        ("tcp_max_connections", sip.tcp_max_connections),
        ("tcp_max_per_source", sip.tcp_max_per_source),
    ] {
        if value == 0 {
            issues.at(
                [k("sip"), k(key)],
                format!("{key} is 0: no phone could connect over TCP; use 1 or more"),
            );
        }
    }
    if sip.retry_after_s == 0 {
        issues.at(
            [k("sip"), k("retry_after_s")],
            "retry_after_s is 0: a refused phone would retry at once; use 1 or more".into(),
        );
    }
}

/// Whether an agent id can be a SIP user and a login: letters, digits, `.`, `-`, `_`.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn agents(config: &Config, issues: &mut Issues) {
    let mut ids = HashSet::new();
    for (n, agent) in config.agents.iter().enumerate() {
        if !valid_id(&agent.id) {
            issues.at(
                [k("agents"), i(n), k("id")],
                format!(
                    "agent id `{}` must be letters, digits, `.`, `-` or `_`",
                    agent.id
                ),
            );
        } else if !ids.insert(agent.id.as_str()) {
            issues.at(
                [k("agents"), i(n), k("id")],
                format!("duplicate agent id `{}`", agent.id),
            );
        }
        if agent.password.is_empty() {
            issues.at(
                [k("agents"), i(n), k("password")],
                format!("agent `{}` has an empty password", agent.id),
            );
        }
        if let Some(digest) = &agent.digest {
            let what = format!("agent `{}`'s digest", agent.id);
            digest_list(digest, issues, [k("agents"), i(n), k("digest")], &what);
        }
        let mut queues = HashSet::new();
        for (q, queue) in agent.queues.iter().enumerate() {
            let at = [k("agents"), i(n), k("queues"), i(q)];
            if config.queue(queue).is_none() {
                issues.at(
                    at,
                    format!("agent `{}` is in unknown queue `{queue}`", agent.id),
                );
            } else if !queues.insert(queue.as_str()) {
                issues.at(
                    at,
                    format!("agent `{}` lists queue `{queue}` twice", agent.id),
                );
            }
        }
        for (queue, level) in &agent.levels {
            let at = [k("agents"), i(n), k("levels"), k(queue)];
            if !agent.queues.contains(queue) {
                issues.at(
                    at,
                    format!(
                        "agent `{}` has a level in `{queue}`, a queue it does not serve",
                        agent.id
                    ),
                );
            } else if *level == 0 {
                issues.at(at, "levels start at 1 (1 rings first)".into());
            }
        }
    }
}

/// A digest list names at least one algorithm, each once.
fn digest_list<const N: usize>(list: &[Digest], issues: &mut Issues, at: [Seg; N], what: &str) {
    if list.is_empty() {
        issues.at(
            at.clone(),
            format!("{what} is empty: list \"MD5\", \"SHA-256\" or both, preferred first"),
        );
    }
    let mut seen = HashSet::new();
    if list.iter().any(|d| !seen.insert(d)) {
        issues.at(at, format!("{what} lists an algorithm twice"));
    }
}

fn known_prompt(config: &Config, name: &str) -> bool {
    BUILTIN_PROMPTS.contains(&name) || config.ivr.prompts.contains_key(name)
}

fn unknown_prompt(name: &str) -> String {
    format!(
        "unknown prompt `{name}`: not built in ({}) and not in [ivr.prompts]",
        BUILTIN_PROMPTS.join(", ")
    )
}

fn queues(config: &Config, issues: &mut Issues) {
    let mut names = HashSet::new();
    for (n, queue) in config.queues.iter().enumerate() {
        if queue.name.trim().is_empty() {
            issues.at([k("queues"), i(n), k("name")], "queue name is empty".into());
        } else if !names.insert(queue.name.as_str()) {
            issues.at(
                [k("queues"), i(n), k("name")],
                format!("duplicate queue name `{}`", queue.name),
            );
        }
        if queue.answer_within_rings == 0 {
            issues.at(
                [k("queues"), i(n), k("answer_within_rings")],
                "answer_within_rings must be at least 1".into(),
            );
        }
        if queue.ring_cycle_ms == 0 {
            issues.at(
                [k("queues"), i(n), k("ring_cycle_ms")],
                "ring_cycle_ms must be above 0".into(),
            );
        }
        if let Some(first) = queue.escalation.first()
            && first.after_ms != 0
        {
            issues.at(
                [k("queues"), i(n), k("escalation"), i(0), k("after_ms")],
                format!(
                    "the first escalation step must have after_ms = 0: for the first {} ms \
                     no agent could ring for a caller",
                    first.after_ms
                ),
            );
        }
        let mut previous: Option<u64> = None;
        for (s, step) in queue.escalation.iter().enumerate() {
            if previous.is_some_and(|p| step.after_ms <= p) {
                issues.at(
                    [k("queues"), i(n), k("escalation"), i(s), k("after_ms")],
                    "escalation steps must be in order of after_ms, each later than the last"
                        .into(),
                );
            }
            if step.max_level == 0 {
                issues.at(
                    [k("queues"), i(n), k("escalation"), i(s), k("max_level")],
                    "max_level must be at least 1 (levels start at 1)".into(),
                );
            }
            previous = Some(step.after_ms);
        }
        match (queue.overflow_target(), &queue.overflow) {
            (None, Some(bad)) => issues.at(
                [k("queues"), i(n), k("overflow")],
                format!(
                    "overflow `{bad}` must be \"queue:NAME\", \"callback\", \"voicemail\" or \"hangup\""
                ),
            ),
            (Some(acd::Overflow::Queue(to)), _) if to == queue.name => issues.at(
                [k("queues"), i(n), k("overflow")],
                format!("queue `{}` cannot overflow into itself", queue.name),
            ),
            (Some(acd::Overflow::Queue(to)), _) if config.queue(&to).is_none() => issues.at(
                [k("queues"), i(n), k("overflow")],
                format!("overflow into unknown queue `{to}`"),
            ),
            (_, None) if queue.has_exit_rules() => issues.at(
                [k("queues"), i(n), k("name")],
                format!(
                    "queue `{}` has max_wait_ms, max_callers or leave_when but no overflow: say where callers go (\"queue:NAME\" or \"hangup\")",
                    queue.name
                ),
            ),
            _ => {}
        }
        for (name, key) in [
            ("exit_key", &queue.exit_key),
            ("callback_key", &queue.callback_key),
        ] {
            if let Some(key) = key
                && !one_key(key)
            {
                issues.at(
                    [k("queues"), i(n), k(name)],
                    format!("{name} `{key}` must be one key: 0-9, * or #"),
                );
            }
        }
        if queue.callback_key.is_some() && queue.callback_key == queue.exit_key {
            issues.at(
                [k("queues"), i(n), k("callback_key")],
                "callback_key is the queue's exit_key too: give them different keys".into(),
            );
        }
        if config.callback.is_none() {
            if queue.callback_key.is_some() {
                issues.at(
                    [k("queues"), i(n), k("callback_key")],
                    "callback_key needs a [callback] section: the trunk callbacks dial through"
                        .into(),
                );
            }
            if let Some(how @ ("callback" | "voicemail")) = queue.overflow.as_deref() {
                issues.at(
                    [k("queues"), i(n), k("overflow")],
                    format!(
                        "overflow \"{how}\" needs a [callback] section: the trunk callbacks dial through"
                    ),
                );
            }
        }
        if queue.max_wait_ms == Some(0) || queue.max_callers == Some(0) {
            issues.at(
                [k("queues"), i(n), k("name")],
                "max_wait_ms and max_callers must be above 0 (leave them out for no limit)".into(),
            );
        }
        if queue.wrap_up_ms > super::MAX_WRAP_UP_MS {
            issues.at(
                [k("queues"), i(n), k("wrap_up_ms")],
                format!(
                    "wrap_up_ms must be at most {} (an hour)",
                    super::MAX_WRAP_UP_MS
                ),
            );
        }
        if let Some(message) = &queue.announce_message
            && !known_prompt(config, message)
        {
            issues.at(
                [k("queues"), i(n), k("announce_message")],
                unknown_prompt(message),
            );
        }
        if !known_prompt(config, &queue.hold_prompt) {
            issues.at(
                [k("queues"), i(n), k("hold_prompt")],
                unknown_prompt(&queue.hold_prompt),
            );
        }
    }
}

/// One DTMF key: 0-9, * or #.
fn one_key(key: &str) -> bool {
    key.len() == 1
        && key
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
}

fn https(config: &Config, issues: &mut Issues) {
    let http = &config.http;
    let Some(https) = http.https else {
        if http.tls_cert.is_some() || http.tls_key.is_some() {
            issues.at(
                [k("http"), k("https")],
                "tls_cert and tls_key need `https`: the address HTTPS listens on".into(),
            );
        }
        return;
    };
    if https == http.listen {
        issues.at(
            [k("http"), k("https")],
            format!("https {https} is `listen` too: give HTTPS an address of its own"),
        );
    }
    for (key, file) in [("tls_cert", &http.tls_cert), ("tls_key", &http.tls_key)] {
        let Some(file) = file else {
            issues.at(
                [k("http"), k("https")],
                format!("https needs {key}: a PEM file"),
            );
            continue;
        };
        let full = config.dir.join(file);
        if !full.is_file() {
            issues.at(
                [k("http"), k(key)],
                format!("{key} `{}` is not a readable file", full.display()),
            );
        }
    }
    if let Some((cert, key)) = config.tls_files()
        && cert.is_file()
        && key.is_file()
        && let Err(e) = crate::http::tls::server_config(&cert, &key)
    {
        issues.at([k("http"), k("tls_cert")], e.to_string());
    }
}

fn crm(config: &Config, issues: &mut Issues) {
    let Some(crm) = &config.crm else { return };
    let url = crm.url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) || !url.contains("{phone}") {
        issues.at(
            [k("crm"), k("url")],
            format!(
                "url `{url}` must be http:// or https:// and hold `{{phone}}`, where the caller's number goes"
            ),
        );
    }
    if crm.timeout_ms == 0 || crm.timeout_ms > super::MAX_CRM_TIMEOUT_MS {
        issues.at(
            [k("crm"), k("timeout_ms")],
            format!(
                "timeout_ms must be 1 to {}: the pop does not wait for it, but a lookup that never ends holds a connection",
                super::MAX_CRM_TIMEOUT_MS
            ),
        );
    }
}

fn desk(config: &Config, issues: &mut Issues) {
    let mut seen = std::collections::HashSet::new();
    for (n, d) in config.desk.dispositions.iter().enumerate() {
        let at = |key| [k("desk"), k("dispositions"), i(n), k(key)];
        let well_formed = (1..=40).contains(&d.code.len())
            && d.code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            issues.at(
                at("code"),
                format!(
                    "code `{}` must be 1 to 40 letters, digits, `-` or `_`",
                    d.code
                ),
            );
        } else if !seen.insert(d.code.as_str()) {
            issues.at(at("code"), format!("code `{}` is listed twice", d.code));
        }
        if d.label.trim().is_empty() {
            issues.at(at("label"), "label is empty: the desk shows it".into());
        }
    }
}

fn callback(config: &Config, issues: &mut Issues) {
    let Some(cb) = &config.callback else {
        return;
    };
    if cb.ring_ms == 0 {
        issues.at(
            [k("callback"), k("ring_ms")],
            "ring_ms must be above 0: how long the patient's phone rings".into(),
        );
    }
    if cb.retries > 0 && cb.retry_after_ms == 0 {
        issues.at(
            [k("callback"), k("retry_after_ms")],
            "retry_after_ms must be above 0 when retries are made".into(),
        );
    }
    let caller_id = cb.caller_id.strip_prefix('+').unwrap_or(&cb.caller_id);
    if !valid_id(caller_id) {
        issues.at(
            [k("callback"), k("caller_id")],
            format!(
                "caller_id `{}` must be a number (`+` allowed) or letters, digits, `.`, `-`, `_`",
                cb.caller_id
            ),
        );
    }
    let (listening, name) = match cb.transport {
        super::TrunkTransport::Udp => (config.sip.udp.is_some(), "udp"),
        super::TrunkTransport::Tcp => (config.sip.tcp.is_some(), "tcp"),
    };
    if !listening {
        issues.at(
            [k("callback"), k("transport")],
            format!("transport `{name}` needs [sip] {name}: callbacks go out from it"),
        );
    }
    if !cb.dial_prefix.bytes().all(|b| b.is_ascii_digit()) {
        issues.at(
            [k("callback"), k("dial_prefix")],
            format!("dial_prefix `{}` must be digits", cb.dial_prefix),
        );
    }
    if !known_prompt(config, &cb.confirm_prompt) {
        issues.at(
            [k("callback"), k("confirm_prompt")],
            unknown_prompt(&cb.confirm_prompt),
        );
    }
    if !known_prompt(config, &cb.voicemail_prompt) {
        issues.at(
            [k("callback"), k("voicemail_prompt")],
            unknown_prompt(&cb.voicemail_prompt),
        );
    }
    if cb.voicemail_max_ms == 0 || cb.voicemail_max_ms > 3_600_000 {
        issues.at(
            [k("callback"), k("voicemail_max_ms")],
            "voicemail_max_ms must be above 0 and at most 3600000 (an hour)".into(),
        );
    }
    if !config.recording.enabled {
        for (n, queue) in config.queues.iter().enumerate() {
            if queue.overflow.as_deref() == Some("voicemail") {
                issues.at(
                    [k("queues"), i(n), k("overflow")],
                    "overflow \"voicemail\" needs [recording] enabled = true: the message is a recording"
                        .into(),
                );
            }
        }
    }
}

fn ivr(config: &Config, issues: &mut Issues) {
    let ivr = &config.ivr;
    if !ivr.menus.contains_key(&ivr.start) {
        issues.at(
            [k("ivr"), k("start")],
            format!("ivr.start names unknown menu `{}`", ivr.start),
        );
    }
    for (name, path) in &ivr.prompts {
        let full = config.dir.join(path);
        if !full.is_file() {
            issues.at(
                [k("ivr"), k("prompts"), k(name)],
                format!("prompt `{name}`: file {} not found", full.display()),
            );
        }
    }
    for (name, menu) in &ivr.menus {
        let here = |key: &str| [k("ivr"), k("menus"), k(name), k(key)];
        if !known_prompt(config, &menu.prompt) {
            issues.at(here("prompt"), unknown_prompt(&menu.prompt));
        }
        if let Some(invalid) = &menu.invalid_prompt
            && !known_prompt(config, invalid)
        {
            issues.at(here("invalid_prompt"), unknown_prompt(invalid));
        }
        if menu.timeout_ms == 0 {
            issues.at(here("timeout_ms"), "timeout_ms must be above 0".into());
        }
        if menu.max_tries == 0 {
            issues.at(here("max_tries"), "max_tries must be at least 1".into());
        }
        if let Some(problem) = action_problem(config, &menu.on_fail) {
            issues.at(here("on_fail"), format!("on_fail: {problem}"));
        }
        for (key, action) in &menu.options {
            // Keys are checked by `ivr::Menu`'s deserializer: one DTMF key each.
            let at = [k("ivr"), k("menus"), k(name), k("options"), k(key)];
            if let Some(problem) = action_problem(config, action) {
                issues.at(at, format!("option `{key}`: {problem}"));
            }
        }
    }
    on_fail_loops(config, issues);
}

/// Menus whose `on_fail` chain comes back to them: a silent caller would never leave.
/// Each loop is reported once, at the `on_fail` of its alphabetically first menu.
fn on_fail_loops(config: &Config, issues: &mut Issues) {
    let menus = &config.ivr.menus;
    for start in menus.keys() {
        let mut chain = vec![start.as_str()];
        let mut current = start.as_str();
        while let Some(ivr::Action::Menu(next)) = menus.get(current).map(|m| &m.on_fail) {
            if next == start {
                if chain.iter().all(|name| *name >= start.as_str()) {
                    chain.push(start);
                    issues.at(
                        [k("ivr"), k("menus"), k(start), k("on_fail")],
                        format!(
                            "on_fail loops through menus {} and never ends for a silent caller",
                            chain.join(" -> ")
                        ),
                    );
                }
                break;
            }
            if chain.contains(&next.as_str()) || chain.len() > menus.len() {
                break;
            }
            chain.push(next);
            current = next;
        }
    }
}

fn action_problem(config: &Config, action: &ivr::Action) -> Option<String> {
    match action {
        ivr::Action::Queue(queue) if config.queue(queue).is_none() => {
            Some(format!("unknown queue `{queue}`"))
        }
        ivr::Action::Menu(menu) if !config.ivr.menus.contains_key(menu) => {
            Some(format!("unknown menu `{menu}`"))
        }
        _ => None,
    }
}

fn users(config: &Config, issues: &mut Issues) {
    let mut names = HashSet::new();
    for (n, user) in config.users.iter().enumerate() {
        if !valid_id(&user.name) {
            issues.at(
                [k("users"), i(n), k("name")],
                format!(
                    "user name `{}` must be letters, digits, `.`, `-` or `_`",
                    user.name
                ),
            );
        } else if !names.insert(user.name.as_str()) {
            issues.at(
                [k("users"), i(n), k("name")],
                format!("duplicate user name `{}`", user.name),
            );
        } else if config.agent(&user.name).is_some() {
            issues.at(
                [k("users"), i(n), k("name")],
                format!("user name `{}` is also an agent id", user.name),
            );
        }
        if user.password.is_empty() {
            issues.at(
                [k("users"), i(n), k("password")],
                format!("user `{}` has an empty password", user.name),
            );
        }
        if user.role == Role::Agent {
            issues.at(
                [k("users"), i(n), k("role")],
                "role must be \"qa\" or \"ops\": agents belong in [[agents]]".into(),
            );
        }
    }
}
