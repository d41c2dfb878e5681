use std::net::SocketAddr;
use std::time::Duration;

use super::*;

/// The demo config with each `(from, to)` replaced once (`from` must be there).
fn demo_with(edits: &[(&str, &str)]) -> String {
    let mut text = DEMO_CONFIG.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "demo.toml no longer contains {from:?}");
        text = text.replacen(from, to, 1);
    }
    text
}

/// The rendered problems of a config text checked as `demo.toml`.
fn problems(text: &str) -> Vec<String> {
    match Config::check_str(text, "demo.toml") {
        Ok(_) => Vec::new(),
        Err(problems) => problems.iter().map(Problem::to_string).collect(),
    }
}

fn problems_with(edits: &[(&str, &str)]) -> Vec<String> {
    problems(&demo_with(edits))
}

#[test]
fn demo_parses_and_validates() {
    let config = Config::check_str(DEMO_CONFIG, "demo.toml").expect("demo config is valid");
    assert_eq!(config.clinic.name, "Demo Dental Clinic");
    assert_eq!(config.clinic.timezone, chrono_tz::Asia::Shanghai);
    assert_eq!(config.clinic.language, Language::Zh);
    let sip_addr: SocketAddr = "127.0.0.1:5060".parse().expect("literal address");
    assert_eq!(config.sip.udp, Some(sip_addr));
    assert_eq!(config.sip.tcp, Some(sip_addr));
    assert_eq!(config.sip.rtp_ports.range(), 20000..=23999);
    assert_eq!(config.sip.codecs, [Codec::Pcmu, Codec::Pcma]);
    assert_eq!(config.http.listen.port(), 8080);
    let ids: Vec<&str> = config.agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["1001", "1002", "1003"]);
    assert_eq!(
        config.agent("1002").map(|a| a.password.as_str()),
        Some("demo-1002")
    );
    assert_eq!(config.queue("urgent").map(|q| q.priority), Some(10));
    assert_eq!(config.ring_timeout("urgent"), Some(Duration::from_secs(15)));
    assert_eq!(config.ring_timeout("nowhere"), None);
    assert_eq!(config.ivr.start, "main");
    assert_eq!(
        config.ivr.menus["main"].options.get("9"),
        Some(&ivr::Action::Queue("urgent".into()))
    );
    assert_eq!(config.user("qa").map(|u| u.role), Some(Role::Qa));
    assert_eq!(config.user("ops").map(|u| u.role), Some(Role::Ops));
    assert_eq!(config.qa.seed, 20261125);
    assert_eq!(config.summary(), "3 agents, 3 queues, 1 menu, 2 users");
    assert_eq!(Config::demo().agents.len(), 3);
}

#[test]
fn passwords_stay_out_of_debug_output() {
    let debug = format!("{:?}", Config::demo());
    assert!(!debug.contains("demo-1001"), "{debug}");
    assert!(!debug.contains("demo-qa"), "{debug}");
}

#[test]
fn optional_sections_and_keys_take_defaults() {
    let text = r#"
[clinic]
name = "Tiny"
timezone = "Europe/Berlin"

[sip]
udp = "0.0.0.0:5070"
advertise = "192.0.2.10"

[[agents]]
id = "7"
password = "x"
queues = ["q"]

[[queues]]
name = "q"

[ivr]
start = "m"

[ivr.menus.m]
prompt = "greeting"
on_fail = "hangup"
"#;
    let config = Config::check_str(text, "tiny.toml").expect("minimal config is valid");
    assert_eq!(config.clinic.language, Language::Zh);
    assert_eq!(config.sip.tcp, None);
    assert_eq!(config.sip.rtp_ports, PortRange::default());
    assert_eq!(config.sip.codecs, [Codec::Pcmu, Codec::Pcma]);
    assert_eq!(
        config.http.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().expect("literal")
    );
    assert_eq!(config.storage.database, "data/switchboard.db");
    assert!(config.recording.enabled);
    assert_eq!(config.qa.daily_sample, 30);
    assert!(config.users.is_empty());
    assert_eq!(config.ring_timeout("q"), Some(Duration::from_millis(15000)));
    assert_eq!(
        config.queue("q").map(|q| q.hold_prompt.as_str()),
        Some("hold")
    );
    assert_eq!(config.summary(), "1 agent, 1 queue, 1 menu");
}

