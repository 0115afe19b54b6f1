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

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

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
        Self {
            registry,
            requests,
            received,
            deduplicated,
            routed,
            unmatched,
            truncated,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
