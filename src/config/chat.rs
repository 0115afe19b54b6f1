//! `[slack]` and `[discord]`: the chat platforms' credentials and settings.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub bot_token: Secret,
    pub signing_secret: Secret,
    /// Base URL of the Web API (GovSlack, proxies, tests).
    #[serde(default = "default_slack_api")]
    pub api_url: String,
    /// Receive events over Socket Mode instead of public HTTP endpoints.
    #[serde(default)]
    pub socket_mode: bool,
    /// App-level token (`xapp-…`, scope `connections:write`) for Socket Mode.
    #[serde(default)]
    pub app_token: Option<Secret>,
    /// Reaction (emoji short name, no colons) that approves.
    #[serde(default = "default_approve_emoji")]
    pub approve_emoji: String,
    /// Reaction that rejects.
    #[serde(default = "default_reject_emoji")]
    pub reject_emoji: String,
}

fn default_slack_api() -> String {
    "https://slack.com/api/".into()
}

fn default_approve_emoji() -> String {
    "white_check_mark".into()
}

fn default_reject_emoji() -> String {
    "x".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    pub bot_token: Secret,
    pub public_key: String,
    #[serde(default = "default_discord_api")]
    pub api_url: String,
}

fn default_discord_api() -> String {
    "https://discord.com".into()
}
