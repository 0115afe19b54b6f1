//! Executors that carry out an approved rollback against the outside world.
//!
//! A service's [`Target`] names one kind; [`Executors`] routes each call to
//! the executor registered for it.
//!
//! [`kubernetes::KubeExecutor`] does the Kubernetes work with kubectl's
//! semantics; [`KubeRollback`] adapts it to the engine's `Executor` port:
//! the kubectl-identical plan becomes the proposal's [`Plan`] (the full
//! executor plan rides along as the plan's guard, so exactly what was
//! approved is what runs), and the rollout is followed to the end with
//! kubectl's own status lines as progress. After a restart the workload
//! itself says where an interrupted rollback stands, so it is finished
//! without a second patch. Drills rehearse behind it: a drill's target is a
//! copy of the workload in a loopback simulator ([`kubernetes::drill`]),
//! which it alone starts, reaches and stops.
//!
//! [`SwarmRollback`] does the same for Docker Swarm services with `docker
//! service rollback` semantics ([`swarm`]).
//!
//! [`command::CommandExecutor`] runs a service's own plan and rollback
//! programs (symlinked releases, blue/green switches, feature flags);
//! [`helm::HelmExecutor`] rolls back a Helm release with the `helm` program.

pub mod command;
pub mod helm;
pub mod kubernetes;
mod router;
pub mod swarm;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::domain::{ContainerImage, Plan, ProposalId, RevisionInfo};
use crate::ports::{ExecError, ExecErrorKind, ExecOutcome, Executor, PlanRequest, Standing};
pub use command::{COMMAND, CommandExecutor, CommandTarget};
pub use helm::{HELM, HelmExecutor, HelmTarget};
use kubernetes::drill::{DrillError, Drills};
use kubernetes::{DrillTarget, KubeError, KubeExecutor, KubePlan, KubernetesConfig, Outcome};
pub use router::Executors;
pub use swarm::{SWARM, SwarmRollback};
pub use target::{CustomTarget, KUBERNETES, Target};

/// The `Executor` port over Kubernetes.
pub struct KubeRollback {
    kube: KubeExecutor,
    /// Drills copy from the same cluster, read-only, with the same
    /// credentials.
    drills: Arc<Drills>,
    /// Longest wait for a rollout to finish after the patch.
    pub follow_timeout: Duration,
    /// How long verification watches a workload with a GitOps owner for
    /// the owner putting it back (Argo CD self-heals ~5 s after a drift).
    pub gitops_hold: Duration,
}

/// How often the hold watch reads the workload.
const HOLD_POLL: Duration = Duration::from_millis(250);

/// The default [`KubeRollback::gitops_hold`].
pub const DEFAULT_GITOPS_HOLD: Duration = Duration::from_secs(30);

impl KubeRollback {
    pub fn new(kube: KubeExecutor) -> Self {
        let drills = Arc::new(Drills::new(kube.client()));
        Self {
            kube,
            drills,
            follow_timeout: Duration::from_secs(15 * 60),
            gitops_hold: DEFAULT_GITOPS_HOLD,
        }
    }

    /// Uses `drills` (e.g. with other simulated pod behaviour) instead of
    /// drills copying from this executor's cluster.
    #[must_use]
    pub fn with_drills(mut self, drills: Arc<Drills>) -> Self {
        self.drills = drills;
        self
    }

    /// The drills in progress.
    pub fn drills(&self) -> &Arc<Drills> {
        &self.drills
    }

