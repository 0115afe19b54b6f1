//! The neutral answer to a `/rollback` command ([`Reply`]): what is said,
//! not how; each chat adapter lays it out (Slack with
//! `templates/<locale>/slack/reply.json.j2`).

use async_trait::async_trait;
use serde::Serialize;

use crate::chat::commands::CommandError;
use crate::domain::{Proposal, ProposalId, ServiceName, State, UserId};
use crate::ports::{ChatError, ExecError};

/// One line of `/rollback status|list|history`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub id: String,
    pub service: String,
    pub state: State,
    pub approvals: usize,
    pub required: u8,
    pub created_at: String,
    /// A drill: answers say so, since a drill's "rolled back" touched no
    /// production workload.
    pub drill: bool,
}

impl Summary {
    pub fn of(p: &Proposal) -> Self {
        Self {
            id: p.id.to_string(),
            service: p.service.to_string(),
            state: p.state,
            approvals: p.approvals.len(),
            required: p.required,
            created_at: p.created_at.to_rfc3339(),
            drill: p.drill,
        }
    }
}

/// A request that cannot be done as asked, with the facts a catalogue
/// needs to word it (and what to do next) in the person's locale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum UserError {
    UnknownService {
        service: String,
        known: String,
    },
    AlreadyOpen {
        service: ServiceName,
        existing: ProposalId,
        state: State,
    },
    /// The executor could not plan the rollback; its message is quoted.
    Plan {
        service: ServiceName,
        error: ExecError,
    },
    NotFound {
        id: ProposalId,
    },
    NotAllowed {
        service: ServiceName,
        id: ProposalId,
    },
    NotCancellable {
        id: ProposalId,
        state: State,
    },
    /// The drill could not start; the executor's message is quoted.
    Drill {
        service: ServiceName,
        error: ExecError,
    },
    DrillOpen {
        service: ServiceName,
        existing: ProposalId,
        state: State,
    },
    /// `/rollback resume-sync` by someone who may not approve the service.
    ResumeNotAllowed {
        service: ServiceName,
    },
    /// `/rollback resume-sync` of a service that pauses nothing.
    NothingToResume {
        service: ServiceName,
    },
    /// The GitOps owner could not be resumed; the message is quoted.
    ResumeSync {
        service: ServiceName,
        error: ExecError,
    },
}

/// An answer to a `/rollback` command, shown only to the person who typed it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Help {
        services: Vec<String>,
    },
    Error {
        error: CommandError,
    },
    /// The request cannot be done as asked (see [`crate::chat::failure`]).
    Refused {
        error: UserError,
    },
    /// rollbot's own failure, logged under `reference` (see
    /// [`crate::chat::failure`]).
    Internal {
        reference: String,
    },
    Accepted {
        service: String,
    },
    /// `/rollback drill SERVICE` was accepted; the copy is being made.
    DrillAccepted {
        service: String,
    },
    Cancelled {
        id: String,
    },
    /// `/rollback resume-sync SERVICE` restored what the pause step saved.
    SyncResumed {
        service: String,
        restored: Vec<String>,
    },
    Proposals {
        title: &'static str,
        service: Option<String>,
        items: Vec<Summary>,
    },
    /// `/rollback stats`: the window's numbers (see [`crate::chat::stats`]).
    Stats {
        stats: crate::chat::stats::Stats,
    },
}

/// A command's answer and the locale to word it in.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub locale: String,
    pub reply: Reply,
}

impl Answer {
    pub fn new(locale: impl Into<String>, reply: Reply) -> Self {
        Self {
            locale: locale.into(),
            reply,
        }
    }
}

/// Sends a command's answer, later, to the person who typed the command
/// (work carried out after the command was acknowledged, e.g. a proposal
/// that could not be opened). Each platform that takes commands
/// implements it; [`crate::chat::router::ChatRouter`] picks the platform.
#[async_trait]
pub trait Answers: Send + Sync {
    /// Tells `user`, alone, `answer` in `channel` (`platform:channel`).
    ///
    /// # Errors
    /// The answer could not be sent or queued.
    async fn answer(&self, channel: &str, user: &UserId, answer: &Answer) -> Result<(), ChatError>;
}
