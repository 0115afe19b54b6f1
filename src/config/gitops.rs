//! `gitops = "warn" | "pause" | "refuse"` of `[services.NAME]`: what a
//! rollback does about an Argo CD or Flux owner that would put the
//! workload back to what git holds (see [`crate::exec::kubernetes::gitops`]).

use super::*;

/// What to do when a GitOps tool owns the service's workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GitOpsPolicy {
    /// Say so on the proposal, and in the thread if the rollback is
    /// reverted during verification.
    #[default]
    Warn,
    /// Before the rollback, pause the owner (Argo CD: automated sync off,
    /// the previous policy saved; Flux: `spec.suspend: true`) and leave it
    /// paused until `/rollback resume-sync SERVICE`.
    Pause,
    /// Refuse approval while an owner would revert the rollback.
    Refuse,
}

impl GitOpsPolicy {
    /// Checks the policy of a service whose target is `target`, at `at`.
    pub fn validate(self, at: &str, target: Option<&Target>, problems: &mut Vec<Problem>) {
        if self != GitOpsPolicy::Warn
            && let Some(t) = target
            && t.kind() != KUBERNETES
        {
            problems.push(Problem::new(
                at,
                format!(
                    "Argo CD and Flux own Kubernetes workloads only, and this service targets {}; remove gitops here, or keep the default \"warn\"",
                    t.kind()
                ),
            ));
        }
    }
}
