//! Inbound Discord: `/rollback` application commands, button clicks,
//! autocomplete and ✅/❌ reactions, decoded for the platform-neutral
//! [`CommandHandler`], whichever transport brought them: the gateway
//! ([`super::gateway`]) or the signed interactions endpoint
//! (`POST /discord/interactions`, [`router`]).
//!
//! **Verified before parsed.** The endpoint checks `X-Signature-Ed25519`
//! over `X-Signature-Timestamp` + the raw body with the application's
//! public key (serenity's `Verifier`) before it reads anything, and
//! answers 401 to a missing, invalid or stale (more than 5 minutes away)
//! signature: Discord sends bad signatures on purpose and removes an
//! endpoint that accepts them. The freshness window is rollbot's own
//! policy against replays; Discord's documentation sets none.
//!
//! **Lenient where Discord's documentation is.** Interactions are decoded
//! into small structs holding only what rollbot uses, with every field
//! Discord may omit optional (its documented examples lack fields
//! serenity's model requires), and `serde_path_to_error` naming the path of
//! a field that is really wrong.
//!
//! **Answered within Discord's 3 s.** A command is answered at once when
//! the handler is quick (it only records a proposal to open), else
//! deferred (type 5, ephemeral) and the answer edited in later. A click is
//! stored (the vote flushed) before the answer, a deferred update (type 6):
//! the proposal message is edited through the outbox. Everything said to
//! one person is ephemeral (flag 64).

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use serenity::interactions_endpoint::Verifier;

use super::PLATFORM;
use super::chat::{DiscordChat, EPHEMERAL, Op};
use crate::chat::handler::{CommandHandler, CommandInput, VoteError, VoteInput, VoteOn};
use crate::domain::{MessageRef, ProposalId, UserId, VoteKind, VoteVia};

/// Largest clock difference accepted on a signed request (rollbot's own
/// replay window; see the module doc).
pub const MAX_SKEW_SECONDS: i64 = 300;

/// Custom id prefixes of the proposal's buttons (`discord/proposal.json.j2`).
pub const APPROVE_BUTTON: &str = "rollbot_approve:";
pub const REJECT_BUTTON: &str = "rollbot_reject:";

/// How long a command may take before its answer is deferred: within
/// Discord's 3 s with room for the network.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Why a request was not accepted as coming from Discord.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("X-Signature-Timestamp is not a Unix time")]
    BadTimestamp,
    #[error(
        "X-Signature-Timestamp is {0} s away from now (more than 5 minutes): a replayed request, or this server's clock is wrong (check NTP)"
    )]
    Stale(i64),
    #[error("X-Signature-Ed25519 does not verify; check discord.public_key")]
    Mismatch,
}

/// The application's public key, checked.
///
/// # Errors
/// The key is not 64 hex digits of a valid Ed25519 point.
pub fn verifier(public_key_hex: &str) -> Result<Verifier, String> {
    let bytes: [u8; 32] = hex::decode(public_key_hex.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            "discord.public_key must be the application's public key: 64 hex digits (Developer Portal → General Information)".to_string()
        })?;
    Verifier::try_new(bytes)
        .map_err(|e| format!("discord.public_key is not a valid Ed25519 key: {e}"))
}

/// Verifies a Discord request signature at time `now` (Unix seconds).
///
/// # Errors
/// [`SignatureError`] saying what was wrong.
pub fn verify_signature(
    verifier: &Verifier,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::Missing("X-Signature-Ed25519"))?;
    let timestamp = timestamp.ok_or(SignatureError::Missing("X-Signature-Timestamp"))?;
    verifier
        .verify(signature, timestamp, body)
        .map_err(|()| SignatureError::Mismatch)?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let skew = now.saturating_sub(ts);
    if skew.unsigned_abs() > MAX_SKEW_SECONDS.unsigned_abs() {
        return Err(SignatureError::Stale(skew));
    }
    Ok(())
}

/// A Discord id, sent as a string (or, by some, a number).
fn snowflake<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        N(u64),
    }
    Ok(match Id::deserialize(d)? {
        Id::S(s) => s,
        Id::N(n) => n.to_string(),
    })
}

