//! SDP offer/answer (RFC 3264) for one audio stream: PCMU, PCMA and telephone-event/8000.
//!
//! Parsing is done by hand and is lenient: unknown lines, attributes, codecs and
//! media kinds are skipped, never rejected, and nothing from the network can panic.
//! Only the first plain-RTP (`RTP/AVP`, `RTP/AVPF`) audio `m=` line is used; every
//! other `m=` line is kept so the answer can reject it in place (port 0), as RFC 3264
//! §6 requires the answer to have as many `m=` lines as the offer.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::Error;

/// An audio codec we can send and receive (8000 Hz, mono).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name used in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// Media direction of an SDP stream, as written by the side that wrote the SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Sends and receives (the default).
    #[default]
    SendRecv,
    /// Only sends (e.g. the peer puts us on hold).
    SendOnly,
    /// Only receives.
    RecvOnly,
    /// Neither sends nor receives (or the stream has port 0).
    Inactive,
}

impl Direction {
    /// The direction the other side answers with (sendonly <-> recvonly).
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// Whether the writer of the SDP sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the writer of the SDP receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attribute(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// An `m=` line of an offer that we do not use; the answer rejects it with port 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherStream {
    /// Position among all `m=` lines (0-based).
    pub index: usize,
    /// Media kind, e.g. "video".
    pub media: String,
    /// Transport protocol, e.g. "RTP/AVP".
    pub proto: String,
    /// The format list as offered (at least one is needed in the answer).
    pub formats: String,
}

/// What the remote side's SDP says about its audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// Where the remote side receives RTP.
    pub addr: IpAddr,
    /// Remote RTP port; 0 means the stream is disabled.
    pub port: u16,
    /// Supported codecs in the writer's order of preference.
    pub codecs: Vec<Codec>,
    /// Payload type of telephone-event/8000, if present.
    pub telephone_event: Option<u8>,
    /// Direction as written (c=0.0.0.0 hold and port 0 already folded in).
    pub direction: Direction,
    /// The packet time the writer asked for (`a=ptime`, ms), if it did.
    pub ptime: Option<u16>,
    /// Transport of the audio line ("RTP/AVP" or "RTP/AVPF").
    pub proto: String,
    /// Position of the audio line among all `m=` lines.
    pub audio_index: usize,
    /// The other `m=` lines (video, second audio, ...), rejected in an answer.
    pub other_streams: Vec<OtherStream>,
}

/// The outcome of a negotiation: what to send, where, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec both sides use.
    pub codec: Codec,
    /// Where to send RTP (port 0 when the stream is disabled).
    pub remote: SocketAddr,
    /// Payload type for RFC 4733 events, if both sides do them.
    pub telephone_event: Option<u8>,
    /// Our direction: whether we may send and should expect to receive.
    pub direction: Direction,
    /// The packet time the phone asked for, if it did (we relay any up to 60 ms).
    pub ptime: Option<u16>,
}

