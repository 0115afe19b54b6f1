//! The Slack adapter (slack-morphism).
//!
//! - [`chat`]: the engine's `Chat` port — rendered Block Kit messages queued
//!   in the durable [`crate::outbox`] and delivered with the Web API
//!   (`chat.postMessage`, `chat.update`, `chat.postEphemeral`, file uploads).
//! - [`inbound`]: slash commands, reactions and buttons over signed HTTP,
//!   decoded for the platform-neutral [`CommandHandler`].
//! - [`decode`]: the decoding of those HTTP bodies, shared with the fuzz
//!   targets.
//! - [`socket`]: the same events over Socket Mode instead of HTTP.
//! - [`render`]: Slack's layouts (`templates/slack/*.json.j2`), worded per locale.
//! - [`user_groups`]: `[groups]` members `slack-group:S…`, read from Slack.
//!
//! Start-up never waits for Slack: [`Slack::connect`] learns the bot's own
//! user id (`auth.test`), reads the approver user groups and opens Socket
//! Mode in the background, retrying with exponential backoff (a 429's
//! `Retry-After` is waited out exactly) while Slack is unreachable, answers
//! 5xx or rate-limits, so alerts are accepted and queued for Slack meanwhile
//! and `/readyz` reports `"slack":"connecting"`. A definitive refusal
//! (`invalid_auth`, `account_inactive`, `token_revoked`, `not_authed`, …)
//! stops rollbot with advice instead: retrying a wrong token helps nobody.
//!
//! Identity: a Slack user votes as `slack:U…`; the bot's own id is
//! registered with the engine so its reactions never count. Until it is
//! known (and the user groups are read), a vote cannot be told apart from
//! the bot's, so votes are not taken: see [`Connection::routes`].

pub mod chat;
pub mod decode;
pub mod inbound;
pub mod render;
pub mod socket;
pub mod user_groups;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use slack_morphism::errors::SlackClientError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::chat::handler::CommandHandler;
use crate::config::{SlackConfig, SlackGroupRef};
use crate::domain::ServiceName;
use crate::engine::Engine;
use crate::http::{ChatState, ChatStatus};
use crate::outbox::{Outbox, OutboxError, RetryPolicy};
use crate::store::Store;
use crate::templates::Templates;

pub use chat::{Session, SlackChat};
pub use inbound::SlackInbound;
pub use render::Emoji;

/// Why the Slack adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum SlackSetupError {
    #[error("{0}")]
    Secret(String),
    #[error(
        "cannot load the system's TLS root certificates for Slack: {0}; install ca-certificates"
    )]
    Tls(#[source] std::io::Error),
    #[error("cannot open the Slack outbox: {0}")]
    Outbox(#[from] OutboxError),
    #[error(
        "Slack auth.test failed: {0}; check slack.bot_token (a bot token, xoxb-…) and slack.api_url"
    )]
    Auth(String),
    #[error(
        "Slack Socket Mode could not connect: {0}; check slack.app_token (an app-level token, xapp-…, with connections:write)"
    )]
    SocketMode(String),
    #[error("slack.socket_mode = true needs slack.app_token (an app-level token, xapp-…)")]
    NoAppToken,
    #[error(transparent)]
    UserGroup(#[from] user_groups::GroupError),
}

/// Web API error codes that mean Slack is having trouble, not that the
/// request or the token is wrong: worth asking again.
pub const TRANSIENT_CODES: &[&str] = &[
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// Whether Slack answered and refused (`{"ok":false,"error":…}` with a code
/// not in [`TRANSIENT_CODES`]), so that asking again will not help.
/// Unreachable, 5xx, 429 and unreadable answers are not refusals.
pub fn refused(e: &SlackClientError) -> bool {
    matches!(e, SlackClientError::ApiError(a) if !TRANSIENT_CODES.contains(&a.code.as_str()))
}

/// How long to wait before asking Slack again after `e`: the 429's
/// `Retry-After` when it gave one, else `backoff`.
fn wait_after(e: &SlackClientError, backoff: Duration) -> Duration {
    match e {
        SlackClientError::RateLimitError(r) => r.retry_after.unwrap_or(backoff),
        _ => backoff,
    }
}

/// Backoff while connecting: from `first`, doubling, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectPolicy {
    pub first: Duration,
    pub max: Duration,
}

