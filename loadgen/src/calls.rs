//! The generator's view of each patient call and each agent: plain data the engine updates.

use std::net::SocketAddr;
use std::time::Instant;

use media::rtp::RtpSender;
use sip::dialog::Dialog;
use sip::message::Request;
use sip::transaction::TransactionKey;

use crate::stats::Jitter;

/// Where a patient call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet.
    Pending,
    /// INVITE sent, no 200 yet.
    Inviting,
    /// Answered by the IVR: sending the digit.
    Dialling,
    /// Digit sent: in the queue, maybe ringing an agent.
    Waiting,
    /// The agent answered and was ACKed: media flows both ways and is measured.
    Bridged,
    /// Hold time is over: sending stopped, in-flight packets drain before the BYE.
    Draining,
    /// BYE sent or received; waiting for both legs to end.
    Ending,
    /// Both legs are over.
    Done,
}

/// The receive side of one direction of a call's media.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamRx {
    pub received: u32,
    pub out_of_order: u32,
    pub last_seq: Option<u32>,
    pub jitter: Jitter,
}

/// The leg the server opened to an agent's phone for this call.
#[derive(Debug)]
pub struct AgentLeg {
    pub agent: usize,
    pub generation: u32,
    pub invite_key: TransactionKey,
    pub invite: Request,
    pub local_tag: String,
    pub dialog: Option<Dialog>,
    /// Where the agent sends its RTP (the server's agent-leg port).
    pub remote_rtp: Option<SocketAddr>,
    pub answered: bool,
    pub acked: bool,
    pub ended: bool,
}

/// One patient call, from launch to both BYEs.
#[derive(Debug)]
pub struct Call {
    pub index: u32,
    pub caller: String,
    pub phase: Phase,
    /// The patient leg's Call-ID (kept for debugging output).
    #[allow(dead_code)]
    pub sip_call_id: String,
    pub invite_at: Option<Instant>,
    pub answered_at: Option<Instant>,
    pub digit_at: Option<Instant>,
    pub first_offer_at: Option<Instant>,
    pub first_agent_invite_at: Option<Instant>,
    pub bridged_at: Option<Instant>,
    pub hangup_at: Option<Instant>,
    pub ended_at: Option<Instant>,
    pub failure: Option<&'static str>,
    pub refused: bool,
    pub patient_invite: Option<Request>,
    pub patient_dialog: Option<Dialog>,
    pub patient_ended: bool,
    pub patient_rtp_remote: Option<SocketAddr>,
    pub patient_rtp: RtpSender,
    pub agent_rtp: RtpSender,
    /// DTMF packets sent so far for the digit (0..=6).
    pub dtmf_step: u8,
    pub dtmf_ts: u32,
    /// Next marker sequence number per direction (patient→agent, agent→patient).
    pub next_seq: [u32; 2],
    /// Packets sent inside the measured window, per direction.
    pub window_sent: [u32; 2],
    /// µs (run epoch) from which sent packets are measured; set once media is bridged.
    pub window_start_us: Option<u64>,
    pub rx: [StreamRx; 2],
    pub leg: Option<AgentLeg>,
    /// Earlier legs the server replaced, kept to answer a late CANCEL.
    pub old_legs: Vec<AgentLeg>,
    pub leg_generation: u32,
    pub offers: u32,
    pub ring_outs: u32,
    pub bye_from_agent: bool,
    /// The server's call id (from the screen-pop), which names the recording.
    pub server_call_id: Option<String>,
    pub agent_served: Option<usize>,
}

impl Call {
    pub fn new(index: u32, sip_call_id: String, ssrcs: (u32, u32), bye_from_agent: bool) -> Self {
        Call {
            index,
            caller: caller_number(index),
            phase: Phase::Pending,
            sip_call_id,
            invite_at: None,
            answered_at: None,
            digit_at: None,
            first_offer_at: None,
            first_agent_invite_at: None,
            bridged_at: None,
            hangup_at: None,
            ended_at: None,
            failure: None,
            refused: false,
            patient_invite: None,
            patient_dialog: None,
            patient_ended: false,
            patient_rtp_remote: None,
            patient_rtp: RtpSender::new(ssrcs.0, (ssrcs.0 >> 16) as u16, ssrcs.1),
            agent_rtp: RtpSender::new(ssrcs.1, (ssrcs.1 >> 16) as u16, ssrcs.0),
            dtmf_step: 0,
            dtmf_ts: 0,
            next_seq: [0; 2],
            window_sent: [0; 2],
            window_start_us: None,
            rx: [StreamRx::default(); 2],
            leg: None,
            old_legs: Vec::new(),
            leg_generation: 0,
            offers: 0,
            ring_outs: 0,
            bye_from_agent,
            server_call_id: None,
            agent_served: None,
        }
    }

    /// Records the first failure only (later ones are consequences).
    pub fn fail(&mut self, reason: &'static str) {
        if self.failure.is_none() {
            self.failure = Some(reason);
        }
    }

    /// Both legs over (or never opened).
    pub fn legs_over(&self) -> bool {
        let patient_over = self.patient_ended || self.patient_dialog.is_none();
        let agent_over = self.leg.as_ref().is_none_or(|l| l.ended || !l.answered);
        patient_over && agent_over
    }
}

/// The From user of call `index`: a made-up number that maps back to the index.
pub fn caller_number(index: u32) -> String {
    format!("139{index:08}")
}

/// The call index of a caller number made by [`caller_number`].
pub fn call_of_caller(caller: &str) -> Option<u32> {
    caller
        .strip_prefix("139")
        .filter(|d| d.len() == 8)
        .and_then(|d| d.parse().ok())
}

/// One load agent.
#[derive(Debug)]
pub struct Agent {
    pub id: String,
    pub password: String,
    pub token: Option<String>,
    pub desk_connected: bool,
    pub registered: bool,
    pub ready: bool,
    pub failed: Option<String>,
    pub register_call_id: String,
    pub register_cseq: u32,
    pub auth_attempts: u32,
    pub ready_attempts: u32,
    /// The latest offer screen-popped on this agent's desk and not yet matched to an INVITE.
    pub pending_offer: Option<(u32, Instant)>,
    /// An INVITE that arrived before its screen-pop (a violation, measured when the pop comes).
    pub early_invite: Option<(u32, Instant)>,
    pub calls_answered: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_numbers_map_back() {
        assert_eq!(caller_number(7), "13900000007");
        assert_eq!(call_of_caller(&caller_number(12_345_678)), Some(12_345_678));
        assert_eq!(call_of_caller("13800000001"), None);
        assert_eq!(call_of_caller("1390000001"), None);
    }
}
