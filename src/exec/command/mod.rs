//! The command executor: a service's rollback as two programs of its own —
//! blue/green switch scripts, symlinked releases, rolling-deploy scripts,
//! feature flags, configuration from git.
//!
//! The `plan` command is read-only and prints, as the last JSON object on
//! its standard output, the version running now and the one a rollback
//! returns to:
//!
//! ```json
//! {"workload": "release symlink /srv/app/current",
//!  "current": {"version": "v1.3.0", "revision": 7},
//!  "target": {"version": "v1.2.9", "revision": 6},
//!  "warnings": ["optional notes for the approvers"]}
//! ```
//!
//! (`workload`, `revision`s and `warnings` may be left out; a `/rollback
//! --to-revision N` reaches it as `ROLLBOT_REQUESTED_REVISION=N`.) The
//! `rollback` command gets `{from}`, `{to}`, `{from_revision}` and
//! `{to_revision}` as arguments and `ROLLBOT_…` variables; its output
//! streams as progress, and exit 0 means rolled back. Before it runs, the
//! plan command runs again: a version that moved since the plan was
//! approved supersedes the proposal, and nothing runs.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub mod target;

pub use target::{COMMAND, CommandTarget};

use super::Target;
use crate::domain::{ContainerImage, Plan, RevisionInfo};
use crate::ports::{ExecError, ExecErrorKind, ExecOutcome, Executor, PlanRequest};
use crate::runbook::process::{self, Spec};
use crate::runbook::vars::Vars;

/// A plan command's answer (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanOutput {
    #[serde(default)]
    pub workload: Option<String>,
    pub current: VersionOutput,
    pub target: VersionOutput,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One version in a plan command's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionOutput {
    pub version: String,
    #[serde(default)]
    pub revision: Option<u64>,
}

impl VersionOutput {
    fn info(&self) -> RevisionInfo {
        RevisionInfo {
            revision: self.revision.unwrap_or(0),
            images: vec![ContainerImage {
                container: "version".into(),
                image: self.version.clone(),
            }],
            change_cause: None,
        }
    }
}

/// Reads the last JSON object a plan command printed.
///
/// # Errors
/// No line of `stdout` is a plan, said with the shape expected.
pub fn parse_plan(stdout: &[String]) -> Result<PlanOutput, String> {
    let mut last_error = None;
    for line in stdout
        .iter()
        .rev()
        .map(|l| l.trim())
        .filter(|l| l.starts_with('{'))
    {
        match serde_json::from_str::<PlanOutput>(line) {
            Ok(p) => return Ok(p),
            Err(e) => last_error = Some(e.to_string()),
        }
    }
    Err(format!(
        "the plan command printed no plan{}; it must print one JSON line like {{\"current\": {{\"version\": \"v1.3.0\"}}, \"target\": {{\"version\": \"v1.2.9\"}}}}",
        last_error.map(|e| format!(" ({e})")).unwrap_or_default()
    ))
}

/// The `Executor` port over a service's own plan and rollback commands.
#[derive(Debug, Clone, Default)]
pub struct CommandExecutor;

impl CommandExecutor {
    pub fn new() -> Self {
        Self
    }