fn opt_snowflake<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "snowflake")] String);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

/// An interaction, as far as rollbot reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Interaction {
    #[serde(deserialize_with = "snowflake")]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: u8,
    pub token: String,
    #[serde(default, deserialize_with = "opt_snowflake")]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub member: Option<Member>,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub data: Option<Data>,
    #[serde(default)]
    pub locale: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub roles: Vec<RoleId>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RoleId(#[serde(deserialize_with = "snowflake")] pub String);

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    #[serde(deserialize_with = "snowflake")]
    pub id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Data {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub options: Vec<CommandOption>,
    #[serde(default)]
    pub custom_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommandOption {
    pub name: String,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub options: Vec<CommandOption>,
    #[serde(default)]
    pub focused: bool,
}

impl Interaction {
    /// Who acted: the member's user in a guild, the user in a DM.
    pub fn user_id(&self) -> Option<&str> {
        self.member
            .as_ref()
            .and_then(|m| m.user.as_ref())
            .or(self.user.as_ref())
            .map(|u| u.id.as_str())
    }

    /// The member's roles, as `discord-role:ID`.
    pub fn roles(&self) -> BTreeSet<String> {
        roles_of(self.member.as_ref().map_or(&[][..], |m| &m.roles))
    }
}

/// Role ids as the configuration names them.
pub fn roles_of(roles: &[RoleId]) -> BTreeSet<String> {
    roles
        .iter()
        .map(|r| format!("{}{}", crate::config::DISCORD_ROLE_PREFIX, r.0))
        .collect()
}

/// Why an interaction body was not accepted.
#[derive(Debug, thiserror::Error)]
#[error("not a Discord interaction: {0}")]
pub struct DecodeError(String);

/// Decodes an interaction body, naming the JSON path of what is wrong.
///
/// # Errors
/// [`DecodeError`].
pub fn decode(body: &[u8]) -> Result<Interaction, DecodeError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de)
        .map_err(|e| DecodeError(format!("{} at {}", e.inner(), e.path())))
}

/// The locale rollbot speaks for a Discord locale (`en-US`, `zh-CN`, `ja`).
pub fn locale_of(discord: Option<&str>) -> Option<String> {
    let l = discord?;
    let lang = l.split('-').next().unwrap_or(l);
    crate::config::LOCALES
        .contains(&lang)
        .then(|| lang.to_string())
}

/// The `/rollback` command line an application command stands for, for
/// the one parser every platform shares: `propose` becomes
/// `SERVICE [--to-revision N] [reason]`, the other subcommands their verb
/// and arguments.
pub fn command_text(data: &Data) -> String {
    let Some(sub) = data.options.first() else {
        return "help".into();
    };
    let get = |name: &str| {
        sub.options
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| o.value.as_ref())
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
    };
    let mut words: Vec<String> = Vec::new();
    match sub.name.as_str() {
        "propose" => {
            words.extend(get("service"));
            if let Some(r) = get("to_revision") {
                words.push("--to-revision".into());
                words.push(r);
            }
            if let Some(i) = get("image") {
                words.push("--image".into());
                words.push(i);
            }
            words.extend(get("reason"));
        }
        "stats" => {
            words.push("stats".into());
            words.extend(get("service"));
            if let Some(d) = get("days") {
                words.push("--days".into());
                words.push(d);
            }
        }
        verb => {
            words.push(verb.to_string());
            words.extend(get("service"));
            words.extend(get("id"));
            words.extend(get("reason"));
        }
    }
    words.join(" ")
}

/// The focused option's text of an autocomplete interaction.
fn focused(data: &Data) -> String {
    data.options
        .iter()
        .flat_map(|sub| sub.options.iter())
        .find(|o| o.focused)
        .and_then(|o| o.value.as_ref())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_lowercase()
}

/// Discord's answer to an interaction, and what to do once it is sent.
pub struct Answered {
    /// The interaction response (`{"type": …, "data": …}`).
    pub response: Value,
}

