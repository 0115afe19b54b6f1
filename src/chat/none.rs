//! The chat used when no platform is configured: every message is logged
//! and dropped, so a long-running `serve` keeps nothing in memory for it.
//! Proposals and their timelines stay visible through the HTTP API.

use async_trait::async_trait;

use crate::domain::{MessageRef, Proposal, UserId};
use crate::ports::{Chat, ChatError, PrivateNote, ThreadNote};

/// Logs instead of posting.
#[derive(Debug, Default)]
pub struct NoChat;

#[async_trait]
impl Chat for NoChat {
    async fn post_proposal(&self, channel: &str, p: &Proposal) -> Result<MessageRef, ChatError> {
        tracing::info!(proposal = %p.id, %channel, "no chat configured: proposal not posted (see /api/v1/proposals)");
        Ok(MessageRef {
            platform: "none".into(),
            channel: channel.to_string(),
            message: p.id.to_string(),
        })
    }

    async fn update_proposal(&self, _at: &MessageRef, p: &Proposal) -> Result<(), ChatError> {
        tracing::info!(proposal = %p.id, state = %p.state, "proposal updated");
        Ok(())
    }

    async fn post_thread(
        &self,
        at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<MessageRef, ChatError> {
        self.edit_thread(at, p, note).await?;
        Ok(at.clone())
    }

    async fn edit_thread(
        &self,
        _at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<(), ChatError> {
        let kind = serde_json::to_value(note)
            .ok()
            .and_then(|v| v["note"].as_str().map(str::to_string))
            .unwrap_or_default();
        tracing::info!(proposal = %p.id, note = %kind, "thread note");
        Ok(())
    }

    async fn tell(
        &self,
        p: &Proposal,
        _channel: &str,
        user: &UserId,
        _note: &PrivateNote,
    ) -> Result<(), ChatError> {
        tracing::info!(proposal = %p.id, %user, "private note not delivered: no chat configured");
        Ok(())
    }
}
