//! Socket Mode: Slack pushes events over a WebSocket that rollbot opens
//! (`apps.connections.open` with the app-level `xapp-` token), so no public
//! HTTP endpoint is needed. The envelopes are already authenticated by the
//! token; their payloads go to the same [`SlackInbound`] methods the HTTP
//! routes use.

use std::sync::Arc;

use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::chat::Session;
use super::inbound::SlackInbound;

/// A running Socket Mode connection; drop or [`SocketMode::shutdown`] to stop.
pub struct SocketMode {
    listener: SlackClientSocketModeListener<SlackClientHyperHttpsConnector>,
}

impl SocketMode {
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

/// Opens the Socket Mode connection and routes its events to `inbound`.
///
/// # Errors
/// `apps.connections.open` failed (wrong or missing `connections:write`
/// app token, Slack unreachable).
pub async fn start(
    session: &Session,
    app_token: String,
    inbound: Arc<SlackInbound>,
) -> Result<SocketMode, SlackClientError> {
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
        let reply = on_command.command(&ev);
        async move {
            command_response(reply)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        }
    });
    let on_push = inbound.clone();
    callbacks.push_events_callback = Box::new(move |ev: SlackPushEventCallback, _c, _s| {
        on_push.push(ev);
        async { Ok(()) }
    });
    let on_interaction = inbound;
    callbacks.interaction_callback = Box::new(move |ev: SlackInteractionEvent, _c, _s| {
        on_interaction.interaction(ev);
        async { Ok(SlackInteractionResponse::Empty) }
    });
    let listener =
        SlackClientSocketModeListener::new(&SlackClientSocketModeConfig::new(), env, callbacks);
    let token = SlackApiToken::new(SlackApiTokenValue(app_token));
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