#[test]
fn syntax_errors_are_all_reported_with_positions() {
    let text = "[clinic]\nname = \"x\"\nfoo = = 3\n\n[sip\n";
    assert_eq!(
        problems(text),
        [
            "demo.toml:3:7: extra `=`, expected nothing",
            "demo.toml:3:9: unexpected key or value, expected newline, `#`",
            "demo.toml:5:5: unclosed table, expected `]`",
        ]
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let text = demo_with(&[(
        "name = \"Demo Dental Clinic\"",
        "name = \"演示口腔门诊\" = 1",
    )]);
    // `=` is the 17th character of the line (and the 29th byte).
    assert_eq!(
        problems(&text),
        ["demo.toml:8:17: unexpected key or value, expected newline, `#`"]
    );
}

#[test]
fn unknown_keys_and_wrong_types_in_different_sections_are_all_reported() {
    let found = problems_with(&[
        (
            "timezone = \"Asia/Shanghai\"",
            "timezone = \"Mars/Olympus\"",
        ),
        ("realm = \"switchboard\"", "relm = \"switchboard\""),
        ("password = \"demo-1001\"", "password = 1001"),
        ("password = \"demo-1003\"", "pasword = \"demo-1003\""),
    ]);
    assert_eq!(
        found,
        [
            "demo.toml:9:12: unknown timezone `Mars/Olympus`, expected an IANA name like `Asia/Shanghai`",
            "demo.toml:18:1: unknown field `relm`, expected one of `udp`, `tcp`, `advertise`, `rtp_ports`, `codecs`, `realm`, `digest`, `media_timeout_ms`, `max_calls`, `max_lag_ms`, `retry_after_s`, `tcp_max_connections`, `tcp_max_per_source`, `tcp_idle_timeout_s`, `nat`, `nat_keepalive_s`",
            "demo.toml:34:12: invalid type: integer `1001`, expected a string",
            "demo.toml:48:1: unknown field `pasword`, expected one of `id`, `name`, `password`, `queues`, `digest`, `max_missed_rings`, `levels`",
        ]
    );
}

#[test]
fn the_nat_policy_defaults_to_auto_with_keepalives_and_a_wrong_one_is_named() {
    let config = Config::check_str(DEMO_CONFIG, "demo.toml").expect("demo config is valid");
    assert_eq!(
        (config.sip.nat, config.sip.nat_keepalive_s),
        (Nat::Auto, 25)
    );
    let text = demo_with(&[(
        "realm = \"switchboard\"",
        "realm = \"switchboard\"\nnat = \"source\"\nnat_keepalive_s = 0",
    )]);
    let config = Config::check_str(&text, "demo.toml").expect("valid");
    assert_eq!(
        (config.sip.nat, config.sip.nat_keepalive_s),
        (Nat::Source, 0)
    );
    let found = problems_with(&[(
        "realm = \"switchboard\"",
        "realm = \"switchboard\"\nnat = \"sometimes\"",
    )]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .contains("unknown variant `sometimes`, expected one of `auto`, `contact`, `source`"),
        "{found:?}"
    );
}

#[test]
fn digest_algorithms_default_to_md5_and_can_be_set_per_clinic_and_agent() {
    let config = Config::check_str(DEMO_CONFIG, "demo.toml").expect("demo config is valid");
    assert_eq!(config.sip.digest, [Digest::Md5]);
    assert!(config.agents.iter().all(|a| a.digest.is_none()));

    let text = demo_with(&[
        (
            "realm = \"switchboard\"",
            "realm = \"switchboard\"\ndigest = [\"SHA-256\"]",
        ),
        (
            "password = \"demo-1001\"",
            "password = \"demo-1001\"\ndigest = [\"SHA-256\", \"MD5\"]",
        ),
    ]);
    let config = Config::check_str(&text, "demo.toml").expect("valid");
    assert_eq!(config.sip.digest, [Digest::Sha256]);
    assert_eq!(
        config.agents[0].digest,
        Some(vec![Digest::Sha256, Digest::Md5])
    );

    let found = problems_with(&[
        (
            "realm = \"switchboard\"",
            "realm = \"switchboard\"\ndigest = []",
        ),
        (
            "password = \"demo-1002\"",
            "password = \"demo-1002\"\ndigest = [\"MD5\", \"MD5\"]",
        ),
    ]);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("[sip] digest is empty"), "{found:?}");
    assert!(
        found[1].contains("agent `1002`'s digest lists an algorithm twice"),
        "{found:?}"
    );
    assert_eq!(
        problems_with(&[(
            "password = \"demo-1003\"",
            "password = \"demo-1003\"\ndigest = [\"SHA-512\"]",
        )]),
        ["demo.toml:49:11: unknown variant `SHA-512`, expected `MD5` or `SHA-256`"]
    );
}

