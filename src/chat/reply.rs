//! The neutral answer to a `/rollback` command ([`Reply`]): what is said,
//! not how; each chat adapter lays it out (Slack with
//! `templates/<locale>/slack/reply.json.j2`).

use serde::Serialize;

use crate::chat::commands::CommandError;
use crate::domain::{Proposal, State};

/// One line of `/rollback status|list|history`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub id: String,
    pub service: String,
    pub state: State,
    pub approvals: usize,
    pub required: u8,
    pub created_at: String,
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
        }
    }
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
    /// A failure reported by the engine (already phrased for people).
    Failed {
        text: String,
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
    Proposals {
        title: &'static str,
        service: Option<String>,
        items: Vec<Summary>,
    },
}
