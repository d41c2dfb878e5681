//! SIP sockets: UDP and TCP around the sans-IO SIP stack.
//!
//! Readers turn datagrams and TCP streams into `(Peer, bytes)` for call
//! control; [`SipIo::send`] puts a [`Transmit`] on the wire, reusing the TCP
//! connection a peer opened (a softphone registered over TCP is reached back
//! over that same connection) or opening one.
//!
//! TCP connections are bounded ([`TcpLimits`]): so many in all and per source
//! address (beyond, a new connection is closed at accept), closed when idle
//! (no byte, not even a CRLF keep-alive, for the idle timeout), and closed when
//! a started message does not complete within [`PARTIAL_MESSAGE_LIMIT`] or the
//! idle timeout, whichever is shorter (a slow sender holding a connection open).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Bounds on SIP over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Connections open at once, accepted and opened by us.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_per_source: usize,
    /// A connection silent this long is closed (`None`: never).
    pub idle: Option<Duration>,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_per_source: 32,
            idle: Some(Duration::from_secs(600)),
        }
    }
}

/// A message whose first bytes arrived must be complete within this long (or
/// the idle timeout, if that is shorter).
pub const PARTIAL_MESSAGE_LIMIT: Duration = Duration::from_secs(30);
/// At most one WARN about refused connections per this long.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The sending half of the SIP sockets.
#[derive(Debug, Clone)]
pub struct SipIo {
    udp: Option<Arc<UdpSocket>>,
    tcp: Connections,
    limits: TcpLimits,
    refused: Arc<RefusalLog>,
    inbound: mpsc::Sender<Inbound>,
    shutdown: CancellationToken,
}

/// Counts TCP connections closed at accept and says so now and then.
#[derive(Debug, Default)]
struct RefusalLog {
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl RefusalLog {
    fn refused(&self, from: SocketAddr, why: &str) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_EVERY) {
            *last = Some(now);
            warn!(source = %from.ip(), %why, refused_so_far = n, "closing new SIP TCP connections");
        }
    }
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
        limits: TcpLimits,
        shutdown: CancellationToken,
    ) -> (Self, mpsc::Receiver<Inbound>) {
        let (inbound, rx) = mpsc::channel(1024);
        let io = Self {
            udp: udp.map(Arc::new),
            tcp: Arc::new(Mutex::new(HashMap::new())),
            limits,
            refused: Arc::new(RefusalLog::default()),
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

    /// Why a new connection from `addr` may not be opened now, if it may not.
    fn over_limit(&self, addr: SocketAddr) -> Option<&'static str> {
        let connections = self.connections();
        if connections.len() >= self.limits.max_connections {
            return Some("too many connections");
        }
        let from_source = connections.keys().filter(|a| a.ip() == addr.ip()).count();
        (from_source >= self.limits.max_per_source)
            .then_some("too many connections from one source")
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
            // When the message now buffered began arriving (none buffered: None).
            let mut partial_since: Option<tokio::time::Instant> = None;
            'read: loop {
                let idle = io.limits.idle.unwrap_or(Duration::from_secs(86_400 * 365));
                let deadline = match partial_since {
                    Some(t) => t + PARTIAL_MESSAGE_LIMIT.min(idle),
                    None => tokio::time::Instant::now() + idle,
                };
                let n = tokio::select! {
                    _ = io.shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(deadline) => {
                        let why = if partial_since.is_some() { "a message took too long to arrive" } else { "idle" };
                        debug!(peer = %addr, %why, "closing tcp connection");
                        break;
                    }
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
                partial_since = match (framer.buffered(), partial_since) {
                    (0, _) => None,
                    (_, Some(t)) => Some(t),
                    (_, None) => Some(tokio::time::Instant::now()),
                };
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
                if let Some(why) = io.over_limit(addr) {
                    io.refused.refused(addr, why);
                    drop(stream);
                    continue;
                }
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