#[test]
fn unknown_language_is_reported() {
    assert_eq!(
        problems_with(&[("language = \"zh\"", "language = \"fr\"")]),
        ["demo.toml:10:12: unknown variant `fr`, expected `zh` or `en`"]
    );
}

#[test]
fn bad_menu_and_other_ivr_keys_are_both_reported() {
    let found = problems_with(&[
        ("start = \"main\"", "begin = \"main\""),
        ("max_tries = 3", "max_tries = \"3\""),
    ]);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("demo.toml:81:1: unknown field `begin`"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("demo.toml:93:13: invalid type"),
        "{found:?}"
    );
}

#[test]
fn unknown_and_missing_sections_are_reported() {
    let text = demo_with(&[("[http]", "[web]")]);
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("demo.toml:24:2: unknown section `web`"),
        "{found:?}"
    );

    let start = DEMO_CONFIG.find("[sip]").expect("demo has [sip]");
    let end = DEMO_CONFIG.find("[http]").expect("demo has [http]");
    let text = format!("{}{}", &DEMO_CONFIG[..start], &DEMO_CONFIG[end..]);
    assert_eq!(problems(&text), ["demo.toml:1:1: missing section [sip]"]);
}

#[test]
fn rtp_ports_must_be_two_ports_in_order() {
    let at = "rtp_ports = [20000, 23999]";
    assert_eq!(
        problems_with(&[(at, "rtp_ports = [20999, 20000]")]),
        ["demo.toml:16:13: rtp_ports [20999, 20000] is reversed: write [first, last]"]
    );
    assert_eq!(
        problems_with(&[(at, "rtp_ports = [20000, 20000]")]),
        ["demo.toml:16:13: rtp_ports holds 1 port; a call needs one per leg, so at least 2"]
    );
    assert_eq!(
        problems_with(&[(at, "rtp_ports = [20000, 20001, 20002]")]),
        ["demo.toml:16:13: expected two ports [first, last], found 3"]
    );
    assert!(problems_with(&[(at, "rtp_ports = [20000, 20001]")]).is_empty());
    assert!(problems_with(&[(at, "rtp_ports = [20000, 20004]")]).is_empty());
}

#[test]
fn ring_settings_must_be_positive() {
    assert_eq!(
        problems_with(&[
            (
                "ring_cycle_ms = 5000               #",
                "ring_cycle_ms = 0                  #"
            ),
            ("answer_within_rings = 3\n", "answer_within_rings = 0\n"),
        ]),
        [
            "demo.toml:56:17: ring_cycle_ms must be above 0",
            "demo.toml:65:23: answer_within_rings must be at least 1",
        ]
    );
}

