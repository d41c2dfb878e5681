//! The knowledge base over HTTP: who may search, read and edit; versions; conflicts.

use super::*;

fn hit_titles(body: &Value) -> Vec<String> {
    body["hits"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h["title"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn agents_search_and_get_suggestions_from_the_ivr_path() {
    let f = fixture();
    let li = f.token("1001", Role::Agent);
    let uri = format!("/api/kb/search?q={}", urlencode("医保"));
    let (status, body) = f.json("GET", &uri, Some(&li), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(hit_titles(&body), ["医保与费用"]);
    assert!(
        body["hits"][0]["snippet"]
            .as_str()
            .is_some_and(|s| s.contains("医保"))
    );

    let (_, body) = f
        .json("GET", "/api/kb/search?q=reschedulng", Some(&li), None)
        .await;
    assert_eq!(
        hit_titles(&body).first().map(String::as_str),
        Some("Rescheduling or cancelling an appointment"),
        "a typo still finds it: {body}"
    );

    // The urgent branch of the demo menu: its aftercare articles, not the others.
    let (status, body) = f
        .json("GET", "/api/kb/suggest?tags=main:9,urgent", Some(&li), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut titles = hit_titles(&body);
    titles.sort();
    assert_eq!(titles, ["拔牙后出血怎么办", "种植牙术后护理"]);

    let (status, _) = f.json("GET", "/api/kb/search?q=x", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = f
        .json("GET", "/api/kb/search?q=x&limit=many", Some(&li), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn ops_edit_with_every_version_kept_and_agents_cannot() {
    let f = fixture();
    let ops = f.token("ops", Role::Ops);
    let li = f.token("1001", Role::Agent);
    let article =
        json!({"title": "洗牙前须知", "body": "洗牙前一小时不要进食。", "tags": ["main:1"]});
    let (status, _) = f
        .json("POST", "/api/kb/articles", Some(&li), Some(article.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "agents read, ops write");
    let (status, created) = f
        .json("POST", "/api/kb/articles", Some(&ops), Some(article))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["updated_by"], "ops");
    let id = created["id"].as_u64().expect("id");
    let path = format!("/api/kb/articles/{id}");

    let edit = |version: u64, body: &str| json!({"title": "洗牙前须知", "body": body, "tags": ["main:1"], "version": version});
    let (status, edited) = f
        .json("PUT", &path, Some(&ops), Some(edit(1, "洗牙前请刷牙。")))
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["version"], 2);
    // A second editor who started from version 1 is told, and loses nothing silently.
    let (status, conflict) = f
        .json("PUT", &path, Some(&ops), Some(edit(1, "覆盖")))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["current_version"], 2);
    let (_, now) = f.json("GET", &path, Some(&li), None).await;
    assert_eq!(now["body"], "洗牙前请刷牙。");

    let uri = format!("/api/kb/search?q={}", urlencode("刷牙"));
    let (_, found) = f.json("GET", &uri, Some(&li), None).await;
    assert!(
        hit_titles(&found).contains(&"洗牙前须知".to_owned()),
        "{found}"
    );

    for (body, says) in [
        (json!({"title": " ", "version": 2}), "title"),
        (json!({"title": "t", "tags": [""], "version": 2}), "tags"),
        (json!({"title": "t"}), "version"),
        (
            json!({"title": "t", "version": 2, "author": "me"}),
            "unknown field",
        ),
    ] {
        let (status, answer) = f.json("PUT", &path, Some(&ops), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(says)),
            "{answer}"
        );
    }

    let (status, _) = f.json("DELETE", &path, Some(&ops), None).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a deletion names its version"
    );
    let (status, body, _) = f
        .request("DELETE", &format!("{path}?version=2"), Some(&ops), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(body.is_empty());
    let (status, _) = f.json("GET", &path, Some(&li), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, found) = f.json("GET", &uri, Some(&li), None).await;
    assert!(
        !hit_titles(&found).contains(&"洗牙前须知".to_owned()),
        "{found}"
    );

    let (status, versions) = f
        .json("GET", &format!("{path}/versions"), Some(&ops), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let seen: Vec<(u64, bool, String)> = versions
        .as_array()
        .expect("list")
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap_or(0),
                v["deleted"].as_bool().unwrap_or(false),
                v["body"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (3, true, "洗牙前请刷牙。".to_owned()),
            (2, false, "洗牙前请刷牙。".to_owned()),
            (1, false, "洗牙前一小时不要进食。".to_owned()),
        ]
    );
    assert!(
        versions[0]["at"]
            .as_str()
            .is_some_and(|t| t.ends_with("+08:00")),
        "{versions}"
    );
    let (status, _) = f
        .json("GET", "/api/kb/articles/999/versions", Some(&ops), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f
        .json("GET", "/api/kb/articles/abc", Some(&ops), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Percent-encodes a query value (the test client sends the URI as given).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
