//! The TOML configuration: model, loading, and validation that reports every
//! problem with its key path.
//!
//! Rules of the house: unknown keys are errors (`deny_unknown_fields`), a
//! missing section means the feature is off, and secrets never appear inline
//! — they are read from an environment variable or a file named here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{ApprovalPolicy, ServiceName, UserId};
use crate::exec::kubernetes::{KubeTarget, KubernetesConfig};
use crate::exec::{CustomTarget, KUBERNETES};
// Until the engine names them from `exec`, where they live.
pub use crate::exec::Target;
pub use crate::exec::kubernetes::DrillTarget;

/// Locales with templates.
pub const LOCALES: &[&str] = &["en", "zh", "ja"];

/// Prefix of a `[groups]` member that names a Slack user group.
pub const SLACK_GROUP_PREFIX: &str = "slack-group:";

/// A `slack-group:S…` member of a `[groups]` list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlackGroupRef {
    /// The user group's id, e.g. `S0123ABCD`.
    pub id: String,
    /// Where it is configured, e.g. `groups.sre[2]`.
    pub at: String,
}

/// Whether `id` looks like a Slack user group id: `S` then capitals and digits.
fn is_slack_group_id(id: &str) -> bool {
    id.len() > 1
        && id.starts_with('S')
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub approval: ApprovalConfig,
    /// Named approver groups: `oncall = ["slack:U01", "discord:1234"]`.
    /// A member `slack-group:S0123ABCD` stands for every member of that
    /// Slack user group, read from Slack (see [`Config::slack_user_groups`]).
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// Message locale used where a service names none (`en`, `zh`, `ja`).
    #[serde(default = "default_locale")]
    pub locale: String,
    pub slack: Option<SlackConfig>,
    pub discord: Option<DiscordConfig>,
    pub kubernetes: Option<KubernetesConfig>,
    /// Alert webhooks and their routing; absent = alert ingestion off.
    pub alerts: Option<AlertsConfig>,
    /// The Prometheus server verification queries go to. Required when a
    /// service has `[[services.NAME.verify.prometheus]]` checks.
    pub prometheus: Option<PrometheusConfig>,
    #[serde(default)]
    pub progress: ProgressConfig,
}

/// Where Prometheus is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus.monitoring:9090`.
    pub url: String,
    /// Per-request timeout, e.g. `"10s"`.
    #[serde(default = "default_check_timeout")]
    pub timeout: String,
}

fn default_check_timeout() -> String {
    "10s".into()
}

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

/// A service's recovery checks, run after its rollback completes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// How long checks may take to pass before verification fails.
    #[serde(default = "default_verify_window")]
    pub window: String,
    /// Time between two rounds of checks.
    #[serde(default = "default_verify_interval")]
    pub interval: String,
    #[serde(default)]
    pub http: Vec<HttpCheckConfig>,
    #[serde(default)]
    pub prometheus: Vec<PromCheckConfig>,
}

fn default_verify_window() -> String {
    "10m".into()
}

fn default_verify_interval() -> String {
    "30s".into()
}

/// An HTTP health check. `{target_tag}` in `url` and `json_equals` becomes
/// the image tag being rolled back to (e.g. `v1.2.0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheckConfig {
    pub name: String,
    pub url: String,
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// Dot-separated path of a field in the JSON body, e.g. `version` or `build.tag`.
    pub json_field: Option<String>,
    /// The value `json_field` must have (compared as text).
    pub json_equals: Option<String>,
}

fn default_expect_status() -> u16 {
    200
}

/// How a Prometheus value is compared with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
}

impl Comparison {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Gt => value > threshold,
            Comparison::Ge => value >= threshold,
            Comparison::Lt => value < threshold,
            Comparison::Le => value <= threshold,
            Comparison::Eq => value == threshold,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Eq => "==",
        }
    }
}

/// A Prometheus instant query whose single value must satisfy `op threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromCheckConfig {
    pub name: String,
    pub query: String,
    pub op: Comparison,
    pub threshold: f64,
}

/// A service's checks with durations parsed and the Prometheus URL attached.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifySpec {
    pub window: Duration,
    pub interval: Duration,
    pub http: Vec<HttpCheckConfig>,
    pub prometheus: Vec<PromCheckConfig>,
    pub prometheus_url: Option<String>,
    pub timeout: Duration,
}

fn default_locale() -> String {
    "en".into()
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

/// Defaults for every service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    #[serde(default = "default_required")]
    pub required: u8,
    /// How long a proposal waits for votes, e.g. `"30m"`.
    #[serde(default = "default_expiry")]
    pub expires_after: String,
    /// Where proposals are posted when a service names no channel,
    /// as `platform:channel` (e.g. `slack:C0123ABCD`).
    #[serde(default)]
    pub channel: Option<String>,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self {
            required: default_required(),
            expires_after: default_expiry(),
            channel: None,
        }
    }
}

fn default_required() -> u8 {
    2
}

fn default_expiry() -> String {
    "30m".into()
}

