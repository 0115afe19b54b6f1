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

impl DiscordConfig {
    /// Checks `[discord]`, at `at`.
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        self.bot_token
            .validate(&format!("{at}.bot_token"), problems);
    }
}
