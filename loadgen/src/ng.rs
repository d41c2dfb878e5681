//! A client for rtpengine's ng control protocol over UDP (rtpengine's
//! `docs/ng_control_protocol.md`): each datagram is `<cookie> <bencoded dictionary>`, the
//! request dictionary names a `command`, and the reply, under the same cookie, has a
//! `result` of `ok` (or `pong`) or `error` with an `error-reason`.
//!
//! Requests are sent one at a time and retransmitted under the same cookie when no reply
//! comes in time (rtpengine answers a retransmission from its cache instead of running
//! the command twice). A reply under another cookie (a late answer to an earlier try) is
//! skipped. Nothing received can panic: a reply we cannot read is an [`NgError`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::bencode::{self, BencodeError, Value};

/// Why an ng request did not give a usable reply.
#[derive(Debug)]
#[non_exhaustive]
pub enum NgError {
    /// The control socket failed.
    Io(std::io::Error),
    /// No reply to `command` after `tries` sends.
    Timeout { command: String, tries: u32 },
    /// The reply's dictionary is not bencode.
    Bencode(BencodeError),
    /// The reply is not `<cookie> <dictionary>` with a `result`.
    Malformed(String),
    /// rtpengine answered `result: error`.
    Refused { command: String, reason: String },
}

impl fmt::Display for NgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NgError::Io(e) => write!(f, "ng control socket: {e}"),
            NgError::Timeout { command, tries } => {
                write!(f, "ng {command}: no reply after {tries} tries")
            }
            NgError::Bencode(e) => write!(f, "ng reply: {e}"),
            NgError::Malformed(what) => write!(f, "ng reply: {what}"),
            NgError::Refused { command, reason } => {
                write!(f, "ng {command} refused: {reason}")
            }
        }
    }
}

impl std::error::Error for NgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NgError::Io(e) => Some(e),
            NgError::Bencode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for NgError {
    fn from(e: std::io::Error) -> Self {
        NgError::Io(e)
    }
}

/// The dictionary of a reply whose cookie is `cookie`; `Ok(None)` for another cookie's.
pub fn parse_reply(datagram: &[u8], cookie: &str) -> Result<Option<Value>, NgError> {
    let space = datagram
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(|| NgError::Malformed("no space after the cookie".into()))?;
    let (got, rest) = datagram.split_at(space);
    if got != cookie.as_bytes() {
        return Ok(None);
    }
    let body = rest.get(1..).unwrap_or_default();
    let v = bencode::decode(body).map_err(NgError::Bencode)?;
    if !matches!(v, Value::Dict(_)) {
        return Err(NgError::Malformed("not a dictionary".into()));
    }
    Ok(Some(v))
}

/// The reply itself if its `result` is `ok` or `pong`, else why not.
pub fn check_result(command: &str, reply: Value) -> Result<Value, NgError> {
    let result = reply
        .get("result")
        .and_then(Value::as_text)
        .ok_or_else(|| NgError::Malformed(format!("{command}: no result")))?;
    match result.as_str() {
        "ok" | "pong" => Ok(reply),
        "error" => Err(NgError::Refused {
            command: command.to_owned(),
            reason: reply
                .get("error-reason")
                .and_then(Value::as_text)
                .unwrap_or_else(|| "(no error-reason)".into()),
        }),
        other => Err(NgError::Malformed(format!(
            "{command}: result {other:?} is neither ok nor error"
        ))),
    }
}

/// One control connection to rtpengine.
pub struct NgClient {
    socket: UdpSocket,
    /// Distinguishes this process's cookies from another run's.
    cookie_prefix: String,
    next_cookie: u64,
    /// How long to wait for each try's reply.
    pub reply_timeout: Duration,
    /// Sends per request before giving up.
    pub tries: u32,
    buf: Vec<u8>,
}

impl NgClient {
    /// A client on an ephemeral port of `local`, talking to rtpengine's `--listen-ng` address.
    pub async fn connect(local: IpAddr, server: SocketAddr) -> Result<Self, NgError> {
        let socket = UdpSocket::bind(SocketAddr::new(local, 0)).await?;
        socket.connect(server).await?;
        Ok(NgClient {
            socket,
            cookie_prefix: format!("sbload{}", std::process::id()),
            next_cookie: 0,
            reply_timeout: Duration::from_millis(500),
            tries: 4,
            // A delete's reply carries per-stream statistics: a few KiB per call.
            buf: vec![0u8; 65_536],
        })
    }

    /// Sends `command` with the other keys of `fields`; the reply if it says ok.
    pub async fn request(
        &mut self,
        command: &str,
        fields: Vec<(&str, Value)>,
    ) -> Result<Value, NgError> {
        self.next_cookie += 1;
        let cookie = format!("{}_{}", self.cookie_prefix, self.next_cookie);
        let dict = Value::dict(std::iter::once(("command", Value::str(command))).chain(fields));
        let mut datagram = Vec::with_capacity(256);
        datagram.extend_from_slice(cookie.as_bytes());
        datagram.push(b' ');
        dict.encode_into(&mut datagram);
        for _ in 0..self.tries {
            self.socket.send(&datagram).await?;
            let deadline = tokio::time::Instant::now() + self.reply_timeout;
            // Bounded: a stray reply per loop, at most 64 before this try is abandoned.
            for _ in 0..64 {
                let Ok(r) =
                    tokio::time::timeout_at(deadline, self.socket.recv(&mut self.buf)).await
                else {
                    break;
                };
                let n = match r {
                    Ok(n) => n,
                    // ICMP port unreachable (daemon not up yet) surfaces here: try again.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                };
                let got = self.buf.get(..n).unwrap_or_default();
                if let Some(reply) = parse_reply(got, &cookie)? {
                    return check_result(command, reply);
                }
            }
        }
        Err(NgError::Timeout {
            command: command.to_owned(),
            tries: self.tries,
        })
    }

    /// `ping`: true if rtpengine answered `pong`.
    pub async fn ping(&mut self) -> Result<(), NgError> {
        let reply = self.request("ping", Vec::new()).await?;
        match reply.get("result").and_then(Value::as_text).as_deref() {
            Some("pong") => Ok(()),
            other => Err(NgError::Malformed(format!("ping answered {other:?}"))),
        }
    }

    /// `offer`: the caller's SDP in, the SDP to give the callee (rtpengine's ports) out.
    pub async fn offer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        sdp: &str,
    ) -> Result<String, NgError> {
        let reply = self
            .request(
                "offer",
                vec![
                    ("call-id", Value::str(call_id)),
                    ("from-tag", Value::str(from_tag)),
                    ("sdp", Value::str(sdp)),
                    ("ICE", Value::str("remove")),
                ],
            )
            .await?;
        reply_sdp("offer", &reply)
    }

