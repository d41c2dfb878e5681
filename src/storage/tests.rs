use chrono::{NaiveDate, TimeZone, Utc};

use super::*;

fn temp_db() -> (tempfile::TempDir, Storage) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data").join("switchboard.db");
    let storage = Storage::open(path.to_str().expect("utf-8 temp path")).expect("open");
    (dir, storage)
}

fn call(id: &str, started: chrono::DateTime<Utc>) -> CallRecord {
    let mut c = CallRecord::new(id, "13800000001", started);
    c.ivr_path = vec!["main:1".into()];
    c.queue = Some("appointments".into());
    c.wait_ms = Some(4200);
    c.agents_offered = vec!["1001".into(), "1002".into()];
    c.offers = vec![
        OfferRecord {
            agent: "1001".into(),
            rang_ms: Some(15_000),
            ended: Some("rang_out".into()),
        },
        OfferRecord {
            agent: "1002".into(),
            rang_ms: Some(3_100),
            ended: Some("answered".into()),
        },
    ];
    c.agent = Some("1002".into());
    c.answered_at = Some(started + chrono::Duration::seconds(5));
    c.ended_at = Some(started + chrono::Duration::seconds(65));
    c.outcome = Some(Outcome::Answered);
    c.recording_id = Some(format!("rec-{id}"));
    c.satisfaction = Some(5);
    c
}

#[test]
fn demo_patients_are_seeded_and_match_with_country_prefix() {
    let (_dir, s) = temp_db();
    for n in 1..=5 {
        let phone = format!("1380000000{n}");
        let p = s.patient_by_phone(&phone).expect("query").expect("seeded");
        assert_eq!(p.phone, phone);
        assert!(p.notes.as_deref().unwrap_or("").contains("演示"));
    }
    let plus = s
        .patient_by_phone("+8613800000003")
        .expect("query")
        .expect("found");
    let zeros = s
        .patient_by_phone("008613800000003")
        .expect("query")
        .expect("found");
    assert_eq!(plus, zeros);
    assert_eq!(plus.name, "王测试");
    assert_eq!(s.patient_by_phone("13900000000").expect("query"), None);
}

#[test]
fn reopening_keeps_data_and_does_not_reseed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let t = Utc
        .with_ymd_and_hms(2026, 11, 25, 2, 0, 0)
        .single()
        .expect("valid");
    {
        let s = Storage::open(&url).expect("open");
        s.upsert_call(&call("a", t)).expect("insert");
    }
    let s = Storage::open(&url).expect("reopen");
    assert_eq!(s.call("a").expect("query"), Some(call("a", t)));
    assert!(s.patient_by_phone("13800000005").expect("query").is_some());
}

#[test]
fn postgres_and_unknown_urls_are_refused_clearly() {
    let err = Storage::open("postgres://clinic@db/switchboard").expect_err("not built");
    assert!(matches!(err, StorageError::PostgresNotBuilt));
    assert!(err.to_string().contains("not built yet"));
    assert!(matches!(
        Storage::open("mysql://x"),
        Err(StorageError::UnsupportedUrl(_))
    ));
}

#[test]
fn upsert_replaces_and_round_trips_every_field() {
    let (_dir, s) = temp_db();
    let t = Utc
        .with_ymd_and_hms(2026, 11, 25, 2, 0, 0)
        .single()
        .expect("valid");
    let mut c = CallRecord::new("x", "13800000002", t);
    s.upsert_call(&c).expect("insert in progress");
    assert_eq!(s.call("x").expect("query").expect("row").outcome, None);
    c = call("x", t);
    s.upsert_call(&c).expect("update");
    assert_eq!(s.call("x").expect("query"), Some(c));
}

#[test]
fn calls_on_uses_the_clinic_local_day() {
    let (_dir, s) = temp_db();
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().expect("tz");
    // 2026-11-24 23:30 Shanghai = 15:30 UTC: belongs to the 24th locally.
    let late_24 = Utc
        .with_ymd_and_hms(2026, 11, 24, 15, 30, 0)
        .single()
        .expect("valid");
    // 2026-11-25 00:10 Shanghai = 2026-11-24 16:10 UTC: the 25th locally.
    let early_25 = Utc
        .with_ymd_and_hms(2026, 11, 24, 16, 10, 0)
        .single()
        .expect("valid");
    let late_25 = Utc
        .with_ymd_and_hms(2026, 11, 25, 15, 59, 0)
        .single()
        .expect("valid");
    let next = Utc
        .with_ymd_and_hms(2026, 11, 25, 16, 0, 0)
        .single()
        .expect("valid");
    for (id, t) in [("a", late_24), ("b", early_25), ("c", late_25), ("d", next)] {
        s.upsert_call(&call(id, t)).expect("insert");
    }
    let day = NaiveDate::from_ymd_opt(2026, 11, 25).expect("date");
    let ids: Vec<_> = s
        .calls_on(day, tz)
        .expect("query")
        .into_iter()
        .map(|c| c.call_id)
        .collect();
    assert_eq!(ids, ["b", "c"]);
    // The same day in UTC holds the 15:59 and 16:00 UTC calls.
    let ids: Vec<_> = s
        .calls_on(day, chrono_tz::UTC)
        .expect("query")
        .into_iter()
        .map(|c| c.call_id)
        .collect();
    assert_eq!(ids, ["c", "d"]);
}

