//! The crate's one error type.

/// What went wrong with a SIP message or exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes that are not a SIP message (answer 400 if a request, else drop).
    #[error("malformed message: {0}")]
    Parse(String),
    /// A header the operation needs is absent (answer 400).
    #[error("missing header: {0}")]
    MissingHeader(&'static str),
    /// A header is present but unreadable (answer 400).
    #[error("invalid header: {0}")]
    InvalidHeader(&'static str),
    /// Message, header section or body over the size cap (answer 513 or close the stream).
    #[error("message too large")]
    TooLarge,
    /// A message on a stream transport without Content-Length (close the stream).
    #[error("missing content-length on a stream")]
    MissingContentLength,
    /// A response that cannot create a dialog (not 101–299).
    #[error("response does not establish a dialog")]
    NoDialog,
    /// SDP body we cannot read (answer 400 or 488).
    #[error("malformed sdp: {0}")]
    Sdp(String),
    /// No audio stream with a codec both sides support (answer 488 Not Acceptable Here).
    #[error("no common codec")]
    NoCommonCodec,
    /// Authorization header we cannot read or do not support.
    #[error("bad authorization: {0}")]
    Auth(String),
    /// Authorization with a digest algorithm we do not implement (e.g. `SHA-512-256`).
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
}