    /// Connects like kubectl: the kubeconfig (and context) named in config,
    /// else in-cluster service account, else `~/.kube/config`.
    ///
    /// # Errors
    /// Says which kubeconfig or context could not be used.
    pub async fn connect(config: Option<&KubernetesConfig>) -> anyhow::Result<Self> {
        use anyhow::Context;
        let options = kube::config::KubeConfigOptions {
            context: config.and_then(|c| c.context.clone()),
            ..Default::default()
        };
        let client_config = match config.and_then(|c| c.kubeconfig.as_ref()) {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .with_context(|| format!("using kubeconfig {}", path.display()))?
            }
            None if options.context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .context("using the kubeconfig context named in [kubernetes]")?,
            None => kube::Config::infer().await.context(
                "no Kubernetes credentials: not in a cluster and no ~/.kube/config; set [kubernetes] kubeconfig",
            )?,
        };
        let client =
            kube::Client::try_from(client_config).context("building the Kubernetes client")?;
        let settings = kubernetes::gitops::GitOpsSettings::of(config);
        Ok(Self::new(KubeExecutor::new(client).with_gitops(settings)))
    }

    /// The client for `target` and the workload it names: the configured
    /// cluster for a service, the drill's own simulator for a drill. A drill
    /// target is only ever reached through a loopback URL, so a drill cannot
    /// touch a real cluster even if its stored target were altered.
    fn route<'t>(
        &self,
        target: &'t Target,
    ) -> Result<(KubeExecutor, &'t kubernetes::KubeTarget), ExecError> {
        match target {
            Target::Kubernetes(k) => Ok((self.kube.clone(), k)),
            Target::Custom(_) | Target::Swarm(_) | Target::Command(_) | Target::Helm(_) => {
                Err(ExecError::new(
                    ExecErrorKind::Unsupported,
                    format!(
                        "the Kubernetes executor cannot roll back a {} target; register an executor for that kind",
                        target.kind()
                    ),
                ))
            }
            Target::Drill(d) => {
                if !is_loopback_http(&d.url) {
                    return Err(ExecError::new(
                        ExecErrorKind::Unsupported,
                        format!(
                            "refusing to run a drill against {}: drills run only in rollbot's in-process simulator on 127.0.0.1; start a new drill",
                            d.url
                        ),
                    ));
                }
                let kube = KubeExecutor::for_url(&d.url).map_err(|e| {
                    ExecError::new(
                        ExecErrorKind::Unreachable,
                        format!("cannot reach the drill simulator at {}: {e}", d.url),
                    )
                })?;
                Ok((kube, &d.workload))
            }
        }
    }

    /// The client of the configured cluster (drills copy from it, read-only).
    pub fn client(&self) -> kube::Client {
        self.kube.client()
    }
}

/// The steps that pause a GitOps owner before the rollback, one per
/// service `paused` names (those whose policy is `gitops = "pause"`; see
/// [`kubernetes::gitops`]). Connects to the cluster only when it names any.
///
/// # Errors
/// The Kubernetes client cannot be configured.
pub async fn gitops_pause_hooks(
    kubernetes: Option<&KubernetesConfig>,
    paused: Vec<(crate::domain::ServiceName, kubernetes::KubeTarget)>,
) -> anyhow::Result<
    std::collections::BTreeMap<crate::domain::ServiceName, Arc<dyn crate::ports::Hook>>,
> {
    if paused.is_empty() {
        return Ok(Default::default());
    }
    let kube = KubeRollback::connect(kubernetes).await?.kube;
    Ok(kubernetes::gitops::pause_hooks(paused, &kube))
}

/// `http://127.0.0.1:PORT…` or `http://localhost:PORT…`.
fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

fn revision(r: &kubernetes::RevisionInfo) -> RevisionInfo {
    RevisionInfo {
        revision: r.revision,
        images: r
            .images
            .iter()
            .map(|(container, image)| ContainerImage {
                container: container.clone(),
                image: image.clone(),
            })
            .collect(),
        change_cause: r.change_cause.clone(),
    }
}

fn exec_error(e: KubeError) -> ExecError {
    let kind = match &e {
        KubeError::NotFound { .. } => ExecErrorKind::NotFound,
        KubeError::NoHistory { .. } => ExecErrorKind::NoHistory,
        KubeError::RevisionNotFound(_) => ExecErrorKind::RevisionNotFound,
        KubeError::AlreadyCurrent(_) => ExecErrorKind::AlreadyCurrent,
        KubeError::Paused => ExecErrorKind::Paused,
        KubeError::Forbidden { .. } => ExecErrorKind::Forbidden,
        KubeError::ProgressDeadlineExceeded(_) | KubeError::Timeout | KubeError::Deleted => {
            ExecErrorKind::RolloutFailed
        }
        KubeError::Unsupported(_) => ExecErrorKind::Unsupported,
        KubeError::Api { .. } | KubeError::Watch(_) | KubeError::LostTrack { .. } => {
            ExecErrorKind::Unreachable
        }
    };
    ExecError::new(kind, e.to_string())
}

