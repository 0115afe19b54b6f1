//! Decoding of the bodies Slack POSTs to `/slack/commands`, `/slack/events`
//! and `/slack/interactions`, once the signature has been verified.
//!
//! These are the exact decodes the HTTP routes in [`super::inbound`] perform
//! (slash commands and interactions are `application/x-www-form-urlencoded`,
//! interactions carry their JSON in a `payload` field, events are JSON), kept
//! in one place so the fuzz targets ([`crate::fuzzing`]) exercise the same
//! code as the routes. JSON decodes go through [`serde_path_to_error`] so a
//! rejected body names the field that was wrong.

use slack_morphism::prelude::*;

/// Why a Slack request body could not be read; the `Display` is safe to
/// return to the sender (it names a field, never a secret).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a urlencoded form of the expected fields.
    #[error("cannot read the {what}: {source}")]
    Form {
        /// What was being read, for the message.
        what: &'static str,
        #[source]
        source: serde_urlencoded::de::Error,
    },
    /// JSON that does not match Slack's documented shape.
    #[error("cannot read the {what}: {source}")]
    Json {
        /// What was being read, for the message.
        what: &'static str,
        #[source]
        source: serde_path_to_error::Error<serde_json::Error>,
    },
}

/// A slash command's form body (`POST /slack/commands`).
///
/// # Errors
/// [`DecodeError::Form`] when required fields are missing or malformed.
pub fn command(body: &[u8]) -> Result<SlackCommandEvent, DecodeError> {
    serde_urlencoded::from_bytes(body).map_err(|source| DecodeError::Form {
        what: "slash command form",
        source,
    })
}

/// An Events API body (`POST /slack/events`).
///
/// # Errors
/// [`DecodeError::Json`] naming the JSON path that did not match.
pub fn event(body: &[u8]) -> Result<SlackPushEvent, DecodeError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|source| DecodeError::Json {
        what: "event",
        source,
    })
}

#[derive(serde::Deserialize)]
struct InteractionForm {
    payload: String,
}

/// An interactivity body (`POST /slack/interactions`): a form whose
/// `payload` field holds the JSON.
///
/// # Errors
/// [`DecodeError::Form`] without a `payload` field, [`DecodeError::Json`]
/// when the payload does not match.
pub fn interaction(body: &[u8]) -> Result<SlackInteractionEvent, DecodeError> {
    let form: InteractionForm =
        serde_urlencoded::from_bytes(body).map_err(|source| DecodeError::Form {
            what: "interaction form (expected a payload field)",
            source,
        })?;
    let de = &mut serde_json::Deserializer::from_str(&form.payload);
    serde_path_to_error::deserialize(de).map_err(|source| DecodeError::Json {
        what: "interaction payload",
        source,
    })
}
