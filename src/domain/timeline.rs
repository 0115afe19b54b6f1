//! Timeline events: everything that happens to a proposal, in order.
//!
//! Events are stored before they are acted on; chat messages and the
//! incident report are rendered from them, never from memory.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::approval::{Refusal, Withdrawal};
use super::ids::UserId;
use super::proposal::{AlertRef, State, VoteKind, VoteVia};
use super::step::Step;

/// One recorded event with the time it happened (from the injected clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub seq: u64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// An alert fired that led to this proposal (`at` is when we received
    /// it; `alert.starts_at` when the source says it started).
    Detected {
        alert: AlertRef,
    },
    Proposed {
        by: UserId,
        reason: String,
    },
    /// A further alert joined the open proposal.
    AlertAttached {
        alert: AlertRef,
    },
    /// The triggering alert cleared.
    Resolved {
        fingerprint: String,
        ends_at: DateTime<Utc>,
    },
    Voted {
        user: UserId,
        vote: VoteKind,
        via: VoteVia,
    },
    VoteWithdrawn {
        user: UserId,
        result: Withdrawal,
    },
    VoteRefused {
        user: UserId,
        refusal: Refusal,
    },
    StateChanged {
        from: State,
        to: State,
    },
    Cancelled {
        by: UserId,
    },
    Superseded {
        reason: String,
    },
    ExecutionStarted,
    Progress {
        line: String,
    },
    ExecutionFinished {
        ok: bool,
        detail: String,
    },
    Check {
        name: String,
        passed: bool,
        value: String,
    },
    Note {
        text: String,
    },
    /// A chat delivery failed; the message stays queued.
    ChatError {
        detail: String,
    },
    /// rollbot started again and found this proposal mid-way, in `state`.
    Restarted {
        state: State,
    },
    /// After a restart, the interrupted work was picked up at `step`.
    Resumed {
        step: ResumeStep,
    },
    /// A step of the rollout began (see [`crate::domain::pipeline`]).
    StepStarted {
        step: Step,
    },
    /// A step of the rollout ended; `detail` says how, for the people
    /// reading the timeline.
    StepFinished {
        step: Step,
        ok: bool,
        detail: String,
    },
    /// A runbook hook of `step` began; with no [`EventKind::HookFinished`]
    /// after it, a restart interrupted it.
    HookStarted {
        step: Step,
        name: String,
    },
    /// A runbook hook of `step` ended: how (`detail`: exit status and the
    /// output's tail, secrets masked) and how long it took.
    HookFinished {
        step: Step,
        name: String,
        ok: bool,
        detail: String,
        millis: u64,
    },
}

/// Where interrupted work is picked up after a restart, decided from what
/// the workload shows (never from memory: the process that knew is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeStep {
    /// The rollback had not been applied and the plan still holds: apply it.
    Apply,
    /// The rollback is already applied: follow the rollout, patch nothing.
    Follow,
    /// The rollout had finished: verify recovery again from the start.
    Verify,
    /// The runbook steps before the rollback were running: run the ones
    /// that did not finish (one a restart interrupted only if it is
    /// idempotent; otherwise it is reported as interrupted).
    BeforeHooks,
    /// The runbook steps after the rollback were running: run them again.
    AfterHooks,
    /// The incident report was being drafted: draft it again.
    Report,
}

impl ResumeStep {
    /// Short stable name, used by templates.
    pub fn name(self) -> &'static str {
        match self {
            ResumeStep::Apply => "apply",
            ResumeStep::Follow => "follow",
            ResumeStep::Verify => "verify",
            ResumeStep::BeforeHooks => "before_hooks",
            ResumeStep::AfterHooks => "after_hooks",
            ResumeStep::Report => "report",
        }
    }
}

impl EventKind {
    /// Short stable name, used by templates and the API.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Detected { .. } => "detected",
            EventKind::Proposed { .. } => "proposed",
            EventKind::AlertAttached { .. } => "alert_attached",
            EventKind::Resolved { .. } => "resolved",
            EventKind::Voted { .. } => "voted",
            EventKind::VoteWithdrawn { .. } => "vote_withdrawn",
            EventKind::VoteRefused { .. } => "vote_refused",
            EventKind::StateChanged { .. } => "state_changed",
            EventKind::Cancelled { .. } => "cancelled",
            EventKind::Superseded { .. } => "superseded",
            EventKind::ExecutionStarted => "execution_started",
            EventKind::Progress { .. } => "progress",
            EventKind::ExecutionFinished { .. } => "execution_finished",
            EventKind::Check { .. } => "check",
            EventKind::Note { .. } => "note",
            EventKind::ChatError { .. } => "chat_error",
            EventKind::Restarted { .. } => "restarted",
            EventKind::Resumed { .. } => "resumed",
            EventKind::StepStarted { .. } => "step_started",
            EventKind::StepFinished { .. } => "step_finished",
            EventKind::HookStarted { .. } => "hook_started",
            EventKind::HookFinished { .. } => "hook_finished",
        }
    }
}
