//! Requests inside a call that keep it as it is: session refreshes (re-INVITE
//! and UPDATE, RFC 4028), and the session timer of each leg.
//!
//! A re-INVITE or UPDATE that changes nothing about the media (no SDP, or the
//! same address, codec and direction) is answered 200 with our SDP unchanged
//! and restarts the leg's session timer. One that changes the media is
//! answered from the same session one version up (RFC 3264 §8) and the call's
//! media follows it: hold (`sendonly`/`inactive`: nothing is sent to that
//! phone; the agent's hold gives the patient hold music and marks the
//! recording), unhold, a new address (re-latched there) or codec (transcoded
//! if the legs now differ). An offer with no codec we use gets 488 and the
//! call goes on as it was (RFC 3261 §14.2).

use std::time::Instant;

use sip::message::{Method, Request, Response, response_to};
use sip::sdp;
use sip::transaction::TransactionKey;
use tracing::{info, warn};

use crate::CallId;
use crate::call::{Call, Side};
use crate::control::{ClientTx, Core, Due};
use crate::io::{Leg, MediaCommand, Output};
use crate::patient::media_codec;
use crate::session_timer::{MIN_SE, Refresher, SessionExpires, SessionTimer};

/// The methods we take, as `Allow` says.
pub(crate) const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, REFER";

/// The extensions a phone may require of us (RFC 3261 §8.2.2.3): session timers, and
/// reliable provisional responses (RFC 3262) — which costs nothing, since a patient's
/// INVITE gets only `100 Trying` before its 200 (the IVR answers at once), and only
/// provisional responses other than 100 are sent reliably.
pub(crate) const EXTENSIONS: [&str; 2] = ["timer", "100rel"];

/// What a REGISTER may require besides: `path` (RFC 3327), the registrar keeps the
/// proxies a REGISTER came through and routes the agent's calls through them.
pub(crate) const REGISTER_EXTENSIONS: [&str; 1] = ["path"];

/// The option tags in `request`'s `Require` that we do not support.
pub(crate) fn unsupported(request: &Request) -> Vec<String> {
    let register = request.method() == Method::Register;
    let known = |tag: &str| {
        EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(tag))
            || (register
                && REGISTER_EXTENSIONS
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(tag)))
    };
    request
        .header_values("Require")
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|tag| !tag.is_empty() && !known(tag))
        .map(str::to_owned)
        .collect()
}

/// The UPDATE method (an extension method to the message model).
pub(crate) fn update() -> Method {
    Method::Other("UPDATE".to_owned())
}

/// What a session-timer negotiation settled for a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Negotiated {
    pub expires: SessionExpires,
    /// The phone supports the extension (so our answer carries `Require: timer`).
    pub supported: bool,
    pub we_refresh: bool,
}

/// The timer a request from the phone asks for, when we answer it (we are its UAS):
/// `Err(())` when the interval is below [`MIN_SE`] (answer 422).
pub(crate) fn negotiate_as_uas(request: &Request) -> Result<Option<Negotiated>, ()> {
    let Some(asked) = request
        .header("Session-Expires")
        .and_then(|v| SessionExpires::parse(&v))
    else {
        return Ok(None);
    };
    if asked.seconds < MIN_SE {
        return Err(());
    }
    let supported = request.lists_option("Supported", "timer");
    // The phone refreshes whenever it can: it asked (uac) or left it to us (§9).
    let refresher = match (supported, asked.refresher) {
        (false, _) => Refresher::Uas,
        (true, Some(r)) => r,
        (true, None) => Refresher::Uac,
    };
    Ok(Some(Negotiated {
        expires: SessionExpires {
            seconds: asked.seconds,
            refresher: Some(refresher),
        },
        supported,
        we_refresh: refresher == Refresher::Uas,
    }))
}

/// The timer an agent phone's 200 sets (we sent the INVITE: we are the UAC).
pub(crate) fn negotiated_as_uac(response: &Response) -> Option<Negotiated> {
    let expires = response
        .header("Session-Expires")
        .and_then(|v| SessionExpires::parse(&v))?;
    if expires.seconds < MIN_SE {
        return None;
    }
    Some(Negotiated {
        we_refresh: expires.refresher == Some(Refresher::Uac),
        supported: true,
        expires,
    })
}

/// The 422 for a request whose `Session-Expires` is below [`MIN_SE`] (RFC 4028 §8.1).
pub(crate) fn interval_too_small(request: &Request) -> Response {
    response_to(request, 422, "Session Interval Too Small", None)
        .with_header("Min-SE", &MIN_SE.to_string())
}

/// Adds the session-timer headers of `n` to a 2xx.
pub(crate) fn with_timer_headers(response: Response, n: Option<&Negotiated>) -> Response {
    let Some(n) = n else { return response };
    let response = response.with_header("Session-Expires", &n.expires.header());
    if n.supported {
        response.with_header("Require", "timer")
    } else {
        response
    }
}

