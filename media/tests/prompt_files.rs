//! Prompt loading from real files: WAV at several rates (written with hound), and
//! FLAC / Ogg Vorbis / MP3 made by sox when it is installed.

use std::f64::consts::TAU;
use std::path::{Path, PathBuf};
use std::process::Command;

use media::{Error, Prompt, dominant_frequency};

const CANDIDATES: [f64; 8] = [300.0, 350.0, 400.0, 440.0, 480.0, 520.0, 620.0, 1000.0];
const AMPLITUDE: f64 = 0.5; // of full scale

/// A temp dir removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("media-test-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Copy)]
enum Sample {
    I16,
    I24,
    F32,
}

/// Writes `seconds` of a 440 Hz sine; with 2 channels the right one is silent.
fn write_wav(path: &Path, rate: u32, channels: u16, seconds: f64, format: Sample) {
    let (bits, sample_format) = match format {
        Sample::I16 => (16, hound::SampleFormat::Int),
        Sample::I24 => (24, hound::SampleFormat::Int),
        Sample::F32 => (32, hound::SampleFormat::Float),
    };
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    let frames = (f64::from(rate) * seconds).round() as usize;
    for i in 0..frames {
        let x = AMPLITUDE * (TAU * 440.0 * i as f64 / f64::from(rate)).sin();
        for ch in 0..channels {
            let x = if ch == 0 { x } else { 0.0 };
            match format {
                Sample::I16 => w.write_sample((x * 32767.0).round() as i16),
                Sample::I24 => w.write_sample((x * 8_388_607.0).round() as i32),
                Sample::F32 => w.write_sample(x as f32),
            }
            .expect("write sample");
        }
    }
    w.finalize().expect("finalize wav");
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// Checks an 8 kHz prompt holds `seconds` of 440 Hz at `peak` (fraction of full scale).
fn check_sine(p: &Prompt, seconds: f64, peak: f64, what: &str) {
    let expected = (8000.0 * seconds).round() as i64;
    let got = p.len() as i64;
    assert!(
        (got - expected).abs() <= 160,
        "{what}: {got} samples, expected {expected} ±160"
    );
    // Skip the edges, where resampler filters and codec priming live.
    let body = &p.samples()[800..p.len() - 800];
    assert_eq!(
        dominant_frequency(body, &CANDIDATES, 8000),
        Some(440.0),
        "{what}: dominant frequency"
    );
    let want_rms = peak * 32768.0 / 2f64.sqrt();
    let got_rms = rms(body);
    assert!(
        (got_rms - want_rms).abs() < 0.1 * want_rms,
        "{what}: rms {got_rms}, expected {want_rms}"
    );
}

#[test]
fn wav_at_every_common_rate_becomes_8k_with_the_same_tone_and_length() {
    let dir = TempDir::new("wav");
    let cases = [
        (8000, 1, Sample::I16, 1.0),
        (16000, 1, Sample::I16, 1.3),
        (44100, 2, Sample::I16, 1.0),
        (48000, 2, Sample::I16, 2.07),
        (22050, 1, Sample::I24, 0.9),
        (32000, 2, Sample::F32, 1.1),
        (96000, 1, Sample::I24, 0.5),
        // Not a ratio of small integers: takes the sinc resampler.
        (11111, 1, Sample::I16, 1.2),
    ];
    for (rate, channels, format, seconds) in cases {
        let path = dir.path(&format!("tone_{rate}_{channels}.wav"));
        write_wav(&path, rate, channels, seconds, format);
        let p = Prompt::load(&path).expect("wav loads");
        assert_eq!(p.name(), format!("tone_{rate}_{channels}"));
        // Stereo with a silent right channel averages to half amplitude.
        let peak = AMPLITUDE / f64::from(channels);
        check_sine(&p, seconds, peak, &format!("{rate} Hz x{channels}"));

        let bytes = std::fs::read(&path).expect("read back");
        let q = Prompt::from_bytes(bytes, "wav").expect("same bytes load from memory");
        assert_eq!(
            q.samples(),
            p.samples(),
            "{rate} Hz: file and memory decode alike"
        );
    }
}

#[test]
fn eight_khz_16_bit_wav_is_bit_exact() {
    let dir = TempDir::new("exact");
    let path = dir.path("exact.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let samples: Vec<i16> = (0..1000).map(|i| (i * 61 % 65536 - 32768) as i16).collect();
    let mut w = hound::WavWriter::create(&path, spec).expect("create");
    for &s in &samples {
        w.write_sample(s).expect("write");
    }
    w.finalize().expect("finalize");
    let p = Prompt::load(&path).expect("loads");
    assert_eq!(p.samples(), samples.as_slice());
}

#[test]
fn empty_and_truncated_wavs_do_not_panic() {
    let dir = TempDir::new("bad");
    let empty = dir.path("empty.wav");
    write_wav(&empty, 16000, 1, 0.0, Sample::I16);
    assert!(matches!(Prompt::load(&empty), Err(Error::Empty)));

    let full = dir.path("full.wav");
    write_wav(&full, 44100, 2, 0.5, Sample::I16);
    let bytes = std::fs::read(&full).expect("read");
    for cut in [0, 4, 12, 40, 44, 45, 1000, bytes.len() / 2] {
        // Either a shorter prompt or an error; never a panic.
        let _ = Prompt::from_bytes(bytes[..cut].to_vec(), "wav");
    }
    // Flipped bytes in the header (sample rate, channels, sizes, ...).
    for i in 0..44 {
        let mut b = bytes.clone();
        b[i] ^= 0xFF;
        let _ = Prompt::from_bytes(b, "wav");
    }
}

fn sox_available() -> bool {
    Path::new("/usr/bin/sox").exists()
}

#[test]
fn flac_ogg_and_mp3_made_by_sox_load() {
    if !sox_available() {
        println!("note: /usr/bin/sox not installed; skipping FLAC/OGG/MP3 prompt tests");
        return;
    }
    let dir = TempDir::new("sox");
    let wav = dir.path("source.wav");
    let seconds = 1.5;
    write_wav(&wav, 44100, 1, seconds, Sample::I16);
    let mut loaded = 0;
    for ext in ["flac", "ogg", "mp3"] {
        let out = dir.path(&format!("tone.{ext}"));
        let status = Command::new("/usr/bin/sox").arg(&wav).arg(&out).output();
        match status {
            Ok(o) if o.status.success() && out.exists() => {}
            Ok(o) => {
                println!(
                    "note: sox cannot write {ext} here ({}); skipping it",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                continue;
            }
            Err(e) => {
                println!("note: running sox failed ({e}); skipping {ext}");
                continue;
            }
        }
        let p = Prompt::load(&out).unwrap_or_else(|e| panic!("{ext} loads: {e}"));
        // MP3 adds encoder delay/padding (up to ~2 frames of 1152 at 44.1 kHz, ~50 ms).
        let slack = if ext == "mp3" { 0.06 } else { 0.0 };
        let got = p.len() as f64 / 8000.0;
        assert!(
            got >= seconds - 0.02 && got <= seconds + 0.02 + slack,
            "{ext}: {got} s, expected {seconds} s"
        );
        let body = &p.samples()[1200..p.len() - 1200];
        assert_eq!(
            dominant_frequency(body, &CANDIDATES, 8000),
            Some(440.0),
            "{ext}"
        );
        let want_rms = AMPLITUDE * 32768.0 / 2f64.sqrt();
        assert!(
            (rms(body) - want_rms).abs() < 0.15 * want_rms,
            "{ext}: rms {}",
            rms(body)
        );
        // And from memory with the hint, as built-in prompts are loaded.
        let bytes = std::fs::read(&out).expect("read back");
        assert_eq!(
            Prompt::from_bytes(bytes, ext).expect("from bytes").len(),
            p.len()
        );
        loaded += 1;
    }
    println!("note: loaded {loaded} of 3 sox-made formats");
}