/// Handles Discord's inbound events for the handler; shared by both
/// transports.
pub struct DiscordInbound {
    handler: Arc<CommandHandler>,
    chat: Arc<DiscordChat>,
    verifier: Option<Verifier>,
    approve: String,
    reject: String,
    /// The bot's own user id, once known: its reactions are not votes.
    bot: OnceLock<String>,
}

impl DiscordInbound {
    pub fn new(
        handler: Arc<CommandHandler>,
        chat: Arc<DiscordChat>,
        verifier: Option<Verifier>,
        emoji: (String, String),
    ) -> Arc<Self> {
        Arc::new(Self {
            handler,
            chat,
            verifier,
            approve: emoji.0,
            reject: emoji.1,
            bot: OnceLock::new(),
        })
    }

    pub fn chat(&self) -> &Arc<DiscordChat> {
        &self.chat
    }

    pub fn handler(&self) -> &Arc<CommandHandler> {
        &self.handler
    }

    /// Records the bot's own user id: the engine never counts its votes
    /// and its reactions are not read as votes.
    pub fn set_bot(&self, id: &str) {
        if let Ok(user) = UserId::new(PLATFORM, id) {
            self.handler.engine().add_bot_identity(user);
        }
        let _ = self.bot.set(id.to_string());
    }

    /// A sentence from the catalogue's `discord.KEY`, as a message body.
    pub fn said(&self, locale: Option<&str>, key: &str) -> Value {
        let locale = locale_of(locale).unwrap_or_else(|| "en".into());
        match self
            .chat
            .templates()
            .text(&locale, &format!("discord.{key}"), ())
        {
            Ok(text) => super::render::plain(&text),
            Err(e) => {
                tracing::error!(error = %e, "cannot render a Discord answer");
                super::render::plain("rollbot could not render its answer; see its logs")
            }
        }
    }

    fn voter(&self, i: &Interaction) -> Option<UserId> {
        let id = i.user_id()?;
        let user = UserId::new(PLATFORM, id).ok()?;
        // Membership comes with each interaction: note it before acting.
        self.handler.engine().note_roles(&user, i.roles());
        Some(user)
    }

    /// Answers one interaction. A vote is stored before this returns.
    ///
    /// # Errors
    /// The input could not be stored: Discord shows the person that the
    /// interaction failed, and they can try again.
    pub async fn interaction(self: &Arc<Self>, i: Interaction) -> Result<Answered, InboundError> {
        let response = match i.kind {
            // PING
            1 => json!({ "type": 1 }),
            // APPLICATION_COMMAND
            2 => self.command(i).await?,
            // MESSAGE_COMPONENT
            3 => self.click(&i).await?,
            // APPLICATION_COMMAND_AUTOCOMPLETE
            4 => self.autocomplete(&i),
            _ => ephemeral(self.said(i.locale.as_deref(), "unsupported"), 4),
        };
        Ok(Answered { response })
    }

