//! The `rollbot` command line: parses options and wires the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rollbot::config::Config;

/// rollbot — ChatOps incident rollback with a two-person rule.
///
/// An alert or a `/rollback` command opens a rollback proposal in the
/// incident channel; two different authorised people approve it; rollbot
/// rolls back, verifies recovery and drafts the incident report.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bot: HTTP webhooks and API, chat adapters, the engine.
    Serve {
        /// Configuration file (TOML). See config/rollbot.example.toml.
        #[arg(long, short, env = "ROLLBOT_CONFIG")]
        config: PathBuf,
        /// Listen address; overrides server.listen from the config.
        #[arg(long, env = "ROLLBOT_LISTEN")]
        listen: Option<String>,
    },
    /// Check a configuration file and print every problem with its key path.
    CheckConfig {
        #[arg(long, short, env = "ROLLBOT_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(_) if let Err(e) = rollbot::report::templates() => {
                eprintln!("message templates: {e}");
                ExitCode::FAILURE
            }
            Ok(c) => {
                println!(
                    "{}: OK ({} service(s), {} group(s))",
                    config.display(),
                    c.services.len(),
                    c.groups.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { config, listen } => {
            init_tracing();
            match run_serve(config, listen) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rollbot: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROLLBOT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn run_serve(config: PathBuf, listen: Option<String>) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    let addr = listen.unwrap_or_else(|| config.server.listen.clone());
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}; is another process using it?"))?;
        rollbot::app::serve(config, listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })
}
