//! Docker Swarm services rolled back as `docker service rollback` does it,
//! through the Docker Engine API.
//!
//! - **Plan** (read-only): the image running now comes from the service's
//!   `Spec`, the image a rollback restores from its `PreviousSpec` (the one
//!   spec Swarm keeps besides the current one); or, in the runbook's second
//!   form (`docker service update --image IMAGE`), a named image. The plan
//!   keeps both specs and the service's `Version.Index`.
//! - **Execute**: re-reads the service and refuses with
//!   [`ExecOutcome::Superseded`] if its spec moved since the plan (nothing
//!   is sent); otherwise sends the update at the version it read — with
//!   `rollback=previous` for a rollback — so a change made in between makes
//!   the daemon refuse it (`update out of sequence`), which is also
//!   superseded. A version moved by Swarm's own bookkeeping alone (the
//!   previous update's status being recorded) is not a change of what was
//!   approved.
//! - **Follow**: polls `UpdateStatus` and the tasks until
//!   `rollback_completed` (or `completed` for an image) with every replica
//!   running the restored image, reporting progress in the docker CLI's
//!   words; `rollback_paused` / `paused` fail with Docker's message. A
//!   daemon silent for a while is waited for, up to `lost_track`.
//! - **Standing** after a restart: the specs say whether the update was
//!   sent (a rollback swaps `Spec` and `PreviousSpec`), so it is never sent
//!   twice.
//!
//! There is no revision number in Swarm: `--to-revision` is refused, and
//! drills are not available (the default of [`Executor::rehearse`]).

mod docker;
pub mod target;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::domain::{ContainerImage, Plan, RevisionInfo};
use crate::ports::{ExecError, ExecErrorKind, ExecOutcome, Executor, PlanRequest, Standing};
pub use docker::{DockerApi, DockerError};
pub use target::{DEFAULT_DOCKER_HOST, SWARM, SwarmTarget, SwarmTls};

use super::Target;

/// How often a rollout is looked at while it runs.
const POLL: Duration = Duration::from_millis(500);

/// What the approved plan does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// `docker service rollback`: back to `PreviousSpec`.
    Rollback,
    /// `docker service update --image IMAGE`.
    Image { image: String },
}

/// The plan's guard, stored with the proposal: what was read when planning,
/// so exactly the approved change is sent, or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwarmPlan {
    pub target: SwarmTarget,
    /// The service's id (a service removed and created again is another).
    pub id: String,
    /// `Version.Index` when planned.
    pub version: u64,
    /// `Spec` when planned.
    pub spec: Value,
    /// `PreviousSpec` when planned (`null` when there is none).
    pub previous: Value,
    pub action: Action,
    /// The image the service runs once the plan is done.
    pub restore_image: String,
}

/// The `Executor` port over Docker Swarm.
pub struct SwarmRollback {
    /// Longest wait for an update to converge once sent.
    pub follow_timeout: Duration,
    /// How long Docker may stay silent while an update it was sent runs
    /// before rollbot says it lost track of it.
    pub lost_track: Duration,
}

impl Default for SwarmRollback {
    fn default() -> Self {
        Self {
            follow_timeout: Duration::from_secs(15 * 60),
            lost_track: Duration::from_secs(60),
        }
    }
}

