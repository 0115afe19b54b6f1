//! The normalized alert model every source parser produces.
//!
//! [`AlertEvent`] is one alert instance (one label set) in one state;
//! [`AlertBatch`] is one webhook delivery, which may carry several alerts
//! (Alertmanager and Grafana group alerts). Everything downstream of the
//! parsers — routing, the engine, the store — only ever sees these types, so
//! the differences between sources end here.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::decision::Severity;

/// Which kind of webhook an alert came in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSource {
    /// Prometheus Alertmanager `webhook_config` (payload version "4").
    Alertmanager,
    /// Grafana unified alerting webhook contact point (payload version "1").
    Grafana,
    /// PagerDuty V3 webhook subscription (incident events).
    #[serde(rename = "pagerduty")]
    PagerDuty,
    /// rollbot's own generic JSON shape, for anything else.
    #[default]
    Generic,
}

impl AlertSource {
    /// Lowercase name, as used in serialized events and idempotency keys.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSource::Alertmanager => "alertmanager",
            AlertSource::Grafana => "grafana",
            AlertSource::PagerDuty => "pagerduty",
            AlertSource::Generic => "generic",
        }
    }

    /// Product name for messages shown to people.
    #[must_use]
    pub fn display_name(self) -> &'static str {
        match self {
            AlertSource::Alertmanager => "Alertmanager",
            AlertSource::Grafana => "Grafana",
            AlertSource::PagerDuty => "PagerDuty",
            AlertSource::Generic => "generic webhook",
        }
    }
}

impl fmt::Display for AlertSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// Whether the alert condition currently holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The condition holds; this may open a rollback proposal.
    #[default]
    Firing,
    /// The condition cleared; this may close one (resolved notice).
    Resolved,
}

impl AlertStatus {
    /// `"firing"` or `"resolved"`, the spelling all sources use on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Links a person may want to follow from a proposal message.
///
/// Empty strings on the wire (Grafana sends `"dashboardURL": ""`) become
/// `None`, so a `Some` is always worth rendering.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AlertLinks {
    /// The rule/graph that produced the alert (`generatorURL`, generic `url`).
    pub generator_url: Option<String>,
    /// Grafana `dashboardURL`.
    pub dashboard_url: Option<String>,
    /// Grafana `panelURL`.
    pub panel_url: Option<String>,
    /// Grafana `silenceURL`.
    pub silence_url: Option<String>,
    /// The `runbook_url` annotation, whatever the source.
    pub runbook_url: Option<String>,
    /// PagerDuty incident page (`data.html_url`).
    pub incident_url: Option<String>,
}

/// Deduplication key of one delivery of one alert state.
///
/// Alertmanager retries failed deliveries with identical bodies and re-sends
/// every group each `group_interval` while it is active; PagerDuty retries
/// too. All of those must be recognised as "already seen", while a new state
/// (the alert resolving, or firing again later with a new `startsAt`) must
/// not. The key therefore covers exactly: source, group key, fingerprint,
/// status and `startsAt` (normalized to UTC, so `+02:00` and `Z` spellings of
/// one instant agree). It is a hex SHA-256 over those parts, length-prefixed
/// so no two different part lists can collide by concatenation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Compute the key from its parts.
    #[must_use]
    pub fn compute(
        source: AlertSource,
        group_key: &str,
        fingerprint: &str,
        status: AlertStatus,
        starts_at: DateTime<Utc>,
    ) -> Self {
        let starts = starts_at.to_rfc3339_opts(SecondsFormat::Nanos, true);
        let mut hasher = Sha256::new();
        for part in [
            source.as_str(),
            group_key,
            fingerprint,
            status.as_str(),
            starts.as_str(),
        ] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        IdempotencyKey(format!(
            "{}:{}",
            source.as_str(),
            hex::encode(hasher.finalize())
        ))
    }

    /// The key as a string, e.g. `alertmanager:3f9a…` (source, colon, 64 hex digits).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One alert in one state, normalized across sources.
