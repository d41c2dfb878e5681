//! RTP ports: one even port per call leg from the configured range.
//!
//! Only even ports are handed out so that a peer's RTCP (sent to port + 1)
//! never lands on another leg's RTP socket.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::UdpSocket;

/// Hands out bound RTP sockets from a port range, round robin.
#[derive(Debug, Clone)]
pub struct PortPool {
    ip: IpAddr,
    first: u16,
    count: u32,
    next: Arc<AtomicU32>,
}

impl PortPool {
    /// A pool over the even ports of `first..=last`, bound on `ip`.
    pub fn new(ip: IpAddr, first: u16, last: u16) -> Self {
        let first = first + (first % 2);
        let count = if last >= first {
            (u32::from(last) - u32::from(first)) / 2 + 1
        } else {
            0
        };
        Self {
            ip,
            first,
            count,
            next: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Binds the next free even port; tries each port of the range at most once.
    pub async fn bind(&self) -> std::io::Result<UdpSocket> {
        for _ in 0..self.count {
            let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.count.max(1);
            let Ok(port) = u16::try_from(u32::from(self.first) + slot * 2) else {
                continue;
            };
            if let Ok(socket) = UdpSocket::bind(SocketAddr::new(self.ip, port)).await {
                return Ok(socket);
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
    async fn hands_out_distinct_even_ports_and_reports_exhaustion() {
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), 31001, 31004);
        let a = pool.bind().await.expect("first port");
        let b = pool.bind().await.expect("second port");
        let pa = a.local_addr().expect("addr").port();
        let pb = b.local_addr().expect("addr").port();
        assert_ne!(pa, pb);
        assert_eq!(pa % 2, 0);
        assert_eq!(pb % 2, 0);
        // 31002 and 31004 are the only even ports: both taken now.
        assert!(pool.bind().await.is_err());
        drop(a);
        assert!(pool.bind().await.is_ok(), "a released port is reused");
    }
}
