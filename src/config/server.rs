//! `[server]`, `[store]` and `[progress]`: how rollbot serves, stores and
//! streams progress.

use super::*;

/// How rollout progress is streamed into chat.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressConfig {
    /// Least time between two edits of the progress message, e.g. `"5s"`.
    #[serde(default = "default_edit_interval")]
    pub edit_interval: Span,
}

/// The default `progress.edit_interval`.
pub const DEFAULT_EDIT_INTERVAL: Duration = Duration::from_secs(5);

impl ProgressConfig {
    /// `edit_interval`, read once at load.
    pub fn edit_interval(&self) -> Duration {
        self.edit_interval.or(DEFAULT_EDIT_INTERVAL)
    }

    /// Checks `[progress]`, at `at`.
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        self.edit_interval
            .check(&format!("{at}.edit_interval"), problems);
    }
}

impl Default for ProgressConfig {
    fn default() -> Self {
        Self {
            edit_interval: default_edit_interval(),
        }
    }
}

fn default_edit_interval() -> Span {
    Span::of(DEFAULT_EDIT_INTERVAL)
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
    pub shutdown_grace: Span,
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
    /// `shutdown_grace`, read once at load.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace.or(DEFAULT_SHUTDOWN_GRACE)
    }

    /// Checks `[server]`, at `at`.
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(Problem::new(
                format!("{at}.listen"),
                format!("{:?} is not an address like 0.0.0.0:8080", self.listen),
            ));
        }
        if let Some(t) = &self.api_token {
            t.validate(&format!("{at}.api_token"), problems);
        }
        let grace = format!("{at}.shutdown_grace");
        if self
            .shutdown_grace
            .check(&grace, problems)
            .is_some_and(|d| d.is_zero())
        {
            problems.push(Problem::new(
                grace,
                "must be more than 0s: running rollbacks need time to reach a checkpoint; the default is 25s",
            ));
        }
    }
}

/// The default `server.shutdown_grace`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

fn default_shutdown_grace() -> Span {
    Span::of(DEFAULT_SHUTDOWN_GRACE)
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
    pub dedup_retention: Span,
    /// Memory for sled's page cache, in MiB: what the store keeps of its
    /// pages in memory, and so the bulk of what a large store adds to the
    /// server's RSS. Reads past it come from the OS's file cache.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: default_store_path(),
            dedup_retention: default_dedup_retention(),
            cache_mib: default_cache_mib(),
        }
    }
}

impl StoreConfig {
    /// `dedup_retention`, read once at load.
    pub fn dedup_retention(&self) -> Duration {
        self.dedup_retention.or(DEFAULT_DEDUP_RETENTION)
    }

    /// Checks `[store]`, at `at`.
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        let key = format!("{at}.dedup_retention");
        if self
            .dedup_retention
            .check(&key, problems)
            .is_some_and(|d| d < Duration::from_secs(3600))
        {
            problems.push(Problem::new(
                key,
                format!(
                    "{:?} is shorter than senders retry (Slack for up to an hour); use at least 1h, e.g. \"7d\"",
                    self.dedup_retention.text()
                ),
            ));
        }
        if !(4..=65536).contains(&self.cache_mib) {
            problems.push(Problem::new(
                format!("{at}.cache_mib"),
                format!(
                    "{} MiB is out of range; use between 4 and 65536 (the default is {})",
                    self.cache_mib,
                    crate::store::DEFAULT_CACHE_MIB
                ),
            ));
        }
    }
}

/// Seven days: longer than Alertmanager's and Slack's retry windows.
pub const DEFAULT_DEDUP_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

fn default_cache_mib() -> u64 {
    crate::store::DEFAULT_CACHE_MIB
}

fn default_dedup_retention() -> Span {
    Span::of(DEFAULT_DEDUP_RETENTION)
}

fn default_store_path() -> PathBuf {
    PathBuf::from("rollbot.db")
}