impl Core {
    /// Starts (or restarts) a leg's session timer and arms its deadline.
    pub(crate) fn start_session_timer(
        &mut self,
        now: Instant,
        call: CallId,
        leg: Leg,
        n: &Negotiated,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let timer = SessionTimer::new(now, n.expires.seconds, n.we_refresh);
        let Some(slot) = c.timer_mut(leg) else {
            return;
        };
        *slot = Some((timer, *n));
        self.deadlines
            .set(Due::Session(call, leg), Some(timer.deadline));
    }

    /// A leg's session timer ran out: refresh it (ours) or end the call (theirs).
    pub(crate) fn session_due(&mut self, now: Instant, call: CallId, leg: Leg) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Some((timer, n)) = c.timer(leg) else {
            return;
        };
        if !timer.we_refresh {
            c.span
                .in_scope(|| info!(?leg, "no session refresh from the phone: ending the call"));
            self.hang_up(now, call, Side::System, "session_expired");
            return;
        }
        // Our refresh: an UPDATE without a body, the interval and refresher restated.
        let refresher = match leg {
            Leg::Patient => Refresher::Uas,
            Leg::Agent => Refresher::Uac,
        };
        let header = SessionExpires {
            seconds: n.expires.seconds,
            refresher: Some(refresher),
        }
        .header();
        let branch = self.ids.branch();
        let local = self.leg_local(c, leg);
        let Some(local) = local else { return };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let dialog = match leg {
            Leg::Patient => c.line.as_mut().map(|l| &mut l.dialog),
            Leg::Agent => c.agent_dialog.as_mut(),
        };
        let Some(dialog) = dialog else { return };
        let peer = dialog.peer;
        let request = dialog
            .request(update(), &local, branch)
            .with_header("Session-Expires", &header)
            .with_header("Supported", "timer");
        self.deadlines.set(Due::Session(call, leg), None);
        let key = self.transactions.send_request(now, peer, request);
        self.client_tx.insert(key, ClientTx::Refresh { call, leg });
    }

    /// The answer to our refresh: 2xx restarts the timer; a phone that doesn't
    /// know UPDATE keeps its call without our refreshes; a dialog that is gone ends it.
    pub(crate) fn refresh_answered(
        &mut self,
        now: Instant,
        call: CallId,
        leg: Leg,
        status: Option<u16>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        match status {
            Some(405 | 420 | 501) => {
                c.span.in_scope(|| {
                    warn!(
                        ?leg,
                        "the phone does not take UPDATE: session refreshes off"
                    )
                });
                if let Some(slot) = c.timer_mut(leg) {
                    *slot = None;
                }
            }
            Some(408 | 481) | None => {
                self.hang_up(now, call, Side::System, "session_refresh_failed");
            }
            // A 2xx refreshed the session; another failure is tried again: either
            // way the next refresh is due half an interval from now.
            Some(_) => {
                if let Some((timer, _)) = c.timer_mut(leg).and_then(Option::as_mut) {
                    timer.refreshed(now);
                    let at = timer.deadline;
                    self.deadlines.set(Due::Session(call, leg), Some(at));
                }
            }
        }
    }

    /// A re-INVITE or UPDATE inside a call.
    pub(crate) fn handle_refresh(&mut self, now: Instant, key: TransactionKey, request: Request) {
        let found = request.call_id().ok().and_then(|cid| {
            let id = self.by_sip_call_id.get(&cid).copied()?;
            let side = self.calls.get(&id)?.side_of(&cid)?;
            Some((id, side))
        });
        let Some((id, side)) = found else {
            let r = response_to(&request, 481, "Call/Transaction Does Not Exist", None);
            self.transactions.send_response(now, &key, r);
            return;
        };
        let leg = match side {
            Side::Agent => Leg::Agent,
            _ => Leg::Patient,
        };
        let Some(c) = self.calls.get(&id) else { return };
        let local = self.leg_local(c, leg);
        let ours = match leg {
            Leg::Patient => c.line.as_ref().map(|l| l.sdp.clone()),
            Leg::Agent => c.agent_sdp.clone(),
        };
        let (Some(local), Some(ours)) = (local, ours) else {
            let r = response_to(&request, 481, "Call/Transaction Does Not Exist", None);
            self.transactions.send_response(now, &key, r);
            return;
        };
        let ours = if media_unchanged(c, leg, request.body()) {
            ours
        } else {
            match self.change_media(now, id, leg, &ours, request.body()) {
                Some(answer) => answer,
                None => {
                    let r = response_to(&request, 488, "Not Acceptable Here", None);
                    self.transactions.send_response(now, &key, r);
                    return;
                }
            }
        };
        let Some(c) = self.calls.get(&id) else { return };
        let negotiated = match negotiate_as_uas(&request) {
            Ok(n) => n.or_else(|| c.timer(leg).map(|(_, n)| n)),
            Err(()) => {
                let r = interval_too_small(&request);
                self.transactions.send_response(now, &key, r);
                return;
            }
        };
        let mut ok = response_to(&request, 200, "OK", None)
            .with_header("Contact", &format!("<{}>", local.contact))
            .with_header("Allow", ALLOW)
            .with_header("Supported", "timer");
        if request.method() == Method::Invite || !request.body().is_empty() {
            ok = ok.with_body("application/sdp", ours.into_bytes());
        }
        let ok = with_timer_headers(ok, negotiated.as_ref());
        self.transactions.send_response(now, &key, ok);
        if let Some(n) = negotiated {
            self.start_session_timer(now, id, leg, &n);
        }
    }
}

