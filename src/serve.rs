//! `switchboard serve`: bind the sockets, start every task, run until shut down.

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Runs the adapter until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let _ = (config, shutdown);
    anyhow::bail!("not yet wired")
}
