//! `GET /api/audit?from=&to=` (ops): the audit trail — who fetched or listened to which
//! recording, viewed (or was popped) which patient record, changed which, wrapped up or
//! flagged which call, when.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use super::api::{blocking, local_time};
use super::{ApiError, AppState};
use crate::auth::{AuthRejection, AuthUser, Role};

/// The most rows one answer carries (`truncated` says when there were more).
const MAX_ROWS: usize = 10_000;

/// `?from=&to=`: `YYYY-MM-DD` (whole local days) or RFC 3339; default today.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// One row of the trail.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditRow {
    /// In the clinic's time zone.
    pub at: String,
    pub user: String,
    pub action: String,
    pub target: String,
}

/// The answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct AuditView {
    pub from: String,
    pub to: String,
    /// Oldest first.
    pub entries: Vec<AuditRow>,
    /// More rows were in the window than one answer carries: ask for a shorter one.
    pub truncated: bool,
}

pub async fn audit(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditView>, ApiError> {
    let user = user?;
    user.require(&[Role::Ops])?;
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let tz = state.site.timezone;
    let (from, to) = super::kpis::window(&q.from, &q.to, tz, chrono::Utc::now())?;
    let storage = state.storage.clone();
    let name = user.name.clone();
    let rows = blocking("reading the audit log", move || {
        // Reading the trail is in the trail too (after the window it reads, if that is now).
        storage.audit(
            &name,
            "audit_view",
            &format!("{}..{}", from.to_rfc3339(), to.to_rfc3339()),
        )?;
        storage.audit_between(from, to, MAX_ROWS + 1)
    })
    .await?;
    let truncated = rows.len() > MAX_ROWS;
    Ok(Json(AuditView {
        from: local_time(from, tz),
        to: local_time(to, tz),
        entries: rows
            .into_iter()
            .take(MAX_ROWS)
            .map(|e| AuditRow {
                at: local_time(e.at, tz),
                user: e.user,
                action: e.action,
                target: e.target,
            })
            .collect(),
        truncated,
    }))
}
