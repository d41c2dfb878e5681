//! SIP messages: parse bytes, read headers, build requests and responses.
//!
//! Our own types; callers never see rsip. The wire text is parsed by `parse.rs`
//! (a small tolerant tokenizer) because rsip 0.4 rejects or mangles messages that
//! real phones send; the `rsip_defects` tests record each case with evidence.
//! `ezk-sip-types` 0.6.5 was evaluated as a maintained alternative and falls short
//! too; the `ezk_eval` tests record what it handles and where it fails.
//! Header values are kept as raw text (folded lines joined, compact names
//! expanded) and the pieces we need are read out of that text on demand.

mod build;
#[cfg(test)]
mod ezk_eval;
mod header;
mod parse;
#[cfg(test)]
mod rsip_defects;
#[cfg(test)]
mod tests;

use std::fmt;

use crate::error::Error;

pub(crate) use build::ack_for_non_2xx;
pub use build::{RequestBuilder, cancel_for, response_to};
pub(crate) use header::{name_addr, param, via};
pub use parse::{MAX_BODY_BYTES, MAX_HEADER_BYTES, parse};

/// A SIP request method; extension methods are kept verbatim in `Other`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// REGISTER
    Register,
    /// INFO
    Info,
    /// Any other method token (case-sensitive, e.g. "NOTIFY").
    Other(String),
}

impl Method {
    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Other(s) => s,
        }
    }

    /// The method for a token; methods are case-sensitive (RFC 3261 §7.1).
    pub fn from_token(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            other => Method::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed request or response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SipMessage {
    /// A request (INVITE, ACK, BYE, ...).
    Request(Request),
    /// A response (1xx–6xx).
    Response(Response),
}

impl SipMessage {
    /// The wire form, with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            SipMessage::Request(r) => r.to_bytes(),
            SipMessage::Response(r) => r.to_bytes(),
        }
    }
}

impl From<Request> for SipMessage {
    fn from(r: Request) -> Self {
        SipMessage::Request(r)
    }
}

impl From<Response> for SipMessage {
    fn from(r: Response) -> Self {
        SipMessage::Response(r)
    }
}

/// Ordered header lines: (canonical name, raw value). Content-Length is not stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Headers(Vec<(String, String)>);