/// One service rollbot may roll back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// People allowed to approve, as `platform:id`.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Groups (from `[groups]`) whose members may approve.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Distinct approvals needed; defaults to `approval.required`.
    pub required_approvals: Option<u8>,
    /// Must be `true` for `required_approvals = 1`; the proposal says so.
    #[serde(default)]
    pub allow_single_approver: bool,
    pub channel: Option<String>,
    pub locale: Option<String>,
    pub expires_after: Option<String>,
    /// The service's target; a service has exactly one target table.
    pub kubernetes: Option<KubeTarget>,
    /// A target of a kind registered by the program embedding rollbot.
    pub custom: Option<CustomTarget>,
    /// Recovery checks; without them verification is "not configured".
    pub verify: Option<VerifyConfig>,
}

impl ServiceConfig {
    /// The target tables that are set, by key; a valid service has exactly
    /// one. A new target kind adds its table here.
    pub fn targets(&self) -> Vec<(&'static str, Target)> {
        let mut out = Vec::new();
        if let Some(k) = &self.kubernetes {
            out.push((KUBERNETES, Target::Kubernetes(k.clone())));
        }
        if let Some(c) = &self.custom {
            out.push(("custom", Target::Custom(c.clone())));
        }
        out
    }

    /// The service's one target; `None` when it has none or several
    /// (which [`Config::validate`] reports).
    pub fn target(&self) -> Option<Target> {
        match <[_; 1]>::try_from(self.targets()) {
            Ok([(_, target)]) => Some(target),
            Err(_) => None,
        }
    }
}

/// A secret's location. Inline values are refused by validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
}

impl Secret {
    /// Reads the secret's value.
    ///
    /// # Errors
    /// Says which variable or file is missing and how to provide it.
    pub fn read(&self, key: &str) -> Result<String, String> {
        match self {
            Secret::Inline(_) => Err(format!(
                "{key}: inline secrets are not allowed; use {{ env = \"VAR\" }} or {{ file = \"/path\" }}"
            )),
            Secret::Env { env } => std::env::var(env)
                .map(|v| v.trim().to_string())
                .map_err(|_| format!("{key}: environment variable {env} is not set; export it before starting rollbot")),
            Secret::File { file } => std::fs::read_to_string(file)
                .map(|v| v.trim().to_string())
                .map_err(|e| format!("{key}: cannot read secret file {}: {e}", file.display())),
        }
    }
}

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

/// `[alerts]`: which webhook sources are enabled, how each authenticates,
/// and how alerts are routed to services. A source without its table is
/// disabled (its route answers 404).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// `[[alerts.routes]]`, first match wins (see [`crate::alerts::routing`]).
    #[serde(default)]
    pub routes: Vec<crate::alerts::RouteConfig>,
    /// `POST /webhooks/alertmanager`.
    pub alertmanager: Option<WebhookAuthConfig>,
    /// `POST|PUT /webhooks/grafana`.
    pub grafana: Option<GrafanaWebhookConfig>,
    /// `POST /webhooks/generic`.
    pub generic: Option<WebhookAuthConfig>,
    /// `POST /webhooks/pagerduty` (V3 webhook subscriptions).
    pub pagerduty: Option<PagerDutyWebhookConfig>,
}

/// Credentials a sender must present: exactly one of a bearer token or
/// basic auth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAuthConfig {
    /// Expected `Authorization: Bearer <token>`.
    pub bearer_token: Option<Secret>,
    /// Expected `Authorization: Basic …`.
    pub basic_auth: Option<BasicAuthConfig>,
}

/// Username and password for HTTP basic auth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    pub username: String,
    pub password: Secret,
}

/// Grafana: an optional HMAC signature and/or an `Authorization` header; at
/// least one must be configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrafanaWebhookConfig {
    pub bearer_token: Option<Secret>,
    pub basic_auth: Option<BasicAuthConfig>,
    /// Grafana's "HMAC signature" secret; requests must then be signed.
    pub hmac_secret: Option<Secret>,
    /// Header carrying the signature; Grafana's default if absent.
    pub signature_header: Option<String>,
    /// Header carrying the signed timestamp, when Grafana is set to send one.
    pub timestamp_header: Option<String>,
}

/// PagerDuty V3: every delivery is signed with the subscription's secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyWebhookConfig {
    pub signing_secret: Secret,
}

/// One problem in a configuration, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Everything wrong with a configuration file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s) in {file}:\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

/// A service with its configuration resolved: groups expanded, defaults applied.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: ServiceName,
    pub target: Target,
    pub required: u8,
    pub single_approver: bool,
    pub approvers: BTreeSet<UserId>,
    pub channel: Option<String>,
    pub locale: String,
    pub expires_after: Duration,
    /// Recovery checks, if any.
    pub verify: Option<VerifySpec>,
    /// Least time between two edits of the rollout progress message.
    pub progress_interval: Duration,
}

impl Service {
    /// The two-person rule for this service, given rollbot's own identities.
    pub fn policy(&self, bots: &BTreeSet<UserId>) -> ApprovalPolicy {
        ApprovalPolicy {
            required: self.required,
            single_approver: self.single_approver,
            approvers: self.approvers.clone(),
            bots: bots.clone(),
        }
    }
}

