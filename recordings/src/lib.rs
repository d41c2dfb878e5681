//! Call recordings: a stereo WAV writer whose header stays valid while recording, crash
//! repair for files cut short, and the QA helpers (daily sampling, double-blind scoring).
//!
//! - [`writer`]: [`RecordingWriter`], 8 kHz 16-bit stereo (left caller, right agent).
//! - [`repair`]: [`repair_file`] / [`repair_dir`], run at start-up on the recordings folder.
//! - [`sample`]: [`daily_sample`], the seeded, order-independent QA pick of the day.
//! - [`score`]: [`double_blind_score`], drop one highest and one lowest, average the rest.
//! - [`timeline`]: [`Timeline`], each channel placed by RTP timestamp so that no scheduling
//!   delay loses audio; 20 ms frames out, silence (reported) only where packets were missing.

pub mod repair;
pub mod sample;
pub mod score;
pub mod timeline;
pub mod writer;

pub use repair::{Repair, repair_dir, repair_file};
pub use sample::daily_sample;
pub use score::double_blind_score;
pub use timeline::{Channel, Timeline, TimelineConfig};
pub use writer::{RecordingInfo, RecordingWriter};

/// Errors from writing and repairing recordings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the file failed.
    #[error("recording io: {0}")]
    Io(#[from] std::io::Error),
    /// The WAV encoder failed.
    #[error("wav: {0}")]
    Wav(#[from] hound::Error),
    /// `write_frame` got channels of different lengths.
    #[error("channel lengths differ: left {left}, right {right}")]
    ChannelMismatch {
        /// Samples in the left (caller) channel.
        left: usize,
        /// Samples in the right (agent) channel.
        right: usize,
    },
    /// The recording reached the 4 GiB limit of a WAV file (about 37 hours).
    #[error("recording too long for a wav file")]
    TooLong,
    /// An earlier write failed; the file ends at the last header update.
    #[error("recording writer failed earlier")]
    Failed,
    /// The file is not a WAV this crate can repair.
    #[error("not a repairable wav file: {0}")]
    NotWav(&'static str),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