impl Default for ConnectPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// Runs `attempt` until it succeeds or fails for good: `retry` says how
/// long to wait after an error (with the current backoff), `None` when
/// asking again will not help. Without a policy, tries once.
async fn persist<T, E, Fut>(
    what: &'static str,
    policy: Option<ConnectPolicy>,
    mut attempt: impl FnMut() -> Fut,
    retry: impl Fn(&E, Duration) -> Option<Duration>,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let Some(policy) = policy else {
        return attempt().await;
    };
    let mut backoff = policy.first;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let Some(wait) = retry(&e, backoff) else {
                    return Err(e);
                };
                tracing::warn!(what, error = %e, ?wait, "Slack did not answer; asking again later");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(policy.max);
            }
        }
    }
}

/// A Web API error in a line: Slack's own error code when it answered
/// `{"ok":false,"error":…}` (not the whole body), else the failure.
pub fn error_text(e: &slack_morphism::errors::SlackClientError) -> String {
    match e {
        slack_morphism::errors::SlackClientError::ApiError(api) => {
            format!("Slack answered {:?}", api.code)
        }
        other => other.to_string(),
    }
}

/// The adapter's parts, built from `[slack]`.
pub struct Slack {
    pub session: Session,
    pub chat: Arc<SlackChat>,
}

impl Slack {
    /// Builds the client and the outbox (nothing is sent yet).
    ///
    /// # Errors
    /// A secret that cannot be read, TLS roots, or storage.
    pub fn new(
        config: &SlackConfig,
        store: &Store,
        templates: Arc<Templates>,
    ) -> Result<Self, SlackSetupError> {
        let token = config
            .bot_token
            .read("slack.bot_token")
            .map_err(SlackSetupError::Secret)?;
        let session = Session::new(&config.api_url, token).map_err(SlackSetupError::Tls)?;
        let outbox = Outbox::open(store, "slack")?;
        let emoji = Emoji {
            approve: config.approve_emoji.clone(),
            reject: config.reject_emoji.clone(),
        };
        let chat = Arc::new(SlackChat::new(session.clone(), outbox, templates, emoji));
        Ok(Self { session, chat })
    }

    /// Starts delivering the outbox (including what a previous run left).
    pub fn deliver(&self, policy: RetryPolicy) -> tokio::task::JoinHandle<()> {
        let outbox = self.chat.outbox().clone();
        tokio::spawn(outbox.run(self.chat.clone(), policy))
    }

    /// Learns the bot's user id (`auth.test`) so its votes never count;
    /// asks once ([`Slack::connect`] keeps asking while Slack is down).
    ///
    /// # Errors
    /// [`SlackSetupError::Auth`].
    pub async fn register_bot(&self, engine: &Engine) -> Result<(), SlackSetupError> {
        register_bot(&self.session, engine, None).await
    }

    /// Reads the members of the Slack user groups in `wanted` (see
    /// [`crate::config::Config::slack_user_groups`]) into the engine's
    /// approver sets once, then refreshes them every `period` in the
    /// returned task. `None` when no service uses a Slack user group.
    ///
    /// # Errors
    /// [`SlackSetupError::UserGroup`] naming a group that cannot be read.
    pub async fn user_groups(
        &self,
        wanted: BTreeMap<ServiceName, BTreeSet<SlackGroupRef>>,
        engine: &Engine,
        period: Duration,
    ) -> Result<Option<JoinHandle<()>>, SlackSetupError> {
        load_groups(&self.session, wanted, engine, period, None).await
    }

    /// Connects Socket Mode when configured, trying once.
    ///
    /// # Errors
    /// No or a refused app token, or Slack unreachable.
    pub async fn socket_mode(
        &self,
        config: &SlackConfig,
        inbound: Arc<SlackInbound>,
    ) -> Result<Option<socket::SocketMode>, SlackSetupError> {
        let Some(token) = app_token(config)? else {
            return Ok(None);
        };
        socket::start(&self.session, token, inbound)
            .await
            .map(Some)
            .map_err(|e| SlackSetupError::SocketMode(error_text(&e)))
    }

