//! RTP ports: one port per call leg from the configured range, every port of it.
//!
//! Odd ports are used too: a peer's RTCP (sent to port + 1) that lands on a
//! neighbouring leg's socket is not RTP of that leg's payload types and is
//! ignored there. Each bound socket comes with a [`Lease`], so the pool knows
//! how many ports are in use (a gauge on `/metrics`) and a leak shows.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use tokio::net::UdpSocket;

/// Hands out bound RTP sockets from a port range, round robin.
#[derive(Debug, Clone)]
pub struct PortPool {
    ip: IpAddr,
    first: u16,
    count: u32,
    next: Arc<AtomicU32>,
    in_use: Arc<AtomicUsize>,
}

/// One port of the pool in use; dropping it (with its socket) gives it back.
#[derive(Debug)]
pub struct Lease {
    in_use: Arc<AtomicUsize>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PortPool {
    /// A pool over every port of `first..=last`, bound on `ip`.
    pub fn new(ip: IpAddr, first: u16, last: u16) -> Self {
        let count = if last >= first {
            u32::from(last) - u32::from(first) + 1
        } else {
            0
        };
        Self {
            ip,
            first,
            count,
            next: Arc::new(AtomicU32::new(0)),
            in_use: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Ports bound right now.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Binds the next free port; tries each port of the range at most once.
    pub async fn bind(&self) -> std::io::Result<(UdpSocket, Lease)> {
        for _ in 0..self.count {
            let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.count.max(1);
            let Ok(port) = u16::try_from(u32::from(self.first) + slot) else {
                continue;
            };
            if let Ok(socket) = UdpSocket::bind(SocketAddr::new(self.ip, port)).await {
                self.in_use.fetch_add(1, Ordering::Relaxed);
                let lease = Lease {
                    in_use: Arc::clone(&self.in_use),
                };
                return Ok((socket, lease));
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "no free RTP port in the configured range",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hands_out_every_port_of_the_range_counts_them_and_reports_exhaustion() {
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), 31001, 31003);
        let a = pool.bind().await.expect("first port");
        let b = pool.bind().await.expect("second port");
        let c = pool.bind().await.expect("third port");
        let mut ports: Vec<u16> = [&a, &b, &c]
            .iter()
            .map(|(s, _)| s.local_addr().expect("addr").port())
            .collect();
        ports.sort_unstable();
        assert_eq!(ports, vec![31001, 31002, 31003], "odd and even ports alike");
        assert_eq!(pool.in_use(), 3);
        assert!(pool.bind().await.is_err(), "all three taken");
        drop(a);
        assert_eq!(pool.in_use(), 2, "a dropped lease is counted back");
        assert!(pool.bind().await.is_ok(), "a released port is reused");
    }
}
