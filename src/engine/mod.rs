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
//!
//! # Layout
//! - this module: the engine's state, its ports, the tick and start-up
//!   recovery, and the chat helpers every part uses;
//! - `proposals`: opening proposals, binding them to chat messages, votes,
//!   withdrawals and cancels;
//! - `rollout`: the approved proposal's rollout, step by step, and its
//!   resumption after a restart;
//! - `alerts`: alert ingestion (dedup, joins, parking, resolution);
//! - `gitops`: `/rollback resume-sync`, resuming a paused GitOps sync;
//! - `prechecks`: a service's runbook pre-checks, run as its plan is made;
//! - `schedule`: scheduled drills, opened from the tick.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};

use crate::config::Service;
use crate::domain::decision::{DataImpact, Scope};
use crate::domain::{
    AlertRef, ApprovalPolicy, Clock, DecisionInput, EventKind, Origin, Proposal, ProposalId,
    Refusal, ServiceName, Severity, State, UserId, VoteOutcome,
};
use crate::ports::{Chat, ExecError, Executor, PrivateNote, ThreadNote, Verifier};
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
    /// The service's executor could not prepare a copy to rehearse on
    /// (or its kind cannot rehearse: [`crate::ports::ExecErrorKind::Unsupported`]).
    #[error("cannot start a drill of {service}: {source}")]
    Drill {
        service: ServiceName,
        #[source]
        source: ExecError,
    },
    #[error(
        "{service} already has a drill in progress, {existing} ({state}); finish it, or cancel it with `/rollback cancel {existing}` first"
    )]
    DrillOpen {
        service: ServiceName,
        existing: ProposalId,
        state: State,
    },
    #[error("only an authorised approver of {service} can resume its GitOps sync")]
    ResumeNotAllowed { service: ServiceName },
    #[error(
        "{service} pauses no GitOps sync (its policy is not gitops = \"pause\"); nothing was changed"
    )]
    NothingToResume { service: ServiceName },
    #[error("cannot resume the GitOps sync of {service}: {source}")]
    ResumeSync {
        service: ServiceName,
        #[source]
        source: ExecError,
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
    /// An explicit image to roll to, for targets that run one image.
    pub image: Option<String>,
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
    /// The roles each person had in their latest vote (Discord roles, as
    /// `discord-role:ID`); see [`Engine::note_roles`].
    roles: RwLock<BTreeMap<UserId, BTreeSet<String>>>,
    // A std Mutex: only held to fetch a proposal's own async lock.
    locks: Mutex<HashMap<ProposalId, Arc<tokio::sync::Mutex<()>>>>,
    tasks: Tasks,
    // Alerts for one service are handled one at a time (check, act, claim),
    // so concurrent deliveries cannot both open or both attach.
    alert_locks: Mutex<HashMap<ServiceName, Arc<tokio::sync::Mutex<()>>>>,
    /// Proposals that keep no more alerts (they hold
    /// [`MAX_ATTACHED_ALERTS`]; kept alerts are never removed), so an alert
    /// storm only counts without reading the proposal each time.
    full: Mutex<HashSet<ProposalId>>,
    /// Runbook hooks per service (none unless set).
    hooks: RwLock<BTreeMap<ServiceName, crate::ports::Hooks>>,
    /// How long dedup keys are kept, and when the tick last swept them.
    retention: Mutex<Retention>,
    /// The metrics served at `/metrics`; the proposal metrics follow the store.
    metrics: Arc<crate::metrics::Metrics>,
    /// Scheduled drills per service (none unless set).
    schedules: RwLock<BTreeMap<ServiceName, crate::config::DrillSchedule>>,
}

struct Retention {
    keep: std::time::Duration,
    last_sweep: Option<DateTime<Utc>>,
}

/// How often the tick sweeps expired dedup keys (a full scan of them).
const SWEEP_EVERY: chrono::Duration = chrono::Duration::minutes(10);

