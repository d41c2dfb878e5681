//! JSON API handlers, `/metrics` and `/healthz`.

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::{ApiError, AppState};
use crate::auth::{AuthRejection, AuthUser, Role};
use crate::control::{AgentView, ConsultStep, ControlError};
use crate::pii::mask_phone;
use crate::storage::{CallRecord, Recording, StorageError};

/// `POST /api/login` body.
#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

/// `POST /api/login` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    pub role: Role,
}

/// `POST /api/login`: a token for the right password, else 401.
pub async fn login(
    State(state): State<AppState>,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Json<LoginResponse>, ApiError> {
    let Json(req) =
        body.map_err(|e| ApiError::bad_request(format!("bad login request: {}", e.body_text())))?;
    match state
        .sessions
        .login(&state.users, &req.user, &req.password, Instant::now())
    {
        Some((token, role)) => {
            tracing::info!(user = %req.user, role = role.as_str(), "login");
            Ok(Json(LoginResponse { token, role }))
        }
        None => {
            tracing::info!(user = %req.user, "login refused");
            Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                message: "wrong user or password".into(),
            })
        }
    }
}

/// `GET /api/agents` (ops, qa): every agent's state.
pub async fn agents(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    user?.require(&[Role::Ops, Role::Qa])?;
    let agents = state.control.agents().await.map_err(control_error)?;
    Ok(Json(agents))
}

/// `GET /api/queues` (ops, qa): every queue live, its waiting callers (masked) and its
/// agents by state.
pub async fn queues(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
) -> Result<Json<Vec<crate::control::QueueView>>, ApiError> {
    user?.require(&[Role::Ops, Role::Qa])?;
    let queues = state.control.queues().await.map_err(control_error)?;
    Ok(Json(queues))
}

/// `POST /api/agents/me/state` body.
#[derive(Debug, Deserialize)]
pub struct StateRequest {
    /// "ready", "not_ready", or "wrap_up" (more after-call work: `extend_ms`).
    pub state: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// With "wrap_up": how much longer (default 30 s, at most 10 min per request).
    #[serde(default)]
    pub extend_ms: Option<u64>,
}

/// How much a "wrap_up" request adds when it does not say.
const DEFAULT_EXTEND_MS: u64 = 30_000;
/// The most one "wrap_up" request may add.
const MAX_EXTEND_MS: u64 = 600_000;

/// `POST /api/agents/me/state` (agent): Ready / Not ready (both end a wrap-up early), or
/// more wrap-up; answers the agent's new view. The desks hear the change from call control.
pub async fn set_my_state(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    body: Result<Json<StateRequest>, JsonRejection>,
) -> Result<Json<AgentView>, ApiError> {
    let user = user?;
    user.require(&[Role::Agent])?;
    let Json(req) =
        body.map_err(|e| ApiError::bad_request(format!("bad state request: {}", e.body_text())))?;
    let ready = match req.state.as_str() {
        "ready" => true,
        "not_ready" => false,
        "wrap_up" => {
            let ms = req.extend_ms.unwrap_or(DEFAULT_EXTEND_MS);
            if ms == 0 || ms > MAX_EXTEND_MS {
                return Err(ApiError::bad_request(format!(
                    "extend_ms must be 1..={MAX_EXTEND_MS}, not {ms}"
                )));
            }
            let view = state
                .control
                .extend_wrap_up(&user.name, std::time::Duration::from_millis(ms))
                .await
                .map_err(control_error)?;
            return Ok(Json(view));
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown state {other:?}: use \"ready\", \"not_ready\" or \"wrap_up\""
            )));
        }
    };
    let reason = req.reason.filter(|r| !r.trim().is_empty());
    let view = state
        .control
        .set_agent_state(&user.name, ready, reason)
        .await
        .map_err(control_error)?;
    Ok(Json(view))
}

/// `POST /api/agents/me/transfer` and `…/consult` body: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The queue the caller goes to (blind: they wait there like any caller).
    #[serde(default)]
    pub queue: Option<String>,
    /// The agent the caller is handed to (free now; else the transfer is refused).
    #[serde(default)]
    pub agent: Option<String>,
}

