//! Wiring for `rollbot serve`: config → store → adapters → engine → HTTP.
//! Kept in the library so tests start the same application `main` does.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::{Config, Target};
use crate::domain::{Plan, ServiceName, SystemClock};
use crate::engine::{Engine, Ports};
use crate::http::{self, AppState};
use crate::ports::memory::MemoryChat;
use crate::ports::{
    CheckResult, ExecError, ExecErrorKind, ExecOutcome, Executor, Verdict, Verifier,
};
use crate::store::Store;

/// How often proposals are checked for expiry and pending alerts for their
/// minimum firing duration.
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
    if config.slack.is_some() {
        bail!(
            "[slack] is configured, but this rollbot build has no Slack adapter yet; remove the [slack] section to run without chat"
        );
    }
    if config.discord.is_some() {
        bail!(
            "[discord] is configured, but this rollbot build has no Discord adapter yet; remove the [discord] section to run without chat"
        );
    }
    crate::templates::Templates::load().context("loading message templates")?;
    let webhooks = http::webhooks::Webhooks::from_config(config.alerts.as_ref())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("reading the [alerts] webhook secrets")?;
    let store = Store::open(&config.store.path)
        .with_context(|| format!("opening the store at {}", config.store.path.display()))?;
    let ports = Ports {
        // No chat platform configured: proposals are visible through the API only.
        chat: MemoryChat::new(),
        executor: Arc::new(NoExecutor),
        verifier: Arc::new(NoChecks),
        clock: Arc::new(SystemClock),
    };
    let engine = Engine::new(store, config.services(), ports);
    engine
        .recover()
        .await
        .context("resuming interrupted proposals")?;
    let ready = Arc::new(AtomicBool::new(true));
    let state = AppState {
        webhooks: Arc::new(webhooks),
        ..AppState::new(engine.clone(), ready)
    };
    let ticker = tokio::spawn({
        let engine = engine.clone();
        async move {
            let mut every = tokio::time::interval(TICK);
            loop {
                every.tick().await;
                if let Err(e) = engine.tick().await {
                    tracing::error!(error = %e, "tick (expiry, pending alerts) failed");
                }
            }
        }
    });
    let addr = listener.local_addr()?;
    tracing::info!(%addr, services = config.services.len(), "rollbot serving");
    let router = http::router(state, config.server.body_limit_bytes);
    let result = http::serve(listener, router, shutdown).await;
    ticker.abort();
    engine.wait_idle().await;
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
