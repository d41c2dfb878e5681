//! The `switchboard` command: serve, check a config, print the demo config.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchboard::config::{Config, ConfigErrors, DEMO_CONFIG};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// SIP/RTP call-center adapter for clinics.
#[derive(Parser)]
#[command(name = "switchboard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the adapter (the embedded demo clinic unless --config is given).
    Serve {
        /// The config file (see `switchboard default-config`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Check a config file: a one-line summary, or every problem as FILE:LINE:COL: message.
    Check {
        /// The config file.
        file: PathBuf,
    },
    /// Print the embedded demo config, a commented starting point for a clinic.
    DefaultConfig,
    /// Patient records.
    Patients {
        #[command(subcommand)]
        command: PatientsCommand,
    },
}

#[derive(Subcommand)]
enum PatientsCommand {
    /// Import (insert or replace by phone) patient records from a CSV file with a header
    /// row; every rejected row is reported with its line and why, and imports nothing.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// The config whose database to write (the demo clinic's unless given).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Serve { config } => serve(config.as_deref()),
        Command::Check { file } => check(&file),
        Command::DefaultConfig => default_config(),
        Command::Patients {
            command: PatientsCommand::Import { file, config },
        } => import_patients(&file, config.as_deref()),
    }
}

/// `switchboard patients import`: the report on stdout, exit status 1 if any row was rejected.
fn import_patients(file: &Path, config: Option<&Path>) -> ExitCode {
    let config = match config {
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(err) => {
                report(&err);
                return ExitCode::FAILURE;
            }
        },
        None => Config::demo(),
    };
    let csv = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(err) => {
            eprintln!("switchboard: cannot read {}: {err}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let storage = match switchboard::storage::Storage::open(&config.storage.database) {
        Ok(s) => s,
        Err(err) => {
            eprintln!(
                "switchboard: cannot open the database {}: {err}",
                config.storage.database
            );
            return ExitCode::FAILURE;
        }
    };
    match switchboard::patients::import(&storage, std::io::BufReader::new(csv)) {
        Ok(done) => {
            for r in &done.rejected {
                println!("{}:{}: rejected: {}", file.display(), r.line, r.reason);
            }
            println!(
                "{}: {} imported, {} rejected",
                file.display(),
                done.imported,
                done.rejected.len()
            );
            if let Err(err) = storage.audit("cli", "patients_import", &file.display().to_string()) {
                eprintln!("switchboard: the import is not in the audit log: {err}");
            }
            if done.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("switchboard: {}: {err}; nothing imported", file.display());
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn check(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(config) => {
            println!("{}: ok — {}", file.display(), config.summary());
            ExitCode::SUCCESS
        }
        Err(err) => {
            report(&err);
            ExitCode::FAILURE
        }
    }
}

/// Prints every problem of a config on stderr, one per line.
fn report(err: &ConfigErrors) {
    match err {
        ConfigErrors::Invalid(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
        }
        other => eprintln!("switchboard: {other}"),
    }
}

fn default_config() -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out
        .write_all(DEMO_CONFIG.as_bytes())
        .and_then(|()| out.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is the reader's choice, not a failure worth a message.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("switchboard: cannot write: {err}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: Option<&Path>) -> ExitCode {
    let config = match path {
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(err) => {
                report(&err);
                eprintln!("switchboard: not starting: fix {} first", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => {
            tracing::info!("no --config given: serving the embedded demo clinic");
            Config::demo()
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("switchboard: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        tracing::info!(clinic = %config.clinic.name, "starting");
        switchboard::serve::run(config, shutdown).await
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("switchboard: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM; a second Ctrl-C exits at once.
async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = interrupt => tracing::info!("Ctrl-C: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
    shutdown.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        tracing::warn!("second Ctrl-C: exiting now");
        std::process::exit(130);
    }
}