    /// Slack's inbound events, decoded for `handler`.
    ///
    /// # Errors
    /// The signing secret cannot be read.
    pub fn inbound(
        &self,
        config: &SlackConfig,
        handler: Arc<CommandHandler>,
    ) -> Result<Arc<SlackInbound>, SlackSetupError> {
        let secret = config
            .signing_secret
            .read("slack.signing_secret")
            .map_err(SlackSetupError::Secret)?;
        Ok(SlackInbound::new(handler, self.chat.clone(), secret))
    }

    /// Connects in the background and returns at once: learns the bot's
    /// user id (`auth.test`), reads the members of the Slack user groups
    /// in `groups` (see [`crate::config::Config::slack_user_groups`]) and
    /// refreshes them every `refresh`, and opens Socket Mode when
    /// configured — each retried per `policy` while Slack cannot answer.
    /// `status` says `connecting`, then `connected`. A definitive refusal
    /// is handed to `fail` (rollbot should stop) and connecting ends.
    ///
    /// # Errors
    /// `slack.socket_mode` without a readable `slack.app_token`.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        &self,
        config: &SlackConfig,
        groups: BTreeMap<ServiceName, BTreeSet<SlackGroupRef>>,
        refresh: Duration,
        engine: Engine,
        inbound: Arc<SlackInbound>,
        status: Arc<ChatStatus>,
        policy: ConnectPolicy,
        fail: Box<dyn FnOnce(SlackSetupError) + Send>,
    ) -> Result<Connection, SlackSetupError> {
        let app_token = app_token(config)?;
        status.set("slack", ChatState::Connecting);
        let (known, identity) = watch::channel(false);
        let running = Arc::new(Mutex::new(Running::default()));
        let session = self.session.clone();
        let task = tokio::spawn({
            let running = running.clone();
            let inbound = inbound.clone();
            async move {
                let steps = async {
                    register_bot(&session, &engine, Some(policy)).await?;
                    let refresh =
                        load_groups(&session, groups, &engine, refresh, Some(policy)).await?;
                    lock(&running).refresh = refresh;
                    // Votes can be told from the bot's own now.
                    known.send_replace(true);
                    if let Some(token) = app_token {
                        let socket = persist(
                            "Socket Mode",
                            Some(policy),
                            || socket::start(&session, token.clone(), inbound.clone()),
                            |e, backoff| (!refused(e)).then(|| wait_after(e, backoff)),
                        )
                        .await
                        .map_err(|e| SlackSetupError::SocketMode(error_text(&e)))?;
                        lock(&running).socket = Some(socket);
                    }
                    Ok::<_, SlackSetupError>(())
                };
                match steps.await {
                    Ok(()) => {
                        tracing::info!("Slack connected");
                        status.set("slack", ChatState::Connected);
                    }
                    Err(e) => fail(e),
                }
            }
        });
        Ok(Connection {
            identity,
            task,
            running,
            inbound,
        })
    }
}

/// `slack.app_token` when Socket Mode is on.
fn app_token(config: &SlackConfig) -> Result<Option<String>, SlackSetupError> {
    if !config.socket_mode {
        return Ok(None);
    }
    config
        .app_token
        .as_ref()
        .ok_or(SlackSetupError::NoAppToken)?
        .read("slack.app_token")
        .map(Some)
        .map_err(SlackSetupError::Secret)
}

/// `auth.test` (until Slack answers, with a policy), then registers the
/// bot's identity.
async fn register_bot(
    session: &Session,
    engine: &Engine,
    policy: Option<ConnectPolicy>,
) -> Result<(), SlackSetupError> {
    let id = persist(
        "auth.test",
        policy,
        || session.bot_user_id(),
        |e, backoff| (!refused(e)).then(|| wait_after(e, backoff)),
    )
    .await
    .map_err(|e| SlackSetupError::Auth(error_text(&e)))?;
    let user = crate::domain::UserId::new("slack", &id)
        .map_err(|e| SlackSetupError::Auth(format!("Slack named the bot {id:?}: {e}")))?;
    tracing::info!(bot = %user, "Slack bot identity registered");
    engine.add_bot_identity(user);
    Ok(())
}