#[test]
fn references_to_unknown_queues_and_menus_are_all_reported() {
    let found = problems_with(&[
        ("start = \"main\"", "start = \"mian\""),
        (
            "password = \"demo-1002\"\nqueues = [\"appointments\", \"enquiries\"",
            "password = \"demo-1002\"\nqueues = [\"appointments\", \"billing\"",
        ),
        (
            "on_fail = \"queue:enquiries\"",
            "on_fail = \"queue:nowhere\"",
        ),
        ("\"9\" = \"queue:urgent\"", "\"9\" = \"menu:hours\""),
    ]);
    assert_eq!(
        found,
        [
            "demo.toml:42:27: agent `1002` is in unknown queue `billing`",
            "demo.toml:81:9: ivr.start names unknown menu `mian`",
            "demo.toml:94:11: on_fail: unknown queue `nowhere`",
            "demo.toml:99:7: option `9`: unknown menu `hours`",
        ]
    );
}

#[test]
fn duplicate_names_are_reported() {
    let found = problems_with(&[
        ("id = \"1002\"", "id = \"1001\""),
        ("name = \"ops\"", "name = \"qa\""),
        ("name = \"urgent\"", "name = \"enquiries\""),
    ]);
    assert!(
        found.contains(&"demo.toml:39:6: duplicate agent id `1001`".to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&"demo.toml:72:8: duplicate queue name `enquiries`".to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&"demo.toml:117:8: duplicate user name `qa`".to_owned()),
        "{found:?}"
    );
}

#[test]
fn users_and_agents_need_passwords_and_proper_roles() {
    assert_eq!(
        problems_with(&[
            ("password = \"demo-1003\"", "password = \"\""),
            ("role = \"ops\"", "role = \"agent\""),
            ("name = \"ops\"", "name = \"1001\""),
        ]),
        [
            "demo.toml:48:12: agent `1003` has an empty password",
            "demo.toml:117:8: user name `1001` is also an agent id",
            "demo.toml:119:8: role must be \"qa\" or \"ops\": agents belong in [[agents]]",
        ]
    );
}

#[test]
fn prompt_files_must_exist_next_to_the_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("audio")).expect("mkdir");
    std::fs::write(dir.path().join("audio/hello.wav"), b"RIFF").expect("write prompt");
    let text = demo_with(&[(
        "# greeting = \"prompts/our-greeting.wav\"",
        "greeting = \"audio/hello.wav\"\nwelcome = \"audio/missing.wav\"",
    )]);
    let path = dir.path().join("clinic.toml");
    std::fs::write(&path, &text).expect("write config");
    let err = Config::load(&path).expect_err("missing prompt file");
    let shown = path.display().to_string();
    let missing = dir.path().join("audio/missing.wav");
    assert_eq!(
        err.to_string(),
        format!(
            "{shown}:88:11: prompt `welcome`: file {} not found",
            missing.display()
        )
    );

    let fixed = text.replace(
        "welcome = \"audio/missing.wav\"",
        "welcome = \"audio/hello.wav\"",
    );
    std::fs::write(&path, fixed).expect("write config");
    let config = Config::load(&path).expect("prompt files exist");
    assert_eq!(config.dir, dir.path());
    assert_eq!(
        config.prompt_path("welcome"),
        Some(dir.path().join("audio/hello.wav"))
    );
}

#[test]
fn prompt_names_must_be_built_in_or_configured() {
    assert_eq!(
        problems_with(&[
            ("prompt = \"greeting\"", "prompt = \"welcome\""),
            (
                "hold_prompt = \"hold\"               #",
                "hold_prompt = \"music\"              #"
            ),
        ]),
        [
            "demo.toml:57:15: unknown prompt `music`: not built in (greeting, invalid, hold, queue_thanks, callback_confirm, voicemail_greeting) and not in [ivr.prompts]",
            "demo.toml:90:10: unknown prompt `welcome`: not built in (greeting, invalid, hold, queue_thanks, callback_confirm, voicemail_greeting) and not in [ivr.prompts]",
        ]
    );
}

