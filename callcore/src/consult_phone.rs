//! Attended transfer from the agent's phone (RFC 5589 through a B2BUA).
//!
//! The agent's phone holds the caller and dials a colleague or a queue *through us*
//! (`INVITE sip:1002@…`, digest-authenticated as the agent): that INVITE is the
//! consultation of the call the agent is on, exactly as the desk's `consult` (the
//! colleague gets the pop, its phones ring; 180 to the agent's phone meanwhile, 200 when
//! the colleague answers, and the two agents talk through the call's media task while the
//! caller hears hold music). The phone's transfer key then sends REFER with
//! `Refer-To: <…?Replaces=…>` (RFC 3891) on either of its dialogs naming the other: the
//! caller goes to the colleague as with the desk's `complete`, and both of the agent's
//! dialogs are hung up. The agent hanging up the consultation call (BYE, or CANCEL while
//! it rings) cancels it; the colleague refusing, not answering or hanging up ends it with
//! the matching final response or BYE.

use std::net::SocketAddr;
use std::time::Instant;

use sip::dialog::Dialog;
use sip::message::{Method, Request, response_to};
use sip::registrar::Account;
use sip::sdp;
use sip::transaction::TransactionKey;
use sip::transport::Peer;
use tracing::{info, warn};

use crate::CallId;
use crate::consult::ConsultEnd;
use crate::control::{BindFor, Core};
use crate::io::{LegSpec, MediaCommand, Output, PortToken};
use crate::patient::media_codec;
use crate::transfer::TransferTarget;

/// The agent's own consultation call (its phone's second dialog with us).
#[derive(Debug)]
pub(crate) struct PhoneSide {
    /// The INVITE's server transaction, until it has its final response.
    pub key: Option<TransactionKey>,
    pub request: Request,
    pub peer: Peer,
    pub sip_call_id: String,
    /// Our To tag (the 180 and the 200 carry it).
    pub tag: String,
    pub offer: sdp::MediaDescription,
    /// The port for the phone's second leg, once bound, and its address.
    pub port: Option<(PortToken, SocketAddr)>,
    /// Once answered: the dialog, and the port handed to the media task.
    pub dialog: Option<Dialog>,
    pub in_media: bool,
    /// The phone hung this dialog up itself (nothing to send it).
    pub gone: bool,
}

impl Core {
    /// A new INVITE: if it is an agent's phone dialling a colleague or a queue while the
    /// agent is on a call, it starts a consultation (returns true, answered here); any
    /// other INVITE (an agent on no call included) is a patient's call (false).
    pub(crate) fn phone_consult(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        request: &Request,
        peer: Peer,
    ) -> bool {
        let Some(agent) = request
            .from_user()
            .filter(|a| self.config.agents.contains_key(a))
        else {
            return false;
        };
        let Some(dialled) = request.uri_user() else {
            return false;
        };
        let target = if dialled != agent && self.config.agents.contains_key(&dialled) {
            TransferTarget::Agent(dialled)
        } else if self.acd.queue_configs().any(|q| q.name == dialled) {
            TransferTarget::Queue(dialled)
        } else {
            return false;
        };
        let Ok(sip_call_id) = request.call_id() else {
            return false;
        };
        if self.by_sip_call_id.contains_key(&sip_call_id) {
            return false;
        }
        // The call the agent is on: the one the consultation is about.
        let Ok(id) = self.connected_call_of(&agent) else {
            return false;
        };
        let account = self.config.agents.get(&agent).map(|a| Account {
            password: a.password.clone(),
            algorithms: a.digest.clone(),
        });
        let Some(account) = account else {
            return false;
        };
        if let Err(challenge) = self.registrar.authorize(now, request, &agent, &account) {
            self.transactions.send_response(now, key, challenge);
            return true;
        }
        let reply = |core: &mut Self, status: u16, reason: &str| {
            info!(%agent, status, %reason, "the phone's consultation call refused");
            let r = response_to(request, status, reason, None);
            core.transactions.send_response(now, key, r);
        };
        let offer = match sdp::parse(request.body()) {
            Ok(offer) if offer.codecs.iter().any(|c| self.config.codecs.contains(c)) => offer,
            _ => {
                reply(self, 488, "Not Acceptable Here");
                return true;
            }
        };
        self.transactions
            .send_response(now, key, response_to(request, 100, "Trying", None));
        if let Err(e) = self.consult(now, &agent, &target) {
            warn!(error = %e, "consultation from the phone refused");
            reply(self, 486, "Busy Here");
            return true;
        }
        let tag = self.ids.tag();
        let ringing = response_to(request, 180, "Ringing", Some(&tag));
        self.transactions.send_response(now, key, ringing);
        if let Some(k) = self.calls.get_mut(&id).and_then(|c| c.consult.as_mut()) {
            k.phone = Some(PhoneSide {
                key: Some(key.clone()),
                request: request.clone(),
                peer,
                sip_call_id: sip_call_id.clone(),
                tag,
                offer,
                port: None,
                dialog: None,
                in_media: false,
                gone: false,
            });
        }
        self.by_sip_call_id.insert(sip_call_id, id);
        if self
            .bind_port(BindFor::ConsultPhone { call: id }, 0)
            .is_err()
        {
            self.end_consult(now, id, ConsultEnd::Declined, true);
        }
        true
    }