#[test]
fn recordings_by_day_and_id() {
    let (_dir, s) = temp_db();
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().expect("tz");
    let t = Utc
        .with_ymd_and_hms(2026, 11, 25, 3, 0, 0)
        .single()
        .expect("valid");
    let mut rec = Recording {
        id: "r1".into(),
        call_id: "c1".into(),
        agent: "1001".into(),
        started_at: t,
        duration_ms: 0,
        channels: 2,
        gaps: Vec::new(),
        holds: Vec::new(),
        path: "data/recordings/r1.wav".into(),
    };
    s.insert_recording(&rec).expect("insert");
    rec.duration_ms = 61_000;
    rec.gaps = vec![
        Gap {
            channel: GapChannel::Caller,
            at_ms: 1_200,
            ms: 60,
        },
        Gap {
            channel: GapChannel::Agent,
            at_ms: 0,
            ms: 400,
        },
    ];
    rec.holds = vec![Hold {
        by: GapChannel::Agent,
        at_ms: 20_000,
        ms: 15_000,
    }];
    s.insert_recording(&rec).expect("update duration");
    assert_eq!(
        s.recording("r1").expect("query"),
        Some(rec.clone()),
        "duration, gaps and holds are rewritten with the row"
    );
    assert_eq!(s.recording("nope").expect("query"), None);
    let day = NaiveDate::from_ymd_opt(2026, 11, 25).expect("date");
    assert_eq!(s.recordings_on(day, tz).expect("query"), vec![rec]);
    let other = NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
    assert!(s.recordings_on(other, tz).expect("query").is_empty());
}

#[test]
fn audit_entries_newest_first_with_limit() {
    let (_dir, s) = temp_db();
    s.audit("qa", "recording_audio", "r1").expect("audit");
    s.audit("qa", "recording_audio", "r2").expect("audit");
    s.audit("ops", "recording_audio_forbidden", "r3")
        .expect("audit");
    let rows = s.audit_entries(2).expect("query");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].user.as_str(), rows[0].target.as_str()),
        ("ops", "r3")
    );
    assert_eq!(rows[1].target, "r2");
    s.ping().expect("ping");
}

#[test]
fn storage_is_shared_across_threads() {
    let (_dir, s) = temp_db();
    let t = Utc
        .with_ymd_and_hms(2026, 11, 25, 3, 0, 0)
        .single()
        .expect("valid");
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || s.upsert_call(&call(&format!("t{i}"), t)))
        })
        .collect();
    for h in handles {
        h.join().expect("thread").expect("insert");
    }
    let tz: chrono_tz::Tz = "UTC".parse().expect("tz");
    let day = NaiveDate::from_ymd_opt(2026, 11, 25).expect("date");
    assert_eq!(s.calls_on(day, tz).expect("query").len(), 4);
}

