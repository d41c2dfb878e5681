//! The HTTP side: JSON API, the desk WebSocket, the desk/QA/ops pages,
//! `/metrics` and `/healthz`, all on one axum router.
//!
//! - [`api`]: login, agents, calls, recordings, QA sample, metrics, health.
//! - [`audit`]: the audit trail for ops.
//! - [`knowledge`]: the knowledge base: search, suggestions, articles and their versions.
//! - [`tls`]: HTTPS/WSS with the configured certificate.
//! - [`wrap_up`]: the agent's wrap-up, harassing-call flags, a record for a new patient.
//! - [`ws`]: `GET /ws/desk?token=`, the live desk event stream.
//! - [`pages`]: the three HTML pages (assets/*.html, embedded).

pub mod api;
pub mod audit;
pub mod knowledge;
pub mod kpis;
pub mod pages;
pub mod patients;
pub mod tls;
pub mod wrap_up;
pub mod ws;

use axum::serve::ListenerExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Json;
use axum::Router;
use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthRejection, Sessions, Users};
use crate::control::ControlHandle;
use crate::events::DeskHub;
use crate::metrics::Metrics;
use crate::storage::Storage;

/// The configured facts the HTTP side needs (a summary of the config).
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// `[clinic] name`, shown on the pages.
    pub clinic_name: String,
    /// `[clinic] timezone`: API dates are local days in it.
    pub timezone: Tz,
    /// `[storage] recordings`: audio is served only from inside it.
    pub recordings_dir: PathBuf,
    /// `[qa] daily_sample`.
    pub qa_sample_size: usize,
    /// `[qa] seed`.
    pub qa_seed: u64,
    /// The configured queue names (`/api/kpis?queue=` must name one).
    pub queues: Vec<String>,
    /// `[desk] dispositions`: the wrap-up codes an agent may save.
    pub dispositions: Vec<crate::config::Disposition>,
    /// `[clinic] language` ("zh" or "en"): the pages' language until the user switches.
    pub language: &'static str,
}

/// Everything the handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub storage: Storage,
    /// The knowledge base (its search index in memory).
    pub knowledge: Arc<crate::knowledge::Knowledge>,
    pub users: Arc<Users>,
    pub sessions: Sessions,
    pub hub: DeskHub,
    pub control: ControlHandle,
    pub site: Arc<SiteConfig>,
    pub metrics: Metrics,
    /// Set by the SIP side while its sockets are up; `/healthz` reports it.
    pub sip_up: Arc<AtomicBool>,
    /// Cancelled on shutdown; open desk sockets close when it fires ([`serve`] sets it).
    pub shutdown: CancellationToken,
    /// What browser phones need (none: the desk's browser phone is refused).
    pub webphone: Option<Arc<crate::webphone::Site>>,
}

impl AppState {
    /// Shared state with a fresh session table and shutdown token.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        storage: Storage,
        knowledge: Arc<crate::knowledge::Knowledge>,
        users: Users,
        hub: DeskHub,
        control: ControlHandle,
        site: SiteConfig,
        metrics: Metrics,
        sip_up: Arc<AtomicBool>,
    ) -> Self {
        Self {
            storage,
            knowledge,
            users: Arc::new(users),
            sessions: Sessions::default(),
            hub,
            control,
            site: Arc::new(site),
            metrics,
            sip_up,
            shutdown: CancellationToken::new(),
            webphone: None,
        }
    }

    /// Lets desks open browser phones (the SIP side is up at `site.sip_server`).
    pub fn with_webphone(mut self, site: crate::webphone::Site) -> Self {
        self.webphone = Some(Arc::new(site));
        self
    }
}

impl FromRef<AppState> for Sessions {
    fn from_ref(state: &AppState) -> Self {
        state.sessions.clone()
    }
}

/// Every route: API, WebSocket, pages, metrics and health.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/desk", get(pages::desk))
        .route("/qa", get(pages::qa))
        .route("/ops", get(pages::ops))
        .route("/api/login", post(api::login))
        .route("/api/agents", get(api::agents))
        .route("/api/agents/me/state", post(api::set_my_state))
        .route("/api/agents/me/transfer", post(api::transfer_my_call))
        .route("/api/agents/me/consult", post(api::consult))
        .route("/api/agents/me/hold", post(api::hold_my_call))
        .route("/api/agents/me/hangup", post(api::hang_up_my_call))
        .route(
            "/api/agents/me/consult/complete",
            post(api::consult_complete),
        )
        .route("/api/agents/me/consult/cancel", post(api::consult_cancel))
        .route("/api/queues", get(api::queues))
        .route(
            "/api/patients/{phone}",
            get(patients::get_patient)
                .put(patients::put_patient)
                .delete(patients::delete_patient),
        )
        .route("/api/calls", get(api::calls))
        .route(
            "/api/calls/{call_id}/disposition",
            post(wrap_up::save_disposition),
        )
        .route("/api/calls/{call_id}/flag", post(wrap_up::flag_call))
        .route(
            "/api/calls/{call_id}/patient",
            post(wrap_up::create_patient),
        )
        .route("/api/flags", get(wrap_up::flags))
        .route("/api/audit", get(audit::audit))
        .route("/api/kb/search", get(knowledge::search))
        .route("/api/kb/suggest", get(knowledge::suggest))
        .route(
            "/api/kb/articles",
            get(knowledge::list).post(knowledge::create),
        )
        .route(
            "/api/kb/articles/{id}",
            get(knowledge::article)
                .put(knowledge::update)
                .delete(knowledge::delete),
        )
        .route("/api/kb/articles/{id}/versions", get(knowledge::versions))
        .route("/api/recordings", get(api::recordings))
        .route("/api/recordings/{id}/audio", get(api::recording_audio))
        .route("/api/qa/sample", get(api::qa_sample))
        .route("/api/kpis", get(kpis::kpis))
        .route("/ws/desk", get(ws::desk))
        .route("/metrics", get(api::metrics))
        .route("/healthz", get(api::healthz))
        .fallback(api::not_found)
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` is cancelled; open desk
/// sockets are closed then too.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    state.shutdown = shutdown.clone();
    // No Nagle: a desk event written right after another (the pop after a call's
    // `ended` and `state`) would otherwise wait for the first one's delayed ACK,
    // up to 40 ms, and reach the desk after the phone rang.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Serves [`router`] over TLS on `listener` (see [`tls`]) until `shutdown` is cancelled.
pub async fn serve_tls(
    listener: tls::TlsListener,
    mut state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    state.shutdown = shutdown.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// An API error: a status and `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// 500 for a failure that is ours (logged, with a generic message).
    pub fn internal(what: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{what}");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("{what} failed"),
        }
    }
}

impl From<AuthRejection> for ApiError {
    fn from(r: AuthRejection) -> Self {
        let (status, message) = r.status_and_message();
        Self {
            status,
            message: message.to_owned(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests;
