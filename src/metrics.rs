//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! One [`Metrics`] value per running application (not a process-wide global
//! recorder) so every test that starts its own rollbot reads only its own
//! counters. Built on `prometheus-client`: explicit registry, no HTTP
//! listener of its own — the axum handler renders [`Metrics::render`].
//!
//! | metric | labels | counts |
//! |---|---|---|
//! | `rollbot_webhook_requests_total` | `source`, `outcome` | webhook requests by how they were answered |
//! | `rollbot_alerts_received_total` | `source` | alerts in accepted deliveries |
//! | `rollbot_alerts_deduplicated_total` | `source`, `reason` | repeats of a delivery already processed (`repeat`) and alerts that joined an open proposal instead of opening one (`attached`) |
//! | `rollbot_alerts_routed_total` | `source`, `service` | alerts a route sent to a service |
//! | `rollbot_alerts_unmatched_total` | `source` | alerts no route matched |
//! | `rollbot_alerts_truncated_total` | `source` | alerts the sender dropped (`truncatedAlerts`) |
//! | `rollbot_proposals_opened_total` | `service`, `origin` | proposals opened (`alert`, `command`, `drill`) |
//! | `rollbot_proposal_outcomes_total` | `service`, `outcome`, `drill` | proposals that reached an outcome state (`rolled_back` counts every rollback carried out, before its verification outcome) |
//! | `rollbot_time_to_decision_seconds` | `service`, `drill` | histogram: alert (or proposal) received → approved |
//! | `rollbot_time_to_mitigate_seconds` | `service`, `drill` | histogram: incident start → rollback complete |
//! | `rollbot_time_to_resolve_seconds` | `service`, `drill` | histogram: incident start → alert cleared (manual proposals: verified) |
//! | `rollbot_rollback_duration_seconds` | `service`, `drill` | histogram: rollback started → ended, whatever the end |
//! | `rollbot_votes_refused_total` | `service`, `reason` | votes that did not count, by the refusal's code |
//! | `rollbot_executor_errors_total` | `service`, `kind` | rollbacks that failed, by the executor error's kind (since start) |
//! | `rollbot_outbox_depth` | `platform` | chat messages queued, not yet delivered |
//! | `rollbot_outbox_oldest_pending_age_seconds` | `platform` | how long the oldest queued message has waited (0 when none) |
//!
//! The proposal metrics are derived from the stored timelines
//! ([`crate::domain::measures`]): rebuilt from the store when the engine
//! starts and kept current as the store records events (this is the
//! store's [`Observer`]), so they survive restarts. Every configured
//! service's series exist from the start at zero, so `increase()` sees the
//! first rollback. The outbox gauges are read from the store at each scrape.

use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::measures::{OUTCOMES, Observation, observe};
use crate::domain::{EventKind, Origin, Proposal, ServiceName, TimelineEvent};
use crate::store::{Observer, Store, StoreError};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    source: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DedupLabels {
    source: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoutedLabels {
    source: &'static str,
    service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpenedLabels {
    service: String,
    origin: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    service: String,
    outcome: &'static str,
    drill: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceDrill {
    service: String,
    drill: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    service: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    service: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlatformLabels {
    platform: String,
}

type Timings = Family<ServiceDrill, Histogram, fn() -> Histogram>;

/// Decisions and incidents: from half a minute to half a day, with the
/// runbook's 30-minute MTTR goal as a bucket boundary.
fn incident_buckets() -> Histogram {
    Histogram::new([
        30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
    ])
}

/// A rollback's own run: seconds to an hour.
fn rollback_buckets() -> Histogram {
    Histogram::new([
        5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
    ])
}

fn drill_label(drill: bool) -> &'static str {
    if drill { "true" } else { "false" }
}

fn origin_label(origin: Origin) -> &'static str {
    match origin {
        Origin::Alert => "alert",
        Origin::Command => "command",
        Origin::Drill => "drill",
    }
}

/// Why an alert did not open a proposal of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupReason {
    /// The same delivery (same idempotency key) was already processed.
    Repeat,
    /// It joined the service's open proposal.
    Attached,
}

/// The application's counters. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    received: Family<SourceLabels, Counter>,
    deduplicated: Family<DedupLabels, Counter>,
    routed: Family<RoutedLabels, Counter>,
    unmatched: Family<SourceLabels, Counter>,
    truncated: Family<SourceLabels, Counter>,
    opened: Family<OpenedLabels, Counter>,
    outcomes: Family<OutcomeLabels, Counter>,
    time_to_decision: Timings,
    time_to_mitigate: Timings,
    time_to_resolve: Timings,
    rollback_duration: Timings,
    votes_refused: Family<ReasonLabels, Counter>,
    executor_errors: Family<KindLabels, Counter>,
    outbox_depth: Family<PlatformLabels, Gauge>,
    outbox_age: Family<PlatformLabels, Gauge<f64, AtomicU64>>,
    /// The timeline-derived counts: being rebuilt from the store, or how
    /// far the rebuild read each timeline (see [`Metrics::rebuild`]).
    rebuild: std::sync::Mutex<Rebuild>,
}

