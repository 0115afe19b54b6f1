//! The domain: proposals, the state machine, the two-person rule, timeline
//! events, the rollback decision rules and the measures read off timelines.
//!
//! Pure on purpose: no tokio, no HTTP, no sled. Every rule about approvals,
//! states or timing is written here once and unit-tested here.

pub mod approval;
pub mod clock;
pub mod decision;
pub mod ids;
pub mod measures;
pub mod pipeline;
pub mod proposal;
pub mod step;
pub mod timeline;

#[cfg(test)]
mod tests;

pub use approval::{ApprovalPolicy, Refusal, VoteOutcome, Withdrawal};
pub use clock::{Clock, ManualClock, SystemClock};
pub use decision::{Advice, DecisionInput, Recommendation, Severity, recommend};
pub use ids::{IdError, ProposalId, ServiceName, UserId};
pub use pipeline::{Pipeline, Shape};
pub use proposal::{
    AlertRef, ContainerImage, MessageRef, Origin, Plan, Proposal, RevisionInfo, State,
    TransitionError, Vote, VoteKind, VoteVia,
};
pub use step::Step;
pub use timeline::{EventKind, ResumeStep, TimelineEvent};
