//! The engine: the one place that decides.
//!
//! Inputs (proposals from alerts or commands, votes, withdrawals, cancels,
//! ticks) come in; the engine applies the domain rules, **persists first**,
//! then calls the ports (chat, executor, verifier). Inputs for one proposal
//! are processed one at a time under that proposal's lock, so a vote and an
//! expiry tick can never interleave. Exactly one execution per proposal is
//! guaranteed by the store's atomic `Approved -> Executing` transition, not
//! by the lock alone, so it also holds across processes sharing a store and
//! across restarts.
//!
//! After the rollback: progress lines are throttled into one edited thread
//! message (see `ProgressStream`); a manual proposal whose verification
//! passes gets the resolved notice (alert proposals get it when their alert
//! clears); and once verification is over and the incident resolved, the
//! draft incident report is posted to the thread (see [`crate::report`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::config::{DrillTarget, Service, Target};
use crate::domain::decision::{DataImpact, Scope};
use crate::domain::{
    AlertRef, ApprovalPolicy, Clock, DecisionInput, EventKind, MessageRef, Origin, Proposal,
    ProposalId, Refusal, ResumeStep, ServiceName, Severity, State, UserId, VoteKind, VoteOutcome,
    VoteVia, Withdrawal, recommend,
};
use crate::drill::{DrillError, Drills};
use crate::ports::{
    Chat, CheckResult, ExecError, ExecOutcome, Executor, PrivateNote, Standing, ThreadNote,
    Verdict, Verifier,
};
use crate::store::{Claim, Store, StoreError, UpdateError};
use crate::tasks::Tasks;

/// Most alerts kept on a proposal; later ones are only counted, so an alert
/// storm cannot grow a proposal without bound.
pub const MAX_ATTACHED_ALERTS: usize = 20;

/// Errors a person can act on, and internal ones.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown service {name:?}; configured services: {known}")]
    UnknownService { name: String, known: String },
    #[error(
        "{service} already has an open rollback proposal {existing} ({state}); vote on it, or cancel it with `/rollback cancel {existing}` first"
    )]
    AlreadyOpen {
        service: ServiceName,
        existing: ProposalId,
        state: State,
    },
    #[error("cannot plan a rollback of {service}: {source}")]
    Plan {
        service: ServiceName,
        #[source]
        source: ExecError,
    },
    #[error("proposal {0} does not exist; `/rollback list` shows the current ones")]
    NotFound(ProposalId),
    #[error("only the proposer or an authorised approver of {service} can cancel {id}")]
    NotAllowed {
        id: ProposalId,
        service: ServiceName,
    },
    #[error("{id} is {state}; only a proposal still waiting for votes can be cancelled")]
    NotCancellable { id: ProposalId, state: State },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The incident report could not be drafted (a template bug).
    #[error("cannot draft the incident report: {0}")]
    Report(String),
    /// An alert of a delivery could not be handled (it shares the failure
    /// of the write it was part of); the sender should retry.
    #[error("the alert was not handled: {0}")]
    AlertNotHandled(String),
    #[error(
        "drills are not enabled in this rollbot: it has no Kubernetes cluster to copy from; configure [kubernetes] and restart"
    )]
    DrillsOff,
    #[error("cannot start a drill of {service}: {source}")]
    Drill {
        service: ServiceName,
        #[source]
        source: Box<DrillError>,
    },
    #[error(
        "{service} already has a drill in progress, {existing} ({state}); finish it, or cancel it with `/rollback cancel {existing}` first"
    )]
    DrillOpen {
        service: ServiceName,
        existing: ProposalId,
        state: State,
    },
}

/// A request to rehearse a service's rollback on a copy of its workload.
#[derive(Debug, Clone)]
pub struct DrillRequest {
    pub service: ServiceName,
    pub proposer: UserId,
    pub reason: String,
    /// Where to post; defaults to the service's channel.
    pub channel: Option<String>,
}

/// A request to open a proposal.
#[derive(Debug, Clone)]
pub struct ProposeRequest {
    pub service: ServiceName,
    pub origin: Origin,
    pub proposer: UserId,
    pub reason: String,
    pub to_revision: Option<u64>,
    pub alert: Option<AlertRef>,
    /// Where to post; defaults to the service's channel.
    pub channel: Option<String>,
}

/// What happened to a vote, for the voter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteReply {
    Counted(VoteOutcome),
    Refused(Refusal),
}

/// The ports the engine drives.
#[derive(Clone)]
pub struct Ports {
    pub chat: Arc<dyn Chat>,
    pub executor: Arc<dyn Executor>,
    pub verifier: Arc<dyn Verifier>,
    pub clock: Arc<dyn Clock>,
}

/// Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    services: BTreeMap<ServiceName, Service>,
    ports: Ports,
    bots: RwLock<BTreeSet<UserId>>,
    /// Approvers read from outside the config (Slack user groups), per
    /// service; replaced as a whole on each refresh.
    group_approvers: RwLock<BTreeMap<ServiceName, BTreeSet<UserId>>>,
    // A std Mutex: only held to fetch a proposal's own async lock.
    locks: Mutex<HashMap<ProposalId, Arc<tokio::sync::Mutex<()>>>>,
    tasks: Tasks,
    // Alerts for one service are handled one at a time (check, act, claim),
    // so concurrent deliveries cannot both open or both attach.
    alert_locks: Mutex<HashMap<ServiceName, Arc<tokio::sync::Mutex<()>>>>,
    drills: OnceLock<Arc<Drills>>,
    /// How long dedup keys are kept, and when the tick last swept them.
    retention: Mutex<Retention>,
}

struct Retention {
    keep: std::time::Duration,
    last_sweep: Option<DateTime<Utc>>,
}

/// How often the tick sweeps expired dedup keys (a full scan of them).
const SWEEP_EVERY: chrono::Duration = chrono::Duration::minutes(10);

