//! The lookup webhook to the clinic's HIS/CRM (`[crm]`): `GET url` with the caller's number,
//! a patient record as JSON back. It runs beside the stored lookup, never in front of it: the
//! pop goes out with the stored record, and the CRM's answer, when it comes in time, refreshes
//! the pop and the stored record (so the store stays a current fallback).

use std::time::Duration;

use callcore::records::Patient;

use crate::config;

/// Why a CRM lookup gave nothing to use.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("cannot reach the CRM: {0}")]
    Transport(String),
    #[error("the answer is not a patient record: {0}")]
    Body(String),
    #[error("the record is not valid: {0}")]
    Invalid(String),
}

/// A configured CRM; cheap to clone.
#[derive(Debug, Clone)]
pub struct Crm {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    timeout: Duration,
}

impl Crm {
    pub fn new(config: &config::Crm) -> Result<Self, CrmError> {
        let timeout = Duration::from_millis(config.timeout_ms);
        // HTTPS through rustls with ring (already installed: fine).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| CrmError::Transport(e.to_string()))?;
        Ok(Self {
            client,
            url: config.url.trim().to_owned(),
            token: config.token.clone(),
            timeout,
        })
    }

    /// The CRM's record of `phone` (`None`: it knows no such patient), checked as an import
    /// checks a row; its phone is the caller's whatever the CRM wrote.
    pub async fn lookup(&self, phone: &str) -> Result<Option<Patient>, CrmError> {
        let encoded: String = phone
            .bytes()
            .map(|b| match b {
                b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'.' | b'_' => {
                    char::from(b).to_string()
                }
                b => format!("%{b:02X}"),
            })
            .collect();
        let url = self.url.replace("{phone}", &encoded);
        let mut request = self.client.get(url).header("Accept", "application/json");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                CrmError::Timeout(ms)
            } else {
                CrmError::Transport(e.to_string())
            }
        };
        // One deadline for the whole exchange, the body included.
        let exchange = async {
            let response = request.send().await.map_err(failed)?;
            match response.status().as_u16() {
                404 => return Ok(None),
                200..=299 => {}
                status => return Err(CrmError::Status(status)),
            }
            let body = response.bytes().await.map_err(failed)?;
            let mut patient: Patient =
                serde_json::from_slice(&body).map_err(|e| CrmError::Body(e.to_string()))?;
            patient.phone = phone.to_owned();
            crate::patients::check(&patient).map_err(CrmError::Invalid)?;
            Ok(Some(patient))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(CrmError::Timeout(ms)))
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;

    use super::*;

    /// A stand-in CRM on loopback: `/ok/{phone}`, `/none/…`, `/broken/…`, `/garbage/…`,
    /// `/slow/…`; `/ok` wants the bearer token.
    async fn crm_server() -> std::net::SocketAddr {
        let record = |headers: HeaderMap| async move {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer s3cret") {
                return (StatusCode::UNAUTHORIZED, String::new());
            }
            (
                StatusCode::OK,
                r#"{"phone":"999","name":"CRM Demo Patient","age":41,"allergies":"latex"}"#
                    .to_owned(),
            )
        };
        let app = Router::new()
            .route("/ok/{phone}", get(record))
            .route("/none/{phone}", get(|| async { StatusCode::NOT_FOUND }))
            .route("/broken/{phone}", get(|| async { StatusCode::BAD_GATEWAY }))
            .route("/garbage/{phone}", get(|| async { "<html>login</html>" }))
            .route(
                "/invalid/{phone}",
                get(|| async { r#"{"name":"","age":3}"# }),
            )
            .route(
                "/slow/{phone}",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "{}"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn crm(addr: std::net::SocketAddr, path: &str) -> Crm {
        Crm::new(&config::Crm {
            url: format!("http://{addr}/{path}/{{phone}}"),
            timeout_ms: 300,
            token: Some("s3cret".into()),
        })
        .expect("client")
    }

    #[tokio::test]
    async fn a_crm_record_comes_checked_with_the_callers_number_and_every_failure_says_why() {
        let addr = crm_server().await;
        let found = crm(addr, "ok")
            .lookup("+8613900000077")
            .await
            .expect("record");
        let p = found.expect("a patient");
        assert_eq!(
            p.phone, "+8613900000077",
            "the caller's number, not the CRM's"
        );
        assert_eq!(p.name, "CRM Demo Patient");
        assert_eq!(p.allergies.as_deref(), Some("latex"));
        assert!(matches!(
            crm(addr, "none").lookup("1390000").await,
            Ok(None)
        ));
        let failure =
            |path: &'static str| async move { crm(addr, path).lookup("13900000077").await };
        assert!(matches!(
            failure("broken").await,
            Err(CrmError::Status(502))
        ));
        assert!(matches!(failure("garbage").await, Err(CrmError::Body(_))));
        assert!(matches!(
            failure("invalid").await,
            Err(CrmError::Invalid(_))
        ));
        let started = std::time::Instant::now();
        assert!(matches!(failure("slow").await, Err(CrmError::Timeout(300))));
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the timeout cut it short"
        );
        for scheme in ["http", "https"] {
            // HTTPS goes through rustls (ring): a client builds, a refused port is an error.
            let unreachable = Crm::new(&config::Crm {
                url: format!("{scheme}://127.0.0.1:9/{{phone}}"),
                timeout_ms: 300,
                token: None,
            })
            .expect("client");
            assert!(matches!(
                unreachable.lookup("139").await,
                Err(CrmError::Transport(_) | CrmError::Timeout(_))
            ));
        }
        // A plain HTTP server is not a TLS one: said so, not a hang or a panic.
        let plain = Crm::new(&config::Crm {
            url: format!("https://{addr}/ok/{{phone}}"),
            timeout_ms: 300,
            token: None,
        })
        .expect("client");
        assert!(matches!(
            plain.lookup("139").await,
            Err(CrmError::Transport(_))
        ));
        let wrong_token = Crm::new(&config::Crm {
            url: format!("http://{addr}/ok/{{phone}}"),
            timeout_ms: 300,
            token: None,
        })
        .expect("client");
        assert!(matches!(
            wrong_token.lookup("139").await,
            Err(CrmError::Status(401))
        ));
    }
}