#[test]
fn unreadable_file_is_a_read_error() {
    let err = Config::load(Path::new("/nonexistent/clinic.toml")).expect_err("no such file");
    assert!(matches!(err, ConfigErrors::Read { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/clinic.toml: cannot read: "),
        "{err}"
    );
}

#[test]
fn option_keys_must_be_one_dtmf_key() {
    assert_eq!(
        problems_with(&[(
            "\"0\" = \"queue:enquiries\"",
            "\"00\" = \"queue:enquiries\""
        )]),
        ["demo.toml:96:1: option key \"00\" is not a single DTMF key (0-9, *, #, A-D)"]
    );
}

#[test]
fn menus_whose_on_fail_loops_forever_are_reported_once() {
    let mut text = demo_with(&[("on_fail = \"queue:enquiries\"", "on_fail = \"menu:again\"")]);
    text.push_str("\n[ivr.menus.again]\nprompt = \"greeting\"\non_fail = \"menu:main\"\n");
    // The appended menu's on_fail line (the demo file's own length may change).
    let line = text.lines().count();
    assert_eq!(
        problems(&text),
        [format!(
            "demo.toml:{line}:11: on_fail loops through menus again -> main -> again and never ends for a silent caller"
        )]
    );
    let text = text.replace("on_fail = \"menu:main\"", "on_fail = \"hangup\"");
    assert!(problems(&text).is_empty(), "{:?}", problems(&text));
}

#[test]
fn strategies_levels_and_escalation_are_read_and_checked() {
    let queue_line = "strategy = \"longest_idle\"          #";
    let agent_line = "max_missed_rings = 2               #";
    let good = demo_with(&[
        (
            queue_line,
            "strategy = \"round_robin\"\nescalation = [{ after_ms = 0, max_level = 1 }, { after_ms = 30000, max_level = 2 }] #",
        ),
        (
            agent_line,
            "levels = { urgent = 2 }\nmax_missed_rings = 2 #",
        ),
    ]);
    let config = match Config::check_str(&good, "demo.toml") {
        Ok(c) => c,
        Err(p) => panic!("valid: {p:?}"),
    };
    assert_eq!(config.queues[0].strategy, acd::Strategy::RoundRobin);
    assert_eq!(
        config.queues[1].strategy,
        acd::Strategy::LongestIdle,
        "the default"
    );
    let steps: Vec<(u64, u32)> = config.queues[0]
        .escalation
        .iter()
        .map(|s| (s.after_ms, s.max_level))
        .collect();
    assert_eq!(steps, [(0, 1), (30_000, 2)]);
    assert_eq!(config.agents[0].levels.get("urgent"), Some(&2));

    let found = problems_with(&[(queue_line, "strategy = \"ring_everyone\" #")]);
    let text = found.join("\n");
    assert!(text.contains("unknown variant `ring_everyone`"), "{text}");
    assert!(
        text.contains("longest_idle"),
        "the choices are named: {text}"
    );
    assert_eq!(found.len(), 1, "{found:?}");
    let found = problems_with(&[
        (
            queue_line,
            "escalation = [{ after_ms = 30000, max_level = 2 }, { after_ms = 10000, max_level = 0 }] #",
        ),
        (
            agent_line,
            "levels = { billing = 2, urgent = 0 }\nmax_missed_rings = 2 #",
        ),
    ]);
    let text = found.join("\n");
    assert!(text.contains("in order of after_ms"), "{text}");
    assert!(
        text.contains("the first escalation step must have after_ms = 0: for the first 30000 ms"),
        "{text}"
    );
    assert!(text.contains("max_level must be at least 1"), "{text}");
    assert!(text.contains("a queue it does not serve"), "{text}");
    assert!(text.contains("levels start at 1"), "{text}");
    assert!(
        found.iter().all(|p| p.starts_with("demo.toml:")),
        "each at its line: {found:?}"
    );
}

#[test]
fn overflow_rules_name_where_callers_go() {
    let queue_line = "strategy = \"longest_idle\"          #";
    let found = problems_with(&[(queue_line, "max_wait_ms = 60000 #")]);
    assert!(
        found
            .iter()
            .any(|p| p.contains("but no overflow: say where callers go")),
        "{found:?}"
    );
    for (overflow, want) in [
        ("\"queue:appointments\"", "cannot overflow into itself"),
        ("\"queue:billing\"", "overflow into unknown queue `billing`"),
        (
            "\"mailbox\"",
            "must be \"queue:NAME\", \"callback\", \"voicemail\" or \"hangup\"",
        ),
        (
            "\"voicemail\"",
            "overflow \"voicemail\" needs a [callback] section",
        ),
        (
            "\"callback\"",
            "overflow \"callback\" needs a [callback] section",
        ),
    ] {
        let found = problems_with(&[(
            queue_line,
            &format!("max_wait_ms = 60000\noverflow = {overflow} #"),
        )]);
        assert!(
            found.iter().any(|p| p.contains(want)),
            "{overflow}: {found:?}"
        );
    }
    let found = problems_with(&[(queue_line, "max_callers = 0\noverflow = \"hangup\" #")]);
    assert!(
        found.iter().any(|p| p.contains("must be above 0")),
        "{found:?}"
    );
    let good = demo_with(&[(
        queue_line,
        "max_wait_ms = 60000\nmax_callers = 20\nleave_when = \"none_ready\"\noverflow = \"queue:enquiries\" #",
    )]);
    let config = match Config::check_str(&good, "demo.toml") {
        Ok(c) => c,
        Err(p) => panic!("valid: {p:?}"),
    };
    let q = &config.queues[0];
    assert_eq!(
        (q.max_wait_ms, q.max_callers, q.leave_when),
        (Some(60_000), Some(20), acd::LeaveWhen::NoneReady)
    );
    assert_eq!(
        q.overflow_target(),
        Some(acd::Overflow::Queue("enquiries".into()))
    );
}

#[test]
fn an_exit_key_is_one_key_and_needs_an_overflow() {
    let queue_line = "strategy = \"longest_idle\"          #";
    let found = problems_with(&[(queue_line, "exit_key = \"0\" #")]);
    assert!(
        found.iter().any(|p| p.contains("but no overflow")),
        "{found:?}"
    );
    let found = problems_with(&[(queue_line, "exit_key = \"00\"\noverflow = \"hangup\" #")]);
    assert!(
        found.iter().any(|p| p.contains("must be one key")),
        "{found:?}"
    );
    assert!(problems_with(&[(queue_line, "exit_key = \"#\"\noverflow = \"hangup\" #")]).is_empty());
}

#[test]
fn callbacks_need_a_trunk_and_every_bad_setting_is_reported() {
    let queue_line = "strategy = \"longest_idle\"          #";
    let found = problems_with(&[(queue_line, "callback_key = \"2\" #")]);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("demo.toml:60:16: callback_key needs a [callback] section")),
        "{found:?}"
    );
    let mut text = demo_with(&[(
        queue_line,
        "callback_key = \"0\"\nexit_key = \"0\"\nmax_wait_ms = 60000\noverflow = \"callback\" #",
    )]);
    text.push_str(
        "\n[callback]\ntrunk = \"127.0.0.1:5070\"\nring_ms = 0\ndial_prefix = \"9a\"\ncaller_id = \"\"\nconfirm_prompt = \"nope\"\nretry_after_ms = 0\n",
    );
    let found = problems(&text);
    for want in [
        "callback_key is the queue's exit_key too",
        "ring_ms must be above 0",
        "dial_prefix `9a` must be digits",
        "caller_id `` must be",
        "unknown prompt `nope`",
        "retry_after_ms must be above 0 when retries are made",
    ] {
        assert!(found.iter().any(|p| p.contains(want)), "{want}: {found:?}");
    }
    assert!(
        !found
            .iter()
            .any(|p| p.contains("needs a [callback] section")),
        "{found:?}"
    );
    let mut no_recording = demo_with(&[
        (
            queue_line,
            "max_wait_ms = 60000\noverflow = \"voicemail\" #",
        ),
        ("enabled = true", "enabled = false"),
    ]);
    no_recording.push_str("\n[callback]\ntrunk = \"127.0.0.1:5070\"\nvoicemail_max_ms = 7200000\n");
    let found = problems(&no_recording);
    for want in [
        "overflow \"voicemail\" needs [recording] enabled = true",
        "voicemail_max_ms must be above 0 and at most 3600000",
    ] {
        assert!(found.iter().any(|p| p.contains(want)), "{want}: {found:?}");
    }
    let no_tcp = demo_with(&[("tcp = \"127.0.0.1:5060\"", "#")])
        + "\n[callback]\ntrunk = \"127.0.0.1:5070\"\ntransport = \"tcp\"\n";
    let found = problems(&no_tcp);
    assert!(
        found
            .iter()
            .any(|p| p.contains("transport `tcp` needs [sip] tcp")),
        "{found:?}"
    );
    let mut good = demo_with(&[(
        queue_line,
        "callback_key = \"2\"\nmax_wait_ms = 60000\noverflow = \"callback\" #",
    )]);
    good.push_str(
        "\n[callback]\ntrunk = \"127.0.0.1:5070\"\ntransport = \"tcp\"\ncaller_id = \"+861088880000\"\n",
    );
    let config = Config::check_str(&good, "demo.toml").expect("valid callback config");
    let cb = config.callback.as_ref().expect("[callback]");
    assert_eq!(cb.trunk.port(), 5070);
    assert_eq!(cb.transport, crate::config::TrunkTransport::Tcp);
    assert_eq!(
        (cb.ring_ms, cb.retries, cb.retry_after_ms),
        (30_000, 2, 300_000)
    );
    assert_eq!(cb.confirm_prompt, "callback_confirm");
    assert_eq!(
        config.queues[0].overflow_target(),
        Some(acd::Overflow::Callback)
    );
}

