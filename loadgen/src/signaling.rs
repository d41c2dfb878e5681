//! SIP for the engine: patients' INVITEs and BYEs, agents' REGISTERs (digest), and the
//! agent phones' side of the server's INVITEs (180, answer or ring out, CANCEL, BYE).
//! All through one `sip::TransactionLayer` on one UDP socket.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip::dialog::{Dialog, LocalEndpoint};
use sip::message::{Method, Request, RequestBuilder, Response, SipMessage, parse, response_to};
use sip::sdp::{self, Codec};
use sip::transaction::{TransactionEvent, TransactionKey};
use sip::transport::Transport;

use crate::calls::{AgentLeg, Call, Phase, call_of_caller};
use crate::engine::{Engine, Timer, TxFor, random_delay, signed_us};
use crate::media_io::PT_EVENT;

const OURS: [Codec; 1] = [Codec::Pcmu];

impl Engine {
    /// A datagram on the SIP socket.
    pub fn on_sip_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Ok(msg) = parse(bytes) else {
            self.sip_errors += 1;
            return;
        };
        self.tl
            .handle_message(now, sip::transport::Peer::udp(from), msg);
        self.drain_events(now);
    }

    /// Sends what the transaction layer has queued.
    pub fn flush_sip(&mut self) {
        while let Some(t) = self.tl.poll_transmit() {
            if self.sip_socket.try_send_to(&t.bytes, t.peer.addr).is_err() {
                self.sip_errors += 1;
            }
        }
    }

    fn drain_events(&mut self, now: Instant) {
        for _ in 0..10_000 {
            let Some(event) = self.tl.poll_event() else {
                break;
            };
            match event {
                TransactionEvent::Request { key, request, .. } => {
                    self.on_request(now, key, request)
                }
                TransactionEvent::Ack { request, .. } => self.on_ack(now, &request),
                TransactionEvent::Response { key, response } => {
                    self.on_response(now, &key, response)
                }
                TransactionEvent::Timeout { key } => self.on_timeout(&key),
            }
        }
    }

    fn agent_local(&self, agent: usize) -> LocalEndpoint {
        let id = self.agents.get(agent).map_or("agent", |a| a.id.as_str());
        LocalEndpoint {
            transport: Transport::Udp,
            sent_by: self.local_sip,
            contact: format!("sip:{id}@{}", self.local_sip),
        }
    }

    // ---- agents' registration ---------------------------------------------------------

    /// REGISTER for agent `a`, with an `Authorization` value once challenged.
    pub fn send_register(&mut self, now: Instant, a: usize, authorization: Option<String>) {
        let branch = self.ids.branch();
        let tag = self.ids.tag();
        let host = self.cfg.sip.ip();
        let uri = format!("sip:{}", self.cfg.sip);
        let contact = self.agent_local(a).contact;
        let Some(agent) = self.agents.get_mut(a) else {
            return;
        };
        agent.register_cseq += 1;
        let mut b = RequestBuilder::new(Method::Register, &uri)
            .via(Transport::Udp, self.local_sip, &branch)
            .max_forwards(70)
            .from(&format!("<sip:{}@{host}>;tag={tag}", agent.id))
            .to(&format!("<sip:{}@{host}>", agent.id))
            .call_id(&agent.register_call_id)
            .cseq(agent.register_cseq)
            .contact(&contact)
            .header("Expires", "3600");
        if let Some(auth) = authorization {
            b = b.header("Authorization", &auth);
        }
        let key = self.tl.send_request(now, self.server, b.build());
        self.txs.insert(key, TxFor::Register(a));
    }

    fn on_register_response(&mut self, now: Instant, a: usize, response: &Response) {
        let status = response.status();
        let uri = format!("sip:{}", self.cfg.sip);
        let cnonce = self.ids.tag();
        let Some(agent) = self.agents.get_mut(a) else {
            return;
        };
        match status {
            100..=199 => {}
            200..=299 => {
                let first = !agent.registered;
                agent.registered = true;
                agent.auth_attempts = 0;
                // Refresh at half the granted time, as phones do (a soak outlives it).
                let granted = sip::registrar::granted_expiry(response).unwrap_or(3600);
                let refresh = Duration::from_secs((granted / 2).max(30));
                self.schedule(now + refresh, Timer::Reregister { agent: a });
                if first {
                    self.post_ready(a);
                }
            }
            401 if agent.auth_attempts < 3 => {
                agent.auth_attempts += 1;
                let challenge =
                    sip::digest_client::pick(&response.header_values("WWW-Authenticate"));
                let auth = challenge.and_then(|c| {
                    sip::digest_client::authorization(
                        &c,
                        &agent.id,
                        &agent.password,
                        "REGISTER",
                        &uri,
                        &cnonce,
                    )
                });
                match auth {
                    Some(auth) => self.send_register(now, a, Some(auth)),
                    None => agent.failed = Some("REGISTER: no usable digest challenge".into()),
                }
            }
            s => agent.failed = Some(format!("REGISTER answered {s}")),
        }
    }

    // ---- patients -----------------------------------------------------------------------

    /// Starts call `i`: the patient's INVITE with a PCMU + telephone-event offer.
    pub fn launch(&mut self, now: Instant, i: u32) {
        let sip_call_id = self.ids.call_id();
        let ssrcs = (self.ids.next_u32(), self.ids.next_u32());
        let bye_from_agent = match self.cfg.bye_from {
            crate::engine::ByeFrom::Patient => false,
            crate::engine::ByeFrom::Agent => true,
            crate::engine::ByeFrom::Mixed => i % 2 == 1,
        };
        let mut call = Call::new(i, sip_call_id.clone(), ssrcs, bye_from_agent);
        let target = format!("sip:clinic@{}", self.cfg.sip);
        let host = self.local_sip.ip();
        let body = sdp::offer(
            &OURS,
            PT_EVENT,
            self.patient_rtp_addr,
            self.ids.next_u64() >> 1,
            Some(20),
        );
        let invite = RequestBuilder::new(Method::Invite, &target)
            .via(Transport::Udp, self.local_sip, &self.ids.branch())
            .max_forwards(70)
            .from(&format!(
                "<sip:{}@{host}>;tag={}",
                call.caller,
                self.ids.tag()
            ))
            .to(&format!("<{target}>"))
            .call_id(&sip_call_id)
            .cseq(1)
            .contact(&format!("sip:{}@{}", call.caller, self.local_sip))
            .body("application/sdp", body.into_bytes())
            .build();
        call.patient_invite = Some(invite.clone());
        call.invite_at = Some(now);
        call.phase = Phase::Inviting;
        let key = self.tl.send_request(now, self.server, invite);
        self.txs.insert(key, TxFor::PatientInvite(i));
        self.call_by_sip_id.insert(sip_call_id, i);
        debug_assert_eq!(self.calls.len(), i as usize);
        self.calls.push(call);
        self.active.push(i);
    }

    fn on_patient_invite_response(&mut self, now: Instant, i: u32, response: &Response) {
        let local = self.patient_local.clone();
        let server = self.server;
        let Some(c) = self.calls.get_mut(i as usize) else {
            return;
        };
        let status = response.status();
        if status < 200 {
            return;
        }
        if status >= 300 {
            if status == 503 {
                c.refused = true;
                c.fail("refused (503)");
            } else if status >= 500 {
                c.fail("server error (5xx) to the INVITE");
            } else {
                c.fail("INVITE rejected (3xx/4xx/6xx)");
            }
            c.phase = Phase::Done;
            c.ended_at = Some(now);
            return;
        }
        if let Some(d) = &c.patient_dialog {
            // A retransmitted 200: ACK again.
            let ack = d.ack(1, &local, self.ids.branch());
            self.tl.send_stateless(server, SipMessage::Request(ack));
            return;
        }
        let Some(invite) = c.patient_invite.as_ref() else {
            return;
        };
        let dialog = match Dialog::uac(invite, response, server) {
            Ok(d) => d,
            Err(_) => {
                c.fail("unusable 200 to the INVITE");
                c.phase = Phase::Done;
                return;
            }
        };
        let ack = dialog.ack(1, &local, self.ids.branch());
        self.tl.send_stateless(server, SipMessage::Request(ack));
        c.patient_dialog = Some(dialog);
        c.answered_at = Some(now);
        if let Some(t) = c.invite_at {
            self.setup.push_us(signed_us(now, t));
        }
        let negotiated = sdp::parse(response.body()).and_then(|a| sdp::accept_answer(&a, &OURS));
        match negotiated {
            Ok(n) if n.telephone_event == Some(PT_EVENT) => {
                c.patient_rtp_remote = Some(n.remote);
                if c.phase == Phase::Inviting {
                    c.phase = Phase::Dialling;
                }
            }
            _ => {
                c.fail("SDP answer without PCMU and telephone-event 101");
                self.hang_up_all(now, i);
            }
        }
    }

    /// BYE from one side of call `i` (the patient's or the agent's dialog).
    pub fn send_bye(&mut self, now: Instant, i: u32, from_agent: bool) {
        let Some(c) = self.calls.get(i as usize) else {
            return;
        };
        let agent = c.leg.as_ref().map(|l| l.agent);
        let local = match (from_agent, agent) {
            (true, Some(a)) => self.agent_local(a),
            _ => self.patient_local.clone(),
        };
        let branch = self.ids.branch();
        let Some(c) = self.calls.get_mut(i as usize) else {
            return;
        };
        c.phase = Phase::Ending;
        let (request, purpose) = if from_agent {
            let Some(d) = c
                .leg
                .as_mut()
                .filter(|l| l.answered && !l.ended)
                .and_then(|l| l.dialog.as_mut())
            else {
                return;
            };
            (d.request(Method::Bye, &local, branch), TxFor::AgentBye(i))
        } else {
            if c.patient_ended {
                return;
            }
            let Some(d) = c.patient_dialog.as_mut() else {
                return;
            };
            (d.request(Method::Bye, &local, branch), TxFor::PatientBye(i))
        };
        let key = self.tl.send_request(now, self.server, request);
        self.txs.insert(key, purpose);
    }

    /// Ends whatever is up in call `i`: BYE on both confirmed dialogs.
    pub fn hang_up_all(&mut self, now: Instant, i: u32) {
        let Some(c) = self.calls.get_mut(i as usize) else {
            return;
        };
        if c.phase == Phase::Done {
            return;
        }
        let agent_up = c.leg.as_ref().is_some_and(|l| l.acked && !l.ended);
        let patient_up = c.patient_dialog.is_some() && !c.patient_ended;
        if !agent_up && !patient_up {
            c.phase = Phase::Done;
            c.ended_at = Some(now);
            return;
        }
        if patient_up {
            self.send_bye(now, i, false);
        }
        if agent_up {
            self.send_bye(now, i, true);
        }
    }

    fn leg_ended(&mut self, now: Instant, i: u32) {
        let Some(c) = self.calls.get_mut(i as usize) else {
            return;
        };
        if c.phase == Phase::Ending && c.legs_over() {
            c.phase = Phase::Done;
            c.ended_at = Some(now);
        }
    }

    // ---- the agents' phones -------------------------------------------------------------

    fn on_request(&mut self, now: Instant, key: TransactionKey, request: Request) {
        match request.method() {
            Method::Invite => self.on_agent_invite(now, key, request),
            Method::Cancel => self.on_cancel(now, &key, &request),
            Method::Bye => self.on_bye(now, &key, &request),
            _ => self
                .tl
                .send_response(now, &key, response_to(&request, 200, "OK", None)),
        }
    }

    fn on_agent_invite(&mut self, now: Instant, key: TransactionKey, invite: Request) {
        let agent = invite
            .uri_user()
            .and_then(|u| self.agent_by_id.get(&u).copied());
        let call = invite.from_user().as_deref().and_then(call_of_caller);
        let (Some(a), Some(ci)) = (agent, call) else {
            self.tl
                .send_response(now, &key, response_to(&invite, 404, "Not Found", None));
            return;
        };
        let Ok(sip_call_id) = invite.call_id() else {
            return;
        };
        let tag = self.ids.tag();
        let Some(c) = self.calls.get_mut(ci as usize) else {
            self.tl
                .send_response(now, &key, response_to(&invite, 404, "Not Found", None));
            return;
        };
        if !matches!(c.phase, Phase::Dialling | Phase::Waiting) {
            c.fail("agent INVITE for a call not waiting");
            let msg = format!("call {ci}: INVITE to agent {a} in phase {:?}", c.phase);
            self.tl.send_response(
                now,
                &key,
                response_to(&invite, 486, "Busy Here", Some(&tag)),
            );
            self.log(msg);
            return;
        }
        let mut anomaly = None;
        if let Some(old) = c.leg.as_mut().filter(|l| !l.ended) {
            // The server offers the call anew while our previous leg is still open: it
            // gave up on that leg without a CANCEL (ringing) or without an ACK (answered).
            old.ended = true;
            anomaly = Some(if old.answered {
                "agent's 200 never ACKed: the server re-offered the call instead"
            } else {
                "call re-offered without a CANCEL of the ringing INVITE"
            });
        }
        c.leg_generation += 1;
        c.offers += 1;
        let generation = c.leg_generation;
        if c.first_agent_invite_at.is_none() {
            c.first_agent_invite_at = Some(now);
            if let Some(d) = c.digit_at {
                self.queue_to_agent.push_us(signed_us(now, d));
            }
        }
        if let Some(ag) = self.agents.get_mut(a) {
            match ag.pending_offer.take() {
                Some((oc, at)) if oc == ci => self.pop_lead.push_us(signed_us(now, at)),
                other => {
                    ag.pending_offer = other;
                    ag.early_invite = Some((ci, now));
                    self.pop_checks.push((a, ci));
                }
            }
        }
        self.tl
            .send_response(now, &key, response_to(&invite, 180, "Ringing", Some(&tag)));
        self.txs
            .insert(key.clone(), TxFor::AgentInvite(ci, generation));
        self.leg_by_sip_id.insert(sip_call_id, (ci, generation));
        if let Some(old) = c.leg.take() {
            c.old_legs.push(old);
        }
        c.leg = Some(AgentLeg {
            agent: a,
            generation,
            invite_key: key,
            invite,
            local_tag: tag,
            dialog: None,
            remote_rtp: None,
            answered: false,
            acked: false,
            ended: false,
        });
        let never = self.cfg.no_answer_pct > 0.0
            && rand::RngExt::random_bool(
                &mut self.rng,
                (self.cfg.no_answer_pct / 100.0).clamp(0.0, 1.0),
            );
        if !never {
            let delay = random_delay(&mut self.rng, self.cfg.answer_delay_ms);
            self.schedule(
                now + delay,
                Timer::AgentAnswer {
                    call: ci,
                    generation,
                },
            );
        }
        if let Some(what) = anomaly {
            self.log(format!("call {ci}: {what} (new INVITE to agent {a})"));
            self.anomaly(what);
        }
    }

    /// The agent picks up: 200 OK with our SDP answer.
    pub fn agent_answer(&mut self, now: Instant, ci: u32, generation: u32) {
        let Some(a) = self
            .calls
            .get(ci as usize)
            .and_then(|c| c.leg.as_ref())
            .map(|l| l.agent)
        else {
            return;
        };
        let local = self.agent_local(a);
        let session = self.ids.next_u64() >> 1;
        let agent_rtp = self.agent_rtp_addr;
        let server = self.server;
        let Some(c) = self.calls.get_mut(ci as usize) else {
            return;
        };
        if !matches!(c.phase, Phase::Dialling | Phase::Waiting) {
            return;
        }
        let Some(leg) = c
            .leg
            .as_mut()
            .filter(|l| l.generation == generation && !l.ended && !l.answered)
        else {
            return;
        };
        let answer = sdp::parse(leg.invite.body())
            .and_then(|offer| sdp::answer(&offer, &OURS, agent_rtp, session));
        let (body, negotiated) = match answer {
            Ok(x) => x,
            Err(_) => {
                let r = response_to(
                    &leg.invite,
                    488,
                    "Not Acceptable Here",
                    Some(&leg.local_tag),
                );
                leg.ended = true;
                let key = leg.invite_key.clone();
                c.fail("server's INVITE to the agent had no PCMU offer");
                self.tl.send_response(now, &key, r);
                return;
            }
        };
        let Ok(dialog) = Dialog::uas(&leg.invite, leg.local_tag.clone(), server) else {
            c.fail("server's INVITE to the agent had bad dialog headers");
            return;
        };
        leg.dialog = Some(dialog);
        leg.remote_rtp = Some(negotiated.remote);
        leg.answered = true;
        let ok = response_to(&leg.invite, 200, "OK", Some(&leg.local_tag))
            .with_header("Contact", &format!("<{}>", local.contact))
            .with_body("application/sdp", body.into_bytes());
        let key = leg.invite_key.clone();
        self.tl.send_response(now, &key, ok);
    }

    fn on_ack(&mut self, now: Instant, ack: &Request) {
        let Some(&(ci, generation)) = ack
            .call_id()
            .ok()
            .and_then(|id| self.leg_by_sip_id.get(&id))
        else {
            return;
        };
        let hold = self.cfg.hold;
        let Some(c) = self.calls.get_mut(ci as usize) else {
            return;
        };
        let Some(leg) = c
            .leg
            .as_mut()
            .filter(|l| l.generation == generation && l.answered && !l.acked)
        else {
            return;
        };
        leg.acked = true;
        let agent = leg.agent;
        if matches!(c.phase, Phase::Dialling | Phase::Waiting) {
            c.phase = Phase::Bridged;
            c.bridged_at = Some(now);
            c.agent_served = Some(agent);
            if let Some(a) = self.agents.get_mut(agent) {
                a.calls_answered += 1;
            }
            self.schedule(now + hold, Timer::Hangup { call: ci });
        }
    }

    fn on_cancel(&mut self, now: Instant, key: &TransactionKey, cancel: &Request) {
        self.tl
            .send_response(now, key, response_to(cancel, 200, "OK", None));
        let Some(invite_key) = self.tl.matching_invite(cancel) else {
            return;
        };
        let Some(&(ci, generation)) = cancel
            .call_id()
            .ok()
            .and_then(|id| self.leg_by_sip_id.get(&id))
        else {
            return;
        };
        let Some(c) = self.calls.get_mut(ci as usize) else {
            return;
        };
        let current = c.leg.as_ref().is_some_and(|l| l.generation == generation);
        let leg = c
            .leg
            .iter_mut()
            .chain(c.old_legs.iter_mut())
            .find(|l| l.generation == generation);
        let Some(leg) = leg else { return };
        if leg.answered {
            return; // the CANCEL crossed our 200: the server ACKs and BYEs that leg
        }
        leg.ended = true;
        if current {
            c.ring_outs += 1;
        }
        let r = response_to(&leg.invite, 487, "Request Terminated", Some(&leg.local_tag));
        self.tl.send_response(now, &invite_key, r);
    }

    fn on_bye(&mut self, now: Instant, key: &TransactionKey, bye: &Request) {
        self.tl
            .send_response(now, key, response_to(bye, 200, "OK", None));
        let Ok(id) = bye.call_id() else { return };
        if let Some(&ci) = self.call_by_sip_id.get(&id) {
            let Some(c) = self.calls.get_mut(ci as usize) else {
                return;
            };
            c.patient_ended = true;
            if !matches!(c.phase, Phase::Ending | Phase::Done) {
                c.fail("the server hung up on the patient");
                self.hang_up_all(now, ci);
            }
            self.leg_ended(now, ci);
            return;
        }
        if let Some(&(ci, generation)) = self.leg_by_sip_id.get(&id) {
            let Some(c) = self.calls.get_mut(ci as usize) else {
                return;
            };
            let current = c.leg.as_mut().filter(|l| l.generation == generation);
            let Some(leg) = current else { return }; // an old leg (answer crossed a CANCEL)
            leg.ended = true;
            if !leg.acked {
                // The server gave up on a leg it never confirmed (the CANCEL/200 race).
                return;
            }
            if !matches!(c.phase, Phase::Ending | Phase::Done) {
                c.fail("the server hung up on the agent");
                self.hang_up_all(now, ci);
            }
            self.leg_ended(now, ci);
        }
    }

    // ---- responses and timeouts --------------------------------------------------------

    fn on_response(&mut self, now: Instant, key: &TransactionKey, response: Response) {
        let Some(&purpose) = self.txs.get(key) else {
            return;
        };
        match purpose {
            TxFor::Register(a) => self.on_register_response(now, a, &response),
            TxFor::PatientInvite(i) => self.on_patient_invite_response(now, i, &response),
            TxFor::PatientBye(i) | TxFor::AgentBye(i) => {
                let status = response.status();
                if status < 200 {
                    return;
                }
                let Some(c) = self.calls.get_mut(i as usize) else {
                    return;
                };
                if status >= 300 && status != 481 {
                    c.fail("BYE refused");
                }
                match purpose {
                    TxFor::PatientBye(_) => c.patient_ended = true,
                    _ => {
                        if let Some(l) = c.leg.as_mut() {
                            l.ended = true;
                        }
                    }
                }
                self.txs.remove(key);
                self.leg_ended(now, i);
            }
            TxFor::AgentInvite(..) => {}
        }
    }

    fn on_timeout(&mut self, key: &TransactionKey) {
        let Some(purpose) = self.txs.remove(key) else {
            return;
        };
        let now = Instant::now();
        match purpose {
            TxFor::Register(a) => {
                if let Some(agent) = self.agents.get_mut(a) {
                    agent.failed = Some("REGISTER timed out".into());
                }
            }
            TxFor::PatientInvite(i) => {
                if let Some(c) = self.calls.get_mut(i as usize)
                    && c.patient_dialog.is_none()
                {
                    c.fail("INVITE timed out");
                    c.phase = Phase::Done;
                    c.ended_at = Some(now);
                }
            }
            TxFor::PatientBye(i) | TxFor::AgentBye(i) => {
                if let Some(c) = self.calls.get_mut(i as usize) {
                    c.fail("BYE timed out");
                    match purpose {
                        TxFor::PatientBye(_) => c.patient_ended = true,
                        _ => {
                            if let Some(l) = c.leg.as_mut() {
                                l.ended = true;
                            }
                        }
                    }
                }
                self.leg_ended(now, i);
            }
            TxFor::AgentInvite(i, generation) => {
                if let Some(c) = self.calls.get_mut(i as usize) {
                    let answered = c
                        .leg
                        .as_ref()
                        .is_some_and(|l| l.generation == generation && l.answered && !l.acked);
                    if answered {
                        c.fail("no ACK for the agent's 200");
                        if let Some(l) = c.leg.as_mut() {
                            l.ended = true;
                        }
                        self.hang_up_all(now, i);
                    }
                }
            }
        }
    }
}
