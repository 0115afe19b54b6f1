//! `[server]`, `[store]` and `[progress]`: how rollbot serves, stores and
//! streams progress.

use super::*;

/// How rollout progress is streamed into chat.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressConfig {
    /// Least time between two edits of the progress message, e.g. `"5s"`.
    #[serde(default = "default_edit_interval")]
    pub edit_interval: String,
}

impl Default for ProgressConfig {
    fn default() -> Self {
        Self {
            edit_interval: default_edit_interval(),
        }
    }
}

fn default_edit_interval() -> String {
    "5s".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// How long running work may take to reach a checkpoint after SIGTERM
    /// or SIGINT; below Kubernetes' 30 s `terminationGracePeriodSeconds`
    /// by default, so rollbot stops on its own before it is killed.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: String,
    /// When set, `/api/v1/*` and `/metrics` answer only requests carrying
    /// `Authorization: Bearer <token>`; without it they are open (for a
    /// cluster-internal Service).
    #[serde(default)]
    pub api_token: Option<Secret>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            body_limit_bytes: default_body_limit(),
            shutdown_grace: default_shutdown_grace(),
            api_token: None,
        }
    }
}

impl ServerConfig {
    /// `shutdown_grace` resolved (validated by [`Config::validate`]).
    pub fn shutdown_grace(&self) -> Duration {
        humantime::parse_duration(&self.shutdown_grace).unwrap_or(DEFAULT_SHUTDOWN_GRACE)
    }
}

/// The default `server.shutdown_grace`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

fn default_shutdown_grace() -> String {
    humantime::format_duration(DEFAULT_SHUTDOWN_GRACE).to_string()
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_body_limit() -> usize {
    1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// How long deduplication keys (alert deliveries, chat event ids) are
    /// kept: longer than any sender retries (Alertmanager, Slack: minutes
    /// to hours), short enough that an alert storm does not grow the store
    /// for ever.
    #[serde(default = "default_dedup_retention")]
    pub dedup_retention: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: default_store_path(),
            dedup_retention: default_dedup_retention(),
        }
    }
}

impl StoreConfig {
    /// [`StoreConfig::dedup_retention`] parsed (validated at load).
    pub fn dedup_retention(&self) -> Duration {
        humantime::parse_duration(&self.dedup_retention).unwrap_or(DEFAULT_DEDUP_RETENTION)
    }
}

/// Seven days: longer than Alertmanager's and Slack's retry windows.
pub const DEFAULT_DEDUP_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

fn default_dedup_retention() -> String {
    "7d".into()
}

fn default_store_path() -> PathBuf {
    PathBuf::from("rollbot.db")
}