/// The image of a service spec.
fn image_of(spec: &Value) -> String {
    spec.pointer("/TaskTemplate/ContainerSpec/Image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn version_of(service: &Value) -> u64 {
    service
        .pointer("/Version/Index")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn update_state(service: &Value) -> (String, String) {
    let status = &service["UpdateStatus"];
    (
        status["State"].as_str().unwrap_or_default().to_string(),
        status["Message"].as_str().unwrap_or_default().to_string(),
    )
}

/// Docker's refusal of an update sent at a stale version.
fn out_of_sequence(e: &DockerError) -> bool {
    e.message().contains("out of sequence")
}

fn swarm_target(target: &Target) -> Result<&SwarmTarget, ExecError> {
    match target {
        Target::Swarm(s) => Ok(s),
        other => Err(ExecError::new(
            ExecErrorKind::Unsupported,
            format!(
                "the Swarm executor cannot roll back {other}; register an executor for {} targets",
                other.kind()
            ),
        )),
    }
}

fn connect(target: &SwarmTarget) -> Result<DockerApi, ExecError> {
    DockerApi::connect(target)
        .map_err(|e| ExecError::new(ExecErrorKind::Unreachable, e.to_string()))
}

/// Maps a daemon failure about `target`'s service to the port's error.
fn exec_error(target: &SwarmTarget, e: DockerError) -> ExecError {
    match e.status() {
        Some(404) => ExecError::new(
            ExecErrorKind::NotFound,
            format!(
                "no such service: {} on {} ({}); check `service` in [services.NAME.swarm] against `docker service ls`",
                target.service,
                target.docker_host,
                e.message()
            ),
        ),
        // 503: "This node is not a swarm manager", among others.
        Some(503) => ExecError::new(
            ExecErrorKind::Unreachable,
            format!(
                "{e}; point docker_host at a manager of the swarm (`docker node ls` works there)"
            ),
        ),
        Some(_) => ExecError::new(ExecErrorKind::Other, e.to_string()),
        None => ExecError::new(ExecErrorKind::Unreachable, e.to_string()),
    }
}

/// A side of the plan. Swarm numbers no revisions: 0 says so, and the
/// image names it (the service's `Version.Index` is in the guard).
fn info(service: &str, image: String) -> RevisionInfo {
    RevisionInfo {
        revision: 0,
        images: vec![ContainerImage {
            container: service.to_string(),
            image,
        }],
        change_cause: None,
    }
}

impl SwarmRollback {
    /// Reads the service and works out the plan: back to `PreviousSpec`, or
    /// to `image` when one is named.
    ///
    /// # Errors
    /// `NotFound`, `NoHistory` (never updated, so no previous spec),
    /// `AlreadyCurrent` (the named image runs already), `Unreachable`.
    async fn plan_swarm(
        &self,
        target: &SwarmTarget,
        image: Option<&str>,
    ) -> Result<(Plan, SwarmPlan), ExecError> {
        let docker = connect(target)?;
        let service = docker
            .service(&target.service)
            .await
            .map_err(|e| exec_error(target, e))?;
        let spec = service["Spec"].clone();
        let previous = service["PreviousSpec"].clone();
        let current = image_of(&spec);
        let version = version_of(&service);
        let (state, _) = update_state(&service);
        let mut warnings = Vec::new();
        if matches!(state.as_str(), "updating" | "rollback_started") {
            warnings.push(format!(
                "an update of this service is under way ({state}); if it changes the service before the approvals, this proposal is superseded and nothing is changed"
            ));
        }
        let (action, restore_image) = match image {
            Some(image) => {
                if image == current {
                    return Err(ExecError::new(
                        ExecErrorKind::AlreadyCurrent,
                        format!(
                            "service {} already runs {image}; nothing to roll back to",
                            target.service
                        ),
                    ));
                }
                (
                    Action::Image {
                        image: image.to_string(),
                    },
                    image.to_string(),
                )
            }
            None => {
                if previous.is_null() {
                    return Err(ExecError::new(
                        ExecErrorKind::NoHistory,
                        format!(
                            "service {} has no previous spec to roll back to (it was never updated); name the image to run instead: `/rollback SERVICE --image IMAGE`",
                            target.service
                        ),
                    ));
                }
                let restore = image_of(&previous);
                if state == "rollback_completed" {
                    warnings.push(format!(
                        "the last change of this service was itself a rollback: rolling back again restores {restore}, as `docker service rollback` would; to run another image, propose `/rollback SERVICE --image IMAGE`"
                    ));
                }
                if restore == current {
                    warnings.push(format!(
                        "the previous spec runs the same image ({current}); it differs in other settings, which the rollback restores"
                    ));
                }
                (Action::Rollback, restore)
            }
        };
        let id = service["ID"].as_str().unwrap_or_default().to_string();
        let plan = Plan {
            workload: target.to_string(),
            current: info(&target.service, current),
            target: info(&target.service, restore_image.clone()),
            warnings,
            migrations: false,
            blockers: vec![],
            guard: Value::Null,
        };
        let guard = SwarmPlan {
            target: target.clone(),
            id,
            version,
            spec,
            previous,
            action,
            restore_image,
        };
        Ok((plan, guard))
    }

    /// Why the service no longer matches `plan`, if it moved.
    fn moved(plan: &SwarmPlan, service: &Value) -> Option<String> {
        if service["ID"].as_str() != Some(plan.id.as_str()) {
            return Some(format!(
                "service {} was removed and created again since the plan",
                plan.target.service
            ));
        }
        let spec = &service["Spec"];
        if spec != &plan.spec {
            let (was, now) = (image_of(&plan.spec), image_of(spec));
            return Some(if was == now {
                format!("the service's spec changed since the plan (image still {now})")
            } else {
                format!("the service was updated since the plan: it runs {now} now, not {was}")
            });
        }
        if plan.action == Action::Rollback && service["PreviousSpec"] != plan.previous {
            return Some(format!(
                "the service's previous spec changed since the plan: a rollback would now restore {}, not {}",
                image_of(&service["PreviousSpec"]),
                plan.restore_image
            ));
        }
        None
    }

    /// Whether the service already carries `plan`'s change.
    fn applied(plan: &SwarmPlan, service: &Value) -> bool {
        if service["ID"].as_str() != Some(plan.id.as_str()) || service["PreviousSpec"] != plan.spec
        {
            return false;
        }
        match &plan.action {
            // A rollback swaps the two specs.
            Action::Rollback => service["Spec"] == plan.previous,
            Action::Image { image } => image_of(&service["Spec"]) == *image,
        }
    }

    /// Sends the update of the stored `plan` for `target` (or finds the
    /// service moved: `Some(reason)`), without following it: the first half
    /// of `execute`.
    ///
    /// # Errors
    /// As `execute`, before the update.
    pub async fn apply(&self, target: &Target, plan: &Plan) -> Result<Option<String>, ExecError> {
        self.apply_swarm(&stored_plan(target, plan)?).await
    }

    /// Sends `plan`'s update unless the service moved; `None` when sent.
    async fn apply_swarm(&self, plan: &SwarmPlan) -> Result<Option<String>, ExecError> {
        let target = &plan.target;
        let docker = connect(target)?;
        let service = docker
            .service(&target.service)
            .await
            .map_err(|e| exec_error(target, e))?;
        if let Some(reason) = Self::moved(plan, &service) {
            return Ok(Some(reason));
        }
        // The version read now: it may differ from the plan's only by
        // Swarm's bookkeeping, as the specs are those approved.
        let version = version_of(&service);
        let sent = match &plan.action {
            Action::Rollback => docker.update(&plan.id, version, &plan.spec, true).await,
            Action::Image { image } => {
                let mut spec = plan.spec.clone();
                spec["TaskTemplate"]["ContainerSpec"]["Image"] = Value::String(image.clone());
                docker.update(&plan.id, version, &spec, false).await
            }
        };
        match sent {
            Ok(warnings) => {
                for w in warnings {
                    tracing::warn!(service = %target.service, warning = %w, "Docker warned about the update");
                }
                Ok(None)
            }
            Err(e) if out_of_sequence(&e) => Ok(Some(format!(
                "the service was changed while the rollback was being sent ({}); nothing was changed by rollbot",
                e.message()
            ))),
            Err(e) => Err(exec_error(target, e)),
        }
    }

    /// Polls the service until `plan`'s update has converged, sending a
    /// line for every change seen.
    async fn follow_swarm(
        &self,
        plan: &SwarmPlan,
        progress: &mpsc::Sender<String>,
    ) -> Result<String, ExecError> {
        let target = &plan.target;
        let rollback = plan.action == Action::Rollback;
        let (done, paused) = if rollback {
            ("rollback_completed", "rollback_paused")
        } else {
            ("completed", "paused")
        };
        let mut watch = Watch::default();
        let mut silent_since: Option<tokio::time::Instant> = None;
        let run = async {
            let mut every = tokio::time::interval(POLL);
            loop {
                every.tick().await;
                // The update is sent: a daemon that does not answer for a
                // while (restarting, a network blip) is not a verdict.
                let (service, tasks) = match look(plan).await {
                    Ok(seen) => {
                        silent_since = None;
                        seen
                    }
                    Err(e) if e.kind == ExecErrorKind::Unreachable => {
                        let since = *silent_since.get_or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() < self.lost_track {
                            continue;
                        }
                        return Err(ExecError::new(
                            ExecErrorKind::Unreachable,
                            format!(
                                "lost track of the update: Docker gave no answer for {} s ({}); the update was sent, so check it with `docker service ps {}`",
                                self.lost_track.as_secs(),
                                e.message,
                                target.service
                            ),
                        ));
                    }
                    Err(e) => return Err(e),
                };
                let (state, message) = update_state(&service);
                let desired = desired_tasks(&service, &tasks);
                for line in watch.lines(&service, &tasks, &plan.restore_image, rollback, desired) {
                    let _ = progress.send(line).await;
                }
                if state == paused {
                    return Err(ExecError::new(
                        ExecErrorKind::RolloutFailed,
                        format!(
                            "{}: {state}: {message}; look at the failed tasks with `docker service ps {} --no-trunc`, fix the cause, then run the update again",
                            if rollback { "rollback" } else { "update" },
                            target.service
                        ),
                    ));
                }
                // An image update that failed with `--update-failure-action rollback`.
                if !rollback && state.starts_with("rollback_") {
                    return Err(ExecError::new(
                        ExecErrorKind::RolloutFailed,
                        format!(
                            "the update to {} failed and Docker rolled it back: {message}; see `docker service ps {} --no-trunc`",
                            plan.restore_image, target.service
                        ),
                    ));
                }
                if !Self::applied(plan, &service) {
                    return Err(ExecError::new(
                        ExecErrorKind::RolloutFailed,
                        format!(
                            "service {} was changed by someone else while rolling back (it runs {} now); check it with `docker service ps {}`",
                            target.service,
                            image_of(&service["Spec"]),
                            target.service
                        ),
                    ));
                }
                if state == done && watch.converged(desired) {
                    let line = "verify: Service converged".to_string();
                    let _ = progress.send(line.clone()).await;
                    return Ok(line);
                }
            }
        };
        tokio::time::timeout(self.follow_timeout, run)
            .await
            .map_err(|_| {
                ExecError::new(
                    ExecErrorKind::RolloutFailed,
                    format!(
                        "the service had not converged after {} s; the update was sent, so check it with `docker service ps {}`",
                        self.follow_timeout.as_secs(),
                        target.service
                    ),
                )
            })?
    }
}

/// The service and its tasks, as the follower looks at them.
async fn look(plan: &SwarmPlan) -> Result<(Value, Vec<bollard::models::Task>), ExecError> {
    let target = &plan.target;
    let docker = connect(target)?;
    let service = docker
        .service(&plan.id)
        .await
        .map_err(|e| exec_error(target, e))?;
    let tasks = docker
        .tasks(&plan.id)
        .await
        .map_err(|e| exec_error(target, e))?;
    Ok((service, tasks))
}

/// How many tasks should run: the replicas of a replicated service, else
/// (global mode) one per node that has a task meant to run.
fn desired_tasks(service: &Value, tasks: &[bollard::models::Task]) -> usize {
    match service
        .pointer("/Spec/Mode/Replicated/Replicas")
        .and_then(Value::as_u64)
    {
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => {
            let mut nodes: Vec<&str> = tasks
                .iter()
                .filter(|t| is_running(t.desired_state))
                .filter_map(|t| t.node_id.as_deref())
                .collect();
            nodes.sort_unstable();
            nodes.dedup();
            nodes.len()
        }
    }
}

fn is_running(state: Option<bollard::models::TaskState>) -> bool {
    state == Some(bollard::models::TaskState::RUNNING)
}

/// What the follower has already reported, so each change is said once.
#[derive(Default)]
struct Watch {
    message: String,
    /// Task id → its last reported state.
    tasks: std::collections::BTreeMap<String, String>,
    running: Option<usize>,
    converged_on: usize,
    /// Whether the tasks were looked at before.
    looked: bool,
}

/// The image a task runs, as `docker service ps` shows it.
fn task_image(t: &bollard::models::Task) -> &str {
    t.spec
        .as_ref()
        .and_then(|s| s.container_spec.as_ref())
        .and_then(|c| c.image.as_deref())
        .unwrap_or_default()
}

impl Watch {
    /// The lines for what changed since the last look, in the docker CLI's
    /// words: the update's message, each task's state change (as `docker
    /// service ps` names tasks and states), and the overall progress.
    fn lines(
        &mut self,
        service: &Value,
        tasks: &[bollard::models::Task],
        image: &str,
        rollback: bool,
        desired: usize,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let (_, message) = update_state(service);
        if !message.is_empty() && message != self.message {
            out.push(format!(
                "{}: {message}",
                if rollback { "rollback" } else { "update" }
            ));
            self.message = message;
        }
        let name = service
            .pointer("/Spec/Name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut sorted: Vec<&bollard::models::Task> = tasks.iter().collect();
        sorted.sort_by_key(|t| (t.slot.unwrap_or(0), t.id.clone()));
        for t in sorted {
            let (Some(id), Some(status)) = (&t.id, &t.status) else {
                continue;
            };
            let state = status.state.map(|s| s.to_string()).unwrap_or_default();
            let before = self.tasks.insert(id.clone(), state.clone());
            if before.as_deref() == Some(state.as_str()) {
                continue;
            }
            // On the first look, tasks that ended before are history, not news.
            if !self.looked && !is_running(t.desired_state) {
                continue;
            }
            let task = match t.slot {
                Some(slot) => format!("{name}.{slot}"),
                None => format!("{name}.{}", t.node_id.as_deref().unwrap_or_default()),
            };
            let desired_state = t.desired_state.map(|s| s.to_string()).unwrap_or_default();
            let mut line = match before {
                Some(before) => format!(
                    "{task} {}: {before} → {state} (desired {desired_state})",
                    task_image(t)
                ),
                None => format!(
                    "{task} {}: {state} (desired {desired_state})",
                    task_image(t)
                ),
            };
            if let Some(error) = status.err.as_deref().filter(|e| !e.is_empty()) {
                line.push_str(" — ");
                line.push_str(error);
            }
            out.push(line);
        }
        self.looked = true;
        let running = tasks
            .iter()
            .filter(|t| is_running(t.desired_state))
            .filter(|t| {
                t.status.as_ref().and_then(|s| s.state) == Some(bollard::models::TaskState::RUNNING)
            })
            .filter(|t| task_image(t) == image)
            .count();
        if self.running != Some(running) {
            out.push(format!(
                "overall progress: {}{running} out of {desired} tasks",
                if rollback {
                    "rolling back update: "
                } else {
                    ""
                }
            ));
            self.running = Some(running);
        }
        self.converged_on = running;
        out
    }

    fn converged(&self, desired: usize) -> bool {
        self.converged_on >= desired
    }
}

#[async_trait]
impl Executor for SwarmRollback {
    async fn plan(&self, target: &Target, request: &PlanRequest) -> Result<Plan, ExecError> {
        let swarm = swarm_target(target)?;
        if let Some(n) = request.to_revision {
            return Err(ExecError::new(
                ExecErrorKind::Unsupported,
                format!(
                    "--to-revision {n} names a Kubernetes revision, and a Swarm service has none: it keeps only its previous spec. Roll back to that with `/rollback SERVICE`, or run a given image with `/rollback SERVICE --image IMAGE`"
                ),
            ));
        }
        let (mut plan, guard) = self.plan_swarm(swarm, request.image.as_deref()).await?;
        plan.guard = serde_json::to_value(&guard)
            .map_err(|e| ExecError::new(ExecErrorKind::Other, e.to_string()))?;
        Ok(plan)
    }

    async fn execute(
        &self,
        target: &Target,
        plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        let guard = stored_plan(target, plan)?;
        if let Some(reason) = self.apply_swarm(&guard).await? {
            return Ok(ExecOutcome::Superseded { reason });
        }
        let detail = self.follow_swarm(&guard, &progress).await?;
        Ok(ExecOutcome::RolledBack { detail })
    }

    async fn standing(&self, target: &Target, plan: &Plan) -> Result<Standing, ExecError> {
        let guard = stored_plan(target, plan)?;
        let docker = connect(&guard.target)?;
        let service = docker
            .service(&guard.target.service)
            .await
            .map_err(|e| exec_error(&guard.target, e))?;
        Ok(if Self::applied(&guard, &service) {
            Standing::Applied
        } else if let Some(reason) = Self::moved(&guard, &service) {
            Standing::Moved { reason }
        } else {
            Standing::NotApplied
        })
    }

    async fn follow(
        &self,
        target: &Target,
        plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        let guard = stored_plan(target, plan)?;
        let detail = self.follow_swarm(&guard, &progress).await?;
        Ok(ExecOutcome::RolledBack { detail })
    }
}

/// The stored plan, checked to be for the service `target` names.
fn stored_plan(target: &Target, plan: &Plan) -> Result<SwarmPlan, ExecError> {
    let swarm = swarm_target(target)?;
    let guard: SwarmPlan = serde_json::from_value(plan.guard.clone()).map_err(|e| {
        ExecError::new(
            ExecErrorKind::Other,
            format!("the stored plan cannot be read ({e}); propose the rollback again"),
        )
    })?;
    if &guard.target != swarm {
        return Err(ExecError::new(
            ExecErrorKind::Other,
            format!(
                "the stored plan is for {}, not {swarm}; propose the rollback again",
                guard.target
            ),
        ));
    }
    Ok(guard)
}

/// Whether `target`'s Docker endpoint answers, for `/readyz` and
/// `rollbot check-config`.
///
/// # Errors
/// What failed, and what to check.
pub async fn ping(target: &SwarmTarget) -> Result<(), DockerError> {
    DockerApi::connect(target)?.ping().await
}

/// The `/readyz` probes of the Docker endpoints `services` target, one per
/// endpoint (services sharing a daemon share its probe).
pub fn probes<'a>(
    targets: impl IntoIterator<Item = &'a Target>,
) -> crate::http::probes::TargetProbes {
    let mut seen = std::collections::BTreeMap::new();
    for target in targets {
        if let Target::Swarm(t) = target {
            seen.entry(t.docker_host.clone())
                .or_insert_with(|| t.clone());
        }
    }
    seen.into_iter().fold(
        crate::http::probes::TargetProbes::default(),
        |probes, (host, t)| {
            let t = std::sync::Arc::new(t);
            probes.with(
                format!("docker {host}"),
                std::sync::Arc::new(move || {
                    let t = t.clone();
                    Box::pin(async move { ping(&t).await.map_err(|e| e.to_string()) })
                }),
            )
        },
    )
}

/// The `targets` (by service name) whose Docker endpoint does not answer,
/// with why (`rollbot check-config` reports them).
pub async fn unreachable<'a>(
    targets: impl IntoIterator<Item = (&'a str, &'a SwarmTarget)>,
) -> Vec<(&'a str, DockerError)> {
    let mut out = Vec::new();
    for (name, t) in targets {
        if let Err(e) = ping(t).await {
            out.push((name, e));
        }
    }
    out
}