/// `POST /api/agents/me/transfer` (agent): hands the caller the agent is talking to on
/// to a queue or a free agent; the agent's phone is hung up and after-call work follows.
/// Answers the agent's new view; 409 when the agent is on no call, the target does not
/// exist or the agent named is not free.
pub async fn transfer_my_call(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    body: Result<Json<TransferRequest>, JsonRejection>,
) -> Result<Json<AgentView>, ApiError> {
    let user = user?;
    user.require(&[Role::Agent])?;
    let to = TransferRequest::target(body, "transfer")?;
    let view = state
        .control
        .transfer(&user.name, to)
        .await
        .map_err(control_error)?;
    Ok(Json(view))
}

impl TransferRequest {
    /// The target a transfer or consultation request (`what`) names, or why it names none.
    fn target(
        body: Result<Json<TransferRequest>, JsonRejection>,
        what: &str,
    ) -> Result<callcore::TransferTarget, ApiError> {
        let Json(req) = body
            .map_err(|e| ApiError::bad_request(format!("bad {what} request: {}", e.body_text())))?;
        let name = |s: String| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        match (req.queue.and_then(name), req.agent.and_then(name)) {
            (Some(queue), None) => Ok(callcore::TransferTarget::Queue(queue)),
            (None, Some(agent)) => Ok(callcore::TransferTarget::Agent(agent)),
            _ => Err(ApiError::bad_request(format!(
                "bad {what} request: give either \"queue\" or \"agent\""
            ))),
        }
    }
}

/// `POST /api/agents/me/hold` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// `true`: on hold (the caller hears hold music); `false`: back with the caller.
    pub held: bool,
}

/// `POST /api/agents/me/hold` (agent): holds or takes back the caller from the desk, for a
/// SIP-phone agent too (we hold in the middle; the phone is not asked). Answers the agent's
/// new view (`on_hold` / `talking`); 409 when the agent is on no call or consults.
pub async fn hold_my_call(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    body: Result<Json<HoldRequest>, JsonRejection>,
) -> Result<Json<AgentView>, ApiError> {
    let user = user?;
    user.require(&[Role::Agent])?;
    let Json(req) =
        body.map_err(|e| ApiError::bad_request(format!("bad hold request: {}", e.body_text())))?;
    let view = state
        .control
        .hold(&user.name, req.held)
        .await
        .map_err(control_error)?;
    Ok(Json(view))
}

/// `POST /api/agents/me/hangup` (agent): hangs up the call from the desk (both phones get
/// a BYE; after-call work follows). 409 when the agent is on no call.
pub async fn hang_up_my_call(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
) -> Result<Json<AgentView>, ApiError> {
    let user = user?;
    user.require(&[Role::Agent])?;
    let view = state
        .control
        .hang_up(&user.name)
        .await
        .map_err(control_error)?;
    Ok(Json(view))
}

/// `POST /api/agents/me/consult` (agent): an attended transfer begins: the named agent's
/// desk gets the caller's pop (with `consult_from`) and its phone rings; once it answers the
/// two agents talk while the caller hears hold music. 409 when the agent is on no call,
/// consults already, or the agent named is unknown, unregistered or not free.
pub async fn consult(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    body: Result<Json<TransferRequest>, JsonRejection>,
) -> Result<Json<AgentView>, ApiError> {
    let user = user?;
    user.require(&[Role::Agent])?;
    let to = TransferRequest::target(body, "consult")?;
    consult_step(&state, &user, ConsultStep::Start(to)).await
}

/// `POST /api/agents/me/consult/complete` (agent): the caller goes to the consulted agent,
/// who answered; the agent's phone is hung up and after-call work follows. 409 otherwise.
pub async fn consult_complete(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
) -> Result<Json<AgentView>, ApiError> {
    let user = user?;
    user.require(&[Role::Agent])?;
    consult_step(&state, &user, ConsultStep::Complete).await
}

/// `POST /api/agents/me/consult/cancel` (agent): the consulted agent's phone is hung up
/// (or stops ringing); the caller is back with the agent. 409 when it consults nobody.
pub async fn consult_cancel(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
) -> Result<Json<AgentView>, ApiError> {
    let user = user?;
    user.require(&[Role::Agent])?;
    consult_step(&state, &user, ConsultStep::Cancel).await
}

async fn consult_step(
    state: &AppState,
    user: &AuthUser,
    step: ConsultStep,
) -> Result<Json<AgentView>, ApiError> {
    let view = state
        .control
        .consult(&user.name, step)
        .await
        .map_err(control_error)?;
    Ok(Json(view))
}

