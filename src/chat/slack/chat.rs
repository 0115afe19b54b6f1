//! Outbound Slack: the engine's [`Chat`] port, delivered through the
//! [`Outbox`] with slack-morphism's Web API client.
//!
//! Every call renders the message now (from the proposal as it is now),
//! queues it durably, and returns. The outbox worker makes the Web API
//! calls in order: `chat.postMessage`, `chat.update`, `chat.postEphemeral`,
//! and for reports `files.getUploadURLExternal` → upload →
//! `files.completeUploadExternal` into the proposal's thread.
//!
//! A call counts as delivered when Slack answers `ok: true`: the answers
//! are read into small structs holding only the fields rollbot uses (a
//! message's `ts`, an upload's URL and file id), so an answer without the
//! fields slack-morphism's full response types insist on (`chat.update`
//! without `message`) or with fields nobody documented is still a success,
//! not a refused message dropped from the outbox. The bytes of an upload go
//! to Slack's one-use upload URL with a plain HTTP client: that URL answers
//! `OK - <bytes>` as text, success is its 2xx status, and the bot token is
//! not sent there.
//!
//! `post_proposal` returns at once with a provisional reference (see
//! [`crate::outbox`]) that the engine binds to the proposal before anything
//! else happens; when Slack accepts the post, the store swaps it for the
//! real `ts` in the same write that removes the outbox entry. Nothing waits
//! for Slack, so a slow or absent Slack cannot leave a proposal unbound.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::render::{self, Emoji, RenderError};
use crate::chat::reply::{Answer, Answers};
use crate::domain::{MessageRef, Proposal, UserId};
use crate::outbox::{Deliver, Delivery, Entry, Outbox, OutboxError};
use crate::ports::{Chat, ChatError, PrivateNote, ThreadNote};
use crate::templates::Templates;

/// One Web API call (or upload sequence), as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Post {
        channel: String,
        /// The parent's ts, or the pending id it will get.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<String>,
        content: serde_json::Value,
    },
    Update {
        channel: String,
        message: String,
        content: serde_json::Value,
    },
    Ephemeral {
        channel: String,
        user: String,
        content: serde_json::Value,
    },
    Upload {
        channel: String,
        thread: String,
        filename: String,
        title: String,
        content_type: String,
        /// Base64 of the file's bytes.
        data: String,
    },
}

/// The Slack side of the `Chat` port.
pub struct SlackChat {
    session: Session,
    outbox: Outbox,
    templates: Arc<Templates>,
    emoji: Emoji,
    /// The provisional reference of the last proposal post attempted, and
    /// whether any post was attempted since start (see [`Self::may_repeat`]).
    attempted: std::sync::Mutex<(bool, Option<String>)>,
}

/// The metadata `event_type` of a proposal's message; its payload carries
/// the provisional reference, so the message can be found again.
const PROPOSAL_EVENT: &str = "rollbot_proposal";

/// How many of a channel's latest messages are searched for a proposal
/// whose post may have gone through unconfirmed.
const LOOKBACK: u16 = 100;

/// `conversations.history`: only what the lookup reads.
#[derive(Deserialize)]
struct History {
    messages: Vec<HistoryMessage>,
}

