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
    /// Probe a running rollbot's health endpoint (for container HEALTHCHECKs;
    /// needs no curl in the image). Exits 0 when it answers 200.
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    /// Check a configuration file and print every problem with its key path.
    CheckConfig {
        #[arg(long, short, env = "ROLLBOT_CONFIG")]
        config: PathBuf,
    },
    /// Run the reference incident end to end on a simulated cluster, with the
    /// #incidents channel shown in the terminal. Needs no configuration.
    Demo(rollbot::demo::DemoArgs),
    /// Run the simulated Kubernetes API server (drills, demos, tests);
    /// real kubectl works against it.
    Sim(rollbot::sim::SimArgs),
    /// Rehearse a service's rollback: copy its workload and revision history
    /// read-only from the configured cluster into an in-process simulator
    /// and run the whole flow there (marked DRILL), with scripted approvals.
    Drill(rollbot::drill_cli::DrillArgs),
    /// Print a proposal's draft incident report (Markdown).
    ///
    /// With --url it asks the running server (GET /api/v1/proposals/ID/report).
    /// Otherwise it reads the store named in the config directly; `serve`
    /// holds the store's lock, so while it runs use --url.
    Report {
        /// The proposal id, e.g. RB-7K3M9Q.
        id: String,
        /// Report language (en, zh, ja); defaults to the proposal's.
        #[arg(long)]
        locale: Option<String>,
        #[arg(long, short, env = "ROLLBOT_CONFIG")]
        config: Option<PathBuf>,
        /// Base URL of a running rollbot, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "ROLLBOT_URL")]
        url: Option<String>,
        /// Also write the chart PNG here (store mode only).
        #[arg(long)]
        chart: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config).and_then(|c| {
            // What `serve` would refuse: targets of a kind it has no executor for.
            let mut problems = rollbot::app::unserved_targets(&c);
            // Channels on a platform that is not configured.
            problems.extend(rollbot::app::unconfigured_channels(&c));
            // What would fail in an incident: a Docker endpoint that does not answer.
            problems.extend(swarm_endpoints_unreachable(&c));
            if problems.is_empty() {
                Ok(c)
            } else {
                Err(rollbot::config::ConfigError {
                    file: config.display().to_string(),
                    problems,
                })
            }
        }) {
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
        Command::Healthcheck { url } => match rollbot::app::probe(&url) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rollbot healthcheck: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Demo(args) => {
            init_tracing_with("warn");
            let result = tokio::runtime::Runtime::new()
                .context("starting the async runtime")
                .and_then(|rt| rt.block_on(rollbot::demo::run(args)));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rollbot demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sim(args) => {
            init_tracing();
            let result = tokio::runtime::Runtime::new()
                .context("starting the async runtime")
                .and_then(|rt| rt.block_on(rollbot::sim::run(args)));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rollbot sim: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Drill(args) => {
            init_tracing();
            let result = tokio::runtime::Runtime::new()
                .context("starting the async runtime")
                .and_then(|rt| rt.block_on(rollbot::drill_cli::run_cli(args)));
            match result {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(2),
                Err(e) => {
                    eprintln!("rollbot drill: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Report {
            id,
            locale,
            config,
            url,
            chart,
        } => match run_report(id, locale, config, url, chart) {
            Ok(markdown) => {
                print!("{markdown}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rollbot report: {e:#}");
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

/// The Swarm targets whose Docker endpoint does not answer (none when no
/// service targets Swarm, without starting a runtime).
fn swarm_endpoints_unreachable(config: &Config) -> Vec<rollbot::config::Problem> {
    if config.services.values().all(|s| s.swarm.is_none()) {
        return Vec::new();
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let targets = config
                .services
                .iter()
                .filter_map(|(name, s)| Some((name.as_str(), s.swarm.as_ref()?)));
            rt.block_on(rollbot::exec::swarm::unreachable(targets))
                .into_iter()
                .map(|(name, e)| {
                    rollbot::config::Problem::new(
                        format!("services.{name}.swarm.docker_host"),
                        e.to_string(),
                    )
                })
                .collect()
        }
        Err(e) => vec![rollbot::config::Problem::new(
            "<runtime>",
            format!("cannot start the async runtime to reach Docker: {e}"),
        )],
    }
}

fn init_tracing() {
    init_tracing_with("info");
}

fn init_tracing_with(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROLLBOT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
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
        let signal = stop_signal().context("installing the SIGTERM and SIGINT handlers")?;
        rollbot::app::serve(config, listener, signal).await
    })
}

/// Resolves on SIGTERM (Kubernetes, `docker stop`) or SIGINT (Ctrl-C):
/// either starts the graceful shutdown of [`rollbot::app::App::serve`].
/// Installed before serving so an early signal is not lost.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stop requested");
    })
}

fn run_report(
    id: String,
    locale: Option<String>,
    config: Option<PathBuf>,
    url: Option<String>,
    chart: Option<PathBuf>,
) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        if let Some(url) = url {
            if chart.is_some() {
                anyhow::bail!("--chart works only when reading the store; drop --url or --chart");
            }
            let mut request = reqwest::Client::new()
                .get(format!("{}/api/v1/proposals/{id}/report", url.trim_end_matches('/')));
            if let Some(l) = &locale {
                request = request.query(&[("locale", l)]);
            }
            let resp = request
                .send()
                .await
                .with_context(|| format!("cannot reach rollbot at {url}; is `rollbot serve` running there?"))?;
            let status = resp.status();
            let body = resp.text().await.context("reading the report")?;
            if !status.is_success() {
                anyhow::bail!("{url} answered {status}: {}", body.trim());
            }
            return Ok(body);
        }
        let Some(config) = config else {
            anyhow::bail!("give --config FILE (to read its store) or --url URL (to ask a running rollbot)");
        };
        let config = Config::load(&config)?;
        let id = rollbot::domain::ProposalId::parse(&id)?;
        let store = rollbot::store::Store::open(&config.store.path).map_err(|e| {
            anyhow::anyhow!(
                "{e}\nIf `rollbot serve` is running it holds the store's lock: ask it instead with --url http://HOST:PORT"
            )
        })?;
        let services = config.services();
        let engine = rollbot::engine::Engine::new(
            store,
            services.clone(),
            rollbot::engine::Ports {
                chat: rollbot::ports::memory::MemoryChat::new(),
                executor: std::sync::Arc::new(ReadOnly),
                verifier: std::sync::Arc::new(rollbot::verify::HttpVerifier::new(&services)),
                clock: std::sync::Arc::new(rollbot::domain::SystemClock),
            },
        );
        let locale = match locale {
            Some(l) => l,
            None => engine.get(&id)?.locale,
        };
        let draft = engine.report(&id, &locale).await?;
        if let Some(path) = chart {
            match &draft.chart_png {
                Some(png) => std::fs::write(&path, png)
                    .with_context(|| format!("writing the chart to {}", path.display()))?,
                None => eprintln!("no chart: the service has no Prometheus check, or Prometheus had no data"),
            }
        }
        Ok(draft.markdown)
    })
}

/// `rollbot report` never rolls anything back.
struct ReadOnly;

#[async_trait::async_trait]
impl rollbot::ports::Executor for ReadOnly {
    async fn plan(
        &self,
        _t: &rollbot::exec::Target,
        _request: &rollbot::ports::PlanRequest,
    ) -> Result<rollbot::domain::Plan, rollbot::ports::ExecError> {
        Err(read_only())
    }

    async fn execute(
        &self,
        _t: &rollbot::exec::Target,
        _plan: &rollbot::domain::Plan,
        _progress: tokio::sync::mpsc::Sender<String>,
    ) -> Result<rollbot::ports::ExecOutcome, rollbot::ports::ExecError> {
        Err(read_only())
    }
}

fn read_only() -> rollbot::ports::ExecError {
    rollbot::ports::ExecError::new(
        rollbot::ports::ExecErrorKind::Unsupported,
        "`rollbot report` only reads; use `rollbot serve` to roll back",
    )
}
