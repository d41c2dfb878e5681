//! Prompts: audio files decoded once at load (symphonia), downmixed to mono and
//! resampled to 8 kHz (rubato FFT resampler), kept as shared i16 samples.

use std::fs::File;
use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, Fft, FixedAsync, FixedSync, Resampler, SincInterpolationParameters};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use crate::SAMPLE_RATE;
use crate::error::Error;

/// Longest prompt accepted (hold music included), in seconds.
pub const MAX_PROMPT_SECONDS: u32 = 3600;

/// Input frames per resampler call (a hint; the FFT resampler rounds it to the ratio).
const RESAMPLE_CHUNK: usize = 1024;

/// Source sample rates accepted, in Hz.
const RATE_RANGE: std::ops::RangeInclusive<u32> = 1000..=384_000;

/// Largest reduced input rate (rate / gcd(rate, 8000)) given to the FFT resampler;
/// above it the FFT sizes explode and the sinc resampler is used instead.
const MAX_FFT_REDUCED_RATE: u32 = 2000;

/// A named, immutable 8 kHz mono prompt, cheap to clone (samples are shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    name: Arc<str>,
    samples: Arc<[i16]>,
}

impl Prompt {
    /// Loads and converts an audio file (WAV, MP3, FLAC, Ogg Vorbis); named after the file stem.
    pub fn load(path: impl AsRef<Path>) -> Result<Prompt, Error> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let samples = decode(Box::new(file), ext)?;
        Ok(Prompt {
            name: name.into(),
            samples,
        })
    }

    /// Decodes in-memory audio (`Vec<u8>`, `&'static [u8]` from `include_bytes!`, ...);
    /// `extension_hint` ("wav", "mp3", ...) helps the probe and may be empty. Named "".
    pub fn from_bytes<B>(bytes: B, extension_hint: &str) -> Result<Prompt, Error>
    where
        B: AsRef<[u8]> + Send + Sync + 'static,
    {
        let samples = decode(Box::new(Cursor::new(bytes)), extension_hint)?;
        Ok(Prompt {
            name: "".into(),
            samples,
        })
    }

    /// A prompt from samples that are already 8 kHz mono.
    pub fn from_samples(name: impl Into<Arc<str>>, samples: impl Into<Arc<[i16]>>) -> Prompt {
        Prompt {
            name: name.into(),
            samples: samples.into(),
        }
    }

    /// The same prompt under another name.
    pub fn with_name(self, name: impl Into<Arc<str>>) -> Prompt {
        Prompt {
            name: name.into(),
            samples: self.samples,
        }
    }

    /// The prompt's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 8 kHz mono samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Playing time at 8 kHz.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(SAMPLE_RATE))
    }
}

/// Decodes a whole stream; a panic inside a third-party decoder becomes an error.
fn decode(source: Box<dyn MediaSource>, ext: &str) -> Result<Arc<[i16]>, Error> {
    catch_unwind(AssertUnwindSafe(|| decode_stream(source, ext)))
        .unwrap_or_else(|_| Err(Error::Decode("decoder panicked".into())))
}

fn decode_stream(source: Box<dyn MediaSource>, ext: &str) -> Result<Arc<[i16]>, Error> {
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if !ext.is_empty() {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| Error::UnsupportedFormat(e.to_string()))?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or(Error::NoAudioTrack)?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or(Error::NoAudioTrack)?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| Error::UnsupportedFormat(e.to_string()))?;

    let mut to8k = To8k::default();
    let mut interleaved: Vec<f32> = Vec::new();
    let mut bad_packets = 0usize;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) | Err(SymphoniaError::ResetRequired) => break,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(e) if to8k.has_output() => {
                tracing::warn!(error = %e, "prompt stream ends early; keeping what decoded");
                break;
            }
            Err(e) => return Err(Error::Decode(e.to_string())),
        };
        if packet.track_id != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let rate = buf.spec().rate();
                let channels = buf.spec().channels().count();
                buf.copy_to_vec_interleaved::<f32>(&mut interleaved);
                to8k.push(rate, channels, &interleaved)?;
            }
            Err(SymphoniaError::DecodeError(_) | SymphoniaError::IoError(_)) => bad_packets += 1,
            Err(e) => return Err(Error::Decode(e.to_string())),
        }
    }
    if bad_packets > 0 {
        tracing::warn!(bad_packets, "skipped undecodable packets in prompt");
    }
    let samples = to8k.finish()?;
    if samples.is_empty() {
        return Err(if bad_packets > 0 {
            Error::Decode("no packet could be decoded".into())
        } else {
            Error::Empty
        });
    }
    Ok(samples.into())
}

