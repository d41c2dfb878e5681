//! Where requests to a registered phone go: its Contact, or where its REGISTER came from.
//!
//! A phone says where it wants requests in its Contact. That is right for a phone that
//! registers from another port than it listens on, for a third-party registration, and for
//! every phone on the clinic's own network — and wrong for a phone behind a home router,
//! whose Contact names a private address we cannot reach. Such a phone gives itself away
//! (RFC 3581): the address in its top Via is not the one its packet came from. The
//! [`NatPolicy`] decides, as Kamailio's nathelper does with `nat_uac_test` and `fix_nated_contact`;
//! a phone found behind NAT is also kept reachable with keep-alives (see the registrar).
//!
//! Over TCP requests always go down the phone's own connection (RFC 3261 §18.2.2).

use std::net::{IpAddr, SocketAddr};

use crate::message::{Request, via};
use crate::transport::{Peer, Transport};

/// How to reach a registered phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NatPolicy {
    /// The Contact, unless the phone is behind NAT (its Via is not where it sent from);
    /// then the REGISTER's source.
    #[default]
    Auto,
    /// Always the Contact (a proxy in front that fixes Contacts, a LAN without NAT).
    Contact,
    /// Always the REGISTER's source (every phone is behind some NAT).
    Source,
}

impl NatPolicy {
    /// The policy named `auto`, `contact` or `source` (as in the config).
    pub fn from_name(name: &str) -> Option<NatPolicy> {
        match name {
            "auto" => Some(NatPolicy::Auto),
            "contact" => Some(NatPolicy::Contact),
            "source" => Some(NatPolicy::Source),
            _ => None,
        }
    }
}

/// Whether the sender of `request`, received from `source`, is behind NAT: its top Via
/// names another address or port than the packet came from (a host name counts as
/// another address: we cannot tell). A request without a readable Via counts as behind NAT.
pub fn behind_nat(request: &Request, source: SocketAddr) -> bool {
    let vias = request.header_values("Via");
    let Some(sent_by) = vias.first().and_then(|v| via(v)).map(|v| v.sent_by) else {
        return true;
    };
    socket_addr(&sent_by, 5060) != Some(source)
}

/// Where to send requests for a phone registered with `contact` from `source`.
pub fn target(policy: NatPolicy, contact: &str, source: Peer, behind_nat: bool) -> Peer {
    if source.transport != Transport::Udp {
        return source;
    }
    let use_contact = match policy {
        NatPolicy::Source => false,
        NatPolicy::Contact => true,
        NatPolicy::Auto => !behind_nat,
    };
    if !use_contact {
        return source;
    }
    match uri_addr(contact) {
        Some(addr) if uri_transport(contact) == Transport::Udp => Peer::udp(addr),
        // A host name (no resolver here) or another transport: the source it came from.
        _ => source,
    }
}

/// Where to send requests routed through `proxy` (a `Path` or `Route` value such as
/// `<sip:10.0.0.5:5060;lr>`) for a REGISTER received from `source`: the proxy's address
/// when it is an IP literal on UDP; else the connection or address the REGISTER came
/// from (a TCP connection is reused; there is no resolver here).
pub fn route_target(proxy: &str, source: Peer) -> Peer {
    if source.transport != Transport::Udp {
        return source;
    }
    let Some(uri) = crate::message::name_addr(proxy).map(|n| n.uri) else {
        return source;
    };
    match uri_addr(uri) {
        Some(addr) if uri_transport(uri) == Transport::Udp => Peer::udp(addr),
        _ => source,
    }
}

/// The socket address of a `sip:` URI whose host is an IP literal (port 5060 if none).
pub fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let uri = uri.trim();
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("SIP:"))?;
    let rest = rest.split(['?', ';']).next()?;
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    socket_addr(hostport, 5060)
}

/// The transport a URI asks for (`;transport=`), UDP if none.
fn uri_transport(uri: &str) -> Transport {
    let params = uri.split_once(';').map_or("", |(_, p)| p);
    let asked = params.split(';').find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("transport")
            .then(|| value.trim().to_ascii_lowercase())
    });
    match asked.as_deref() {
        Some("tcp") => Transport::Tcp,
        _ => Transport::Udp,
    }
}

/// `host[:port]` with an IP literal host (IPv6 in brackets) as a socket address.
fn socket_addr(hostport: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(addr) = hostport.parse::<SocketAddr>() {
        return Some(addr);
    }
    let host = hostport
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(hostport);
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

#[cfg(test)]
mod tests;