impl Core {
    /// A phone's new offer changes its leg's media: answers it from the session
    /// we had, settles the leg on it and tells the media; `None` (and the call
    /// as it was) when the offer is unreadable or has no codec we use.
    fn change_media(
        &mut self,
        now: Instant,
        id: CallId,
        leg: Leg,
        previous: &str,
        body: &[u8],
    ) -> Option<String> {
        let hold_prompt = self.hold_prompt(id);
        let c = self.calls.get_mut(&id)?;
        let _entered = c.span.clone().entered();
        let offer = match sdp::parse(body) {
            Ok(offer) => offer,
            Err(e) => {
                info!(?leg, error = %e, "a mid-call offer is unreadable (488); the call goes on");
                return None;
            }
        };
        // The codec in use stays while the phone still offers it.
        let current = match leg {
            Leg::Patient => c.line.as_ref().map(|l| l.media.codec),
            Leg::Agent => c.agent_media.map(|m| m.codec),
        };
        let keep = current.filter(|codec| offer.codecs.contains(codec));
        let codecs = match &keep {
            Some(codec) => std::slice::from_ref(codec),
            None => self.config.codecs.as_slice(),
        };
        let (answer, settled) = match sdp::reanswer(&offer, codecs, previous) {
            Ok(a) => a,
            Err(e) => {
                info!(?leg, error = %e, "a mid-call offer is refused (488); the call goes on");
                return None;
            }
        };
        let was = match (leg, c.line.as_mut()) {
            (Leg::Patient, Some(line)) => {
                line.sdp = answer.clone();
                Some(std::mem::replace(&mut line.media, settled))
            }
            (Leg::Patient, None) => None,
            (Leg::Agent, _) => {
                c.agent_sdp = Some(answer.clone());
                c.agent_media.replace(settled)
            }
        };
        // The desk's hold keeps the agent's side held whatever its phone does.
        let desk_held = leg == Leg::Agent && c.desk_held;
        let held = !settled.direction.sends() || desk_held;
        let was_held = was.is_some_and(|w| !w.direction.sends()) || desk_held;
        info!(
            ?leg,
            codec = ?settled.codec,
            direction = ?settled.direction,
            moved = was.is_some_and(|w| w.remote != settled.remote),
            "mid-call media change"
        );
        let codec = media_codec(settled.codec);
        // An agent leg answered but not bridged yet starts on the new media.
        if leg == Leg::Agent
            && let Some(pending) = c.bridge_pending.as_mut()
        {
            pending.remote = settled.remote;
            pending.codec = codec;
            pending.telephone_event = settled.telephone_event;
            return Some(answer);
        }
        let bridged = c.phase == crate::call::Phase::Connected;
        drop(_entered);
        self.emit(Output::Media {
            call: id,
            command: MediaCommand::Update {
                leg,
                remote: settled.remote,
                codec,
                telephone_event: settled.telephone_event,
                send: settled.direction.sends() && !desk_held,
                receive: settled.direction.receives(),
            },
        });
        if leg == Leg::Agent && bridged && held != was_held {
            let command = match (held, hold_prompt) {
                (true, Some(prompt)) => MediaCommand::Hold { prompt },
                _ => MediaCommand::Silence,
            };
            self.emit(Output::Media { call: id, command });
            // The agent's state shows it (`on_hold`), and the event log has it.
            if let Err(e) = self.acd.hold(now, id, held) {
                warn!(error = %e, "the queue did not take the hold");
            }
        }
        Some(answer)
    }

    /// The hold music of the call's queue, if it has one we can play.
    pub(crate) fn hold_prompt(&self, id: CallId) -> Option<String> {
        let queue = self.calls.get(&id)?.queue.as_ref()?;
        self.config
            .hold_prompts
            .get(queue)
            .filter(|p| self.config.prompts.contains(*p))
            .cloned()
    }
}

/// Whether an in-dialog offer leaves the leg's media as it is (no offer at all counts).
fn media_unchanged(c: &Call, leg: Leg, body: &[u8]) -> bool {
    if body.is_empty() {
        return true;
    }
    let Ok(offer) = sdp::parse(body) else {
        return false;
    };
    let current = match leg {
        Leg::Patient => c.line.as_ref().map(|l| l.media),
        Leg::Agent => c.agent_media,
    };
    let Some(current) = current else {
        return false;
    };
    offer.direction.reversed() == current.direction
        && std::net::SocketAddr::new(offer.addr, offer.port) == current.remote
        && offer.codecs.contains(&current.codec)
        && offer.telephone_event == current.telephone_event
}
