//! RTP port numbers: every port of the configured range, handed out round robin.
//!
//! The core only counts numbers; the shell binds them ([`crate::Output::BindRtp`]).
//! A port comes back when its socket is closed: at [`crate::Output::ReleaseRtp`], or
//! when the media task holding it reports `Stopped`. Freed ports go to the back of
//! the line, so a late packet for an ended call rarely reaches the next one.
//!
//! Odd ports are used too: a peer's RTCP (sent to port + 1) that lands on a
//! neighbouring leg's socket is not RTP of that leg's payload types and is ignored.

use std::collections::VecDeque;

/// The free ports of the range.
#[derive(Debug)]
pub struct Ports {
    free: VecDeque<u16>,
    in_use: usize,
}

impl Ports {
    /// Every port of `first..=last` (none if `last < first`).
    pub fn new(first: u16, last: u16) -> Self {
        let free = if last >= first {
            (first..=last).collect()
        } else {
            VecDeque::new()
        };
        Self { free, in_use: 0 }
    }

    /// The next free port.
    pub fn take(&mut self) -> Option<u16> {
        let port = self.free.pop_front()?;
        self.in_use += 1;
        Some(port)
    }

    /// Gives a port back (its socket is closed, or it could not be bound).
    pub fn put(&mut self, port: u16) {
        self.in_use = self.in_use.saturating_sub(1);
        self.free.push_back(port);
    }

    /// Ports taken and not given back.
    pub fn in_use(&self) -> usize {
        self.in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_every_port_odd_and_even_and_reuses_freed_ones_last() {
        let mut ports = Ports::new(31001, 31003);
        let taken: Vec<u16> = (0..3).filter_map(|_| ports.take()).collect();
        assert_eq!(taken, vec![31001, 31002, 31003]);
        assert_eq!(ports.in_use(), 3);
        assert_eq!(ports.take(), None, "all three taken");
        ports.put(31002);
        assert_eq!(ports.in_use(), 2);
        assert_eq!(ports.take(), Some(31002), "a freed port is reused");
        let mut fresh = Ports::new(10, 11);
        let a = fresh.take();
        fresh.put(10);
        assert_eq!(
            (a, fresh.take()),
            (Some(10), Some(11)),
            "freed ports go last"
        );
    }
}