/// Parses an SDP body and returns its first plain-RTP audio stream.
///
/// `Error::NoCommonCodec` when there is no such stream (e.g. SRTP-only WebRTC offers),
/// `Error::Sdp` when the audio stream's port or connection address cannot be read.
pub fn parse(body: &[u8]) -> Result<MediaDescription, Error> {
    let text = String::from_utf8_lossy(body);
    let mut session_addr: Option<Result<IpAddr, String>> = None;
    let mut session_dir: Option<Direction> = None;
    let mut m_index: Option<usize> = None; // index of the m= line we are in
    let mut audio: Option<AudioLines> = None;
    let mut others = Vec::new();

    for raw in text.lines() {
        let line = raw.trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key {
            "m" => {
                let index = m_index.map_or(0, |i| i + 1);
                m_index = Some(index);
                let mut fields = value.split_whitespace();
                let media = fields.next().unwrap_or_default();
                let port = fields.next().unwrap_or_default();
                let proto = fields.next().unwrap_or_default();
                let formats: Vec<&str> = fields.collect();
                let usable = media.eq_ignore_ascii_case("audio")
                    && (proto.eq_ignore_ascii_case("RTP/AVP")
                        || proto.eq_ignore_ascii_case("RTP/AVPF"));
                if usable && audio.is_none() {
                    audio = Some(AudioLines {
                        index,
                        port: port.to_owned(),
                        proto: proto.to_owned(),
                        formats: formats.iter().map(|s| (*s).to_owned()).collect(),
                        addr: None,
                        direction: None,
                        ptime: None,
                        rtpmaps: Vec::new(),
                        closed: false,
                    });
                } else {
                    if let Some(a) = audio.as_mut() {
                        a.closed = true;
                    }
                    others.push(OtherStream {
                        index,
                        media: media.to_owned(),
                        proto: proto.to_owned(),
                        formats: if formats.is_empty() {
                            "0".to_owned()
                        } else {
                            formats.join(" ")
                        },
                    });
                }
            }
            "c" if m_index.is_none() => session_addr = Some(connection_addr(value)),
            "a" if m_index.is_none() => {
                if let Some(d) = Direction::from_attribute(value) {
                    session_dir = Some(d);
                }
            }
            "c" | "a" => {
                let Some(a) = audio.as_mut().filter(|a| !a.closed) else {
                    continue;
                };
                if key == "c" {
                    a.addr = Some(connection_addr(value));
                } else if let Some(d) = Direction::from_attribute(value) {
                    a.direction = Some(d);
                } else if let Some(entry) = value.strip_prefix("rtpmap:").and_then(rtpmap) {
                    a.rtpmaps.push(entry);
                } else if let Some(ms) = value.strip_prefix("ptime:") {
                    a.ptime = ms.trim().parse().ok().filter(|ms| (1..=1000).contains(ms));
                }
            }
            _ => {}
        }
    }

    let audio = audio.ok_or(Error::NoCommonCodec)?;
    let port: u16 = audio
        .port
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|_| Error::Sdp(format!("bad audio port {:?}", audio.port)))?;
    let addr = match audio.addr.or(session_addr) {
        Some(Ok(addr)) => addr,
        Some(Err(e)) if port != 0 => return Err(Error::Sdp(e)),
        None if port != 0 => return Err(Error::Sdp("no connection address".into())),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };

    let mut codecs = Vec::new();
    let mut telephone_event = None;
    for fmt in &audio.formats {
        let Ok(pt) = fmt.parse::<u8>() else { continue };
        if pt > 127 {
            continue;
        }
        let found = match audio.rtpmaps.iter().find(|r| r.pt == pt) {
            Some(r) => r.kind,
            None => match pt {
                0 => Some(Kind::Codec(Codec::Pcmu)),
                8 => Some(Kind::Codec(Codec::Pcma)),
                _ => None,
            },
        };
        match found {
            Some(Kind::Codec(c)) if !codecs.contains(&c) => codecs.push(c),
            Some(Kind::TelephoneEvent) if telephone_event.is_none() => telephone_event = Some(pt),
            _ => {}
        }
    }

    let mut direction = audio.direction.or(session_dir).unwrap_or_default();
    if addr.is_unspecified() {
        // RFC 2543 style hold: c=0.0.0.0 means "do not send to me".
        direction = match direction {
            Direction::SendRecv => Direction::SendOnly,
            Direction::RecvOnly => Direction::Inactive,
            d => d,
        };
    }
    if port == 0 {
        direction = Direction::Inactive;
    }

    Ok(MediaDescription {
        addr,
        port,
        codecs,
        telephone_event,
        direction,
        ptime: audio.ptime,
        proto: audio.proto,
        audio_index: audio.index,
        other_streams: others,
    })
}

/// Answers an offer: the offerer's most preferred codec among `ours`, plus telephone-event
/// if offered, and the offer's ptime echoed if it named one (we take any packet size).
///
/// Returns the SDP body and the negotiated parameters (our direction), or
/// `Error::NoCommonCodec` (to be sent as 488) when no offered codec is in `ours`.
/// An offer with port 0 is answered with port 0 and an inactive stream.
pub fn answer(
    offer: &MediaDescription,
    ours: &[Codec],
    local_rtp: SocketAddr,
    session_id: u64,
) -> Result<(String, Negotiated), Error> {
    answer_as(offer, ours, local_rtp, (session_id, session_id))
}

