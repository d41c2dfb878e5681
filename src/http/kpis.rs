//! `GET /api/kpis`: the clinic's numbers for a window, computed from the event log.
//!
//! The arithmetic is `acd::kpi` (sans-IO, tested on golden figures); this handler reads the
//! window's entries from storage and states the formulas beside the figures.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::auth::{AuthRejection, AuthUser, Role};
use crate::storage::{EventRecord, local_day_start};
use acd::kpi::{self, Kpis, Stamped, Window};

/// `?from=&to=&queue=&agent=&service_level_s=`.
#[derive(Debug, Deserialize)]
pub struct KpiQuery {
    /// `YYYY-MM-DD` (that local day's start) or RFC 3339; absent: today's start.
    pub from: Option<String>,
    /// `YYYY-MM-DD` (that local day's end) or RFC 3339; absent: the end of `from`'s day
    /// when `from` is a date, else now.
    pub to: Option<String>,
    pub queue: Option<String>,
    pub agent: Option<String>,
    /// The service level threshold in seconds (default 20).
    pub service_level_s: Option<u64>,
}

/// The answer: the window, the figures, and how each is computed.
#[derive(Debug, Serialize)]
pub struct KpiView {
    /// The window, in the clinic's time zone (RFC 3339 with its offset).
    pub from: String,
    pub to: String,
    pub queue: Option<String>,
    pub agent: Option<String>,
    /// Callers gone within this wait are short abandons.
    pub short_abandon_ms: u64,
    #[serde(flatten)]
    pub kpis: Kpis,
    pub formulas: BTreeMap<&'static str, &'static str>,
}

/// One end of the window: a local date or an instant.
enum Bound {
    Day(NaiveDate),
    At(DateTime<Utc>),
}

fn parse_bound(name: &str, s: &str) -> Result<Bound, ApiError> {
    let s = s.trim();
    if s.len() == 10
        && let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d")
    {
        return Ok(Bound::Day(day));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| Bound::At(t.with_timezone(&Utc)))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "bad {name} {s:?}: expected YYYY-MM-DD or an RFC 3339 time"
            ))
        })
}

fn day_end(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    day.succ_opt()
        .map_or(DateTime::<Utc>::MAX_UTC, |next| local_day_start(next, tz))
}

/// The window `[from, to)` a query's `from` and `to` name, at `now` (`/api/kpis`, `/api/audit`).
pub(super) fn window(
    q_from: &Option<String>,
    q_to: &Option<String>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let nonempty = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let from = match nonempty(q_from) {
        Some(s) => parse_bound("from", &s)?,
        None => Bound::Day(now.with_timezone(&tz).date_naive()),
    };
    let to = match nonempty(q_to) {
        Some(s) => match parse_bound("to", &s)? {
            Bound::Day(day) => day_end(day, tz),
            Bound::At(t) => t,
        },
        None => match from {
            Bound::Day(day) => day_end(day, tz),
            Bound::At(_) => now,
        },
    };
    let from = match from {
        Bound::Day(day) => local_day_start(day, tz),
        Bound::At(t) => t,
    };
    if to <= from {
        return Err(ApiError::bad_request(
            "the window is empty: `to` must be after `from`",
        ));
    }
    Ok((from, to))
}

/// `GET /api/kpis` (ops, qa).
pub async fn kpis(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    query: Result<Query<KpiQuery>, QueryRejection>,
) -> Result<Json<KpiView>, ApiError> {
    user?.require(&[Role::Ops, Role::Qa])?;
    let Query(q) = query.map_err(|_| ApiError::bad_request("bad query string"))?;
    let tz = state.site.timezone;
    let now = Utc::now();
    let (from, to) = window(&q.from, &q.to, tz, now)?;
    let queue = q.queue.clone().filter(|s| !s.trim().is_empty());
    if let Some(name) = &queue
        && !state.site.queues.contains(name)
    {
        return Err(ApiError::bad_request(format!(
            "unknown queue {name:?}: configured are {}",
            state.site.queues.join(", ")
        )));
    }
    let service_level_s = q
        .service_level_s
        .unwrap_or(kpi::DEFAULT_SERVICE_LEVEL_MS / 1000);
    if service_level_s == 0 || service_level_s > 3600 {
        return Err(ApiError::bad_request("service_level_s must be 1..=3600"));
    }
    let storage = state.storage.clone();
    let (before, inside) = super::api::blocking("reading the event log", move || {
        storage.events_between(from, to)
    })
    .await?;
    let w = Window {
        from_ms: from.timestamp_millis(),
        to_ms: to.timestamp_millis(),
        now_ms: now.timestamp_millis(),
        queue: queue.clone(),
        agent: q.agent.clone().filter(|s| !s.trim().is_empty()),
        service_level_ms: service_level_s * 1000,
    };
    let kpis = kpi::compute(&stamped(&before), &stamped(&inside), &w);
    let local = |t| super::api::local_time(t, tz);
    Ok(Json(KpiView {
        from: local(from),
        to: local(to),
        queue,
        agent: w.agent,
        short_abandon_ms: kpi::SHORT_ABANDON_MS,
        kpis,
        formulas: kpi::FORMULAS.iter().copied().collect(),
    }))
}

fn stamped(records: &[EventRecord]) -> Vec<Stamped<'_>> {
    records
        .iter()
        .map(|r| Stamped {
            at_ms: r.at.timestamp_millis(),
            call: r.call_id.as_deref(),
            event: &r.event,
        })
        .collect()
}
