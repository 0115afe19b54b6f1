//! Wiring for `rollbot serve`: config → store → adapters → engine → HTTP.
//! Kept in the library so tests start the same application `main` does.
//!
//! Start-up waits for nothing outside rollbot but the store and, when a
//! service targets Kubernetes, the Kubernetes client's configuration: chat platforms connect in the
//! background (see [`crate::chat::slack`]) so alerts are taken during a
//! chat outage. Stopping ([`App::serve`]) is bounded by
//! `server.shutdown_grace`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::chat::discord::Discord;
use crate::chat::handler::CommandHandler;
use crate::chat::router::ChatRouter;
use crate::chat::slack::{ConnectPolicy, Connection, Slack};
use crate::config::{Config, Problem};
use crate::domain::SystemClock;
use crate::engine::{Engine, Ports};
use crate::exec::{
    COMMAND, CommandExecutor, Executors, HELM, HelmExecutor, KUBERNETES, KubeRollback, SWARM,
    SwarmRollback,
};
use crate::http::{self, AppState, ChatStatus};
use crate::outbox::RetryPolicy;
use crate::ports::Chat;
use crate::store::Store;
use crate::verify::HttpVerifier;

/// How often proposals are checked for expiry and pending alerts for their
/// minimum firing duration.
const TICK: Duration = Duration::from_secs(5);

/// Starts everything described by `config` and serves on `listener` until
/// `shutdown` resolves (see [`App::serve`]).
///
/// # Errors
/// A store that cannot be opened, a configured adapter this build cannot
/// run, a chat platform refusing rollbot's credentials, or a server I/O
/// failure — each with what to do.
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
    /// Told to stop taking new work; the ticker and the HTTP server listen.
    stopping: watch::Sender<bool>,
    ticker: tokio::task::JoinHandle<()>,
    slack: Option<Connection>,
    discord: Option<crate::chat::discord::Connection>,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Definitive failures of adapters connecting in the background.
    fatal: mpsc::UnboundedReceiver<anyhow::Error>,
    grace: Duration,
}

