//! How a queue chooses among its free agents (the set FusionPBX offers over mod_callcenter),
//! and the levels that decide who rings first.
//!
//! Every strategy first narrows the free agents to those whose level in the queue is the
//! lowest among them (level 1 rings before level 2) and no higher than the queue's
//! escalation allows for the caller's wait; the strategy then picks one of those.

use serde::{Deserialize, Serialize};

/// A queue's way of choosing the agent to ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The agent free for longest (since their last call, miss or wrap-up).
    #[default]
    LongestIdle,
    /// The next agent after the one this queue rang last, in configuration order.
    RoundRobin,
    /// The agent who has answered the fewest calls today (the shell resets the counts at
    /// the clinic's midnight: [`crate::Acd::reset_counts`]).
    FewestCalls,
    /// The agent with the least talk time since the counts were last reset.
    LeastTalkTime,
    /// The first free agent in configuration order.
    TopDown,
    /// Any free agent, chosen at random (seeded: a run replays).
    Random,
    /// Every free agent at once; the first to answer takes the call and the others'
    /// phones stop ringing (not a miss for them).
    RingAll,
}

impl Strategy {
    /// Every strategy, in the order the docs list them.
    pub const ALL: [Strategy; 7] = [
        Strategy::LongestIdle,
        Strategy::RoundRobin,
        Strategy::FewestCalls,
        Strategy::LeastTalkTime,
        Strategy::TopDown,
        Strategy::Random,
        Strategy::RingAll,
    ];

    /// The config file's name for it (`"longest_idle"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::LongestIdle => "longest_idle",
            Strategy::RoundRobin => "round_robin",
            Strategy::FewestCalls => "fewest_calls",
            Strategy::LeastTalkTime => "least_talk_time",
            Strategy::TopDown => "top_down",
            Strategy::Random => "random",
            Strategy::RingAll => "ring_all",
        }
    }
}

/// A small seeded generator for [`Strategy::Random`] (xorshift64*): no clock, replayable.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        usize::try_from(r % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_random_stays_in_range() {
        for s in Strategy::ALL {
            let json = format!("\"{}\"", s.as_str());
            let back: Strategy = serde_json::from_str(&json).expect("name");
            assert_eq!(back, s);
        }
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 3];
        for _ in 0..300 {
            seen[rng.below(3)] += 1;
        }
        assert!(seen.iter().all(|n| *n > 60), "roughly uniform: {seen:?}");
    }
}