///
/// Build one with [`AlertEvent::from`] a [`NewAlert`]: the derived fields
/// (name, summary, severity, runbook link, fingerprint when absent,
/// idempotency key) are computed there, so they cannot disagree with the
/// labels and annotations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Which webhook it came from.
    pub source: AlertSource,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// The `alertname` label, or `"unnamed alert"` when the label is absent.
    pub alert_name: String,
    /// All labels, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// All annotations, sorted by name.
    pub annotations: BTreeMap<String, String>,
    /// The `summary` annotation.
    pub summary: Option<String>,
    /// The `description` annotation.
    pub description: Option<String>,
    /// When the condition started (UTC).
    pub starts_at: DateTime<Utc>,
    /// When it ended; `None` while firing (Go's zero time on the wire).
    pub ends_at: Option<DateTime<Utc>>,
    /// Identity of the label set: taken from the payload, or computed with
    /// [`label_set_fingerprint`] (Prometheus-compatible).
    pub fingerprint: String,
    /// Identity of the notification group the alert was delivered in.
    pub group_key: String,
    /// Links for people.
    pub links: AlertLinks,
    /// Raw value of the `severity` label.
    pub severity_label: Option<String>,
    /// `severity_label` normalized; `None` if absent or not recognised.
    pub severity: Option<Severity>,
    /// Query results that made the alert fire (Grafana `values`), by refID.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, f64>,
    /// Deduplication key; see [`IdempotencyKey`].
    pub idempotency_key: IdempotencyKey,
}

/// The inputs of an [`AlertEvent`]; everything else is derived.
#[derive(Debug, Clone, Default)]
pub struct NewAlert {
    /// Which webhook it came from.
    pub source: AlertSource,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// All labels.
    pub labels: BTreeMap<String, String>,
    /// All annotations.
    pub annotations: BTreeMap<String, String>,
    /// When the condition started.
    pub starts_at: DateTime<Utc>,
    /// When it ended, if it did.
    pub ends_at: Option<DateTime<Utc>>,
    /// Fingerprint from the payload; `None` or empty computes one from `labels`.
    pub fingerprint: Option<String>,
    /// Notification group key.
    pub group_key: String,
    /// Links; `runbook_url` is filled from the annotation when left `None`.
    pub links: AlertLinks,
    /// Grafana query values.
    pub values: BTreeMap<String, f64>,
}

impl From<NewAlert> for AlertEvent {
    fn from(new: NewAlert) -> Self {
        let NewAlert {
            source,
            status,
            labels,
            annotations,
            starts_at,
            ends_at,
            fingerprint,
            group_key,
            mut links,
            values,
        } = new;
        let fingerprint = match fingerprint {
            Some(fp) if !fp.is_empty() => fp,
            _ => label_set_fingerprint(&labels),
        };
        let alert_name = labels
            .get("alertname")
            .filter(|name| !name.is_empty())
            .cloned()
            .unwrap_or_else(|| "unnamed alert".to_owned());
        let non_empty = |map: &BTreeMap<String, String>, key: &str| {
            map.get(key).filter(|v| !v.is_empty()).cloned()
        };
        if links.runbook_url.is_none() {
            links.runbook_url = non_empty(&annotations, "runbook_url");
        }
        let severity_label = non_empty(&labels, "severity");
        let severity = severity_label.as_deref().and_then(Severity::parse);
        let idempotency_key =
            IdempotencyKey::compute(source, &group_key, &fingerprint, status, starts_at);
        AlertEvent {
            source,
            status,
            alert_name,
            summary: non_empty(&annotations, "summary"),
            description: non_empty(&annotations, "description"),
            labels,
            annotations,
            starts_at,
            ends_at,
            fingerprint,
            group_key,
            links,
            severity_label,
            severity,
            values,
            idempotency_key,
        }
    }
}