#[test]
fn wrap_up_codes_are_checked_and_default_to_the_built_in_ones() {
    assert_eq!(
        Config::demo()
            .desk
            .dispositions
            .iter()
            .map(|d| d.code.as_str())
            .collect::<Vec<_>>(),
        [
            "booked",
            "rescheduled",
            "answered",
            "complaint",
            "follow_up",
            "urgent_referred",
            "wrong_number"
        ]
    );
    let text = format!(
        "{DEMO_CONFIG}\n[desk]\ndispositions = [\n  {{ code = \"no show\", label = \"No show\" }},\n  \
         {{ code = \"x\", label = \" \" }},\n  {{ code = \"x\", label = \"X\", tone = \"negative\" }},\n]\n"
    );
    let found = problems(&text);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[0].contains("code `no show` must be 1 to 40 letters"),
        "{found:?}"
    );
    assert!(found[1].contains("label is empty"), "{found:?}");
    assert!(found[2].contains("code `x` is listed twice"), "{found:?}");
    let lines = DEMO_CONFIG.lines().count();
    assert!(
        found[0].starts_with(&format!("demo.toml:{}:", lines + 4)),
        "with the line of the entry: {found:?}"
    );
    let tone = format!(
        "{DEMO_CONFIG}\n[desk]\ndispositions = [{{ code = \"a\", label = \"A\", tone = \"angry\" }}]\n"
    );
    assert!(
        problems(&tone)[0].contains("unknown variant `angry`"),
        "{:?}",
        problems(&tone)
    );
}

