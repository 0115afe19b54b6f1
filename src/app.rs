//! Wiring for `rollbot serve`: config → store → adapters → engine → HTTP.
//! Kept in the library so tests start the same application `main` does.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::chat::slack::Slack;
use crate::config::{Config, Target};
use crate::domain::{Plan, ServiceName, SystemClock};
use crate::engine::{Engine, Ports};
use crate::http::{self, AppState};
use crate::outbox::RetryPolicy;
use crate::ports::memory::MemoryChat;
use crate::ports::{
    Chat, CheckResult, ExecError, ExecErrorKind, ExecOutcome, Executor, Verdict, Verifier,
};
use crate::store::Store;

/// How often proposals are checked for expiry.
const TICK: Duration = Duration::from_secs(5);

/// Starts everything described by `config` and serves on `listener` until
/// `shutdown` resolves.
///
/// # Errors
/// A store that cannot be opened, a configured adapter this build cannot
/// run, or a server I/O failure — each with what to do.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if config.discord.is_some() {
        bail!(
            "[discord] is configured, but this rollbot build has no Discord adapter yet; remove the [discord] section to run without chat"
        );
    }
    let templates =
        Arc::new(crate::templates::Templates::load().context("loading message templates")?);
    let store = Store::open(&config.store.path)
        .with_context(|| format!("opening the store at {}", config.store.path.display()))?;
    let slack = match &config.slack {
        Some(c) => Some(
            Slack::new(c, &store, templates.clone(), &config.locale)
                .context("starting the Slack adapter")?,
        ),
        None => None,
    };
    let chat: Arc<dyn Chat> = match &slack {
        Some(s) => s.chat.clone(),
        // No chat platform configured: proposals are visible through the API only.
        None => MemoryChat::new(),
    };
    let ports = Ports {
        chat,
        executor: Arc::new(NoExecutor),
        verifier: Arc::new(NoChecks),
        clock: Arc::new(SystemClock),
    };
    let engine = Engine::new(store, config.services(), ports);
    let mut slack_routes = None;
    let mut background = Vec::new();
    let mut socket = None;
    if let (Some(slack), Some(c)) = (&slack, &config.slack) {
        background.push(slack.deliver(RetryPolicy::default()));
        slack
            .register_bot(&engine)
            .await
            .context("asking Slack who the bot is")?;
        let inbound = slack
            .inbound(c, engine.clone())
            .context("starting Slack's inbound handler")?;
        socket = slack
            .socket_mode(c, inbound.clone())
            .await
            .context("connecting Slack Socket Mode")?;
        slack_routes = Some(crate::chat::slack::inbound::router(
            inbound,
            config.server.body_limit_bytes,
        ));
    }
    engine
        .recover()
        .await
        .context("resuming interrupted proposals")?;
    let ready = Arc::new(AtomicBool::new(true));
    let state = AppState {
        engine: engine.clone(),
        ready,
    };
    let ticker = tokio::spawn({
        let engine = engine.clone();
        async move {
            let mut every = tokio::time::interval(TICK);
            loop {
                every.tick().await;
                if let Err(e) = engine.tick().await {
                    tracing::error!(error = %e, "expiry tick failed");
                }
            }
        }
    });
    let addr = listener.local_addr()?;
    tracing::info!(%addr, services = config.services.len(), "rollbot serving");
    let mut router = http::router(state, config.server.body_limit_bytes);
    if let Some(routes) = slack_routes {
        router = router.merge(routes);
    }
    let result = http::serve(listener, router, shutdown).await;
    ticker.abort();
    if let Some(socket) = socket {
        socket.shutdown().await;
    }
    engine.wait_idle().await;
    // The outbox is durable: what is still queued is delivered after a restart.
    for task in background {
        task.abort();
    }
    engine.store().flush().await?;
    result.context("HTTP server failed")
}

/// Used until a service's target kind has an executor in this build.
struct NoExecutor;

#[async_trait]
impl Executor for NoExecutor {
    async fn plan(&self, target: &Target, _to: Option<u64>) -> Result<Plan, ExecError> {
        Err(ExecError::new(
            ExecErrorKind::Unsupported,
            format!("this rollbot build cannot roll back {target} yet"),
        ))
    }

    async fn execute(
        &self,
        target: &Target,
        _plan: &Plan,
        _progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        Err(ExecError::new(
            ExecErrorKind::Unsupported,
            format!("this rollbot build cannot roll back {target} yet"),
        ))
    }
}

/// Verification for services without checks configured.
struct NoChecks;

#[async_trait]
impl Verifier for NoChecks {
    async fn verify(
        &self,
        _service: &ServiceName,
        _plan: &Plan,
        _results: mpsc::Sender<CheckResult>,
    ) -> Verdict {
        Verdict::NotConfigured
    }
}
