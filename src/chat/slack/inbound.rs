//! Inbound Slack: slash commands, reactions and button clicks.
//!
//! Over HTTP (`POST /slack/commands`, `/slack/events`, `/slack/interactions`)
//! every request is verified first — `X-Slack-Signature` over
//! `v0:{timestamp}:{raw body}`, timestamp within 5 minutes — and rejected
//! with 401 before anything is parsed or stored; then its body is decoded
//! by [`super::decode`], the code the fuzz targets run. Socket Mode
//! ([`super::socket`]) hands the same parsed events to the same
//! [`SlackInbound`] methods.
//!
//! **Durable before acknowledged.** Slack (and a person) take a 2xx as
//! "done", so nothing is acknowledged before its effect is stored:
//! - a reaction or a button click is applied (the vote stored and flushed)
//!   before the answer; a reaction's `event_id` is claimed in the same write
//!   as the vote, so Slack's retry of a delivery that got no answer counts
//!   once, and one that got its answer changes nothing;
//! - a slash command that opens a proposal (planning can take longer than
//!   Slack's 3 s) is written to the store's inbox first, answered, then
//!   carried out; a restart carries out what is left, and the proposal
//!   claims the command's `trigger_id`, so it is opened once (the
//!   platform-neutral [`CommandHandler`] does this for every platform);
//! - when the store cannot record an input, the answer is a 5xx, so Slack
//!   retries and the person sees that it did not work.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use slack_morphism::prelude::*;
use subtle::ConstantTimeEq;

use super::chat::SlackChat;
use crate::chat::handler::{CommandHandler, CommandInput, VoteError, VoteInput, VoteOn, Voted};
use crate::domain::{MessageRef, ProposalId, UserId, VoteKind, VoteVia};

/// Largest clock difference accepted on a signed request.
pub const MAX_SKEW_SECONDS: i64 = 300;

/// Action ids of the proposal's buttons (see `slack/proposal.json.j2`).
pub const APPROVE_ACTION: &str = "rollbot_approve";
pub const REJECT_ACTION: &str = "rollbot_reject";

/// Why a request was not accepted as coming from Slack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("X-Slack-Request-Timestamp is not a Unix time")]
    BadTimestamp,
    /// So far from now that the difference does not fit in an `i64`.
    #[error(
        "X-Slack-Request-Timestamp is billions of years away from now: forged, or a broken clock on the sender"
    )]
    OutOfRange,
    #[error(
        "X-Slack-Request-Timestamp is {0} s away from now (more than 5 minutes): a replayed request, or this server's clock is wrong (check NTP)"
    )]
    Stale(i64),
    #[error("X-Slack-Signature does not match; check slack.signing_secret")]
    Mismatch,
}

