//! Discord's REST API (v10), as the outbox and the interactions use it.
//!
//! The calls are made with reqwest rather than serenity's `Http`: the
//! outbox must see a 429's `retry_after` to wait exactly as long as asked,
//! and serenity's error for an unsuccessful request keeps only Discord's
//! `{code, message}` (a 429's body has neither, so it is lost), while its
//! own rate limiter would sleep inside the outbox's one worker where
//! nothing can see it. serenity still drives the gateway (see
//! [`super::gateway`]).
//!
//! Every failure is classified for the outbox ([`Delivery`]): 429 waits
//! `retry_after` (the body's seconds, else the `Retry-After` header), 5xx
//! and network failures back off, anything else is a refusal worded with
//! Discord's own `{code, message}` and what to check.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::outbox::Delivery;

/// The longest wait a 429 is obeyed for (see the Slack adapter's
/// `MAX_RETRY_AFTER`: a huge value would hold every queued message).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How long one REST call may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A file sent with a message.
#[derive(Debug, Clone)]
pub struct File {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A REST client bound to the bot token and the API's base URL.
#[derive(Clone)]
pub struct Rest {
    http: reqwest::Client,
    /// `{api_url}/api/v10`.
    base: String,
    token: String,
}

impl Rest {
    /// A client for `api_url` (`https://discord.com`, or a proxy or fake).
    ///
    /// # Errors
    /// The HTTP client cannot be built (TLS roots).
    pub fn new(api_url: &str, token: String) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!(
                "DiscordBot (https://github.com/rollbot, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .build()?;
        Ok(Self {
            http,
            base: format!("{}/api/v10", api_url.trim_end_matches('/')),
            token,
        })
    }

    /// A JSON call; `None` body sends none.
    ///
    /// # Errors
    /// The failure, classified for the outbox.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, Delivery> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req, path).await
    }

    /// A message with files (`multipart/form-data`: `payload_json` and
    /// `files[n]`).
    ///
    /// # Errors
    /// The failure, classified for the outbox.
    pub async fn call_with_files<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        payload: &Value,
        files: Vec<File>,
    ) -> Result<T, Delivery> {
        let mut payload = payload.clone();
        payload["attachments"] = files
            .iter()
            .enumerate()
            .map(|(i, f)| serde_json::json!({ "id": i, "filename": f.name }))
            .collect();
        let mut form = reqwest::multipart::Form::new().part(
            "payload_json",
            reqwest::multipart::Part::text(payload.to_string())
                .mime_str("application/json")
                .map_err(|e| Delivery::Permanent(e.to_string()))?,
        );
        for (i, f) in files.into_iter().enumerate() {
            let part = reqwest::multipart::Part::bytes(f.bytes)
                .file_name(f.name)
                .mime_str(&f.content_type)
                .map_err(|e| Delivery::Permanent(format!("bad content type: {e}")))?;
            form = form.part(format!("files[{i}]"), part);
        }
        let req = self.request(method, path).multipart(form);
        self.send(req, path).await
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        // Interaction callbacks and follow-ups are authorised by the
        // interaction's token in the path, not the bot token.
        if path.starts_with("/interactions/") || path.starts_with("/webhooks/") {
            req
        } else {
            req.header(
                reqwest::header::AUTHORIZATION,
                format!("Bot {}", self.token),
            )
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, Delivery> {
        let r = req
            .send()
            .await
            .map_err(|e| Delivery::Transient(format!("Discord unreachable: {e}")))?;
        let status = r.status();
        let header_wait = r
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let text = r
            .text()
            .await
            .map_err(|e| Delivery::Transient(format!("Discord's answer was cut off: {e}")))?;
        if status.is_success() {
            // 204 No Content (interaction callbacks) reads as JSON null.
            let text = if text.trim().is_empty() {
                "null"
            } else {
                &text
            };
            return serde_json::from_str(text).map_err(|e| {
                Delivery::Permanent(format!("Discord's answer to {path} could not be read: {e}"))
            });
        }
        Err(classify(status.as_u16(), header_wait, &text, path))
    }
}

/// Classifies an unsuccessful answer for the outbox.
pub fn classify(status: u16, header_wait: Option<f64>, body: &str, path: &str) -> Delivery {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if status == 429 {
        let secs = json["retry_after"]
            .as_f64()
            .or(header_wait)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(1.0);
        let wait = Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64()));
        return Delivery::RetryAfter(wait);
    }
    if status >= 500 {
        return Delivery::Transient(format!("Discord answered HTTP {status} to {path}"));
    }
    let said = match (json["code"].as_i64(), json["message"].as_str()) {
        (Some(code), Some(message)) => format!("{message} (code {code})"),
        _ => body.chars().take(200).collect(),
    };
    let advice = match status {
        401 => "check discord.bot_token",
        403 => {
            "check the bot's permissions in the channel (view channel, send messages, create public threads, send messages in threads, attach files, read message history)"
        }
        404 => "check the channel id and that the bot is in that server",
        _ => "this message cannot be sent as it is",
    };
    Delivery::Permanent(format!(
        "Discord refused {path} with HTTP {status}: {said}; {advice}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 429 bodies from Discord's rate-limit documentation.
    #[test]
    fn rate_limits_wait_what_discord_asks_within_a_bound() {
        let user =
            r#"{"message": "You are being rate limited.", "retry_after": 6.457, "global": false}"#;
        assert_eq!(
            classify(429, Some(7.0), user, "/x"),
            Delivery::RetryAfter(Duration::from_secs_f64(6.457))
        );
        let shared = r#"{"message": "The resource is being rate limited.", "retry_after": 1336.57, "global": false}"#;
        assert_eq!(
            classify(429, Some(1337.0), shared, "/x"),
            Delivery::RetryAfter(MAX_RETRY_AFTER)
        );
        // No body: the header; neither: a second.
        assert_eq!(
            classify(429, Some(2.0), "", "/x"),
            Delivery::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            classify(429, None, "", "/x"),
            Delivery::RetryAfter(Duration::from_secs(1))
        );
    }

    #[test]
    fn server_errors_are_retried_and_refusals_say_why() {
        assert!(matches!(
            classify(502, None, "", "/x"),
            Delivery::Transient(_)
        ));
        let Delivery::Permanent(m) = classify(
            403,
            None,
            r#"{"message": "Missing Permissions", "code": 50013}"#,
            "/channels/1/messages",
        ) else {
            panic!()
        };
        assert!(
            m.contains("Missing Permissions (code 50013)") && m.contains("permissions"),
            "{m}"
        );
        let Delivery::Permanent(m) = classify(
            401,
            None,
            r#"{"message": "Invalid authentication token", "code": 50014}"#,
            "/x",
        ) else {
            panic!()
        };
        assert!(m.contains("discord.bot_token"), "{m}");
    }
}