/// A good-quality mono resampler from `rate` to 8 kHz: FFT for ratios of small
/// integers (all common rates), windowed sinc for the rest.
fn new_resampler(rate: u32) -> Result<Box<dyn Resampler<f32>>, Error> {
    let reduced = rate / gcd(rate, SAMPLE_RATE);
    let resampler: Box<dyn Resampler<f32>> = if reduced <= MAX_FFT_REDUCED_RATE {
        Box::new(
            Fft::<f32>::new(
                rate as usize,
                SAMPLE_RATE as usize,
                RESAMPLE_CHUNK,
                1,
                FixedSync::Both,
            )
            .map_err(|e| Error::Decode(e.to_string()))?,
        )
    } else {
        Box::new(
            Async::<f32>::new_sinc(
                f64::from(SAMPLE_RATE) / f64::from(rate),
                1.0,
                &SincInterpolationParameters::default(),
                RESAMPLE_CHUNK,
                1,
                FixedAsync::Input,
            )
            .map_err(|e| Error::Decode(e.to_string()))?,
        )
    };
    Ok(resampler)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Streaming downmix + resample to 8 kHz + conversion to i16, so only the 8 kHz
/// result is ever held in full.
#[derive(Default)]
struct To8k {
    rate: Option<u32>,
    resampler: Option<Box<dyn Resampler<f32>>>,
    /// Mono input not yet given to the resampler.
    pending: Vec<f32>,
    /// Resampler output scratch.
    scratch: Vec<f32>,
    /// Output frames still to drop for the resampler's delay.
    delay_left: usize,
    input_frames: usize,
    out: Vec<i16>,
}

const MAX_OUTPUT: usize = MAX_PROMPT_SECONDS as usize * SAMPLE_RATE as usize;

fn to_i16(x: f32) -> i16 {
    // `as` saturates (and maps NaN to 0).
    (x * 32768.0).round() as i16
}

impl To8k {
    fn has_output(&self) -> bool {
        self.input_frames > 0
    }

    fn push(&mut self, rate: u32, channels: usize, interleaved: &[f32]) -> Result<(), Error> {
        if channels == 0 || interleaved.is_empty() {
            return Ok(());
        }
        match self.rate {
            None => {
                if !RATE_RANGE.contains(&rate) {
                    return Err(Error::UnsupportedFormat(format!("sample rate {rate} Hz")));
                }
                self.rate = Some(rate);
                if rate != SAMPLE_RATE {
                    let resampler = new_resampler(rate)?;
                    self.delay_left = resampler.output_delay();
                    self.resampler = Some(resampler);
                }
            }
            Some(r) if r != rate => {
                return Err(Error::Decode("sample rate changes mid-stream".into()));
            }
            Some(_) => {}
        }
        let scale = 1.0 / channels as f32;
        let mono = interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale);
        self.input_frames += interleaved.len() / channels;
        if self.resampler.is_none() {
            self.out.extend(mono.map(to_i16));
        } else {
            self.pending.extend(mono);
            self.run()?;
        }
        if self.out.len() > MAX_OUTPUT {
            return Err(Error::TooLong {
                max_seconds: MAX_PROMPT_SECONDS,
            });
        }
        Ok(())
    }

    /// Resamples every full chunk in `pending`.
    fn run(&mut self) -> Result<(), Error> {
        let Some(resampler) = self.resampler.as_mut() else {
            return Ok(());
        };
        let mut consumed = 0;
        loop {
            let need = resampler.input_frames_next();
            let Some(chunk) = self.pending.get(consumed..consumed + need) else {
                break;
            };
            Self::process(
                resampler.as_mut(),
                chunk,
                &mut self.scratch,
                &mut self.delay_left,
                &mut self.out,
            )?;
            consumed += need;
        }
        self.pending.drain(..consumed);
        Ok(())
    }

    fn process(
        resampler: &mut dyn Resampler<f32>,
        chunk: &[f32],
        scratch: &mut Vec<f32>,
        delay_left: &mut usize,
        out: &mut Vec<i16>,
    ) -> Result<(), Error> {
        let cap = resampler.output_frames_max();
        scratch.resize(cap, 0.0);
        let input = InterleavedSlice::new(chunk, 1, chunk.len())
            .map_err(|e| Error::Decode(e.to_string()))?;
        let mut output = InterleavedSlice::new_mut(scratch.as_mut_slice(), 1, cap)
            .map_err(|e| Error::Decode(e.to_string()))?;
        let (_, produced) = resampler
            .process_into_buffer(&input, &mut output, None)
            .map_err(|e| Error::Decode(e.to_string()))?;
        let produced = scratch.get(..produced).unwrap_or_default();
        let skip = (*delay_left).min(produced.len());
        *delay_left -= skip;
        out.extend(produced.iter().skip(skip).map(|&x| to_i16(x)));
        Ok(())
    }

    /// Flushes the resampler (zero-padding the tail) and returns exactly
    /// `ceil(input_frames * 8000 / rate)` samples.
    fn finish(mut self) -> Result<Vec<i16>, Error> {
        let (Some(rate), Some(resampler)) = (self.rate, self.resampler.as_mut()) else {
            return Ok(self.out);
        };
        let expected =
            (self.input_frames as u64 * u64::from(SAMPLE_RATE)).div_ceil(u64::from(rate));
        let expected = usize::try_from(expected).unwrap_or(usize::MAX);
        // Each zero-padded chunk yields output; bound the loop anyway.
        let mut rounds = 0;
        while self.out.len() < expected && rounds < 64 {
            let need = resampler.input_frames_next();
            self.pending.resize(need, 0.0);
            Self::process(
                resampler.as_mut(),
                &self.pending,
                &mut self.scratch,
                &mut self.delay_left,
                &mut self.out,
            )?;
            self.pending.clear();
            rounds += 1;
        }
        self.out.truncate(expected);
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_samples_keeps_name_and_duration() {
        let p = Prompt::from_samples("beep", vec![1i16; 8000]);
        assert_eq!(p.name(), "beep");
        assert_eq!(p.len(), 8000);
        assert_eq!(p.duration(), Duration::from_secs(1));
        let q = p.clone().with_name("other");
        assert_eq!(q.name(), "other");
        assert_eq!(q.samples(), p.samples());
    }

    #[test]
    fn garbage_and_empty_bytes_are_errors_not_panics() {
        assert!(Prompt::from_bytes(Vec::new(), "wav").is_err());
        assert!(Prompt::from_bytes(b"definitely not audio".as_slice(), "").is_err());
        let mut x: u32 = 7;
        for hint in ["", "wav", "mp3", "flac", "ogg"] {
            let junk: Vec<u8> = (0..4096)
                .map(|_| {
                    x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (x >> 24) as u8
                })
                .collect();
            assert!(Prompt::from_bytes(junk, hint).is_err(), "hint {hint}");
        }
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_path() {
        let err = Prompt::load("/nonexistent/greeting.wav").expect_err("no such file");
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/greeting.wav"));
    }
}
