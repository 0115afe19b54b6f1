//! The Helm executor: rolls back a Helm release with the `helm` program
//! (the path is configurable; rollbot talks to the cluster only through it).
//!
//! The plan comes from `helm history RELEASE -o json`: the current
//! revision is the `deployed` one, the target the latest `superseded`
//! revision before it (or `--to-revision`). Before `helm rollback RELEASE
//! REV --wait --timeout …` runs, the history is read again: a release made
//! since the plan supersedes the proposal, and nothing runs. After a
//! restart, the history says whether the rollback went out (a newer
//! `deployed` revision described "Rolled back to REV").

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub mod target;

pub use target::{HELM, HelmTarget};

use super::Target;
use crate::domain::{ContainerImage, Plan, RevisionInfo};
use crate::ports::{ExecError, ExecErrorKind, ExecOutcome, Executor, PlanRequest, Standing};
use crate::runbook::process::{self, Spec};

/// How much longer than `helm rollback --timeout` rollbot waits for the
/// program itself before killing it.
const MARGIN: Duration = Duration::from_secs(30);

/// How long reading a release's history may take.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(60);

/// One entry of `helm history -o json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub revision: u64,
    #[serde(default)]
    pub updated: String,
    pub status: String,
    #[serde(default)]
    pub chart: String,
    #[serde(default)]
    pub app_version: String,
    #[serde(default)]
    pub description: String,
}

impl HistoryEntry {
    fn info(&self) -> RevisionInfo {
        RevisionInfo {
            revision: self.revision,
            images: vec![ContainerImage {
                container: self.app_version.clone(),
                image: self.chart.clone(),
            }],
            change_cause: (!self.description.is_empty()).then(|| self.description.clone()),
        }
    }
}

/// The `deployed` revision of a history: the release as it runs now.
pub fn deployed(history: &[HistoryEntry]) -> Option<&HistoryEntry> {
    history
        .iter()
        .filter(|e| e.status == "deployed")
        .max_by_key(|e| e.revision)
}

/// The current and target revisions of a rollback of `history`.
///
/// # Errors
/// No deployed revision, no earlier one to return to, or `to_revision`
/// missing from the history or current already.
pub fn plan_history(
    history: &[HistoryEntry],
    to_revision: Option<u64>,
) -> Result<(&HistoryEntry, &HistoryEntry), ExecError> {
    let current = deployed(history).ok_or_else(|| {
        ExecError::new(
            ExecErrorKind::NoHistory,
            "the release has no deployed revision; check `helm history` (a failed or pending release needs a person)",
        )
    })?;
    let target = match to_revision {
        Some(rev) if rev == current.revision => {
            return Err(ExecError::new(
                ExecErrorKind::AlreadyCurrent,
                format!("revision {rev} is the deployed one"),
            ));
        }
        Some(rev) => history.iter().find(|e| e.revision == rev).ok_or_else(|| {
            ExecError::new(
                ExecErrorKind::RevisionNotFound,
                format!("the release has no revision {rev}"),
            )
        })?,
        None => history
            .iter()
            .filter(|e| e.status == "superseded" && e.revision < current.revision)
            .max_by_key(|e| e.revision)
            .ok_or_else(|| {
                ExecError::new(
                    ExecErrorKind::NoHistory,
                    format!(
                        "the release has no superseded revision before revision {}",
                        current.revision
                    ),
                )
            })?,
    };
    Ok((current, target))
}

/// The `Executor` port over the `helm` program.
#[derive(Debug, Clone, Default)]
pub struct HelmExecutor;

impl HelmExecutor {
    pub fn new() -> Self {
        Self
    }

    fn spec(t: &HelmTarget, args: &[&str], timeout: Duration) -> Spec {
        let mut argv = vec![t.binary.clone()];
        argv.extend(args.iter().map(|a| a.to_string()));
        argv.extend(["--namespace".to_string(), t.namespace.clone()]);
        Spec {
            argv,
            timeout,
            // helm finds its kubeconfig, cache and plugins through the environment.
            inherit_env: true,
            ..Spec::default()
        }
    }

    /// Reads the release's history.
    ///
    /// # Errors
    /// helm cannot run, the release does not exist, or the output is not
    /// `helm history -o json`'s.
    pub async fn history(&self, t: &HelmTarget) -> Result<Vec<HistoryEntry>, ExecError> {
        let spec = Self::spec(
            t,
            &["history", &t.release, "--output", "json", "--max", "256"],
            HISTORY_TIMEOUT,
        );
        let done = process::run(&spec, None).await.map_err(|e| {
            ExecError::new(ExecErrorKind::Unreachable, format!("helm history: {e}"))
        })?;
        if !done.ok() {
            let tail = done.tail_line();
            let kind = if tail.contains("not found") {
                ExecErrorKind::NotFound
            } else {
                ExecErrorKind::Unreachable
            };
            return Err(ExecError::new(
                kind,
                format!(
                    "helm history {} failed ({}): {tail}",
                    t.release,
                    done.status()
                ),
            ));
        }
        let json = done.stdout.join("\n");
        serde_json::from_str(&json).map_err(|e| {
            ExecError::new(
                ExecErrorKind::Other,
                format!("helm history printed something other than its JSON ({e}); check the helm binary at {}", t.binary),
            )
        })
    }
}