    async fn command(self: &Arc<Self>, i: Interaction) -> Result<Value, InboundError> {
        let Some(user) = self.voter(&i) else {
            return Ok(ephemeral(self.said(i.locale.as_deref(), "unknown_user"), 4));
        };
        let Some(channel) = i.channel_id.clone() else {
            return Ok(ephemeral(self.said(i.locale.as_deref(), "channel_only"), 4));
        };
        let data = i.data.clone().unwrap_or_default();
        let input = CommandInput {
            platform: PLATFORM.into(),
            channel,
            user: user.clone(),
            text: command_text(&data),
            key: i.id.clone(),
            locale: locale_of(i.locale.as_deref()),
        };
        self.chat
            .interaction_received(user.local(), &i.id, &i.token);
        let handler = self.handler.clone();
        let mut work = tokio::spawn(async move { handler.command(input).await });
        match tokio::time::timeout(ANSWER_WITHIN, &mut work).await {
            Ok(done) => {
                let answer = done
                    .map_err(|e| InboundError::Task(e.to_string()))?
                    .map_err(InboundError::Store)?;
                Ok(ephemeral(self.chat.reply_content(&answer), 4))
            }
            Err(_) => {
                // Deferred: the answer replaces "thinking…" when it comes.
                let me = self.clone();
                let token = i.token.clone();
                let locale = i.locale.clone();
                tokio::spawn(async move {
                    let content = match work.await {
                        Ok(Ok(answer)) => me.chat.reply_content(&answer),
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "a Discord command could not be stored");
                            me.said(locale.as_deref(), "not_stored")
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "a Discord command's task failed");
                            me.said(locale.as_deref(), "not_stored")
                        }
                    };
                    if let Err(e) = me
                        .chat
                        .queue(
                            &format!("cmd-{}", i.id),
                            &Op::EditOriginal { token, content },
                        )
                        .await
                    {
                        tracing::error!(error = %e, "could not queue a deferred Discord answer");
                    }
                });
                Ok(json!({ "type": 5, "data": { "flags": EPHEMERAL } }))
            }
        }
    }

    async fn click(&self, i: &Interaction) -> Result<Value, InboundError> {
        let custom = i
            .data
            .as_ref()
            .and_then(|d| d.custom_id.as_deref())
            .unwrap_or_default();
        let (kind, id) = if let Some(id) = custom.strip_prefix(APPROVE_BUTTON) {
            (VoteKind::Approve, id)
        } else if let Some(id) = custom.strip_prefix(REJECT_BUTTON) {
            (VoteKind::Reject, id)
        } else {
            return Ok(json!({ "type": 6 }));
        };
        let (Ok(id), Some(voter)) = (ProposalId::parse(id), self.voter(i)) else {
            return Ok(json!({ "type": 6 }));
        };
        self.chat
            .interaction_received(voter.local(), &i.id, &i.token);
        self.handler
            .vote(VoteInput {
                on: VoteOn::Proposal(id),
                voter,
                kind,
                withdraw: false,
                via: VoteVia::Button,
                key: Some(format!("discord:interaction:{}", i.id)),
            })
            .await?;
        // The proposal message is edited through the outbox.
        Ok(json!({ "type": 6 }))
    }

    fn autocomplete(&self, i: &Interaction) -> Value {
        let typed = i.data.as_ref().map(focused).unwrap_or_default();
        let choices: Vec<Value> = self
            .handler
            .engine()
            .services()
            .keys()
            .map(ToString::to_string)
            .filter(|s| s.contains(&typed))
            .take(25)
            .map(|s| json!({ "name": s, "value": s }))
            .collect();
        json!({ "type": 8, "data": { "choices": choices } })
    }

    /// The interaction's first answer was sent.
    pub fn answered(&self, interaction: &str) {
        self.chat.interaction_answered(interaction);
    }

    /// A reaction added or removed on a message: a vote, or its withdrawal,
    /// when it is the approve or reject emoji by someone other than the bot.
    ///
    /// # Errors
    /// The vote could not be stored, or the message may be a proposal
    /// still being posted (try again shortly).
    pub async fn reaction(&self, r: Reaction) -> Result<(), VoteError> {
        let kind = if r.emoji == self.approve {
            VoteKind::Approve
        } else if r.emoji == self.reject {
            VoteKind::Reject
        } else {
            return Ok(());
        };
        if self.bot.get().is_some_and(|b| *b == r.user) {
            return Ok(());
        }
        let Ok(voter) = UserId::new(PLATFORM, &r.user) else {
            return Ok(());
        };
        if let Some(roles) = r.roles {
            self.handler.engine().note_roles(&voter, roles);
        }
        let outbox = self.chat.outbox();
        self.handler
            .vote(VoteInput {
                on: VoteOn::Message {
                    provisional: outbox.pending_for(&r.message).ok().flatten(),
                    posting: !outbox.is_empty(),
                    at: MessageRef {
                        platform: PLATFORM.into(),
                        channel: r.channel,
                        message: r.message,
                    },
                },
                voter,
                kind,
                withdraw: !r.added,
                via: VoteVia::Reaction,
                key: None,
            })
            .await?;
        Ok(())
    }
}

