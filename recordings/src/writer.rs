//! Stereo WAV writer whose header is brought up to date every few frames.
//!
//! Layout: 8 kHz, 16-bit PCM, two channels (left caller, right agent), the 44-byte header
//! hound writes. A *frame* here is one sample per channel (1/8000 s), the WAV block.
//!
//! Crash safety: the header is flushed as soon as the file is created and again every
//! `header_interval_frames`. hound's `flush()` first writes out the buffered samples, then
//! the RIFF and data lengths, so the data length on disk never exceeds the samples on disk
//! and a copy taken at any moment (or the file left by SIGKILL) is a valid WAV holding all
//! audio up to the last header update. Samples written after that update are beyond the
//! data length: readers ignore them and [`crate::repair_file`] claims them back.
//!
//! The file is written under its final name, not a temporary one renamed at the end: the
//! header is valid from the first flush on, so a rename would add nothing but a second name
//! for the storage layer and leftovers to sweep after a crash. The only window in which the
//! file is not a WAV is between `create` and that first 44-byte write; repair turns such a
//! stub into an empty WAV.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Sample rate of every recording.
pub const SAMPLE_RATE: u32 = 8000;
/// Channels: left is the caller, right the agent.
pub const CHANNELS: u16 = 2;
/// Bytes per frame (one 16-bit sample per channel).
pub const BLOCK_ALIGN: u64 = 4;
/// Bytes before the audio in the files this writer makes.
pub const HEADER_LEN: u64 = 44;
/// Most frames a WAV file can hold: the RIFF length (data + 36) must fit in 32 bits.
pub const MAX_FRAMES: u64 = (u32::MAX as u64 - (HEADER_LEN - 8)) / BLOCK_ALIGN;

/// The WAV format of every recording.
pub fn spec() -> hound::WavSpec {
    hound::WavSpec {
        channels: CHANNELS,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// Frames in `ms` milliseconds, e.g. to turn `[recording] header_interval_ms` into
/// `header_interval_frames` (1000 ms is 8000 frames).
pub fn frames_in_ms(ms: u64) -> u64 {
    ms.saturating_mul(u64::from(SAMPLE_RATE)) / 1000
}

/// What a finished recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingInfo {
    /// Frames (samples per channel) written.
    pub frames: u64,
    /// Length of the audio in milliseconds, rounded down.
    pub duration_ms: u64,
}

impl RecordingInfo {
    /// Info for `frames` frames at 8 kHz.
    pub fn from_frames(frames: u64) -> Self {
        RecordingInfo {
            frames,
            duration_ms: frames * 1000 / u64::from(SAMPLE_RATE),
        }
    }
}

/// Writes one call's stereo recording, keeping the file a valid WAV while it grows.
pub struct RecordingWriter {
    wav: hound::WavWriter<BufWriter<File>>,
    path: PathBuf,
    frames: u64,
    frames_at_header: u64,
    header_interval_frames: u64,
    failed: bool,
}

impl std::fmt::Debug for RecordingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingWriter")
            .field("path", &self.path)
            .field("frames", &self.frames)
            .field("frames_at_header", &self.frames_at_header)
            .finish_non_exhaustive()
    }
}