impl Engine {
    pub fn new(store: Store, services: BTreeMap<ServiceName, Service>, ports: Ports) -> Self {
        // The proposal metrics are rebuilt from the stored timelines on a
        // thread of their own, so a large store does not delay start-up
        // (10,000 proposals took over half a second); they follow every
        // event the store records, the ones meanwhile once it is done.
        let metrics = Arc::new(crate::metrics::Metrics::new());
        metrics.declare_services(services.keys());
        metrics.begin_rebuild();
        store.set_observer(metrics.clone());
        let (m, s) = (metrics.clone(), store.clone());
        let rebuild = move || {
            let started = std::time::Instant::now();
            match m.rebuild(&s) {
                Ok(n) => tracing::debug!(
                    proposals = n,
                    took_ms = started.elapsed().as_millis() as u64,
                    "rebuilt the rollback metrics"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "cannot rebuild the rollback metrics from the store")
                }
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("metrics-rebuild".into())
            .spawn(rebuild)
        {
            tracing::error!(error = %e, "cannot start the thread that rebuilds the rollback metrics");
        }
        Self {
            inner: Arc::new(Inner {
                store,
                services,
                ports,
                bots: RwLock::new(BTreeSet::new()),
                group_approvers: RwLock::new(BTreeMap::new()),
                roles: RwLock::new(BTreeMap::new()),
                locks: Mutex::new(HashMap::new()),
                tasks: Tasks::default(),
                alert_locks: Mutex::new(HashMap::new()),
                full: Mutex::new(HashSet::new()),
                hooks: RwLock::new(BTreeMap::new()),
                retention: Mutex::new(Retention {
                    keep: crate::config::DEFAULT_DEDUP_RETENTION,
                    last_sweep: None,
                }),
                metrics,
                schedules: RwLock::new(BTreeMap::new()),
            }),
        }
    }

    /// Sets the runbook hooks that run before and after `service`'s
    /// rollback (replacing earlier ones).
    pub fn set_hooks(&self, service: ServiceName, hooks: crate::ports::Hooks) {
        self.inner
            .hooks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(service, hooks);
    }

    /// The runbook hooks of `service`.
    pub(super) fn hooks_of(&self, service: &ServiceName) -> crate::ports::Hooks {
        self.inner
            .hooks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(service)
            .cloned()
            .unwrap_or_default()
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
        let keep = crate::config::to_chrono(keep);
        let removed = self.inner.store.sweep_dedup(now - keep)?;
        if removed > 0 {
            tracing::info!(removed, "forgot expired deduplication keys");
        }
        Ok(removed)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The metrics served at `/metrics`.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    pub fn services(&self) -> &BTreeMap<ServiceName, Service> {
        &self.inner.services
    }

    /// Now, by the engine's clock.
    pub fn now(&self) -> DateTime<Utc> {
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

    fn is_bot(&self, user: &UserId) -> bool {
        self.inner
            .bots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(user)
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

    /// Records the roles `user` has now, as the platform told with their
    /// vote (a Discord member object), before the vote is taken: a service
    /// that names one of them (`discord-role:ID`) counts them as an
    /// approver from this vote on. Each vote carries its voter's current
    /// roles, so a role taken away counts no longer at the next vote.
    pub fn note_roles(&self, user: &UserId, roles: BTreeSet<String>) {
        let mut known = self.inner.roles.write().unwrap_or_else(|e| e.into_inner());
        if roles.is_empty() {
            known.remove(user);
        } else {
            known.insert(user.clone(), roles);
        }
    }

    /// Everyone who may approve `service` now: configured approvers,
    /// members of its Slack user groups, and people whose latest vote
    /// showed one of its Discord roles.
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
        let wanted = &self.service(service)?.approver_roles;
        if !wanted.is_empty() {
            let roles = self.inner.roles.read().unwrap_or_else(|e| e.into_inner());
            policy.approvers.extend(
                roles
                    .iter()
                    .filter(|(_, has)| !has.is_disjoint(wanted))
                    .map(|(user, _)| user.clone()),
            );
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

    /// Expires proposals whose voting time is over and opens the drills
    /// whose scheduled time has come. Call periodically.
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
        self.run_drill_schedules().await?;
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
        // rollbot's own reactions (e.g. the ✅/❌ it adds as voting hints)
        // are refused, but telling itself why would be a private message
        // to nobody.
        if self.is_bot(user) {
            return Ok(());
        }
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

mod alerts;
mod gitops;
mod prechecks;
mod proposals;
mod rollout;
mod schedule;

pub use alerts::{AlertOutcome, alert_ref};
pub use schedule::{LATE_AFTER, SCHEDULER, ScheduleOutcome};