/// A reaction event, as far as rollbot reads it.
#[derive(Debug, Clone)]
pub struct Reaction {
    pub added: bool,
    pub user: String,
    pub channel: String,
    pub message: String,
    /// The Unicode emoji (a custom emoji's name never votes).
    pub emoji: String,
    /// The member's roles (`discord-role:ID`) when the event carried them.
    pub roles: Option<BTreeSet<String>>,
}

/// Why an inbound event was not handled.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error(transparent)]
    Vote(#[from] VoteError),
    #[error("could not record the command: {0}")]
    Store(crate::store::StoreError),
    #[error("the command's task failed: {0}")]
    Task(String),
}

fn ephemeral(mut data: Value, kind: u8) -> Value {
    data["flags"] = json!(EPHEMERAL);
    json!({ "type": kind, "data": data })
}

/// `POST /discord/interactions`, to merge into the main router.
pub fn router(inbound: Arc<DiscordInbound>, body_limit: usize) -> axum::Router {
    axum::Router::new()
        .route("/discord/interactions", post(interactions_route))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(inbound)
}

async fn interactions_route(
    State(inbound): State<Arc<DiscordInbound>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(verifier) = &inbound.verifier else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "the interactions endpoint is off: set discord.public_key" })),
        )
            .into_response();
    };
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = verify_signature(
        verifier,
        h("x-signature-ed25519"),
        h("x-signature-timestamp"),
        &body,
        chrono::Utc::now().timestamp(),
    ) {
        tracing::warn!(error = %e, "rejected an unsigned or stale Discord request");
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": format!("invalid request signature: {e}") })),
        )
            .into_response();
    }
    let i = match decode(&body) {
        Ok(i) => i,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": e.to_string() })),
            )
                .into_response();
        }
    };
    let id = i.id.clone();
    let result = inbound.interaction(i).await;
    // Marked before the answer leaves: a follow-up still racing it is
    // retried for a few seconds (see the chat's follow-ups).
    inbound.answered(&id);
    match result {
        Ok(a) => Json(a.response).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a Discord interaction could not be stored; answering 503");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "rollbot could not store this request; try again in a moment" })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn public_keys_are_checked_without_panicking() {
        assert!(verifier(KEY).is_ok());
        for bad in ["", "abc", &KEY[..62], &format!("{KEY}00"), &"zz".repeat(32)] {
            let e = verifier(bad).err().unwrap();
            assert!(e.contains("discord.public_key"), "{e}");
        }
    }

    #[test]
    fn command_options_become_the_shared_command_line() {
        let data: Data = serde_json::from_value(json!({
            "name": "rollback",
            "options": [{ "type": 1, "name": "propose", "options": [
                { "type": 3, "name": "service", "value": "payment-api" },
                { "type": 4, "name": "to_revision", "value": 41 },
                { "type": 3, "name": "reason", "value": "checkout errors" }
            ] }]
        }))
        .unwrap();
        assert_eq!(
            command_text(&data),
            "payment-api --to-revision 41 checkout errors"
        );
        let data: Data = serde_json::from_value(json!({
            "name": "rollback",
            "options": [{ "type": 1, "name": "cancel", "options": [
                { "type": 3, "name": "id", "value": "RB-7K3M9Q" }
            ] }]
        }))
        .unwrap();
        assert_eq!(command_text(&data), "cancel RB-7K3M9Q");
        let data: Data = serde_json::from_value(json!({
            "name": "rollback", "options": [{ "type": 1, "name": "list" }]
        }))
        .unwrap();
        assert_eq!(command_text(&data), "list");
        assert_eq!(command_text(&Data::default()), "help");
    }

    #[test]
    fn discord_locales_map_to_rollbots() {
        assert_eq!(locale_of(Some("en-US")).as_deref(), Some("en"));
        assert_eq!(locale_of(Some("zh-CN")).as_deref(), Some("zh"));
        assert_eq!(locale_of(Some("ja")).as_deref(), Some("ja"));
        assert_eq!(locale_of(Some("fr")), None);
        assert_eq!(locale_of(None), None);
    }
}