impl Engine {
    pub fn new(store: Store, services: BTreeMap<ServiceName, Service>, ports: Ports) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                services,
                ports,
                bots: RwLock::new(BTreeSet::new()),
                group_approvers: RwLock::new(BTreeMap::new()),
                locks: Mutex::new(HashMap::new()),
                tasks: Tasks::default(),
                alert_locks: Mutex::new(HashMap::new()),
                drills: OnceLock::new(),
                retention: Mutex::new(Retention {
                    keep: crate::config::DEFAULT_DEDUP_RETENTION,
                    last_sweep: None,
                }),
            }),
        }
    }

    /// Enables `/rollback drill`: drills copy from the cluster `drills`
    /// reads. Without it, drill requests are refused.
    pub fn enable_drills(&self, drills: Arc<Drills>) {
        if self.inner.drills.set(drills).is_err() {
            tracing::warn!("drills were already enabled; keeping the first source");
        }
    }

    /// How long deduplication keys are kept (`store.dedup_retention`).
    pub fn set_dedup_retention(&self, keep: std::time::Duration) {
        self.inner
            .retention
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keep = keep;
    }

    /// Forgets dedup keys older than the retention, at most once per
    /// [`SWEEP_EVERY`]; returns how many were removed.
    ///
    /// # Errors
    /// Storage failure.
    pub fn sweep_dedup_keys(&self) -> Result<usize, EngineError> {
        let now = self.now();
        let keep = {
            let mut r = self
                .inner
                .retention
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if r.last_sweep.is_some_and(|last| now - last < SWEEP_EVERY) {
                return Ok(0);
            }
            r.last_sweep = Some(now);
            r.keep
        };
        let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(7));
        let removed = self.inner.store.sweep_dedup(now - keep)?;
        if removed > 0 {
            tracing::info!(removed, "forgot expired deduplication keys");
        }
        Ok(removed)
    }

    /// The drills in progress, when enabled.
    pub fn drills(&self) -> Option<&Arc<Drills>> {
        self.inner.drills.get()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn services(&self) -> &BTreeMap<ServiceName, Service> {
        &self.inner.services
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.ports.clock.now()
    }

    /// Registers one of rollbot's own chat identities; its votes never count.
    pub fn add_bot_identity(&self, id: UserId) {
        self.inner
            .bots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
    }

    fn service(&self, name: &ServiceName) -> Result<&Service, EngineError> {
        self.inner
            .services
            .get(name)
            .ok_or_else(|| EngineError::UnknownService {
                name: name.to_string(),
                known: self
                    .inner
                    .services
                    .keys()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Looks a service up by the name a person typed.
    ///
    /// # Errors
    /// [`EngineError::UnknownService`] listing the configured ones.
    pub fn service_named(&self, name: &str) -> Result<&Service, EngineError> {
        let unknown = || EngineError::UnknownService {
            name: name.to_string(),
            known: self
                .inner
                .services
                .keys()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        let parsed = ServiceName::parse(name).map_err(|_| unknown())?;
        self.inner.services.get(&parsed).ok_or_else(unknown)
    }

    /// Replaces the approvers that come from outside the config (members
    /// of Slack user groups), per service. They add to each service's
    /// configured approvers from the next vote on, open proposals included;
    /// votes already counted stay counted.
    pub fn set_group_approvers(&self, approvers: BTreeMap<ServiceName, BTreeSet<UserId>>) {
        *self
            .inner
            .group_approvers
            .write()
            .unwrap_or_else(|e| e.into_inner()) = approvers;
    }

    /// Everyone who may approve `service` now: configured approvers and
    /// members of its Slack user groups.
    ///
    /// # Errors
    /// [`EngineError::UnknownService`].
    pub fn approvers(&self, service: &ServiceName) -> Result<BTreeSet<UserId>, EngineError> {
        Ok(self.policy(service)?.approvers)
    }

    fn policy(&self, service: &ServiceName) -> Result<ApprovalPolicy, EngineError> {
        let bots = self.inner.bots.read().unwrap_or_else(|e| e.into_inner());
        let mut policy = self.service(service)?.policy(&bots);
        let groups = self
            .inner
            .group_approvers
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(members) = groups.get(service) {
            policy.approvers.extend(members.iter().cloned());
        }
        Ok(policy)
    }

    fn lock_for(&self, id: &ProposalId) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.clone())
            .or_default()
            .clone()
    }

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

    /// Starts a drill: copies the service's workload and its history from
    /// the cluster (read-only) into a new simulator, then opens a proposal
    /// marked DRILL that runs only there. The two-person rule applies as in
    /// a real incident.
    ///
    /// # Errors
    /// Drills not enabled, unknown service, a drill already in progress for
    /// the service, a copy that cannot be read or started, or any error of
    /// [`Engine::propose`].
    pub async fn drill(&self, req: DrillRequest) -> Result<Proposal, EngineError> {
        self.drill_claiming(req, &[]).await
    }

    async fn drill_claiming(
        &self,
        req: DrillRequest,
        claims: &[String],
    ) -> Result<Proposal, EngineError> {
        let drills = self.drills().ok_or(EngineError::DrillsOff)?.clone();
        let service = self.service(&req.service)?.clone();
        if let Some(open) = self.inner.store.open_drill_for(&req.service)? {
            return Err(EngineError::DrillOpen {
                service: req.service,
                existing: open.id,
                state: open.state,
            });
        }
        let workload = match &service.target {
            Target::Kubernetes(k) => k.clone(),
            Target::Drill(d) => d.workload.clone(),
        };
        let lab = drills
            .open(&workload)
            .await
            .map_err(|source| EngineError::Drill {
                service: req.service.clone(),
                source: Box::new(source),
            })?;
        let target = Target::Drill(DrillTarget {
            url: lab.url(),
            workload,
        });
        let req = ProposeRequest {
            service: req.service,
            origin: Origin::Drill,
            proposer: req.proposer,
            reason: req.reason,
            to_revision: None,
            alert: None,
            channel: req.channel,
        };
        self.propose_on(req, Some((target, lab, drills)), claims)
            .await
    }

    /// Plans against the service's target, or against a drill's copy, then
    /// records and posts the proposal. A drill's simulator is registered
    /// before the proposal is posted, so no vote can find it missing.
    ///
    /// `claims` are deduplication keys of the input that opens it (an
    /// alert's), stored in the same write as the proposal, with the
    /// proposal's id as their value.
    ///
    /// The proposal is stored together with the channel it is for; it is
    /// bound to its chat message as soon as the chat adapter queued the
    /// post (a provisional reference until the platform answers). If rollbot
    /// stops in between, [`Engine::recover`] posts it.
    async fn propose_on(
        &self,
        req: ProposeRequest,
        drill: Option<(Target, crate::sim::SimHandle, Arc<Drills>)>,
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
        let target = drill
            .as_ref()
            .map_or(&service.target, |(target, _, _)| target);
        let plan = self
            .inner
            .ports
            .executor
            .plan(target, req.to_revision)
            .await
            .map_err(|source| EngineError::Plan {
                service: req.service.clone(),
                source,
            })?;
        let now = self.now();
        let recommendation = recommend(&decision_input(req.alert.as_ref(), plan.migrations, now));
        let expires = chrono::Duration::from_std(service.expires_after)
            .unwrap_or(chrono::Duration::minutes(30));
        let proposal = Proposal {
            id: ProposalId::from_random(uuid::Uuid::new_v4().as_u128()),
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
        if let Some((_, lab, drills)) = drill {
            drills.keep(proposal.id.clone(), lab);
        }
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
    async fn post_unbound(&self) -> Result<(), EngineError> {
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

    /// Expires proposals whose voting time is over. Call periodically.
    ///
    /// # Errors
    /// Storage failure.
    pub async fn tick(&self) -> Result<Vec<ProposalId>, EngineError> {
        let now = self.now();
        let mut expired = Vec::new();
        // Only open proposals can expire; the open index avoids reading history.
        let due: Vec<_> = self
            .inner
            .store
            .open_proposals()?
            .into_iter()
            .filter(|p| p.state == State::Proposed && p.expires_at <= now)
            .map(|p| p.id)
            .collect();
        for id in due {
            let lock = self.lock_for(&id);
            let _guard = lock.lock().await;
            let result = self.inner.store.update(&id, now, |p| {
                if p.state != State::Proposed || p.expires_at > now {
                    return Err(());
                }
                p.transition(State::Expired, now).map_err(|_| ())?;
                Ok((
                    (),
                    vec![EventKind::StateChanged {
                        from: State::Proposed,
                        to: State::Expired,
                    }],
                ))
            });
            if let Ok(((), p)) = result {
                self.update_message(&p).await?;
                expired.push(id);
            }
        }
        if !expired.is_empty() {
            self.inner.store.flush().await?;
        }
        self.reap_drills();
        self.release_pending_alerts().await?;
        self.post_unbound().await?;
        self.sweep_dedup_keys()?;
        Ok(expired)
    }

    /// Picks up work interrupted by a restart, exactly once: approved
    /// proposals are executed; a rollback that was running is resumed from
    /// what the workload shows (applied: follow it; not applied and the
    /// plan still holds: apply it; moved: superseded); a verification that
    /// was running starts again. Call it once, at start-up.
    ///
    /// # Errors
    /// Storage failure.
    pub async fn recover(&self) -> Result<(), EngineError> {
        self.post_unbound().await?;
        for p in self.inner.store.open_proposals()? {
            match p.state {
                State::Approved => self.start_execution(&p.id).await?,
                State::Executing | State::RolledBack if p.is_open() => self.resume(p).await?,
                _ => {}
            }
        }
        self.inner.store.flush().await?;
        Ok(())
    }

    /// The atomic `Approved -> Executing` step; the winner spawns the rollback.
    async fn start_execution(&self, id: &ProposalId) -> Result<(), EngineError> {
        let now = self.now();
        let result = self.inner.store.update(id, now, |p| {
            if p.state != State::Approved {
                return Err(p.state);
            }
            p.transition(State::Executing, now).map_err(|e| e.from)?;
            Ok((
                (),
                vec![
                    EventKind::StateChanged {
                        from: State::Approved,
                        to: State::Executing,
                    },
                    EventKind::ExecutionStarted,
                ],
            ))
        });
        match result {
            Ok(((), p)) => {
                self.inner.store.flush().await?;
                tracing::info!(proposal = %id, "execution started");
                self.update_message(&p).await?;
                self.post_thread(&p, ThreadNote::ExecutionStarted).await?;
                let engine = self.clone();
                self.spawn(async move {
                    if let Err(e) = engine.run_execution(p).await {
                        tracing::error!(error = %e, "rollback task failed");
                    }
                });
                Ok(())
            }
            // Someone else won the race, or it is no longer approved.
            Err(UpdateError::Rejected(state)) => {
                tracing::debug!(proposal = %id, %state, "execution not started");
                Ok(())
            }
            Err(UpdateError::Store(e)) => Err(e.into()),
        }
    }

    /// Stops the simulators of drills that are over (cancelled, expired,
    /// rejected, finished).
    fn reap_drills(&self) {
        if let Some(drills) = self.drills() {
            let store = &self.inner.store;
            drills.reap(|id| store.get(id).ok().flatten().is_none_or(|p| !p.is_open()));
        }
    }

    /// What `p` runs against: the service's target, or for a drill only its
    /// own simulator. A drill whose simulator is gone fails; it never falls
    /// back to the service's real target.
    fn execution_target(&self, p: &Proposal, service: &Service) -> Result<Target, ExecError> {
        if !p.drill {
            return Ok(service.target.clone());
        }
        let url = self.drills().and_then(|d| d.url(&p.id)).ok_or_else(|| {
            ExecError::new(
                crate::ports::ExecErrorKind::Unsupported,
                format!(
                    "DRILL: this drill's simulator is no longer running (rollbot restarted?); nothing was changed. Start a new drill with `/rollback drill {}`",
                    p.service
                ),
            )
        })?;
        let workload = match &service.target {
            Target::Kubernetes(k) => k.clone(),
            Target::Drill(d) => d.workload.clone(),
        };
        Ok(Target::Drill(DrillTarget { url, workload }))
    }

    async fn run_execution(&self, p: Proposal) -> Result<(), EngineError> {
        self.drive_execution(p, false).await
    }

    /// The end of a drill's rollback: its checks would measure production,
    /// which the drill did not change, so they are not run; the report is
    /// drafted at once.
    async fn finish_drill(&self, p: Proposal) -> Result<(), EngineError> {
        let text = "DRILL: verification checks were not run; they measure production, which this drill did not change";
        let (_, p) = self
            .inner
            .store
            .update(&p.id, self.now(), |p| {
                p.no_checks = true;
                Ok::<_, std::convert::Infallible>(((), vec![EventKind::Note { text: text.into() }]))
            })
            .map_err(store_only)?;
        self.inner.store.flush().await?;
        self.post_thread(&p, ThreadNote::Text { text: text.into() })
            .await?;
        self.update_message(&p).await?;
        // The copy stays up until the next tick reaps it, so people (and
        // tests) can look at the rolled-back copy meanwhile.
        self.post_report(&p).await?;
        Ok(())
    }

    async fn run_verification(&self, p: Proposal) -> Result<(), EngineError> {
        let (tx, mut rx) = mpsc::channel::<CheckResult>(64);
        let verify = self.inner.ports.verifier.verify(&p.service, &p.plan, tx);
        tokio::pin!(verify);
        let verdict = loop {
            tokio::select! {
                biased;
                Some(check) = rx.recv() => self.record_check(&p.id, check)?,
                verdict = &mut verify => break verdict,
            }
        };
        while let Ok(check) = rx.try_recv() {
            self.record_check(&p.id, check)?;
        }
        let now = self.now();
        let p = match &verdict {
            Verdict::NotConfigured => {
                let (_, p) = self
                    .inner
                    .store
                    .update(&p.id, now, |p| {
                        p.no_checks = true;
                        Ok::<_, std::convert::Infallible>((
                            (),
                            vec![EventKind::Note {
                                text: "no verification checks are configured for this service"
                                    .into(),
                            }],
                        ))
                    })
                    .map_err(store_only)?;
                p
            }
            Verdict::Unverified {
                checks,
                unreachable,
            } => {
                let sources: Vec<String> = unreachable
                    .iter()
                    .map(|u| format!("{} ({}: {})", u.source, u.check, u.error))
                    .collect();
                let text = format!(
                    "could not verify recovery: {} did not answer during the whole verification window",
                    sources.join(", ")
                );
                let p = self.finish(
                    &p.id,
                    now,
                    State::Unverified,
                    vec![EventKind::Note { text }],
                )?;
                self.post_thread(
                    &p,
                    ThreadNote::Unverified {
                        checks: checks.clone(),
                        unreachable: unreachable.clone(),
                    },
                )
                .await?;
                p
            }
            Verdict::Passed { checks } | Verdict::Failed { checks } => {
                let passed = matches!(verdict, Verdict::Passed { .. });
                let to = if passed {
                    State::Verified
                } else {
                    State::VerificationFailed
                };
                let p = self.finish(&p.id, now, to, vec![])?;
                self.post_thread(
                    &p,
                    ThreadNote::Verification {
                        passed,
                        checks: checks.clone(),
                    },
                )
                .await?;
                p
            }
        };
        self.inner.store.flush().await?;
        self.update_message(&p).await?;
        // A manual proposal has no alert to clear: passing verification is
        // its resolution. Alert proposals get the notice from `alert_resolved`.
        if p.state == State::Verified && p.origin != Origin::Alert && p.alert_resolved_at.is_none()
        {
            self.post_thread(&p, ThreadNote::Resolved).await?;
        }
        // Exactly one of this and `alert_resolved` sees both "verification
        // over" and "resolved" (each reads the proposal its own atomic update
        // returned), so the report is posted once.
        if crate::report::report_due(&p) {
            self.post_report(&p).await?;
        }
        Ok(())
    }

    /// Drafts the incident report of `id` in `locale`, asking the verifier
    /// for the values before the rollback and the chart's series.
    ///
    /// # Errors
    /// Unknown proposal, storage failure, or a template that fails to render.
    pub async fn report(
        &self,
        id: &ProposalId,
        locale: &str,
    ) -> Result<crate::report::Draft, EngineError> {
        let p = self.get(id)?;
        let timeline = self.inner.store.timeline(id)?;
        let window = crate::report::Milestones::of(&p, &timeline).window(self.now());
        let evidence = if p.drill {
            // Production's metrics say nothing about a rehearsal.
            crate::ports::Evidence::default()
        } else {
            self.inner
                .ports
                .verifier
                .evidence(&p.service, &p.plan, &window)
                .await
        };
        let templates =
            crate::report::templates().map_err(|e| EngineError::Report(e.to_string()))?;
        crate::report::draft(templates, &p, &timeline, &evidence, locale)
            .map_err(|e| EngineError::Report(e.to_string()))
    }

    async fn post_report(&self, p: &Proposal) -> Result<(), EngineError> {
        match self.report(&p.id, &p.locale).await {
            Ok(d) => {
                let note = ThreadNote::Report {
                    markdown: d.markdown,
                    chart_png: d.chart_png,
                };
                self.post_thread(p, note).await
            }
            Err(EngineError::Report(detail)) => {
                tracing::error!(proposal = %p.id, error = %detail, "incident report not drafted");
                self.inner.store.append(
                    &p.id,
                    self.now(),
                    vec![EventKind::Note {
                        text: format!(
                            "the incident report could not be drafted ({detail}); run `rollbot report {}` after fixing the templates",
                            p.id
                        ),
                    }],
                )?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn finish(
        &self,
        id: &ProposalId,
        now: DateTime<Utc>,
        to: State,
        events: Vec<EventKind>,
    ) -> Result<Proposal, EngineError> {
        let (_, p) = self
            .inner
            .store
            .update(id, now, |p| -> Result<_, crate::domain::TransitionError> {
                let from = p.state;
                p.transition(to, now)?;
                let mut ev = events.clone();
                ev.push(EventKind::StateChanged { from, to });
                Ok(((), ev))
            })
            .map_err(|e| match e {
                UpdateError::Rejected(t) => EngineError::Store(StoreError::Corrupt {
                    tree: "proposals",
                    key: id.to_string(),
                    detail: t.to_string(),
                }),
                UpdateError::Store(e) => e.into(),
            })?;
        Ok(p)
    }

    /// Records a progress line, then shows it: the first line becomes a
    /// thread message, later ones edit that message at most once per the
    /// stream's interval; lines in between wait (only the newest is kept).
    async fn progress(
        &self,
        id: &ProposalId,
        line: String,
        stream: &mut ProgressStream,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let p =
            self.inner
                .store
                .append(id, now, vec![EventKind::Progress { line: line.clone() }])?;
        let note = ThreadNote::Progress { line };
        match (&stream.message, stream.last_shown) {
            (None, _) => {
                stream.message = self.post_thread_ref(&p, &note).await?;
                stream.last_shown = Some(now);
                stream.pending = None;
            }
            (Some(_), Some(last)) if now - last < stream.interval => {
                stream.pending = Some(note);
            }
            (Some(at), _) => {
                let at = at.clone();
                self.edit_thread(&p, &at, &note).await?;
                stream.last_shown = Some(now);
                stream.pending = None;
            }
        }
        Ok(())
    }

    /// Delivers the last progress line if throttling held it back.
    async fn flush_progress(
        &self,
        id: &ProposalId,
        stream: &mut ProgressStream,
    ) -> Result<(), EngineError> {
        if let (Some(at), Some(note)) = (stream.message.clone(), stream.pending.take()) {
            let p = self.get(id)?;
            self.edit_thread(&p, &at, &note).await?;
            stream.last_shown = Some(self.now());
        }
        Ok(())
    }

    async fn post_thread_ref(
        &self,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<Option<MessageRef>, EngineError> {
        let Some(at) = p.primary_message() else {
            return Ok(None);
        };
        match self.inner.ports.chat.post_thread(at, p, note).await {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                self.record_chat_error(&p.id, &e.to_string())?;
                Ok(None)
            }
        }
    }

    async fn edit_thread(
        &self,
        p: &Proposal,
        at: &MessageRef,
        note: &ThreadNote,
    ) -> Result<(), EngineError> {
        if let Err(e) = self.inner.ports.chat.edit_thread(at, p, note).await {
            self.record_chat_error(&p.id, &e.to_string())?;
        }
        Ok(())
    }

    fn record_check(&self, id: &ProposalId, c: CheckResult) -> Result<(), EngineError> {
        self.inner.store.append(
            id,
            self.now(),
            vec![EventKind::Check {
                name: c.name,
                passed: c.passed,
                value: c.value,
            }],
        )?;
        Ok(())
    }

    /// Records that an alert joined `id` (an alert storm is summarised, not
    /// kept whole). Returns the updated proposal.
    ///
    /// # Errors
    /// Unknown proposal or storage failure.
    pub async fn attach_alert(
        &self,
        id: &ProposalId,
        alert: AlertRef,
    ) -> Result<Proposal, EngineError> {
        self.attach_alerts(id, vec![alert]).await
    }

    /// Records that a triggering alert cleared.
    ///
    /// # Errors
    /// Unknown proposal or storage failure.
    pub async fn alert_resolved(
        &self,
        id: &ProposalId,
        fingerprint: &str,
        ends_at: DateTime<Utc>,
    ) -> Result<Proposal, EngineError> {
        self.alert_resolved_claiming(id, fingerprint, ends_at, None)
            .await
    }

    /// [`Engine::alert_resolved`] claiming the delivery's key in the same write.
    async fn alert_resolved_claiming(
        &self,
        id: &ProposalId,
        fingerprint: &str,
        ends_at: DateTime<Utc>,
        claim: Option<&str>,
    ) -> Result<Proposal, EngineError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let now = self.now();
        let claims: Vec<(&str, &str)> = claim.iter().map(|k| (*k, id.as_str())).collect();
        let (first, p) = self
            .inner
            .store
            .update_claiming(id, now, &claims, |p| {
                let first = p.alert_resolved_at.is_none();
                if first {
                    p.alert_resolved_at = Some(ends_at);
                }
                Ok::<_, std::convert::Infallible>((
                    first,
                    vec![EventKind::Resolved {
                        fingerprint: fingerprint.to_string(),
                        ends_at,
                    }],
                ))
            })
            .map_err(store_only)?;
        self.inner.store.flush().await?;
        if first {
            self.update_message(&p).await?;
            self.post_thread(&p, ThreadNote::Resolved).await?;
            if crate::report::report_due(&p) {
                self.post_report(&p).await?;
            }
        }
        Ok(p)
    }

    /// Claims a dedup key (alert deliveries, chat event ids).
    ///
    /// # Errors
    /// Storage failure.
    pub fn claim(&self, key: &str, value: &str) -> Result<Claim, EngineError> {
        Ok(self.inner.store.claim(key, value, self.now())?)
    }

    /// # Errors
    /// [`EngineError::NotFound`] or storage failure.
    pub fn get(&self, id: &ProposalId) -> Result<Proposal, EngineError> {
        self.inner
            .store
            .get(id)?
            .ok_or_else(|| EngineError::NotFound(id.clone()))
    }

    async fn update_message(&self, p: &Proposal) -> Result<(), EngineError> {
        if let Some(at) = p.primary_message()
            && let Err(e) = self.inner.ports.chat.update_proposal(at, p).await
        {
            self.record_chat_error(&p.id, &e.to_string())?;
        }
        Ok(())
    }

    async fn post_thread(&self, p: &Proposal, note: ThreadNote) -> Result<(), EngineError> {
        if let Some(at) = p.primary_message()
            && let Err(e) = self.inner.ports.chat.post_thread(at, p, &note).await
        {
            self.record_chat_error(&p.id, &e.to_string())?;
        }
        Ok(())
    }

    async fn tell(
        &self,
        p: &Proposal,
        user: &UserId,
        note: PrivateNote,
    ) -> Result<(), EngineError> {
        if let Some(at) = p.primary_message()
            && let Err(e) = self
                .inner
                .ports
                .chat
                .tell(p, &at.channel, user, &note)
                .await
        {
            self.record_chat_error(&p.id, &e.to_string())?;
        }
        Ok(())
    }

    fn record_chat_error(&self, id: &ProposalId, detail: &str) -> Result<(), EngineError> {
        tracing::warn!(proposal = %id, error = %detail, "chat delivery failed");
        self.inner.store.append(
            id,
            self.now(),
            vec![EventKind::ChatError {
                detail: detail.to_string(),
            }],
        )?;
        Ok(())
    }

    /// Runs `fut` in the background, counting it for [`Engine::wait_idle`]
    /// and remembering if it panicked.
    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.inner.tasks.spawn("rollback", fut);
    }

    /// The tracker of every background task: rollbacks, and the chat
    /// adapters' event handlers.
    pub fn tasks(&self) -> &Tasks {
        &self.inner.tasks
    }

    /// Waits until no background task is running.
    pub async fn wait_idle(&self) {
        self.inner.tasks.wait_idle().await;
    }

    /// Whether any background task panicked (tests fail on this).
    pub fn background_panicked(&self) -> bool {
        self.inner.tasks.panicked()
    }

    /// Runs the rollback of `p` (with `follow_only`, only follows a rollout
    /// already applied), records how it ended, and goes on to verification.
    async fn drive_execution(&self, p: Proposal, follow_only: bool) -> Result<(), EngineError> {
        let service = self.service(&p.service)?.clone();
        let (tx, mut rx) = mpsc::channel::<String>(64);
        let mut stream = ProgressStream::new(service.progress_interval);
        let target = self.execution_target(&p, &service);
        let executor = self.inner.ports.executor.clone();
        let plan = p.plan.clone();
        let exec = async move {
            match target {
                Ok(target) if follow_only => executor.follow(&target, &plan, tx).await,
                Ok(target) => executor.execute(&target, &plan, tx).await,
                Err(e) => Err(e),
            }
        };
        tokio::pin!(exec);
        let outcome = loop {
            tokio::select! {
                biased;
                Some(line) = rx.recv() => self.progress(&p.id, line, &mut stream).await?,
                outcome = &mut exec => break outcome,
            }
        };
        while let Ok(line) = rx.try_recv() {
            self.progress(&p.id, line, &mut stream).await?;
        }
        self.flush_progress(&p.id, &mut stream).await?;
        self.conclude_execution(&p, outcome).await
    }

    /// Records the end of an execution, tells the thread, and continues:
    /// verification after a rollback, the drill's end for a drill.
    async fn conclude_execution(
        &self,
        p: &Proposal,
        outcome: Result<ExecOutcome, ExecError>,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let (to, events, note) = match outcome {
            Ok(ExecOutcome::RolledBack { detail }) => (
                State::RolledBack,
                vec![EventKind::ExecutionFinished {
                    ok: true,
                    detail: detail.clone(),
                }],
                ThreadNote::ExecutionFinished { ok: true, detail },
            ),
            Ok(ExecOutcome::Superseded { reason }) => (
                State::Superseded,
                vec![EventKind::Superseded {
                    reason: reason.clone(),
                }],
                ThreadNote::Superseded { reason },
            ),
            Err(e) => (
                State::Failed,
                vec![EventKind::ExecutionFinished {
                    ok: false,
                    detail: e.message.clone(),
                }],
                ThreadNote::ExecutionFinished {
                    ok: false,
                    detail: e.message,
                },
            ),
        };
        let p = self.finish(&p.id, now, to, events)?;
        self.post_thread(&p, note).await?;
        self.update_message(&p).await?;
        if to == State::RolledBack && p.drill {
            self.finish_drill(p).await?;
        } else if to == State::RolledBack {
            self.run_verification(p).await?;
        } else {
            self.reap_drills();
        }
        Ok(())
    }

    /// Resumes `p`, found `Executing` or `RolledBack` at start-up. The
    /// restart is recorded with a compare-and-set on the timeline length,
    /// so two recoveries racing over one store resume it once.
    async fn resume(&self, p: Proposal) -> Result<(), EngineError> {
        let lock = self.lock_for(&p.id);
        let _guard = lock.lock().await;
        let (seen, state) = (p.timeline_len, p.state);
        let result = self.inner.store.update(&p.id, self.now(), |q| {
            if q.timeline_len != seen || q.state != state {
                return Err(());
            }
            Ok(((), vec![EventKind::Restarted { state }]))
        });
        let p = match result {
            Ok(((), p)) => p,
            Err(UpdateError::Rejected(())) => return Ok(()),
            Err(UpdateError::Store(e)) => return Err(e.into()),
        };
        self.inner.store.flush().await?;
        tracing::info!(proposal = %p.id, %state, "resuming after a restart");
        let engine = self.clone();
        self.spawn(async move {
            let resumed = if p.state == State::Executing {
                engine.resume_execution(p).await
            } else {
                engine.resume_verification(p).await
            };
            if let Err(e) = resumed {
                tracing::error!(error = %e, "resuming after a restart failed");
            }
        });
        Ok(())
    }

    /// An interrupted rollback: the workload says whether the patch went
    /// out, so it is sent at most once in all.
    async fn resume_execution(&self, p: Proposal) -> Result<(), EngineError> {
        let service = self.service(&p.service)?.clone();
        let target = match self.execution_target(&p, &service) {
            Ok(t) => t,
            // A drill whose simulator went with the old process.
            Err(e) => return self.conclude_execution(&p, Err(e)).await,
        };
        let standing = self.inner.ports.executor.standing(&target, &p.plan).await;
        match standing {
            Ok(Standing::NotApplied) => {
                let p = self.note_resumed(&p, ResumeStep::Apply).await?;
                self.drive_execution(p, false).await
            }
            Ok(Standing::Applied) => {
                let p = self.note_resumed(&p, ResumeStep::Follow).await?;
                self.drive_execution(p, true).await
            }
            Ok(Standing::Moved { reason }) => {
                self.conclude_execution(&p, Ok(ExecOutcome::Superseded { reason }))
                    .await
            }
            Ok(Standing::Unknown) => {
                let e = ExecError::new(
                    crate::ports::ExecErrorKind::Other,
                    "rollbot restarted while this rollback was in progress and cannot tell whether it was applied; check the workload (e.g. `kubectl rollout status`) and propose again if needed",
                );
                self.conclude_execution(&p, Err(e)).await
            }
            Err(e) => {
                let e = ExecError::new(
                    e.kind,
                    format!(
                        "rollbot restarted while this rollback was in progress and could not read the workload to resume it ({}); check the workload (e.g. `kubectl rollout status`) and propose again if needed",
                        e.message
                    ),
                );
                self.conclude_execution(&p, Err(e)).await
            }
        }
    }

    /// An interrupted verification starts again; a drill (which runs no
    /// checks) is finished.
    async fn resume_verification(&self, p: Proposal) -> Result<(), EngineError> {
        if p.drill {
            return self.finish_drill(p).await;
        }
        let p = self.note_resumed(&p, ResumeStep::Verify).await?;
        self.run_verification(p).await
    }

    /// Records where work resumed and says so in the thread.
    async fn note_resumed(&self, p: &Proposal, step: ResumeStep) -> Result<Proposal, EngineError> {
        let p = self
            .inner
            .store
            .append(&p.id, self.now(), vec![EventKind::Resumed { step }])?;
        self.inner.store.flush().await?;
        self.post_thread(&p, ThreadNote::Resumed { step }).await?;
        Ok(p)
    }
}

/// The progress of one rollout in chat: the thread message being edited,
/// when it was last changed, and a line held back by throttling.
struct ProgressStream {
    interval: chrono::Duration,
    message: Option<MessageRef>,
    last_shown: Option<DateTime<Utc>>,
    pending: Option<ThreadNote>,
}

impl ProgressStream {
    fn new(interval: std::time::Duration) -> Self {
        Self {
            interval: chrono::Duration::from_std(interval)
                .unwrap_or_else(|_| chrono::Duration::seconds(5)),
            message: None,
            last_shown: None,
            pending: None,
        }
    }
}

fn store_only(e: UpdateError<std::convert::Infallible>) -> EngineError {
    match e {
        UpdateError::Store(e) => e.into(),
        UpdateError::Rejected(never) => match never {},
    }
}

/// What the decision rules can learn from an alert: severity and scope
/// labels, how long it has fired, and optional hints in annotations.
fn decision_input(alert: Option<&AlertRef>, migrations: bool, now: DateTime<Utc>) -> DecisionInput {
    let label = |k: &str| alert.and_then(|a| a.labels.get(k)).map(String::as_str);
    DecisionInput {
        severity: label("severity").and_then(Severity::parse),
        scope: label("scope").and_then(Scope::parse),
        lasting_minutes: alert.map(|a| (now - a.starts_at).num_minutes().max(0) as u64),
        data_impact: label("data_impact").and_then(DataImpact::parse),
        time_to_fix_minutes: label("time_to_fix_minutes").and_then(|v| v.parse().ok()),
        migrations,
    }
}

// ---------------------------------------------------------------------------
// Alert ingestion: routed alerts → deduplicated proposals.
// ---------------------------------------------------------------------------

/// What [`Engine::alert`] did with one alert.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AlertOutcome {
    /// No route matched; nothing was stored.
    Unmatched,
    /// This exact delivery (same idempotency key) was already processed.
    Repeat,
    /// It opened a proposal.
    Proposed {
        service: String,
        proposal: ProposalId,
    },
    /// It joined the service's open proposal (kept, or only counted once
    /// [`MAX_ATTACHED_ALERTS`] are kept).
    Attached {
        service: String,
        proposal: ProposalId,
    },
    /// Its route's `for_duration` has not elapsed; the engine's tick
    /// proposes it at `until` if it has not resolved by then.
    Pending {
        service: String,
        until: DateTime<Utc>,
    },
    /// Routed, but no proposal: the route has `auto_propose = false`, or the
    /// rollback cannot be planned (`reason` says why).
    NotProposed { service: String, reason: String },
    /// It resolved an alert of `proposal`; `recorded` is false for alerts
    /// beyond the kept ones, which are not written to the timeline.
    Resolved {
        service: String,
        proposal: ProposalId,
        recorded: bool,
    },
    /// It resolved before its `for_duration` elapsed: nothing is proposed.
    ClearedWhilePending { service: String },
    /// A resolved alert that belongs to no proposal.
    ResolvedUntracked { service: String },
}

/// A routed alert of a delivery: its index, `auto_propose`, `wait_until`.
type Routed = (usize, bool, Option<DateTime<Utc>>);

/// Firing alerts of one delivery waiting to join the open proposal.
#[derive(Default)]
struct Joins {
    open: Option<ProposalId>,
    queued: Vec<QueuedJoin>,
}

struct QueuedJoin {
    index: usize,
    alert: AlertRef,
    fingerprint_key: String,
    claim_key: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PendingAlert {
    service: ServiceName,
    until: DateTime<Utc>,
    auto_propose: bool,
    alert: crate::alerts::AlertEvent,
}

/// The shape rollbot's timeline keeps of an alert.
pub fn alert_ref(event: &crate::alerts::AlertEvent) -> AlertRef {
    let l = &event.links;
    let links = [
        &l.generator_url,
        &l.dashboard_url,
        &l.panel_url,
        &l.runbook_url,
        &l.incident_url,
        &l.silence_url,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    AlertRef {
        source: event.source.as_str().to_string(),
        name: event.alert_name.clone(),
        fingerprint: event.fingerprint.clone(),
        summary: event.summary.clone(),
        starts_at: event.starts_at,
        ends_at: event.ends_at,
        links,
        labels: event.labels.clone(),
    }
}

fn idempotency_claim_key(event: &crate::alerts::AlertEvent) -> String {
    format!("alert:{}", event.idempotency_key)
}

/// Dedup-tree key remembering which proposal an alert instance (fingerprint
/// and `startsAt`, which stay the same until it resolves) belongs to.
fn fingerprint_key(event: &crate::alerts::AlertEvent) -> String {
    format!(
        "alert-fp:{}:{}:{}",
        event.source.as_str(),
        event.fingerprint,
        event
            .starts_at
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    )
}

fn pending_key(service: &ServiceName, fingerprint: &str) -> Vec<u8> {
    format!("{service}\0{fingerprint}").into_bytes()
}

impl Engine {
    /// The engine's current time (from its injected clock), e.g. for
    /// parsers that default a timestamp to "received now".
    pub fn current_time(&self) -> DateTime<Utc> {
        self.now()
    }

    fn alert_lock(&self, service: &ServiceName) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .alert_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(service.clone())
            .or_default()
            .clone()
    }

    /// Handles one alert: routes it (with the engine's clock), then opens a
    /// proposal, attaches it to the service's open one, parks it until its
    /// minimum firing duration, or records that it resolved.
    ///
    /// Idempotent: the alert's [`IdempotencyKey`](crate::alerts::IdempotencyKey)
    /// is claimed in the store only after the alert was fully handled, so a
    /// delivery that failed half-way is processed again when the sender
    /// retries, and one that succeeded is a [`AlertOutcome::Repeat`].
    ///
    /// # Errors
    /// Storage failure, or a plan that failed because the cluster was
    /// unreachable — both worth a retry by the sender (answer 5xx).
    pub async fn alert(
        &self,
        event: &crate::alerts::AlertEvent,
        router: &crate::alerts::Router,
    ) -> Result<AlertOutcome, EngineError> {
        self.alerts(std::slice::from_ref(event), router)
            .await
            .pop()
            .unwrap_or(Ok(AlertOutcome::Unmatched))
    }

    /// [`Engine::alert`] for every alert of one delivery, in order; one
    /// result per alert. Firing alerts that join the same open proposal are
    /// attached in a single write, so an alert storm costs one store
    /// transaction per delivery rather than one per alert.
    pub async fn alerts(
        &self,
        events: &[crate::alerts::AlertEvent],
        router: &crate::alerts::Router,
    ) -> Vec<Result<AlertOutcome, EngineError>> {
        use crate::alerts::RouteDecision;
        let now = self.now();
        let mut results: Vec<Option<Result<AlertOutcome, EngineError>>> =
            events.iter().map(|_| None).collect();
        // Routed alerts grouped by service, in delivery order.
        let mut by_service: Vec<(ServiceName, Vec<Routed>)> = Vec::new();
        for (i, event) in events.iter().enumerate() {
            match router.route(event, now) {
                RouteDecision::Unmatched => results[i] = Some(Ok(AlertOutcome::Unmatched)),
                RouteDecision::Matched {
                    service,
                    auto_propose,
                    wait_until,
                    ..
                } => match self.service_named(&service) {
                    // Config validation guarantees routes name configured services.
                    Err(e) => results[i] = Some(Err(e)),
                    Ok(s) => {
                        let entry = (i, auto_propose, wait_until);
                        match by_service.iter_mut().find(|(name, _)| *name == s.name) {
                            Some((_, list)) => list.push(entry),
                            None => by_service.push((s.name.clone(), vec![entry])),
                        }
                    }
                },
            }
        }
        for (service, list) in by_service {
            let lock = self.alert_lock(&service);
            let _guard = lock.lock().await;
            let mut joins = Joins::default();
            for (i, auto_propose, wait_until) in list {
                let event = &events[i];
                match self.try_queue_join(&service, i, event, &mut joins) {
                    Ok(Some(outcome)) => {
                        results[i] = Some(Ok(outcome));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        results[i] = Some(Err(e));
                        continue;
                    }
                }
                if joins.queued.last().is_some_and(|q| q.index == i) {
                    continue;
                }
                // Anything else is handled in delivery order: settle the
                // queued joins first.
                for (j, result) in self.commit_joins(&service, &mut joins).await {
                    results[j] = Some(result);
                }
                let result = self
                    .alert_one(&service, event, auto_propose, wait_until)
                    .await;
                if let Ok(AlertOutcome::Proposed { proposal, .. }) = &result {
                    joins.open = Some(proposal.clone());
                }
                results[i] = Some(result);
            }
            for (j, result) in self.commit_joins(&service, &mut joins).await {
                results[j] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Ok(AlertOutcome::Unmatched)))
            .collect()
    }

    /// A repeat is answered at once (`Some`); a firing alert for a service
    /// with an open proposal is queued in `joins`; anything else is left to
    /// [`Engine::alert_one`] (`None`, not queued).
    fn try_queue_join(
        &self,
        service: &ServiceName,
        index: usize,
        event: &crate::alerts::AlertEvent,
        joins: &mut Joins,
    ) -> Result<Option<AlertOutcome>, EngineError> {
        let claim_key = idempotency_claim_key(event);
        // The same alert twice in one delivery is a repeat too.
        if joins.queued.iter().any(|q| q.claim_key == claim_key)
            || self.inner.store.seen(&claim_key)?.is_some()
        {
            return Ok(Some(AlertOutcome::Repeat));
        }
        if event.status != crate::alerts::AlertStatus::Firing {
            return Ok(None);
        }
        if joins.open.is_none() {
            joins.open = self.inner.store.open_for(service)?.map(|p| p.id);
        }
        if joins.open.is_some() {
            joins.queued.push(QueuedJoin {
                index,
                alert: alert_ref(event),
                fingerprint_key: fingerprint_key(event),
                claim_key,
            });
        }
        Ok(None)
    }

    /// One routed alert that is neither a repeat nor a join; caller holds
    /// the service's alert lock. Whatever it changes is stored in the same
    /// write that claims the alert's idempotency key, so an acknowledged
    /// delivery has its effect stored and a retry is a [`AlertOutcome::Repeat`].
    async fn alert_one(
        &self,
        service: &ServiceName,
        event: &crate::alerts::AlertEvent,
        auto_propose: bool,
        wait_until: Option<DateTime<Utc>>,
    ) -> Result<AlertOutcome, EngineError> {
        use crate::alerts::AlertStatus;
        let claim = idempotency_claim_key(event);
        let result = match event.status {
            AlertStatus::Firing => match wait_until.filter(|_| auto_propose) {
                Some(until) => {
                    self.park(service, until, event, &claim)
                        .map(|()| AlertOutcome::Pending {
                            service: service.to_string(),
                            until,
                        })
                }
                None => self.fire(service, auto_propose, event, Some(&claim)).await,
            },
            AlertStatus::Resolved => self.resolve(service, event, &claim).await,
        };
        match result {
            Err(EngineError::Store(StoreError::AlreadyClaimed { .. })) => Ok(AlertOutcome::Repeat),
            other => other,
        }
    }

    /// Attaches the queued alerts to the open proposal in one write that
    /// also remembers their fingerprints and claims their keys. One result
    /// per queued alert, by its index in the delivery.
    async fn commit_joins(
        &self,
        service: &ServiceName,
        joins: &mut Joins,
    ) -> Vec<(usize, Result<AlertOutcome, EngineError>)> {
        let queued = std::mem::take(&mut joins.queued);
        let Some(id) = joins.open.clone() else {
            return vec![];
        };
        if queued.is_empty() {
            return vec![];
        }
        let alerts = queued.iter().map(|q| q.alert.clone()).collect();
        let claims: Vec<&str> = queued
            .iter()
            .flat_map(|q| [q.fingerprint_key.as_str(), q.claim_key.as_str()])
            .collect();
        let result = self.attach_alerts_claiming(&id, alerts, &claims).await;
        match result {
            Ok(_) => queued
                .iter()
                .map(|q| {
                    let outcome = AlertOutcome::Attached {
                        service: service.to_string(),
                        proposal: id.clone(),
                    };
                    (q.index, Ok(outcome))
                })
                .collect(),
            Err(e) => {
                let text = e.to_string();
                queued
                    .iter()
                    .map(|q| (q.index, Err(EngineError::AlertNotHandled(text.clone()))))
                    .collect()
            }
        }
    }

    /// [`Engine::attach_alert`] for several alerts in one write: the first
    /// ones up to [`MAX_ATTACHED_ALERTS`] are kept (one timeline event each),
    /// the rest only counted.
    ///
    /// # Errors
    /// Unknown proposal or storage failure.
    pub async fn attach_alerts(
        &self,
        id: &ProposalId,
        alerts: Vec<AlertRef>,
    ) -> Result<Proposal, EngineError> {
        self.attach_alerts_claiming(id, alerts, &[]).await
    }

    /// [`Engine::attach_alerts`] claiming `claims` (with the proposal's id
    /// as their value) in the same write. Alerts past the kept ones only
    /// bump a counter: a storm into an open proposal stores its dedup keys
    /// and a number, not a new copy of the proposal per delivery.
    async fn attach_alerts_claiming(
        &self,
        id: &ProposalId,
        alerts: Vec<AlertRef>,
        claims: &[&str],
    ) -> Result<Proposal, EngineError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let now = self.now();
        let claims: Vec<(&str, &str)> = claims.iter().map(|k| (*k, id.as_str())).collect();
        let current = self.get(id)?;
        if current.alerts.len() >= MAX_ATTACHED_ALERTS {
            self.inner
                .store
                .count_alerts(id, alerts.len() as u64, now, &claims)?;
            return self.get(id);
        }
        let (_, p) = self
            .inner
            .store
            .update_claiming(id, now, &claims, |p| {
                let room = MAX_ATTACHED_ALERTS.saturating_sub(p.alerts.len());
                let kept = alerts.len().min(room);
                p.alerts.extend_from_slice(&alerts[..kept]);
                p.extra_alerts += (alerts.len() - kept) as u64;
                let events = alerts[..kept]
                    .iter()
                    .map(|a| EventKind::AlertAttached { alert: a.clone() })
                    .collect();
                Ok::<_, std::convert::Infallible>(((), events))
            })
            .map_err(store_only)?;
        Ok(p)
    }

    /// A firing alert that may propose now. Caller holds the service's
    /// alert lock. `claim` is the delivery's idempotency key, claimed with
    /// the effect (a parked alert released by the tick has none left).
    async fn fire(
        &self,
        service: &ServiceName,
        auto_propose: bool,
        event: &crate::alerts::AlertEvent,
        claim: Option<&str>,
    ) -> Result<AlertOutcome, EngineError> {
        let alert = alert_ref(event);
        let fingerprint = fingerprint_key(event);
        let claims: Vec<&str> = std::iter::once(fingerprint.as_str()).chain(claim).collect();
        if let Some(open) = self.inner.store.open_for(service)? {
            return self.join(service, &open.id, alert, &claims).await;
        }
        if !auto_propose {
            tracing::info!(%service, alert = %event.alert_name, "alert routed; auto_propose is off for its route");
            if let Some(key) = claim {
                self.claim(key, "")?;
            }
            return Ok(AlertOutcome::NotProposed {
                service: service.to_string(),
                reason: "the route has auto_propose = false".into(),
            });
        }
        let reason = event.summary.clone().unwrap_or_else(|| {
            format!(
                "{} is firing ({})",
                event.alert_name,
                event.source.display_name()
            )
        });
        let request = ProposeRequest {
            service: service.clone(),
            origin: Origin::Alert,
            proposer: UserId::system(event.source.as_str()),
            reason,
            to_revision: None,
            alert: Some(alert.clone()),
            channel: None,
        };
        let owned: Vec<String> = claims.iter().map(ToString::to_string).collect();
        match self.propose_on(request, None, &owned).await {
            Ok(p) => Ok(AlertOutcome::Proposed {
                service: service.to_string(),
                proposal: p.id,
            }),
            // A person's `/rollback` won the race: join it.
            Err(EngineError::AlreadyOpen { existing, .. }) => {
                self.join(service, &existing, alert, &claims).await
            }
            // A plan the executor refused is not remembered: a later re-send
            // of the alert tries again (the workload may have changed).
            Err(EngineError::Plan { source, .. })
                if source.kind != crate::ports::ExecErrorKind::Unreachable =>
            {
                tracing::warn!(%service, alert = %event.alert_name, error = %source, "alert not proposed: no rollback plan");
                Ok(AlertOutcome::NotProposed {
                    service: service.to_string(),
                    reason: source.message,
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn join(
        &self,
        service: &ServiceName,
        id: &ProposalId,
        alert: AlertRef,
        claims: &[&str],
    ) -> Result<AlertOutcome, EngineError> {
        self.attach_alerts_claiming(id, vec![alert], claims).await?;
        Ok(AlertOutcome::Attached {
            service: service.to_string(),
            proposal: id.clone(),
        })
    }

    /// A resolved alert. Caller holds the service's alert lock.
    async fn resolve(
        &self,
        service: &ServiceName,
        event: &crate::alerts::AlertEvent,
        claim: &str,
    ) -> Result<AlertOutcome, EngineError> {
        let key = pending_key(service, &event.fingerprint);
        if self.inner.store.is_parked(&key)? {
            self.inner.store.unpark_claiming(&key, claim, self.now())?;
            tracing::info!(%service, alert = %event.alert_name, "alert resolved before its minimum firing duration; nothing proposed");
            return Ok(AlertOutcome::ClearedWhilePending {
                service: service.to_string(),
            });
        }
        let remembered = self
            .inner
            .store
            .seen(&fingerprint_key(event))?
            .and_then(|e| ProposalId::parse(&e.value).ok());
        let proposal = match remembered {
            Some(id) => self.inner.store.get(&id)?,
            // Not delivered firing to us (e.g. rollbot was down): the open
            // proposal still knows the fingerprint if it kept the alert.
            None => self
                .inner
                .store
                .open_for(service)?
                .filter(|p| p.alerts.iter().any(|a| a.fingerprint == event.fingerprint)),
        };
        let Some(p) = proposal else {
            self.claim_new(claim, "")?;
            return Ok(AlertOutcome::ResolvedUntracked {
                service: service.to_string(),
            });
        };
        // Only alerts kept on the proposal get a timeline entry, so a storm
        // resolving cannot grow the timeline without bound either.
        let recorded = p.alerts.iter().any(|a| a.fingerprint == event.fingerprint);
        if recorded {
            let ends_at = event.ends_at.unwrap_or_else(|| self.now());
            self.alert_resolved_claiming(&p.id, &event.fingerprint, ends_at, Some(claim))
                .await?;
        } else {
            self.claim_new(claim, p.id.as_str())?;
        }
        Ok(AlertOutcome::Resolved {
            service: service.to_string(),
            proposal: p.id,
            recorded,
        })
    }

    /// Claims `key`, reporting a key already taken as
    /// [`StoreError::AlreadyClaimed`] like the claiming writes do.
    fn claim_new(&self, key: &str, value: &str) -> Result<(), EngineError> {
        match self.claim(key, value)? {
            Claim::New => Ok(()),
            Claim::Seen(seen) => Err(EngineError::Store(StoreError::AlreadyClaimed {
                key: key.to_string(),
                seen,
            })),
        }
    }

    /// Remembers a firing alert until its route's `for_duration` elapses,
    /// claiming the delivery's key in the same write.
    fn park(
        &self,
        service: &ServiceName,
        until: DateTime<Utc>,
        event: &crate::alerts::AlertEvent,
        claim: &str,
    ) -> Result<(), EngineError> {
        let entry = PendingAlert {
            service: service.clone(),
            until,
            auto_propose: true,
            alert: event.clone(),
        };
        self.inner.store.park_claiming(
            &pending_key(service, &event.fingerprint),
            &entry,
            claim,
            self.now(),
        )?;
        tracing::info!(%service, alert = %event.alert_name, %until, "alert pending until its minimum firing duration");
        Ok(())
    }

    /// Proposes (or attaches) parked alerts whose minimum firing duration
    /// has elapsed, without waiting for another delivery. Called by
    /// [`Engine::tick`].
    ///
    /// # Errors
    /// Storage failure; the entry stays parked and is retried next tick.
    pub async fn release_pending_alerts(&self) -> Result<Vec<AlertOutcome>, EngineError> {
        let now = self.now();
        let due: Vec<(Vec<u8>, PendingAlert)> = self
            .inner
            .store
            .parked::<PendingAlert>()?
            .into_iter()
            .filter(|(_, entry)| entry.until <= now)
            .collect();
        let mut outcomes = Vec::new();
        for (key, entry) in due {
            let lock = self.alert_lock(&entry.service);
            let _guard = lock.lock().await;
            // A resolved delivery may have removed it meanwhile.
            if !self.inner.store.is_parked(&key)? {
                continue;
            }
            let outcome = match self
                .fire(&entry.service, entry.auto_propose, &entry.alert, None)
                .await
            {
                // Released before a restart, not yet forgotten: done already.
                Err(EngineError::Store(StoreError::AlreadyClaimed { .. })) => AlertOutcome::Repeat,
                other => other?,
            };
            self.inner.store.unpark(&key)?;
            tracing::info!(service = %entry.service, alert = %entry.alert.alert_name, ?outcome, "pending alert released");
            outcomes.push(outcome);
        }
        if !outcomes.is_empty() {
            self.inner.store.flush().await?;
        }
        Ok(outcomes)
    }
}
