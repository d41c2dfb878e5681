//! Router tests: API status codes and bodies (tower `oneshot`), and the desk
//! WebSocket over a real listener (tokio-tungstenite).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use chrono::{TimeZone, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::*;
use crate::auth::Role;
use crate::control::{AgentView, ConsultStep, ControlCommand, ControlError};
use crate::events::DeskEvent;
use crate::storage::{CallRecord, Outcome, Recording};

mod audit;
mod knowledge;
mod tls;
mod wrap_up;

struct Fixture {
    dir: tempfile::TempDir,
    state: AppState,
}

impl Fixture {
    fn token(&self, user: &str, role: Role) -> String {
        self.state.sessions.create(user, role, Instant::now())
    }

    async fn request(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Vec<u8>, String) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let res = router(self.state.clone())
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = res.status();
        let ctype = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = to_bytes(res.into_body(), 64 << 20).await.expect("body");
        (status, bytes.to_vec(), ctype)
    }

    async fn json(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, bytes, ctype) = self.request(method, uri, token, body).await;
        assert!(
            ctype.starts_with("application/json"),
            "{uri}: content-type {ctype:?}"
        );
        (status, serde_json::from_slice(&bytes).expect("json body"))
    }

    fn recordings_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("recordings")
    }
}

/// Stands in for call control: agents 1001 (ready) and 1002 (offline, phone not registered).
fn spawn_control() -> ControlHandle {
    let (handle, mut rx) = ControlHandle::channel();
    tokio::spawn(async move {
        let mut agents: HashMap<String, AgentView> = HashMap::new();
        for (id, name, state, registered) in [
            ("1001", "Li Na", "ready", true),
            ("1002", "Wang Fang", "logged_out", false),
        ] {
            agents.insert(
                id.into(),
                AgentView {
                    id: id.into(),
                    name: name.into(),
                    state: state.into(),
                    reason: None,
                    registered,
                    in_state_ms: None,
                    wrap_up_left_ms: None,
                    current_call: None,
                    missed_rings: 0,
                    consecutive_misses: 0,
                    last_registration_failure: None,
                    phones: Vec::new(),
                },
            );
        }
        while let Some(cmd) = rx.recv().await {
            match cmd {
                ControlCommand::Agents { reply } => {
                    let mut list: Vec<_> = agents.values().cloned().collect();
                    list.sort_by(|a, b| a.id.cmp(&b.id));
                    let _ = reply.send(list);
                }
                ControlCommand::SetAgentState {
                    agent,
                    ready,
                    reason,
                    reply,
                } => {
                    let result = match agents.get_mut(&agent) {
                        None => Err(ControlError::UnknownAgent),
                        Some(a) if !a.registered => Err(ControlError::Rejected(
                            "agent phone is not registered".into(),
                        )),
                        Some(a) => {
                            a.state = if ready { "ready" } else { "not_ready" }.into();
                            a.reason = reason;
                            Ok(a.clone())
                        }
                    };
                    let _ = reply.send(result);
                }
                ControlCommand::Queues { reply } => {
                    let _ = reply.send(Vec::new());
                }
                ControlCommand::Transfer { agent, to, reply } => {
                    // The stand-in's agents are on no call; "billing" is its one queue.
                    let result = match (agents.get(&agent), to) {
                        (None, _) => Err(ControlError::UnknownAgent),
                        (Some(_), callcore::TransferTarget::Queue(q)) if q != "billing" => {
                            Err(ControlError::Rejected(format!("no queue named `{q}`")))
                        }
                        (Some(_), _) => Err(ControlError::Rejected(
                            "no call to transfer: the agent is not on a call".into(),
                        )),
                    };
                    let _ = reply.send(result);
                }
                ControlCommand::Consult { agent, step, reply } => {
                    let result = match (agents.get(&agent), step) {
                        (None, _) => Err(ControlError::UnknownAgent),
                        (Some(_), ConsultStep::Start(callcore::TransferTarget::Agent(to)))
                            if !agents.contains_key(&to) =>
                        {
                            Err(ControlError::Rejected(format!("no agent `{to}`")))
                        }
                        (Some(_), _) => {
                            Err(ControlError::Rejected("the agent is not on a call".into()))
                        }
                    };
                    let _ = reply.send(result);
                }
                ControlCommand::Hold { agent, reply, .. }
                | ControlCommand::HangUp { agent, reply } => {
                    let result = match agents.get(&agent) {
                        None => Err(ControlError::UnknownAgent),
                        Some(_) => Err(ControlError::Rejected(
                            "nothing to hold: the agent is not on a call".into(),
                        )),
                    };
                    let _ = reply.send(result);
                }
                ControlCommand::ExtendWrapUp { agent, reply, .. } => {
                    let result = match agents.get(&agent) {
                        None => Err(ControlError::UnknownAgent),
                        Some(a) if a.state != "wrap_up" => Err(ControlError::Rejected(format!(
                            "agent {agent:?} is not in wrap-up"
                        ))),
                        Some(a) => Ok(a.clone()),
                    };
                    let _ = reply.send(result);
                }
            }
        }
    });
    handle
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("recordings")).expect("recordings dir");
    let db = dir.path().join("db.sqlite");
    let storage = Storage::open(db.to_str().expect("utf-8 path")).expect("open storage");
    let users = Users::new([
        ("1001".to_owned(), "demo-1001".to_owned(), Role::Agent),
        ("1002".to_owned(), "demo-1002".to_owned(), Role::Agent),
        ("1003".to_owned(), "demo-1003".to_owned(), Role::Agent),
        ("qa".to_owned(), "demo-qa".to_owned(), Role::Qa),
        ("ops".to_owned(), "demo-ops".to_owned(), Role::Ops),
    ]);
    let site = SiteConfig {
        clinic_name: "Test <Clinic>".into(),
        timezone: "Asia/Shanghai".parse().expect("tz"),
        recordings_dir: dir.path().join("recordings"),
        qa_sample_size: 3,
        qa_seed: 20261125,
        queues: vec!["appointments".into(), "enquiries".into(), "urgent".into()],
        dispositions: crate::config::Desk::default().dispositions,
        language: "zh",
    };
    let knowledge =
        Arc::new(crate::knowledge::Knowledge::load(storage.clone()).expect("knowledge base"));
    let state = AppState::new(
        storage,
        knowledge,
        users,
        // A generous cap: tests prove deliver() resolves on acks, not on the timer.
        DeskHub::new(Duration::from_secs(2)),
        spawn_control(),
        site,
        Metrics::new(),
        Arc::new(AtomicBool::new(true)),
    );
    Fixture { dir, state }
}

