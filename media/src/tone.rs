//! Sine tone generation and Goertzel tone detection.

use std::f64::consts::TAU;

use crate::SAMPLE_RATE;

/// A continuous 8 kHz sine generator whose phase carries across frames.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    phase: f64,
    step: f64,
    amplitude: f64,
}

impl ToneGenerator {
    /// A sine at `freq` Hz with peak `amplitude` (linear 16-bit units).
    pub fn new(freq: f64, amplitude: i16) -> Self {
        ToneGenerator {
            phase: 0.0,
            step: TAU * freq / f64::from(SAMPLE_RATE),
            amplitude: f64::from(amplitude),
        }
    }

    /// Fills `frame` with the next samples of the tone.
    pub fn fill(&mut self, frame: &mut [i16]) {
        for s in frame.iter_mut() {
            *s = (self.amplitude * self.phase.sin())
                .round()
                .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
            self.phase = (self.phase + self.step) % TAU;
        }
    }
}

/// Power of `freq` in `samples` by the Goertzel algorithm, normalised so that a
/// sine of peak amplitude A at that frequency gives about A²/4.
pub fn goertzel_power(samples: &[i16], freq: f64, sample_rate: u32) -> f64 {
    if samples.is_empty() || sample_rate == 0 {
        return 0.0;
    }
    let w = TAU * freq / f64::from(sample_rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let n = samples.len() as f64;
    power.max(0.0) / (n * n)
}

/// The candidate frequency with the most power, or `None` when no candidate
/// holds a clear share (at least 10 %) of the signal's energy (e.g. silence or noise).
pub fn dominant_frequency(samples: &[i16], candidates: &[f64], sample_rate: u32) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mean_square = samples
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        / samples.len() as f64;
    if mean_square <= 0.0 {
        return None;
    }
    let (freq, power) = candidates
        .iter()
        .map(|&f| (f, goertzel_power(samples, f, sample_rate)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    // A pure tone gives power = mean_square / 2.
    (power >= 0.1 * mean_square / 2.0).then_some(freq)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DTMF_AND_CALL_PROGRESS: [f64; 9] = [
        350.0, 440.0, 480.0, 620.0, 697.0, 770.0, 852.0, 941.0, 1209.0,
    ];

    #[test]
    fn generator_is_continuous_across_frames() {
        let mut split = ToneGenerator::new(440.0, 8000);
        let mut whole = ToneGenerator::new(440.0, 8000);
        let mut a = [0i16; 320];
        let (first, second) = a.split_at_mut(160);
        split.fill(first);
        split.fill(second);
        let mut b = [0i16; 320];
        whole.fill(&mut b);
        assert_eq!(a, b);
        assert!(a.iter().all(|&s| s.abs() <= 8000));
        assert!(a.iter().any(|&s| s > 7900), "reaches its amplitude");
        // No jump at the frame boundary bigger than one step of a 440 Hz sine.
        let jump = (i32::from(a[160]) - i32::from(a[159])).abs();
        assert!(jump < 3000, "jump {jump}");
    }

    #[test]
    fn goertzel_finds_the_generated_tone() {
        let mut g = ToneGenerator::new(440.0, 10000);
        let mut buf = [0i16; 800];
        g.fill(&mut buf);
        let on = goertzel_power(&buf, 440.0, 8000);
        let off = goertzel_power(&buf, 620.0, 8000);
        assert!((on - 10000.0f64.powi(2) / 4.0).abs() < 0.05 * on, "on {on}");
        assert!(off < on / 100.0, "off {off} vs on {on}");
        assert_eq!(
            dominant_frequency(&buf, &DTMF_AND_CALL_PROGRESS, 8000),
            Some(440.0)
        );
    }

    #[test]
    fn dominant_frequency_picks_each_candidate() {
        for &f in &DTMF_AND_CALL_PROGRESS {
            let mut g = ToneGenerator::new(f, 5000);
            let mut buf = [0i16; 1600];
            g.fill(&mut buf);
            assert_eq!(
                dominant_frequency(&buf, &DTMF_AND_CALL_PROGRESS, 8000),
                Some(f)
            );
        }
    }

    #[test]
    fn silence_noise_and_empty_inputs_have_no_dominant_frequency() {
        assert_eq!(dominant_frequency(&[0; 800], &[440.0], 8000), None);
        assert_eq!(dominant_frequency(&[], &[440.0], 8000), None);
        let mut g = ToneGenerator::new(440.0, 5000);
        let mut buf = [0i16; 800];
        g.fill(&mut buf);
        assert_eq!(dominant_frequency(&buf, &[], 8000), None);
        // Deterministic pseudo-noise.
        let mut x: u32 = 12345;
        let noise: Vec<i16> = (0..8000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 16) as i16) / 4
            })
            .collect();
        assert_eq!(
            dominant_frequency(&noise, &DTMF_AND_CALL_PROGRESS, 8000),
            None
        );
        assert_eq!(goertzel_power(&[], 440.0, 8000), 0.0);
    }
}
