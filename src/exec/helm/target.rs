//! `[services.NAME.helm]`: the Helm release a service rolls back, read by
//! the config and stored in proposals; the executor is in [`super`].

use serde::{Deserialize, Serialize};

/// The kind of Helm targets.
pub const HELM: &str = "helm";

/// `[services.NAME.helm]`: a Helm release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelmTarget {
    pub release: String,
    pub namespace: String,
    /// The `helm` program; found on `PATH` when not set.
    #[serde(default = "default_helm")]
    pub binary: String,
    /// `helm rollback --timeout`, e.g. `"5m"`.
    #[serde(default = "default_helm_timeout")]
    pub timeout: String,
}

fn default_helm() -> String {
    "helm".into()
}

fn default_helm_timeout() -> String {
    "5m".into()
}
