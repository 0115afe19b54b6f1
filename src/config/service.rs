//! `[approval]` and `[services.NAME]`: who approves what, and the one
//! target each service rolls back.

use super::*;

/// Defaults for every service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    #[serde(default = "default_required")]
    pub required: u8,
    /// How long a proposal waits for votes, e.g. `"30m"`.
    #[serde(default = "default_expiry")]
    pub expires_after: Span,
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

/// The default `approval.expires_after`.
pub const DEFAULT_EXPIRES_AFTER: Duration = Duration::from_secs(30 * 60);

fn default_expiry() -> Span {
    Span::of(DEFAULT_EXPIRES_AFTER)
}

impl ApprovalConfig {
    /// Checks `[approval]`, at `at`.
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        if self.required < 2 {
            problems.push(Problem::new(
                format!("{at}.required"),
                "the default must be at least 2 (two-person rule); a single service may opt into 1 with allow_single_approver",
            ));
        }
        self.expires_after
            .check(&format!("{at}.expires_after"), problems);
        if let Some(c) = &self.channel {
            check_channel(c, &format!("{at}.channel"), &mut push(problems));
        }
    }
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
    pub expires_after: Option<Span>,
    /// The service's target; a service has exactly one target table.
    pub kubernetes: Option<KubeTarget>,
    /// A Docker Swarm service.
    pub swarm: Option<SwarmTarget>,
    /// A target of a kind registered by the program embedding rollbot.
    pub custom: Option<CustomTarget>,
    /// The rollback as the service's own plan and rollback commands.
    pub command: Option<CommandTarget>,
    /// A Helm release.
    pub helm: Option<HelmTarget>,
    /// Pre-checks and hooks around the rollback.
    pub runbook: Option<RunbookConfig>,
    /// Recovery checks; without them verification is "not configured".
    pub verify: Option<VerifyConfig>,
    /// What to do about an Argo CD or Flux owner of the workload.
    #[serde(default)]
    pub gitops: GitOpsPolicy,
    /// Scheduled rollback drills; none without it.
    pub drill: Option<DrillConfig>,
}

impl ServiceConfig {
    /// The target tables that are set, by key; a valid service has exactly
    /// one. A new target kind adds its table here.
    pub fn targets(&self) -> Vec<(&'static str, Target)> {
        let mut out = Vec::new();
        if let Some(k) = &self.kubernetes {
            out.push((KUBERNETES, Target::Kubernetes(k.clone())));
        }
        if let Some(s) = &self.swarm {
            out.push((SWARM, Target::Swarm(s.clone())));
        }
        if let Some(c) = &self.custom {
            out.push(("custom", Target::Custom(c.clone())));
        }
        if let Some(c) = &self.command {
            out.push((COMMAND, Target::Command(c.clone())));
        }
        if let Some(h) = &self.helm {
            out.push((HELM, Target::Helm(h.clone())));
        }
        out
    }

    /// Checks `[services.NAME]` at `at` (`services.NAME`), against the
    /// rest of `config` (its groups, whether Prometheus is configured).
    pub fn validate(&self, name: &str, at: &str, config: &Config, problems: &mut Vec<Problem>) {
        let key = |k: &str| format!("{at}.{k}");
        if let Err(e) = ServiceName::parse(name) {
            problems.push(Problem::new(at, e.to_string()));
        }
        for (i, a) in self.approvers.iter().enumerate() {
            if let Err(e) = check_approver(a) {
                problems.push(Problem::new(format!("{}[{i}]", key("approvers")), e));
            }
        }
        for (i, g) in self.groups.iter().enumerate() {
            if !config.groups.contains_key(g) {
                problems.push(Problem::new(
                    format!("{}[{i}]", key("groups")),
                    format!("group {g:?} is not defined under [groups]"),
                ));
            }
        }
        if self.approvers.is_empty() && self.groups.is_empty() {
            problems.push(Problem::new(
                key("approvers"),
                "nobody may approve this service's rollbacks; list approvers or groups",
            ));
        }
        match self.required_approvals {
            Some(0) => problems.push(Problem::new(key("required_approvals"), "must be at least 1")),
            Some(1) if !self.allow_single_approver => problems.push(Problem::new(
                key("required_approvals"),
                "1 breaks the two-person rule; set allow_single_approver = true for this service to opt in explicitly",
            )),
            _ => {}
        }
        if let Some(d) = &self.expires_after {
            d.check(&key("expires_after"), problems);
        }
        if let Some(c) = &self.channel {
            check_channel(c, &key("channel"), &mut push(problems));
        }
        if let Some(l) = &self.locale
            && !LOCALES.contains(&l.as_str())
        {
            problems.push(Problem::new(
                key("locale"),
                format!("unknown locale {l:?}; use one of {}", LOCALES.join(", ")),
            ));
        }
        if let Some(v) = &self.verify {
            v.validate(&key("verify"), config.prometheus.is_some(), problems);
        }
        if let Some(d) = &self.drill {
            d.validate(&key("drill"), problems);
        }
        match self.targets().as_slice() {
            [] => problems.push(Problem::new(
                at,
                format!(
                    "no rollback target; add one target table, e.g. [{at}.kubernetes] with namespace and name"
                ),
            )),
            [_] => {}
            several => problems.push(Problem::new(
                at,
                format!(
                    "{} rollback targets ({}); a service rolls back exactly one target, so keep one of these tables and give the other its own service",
                    several.len(),
                    several
                        .iter()
                        .map(|(key, _)| *key)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
        if let Some(c) = &self.custom {
            check_custom_target(c, &key("custom"), &mut push(problems));
        }
        if let Some(s) = &self.swarm {
            super::swarm::validate(s, &key(SWARM), problems);
        }
        if let Some(c) = &self.command {
            c.validate(&key(COMMAND), problems);
        }
        if let Some(h) = &self.helm {
            h.validate(&key(HELM), problems);
        }
        if let Some(r) = &self.runbook {
            r.validate(&key("runbook"), problems);
        }
        self.gitops
            .validate(&key("gitops"), self.target().as_ref(), problems);
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

/// A custom target names a kind an executor can be registered under, and
/// carries its settings as a table.
pub(super) fn check_custom_target(
    c: &CustomTarget,
    path: &str,
    problem: &mut impl FnMut(String, String),
) {
    let well_formed = !c.kind.is_empty()
        && c.kind
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_');
    if c.kind == KUBERNETES || c.kind == SWARM {
        problem(
            format!("{path}.kind"),
            format!(
                "{:?} is built in; write its target as a [services.NAME.{}] table instead",
                c.kind, c.kind
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