fn control_error(e: ControlError) -> ApiError {
    match e {
        ControlError::UnknownAgent => ApiError::not_found("no such agent"),
        ControlError::Rejected(msg) => ApiError {
            status: StatusCode::CONFLICT,
            message: msg,
        },
        other => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: other.to_string(),
        },
    }
}

/// `?date=YYYY-MM-DD` (absent: today in the clinic's timezone).
#[derive(Debug, Deserialize)]
pub struct DateQuery {
    pub date: Option<String>,
}

pub(super) fn parse_date(
    query: Result<Query<DateQuery>, QueryRejection>,
    tz: Tz,
) -> Result<NaiveDate, ApiError> {
    let Query(q) = query.map_err(|_| ApiError::bad_request("bad query string"))?;
    match q.date.as_deref().map(str::trim) {
        None | Some("") => Ok(Utc::now().with_timezone(&tz).date_naive()),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .filter(|_| s.len() == 10)
            .ok_or_else(|| ApiError::bad_request(format!("bad date {s:?}: expected YYYY-MM-DD"))),
    }
}

/// Runs a storage call off the async workers (a day's rows can be many).
pub(super) async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, ApiError> {
    off_the_workers(what, f).await
}

/// Runs `f` on the blocking pool; its error (or its panic) becomes a logged 500.
pub(super) async fn off_the_workers<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::internal(what, e)),
        Err(e) => Err(ApiError::internal(what, e)),
    }
}

/// One call as `/api/calls` shows it (caller masked; times UTC RFC 3339).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallView {
    pub call_id: String,
    pub caller: String,
    pub started_at: String,
    pub ivr_path: Vec<String>,
    pub queue: Option<String>,
    pub wait_ms: Option<u64>,
    pub agents_offered: Vec<String>,
    /// Every offer: `{agent, rang_ms, ended}` (`ended`: answered, rang_out, declined,
    /// logged_out, caller_hung_up; null while ringing).
    #[serde(default)]
    pub offers: Vec<crate::storage::OfferRecord>,
    pub agent: Option<String>,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    pub outcome: Option<String>,
    pub recording_id: Option<String>,
    pub satisfaction: Option<u8>,
    /// The message the caller left (a voicemail), if any.
    pub voicemail_id: Option<String>,
    /// The agents' wrap-ups of the call (`{agent, code, note, follow_up, saved_at}`).
    #[serde(default)]
    pub dispositions: Vec<super::wrap_up::DispositionView>,
}

/// An instant as the API shows it: RFC 3339 with milliseconds, in the clinic's time zone.
pub fn local_time(t: chrono::DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

impl CallView {
    /// The record as the API shows it, times in the clinic's zone `tz`.
    pub fn new(c: CallRecord, tz: Tz) -> Self {
        let local = |t| local_time(t, tz);
        Self {
            caller: mask_phone(&c.caller),
            call_id: c.call_id,
            started_at: local(c.started_at),
            ivr_path: c.ivr_path,
            queue: c.queue,
            wait_ms: c.wait_ms,
            agents_offered: c.agents_offered,
            offers: c.offers,
            agent: c.agent,
            answered_at: c.answered_at.map(local),
            ended_at: c.ended_at.map(local),
            outcome: c.outcome.map(|o| o.as_str().to_owned()),
            recording_id: c.recording_id,
            satisfaction: c.satisfaction,
            voicemail_id: c.voicemail_id,
            dispositions: Vec::new(),
        }
    }
}

/// `GET /api/calls?date=` (ops, qa): that local day's calls, oldest first.
pub async fn calls(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    query: Result<Query<DateQuery>, QueryRejection>,
) -> Result<Json<Vec<CallView>>, ApiError> {
    user?.require(&[Role::Ops, Role::Qa])?;
    let tz = state.site.timezone;
    let date = parse_date(query, tz)?;
    let storage = state.storage.clone();
    let (calls, wrap_ups) = blocking("listing calls", move || {
        Ok((
            storage.calls_on(date, tz)?,
            storage.dispositions_on(date, tz)?,
        ))
    })
    .await?;
    let mut views: Vec<CallView> = calls.into_iter().map(|c| CallView::new(c, tz)).collect();
    let at: std::collections::HashMap<String, usize> = views
        .iter()
        .enumerate()
        .map(|(i, v)| (v.call_id.clone(), i))
        .collect();
    for d in wrap_ups {
        if let Some(&i) = at.get(&d.call_id) {
            views[i]
                .dispositions
                .push(super::wrap_up::DispositionView::new(d, tz));
        }
    }
    Ok(Json(views))
}

/// One recording as the API shows it (no file path).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordingView {
    pub id: String,
    pub call_id: String,
    pub agent: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub channels: u16,
    /// Where a channel is silence no packet brought: `{channel: "caller"|"agent", at_ms, ms}`.
    #[serde(default)]
    pub gaps: Vec<crate::storage::Gap>,
    /// Where a side held the call (its channel silent by design): `{by: "caller"|"agent", at_ms, ms}`.
    #[serde(default)]
    pub holds: Vec<crate::storage::Hold>,
}

