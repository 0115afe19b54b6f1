//! The TOML configuration: model, loading, and validation that reports every
//! problem with its key path.
//!
//! Rules of the house: unknown keys are errors (`deny_unknown_fields`), a
//! missing section means the feature is off, and secrets never appear inline
//! — they are read from an environment variable or a file named here.
//!
//! Each section type lives in its own module and checks itself with a
//! `validate(&self, at, problems)` method (`at` is its key path), so a new
//! section brings its own checks and [`Config::validate`] only calls them;
//! every problem is reported at once. Durations are read once, when the
//! file is parsed, by one parser ([`parse_duration`]) into [`Span`]s; each
//! key's default is one `DEFAULT_*` constant beside its section, which the
//! engine uses too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{ApprovalPolicy, ServiceName, UserId};
use crate::exec::kubernetes::{KubeTarget, KubernetesConfig};
use crate::exec::swarm::SwarmTarget;
use crate::exec::{
    COMMAND, CommandTarget, CustomTarget, HELM, HelmTarget, KUBERNETES, SWARM, Target,
};

mod alerts;
mod chat;
mod drill;
pub mod duration;
mod gitops;
mod runbook;
mod secret;
mod server;
mod service;
mod swarm;
mod verify;

pub use alerts::*;
pub use chat::*;
pub use drill::*;
pub use duration::{LONGEST, Span, parse as parse_duration, to_chrono};
pub use gitops::GitOpsPolicy;
pub use runbook::*;
pub use secret::*;
pub use server::*;
pub use service::*;
pub use verify::*;

/// Locales with templates.
pub const LOCALES: &[&str] = &["en", "zh", "ja"];

/// Prefix of a `[groups]` member that names a Slack user group.
pub const SLACK_GROUP_PREFIX: &str = "slack-group:";

/// Prefix of an approver (in `approvers` or `[groups]`) that names a
/// Discord role: whoever has the role when they vote may approve. The
/// membership comes with each vote (the interaction's or reaction's
/// member object), so nothing is read from Discord ahead of time.
pub const DISCORD_ROLE_PREFIX: &str = "discord-role:";

/// Checks an approver entry: a user id or a `discord-role:ID`.
fn check_approver(entry: &str) -> Result<(), String> {
    match entry.strip_prefix(DISCORD_ROLE_PREFIX) {
        Some(id) if is_snowflake(id) => Ok(()),
        Some(id) => Err(format!(
            "{id:?} is not a Discord role id; write discord-role: and the role's id (digits; Server Settings → Roles → Copy Role ID)"
        )),
        None => UserId::parse(entry).map(drop).map_err(|e| e.to_string()),
    }
}

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

fn default_locale() -> String {
    "en".into()
}

/// One problem in a configuration, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
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
    /// Discord roles whose members may approve (`discord-role:ID`).
    pub approver_roles: BTreeSet<String>,
    pub channel: Option<String>,
    pub locale: String,
    pub expires_after: Duration,
    /// Recovery checks, if any.
    pub verify: Option<VerifySpec>,
    /// Least time between two edits of the rollout progress message.
    pub progress_interval: Duration,
    /// What to do about an Argo CD or Flux owner of the workload.
    pub gitops: GitOpsPolicy,
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
        self.server.validate("server", &mut out);
        self.store.validate("store", &mut out);
        self.approval.validate("approval", &mut out);
        {
            let mut problem = push(&mut out);
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
                    } else if let Err(e) = check_approver(m) {
                        problem(at, e);
                    }
                }
            }
        }
        for (name, s) in &self.services {
            s.validate(name, &format!("services.{name}"), self, &mut out);
        }
        self.progress.validate("progress", &mut out);
        if let Some(prom) = &self.prometheus {
            prom.validate("prometheus", &mut out);
        }
        if let Some(slack) = &self.slack {
            slack.validate("slack", &mut out);
        }
        if let Some(discord) = &self.discord {
            discord.validate("discord", &mut out);
        }
        if let Some(alerts) = &self.alerts {
            self.check_alerts(alerts, &mut push(&mut out));
        }
        out
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
                let approver_roles = s
                    .approvers
                    .iter()
                    .chain(
                        s.groups
                            .iter()
                            .flat_map(|g| self.groups.get(g).into_iter().flatten()),
                    )
                    .filter(|a| a.starts_with(DISCORD_ROLE_PREFIX))
                    .cloned()
                    .collect();
                let expires = s
                    .expires_after
                    .as_ref()
                    .unwrap_or(&self.approval.expires_after);
                let service = Service {
                    target,
                    required: s.required_approvals.unwrap_or(self.approval.required),
                    single_approver: s.allow_single_approver && s.required_approvals == Some(1),
                    approvers,
                    approver_roles,
                    channel: s.channel.clone().or_else(|| self.approval.channel.clone()),
                    locale: s.locale.clone().unwrap_or_else(|| self.locale.clone()),
                    expires_after: expires.or(DEFAULT_EXPIRES_AFTER),
                    verify: s.verify.as_ref().map(|v| self.verify_spec(v)),
                    progress_interval: self.progress.edit_interval(),
                    gitops: s.gitops,
                    name: name.clone(),
                };
                Some((name, service))
            })
            .collect()
    }
}

pub(super) fn check_url(url: &str, path: &str, problem: &mut impl FnMut(String, String)) {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => problem(
            path.into(),
            format!("{url:?} is not an http(s) URL like http://prometheus:9090"),
        ),
    }
}

/// A problem reporter over `problems`, for the checks that report through
/// a closure.
pub(super) fn push(problems: &mut Vec<Problem>) -> impl FnMut(String, String) + '_ {
    |path, message| problems.push(Problem { path, message })
}

pub(super) fn check_channel(c: &str, path: &str, problem: &mut impl FnMut(String, String)) {
    match c.split_once(':') {
        Some(("discord", id)) if !is_snowflake(id) => problem(
            path.into(),
            format!(
                "{c:?}: a Discord channel is discord: and the channel's id (digits; right-click the channel → Copy Channel ID)"
            ),
        ),
        Some(("slack" | "discord" | "console" | "memory", rest)) if !rest.is_empty() => {}
        _ => problem(
            path.into(),
            format!("{c:?} is not platform:channel, e.g. slack:C0123ABCD or discord:1234567890"),
        ),
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
mod tests;
