//! Sample sets with percentiles, a bounded histogram for per-packet figures, and
//! RFC 3550 interarrival jitter.

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

/// Per-packet figures (relay delay, sender lag) in fixed memory, whatever the run's length:
/// 10 µs buckets up to 2 s, everything above in the last one; count, sum, min and max exact.
/// Percentiles are a bucket's upper edge (never below the true value, at most 10 µs above).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: i128,
    min: i64,
    max: i64,
}

/// Width of one histogram bucket, µs.
const BUCKET_US: i64 = 10;
/// Buckets: 0..2 s.
const BUCKETS: usize = 200_000;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: i64::MAX,
            max: i64::MIN,
        }
    }
}

impl Histogram {
    /// One value; negative ones (clock skew between stamps) count in the first bucket.
    pub fn push_us(&mut self, us: i64) {
        let i = usize::try_from(us.max(0) / BUCKET_US)
            .unwrap_or(usize::MAX)
            .min(BUCKETS - 1);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.count += 1;
        self.sum += i128::from(us);
        self.min = self.min.min(us);
        self.max = self.max.max(us);
    }

    /// The value at nearest rank `p` (0..=100): the upper edge of its bucket, capped at the max.
    fn percentile(&self, p: f64) -> i64 {
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let edge = (i as i64 + 1) * BUCKET_US;
                return edge.min(self.max).max(self.min);
            }
        }
        self.max
    }

    pub fn distribution(&self) -> Distribution {
        if self.count == 0 {
            return Distribution::default();
        }
        Distribution {
            count: usize::try_from(self.count).unwrap_or(usize::MAX),
            min_ms: ms(self.min),
            p50_ms: ms(self.percentile(50.0)),
            p90_ms: ms(self.percentile(90.0)),
            p99_ms: ms(self.percentile(99.0)),
            max_ms: ms(self.max),
            mean_ms: (self.sum as f64 / self.count as f64) / 1000.0,
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
    fn histogram_agrees_with_exact_samples_within_a_bucket() {
        let mut exact = Samples::default();
        let mut h = Histogram::default();
        // 0.5 ms .. 12.3 ms in uneven steps, plus one outlier beyond the range.
        for i in 0..10_000i64 {
            let us = 500 + (i * 7_919) % 11_800;
            exact.push_us(us);
            h.push_us(us);
        }
        exact.push_us(3_000_000);
        h.push_us(3_000_000);
        let (e, d) = (exact.distribution(), h.distribution());
        assert_eq!(d.count, e.count);
        assert_eq!((d.min_ms, d.max_ms), (e.min_ms, e.max_ms));
        for (a, b) in [
            (d.p50_ms, e.p50_ms),
            (d.p90_ms, e.p90_ms),
            (d.p99_ms, e.p99_ms),
        ] {
            assert!(
                a >= b && a - b <= 0.010 + 1e-9,
                "histogram {a} vs exact {b}"
            );
        }
        assert!((d.mean_ms - e.mean_ms).abs() < 1e-9);
        assert_eq!(Histogram::default().distribution(), Distribution::default());
    }

    #[test]
    fn histogram_memory_does_not_grow_with_samples() {
        let mut h = Histogram::default();
        let before = h.counts.capacity();
        for i in 0..1_000_000 {
            h.push_us(i % 5_000);
        }
        h.push_us(-40);
        assert_eq!(h.counts.capacity(), before);
        assert_eq!(h.distribution().min_ms, -0.04);
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