impl Config {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem found.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            problems: vec![Problem {
                path: "<file>".into(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Self::parse(&text).map_err(|problems| ConfigError {
            file: path.display().to_string(),
            problems,
        })
    }

    /// Parses and validates TOML text.
    ///
    /// # Errors
    /// Every problem found, each with its key path.
    pub fn parse(text: &str) -> Result<Self, Vec<Problem>> {
        let config: Config = parse_toml(text)?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// Checks what the types cannot: references, ranges, secrets, durations.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut problem = |path: String, message: String| out.push(Problem { path, message });

        if self.server.listen.parse::<SocketAddr>().is_err() {
            problem(
                "server.listen".into(),
                format!(
                    "{:?} is not an address like 0.0.0.0:8080",
                    self.server.listen
                ),
            );
        }
        if let Some(t) = &self.server.api_token {
            check_secret(t, "server.api_token", &mut problem);
        }
        match humantime::parse_duration(&self.server.shutdown_grace) {
            Err(_) => problem(
                "server.shutdown_grace".into(),
                bad_duration(&self.server.shutdown_grace),
            ),
            Ok(d) if d.is_zero() => problem(
                "server.shutdown_grace".into(),
                "must be more than 0s: running rollbacks need time to reach a checkpoint; the default is 25s".into(),
            ),
            Ok(_) => {}
        }
        if self.approval.required < 2 {
            problem(
                "approval.required".into(),
                "the default must be at least 2 (two-person rule); a single service may opt into 1 with allow_single_approver".into(),
            );
        }
        match humantime::parse_duration(&self.store.dedup_retention) {
            Err(_) => problem(
                "store.dedup_retention".into(),
                bad_duration(&self.store.dedup_retention),
            ),
            Ok(d) if d < Duration::from_secs(3600) => problem(
                "store.dedup_retention".into(),
                format!(
                    "{:?} is shorter than senders retry (Slack for up to an hour); use at least 1h, e.g. \"7d\"",
                    self.store.dedup_retention
                ),
            ),
            Ok(_) => {}
        }
        if humantime::parse_duration(&self.approval.expires_after).is_err() {
            problem(
                "approval.expires_after".into(),
                bad_duration(&self.approval.expires_after),
            );
        }
        if let Some(c) = &self.approval.channel {
            check_channel(c, "approval.channel", &mut problem);
        }
        if !LOCALES.contains(&self.locale.as_str()) {
            problem(
                "locale".into(),
                format!(
                    "unknown locale {:?}; use one of {}",
                    self.locale,
                    LOCALES.join(", ")
                ),
            );
        }
        for (group, members) in &self.groups {
            for (i, m) in members.iter().enumerate() {
                let at = format!("groups.{group}[{i}]");
                if let Some(id) = m.strip_prefix(SLACK_GROUP_PREFIX) {
                    if !is_slack_group_id(id) {
                        problem(
                            at,
                            format!(
                                "{id:?} is not a Slack user group id; write slack-group:S0123ABCD with the group's id (S…), not its @handle or name"
                            ),
                        );
                    } else if self.slack.is_none() {
                        problem(
                            at,
                            "a slack-group member is read from Slack; add a [slack] section whose bot token has the usergroups:read scope".into(),
                        );
                    }
                } else if let Err(e) = UserId::parse(m) {
                    problem(at, e.to_string());
                }
            }
        }
        for (name, s) in &self.services {
            let at = |k: &str| format!("services.{name}.{k}");
            if let Err(e) = ServiceName::parse(name) {
                problem(format!("services.{name}"), e.to_string());
            }
            for (i, a) in s.approvers.iter().enumerate() {
                if let Err(e) = UserId::parse(a) {
                    problem(format!("{}[{i}]", at("approvers")), e.to_string());
                }
            }
            for (i, g) in s.groups.iter().enumerate() {
                if !self.groups.contains_key(g) {
                    problem(
                        format!("{}[{i}]", at("groups")),
                        format!("group {g:?} is not defined under [groups]"),
                    );
                }
            }
            if s.approvers.is_empty() && s.groups.is_empty() {
                problem(
                    at("approvers"),
                    "nobody may approve this service's rollbacks; list approvers or groups".into(),
                );
            }
            match s.required_approvals {
                Some(0) => problem(at("required_approvals"), "must be at least 1".into()),
                Some(1) if !s.allow_single_approver => problem(
                    at("required_approvals"),
                    "1 breaks the two-person rule; set allow_single_approver = true for this service to opt in explicitly".into(),
                ),
                _ => {}
            }
            if let Some(d) = &s.expires_after
                && humantime::parse_duration(d).is_err()
            {
                problem(at("expires_after"), bad_duration(d));
            }
            if let Some(c) = &s.channel {
                check_channel(c, &at("channel"), &mut problem);
            }
            if let Some(l) = &s.locale
                && !LOCALES.contains(&l.as_str())
            {
                problem(
                    at("locale"),
                    format!("unknown locale {l:?}; use one of {}", LOCALES.join(", ")),
                );
            }
            if let Some(v) = &s.verify {
                self.validate_verify(name, v, &mut problem);
            }
            let targets = s.targets();
            match targets.as_slice() {
                [] => problem(
                    format!("services.{name}"),
                    format!(
                        "no rollback target; add one target table, e.g. [services.{name}.kubernetes] with namespace and name"
                    ),
                ),
                [_] => {}
                several => problem(
                    format!("services.{name}"),
                    format!(
                        "{} rollback targets ({}); a service rolls back exactly one target, so keep one of these tables and give the other its own service",
                        several.len(),
                        several
                            .iter()
                            .map(|(key, _)| *key)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
            if let Some(c) = &s.custom {
                check_custom_target(c, &at("custom"), &mut problem);
            }
        }
        if humantime::parse_duration(&self.progress.edit_interval).is_err() {
            problem(
                "progress.edit_interval".into(),
                bad_duration(&self.progress.edit_interval),
            );
        }
        if let Some(prom) = &self.prometheus {
            check_url(&prom.url, "prometheus.url", &mut problem);
            if humantime::parse_duration(&prom.timeout).is_err() {
                problem("prometheus.timeout".into(), bad_duration(&prom.timeout));
            }
        }
        if let Some(slack) = &self.slack {
            check_secret(&slack.bot_token, "slack.bot_token", &mut problem);
            check_secret(&slack.signing_secret, "slack.signing_secret", &mut problem);
            match &slack.app_token {
                Some(t) => check_secret(t, "slack.app_token", &mut problem),
                None if slack.socket_mode => problem(
                    "slack.app_token".into(),
                    "socket_mode = true needs an app-level token (xapp-…); add app_token = { env = \"SLACK_APP_TOKEN\" }".into(),
                ),
                None => {}
            }
            for (key, name) in [
                ("approve_emoji", &slack.approve_emoji),
                ("reject_emoji", &slack.reject_emoji),
            ] {
                if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) {
                    problem(
                        format!("slack.{key}"),
                        format!(
                            "{name:?} is not an emoji short name; write it without colons, e.g. \"white_check_mark\""
                        ),
                    );
                }
            }
            if slack.approve_emoji == slack.reject_emoji {
                problem(
                    "slack.reject_emoji".into(),
                    "must differ from approve_emoji".into(),
                );
            }
        }
        if let Some(discord) = &self.discord {
            check_secret(&discord.bot_token, "discord.bot_token", &mut problem);
        }
        if let Some(alerts) = &self.alerts {
            self.check_alerts(alerts, &mut problem);
        }
        out
    }

    fn validate_verify(
        &self,
        service: &str,
        v: &VerifyConfig,
        problem: &mut impl FnMut(String, String),
    ) {
        let at = |k: &str| format!("services.{service}.verify.{k}");
        let window = humantime::parse_duration(&v.window);
        let interval = humantime::parse_duration(&v.interval);
        if window.is_err() {
            problem(at("window"), bad_duration(&v.window));
        }
        match interval {
            Err(_) => problem(at("interval"), bad_duration(&v.interval)),
            Ok(i) if i.is_zero() => problem(at("interval"), "must be more than 0s".into()),
            Ok(i) if window.as_ref().is_ok_and(|w| i > *w) => problem(
                at("interval"),
                format!(
                    "{} is longer than the window {}; checks would run only once",
                    v.interval, v.window
                ),
            ),
            Ok(_) => {}
        }
        if v.http.is_empty() && v.prometheus.is_empty() {
            problem(
                at("http"),
                "no checks: add [[...verify.http]] or [[...verify.prometheus]] entries, or remove the verify section".into(),
            );
        }
        let mut names = BTreeSet::new();
        for (i, c) in v.http.iter().enumerate() {
            let path = format!("{}[{i}]", at("http"));
            if !names.insert(c.name.as_str()) {
                problem(
                    format!("{path}.name"),
                    format!("check name {:?} is used twice", c.name),
                );
            }
            check_url(
                &c.url.replace("{target_tag}", "v1"),
                &format!("{path}.url"),
                problem,
            );
            if !(100..=599).contains(&c.expect_status) {
                problem(
                    format!("{path}.expect_status"),
                    format!("{} is not an HTTP status code", c.expect_status),
                );
            }
            if c.json_field.is_some() != c.json_equals.is_some() {
                problem(
                    format!("{path}.json_field"),
                    "json_field and json_equals go together; set both or neither".into(),
                );
            }
        }
        for (i, c) in v.prometheus.iter().enumerate() {
            let path = format!("{}[{i}]", at("prometheus"));
            if !names.insert(c.name.as_str()) {
                problem(
                    format!("{path}.name"),
                    format!("check name {:?} is used twice", c.name),
                );
            }
            if c.query.trim().is_empty() {
                problem(format!("{path}.query"), "the PromQL query is empty".into());
            }
            if !c.threshold.is_finite() {
                problem(
                    format!("{path}.threshold"),
                    "must be a finite number".into(),
                );
            }
        }
        if !v.prometheus.is_empty() && self.prometheus.is_none() {
            problem(
                at("prometheus"),
                "Prometheus checks need a [prometheus] section with the server's url".into(),
            );
        }
    }

    fn check_alerts(&self, alerts: &AlertsConfig, problem: &mut impl FnMut(String, String)) {
        use crate::alerts::RouteConfigError as E;
        use crate::alerts::routing::Route;
        for (i, route) in alerts.routes.iter().enumerate() {
            let at = format!("alerts.routes[{i}]");
            match Route::from_config(i, route) {
                Ok(_) => {}
                Err(E::InvalidMatcher { index, source, .. }) => {
                    problem(format!("{at}.matchers[{index}]"), source.to_string())
                }
                Err(E::EmptyService { .. }) => problem(
                    format!("{at}.service"),
                    "must name the service to roll back, e.g. \"payment-api\"".into(),
                ),
                Err(E::UnknownSeverity { index, source, .. }) => {
                    problem(format!("{at}.severities[{index}]"), source.to_string())
                }
                Err(E::InvalidDuration { value, reason, .. }) => problem(
                    format!("{at}.for_duration"),
                    format!(
                        "invalid duration {value:?}: {reason}; use e.g. \"30s\", \"5m\" or \"1h30m\""
                    ),
                ),
            }
            let service = route.service.trim();
            if !service.is_empty() && !self.services.contains_key(service) {
                let known: Vec<_> = self.services.keys().map(String::as_str).collect();
                problem(
                    format!("{at}.service"),
                    format!(
                        "service {service:?} is not defined under [services] (defined: {}); add [services.{service}] or fix the name",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
        if let Some(am) = &alerts.alertmanager {
            check_webhook_auth(
                "alerts.alertmanager",
                &am.bearer_token,
                &am.basic_auth,
                false,
                problem,
            );
        }
        if let Some(generic) = &alerts.generic {
            check_webhook_auth(
                "alerts.generic",
                &generic.bearer_token,
                &generic.basic_auth,
                false,
                problem,
            );
        }
        if let Some(g) = &alerts.grafana {
            if let Some(secret) = &g.hmac_secret {
                check_secret(secret, "alerts.grafana.hmac_secret", problem);
            }
            check_webhook_auth(
                "alerts.grafana",
                &g.bearer_token,
                &g.basic_auth,
                g.hmac_secret.is_some(),
                problem,
            );
            for (key, value) in [
                ("signature_header", &g.signature_header),
                ("timestamp_header", &g.timestamp_header),
            ] {
                if let Some(h) = value
                    && axum::http::HeaderName::from_bytes(h.as_bytes()).is_err()
                {
                    problem(
                        format!("alerts.grafana.{key}"),
                        format!("{h:?} is not a valid HTTP header name"),
                    );
                }
            }
        }
        if let Some(pd) = &alerts.pagerduty {
            check_secret(
                &pd.signing_secret,
                "alerts.pagerduty.signing_secret",
                problem,
            );
        }
    }

    /// The Slack user groups each service's approvers include through its
    /// `groups` (services without any are left out). Their members are read
    /// from Slack at start-up and refreshed; see
    /// [`crate::chat::slack::user_groups`].
    pub fn slack_user_groups(&self) -> BTreeMap<ServiceName, BTreeSet<SlackGroupRef>> {
        let mut out = BTreeMap::new();
        for (name, s) in &self.services {
            let Ok(name) = ServiceName::parse(name) else {
                continue;
            };
            let refs: BTreeSet<SlackGroupRef> = s
                .groups
                .iter()
                .flat_map(|g| {
                    let members = self.groups.get(g).into_iter().flatten();
                    members.enumerate().filter_map(move |(i, m)| {
                        Some(SlackGroupRef {
                            id: m.strip_prefix(SLACK_GROUP_PREFIX)?.to_string(),
                            at: format!("groups.{g}[{i}]"),
                        })
                    })
                })
                .collect();
            if !refs.is_empty() {
                out.insert(name, refs);
            }
        }
        out
    }

    /// The resolved services. Call only on a validated config.
    pub fn services(&self) -> BTreeMap<ServiceName, Service> {
        self.services
            .iter()
            .filter_map(|(name, s)| {
                let name = ServiceName::parse(name).ok()?;
                let target = s.target()?;
                let mut approvers: BTreeSet<UserId> = s
                    .approvers
                    .iter()
                    .filter_map(|a| UserId::parse(a).ok())
                    .collect();
                // `slack-group:` members are not user ids; the engine gets
                // their members from Slack (`Engine::set_group_approvers`).
                for g in &s.groups {
                    approvers.extend(
                        self.groups
                            .get(g)
                            .into_iter()
                            .flatten()
                            .filter_map(|m| UserId::parse(m).ok()),
                    );
                }
                let expires = s
                    .expires_after
                    .as_deref()
                    .unwrap_or(&self.approval.expires_after);
                let service = Service {
                    target,
                    required: s.required_approvals.unwrap_or(self.approval.required),
                    single_approver: s.allow_single_approver && s.required_approvals == Some(1),
                    approvers,
                    channel: s.channel.clone().or_else(|| self.approval.channel.clone()),
                    locale: s.locale.clone().unwrap_or_else(|| self.locale.clone()),
                    expires_after: humantime::parse_duration(expires)
                        .unwrap_or(Duration::from_secs(1800)),
                    verify: s.verify.as_ref().map(|v| self.verify_spec(v)),
                    progress_interval: humantime::parse_duration(&self.progress.edit_interval)
                        .unwrap_or(Duration::from_secs(5)),
                    name: name.clone(),
                };
                Some((name, service))
            })
            .collect()
    }
}

impl Config {
    fn verify_spec(&self, v: &VerifyConfig) -> VerifySpec {
        VerifySpec {
            window: humantime::parse_duration(&v.window).unwrap_or(Duration::from_secs(600)),
            interval: humantime::parse_duration(&v.interval).unwrap_or(Duration::from_secs(30)),
            http: v.http.clone(),
            prometheus: v.prometheus.clone(),
            prometheus_url: self.prometheus.as_ref().map(|p| p.url.clone()),
            timeout: self
                .prometheus
                .as_ref()
                .and_then(|p| humantime::parse_duration(&p.timeout).ok())
                .unwrap_or(Duration::from_secs(10)),
        }
    }
}

fn check_url(url: &str, path: &str, problem: &mut impl FnMut(String, String)) {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => problem(
            path.into(),
            format!("{url:?} is not an http(s) URL like http://prometheus:9090"),
        ),
    }
}

/// A webhook's credentials: at most one `Authorization` kind, none inline,
/// and some authentication unless the source signs its requests.
fn check_webhook_auth(
    path: &str,
    bearer: &Option<Secret>,
    basic: &Option<BasicAuthConfig>,
    signed: bool,
    problem: &mut impl FnMut(String, String),
) {
    if let Some(token) = bearer {
        check_secret(token, &format!("{path}.bearer_token"), problem);
    }
    if let Some(basic) = basic {
        check_secret(
            &basic.password,
            &format!("{path}.basic_auth.password"),
            problem,
        );
        if basic.username.is_empty() {
            problem(
                format!("{path}.basic_auth.username"),
                "must not be empty".into(),
            );
        }
    }
    if bearer.is_some() && basic.is_some() {
        problem(
            path.into(),
            "set either bearer_token or basic_auth, not both: a sender sends one Authorization header".into(),
        );
    }
    if bearer.is_none() && basic.is_none() && !signed {
        problem(
            path.into(),
            "no credentials: set bearer_token = { env = \"VAR\" } or a basic_auth table, so only your sender can open proposals".into(),
        );
    }
}

/// A custom target names a kind an executor can be registered under, and
/// carries its settings as a table.
fn check_custom_target(c: &CustomTarget, path: &str, problem: &mut impl FnMut(String, String)) {
    let well_formed = !c.kind.is_empty()
        && c.kind
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_');
    if c.kind == KUBERNETES {
        problem(
            format!("{path}.kind"),
            format!(
                "{KUBERNETES:?} is built in; write its target as a [services.NAME.kubernetes] table instead"
            ),
        );
    } else if !well_formed {
        problem(
            format!("{path}.kind"),
            format!(
                "{:?} is not an executor kind; write the name its executor is registered under, in lowercase letters, digits, - and _, e.g. \"nomad\"",
                c.kind
            ),
        );
    }
    if !c.settings.is_object() {
        problem(
            format!("{path}.settings"),
            "must be a table of the executor's settings, e.g. [services.NAME.custom.settings]"
                .into(),
        );
    }
}

fn bad_duration(text: &str) -> String {
    format!("{text:?} is not a duration; write one like \"30m\", \"1h\" or \"90s\"")
}

fn check_channel(c: &str, path: &str, problem: &mut impl FnMut(String, String)) {
    match c.split_once(':') {
        Some(("slack" | "discord" | "console" | "memory", rest)) if !rest.is_empty() => {}
        _ => problem(
            path.into(),
            format!("{c:?} is not platform:channel, e.g. slack:C0123ABCD or discord:1234567890"),
        ),
    }
}

fn check_secret(s: &Secret, path: &str, problem: &mut impl FnMut(String, String)) {
    match s {
        Secret::Inline(_) => problem(
            path.into(),
            "inline secrets are not allowed in the config file; use { env = \"VAR\" } or { file = \"/run/secrets/...\" }".into(),
        ),
        Secret::Env { env } if env.is_empty() => {
            problem(path.into(), "env must name an environment variable".into())
        }
        _ => {}
    }
}

fn parse_toml(text: &str) -> Result<Config, Vec<Problem>> {
    let de =
        toml::Deserializer::parse(text).map_err(|e| vec![toml_problem(text, "<syntax>", &e)])?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        vec![toml_problem(text, &path, e.inner())]
    })
}

fn toml_problem(text: &str, path: &str, e: &toml::de::Error) -> Problem {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
    let message = e.message().trim().to_string();
    Problem {
        path: if path.is_empty() || path == "." {
            "<root>".into()
        } else {
            path.to_string()
        },
        message: match line {
            Some(l) => format!("{message} (line {l})"),
            None => message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [groups]
        sre = ["slack:UALICE", "slack:UBOB"]
        [services.payment-api]
        groups = ["sre"]
        [services.payment-api.kubernetes]
        namespace = "production"
        name = "prod-payment-deploy"
    "#;

    fn problems(text: &str) -> Vec<String> {
        Config::parse(text)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_minimal_config_resolves_groups_and_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        let services = c.services();
        let s = &services[&ServiceName::parse("payment-api").unwrap()];
        assert_eq!(s.required, 2);
        assert_eq!(s.approvers.len(), 2);
        assert_eq!(s.expires_after, Duration::from_secs(1800));
        assert_eq!(
            s.target.to_string(),
            "deployment production/prod-payment-deploy"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let p = problems(&format!(
            "{MINIMAL}\n[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n"
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("server.lisen: unknown field `lisen`"),
            "{p:?}"
        );
    }

    #[test]
    fn the_shutdown_grace_defaults_below_kubernetes_and_is_checked() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.server.shutdown_grace(), Duration::from_secs(25));
        let c = Config::parse(&format!("{MINIMAL}\n[server]\nshutdown_grace = \"10s\"\n")).unwrap();
        assert_eq!(c.server.shutdown_grace(), Duration::from_secs(10));
        for bad in ["soon", "0s"] {
            let p = problems(&format!(
                "{MINIMAL}\n[server]\nshutdown_grace = \"{bad}\"\n"
            ));
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].starts_with("server.shutdown_grace: "), "{p:?}");
        }
    }

    #[test]
    fn single_approver_needs_the_opt_in() {
        let text = MINIMAL.replace(
            "groups = [\"sre\"]",
            "groups = [\"sre\"]\nrequired_approvals = 1",
        );
        assert_eq!(
            problems(&text),
            [
                "services.payment-api.required_approvals: 1 breaks the two-person rule; set allow_single_approver = true for this service to opt in explicitly"
            ]
        );
        let ok = text.replace(
            "required_approvals = 1",
            "required_approvals = 1\nallow_single_approver = true",
        );
        let c = Config::parse(&ok).unwrap();
        assert!(
            c.services()
                .values()
                .all(|s| s.single_approver && s.required == 1)
        );
    }

    #[test]
    fn inline_secrets_are_refused() {
        let text = format!(
            "{MINIMAL}\n[slack]\nbot_token = \"xoxb-123\"\nsigning_secret = {{ env = \"S\" }}\n"
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("slack.bot_token: inline secrets are not allowed"),
            "{p:?}"
        );
    }

    #[test]
    fn alert_routes_and_webhook_auth_are_checked_with_key_paths() {
        let text = format!(
            r#"{MINIMAL}
            [[alerts.routes]]
            matchers = ["service=payment-api"]
            service = "payment-api"
            for_duration = "5m"
            [[alerts.routes]]
            matchers = ["alertname"]
            service = "checkout"
            severities = ["spicy"]
            for_duration = "soon"
            [alerts.alertmanager]
            bearer_token = "inline-token"
            [alerts.generic]
            [alerts.grafana]
            hmac_secret = {{ env = "GRAFANA_HMAC" }}
            [alerts.pagerduty]
            signing_secret = {{ file = "/run/secrets/pd" }}
            "#
        );
        let p = problems(&text);
        let paths: Vec<_> = p.iter().map(|p| p.split(": ").next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "alerts.routes[1].matchers[0]",
                "alerts.routes[1].service",
                "alerts.alertmanager.bearer_token",
                "alerts.generic",
            ],
            "{p:#?}"
        );
        assert!(
            p[1].contains("\"checkout\" is not defined under [services] (defined: payment-api)"),
            "{p:?}"
        );
        assert!(p[3].contains("no credentials"), "{p:?}");
        let ok = text
            .replace("\"alertname\"", "\"alertname=X\"")
            .replace("\"checkout\"", "\"payment-api\"")
            .replace("[\"spicy\"]", "[\"P1\"]")
            .replace("\"soon\"", "\"1h30m\"")
            .replace("\"inline-token\"", "{ env = \"AM_TOKEN\" }")
            .replace("[alerts.generic]\n", "");
        let c = Config::parse(&ok).unwrap();
        assert_eq!(c.alerts.unwrap().routes.len(), 2);
    }

    #[test]
    fn slack_group_members_are_checked_and_listed_per_service() {
        let slack = "[slack]\nbot_token = { env = \"B\" }\nsigning_secret = { env = \"S\" }\n";
        let text = MINIMAL.replace(
            "sre = [\"slack:UALICE\", \"slack:UBOB\"]",
            "sre = [\"slack:UALICE\", \"slack-group:S0SRE\"]\nleads = [\"slack-group:@leads\", \"slack-group:\"]",
        );
        let p = problems(&text);
        assert_eq!(
            p,
            [
                "groups.leads[0]: \"@leads\" is not a Slack user group id; write slack-group:S0123ABCD with the group's id (S…), not its @handle or name",
                "groups.leads[1]: \"\" is not a Slack user group id; write slack-group:S0123ABCD with the group's id (S…), not its @handle or name",
                "groups.sre[1]: a slack-group member is read from Slack; add a [slack] section whose bot token has the usergroups:read scope",
            ]
        );
        let ok = format!(
            "{}\n{slack}",
            text.replace(
                "\"slack-group:@leads\", \"slack-group:\"",
                "\"slack-group:S0LEADS\""
            )
        );
        let c = Config::parse(&ok).unwrap();
        let payment = ServiceName::parse("payment-api").unwrap();
        assert_eq!(
            c.slack_user_groups(),
            BTreeMap::from([(
                payment.clone(),
                BTreeSet::from([SlackGroupRef {
                    id: "S0SRE".into(),
                    at: "groups.sre[1]".into()
                }])
            )])
        );
        // The group is not a person: only UALICE is a configured approver.
        let services = c.services();
        let approvers: Vec<_> = services[&payment]
            .approvers
            .iter()
            .map(UserId::as_str)
            .collect();
        assert_eq!(approvers, ["slack:UALICE"]);
    }

    #[test]
    fn a_service_has_exactly_one_target_table() {
        let none = MINIMAL.replace("[services.payment-api.kubernetes]", "[other]");
        let none = none.replace(
            "[other]\n        namespace = \"production\"\n        name = \"prod-payment-deploy\"",
            "",
        );
        assert_eq!(
            problems(&none),
            [
                "services.payment-api: no rollback target; add one target table, e.g. [services.payment-api.kubernetes] with namespace and name"
            ]
        );
        let several = format!("{MINIMAL}\n[services.payment-api.custom]\nkind = \"nomad\"\n");
        assert_eq!(
            problems(&several),
            [
                "services.payment-api: 2 rollback targets (kubernetes, custom); a service rolls back exactly one target, so keep one of these tables and give the other its own service"
            ]
        );
        let custom = several.replace(
            "[services.payment-api.kubernetes]\n        namespace = \"production\"\n        name = \"prod-payment-deploy\"",
            "",
        );
        let c = Config::parse(&format!(
            "{custom}[services.payment-api.custom.settings]\njob = \"payment\"\n"
        ))
        .unwrap();
        let s = c.services().into_values().next().unwrap();
        assert_eq!(s.target.kind(), "nomad");
        assert_eq!(s.target.to_string(), r#"nomad {"job":"payment"}"#);
        for (kind, message) in [
            ("kubernetes", "\"kubernetes\" is built in"),
            ("Nomad!", "\"Nomad!\" is not an executor kind"),
            ("", "\"\" is not an executor kind"),
        ] {
            let p = problems(&custom.replace("\"nomad\"", &format!("{kind:?}")));
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(
                p[0].starts_with(&format!("services.payment-api.custom.kind: {message}")),
                "{p:?}"
            );
        }
        let p = problems(&format!("{custom}settings = 3\n"));
        assert!(
            p[0].starts_with("services.payment-api.custom.settings: must be a table"),
            "{p:?}"
        );
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let text = r#"
            locale = "fr"
            [approval]
            required = 1
            expires_after = "soon"
            [services.Bad]
            approvers = ["UALICE"]
            groups = ["nosuch"]
        "#;
        let p = problems(text);
        insta::assert_yaml_snapshot!(p);
    }

    #[test]
    fn verify_sections_resolve_and_bad_ones_are_named() {
        let good = format!(
            "[prometheus]\nurl = \"http://prom:9090\"\n{MINIMAL}\n[services.payment-api.verify]\nwindow = \"2m\"\ninterval = \"5s\"\n[[services.payment-api.verify.prometheus]]\nname = \"rate\"\nquery = \"up\"\nop = \">=\"\nthreshold = 1\n"
        );
        let c = Config::parse(&good).unwrap();
        let s = c.services().into_values().next().unwrap();
        let v = s.verify.unwrap();
        assert_eq!(v.window, Duration::from_secs(120));
        assert_eq!(v.prometheus[0].op, Comparison::Ge);
        assert_eq!(v.prometheus_url.as_deref(), Some("http://prom:9090"));
        assert_eq!(s.progress_interval, Duration::from_secs(5));

        let bad = format!(
            "{MINIMAL}\n[services.payment-api.verify]\nwindow = \"2m\"\ninterval = \"5m\"\n[[services.payment-api.verify.http]]\nname = \"h\"\nurl = \"payment/health\"\njson_field = \"version\"\n[[services.payment-api.verify.prometheus]]\nname = \"h\"\nquery = \"up\"\nop = \">=\"\nthreshold = 1\n"
        );
        assert_eq!(
            problems(&bad),
            [
                "services.payment-api.verify.interval: 5m is longer than the window 2m; checks would run only once",
                "services.payment-api.verify.http[0].url: \"payment/health\" is not an http(s) URL like http://prometheus:9090",
                "services.payment-api.verify.http[0].json_field: json_field and json_equals go together; set both or neither",
                "services.payment-api.verify.prometheus[0].name: check name \"h\" is used twice",
                "services.payment-api.verify.prometheus: Prometheus checks need a [prometheus] section with the server's url",
            ]
        );
        let op = good.replace("op = \">=\"", "op = \"=>\"");
        assert!(problems(&op)[0].contains("services.payment-api.verify.prometheus[0].op"));
    }
}
