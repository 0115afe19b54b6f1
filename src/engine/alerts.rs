//! Alert ingestion: routed alerts become deduplicated proposals, join the
//! open proposal, wait out their minimum firing duration, or resolve it.

use super::{Engine, EngineError, MAX_ATTACHED_ALERTS, ProposeRequest, store_only};
use crate::domain::{AlertRef, EventKind, Origin, Proposal, ProposalId, ServiceName, UserId};
use crate::store::{Claim, StoreError};
use chrono::{DateTime, Utc};
use std::sync::Arc;

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
            self.post_thread(&p, self.resolved_note(&p)?).await?;
            // The rollout waits at its report step for the alert to clear.
            self.report_step(&p).await?;
        }
        Ok(p)
    }

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
            joins.open = self.inner.store.open_id_for(service)?;
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
        self.attach_alerts_claiming(id, alerts, &[]).await?;
        self.get(id)
    }

    /// [`Engine::attach_alerts`] claiming `claims` (with the proposal's id
    /// as their value) in the same write. Alerts past the kept ones only
    /// bump a counter: a storm into an open proposal stores its dedup keys
    /// and a number, not a new copy of the proposal per delivery, and once
    /// the proposal is known to be full it is not even read.
    async fn attach_alerts_claiming(
        &self,
        id: &ProposalId,
        alerts: Vec<AlertRef>,
        claims: &[&str],
    ) -> Result<(), EngineError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let now = self.now();
        let claims: Vec<(&str, &str)> = claims.iter().map(|k| (*k, id.as_str())).collect();
        if self.keeps_no_more_alerts(id)? {
            self.inner
                .store
                .count_alerts(id, alerts.len() as u64, now, &claims)?;
            return Ok(());
        }
        self.inner
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
        Ok(())
    }

    /// Whether `id` already holds [`MAX_ATTACHED_ALERTS`]; remembered once
    /// true, as kept alerts are never removed.
    fn keeps_no_more_alerts(&self, id: &ProposalId) -> Result<bool, EngineError> {
        let full = || self.inner.full.lock().unwrap_or_else(|e| e.into_inner());
        if full().contains(id) {
            return Ok(true);
        }
        let is_full = self.get(id)?.alerts.len() >= MAX_ATTACHED_ALERTS;
        if is_full {
            full().insert(id.clone());
        }
        Ok(is_full)
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
            image: None,
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
