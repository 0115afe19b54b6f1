//! Approver groups kept in Slack: a `[groups]` member `slack-group:S0123ABCD`
//! stands for every member of that Slack user group.
//!
//! Members are read with `usergroups.users.list` (bot scope
//! `usergroups:read`) when the Slack adapter connects — retried while Slack
//! does not answer, while a group Slack refuses (`no_such_subteam`,
//! `missing_scope`) stops rollbot, better than running with an approver set
//! nobody checked — and then every [`REFRESH`]. A refresh that fails for a group keeps the members
//! last read for it and logs the error, so a Slack outage never empties an
//! approver set; membership changes reach the engine within one period.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::chat::Session;
use crate::config::SlackGroupRef;
use crate::domain::{ServiceName, UserId};
use crate::engine::Engine;

/// How often group members are read again.
pub const REFRESH: Duration = Duration::from_secs(600);

/// A user group Slack did not let us read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot read the members of Slack user group {id} ({at}): {reason}; check the id (S…, from the group's page in Slack) and that the bot token has the usergroups:read scope"
)]
pub struct GroupError {
    pub id: String,
    /// Every place it is configured, e.g. `groups.sre[1], groups.leads[0]`.
    pub at: String,
    pub reason: String,
    /// Slack could not be asked (unreachable, 5xx, rate limited), as
    /// opposed to Slack refusing: worth asking again.
    pub retryable: bool,
}

/// The Slack user groups services use, and their members last read.
pub struct UserGroups {
    session: Session,
    wanted: BTreeMap<ServiceName, BTreeSet<SlackGroupRef>>,
    /// Group id → members, as last read successfully. A std Mutex: never
    /// held across an await.
    known: Mutex<BTreeMap<String, BTreeSet<UserId>>>,
}

impl UserGroups {
    /// `wanted` is [`crate::config::Config::slack_user_groups`].
    pub fn new(session: Session, wanted: BTreeMap<ServiceName, BTreeSet<SlackGroupRef>>) -> Self {
        Self {
            session,
            wanted,
            known: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether no service uses a Slack user group.
    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// Reads every group and gives the engine their members.
    ///
    /// # Errors
    /// A group Slack refused, else the first that could not be read; the
    /// engine is then unchanged.
    pub async fn load(&self, engine: &Engine) -> Result<(), GroupError> {
        let mut errors = self.read_all().await;
        errors.sort_by_key(|e| e.retryable);
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        engine.set_group_approvers(self.approvers());
        Ok(())
    }

    /// Reads every group again and gives the engine their members; a group
    /// that cannot be read keeps its last members. Returns what failed.
    pub async fn refresh(&self, engine: &Engine) -> Vec<GroupError> {
        let errors = self.read_all().await;
        for e in &errors {
            tracing::error!(error = %e, "keeping the members last read for this Slack user group");
        }
        engine.set_group_approvers(self.approvers());
        errors
    }

    /// Refreshes every `period` until the task is aborted.
    pub fn spawn_refresh(
        self: Arc<Self>,
        engine: Engine,
        period: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate; `load` has just read everything.
            every.tick().await;
            loop {
                every.tick().await;
                self.refresh(&engine).await;
            }
        })
    }

    /// Reads each group once (a group used by several services too).
    async fn read_all(&self) -> Vec<GroupError> {
        let mut groups: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for r in self.wanted.values().flatten() {
            groups.entry(&r.id).or_default().insert(&r.at);
        }
        let mut errors = Vec::new();
        for (id, places) in groups {
            let at = places.into_iter().collect::<Vec<_>>().join(", ");
            let error = |reason: String, retryable: bool| GroupError {
                id: id.to_string(),
                at: at.clone(),
                reason,
                retryable,
            };
            let members = match self.session.user_group_members(id).await {
                Ok(m) => m,
                Err(e) => {
                    let retryable = !super::refused(&e);
                    errors.push(error(super::error_text(&e), retryable));
                    continue;
                }
            };
            let members: BTreeSet<UserId> = match members
                .iter()
                .map(|m| UserId::new("slack", m))
                .collect::<Result<_, _>>()
            {
                Ok(m) => m,
                Err(e) => {
                    errors.push(error(
                        format!("Slack listed a member that is not a user id: {e}"),
                        false,
                    ));
                    continue;
                }
            };
            if members.is_empty() {
                tracing::warn!(group = id, at = %at, "Slack user group has no members");
            }
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            if known.get(id) != Some(&members) {
                tracing::info!(
                    group = id,
                    members = members.len(),
                    "Slack user group members read"
                );
                known.insert(id.to_string(), members);
            }
        }
        errors
    }

    /// Per service, the members of its groups as last read.
    fn approvers(&self) -> BTreeMap<ServiceName, BTreeSet<UserId>> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        self.wanted
            .iter()
            .map(|(service, refs)| {
                let members = refs
                    .iter()
                    .filter_map(|r| known.get(&r.id))
                    .flatten()
                    .cloned()
                    .collect();
                (service.clone(), members)
            })
            .collect()
    }
}