#[async_trait]
impl Executor for KubeRollback {
    async fn plan(&self, target: &Target, request: &PlanRequest) -> Result<Plan, ExecError> {
        let (kube, workload) = self.route(target)?;
        if let Some(image) = &request.image {
            return Err(ExecError::new(
                ExecErrorKind::Unsupported,
                format!(
                    "a Kubernetes rollback restores a recorded revision, not an image ({image}); use --to-revision N with a revision from `/rollback history`, or leave both out to roll back to the previous revision"
                ),
            ));
        }
        let mut plan = kube
            .plan(workload, request.to_revision)
            .await
            .map_err(exec_error)?;
        if matches!(target, Target::Drill(_)) {
            // A drill's copy has no GitOps owner to pause or to fear.
            plan.gitops = None;
        }
        let warnings = plan
            .gitops
            .as_ref()
            .map(kubernetes::gitops::warnings)
            .unwrap_or_default();
        let blockers = match &plan.gitops {
            Some(o) if request.refuse_gitops => {
                kubernetes::gitops::blocker(o).into_iter().collect()
            }
            _ => vec![],
        };
        let guard = serde_json::to_value(&plan)
            .map_err(|e| ExecError::new(ExecErrorKind::Other, e.to_string()))?;
        Ok(Plan {
            workload: target.to_string(),
            current: revision(&plan.current),
            target: revision(&plan.rollback_to),
            warnings,
            migrations: false,
            blockers,
            guard,
        })
    }

    async fn execute(
        &self,
        target: &Target,
        plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        match self.apply(target, plan).await? {
            Outcome::Superseded { reason } => Ok(ExecOutcome::Superseded { reason }),
            Outcome::RolledBack => self.follow(target, plan, progress).await,
        }
    }

    async fn standing(&self, target: &Target, plan: &Plan) -> Result<Standing, ExecError> {
        let (kube, kube_plan) = self.routed_plan(target, plan)?;
        Ok(match kube.standing(&kube_plan).await.map_err(exec_error)? {
            kubernetes::Standing::Applied => Standing::Applied,
            kubernetes::Standing::NotApplied => Standing::NotApplied,
            kubernetes::Standing::Moved { reason } => Standing::Moved { reason },
        })
    }

    async fn follow(
        &self,
        target: &Target,
        plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        let (kube, kube_plan) = self.routed_plan(target, plan)?;
        // `follow` reports lines from a synchronous callback; a forwarder
        // hands them to the engine in order, with the port's backpressure.
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let forwarder = tokio::spawn(async move {
            let mut last = String::new();
            while let Some(line) = rx.recv().await {
                last.clone_from(&line);
                // The engine may have stopped listening; the rollout goes on.
                let _ = progress.send(line).await;
            }
            last
        });
        let followed = kube
            .follow(
                &kube_plan.target,
                |line| {
                    let _ = tx.send(line);
                },
                self.follow_timeout,
            )
            .await;
        drop(tx);
        let last = forwarder.await.unwrap_or_default();
        followed.map_err(exec_error)?;
        Ok(ExecOutcome::RolledBack { detail: last })
    }

    /// Copies the workload and its history from the cluster, read-only,
    /// into a new simulator on loopback, kept for drill `drill`.
    async fn rehearse(&self, target: &Target, drill: &ProposalId) -> Result<Target, ExecError> {
        let Target::Kubernetes(workload) = target else {
            return Err(ExecError::new(
                ExecErrorKind::Unsupported,
                format!("cannot rehearse on {target}: drills copy a service's Kubernetes workload"),
            ));
        };
        let lab = self.drills.open(workload).await.map_err(drill_error)?;
        let url = lab.url();
        self.drills.keep(drill.clone(), lab);
        Ok(Target::Drill(DrillTarget {
            url,
            workload: workload.clone(),
        }))
    }