    fn spec(t: &CommandTarget, argv: Vec<String>, env: Vec<(String, String)>) -> Spec {
        let mut env = env;
        env.extend(t.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Spec {
            argv,
            env,
            dir: t.dir.clone(),
            timeout: t.limit(),
            ..Spec::default()
        }
    }

    /// Runs the plan command and reads its answer.
    async fn read_plan(
        &self,
        t: &CommandTarget,
        to_revision: Option<u64>,
    ) -> Result<PlanOutput, ExecError> {
        let env = to_revision
            .map(|r| vec![("ROLLBOT_REQUESTED_REVISION".to_string(), r.to_string())])
            .unwrap_or_default();
        let done = process::run(&Self::spec(t, t.plan.clone(), env), None)
            .await
            .map_err(|e| {
                ExecError::new(ExecErrorKind::Unreachable, format!("plan command: {e}"))
            })?;
        if !done.ok() {
            return Err(ExecError::new(
                ExecErrorKind::Other,
                format!(
                    "the plan command failed ({}): {}; run it by hand to see why",
                    done.status(),
                    done.tail_line()
                ),
            ));
        }
        parse_plan(&done.stdout).map_err(|e| ExecError::new(ExecErrorKind::Other, e))
    }
}

fn command_target(target: &Target) -> Result<&CommandTarget, ExecError> {
    match target {
        Target::Command(t) => Ok(t),
        other => Err(ExecError::new(
            ExecErrorKind::Unsupported,
            format!("the command executor cannot run {} targets", other.kind()),
        )),
    }
}

#[async_trait]
impl Executor for CommandExecutor {
    async fn plan(&self, target: &Target, request: &PlanRequest) -> Result<Plan, ExecError> {
        let t = command_target(target)?;
        if let Some(image) = &request.image {
            return Err(ExecError::new(
                ExecErrorKind::Unsupported,
                format!(
                    "a command target rolls back to what its plan command names, not to an image ({image}); propose without --image, or with --to-revision if the plan command reads ROLLBOT_REQUESTED_REVISION"
                ),
            ));
        }
        let out = self.read_plan(t, request.to_revision).await?;
        if out.current.version == out.target.version {
            return Err(ExecError::new(
                ExecErrorKind::AlreadyCurrent,
                format!("the plan command says {} runs already", out.current.version),
            ));
        }
        Ok(Plan {
            workload: out
                .workload
                .clone()
                .unwrap_or_else(|| format!("command {}", t.rollback.join(" "))),
            current: out.current.info(),
            target: out.target.info(),
            warnings: out.warnings.clone(),
            migrations: false,
            blockers: vec![],
            guard: serde_json::to_value(&out).unwrap_or_default(),
        })
    }

    async fn execute(
        &self,
        target: &Target,
        plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        let t = command_target(target)?;
        let planned: PlanOutput = serde_json::from_value(plan.guard.clone()).map_err(|e| {
            ExecError::new(
                ExecErrorKind::Other,
                format!("this proposal's plan is not a command plan ({e}); propose again"),
            )
        })?;
        // Approval binds to the plan shown: the version must not have moved.
        let now = self.read_plan(t, None).await?;
        if now.current.version != planned.current.version {
            return Ok(ExecOutcome::Superseded {
                reason: format!(
                    "{} runs now, not {} as planned",
                    now.current.version, planned.current.version
                ),
            });
        }
        let vars = Vars::default()
            .with("from", planned.current.version.clone())
            .with("to", planned.target.version.clone())
            .with("from_revision", plan.current.revision.to_string())
            .with("to_revision", plan.target.revision.to_string());
        let Some((program, args)) = t.rollback.split_first() else {
            return Err(ExecError::new(
                ExecErrorKind::Other,
                "the service's rollback command is empty; `rollbot check-config` says how to write it",
            ));
        };
        let mut argv = vec![program.clone()];
        for a in args {
            argv.push(
                vars.render(a)
                    .map_err(|e| ExecError::new(ExecErrorKind::Other, e))?,
            );
        }
        let done = process::run(&Self::spec(t, argv, vars.env()), Some(&progress))
            .await
            .map_err(|e| {
                ExecError::new(
                    ExecErrorKind::RolloutFailed,
                    format!("rollback command: {e}"),
                )
            })?;
        if done.ok() {
            Ok(ExecOutcome::RolledBack {
                detail: done.tail.last().cloned().unwrap_or_else(|| {
                    format!("{} → {}", planned.current.version, planned.target.version)
                }),
            })
        } else {
            Err(ExecError::new(
                ExecErrorKind::RolloutFailed,
                format!(
                    "the rollback command failed ({}): {}",
                    done.status(),
                    done.tail_line()
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_plan_line() {
        let out = parse_plan(&[
            "checking releases…".into(),
            r#"{"current": {"version": "v1.3.0", "revision": 7}, "target": {"version": "v1.2.9"}}"#
                .into(),
        ])
        .unwrap();
        assert_eq!(out.current.version, "v1.3.0");
        assert_eq!(out.current.revision, Some(7));
        assert_eq!(out.target.revision, None);
        let e = parse_plan(&[r#"{"current": "v1"}"#.into()]).unwrap_err();
        assert!(e.contains("printed no plan"), "{e}");
        assert!(parse_plan(&[]).unwrap_err().contains("JSON line"));
    }
}
