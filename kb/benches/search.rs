//! Search latency over a 10,000-article knowledge base (the target: p99 ≤ 30 ms).
//!
//! `cargo bench -p kb --bench search` (env `KB_ARTICLES`, `KB_SEARCHES` change the sizes).
//! Articles are made of a clinic's vocabulary, two thirds Chinese and one third English,
//! 80–400 words each; queries mix Chinese words and phrases, English words, typos and
//! prefixes, as agents type them. Prints index build time, resident memory added, and
//! search latency percentiles.

use std::time::{Duration, Instant};

use kb::{Article, KnowledgeIndex};

const ZH: &[&str] = &[
    "预约",
    "挂号",
    "改约",
    "取消",
    "门诊",
    "时间",
    "种植",
    "复诊",
    "洗牙",
    "拔牙",
    "补牙",
    "根管",
    "正畸",
    "牙套",
    "医保",
    "报销",
    "发票",
    "费用",
    "押金",
    "术后",
    "护理",
    "出血",
    "肿胀",
    "疼痛",
    "止痛",
    "药物",
    "过敏",
    "青霉素",
    "麻醉",
    "检查",
    "拍片",
    "全景片",
    "儿童",
    "老人",
    "孕妇",
    "停车",
    "地址",
    "地铁",
    "急诊",
    "夜间",
    "节假日",
    "周末",
    "医生",
    "护士",
    "前台",
    "投诉",
    "表扬",
    "回访",
    "随访",
    "注意事项",
    "饮食",
    "刷牙",
    "漱口",
    "冰敷",
    "消毒",
    "口腔",
    "牙龈",
    "牙周",
    "智齿",
    "冠",
    "贴面",
    "美白",
    "矫正",
    "保持器",
    "复查",
    "病历",
    "身份证",
    "家属",
];
const EN: &[&str] = &[
    "appointment",
    "reschedule",
    "cancel",
    "opening",
    "hours",
    "implant",
    "follow-up",
    "cleaning",
    "extraction",
    "filling",
    "root",
    "canal",
    "braces",
    "insurance",
    "claim",
    "invoice",
    "cost",
    "deposit",
    "aftercare",
    "bleeding",
    "swelling",
    "pain",
    "medication",
    "allergy",
    "penicillin",
    "anaesthesia",
    "x-ray",
    "children",
    "elderly",
    "pregnancy",
    "parking",
    "address",
    "subway",
    "emergency",
    "night",
    "holiday",
    "weekend",
    "doctor",
    "nurse",
    "reception",
    "complaint",
    "praise",
    "callback",
    "diet",
    "brushing",
    "rinse",
    "ice",
    "gum",
    "wisdom",
    "tooth",
    "crown",
    "veneer",
    "whitening",
    "retainer",
    "records",
    "family",
    "the",
    "a",
    "of",
    "and",
    "please",
];
const QUERIES: &[&str] = &[
    "挂号",
    "预约挂号",
    "种植牙术后护理",
    "医保",
    "报销发票",
    "急诊",
    "牙",
    "智齿拔牙注意事项",
    "儿童洗牙",
    "青霉素过敏",
    "夜间急诊地址",
    "停车",
    "appointment",
    "reschedule appointment",
    "implant aftercare",
    "insurence",
    "penicilin allergy",
    "emergen",
    "whit",
    "parking address",
    "wisdom tooth extraction",
    "braces cost",
    "医保 insurance",
    "holiday opening hours",
];

/// A small deterministic generator (no dependency for a benchmark's dice).
struct Dice(u64);

impl Dice {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n
    }
}

fn article(id: u64, dice: &mut Dice) -> Article {
    let english = id.is_multiple_of(3);
    let (words, sep) = if english { (EN, " ") } else { (ZH, "") };
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| words[dice.next(words.len())])
            .collect::<Vec<_>>()
            .join(sep)
    };
    let title = pick(3);
    let length = 80 + (id as usize * 7919) % 320;
    let body = (0..length / 10)
        .map(|_| pick(10))
        .collect::<Vec<_>>()
        .join(if english { ". " } else { "。" });
    Article {
        id,
        title,
        body,
        tags: vec![format!("main:{}", id % 10), "appointments".into()],
    }
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), kb::KbError> {
    // `cargo test --benches` runs this with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let articles = env("KB_ARTICLES", if quick { 500 } else { 10_000 });
    let searches = env("KB_SEARCHES", if quick { 200 } else { 20_000 });

    let mut dice = Dice(20_261_204);
    let docs: Vec<Article> = (1..=articles as u64)
        .map(|id| article(id, &mut dice))
        .collect();
    let chars: usize = docs.iter().map(|a| a.body.chars().count()).sum();

    let before = resident_kib();
    let started = Instant::now();
    let index = KnowledgeIndex::new()?;
    for chunk in docs.chunks(1_000) {
        index.put(chunk)?;
    }
    let built = started.elapsed();
    drop(docs);
    let added_kib = resident_kib().saturating_sub(before);

    // Warm up once, then measure.
    for q in QUERIES {
        index.search(q, 10)?;
    }
    let mut took: Vec<Duration> = Vec::with_capacity(searches);
    let mut per_query: Vec<Vec<Duration>> = vec![Vec::new(); QUERIES.len()];
    let mut found = 0usize;
    for i in 0..searches {
        let q = QUERIES[i % QUERIES.len()];
        let t = Instant::now();
        let hits = index.search(q, 10)?;
        took.push(t.elapsed());
        per_query[i % QUERIES.len()].push(t.elapsed());
        found += usize::from(!hits.is_empty());
    }
    let mut medians: Vec<(Duration, &str)> = per_query
        .iter_mut()
        .zip(QUERIES)
        .filter(|(d, _)| !d.is_empty())
        .map(|(d, q)| {
            d.sort_unstable();
            (d[d.len() / 2], *q)
        })
        .collect();
    medians.sort_unstable_by(|a, b| b.cmp(a));
    let t = Instant::now();
    for i in 0..searches.min(2_000) {
        index.suggest(&[format!("main:{}", i % 10)], 5)?;
    }
    let suggest_each = t.elapsed() / u32::try_from(searches.min(2_000)).unwrap_or(1);

    took.sort_unstable();
    let at = |p: f64| took[((took.len() as f64 * p) as usize).min(took.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "articles {articles} ({:.1} M characters of body), built in {:.2} s, resident +{:.1} MB",
        chars as f64 / 1e6,
        built.as_secs_f64(),
        added_kib as f64 / 1024.0
    );
    println!(
        "search x{searches}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {found} with hits",
        ms(at(0.50)),
        ms(at(0.90)),
        ms(at(0.99)),
        ms(took[took.len() - 1])
    );
    println!("suggest: {:.3} ms each", ms(suggest_each));
    let slowest: Vec<String> = medians
        .iter()
        .take(4)
        .map(|(d, q)| format!("{q:?} {:.2} ms", ms(*d)))
        .collect();
    println!("slowest queries (median): {}", slowest.join(", "));
    Ok(())
}
