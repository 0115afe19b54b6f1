//! Outbound Discord: the engine's [`Chat`] port and the [`Answers`] to
//! commands, delivered through the durable [`Outbox`] with Discord's REST
//! API ([`super::rest`]).
//!
//! - The proposal is a channel message (an embed with buttons), edited in
//!   place as votes arrive. `post_proposal` returns a provisional
//!   reference at once, as Slack's does (see [`crate::outbox`]).
//! - Progress, the resolved notice and the report go to a thread started
//!   on the proposal message. A thread started from a message has the
//!   message's id, so the thread needs no reference of its own: each
//!   thread post starts it if it does not exist yet (Discord answers
//!   "already created" otherwise, which is fine) and posts into it. The
//!   report is attached to its thread message as files.
//! - What one person alone may see (a refused vote, a command's later
//!   answer) is an ephemeral follow-up to that person's latest
//!   interaction while its token is valid (15 minutes); a vote by reaction
//!   has no interaction, so it is told in a direct message.
//! - Posts carry a `nonce` from their provisional reference with
//!   `enforce_nonce`, so a post retried after its answer was lost (or after
//!   a restart mid-call) returns the message Discord already has instead
//!   of a second one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::PLATFORM;
use super::render::{self, RenderError};
use super::rest::{File, Rest};
use crate::chat::reply::{Answer, Answers};
use crate::domain::{MessageRef, Proposal, UserId};
use crate::outbox::{Deliver, Delivery, Entry, Outbox, OutboxError};
use crate::ports::{Chat, ChatError, PrivateNote, ThreadNote};
use crate::templates::Templates;

/// One REST call (or short sequence), as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A channel message; establishes the entry's provisional reference.
    Post { channel: String, content: Value },
    /// An edit of a channel message (real id or provisional reference).
    Edit {
        channel: String,
        message: String,
        content: Value,
    },
    /// A message in the thread of `parent` (the proposal message), which
    /// is started first when needed, named `name`.
    ThreadPost {
        channel: String,
        parent: String,
        name: String,
        content: Value,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<StoredFile>,
    },
    /// An edit of a message in the thread of `parent`.
    ThreadEdit {
        parent: String,
        message: String,
        content: Value,
    },
    /// An ephemeral follow-up to an interaction.
    Followup {
        token: String,
        /// The interaction's id, to wait for its first answer.
        interaction: String,
        content: Value,
    },
    /// Replaces a deferred interaction answer.
    EditOriginal { token: String, content: Value },
    /// A direct message to a user.
    Direct { user: String, content: Value },
}

/// A file queued with a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    pub name: String,
    pub content_type: String,
    /// Base64 of the bytes.
    pub data: String,
}

/// How long an interaction token may be used for follow-ups: Discord's
/// 15 minutes, less a margin for the outbox's queue.
const TOKEN_LIFE: Duration = Duration::from_secs(14 * 60);

/// A person's latest interaction, for ephemeral follow-ups.
#[derive(Debug, Clone)]
struct Latest {
    interaction: String,
    token: String,
    at: Instant,
}

/// The Discord side of the `Chat` and `Answers` ports.
pub struct DiscordChat {
    rest: Rest,
    application_id: String,
    outbox: Outbox,
    templates: Arc<Templates>,
    /// Each person's latest interaction (user id → it). A std Mutex: never
    /// held across an await.
    latest: Mutex<HashMap<String, Latest>>,
    /// Interactions whose first answer has not been sent yet, with when
    /// they came: a follow-up before that answer would be refused.
    unanswered: Mutex<HashMap<String, Instant>>,
    /// Thread names by proposal message, so each thread post need not ask.
    threads: Mutex<HashSet<String>>,
}

fn chat_error(e: impl std::fmt::Display) -> ChatError {
    ChatError {
        platform: PLATFORM.into(),
        message: e.to_string(),
        retryable: false,
    }
}

impl From<RenderError> for ChatError {
    fn from(e: RenderError) -> Self {
        chat_error(e)
    }
}

fn queue_error(e: OutboxError) -> ChatError {
    ChatError {
        platform: PLATFORM.into(),
        message: format!("could not queue the message: {e}"),
        retryable: true,
    }
}

/// `discord:123` or `123` → `123`.
pub fn bare_channel(channel: &str) -> &str {
    channel.strip_prefix("discord:").unwrap_or(channel)
}

