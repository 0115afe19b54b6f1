//! Wiring for `rollbot serve`: config → store → adapters → engine → HTTP.
//! Kept in the library so tests start the same application `main` does.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use crate::chat::slack::Slack;
use crate::config::Config;
use crate::domain::SystemClock;
use crate::engine::{Engine, Ports};
use crate::exec::KubeRollback;
use crate::http::{self, AppState};
use crate::outbox::RetryPolicy;
use crate::ports::Chat;
use crate::store::Store;
use crate::verify::HttpVerifier;

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
    App::start(&config, None)
        .await?
        .serve(listener, shutdown)
        .await
}

/// A started rollbot: engine, adapters and the HTTP router, ready to serve.
/// `serve` and `demo` build it the same way; only the chat may differ.
pub struct App {
    engine: Engine,
    router: axum::Router,
    ticker: tokio::task::JoinHandle<()>,
    socket: Option<crate::chat::slack::socket::SocketMode>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Opens the store, starts the configured adapters and the engine.
    /// `chat` replaces the configured chat platform (the demo's console).
    ///
    /// # Errors
    /// As [`serve`].
    pub async fn start(config: &Config, chat: Option<Arc<dyn Chat>>) -> anyhow::Result<Self> {
        if config.discord.is_some() {
            bail!(
                "[discord] is configured, but this rollbot build has no Discord adapter yet; remove the [discord] section to run without chat"
            );
        }
        // The one template set the engine, the report and every chat render
        // with, compiled (and checked) once, here.
        let templates = match crate::report::shared_templates() {
            Ok(t) => t,
            Err(e) => bail!("loading message templates: {e}"),
        };
        let webhooks = http::webhooks::Webhooks::from_config(config.alerts.as_ref())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("reading the [alerts] webhook secrets")?;
        let store = Store::open(&config.store.path)
            .with_context(|| format!("opening the store at {}", config.store.path.display()))?;
        let slack = match (&config.slack, &chat) {
            (Some(c), None) => Some(
                Slack::new(c, &store, templates.clone()).context("starting the Slack adapter")?,
            ),
            _ => None,
        };
        let chat: Arc<dyn Chat> = match (&slack, chat) {
            (_, Some(chat)) => chat,
            (Some(s), None) => s.chat.clone(),
            // No chat platform configured: proposals are visible through the API only.
            (None, None) => Arc::new(crate::chat::none::NoChat),
        };
        let kube = KubeRollback::connect(config.kubernetes.as_ref())
            .await
            .context("connecting to Kubernetes")?;
        // Drills copy workloads read-only with the same credentials.
        let drills = Arc::new(crate::drill::Drills::new(kube.client()));
        let ports = Ports {
            chat,
            executor: Arc::new(kube),
            verifier: Arc::new(HttpVerifier::new(&config.services())),
            clock: Arc::new(SystemClock),
        };
        let engine = Engine::new(store, config.services(), ports);
        engine.set_dedup_retention(config.store.dedup_retention());
        engine.enable_drills(drills);
        let mut slack_routes = None;
        let mut background = Vec::new();
        let mut socket = None;
        let mut inbounds = Vec::new();
        if let (Some(slack), Some(c)) = (&slack, &config.slack) {
            background.push(slack.deliver(RetryPolicy::default()));
            slack
                .register_bot(&engine)
                .await
                .context("asking Slack who the bot is")?;
            let groups = slack
                .user_groups(
                    config.slack_user_groups(),
                    &engine,
                    crate::chat::slack::user_groups::REFRESH,
                )
                .await
                .context("reading approver groups from Slack")?;
            background.extend(groups);
            let inbound = slack
                .inbound(c, engine.clone())
                .context("starting Slack's inbound handler")?;
            socket = slack
                .socket_mode(c, inbound.clone())
                .await
                .context("connecting Slack Socket Mode")?;
            inbounds.push(inbound.clone());
            slack_routes = Some(crate::chat::slack::inbound::router(
                inbound,
                config.server.body_limit_bytes,
            ));
        }
        engine
            .recover()
            .await
            .context("resuming interrupted proposals")?;
        for inbound in inbounds {
            inbound
                .resume()
                .context("resuming chat commands acknowledged before the restart")?;
        }
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
        let mut router = http::router(state, config.server.body_limit_bytes);
        if let Some(routes) = slack_routes {
            router = router.merge(routes);
        }
        tracing::info!(services = config.services.len(), "rollbot started");
        Ok(Self {
            engine,
            router,
            ticker,
            socket,
            background,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves HTTP on `listener` until `shutdown` resolves, then stops
    /// cleanly: running rollbacks finish, the store is flushed.
    ///
    /// # Errors
    /// An I/O failure of the server or the store.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "rollbot serving");
        let result = http::serve(listener, self.router, shutdown).await;
        self.ticker.abort();
        if let Some(socket) = self.socket {
            socket.shutdown().await;
        }
        self.engine.wait_idle().await;
        // The outbox is durable: what is still queued is delivered after a restart.
        for task in self.background {
            task.abort();
        }
        self.engine.store().flush().await?;
        result.context("HTTP server failed")
    }
}

/// A plain-HTTP GET of `url` that succeeds on status 200; used by
/// `rollbot healthcheck` so container images need no curl.
///
/// # Errors
/// When the URL is not `http://host:port/path`, the connection fails, or
/// the status is not 200.
pub fn probe(url: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs can be probed"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to no address"))?;
    let timeout = Duration::from_secs(3);
    let mut conn = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {authority}"))?;
    conn.set_read_timeout(Some(timeout))?;
    write!(
        conn,
        "GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = conn.read(&mut head)?;
    let status = String::from_utf8_lossy(&head[..n]);
    if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        bail!(
            "{url} answered {:?}",
            status.lines().next().unwrap_or_default()
        )
    }
}
