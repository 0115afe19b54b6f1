//! The ports: the small traits through which the engine reaches the outside
//! world. Adapters (Slack, Discord, console; Kubernetes, Swarm, scripts;
//! HTTP/Prometheus checks) implement them; [`memory`] has in-memory doubles
//! for tests and the console.

pub mod memory;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::domain::{
    MessageRef, Plan, Proposal, ProposalId, Refusal, ResumeStep, ServiceName, UserId,
};
use crate::exec::target::Target;

/// A chat delivery failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{platform}: {message}")]
pub struct ChatError {
    pub platform: String,
    pub message: String,
    /// Worth retrying later (rate limit, 5xx, network) rather than a permanent refusal.
    pub retryable: bool,
}

/// Something posted into a proposal's thread: the facts only. Each chat
/// lays it out and words it in the proposal's locale (see
/// [`crate::templates`]), so no variant carries a sentence for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum ThreadNote {
    ExecutionStarted,
    /// The latest kubectl-style progress line (edited in place when possible).
    Progress {
        line: String,
    },
    /// The rollback ran to its end (`ok`), with the executor's last word.
    /// Failures come as [`ThreadNote::ExecutionFailed`]; `ok: false` is
    /// still shown, as a failure without a kind.
    ExecutionFinished {
        ok: bool,
        detail: String,
    },
    /// The rollback failed: shown as what to do for its kind, then the
    /// executor's message quoted as output.
    ExecutionFailed {
        error: ExecError,
    },
    Superseded {
        reason: String,
    },
    /// rollbot restarted mid-way and picked the work up at `step`.
    Resumed {
        step: ResumeStep,
    },
    Verification {
        passed: bool,
        checks: Vec<CheckResult>,
    },
    /// Recovery could not be verified: the checks' sources never answered.
    Unverified {
        checks: Vec<CheckResult>,
        unreachable: Vec<UnreachableSource>,
    },
    /// A runbook step after the rollback failed (`failure` is what it
    /// said): the rollback stays and verification goes on; people finish
    /// the step by hand.
    AfterHookFailed {
        failure: String,
    },
    /// The rollback did not hold during verification: the workload moved
    /// away from what it restored (`reason`; typically a GitOps controller
    /// put it back to what git holds). Verification does not pass.
    Reverted {
        reason: String,
    },
    /// A GitOps owner stays paused after the rollback step (the `pause`
    /// policy): what to revert in git, and the command that resumes it.
    GitopsPaused {
        /// e.g. `Argo CD application argocd/payments`.
        owner: String,
        /// e.g. `deployment production/payment-api`.
        workload: String,
        /// The images rolled back to, e.g. `payment-api:v1.2.0`.
        version: String,
        /// Where git's state comes from (repository, path, revision).
        git: String,
        /// The rollback was applied (else it failed or was superseded,
        /// and there is nothing to revert in git).
        rolled_back: bool,
    },
    /// A drill's rollback is done; its checks were not run, since they
    /// measure production, which a drill does not change.
    DrillChecksSkipped,
    /// A drill's runbook hooks were not run; these would have been.
    HooksWouldRun {
        hooks: Vec<String>,
    },
    /// A drill opened by its schedule (`[services.NAME.drill]`): the people
    /// asked to take part, and whether it runs late, because rollbot was
    /// not running at `slot`, its scheduled time.
    ScheduledDrill {
        schedule: String,
        timezone: String,
        slot: DateTime<Utc>,
        late: bool,
        notify: Vec<UserId>,
    },
    /// The incident is over (the alert cleared, or a manual proposal passed
    /// verification): the resolved notice, with the current value of the
    /// first verification check when there is one.
    Resolved {
        check: Option<CheckResult>,
        /// The customer-facing status update drafted from the timeline in
        /// the service's locale, for people to copy to a status page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status_update: Option<String>,
    },
    /// The draft incident report (Markdown) and an optional chart.
    Report {
        markdown: String,
        #[serde(skip)]
        chart_png: Option<Vec<u8>>,
    },
}

