//! The two-person rule.
//!
//! A proposal runs only after `required` **distinct**, **authorised** people
//! approved it. The proposer of a manual proposal never counts, the bot never
//! counts, a repeated vote counts once, and any authorised reject vetoes.
//! Withdrawing (removing the ✅ reaction) takes an approval back while the
//! proposal is still `Proposed`.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::UserId;
use super::proposal::{Proposal, State, Vote, VoteKind, VoteVia};

/// Who may approve a service's rollbacks and how many must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// Distinct approvals needed (≥ 2 unless `single_approver`).
    pub required: u8,
    /// The service explicitly opted into one approver.
    pub single_approver: bool,
    /// Everyone allowed to vote, with groups already expanded.
    pub approvers: BTreeSet<UserId>,
    /// rollbot's own identities on each platform; never counted.
    pub bots: BTreeSet<UserId>,
}

/// A vote that was not counted, and why. Shown to the voter and recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    #[error("this proposal is already {state}; votes are closed")]
    Closed { state: State },
    #[error("this proposal expired; propose again if a rollback is still needed")]
    Expired,
    #[error("rollbot's own votes never count")]
    Bot,
    #[error("you are not an authorised approver for {service}; ask someone on its approver list")]
    NotAuthorised { service: String },
    #[error("you proposed this rollback; a second person must approve it")]
    SelfApproval,
    /// The plan carries blockers ([`super::proposal::Plan::blockers`]).
    #[error("this rollback cannot be approved: {}", reasons.join("; "))]
    Blocked { reasons: Vec<String> },
}

impl Refusal {
    /// Stable machine code, used to pick the localised message.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Closed { .. } => "closed",
            Refusal::Expired => "expired",
            Refusal::Bot => "bot",
            Refusal::NotAuthorised { .. } => "not_authorised",
            Refusal::SelfApproval => "self_approval",
            Refusal::Blocked { .. } => "blocked",
        }
    }
}

/// What a counted vote did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum VoteOutcome {
    /// Counted; more approvals are needed.
    Counted { approvals: usize, required: u8 },
    /// This approval completed the rule: the proposal is now `Approved`.
    Approved,
    /// The same person approved before; still one vote.
    AlreadyCounted { approvals: usize, required: u8 },
    /// An authorised reject: the proposal is now `Rejected`.
    Rejected,
}

/// What a withdrawal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Withdrawal {
    Withdrawn,
    NothingToWithdraw,
}

impl ApprovalPolicy {
    fn check_voter(&self, p: &Proposal, voter: &UserId, now: DateTime<Utc>) -> Result<(), Refusal> {
        if p.state != State::Proposed {
            return Err(Refusal::Closed { state: p.state });
        }
        // The tick that expires proposals may not have run yet.
        if now >= p.expires_at {
            return Err(Refusal::Expired);
        }
        if self.bots.contains(voter) || voter.platform() == "system" {
            return Err(Refusal::Bot);
        }
        if !self.approvers.contains(voter) {
            return Err(Refusal::NotAuthorised {
                service: p.service.to_string(),
            });
        }
        Ok(())
    }

    /// Applies one vote to `p`, moving it to `Approved` or `Rejected` when
    /// the rule says so.
    ///
    /// # Errors
    /// A [`Refusal`] when the vote must not count; `p` is then unchanged.
    pub fn vote(
        &self,
        p: &mut Proposal,
        voter: &UserId,
        kind: VoteKind,
        via: VoteVia,
        now: DateTime<Utc>,
    ) -> Result<VoteOutcome, Refusal> {
        self.check_voter(p, voter, now)?;
        match kind {
            VoteKind::Reject => {
                p.rejected_by = Some(voter.clone());
                p.transition(State::Rejected, now)
                    .expect("Proposed -> Rejected is an edge");
                Ok(VoteOutcome::Rejected)
            }
            VoteKind::Approve => {
                if p.origin.proposer_is_person() && &p.proposer == voter {
                    return Err(Refusal::SelfApproval);
                }
                // A rejection still closes a blocked proposal; an approval
                // cannot count while anything blocks it.
                if !p.plan.blockers.is_empty() {
                    return Err(Refusal::Blocked {
                        reasons: p.plan.blockers.clone(),
                    });
                }
                if p.approvers().any(|u| u == voter) {
                    return Ok(VoteOutcome::AlreadyCounted {
                        approvals: p.approvals.len(),
                        required: p.required,
                    });
                }
                p.approvals.push(Vote {
                    user: voter.clone(),
                    via,
                    at: now,
                });
                p.updated_at = now;
                if p.approvals.len() >= usize::from(p.required) {
                    p.transition(State::Approved, now)
                        .expect("Proposed -> Approved is an edge");
                    Ok(VoteOutcome::Approved)
                } else {
                    Ok(VoteOutcome::Counted {
                        approvals: p.approvals.len(),
                        required: p.required,
                    })
                }
            }
        }
    }

    /// Takes back `voter`'s approval while the proposal is still open for votes.
    ///
    /// # Errors
    /// [`Refusal::Closed`] once the proposal left `Proposed`: an approval that
    /// already started a rollback cannot be taken back by removing an emoji.
    pub fn withdraw(
        &self,
        p: &mut Proposal,
        voter: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Withdrawal, Refusal> {
        if p.state != State::Proposed {
            return Err(Refusal::Closed { state: p.state });
        }
        let before = p.approvals.len();
        p.approvals.retain(|v| &v.user != voter);
        if p.approvals.len() == before {
            return Ok(Withdrawal::NothingToWithdraw);
        }
        p.updated_at = now;
        Ok(Withdrawal::Withdrawn)
    }
}