#[test]
fn a_crm_lookup_needs_a_url_with_the_number_and_a_bounded_timeout() {
    assert!(Config::demo().crm.is_none(), "the demo has no CRM");
    let ok = format!("{DEMO_CONFIG}\n[crm]\nurl = \"http://127.0.0.1:9000/patients/{{phone}}\"\n");
    let config = Config::check_str(&ok, "demo.toml").expect("valid");
    let crm = config.crm.expect("crm");
    assert_eq!(crm.timeout_ms, 800, "the default");
    let bad = format!(
        "{DEMO_CONFIG}\n[crm]\nurl = \"ftp://his/patients\"\ntimeout_ms = 60000\ntoken = \"x\"\n"
    );
    let found = problems(&bad);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].contains("must be http:// or https:// and hold `{phone}`"),
        "{found:?}"
    );
    assert!(
        found[1].contains("timeout_ms must be 1 to 5000"),
        "{found:?}"
    );
    let typo = format!("{DEMO_CONFIG}\n[crm]\nurl = \"http://h/{{phone}}\"\ntimeout = 5\n");
    assert!(
        problems(&typo)[0].contains("unknown field `timeout`"),
        "{:?}",
        problems(&typo)
    );
    assert!(
        !format!("{:?}", config_with_token()).contains("s3cret"),
        "the token is not logged"
    );
}

