//! Users (agents, QA, ops), login, bearer-token sessions and the axum extractor.
//!
//! Passwords come from the config (agents from `[[agents]]`, QA and ops from
//! `[[users]]`). A login returns a random 256-bit token valid for 12 hours; it
//! goes in `Authorization: Bearer TOKEN`, or `?token=` on a WebSocket upgrade.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::{StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Agent,
    Qa,
    Ops,
}

impl Role {
    /// The JSON name: "agent", "qa" or "ops".
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Qa => "qa",
            Role::Ops => "ops",
        }
    }
}

/// Everyone who may log in, with their password and role.
#[derive(Clone, Default)]
pub struct Users {
    by_name: HashMap<String, (String, Role)>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.by_name.keys().collect();
        names.sort();
        f.debug_struct("Users")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Builds the user list from `(name, password, role)`; a later duplicate name wins.
    pub fn new(users: impl IntoIterator<Item = (String, String, Role)>) -> Self {
        let by_name = users
            .into_iter()
            .map(|(name, pw, role)| (name, (pw, role)))
            .collect();
        Self { by_name }
    }

    /// The user's role when the password is right. Takes the same time whether
    /// the user exists or not, and compares passwords in constant time.
    pub fn verify(&self, name: &str, password: &str) -> Option<Role> {
        const DUMMY: &str = "switchboard-no-such-user-password";
        match self.by_name.get(name) {
            Some((expected, role)) => {
                ct_eq(expected.as_bytes(), password.as_bytes()).then_some(*role)
            }
            None => {
                let _ = ct_eq(DUMMY.as_bytes(), password.as_bytes());
                None
            }
        }
    }

    /// The role of a user, if known.
    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.by_name.get(name).map(|(_, role)| *role)
    }
}

/// Compares two byte strings in time that depends only on their lengths' maximum.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

/// A logged-in user, as handlers see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub name: String,
    pub role: Role,
}

impl AuthUser {
    /// `Ok` when the user has one of `roles`, else a 403 rejection.
    pub fn require(&self, roles: &[Role]) -> Result<(), AuthRejection> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(AuthRejection::Forbidden)
        }
    }
}

#[derive(Debug, Clone)]
struct Session {
    user: AuthUser,
    expires: Instant,
}

/// Live login tokens; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
    ttl: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(SESSION_TTL)
    }
}

impl Sessions {
    /// An empty session table whose tokens last `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HashMap::new())),
            ttl,
        }
    }

    /// Checks the password and, when right, returns a new token and the role.
    pub fn login(
        &self,
        users: &Users,
        name: &str,
        password: &str,
        now: Instant,
    ) -> Option<(String, Role)> {
        let role = users.verify(name, password)?;
        Some((self.create(name, role, now), role))
    }

    /// A new token (32 random bytes, hex) for `name` with `role`, valid from `now`.
    pub fn create(&self, name: &str, role: Role, now: Instant) -> String {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes[..]);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let session = Session {
            user: AuthUser {
                name: name.to_owned(),
                role,
            },
            expires: now + self.ttl,
        };
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        map.insert(token.clone(), session);
        token
    }

    /// The user behind `token`, if it exists and has not expired at `now`.
    pub fn validate(&self, token: &str, now: Instant) -> Option<AuthUser> {
        let mut map = self.lock();
        match map.get(token) {
            Some(s) if s.expires > now => Some(s.user.clone()),
            Some(_) => {
                map.remove(token);
                None
            }
            None => None,
        }
    }

    /// Forgets a token (logout).
    pub fn revoke(&self, token: &str) {
        self.lock().remove(token);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // The map is valid after any panic: every update is a single insert/remove.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why a request was not let in: 401 (no valid token) or 403 (wrong role), as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRejection {
    Missing,
    Invalid,
    Forbidden,
}

impl AuthRejection {
    /// The HTTP status and the short message for the JSON error body.
    pub fn status_and_message(self) -> (StatusCode, &'static str) {
        match self {
            AuthRejection::Missing => (StatusCode::UNAUTHORIZED, "login required"),
            AuthRejection::Invalid => (StatusCode::UNAUTHORIZED, "invalid or expired token"),
            AuthRejection::Forbidden => (StatusCode::FORBIDDEN, "not allowed for this role"),
        }
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let (status, msg) = self.status_and_message();
        (status, axum::Json(serde_json::json!({ "error": msg }))).into_response()
    }
}

/// The bearer token of a request: the `Authorization: Bearer` header, or the
/// `token` query parameter on a WebSocket upgrade (browsers cannot set headers there).
fn token_of(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION)
        && let Ok(value) = value.to_str()
    {
        let mut it = value.trim().splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (it.next(), it.next())
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some(token.trim().to_owned());
        }
    }
    let upgrade = parts
        .headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return None;
    }
    let query = parts.uri.query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        // Tokens are hex; anything needing percent-decoding is not a token anyway.
        (k == "token").then(|| v.to_owned())
    })
}

impl<S> FromRequestParts<S> for AuthUser
where
    Sessions: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = token_of(parts).ok_or(AuthRejection::Missing)?;
        let sessions = Sessions::from_ref(state);
        sessions
            .validate(&token, Instant::now())
            .ok_or(AuthRejection::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        Users::new([
            ("1001".to_owned(), "demo-1001".to_owned(), Role::Agent),
            ("qa".to_owned(), "demo-qa".to_owned(), Role::Qa),
        ])
    }

    #[test]
    fn login_checks_the_password() {
        let s = Sessions::default();
        let now = Instant::now();
        assert_eq!(s.login(&users(), "1001", "demo-1002", now), None);
        assert_eq!(s.login(&users(), "1001", "demo-100", now), None);
        assert_eq!(s.login(&users(), "nobody", "demo-1001", now), None);
        let (token, role) = s
            .login(&users(), "1001", "demo-1001", now)
            .expect("right password");
        assert_eq!(role, Role::Agent);
        assert_eq!(token.len(), 64);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        let user = s.validate(&token, now).expect("valid");
        assert_eq!(
            user,
            AuthUser {
                name: "1001".into(),
                role: Role::Agent
            }
        );
    }

    #[test]
    fn tokens_are_unique_and_expire_after_twelve_hours() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a = s.create("qa", Role::Qa, t0);
        let b = s.create("qa", Role::Qa, t0);
        assert_ne!(a, b);
        assert!(
            s.validate(&a, t0 + Duration::from_secs(11 * 3600))
                .is_some()
        );
        assert!(s.validate(&a, t0 + SESSION_TTL).is_none());
        assert!(s.validate("not-a-token", t0).is_none());
        s.revoke(&b);
        assert!(s.validate(&b, t0).is_none());
    }

    #[test]
    fn constant_time_compare_is_correct() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abc\0"));
        assert!(!ct_eq(b"", b"a"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn role_check_gives_forbidden() {
        let u = AuthUser {
            name: "ops".into(),
            role: Role::Ops,
        };
        assert!(u.require(&[Role::Ops, Role::Qa]).is_ok());
        assert_eq!(u.require(&[Role::Qa]), Err(AuthRejection::Forbidden));
    }
}
