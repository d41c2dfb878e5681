//! Media for Switchboard: G.711, RTP, RFC 4733 DTMF, prompts, tones and per-leg RTP logic.
//!
//! Everything here is sans-IO except [`prompt::Prompt::load`], which reads a file.
//! The hot path ([`leg::LegMedia`]) never allocates per packet.

pub mod codec;
pub mod dtmf;
pub mod error;
pub mod g711;
pub mod latch;
pub mod leg;
pub mod player;
pub mod prompt;
pub mod rtp;
pub mod tone;

pub use codec::Codec;
pub use dtmf::{DtmfReceiver, TelephoneEvent, sip_info_digit};
pub use error::Error;
pub use latch::{Admit, Latch};
pub use leg::{LegMedia, Received};
pub use player::PromptPlayer;
pub use prompt::Prompt;
pub use rtp::{RtpPacket, RtpSender};
pub use tone::{ToneGenerator, dominant_frequency, goertzel_power};

/// Sample rate of all audio inside Switchboard (G.711 narrowband), in Hz.
pub const SAMPLE_RATE: u32 = 8000;

/// Samples in one 20 ms frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 160;

/// Samples of the longest packet relayed whole (60 ms, the longest ptime phones use);
/// audio beyond it in one packet is dropped.
pub const MAX_PACKET_SAMPLES: usize = 480;