    /// The port for the agent phone's consultation leg is bound.
    pub(crate) fn consult_phone_bound(
        &mut self,
        now: Instant,
        id: CallId,
        token: PortToken,
        local: SocketAddr,
    ) {
        let Some(phone) = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.consult.as_mut())
            .and_then(|k| k.phone.as_mut())
            .filter(|p| p.port.is_none())
        else {
            self.release_socket(token);
            return;
        };
        phone.port = Some((token, local));
        self.start_consult_media(now, id);
    }

    /// The consulted agent answered (its leg waits in `consulted_leg`): the agents are
    /// joined in the call's media, once the phone's own leg (if the phone consults) is
    /// answered too.
    pub(crate) fn start_consult_media(&mut self, now: Instant, id: CallId) {
        let session_id = self.ids.next_u64() >> 1;
        let ssrc = self.ids.next_u32();
        let codecs = self.config.codecs.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(k) = c.consult.as_mut() else {
            return;
        };
        if k.consulted_leg.is_none() {
            return;
        }
        let agent_side = match k.phone.as_mut() {
            None => None,
            Some(phone) => {
                let Some((token, local_rtp)) = phone.port else {
                    // Answered once its port is bound.
                    return;
                };
                let Ok((answer, negotiated)) =
                    sdp::answer(&phone.offer, &codecs, local_rtp, session_id)
                else {
                    self.end_consult(now, id, ConsultEnd::Cancelled, true);
                    return;
                };
                let Ok(dialog) = Dialog::uas(&phone.request, phone.tag.clone(), phone.peer) else {
                    self.end_consult(now, id, ConsultEnd::Cancelled, true);
                    return;
                };
                let Some(key) = phone.key.take() else {
                    return;
                };
                phone.dialog = Some(dialog);
                phone.in_media = true;
                let request = phone.request.clone();
                let tag = phone.tag.clone();
                let transport = phone.peer.transport;
                let spec = LegSpec {
                    token,
                    remote: negotiated.remote,
                    codec: media_codec(negotiated.codec),
                    telephone_event: negotiated.telephone_event,
                    ssrc,
                };
                let Some(local) = self.local_for(transport) else {
                    return;
                };
                let ok = response_to(&request, 200, "OK", Some(&tag))
                    .with_header("Contact", &format!("<{}>", local.contact))
                    .with_header("Allow", crate::refresh::ALLOW)
                    .with_body("application/sdp", answer.into_bytes());
                self.transactions.send_response(now, &key, ok);
                Some(spec)
            }
        };
        let Some(k) = self.calls.get_mut(&id).and_then(|c| c.consult.as_mut()) else {
            return;
        };
        let Some(leg) = k.consulted_leg.take() else {
            return;
        };
        self.emit(Output::Media {
            call: id,
            command: MediaCommand::Consult {
                leg,
                agent_side,
                at: now,
            },
        });
    }

    /// The phone's consultation call goes with its consultation: answered, it is hung up
    /// (unless the phone hung it up); still ringing, it gets the final response `why` calls
    /// for. Its port is given back (or closes with the media's consult leg).
    pub(crate) fn end_phone_side(&mut self, now: Instant, phone: PhoneSide, why: ConsultEnd) {
        self.by_sip_call_id.remove(&phone.sip_call_id);
        match phone.port {
            Some((token, _)) if phone.in_media => self.socket_closed(token),
            Some((token, _)) => self.release_socket(token),
            None => {}
        }
        if let Some(key) = phone.key {
            let (status, reason) = match why {
                ConsultEnd::Cancelled | ConsultEnd::HungUp => (487, "Request Terminated"),
                ConsultEnd::Declined => (486, "Busy Here"),
                ConsultEnd::NoAnswer => (480, "Temporarily Unavailable"),
            };
            let r = response_to(&phone.request, status, reason, Some(&phone.tag));
            self.transactions.send_response(now, &key, r);
        }
        if let Some(mut dialog) = phone.dialog.filter(|_| !phone.gone)
            && let Some(local) = self.local_for(dialog.peer.transport)
        {
            let bye = dialog.request(Method::Bye, &local, self.ids.branch());
            self.fire(now, dialog.peer, bye);
        }
    }

    /// CANCEL of a consultation call the agent's phone placed: 487 and the consultation ends.
    pub(crate) fn cancel_phone_consult(&mut self, now: Instant, invite: &TransactionKey) -> bool {
        let id = self.calls.iter().find_map(|(id, c)| {
            let p = c.consult.as_ref()?.phone.as_ref()?;
            (p.key.as_ref() == Some(invite)).then_some(*id)
        });
        let Some(id) = id else {
            return false;
        };
        self.end_consult(now, id, ConsultEnd::Cancelled, true);
        true
    }

    /// The phone hung up its consultation call (BYE on it): the consultation ends.
    pub(crate) fn phone_consult_bye(
        &mut self,
        now: Instant,
        id: CallId,
        sip_call_id: &str,
    ) -> bool {
        let Some(phone) = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.consult.as_mut())
            .and_then(|k| k.phone.as_mut())
            .filter(|p| p.sip_call_id == sip_call_id)
        else {
            return false;
        };
        phone.gone = true;
        self.end_consult(now, id, ConsultEnd::Cancelled, true);
        true
    }

    /// REFER with `Replaces` from the consulting agent's phone: on either of its dialogs
    /// (the call with the caller, the consultation) naming the other, once the colleague
    /// answered. Returns the call, or `None` when it names no such pair.
    pub(crate) fn replaces_target(&self, refer_call_id: &str, replaces: &str) -> Option<CallId> {
        let id = *self.by_sip_call_id.get(refer_call_id)?;
        let c = self.calls.get(&id)?;
        let k = c.consult.as_ref()?;
        let phone = k.phone.as_ref()?;
        phone.dialog.as_ref()?;
        let agent_leg = c.agent_sip_call_id.as_deref()?;
        let pair = (refer_call_id == agent_leg && replaces == phone.sip_call_id)
            || (refer_call_id == phone.sip_call_id && replaces == agent_leg);
        pair.then_some(id)
    }
}
