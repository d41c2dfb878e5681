//! The knowledge base over HTTP: search and suggestions for anyone logged in, articles
//! and their versions to read, and editing for ops (an edit names the version it started
//! from, so two ops editing at once cannot overwrite each other: the second gets 409).
//!
//! - `GET /api/kb/search?q=&limit=`: the best articles for what was typed.
//! - `GET /api/kb/suggest?tags=main:1,appointments&limit=`: articles with those tags (the
//!   desk asks with the call's IVR path and queue when the phone rings).
//! - `GET /api/kb/articles`, `POST /api/kb/articles` (ops).
//! - `GET /api/kb/articles/{id}`, `PUT` (ops, `version` in the body), `DELETE` (ops,
//!   `?version=`).
//! - `GET /api/kb/articles/{id}/versions`: every version, newest first, who and when.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::api::{blocking, local_time, off_the_workers};
use super::{ApiError, AppState};
use crate::auth::{AuthRejection, AuthUser, Role};
use crate::knowledge::check;
use crate::storage::{KbArticle, KbDraft, KbVersion, KbWrite};

/// Hits when `limit` is not given.
const DEFAULT_HITS: usize = 10;
/// The longest query looked at, in characters.
const MAX_QUERY_CHARS: usize = 200;

const EVERYONE: &[Role] = &[Role::Agent, Role::Qa, Role::Ops];

/// `?q=&limit=`.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
    pub limit: Option<usize>,
}

/// `?tags=a,b&limit=`.
#[derive(Debug, Deserialize)]
pub struct SuggestQuery {
    #[serde(default)]
    pub tags: String,
    pub limit: Option<usize>,
}

/// Search and suggestion answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hits {
    pub hits: Vec<kb::Hit>,
}

/// An article as the API shows it (times in the clinic's zone).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArticleView {
    pub id: u64,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    pub version: u32,
    pub updated_at: String,
    pub updated_by: String,
}

/// One version as the API shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionView {
    pub version: u32,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    pub deleted: bool,
    pub at: String,
    pub by: String,
}

/// `POST` and `PUT` bodies (`version` only on `PUT`: the one the edit started from).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArticleRequest {
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub version: Option<u32>,
}

/// `DELETE ?version=`.
#[derive(Debug, Deserialize)]
pub struct VersionQuery {
    pub version: Option<u32>,
}

fn view(a: KbArticle, tz: chrono_tz::Tz) -> ArticleView {
    ArticleView {
        updated_at: local_time(a.updated_at, tz),
        id: a.id,
        title: a.title,
        body: a.body,
        tags: a.tags,
        version: a.version,
        updated_by: a.updated_by,
    }
}

fn version_view(v: KbVersion, tz: chrono_tz::Tz) -> VersionView {
    VersionView {
        at: local_time(v.at, tz),
        version: v.version,
        title: v.title,
        body: v.body,
        tags: v.tags,
        deleted: v.deleted,
        by: v.by,
    }
}

fn article_id(id: Result<Path<u64>, PathRejection>) -> Result<u64, ApiError> {
    id.map(|Path(id)| id)
        .map_err(|_| ApiError::bad_request("bad article id in the path"))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))
}

