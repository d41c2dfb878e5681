//! The crate's one error type.

/// What went wrong with a SIP message or exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("malformed message: {0}")]
    Parse(String),
}