    fn rehearsal(&self, target: &Target, drill: &ProposalId) -> Result<Target, ExecError> {
        let gone = || {
            ExecError::new(
                ExecErrorKind::Unsupported,
                "this drill's simulator is no longer running (rollbot restarted?); nothing was changed",
            )
        };
        let Target::Kubernetes(workload) = target else {
            return Err(gone());
        };
        let url = self.drills.url(drill).ok_or_else(gone)?;
        Ok(Target::Drill(DrillTarget {
            url,
            workload: workload.clone(),
        }))
    }

    fn release(&self, over: &dyn Fn(&ProposalId) -> bool) {
        self.drills.reap(over);
    }

    /// Watches a workload that has a GitOps owner for `gitops_hold`: a
    /// self-healing owner puts it back within seconds of the rollback.
    async fn watch_hold(&self, target: &Target, plan: &Plan) -> Option<String> {
        let (kube, kube_plan) = self.routed_plan(target, plan).ok()?;
        let owner = kube_plan.gitops.as_ref()?.owner.clone();
        let deadline = tokio::time::Instant::now() + self.gitops_hold;
        loop {
            match kube.standing(&kube_plan).await {
                Ok(kubernetes::Standing::Moved { reason }) => {
                    return Some(format!(
                        "{reason}; {owner}, which manages this workload, put it back to what git holds"
                    ));
                }
                Ok(kubernetes::Standing::NotApplied) => {
                    return Some(format!(
                        "the workload is back on the version rolled back from; {owner}, which manages this workload, put it back to what git holds"
                    ));
                }
                // Holding so far; a failed read is no verdict either.
                Ok(kubernetes::Standing::Applied) | Err(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(HOLD_POLL).await;
        }
    }
}

fn drill_error(e: DrillError) -> ExecError {
    let kind = match &e {
        DrillError::NotFound { .. } => ExecErrorKind::NotFound,
        DrillError::Read { .. } => ExecErrorKind::Unreachable,
        DrillError::Simulator(_) => ExecErrorKind::Other,
    };
    ExecError::new(kind, e.to_string())
}

impl KubeRollback {
    /// Sends the rollback patch of `plan` (or finds the workload moved),
    /// without following the rollout: the first half of `execute`.
    ///
    /// # Errors
    /// As `execute`, before the patch.
    pub async fn apply(&self, target: &Target, plan: &Plan) -> Result<Outcome, ExecError> {
        let (kube, kube_plan) = self.routed_plan(target, plan)?;
        kube.execute(&kube_plan).await.map_err(exec_error)
    }

    /// The client for `target` and the stored plan, checked to be for the
    /// workload `target` names.
    fn routed_plan(
        &self,
        target: &Target,
        plan: &Plan,
    ) -> Result<(KubeExecutor, KubePlan), ExecError> {
        let kube_plan: KubePlan = serde_json::from_value(plan.guard.clone()).map_err(|e| {
            ExecError::new(
                ExecErrorKind::Other,
                format!("the stored plan cannot be read ({e}); propose the rollback again"),
            )
        })?;
        let (kube, workload) = self.route(target)?;
        if &kube_plan.target != workload {
            return Err(ExecError::new(
                ExecErrorKind::Other,
                format!(
                    "the stored plan is for {}, not {workload}; propose the rollback again",
                    kube_plan.target
                ),
            ));
        }
        Ok((kube, kube_plan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_is_a_drill_url() {
        for ok in [
            "http://127.0.0.1:41234",
            "http://localhost:8080/",
            "http://[::1]:9",
        ] {
            assert!(is_loopback_http(ok), "{ok}");
        }
        for bad in [
            "https://127.0.0.1:6443",
            "http://10.0.0.1:6443",
            "http://127.0.0.1.evil.example:80",
            "http://kubernetes.default.svc",
            "",
        ] {
            assert!(!is_loopback_http(bad), "{bad}");
        }
    }
}
