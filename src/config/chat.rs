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

impl SlackConfig {
    /// Checks `[slack]`, at `at`.
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        let mut problem = push(problems);
        check_secret(&self.bot_token, &format!("{at}.bot_token"), &mut problem);
        check_secret(
            &self.signing_secret,
            &format!("{at}.signing_secret"),
            &mut problem,
        );
        match &self.app_token {
            Some(t) => check_secret(t, &format!("{at}.app_token"), &mut problem),
            None if self.socket_mode => problem(
                format!("{at}.app_token"),
                "socket_mode = true needs an app-level token (xapp-…); add app_token = { env = \"SLACK_APP_TOKEN\" }".into(),
            ),
            None => {}
        }
        for (key, name) in [
            ("approve_emoji", &self.approve_emoji),
            ("reject_emoji", &self.reject_emoji),
        ] {
            if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) {
                problem(
                    format!("{at}.{key}"),
                    format!(
                        "{name:?} is not an emoji short name; write it without colons, e.g. \"white_check_mark\""
                    ),
                );
            }
        }
        if self.approve_emoji == self.reject_emoji {
            problem(
                format!("{at}.reject_emoji"),
                "must differ from approve_emoji".into(),
            );
        }
    }
}

/// `[discord]`: the bot's credentials and how events reach rollbot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// The bot token (Developer Portal → Bot → Token).
    pub bot_token: Secret,
    /// The application id (Developer Portal → General Information).
    pub application_id: String,
    /// The application's public key (64 hex digits): every request to
    /// `POST /discord/interactions` must be signed with its private half.
    /// Needed only when the interactions endpoint is used.
    #[serde(default)]
    pub public_key: Option<Secret>,
    /// Register `/rollback` in this guild only (it appears at once);
    /// without it the command is global (Discord may take an hour).
    #[serde(default)]
    pub guild_id: Option<String>,
    /// Connect to the gateway for reactions (and interactions, unless an
    /// interactions endpoint URL is set in the Developer Portal).
    #[serde(default = "default_true")]
    pub gateway: bool,
    /// Base URL of the REST API (proxies, tests); the gateway URL is asked
    /// from it. With another base URL than Discord's, rollbot relies on its
    /// own outbox for rate limits.
    #[serde(default = "default_discord_api")]
    pub api_url: String,
    /// Reaction (a Unicode emoji) that approves.
    #[serde(default = "default_discord_approve")]
    pub approve_emoji: String,
    /// Reaction that rejects.
    #[serde(default = "default_discord_reject")]
    pub reject_emoji: String,
}

fn default_true() -> bool {
    true
}

fn default_discord_api() -> String {
    DISCORD_API.into()
}

/// Discord's own REST base URL.
pub const DISCORD_API: &str = "https://discord.com";

fn default_discord_approve() -> String {
    "✅".into()
}

fn default_discord_reject() -> String {
    "❌".into()
}

/// Whether `id` is a Discord snowflake: a non-zero decimal `u64`.
pub fn is_snowflake(id: &str) -> bool {
    !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && id.parse::<u64>().is_ok_and(|n| n > 0)
}

impl DiscordConfig {
    /// Checks `[discord]`, at `at`.
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        let mut problem = push(problems);
        check_secret(&self.bot_token, &format!("{at}.bot_token"), &mut problem);
        match &self.public_key {
            Some(k) => check_secret(k, &format!("{at}.public_key"), &mut problem),
            None if !self.gateway => problem(
                format!("{at}.public_key"),
                "gateway = false leaves only the interactions endpoint, which needs the application's public key; add public_key = { env = \"DISCORD_PUBLIC_KEY\" } or set gateway = true".into(),
            ),
            None => {}
        }
        if !is_snowflake(&self.application_id) {
            problem(
                format!("{at}.application_id"),
                format!(
                    "{:?} is not a Discord id; copy the Application ID (digits) from the Developer Portal's General Information page",
                    self.application_id
                ),
            );
        }
        if let Some(g) = &self.guild_id
            && !is_snowflake(g)
        {
            problem(
                format!("{at}.guild_id"),
                format!(
                    "{g:?} is not a Discord id; enable Developer Mode, right-click the server and Copy Server ID"
                ),
            );
        }
        check_url(&self.api_url, &format!("{at}.api_url"), &mut problem);
        for (key, emoji) in [
            ("approve_emoji", &self.approve_emoji),
            ("reject_emoji", &self.reject_emoji),
        ] {
            if emoji.is_empty() || emoji.is_ascii() {
                problem(
                    format!("{at}.{key}"),
                    format!(
                        "{emoji:?} is not a Unicode emoji; write the emoji itself, e.g. \"✅\""
                    ),
                );
            }
        }
        if self.approve_emoji == self.reject_emoji {
            problem(
                format!("{at}.reject_emoji"),
                "must differ from approve_emoji".into(),
            );
        }
    }

    /// Whether REST goes to Discord itself (serenity's rate limiter is
    /// used only then: it ignores another base URL).
    pub fn is_discord(&self) -> bool {
        self.api_url.trim_end_matches('/') == DISCORD_API
    }
}
