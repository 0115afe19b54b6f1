//! The Slack adapter (slack-morphism).
//!
//! - [`chat`]: the engine's `Chat` port — rendered Block Kit messages queued
//!   in the durable [`crate::outbox`] and delivered with the Web API
//!   (`chat.postMessage`, `chat.update`, `chat.postEphemeral`, file uploads).
//! - [`inbound`]: slash commands, reactions and buttons over signed HTTP.
//! - [`decode`]: the decoding of those HTTP bodies, shared with the fuzz
//!   targets.
//! - [`socket`]: the same events over Socket Mode instead of HTTP.
//! - [`render`]: the `templates/<locale>/slack/*.json.j2` messages.
//! - [`user_groups`]: `[groups]` members `slack-group:S…`, read from Slack.
//!
//! Identity: a Slack user votes as `slack:U…`; the bot's own id, learned
//! with `auth.test` at start-up, is registered with the engine so its
//! reactions never count.

pub mod chat;
pub mod decode;
pub mod inbound;
pub mod render;
pub mod socket;
pub mod user_groups;

use std::sync::Arc;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::config::{SlackConfig, SlackGroupRef};
use crate::domain::ServiceName;
use crate::engine::Engine;
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

    /// Learns the bot's user id (`auth.test`) so its votes never count.
    ///
    /// # Errors
    /// [`SlackSetupError::Auth`].
    pub async fn register_bot(&self, engine: &Engine) -> Result<(), SlackSetupError> {
        let id = self
            .session
            .bot_user_id()
            .await
            .map_err(|e| SlackSetupError::Auth(e.to_string()))?;
        let user = crate::domain::UserId::new("slack", &id)
            .map_err(|e| SlackSetupError::Auth(e.to_string()))?;
        tracing::info!(bot = %user, "Slack bot identity registered");
        engine.add_bot_identity(user);
        Ok(())
    }

    /// Reads the members of the Slack user groups in `wanted` (see
    /// [`crate::config::Config::slack_user_groups`]) into the engine's
    /// approver sets, then refreshes them every `period` in the returned
    /// task. `None` when no service uses a Slack user group.
    ///
    /// # Errors
    /// [`SlackSetupError::UserGroup`] naming a group that cannot be read.
    pub async fn user_groups(
        &self,
        wanted: BTreeMap<ServiceName, BTreeSet<SlackGroupRef>>,
        engine: &Engine,
        period: Duration,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, SlackSetupError> {
        let groups = Arc::new(user_groups::UserGroups::new(self.session.clone(), wanted));
        if groups.is_empty() {
            return Ok(None);
        }
        groups.load(engine).await?;
        Ok(Some(groups.spawn_refresh(engine.clone(), period)))
    }

    /// The inbound event handler for `engine`.
    ///
    /// # Errors
    /// The signing secret cannot be read.
    pub fn inbound(
        &self,
        config: &SlackConfig,
        engine: Engine,
    ) -> Result<Arc<SlackInbound>, SlackSetupError> {
        let secret = config
            .signing_secret
            .read("slack.signing_secret")
            .map_err(SlackSetupError::Secret)?;
        Ok(SlackInbound::new(engine, self.chat.clone(), secret))
    }

    /// Connects Socket Mode when configured.
    ///
    /// # Errors
    /// No or a refused app token.
    pub async fn socket_mode(
        &self,
        config: &SlackConfig,
        inbound: Arc<SlackInbound>,
    ) -> Result<Option<socket::SocketMode>, SlackSetupError> {
        if !config.socket_mode {
            return Ok(None);
        }
        let token = config
            .app_token
            .as_ref()
            .ok_or(SlackSetupError::NoAppToken)?
            .read("slack.app_token")
            .map_err(SlackSetupError::Secret)?;
        socket::start(&self.session, token, inbound)
            .await
            .map(Some)
            .map_err(|e| SlackSetupError::SocketMode(error_text(&e)))
    }
}
