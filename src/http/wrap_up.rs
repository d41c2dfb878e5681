//! The agent's after-call work on the desk: the wrap-up (a configured disposition code, a
//! note, a follow-up flag), flagging a harassing caller for ops, and a patient record for a
//! caller the pop did not know. Each is allowed only on a call the agent was offered.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::api::{DateQuery, blocking, local_time, parse_date};
use super::{ApiError, AppState};
use crate::auth::{AuthRejection, AuthUser, Role};
use crate::storage::{CallFlag, CallRecord, Patient, SavedDisposition};

/// The longest wrap-up note or flag reason kept, in characters.
const MAX_NOTE_CHARS: usize = 2000;

/// `POST /api/calls/{call_id}/disposition` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispositionRequest {
    /// One of the configured codes (`[desk] dispositions`).
    pub code: String,
    #[serde(default)]
    pub note: String,
    /// The patient should be called back.
    #[serde(default)]
    pub follow_up: bool,
}

/// A saved wrap-up as the API shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DispositionView {
    pub call_id: String,
    pub agent: String,
    pub code: String,
    pub note: String,
    pub follow_up: bool,
    pub saved_at: String,
}

impl DispositionView {
    pub fn new(d: SavedDisposition, tz: chrono_tz::Tz) -> Self {
        Self {
            saved_at: local_time(d.saved_at, tz),
            call_id: d.call_id,
            agent: d.agent,
            code: d.code,
            note: d.note,
            follow_up: d.follow_up,
        }
    }
}

/// The agent and the call the path names, once the call is known to be one the agent was
/// offered (ringing, talking, in wrap-up, or any earlier call it rang for).
async fn agents_call(
    state: &AppState,
    user: Result<AuthUser, AuthRejection>,
    call_id: Result<Path<String>, PathRejection>,
) -> Result<(AuthUser, CallRecord), ApiError> {
    let user = user?;
    user.require(&[Role::Agent])?;
    let Ok(Path(call_id)) = call_id else {
        return Err(ApiError::bad_request("bad call id in the path"));
    };
    let storage = state.storage.clone();
    let id = call_id.clone();
    let record = blocking("reading the call", move || storage.call(&id)).await?;
    let Some(record) = record else {
        return Err(ApiError::not_found("no call with that id"));
    };
    let offered = record.agent.as_deref() == Some(user.name.as_str())
        || record.agents_offered.contains(&user.name);
    if !offered {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: "that call was never offered to you".into(),
        });
    }
    Ok((user, record))
}

fn note(text: String, what: &str) -> Result<String, ApiError> {
    let text = text.trim().to_owned();
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::bad_request(format!(
            "the {what} is longer than {MAX_NOTE_CHARS} characters"
        )));
    }
    Ok(text)
}

/// `POST /api/calls/{call_id}/disposition` (agent): saves the agent's wrap-up of a call it
/// was offered (saving again replaces it). The next pop for the patient shows it, and its
/// code's tone counts in the patient's tendency. 400 for a code not configured.
pub async fn save_disposition(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    call_id: Result<Path<String>, PathRejection>,
    body: Result<Json<DispositionRequest>, JsonRejection>,
) -> Result<Json<DispositionView>, ApiError> {
    let (user, record) = agents_call(&state, user, call_id).await?;
    let Json(req) =
        body.map_err(|e| ApiError::bad_request(format!("bad wrap-up: {}", e.body_text())))?;
    if !state.site.dispositions.iter().any(|d| d.code == req.code) {
        let codes: Vec<&str> = state
            .site
            .dispositions
            .iter()
            .map(|d| d.code.as_str())
            .collect();
        return Err(ApiError::bad_request(format!(
            "unknown disposition code {:?}: use one of {}",
            req.code,
            codes.join(", ")
        )));
    }
    let saved = SavedDisposition {
        call_id: record.call_id,
        agent: user.name.clone(),
        code: req.code,
        note: note(req.note, "note")?,
        follow_up: req.follow_up,
        saved_at: chrono::Utc::now(),
    };
    let storage = state.storage.clone();
    let row = saved.clone();
    blocking("saving the wrap-up", move || {
        storage.save_disposition(&row)?;
        storage.audit(&row.agent, "disposition_save", &row.call_id)
    })
    .await?;
    Ok(Json(DispositionView::new(saved, state.site.timezone)))
}

/// `POST /api/calls/{call_id}/flag` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagRequest {
    #[serde(default)]
    pub reason: String,
}

