//! Building requests and responses: RequestBuilder, response_to, cancel_for.

use std::net::SocketAddr;

use super::{Headers, Method, Request, Response, header};
use crate::transport::Transport;

/// Builds an outgoing request header by header, in call order (Vias go on top).
#[derive(Clone, Debug)]
pub struct RequestBuilder {
    method: Method,
    uri: String,
    headers: Headers,
    body: Vec<u8>,
}

impl RequestBuilder {
    /// A request with this method and Request-URI (whitespace removed from the URI).
    pub fn new(method: Method, uri: &str) -> Self {
        let uri: String = uri
            .chars()
            .filter(|c| !c.is_whitespace() && !c.is_control())
            .collect();
        RequestBuilder {
            method,
            uri,
            headers: Headers::default(),
            body: Vec::new(),
        }
    }

    /// Adds a Via below any earlier ones: `SIP/2.0/UDP sent_by;rport;branch=...`.
    pub fn via(mut self, transport: Transport, sent_by: SocketAddr, branch: &str) -> Self {
        let value = format!("SIP/2.0/{transport} {sent_by};rport;branch={branch}");
        let at = self
            .headers
            .0
            .iter()
            .take_while(|(n, _)| n == "Via")
            .count();
        self.headers.push("Via", &value);
        if let Some(h) = self.headers.0.pop() {
            self.headers.0.insert(at, h);
        }
        self
    }

    /// The From value, e.g. `<sip:switchboard@10.0.0.1>;tag=abc`.
    pub fn from(mut self, value: &str) -> Self {
        self.headers.push("From", value);
        self
    }

    /// The To value.
    pub fn to(mut self, value: &str) -> Self {
        self.headers.push("To", value);
        self
    }

    /// The Call-ID.
    pub fn call_id(mut self, value: &str) -> Self {
        self.headers.push("Call-ID", value);
        self
    }

    /// CSeq with this number and the request's method.
    pub fn cseq(mut self, n: u32) -> Self {
        let value = format!("{n} {}", self.method);
        self.headers.push("CSeq", &value);
        self
    }

    /// Contact `<uri>`.
    pub fn contact(mut self, uri: &str) -> Self {
        self.headers.push("Contact", &format!("<{uri}>"));
        self
    }

    /// Max-Forwards (70 per RFC 3261 §8.1.1.6).
    pub fn max_forwards(mut self, n: u32) -> Self {
        self.headers.push("Max-Forwards", &n.to_string());
        self
    }

    /// Any other header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(name, value);
        self
    }

    /// A body with its Content-Type (Content-Length is always computed on output).
    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers.remove("Content-Type");
        self.headers.push("Content-Type", content_type);
        self.body = body;
        self
    }

    /// The request.
    pub fn build(self) -> Request {
        Request {
            method: self.method,
            uri: self.uri,
            headers: self.headers,
            body: self.body,
        }
    }
}

/// A response to `req` (RFC 3261 §8.2.6.2): copies all Vias, From, To (adding `to_tag`
/// when To has none), Call-ID and CSeq; Record-Route too for 101–299 to an INVITE (§12.1.1).
pub fn response_to(req: &Request, status: u16, reason: &str, to_tag: Option<&str>) -> Response {
    let mut headers = Headers::default();
    for v in req.headers.lines("Via") {
        headers.push("Via", v);
    }
    for v in req.headers.lines("From") {
        headers.push("From", v);
    }
    if let Some(to) = req.headers.first("To") {
        let has_tag =
            header::name_addr(to).is_some_and(|n| header::param(n.params, "tag").is_some());
        match to_tag {
            Some(tag) if !has_tag => headers.push("To", &format!("{to};tag={tag}")),
            _ => headers.push("To", to),
        }
    }
    for name in ["Call-ID", "CSeq"] {
        for v in req.headers.lines(name) {
            headers.push(name, v);
        }
    }
    if req.method == Method::Invite && (101..=299).contains(&status) {
        for v in req.headers.lines("Record-Route") {
            headers.push("Record-Route", v);
        }
    }
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let status = status.clamp(100, 699);
    Response {
        status,
        reason,
        headers,
        body: Vec::new(),
    }
}

/// The CANCEL for an INVITE we sent (RFC 3261 §9.1): same Request-URI, Call-ID, From,
/// To, top Via and CSeq number; Route copied; no body.
pub fn cancel_for(invite: &Request) -> Request {
    same_branch_request(invite, Method::Cancel, None)
}

/// The ACK a client INVITE transaction sends for a 300–699 (RFC 3261 §17.1.1.3):
/// like CANCEL, but To comes from the response (with its tag).
pub(crate) fn ack_for_non_2xx(invite: &Request, response: &Response) -> Request {
    same_branch_request(invite, Method::Ack, response.headers.first("To"))
}

fn same_branch_request(invite: &Request, method: Method, to: Option<&str>) -> Request {
    let mut headers = Headers::default();
    if let Some(via) = invite.headers.first("Via") {
        headers.push("Via", via);
    }
    headers.push("Max-Forwards", "70");
    for v in invite.headers.lines("From") {
        headers.push("From", v);
    }
    match to {
        Some(to) => headers.push("To", to),
        None => {
            for v in invite.headers.lines("To") {
                headers.push("To", v);
            }
        }
    }
    for v in invite.headers.lines("Call-ID") {
        headers.push("Call-ID", v);
    }
    let n = invite.headers.cseq().map(|(n, _)| n).unwrap_or(0);
    headers.push("CSeq", &format!("{n} {method}"));
    for v in invite.headers.lines("Route") {
        headers.push("Route", v);
    }
    Request {
        method,
        uri: invite.uri.clone(),
        headers,
        body: Vec::new(),
    }
}
