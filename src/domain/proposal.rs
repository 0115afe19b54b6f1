//! The rollback proposal and its state machine.
//!
//! ```text
//!  Proposed ──approve (n == required)──> Approved ──> Executing ──> RolledBack ──> Verified
//!     │ │ │ │                               │             │  │           ├──────> VerificationFailed
//!     │ │ │ │                               │             │  │           └──────> Unverified
//!     │ │ │ └─ target moved ─> Superseded <─┘             │  └─> Failed
//!     │ │ └─ reject ─> Rejected                           └─> Superseded
//!     │ └─ expiry ─> Expired
//!     └─ cancel ─> Cancelled
//! ```
//!
//! Every transition not drawn above is an [`TransitionError`].

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::decision::Recommendation;
use super::ids::{ProposalId, ServiceName, UserId};

/// Where a proposal came from. Alert proposals have no human proposer, so
/// every authorised person may approve them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Alert,
    Command,
    Drill,
}

impl Origin {
    /// Whether the proposer is a person whose own approval must not count.
    pub fn proposer_is_person(self) -> bool {
        matches!(self, Origin::Command | Origin::Drill)
    }
}

/// The states of DESIGN.md's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Proposed,
    Approved,
    Executing,
    RolledBack,
    Verified,
    VerificationFailed,
    /// Rolled back, but no check's source answered: recovery is unknown.
    Unverified,
    Failed,
    Rejected,
    Expired,
    Cancelled,
    Superseded,
}

impl State {
    pub const ALL: [State; 12] = [
        State::Proposed,
        State::Approved,
        State::Executing,
        State::RolledBack,
        State::Verified,
        State::VerificationFailed,
        State::Unverified,
        State::Failed,
        State::Rejected,
        State::Expired,
        State::Cancelled,
        State::Superseded,
    ];

    /// The edges of the state machine, and nothing else.
    pub fn can_become(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (
                Proposed,
                Approved | Rejected | Expired | Cancelled | Superseded
            ) | (Approved, Executing | Superseded)
                | (Executing, RolledBack | Failed | Superseded)
                | (RolledBack, Verified | VerificationFailed | Unverified)
        )
    }

    /// No further transition is possible.
    pub fn is_terminal(self) -> bool {
        !State::ALL.iter().any(|&next| self.can_become(next))
    }

    /// Still being worked on: counts as "the open proposal" of its service.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            State::Proposed | State::Approved | State::Executing | State::RolledBack
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Proposed => "proposed",
            State::Approved => "approved",
            State::Executing => "executing",
            State::RolledBack => "rolled_back",
            State::Verified => "verified",
            State::VerificationFailed => "verification_failed",
            State::Unverified => "unverified",
            State::Failed => "failed",
            State::Rejected => "rejected",
            State::Expired => "expired",
            State::Cancelled => "cancelled",
            State::Superseded => "superseded",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An edge the state machine does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proposal {id} cannot go from {from} to {to}")]
pub struct TransitionError {
    pub id: ProposalId,
    pub from: State,
    pub to: State,
}

/// One container's image in a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerImage {
    pub container: String,
    pub image: String,
}

/// A revision of the workload as the executor saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionInfo {
    pub revision: u64,
    pub images: Vec<ContainerImage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_cause: Option<String>,
}

/// What the approvers are shown and what they approve: a rollback from
/// `current` to `target`. Approval binds to this snapshot; if the workload
/// moved since, the proposal is superseded rather than run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Human description of the workload, e.g. `deployment production/payment-api`.
    pub workload: String,
    pub current: RevisionInfo,
    pub target: RevisionInfo,
    /// Things approvers must know, e.g. migrations between the versions.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Whether database migrations ran between the two revisions.
    #[serde(default)]
    pub migrations: bool,
    /// Why this plan cannot be approved (a blocking pre-check failed, a
    /// policy refuses it): while any is present, approvals are refused
    /// with these reasons and the proposal shows them. Rejections still
    /// count, so people can close it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<String>,
    /// Executor-specific data needed to execute exactly this plan (opaque here).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub guard: serde_json::Value,
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteKind {
    Approve,
    Reject,
}

/// How a vote reached us; recorded for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteVia {
    Reaction,
    Button,
    Command,
    Console,
    Api,
}

/// A counted approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub user: UserId,
    pub via: VoteVia,
    pub at: DateTime<Utc>,
}

/// Where a proposal's message lives in chat, so it can be updated in place
/// and replied to in a thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    pub platform: String,
    pub channel: String,
    pub message: String,
}

/// The alert that opened (or joined) a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRef {
    pub source: String,
    pub name: String,
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    pub starts_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub links: Vec<String>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A rollback proposal: the unit everything else is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: ProposalId,
    pub service: ServiceName,
    pub origin: Origin,
    pub proposer: UserId,
    pub reason: String,
    pub plan: Plan,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub state: State,
    /// Distinct approvals needed; snapshot of the policy when proposed.
    pub required: u8,
    /// The service opted into a single approver; shown on the message.
    #[serde(default)]
    pub single_approver: bool,
    pub approvals: Vec<Vote>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_by: Option<UserId>,
    #[serde(default)]
    pub messages: Vec<MessageRef>,
    #[serde(default)]
    pub alerts: Vec<AlertRef>,
    /// Alerts that joined beyond the ones kept in `alerts` (storms are summarised).
    #[serde(default)]
    pub extra_alerts: u64,
    /// The first alert's `resolved` was seen; people may decide not to roll back.
    #[serde(default)]
    pub alert_resolved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<Recommendation>,
    /// Number of timeline events recorded; the next event's sequence number.
    #[serde(default)]
    pub timeline_len: u64,
    pub updated_at: DateTime<Utc>,
    /// This proposal is a drill: nothing real is touched.
    #[serde(default)]
    pub drill: bool,
    /// The rollback finished but the service has no verification checks,
    /// so `RolledBack` is as far as it goes.
    #[serde(default)]
    pub no_checks: bool,
    /// Message locale (`en`, `zh`, `ja`).
    #[serde(default = "default_locale")]
    pub locale: String,
}

fn default_locale() -> String {
    "en".to_string()
}

impl Proposal {
    /// Moves to `next` if the state machine has that edge.
    ///
    /// # Errors
    /// [`TransitionError`] when the edge does not exist; the proposal is unchanged.
    pub fn transition(&mut self, next: State, at: DateTime<Utc>) -> Result<(), TransitionError> {
        if !self.state.can_become(next) {
            return Err(TransitionError {
                id: self.id.clone(),
                from: self.state,
                to: next,
            });
        }
        self.state = next;
        self.updated_at = at;
        Ok(())
    }

    /// Still being worked on: the service's one open proposal.
    pub fn is_open(&self) -> bool {
        self.state.is_open() && !self.no_checks
    }

    pub fn approvers(&self) -> impl Iterator<Item = &UserId> {
        self.approvals.iter().map(|v| &v.user)
    }

    /// The thread/top message in chat, if posted.
    pub fn primary_message(&self) -> Option<&MessageRef> {
        self.messages.first()
    }
}
