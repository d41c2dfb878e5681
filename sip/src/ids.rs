//! Deterministic generator for Via branches, tags and Call-IDs.

use rand::distr::Alphanumeric;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The RFC 3261 magic cookie that starts every branch we create.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// Seeded source of protocol identifiers; the same seed gives the same sequence.
#[derive(Debug)]
pub struct IdGen {
    rng: StdRng,
}

impl IdGen {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        IdGen {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A Via branch: "z9hG4bK" followed by 20 alphanumeric characters.
    pub fn branch(&mut self) -> String {
        let mut s = String::with_capacity(BRANCH_COOKIE.len() + 20);
        s.push_str(BRANCH_COOKIE);
        self.push_alnum(&mut s, 20);
        s
    }

    /// A From/To tag: 16 alphanumeric characters.
    pub fn tag(&mut self) -> String {
        let mut s = String::with_capacity(16);
        self.push_alnum(&mut s, 16);
        s
    }

    /// A Call-ID: 24 alphanumeric characters (globally unique with overwhelming odds).
    pub fn call_id(&mut self) -> String {
        let mut s = String::with_capacity(24);
        self.push_alnum(&mut s, 24);
        s
    }

    /// A random 64-bit number (SDP session ids).
    pub fn next_u64(&mut self) -> u64 {
        self.rng.random()
    }

    /// A random 32-bit number (RTP SSRCs).
    pub fn next_u32(&mut self) -> u32 {
        self.rng.random()
    }

    fn push_alnum(&mut self, s: &mut String, n: usize) {
        for _ in 0..n {
            s.push(char::from(self.rng.sample(Alphanumeric)));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn same_seed_same_ids_other_seed_other_ids() {
        let mut a = IdGen::new(7);
        let mut b = IdGen::new(7);
        let mut c = IdGen::new(8);
        let xa = (a.branch(), a.tag(), a.call_id());
        let xb = (b.branch(), b.tag(), b.call_id());
        let xc = (c.branch(), c.tag(), c.call_id());
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn branch_has_cookie_and_enough_randomness() {
        let mut g = IdGen::new(1);
        let b = g.branch();
        assert!(b.starts_with("z9hG4bK"));
        assert!(b.len() >= 7 + 16);
        assert!(b.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn ids_do_not_repeat() {
        let mut g = IdGen::new(42);
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(g.branch()));
            assert!(seen.insert(g.tag()));
            assert!(seen.insert(g.call_id()));
        }
    }
}
