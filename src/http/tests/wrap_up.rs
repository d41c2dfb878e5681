//! The agent's wrap-up, harassing-call flags, a record for a new caller, and the desk's
//! hold and hang-up requests.

use super::*;

/// A call offered to 1002 then answered by 1001, that day's morning.
fn answered_call(f: &Fixture, id: &str, caller: &str) {
    let mut call = CallRecord::new(id, caller, morning());
    call.queue = Some("appointments".into());
    call.agents_offered = vec!["1002".into(), "1001".into()];
    call.agent = Some("1001".into());
    call.outcome = Some(Outcome::Answered);
    f.state.storage.upsert_call(&call).expect("insert");
}

#[tokio::test]
async fn a_wrap_up_is_saved_on_the_agents_own_call_and_listed_with_it() {
    let f = fixture();
    answered_call(&f, "c-1", "13800000001");
    let li = f.token("1001", Role::Agent);
    let zhang = f.token("1003", Role::Agent);
    let path = "/api/calls/c-1/disposition";
    let body =
        json!({"code": "complaint", "note": "  waited too long on Monday ", "follow_up": true});
    let (status, saved) = f.json("POST", path, Some(&li), Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["code"], "complaint");
    assert_eq!(saved["note"], "waited too long on Monday", "trimmed");
    assert_eq!(saved["follow_up"], true);
    assert!(
        saved["saved_at"]
            .as_str()
            .is_some_and(|t| t.ends_with("+08:00")),
        "{saved}"
    );

    // Saving again replaces the agent's wrap-up.
    let (status, _) = f
        .json("POST", path, Some(&li), Some(json!({"code": "answered"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    for (who, body, want, says) in [
        (
            &zhang,
            json!({"code": "answered"}),
            StatusCode::FORBIDDEN,
            "never offered",
        ),
        (
            &li,
            json!({"code": "sold"}),
            StatusCode::BAD_REQUEST,
            "unknown disposition code",
        ),
        (
            &li,
            json!({"code": "answered", "mood": 3}),
            StatusCode::BAD_REQUEST,
            "bad wrap-up",
        ),
        (
            &li,
            json!({"code": "answered", "note": "x".repeat(2001)}),
            StatusCode::BAD_REQUEST,
            "longer than",
        ),
    ] {
        let (status, answer) = f.json("POST", path, Some(who), Some(body.clone())).await;
        assert_eq!(status, want, "{body}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(says)),
            "{answer}"
        );
    }
    let (status, _) = f
        .json(
            "POST",
            "/api/calls/c-9/disposition",
            Some(&li),
            Some(json!({"code": "answered"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let ops = f.token("ops", Role::Ops);
    let (status, _) = f
        .json("POST", path, Some(&ops), Some(json!({"code": "answered"})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only agents wrap up");

    // 1002 rang for it: it may wrap up too; both show on the call.
    let wang = f.token("1002", Role::Agent);
    let (status, _) = f
        .json(
            "POST",
            path,
            Some(&wang),
            Some(json!({"code": "wrong_number"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, calls) = f
        .json("GET", "/api/calls?date=2026-11-25", Some(&ops), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let wrap_ups = &calls[0]["dispositions"];
    assert_eq!(wrap_ups.as_array().map(Vec::len), Some(2), "{calls}");
    assert_eq!(wrap_ups[0]["agent"], "1001");
    assert_eq!(
        wrap_ups[0]["code"], "answered",
        "the second save replaced the first"
    );
    assert_eq!(wrap_ups[1]["agent"], "1002");
    let audit = f.state.storage.audit_entries(10).expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.action == "disposition_save" && e.target == "c-1")
    );
}

#[tokio::test]
async fn a_harassing_call_is_flagged_once_per_agent_and_ops_see_the_masked_caller() {
    let f = fixture();
    answered_call(&f, "c-1", "13800000007");
    answered_call(&f, "c-2", "13800000007");
    let li = f.token("1001", Role::Agent);
    // The one-button flag sends no body.
    let (status, bytes, _) = f
        .request("POST", "/api/calls/c-1/flag", Some(&li), None)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let flagged: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(flagged["new"], true);
    let (status, again) = f
        .json(
            "POST",
            "/api/calls/c-1/flag",
            Some(&li),
            Some(json!({"reason": "again"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["new"], false, "the first flag stands");
    let (status, _) = f
        .json(
            "POST",
            "/api/calls/c-2/flag",
            Some(&li),
            Some(json!({"reason": "abusive"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let zhang = f.token("1003", Role::Agent);
    let (status, _) = f
        .json("POST", "/api/calls/c-2/flag", Some(&zhang), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let ops = f.token("ops", Role::Ops);
    let today = chrono::Utc::now()
        .with_timezone(&f.state.site.timezone)
        .date_naive();
    let (status, list) = f
        .json("GET", &format!("/api/flags?date={today}"), Some(&ops), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list = list.as_array().expect("list").clone();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["caller"], "138****0007");
    assert_eq!(list[1]["reason"], "abusive");
    assert_eq!(list[1]["flags_that_day"], 2);
    let (status, _) = f.json("GET", "/api/flags", Some(&li), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the list is for ops");
}

#[tokio::test]
async fn an_agent_creates_the_record_of_a_new_caller_once() {
    let f = fixture();
    answered_call(&f, "c-1", "13900000055");
    let li = f.token("1001", Role::Agent);
    let path = "/api/calls/c-1/patient";
    let (status, answer) = f
        .json(
            "POST",
            path,
            Some(&li),
            Some(json!({"name": "Demo New Patient", "phone": "13900000001"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "another number: {answer}");
    let (status, made) = f
        .json(
            "POST",
            path,
            Some(&li),
            Some(json!({"name": "Demo New Patient", "age": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["phone"], "13900000055", "the caller's number");
    let stored = f
        .state
        .storage
        .patient_by_phone("13900000055")
        .expect("read");
    assert_eq!(stored.map(|p| p.name), Some("Demo New Patient".to_owned()));
    let (status, _) = f
        .json(
            "POST",
            path,
            Some(&li),
            Some(json!({"name": "Someone Else", "age": 40})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "ops change existing records");
    let zhang = f.token("1003", Role::Agent);
    let (status, _) = f
        .json("POST", path, Some(&zhang), Some(json!({"name": "X"})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let audit = f.state.storage.audit_entries(10).expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.action == "patient_create" && e.target == "13900000055")
    );
}

#[tokio::test]
async fn hold_and_hang_up_from_the_desk_are_the_agents_own_and_say_why_they_are_refused() {
    let f = fixture();
    let li = f.token("1001", Role::Agent);
    for (path, body) in [
        ("/api/agents/me/hold", Some(json!({"held": true}))),
        ("/api/agents/me/hangup", None),
    ] {
        let (status, answer) = f.json("POST", path, Some(&li), body.clone()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("not on a call"))
        );
        let ops = f.token("ops", Role::Ops);
        let (status, _) = f.json("POST", path, Some(&ops), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let (status, answer) = f
        .json(
            "POST",
            "/api/agents/me/hold",
            Some(&li),
            Some(json!({"hold": "yes"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}