impl App {
    /// Opens the store, starts the configured adapters and the engine.
    /// Messages go to the adapter of their channel's platform (see
    /// [`ChatRouter`]); `chat` (the demo's console) takes the channels of
    /// every platform that is not configured.
    ///
    /// # Errors
    /// As [`serve`].
    pub async fn start(config: &Config, chat: Option<Arc<dyn Chat>>) -> anyhow::Result<Self> {
        // The one template set the engine, the report and every chat render
        // with, compiled (and checked) once, here.
        let templates = match crate::report::shared_templates() {
            Ok(t) => t,
            Err(e) => bail!("loading message templates: {e}"),
        };
        let webhooks = http::webhooks::Webhooks::from_config(config.alerts.as_ref())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("reading the [alerts] webhook secrets")?;
        let store = Store::open_with_cache(&config.store.path, config.store.cache_mib)
            .with_context(|| format!("opening the store at {}", config.store.path.display()))?;
        let slack = match &config.slack {
            Some(c) => Some(
                Slack::new(c, &store, templates.clone()).context("starting the Slack adapter")?,
            ),
            None => None,
        };
        let discord = match &config.discord {
            Some(c) => Some(
                Discord::new(c, &store, templates.clone())
                    .context("starting the Discord adapter")?,
            ),
            None => None,
        };
        // Every configured platform at once; each message goes to its
        // channel's. Adding a platform is one registration here.
        let mut chats = ChatRouter::new();
        if let Some(d) = &discord {
            chats = chats
                .with("discord", d.chat.clone())
                .with_answers("discord", d.chat.clone());
        }
        if let Some(s) = &slack {
            chats = chats
                .with("slack", s.chat.clone())
                .with_answers("slack", s.chat.clone());
        }
        let chats = Arc::new(match chat {
            // The demo's console (or a test's chat) shows every other channel.
            Some(local) => chats.with_fallback(local),
            // No chat platform configured: proposals are visible through the API only.
            None if chats.platforms().next().is_none() => {
                chats.with_fallback(Arc::new(crate::chat::none::NoChat))
            }
            None => chats,
        });
        let executors = executors(config).await?;
        let ports = Ports {
            chat: chats.clone(),
            executor: Arc::new(executors),
            verifier: Arc::new(HttpVerifier::new(&config.services())),
            clock: Arc::new(SystemClock),
        };
        let engine = Engine::new(store, config.services(), ports);
        // The runbook's steps, with the GitOps pause first among the steps
        // before a rollback.
        let pauses =
            crate::exec::gitops_pause_hooks(config.kubernetes.as_ref(), config.gitops_paused())
                .await?;
        crate::runbook::install(&engine, config, pauses);
        engine.set_dedup_retention(config.store.dedup_retention());
        engine.set_drill_schedules(config.drill_schedules());
        let mut slack_routes = None;
        let mut background = Vec::new();
        let mut connection = None;
        // One handler answers every platform's commands and takes their votes.
        let handler = CommandHandler::new(engine.clone(), chats.clone());
        let chat_status = Arc::new(ChatStatus::default());
        let (fatal_tx, fatal) = mpsc::unbounded_channel();
        if let (Some(slack), Some(c)) = (&slack, &config.slack) {
            background.push(slack.deliver(RetryPolicy::default()));
            let inbound = slack
                .inbound(c, handler.clone())
                .context("starting Slack's inbound handler")?;
            let conn = slack
                .connect(
                    c,
                    config.slack_user_groups(),
                    crate::chat::slack::user_groups::REFRESH,
                    engine.clone(),
                    inbound,
                    chat_status.clone(),
                    ConnectPolicy::default(),
                    Box::new({
                        let fatal_tx = fatal_tx.clone();
                        move |e| {
                            let _ =
                                fatal_tx.send(anyhow::Error::new(e).context("connecting to Slack"));
                        }
                    }),
                )
                .context("starting the Slack adapter")?;
            slack_routes = Some(conn.routes(config.server.body_limit_bytes));
            connection = Some(conn);
        }
        let mut discord_routes = None;
        let mut discord_connection = None;
        if let (Some(discord), Some(c)) = (&discord, &config.discord) {
            background.push(discord.deliver(RetryPolicy::default()));
            let inbound = discord
                .inbound(c, handler.clone())
                .context("starting Discord's inbound handler")?;
            discord_routes = Some(crate::chat::discord::inbound::router(
                inbound.clone(),
                config.server.body_limit_bytes,
            ));
            let fatal = fatal_tx.clone();
            discord_connection = Some(discord.connect(
                c,
                inbound,
                chat_status.clone(),
                Box::new(move |e| {
                    let _ = fatal.send(anyhow::Error::new(e).context("connecting to Discord"));
                }),
            ));
        }
        engine
            .recover()
            .await
            .context("resuming interrupted proposals")?;
        handler
            .resume()
            .context("resuming chat commands acknowledged before the restart")?;
        let api_token = match &config.server.api_token {
            Some(secret) => Some(Arc::<str>::from(
                secret
                    .read("server.api_token")
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            )),
            None => None,
        };
        let ready = Arc::new(AtomicBool::new(true));
        let state = AppState {
            webhooks: Arc::new(webhooks),
            chat: chat_status,
            api_token,
            targets: Arc::new(crate::exec::swarm::probes(
                config.services().values().map(|s| &s.target),
            )),
            ..AppState::new(engine.clone(), ready)
        };
        let (stopping, mut stop) = watch::channel(false);
        let ticker = tokio::spawn({
            let engine = engine.clone();
            async move {
                let mut every = tokio::time::interval(TICK);
                loop {
                    // A tick under way finishes; no new one starts once stopping.
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
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
        if let Some(routes) = discord_routes {
            router = router.merge(routes);
        }
        tracing::info!(services = config.services.len(), "rollbot started");
        Ok(Self {
            engine,
            router,
            stopping,
            ticker,
            slack: connection,
            discord: discord_connection,
            background,
            fatal,
            grace: config.server.shutdown_grace(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves HTTP on `listener` until `shutdown` resolves (SIGTERM or
    /// SIGINT in `main`) or an adapter fails for good, then stops:
    ///
    /// 1. no new work: the listener closes and the ticker stops;
    /// 2. work under way reaches a checkpoint — HTTP requests being
    ///    answered (an acknowledged alert is stored), Slack events being
    ///    handed over, rollbacks running — within `server.shutdown_grace`
    ///    from the signal; what is still running then is logged and left
    ///    (the store says where it was; queued chat messages stay in the
    ///    durable outbox);
    /// 3. the store is flushed.
    ///
    /// # Errors
    /// The adapter's failure, or an I/O failure of the server or the store.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "rollbot serving");
        let mut stop = self.stopping.subscribe();
        let mut server = tokio::spawn(http::serve(listener, self.router, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
        let mut served = None;
        let failure = tokio::select! {
            () = shutdown => None,
            Some(e) = self.fatal.recv() => Some(e),
            r = &mut server => {
                served = Some(r);
                None
            }
        };
        let deadline = Instant::now() + self.grace;
        tracing::info!(grace = ?self.grace, "stopping: no new work; waiting for work under way");
        self.stopping.send_replace(true);
        let checkpoint = async {
            let _ = (&mut self.ticker).await;
            if let Some(slack) = self.slack.take() {
                slack.shutdown().await;
            }
            if let Some(discord) = self.discord.take() {
                discord.shutdown().await;
            }
            if served.is_none() {
                served = Some((&mut server).await);
            }
            self.engine.wait_idle().await;
        };
        if tokio::time::timeout_at(deadline, checkpoint).await.is_err() {
            log_unfinished(&self.engine, self.grace);
            server.abort();
        }
        // The outbox is durable: what is still queued is delivered after a restart.
        for task in self.background {
            task.abort();
        }
        self.engine
            .store()
            .flush()
            .await
            .context("flushing the store")?;
        tracing::info!("rollbot stopped");
        if let Some(e) = failure {
            return Err(e);
        }
        match served {
            Some(Ok(r)) => r.context("HTTP server failed"),
            Some(Err(e)) if e.is_panic() => bail!("the HTTP server panicked: {e}"),
            _ => Ok(()),
        }
    }
}

/// The target kinds `rollbot serve` has executors for.
pub const SERVED_KINDS: &[&str] = &[KUBERNETES, SWARM, COMMAND, HELM];

/// The channels (a service's own, else `[approval] channel`) on a chat
/// platform whose section is missing, as problems of the key that names
/// them: `serve` would refuse every message to them in an incident.
pub fn unconfigured_channels(config: &Config) -> Vec<Problem> {
    let configured = |platform: &str| match platform {
        "slack" => config.slack.is_some(),
        "discord" => config.discord.is_some(),
        // The console and memory chats are the demo's and tests'.
        _ => true,
    };
    let default = config.approval.channel.as_deref();
    let mut problems: Vec<Problem> = config
        .services
        .iter()
        .filter_map(|(name, s)| Some((format!("services.{name}.channel"), s.channel.as_deref()?)))
        .chain(default.map(|c| ("approval.channel".to_string(), c)))
        .filter_map(|(path, channel)| {
            let (platform, _) = channel.split_once(':')?;
            (!configured(platform)).then(|| Problem {
                path,
                message: format!(
                    "{channel:?} is a {platform} channel, but there is no [{platform}] section: add one (see the README's chat setup) or name a channel of a configured platform"
                ),
            })
        })
        .collect();
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    problems
}

/// The services whose target kind `rollbot serve` has no executor for, as
/// problems of the target's table (`rollbot check-config` reports them).
pub fn unserved_targets(config: &Config) -> Vec<Problem> {
    config
        .services
        .iter()
        .flat_map(|(name, s)| s.targets().into_iter().map(move |(key, t)| (name, key, t)))
        .filter(|(_, _, target)| !SERVED_KINDS.contains(&target.kind()))
        .map(|(name, key, target)| Problem {
            path: format!("services.{name}.{key}"),
            message: format!(
                "rollbot serve has no executor for {:?} targets (it has: {}); such a kind runs only in a program that embeds rollbot and registers an executor for it",
                target.kind(),
                SERVED_KINDS.join(", ")
            ),
        })
        .collect()
}

/// The executors of the configured services' target kinds. The Kubernetes
/// client is created only when some service targets Kubernetes, so a
/// rollbot without one starts with no kubeconfig.
///
/// # Errors
/// A service of a kind with no executor here, or a Kubernetes client that
/// cannot be configured.
async fn executors(config: &Config) -> anyhow::Result<Executors> {
    if let Some(p) = unserved_targets(config).first() {
        bail!("{p}");
    }
    let mut executors = Executors::new();
    let kinds: std::collections::BTreeSet<String> = config
        .services()
        .values()
        .map(|s| s.target.kind().to_string())
        .collect();
    if kinds.contains(KUBERNETES) {
        let kube = KubeRollback::connect(config.kubernetes.as_ref())
            .await
            .context("connecting to Kubernetes")?;
        executors = executors.register(KUBERNETES, Arc::new(kube));
    }
    if kinds.contains(SWARM) {
        // Nothing to connect yet: each target names its own Docker endpoint,
        // reached per call (`/readyz` and `check-config` say if it answers).
        executors = executors.register(SWARM, Arc::new(SwarmRollback::default()));
    }
    executors = executors
        .register(COMMAND, Arc::new(CommandExecutor::new()))
        .register(HELM, Arc::new(HelmExecutor::new()));
    Ok(executors)
}

/// Logs the work the grace period did not cover: rollbacks approved, under
/// way or being verified (waiting for votes is not work).
fn log_unfinished(engine: &Engine, grace: Duration) {
    use crate::domain::State;
    tracing::warn!(?grace, "the shutdown grace ran out with work still running");
    match engine.store().list() {
        Ok(proposals) => {
            let running = proposals.iter().filter(|p| {
                matches!(
                    p.state,
                    State::Approved | State::Executing | State::RolledBack
                )
            });
            for p in running {
                tracing::warn!(
                    proposal = %p.id,
                    service = %p.service,
                    state = ?p.state,
                    "still running when rollbot stopped"
                );
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list the rollbacks still running"),
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
