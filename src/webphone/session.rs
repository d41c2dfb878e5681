//! One browser phone's task: a WebRTC session with the page (str0m, sans-IO, one UDP
//! socket) on one side, the agent's SIP phone ([`AgentUa`]) and its RTP on the other,
//! G.711 frames and RFC 4733 events passed across unchanged (µ-law ↔ A-law converted
//! only when the two sides settled on different laws).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::Codec as Law;
use media::rtp::{RtpPacket, RtpSender};
use sip::sdp::{Codec, Negotiated};
use str0m::change::SdpOffer;
use str0m::media::{Frequency, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::ua::{AgentUa, UaEvent};
use super::{Command, Report, Site, WebphoneError};

/// How long a page may take to connect its media after the answer.
const CONNECT_WITHIN: Duration = Duration::from_secs(20);
/// How long the SIP side may take to unregister once the page is gone.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// The bridge between the two sides while a call is up.
#[derive(Debug)]
struct Bridge {
    /// Switchboard's agent-leg RTP address and what it settled on.
    sip: Negotiated,
    to_sip: RtpSender,
    /// The RTP time of the next frame to the browser.
    to_page_ts: u64,
    /// Our RTP time toward Switchboard minus the page's, at its last frame: an event's
    /// start (the page's time) is sent at the same place in our timeline.
    page_to_sip: u32,
}

pub(super) struct Session {
    rtc: Rtc,
    ua: AgentUa,
    webrtc: UdpSocket,
    webrtc_local: SocketAddr,
    sip: UdpSocket,
    rtp: UdpSocket,
    mid: Option<Mid>,
    /// When str0m wants [`Input::Timeout`] next (DTLS and ICE retransmits, RTCP, pacing).
    rtc_deadline: Option<Instant>,
    connected: bool,
    bridge: Option<Bridge>,
    reports: mpsc::Sender<Report>,
    seed: u64,
}

/// Accepts the page's offer; the session then runs on its own task.
pub(super) async fn open(
    site: Arc<Site>,
    agent: &str,
    password: &str,
    offer: &str,
    reports: mpsc::Sender<Report>,
) -> Result<(Session, String), WebphoneError> {
    let offer =
        SdpOffer::from_sdp_string(offer).map_err(|e| WebphoneError::Offer(e.to_string()))?;
    let webrtc = UdpSocket::bind(SocketAddr::new(site.media_ip, 0)).await?;
    let webrtc_local = webrtc.local_addr()?;
    let sip = UdpSocket::bind(SocketAddr::new(site.sip_server.ip(), 0)).await?;
    let rtp = UdpSocket::bind(SocketAddr::new(site.sip_server.ip(), 0)).await?;
    let now = Instant::now();
    let mut config = Rtc::builder()
        .set_ice_lite(true)
        .clear_codecs()
        .enable_pcmu(true, false)
        .enable_pcma(true, false);
    config.codec_config().add_config(
        Pt::new_with_value(101),
        None,
        str0m::format::Codec::Tele,
        Frequency::EIGHT_KHZ,
        None,
        str0m::format::FormatParams::default(),
    );
    let mut rtc = config.build(now);
    let candidate =
        Candidate::host(webrtc_local, "udp").map_err(|e| WebphoneError::Offer(e.to_string()))?;
    rtc.add_local_candidate(candidate);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| WebphoneError::Offer(e.to_string()))?;
    let seed = site.seed ^ u64::from(webrtc_local.port()) << 16;
    let ua = AgentUa::new(
        agent,
        password,
        site.sip_server,
        sip.local_addr()?,
        rtp.local_addr()?,
        vec![Codec::Pcmu, Codec::Pcma],
        seed,
    );
    let session = Session {
        rtc,
        ua,
        webrtc,
        webrtc_local,
        sip,
        rtp,
        mid: None,
        rtc_deadline: None,
        connected: false,
        bridge: None,
        reports,
        seed,
    };
    Ok((session, answer.to_sdp_string()))
}

