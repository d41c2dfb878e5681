//! `GET/PUT/DELETE /api/patients/{phone}` (ops): one patient record, checked as the CSV
//! import checks it, every access in the audit log (a record not found too).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::api::blocking;
use super::{ApiError, AppState};
use crate::auth::{AuthRejection, AuthUser, Role};
use crate::storage::Patient;

/// The ops user and the phone the path names, or why the request is refused.
fn ops_and_phone(
    user: Result<AuthUser, AuthRejection>,
    phone: Result<Path<String>, PathRejection>,
) -> Result<(AuthUser, String), ApiError> {
    let user = user?;
    user.require(&[Role::Ops])?;
    let Ok(Path(phone)) = phone else {
        return Err(ApiError::bad_request("bad phone in the path"));
    };
    Ok((user, phone.trim().to_owned()))
}

/// Writes the audit row; without it the answer is not given.
async fn audited(
    state: &AppState,
    user: &str,
    action: &'static str,
    phone: &str,
) -> Result<(), ApiError> {
    let storage = state.storage.clone();
    let (user, phone) = (user.to_owned(), phone.to_owned());
    blocking("writing the audit log", move || {
        storage.audit(&user, action, &phone)
    })
    .await
}

/// `GET /api/patients/{phone}`: the record (`+86`/`0086` prefixes match too), or 404.
pub async fn get_patient(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    phone: Result<Path<String>, PathRejection>,
) -> Result<Json<Patient>, ApiError> {
    let (user, phone) = ops_and_phone(user, phone)?;
    let storage = state.storage.clone();
    let key = phone.clone();
    let found = blocking("reading the patient", move || {
        storage.patient_by_phone(&key)
    })
    .await?;
    let action = if found.is_some() {
        "patient_view"
    } else {
        "patient_view_not_found"
    };
    audited(&state, &user.name, action, &phone).await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no patient with that phone"))
}

/// `PUT /api/patients/{phone}`: creates or replaces the record (its `phone` may be left
/// out; given, it must be the path's). 400 with the field and reason when a check fails.
pub async fn put_patient(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    phone: Result<Path<String>, PathRejection>,
    body: Result<Json<Patient>, JsonRejection>,
) -> Result<Json<Patient>, ApiError> {
    let (user, phone) = ops_and_phone(user, phone)?;
    let Json(mut patient) =
        body.map_err(|e| ApiError::bad_request(format!("bad patient record: {}", e.body_text())))?;
    if patient.phone.is_empty() {
        patient.phone.clone_from(&phone);
    }
    if patient.phone != phone {
        return Err(ApiError::bad_request(
            "bad patient record: its phone is not the one in the path",
        ));
    }
    crate::patients::check(&patient)
        .map_err(|why| ApiError::bad_request(format!("bad patient record: {why}")))?;
    let storage = state.storage.clone();
    let stored = patient.clone();
    blocking("writing the patient", move || {
        storage.put_patients(&[stored])
    })
    .await?;
    audited(&state, &user.name, "patient_update", &phone).await?;
    Ok(Json(patient))
}

/// `DELETE /api/patients/{phone}`: 204, or 404 when there is no such record.
pub async fn delete_patient(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    phone: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (user, phone) = ops_and_phone(user, phone)?;
    let storage = state.storage.clone();
    let key = phone.clone();
    let deleted = blocking("deleting the patient", move || storage.delete_patient(&key)).await?;
    let action = if deleted {
        "patient_delete"
    } else {
        "patient_delete_not_found"
    };
    audited(&state, &user.name, action, &phone).await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no patient with that phone"))
    }
}
