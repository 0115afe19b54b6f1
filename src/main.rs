//! The `rollbot` binary: parses the command line and wires the library.

use clap::{Parser, Subcommand};

/// ChatOps bot for incident rollback with a two-person rule.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the simulated Kubernetes API server (for demos and tests).
    Sim(rollbot::sim::SimArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    match Cli::parse().command {
        Command::Sim(args) => rollbot::sim::run(args).await,
    }
}