impl Headers {
    /// Appends a header; CR/LF in the value become spaces, a bad name is made a token.
    pub(crate) fn push(&mut self, name: &str, value: &str) {
        let name = header::canonical_name(name);
        if name == "Content-Length" {
            return;
        }
        let name: String = name
            .chars()
            .map(|c| {
                if header::is_token(c.encode_utf8(&mut [0; 4])) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let name = if name.is_empty() {
            "X".to_string()
        } else {
            name
        };
        let value: String = value
            .trim()
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect();
        self.0.push((name, value));
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !header::same_name(n, name));
    }

    /// Header lines (not split at commas) with this name.
    pub(crate) fn lines(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| header::same_name(n, name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Values with this name, list headers split at top-level commas.
    pub(crate) fn values(&self, name: &str) -> Vec<&str> {
        let list = header::is_list(&header::canonical_name(name));
        let mut out = Vec::new();
        for line in self.lines(name) {
            if list {
                out.extend(header::split_list(line));
            } else {
                out.push(line);
            }
        }
        out
    }

    pub(crate) fn first(&self, name: &str) -> Option<&str> {
        self.values(name).into_iter().next()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(String, String)> {
        self.0.iter()
    }

    fn required(&self, name: &'static str) -> Result<&str, Error> {
        self.first(name)
            .filter(|v| !v.is_empty())
            .ok_or(Error::MissingHeader(name))
    }

    fn call_id(&self) -> Result<String, Error> {
        Ok(self.required("Call-ID")?.to_string())
    }

    fn cseq(&self) -> Result<(u32, Method), Error> {
        let v = self.required("CSeq")?;
        let mut it = v.split_ascii_whitespace();
        let n = it.next().and_then(|n| n.parse::<u32>().ok());
        let m = it.next().filter(|m| header::is_token(m));
        match (n, m, it.next()) {
            (Some(n), Some(m), None) => Ok((n, Method::from_token(m))),
            _ => Err(Error::InvalidHeader("CSeq")),
        }
    }

    /// The top Via: (transport, sent-by, branch).
    pub(crate) fn top_via(&self) -> Result<(String, String, String), Error> {
        let v = self.required("Via")?;
        let via = header::via(v).ok_or(Error::InvalidHeader("Via"))?;
        let branch = header::param(via.params, "branch")
            .filter(|b| !b.is_empty())
            .ok_or(Error::InvalidHeader("Via"))?;
        Ok((via.transport.to_ascii_uppercase(), via.sent_by, branch))
    }

    fn addr_tag(&self, name: &'static str) -> Option<String> {
        let n = header::name_addr(self.first(name)?)?;
        header::param(n.params, "tag").filter(|t| !t.is_empty())
    }

    fn addr_user(&self, name: &'static str) -> Option<String> {
        header::uri_user(header::name_addr(self.first(name)?)?.uri)
    }

    fn contact_uri(&self) -> Option<String> {
        let c = self.first("Contact")?;
        if c.trim() == "*" {
            return None;
        }
        Some(header::name_addr(c)?.uri.to_string())
    }
}

/// Accessors shared by requests and responses (header names are case-insensitive
/// and accept compact forms).
macro_rules! common_accessors {
    ($t:ty) => {
        impl $t {
            /// The Call-ID.
            pub fn call_id(&self) -> Result<String, Error> {
                self.headers.call_id()
            }

            /// CSeq number and method.
            pub fn cseq(&self) -> Result<(u32, Method), Error> {
                self.headers.cseq()
            }

            /// The branch parameter of the top Via.
            pub fn top_via_branch(&self) -> Result<String, Error> {
                self.headers.top_via().map(|(_, _, b)| b)
            }

            /// The tag parameter of From.
            pub fn from_tag(&self) -> Option<String> {
                self.headers.addr_tag("From")
            }

            /// The tag parameter of To.
            pub fn to_tag(&self) -> Option<String> {
                self.headers.addr_tag("To")
            }

            /// The user part of the From URI.
            pub fn from_user(&self) -> Option<String> {
                self.headers.addr_user("From")
            }

            /// The user part of the To URI.
            pub fn to_user(&self) -> Option<String> {
                self.headers.addr_user("To")
            }

            /// The raw From value.
            pub fn from_header(&self) -> Result<String, Error> {
                self.headers.required("From").map(str::to_string)
            }

            /// The raw To value.
            pub fn to_header(&self) -> Result<String, Error> {
                self.headers.required("To").map(str::to_string)
            }

            /// The URI inside the first Contact (no header params); None for `*`.
            pub fn contact_uri(&self) -> Option<String> {
                self.headers.contact_uri()
            }

            /// The first value of a header (list headers split at commas).
            pub fn header(&self, name: &str) -> Option<String> {
                if header::same_name("Content-Length", name) {
                    return Some(self.body.len().to_string());
                }
                self.headers.first(name).map(str::to_string)
            }

            /// Whether the option-tag header `name` (`Supported`, `Require`, …) lists
            /// `tag`, in any letter case.
            pub fn lists_option(&self, name: &str, tag: &str) -> bool {
                self.headers
                    .values(name)
                    .into_iter()
                    .flat_map(|v| v.split(','))
                    .any(|t| t.trim().eq_ignore_ascii_case(tag))
            }

            /// Every value of a header, in order (list headers split at commas).
            pub fn header_values(&self, name: &str) -> Vec<String> {
                if header::same_name("Content-Length", name) {
                    return vec![self.body.len().to_string()];
                }
                self.headers
                    .values(name)
                    .into_iter()
                    .map(str::to_string)
                    .collect()
            }

            /// The body bytes.
            pub fn body(&self) -> &[u8] {
                &self.body
            }

            /// The Content-Type value.
            pub fn content_type(&self) -> Option<String> {
                self.headers.first("Content-Type").map(str::to_string)
            }

            /// Adds a header at the end (CR/LF in the value become spaces).
            pub fn with_header(mut self, name: &str, value: &str) -> Self {
                self.headers.push(name, value);
                self
            }

            /// Removes every header with this name.
            pub fn without_header(mut self, name: &str) -> Self {
                self.headers.remove(name);
                self
            }

            /// Replaces the body and its Content-Type (empty content type removes it).
            pub fn with_body(mut self, content_type: &str, body: Vec<u8>) -> Self {
                self.headers.remove("Content-Type");
                if !content_type.is_empty() {
                    self.headers.push("Content-Type", content_type);
                }
                self.body = body;
                self
            }
        }
    };
}

/// A SIP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    method: Method,
    uri: String,
    pub(crate) headers: Headers,
    body: Vec<u8>,
}

/// A SIP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    status: u16,
    reason: String,
    pub(crate) headers: Headers,
    body: Vec<u8>,
}

common_accessors!(Request);
common_accessors!(Response);

impl Request {
    /// The method.
    pub fn method(&self) -> Method {
        self.method.clone()
    }

    /// The Request-URI as written.
    pub fn uri(&self) -> String {
        self.uri.clone()
    }

    /// The user part of the Request-URI.
    pub fn uri_user(&self) -> Option<String> {
        header::uri_user(&self.uri)
    }

    /// A REFER's target (RFC 3515 `Refer-To`): the user part of its URI, and whether
    /// the URI carries a `Replaces` header (an attended transfer, RFC 3891).
    pub fn refer_to(&self) -> Option<(String, bool)> {
        let n = header::name_addr(self.headers.first("Refer-To")?)?;
        let user = header::uri_user(n.uri)?;
        let replaces = n.uri.split_once('?').is_some_and(|(_, headers)| {
            headers.split('&').any(|h| {
                h.split('=')
                    .next()
                    .is_some_and(|k| k.trim().eq_ignore_ascii_case("replaces"))
            })
        });
        Some((user, replaces))
    }

    /// The Call-ID of the dialog a `Refer-To` with `?Replaces=` names (RFC 3891), decoded.
    pub fn refer_replaces(&self) -> Option<String> {
        let n = header::name_addr(self.headers.first("Refer-To")?)?;
        let (_, headers) = n.uri.split_once('?')?;
        let value = headers.split('&').find_map(|h| {
            let (k, v) = h.split_once('=')?;
            k.trim().eq_ignore_ascii_case("replaces").then_some(v)
        })?;
        let decoded = percent_decode(value)?;
        let call_id = decoded.split(';').next()?.trim();
        (!call_id.is_empty()).then(|| call_id.to_owned())
    }

    /// The wire form, with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("{} {} SIP/2.0", self.method, self.uri);
        parse::serialize(&start, &self.headers, &self.body)
    }
}

impl Response {
    /// The status code (100–699).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase as received or given.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The wire form, with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("SIP/2.0 {} {}", self.status, self.reason);
        parse::serialize(&start, &self.headers, &self.body)
    }
}

/// `%XX` escapes decoded (URI headers, RFC 3261 §19.1.1); `None` for a bad escape or UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}