/// Verifies a Slack request signature at time `now` (Unix seconds).
///
/// # Errors
/// [`SignatureError`] saying what was wrong.
pub fn verify_signature(
    secret: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::Missing("X-Slack-Signature"))?;
    let timestamp = timestamp.ok_or(SignatureError::Missing("X-Slack-Request-Timestamp"))?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    // Checked: the timestamp is attacker-controlled and read before the
    // signature is checked, so `i64::MIN` must not overflow the subtraction.
    let skew = now.checked_sub(ts).ok_or(SignatureError::OutOfRange)?;
    if skew.unsigned_abs() > MAX_SKEW_SECONDS.unsigned_abs() {
        return Err(SignatureError::Stale(skew));
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| SignatureError::Mismatch)?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    let expected = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
    if expected.as_bytes().ct_eq(signature.as_bytes()).into() {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Handles Slack's inbound events, whichever transport brought them:
/// decodes them into the [`CommandHandler`]'s neutral inputs and lays out
/// its answers.
pub struct SlackInbound {
    handler: Arc<CommandHandler>,
    chat: Arc<SlackChat>,
    signing_secret: String,
}

impl SlackInbound {
    pub fn new(
        handler: Arc<CommandHandler>,
        chat: Arc<SlackChat>,
        signing_secret: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            handler,
            chat,
            signing_secret,
        })
    }

    /// Waits until no event is being processed (nor any rollback running).
    pub async fn wait_idle(&self) {
        self.handler.wait_idle().await;
    }

    /// Whether any event task panicked (tests fail on this).
    pub fn background_panicked(&self) -> bool {
        self.handler.background_panicked()
    }

    /// Carries out the commands acknowledged before a restart but not yet
    /// done (every platform's: see [`CommandHandler::resume`]).
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn resume(&self) -> Result<usize, crate::store::StoreError> {
        self.handler.resume()
    }

    /// Handles `/rollback …`; returns the immediate ephemeral answer (see
    /// [`CommandHandler::command`]).
    ///
    /// # Errors
    /// The command could not be recorded (answer 5xx).
    pub async fn command(
        &self,
        ev: &SlackCommandEvent,
    ) -> Result<serde_json::Value, crate::store::StoreError> {
        let Some(user) = slack_user(&ev.user_id.0) else {
            return Ok(serde_json::json!({}));
        };
        let input = CommandInput {
            platform: PLATFORM.into(),
            channel: ev.channel_id.0.clone(),
            user,
            text: ev.text.clone().unwrap_or_default(),
            key: ev.trigger_id.0.clone(),
            // A slash command does not say the user's locale.
            locale: None,
        };
        let answer = self.handler.command(input).await?;
        Ok(self.chat.reply_json(&answer))
    }

    /// Handles an Events API callback (reactions): a vote is stored (with
    /// the event id, in one write) before this returns.
    ///
    /// # Errors
    /// The vote could not be stored (answer 5xx so Slack retries).
    pub async fn push(&self, ev: SlackPushEventCallback) -> Result<(), PushError> {
        let key = format!("slack:event:{}", ev.event_id.0);
        let vote = match &ev.event {
            SlackEventCallbackBody::ReactionAdded(r) => {
                self.reaction(&r.user, &r.reaction, &r.item, true, &key)
            }
            SlackEventCallbackBody::ReactionRemoved(r) => {
                self.reaction(&r.user, &r.reaction, &r.item, false, &key)
            }
            _ => None,
        };
        let Some(vote) = vote else {
            // Nothing to do; remember it only so a retry is skipped quietly.
            self.handler.skip(&key)?;
            return Ok(());
        };
        if self.handler.vote(vote).await? == Voted::Repeat {
            tracing::debug!(event = %ev.event_id.0, "duplicate Slack event ignored");
        }
        Ok(())
    }

    /// The vote a reaction stands for: the approve or reject emoji on a
    /// message, by a Slack user.
    fn reaction(
        &self,
        user: &SlackUserId,
        reaction: &SlackReactionName,
        item: &SlackReactionsItem,
        added: bool,
        key: &str,
    ) -> Option<VoteInput> {
        let SlackReactionsItem::Message(msg) = item else {
            return None;
        };
        let channel = msg.origin.channel.as_ref()?.0.clone();
        let emoji = self.chat.emoji();
        let kind = if reaction.0 == emoji.approve {
            VoteKind::Approve
        } else if reaction.0 == emoji.reject {
            VoteKind::Reject
        } else {
            return None;
        };
        let voter = slack_user(&user.0)?;
        let ts = msg.origin.ts.0.clone();
        let outbox = self.chat.outbox();
        Some(VoteInput {
            on: VoteOn::Message {
                provisional: outbox.pending_for(&ts).ok().flatten(),
                // Posts still queued: the message may be one whose ts the
                // store has not recorded yet.
                posting: !outbox.is_empty(),
                at: MessageRef {
                    platform: PLATFORM.into(),
                    channel,
                    message: ts,
                },
            },
            voter,
            kind,
            withdraw: !added,
            via: VoteVia::Reaction,
            key: Some(key.to_string()),
        })
    }

    /// Handles a button click: the vote is stored before this returns.
    ///
    /// # Errors
    /// The vote could not be stored (answer 5xx).
    pub async fn interaction(&self, ev: SlackInteractionEvent) -> Result<(), PushError> {
        let SlackInteractionEvent::BlockActions(ev) = ev else {
            return Ok(());
        };
        let Some(user) = ev.user.map(|u| u.id.0) else {
            return Ok(());
        };
        for action in ev.actions.unwrap_or_default() {
            let kind = match action.action_id.0.as_str() {
                APPROVE_ACTION => VoteKind::Approve,
                REJECT_ACTION => VoteKind::Reject,
                _ => continue,
            };
            let Some(id) = action
                .value
                .as_deref()
                .and_then(|v| ProposalId::parse(v).ok())
            else {
                continue;
            };
            let Some(voter) = slack_user(&user) else {
                continue;
            };
            self.handler
                .vote(VoteInput {
                    on: VoteOn::Proposal(id),
                    voter,
                    kind,
                    withdraw: false,
                    via: VoteVia::Button,
                    key: None,
                })
                .await?;
        }
        Ok(())
    }
}

/// Why a reaction or click was not handled; answered 503 so Slack retries.
pub type PushError = VoteError;

/// The platform name of Slack's channels and users.
const PLATFORM: &str = "slack";

fn slack_user(id: &str) -> Option<UserId> {
    UserId::new(PLATFORM, id).ok()
}

/// Checks the signature of an HTTP request; 401 when it is not Slack's.
fn verified(
    inbound: &SlackInbound,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(), Box<Response>> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    verify_signature(
        &inbound.signing_secret,
        h("x-slack-signature"),
        h("x-slack-request-timestamp"),
        body,
        now,
    )
    .map_err(|e| {
        tracing::warn!(error = %e, "rejected an unsigned or stale Slack request");
        Box::new(
            (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({ "error": format!("invalid request: {e}") })),
            )
                .into_response(),
        )
    })
}

