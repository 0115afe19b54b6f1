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

impl Config {
    /// The services whose policy is `gitops = "pause"`, with the
    /// Kubernetes workloads whose owners are paused (the policy applies to
    /// Kubernetes targets only).
    pub fn gitops_paused(&self) -> Vec<(ServiceName, crate::exec::kubernetes::KubeTarget)> {
        self.services()
            .into_iter()
            .filter(|(_, s)| s.gitops == GitOpsPolicy::Pause)
            .filter_map(|(name, s)| match s.target {
                Target::Kubernetes(t) => Some((name, t)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = r#"
        [services.payment-api]
        approvers = ["slack:UALICE"]
        GITOPS
        [services.payment-api.TARGET]
    "#;

    fn parse(gitops: &str, target: &str) -> Result<Config, Vec<Problem>> {
        let table = match target {
            "kubernetes" => "kubernetes]\nnamespace = \"production\"\nname = \"api\"",
            _ => "custom]\nkind = \"nomad\"",
        };
        Config::parse(&SERVICE.replace("GITOPS", gitops).replace("TARGET]", table))
    }

    #[test]
    fn the_policy_defaults_to_warn_and_applies_to_kubernetes_only() {
        let c = parse("", "kubernetes").unwrap();
        let name = ServiceName::parse("payment-api").unwrap();
        assert_eq!(c.services()[&name].gitops, GitOpsPolicy::Warn);
        let c = parse("gitops = \"pause\"", "kubernetes").unwrap();
        assert_eq!(c.services()[&name].gitops, GitOpsPolicy::Pause);
        let problems = parse("gitops = \"refuse\"", "custom").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "services.payment-api.gitops");
        assert!(
            problems[0].message.contains("targets nomad"),
            "{problems:?}"
        );
        let problems = parse("gitops = \"ignore\"", "kubernetes").unwrap_err();
        assert!(
            problems[0].path.contains("gitops")
                && problems[0].message.contains("`warn`, `pause`, `refuse`"),
            "{problems:?}"
        );
    }
}