#[derive(Deserialize)]
struct HistoryMessage {
    ts: String,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

/// A Web API client bound to the bot token.
#[derive(Clone)]
pub struct Session {
    client: Arc<SlackHyperClient>,
    token: SlackApiToken,
    /// For the bytes of file uploads (see the module doc).
    upload: reqwest::Client,
}

/// A successful answer whose content rollbot does not need.
type Accepted = serde::de::IgnoredAny;

/// `chat.postMessage`: only the new message's `ts` is used.
#[derive(Deserialize)]
struct Posted {
    ts: String,
}

/// `files.getUploadURLExternal`.
#[derive(Deserialize)]
struct UploadUrl {
    upload_url: String,
    file_id: String,
}

/// `auth.test`: only the bot's own user id is used.
#[derive(Deserialize)]
struct Identity {
    user_id: String,
}

/// `usergroups.users.list`.
#[derive(Deserialize)]
struct Members {
    users: Vec<String>,
}

impl Session {
    /// A client for `api_url` (plain `http://` is allowed, for proxies and tests).
    ///
    /// # Errors
    /// The system's root certificates cannot be loaded.
    pub fn new(api_url: &str, bot_token: String) -> std::io::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        let connector = SlackClientHyperConnector::with_connector(https)
            .with_slack_api_url(api_url.trim_end_matches('/'));
        let upload = reqwest::Client::builder()
            .timeout(UPLOAD_TIMEOUT)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self {
            client: Arc::new(SlackClient::new(connector)),
            token: SlackApiToken::new(SlackApiTokenValue(bot_token)),
            upload,
        })
    }

    pub fn client(&self) -> &Arc<SlackHyperClient> {
        &self.client
    }

    /// `auth.test`: the bot's own Slack user id.
    ///
    /// # Errors
    /// The token is refused or Slack cannot be reached.
    pub async fn bot_user_id(&self) -> Result<String, SlackClientError> {
        let none: Vec<(&str, Option<&str>)> = Vec::new();
        let r: Identity = self
            .client
            .open_session(&self.token)
            .http_session_api
            .http_get("auth.test", &none, None)
            .await?;
        Ok(r.user_id)
    }

    /// `usergroups.users.list`: the user ids in a user group (bot scope
    /// `usergroups:read`).
    ///
    /// # Errors
    /// Slack refused (e.g. `no_such_subteam`, `missing_scope`) or cannot be
    /// reached.
    pub async fn user_group_members(&self, group: &str) -> Result<Vec<String>, SlackClientError> {
        let params = vec![("usergroup", Some(group))];
        let r: Members = self
            .client
            .open_session(&self.token)
            .http_session_api
            .http_get("usergroups.users.list", &params, None)
            .await?;
        Ok(r.users)
    }
}

/// How long the POST of a file's bytes may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(60);

fn chat_error(e: impl std::fmt::Display) -> ChatError {
    ChatError {
        platform: "slack".into(),
        message: e.to_string(),
        retryable: false,
    }
}

impl From<RenderError> for ChatError {
    fn from(e: RenderError) -> Self {
        chat_error(e)
    }
}

impl From<OutboxError> for ChatError {
    fn from(e: OutboxError) -> Self {
        ChatError {
            platform: "slack".into(),
            message: format!("could not queue the message: {e}"),
            retryable: true,
        }
    }
}

/// `slack:C0123` or `C0123` → `C0123`.
pub fn bare_channel(channel: &str) -> &str {
    channel.strip_prefix("slack:").unwrap_or(channel)
}