impl RecordingWriter {
    /// Creates (or truncates) `path` and writes a valid empty WAV header to disk at once.
    ///
    /// The header is updated whenever `header_interval_frames` frames have been written
    /// since the last update (0 counts as 1: after every `write_frame`).
    pub fn create(path: impl AsRef<Path>, header_interval_frames: u64) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut wav = hound::WavWriter::create(&path, spec())?;
        wav.flush()?;
        // Sizes hound's sample buffer for a 60 ms frame now, so no write allocates
        // (dropped unflushed: nothing is written).
        let _sized = wav.get_i16_writer(2 * 480);
        Ok(RecordingWriter {
            wav,
            path,
            frames: 0,
            frames_at_header: 0,
            header_interval_frames: header_interval_frames.max(1),
            failed: false,
        })
    }

    /// Appends one frame of audio per sample pair: `left` is the caller, `right` the agent.
    ///
    /// Both slices must have the same length. Nothing is allocated; samples go straight into
    /// the file's buffer. After an IO error the writer refuses further audio
    /// ([`Error::Failed`]); the file stays valid up to the last header update.
    pub fn write_frame(&mut self, left: &[i16], right: &[i16]) -> Result<()> {
        if self.failed {
            return Err(Error::Failed);
        }
        if left.len() != right.len() {
            return Err(Error::ChannelMismatch {
                left: left.len(),
                right: right.len(),
            });
        }
        let count = left.len() as u64;
        if self.frames + count > MAX_FRAMES {
            return Err(Error::TooLong);
        }
        // hound's 16-bit writer: the interleaved samples go into its reusable buffer
        // (sized once, for the longest frame) and reach the file in one write. Exactly
        // `2 * count` samples are reserved and written, as its asserts require.
        let Ok(samples) = u32::try_from(2 * left.len()) else {
            return Err(Error::TooLong);
        };
        let mut writer = self.wav.get_i16_writer(samples);
        for (&l, &r) in left.iter().zip(right) {
            writer.write_sample(l);
            writer.write_sample(r);
        }
        if let Err(err) = writer.flush() {
            self.failed = true;
            return Err(err.into());
        }
        self.frames += count;
        if self.frames - self.frames_at_header >= self.header_interval_frames {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes out buffered audio and brings the header up to date now.
    pub fn flush(&mut self) -> Result<()> {
        if self.failed {
            return Err(Error::Failed);
        }
        if let Err(err) = self.wav.flush() {
            self.failed = true;
            return Err(err.into());
        }
        self.frames_at_header = self.frames;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Frames the header on disk covers (what a reader would see after a crash now).
    pub fn frames_at_header(&self) -> u64 {
        self.frames_at_header
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the final header, flushes, and closes the file.
    pub fn finish(self) -> Result<RecordingInfo> {
        if self.failed {
            return Err(Error::Failed);
        }
        self.wav.finalize()?;
        Ok(RecordingInfo::from_frames(self.frames))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seed: i16) -> ([i16; 160], [i16; 160]) {
        let mut left = [0i16; 160];
        let mut right = [0i16; 160];
        for (i, (l, r)) in left.iter_mut().zip(right.iter_mut()).enumerate() {
            let i = i as i16;
            *l = seed.wrapping_mul(31).wrapping_add(i);
            *r = seed.wrapping_mul(-17).wrapping_sub(i);
        }
        (left, right)
    }

    #[test]
    fn finished_file_holds_interleaved_caller_and_agent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("call.wav");
        let mut writer = RecordingWriter::create(&path, 8000).expect("create");
        for seed in 0..50 {
            let (left, right) = frame(seed);
            writer.write_frame(&left, &right).expect("write");
        }
        let info = writer.finish().expect("finish");
        assert_eq!(
            info,
            RecordingInfo {
                frames: 8000,
                duration_ms: 1000
            }
        );

        let mut reader = hound::WavReader::open(&path).expect("valid wav");
        assert_eq!(reader.spec(), spec());
        assert_eq!(reader.duration(), 8000);
        let samples: Vec<i16> = reader
            .samples::<i16>()
            .map(|s| s.expect("sample"))
            .collect();
        let (left, right) = frame(3);
        let at = 3 * 160 * 2;
        assert_eq!(samples[at], left[0]);
        assert_eq!(samples[at + 1], right[0]);
        assert_eq!(samples[at + 2 * 159], left[159]);
        assert_eq!(samples[at + 2 * 159 + 1], right[159]);
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len(),
            HEADER_LEN + 8000 * BLOCK_ALIGN
        );
    }

    #[test]
    fn file_is_a_valid_empty_wav_right_after_create() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("call.wav");
        let writer = RecordingWriter::create(&path, 8000).expect("create");
        let copy = dir.path().join("copy.wav");
        std::fs::copy(&path, &copy).expect("copy");
        assert_eq!(
            hound::WavReader::open(&copy).expect("valid wav").duration(),
            0
        );
        drop(writer);
    }

    #[test]
    fn unequal_channels_are_rejected_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = RecordingWriter::create(dir.path().join("x.wav"), 1).expect("create");
        let err = writer
            .write_frame(&[1, 2, 3], &[1, 2])
            .expect_err("mismatch");
        assert!(
            matches!(err, Error::ChannelMismatch { left: 3, right: 2 }),
            "{err}"
        );
        assert_eq!(writer.frames(), 0);
        assert_eq!(writer.finish().expect("finish").frames, 0);
    }

    #[test]
    fn header_follows_the_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = RecordingWriter::create(dir.path().join("x.wav"), 400).expect("create");
        let (left, right) = frame(1);
        let mut seen = Vec::new();
        for _ in 0..6 {
            writer.write_frame(&left, &right).expect("write");
            seen.push(writer.frames_at_header());
        }
        assert_eq!(seen, [0, 0, 480, 480, 480, 960]);
    }

    #[test]
    fn frames_in_ms_converts_config_values() {
        assert_eq!(frames_in_ms(1000), 8000);
        assert_eq!(frames_in_ms(20), 160);
        assert_eq!(RecordingInfo::from_frames(12_345).duration_ms, 1543);
        assert_eq!(
            MAX_FRAMES * BLOCK_ALIGN + HEADER_LEN - 8,
            u32::MAX as u64 - 3
        );
    }
}
