//! One timer structure: every owner's next deadline, in one heap.
//!
//! Used by the SIP transaction layer (owners: transactions) and by call control
//! (owners: the transaction layer, the registrar, the ACD, each call's IVR).
//! Each owner has at most one armed deadline. Re-arming pushes a new heap entry; an entry
//! whose deadline no longer matches its owner's is stale and skipped (lazy
//! deletion), so `set` is O(log n) and `next` is O(1) after pruning.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Instant;

/// Deadlines by owner `K`, soonest first.
#[derive(Debug)]
pub struct Deadlines<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    armed: HashMap<K, Instant>,
}

impl<K: Ord + Hash + Clone> Default for Deadlines<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            armed: HashMap::new(),
        }
    }
}

impl<K: Ord + Hash + Clone> Deadlines<K> {
    /// Arms `key` at `at`, or disarms it with `None`. Unchanged deadlines cost nothing.
    pub fn set(&mut self, key: K, at: Option<Instant>) {
        match at {
            Some(at) => {
                if self.armed.get(&key) == Some(&at) {
                    return;
                }
                self.armed.insert(key.clone(), at);
                self.heap.push(Reverse((at, key)));
            }
            None => {
                self.armed.remove(&key);
            }
        }
        self.prune();
    }

    /// The soonest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The owner of a deadline due at or before `now` (it is disarmed), soonest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        self.prune();
        let Reverse((at, _)) = self.heap.peek()?;
        if *at > now {
            return None;
        }
        let Reverse((_, key)) = self.heap.pop()?;
        self.armed.remove(&key);
        self.prune();
        Some(key)
    }

    /// Armed owners (for gauges and leak checks).
    pub fn len(&self) -> usize {
        self.armed.len()
    }

    /// Heap entries, stale ones included (for gauges and leak checks).
    pub fn entries(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is armed.
    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    fn prune(&mut self) {
        while let Some(Reverse((at, key))) = self.heap.peek() {
            if self.armed.get(key) == Some(at) {
                break;
            }
            self.heap.pop();
        }
        if self.heap.len() > 2 * self.armed.len() + 1024 {
            self.heap = self
                .armed
                .iter()
                .map(|(k, at)| Reverse((*at, k.clone())))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn soonest_first_rearm_and_disarm_leave_no_stale_deadline() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = Deadlines::default();
        d.set(1u64, Some(t0 + s(5)));
        d.set(2, Some(t0 + s(3)));
        d.set(3, Some(t0 + s(4)));
        assert_eq!(d.next(), Some(t0 + s(3)));
        d.set(2, Some(t0 + s(10))); // moved later: 3 is now first
        assert_eq!(d.next(), Some(t0 + s(4)));
        d.set(3, None);
        assert_eq!(d.next(), Some(t0 + s(5)));
        assert_eq!(d.pop_due(t0 + s(4)), None, "nothing due yet");
        assert_eq!(d.pop_due(t0 + s(20)), Some(1));
        assert_eq!(d.pop_due(t0 + s(20)), Some(2));
        assert_eq!(d.pop_due(t0 + s(20)), None);
        assert!(d.is_empty());
        assert_eq!(d.next(), None, "stale entries are gone with their owners");
    }

    #[test]
    fn many_rearms_keep_the_heap_bounded() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        for i in 0..100_000u64 {
            d.set(i % 10, Some(t0 + Duration::from_millis(i)));
        }
        assert_eq!(d.len(), 10);
        assert!(d.entries() <= 2 * 10 + 1024 + 1, "heap {}", d.entries());
        assert_eq!(d.next(), Some(t0 + Duration::from_millis(99_990)));
    }
}
