//! Discord's gateway, with serenity: interactions (commands, buttons,
//! autocomplete) and ✅/❌ reactions pushed over a WebSocket that rollbot
//! opens, so no public HTTP endpoint is needed.
//!
//! Only unprivileged intents are asked for: guilds, guild messages and
//! guild message reactions (interactions need none). serenity does the
//! protocol — Hello, Identify, heartbeats and their ACKs, Resume after a
//! dropped connection (Discord then replays what was missed, so nothing is
//! lost or duplicated), a fresh Identify when the session cannot be
//! resumed. Its events go to the same [`DiscordInbound`] the interactions
//! endpoint uses; an interaction is answered with the callback
//! `POST /interactions/{id}/{token}/callback`, sent at once rather than
//! through the outbox, as it must arrive within 3 s.
//!
//! With `discord.api_url` pointing elsewhere than Discord (a proxy, the
//! tests' fake), serenity's rate limiter is turned off: it rebuilds
//! requests without the base URL override and would call discord.com. The
//! gateway URL comes from `GET /api/v10/gateway` through that base URL.

use std::sync::Arc;
use std::time::Duration;

use serenity::all::{
    Context, EventHandler, GatewayIntents, HttpBuilder, Reaction as SerenityReaction, ReactionType,
    Ready, ResumedEvent,
};
use serenity::model::application::Interaction as SerenityInteraction;

use super::inbound::{DiscordInbound, Reaction, decode, roles_of};
use crate::chat::handler::VoteError;
use crate::config::DiscordConfig;

/// The intents rollbot asks for; none is privileged.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::GUILD_MESSAGE_REACTIONS
}

/// A running gateway connection.
pub struct Gateway {
    shards: Arc<serenity::gateway::ShardManager>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Closes the connection.
    pub async fn shutdown(self) {
        self.shards.shutdown_all().await;
        self.task.abort();
    }
}

/// Builds the serenity client (which asks the REST API for the gateway
/// URL) and connects in the background.
///
/// # Errors
/// The bot token or the application id cannot be used by serenity.
pub async fn start(
    config: &DiscordConfig,
    inbound: Arc<DiscordInbound>,
) -> Result<Gateway, String> {
    let token = config.bot_token.read("discord.bot_token")?;
    let app: u64 = config
        .application_id
        .parse()
        .map_err(|_| "discord.application_id is not a Discord id".to_string())?;
    let mut http = HttpBuilder::new(&token).application_id(app.into());
    if !config.is_discord() {
        http = http
            .proxy(config.api_url.trim_end_matches('/'))
            .ratelimiter_disabled(true);
    }
    let mut client = serenity::all::ClientBuilder::new_with_http(http.build(), intents())
        .event_handler(Events { inbound })
        .await
        .map_err(|e| e.to_string())?;
    let shards = client.shard_manager.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = client.start().await {
            tracing::error!(error = %e, "the Discord gateway stopped; reactions and gateway interactions are not received");
        }
    });
    Ok(Gateway { shards, task })
}

struct Events {
    inbound: Arc<DiscordInbound>,
}

#[serenity::async_trait]
impl EventHandler for Events {
    async fn ready(&self, _: Context, ready: Ready) {
        tracing::info!(bot = %ready.user.id, session = %ready.session_id, "Discord gateway ready");
        self.inbound.set_bot(&ready.user.id.to_string());
    }

    async fn resume(&self, _: Context, _: ResumedEvent) {
        tracing::info!("Discord gateway session resumed");
    }

    async fn interaction_create(&self, _: Context, interaction: SerenityInteraction) {
        // One decoder for both transports: serenity's model back to the
        // wire format, read like an endpoint request. serenity writes the
        // variant's fields without the `type` that names it.
        let kind = match &interaction {
            SerenityInteraction::Ping(_) => 1,
            SerenityInteraction::Command(_) => 2,
            SerenityInteraction::Component(_) => 3,
            SerenityInteraction::Autocomplete(_) => 4,
            SerenityInteraction::Modal(_) => 5,
            _ => 0,
        };
        let decoded = serde_json::to_value(&interaction)
            .map(|mut v| {
                v["type"] = serde_json::json!(kind);
                v
            })
            .map_err(|e| e.to_string())
            .and_then(|v| decode(&v.to_string().into_bytes()).map_err(|e| e.to_string()));
        let i = match decoded {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable Discord interaction");
                return;
            }
        };
        let (id, token, locale) = (i.id.clone(), i.token.clone(), i.locale.clone());
        let answer = match self.inbound.interaction(i).await {
            Ok(a) => a.response,
            Err(e) => {
                tracing::error!(error = %e, "a Discord interaction could not be stored");
                let mut data = self.inbound.said(locale.as_deref(), "not_stored");
                data["flags"] = serde_json::json!(super::chat::EPHEMERAL);
                serde_json::json!({ "type": 4, "data": data })
            }
        };
        let sent = self
            .inbound
            .chat()
            .rest()
            .call::<serde_json::Value>(
                reqwest::Method::POST,
                &format!("/interactions/{id}/{token}/callback"),
                Some(&answer),
            )
            .await;
        self.inbound.answered(&id);
        if let Err(e) = sent {
            tracing::error!(error = ?e, "could not answer a Discord interaction");
        }
    }

    async fn reaction_add(&self, _: Context, r: SerenityReaction) {
        self.reaction(r, true).await;
    }

    async fn reaction_remove(&self, _: Context, r: SerenityReaction) {
        self.reaction(r, false).await;
    }
}

/// How often a reaction on a message rollbot may still be posting is
/// tried again, and how many times: the gateway cannot redeliver it.
const NOT_YET_BOUND_RETRY: Duration = Duration::from_millis(500);
const NOT_YET_BOUND_TRIES: usize = 60;

impl Events {
    async fn reaction(&self, r: SerenityReaction, added: bool) {
        let ReactionType::Unicode(emoji) = &r.emoji else {
            return;
        };
        let Some(user) = r.user_id else {
            return;
        };
        let roles = r.member.as_ref().map(|m| {
            let ids: Vec<_> = m
                .roles
                .iter()
                .map(|id| super::inbound::RoleId(id.to_string()))
                .collect();
            roles_of(&ids)
        });
        let reaction = Reaction {
            added,
            user: user.to_string(),
            channel: r.channel_id.to_string(),
            message: r.message_id.to_string(),
            emoji: emoji.clone(),
            roles,
        };
        for _ in 0..NOT_YET_BOUND_TRIES {
            match self.inbound.reaction(reaction.clone()).await {
                Ok(()) => return,
                Err(VoteError::NotYetBound(_)) => tokio::time::sleep(NOT_YET_BOUND_RETRY).await,
                Err(e) => {
                    tracing::error!(error = %e, "a Discord reaction could not be taken; it is lost, vote again");
                    return;
                }
            }
        }
        tracing::warn!(message = %reaction.message, "a reaction on a message rollbot never finished posting was dropped");
    }
}