/// 2026-11-25 10:00 in Shanghai.
fn morning() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 2, 0, 0)
        .single()
        .expect("valid time")
}

fn add_recording(f: &Fixture, id: &str, path: &str) {
    f.state
        .storage
        .insert_recording(&Recording {
            id: id.into(),
            call_id: format!("call-{id}"),
            agent: "1001".into(),
            started_at: morning(),
            duration_ms: 61_000,
            channels: 2,
            gaps: Vec::new(),
            holds: Vec::new(),
            path: path.into(),
        })
        .expect("insert recording");
}

#[tokio::test]
async fn login_gives_a_working_token_and_refuses_bad_passwords() {
    let f = fixture();
    let (status, body) = f
        .json(
            "POST",
            "/api/login",
            None,
            Some(json!({"user":"ops","password":"demo-ops"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["role"], "ops");
    let token = body["token"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 64);
    let (status, _) = f.json("GET", "/api/agents", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = f
        .json(
            "POST",
            "/api/login",
            None,
            Some(json!({"user":"ops","password":"demo-qa"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].is_string());
    let (status, body) = f
        .json("POST", "/api/login", None, Some(json!({"user":"ops"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn missing_bad_or_wrong_role_tokens_are_refused_as_json() {
    let f = fixture();
    for uri in [
        "/api/agents",
        "/api/calls?date=2026-11-25",
        "/api/recordings",
        "/api/qa/sample",
        "/api/recordings/x/audio",
    ] {
        let (status, body) = f.json("GET", uri, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(body["error"].is_string(), "{uri}");
        let (status, _) = f.json("GET", uri, Some("deadbeef"), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let agent = f.token("1001", Role::Agent);
    let ops = f.token("ops", Role::Ops);
    let qa = f.token("qa", Role::Qa);
    for (token, uri) in [
        (&agent, "/api/agents"),
        (&agent, "/api/calls"),
        (&ops, "/api/recordings"),
        (&ops, "/api/qa/sample"),
        (&qa, "/ws/desk"),
    ] {
        let (status, body) = f.json("GET", uri, Some(token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
        assert!(body["error"].is_string());
    }
    let (status, _) = f
        .json(
            "POST",
            "/api/agents/me/state",
            Some(&ops),
            Some(json!({"state":"ready"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = f.json("GET", "/api/nothing-here", Some(&ops), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_dates_are_400_not_500() {
    let f = fixture();
    let qa = f.token("qa", Role::Qa);
    for date in [
        "2026-13-01",
        "2026-02-30",
        "yesterday",
        "2026-1-5",
        "%00",
        "99999-01-01",
    ] {
        for base in ["/api/calls", "/api/recordings", "/api/qa/sample"] {
            let (status, body) = f
                .json("GET", &format!("{base}?date={date}"), Some(&qa), None)
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{base} {date}");
            assert!(body["error"].as_str().expect("message").contains("date") || date == "%00");
        }
    }
    let (status, body) = f.json("GET", "/api/calls", Some(&qa), None).await;
    assert_eq!(status, StatusCode::OK, "no date means today");
    assert!(body.is_array());
}

#[tokio::test]
async fn calls_show_the_clinic_day_with_the_caller_masked() {
    let f = fixture();
    let mut call = CallRecord::new("c-1", "13800000001", morning());
    call.ivr_path = vec!["main:1".into()];
    call.queue = Some("appointments".into());
    call.wait_ms = Some(3500);
    call.agents_offered = vec!["1002".into(), "1001".into()];
    call.agent = Some("1001".into());
    call.outcome = Some(Outcome::Answered);
    call.recording_id = Some("r-1".into());
    f.state.storage.upsert_call(&call).expect("insert");
    let mut other_day =
        CallRecord::new("c-2", "13800000002", morning() + chrono::Duration::days(1));
    other_day.outcome = Some(Outcome::Abandoned);
    f.state.storage.upsert_call(&other_day).expect("insert");

    let ops = f.token("ops", Role::Ops);
    let (status, bytes, _) = f
        .request("GET", "/api/calls?date=2026-11-25", Some(&ops), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(bytes).expect("utf-8");
    assert!(!text.contains("13800000001"), "full number leaked: {text}");
    let body: Value = serde_json::from_str(&text).expect("json");
    let calls = body.as_array().expect("array");
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c["caller"], "138****0001");
    assert_eq!(c["call_id"], "c-1");
    assert_eq!(c["outcome"], "answered");
    assert_eq!(c["agents_offered"], json!(["1002", "1001"]));
    assert_eq!(c["ivr_path"], json!(["main:1"]));
    assert_eq!(c["wait_ms"], 3500);
    assert_eq!(
        c["started_at"], "2026-11-25T10:00:00.000+08:00",
        "in the clinic's zone"
    );
    for key in [
        "queue",
        "agent",
        "answered_at",
        "ended_at",
        "recording_id",
        "satisfaction",
    ] {
        assert!(c.get(key).is_some(), "missing {key}");
    }
}

fn audit_actions(f: &Fixture) -> Vec<(String, String, String)> {
    let mut rows: Vec<_> = f
        .state
        .storage
        .audit_entries(100)
        .expect("audit")
        .into_iter()
        .map(|e| (e.user, e.action, e.target))
        .collect();
    rows.reverse();
    rows
}

#[tokio::test]
async fn audio_is_served_to_qa_and_every_fetch_is_audited() {
    let f = fixture();
    let wav: Vec<u8> = b"RIFF\x24\0\0\0WAVEfmt "
        .iter()
        .copied()
        .chain((0u8..=255).cycle().take(100_000))
        .collect();
    let inside = f.recordings_dir().join("r-1.wav");
    std::fs::write(&inside, &wav).expect("write wav");
    add_recording(&f, "r-1", inside.to_str().expect("utf-8"));
    std::fs::write(f.recordings_dir().join("r-2.wav"), b"RIFF").expect("write wav");
    add_recording(&f, "r-2", "r-2.wav"); // relative to the recordings dir
    let outside = f.dir.path().join("secret.wav");
    std::fs::write(&outside, b"RIFF").expect("write");
    add_recording(&f, "r-out", outside.to_str().expect("utf-8"));
    add_recording(&f, "r-dots", "../secret.wav");
    add_recording(&f, "r-gone", "gone.wav");

    let qa = f.token("qa", Role::Qa);
    let ops = f.token("ops", Role::Ops);
    let (status, body, ctype) = f
        .request("GET", "/api/recordings/r-1/audio", Some(&qa), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "audio/wav");
    assert_eq!(body, wav);
    let (status, body, _) = f
        .request("GET", "/api/recordings/r-2/audio", Some(&qa), None)
        .await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"RIFF"[..]));

    for (id, token, expected) in [
        ("r-out", Some(qa.as_str()), StatusCode::FORBIDDEN),
        ("r-dots", Some(qa.as_str()), StatusCode::FORBIDDEN),
        ("r-gone", Some(qa.as_str()), StatusCode::NOT_FOUND),
        ("nope", Some(qa.as_str()), StatusCode::NOT_FOUND),
        ("r-1", Some(ops.as_str()), StatusCode::FORBIDDEN),
        ("r-1", None, StatusCode::UNAUTHORIZED),
    ] {
        let (status, body) = f
            .json("GET", &format!("/api/recordings/{id}/audio"), token, None)
            .await;
        assert_eq!(status, expected, "{id}");
        assert!(body["error"].is_string());
    }
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        audit_actions(&f),
        vec![
            s("qa", "recording_audio", "r-1"),
            s("qa", "recording_audio", "r-2"),
            s("qa", "recording_audio_refused", "r-out"),
            s("qa", "recording_audio_refused", "r-dots"),
            s("qa", "recording_audio_not_found", "r-gone"),
            s("qa", "recording_audio_not_found", "nope"),
            s("ops", "recording_audio_refused", "r-1"),
            s("anonymous", "recording_audio_unauthenticated", "r-1"),
        ]
    );
}

#[tokio::test]
async fn recordings_list_and_daily_sample() {
    let f = fixture();
    for i in 0..6 {
        add_recording(&f, &format!("r-{i}"), &format!("r-{i}.wav"));
    }
    let qa = f.token("qa", Role::Qa);
    let (status, list) = f
        .json("GET", "/api/recordings?date=2026-11-25", Some(&qa), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 6);
    assert_eq!(list[0]["channels"], 2);
    assert_eq!(list[0]["duration_ms"], 61_000);
    assert!(list[0].get("path").is_none(), "file paths stay private");

    let (status, sample) = f
        .json("GET", "/api/qa/sample?date=2026-11-25", Some(&qa), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sample["date"], "2026-11-25");
    let picked = sample["recordings"].as_array().expect("array");
    assert_eq!(picked.len(), 3);
    let (_, again) = f
        .json("GET", "/api/qa/sample?date=2026-11-25", Some(&qa), None)
        .await;
    assert_eq!(sample, again, "the same day gives the same sample");
    let (_, empty) = f
        .json("GET", "/api/qa/sample?date=2026-11-24", Some(&qa), None)
        .await;
    assert_eq!(empty["recordings"], json!([]));
}

#[tokio::test]
async fn agents_and_my_state_go_through_call_control() {
    let f = fixture();
    let ops = f.token("ops", Role::Ops);
    let (status, agents) = f.json("GET", "/api/agents", Some(&ops), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agents[0]["id"], "1001");
    assert_eq!(agents[0]["state"], "ready");
    assert_eq!(agents[1]["missed_rings"], 0);

    let agent = f.token("1001", Role::Agent);
    let mut desk = f.state.hub.subscribe("1001");
    let body = json!({"state":"not_ready","reason":"lunch"});
    let (status, view) = f
        .json("POST", "/api/agents/me/state", Some(&agent), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (view["state"].as_str(), view["reason"].as_str()),
        (Some("not_ready"), Some("lunch"))
    );
    // The desk hears the change from call control (which this stand-in is not), never
    // twice from the handler too.
    let published = tokio::time::timeout(std::time::Duration::from_millis(100), desk.recv()).await;
    assert!(published.is_err(), "the handler publishes nothing itself");
    let (_, agents) = f.json("GET", "/api/agents", Some(&ops), None).await;
    assert_eq!(agents[0]["state"], "not_ready");
    for (body, want) in [
        (json!({"state":"wrap_up"}), StatusCode::CONFLICT),
        (
            json!({"state":"wrap_up","extend_ms":0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"state":"wrap_up","extend_ms":600_001}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, answer) = f
            .json(
                "POST",
                "/api/agents/me/state",
                Some(&agent),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, want, "{body}: {answer}");
    }

    let (status, _) = f
        .json(
            "POST",
            "/api/agents/me/state",
            Some(&agent),
            Some(json!({"state":"asleep"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = f
        .json(
            "POST",
            "/api/agents/me/state",
            Some(&agent),
            Some(json!([1, 2])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let offline = f.token("1002", Role::Agent);
    let (status, body) = f
        .json(
            "POST",
            "/api/agents/me/state",
            Some(&offline),
            Some(json!({"state":"ready"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "agent phone is not registered");
    let unknown = f.token("1003", Role::Agent);
    let (status, _) = f
        .json(
            "POST",
            "/api/agents/me/state",
            Some(&unknown),
            Some(json!({"state":"ready"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_transfer_is_the_agents_own_and_says_why_it_is_refused() {
    let f = fixture();
    let agent = f.token("1001", Role::Agent);
    for (who, body, want, says) in [
        (
            &agent,
            json!({"queue":"billing"}),
            StatusCode::CONFLICT,
            "not on a call",
        ),
        (
            &agent,
            json!({"queue":"nowhere"}),
            StatusCode::CONFLICT,
            "no queue named `nowhere`",
        ),
        (
            &agent,
            json!({"agent":"1002"}),
            StatusCode::CONFLICT,
            "not on a call",
        ),
        (
            &agent,
            json!({"to":"billing"}),
            StatusCode::BAD_REQUEST,
            "bad transfer request",
        ),
        (
            &agent,
            json!({"queue":"billing","agent":"1002"}),
            StatusCode::BAD_REQUEST,
            "either \"queue\" or \"agent\"",
        ),
    ] {
        let (status, answer) = f
            .json(
                "POST",
                "/api/agents/me/transfer",
                Some(who),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, want, "{body}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(says)),
            "{body}: {answer}"
        );
    }
    let ops = f.token("ops", Role::Ops);
    let (status, _) = f
        .json(
            "POST",
            "/api/agents/me/transfer",
            Some(&ops),
            Some(json!({"queue":"billing"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only an agent transfers its own call"
    );
    let (status, _) = f
        .json(
            "POST",
            "/api/agents/me/transfer",
            None,
            Some(json!({"queue":"billing"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_consultation_steps_are_the_agents_own_and_say_why_they_are_refused() {
    let f = fixture();
    let agent = f.token("1001", Role::Agent);
    for (path, body, want, says) in [
        (
            "/api/agents/me/consult",
            json!({"agent":"1002"}),
            StatusCode::CONFLICT,
            "not on a call",
        ),
        (
            "/api/agents/me/consult",
            json!({"agent":"9999"}),
            StatusCode::CONFLICT,
            "no agent `9999`",
        ),
        (
            "/api/agents/me/consult",
            json!({"agent":"  "}),
            StatusCode::BAD_REQUEST,
            "either \"queue\" or \"agent\"",
        ),
        (
            "/api/agents/me/consult",
            json!({"queue":"billing","agent":"1002"}),
            StatusCode::BAD_REQUEST,
            "either \"queue\" or \"agent\"",
        ),
        (
            "/api/agents/me/consult",
            json!({"to":"billing"}),
            StatusCode::BAD_REQUEST,
            "bad consult request",
        ),
        (
            "/api/agents/me/consult",
            json!({"queue":"billing"}),
            StatusCode::CONFLICT,
            "not on a call",
        ),
        (
            "/api/agents/me/consult/complete",
            json!({}),
            StatusCode::CONFLICT,
            "not on a call",
        ),
        (
            "/api/agents/me/consult/cancel",
            json!({}),
            StatusCode::CONFLICT,
            "not on a call",
        ),
    ] {
        let (status, answer) = f.json("POST", path, Some(&agent), Some(body.clone())).await;
        assert_eq!(status, want, "{path} {body}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(says)),
            "{path} {body}: {answer}"
        );
    }
    let ops = f.token("ops", Role::Ops);
    for path in [
        "/api/agents/me/consult",
        "/api/agents/me/consult/complete",
        "/api/agents/me/consult/cancel",
    ] {
        let body = Some(json!({"agent":"1002"}));
        let (status, _) = f.json("POST", path, Some(&ops), body.clone()).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{path}: only an agent consults"
        );
        let (status, _) = f.json("POST", path, None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn metrics_health_and_pages() {
    let f = fixture();
    f.state.metrics.call_started();
    let (status, body, ctype) = f.request("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/plain"));
    assert!(
        String::from_utf8_lossy(&body)
            .lines()
            .any(|l| l == "switchboard_calls_total 1")
    );

    let (status, body) = f.json("GET", "/healthz", None, None).await;
    assert_eq!(
        (status, body["storage"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    f.state.sip_up.store(false, Ordering::Relaxed);
    let (status, body) = f.json("GET", "/healthz", None, None).await;
    assert_eq!(
        (status, body["sip"].as_bool()),
        (StatusCode::SERVICE_UNAVAILABLE, Some(false))
    );

    for page in ["/desk", "/qa", "/ops", "/"] {
        let (status, body, ctype) = f.request("GET", page, None, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(ctype.starts_with("text/html"));
        let html = String::from_utf8(body).expect("utf-8");
        assert!(
            html.contains("Test &lt;Clinic&gt;"),
            "{page}: clinic name escaped"
        );
        assert!(!html.contains("{{"), "{page}: unfilled placeholder");
        if page != "/" {
            // Times on the page are the clinic's: the zone is there, the browser's never used.
            assert!(
                html.contains("const TZ = \"Asia/Shanghai\""),
                "{page}: clinic zone"
            );
            assert!(
                !html.contains("toLocaleTimeString()"),
                "{page}: a time in the browser's zone"
            );
        }
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{page}: no external resources"
        );
        if page == "/desk" {
            // The transfer control lists the clinic's queues.
            assert!(
                html.contains("<option value=\"enquiries\">enquiries</option>")
                    && html.contains("/api/agents/me/transfer"),
                "the desk can transfer to each queue"
            );
            assert!(
                html.contains("\"/api/agents/me/consult\" + path")
                    && html.contains("\"/complete\"")
                    && html.contains("\"/cancel\"")
                    && html.contains("case \"consult\""),
                "the desk consults, completes and cancels, and follows the consultation"
            );
            assert!(
                html.contains("\"/api/agents/me/hold\", { held: true }")
                    && html.contains("\"/api/agents/me/hangup\"")
                    && html.contains("\"/disposition\"")
                    && html.contains("\"/flag\"")
                    && html.contains("\"/patient\""),
                "the desk holds, hangs up, wraps up, flags and creates a record"
            );
            // The wrap-up codes and the clinic's language are filled in, the codes as
            // JSON that cannot close the script.
            assert!(
                html.contains("const DISPOSITIONS = [{\"code\":\"booked\",\"label\":\"Appointment booked\",\"label_zh\":\"已预约\",\"tone\":\"positive\"}"),
                "wrap-up codes"
            );
            assert!(
                html.contains("|| \"zh\";"),
                "Chinese by default for a zh clinic"
            );
            assert!(
                html.contains("\"Noto Sans CJK SC\""),
                "a font that renders Chinese on Debian"
            );
        }
    }
}

// ---- the desk WebSocket over a real socket ----

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn start(
    f: &Fixture,
) -> (
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, f.state.clone(), shutdown.clone()));
    (addr, shutdown, server)
}

async fn next_json(ws: &mut Client) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("message in time")
            .expect("open")
            .expect("ok");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("json event");
        }
    }
}

fn offer(call_id: &str) -> DeskEvent {
    DeskEvent::Offer {
        call_id: call_id.into(),
        caller: "13800000001".into(),
        patient: None,
        ivr_path: vec!["main:1".into()],
        queue: "appointments".into(),
        waited_ms: 2000,
        ring_timeout_ms: 15_000,
        callback: false,
        voicemail: None,
        consult_from: None,
        history: Vec::new(),
        tendency: None,
    }
}

#[tokio::test]
async fn desk_socket_gets_state_then_the_screen_pop_before_deliver_resolves() {
    let f = fixture();
    let (addr, shutdown, server) = start(&f).await;
    let token = f.token("1001", Role::Agent);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/desk?token={token}"))
            .await
            .expect("connect");
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event":"state","state":"ready","reason":null})
    );
    assert_eq!(f.state.hub.connected("1001"), 1);

    let patient = f
        .state
        .storage
        .patient_by_phone("13800000001")
        .expect("query");
    let mut event = offer("c-9");
    if let DeskEvent::Offer { patient: p, .. } = &mut event {
        p.clone_from(&patient);
    }
    let confirmed = f.state.hub.deliver("1001", event).await;
    assert_eq!(confirmed, 1, "the desk confirmed the write");
    // Written before deliver() resolved: it is already on the wire.
    let got = tokio::time::timeout(Duration::from_millis(500), ws.next())
        .await
        .expect("already written")
        .expect("open")
        .expect("ok");
    let got: Value = serde_json::from_str(got.to_text().expect("text")).expect("json");
    assert_eq!(got["event"], "offer");
    assert_eq!(
        got["caller"], "13800000001",
        "the agent's own desk gets the full number"
    );
    assert_eq!(got["patient"]["name"], "张演示");
    assert_eq!(got["ring_timeout_ms"], 15_000);

    // Another agent's desk does not see it; fire-and-forget publish reaches this one.
    assert_eq!(f.state.hub.deliver("1002", offer("c-10")).await, 0);
    f.state.hub.publish(
        "1001",
        DeskEvent::Answered {
            call_id: "c-9".into(),
        },
    );
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event":"answered","call_id":"c-9"})
    );

    shutdown.cancel();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                return true;
            }
        }
        true
    })
    .await;
    assert_eq!(closed, Ok(true), "desk socket closed on shutdown");
    server.await.expect("join").expect("serve");
}

#[tokio::test]
async fn deliver_waits_for_every_open_desk_of_the_agent() {
    let f = fixture();
    let (addr, shutdown, _server) = start(&f).await;
    let token = f.token("1001", Role::Agent);
    let url = format!("ws://{addr}/ws/desk?token={token}");
    let (mut a, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    let (mut b, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    next_json(&mut a).await;
    next_json(&mut b).await;
    let started = tokio::time::Instant::now();
    assert_eq!(f.state.hub.deliver("1001", offer("c-1")).await, 2);
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "resolved by acks, not the cap"
    );
    assert_eq!(next_json(&mut a).await["call_id"], "c-1");
    assert_eq!(next_json(&mut b).await["call_id"], "c-1");
    drop(a);
    // The closed desk unsubscribes once its task sees the close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while f.state.hub.connected("1001") != 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.state.hub.connected("1001"), 1);
    assert_eq!(f.state.hub.deliver("1001", offer("c-2")).await, 1);
    shutdown.cancel();
}

#[tokio::test]
async fn desk_socket_needs_an_agent_token() {
    let f = fixture();
    let (addr, shutdown, _server) = start(&f).await;
    for (token, expected) in [
        (None, 401),
        (Some("bogus".to_owned()), 401),
        (Some(f.token("ops", Role::Ops)), 403),
    ] {
        let url = match &token {
            Some(t) => format!("ws://{addr}/ws/desk?token={t}"),
            None => format!("ws://{addr}/ws/desk"),
        };
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status().as_u16(), expected)
            }
            other => panic!("expected HTTP {expected}, got {:?}", other.map(|_| ())),
        }
    }
    shutdown.cancel();
}

#[tokio::test]
async fn query_tokens_only_count_on_websocket_upgrades() {
    let f = fixture();
    let ops = f.token("ops", Role::Ops);
    let (status, _) = f
        .json("GET", &format!("/api/agents?token={ops}"), None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn ops_read_write_and_delete_a_patient_record_every_access_audited() {
    let f = fixture();
    let ops = f.token("ops", Role::Ops);
    let path = "/api/patients/13900000042";
    let record = json!({
        "name": "Demo Patient Forty-Two", "age": 52, "sex": "female", "visits": 9,
        "visits_last_year": 3, "last_visit": "2026-11-02", "last_doctor": "Dr. Demo",
        "next_appointment": "2026-12-12 10:00", "cost_band": "medium",
        "tags": ["hypertension", "implant"], "allergies": "penicillin",
        "last_complaint": "waited too long", "complaint_status": "resolved",
        "preferred_language": "zh", "preferred_contact_time": "weekday mornings",
        "notes": "made up for the test"
    });
    let (status, _) = f.json("GET", path, Some(&ops), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, stored) = f.json("PUT", path, Some(&ops), Some(record.clone())).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    let (status, read) = f.json("GET", path, Some(&ops), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, stored);
    assert_eq!(read["phone"], "13900000042");
    assert_eq!(read["tags"], json!(["hypertension", "implant"]));
    assert_eq!(read["complaint_status"], "resolved");
    // The pop reads the same store: the caller's number finds the whole profile.
    let p = f
        .state
        .storage
        .patient_by_phone("+8613900000042")
        .expect("read")
        .expect("found");
    assert_eq!(
        p.preferred_contact_time.as_deref(),
        Some("weekday mornings")
    );

    for (body, says) in [
        (
            json!({"name": "A", "age": 3, "sex": "child"}),
            "sex \"child\"",
        ),
        (json!({"name": "A", "age": 300}), "age 300"),
        (
            json!({"name": "A", "age": 3, "phone": "13900000043"}),
            "not the one in the path",
        ),
        (
            json!({"name": "A", "age": 3, "shoe_size": 42}),
            "bad patient record",
        ),
        (json!({"name": "", "age": 3}), "name"),
    ] {
        let (status, answer) = f.json("PUT", path, Some(&ops), Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(says)),
            "{body}: {answer}"
        );
    }
    let agent = f.token("1001", Role::Agent);
    let (status, _) = f.json("GET", path, Some(&agent), None).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "agents see patients in the pop only"
    );
    let (status, _) = f.json("DELETE", path, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _, _) = f.request("DELETE", path, Some(&ops), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = f.json("DELETE", path, Some(&ops), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let patient_rows: Vec<_> = audit_actions(&f)
        .into_iter()
        .filter(|(_, action, _)| action.starts_with("patient"))
        .collect();
    let actions: Vec<&str> = patient_rows.iter().map(|(_, a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "patient_view_not_found",
            "patient_update",
            "patient_view",
            "patient_delete",
            "patient_delete_not_found"
        ]
    );
    assert!(
        patient_rows
            .iter()
            .all(|(u, _, t)| u == "ops" && t == "13900000042")
    );
}

#[tokio::test]
async fn desk_messages_that_are_wrong_get_a_clear_answer_and_the_socket_stays() {
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let f = fixture();
    let (addr, shutdown, server) = start(&f).await;
    let token = f.token("1001", Role::Agent);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/desk?token={token}"))
            .await
            .expect("connect");
    assert_eq!(next_json(&mut ws).await["event"], "state");
    for (sent, event, says) in [
        (r#"{"hello":1}"#, "error", "bad desk message"),
        ("not json", "error", "bad desk message"),
        // This server has no SIP side: the browser phone is refused, plainly.
        (
            r#"{"webphone":"offer","sdp":"v=0"}"#,
            "webphone",
            "not available",
        ),
    ] {
        ws.send(WsMessage::text(sent)).await.expect("send");
        let got = next_json(&mut ws).await;
        assert_eq!(got["event"], event, "{sent}: {got}");
        let text = got["error"]
            .as_str()
            .or(got["detail"].as_str())
            .unwrap_or("");
        assert!(text.contains(says), "{sent}: {got}");
    }
    // Clicks with no phone on are ignored; the socket still carries events.
    ws.send(WsMessage::text(r#"{"webphone":"answer"}"#))
        .await
        .expect("send");
    let confirmed = f.state.hub.deliver("1001", offer("c-10")).await;
    assert_eq!(confirmed, 1);
    assert_eq!(next_json(&mut ws).await["event"], "offer");
    shutdown.cancel();
    let _ = server.await;
}

#[test]
fn byte_ranges_are_read_as_rfc_9110_says() {
    use super::api::{ByteRange, byte_range};
    let part = |start, end| ByteRange::Part { start, end };
    assert_eq!(byte_range(None, 100), ByteRange::Whole);
    assert_eq!(byte_range(Some("bytes=0-9"), 100), part(0, 9));
    assert_eq!(byte_range(Some("bytes=90-"), 100), part(90, 99));
    assert_eq!(byte_range(Some("bytes=90-1000"), 100), part(90, 99));
    assert_eq!(byte_range(Some("bytes=-10"), 100), part(90, 99));
    assert_eq!(byte_range(Some("bytes=-1000"), 100), part(0, 99));
    assert_eq!(
        byte_range(Some("bytes=100-"), 100),
        ByteRange::Unsatisfiable
    );
    assert_eq!(byte_range(Some("bytes=-0"), 100), ByteRange::Unsatisfiable);
    for whole in [
        "items=0-9",
        "bytes=9-0",
        "bytes=a-b",
        "bytes=-",
        "bytes=0-1,5-6",
        "bytes",
    ] {
        assert_eq!(byte_range(Some(whole), 100), ByteRange::Whole, "{whole}");
    }
}

#[tokio::test]
async fn a_player_seeks_in_a_recording_with_range_requests() {
    let f = fixture();
    let wav: Vec<u8> = (0u8..=255).cycle().take(200_000).collect();
    let path = f.recordings_dir().join("r-long.wav");
    std::fs::write(&path, &wav).expect("write wav");
    add_recording(&f, "r-long", path.to_str().expect("utf-8"));
    let qa = f.token("qa", Role::Qa);
    let ask = |range: &str| {
        Request::builder()
            .uri("/api/recordings/r-long/audio")
            .header(header::AUTHORIZATION, format!("Bearer {qa}"))
            .header(header::RANGE, range)
            .body(Body::empty())
            .expect("request")
    };
    let res = router(f.state.clone())
        .oneshot(ask("bytes=150000-150099"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    let h = res.headers();
    assert_eq!(h[header::CONTENT_RANGE], "bytes 150000-150099/200000");
    assert_eq!(h[header::CONTENT_LENGTH], "100");
    assert_eq!(h[header::ACCEPT_RANGES], "bytes");
    let body = to_bytes(res.into_body(), 1 << 20).await.expect("body");
    assert_eq!(body.as_ref(), &wav[150_000..150_100]);

    let res = router(f.state.clone())
        .oneshot(ask("bytes=300000-"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(res.headers()[header::CONTENT_RANGE], "bytes */200000");
    // Each fetch, ranged or not, is in the audit log.
    let audits = f.state.storage.audit_entries(10).expect("audit");
    let fetched = audits
        .iter()
        .filter(|e| e.action == "recording_audio" && e.target == "r-long")
        .count();
    assert_eq!(fetched, 2, "{audits:?}");
}
