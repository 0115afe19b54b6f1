//! Socket Mode: Slack pushes events over a WebSocket that rollbot opens
//! (`apps.connections.open` with the app-level `xapp-` token), so no public
//! HTTP endpoint is needed. The envelopes are already authenticated by the
//! token; their payloads go to the same [`SlackInbound`] methods the HTTP
//! routes use.
//!
//! slack-morphism's listener does the protocol: it keeps two connections
//! (the second opened 5 s after the first, so a refresh never leaves rollbot
//! deaf), acknowledges every envelope with `{"envelope_id":…}` once its
//! callback returns — with the command's ephemeral answer as `payload` for
//! slash commands — pings every 15 s, reconnects on `disconnect` or a lost
//! connection with a fresh `apps.connections.open`, and retries a failed
//! open every 30 s. Our callbacks store the input (a vote, a recorded
//! command) before they return, so an acknowledged envelope is never lost,
//! and they do only that, so acknowledgements go out well within Slack's
//! 3 s. A redelivered event carries the same `event_id`, which
//! [`SlackInbound::push`] counts once.

use std::sync::Arc;

use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::chat::Session;
use super::inbound::SlackInbound;

/// Running Socket Mode connections.
///
/// Call [`SocketMode::shutdown`] to close them: dropping this only stops
/// events from being handled (and acknowledged) while the connections stay
/// open, so Slack would keep redelivering to them.
pub struct SocketMode {
    listener: SlackClientSocketModeListener<SlackClientHyperHttpsConnector>,
}

impl SocketMode {
    /// Closes every connection (a WebSocket close frame each).
    pub async fn shutdown(&self) {
        self.listener.shutdown().await;
    }
}

/// The command answer as Socket Mode wants it.
///
/// # Errors
/// The reply template produced something that is not a command response.
pub fn command_response(
    reply: serde_json::Value,
) -> Result<SlackCommandEventResponse, serde_json::Error> {
    serde_json::from_value(reply)
}

/// Opens the Socket Mode connections and routes their events to `inbound`.
///
/// The token is tried once with `apps.connections.open` before the listener
/// starts: the listener itself only logs a refused token and retries every
/// 30 s, which would leave a misconfigured rollbot running but deaf.
///
/// # Errors
/// `apps.connections.open` failed (wrong or missing `connections:write`
/// app token, Slack unreachable).
pub async fn start(
    session: &Session,
    app_token: String,
    inbound: Arc<SlackInbound>,
) -> Result<SocketMode, SlackClientError> {
    let token = SlackApiToken::new(SlackApiTokenValue(app_token));
    session
        .client()
        .open_session(&token)
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await?;
    let env = Arc::new(
        SlackClientEventsListenerEnvironment::new(session.client().clone()).with_error_handler(
            |err, _client, _state| {
                tracing::error!(error = %err, "Slack Socket Mode error");
                axum::http::StatusCode::OK
            },
        ),
    );
    let mut callbacks = SlackSocketModeListenerCallbacks::new();
    let on_command = inbound.clone();
    callbacks.command_callback = Box::new(move |ev: SlackCommandEvent, _c, _s| {
        let on_command = on_command.clone();
        async move {
            let reply = on_command
                .command(&ev)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            command_response(reply)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        }
    });
    let on_push = inbound.clone();
    callbacks.push_events_callback = Box::new(move |ev: SlackPushEventCallback, _c, _s| {
        let on_push = on_push.clone();
        async move {
            on_push
                .push(ev)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        }
    });
    let on_interaction = inbound;
    callbacks.interaction_callback = Box::new(move |ev: SlackInteractionEvent, _c, _s| {
        let on_interaction = on_interaction.clone();
        async move {
            on_interaction
                .interaction(ev)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            Ok(SlackInteractionResponse::Empty)
        }
    });
    let listener =
        SlackClientSocketModeListener::new(&SlackClientSocketModeConfig::new(), env, callbacks);
    listener.listen_for(&token).await?;
    listener.start().await;
    Ok(SocketMode { listener })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::commands::CommandError;
    use crate::chat::slack::render::{self, Reply};
    use crate::templates::Templates;

    #[test]
    fn command_replies_become_ephemeral_socket_mode_responses() {
        let t = Templates::load().unwrap();
        let reply = render::reply(
            &t,
            "en",
            &Reply::Error {
                error: CommandError::UnknownVerb {
                    verb: "stauts".into(),
                    did_you_mean: Some("status".into()),
                },
            },
        )
        .unwrap();
        let r = command_response(reply.json).unwrap();
        assert_eq!(r.response_type, Some(SlackMessageResponseType::Ephemeral));
        assert!(r.content.text.unwrap().contains("`status`"));
        assert_eq!(r.content.blocks.map(|b| b.len()), Some(1));
    }
}
