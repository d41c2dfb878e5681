//! Binding the RTP ports call control picks ([`callcore::Output::BindRtp`]).
//!
//! A bind is one non-blocking syscall, done right where the output is applied;
//! call control hears the result at once and picks another port if this one
//! is taken by another program.

use std::net::{IpAddr, SocketAddr};

use std::net::UdpSocket;

/// Binds `port` on `ip` as a non-blocking socket, not yet on the reactor: the
/// call's media task registers it (off call control's task).
pub fn bind(ip: IpAddr, port: u16) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, port))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_the_port_asked_for_and_reports_a_taken_one() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let a = bind(ip, 0).expect("an ephemeral port");
        let port = a.local_addr().expect("addr").port();
        assert!(bind(ip, port).is_err(), "the same port twice");
        drop(a);
        let again = bind(ip, port).expect("a closed port can be bound again");
        assert_eq!(again.local_addr().expect("addr").port(), port);
    }
}