/// Answers a new offer inside a session whose SDP we last sent is `previous`
/// (a re-INVITE or UPDATE: hold, a new address or codec): the same session id,
/// port and address, the version one up (RFC 3264 §8). `Error::Sdp` if
/// `previous` is not one of ours.
pub fn reanswer(
    offer: &MediaDescription,
    ours: &[Codec],
    previous: &str,
) -> Result<(String, Negotiated), Error> {
    let (id, version) = origin(previous).ok_or_else(|| Error::Sdp("no o= line".into()))?;
    let was = parse(previous.as_bytes())?;
    let local = SocketAddr::new(was.addr, was.port);
    answer_as(offer, ours, local, (id, version.wrapping_add(1)))
}

/// Session id and version of an SDP's `o=` line.
fn origin(sdp: &str) -> Option<(u64, u64)> {
    let line = sdp.lines().find_map(|l| l.trim().strip_prefix("o="))?;
    let mut fields = line.split_whitespace().skip(1);
    let id = fields.next()?.parse().ok()?;
    let version = fields.next()?.parse().ok()?;
    Some((id, version))
}

fn answer_as(
    offer: &MediaDescription,
    ours: &[Codec],
    local_rtp: SocketAddr,
    (session_id, version): (u64, u64),
) -> Result<(String, Negotiated), Error> {
    let codec = offer
        .codecs
        .iter()
        .copied()
        .find(|c| ours.contains(c))
        .ok_or(Error::NoCommonCodec)?;
    let direction = offer.direction.reversed();
    let port = if offer.port == 0 { 0 } else { local_rtp.port() };
    let proto = if offer.proto.eq_ignore_ascii_case("RTP/AVPF") {
        "RTP/AVPF"
    } else {
        "RTP/AVP"
    };

    let mut sdp = session_header(local_rtp.ip(), session_id, version);
    let mut audio_written = false;
    let total = offer.other_streams.len() + 1;
    for index in 0..total {
        if index == offer.audio_index && !audio_written {
            audio_written = true;
            let codecs = [codec];
            audio_section(
                &mut sdp,
                port,
                proto,
                &codecs,
                offer.telephone_event,
                offer.ptime,
                direction,
            );
        } else if let Some(other) = offer.other_streams.iter().find(|o| o.index == index) {
            let _ = write!(
                sdp,
                "m={} 0 {} {}\r\n",
                other.media, other.proto, other.formats
            );
        }
    }
    if !audio_written {
        // audio_index out of range (hand-built description): append the audio stream.
        audio_section(
            &mut sdp,
            port,
            proto,
            &[codec],
            offer.telephone_event,
            offer.ptime,
            direction,
        );
    }

    let negotiated = Negotiated {
        codec,
        remote: SocketAddr::new(offer.addr, offer.port),
        telephone_event: offer.telephone_event,
        direction,
        ptime: offer.ptime,
    };
    Ok((sdp, negotiated))
}

/// Builds our offer: `ours` in order of preference plus telephone-event, sendrecv,
/// and `ptime` if given (call control passes on the one the caller's phone asked for;
/// without one the phone packs what it likes, and we relay any up to 60 ms).
///
/// `telephone_event_pt` should be a dynamic payload type (96..=127, commonly 101);
/// `ours` should not be empty.
pub fn offer(
    ours: &[Codec],
    telephone_event_pt: u8,
    local_rtp: SocketAddr,
    session_id: u64,
    ptime: Option<u16>,
) -> String {
    let mut sdp = session_header(local_rtp.ip(), session_id, session_id);
    audio_section(
        &mut sdp,
        local_rtp.port(),
        "RTP/AVP",
        ours,
        Some(telephone_event_pt),
        ptime,
        Direction::SendRecv,
    );
    sdp
}

