//! The steps of a rollout, named (their order and resumption are in
//! [`crate::domain::pipeline`]).

use serde::{Deserialize, Serialize};

/// One step of a rollout, in the order steps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// What runs now, what to roll back to, warnings and pre-checks; done
    /// when the proposal opens, before anyone votes.
    Plan,
    /// Runbook steps before the rollback (backup, maintenance mode, drain).
    BeforeHooks,
    /// The rollback itself, by the service's executor.
    Rollback,
    /// Runbook steps after the rollback (traffic back, maintenance off).
    AfterHooks,
    /// Checks that the service recovered.
    Verify,
    /// The draft incident report, once the incident is resolved.
    Report,
}

impl Step {
    /// Short stable name, used by templates, the API and logs.
    pub fn name(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::BeforeHooks => "before_hooks",
            Step::Rollback => "rollback",
            Step::AfterHooks => "after_hooks",
            Step::Verify => "verify",
            Step::Report => "report",
        }
    }
}

impl Step {
    /// Whether a failure of this step ends the rollout. Before the change
    /// is in place, a failure stops everything (nothing more is changed);
    /// once it is in place, the remaining steps still run — verification
    /// and the report matter most then — and people finish the failed one.
    pub fn failure_stops(self) -> bool {
        matches!(self, Step::Plan | Step::BeforeHooks | Step::Rollback)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