fn helm_target(target: &Target) -> Result<&HelmTarget, ExecError> {
    match target {
        Target::Helm(t) => Ok(t),
        other => Err(ExecError::new(
            ExecErrorKind::Unsupported,
            format!("the Helm executor cannot run {} targets", other.kind()),
        )),
    }
}

#[async_trait]
impl Executor for HelmExecutor {
    async fn plan(&self, target: &Target, request: &PlanRequest) -> Result<Plan, ExecError> {
        let t = helm_target(target)?;
        if let Some(image) = &request.image {
            return Err(ExecError::new(
                ExecErrorKind::Unsupported,
                format!(
                    "a Helm release rolls back to a revision of its history, not to an image ({image}); propose with --to-revision N from `helm history`"
                ),
            ));
        }
        let history = self.history(t).await?;
        let (current, back) = plan_history(&history, request.to_revision)?;
        Ok(Plan {
            workload: format!("helm release {}/{}", t.namespace, t.release),
            current: current.info(),
            target: back.info(),
            warnings: vec![],
            migrations: false,
            blockers: vec![],
            guard: serde_json::json!({ "release": t.release, "deployed": current.revision }),
        })
    }

    async fn execute(
        &self,
        target: &Target,
        plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        let t = helm_target(target)?;
        // Approval binds to the plan shown: no release since then.
        let history = self.history(t).await?;
        match deployed(&history) {
            Some(d) if d.revision == plan.current.revision => {}
            Some(d) => {
                return Ok(ExecOutcome::Superseded {
                    reason: format!(
                        "release {} is at revision {} now ({}), not {} as planned",
                        t.release, d.revision, d.description, plan.current.revision
                    ),
                });
            }
            None => {
                return Ok(ExecOutcome::Superseded {
                    reason: format!("release {} has no deployed revision any more", t.release),
                });
            }
        }
        let limit = t.limit();
        let rev = plan.target.revision.to_string();
        let wait = format!("{}s", limit.as_secs());
        let spec = Self::spec(
            t,
            &["rollback", &t.release, &rev, "--wait", "--timeout", &wait],
            limit + MARGIN,
        );
        let done = process::run(&spec, Some(&progress)).await.map_err(|e| {
            ExecError::new(ExecErrorKind::RolloutFailed, format!("helm rollback: {e}"))
        })?;
        if !done.ok() {
            return Err(ExecError::new(
                ExecErrorKind::RolloutFailed,
                format!(
                    "helm rollback failed ({}): {}",
                    done.status(),
                    done.tail_line()
                ),
            ));
        }
        let after = self.history(t).await?;
        let now = deployed(&after).map_or_else(
            || "no deployed revision".to_string(),
            |d| format!("revision {}: {}", d.revision, d.description),
        );
        Ok(ExecOutcome::RolledBack {
            detail: format!("release {} at {now}", t.release),
        })
    }

    async fn standing(&self, target: &Target, plan: &Plan) -> Result<Standing, ExecError> {
        let t = helm_target(target)?;
        let history = self.history(t).await?;
        Ok(match deployed(&history) {
            Some(d) if d.revision == plan.current.revision => Standing::NotApplied,
            Some(d)
                if d.revision > plan.current.revision
                    && d.description == format!("Rolled back to {}", plan.target.revision) =>
            {
                Standing::Applied
            }
            Some(d) => Standing::Moved {
                reason: format!(
                    "release {} is at revision {} ({})",
                    t.release, d.revision, d.description
                ),
            },
            None => Standing::Unknown,
        })
    }

    async fn follow(
        &self,
        target: &Target,
        plan: &Plan,
        _progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        // `helm rollback` is done once its new revision is recorded as
        // deployed; there is nothing else to follow.
        match self.standing(target, plan).await? {
            Standing::Applied => Ok(ExecOutcome::RolledBack {
                detail: format!("rolled back to revision {}", plan.target.revision),
            }),
            other => Err(ExecError::new(
                ExecErrorKind::Interrupted,
                format!(
                    "the release is not rolled back to revision {}: {other:?}",
                    plan.target.revision
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revision: u64, status: &str, description: &str) -> HistoryEntry {
        HistoryEntry {
            revision,
            updated: String::new(),
            status: status.into(),
            chart: format!("payment-api-1.{revision}.0"),
            app_version: format!("v1.{revision}.0"),
            description: description.into(),
        }
    }

    #[test]
    fn plans_from_the_deployed_to_the_last_superseded_revision() {
        let history = [
            entry(1, "superseded", "Install complete"),
            entry(2, "superseded", "Upgrade complete"),
            entry(3, "failed", "Upgrade failed"),
            entry(4, "deployed", "Upgrade complete"),
        ];
        let (now, back) = plan_history(&history, None).unwrap();
        assert_eq!((now.revision, back.revision), (4, 2));
        let (_, back) = plan_history(&history, Some(1)).unwrap();
        assert_eq!(back.revision, 1);
        assert_eq!(
            plan_history(&history, Some(9)).unwrap_err().kind,
            ExecErrorKind::RevisionNotFound
        );
        assert_eq!(
            plan_history(&history, Some(4)).unwrap_err().kind,
            ExecErrorKind::AlreadyCurrent
        );
        assert_eq!(
            plan_history(&[entry(1, "deployed", "Install complete")], None)
                .unwrap_err()
                .kind,
            ExecErrorKind::NoHistory
        );
    }
}