/// Checks the answer to our offer and returns what was agreed (our direction).
///
/// The answerer's first codec that is in `ours` wins; `Error::NoCommonCodec` if none is.
pub fn accept_answer(answer: &MediaDescription, ours: &[Codec]) -> Result<Negotiated, Error> {
    let codec = answer
        .codecs
        .iter()
        .copied()
        .find(|c| ours.contains(c))
        .ok_or(Error::NoCommonCodec)?;
    Ok(Negotiated {
        codec,
        remote: SocketAddr::new(answer.addr, answer.port),
        telephone_event: answer.telephone_event,
        direction: answer.direction.reversed(),
        ptime: answer.ptime,
    })
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Codec(Codec),
    TelephoneEvent,
}

struct RtpMap {
    pt: u8,
    kind: Option<Kind>,
}

struct AudioLines {
    index: usize,
    port: String,
    proto: String,
    formats: Vec<String>,
    addr: Option<Result<IpAddr, String>>,
    direction: Option<Direction>,
    ptime: Option<u16>,
    rtpmaps: Vec<RtpMap>,
    /// A later m= line has started: further c=/a= lines are not ours.
    closed: bool,
}

/// `<pt> <encoding>/<clock>[/<channels>]` -> what we make of it.
fn rtpmap(value: &str) -> Option<RtpMap> {
    let (pt, rest) = value.trim().split_once(char::is_whitespace)?;
    let pt: u8 = pt.parse().ok()?;
    let mut parts = rest.trim().split('/');
    let name = parts.next()?.trim();
    let clock = parts.next().map(str::trim);
    let channels = parts.next().map(str::trim);
    let mono = channels.is_none_or(|c| c == "1");
    let kind = if clock != Some("8000") || !mono {
        None
    } else if name.eq_ignore_ascii_case("PCMU") {
        Some(Kind::Codec(Codec::Pcmu))
    } else if name.eq_ignore_ascii_case("PCMA") {
        Some(Kind::Codec(Codec::Pcma))
    } else if name.eq_ignore_ascii_case("telephone-event") {
        Some(Kind::TelephoneEvent)
    } else {
        None
    };
    Some(RtpMap { pt, kind })
}

/// `IN IP4 192.0.2.1[/ttl]` -> the address.
fn connection_addr(value: &str) -> Result<IpAddr, String> {
    let mut fields = value.split_whitespace();
    let _net = fields.next();
    let _addr_type = fields.next();
    let addr = fields
        .next()
        .ok_or_else(|| format!("bad c= line {value:?}"))?;
    let addr = addr.split('/').next().unwrap_or_default();
    addr.parse()
        .map_err(|_| format!("connection address {addr:?} is not an ip address"))
}

fn addr_type(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

fn session_header(ip: IpAddr, session_id: u64, version: u64) -> String {
    let t = addr_type(ip);
    let mut sdp = String::with_capacity(320);
    let _ = write!(
        sdp,
        "v=0\r\no=switchboard {session_id} {version} IN {t} {ip}\r\ns=switchboard\r\nc=IN {t} {ip}\r\nt=0 0\r\n"
    );
    sdp
}

fn audio_section(
    sdp: &mut String,
    port: u16,
    proto: &str,
    codecs: &[Codec],
    telephone_event: Option<u8>,
    ptime: Option<u16>,
    direction: Direction,
) {
    let _ = write!(sdp, "m=audio {port} {proto}");
    for c in codecs {
        let _ = write!(sdp, " {}", c.payload_type());
    }
    if let Some(te) = telephone_event {
        let _ = write!(sdp, " {te}");
    }
    sdp.push_str("\r\n");
    for c in codecs {
        let _ = write!(
            sdp,
            "a=rtpmap:{} {}/8000\r\n",
            c.payload_type(),
            c.encoding_name()
        );
    }
    if let Some(te) = telephone_event {
        let _ = write!(
            sdp,
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
        );
    }
    if let Some(ms) = ptime {
        let _ = write!(sdp, "a=ptime:{ms}\r\n");
    }
    if port != 0 {
        // RTCP to the RTP port itself (RFC 3605), where it is dropped quietly: port + 1
        // is another leg's RTP port, since the whole range is used.
        let _ = write!(sdp, "a=rtcp:{port}\r\n");
    }
    let _ = write!(sdp, "a={}\r\n", direction.attribute());
}

#[cfg(test)]
mod tests;