/// What one person alone is told (e.g. why their vote did not count); the
/// facts only, worded by each chat in the locale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum PrivateNote {
    VoteRefused {
        refusal: Refusal,
    },
    /// The voter approved before; the repeat changed nothing.
    AlreadyCounted {
        approvals: usize,
        required: u8,
    },
}

/// The chat platform(s). `channel` strings are `platform:channel`.
#[async_trait]
pub trait Chat: Send + Sync {
    /// Posts the proposal message; returns where it went.
    async fn post_proposal(&self, channel: &str, p: &Proposal) -> Result<MessageRef, ChatError>;
    /// Re-renders the proposal message in place (votes, status line).
    async fn update_proposal(&self, at: &MessageRef, p: &Proposal) -> Result<(), ChatError>;
    /// Posts into the proposal message's thread.
    async fn post_thread(
        &self,
        at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<MessageRef, ChatError>;
    /// Replaces a thread message's content (throttled progress).
    async fn edit_thread(
        &self,
        at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<(), ChatError>;
    /// Tells `user` something only they see, in `channel`, about `p`.
    async fn tell(
        &self,
        p: &Proposal,
        channel: &str,
        user: &UserId,
        note: &PrivateNote,
    ) -> Result<(), ChatError>;
}

/// An executor failure, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ExecError {
    pub kind: ExecErrorKind,
    pub message: String,
}

impl ExecError {
    pub fn new(kind: ExecErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Broad classes of executor failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecErrorKind {
    NotFound,
    NoHistory,
    RevisionNotFound,
    AlreadyCurrent,
    Paused,
    Forbidden,
    Unsupported,
    Unreachable,
    RolloutFailed,
    /// A runbook step before the rollback failed; nothing was rolled back.
    HookFailed,
    /// rollbot restarted mid-rollback and cannot tell whether it was applied.
    Interrupted,
    Other,
}

/// How an execution ended (errors aside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ExecOutcome {
    /// The rollback was applied and the rollout finished.
    RolledBack { detail: String },
    /// The workload moved since the plan was made; nothing was changed.
    Superseded { reason: String },
}

/// Where an interrupted execution stands, read from the workload itself
/// after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "standing", rename_all = "snake_case")]
pub enum Standing {
    /// The plan still holds and was not applied: apply it now.
    NotApplied,
    /// The plan's target is already in place: follow the rollout without
    /// applying anything again.
    Applied,
    /// The workload moved since the plan (neither of the above).
    Moved { reason: String },
    /// This executor cannot tell; a person has to look.
    Unknown,
}

/// What a proposal asks its executor to plan: by default, back to what
/// ran before. Each executor takes the forms its kind knows and refuses
/// the others ([`ExecErrorKind::Unsupported`]) with what to use instead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanRequest {
    /// `--to-revision N`: back to this revision of the workload's history.
    pub to_revision: Option<u64>,
    /// `--image REF`: roll to this image rather than to a recorded
    /// revision (for targets that run one image, such as Swarm services).
    pub image: Option<String>,
    /// The service's policy is `gitops = "refuse"`: an owner (Argo CD,
    /// Flux) that would revert the rollback is one of the plan's blockers.
    pub refuse_gitops: bool,
}

impl PlanRequest {
    /// Back to what ran before the current version.
    pub fn previous() -> Self {
        Self::default()
    }