impl RecordingView {
    /// The row as the API shows it, times in the clinic's zone `tz`.
    pub fn new(r: Recording, tz: Tz) -> Self {
        Self {
            id: r.id,
            call_id: r.call_id,
            agent: r.agent,
            started_at: local_time(r.started_at, tz),
            duration_ms: r.duration_ms,
            channels: r.channels,
            gaps: r.gaps,
            holds: r.holds,
        }
    }
}

/// `GET /api/recordings?date=` (qa): that local day's recordings, oldest first.
pub async fn recordings(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    query: Result<Query<DateQuery>, QueryRejection>,
) -> Result<Json<Vec<RecordingView>>, ApiError> {
    user?.require(&[Role::Qa])?;
    let tz = state.site.timezone;
    let date = parse_date(query, tz)?;
    let storage = state.storage.clone();
    let recs = blocking("listing recordings", move || {
        storage.recordings_on(date, tz)
    })
    .await?;
    Ok(Json(
        recs.into_iter()
            .map(|r| RecordingView::new(r, tz))
            .collect(),
    ))
}

/// `GET /api/qa/sample?date=` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct SampleView {
    pub date: String,
    pub sample_size: usize,
    pub recordings: Vec<RecordingView>,
}

/// `GET /api/qa/sample?date=` (qa): the day's deterministic QA sample.
pub async fn qa_sample(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    query: Result<Query<DateQuery>, QueryRejection>,
) -> Result<Json<SampleView>, ApiError> {
    user?.require(&[Role::Qa])?;
    let tz = state.site.timezone;
    let date = parse_date(query, tz)?;
    let storage = state.storage.clone();
    let recs = blocking("listing recordings", move || {
        storage.recordings_on(date, tz)
    })
    .await?;
    let date_str = date.format("%Y-%m-%d").to_string();
    let ids: Vec<String> = recs.iter().map(|r| r.id.clone()).collect();
    let picked = recordings::sample::daily_sample(
        &ids,
        state.site.qa_seed,
        &date_str,
        state.site.qa_sample_size,
    );
    let mut by_id: std::collections::HashMap<String, Recording> =
        recs.into_iter().map(|r| (r.id.clone(), r)).collect();
    let recordings = picked
        .iter()
        .filter_map(|id| by_id.remove(id))
        .map(|r| RecordingView::new(r, state.site.timezone))
        .collect();
    Ok(Json(SampleView {
        date: date_str,
        sample_size: state.site.qa_sample_size,
        recordings,
    }))
}

/// `GET /api/recordings/{id}/audio` (qa): the WAV file. Every attempt, allowed
/// or not, is written to the audit log.
/// What a `Range` header asks of a file `len` bytes long (RFC 9110 §14, one range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable range (absent, not bytes, several ranges, or malformed): the whole file.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// Nothing of it is in the file: 416.
    Unsatisfiable,
}

