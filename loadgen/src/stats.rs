//! Sample sets with percentiles, and RFC 3550 interarrival jitter.

use serde::{Deserialize, Serialize};

/// Samples in microseconds; sorted once when summarised.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    values: Vec<i64>,
}

/// Count, percentiles and extremes of a sample set, in milliseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub count: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Samples {
    /// An empty set with room for `n` samples (no growth on the hot path if `n` is right).
    pub fn with_capacity(n: usize) -> Self {
        Samples {
            values: Vec::with_capacity(n),
        }
    }

    pub fn push_us(&mut self, us: i64) {
        self.values.push(us);
    }

    /// Summarises (sorts in place).
    pub fn distribution(&mut self) -> Distribution {
        self.values.sort_unstable();
        let v = &self.values;
        let Some((&first, &last)) = v.first().zip(v.last()) else {
            return Distribution::default();
        };
        let sum: i128 = v.iter().map(|&x| i128::from(x)).sum();
        Distribution {
            count: v.len(),
            min_ms: ms(first),
            p50_ms: ms(percentile(v, 50.0)),
            p90_ms: ms(percentile(v, 90.0)),
            p99_ms: ms(percentile(v, 99.0)),
            max_ms: ms(last),
            mean_ms: (sum as f64 / v.len() as f64) / 1000.0,
        }
    }
}

fn ms(us: i64) -> f64 {
    us as f64 / 1000.0
}

/// Nearest-rank percentile of sorted values (`p` in 0..=100); 0 for an empty slice.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    sorted.get(i).copied().unwrap_or(0)
}

/// RFC 3550 §6.4.1 interarrival jitter of one stream, from send and receive times in µs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Jitter {
    last_transit: Option<i64>,
    /// Current estimate, µs.
    jitter_us: f64,
    /// Largest estimate seen, µs.
    max_us: f64,
}

impl Jitter {
    /// One packet: `J += (|D| - J) / 16`, D the change in transit time.
    pub fn packet(&mut self, sent_us: i64, received_us: i64) {
        let transit = received_us - sent_us;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.jitter_us += (d - self.jitter_us) / 16.0;
            self.max_us = self.max_us.max(self.jitter_us);
        }
        self.last_transit = Some(transit);
    }

    #[cfg(test)]
    pub fn current_ms(&self) -> f64 {
        self.jitter_us / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.max_us / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        // 10 values: p99 is the largest, p90 the 9th.
        let w: Vec<i64> = (1..=10).map(|x| x * 1000).collect();
        assert_eq!(percentile(&w, 99.0), 10_000);
        assert_eq!(percentile(&w, 90.0), 9_000);
    }

    #[test]
    fn distribution_in_ms_from_unsorted_us() {
        let mut s = Samples::with_capacity(4);
        for us in [4000, 1000, 3000, 2000] {
            s.push_us(us);
        }
        let d = s.distribution();
        assert_eq!(d.count, 4);
        assert_eq!(d.min_ms, 1.0);
        assert_eq!(d.p50_ms, 2.0);
        assert_eq!(d.p99_ms, 4.0);
        assert_eq!(d.max_ms, 4.0);
        assert_eq!(d.mean_ms, 2.5);
        assert_eq!(Samples::default().distribution(), Distribution::default());
    }

    #[test]
    fn jitter_is_zero_for_constant_delay_and_grows_with_variation() {
        let mut j = Jitter::default();
        for i in 0..100 {
            j.packet(i * 20_000, i * 20_000 + 5_000);
        }
        assert_eq!(j.current_ms(), 0.0);
        let mut k = Jitter::default();
        for i in 0..1000 {
            let extra = if i % 2 == 0 { 0 } else { 4_000 };
            k.packet(i * 20_000, i * 20_000 + extra);
        }
        // |D| = 4 ms every packet: J converges to 4 ms.
        assert!((k.current_ms() - 4.0).abs() < 0.01, "{}", k.current_ms());
        assert!(k.max_ms() >= k.current_ms());
    }
}