impl SlackChat {
    pub fn new(session: Session, outbox: Outbox, templates: Arc<Templates>, emoji: Emoji) -> Self {
        Self {
            session,
            outbox,
            templates,
            emoji,
            attempted: std::sync::Mutex::new((false, None)),
        }
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn templates(&self) -> &Arc<Templates> {
        &self.templates
    }

    pub fn emoji(&self) -> &Emoji {
        &self.emoji
    }

    /// A command's answer as Slack's command response (an ephemeral
    /// message); a template bug is logged and answered with a line that
    /// says where to look.
    pub fn reply_json(&self, answer: &Answer) -> serde_json::Value {
        match render::reply(&self.templates, &answer.locale, &answer.reply) {
            Ok(r) => r.json,
            Err(e) => {
                tracing::error!(error = %e, "cannot render a command reply");
                serde_json::json!({"response_type": "ephemeral", "text": "rollbot could not render its answer; see its logs"})
            }
        }
    }

    /// Sends an ephemeral message (command replies), through the outbox.
    ///
    /// # Errors
    /// The message could not be queued.
    pub async fn ephemeral(
        &self,
        channel: &str,
        user: &str,
        content: serde_json::Value,
    ) -> Result<(), ChatError> {
        let ch = bare_channel(channel).to_string();
        self.outbox
            .push(
                &ch,
                None,
                &Op::Ephemeral {
                    channel: ch.clone(),
                    user: user.to_string(),
                    content,
                },
            )
            .await?;
        Ok(())
    }

    fn message_ref(channel: &str, message: String) -> MessageRef {
        MessageRef {
            platform: "slack".into(),
            channel: bare_channel(channel).to_string(),
            message,
        }
    }

    /// The real ts behind `message` (itself when already real).
    fn real(&self, message: &str) -> Result<Option<String>, OutboxError> {
        if Outbox::is_pending(message) {
            self.outbox.resolve(message)
        } else {
            Ok(Some(message.to_string()))
        }
    }
}

#[async_trait]
impl Chat for SlackChat {
    async fn post_proposal(&self, channel: &str, p: &Proposal) -> Result<MessageRef, ChatError> {
        let content = render::proposal(&self.templates, p, &self.emoji)?.json;
        let ch = bare_channel(channel).to_string();
        // One provisional reference per proposal: posting it again after a
        // restart queues nothing new, and answers with the real ts if Slack
        // already has the message.
        let pending = Outbox::pending_for_proposal(p.id.as_str());
        if let Some(real) = self.outbox.resolve(&pending)? {
            return Ok(Self::message_ref(&ch, real));
        }
        // Tagged so that a post Slack took without rollbot hearing back
        // can be found instead of posted twice (see `find_posted`).
        let mut content = content;
        content["metadata"] = serde_json::json!({
            "event_type": PROPOSAL_EVENT,
            "event_payload": { "pending": pending, "proposal": p.id.as_str() },
        });
        self.outbox
            .push(
                p.id.as_str(),
                Some(pending.clone()),
                &Op::Post {
                    channel: ch.clone(),
                    thread: None,
                    content,
                },
            )
            .await?;
        Ok(Self::message_ref(&ch, pending))
    }

    async fn update_proposal(&self, at: &MessageRef, p: &Proposal) -> Result<(), ChatError> {
        let content = render::proposal(&self.templates, p, &self.emoji)?.json;
        self.outbox
            .push(
                p.id.as_str(),
                None,
                &Op::Update {
                    channel: bare_channel(&at.channel).to_string(),
                    message: at.message.clone(),
                    content,
                },
            )
            .await?;
        Ok(())
    }

