//! Checks recordings of this run for gaps: 20 ms frames of digital silence in the caller
//! (left) channel during a span when the generator's patient was sending tone.

use std::path::{Path, PathBuf};

use crate::summary::RecordingFigures;

/// Samples per 20 ms frame at 8 kHz.
const FRAME: usize = 160;

/// One recording to check: the server's call id and how many frames of it should be tone.
#[derive(Debug, Clone)]
pub struct Expected {
    pub server_call_id: String,
    /// Frames from the start of the recording during which the patient was sending.
    pub tone_frames: usize,
}

/// Finds `<dir>/<YYYY-MM-DD>/r-<call_id>.wav` in any date directory.
pub fn find(dir: &Path, call_id: &str) -> Option<PathBuf> {
    let name = format!("r-{call_id}.wav");
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .take(10_000)
        .filter_map(Result::ok)
        .map(|e| e.path().join(&name))
        .find(|p| p.is_file())
}

/// Silent frames and frames checked in the left channel of interleaved stereo samples,
/// skipping `guard` frames at each end of the expected tone span.
pub fn silent_frames(interleaved: &[i16], tone_frames: usize, guard: usize) -> (u64, u64) {
    let frames = interleaved.len() / (2 * FRAME);
    let end = tone_frames.min(frames).saturating_sub(guard);
    let mut checked = 0;
    let mut silent = 0;
    for f in guard..end {
        let Some(samples) = interleaved.get(f * 2 * FRAME..(f + 1) * 2 * FRAME) else {
            break;
        };
        checked += 1;
        if samples.iter().step_by(2).all(|&s| s == 0) {
            silent += 1;
        }
    }
    (silent, checked)
}

/// Checks each expected recording in `dir`.
pub fn check(dir: &Path, expected: &[Expected], guard: usize) -> RecordingFigures {
    let mut r = RecordingFigures {
        sampled: expected.len() as u64,
        ..Default::default()
    };
    for e in expected {
        let Some(path) = find(dir, &e.server_call_id) else {
            r.missing += 1;
            continue;
        };
        let Ok(reader) = hound::WavReader::open(&path) else {
            r.unreadable += 1;
            continue;
        };
        let spec = reader.spec();
        if spec.channels != 2 || spec.sample_rate != 8000 || spec.bits_per_sample != 16 {
            r.unreadable += 1;
            continue;
        }
        let samples: Result<Vec<i16>, _> = reader.into_samples::<i16>().collect();
        let Ok(samples) = samples else {
            r.unreadable += 1;
            continue;
        };
        let (silent, checked) = silent_frames(&samples, e.tone_frames, guard);
        r.silent_frames += silent;
        r.frames_checked += checked;
    }
    if r.frames_checked > 0 {
        r.silent_pct = r.silent_frames as f64 * 100.0 / r.frames_checked as f64;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stereo(left_frames: &[bool]) -> Vec<i16> {
        // true: tone on the left; the right channel is always loud (it must not matter).
        let mut v = Vec::new();
        for &tone in left_frames {
            for i in 0..FRAME {
                v.push(if tone { 1000 + i as i16 } else { 0 });
                v.push(2000);
            }
        }
        v
    }

    #[test]
    fn counts_silent_left_frames_inside_the_guarded_span() {
        let mut frames = vec![true; 20];
        frames[0] = false; // inside the guard
        frames[7] = false;
        frames[8] = false;
        frames[19] = false; // inside the guard
        let s = stereo(&frames);
        assert_eq!(silent_frames(&s, 20, 2), (2, 16));
        // The expected span ends early: frames 2..8 are checked (frame 8 is in the guard).
        assert_eq!(silent_frames(&s, 10, 2), (1, 6));
        // Recording shorter than expected: only what is there (frames 1..9).
        assert_eq!(silent_frames(&s[..10 * 2 * FRAME], 20, 1), (2, 8));
    }

    #[test]
    fn reads_a_wav_and_finds_it_by_call_id() {
        let dir = std::env::temp_dir().join(format!("loadgen-rec-{}", std::process::id()));
        let day = dir.join("2026-01-01");
        std::fs::create_dir_all(&day).expect("mkdir");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(day.join("r-abc.wav"), spec).expect("create");
        let mut frames = vec![true; 30];
        frames[10] = false;
        for s in stereo(&frames) {
            w.write_sample(s).expect("write");
        }
        w.finalize().expect("finalize");
        let expected = [
            Expected {
                server_call_id: "abc".into(),
                tone_frames: 30,
            },
            Expected {
                server_call_id: "nope".into(),
                tone_frames: 30,
            },
        ];
        let r = check(&dir, &expected, 5);
        assert_eq!((r.sampled, r.missing, r.unreadable), (2, 1, 0));
        assert_eq!((r.silent_frames, r.frames_checked), (1, 20));
        assert!((r.silent_pct - 5.0).abs() < 1e-9);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