    /// `answer`: the callee's SDP in, the SDP to give the caller out.
    pub async fn answer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp: &str,
    ) -> Result<String, NgError> {
        let reply = self
            .request(
                "answer",
                vec![
                    ("call-id", Value::str(call_id)),
                    ("from-tag", Value::str(from_tag)),
                    ("to-tag", Value::str(to_tag)),
                    ("sdp", Value::str(sdp)),
                    ("ICE", Value::str("remove")),
                ],
            )
            .await?;
        reply_sdp("answer", &reply)
    }

    /// `delete` of a whole call, at once (`delete delay` 0) rather than after rtpengine's
    /// default 30 s, so the next run starts from an empty daemon.
    pub async fn delete(&mut self, call_id: &str, from_tag: &str) -> Result<(), NgError> {
        self.request(
            "delete",
            vec![
                ("call-id", Value::str(call_id)),
                ("from-tag", Value::str(from_tag)),
                ("delete delay", Value::Int(0)),
            ],
        )
        .await
        .map(|_| ())
    }
}

fn reply_sdp(command: &str, reply: &Value) -> Result<String, NgError> {
    reply
        .get("sdp")
        .and_then(Value::as_text)
        .ok_or_else(|| NgError::Malformed(format!("{command} reply without sdp")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_matched_by_cookie_and_judged_by_result() {
        let pong = parse_reply(b"5323_1 d6:result4:ponge", "5323_1")
            .expect("valid")
            .expect("our cookie");
        assert!(check_result("ping", pong).is_ok());
        assert!(matches!(
            parse_reply(b"5323_0 d6:result4:ponge", "5323_1"),
            Ok(None)
        ));
        let refused = parse_reply(b"c d6:result5:error12:error-reason12:Unknown calle", "c")
            .expect("valid")
            .expect("ours");
        match check_result("delete", refused) {
            Err(NgError::Refused { command, reason }) => {
                assert_eq!(
                    (command.as_str(), reason.as_str()),
                    ("delete", "Unknown call")
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(matches!(
            parse_reply(b"no-space-here", "c"),
            Err(NgError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply(b"c d6:result", "c"),
            Err(NgError::Bencode(_))
        ));
        assert!(matches!(
            parse_reply(b"c i42e", "c"),
            Err(NgError::Malformed(_))
        ));
        let no_result = parse_reply(b"c d3:sdp0:e", "c")
            .expect("valid")
            .expect("ours");
        assert!(matches!(
            check_result("offer", no_result),
            Err(NgError::Malformed(_))
        ));
    }

    /// A fake rtpengine on loopback: drops the first try, answers a stale cookie first,
    /// then the real reply, so retransmission and cookie matching are both exercised.
    #[tokio::test]
    async fn retransmits_and_skips_stale_replies() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = server.local_addr().expect("addr");
        let fake = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut seen = Vec::new();
            for i in 0..2 {
                let (n, from) = server.recv_from(&mut buf).await.expect("recv");
                let got = buf[..n].to_vec();
                seen.push(got.clone());
                if i == 0 {
                    continue; // lost
                }
                let space = got.iter().position(|&b| b == b' ').expect("cookie");
                let cookie = &got[..space];
                server
                    .send_to(b"stale_0 d6:result4:ponge", from)
                    .await
                    .expect("send");
                let mut reply = cookie.to_vec();
                reply.extend_from_slice(b" d3:sdp4:v=0\n6:result2:oke");
                server.send_to(&reply, from).await.expect("send");
            }
            seen
        });
        let mut client = NgClient::connect("127.0.0.1".parse().expect("ip"), addr)
            .await
            .expect("connect");
        client.reply_timeout = Duration::from_millis(100);
        let sdp = client.offer("call-1", "tag-a", "v=0").await.expect("offer");
        assert_eq!(sdp, "v=0\n");
        let seen = fake.await.expect("fake server");
        assert_eq!(seen[0], seen[1], "the retransmission is the same datagram");
        let text = String::from_utf8_lossy(&seen[0]);
        assert!(text.contains("7:command5:offer"), "{text}");
        assert!(text.contains("7:call-id6:call-1"), "{text}");
    }

    #[tokio::test]
    async fn silence_is_a_timeout() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = server.local_addr().expect("addr");
        let mut client = NgClient::connect("127.0.0.1".parse().expect("ip"), addr)
            .await
            .expect("connect");
        client.reply_timeout = Duration::from_millis(20);
        client.tries = 2;
        match client.ping().await {
            Err(NgError::Timeout { command, tries }) => {
                assert_eq!((command.as_str(), tries), ("ping", 2));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        drop(server);
    }
}