/// Reads the user groups (until Slack answers, with a policy), gives the
/// engine their members and starts refreshing them; `None` when no
/// service uses one.
async fn load_groups(
    session: &Session,
    wanted: BTreeMap<ServiceName, BTreeSet<SlackGroupRef>>,
    engine: &Engine,
    period: Duration,
    policy: Option<ConnectPolicy>,
) -> Result<Option<JoinHandle<()>>, SlackSetupError> {
    let groups = Arc::new(user_groups::UserGroups::new(session.clone(), wanted));
    if groups.is_empty() {
        return Ok(None);
    }
    persist(
        "usergroups.users.list",
        policy,
        || groups.load(engine),
        |e: &user_groups::GroupError, backoff| e.retryable.then_some(backoff),
    )
    .await?;
    Ok(Some(groups.spawn_refresh(engine.clone(), period)))
}

fn lock(running: &Mutex<Running>) -> std::sync::MutexGuard<'_, Running> {
    running.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a connected Slack adapter runs beside the outbox.
#[derive(Default)]
struct Running {
    socket: Option<socket::SocketMode>,
    refresh: Option<JoinHandle<()>>,
}

/// How long an event or a click waits for the bot's identity before
/// rollbot answers 503; within Slack's 3 s.
const IDENTITY_WAIT: Duration = Duration::from_secs(2);

/// The Slack adapter connecting (or connected), from [`Slack::connect`].
pub struct Connection {
    /// True once the bot's identity and the user groups are known.
    identity: watch::Receiver<bool>,
    task: JoinHandle<()>,
    /// A std Mutex: never held across an await.
    running: Arc<Mutex<Running>>,
    inbound: Arc<SlackInbound>,
}

impl Connection {
    /// Slack's HTTP routes (`/slack/commands`, `/slack/events`,
    /// `/slack/interactions`).
    ///
    /// Until the bot's identity is known a reaction or a click could be the
    /// bot's own and could not be counted safely, so events and
    /// interactions wait for it up to [`IDENTITY_WAIT`] and are then
    /// refused with 503 and `Retry-After`: Slack retries a refused event
    /// (after about 1 and 5 minutes), and a person whose click was refused
    /// sees it fail and can click again. Slash commands cast no vote and
    /// are served at once. Over Socket Mode the question does not arise:
    /// it connects only after the identity is known.
    pub fn routes(&self, body_limit: usize) -> axum::Router {
        let identity = self.identity.clone();
        inbound::router(self.inbound.clone(), body_limit).layer(axum::middleware::from_fn(
            move |req: Request, next: Next| hold_votes(identity.clone(), req, next),
        ))
    }

    /// Whether the bot's identity is known (votes are taken).
    pub fn identity_known(&self) -> bool {
        *self.identity.borrow()
    }

    /// Stops connecting, the group refresh and Socket Mode (closing its
    /// connections so Slack sends events elsewhere), then waits until the
    /// events already taken have been handed to the engine.
    pub async fn shutdown(self) {
        self.task.abort();
        let (socket, refresh) = {
            let mut r = lock(&self.running);
            (r.socket.take(), r.refresh.take())
        };
        if let Some(refresh) = refresh {
            refresh.abort();
        }
        if let Some(socket) = socket {
            socket.shutdown().await;
        }
        self.inbound.wait_idle().await;
    }
}

async fn hold_votes(mut identity: watch::Receiver<bool>, req: Request, next: Next) -> Response {
    if req.uri().path() != "/slack/commands" {
        let known = tokio::time::timeout(IDENTITY_WAIT, identity.wait_for(|k| *k)).await;
        if !matches!(known, Ok(Ok(_))) {
            tracing::warn!(path = %req.uri().path(), "Slack event refused: rollbot does not know its own Slack identity yet; Slack will retry");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, "30")],
                axum::Json(serde_json::json!({
                    "error": "rollbot is still connecting to Slack and cannot count votes yet; try again in a minute"
                })),
            )
                .into_response();
        }
    }
    next.run(req).await
}
