//! Wire format: a tolerant tokenizer for one SIP message and the serializer.
//!
//! Accepted beyond the strict grammar, as robust implementations do (RFC 3261 §7.3.1, §7.5):
//! LF-only line ends, CRLFs before the start line, folded header lines, whitespace
//! before the header colon, compact header names. Rejected: non-UTF-8 or control
//! characters in the header section, a body shorter than Content-Length, anything
//! over the size caps.

use super::{Headers, Method, Request, Response, SipMessage, header};
use crate::error::Error;

/// Largest header section we accept (start line plus headers).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest body we accept.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Parses one whole SIP message (a UDP datagram or a frame cut by `StreamFramer`).
///
/// With Content-Length the body is exactly that many bytes (extra bytes are ignored,
/// fewer is an error); without it the body is the rest of the input.
pub fn parse(bytes: &[u8]) -> Result<SipMessage, Error> {
    let mut start = 0;
    while bytes[start..].starts_with(b"\r\n") || bytes[start..].starts_with(b"\n") {
        start += if bytes[start..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
    }
    let input = &bytes[start..];
    let (head_end, body_start) = find_head_end(input)?;
    let head = input.get(..head_end).ok_or_else(truncated)?;
    let head = std::str::from_utf8(head)
        .map_err(|_| Error::Parse("header section is not utf-8".into()))?;
    let head = head.strip_suffix('\r').unwrap_or(head);
    let rest = input.get(body_start..).unwrap_or_default();

    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().ok_or_else(truncated)?;
    check_text(start_line)?;
    let raw = unfold(lines)?;

    let mut headers = Headers::default();
    let mut content_length: Option<usize> = None;
    for (name, value) in &raw {
        if header::same_name("Content-Length", name) {
            let n = value
                .trim()
                .parse::<usize>()
                .map_err(|_| Error::InvalidHeader("Content-Length"))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(Error::InvalidHeader("Content-Length"));
            }
            content_length = Some(n);
        } else {
            headers.push(name, value);
        }
    }
    let body = match content_length {
        Some(n) if n > MAX_BODY_BYTES => return Err(Error::TooLarge),
        Some(n) => rest
            .get(..n)
            .ok_or_else(|| Error::Parse("body shorter than content-length".into()))?,
        None if rest.len() > MAX_BODY_BYTES => return Err(Error::TooLarge),
        None => rest,
    }
    .to_vec();

    if start_line.starts_with("SIP/") {
        let (status, reason) = status_line(start_line)?;
        Ok(SipMessage::Response(Response {
            status,
            reason,
            headers,
            body,
        }))
    } else {
        let (method, uri) = request_line(start_line)?;
        Ok(SipMessage::Request(Request {
            method,
            uri,
            headers,
            body,
        }))
    }
}

fn truncated() -> Error {
    Error::Parse("truncated message".into())
}

/// Offsets of the end of the header section and the start of the body.
fn find_head_end(input: &[u8]) -> Result<(usize, usize), Error> {
    let mut pos = 0;
    loop {
        let nl = match input
            .get(pos..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
        {
            Some(i) => pos + i,
            None if input.len() > MAX_HEADER_BYTES => return Err(Error::TooLarge),
            None => return Err(truncated()),
        };
        if nl > MAX_HEADER_BYTES {
            return Err(Error::TooLarge);
        }
        let line_len = nl - pos;
        let empty = line_len == 0 || (line_len == 1 && input.get(pos) == Some(&b'\r'));
        if empty && pos > 0 {
            // `pos - 1` is the '\n' ending the last header line; leave it out.
            return Ok((pos - 1, nl + 1));
        }
        if empty {
            return Err(Error::Parse("empty start line".into()));
        }
        pos = nl + 1;
    }
}

/// Rejects control characters (other than HTAB) so output cannot be split or smuggled.
fn check_text(line: &str) -> Result<(), Error> {
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Error::Parse("control character in header section".into()));
    }
    Ok(())
}

/// Header lines -> (name, value), continuation lines joined with one space.
fn unfold<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Vec<(&'a str, String)>, Error> {
    let mut out: Vec<(&'a str, String)> = Vec::new();
    for line in lines {
        check_text(line)?;
        if line.starts_with([' ', '\t']) {
            let (_, value) = out
                .last_mut()
                .ok_or_else(|| Error::Parse("continuation before any header".into()))?;
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| Error::Parse("header line without colon".into()))?;
        let name = name.trim_end_matches([' ', '\t']);
        if !header::is_token(name) {
            return Err(Error::Parse("bad header name".into()));
        }
        out.push((name, value.trim().to_string()));
    }
    Ok(out)
}

fn status_line(line: &str) -> Result<(u16, String), Error> {
    let bad = || Error::Parse("bad status line".into());
    let mut it = line.splitn(3, ' ');
    let version = it.next().ok_or_else(bad)?;
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(Error::Parse("unsupported sip version".into()));
    }
    let code = it.next().ok_or_else(bad)?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let status: u16 = code.parse().map_err(|_| bad())?;
    if !(100..=699).contains(&status) {
        return Err(bad());
    }
    Ok((status, it.next().unwrap_or_default().trim().to_string()))
}

fn request_line(line: &str) -> Result<(Method, String), Error> {
    let bad = || Error::Parse("bad request line".into());
    let mut it = line.split(' ');
    let (method, uri, version) = match (it.next(), it.next(), it.next(), it.next()) {
        (Some(m), Some(u), Some(v), None) => (m, u, v),
        _ => return Err(bad()),
    };
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(Error::Parse("unsupported sip version".into()));
    }
    if !header::is_token(method) {
        return Err(bad());
    }
    let scheme_ok = uri.split_once(':').is_some_and(|(s, rest)| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            && !rest.is_empty()
    });
    if !scheme_ok || uri.contains('\t') {
        return Err(bad());
    }
    Ok((Method::from_token(method), uri.to_string()))
}

/// Start line, headers, a Content-Length that matches the body, blank line, body.
pub(super) fn serialize(start: &str, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(start.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers.iter() {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}
