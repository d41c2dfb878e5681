//! The TOML config (stub: being written).

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {}
