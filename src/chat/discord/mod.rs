//! The Discord adapter.
//!
//! - [`chat`]: the engine's `Chat` port and the answers to commands —
//!   embeds with buttons, edits, threads, attached reports, ephemeral
//!   follow-ups — queued in the durable [`crate::outbox`] and delivered
//!   with Discord's REST API ([`rest`]).
//! - [`inbound`]: `/rollback` application commands, buttons, autocomplete
//!   and reactions decoded for the platform-neutral [`CommandHandler`];
//!   the signed interactions endpoint `POST /discord/interactions`.
//! - [`gateway`]: the same events over Discord's gateway (serenity), and
//!   the registration of `/rollback` at start-up ([`commands`]).
//! - [`render`]: Discord's layouts (`templates/discord/`) and the shared
//!   plain-text ones, worded per locale.
//!
//! Identity: a Discord user votes as `discord:ID`; a service's approvers
//! may name Discord roles (`discord-role:ID`), whose membership comes with
//! each vote (see [`crate::engine::Engine::note_roles`]). The bot's own id
//! (from the gateway's READY, or `GET /users/@me`) is registered with the
//! engine so its votes never count.

pub mod chat;
pub mod commands;
pub mod gateway;
pub mod inbound;
pub mod render;
pub mod rest;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::chat::handler::CommandHandler;
use crate::config::DiscordConfig;
use crate::http::{ChatState, ChatStatus};
use crate::outbox::{Outbox, OutboxError, RetryPolicy};
use crate::store::Store;
use crate::templates::Templates;

pub use chat::DiscordChat;
pub use inbound::DiscordInbound;

/// The platform name of Discord's channels and users.
pub const PLATFORM: &str = "discord";

/// Why the Discord adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscordSetupError {
    #[error("{0}")]
    Secret(String),
    #[error("{0}")]
    PublicKey(String),
    #[error("cannot build the HTTP client for Discord: {0}")]
    Client(#[source] reqwest::Error),
    #[error("cannot open the Discord outbox: {0}")]
    Outbox(#[from] OutboxError),
    #[error(
        "Discord refused rollbot's bot token: {0}; check discord.bot_token (Developer Portal → Bot → Reset Token)"
    )]
    Auth(String),
    #[error(
        "registering /rollback with Discord failed: {0}; check discord.application_id and discord.guild_id, and that the bot was invited with the applications.commands scope"
    )]
    Commands(String),
    #[error("the Discord gateway failed: {0}")]
    Gateway(String),
}

/// The adapter's parts, built from `[discord]`.
pub struct Discord {
    pub chat: Arc<DiscordChat>,
}

/// `GET /users/@me`: only the bot's id is used.
#[derive(Deserialize)]
struct Me {
    id: String,
}

impl Discord {
    /// Builds the REST client and the outbox (nothing is sent yet).
    ///
    /// # Errors
    /// A secret that cannot be read, the HTTP client, or storage.
    pub fn new(
        config: &DiscordConfig,
        store: &Store,
        templates: Arc<Templates>,
    ) -> Result<Self, DiscordSetupError> {
        let token = config
            .bot_token
            .read("discord.bot_token")
            .map_err(DiscordSetupError::Secret)?;
        let rest = rest::Rest::new(&config.api_url, token).map_err(DiscordSetupError::Client)?;
        let outbox = Outbox::open(store, PLATFORM)?;
        let chat = Arc::new(DiscordChat::new(
            rest,
            config.application_id.clone(),
            outbox,
            templates,
        ));
        Ok(Self { chat })
    }

    /// Starts delivering the outbox (including what a previous run left).
    pub fn deliver(&self, policy: RetryPolicy) -> tokio::task::JoinHandle<()> {
        let outbox = self.chat.outbox().clone();
        tokio::spawn(outbox.run(self.chat.clone(), policy))
    }