    /// Back to revision `n`.
    pub fn to_revision(n: u64) -> Self {
        Self {
            to_revision: Some(n),
            ..Self::default()
        }
    }
}

/// Runs rollbacks.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Reads the workload and works out what a rollback would do.
    async fn plan(&self, target: &Target, request: &PlanRequest) -> Result<Plan, ExecError>;
    /// Applies exactly `plan` (or reports it superseded) and follows the
    /// rollout, sending progress lines as they happen.
    async fn execute(
        &self,
        target: &Target,
        plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError>;

    /// After a restart: reads the workload to tell whether `plan` was
    /// applied. Executors that cannot tell answer [`Standing::Unknown`],
    /// and the proposal is left for a person.
    ///
    /// # Errors
    /// The workload could not be read.
    async fn standing(&self, _target: &Target, _plan: &Plan) -> Result<Standing, ExecError> {
        Ok(Standing::Unknown)
    }

    /// Follows a rollout of `plan` that is already applied, to its end,
    /// sending progress lines, and changes nothing.
    ///
    /// # Errors
    /// As for `execute`; by default, this executor cannot follow.
    async fn follow(
        &self,
        _target: &Target,
        _plan: &Plan,
        _progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        Err(ExecError::new(
            ExecErrorKind::Unsupported,
            "this executor cannot follow a rollout it did not start; check the workload (e.g. `kubectl rollout status`)",
        ))
    }

    /// Prepares a rehearsal of `target` for drill proposal `drill`: a copy
    /// that only this executor reaches (the Kubernetes executor starts a
    /// simulator holding the workload's history), kept until
    /// [`Executor::release`]. Returns the target the drill runs against.
    ///
    /// # Errors
    /// The copy cannot be made; by default, this kind cannot rehearse
    /// ([`ExecErrorKind::Unsupported`]).
    async fn rehearse(&self, target: &Target, _drill: &ProposalId) -> Result<Target, ExecError> {
        Err(ExecError::new(
            ExecErrorKind::Unsupported,
            format!(
                "drills are not available for {} targets: their executor cannot make a copy to rehearse on; rehearse with a service that targets Kubernetes",
                target.kind()
            ),
        ))
    }

    /// The target prepared for drill `drill` of the service targeting
    /// `target`, while it is kept. A drill never falls back to `target`.
    ///
    /// # Errors
    /// The copy is gone (e.g. rollbot restarted); nothing was changed.
    fn rehearsal(&self, _target: &Target, _drill: &ProposalId) -> Result<Target, ExecError> {
        Err(ExecError::new(
            ExecErrorKind::Unsupported,
            "this drill's copy is no longer kept; nothing was changed",
        ))
    }

    /// Releases the copies of the drills `over` says are over (idempotent).
    fn release(&self, _over: &dyn Fn(&ProposalId) -> bool) {}

    /// During verification: whether the applied `plan` holds. Resolves
    /// with why as soon as the workload moves away from what the rollback
    /// restored (e.g. a GitOps controller put it back), or with `None` once
    /// it has held as long as this executor needs to be sure. The engine
    /// does not finish verification before this resolves. By default the
    /// rollback is trusted to hold.
    async fn watch_hold(&self, _target: &Target, _plan: &Plan) -> Option<String> {
        None
    }
}

/// A runbook step around the rollback: a database backup, maintenance
/// mode, draining traffic before it; restoring traffic, maintenance off,
/// a CDN purge after it. The pipeline runs a service's hooks in order
/// (see [`crate::domain::pipeline`]).
#[async_trait]
pub trait Hook: Send + Sync {
    /// Short name shown in the thread and on the timeline, e.g. `db-backup`.
    fn name(&self) -> &str;

    /// An after-hook that also runs when the rollout stopped before the
    /// rollback was in place — a before-hook failed, the rollback failed or
    /// was superseded (maintenance off, traffic back).
    fn always(&self) -> bool {
        false
    }

    /// Safe to run again when a restart interrupted it. A hook that is not
    /// is reported as interrupted instead, and people finish it by hand.
    fn idempotent(&self) -> bool {
        true
    }

    /// Runs the hook for the rollback `call` describes, sending progress
    /// lines; returns what it did, for the timeline.
    ///
    /// # Errors
    /// The hook failed: before the rollback, nothing is rolled back; after
    /// it, people are told to finish the step by hand.
    async fn run(
        &self,
        call: &HookCall,
        progress: mpsc::Sender<String>,
    ) -> Result<String, ExecError>;

    /// Undoes what this hook left in place on purpose after the rollback
    /// (a paused GitOps sync), for `/rollback resume-sync`; returns what
    /// was restored. `None`: this hook leaves nothing to resume.
    async fn resume(&self, _service: &ServiceName) -> Option<Result<String, ExecError>> {
        None
    }