/// One webhook delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertBatch {
    /// Which webhook it came from.
    pub source: AlertSource,
    /// The receiver / contact point name, when the source names one, as sent
    /// (Alertmanager regex-quotes it: `a.b` arrives as `a\\.b`).
    pub receiver: Option<String>,
    /// Group status: firing if any alert fires, else resolved.
    pub status: AlertStatus,
    /// Notification group key (also copied into every event).
    pub group_key: String,
    /// Labels the group was formed by.
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert of the group shares.
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert of the group shares.
    pub common_annotations: BTreeMap<String, String>,
    /// Backlink to the sending Alertmanager / Grafana.
    pub external_url: Option<String>,
    /// Alerts the sender dropped because of `max_alerts`; they are not in
    /// `alerts`, so a non-zero value deserves a warning in the proposal.
    pub truncated_alerts: u64,
    /// The alerts, in payload order.
    pub alerts: Vec<AlertEvent>,
}

/// Prometheus `model.LabelSet.Fingerprint()`, rendered as `%016x`.
///
/// FNV-1a 64 over the label names in sorted order, each name and value
/// followed by the separator byte `0xff`. Alertmanager and Grafana send
/// exactly this as `fingerprint`, so computing it for the other sources keeps
/// fingerprints comparable. (Grafana's test vector: `{alertname="alert1",
/// lbl1="val1"}` → `fac0861a85de433a`.)
#[must_use]
pub fn label_set_fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    const SEPARATOR: u8 = 0xff;
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    // BTreeMap iterates in byte order of the names, which is Go's sort order.
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[SEPARATOR]);
        add(value.as_bytes());
        add(&[SEPARATOR]);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn fingerprint_matches_grafana_vector() {
        let ls = labels(&[("alertname", "alert1"), ("lbl1", "val1")]);
        assert_eq!(label_set_fingerprint(&ls), "fac0861a85de433a");
    }

    #[test]
    fn fingerprint_of_empty_set_is_fnv_offset() {
        assert_eq!(label_set_fingerprint(&BTreeMap::new()), "cbf29ce484222325");
    }

    #[test]
    fn fingerprint_depends_on_values_and_names() {
        let a = label_set_fingerprint(&labels(&[("a", "b")]));
        let b = label_set_fingerprint(&labels(&[("a", "c")]));
        let c = label_set_fingerprint(&labels(&[("ab", "")]));
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn idempotency_key_normalizes_offsets_and_separates_states() {
        let t1 = DateTime::parse_from_rfc3339("2021-10-12T09:51:03+02:00")
            .unwrap()
            .with_timezone(&Utc);
        let t2 = DateTime::parse_from_rfc3339("2021-10-12T07:51:03Z")
            .unwrap()
            .with_timezone(&Utc);
        let k = |status, t| IdempotencyKey::compute(AlertSource::Grafana, "g", "f", status, t);
        assert_eq!(k(AlertStatus::Firing, t1), k(AlertStatus::Firing, t2));
        assert_ne!(k(AlertStatus::Firing, t1), k(AlertStatus::Resolved, t1));
        // Length prefixes: moving a character between parts changes the key.
        let a = IdempotencyKey::compute(AlertSource::Generic, "ab", "c", AlertStatus::Firing, t1);
        let b = IdempotencyKey::compute(AlertSource::Generic, "a", "bc", AlertStatus::Firing, t1);
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("generic:"));
        assert_eq!(a.as_str().len(), "generic:".len() + 64);
    }

    #[test]
    fn derived_fields_come_from_labels_and_annotations() {
        let event = AlertEvent::from(NewAlert {
            labels: labels(&[("alertname", "X"), ("severity", "P1")]),
            annotations: labels(&[("summary", "s"), ("description", ""), ("runbook_url", "r")]),
            ..NewAlert::default()
        });
        assert_eq!(event.alert_name, "X");
        assert_eq!(event.summary.as_deref(), Some("s"));
        assert_eq!(event.description, None);
        assert_eq!(event.links.runbook_url.as_deref(), Some("r"));
        assert_eq!(event.severity_label.as_deref(), Some("P1"));
        assert_eq!(event.severity, Some(Severity::High));
        assert_eq!(event.fingerprint, label_set_fingerprint(&event.labels));
    }
}