impl DiscordChat {
    pub fn new(
        rest: Rest,
        application_id: String,
        outbox: Outbox,
        templates: Arc<Templates>,
    ) -> Self {
        Self {
            rest,
            application_id,
            outbox,
            templates,
            latest: Mutex::new(HashMap::new()),
            unanswered: Mutex::new(HashMap::new()),
            threads: Mutex::new(HashSet::new()),
        }
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn rest(&self) -> &Rest {
        &self.rest
    }

    pub fn templates(&self) -> &Arc<Templates> {
        &self.templates
    }

    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// Remembers `user`'s interaction (not answered yet), so what rollbot
    /// tells them privately goes to it.
    pub fn interaction_received(&self, user: &str, interaction: &str, token: &str) {
        lock(&self.unanswered).insert(interaction.to_string(), Instant::now());
        lock(&self.latest).insert(
            user.to_string(),
            Latest {
                interaction: interaction.to_string(),
                token: token.to_string(),
                at: Instant::now(),
            },
        );
    }

    /// The interaction's first answer went out: follow-ups may follow.
    pub fn interaction_answered(&self, interaction: &str) {
        lock(&self.unanswered).remove(interaction);
    }

    /// A command's answer as a message body (ephemeral when asked).
    pub fn reply_content(&self, answer: &Answer) -> Value {
        match render::reply(&self.templates, &answer.locale, &answer.reply) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "cannot render a command reply");
                render::plain("rollbot could not render its answer; see its logs")
            }
        }
    }

    /// Tells `user` (a Discord user id) `content` privately: as an
    /// ephemeral follow-up to their latest interaction while its token is
    /// valid, else in a direct message.
    ///
    /// # Errors
    /// The message could not be queued.
    pub async fn tell_user(&self, lane: &str, user: &str, content: Value) -> Result<(), ChatError> {
        let latest = lock(&self.latest)
            .get(user)
            .filter(|l| l.at.elapsed() < TOKEN_LIFE)
            .cloned();
        let op = match latest {
            Some(l) => {
                let mut content = content;
                content["flags"] = json!(EPHEMERAL);
                Op::Followup {
                    token: l.token,
                    interaction: l.interaction,
                    content,
                }
            }
            None => Op::Direct {
                user: user.to_string(),
                content,
            },
        };
        self.outbox
            .push(lane, None, &op)
            .await
            .map_err(queue_error)?;
        Ok(())
    }

    /// Queues `op` on `lane`.
    ///
    /// # Errors
    /// The message could not be queued.
    pub async fn queue(&self, lane: &str, op: &Op) -> Result<(), ChatError> {
        self.outbox
            .push(lane, None, op)
            .await
            .map_err(queue_error)?;
        Ok(())
    }

    fn message_ref(channel: &str, message: String) -> MessageRef {
        MessageRef {
            platform: PLATFORM.into(),
            channel: bare_channel(channel).to_string(),
            message,
        }
    }

    /// The real id behind `message` (itself when already real).
    fn real(&self, message: &str) -> Result<String, Delivery> {
        if !Outbox::is_pending(message) {
            return Ok(message.to_string());
        }
        match self.outbox.resolve(message) {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(Delivery::Permanent(format!(
                "the message {message} refers to was never posted"
            ))),
            Err(e) => Err(Delivery::Transient(e.to_string())),
        }
    }
}

/// Discord's ephemeral message flag.
pub const EPHEMERAL: u64 = 1 << 6;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The name of a proposal's thread.
fn thread_name(p: &Proposal) -> String {
    format!("{} {}", p.id, p.service)
}

#[async_trait]
impl Chat for DiscordChat {
    async fn post_proposal(&self, channel: &str, p: &Proposal) -> Result<MessageRef, ChatError> {
        let content = render::proposal(&self.templates, p)?;
        let ch = bare_channel(channel).to_string();
        // One provisional reference per proposal: posting again after a
        // restart queues nothing new (see the Slack adapter).
        let pending = Outbox::pending_for_proposal(p.id.as_str());
        if let Some(real) = self.outbox.resolve(&pending).map_err(queue_error)? {
            return Ok(Self::message_ref(&ch, real));
        }
        self.outbox
            .push(
                p.id.as_str(),
                Some(pending.clone()),
                &Op::Post {
                    channel: ch.clone(),
                    content,
                },
            )
            .await
            .map_err(queue_error)?;
        Ok(Self::message_ref(&ch, pending))
    }

    async fn update_proposal(&self, at: &MessageRef, p: &Proposal) -> Result<(), ChatError> {
        let content = render::proposal(&self.templates, p)?;
        self.queue(
            p.id.as_str(),
            &Op::Edit {
                channel: bare_channel(&at.channel).to_string(),
                message: at.message.clone(),
                content,
            },
        )
        .await
    }

