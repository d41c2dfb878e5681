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

    pub async fn agents(&self) -> Result<Vec<AgentView>, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(ControlCommand::Agents { reply })
            .await
            .map_err(|_| ControlError::Unavailable)?;
        rx.await.map_err(|_| ControlError::Unavailable)
    }

    pub async fn queues(&self) -> Result<Vec<QueueView>, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(ControlCommand::Queues { reply })
            .await
            .map_err(|_| ControlError::Unavailable)?;
        rx.await.map_err(|_| ControlError::Unavailable)
    }

    pub async fn set_agent_state(
        &self,
        agent: &str,
        ready: bool,
        reason: Option<String>,
    ) -> Result<AgentView, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(ControlCommand::SetAgentState {
                agent: agent.to_owned(),
                ready,
                reason,
                reply,
            })
            .await
            .map_err(|_| ControlError::Unavailable)?;
        rx.await.map_err(|_| ControlError::Unavailable)?
    }

    pub async fn extend_wrap_up(
        &self,
        agent: &str,
        by: std::time::Duration,
    ) -> Result<AgentView, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(ControlCommand::ExtendWrapUp {
                agent: agent.to_owned(),
                by,
                reply,
            })
            .await
            .map_err(|_| ControlError::Unavailable)?;
        rx.await.map_err(|_| ControlError::Unavailable)?
    }
}