    async fn post_thread(
        &self,
        at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<MessageRef, ChatError> {
        let content = render::thread(&self.templates, p, note)?.json;
        let ch = bare_channel(&at.channel).to_string();
        let pending = Outbox::new_pending();
        self.outbox
            .push(
                p.id.as_str(),
                Some(pending.clone()),
                &Op::Post {
                    channel: ch.clone(),
                    thread: Some(at.message.clone()),
                    content,
                },
            )
            .await?;
        if let ThreadNote::Report {
            markdown,
            chart_png,
        } = note
        {
            let b64 = base64::engine::general_purpose::STANDARD;
            let names =
                crate::report::attachments(&self.templates, p).map_err(RenderError::from)?;
            let mut files = vec![(
                names.report_file,
                names.report_title,
                "text/markdown",
                b64.encode(markdown),
            )];
            if let Some(png) = chart_png {
                files.push((
                    names.chart_file,
                    names.chart_title,
                    "image/png",
                    b64.encode(png),
                ));
            }
            for (filename, title, content_type, data) in files {
                self.outbox
                    .push(
                        p.id.as_str(),
                        None,
                        &Op::Upload {
                            channel: ch.clone(),
                            thread: at.message.clone(),
                            filename,
                            title,
                            content_type: content_type.into(),
                            data,
                        },
                    )
                    .await?;
            }
        }
        Ok(Self::message_ref(&ch, pending))
    }

    async fn edit_thread(
        &self,
        at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<(), ChatError> {
        let content = render::thread(&self.templates, p, note)?.json;
        self.outbox
            .push(
                p.id.as_str(),
                None,
                &Op::Update {
                    channel: bare_channel(&at.channel).to_string(),
                    message: at.message.clone(),
                    content,
                },
            )
            .await?;
        Ok(())
    }

    async fn tell(
        &self,
        p: &Proposal,
        channel: &str,
        user: &UserId,
        note: &PrivateNote,
    ) -> Result<(), ChatError> {
        let Some(uid) = user.as_str().strip_prefix("slack:") else {
            return Err(chat_error(format!(
                "cannot tell {user} anything on Slack: not a Slack user id"
            )));
        };
        let ch = bare_channel(channel);
        let content = render::private(&self.templates, p, note)?.json;
        self.ephemeral(ch, uid, content).await
    }
}

#[async_trait]
impl Answers for SlackChat {
    async fn answer(&self, channel: &str, user: &UserId, answer: &Answer) -> Result<(), ChatError> {
        let Some(uid) = user.as_str().strip_prefix("slack:") else {
            return Err(chat_error(format!(
                "cannot answer {user} on Slack: not a Slack user id"
            )));
        };
        self.ephemeral(channel, uid, self.reply_json(answer)).await
    }
}

fn content_of(v: &serde_json::Value) -> Result<SlackMessageContent, Delivery> {
    serde_json::from_value(v.clone())
        .map_err(|e| Delivery::Permanent(format!("stored message is not Block Kit: {e}")))
}

/// The longest `Retry-After` obeyed. Slack asks for seconds, rarely a
/// minute; a larger value (up to `u64::MAX` seconds parses) would hold every
/// queued message for that long, so rollbot retries after this instead: at
/// worst one more 429.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Classifies a Web API failure for the outbox.
pub fn classify(e: &SlackClientError) -> Delivery {
    match e {
        SlackClientError::RateLimitError(r) => {
            let asked = r.retry_after.unwrap_or(Duration::from_secs(1));
            if asked > MAX_RETRY_AFTER {
                tracing::warn!(
                    ?asked,
                    "Slack asked for an implausibly long wait; retrying sooner"
                );
            }
            Delivery::RetryAfter(asked.min(MAX_RETRY_AFTER))
        }
        SlackClientError::HttpError(h) if h.status_code.is_server_error() => {
            Delivery::Transient(format!("Slack answered HTTP {}", h.status_code))
        }
        SlackClientError::HttpError(h) => {
            Delivery::Permanent(format!("Slack answered HTTP {}", h.status_code))
        }
        SlackClientError::ApiError(a) => match a.code.as_str() {
            "ratelimited" => Delivery::RetryAfter(Duration::from_secs(1)),
            code if super::TRANSIENT_CODES.contains(&code) => {
                Delivery::Transient(format!("Slack error {}", a.code))
            }
            code => Delivery::Permanent(format!(
                "Slack refused the call: {code}; check the bot's scopes and that it is in the channel"
            )),
        },
        SlackClientError::ProtocolError(p) => {
            Delivery::Permanent(format!("Slack's answer could not be read: {p}"))
        }
        other => Delivery::Transient(format!("Slack unreachable: {other}")),
    }
}

#[async_trait]
impl Deliver for SlackChat {
    async fn deliver(&self, entry: &Entry) -> Delivery {
        let op: Op = match serde_json::from_value(entry.op.clone()) {
            Ok(op) => op,
            Err(e) => return Delivery::Permanent(format!("unknown outbox entry: {e}")),
        };
        // A proposal's post that may already be in the channel is looked
        // up first: posting it again would leave an orphan message whose
        // votes nobody counts.
        if let (
            Some(pending),
            Op::Post {
                channel,
                thread: None,
                ..
            },
        ) = (&entry.pending, &op)
            && self.may_repeat(pending)
        {
            match self.find_posted(channel, pending).await {
                Ok(Some(ts)) => {
                    tracing::info!(%pending, %ts, "found the proposal already posted; binding it instead of posting again");
                    return Delivery::Done { real: Some(ts) };
                }
                Ok(None) => {}
                Err(retry) => return retry,
            }
        }
        match self.send(op).await {
            Ok(real) => Delivery::Done { real },
            Err(d) => d,
        }
    }
}

impl SlackChat {
    /// Whether posting proposal message `pending` may repeat a post Slack
    /// already took: it was attempted before in this process (its answer
    /// was lost or an error), or it is the first post since start — the
    /// outbox delivers one entry at a time, so only that one can have been
    /// under way when rollbot last stopped.
    fn may_repeat(&self, pending: &str) -> bool {
        let mut a = self
            .attempted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = !a.0;
        let again = a.1.as_deref() == Some(pending);
        *a = (true, Some(pending.to_string()));
        first || again
    }

    /// The ts of the proposal message tagged `pending` among `channel`'s
    /// latest messages. `None` when there is none, or when Slack refuses to
    /// show the history (e.g. a bot without `channels:history`): the post
    /// then goes ahead, at least once, as before.
    ///
    /// # Errors
    /// Slack is down or rate-limits: the delivery is retried later rather
    /// than risking a second post.
    async fn find_posted(&self, channel: &str, pending: &str) -> Result<Option<String>, Delivery> {
        let s = self.session.client.open_session(&self.session.token);
        let limit = LOOKBACK.to_string();
        let params = vec![
            ("channel", Some(channel)),
            ("limit", Some(limit.as_str())),
            ("include_all_metadata", Some("true")),
        ];
        let history: History = match s
            .http_session_api
            .http_get("conversations.history", &params, None)
            .await
        {
            Ok(h) => h,
            Err(e) => match classify(&e) {
                Delivery::Permanent(why) => {
                    tracing::warn!(%channel, %why, "cannot read the channel's history to check whether the proposal was already posted; posting it (it may appear twice: give the bot channels:history and groups:history)");
                    return Ok(None);
                }
                retry => return Err(retry),
            },
        };
        Ok(history.messages.into_iter().find_map(|m| {
            let meta = m.metadata?;
            (meta["event_type"] == PROPOSAL_EVENT && meta["event_payload"]["pending"] == pending)
                .then_some(m.ts)
        }))
    }

    fn resolve_or_drop(&self, message: &str) -> Result<String, Delivery> {
        match self.real(message) {
            Ok(Some(ts)) => Ok(ts),
            Ok(None) => Err(Delivery::Permanent(format!(
                "the message {message} refers to was never posted"
            ))),
            Err(e) => Err(Delivery::Transient(e.to_string())),
        }
    }

    async fn send(&self, op: Op) -> Result<Option<String>, Delivery> {
        let s = self.session.client.open_session(&self.session.token);
        let api = &s.http_session_api;
        let err = |e: SlackClientError| classify(&e);
        match op {
            Op::Post {
                channel,
                thread,
                content,
            } => {
                let thread = match thread {
                    Some(t) => Some(self.resolve_or_drop(&t)?),
                    None => None,
                };
                let req =
                    SlackApiChatPostMessageRequest::new(channel.into(), content_of(&content)?)
                        .opt_thread_ts(thread.map(SlackTs));
                let r: Posted = api
                    .http_post("chat.postMessage", &req, None)
                    .await
                    .map_err(err)?;
                Ok(Some(r.ts))
            }
            Op::Update {
                channel,
                message,
                content,
            } => {
                let ts = self.resolve_or_drop(&message)?;
                let req = SlackApiChatUpdateRequest::new(
                    channel.into(),
                    content_of(&content)?,
                    SlackTs(ts),
                );
                let _: Accepted = api
                    .http_post("chat.update", &req, None)
                    .await
                    .map_err(err)?;
                Ok(None)
            }
            Op::Ephemeral {
                channel,
                user,
                content,
            } => {
                let req = SlackApiChatPostEphemeralRequest::new(
                    channel.into(),
                    user.into(),
                    content_of(&content)?,
                );
                let _: Accepted = api
                    .http_post("chat.postEphemeral", &req, None)
                    .await
                    .map_err(err)?;
                Ok(None)
            }
            Op::Upload {
                channel,
                thread,
                filename,
                title,
                content_type,
                data,
            } => {
                let thread = self.resolve_or_drop(&thread)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|e| Delivery::Permanent(format!("stored file is corrupt: {e}")))?;
                // A retry starts over here: an upload URL is valid once.
                let length = bytes.len().to_string();
                let params = vec![
                    ("filename", Some(filename.as_str())),
                    ("length", Some(length.as_str())),
                ];
                let url: UploadUrl = api
                    .http_get("files.getUploadURLExternal", &params, None)
                    .await
                    .map_err(err)?;
                self.upload_bytes(&url.upload_url, &content_type, bytes)
                    .await?;
                let req = SlackApiFilesCompleteUploadExternalRequest::new(vec![
                    SlackApiFilesComplete::new(SlackFileId(url.file_id)).with_title(title),
                ])
                .with_channel_id(channel.into())
                .with_thread_ts(SlackTs(thread));
                let _: Accepted = api
                    .http_post("files.completeUploadExternal", &req, None)
                    .await
                    .map_err(err)?;
                Ok(None)
            }
        }
    }

    /// POSTs a file's bytes to the upload URL Slack handed out. Slack
    /// answers `OK - <bytes>` as `text/plain`; any 2xx is success.
    async fn upload_bytes(
        &self,
        url: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(), Delivery> {
        let r = self
            .session
            .upload
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await
            .map_err(|e| Delivery::Transient(format!("Slack's upload URL unreachable: {e}")))?;
        let status = r.status();
        if status.is_success() {
            return Ok(());
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = r
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .map_or(Duration::from_secs(1), Duration::from_secs);
            return Err(Delivery::RetryAfter(wait));
        }
        let body = r.text().await.unwrap_or_default();
        let detail = format!(
            "Slack's upload URL answered HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        );
        if status.is_server_error() {
            Err(Delivery::Transient(detail))
        } else {
            Err(Delivery::Permanent(detail))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slack_morphism::errors::SlackRateLimitError;

    fn rate_limited(retry_after: Option<Duration>) -> SlackClientError {
        SlackClientError::RateLimitError(SlackRateLimitError::new().opt_retry_after(retry_after))
    }

    /// slack-morphism turns `Retry-After: 18446744073709551615` into
    /// `Duration::from_secs(u64::MAX)`; obeying it would stall the outbox
    /// (every later message) for ever.
    #[test]
    fn retry_after_is_bounded() {
        for secs in [
            u64::MAX,
            u64::MAX / 2,
            86_400,
            MAX_RETRY_AFTER.as_secs() + 1,
        ] {
            assert_eq!(
                classify(&rate_limited(Some(Duration::from_secs(secs)))),
                Delivery::RetryAfter(MAX_RETRY_AFTER),
                "{secs}"
            );
        }
        assert_eq!(
            classify(&rate_limited(Some(Duration::from_secs(7)))),
            Delivery::RetryAfter(Duration::from_secs(7))
        );
        assert_eq!(
            classify(&rate_limited(Some(Duration::ZERO))),
            Delivery::RetryAfter(Duration::ZERO)
        );
        assert_eq!(
            classify(&rate_limited(None)),
            Delivery::RetryAfter(Duration::from_secs(1))
        );
    }
}