/// `POST /api/calls/{call_id}/flag` answer.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlagView {
    pub call_id: String,
    /// `false`: this agent had flagged the call already (the first flag stands).
    pub new: bool,
}

/// `POST /api/calls/{call_id}/flag` (agent): flags a harassing call for ops (`GET
/// /api/flags`); the reason is optional. One flag per agent per call.
pub async fn flag_call(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    call_id: Result<Path<String>, PathRejection>,
    body: Result<Json<FlagRequest>, JsonRejection>,
) -> Result<Json<FlagView>, ApiError> {
    let (user, record) = agents_call(&state, user, call_id).await?;
    let req = match body {
        Ok(Json(req)) => req,
        // The one-button flag sends no body.
        Err(JsonRejection::MissingJsonContentType(_)) => FlagRequest::default(),
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "bad flag: {}",
                e.body_text()
            )));
        }
    };
    let flag = CallFlag {
        call_id: record.call_id,
        agent: user.name,
        reason: note(req.reason, "reason")?,
        flagged_at: chrono::Utc::now(),
    };
    let storage = state.storage.clone();
    let call_id = flag.call_id.clone();
    let new = blocking("flagging the call", move || {
        let new = storage.flag_call(&flag)?;
        storage.audit(&flag.agent, "call_flag", &flag.call_id)?;
        Ok(new)
    })
    .await?;
    Ok(Json(FlagView { call_id, new }))
}

/// One flagged call as ops see it (`GET /api/flags`).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlaggedCall {
    pub call_id: String,
    /// Masked, as on every list.
    pub caller: String,
    pub agent: String,
    pub reason: String,
    pub flagged_at: String,
    /// How many times this number was flagged that day, this one included.
    pub flags_that_day: usize,
}

/// `GET /api/flags?date=` (ops): the calls agents flagged that local day, oldest first.
pub async fn flags(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    query: Result<Query<DateQuery>, QueryRejection>,
) -> Result<Json<Vec<FlaggedCall>>, ApiError> {
    user?.require(&[Role::Ops])?;
    let tz = state.site.timezone;
    let date = parse_date(query, tz)?;
    let storage = state.storage.clone();
    let found = blocking("listing flagged calls", move || {
        let flags = storage.flags_on(date, tz)?;
        let mut out = Vec::with_capacity(flags.len());
        for f in flags {
            let caller = storage.call(&f.call_id)?.map(|c| c.caller);
            out.push((f, caller.unwrap_or_default()));
        }
        Ok(out)
    })
    .await?;
    let count = |caller: &str| found.iter().filter(|(_, c)| c == caller).count();
    Ok(Json(
        found
            .iter()
            .map(|(f, caller)| FlaggedCall {
                call_id: f.call_id.clone(),
                caller: callcore::pii::mask_phone(caller),
                agent: f.agent.clone(),
                reason: f.reason.clone(),
                flagged_at: local_time(f.flagged_at, tz),
                flags_that_day: count(caller),
            })
            .collect(),
    ))
}

/// `POST /api/calls/{call_id}/patient` (agent): creates the patient record of the caller of
/// a call offered to this agent, when there is none yet (the pop said "new patient"); the
/// record's phone is the caller's. 409 when the number has a record already (ops change
/// records); 400 with the field and reason when a check fails.
pub async fn create_patient(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    call_id: Result<Path<String>, PathRejection>,
    body: Result<Json<Patient>, JsonRejection>,
) -> Result<(StatusCode, Json<Patient>), ApiError> {
    let (user, record) = agents_call(&state, user, call_id).await?;
    let Json(mut patient) =
        body.map_err(|e| ApiError::bad_request(format!("bad patient record: {}", e.body_text())))?;
    if !patient.phone.is_empty() && patient.phone != record.caller {
        return Err(ApiError::bad_request(
            "phone: a record made from a call is the caller's number; leave it out",
        ));
    }
    patient.phone.clone_from(&record.caller);
    crate::patients::check(&patient).map_err(ApiError::bad_request)?;
    let storage = state.storage.clone();
    let row = patient.clone();
    let agent = user.name;
    let created = blocking("creating the patient", move || {
        if storage.patient_by_phone(&row.phone)?.is_some() {
            return Ok(false);
        }
        storage.put_patients(std::slice::from_ref(&row))?;
        storage.audit(&agent, "patient_create", &row.phone)?;
        Ok(true)
    })
    .await?;
    if !created {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: "this number has a patient record already".into(),
        });
    }
    Ok((StatusCode::CREATED, Json(patient)))
}
