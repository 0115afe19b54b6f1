//! Executors that carry out an approved rollback against the outside world.
//!
//! [`kubernetes::KubeExecutor`] does the Kubernetes work with kubectl's
//! semantics; [`KubeRollback`] adapts it to the engine's `Executor` port:
//! the kubectl-identical plan becomes the proposal's [`Plan`] (the full
//! executor plan rides along as the plan's guard, so exactly what was
//! approved is what runs), and the rollout is followed to the end with
//! kubectl's own status lines as progress.

pub mod kubernetes;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::config::{KubernetesConfig, Target};
use crate::domain::{ContainerImage, Plan, RevisionInfo};
use crate::ports::{ExecError, ExecErrorKind, ExecOutcome, Executor};
use kubernetes::{KubeError, KubeExecutor, KubePlan, Outcome};

/// The `Executor` port over Kubernetes.
pub struct KubeRollback {
    kube: KubeExecutor,
    /// Longest wait for a rollout to finish after the patch.
    pub follow_timeout: Duration,
}

impl KubeRollback {
    pub fn new(kube: KubeExecutor) -> Self {
        Self {
            kube,
            follow_timeout: Duration::from_secs(15 * 60),
        }
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
        Ok(Self::new(KubeExecutor::new(client)))
    }

    fn target(target: &Target) -> &kubernetes::KubeTarget {
        match target {
            Target::Kubernetes(k) => k,
        }
    }
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
        KubeError::Api { .. } | KubeError::Watch(_) => ExecErrorKind::Unreachable,
    };
    ExecError::new(kind, e.to_string())
}

#[async_trait]
impl Executor for KubeRollback {
    async fn plan(&self, target: &Target, to_revision: Option<u64>) -> Result<Plan, ExecError> {
        let plan = self
            .kube
            .plan(Self::target(target), to_revision)
            .await
            .map_err(exec_error)?;
        let guard = serde_json::to_value(&plan)
            .map_err(|e| ExecError::new(ExecErrorKind::Other, e.to_string()))?;
        Ok(Plan {
            workload: target.to_string(),
            current: revision(&plan.current),
            target: revision(&plan.rollback_to),
            warnings: vec![],
            migrations: false,
            guard,
        })
    }

    async fn execute(
        &self,
        target: &Target,
        plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        let kube_plan: KubePlan = serde_json::from_value(plan.guard.clone()).map_err(|e| {
            ExecError::new(
                ExecErrorKind::Other,
                format!("the stored plan cannot be read ({e}); propose the rollback again"),
            )
        })?;
        match self.kube.execute(&kube_plan).await.map_err(exec_error)? {
            Outcome::Superseded { reason } => return Ok(ExecOutcome::Superseded { reason }),
            Outcome::RolledBack => {}
        }
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
        let followed = self
            .kube
            .follow(
                Self::target(target),
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
}