/// See [`Metrics::rebuild`].
#[derive(Default)]
struct Rebuild {
    /// While the rebuild runs: what the store recorded meanwhile, as the
    /// proposal then and the range of its timeline that write added.
    pending: Option<Vec<(Proposal, usize, usize)>>,
    /// How many events of each timeline the rebuild counted: a write it
    /// already saw, reported late, must not count twice.
    counted: std::collections::HashMap<crate::domain::ProposalId, usize>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A registry with every rollbot metric registered (all at zero).
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rollbot");
        let requests = Family::default();
        let received = Family::default();
        let deduplicated = Family::default();
        let routed = Family::default();
        let unmatched = Family::default();
        let truncated = Family::default();
        // Counters get the `_total` suffix from the encoder.
        registry.register(
            "webhook_requests",
            "Alert webhook requests, by source and how they were answered",
            requests.clone(),
        );
        registry.register(
            "alerts_received",
            "Alerts in accepted webhook deliveries",
            received.clone(),
        );
        registry.register(
            "alerts_deduplicated",
            "Alerts that opened no proposal of their own: repeated deliveries, or joined an open proposal",
            deduplicated.clone(),
        );
        registry.register(
            "alerts_routed",
            "Alerts a route sent to a service",
            routed.clone(),
        );
        registry.register(
            "alerts_unmatched",
            "Alerts no [[alerts.routes]] entry matched",
            unmatched.clone(),
        );
        registry.register(
            "alerts_truncated",
            "Alerts the sender dropped from a delivery (truncatedAlerts, max_alerts)",
            truncated.clone(),
        );
        let opened = Family::default();
        let outcomes = Family::default();
        let timings = |f: fn() -> Histogram| Timings::new_with_constructor(f);
        let time_to_decision = timings(incident_buckets);
        let time_to_mitigate = timings(incident_buckets);
        let time_to_resolve = timings(incident_buckets);
        let rollback_duration = timings(rollback_buckets);
        let votes_refused = Family::default();
        let executor_errors = Family::default();
        let outbox_depth = Family::default();
        let outbox_age = Family::default();
        registry.register(
            "proposals_opened",
            "Rollback proposals opened, by service and origin (alert, command, drill)",
            opened.clone(),
        );
        registry.register(
            "proposal_outcomes",
            "Proposals that reached an outcome state; rolled_back counts every rollback carried out",
            outcomes.clone(),
        );
        registry.register(
            "time_to_decision_seconds",
            "Time from the alert (or the proposal) to its approval",
            time_to_decision.clone(),
        );
        registry.register(
            "time_to_mitigate_seconds",
            "Time from the incident's start to the rollback's completion",
            time_to_mitigate.clone(),
        );
        registry.register(
            "time_to_resolve_seconds",
            "Time from the incident's start to its resolution (alert cleared; manual proposals: verified)",
            time_to_resolve.clone(),
        );
        registry.register(
            "rollback_duration_seconds",
            "How long rollbacks ran, from start to their end (done, failed or superseded)",
            rollback_duration.clone(),
        );
        registry.register(
            "votes_refused",
            "Votes that did not count, by service and reason",
            votes_refused.clone(),
        );
        registry.register(
            "executor_errors",
            "Rollbacks that failed, by service and the executor error's kind (since this process started)",
            executor_errors.clone(),
        );
        registry.register(
            "outbox_depth",
            "Chat messages queued and not yet delivered, by platform",
            outbox_depth.clone(),
        );
        registry.register(
            "outbox_oldest_pending_age_seconds",
            "How long the oldest queued chat message has waited, by platform (0 when none)",
            outbox_age.clone(),
        );
        Self {
            registry,
            requests,
            received,
            deduplicated,
            routed,
            unmatched,
            truncated,
            opened,
            outcomes,
            time_to_decision,
            time_to_mitigate,
            time_to_resolve,
            rollback_duration,
            votes_refused,
            executor_errors,
            outbox_depth,
            outbox_age,
            rebuild: std::sync::Mutex::new(Rebuild::default()),
        }
    }

    /// Creates every proposal series of `services` at zero, so the first
    /// rollback of a service is an increase Prometheus can see.
    pub fn declare_services<'a>(&self, services: impl IntoIterator<Item = &'a ServiceName>) {
        for service in services {
            let service = service.to_string();
            for origin in [Origin::Alert, Origin::Command, Origin::Drill] {
                let _ = self.opened.get_or_create(&OpenedLabels {
                    service: service.clone(),
                    origin: origin_label(origin),
                });
            }
            for drill in [false, true] {
                for outcome in OUTCOMES {
                    let _ = self.outcomes.get_or_create(&OutcomeLabels {
                        service: service.clone(),
                        outcome: outcome.as_str(),
                        drill: drill_label(drill),
                    });
                }
                let labels = ServiceDrill {
                    service: service.clone(),
                    drill: drill_label(drill),
                };
                for timing in [
                    &self.time_to_decision,
                    &self.time_to_mitigate,
                    &self.time_to_resolve,
                    &self.rollback_duration,
                ] {
                    let _ = timing.get_or_create(&labels);
                }
            }
        }
    }

    /// Marks the timeline-derived counts as being rebuilt: until
    /// [`Metrics::rebuild`] ends, what the store records is held back, and
    /// [`Metrics::rebuilding`] is true. Call on a fresh value before
    /// [`Store::set_observer`], so the server can start while the counts
    /// are rebuilt beside it.
    pub fn begin_rebuild(&self) {
        self.rebuild_state().pending = Some(Vec::new());
    }

    /// Whether the counts are still being rebuilt (`/metrics` answers 503
    /// meanwhile rather than counters that would jump when it ends).
    pub fn rebuilding(&self) -> bool {
        self.rebuild_state().pending.is_some()
    }

    fn rebuild_state(&self) -> std::sync::MutexGuard<'_, Rebuild> {
        self.rebuild
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts what every stored timeline shows, then what the store
    /// recorded meanwhile past what was read (after [`Metrics::begin_rebuild`]
    /// and [`Store::set_observer`]; without them, call it before the store
    /// has an observer).
    ///
    /// # Errors
    /// Storage failure (a proposal or timeline that cannot be read); the
    /// writes held back are counted anyway.
    pub fn rebuild(&self, store: &Store) -> Result<usize, StoreError> {
        let mut counted = std::collections::HashMap::new();
        let result = (|| {
            let proposals = store.list()?;
            for p in &proposals {
                let timeline = store.timeline(&p.id)?;
                counted.insert(p.id.clone(), timeline.len());
                self.count(p, &observe(&timeline, 0));
            }
            Ok(proposals.len())
        })();
        // Held-back writes are counted under the lock, so one reported
        // meanwhile waits and then finds the rebuild over.
        let mut state = self.rebuild_state();
        state.counted = counted;
        for (p, from, to) in state.pending.take().unwrap_or_default() {
            self.count_recorded(store, &state.counted, &p, from, to);
        }
        result
    }

    /// Counts the events `from..to` of `p`'s timeline, those past what the
    /// rebuild already counted.
    fn count_recorded(
        &self,
        store: &Store,
        counted: &std::collections::HashMap<crate::domain::ProposalId, usize>,
        p: &Proposal,
        from: usize,
        to: usize,
    ) {
        let from = from.max(counted.get(&p.id).copied().unwrap_or(0));
        if from >= to {
            return;
        }
        match store.timeline(&p.id) {
            Ok(mut timeline) => {
                // Events a later write appended are that write's to count.
                timeline.truncate(to);
                self.count(p, &observe(&timeline, from));
            }
            Err(e) => {
                tracing::error!(proposal = %p.id, error = %e, "cannot read a timeline to update the rollback metrics");
            }
        }
    }

    fn count(&self, p: &Proposal, observations: &[Observation]) {
        let service = p.service.to_string();
        let drill = drill_label(p.drill);
        let timing = || ServiceDrill {
            service: service.clone(),
            drill,
        };
        for o in observations {
            match *o {
                Observation::Opened => {
                    self.opened
                        .get_or_create(&OpenedLabels {
                            service: service.clone(),
                            origin: origin_label(p.origin),
                        })
                        .inc();
                }
                Observation::Outcome(state) => {
                    self.outcomes
                        .get_or_create(&OutcomeLabels {
                            service: service.clone(),
                            outcome: state.as_str(),
                            drill,
                        })
                        .inc();
                }
                Observation::TimeToDecision(s) => {
                    self.time_to_decision.get_or_create(&timing()).observe(s);
                }
                Observation::TimeToMitigate(s) => {
                    self.time_to_mitigate.get_or_create(&timing()).observe(s);
                }
                Observation::TimeToResolve(s) => {
                    self.time_to_resolve.get_or_create(&timing()).observe(s);
                }
                Observation::RollbackDuration(s) => {
                    self.rollback_duration.get_or_create(&timing()).observe(s);
                }
                Observation::VoteRefused(reason) => {
                    self.votes_refused
                        .get_or_create(&ReasonLabels {
                            service: service.clone(),
                            reason,
                        })
                        .inc();
                }
            }
        }
    }

    /// A rollback of `service` failed with an executor error of `kind`.
    pub fn executor_error(&self, service: &ServiceName, kind: crate::ports::ExecErrorKind) {
        // The kind's stable snake_case name, as the API shows it.
        let kind = serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "other".to_owned());
        self.executor_errors
            .get_or_create(&KindLabels {
                service: service.to_string(),
                kind,
            })
            .inc();
    }

    /// Sets the outbox gauges from what `store` holds now: each platform's
    /// queued messages and how long the oldest has waited at `now`.
    ///
    /// # Errors
    /// Storage failure.
    pub fn read_outboxes(&self, store: &Store, now: DateTime<Utc>) -> Result<(), StoreError> {
        for backlog in crate::outbox::backlogs(store)? {
            let labels = PlatformLabels {
                platform: backlog.name,
            };
            self.outbox_depth
                .get_or_create(&labels)
                .set(i64::try_from(backlog.depth).unwrap_or(i64::MAX));
            let age = backlog.oldest_queued_at.map_or(0.0, |at| {
                (now - at).num_milliseconds().max(0) as f64 / 1000.0
            });
            self.outbox_age.get_or_create(&labels).set(age);
        }
        Ok(())
    }

    /// One webhook request answered with `outcome` (`accepted`,
    /// `unauthorized`, `bad_request`, `too_large`, `disabled`, `error`…).
    pub fn webhook_request(&self, source: &'static str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels { source, outcome })
            .inc();
    }

    /// `n` alerts arrived in an accepted delivery.
    pub fn alerts_received(&self, source: &'static str, n: u64) {
        self.received
            .get_or_create(&SourceLabels { source })
            .inc_by(n);
    }

    /// The sender dropped `n` alerts from a delivery.
    pub fn alerts_truncated(&self, source: &'static str, n: u64) {
        self.truncated
            .get_or_create(&SourceLabels { source })
            .inc_by(n);
    }

    /// One alert was a repeat or joined an open proposal.
    pub fn alert_deduplicated(&self, source: &'static str, reason: DedupReason) {
        let reason = match reason {
            DedupReason::Repeat => "repeat",
            DedupReason::Attached => "attached",
        };
        self.deduplicated
            .get_or_create(&DedupLabels { source, reason })
            .inc();
    }

    /// One alert was routed to `service`.
    pub fn alert_routed(&self, source: &'static str, service: &str) {
        self.routed
            .get_or_create(&RoutedLabels {
                source,
                service: service.to_owned(),
            })
            .inc();
    }

    /// One alert matched no route.
    pub fn alert_unmatched(&self, source: &'static str) {
        self.unmatched.get_or_create(&SourceLabels { source }).inc();
    }

    /// Content type of [`Metrics::render`]'s output.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// The OpenMetrics text exposition (Prometheus scrapes it) of every
    /// metric that has a value.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding metrics into a String");
        out
    }
}