    /// What this hook left in place on purpose for the rollback of `plan`
    /// and what people do about it, posted once the rollback step ended
    /// (`rolled_back`: it was applied). `None`: nothing to say.
    fn reminder(
        &self,
        _service: &ServiceName,
        _plan: &Plan,
        _rolled_back: bool,
    ) -> Option<ThreadNote> {
        None
    }
}

/// What a hook runs for: the proposal (service, plan, approvers) and the
/// customer-facing status update drafted from its timeline so far.
#[derive(Debug, Clone)]
pub struct HookCall {
    pub proposal: Proposal,
    pub status_update: String,
}

/// What one pre-check found when the plan was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finding {
    /// Shown on the proposal for the approvers.
    pub warnings: Vec<String>,
    /// Database migrations ran between the two versions.
    pub migrations: bool,
    /// Why the plan cannot be approved, if it cannot.
    pub blocker: Option<String>,
}

/// A read-only check run when the plan is made, before anyone votes (and
/// for real in drills, so it must change nothing).
#[async_trait]
pub trait PreCheck: Send + Sync {
    fn name(&self) -> &str;
    /// Checks `plan` of `service`.
    async fn check(&self, service: &ServiceName, plan: &Plan) -> Finding;
}

/// The runbook of one service: its pre-checks, and its hooks before and
/// after the rollback.
#[derive(Clone, Default)]
pub struct Hooks {
    pub pre_checks: Vec<std::sync::Arc<dyn PreCheck>>,
    pub before: Vec<std::sync::Arc<dyn Hook>>,
    pub after: Vec<std::sync::Arc<dyn Hook>>,
}

/// One verification check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    /// What was observed, e.g. `0.997` or `HTTP 200, version=v1.2.0`.
    pub value: String,
}

/// The end of verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Passed {
        checks: Vec<CheckResult>,
    },
    Failed {
        checks: Vec<CheckResult>,
    },
    /// No failing check ever got an answer from its source during the
    /// whole window: whether the service recovered is unknown. (A check
    /// that got answers and saw bad values makes the verdict `Failed`.)
    Unverified {
        checks: Vec<CheckResult>,
        unreachable: Vec<UnreachableSource>,
    },
    /// The service has no checks configured.
    NotConfigured,
}

/// A check whose source never answered during verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreachableSource {
    /// The check's name.
    pub check: String,
    /// What did not answer, e.g. `Prometheus at http://prom:9090`.
    pub source: String,
    /// The last error, e.g. `connection refused`.
    pub error: String,
}

/// The times the incident report asks the verifier about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentWindow {
    /// When the incident started (first alert start, or the proposal).
    pub start: DateTime<Utc>,
    /// Just before the rollback ran: the "before" column of the report.
    pub before: DateTime<Utc>,
    /// When the incident ended (resolution, or the last event).
    pub end: DateTime<Utc>,
}

/// What a check looked like before the rollback, for the report's table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckEvidence {
    pub name: String,
    /// The pass condition in words, e.g. `>= 99.5` or `HTTP 200, version == v1.2.0`.
    pub condition: String,
    /// The value at [`IncidentWindow::before`], when the check can look back.
    pub before: Option<String>,
}

/// A metric over time, for the report's chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(DateTime<Utc>, f64)>,
    /// The pass threshold, drawn as a horizontal line.
    pub threshold: Option<f64>,
}

/// Everything the verifier can add to the incident report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub checks: Vec<CheckEvidence>,
    pub series: Option<Series>,
    /// Why something is missing, e.g. Prometheus was unreachable.
    pub notes: Vec<String>,
}

/// Checks that the service recovered after a rollback.
#[async_trait]
pub trait Verifier: Send + Sync {
    /// Evaluates the service's checks until all pass or the window ends,
    /// sending every intermediate result.
    async fn verify(
        &self,
        service: &ServiceName,
        plan: &Plan,
        results: mpsc::Sender<CheckResult>,
    ) -> Verdict;

    /// Looks back over the incident for the report: each check's condition
    /// and value before the rollback, and the charted metric. Verifiers that
    /// cannot look back return nothing, and the report says so.
    async fn evidence(
        &self,
        _service: &ServiceName,
        _plan: &Plan,
        _window: &IncidentWindow,
    ) -> Evidence {
        Evidence::default()
    }
}
