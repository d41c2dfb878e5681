//! SIP sockets: UDP and TCP around the sans-IO SIP stack.
//!
//! Readers turn datagrams and TCP streams into `(Peer, bytes)` for call
//! control; [`SipIo::send`] puts a [`Transmit`] on the wire, reusing the TCP
//! connection a peer opened (a softphone registered over TCP is reached back
//! over that same connection) or opening one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sip::framing::StreamFramer;
use sip::transport::{Peer, Transmit, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// A datagram or a framed TCP message, with where it came from.
#[derive(Debug)]
pub struct Inbound {
    pub peer: Peer,
    pub bytes: Vec<u8>,
    /// When the reader took it off the socket (call control's lag is measured from here).
    pub received_at: std::time::Instant,
}

type Connections = Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>;

/// The sending half of the SIP sockets.
#[derive(Debug, Clone)]
pub struct SipIo {
    udp: Option<Arc<UdpSocket>>,
    tcp: Connections,
    inbound: mpsc::Sender<Inbound>,
    shutdown: CancellationToken,
}

/// Largest SIP datagram accepted over UDP.
const MAX_DATAGRAM: usize = 65_535;
/// How many TCP messages may queue for one connection before new ones are dropped.
const TCP_QUEUE: usize = 256;

impl SipIo {
    /// Starts readers on the given (already bound) sockets.
    pub fn start(
        udp: Option<UdpSocket>,
        tcp: Option<TcpListener>,
        shutdown: CancellationToken,
    ) -> (Self, mpsc::Receiver<Inbound>) {
        let (inbound, rx) = mpsc::channel(1024);
        let io = Self {
            udp: udp.map(Arc::new),
            tcp: Arc::new(Mutex::new(HashMap::new())),
            inbound,
            shutdown,
        };
        if let Some(socket) = io.udp.clone() {
            tokio::spawn(udp_reader(socket, io.inbound.clone(), io.shutdown.clone()));
        }
        if let Some(listener) = tcp {
            tokio::spawn(tcp_acceptor(listener, io.clone()));
        }
        (io, rx)
    }

    /// Sends one message; failures are logged (SIP's own timers handle loss).
    pub fn send(&self, transmit: Transmit) {
        let Transmit { peer, bytes } = transmit;
        match peer.transport {
            Transport::Udp => {
                let Some(socket) = &self.udp else {
                    warn!("no UDP socket to send on");
                    return;
                };
                if let Err(e) = socket.try_send_to(&bytes, peer.addr) {
                    debug!(error = %e, "udp send failed");
                }
            }
            Transport::Tcp => {
                let existing = self.connections().get(&peer.addr).cloned();
                match existing {
                    Some(tx) => {
                        if tx.try_send(bytes).is_err() {
                            debug!("tcp connection queue full or closed");
                        }
                    }
                    None => {
                        let io = self.clone();
                        tokio::spawn(async move {
                            match tokio::time::timeout(
                                Duration::from_secs(5),
                                TcpStream::connect(peer.addr),
                            )
                            .await
                            {
                                Ok(Ok(stream)) => {
                                    let tx = io.register(stream, peer.addr);
                                    let _ = tx.try_send(bytes);
                                }
                                _ => debug!("tcp connect failed"),
                            }
                        });
                    }
                }
            }
        }
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>> {
        // A poisoned map only means a task panicked mid-insert; the map itself is still usable.
        self.tcp.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Splits a connection into a reader task and a writer task; returns the writer's queue.
    fn register(&self, stream: TcpStream, addr: SocketAddr) -> mpsc::Sender<Vec<u8>> {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_QUEUE);
        self.connections().insert(addr, tx.clone());
        let (mut reader, mut writer) = stream.into_split();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    msg = rx.recv() => {
                        let Some(msg) = msg else { break };
                        if writer.write_all(&msg).await.is_err() { break; }
                    }
                }
            }
        });
        let io = self.clone();
        tokio::spawn(async move {
            let peer = Peer {
                transport: Transport::Tcp,
                addr,
            };
            let mut framer = StreamFramer::new();
            let mut buf = vec![0u8; 16 * 1024];
            'read: loop {
                let n = tokio::select! {
                    _ = io.shutdown.cancelled() => break,
                    n = reader.read(&mut buf) => match n { Ok(0) | Err(_) => break, Ok(n) => n },
                };
                framer.push(buf.get(..n).unwrap_or_default());
                loop {
                    match framer.next_message() {
                        Ok(Some(bytes)) => {
                            if io
                                .inbound
                                .send(Inbound {
                                    peer,
                                    bytes,
                                    received_at: tokio::time::Instant::now().into_std(),
                                })
                                .await
                                .is_err()
                            {
                                break 'read;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            warn!(error = %e, "closing tcp connection: bad framing");
                            break 'read;
                        }
                    }
                }
            }
            io.connections().remove(&addr);
        });
        tx
    }
}

async fn udp_reader(
    socket: Arc<UdpSocket>,
    inbound: mpsc::Sender<Inbound>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        match received {
            Ok((n, addr)) => {
                let bytes = buf.get(..n).unwrap_or_default();
                // Keep-alives (CRLF) carry nothing for the stack.
                if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                let peer = Peer {
                    transport: Transport::Udp,
                    addr,
                };
                if inbound
                    .send(Inbound {
                        peer,
                        bytes: bytes.to_vec(),
                        received_at: tokio::time::Instant::now().into_std(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // ICMP port unreachable from an earlier send shows up here on Linux; keep reading.
            Err(e) => debug!(error = %e, "udp receive error"),
        }
    }
}

async fn tcp_acceptor(listener: TcpListener, io: SipIo) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = io.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                backoff = Duration::from_millis(10);
                let _ = stream.set_nodelay(true);
                io.register(stream, addr);
            }
            Err(e) => {
                warn!(error = %e, "tcp accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