    async fn post_thread(
        &self,
        at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<MessageRef, ChatError> {
        let content = render::thread(&self.templates, p, note)?;
        let mut files = Vec::new();
        if let ThreadNote::Report {
            markdown,
            chart_png,
        } = note
        {
            let b64 = base64::engine::general_purpose::STANDARD;
            let names = crate::report::attachments(&self.templates, p)
                .map_err(|e| chat_error(RenderError::from(e)))?;
            files.push(StoredFile {
                name: names.report_file,
                content_type: "text/markdown".into(),
                data: b64.encode(markdown),
            });
            if let Some(png) = chart_png {
                files.push(StoredFile {
                    name: names.chart_file,
                    content_type: "image/png".into(),
                    data: b64.encode(png),
                });
            }
        }
        let pending = Outbox::new_pending();
        self.outbox
            .push(
                p.id.as_str(),
                Some(pending.clone()),
                &Op::ThreadPost {
                    channel: bare_channel(&at.channel).to_string(),
                    parent: at.message.clone(),
                    name: thread_name(p),
                    content,
                    files,
                },
            )
            .await
            .map_err(queue_error)?;
        Ok(Self::message_ref(&at.channel, pending))
    }

    async fn edit_thread(
        &self,
        at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<(), ChatError> {
        let Some(parent) = p.primary_message() else {
            return Err(chat_error(format!(
                "proposal {} has no message whose thread holds {}",
                p.id, at.message
            )));
        };
        let content = render::thread(&self.templates, p, note)?;
        self.queue(
            p.id.as_str(),
            &Op::ThreadEdit {
                parent: parent.message.clone(),
                message: at.message.clone(),
                content,
            },
        )
        .await
    }

    async fn tell(
        &self,
        p: &Proposal,
        _channel: &str,
        user: &UserId,
        note: &PrivateNote,
    ) -> Result<(), ChatError> {
        if user.platform() != PLATFORM {
            return Err(chat_error(format!(
                "cannot tell {user} anything on Discord: not a Discord user id"
            )));
        }
        let content = render::private(&self.templates, p, note)?;
        self.tell_user(p.id.as_str(), user.local(), content).await
    }
}

#[async_trait]
impl Answers for DiscordChat {
    async fn answer(&self, channel: &str, user: &UserId, answer: &Answer) -> Result<(), ChatError> {
        if user.platform() != PLATFORM {
            return Err(chat_error(format!(
                "cannot answer {user} on Discord: not a Discord user id"
            )));
        }
        let content = self.reply_content(answer);
        self.tell_user(bare_channel(channel), user.local(), content)
            .await
    }
}

/// A posted message or created channel: only the id is used.
#[derive(Deserialize)]
struct Created {
    id: String,
}

/// How long a follow-up waits for its interaction's first answer before
/// asking again.
const ANSWER_WAIT: Duration = Duration::from_millis(50);

/// Discord's deadline for an interaction's first answer.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(3);

/// How long after an interaction Discord may not know its follow-up
/// webhook yet (our answer is still on its way): a 404 then is retried.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

#[async_trait]
impl Deliver for DiscordChat {
    async fn deliver(&self, entry: &Entry) -> Delivery {
        let op: Op = match serde_json::from_value(entry.op.clone()) {
            Ok(op) => op,
            Err(e) => return Delivery::Permanent(format!("unknown outbox entry: {e}")),
        };
        match self.send(op, entry.pending.as_deref()).await {
            Ok(real) => Delivery::Done { real },
            Err(d) => d,
        }
    }
}

/// The `nonce` of a post establishing `pending`: Discord allows 25
/// characters, and the end of a provisional reference is its unique part.
fn nonce(pending: &str) -> String {
    let skip = pending.chars().count().saturating_sub(25);
    pending.chars().skip(skip).collect()
}

/// `content` with Discord's deduplication: a post sent again with the same
/// nonce (its answer was lost, or rollbot restarted mid-call) returns the
/// message Discord already has instead of posting a second one.
fn once(content: Value, pending: Option<&str>) -> Value {
    let Some(pending) = pending else {
        return content;
    };
    let mut content = content;
    content["nonce"] = json!(nonce(pending));
    content["enforce_nonce"] = json!(true);
    content
}

impl DiscordChat {
    async fn send(&self, op: Op, pending: Option<&str>) -> Result<Option<String>, Delivery> {
        match op {
            Op::Post { channel, content } => {
                let content = once(content, pending);
                let m: Created = self
                    .rest
                    .call(
                        Method::POST,
                        &format!("/channels/{channel}/messages"),
                        Some(&content),
                    )
                    .await?;
                Ok(Some(m.id))
            }
            Op::Edit {
                channel,
                message,
                content,
            } => {
                let id = self.real(&message)?;
                let _: Value = self
                    .rest
                    .call(
                        Method::PATCH,
                        &format!("/channels/{channel}/messages/{id}"),
                        Some(&content),
                    )
                    .await?;
                Ok(None)
            }
            Op::ThreadPost {
                channel,
                parent,
                name,
                content,
                files,
            } => {
                let thread = self.real(&parent)?;
                self.start_thread(&channel, &thread, &name).await?;
                let content = once(content, pending);
                let path = format!("/channels/{thread}/messages");
                let m: Created = if files.is_empty() {
                    self.rest.call(Method::POST, &path, Some(&content)).await?
                } else {
                    let b64 = base64::engine::general_purpose::STANDARD;
                    let mut decoded = Vec::new();
                    for f in files {
                        let bytes = b64.decode(f.data).map_err(|e| {
                            Delivery::Permanent(format!("stored file is corrupt: {e}"))
                        })?;
                        decoded.push(File {
                            name: f.name,
                            content_type: f.content_type,
                            bytes,
                        });
                    }
                    self.rest
                        .call_with_files(Method::POST, &path, &content, decoded)
                        .await?
                };
                Ok(Some(m.id))
            }
            Op::ThreadEdit {
                parent,
                message,
                content,
            } => {
                let thread = self.real(&parent)?;
                let id = self.real(&message)?;
                let _: Value = self
                    .rest
                    .call(
                        Method::PATCH,
                        &format!("/channels/{thread}/messages/{id}"),
                        Some(&content),
                    )
                    .await?;
                Ok(None)
            }
            Op::Followup {
                token,
                interaction,
                content,
            } => {
                // Discord's deadline for the first answer bounds the wait.
                let waiting = lock(&self.unanswered)
                    .get(&interaction)
                    .is_some_and(|at| at.elapsed() < ANSWER_DEADLINE);
                if waiting {
                    return Err(Delivery::RetryAfter(ANSWER_WAIT));
                }
                let path = format!("/webhooks/{}/{token}", self.application_id);
                match self
                    .rest
                    .call::<Value>(Method::POST, &path, Some(&content))
                    .await
                {
                    Ok(_) => Ok(None),
                    Err(Delivery::Permanent(m)) if m.contains("HTTP 404") && self.young(&token) => {
                        Err(Delivery::Transient(m))
                    }
                    Err(d) => Err(d),
                }
            }
            Op::EditOriginal { token, content } => {
                let path = format!(
                    "/webhooks/{}/{token}/messages/@original",
                    self.application_id
                );
                let _: Value = self.rest.call(Method::PATCH, &path, Some(&content)).await?;
                Ok(None)
            }
            Op::Direct { user, content } => {
                let dm: Created = self
                    .rest
                    .call(
                        Method::POST,
                        "/users/@me/channels",
                        Some(&json!({ "recipient_id": user })),
                    )
                    .await?;
                let _: Value = self
                    .rest
                    .call(
                        Method::POST,
                        &format!("/channels/{}/messages", dm.id),
                        Some(&content),
                    )
                    .await?;
                Ok(None)
            }
        }
    }

    /// Whether the interaction of `token` is so recent that Discord may
    /// not have our first answer yet.
    fn young(&self, token: &str) -> bool {
        lock(&self.latest)
            .values()
            .any(|l| l.token == token && l.at.elapsed() < ANSWER_GRACE)
    }

    /// Starts the thread on `message` unless this run already did; a
    /// thread that exists already is fine.
    async fn start_thread(&self, channel: &str, message: &str, name: &str) -> Result<(), Delivery> {
        if lock(&self.threads).contains(message) {
            return Ok(());
        }
        let body = json!({ "name": name, "auto_archive_duration": 1440 });
        match self
            .rest
            .call::<Value>(
                Method::POST,
                &format!("/channels/{channel}/messages/{message}/threads"),
                Some(&body),
            )
            .await
        {
            Ok(_) => {}
            // 160004: "A thread has already been created for this message".
            Err(Delivery::Permanent(m)) if m.contains("code 160004") => {}
            Err(d) => return Err(d),
        }
        lock(&self.threads).insert(message.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_fit_discords_limit_and_keep_the_unique_end() {
        assert_eq!(nonce("pending-RB-7K3M9Q"), "pending-RB-7K3M9Q");
        let long = "pending-0123456789abcdef0123456789abcdef";
        assert_eq!(nonce(long), "789abcdef0123456789abcdef");
        assert_eq!(nonce(long).len(), 25);
        let c = once(json!({ "content": "x" }), Some(long));
        assert_eq!(c["enforce_nonce"], true);
        assert_eq!(
            once(json!({ "content": "x" }), None),
            json!({ "content": "x" })
        );
    }
}
