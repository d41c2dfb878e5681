//! The desk, QA and ops pages: plain HTML and vanilla JS from `assets/`,
//! embedded in the binary, with the clinic name and timezone filled in.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use super::AppState;

const DESK: &str = include_str!("../../assets/desk.html");
const QA: &str = include_str!("../../assets/qa.html");
const OPS: &str = include_str!("../../assets/ops.html");

/// `GET /`: links to the three pages.
pub async fn index(State(state): State<AppState>) -> Response {
    let name = escape(&state.site.clinic_name);
    page(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{name}</title></head>\
         <body style=\"font-family:system-ui,sans-serif;margin:2rem\"><h1>{name}</h1><ul>\
         <li><a href=\"/desk\">Agent desk</a></li><li><a href=\"/qa\">Quality assurance</a></li>\
         <li><a href=\"/ops\">Operations</a></li></ul></body></html>"
    ))
}

/// `GET /desk`: the agent desk (login, screen-pop card, Ready/Not ready, wrap-up,
/// blind transfer to a queue or an agent).
pub async fn desk(State(state): State<AppState>) -> Response {
    page(fill(DESK, &state))
}

/// `GET /qa`: recordings by day, audio player, the day's sample.
pub async fn qa(State(state): State<AppState>) -> Response {
    page(fill(QA, &state))
}

/// `GET /ops`: live agents table and today's calls.
pub async fn ops(State(state): State<AppState>) -> Response {
    page(fill(OPS, &state))
}

fn page(html: String) -> Response {
    ([(header::CACHE_CONTROL, "no-cache")], Html(html)).into_response()
}

fn fill(template: &str, state: &AppState) -> String {
    let queue_options: String = state
        .site
        .queues
        .iter()
        .map(|q| {
            let q = escape(q);
            format!("<option value=\"{q}\">{q}</option>")
        })
        .collect();
    template
        .replace("{{LANG}}", state.site.language)
        .replace("{{DISPOSITIONS}}", &script_json(&state.site.dispositions))
        .replace("{{CLINIC}}", &escape(&state.site.clinic_name))
        .replace("{{TZ}}", &escape(state.site.timezone.name()))
        .replace("{{QUEUE_OPTIONS}}", &queue_options)
}

/// `value` as JSON that is safe inside a `<script>` element (no `</script>`, no `<!--`).
fn script_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "null".to_owned())
        .replace('<', "\\u003c")
}

/// Escapes text for HTML element content and quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