    /// Discord's inbound events, decoded for `handler`.
    ///
    /// # Errors
    /// The public key cannot be read or is not a key.
    pub fn inbound(
        &self,
        config: &DiscordConfig,
        handler: Arc<CommandHandler>,
    ) -> Result<Arc<DiscordInbound>, DiscordSetupError> {
        let verifier = match &config.public_key {
            Some(k) => {
                let hex = k
                    .read("discord.public_key")
                    .map_err(DiscordSetupError::Secret)?;
                Some(inbound::verifier(&hex).map_err(DiscordSetupError::PublicKey)?)
            }
            None => None,
        };
        Ok(DiscordInbound::new(
            handler,
            self.chat.clone(),
            verifier,
            (config.approve_emoji.clone(), config.reject_emoji.clone()),
        ))
    }

    /// Connects in the background and returns at once: learns the bot's
    /// id, registers `/rollback` (in `discord.guild_id` when set, so it
    /// appears at once), and opens the gateway when `discord.gateway` —
    /// each retried with backoff while Discord cannot answer. `status`
    /// says `connecting`, then `connected`. A refusal (wrong token or
    /// application id) is handed to `fail`: rollbot should stop.
    pub fn connect(
        &self,
        config: &DiscordConfig,
        inbound: Arc<DiscordInbound>,
        status: Arc<ChatStatus>,
        fail: Box<dyn FnOnce(DiscordSetupError) + Send>,
    ) -> Connection {
        status.set(PLATFORM, ChatState::Connecting);
        let config = config.clone();
        let chat = self.chat.clone();
        let (gateway_tx, gateway_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let steps = async {
                let me: Me = persist("GET /users/@me", || {
                    chat.rest().call(reqwest::Method::GET, "/users/@me", None)
                })
                .await
                .map_err(DiscordSetupError::Auth)?;
                inbound.set_bot(&me.id);
                commands::register(chat.rest(), chat.templates(), &config)
                    .await
                    .map_err(DiscordSetupError::Commands)?;
                if config.gateway {
                    let gw = gateway::start(&config, inbound.clone())
                        .await
                        .map_err(DiscordSetupError::Gateway)?;
                    let _ = gateway_tx.send(gw);
                }
                Ok::<_, DiscordSetupError>(())
            };
            match steps.await {
                Ok(()) => {
                    tracing::info!("Discord connected");
                    status.set(PLATFORM, ChatState::Connected);
                }
                Err(e) => fail(e),
            }
        });
        Connection {
            task,
            gateway: gateway_rx,
        }
    }
}

/// Runs `attempt` until Discord answers: a refusal ends it with the
/// refusal, anything else (unreachable, 5xx, 429) is asked again with
/// exponential backoff up to a minute.
async fn persist<T, Fut>(what: &'static str, mut attempt: impl FnMut() -> Fut) -> Result<T, String>
where
    Fut: std::future::Future<Output = Result<T, crate::outbox::Delivery>>,
{
    use crate::outbox::Delivery;
    let mut backoff = Duration::from_secs(1);
    loop {
        let wait = match attempt().await {
            Ok(v) => return Ok(v),
            Err(Delivery::Permanent(m)) => return Err(m),
            Err(Delivery::RetryAfter(w)) => w,
            Err(Delivery::Transient(m)) => {
                tracing::warn!(what, error = %m, ?backoff, "Discord did not answer; asking again later");
                backoff
            }
            Err(Delivery::Done { .. }) => backoff,
        };
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// The Discord adapter connecting (or connected), from [`Discord::connect`].
pub struct Connection {
    task: tokio::task::JoinHandle<()>,
    gateway: tokio::sync::oneshot::Receiver<gateway::Gateway>,
}

impl Connection {
    /// Stops connecting and closes the gateway.
    pub async fn shutdown(mut self) {
        self.task.abort();
        if let Ok(gw) = self.gateway.try_recv() {
            gw.shutdown().await;
        }
    }
}
