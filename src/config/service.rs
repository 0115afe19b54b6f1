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