/// Reads `bytes=A-B`, `bytes=A-` and `bytes=-N` (the last N bytes).
pub fn byte_range(header: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole; // several ranges: the whole file is a valid answer
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |x: &str| x.parse::<u64>().ok();
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (false, _) => {
            let Some(start) = parse(a) else {
                return ByteRange::Whole;
            };
            let end = if b.is_empty() {
                Some(u64::MAX)
            } else {
                parse(b)
            };
            let Some(end) = end else {
                return ByteRange::Whole;
            };
            if end < start {
                return ByteRange::Whole;
            }
            (start, end.min(len.saturating_sub(1)))
        }
        (true, false) => {
            let Some(n) = parse(b) else {
                return ByteRange::Whole;
            };
            if n == 0 {
                return ByteRange::Unsatisfiable;
            }
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        (true, true) => return ByteRange::Whole,
    };
    if len == 0 || start >= len {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Part { start, end }
}

pub async fn recording_audio(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    id: Result<Path<String>, PathRejection>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let id = match id {
        Ok(Path(id)) => id,
        Err(_) => return Err(ApiError::bad_request("bad recording id")),
    };
    let (name, outcome) = match &user {
        Ok(u) => (u.name.clone(), audio_outcome(&state, u, &id).await),
        Err(rej) => ("anonymous".to_owned(), Err((*rej).into())),
    };
    let action = match &outcome {
        Ok(_) => "recording_audio",
        Err(e) => match e.status {
            StatusCode::UNAUTHORIZED => "recording_audio_unauthenticated",
            StatusCode::FORBIDDEN => "recording_audio_refused",
            StatusCode::NOT_FOUND => "recording_audio_not_found",
            _ => "recording_audio_failed",
        },
    };
    let storage = state.storage.clone();
    let target = id.clone();
    let audit_user = name.clone();
    let audited = blocking("writing the audit log", move || {
        storage.audit(&audit_user, action, &target)
    })
    .await;
    tracing::info!(user = %name, recording = %id, action, "recording audio fetch");
    let (mut file, len) = outcome?;
    // No audit row, no audio: QA access to recordings must always be traceable.
    audited?;
    // A player seeking in a long call asks for a range (206); a bad one gets 416.
    let range = byte_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    let (status, first, count) = match range {
        ByteRange::Whole => (StatusCode::OK, 0, len),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [
                    (header::CONTENT_RANGE, format!("bytes */{len}")),
                    (header::ACCEPT_RANGES, "bytes".to_owned()),
                ],
            )
                .into_response());
        }
    };
    if first > 0 {
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(first))
            .await
            .map_err(|e| ApiError::internal("reading the recording", e))?;
    }
    let file = tokio::io::AsyncReadExt::take(file, count);
    let stream = futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let filename: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "audio/wav".to_owned()),
            (header::CONTENT_LENGTH, count.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{filename}.wav\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response();
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = format!("bytes {first}-{}/{len}", first + count - 1).parse()
    {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

async fn audio_outcome(
    state: &AppState,
    user: &AuthUser,
    id: &str,
) -> Result<(tokio::fs::File, u64), ApiError> {
    user.require(&[Role::Qa])?;
    let storage = state.storage.clone();
    let key = id.to_owned();
    let rec = blocking("looking up the recording", move || storage.recording(&key))
        .await?
        .ok_or_else(|| ApiError::not_found("no such recording"))?;
    let path = resolve_in_dir(&state.site.recordings_dir, &rec.path).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::not_found("recording file is missing"))?;
    let len = file
        .metadata()
        .await
        .map_err(|_| ApiError::not_found("recording file is missing"))?
        .len();
    Ok((file, len))
}

/// The stored recording path as a real file inside `dir`: tried as given (absolute
/// or relative to the working directory), then relative to `dir`. Anything that
/// resolves outside `dir` (`..`, symlinks) is refused with 403.
async fn resolve_in_dir(dir: &FsPath, stored: &str) -> Result<PathBuf, ApiError> {
    let missing = || ApiError::not_found("recording file is missing");
    let root = tokio::fs::canonicalize(dir).await.map_err(|_| missing())?;
    let given = PathBuf::from(stored);
    let mut candidates = vec![given.clone()];
    if given.is_relative() {
        candidates.push(dir.join(&given));
    }
    let mut outside = false;
    for candidate in candidates {
        let Ok(real) = tokio::fs::canonicalize(&candidate).await else {
            continue;
        };
        if !real.starts_with(&root) {
            outside = true;
            continue;
        }
        if tokio::fs::metadata(&real).await.is_ok_and(|m| m.is_file()) {
            return Ok(real);
        }
    }
    if outside {
        tracing::warn!(
            path = stored,
            "recording path outside the recordings directory refused"
        );
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: "recording file is outside the recordings directory".into(),
        });
    }
    Err(missing())
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `GET /healthz`: 200 when storage answers and SIP is up, else 503; JSON details.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let storage = state.storage.clone();
    let storage_ok = matches!(
        tokio::task::spawn_blocking(move || storage.ping()).await,
        Ok(Ok(()))
    );
    let sip_ok = state.sip_up.load(Ordering::Relaxed);
    let ok = storage_ok && sip_ok;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unavailable" },
        "http": true,
        "sip": sip_ok,
        "storage": storage_ok,
    });
    (status, Json(body)).into_response()
}

/// Anything unrouted: 404 JSON.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such page")
}