#[test]
fn the_event_log_is_appended_in_order_survives_a_reopen_and_reads_by_window() {
    use acd::{AgentState, Logged};
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let t = |s: i64| {
        Utc.with_ymd_and_hms(2026, 12, 3, 1, 0, 0)
            .single()
            .expect("valid")
            + chrono::Duration::seconds(s)
    };
    let state = |agent: &str, state: AgentState, reason: Option<&str>| Logged::AgentState {
        agent: agent.into(),
        state,
        reason: reason.map(str::to_owned),
    };
    let entries = [
        (t(0), None, state("1001", AgentState::Ready, None)),
        (
            t(5),
            None,
            state("1001", AgentState::NotReady, Some("meal")),
        ),
        (t(6), None, state("1002", AgentState::Ready, None)),
        (
            t(10),
            Some("c1"),
            Logged::Enqueued {
                queue: "urgent".into(),
                position: 1,
                transferred: false,
            },
        ),
        (t(20), None, state("1001", AgentState::Ready, None)),
    ];
    {
        let s = Storage::open(&url).expect("open");
        let records: Vec<EventRecord> = entries
            .iter()
            .map(|(at, call, event)| EventRecord {
                at: *at,
                call_id: call.map(str::to_owned),
                event: event.clone(),
            })
            .collect();
        let batch = |events: &[EventRecord]| Batch {
            events: events.to_vec(),
            ..Batch::default()
        };
        s.write_batch(&batch(&records[..3])).expect("first batch");
        s.write_batch(&batch(&records[3..])).expect("second batch");
    }
    let s = Storage::open(&url).expect("reopen");
    let (before, inside) = s.events_between(t(8), t(30)).expect("read");
    let kinds: Vec<(&str, Option<&str>)> = inside
        .iter()
        .map(|e| (e.event.kind(), e.call_id.as_deref()))
        .collect();
    assert_eq!(kinds, vec![("enqueued", Some("c1")), ("agent_state", None)]);
    // Each agent's last state before the window, whatever came earlier.
    let last: Vec<&Logged> = before.iter().map(|e| &e.event).collect();
    assert_eq!(
        last,
        vec![
            &state("1001", AgentState::NotReady, Some("meal")),
            &state("1002", AgentState::Ready, None)
        ]
    );
    assert_eq!(before[0].at, t(5));
}

#[test]
fn a_pending_callback_survives_a_reopen_and_its_call_is_not_closed_as_interrupted() {
    let dir = tempfile::tempdir().expect("tmp");
    let url = dir.path().join("sb.db").to_string_lossy().into_owned();
    let t0 = Utc
        .with_ymd_and_hms(2026, 12, 3, 9, 0, 0)
        .single()
        .expect("time");
    let waiting = CallRecord::new("cb1", "13800000004", t0);
    let done = CallRecord::new("cb2", "13800000005", t0);
    let pending = |id: &str, attempts| PendingCallback {
        call_id: id.to_owned(),
        queue: "appointments".to_owned(),
        since: t0 + chrono::Duration::seconds(5),
        attempts,
        voicemail: Some(format!("v-{id}")),
    };
    {
        let s = Storage::open(&url).expect("open");
        s.write_batch(&Batch {
            calls: vec![waiting.clone(), done.clone()],
            callbacks: vec![
                ("cb1".into(), Some(pending("cb1", 0))),
                ("cb2".into(), Some(pending("cb2", 0))),
            ],
            ..Batch::default()
        })
        .expect("first batch");
        // cb1 tried once; cb2 reached the patient.
        s.write_batch(&Batch {
            callbacks: vec![
                ("cb1".into(), Some(pending("cb1", 1))),
                ("cb2".into(), None),
            ],
            ..Batch::default()
        })
        .expect("second batch");
    }
    let s = Storage::open(&url).expect("reopen");
    let kept = s.pending_callbacks().expect("read");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].0.call_id, "cb1");
    assert_eq!(kept[0].1, pending("cb1", 1));
    let unfinished: Vec<String> = s
        .unfinished_calls()
        .expect("read")
        .into_iter()
        .map(|c| c.call_id)
        .collect();
    assert_eq!(
        unfinished,
        ["cb2"],
        "the kept callback's call is not interrupted"
    );
}

#[test]
fn a_callers_ended_calls_come_newest_first_with_or_without_the_country_code() {
    let (_dir, s) = temp_db();
    let t0 = Utc::now() - chrono::Duration::days(3);
    for (i, caller) in [
        "13800000001",
        "+8613800000001",
        "13800000009",
        "13800000001",
    ]
    .iter()
    .enumerate()
    {
        let mut c = call(&format!("h{i}"), t0 + chrono::Duration::hours(i as i64));
        c.caller = (*caller).to_owned();
        s.upsert_call(&c).expect("store");
    }
    let mut open = call("h-open", t0 + chrono::Duration::hours(9));
    open.ended_at = None;
    open.outcome = None;
    s.upsert_call(&open).expect("store");
    let ids = |phone: &str, limit: usize| -> Vec<String> {
        s.ended_calls_of(phone, limit)
            .expect("read")
            .into_iter()
            .map(|c| c.call_id)
            .collect()
    };
    assert_eq!(
        ids("13800000001", 5),
        ["h3", "h0"],
        "the open call is not history"
    );
    assert_eq!(ids("+8613800000001", 5), ["h3", "h1", "h0"]);
    assert_eq!(ids("+8613800000001", 2), ["h3", "h1"]);
    assert_eq!(ids("13900000000", 5), Vec::<String>::new());
}