/// `GET /api/kb/search?q=&limit=`.
pub async fn search(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<Hits>, ApiError> {
    user?.require(EVERYONE)?;
    let q = query(q)?;
    let text: String = q.q.chars().take(MAX_QUERY_CHARS).collect();
    let limit = q.limit.unwrap_or(DEFAULT_HITS);
    let kb = state.knowledge.clone();
    let hits = off_the_workers("searching the knowledge base", move || {
        kb.search(&text, limit)
    })
    .await?;
    Ok(Json(Hits { hits }))
}

/// `GET /api/kb/suggest?tags=&limit=`.
pub async fn suggest(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    q: Result<Query<SuggestQuery>, QueryRejection>,
) -> Result<Json<Hits>, ApiError> {
    user?.require(EVERYONE)?;
    let q = query(q)?;
    let tags: Vec<String> = q
        .tags
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .take(32)
        .map(str::to_owned)
        .collect();
    let limit = q.limit.unwrap_or(5);
    let kb = state.knowledge.clone();
    let hits = off_the_workers("suggesting articles", move || kb.suggest(&tags, limit)).await?;
    Ok(Json(Hits { hits }))
}

/// `GET /api/kb/articles`: every standing article, by id.
pub async fn list(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
) -> Result<Json<Vec<ArticleView>>, ApiError> {
    user?.require(EVERYONE)?;
    let storage = state.storage.clone();
    let all = blocking("listing the articles", move || storage.kb_articles()).await?;
    let tz = state.site.timezone;
    Ok(Json(all.into_iter().map(|a| view(a, tz)).collect()))
}

/// `GET /api/kb/articles/{id}`.
pub async fn article(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Json<ArticleView>, ApiError> {
    user?.require(EVERYONE)?;
    let id = article_id(id)?;
    let storage = state.storage.clone();
    let found = blocking("reading the article", move || storage.kb_article(id)).await?;
    found
        .map(|a| Json(view(a, state.site.timezone)))
        .ok_or_else(|| ApiError::not_found("no article with that id"))
}

/// `GET /api/kb/articles/{id}/versions`: newest first, the deleted ones' too.
pub async fn versions(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Json<Vec<VersionView>>, ApiError> {
    user?.require(EVERYONE)?;
    let id = article_id(id)?;
    let storage = state.storage.clone();
    let all = blocking("reading the versions", move || storage.kb_versions(id)).await?;
    if all.is_empty() {
        return Err(ApiError::not_found("no article with that id"));
    }
    let tz = state.site.timezone;
    Ok(Json(all.into_iter().map(|v| version_view(v, tz)).collect()))
}

fn draft(
    body: Result<Json<ArticleRequest>, JsonRejection>,
) -> Result<(KbDraft, Option<u32>), ApiError> {
    let Json(req) =
        body.map_err(|e| ApiError::bad_request(format!("bad article: {}", e.body_text())))?;
    let draft = check(KbDraft {
        title: req.title,
        body: req.body,
        tags: req.tags,
    })
    .map_err(|why| ApiError::bad_request(format!("bad article: {why}")))?;
    Ok((draft, req.version))
}

/// `POST /api/kb/articles` (ops): 201 with the article at version 1.
pub async fn create(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    body: Result<Json<ArticleRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ArticleView>), ApiError> {
    let user = user?;
    user.require(&[Role::Ops])?;
    let (draft, _) = draft(body)?;
    let kb = state.knowledge.clone();
    let created =
        off_the_workers("saving the article", move || kb.create(&draft, &user.name)).await?;
    Ok((
        StatusCode::CREATED,
        Json(view(created, state.site.timezone)),
    ))
}

/// `PUT /api/kb/articles/{id}` (ops): the new text and the version it was edited from.
pub async fn update(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<ArticleRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let user = user?;
    user.require(&[Role::Ops])?;
    let id = article_id(id)?;
    let (draft, base) = draft(body)?;
    let Some(base) = base else {
        return Err(ApiError::bad_request(
            "bad article: version (the one this edit started from) is required",
        ));
    };
    let kb = state.knowledge.clone();
    let written = off_the_workers("saving the article", move || {
        kb.update(id, base, &draft, &user.name)
    })
    .await?;
    Ok(answer(written, state.site.timezone, StatusCode::OK))
}

/// `DELETE /api/kb/articles/{id}?version=` (ops): 204; its versions stay readable.
pub async fn delete(
    State(state): State<AppState>,
    user: Result<AuthUser, AuthRejection>,
    id: Result<Path<u64>, PathRejection>,
    q: Result<Query<VersionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let user = user?;
    user.require(&[Role::Ops])?;
    let id = article_id(id)?;
    let Some(base) = query(q)?.version else {
        return Err(ApiError::bad_request(
            "?version= (the one being deleted) is required",
        ));
    };
    let kb = state.knowledge.clone();
    let written = off_the_workers("deleting the article", move || {
        kb.delete(id, base, &user.name)
    })
    .await?;
    Ok(answer(written, state.site.timezone, StatusCode::NO_CONTENT))
}

fn answer(written: KbWrite, tz: chrono_tz::Tz, done: StatusCode) -> Response {
    match written {
        KbWrite::Done(_) if done == StatusCode::NO_CONTENT => {
            StatusCode::NO_CONTENT.into_response()
        }
        KbWrite::Done(a) => (done, Json(view(a, tz))).into_response(),
        KbWrite::NotFound => ApiError::not_found("no article with that id").into_response(),
        KbWrite::Conflict { current } => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error": format!(
                    "the article was changed by someone else (now version {current}): \
                     reload it and edit again"
                ),
                "current_version": current,
            })),
        )
            .into_response(),
    }
}