fn config_with_token() -> Crm {
    Crm {
        url: "http://h/{phone}".into(),
        timeout_ms: 1,
        token: Some("s3cret".into()),
    }
}

#[test]
fn https_needs_a_certificate_and_key_that_load() {
    let dir = tempfile::tempdir().expect("dir");
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    std::fs::write(dir.path().join("desk.crt"), made.cert.pem()).expect("write");
    std::fs::write(
        dir.path().join("desk.key"),
        made.signing_key.serialize_pem(),
    )
    .expect("write");
    std::fs::write(dir.path().join("junk.key"), "junk").expect("write");
    let file = dir.path().join("clinic.toml");
    let file = file.to_str().expect("utf-8");
    let with = |http: &str| {
        DEMO_CONFIG.replacen(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:8080\"\n{http}"),
            1,
        )
    };
    let good = with("https = \"127.0.0.1:8443\"\ntls_cert = \"desk.crt\"\ntls_key = \"desk.key\"");
    let config = Config::check_str(&good, file).expect("valid");
    let (cert, key) = config.tls_files().expect("files");
    assert_eq!(
        cert,
        dir.path().join("desk.crt"),
        "relative to the config file"
    );
    assert_eq!(key, dir.path().join("desk.key"));
    let problems_of = |text: &str| match Config::check_str(text, file) {
        Ok(_) => Vec::new(),
        Err(p) => p.iter().map(|p| p.message.clone()).collect::<Vec<_>>(),
    };
    let found = problems_of(&with("https = \"127.0.0.1:8443\"\ntls_cert = \"gone.crt\""));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found.iter().any(|p| p.contains("https needs tls_key")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("gone.crt` is not a readable file")),
        "{found:?}"
    );
    let found = problems_of(&with(
        "https = \"127.0.0.1:8443\"\ntls_cert = \"desk.crt\"\ntls_key = \"junk.key\"",
    ));
    assert!(
        found.len() == 1 && found[0].contains("junk.key: no PEM private key"),
        "{found:?}"
    );
    let found = problems_of(&with(
        "https = \"127.0.0.1:8080\"\ntls_cert = \"desk.crt\"\ntls_key = \"desk.key\"",
    ));
    assert!(
        found[0].contains("give HTTPS an address of its own"),
        "{found:?}"
    );
    let found = problems_of(&with("tls_cert = \"desk.crt\""));
    assert!(found[0].contains("need `https`"), "{found:?}");
    assert!(
        Config::demo().tls_files().is_none(),
        "the demo is plain HTTP on loopback"
    );
}
