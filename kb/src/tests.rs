use super::*;

fn article(id: u64, title: &str, body: &str, tags: &[&str]) -> Article {
    Article {
        id,
        title: title.into(),
        body: body.into(),
        tags: tags.iter().map(|t| (*t).into()).collect(),
    }
}

fn clinic() -> KnowledgeIndex {
    let kb = KnowledgeIndex::new().expect("index");
    kb.put(&[
        article(
            1,
            "门诊时间",
            "周一至周五 8:00–20:00，周六 9:00–17:00，节假日另行通知。",
            &["main:2", "enquiries"],
        ),
        article(
            2,
            "预约挂号与改约",
            "可电话预约挂号，改约请至少提前一天。取消预约不收费。",
            &["main:1", "appointments"],
        ),
        article(
            3,
            "Rescheduling an appointment",
            "Patients may reschedule by phone at least one day ahead; cancellation is free.",
            &["appointments", "english"],
        ),
        article(
            4,
            "种植牙术后护理",
            "术后24小时内不要刷牙，冰敷减轻肿胀；如出血不止请按9转急诊。",
            &["urgent", "main:9"],
        ),
        article(
            5,
            "Insurance and payment",
            "We accept the city medical insurance card; implants are not covered.",
            &["enquiries"],
        ),
    ])
    .expect("put");
    kb
}

fn ids(hits: &[Hit]) -> Vec<u64> {
    hits.iter().map(|h| h.id).collect()
}

#[test]
fn a_two_character_chinese_word_finds_its_article() {
    let kb = clinic();
    assert_eq!(ids(&kb.search("挂号", 10).expect("search")), [2]);
    assert_eq!(ids(&kb.search("肿胀", 10).expect("search")), [4]);
}

#[test]
fn a_chinese_phrase_ranks_the_article_holding_most_of_it_first() {
    let kb = clinic();
    // 种植 and 护理 are in 4; 预约 is in 2 once.
    let hits = kb.search("种植牙护理预约", 10).expect("search");
    assert_eq!(hits.first().map(|h| h.id), Some(4));
    assert!(ids(&hits).contains(&2));
}

#[test]
fn one_character_finds_what_holds_it() {
    let kb = clinic();
    let found = ids(&kb.search("牙", 10).expect("search"));
    assert!(found.contains(&4), "{found:?}");
    assert!(!found.contains(&1), "{found:?}");
}

#[test]
fn english_matches_stemmed_with_typos_and_while_typing() {
    let kb = clinic();
    assert_eq!(ids(&kb.search("rescheduled", 10).expect("exact")), [3]);
    // 3 by its title; 2 (in Chinese) by its tag, the queue's name.
    assert_eq!(ids(&kb.search("appointments", 10).expect("exact")), [3, 2]);
    assert_eq!(ids(&kb.search("resceduling", 10).expect("typo")), [3]);
    assert_eq!(ids(&kb.search("insurence", 10).expect("typo")), [5]);
    assert_eq!(ids(&kb.search("Insura", 10).expect("prefix")), [5]);
    // A finished short word is not stretched into others.
    assert!(kb.search("car ", 10).expect("short").is_empty());
}

#[test]
fn title_outranks_body_and_the_snippet_shows_the_match() {
    let kb = clinic();
    kb.put(&[article(
        6,
        "Parking",
        "Appointment patients park free in lot B.",
        &[],
    )])
    .expect("put");
    let hits = kb.search("appointment", 10).expect("search");
    // Title (3), then tag (2), then body (6).
    assert_eq!(ids(&hits), [3, 2, 6]);
    assert!(
        hits[2].snippet.contains("Appointment"),
        "{:?}",
        hits[1].snippet
    );
    let zh = kb.search("改约", 10).expect("search");
    assert!(zh[0].snippet.contains("改约"), "{:?}", zh[0].snippet);
}

#[test]
fn suggestions_come_from_tags_whole_and_case_blind() {
    let kb = clinic();
    let hits = kb
        .suggest(&["main:9".into(), "URGENT".into()], 5)
        .expect("suggest");
    assert_eq!(ids(&hits), [4]);
    let hits = kb.suggest(&["appointments".into()], 5).expect("suggest");
    let mut found = ids(&hits);
    found.sort_unstable();
    assert_eq!(found, [2, 3]);
    assert!(kb.suggest(&["main".into()], 5).expect("suggest").is_empty());
    assert!(kb.suggest(&[], 5).expect("suggest").is_empty());
}

#[test]
fn an_edit_replaces_the_article_and_a_removal_hides_it() {
    let kb = clinic();
    assert_eq!(kb.len(), 5);
    kb.put(&[article(2, "预约须知", "请提前十分钟到诊。", &["main:1"])])
        .expect("edit");
    assert_eq!(kb.len(), 5);
    assert!(kb.search("挂号", 10).expect("search").is_empty());
    assert_eq!(ids(&kb.search("到诊", 10).expect("search")), [2]);
    kb.remove(2).expect("remove");
    assert!(kb.search("到诊", 10).expect("search").is_empty());
    assert_eq!(kb.len(), 4);
}

#[test]
fn nothing_to_search_for_finds_nothing_and_limits_hold() {
    let kb = clinic();
    assert!(kb.search("", 10).expect("empty").is_empty());
    assert!(kb.search("，。？!", 10).expect("punctuation").is_empty());
    assert_eq!(
        kb.search("the appointment insurance 预约 急诊", 2)
            .expect("search")
            .len(),
        2
    );
    let long = "预约".repeat(5_000);
    assert_eq!(ids(&kb.search(&long, 10).expect("long")), [2]);
}
