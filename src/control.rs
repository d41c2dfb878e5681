//! Commands from the HTTP side to call control.
//!
//! Call control owns the ACD; HTTP handlers never touch it directly. They send a
//! [`ControlCommand`] through a [`ControlHandle`] and await the reply.

use tokio::sync::{mpsc, oneshot};

pub use callcore::desk::{AgentView, ControlError, QueueView};

/// A request to call control, with where to send the answer.
#[derive(Debug)]
pub enum ControlCommand {
    Agents {
        reply: oneshot::Sender<Vec<AgentView>>,
    },
    Queues {
        reply: oneshot::Sender<Vec<QueueView>>,
    },
    SetAgentState {
        agent: String,
        ready: bool,
        reason: Option<String>,
        reply: oneshot::Sender<Result<AgentView, ControlError>>,
    },
    ExtendWrapUp {
        agent: String,
        by: std::time::Duration,
        reply: oneshot::Sender<Result<AgentView, ControlError>>,
    },
    Transfer {
        agent: String,
        to: callcore::TransferTarget,
        reply: oneshot::Sender<Result<AgentView, ControlError>>,
    },
    Consult {
        agent: String,
        step: ConsultStep,
        reply: oneshot::Sender<Result<AgentView, ControlError>>,
    },
    /// The desk holds (`held`) or takes back the caller.
    Hold {
        agent: String,
        held: bool,
        reply: oneshot::Sender<Result<AgentView, ControlError>>,
    },
    /// The desk hangs up the call.
    HangUp {
        agent: String,
        reply: oneshot::Sender<Result<AgentView, ControlError>>,
    },
}

/// A step of an attended transfer from the desk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsultStep {
    /// Consult this agent, or whoever this queue gives (its phone rings; the caller stays
    /// with the agent meanwhile).
    Start(callcore::TransferTarget),
    /// Hand the caller to the consulted agent (who answered).
    Complete,
    /// End the consultation; the caller is back with the agent.
    Cancel,
}

/// Cheap to clone; every HTTP handler holds one.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<ControlCommand>,
}

impl ControlHandle {
    /// A handle and the receiving end call control reads from.
    pub fn channel() -> (Self, mpsc::Receiver<ControlCommand>) {
        let (tx, rx) = mpsc::channel(64);
        (Self { tx }, rx)
    }

    /// Sends the command `make` builds around its reply channel; awaits the reply.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> ControlCommand,
    ) -> Result<T, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| ControlError::Unavailable)?;
        rx.await.map_err(|_| ControlError::Unavailable)
    }

    pub async fn agents(&self) -> Result<Vec<AgentView>, ControlError> {
        self.ask(|reply| ControlCommand::Agents { reply }).await
    }

    pub async fn queues(&self) -> Result<Vec<QueueView>, ControlError> {
        self.ask(|reply| ControlCommand::Queues { reply }).await
    }

    pub async fn set_agent_state(
        &self,
        agent: &str,
        ready: bool,
        reason: Option<String>,
    ) -> Result<AgentView, ControlError> {
        let agent = agent.to_owned();
        self.ask(|reply| ControlCommand::SetAgentState {
            agent,
            ready,
            reason,
            reply,
        })
        .await?
    }

    pub async fn extend_wrap_up(
        &self,
        agent: &str,
        by: std::time::Duration,
    ) -> Result<AgentView, ControlError> {
        let agent = agent.to_owned();
        self.ask(|reply| ControlCommand::ExtendWrapUp { agent, by, reply })
            .await?
    }

    /// Blind transfer of the call `agent` is on.
    pub async fn transfer(
        &self,
        agent: &str,
        to: callcore::TransferTarget,
    ) -> Result<AgentView, ControlError> {
        let agent = agent.to_owned();
        self.ask(|reply| ControlCommand::Transfer { agent, to, reply })
            .await?
    }

    /// Holds (`held`) or takes back the caller `agent` is talking to, from the desk.
    pub async fn hold(&self, agent: &str, held: bool) -> Result<AgentView, ControlError> {
        let agent = agent.to_owned();
        self.ask(|reply| ControlCommand::Hold { agent, held, reply })
            .await?
    }

    /// Hangs up the call `agent` is talking to, from the desk (both phones get a BYE).
    pub async fn hang_up(&self, agent: &str) -> Result<AgentView, ControlError> {
        let agent = agent.to_owned();
        self.ask(|reply| ControlCommand::HangUp { agent, reply })
            .await?
    }

    /// A step of an attended transfer of the call `agent` is on.
    pub async fn consult(&self, agent: &str, step: ConsultStep) -> Result<AgentView, ControlError> {
        let agent = agent.to_owned();
        self.ask(|reply| ControlCommand::Consult { agent, step, reply })
            .await?
    }
}
