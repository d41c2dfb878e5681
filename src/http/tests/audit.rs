//! `GET /api/audit`: the trail for ops, in clinic time, by window.

use super::*;

#[tokio::test]
async fn ops_read_the_audit_trail_of_a_window_and_reading_it_is_audited() {
    let f = fixture();
    let storage = &f.state.storage;
    storage
        .audit("qa", "recording_audio", "r-1")
        .expect("audit");
    storage
        .audit("ops", "patient_view", "13800000001")
        .expect("audit");
    // The pop's views go through the store writer, batched with the call records.
    let (writer, thread) =
        crate::storage::writer::StoreWriter::start(storage.clone()).expect("writer");
    writer.audit("1001", "patient_pop", "13800000002");
    thread.close();

    let ops = f.token("ops", Role::Ops);
    let (status, view) = f.json("GET", "/api/audit", Some(&ops), None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let actions: Vec<&str> = view["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "recording_audio",
            "patient_view",
            "patient_pop",
            "audit_view"
        ],
        "{view}"
    );
    assert_eq!(view["entries"][2]["user"], "1001");
    assert_eq!(view["entries"][2]["target"], "13800000002");
    assert!(
        view["entries"][0]["at"]
            .as_str()
            .is_some_and(|t| t.ends_with("+08:00")),
        "{view}"
    );
    assert_eq!(view["truncated"], false);

    // A window before any of it is empty (but reading it is still written down).
    let (status, view) = f
        .json(
            "GET",
            "/api/audit?from=2026-01-01&to=2026-01-02",
            Some(&ops),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["entries"], json!([]), "{view}");
    assert_eq!(view["from"], "2026-01-01T00:00:00.000+08:00");
    let (status, _) = f
        .json("GET", "/api/audit?from=yesterday", Some(&ops), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let qa = f.token("qa", Role::Qa);
    let (status, _) = f.json("GET", "/api/audit", Some(&qa), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the trail is for ops");
    let reads = storage
        .audit_entries(20)
        .expect("audit")
        .into_iter()
        .filter(|e| e.action == "audit_view")
        .count();
    assert_eq!(reads, 2, "each read of the trail is in it");
}
