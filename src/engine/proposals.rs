//! Proposals and votes: opening a proposal (from a command, an alert or a
//! drill) and binding it to its chat message, approvals, withdrawals, cancels.

use super::{
    DrillRequest, Engine, EngineError, ProposeRequest, VoteReply, decision_input, store_only,
};
use crate::domain::{
    EventKind, MessageRef, Origin, Proposal, ProposalId, Refusal, State, UserId, VoteKind,
    VoteOutcome, VoteVia, Withdrawal, recommend,
};
use crate::exec::Target;
use crate::ports::PrivateNote;
use crate::store::{StoreError, UpdateError};

impl Engine {
    /// Opens a proposal: plans the rollback, records it, posts it.
    ///
    /// # Errors
    /// Unknown service, an already open proposal, a plan the executor cannot
    /// make (no history, already current, …), or storage failure.
    pub async fn propose(&self, req: ProposeRequest) -> Result<Proposal, EngineError> {
        if req.origin == Origin::Drill {
            return self
                .drill_claiming(
                    DrillRequest {
                        service: req.service,
                        proposer: req.proposer,
                        reason: req.reason,
                        channel: req.channel,
                    },
                    &[],
                )
                .await;
        }
        self.propose_on(req, None, &[]).await
    }

    /// [`Engine::propose`] for an input with a deduplication key (a chat
    /// command carried out again after a restart): the key is claimed in
    /// the write that stores the proposal; `None` if it was already.
    ///
    /// # Errors
    /// As [`Engine::propose`].
    pub async fn propose_once(
        &self,
        req: ProposeRequest,
        key: &str,
    ) -> Result<Option<Proposal>, EngineError> {
        if let Some(seen) = self.inner.store.seen(key)? {
            tracing::info!(%key, proposal = %seen.value, "command already carried out");
            return Ok(None);
        }
        let claims = [key.to_string()];
        let result = if req.origin == Origin::Drill {
            let drill = DrillRequest {
                service: req.service,
                proposer: req.proposer,
                reason: req.reason,
                channel: req.channel,
            };
            self.drill_claiming(drill, &claims).await
        } else {
            self.propose_on(req, None, &claims).await
        };
        match result {
            Ok(p) => Ok(Some(p)),
            Err(EngineError::Store(StoreError::AlreadyClaimed { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Starts a drill: the service's executor prepares a copy of its target
    /// to rehearse on (for Kubernetes, the workload and its history copied
    /// read-only into a new simulator), then a proposal marked DRILL opens
    /// that runs only there. The two-person rule applies as in a real
    /// incident.
    ///
    /// # Errors
    /// A kind that cannot rehearse, unknown service, a drill already in progress for
    /// the service, a copy that cannot be read or started, or any error of
    /// [`Engine::propose`].
    pub async fn drill(&self, req: DrillRequest) -> Result<Proposal, EngineError> {
        self.drill_claiming(req, &[]).await
    }

    pub(super) async fn drill_claiming(
        &self,
        req: DrillRequest,
        claims: &[String],
    ) -> Result<Proposal, EngineError> {
        let service = self.service(&req.service)?.clone();
        if let Some(open) = self.inner.store.open_drill_for(&req.service)? {
            return Err(EngineError::DrillOpen {
                service: req.service,
                existing: open.id,
                state: open.state,
            });
        }
        let id = ProposalId::from_random(uuid::Uuid::new_v4().as_u128());
        let executor = &self.inner.ports.executor;
        let target = executor
            .rehearse(&service.target, &id)
            .await
            .map_err(|source| EngineError::Drill {
                service: req.service.clone(),
                source,
            })?;
        let req = ProposeRequest {
            service: req.service,
            origin: Origin::Drill,
            proposer: req.proposer,
            reason: req.reason,
            to_revision: None,
            image: None,
            alert: None,
            channel: req.channel,
        };
        let proposed = self
            .propose_on(req, Some((id.clone(), target)), claims)
            .await;
        // A drill that was never stored has nothing to run its copy for.
        if proposed.is_err() && !matches!(self.inner.store.get(&id), Ok(Some(_))) {
            executor.release(&|drill| *drill == id);
        }
        proposed
    }

    /// Plans against the service's target, or against a drill's copy (with
    /// the id the copy was prepared for), then records and posts the
    /// proposal. A drill's copy is prepared before the proposal is posted,
    /// so no vote can find it missing.
    ///
    /// `claims` are deduplication keys of the input that opens it (an
    /// alert's), stored in the same write as the proposal, with the
    /// proposal's id as their value.
    ///
    /// The proposal is stored together with the channel it is for; it is
    /// bound to its chat message as soon as the chat adapter queued the
    /// post (a provisional reference until the platform answers). If rollbot
    /// stops in between, [`Engine::recover`] posts it.
    pub(super) async fn propose_on(
        &self,
        req: ProposeRequest,
        drill: Option<(ProposalId, Target)>,
        claims: &[String],
    ) -> Result<Proposal, EngineError> {
        let service = self.service(&req.service)?.clone();
        if drill.is_none()
            && let Some(open) = self.inner.store.open_for(&req.service)?
        {
            return Err(EngineError::AlreadyOpen {
                service: req.service,
                existing: open.id,
                state: open.state,
            });
        }
        let target = drill.as_ref().map_or(&service.target, |(_, target)| target);
        let mut plan = self
            .inner
            .ports
            .executor
            .plan(
                target,
                &crate::ports::PlanRequest {
                    to_revision: req.to_revision,
                    image: req.image.clone(),
                    refuse_gitops: service.gitops == crate::config::GitOpsPolicy::Refuse,
                },
            )
            .await
            .map_err(|source| EngineError::Plan {
                service: req.service.clone(),
                source,
            })?;
        self.pre_check(&req.service, &mut plan).await;
        let now = self.now();
        let recommendation = recommend(&decision_input(req.alert.as_ref(), plan.migrations, now));
        let expires = crate::config::to_chrono(service.expires_after);
        let proposal = Proposal {
            id: drill.as_ref().map_or_else(
                || ProposalId::from_random(uuid::Uuid::new_v4().as_u128()),
                |(id, _)| id.clone(),
            ),
            service: req.service.clone(),
            origin: req.origin,
            proposer: req.proposer.clone(),
            reason: req.reason.clone(),
            plan,
            created_at: now,
            expires_at: now + expires,
            state: State::Proposed,
            required: service.required,
            single_approver: service.single_approver,
            approvals: vec![],
            rejected_by: None,
            messages: vec![],
            alerts: req.alert.iter().cloned().collect(),
            extra_alerts: 0,
            alert_resolved_at: None,
            recommendation: Some(recommendation),
            timeline_len: 0,
            updated_at: now,
            drill: drill.is_some(),
            no_checks: false,
            locale: service.locale.clone(),
        };
        let mut events = Vec::new();
        if let Some(alert) = &req.alert {
            events.push((
                now,
                EventKind::Detected {
                    alert: alert.clone(),
                },
            ));
        }
        events.push((
            now,
            EventKind::Proposed {
                by: req.proposer.clone(),
                reason: req.reason.clone(),
            },
        ));
        let channel = req.channel.clone().or(service.channel.clone());
        let claims: Vec<(&str, &str)> = claims
            .iter()
            .map(|k| (k.as_str(), proposal.id.as_str()))
            .collect();
        // Held from before the proposal exists until it is bound to its
        // message, so nothing else posts it meanwhile.
        let lock = self.lock_for(&proposal.id);
        let _guard = lock.lock().await;
        self.inner
            .store
            .insert_claiming(&proposal, &events, channel.as_deref(), &claims)
            .map_err(|e| match e {
                StoreError::AlreadyOpen { service, existing } if proposal.drill => {
                    EngineError::DrillOpen {
                        service,
                        existing,
                        state: State::Proposed,
                    }
                }
                StoreError::AlreadyOpen { service, existing } => EngineError::AlreadyOpen {
                    service,
                    existing,
                    state: State::Proposed,
                },
                other => EngineError::Store(other),
            })?;
        self.inner.store.flush().await?;
        tracing::info!(proposal = %proposal.id, service = %proposal.service, drill = proposal.drill, "proposed");

        let Some(channel) = channel else {
            tracing::warn!(proposal = %proposal.id, "no chat channel configured for {}; the proposal is only visible through the API", proposal.service);
            return Ok(proposal);
        };
        self.post_and_bind(proposal, &channel, true).await
    }

    /// Queues the proposal's post and binds the proposal to the message
    /// reference the chat returns. Caller holds the proposal's lock. A
    /// failure is recorded on the timeline the first time (`record`); the
    /// tick's retries only log, so a lasting failure cannot grow it.
    async fn post_and_bind(
        &self,
        p: Proposal,
        channel: &str,
        record: bool,
    ) -> Result<Proposal, EngineError> {
        match self.inner.ports.chat.post_proposal(channel, &p).await {
            Ok(at) => {
                let p = self.inner.store.bind_message(&p.id, &at, self.now())?;
                self.inner.store.flush().await?;
                Ok(p)
            }
            Err(e) if record => {
                // It stays unbound; the next tick tries again.
                self.record_chat_error(&p.id, &e.to_string())?;
                Ok(p)
            }
            Err(e) => {
                tracing::warn!(proposal = %p.id, error = %e, "proposal still not posted; trying again next tick");
                Ok(p)
            }
        }
    }

    /// Posts proposals that were stored but never posted (rollbot stopped
    /// in between, or the chat could not queue the post).
    pub(super) async fn post_unbound(&self) -> Result<(), EngineError> {
        for (id, channel) in self.inner.store.unbound()? {
            let lock = self.lock_for(&id);
            let _guard = lock.lock().await;
            // Bound meanwhile (by `propose_on`, which held the lock)?
            if !self.inner.store.is_unbound(&id)? {
                continue;
            }
            let Some(p) = self.inner.store.get(&id)? else {
                continue;
            };
            tracing::info!(proposal = %id, %channel, "posting a proposal that was stored but not posted");
            self.post_and_bind(p, &channel, false).await?;
        }
        Ok(())
    }

    /// The proposal whose chat message is `at` (for reactions and buttons).
    ///
    /// # Errors
    /// Storage failure.
    pub fn proposal_for_message(&self, at: &MessageRef) -> Result<Option<ProposalId>, StoreError> {
        self.inner.store.message_owner(at)
    }

    /// Applies a vote. Refusals are recorded on the timeline and told to the
    /// voter privately; they are not errors.
    ///
    /// # Errors
    /// Unknown proposal or storage failure.
    pub async fn vote(
        &self,
        id: &ProposalId,
        voter: &UserId,
        kind: VoteKind,
        via: VoteVia,
    ) -> Result<VoteReply, EngineError> {
        let reply = self.vote_once(id, voter, kind, via, None).await?;
        Ok(reply.expect("a vote without a dedup key is never a repeat"))
    }

    /// [`Engine::vote`] for an input that carries a deduplication key (a
    /// chat event id): the key is claimed in the same write that records the
    /// vote (or its refusal), so once the input is acknowledged its effect
    /// is stored, and a redelivery changes nothing (`None`).
    ///
    /// # Errors
    /// As [`Engine::vote`].
    pub async fn vote_once(
        &self,
        id: &ProposalId,
        voter: &UserId,
        kind: VoteKind,
        via: VoteVia,
        claim: Option<&str>,
    ) -> Result<Option<VoteReply>, EngineError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let current = self.get(id)?;
        let policy = self.policy(&current.service)?;
        let now = self.now();
        let claims: Vec<(&str, &str)> = claim.iter().map(|k| (*k, id.as_str())).collect();
        let result =
            self.inner
                .store
                .update_claiming(id, now, &claims, |p| -> Result<_, Refusal> {
                    let before = p.state;
                    let outcome = policy.vote(p, voter, kind, via, now)?;
                    let mut events = Vec::new();
                    if !matches!(outcome, VoteOutcome::AlreadyCounted { .. }) {
                        events.push(EventKind::Voted {
                            user: voter.clone(),
                            vote: kind,
                            via,
                        });
                    }
                    if p.state != before {
                        events.push(EventKind::StateChanged {
                            from: before,
                            to: p.state,
                        });
                    }
                    Ok((outcome, events))
                });
        match result {
            Ok((outcome, p)) => {
                self.inner.store.flush().await?;
                tracing::info!(proposal = %id, voter = %voter, ?outcome, "vote counted");
                if let VoteOutcome::AlreadyCounted {
                    approvals,
                    required,
                } = outcome
                {
                    // Nothing changed; tell the voter why nothing happened.
                    self.tell(
                        &p,
                        voter,
                        PrivateNote::AlreadyCounted {
                            approvals,
                            required,
                        },
                    )
                    .await?;
                } else {
                    self.update_message(&p).await?;
                }
                if outcome == VoteOutcome::Approved {
                    self.start_execution(id).await?;
                }
                Ok(Some(VoteReply::Counted(outcome)))
            }
            Err(UpdateError::Store(StoreError::AlreadyClaimed { key, .. })) => {
                tracing::info!(proposal = %id, %key, "repeated delivery of a vote ignored");
                Ok(None)
            }
            Err(UpdateError::Rejected(refusal)) => {
                tracing::info!(proposal = %id, voter = %voter, %refusal, "vote refused");
                let event = EventKind::VoteRefused {
                    user: voter.clone(),
                    refusal: refusal.clone(),
                };
                let p = match self.inner.store.update_claiming(id, now, &claims, |_| {
                    Ok::<_, std::convert::Infallible>(((), vec![event.clone()]))
                }) {
                    Ok(((), p)) => p,
                    Err(UpdateError::Store(StoreError::AlreadyClaimed { .. })) => return Ok(None),
                    Err(e) => return Err(store_only(e)),
                };
                self.inner.store.flush().await?;
                self.tell(
                    &p,
                    voter,
                    PrivateNote::VoteRefused {
                        refusal: refusal.clone(),
                    },
                )
                .await?;
                Ok(Some(VoteReply::Refused(refusal)))
            }
            Err(UpdateError::Store(e)) => Err(e.into()),
        }
    }

    /// Takes a person's approval back (their ✅ reaction was removed).
    ///
    /// # Errors
    /// Unknown proposal or storage failure.
    pub async fn withdraw(
        &self,
        id: &ProposalId,
        voter: &UserId,
    ) -> Result<Result<Withdrawal, Refusal>, EngineError> {
        let reply = self.withdraw_once(id, voter, None).await?;
        Ok(reply.expect("a withdrawal without a dedup key is never a repeat"))
    }

    /// [`Engine::withdraw`] claiming the input's deduplication key in the
    /// same write (see [`Engine::vote_once`]); `None` for a redelivery.
    ///
    /// # Errors
    /// As [`Engine::withdraw`].
    pub async fn withdraw_once(
        &self,
        id: &ProposalId,
        voter: &UserId,
        claim: Option<&str>,
    ) -> Result<Option<Result<Withdrawal, Refusal>>, EngineError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let current = self.get(id)?;
        let policy = self.policy(&current.service)?;
        let now = self.now();
        let claims: Vec<(&str, &str)> = claim.iter().map(|k| (*k, id.as_str())).collect();
        let result =
            self.inner
                .store
                .update_claiming(id, now, &claims, |p| -> Result<_, Refusal> {
                    let w = policy.withdraw(p, voter, now)?;
                    let events = match w {
                        Withdrawal::Withdrawn => vec![EventKind::VoteWithdrawn {
                            user: voter.clone(),
                            result: w,
                        }],
                        Withdrawal::NothingToWithdraw => vec![],
                    };
                    Ok((w, events))
                });
        match result {
            Ok((w, p)) => {
                self.inner.store.flush().await?;
                if w == Withdrawal::Withdrawn {
                    self.update_message(&p).await?;
                }
                Ok(Some(Ok(w)))
            }
            Err(UpdateError::Store(StoreError::AlreadyClaimed { .. })) => Ok(None),
            Err(UpdateError::Rejected(refusal)) => {
                // Nothing changes, but the delivery is handled: remember it.
                if let Some(key) = claim
                    && let crate::store::Claim::Seen(_) =
                        self.inner.store.claim(key, id.as_str(), now)?
                {
                    return Ok(None);
                }
                self.inner.store.flush().await?;
                let p = self.get(id)?;
                self.tell(
                    &p,
                    voter,
                    PrivateNote::VoteRefused {
                        refusal: refusal.clone(),
                    },
                )
                .await?;
                Ok(Some(Err(refusal)))
            }
            Err(UpdateError::Store(e)) => Err(e.into()),
        }
    }

    /// Cancels a proposal still waiting for votes.
    ///
    /// # Errors
    /// [`EngineError::NotAllowed`] unless `by` proposed it or may approve
    /// it; [`EngineError::NotCancellable`] once votes are closed.
    pub async fn cancel(&self, id: &ProposalId, by: &UserId) -> Result<Proposal, EngineError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let current = self.get(id)?;
        let policy = self.policy(&current.service)?;
        if &current.proposer != by && !policy.approvers.contains(by) {
            return Err(EngineError::NotAllowed {
                id: id.clone(),
                service: current.service,
            });
        }
        let now = self.now();
        let (_, p) = self
            .inner
            .store
            .update(id, now, |p| -> Result<_, EngineError> {
                let from = p.state;
                p.transition(State::Cancelled, now)
                    .map_err(|e| EngineError::NotCancellable {
                        id: e.id,
                        state: e.from,
                    })?;
                Ok((
                    (),
                    vec![
                        EventKind::Cancelled { by: by.clone() },
                        EventKind::StateChanged {
                            from,
                            to: State::Cancelled,
                        },
                    ],
                ))
            })
            .map_err(|e| match e {
                UpdateError::Rejected(e) => e,
                UpdateError::Store(e) => e.into(),
            })?;
        self.inner.store.flush().await?;
        self.update_message(&p).await?;
        Ok(p)
    }
}
