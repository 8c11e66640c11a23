//! `tollgate`: one binary for the admin service, the developer portal, gateway nodes and a
//! single-process development mode. Flags and environment are parsed here (see [`cli`]); the
//! libraries receive typed configuration.

mod alloc;
mod cli;
mod commands;
mod dev;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};

/// mimalloc instead of the system allocator: the proxy path allocates a few dozen small
/// blocks per request, and glibc's malloc/free cost about a tenth of its user-space time
/// (called as [`alloc`] explains).
#[global_allocator]
static GLOBAL: alloc::Mimalloc = alloc::Mimalloc;

fn main() -> ExitCode {
    // Harmless with a single provider; guards against a dependency bringing in a second one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    if let Err(err) = init_tracing(&cli.log_filter, cli.log_format) {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    // One worker: a current-thread runtime, which skips work stealing and cross-thread wakeups.
    let mut runtime = match cli.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(n));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let outcome = runtime
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, the whole cause chain, no backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Dev(args) => dev::run(*args).await,
        Command::Admin(args) => commands::admin(args).await,
        Command::Portal(args) => commands::portal(args).await,
        Command::Gateway(args) => commands::gateway(*args).await,
        Command::Migrate(args) => commands::migrate(args).await,
        Command::Secrets(cmd) => commands::secrets(cmd).await,
        Command::Config(cmd) => commands::config(cmd).await,
    }
}

/// Logs go to stderr (stdout carries the dev banner and first-run passwords). rustls logs a
/// line per odd handshake (an IP address as SNI, a client's alert) at warn and below: any
/// client could fill the log with them, so they are kept to errors unless the filter names
/// rustls itself.
fn init_tracing(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let text = if filter.contains("rustls") { filter.to_owned() } else { format!("{filter},rustls=error") };
    let filter = EnvFilter::try_new(&text).map_err(|e| anyhow::anyhow!("invalid log filter {filter:?}: {e}"))?;
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
