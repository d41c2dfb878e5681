//! IVR: the menu model read from `[ivr.menus]` and the sans-IO menu session.
//!
//! - [`action`]: what a key press or a failed menu leads to (`queue:NAME`, `menu:NAME`, `hangup`).
//! - [`menu`]: [`Menu`] and [`Menus`] (serde) and their validation for the config checker.
//! - [`session`]: [`IvrSession`], one caller walking the menus (`handle_*` in, `poll_*` out).

pub mod action;
pub mod menu;
pub mod session;

pub use action::Action;
pub use menu::{DTMF_KEYS, Menu, Menus};
pub use session::{IvrOutput, IvrSession};

/// Errors from parsing actions and building sessions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An action string that is not `queue:NAME`, `menu:NAME` or `hangup`.
    #[error("invalid action {0:?}: expected \"queue:NAME\", \"menu:NAME\" or \"hangup\"")]
    InvalidAction(String),
    /// A menu name that is not configured.
    #[error("unknown menu {0:?}")]
    UnknownMenu(String),
}