impl Session {
    /// Runs until the page closes (commands end), its media goes away, or call control
    /// stops answering; then unregisters.
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let started = Instant::now();
        let mut page_buf = vec![0u8; 2048];
        let mut sip_buf = vec![0u8; 8192];
        let mut rtp_buf = vec![0u8; 2048];
        let mut closing_since: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if let Err(e) = self.drain(now).await {
                tracing::warn!(error = %e, "browser phone: WebRTC failed");
                closing_since.get_or_insert(now);
                self.ua.close(now);
            }
            if closing_since.is_some_and(|t| self.ua.is_done() || now - t > CLOSE_WITHIN) {
                break;
            }
            if closing_since.is_none() && !self.connected && now - started > CONNECT_WITHIN {
                self.report(Report::Closed("the browser's media never connected".into()));
                closing_since = Some(now);
                self.ua.close(now);
            }
            let deadline = self.deadline(now);
            tokio::select! {
                r = self.webrtc.recv_from(&mut page_buf) => {
                    let Ok((n, source)) = r else { continue };
                    let Ok(contents) = page_buf[..n].try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: self.webrtc_local,
                        contents,
                    });
                    if let Err(e) = self.rtc.handle_input(input) {
                        tracing::debug!(error = %e, "browser phone: datagram refused");
                    }
                }
                r = self.sip.recv_from(&mut sip_buf) => {
                    if let Ok((n, from)) = r {
                        self.ua.handle_sip(Instant::now(), from, &sip_buf[..n]);
                    }
                }
                r = self.rtp.recv_from(&mut rtp_buf) => {
                    if let Ok((n, from)) = r {
                        self.on_sip_rtp(Instant::now(), from, &rtp_buf[..n]);
                    }
                }
                c = commands.recv(), if closing_since.is_none() => {
                    let now = Instant::now();
                    match c {
                        Some(Command::Answer) => { self.ua.answer(now); }
                        Some(Command::Decline) => self.ua.decline(now),
                        None => {
                            closing_since = Some(now);
                            self.ua.close(now);
                        }
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    self.ua.handle_timeout(now);
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                        tracing::debug!(error = %e, "browser phone: timeout refused");
                    }
                }
            }
        }
        self.report(Report::Closed("the browser phone is off".into()));
        self.rtc.disconnect();
    }

    fn deadline(&mut self, now: Instant) -> Instant {
        let far = now + Duration::from_secs(1);
        [self.ua.poll_timeout(), self.rtc_deadline]
            .into_iter()
            .flatten()
            .fold(far, Instant::min)
    }

    fn report(&self, r: Report) {
        // The page reads these; a gone page just misses them.
        let _ = self.reports.try_send(r);
    }

    /// Sends what both sides have to send, and acts on what they say.
    async fn drain(&mut self, now: Instant) -> Result<(), str0m::RtcError> {
        while let Some(t) = self.ua.poll_transmit() {
            if let Err(e) = self.sip.send_to(&t.bytes, t.peer.addr).await {
                tracing::debug!(error = %e, "browser phone: SIP send failed");
            }
        }
        while let Some(ev) = self.ua.poll_event() {
            match ev {
                UaEvent::Registered => self.report(Report::Registered),
                UaEvent::RegistrationFailed(why) => self.report(Report::Unregistered(why)),
                UaEvent::Ringing { call_id } => self.report(Report::Ringing(call_id)),
                UaEvent::Talking { negotiated } => {
                    self.bridge = Some(Bridge {
                        sip: negotiated,
                        to_sip: RtpSender::new(
                            (self.seed >> 8) as u32,
                            (self.seed >> 40) as u16,
                            (self.seed >> 20) as u32,
                        ),
                        to_page_ts: 0,
                        page_to_sip: 0,
                    });
                    self.report(Report::Talking);
                }
                UaEvent::Ended => {
                    self.bridge = None;
                    self.report(Report::Idle);
                }
            }
        }
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => {
                    self.rtc_deadline = Some(t);
                    break;
                }
                Output::Transmit(t) => {
                    let _ = self.webrtc.send_to(&t.contents, t.destination).await;
                }
                Output::Event(ev) => self.on_rtc_event(now, ev).await,
            }
        }
        Ok(())
    }

    async fn on_rtc_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Connected => {
                self.connected = true;
                // Only now is the agent reachable: register its phone.
                self.ua.start(now);
                self.report(Report::MediaConnected);
            }
            Event::MediaAdded(m) => self.mid = Some(m.mid),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.report(Report::Closed("the browser's media went away".into()));
                self.ua.close(now);
            }
            Event::MediaData(d) => {
                let Some(bridge) = self.bridge.as_mut() else {
                    return;
                };
                let Some(codec) = self
                    .rtc
                    .codec_config()
                    .params()
                    .iter()
                    .find(|p| p.pt() == d.pt)
                    .map(|p| p.spec().codec)
                else {
                    return;
                };
                let sip_law = callcore::media_codec(bridge.sip.codec);
                let mut packet = [0u8; 1500];
                let len = match (codec, page_law(codec)) {
                    (str0m::format::Codec::Tele, _) => {
                        let Some(pt) = bridge.sip.telephone_event else {
                            return;
                        };
                        // An RFC 4733 report as the browser sent it; its time is the event's start.
                        let start = (d.time.numer() as u32).wrapping_add(bridge.page_to_sip);
                        let mut sender =
                            RtpSender::new(bridge.to_sip.ssrc, bridge.to_sip.seq, start);
                        let n =
                            sender.write(&mut packet, pt, d.audio_start_of_talk_spurt, &d.data, 0);
                        bridge.to_sip.seq = sender.seq;
                        n
                    }
                    (_, Some(from_law)) => {
                        let mut frame = [0u8; 1024];
                        let n = convert(from_law, sip_law, &d.data, &mut frame);
                        bridge.page_to_sip = bridge.to_sip.ts.wrapping_sub(d.time.numer() as u32);
                        bridge.to_sip.write(
                            &mut packet,
                            sip_law.payload_type(),
                            false,
                            &frame[..n],
                            n as u32,
                        )
                    }
                    (_, None) => 0,
                };
                if len > 0 {
                    let _ = self.rtp.send_to(&packet[..len], bridge.sip.remote).await;
                }
            }
            _ => {}
        }
    }

    /// Switchboard's agent-leg audio: on to the page, in the law the page uses.
    fn on_sip_rtp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let (Some(bridge), Some(mid)) = (self.bridge.as_mut(), self.mid) else {
            return;
        };
        if from != bridge.sip.remote {
            return; // only Switchboard's agent-leg port is listened to
        }
        let Ok(packet) = RtpPacket::parse(bytes) else {
            return;
        };
        let Some(law) = Law::from_payload_type(packet.payload_type) else {
            return; // events toward the agent are not played to it
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        let page = writer
            .payload_params()
            .find_map(|p| page_law(p.spec().codec).map(|law| (p.pt(), law)));
        let Some((pt, to_law)) = page else { return };
        let mut frame = [0u8; 1024];
        let n = convert(law, to_law, packet.payload, &mut frame);
        let at = MediaTime::new(bridge.to_page_ts, Frequency::EIGHT_KHZ);
        bridge.to_page_ts += n as u64;
        if let Err(e) = writer.write(pt, now, at, frame[..n].to_vec()) {
            tracing::debug!(error = %e, "browser phone: frame not written");
        }
    }
}

/// The G.711 law of a codec the page negotiated (None: telephone-event, or not audio).
fn page_law(codec: str0m::format::Codec) -> Option<Law> {
    match codec {
        str0m::format::Codec::PCMU => Some(Law::Pcmu),
        str0m::format::Codec::PCMA => Some(Law::Pcma),
        _ => None,
    }
}

/// Copies G.711 bytes into `out`, re-encoded when the laws differ; returns how many.
fn convert(from: Law, to: Law, bytes: &[u8], out: &mut [u8]) -> usize {
    let n = bytes.len().min(out.len());
    if from == to {
        out[..n].copy_from_slice(&bytes[..n]);
        return n;
    }
    let mut pcm = [0i16; 1024];
    let n = from.decode(&bytes[..n], &mut pcm);
    to.encode(&pcm[..n], out)
}
