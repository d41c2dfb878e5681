//! The one error type of the ACD.

use crate::CallId;

/// Why the ACD refused an input; the state machine is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No queue of that name is configured.
    #[error("unknown queue {0:?}")]
    UnknownQueue(String),
    /// No agent of that id is configured.
    #[error("unknown agent {0:?}")]
    UnknownAgent(String),
    /// Two queues share a name in the configuration.
    #[error("duplicate queue {0:?}")]
    DuplicateQueue(String),
    /// Two agents share an id in the configuration.
    #[error("duplicate agent {0:?}")]
    DuplicateAgent(String),
    /// A queue overflows into a queue that does not exist, or into itself.
    #[error("queue {0:?} overflows into unknown queue or itself: {1:?}")]
    BadOverflow(String, String),
    /// A queue would ring agents for no time at all.
    #[error("queue {0:?} has a zero ring timeout")]
    ZeroRingTimeout(String),
    /// The call id is already waiting, offered or connected.
    #[error("call {0} is already in the acd")]
    DuplicateCall(CallId),
    /// The agent is not registered, so the desk cannot change readiness.
    #[error("agent {0:?} is offline")]
    AgentOffline(String),
    /// The call is not being offered to that agent (for example a 200 OK after ring-out).
    #[error("call {call} is not offered to agent {agent:?}")]
    NotOffered {
        /// The call the input named.
        call: CallId,
        /// The agent the input named.
        agent: String,
    },
    /// The agent has no connected call to end.
    #[error("agent {0:?} is not in a call")]
    NotTalking(String),
    /// No agent is connected to that call (it is waiting, ended or unknown).
    #[error("call {0} is not connected to an agent")]
    NotConnected(CallId),
    /// Only after-call work can be extended.
    #[error("agent {0:?} is not being consulted about agent {1:?}'s call")]
    NotConsulting(String, String),

    #[error("agent {0:?} is not in wrap-up")]
    NotInWrapUp(String),
    /// A caller can be handed only to an agent who is ready and free.
    #[error("agent {0:?} is not free to take a call ({1})")]
    AgentNotFree(String, &'static str),
    /// The queue's rules would turn the caller away (full, nobody to answer).
    #[error("queue {0:?} would not take the caller ({1:?})")]
    QueueRefuses(String, crate::queue::ExitReason),
}