/// Whether an event can change a timeline-derived metric (the others
/// cost no read of the timeline).
fn counts(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Proposed { .. }
            | EventKind::StateChanged { .. }
            | EventKind::Resolved { .. }
            | EventKind::VoteRefused { .. }
    )
}

impl Observer for Metrics {
    fn recorded(&self, store: &Store, p: &Proposal, written: &[TimelineEvent]) {
        if !written.iter().any(|e| counts(&e.kind)) {
            return;
        }
        let to = usize::try_from(p.timeline_len).unwrap_or(usize::MAX);
        let from = to.saturating_sub(written.len());
        let mut state = self.rebuild_state();
        if let Some(pending) = &mut state.pending {
            pending.push((p.clone(), from, to));
            return;
        }
        self.count_recorded(store, &state.counted, p, from, to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outbox_gauges_show_the_queue_and_its_oldest_entrys_age() {
        let store = Store::temporary().unwrap();
        let m = Metrics::new();
        let outbox = crate::outbox::Outbox::open(&store, "slack").unwrap();
        m.read_outboxes(&store, Utc::now()).unwrap();
        assert!(
            m.render()
                .contains(r#"rollbot_outbox_depth{platform="slack"} 0"#)
        );
        outbox.push("p1", None, &"first").await.unwrap();
        outbox.push("p1", None, &"second").await.unwrap();
        let later = Utc::now() + chrono::Duration::minutes(6);
        m.read_outboxes(&store, later).unwrap();
        let text = m.render();
        assert!(
            text.contains(r#"rollbot_outbox_depth{platform="slack"} 2"#),
            "{text}"
        );
        let age: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(r#"rollbot_outbox_oldest_pending_age_seconds{platform="slack"} "#)
            })
            .unwrap()
            .parse()
            .unwrap();
        assert!((360.0..370.0).contains(&age), "{age}");
    }

    #[test]
    fn counters_render_with_labels_and_the_total_suffix() {
        let m = Metrics::new();
        m.webhook_request("alertmanager", "accepted");
        m.webhook_request("alertmanager", "accepted");
        m.alerts_received("alertmanager", 3);
        m.alert_deduplicated("alertmanager", DedupReason::Attached);
        m.alert_routed("alertmanager", "payment-api");
        m.alert_unmatched("grafana");
        m.alerts_truncated("alertmanager", 7);
        let text = m.render();
        for line in [
            r#"rollbot_webhook_requests_total{source="alertmanager",outcome="accepted"} 2"#,
            r#"rollbot_alerts_received_total{source="alertmanager"} 3"#,
            r#"rollbot_alerts_deduplicated_total{source="alertmanager",reason="attached"} 1"#,
            r#"rollbot_alerts_routed_total{source="alertmanager",service="payment-api"} 1"#,
            r#"rollbot_alerts_unmatched_total{source="grafana"} 1"#,
            r#"rollbot_alerts_truncated_total{source="alertmanager"} 7"#,
            "# TYPE rollbot_alerts_truncated counter",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
