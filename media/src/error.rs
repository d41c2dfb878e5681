//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the media crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the RTP header (fixed part, CSRCs or extension) needs.
    #[error("rtp packet too short")]
    RtpTooShort,
    /// The RTP version field is not 2.
    #[error("unsupported rtp version {0}")]
    RtpVersion(u8),
    /// The padding count is zero or larger than the payload.
    #[error("bad rtp padding")]
    RtpPadding,
    /// A telephone-event payload shorter than 4 bytes.
    #[error("telephone-event payload too short")]
    EventTooShort,
    /// The prompt file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not a container/codec we can decode.
    #[error("unsupported audio format: {0}")]
    UnsupportedFormat(String),
    /// The file has no decodable audio track.
    #[error("no audio track")]
    NoAudioTrack,
    /// Decoding or resampling failed.
    #[error("audio decode failed: {0}")]
    Decode(String),
    /// The audio decoded to zero samples.
    #[error("prompt is empty")]
    Empty,
    /// The audio is longer than a prompt may be.
    #[error("prompt longer than {max_seconds} s")]
    TooLong {
        /// The limit in seconds.
        max_seconds: u32,
    },
}
