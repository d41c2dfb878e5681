//! The daily QA sample: which recordings QA reviews on a given day.
//!
//! Each id gets a rank from a fixed 64-bit hash of (seed, date, id); the `n` lowest ranks
//! are the sample. The hash is spelled out here (FNV-1a then a SplitMix64 finaliser), not
//! taken from `std` or `rand`, so the same inputs give the same sample on every build and
//! platform. Input order and duplicate ids do not matter.

/// The `n` ids picked for QA on `date` with `seed`, lowest rank first.
///
/// Deterministic: the same ids (in any order), seed and date always give the same sample,
/// and a larger `n` extends a smaller one. With `n >= ids.len()` every (distinct) id is returned.
pub fn daily_sample(ids: &[String], seed: u64, date: &str, n: usize) -> Vec<String> {
    let mut ranked: Vec<(u64, &str)> = ids
        .iter()
        .map(|id| (rank(seed, date, id), id.as_str()))
        .collect();
    // Ties between different ids (a 2^-64 chance) fall back to the id itself.
    ranked.sort_unstable();
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked
        .into_iter()
        .take(n)
        .map(|(_, id)| id.to_owned())
        .collect()
}

/// The position-independent rank of `id` on `date` under `seed`.
fn rank(seed: u64, date: &str, id: &str) -> u64 {
    let mut hash = Fnv1a::new();
    hash.write(&seed.to_le_bytes());
    // Length prefixes keep ("2026-11-2", "51") and ("2026-11-25", "1") apart.
    hash.write(&(date.len() as u64).to_le_bytes());
    hash.write(date.as_bytes());
    hash.write(&(id.len() as u64).to_le_bytes());
    hash.write(id.as_bytes());
    splitmix64(hash.0)
}

struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// SplitMix64's finaliser: spreads FNV's weak low bits over the whole word.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("rec-{i:04}")).collect()
    }

    #[test]
    fn same_inputs_give_the_same_sample() {
        let all = ids(200);
        let first = daily_sample(&all, 20261125, "2026-11-25", 30);
        assert_eq!(first.len(), 30);
        assert_eq!(daily_sample(&all, 20261125, "2026-11-25", 30), first);
        let mut unique = first.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 30, "no id twice");
        assert!(first.iter().all(|id| all.contains(id)));
    }

    #[test]
    fn sample_is_pinned_across_builds() {
        // Pinned (and checked against an independent Python implementation of the same hash)
        // so a change of hash, which would silently change past days' samples, is noticed.
        let sample = daily_sample(&ids(10), 1, "2026-01-01", 3);
        assert_eq!(sample, ["rec-0006", "rec-0001", "rec-0000"]);
    }

    #[test]
    fn input_order_does_not_matter() {
        let all = ids(100);
        let mut reversed = all.clone();
        reversed.reverse();
        let mut shuffled = all.clone();
        // A fixed permutation: stride 37 through 100 items (37 and 100 are coprime).
        for (i, slot) in shuffled.iter_mut().enumerate() {
            *slot = all[(i * 37) % all.len()].clone();
        }
        let expected = daily_sample(&all, 7, "2026-11-25", 10);
        assert_eq!(daily_sample(&reversed, 7, "2026-11-25", 10), expected);
        assert_eq!(daily_sample(&shuffled, 7, "2026-11-25", 10), expected);
    }

    #[test]
    fn different_dates_and_seeds_give_different_samples() {
        let all = ids(100);
        let today = daily_sample(&all, 7, "2026-11-25", 10);
        assert_ne!(daily_sample(&all, 7, "2026-11-26", 10), today);
        assert_ne!(daily_sample(&all, 8, "2026-11-25", 10), today);
    }

    #[test]
    fn n_larger_than_the_list_returns_every_id_once() {
        let mut all = ids(5);
        all.push("rec-0002".to_owned());
        let mut sample = daily_sample(&all, 1, "2026-11-25", 50);
        sample.sort();
        assert_eq!(sample, ids(5));
        assert_eq!(daily_sample(&all, 1, "2026-11-25", 0), Vec::<String>::new());
        assert_eq!(daily_sample(&[], 1, "2026-11-25", 3), Vec::<String>::new());
    }

    #[test]
    fn a_larger_sample_extends_a_smaller_one() {
        let all = ids(100);
        let small = daily_sample(&all, 3, "2026-11-25", 5);
        let large = daily_sample(&all, 3, "2026-11-25", 20);
        assert_eq!(&large[..5], &small[..]);
    }
}