fn bad_request(e: &super::decode::DecodeError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": e.to_string() })),
    )
        .into_response()
}

/// The Slack routes, to merge into the main router.
pub fn router(inbound: Arc<SlackInbound>, body_limit: usize) -> Router {
    Router::new()
        .route("/slack/commands", post(commands_route))
        .route("/slack/events", post(events_route))
        .route("/slack/interactions", post(interactions_route))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(inbound)
}

async fn commands_route(
    State(inbound): State<Arc<SlackInbound>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = verified(&inbound, &headers, &body) {
        return *r;
    }
    let ev = match super::decode::command(&body) {
        Ok(ev) => ev,
        Err(e) => return bad_request(&e),
    };
    match inbound.command(&ev).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => not_stored(&e),
    }
}

/// 503 for an input that could not be stored: Slack retries events, and a
/// person sees the slash command failed, instead of a 200 for nothing.
fn not_stored(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "a Slack request could not be stored; answering 503");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "error": "rollbot could not store this request; try again in a moment" })),
    )
        .into_response()
}

async fn events_route(
    State(inbound): State<Arc<SlackInbound>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = verified(&inbound, &headers, &body) {
        return *r;
    }
    let ev = match super::decode::event(&body) {
        Ok(ev) => ev,
        Err(e) => return bad_request(&e),
    };
    if let Some(n) = headers.get("x-slack-retry-num") {
        tracing::info!(retry = ?n, "Slack retried an event delivery");
    }
    match ev {
        SlackPushEvent::UrlVerification(v) => {
            Json(serde_json::json!({ "challenge": v.challenge })).into_response()
        }
        SlackPushEvent::EventCallback(cb) => match inbound.push(cb).await {
            Ok(()) => StatusCode::OK.into_response(),
            Err(e) => not_stored(&e),
        },
        SlackPushEvent::AppRateLimited(_) => {
            tracing::warn!("Slack is rate limiting events to rollbot");
            StatusCode::OK.into_response()
        }
    }
}

async fn interactions_route(
    State(inbound): State<Arc<SlackInbound>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = verified(&inbound, &headers, &body) {
        return *r;
    }
    let ev = match super::decode::interaction(&body) {
        Ok(ev) => ev,
        Err(e) => return bad_request(&e),
    };
    match inbound.interaction(ev).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => not_stored(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_documented_rule() {
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = Some("v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503");
        let ts = Some("1531420618");
        assert_eq!(verify_signature(secret, sig, ts, body, 1531420618), Ok(()));
        assert_eq!(
            verify_signature(secret, sig, ts, body, 1531420618 + 300),
            Ok(())
        );
        assert_eq!(
            verify_signature(secret, sig, ts, body, 1531420618 + 301),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            verify_signature(secret, sig, ts, body, 1531420618 - 301),
            Err(SignatureError::Stale(-301))
        );
        let mut changed = body.to_vec();
        changed.extend_from_slice(b"------");
        assert_eq!(
            verify_signature(secret, sig, ts, &changed, 1531420618),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(secret, None, ts, body, 1531420618),
            Err(SignatureError::Missing("X-Slack-Signature"))
        );
        assert_eq!(
            verify_signature(secret, sig, Some("soon"), body, 1531420618),
            Err(SignatureError::BadTimestamp)
        );
    }

    /// Timestamps at the edges of `i64` are refused, never overflow: the
    /// skew is computed before the signature is checked, so anyone can send
    /// them.
    #[test]
    fn extreme_timestamps_are_refused_without_overflow() {
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=x";
        let sig = Some("v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503");
        let now = 1_531_420_618;
        for ts in ["-9223372036854775808", "9223372036854775807", "-1", "0"] {
            let err = verify_signature(secret, sig, Some(ts), body, now).unwrap_err();
            assert!(
                matches!(err, SignatureError::Stale(_) | SignatureError::OutOfRange),
                "{ts}: {err:?}"
            );
        }
        // `now` itself at the edges (a broken clock) does not overflow either.
        for (ts, now) in [
            ("9223372036854775807", -1),
            ("-9223372036854775808", i64::MAX),
            ("1", i64::MIN),
        ] {
            assert!(verify_signature(secret, sig, Some(ts), body, now).is_err());
        }
        // Wider than i64, or not a number: not a Unix time at all.
        for ts in ["9223372036854775808", "-99999999999999999999", "1e9", ""] {
            assert_eq!(
                verify_signature(secret, sig, Some(ts), body, now),
                Err(SignatureError::BadTimestamp),
                "{ts}"
            );
        }
        let msg = SignatureError::OutOfRange.to_string();
        assert!(msg.contains("X-Slack-Request-Timestamp"), "{msg}");
    }
}
