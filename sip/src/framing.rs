//! SIP over a byte stream (TCP): cut whole messages out of the bytes using Content-Length.
//!
//! RFC 3261 §18.3: on a stream Content-Length is mandatory. RFC 5626 §3.5.1: CRLF
//! keep-alives ("\r\n\r\n" pings, "\r\n" pongs) may arrive between messages and are skipped.
//! Any error leaves the stream out of sync: the driver should close the connection.

use crate::error::Error;
use crate::message::{MAX_BODY_BYTES, MAX_HEADER_BYTES};

/// Buffers stream bytes and yields one complete SIP message at a time.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    /// How far the header-end search has already looked (no rescans on trickled input).
    scanned: usize,
    /// Header end and total length of the message at the front, once known.
    pending: Option<usize>,
    max_header: usize,
    max_body: usize,
}

impl Default for StreamFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamFramer {
    /// A framer with the crate's caps (64 KiB of headers, 1 MiB of body).
    pub fn new() -> Self {
        Self::with_limits(MAX_HEADER_BYTES, MAX_BODY_BYTES)
    }

    /// A framer with custom caps on header section and body size.
    pub fn with_limits(max_header: usize, max_body: usize) -> Self {
        StreamFramer {
            buf: Vec::new(),
            scanned: 0,
            pending: None,
            max_header,
            max_body,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, `None` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, Error> {
        if self.pending.is_none() {
            self.skip_keepalives();
            let Some(head_len) = self.find_head_end()? else {
                return Ok(None);
            };
            let body_len = content_length(self.buf.get(..head_len).unwrap_or_default())?;
            if body_len > self.max_body {
                return Err(Error::TooLarge);
            }
            self.pending = Some(head_len + body_len);
        }
        match self.pending {
            Some(total) if self.buf.len() >= total => {
                let rest = self.buf.split_off(total);
                let msg = std::mem::replace(&mut self.buf, rest);
                self.pending = None;
                self.scanned = 0;
                Ok(Some(msg))
            }
            _ => Ok(None),
        }
    }

    fn skip_keepalives(&mut self) {
        let n = self
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if n > 0 {
            self.buf.drain(..n);
            self.scanned = 0;
        }
    }

    /// Length of the header section including the blank line, once it is all here.
    fn find_head_end(&mut self) -> Result<Option<usize>, Error> {
        let from = self.scanned.saturating_sub(3);
        let window = self.buf.get(from..).unwrap_or_default();
        let crlf = window
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| from + i + 4);
        let lf = window
            .windows(2)
            .position(|w| w == b"\n\n")
            .map(|i| from + i + 2);
        let end = match (crlf, lf) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match end {
            Some(end) if end > self.max_header => Err(Error::TooLarge),
            Some(end) => Ok(Some(end)),
            None if self.buf.len() > self.max_header => Err(Error::TooLarge),
            None => {
                self.scanned = self.buf.len();
                Ok(None)
            }
        }
    }
}

/// Content-Length (or compact `l`) from a header section; required on streams.
fn content_length(head: &[u8]) -> Result<usize, Error> {
    let text = std::str::from_utf8(head)
        .map_err(|_| Error::Parse("header section is not utf-8".into()))?;
    let mut found: Option<usize> = None;
    for line in text.split('\n').skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
            let n = value
                .trim()
                .parse::<usize>()
                .map_err(|_| Error::InvalidHeader("Content-Length"))?;
            if found.is_some_and(|f| f != n) {
                return Err(Error::InvalidHeader("Content-Length"));
            }
            found = Some(n);
        }
    }
    found.ok_or(Error::MissingContentLength)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::message::{SipMessage, parse};

    const OPTIONS: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    const INFO: &[u8] = b"INFO sip:a@b SIP/2.0\r\nCSeq: 2 INFO\r\nContent-Type: application/dtmf-relay\r\nl: 24\r\n\r\nSignal=5\r\nDuration=160\r\n";

    fn drain(f: &mut StreamFramer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(m) = f.next_message().unwrap() {
            out.push(m);
        }
        out
    }

    #[test]
    fn two_messages_in_one_read_and_keepalives_between() {
        let mut f = StreamFramer::new();
        let mut bytes = b"\r\n\r\n".to_vec();
        bytes.extend_from_slice(OPTIONS);
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(INFO);
        bytes.extend_from_slice(b"\r\n\r\n");
        f.push(&bytes);
        let msgs = drain(&mut f);
        assert_eq!(msgs, vec![OPTIONS.to_vec(), INFO.to_vec()]);
        match parse(&msgs[1]).unwrap() {
            SipMessage::Request(r) => assert_eq!(r.body(), b"Signal=5\r\nDuration=160\r\n"),
            SipMessage::Response(_) => panic!("request expected"),
        }
        assert_eq!(f.next_message().unwrap(), None);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn byte_by_byte_delivery() {
        let mut f = StreamFramer::new();
        let mut all = OPTIONS.to_vec();
        all.extend_from_slice(INFO);
        let mut got = Vec::new();
        for b in &all {
            f.push(std::slice::from_ref(b));
            got.extend(drain(&mut f));
        }
        assert_eq!(got, vec![OPTIONS.to_vec(), INFO.to_vec()]);
    }

    #[test]
    fn body_split_across_reads_waits_for_all_of_it() {
        let mut f = StreamFramer::new();
        let (a, b) = INFO.split_at(INFO.len() - 5);
        f.push(a);
        assert_eq!(f.next_message().unwrap(), None);
        f.push(b);
        assert_eq!(f.next_message().unwrap().as_deref(), Some(INFO));
    }

    #[test]
    fn missing_content_length_is_an_error() {
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n");
        assert!(matches!(f.next_message(), Err(Error::MissingContentLength)));
    }

    #[test]
    fn bad_or_conflicting_content_length_is_an_error() {
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: abc\r\n\r\n");
        assert!(matches!(f.next_message(), Err(Error::InvalidHeader(_))));
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab");
        assert!(matches!(f.next_message(), Err(Error::InvalidHeader(_))));
    }

    #[test]
    fn caps_on_header_and_body() {
        let mut f = StreamFramer::with_limits(100, 10);
        f.push(&[b'a'; 101]);
        assert!(matches!(f.next_message(), Err(Error::TooLarge)));
        let mut f = StreamFramer::with_limits(100, 10);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 11\r\n\r\n");
        assert!(matches!(f.next_message(), Err(Error::TooLarge)));
        let mut f = StreamFramer::new();
        for _ in 0..(MAX_HEADER_BYTES / 1000 + 2) {
            f.push(&[b'x'; 1000]);
        }
        assert!(matches!(f.next_message(), Err(Error::TooLarge)));
    }

    #[test]
    fn garbage_never_panics() {
        let mut f = StreamFramer::new();
        f.push(b"\n\n\r\r\n:::\r\n\r\n\xff\xfe\r\n\r\n");
        for _ in 0..4 {
            let _ = f.next_message();
        }
    }
}
