//! `switchboard-load server-config`: a server config TOML with M load agents, in the
//! demo config's format (the demo clinic's queues, menu and logins), for `switchboard serve`.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// What the generated config varies.
#[derive(Debug, Clone)]
pub struct ServerConfigSpec {
    pub agents: usize,
    pub first_agent_id: u32,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub rtp_ports: (u16, u16),
    pub data_dir: String,
    pub ring_cycle_ms: u64,
    pub answer_within_rings: u32,
    /// `[recording] enabled`: off for a relay-only CPU comparison.
    pub recording: bool,
}

/// The SIP user, desk login and password of load agent `i` (0-based).
pub fn agent_credentials(first_id: u32, i: usize) -> (String, String) {
    let id = (u64::from(first_id) + i as u64).to_string();
    let password = format!("load-{id}");
    (id, password)
}

fn quote(s: &str) -> String {
    // TOML basic string.
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The TOML text.
pub fn render(spec: &ServerConfigSpec) -> String {
    let mut t = String::new();
    let data = spec.data_dir.trim_end_matches('/');
    let _ = writeln!(
        t,
        "# Switchboard config for a load run: {} load agents (switchboard-load server-config).",
        spec.agents
    );
    let _ = writeln!(
        t,
        "# Agents' passwords are load-<id>. Not for production.\n"
    );
    let _ = writeln!(
        t,
        "[clinic]\nname = \"Load Test Clinic\"\ntimezone = \"Asia/Shanghai\"\nlanguage = \"en\"\n"
    );
    let _ = writeln!(t, "[sip]");
    let _ = writeln!(t, "udp = {}", quote(&spec.sip.to_string()));
    let _ = writeln!(t, "tcp = {}", quote(&spec.sip.to_string()));
    let _ = writeln!(t, "advertise = {}", quote(&spec.sip.ip().to_string()));
    let _ = writeln!(
        t,
        "rtp_ports = [{}, {}]",
        spec.rtp_ports.0, spec.rtp_ports.1
    );
    let _ = writeln!(
        t,
        "codecs = [\"PCMU\", \"PCMA\"]\nrealm = \"switchboard\"\n"
    );
    let _ = writeln!(t, "[http]\nlisten = {}\n", quote(&spec.http.to_string()));
    let _ = writeln!(t, "[storage]");
    let _ = writeln!(t, "database = {}", quote(&format!("{data}/switchboard.db")));
    let _ = writeln!(t, "recordings = {}\n", quote(&format!("{data}/recordings")));
    for i in 0..spec.agents {
        let (id, password) = agent_credentials(spec.first_agent_id, i);
        let _ = writeln!(
            t,
            "[[agents]]\nid = {}\nname = {}\npassword = {}",
            quote(&id),
            quote(&format!("Load Agent {id}")),
            quote(&password)
        );
        // Load agents have no desk to come back from a `missed` pause: never paused.
        let _ = writeln!(
            t,
            "queues = [\"appointments\", \"enquiries\", \"urgent\"]\nmax_missed_rings = 0\n"
        );
    }
    for (name, priority) in [("appointments", 0), ("enquiries", 0), ("urgent", 10)] {
        let _ = writeln!(
            t,
            "[[queues]]\nname = {}\npriority = {priority}",
            quote(name)
        );
        let _ = writeln!(
            t,
            "answer_within_rings = {}\nring_cycle_ms = {}\nhold_prompt = \"hold\"\n",
            spec.answer_within_rings, spec.ring_cycle_ms
        );
    }
    let _ = writeln!(t, "[ivr]\nstart = \"main\"\n\n[ivr.prompts]\n");
    let _ = writeln!(
        t,
        "[ivr.menus.main]\nprompt = \"greeting\"\ninvalid_prompt = \"invalid\"\ntimeout_ms = 5000\nmax_tries = 3\non_fail = \"queue:enquiries\"\n"
    );
    let _ = writeln!(
        t,
        "[ivr.menus.main.options]\n\"1\" = \"queue:appointments\"\n\"2\" = \"queue:enquiries\"\n\"9\" = \"queue:urgent\"\n\"0\" = \"queue:enquiries\"\n"
    );
    let _ = writeln!(
        t,
        "[recording]\nenabled = {}\nheader_interval_ms = 1000\n",
        spec.recording
    );
    let _ = writeln!(t, "[qa]\ndaily_sample = 30\nseed = 20261125\n");
    let _ = writeln!(
        t,
        "[[users]]\nname = \"qa\"\npassword = \"load-qa\"\nrole = \"qa\"\n"
    );
    let _ = writeln!(
        t,
        "[[users]]\nname = \"ops\"\npassword = \"load-ops\"\nrole = \"ops\""
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_and_addresses_appear() {
        let spec = ServerConfigSpec {
            agents: 3,
            first_agent_id: 2000,
            sip: "127.0.0.1:25060".parse().expect("addr"),
            http: "127.0.0.1:28080".parse().expect("addr"),
            rtp_ports: (40000, 40999),
            data_dir: "data/".into(),
            ring_cycle_ms: 500,
            answer_within_rings: 2,
            recording: true,
        };
        let t = render(&spec);
        assert_eq!(t.matches("[[agents]]").count(), 3);
        assert!(t.contains("id = \"2002\"\nname = \"Load Agent 2002\"\npassword = \"load-2002\""));
        assert!(t.contains("udp = \"127.0.0.1:25060\""));
        assert!(t.contains("rtp_ports = [40000, 40999]"));
        assert!(t.contains("recordings = \"data/recordings\""));
        assert_eq!(t.matches("ring_cycle_ms = 500").count(), 3);
        assert!(t.contains("[recording]\nenabled = true\n"));
        let off = render(&ServerConfigSpec {
            recording: false,
            ..spec
        });
        assert!(off.contains("[recording]\nenabled = false\n"));
        assert_eq!(
            agent_credentials(2000, 5),
            ("2005".to_owned(), "load-2005".to_owned())
        );
    }
}
