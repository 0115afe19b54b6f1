//! rollbot's generic webhook shape, for senders that are neither
//! Alertmanager, Grafana nor PagerDuty (CI jobs, synthetic checks, scripts).
//!
//! One JSON object per request, one alert per object:
//!
//! ```json
//! {
//!   "alertname": "PaymentSuccessRateLow",
//!   "status": "firing",
//!   "service": "payment-api",
//!   "severity": "critical",
//!   "labels": { "namespace": "production", "team": "payments" },
//!   "annotations": { "runbook_url": "https://runbooks.example.com/payments" },
//!   "summary": "Payment success rate 95% < 98% for 5m",
//!   "description": "sum(rate(payment_success_total[5m])) / sum(rate(payment_total[5m]))",
//!   "startsAt": "2025-01-15T14:30:00Z",
//!   "endsAt": null,
//!   "fingerprint": "payment-success-rate",
//!   "groupKey": "payments",
//!   "url": "https://grafana.example.com/d/payments"
//! }
//! ```
//!
//! | field | required | meaning / default |
//! |---|---|---|
//! | `alertname` | yes, unless `labels.alertname` is set | copied to `labels.alertname` |
//! | `status` | no | `"firing"` (default) or `"resolved"` |
//! | `service`, `severity` | no | copied to the labels of the same name |
//! | `labels`, `annotations` | no | string → string maps; default empty |
//! | `summary`, `description` | no | copied to the annotations of the same name |
//! | `startsAt` | no | RFC 3339; default: the time the request was received |
//! | `endsAt` | no | RFC 3339; for `resolved` the default is the time received |
//! | `fingerprint` | no | default: Prometheus fingerprint of the labels |
//! | `groupKey` | no | default: `generic:<fingerprint>` |
//! | `url` | no | link to the source of the alert (graph, check, job) |
//!
//! A top-level `alertname`/`service`/`severity`/`summary`/`description`
//! that contradicts the same key inside `labels`/`annotations` is an error
//! rather than a silent choice. Unknown fields are ignored.
//!
//! Deduplication: the idempotency key includes `startsAt`, so a sender that
//! retries or re-sends a still-firing alert must send the same `startsAt`
//! each time; with the default (time received) every request is new.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::event::{
    AlertBatch, AlertEvent, AlertLinks, AlertSource, AlertStatus, NewAlert, label_set_fingerprint,
};
use super::payload::{self, PayloadError, non_empty};

const ORIGIN: AlertSource = AlertSource::Generic;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenericAlert {
    #[serde(default)]
    alertname: Option<String>,
    #[serde(default)]
    status: AlertStatus,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, deserialize_with = "payload::rfc3339_opt")]
    starts_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "payload::rfc3339_or_zero")]
    ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    group_key: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

/// Parse a generic webhook body (shape in the [module docs](self)).
///
/// `received_at` fills `startsAt` (and `endsAt` of a resolved alert) when the
/// sender leaves them out; pass the request's arrival time.
///
/// # Errors
///
/// [`PayloadError::Invalid`] naming the JSON path when the body is not a JSON
/// object of this shape, `alertname` is missing, a timestamp is not RFC 3339,
/// `status` is neither `firing` nor `resolved`, or a top-level field
/// contradicts the same key in `labels`/`annotations`.
pub fn parse_generic(body: &[u8], received_at: DateTime<Utc>) -> Result<AlertBatch, PayloadError> {
    let alert: GenericAlert = payload::decode(ORIGIN, body)?;
    let mut labels = alert.labels;
    let mut annotations = alert.annotations;
    merge(&mut labels, "labels", "alertname", alert.alertname)?;
    merge(&mut labels, "labels", "service", alert.service)?;
    merge(&mut labels, "labels", "severity", alert.severity)?;
    merge(&mut annotations, "annotations", "summary", alert.summary)?;
    merge(
        &mut annotations,
        "annotations",
        "description",
        alert.description,
    )?;
    if labels.get("alertname").is_none_or(|n| n.trim().is_empty()) {
        return Err(PayloadError::invalid(
            ORIGIN,
            "alertname",
            "missing: set \"alertname\" (or labels.alertname) to name the alert",
        ));
    }
    let ends_at = match (alert.status, alert.ends_at) {
        (AlertStatus::Resolved, None) => Some(received_at),
        (_, ends_at) => ends_at,
    };
    let fingerprint =
        non_empty(alert.fingerprint).unwrap_or_else(|| label_set_fingerprint(&labels));
    let group_key = non_empty(alert.group_key).unwrap_or_else(|| format!("generic:{fingerprint}"));
    let event = AlertEvent::from(NewAlert {
        source: ORIGIN,
        status: alert.status,
        labels,
        annotations,
        starts_at: alert.starts_at.unwrap_or(received_at),
        ends_at,
        fingerprint: Some(fingerprint),
        group_key: group_key.clone(),
        links: AlertLinks {
            generator_url: non_empty(alert.url),
            ..AlertLinks::default()
        },
        values: BTreeMap::new(),
    });
    Ok(AlertBatch {
        source: ORIGIN,
        receiver: None,
        status: event.status,
        group_key,
        group_labels: BTreeMap::new(),
        common_labels: event.labels.clone(),
        common_annotations: event.annotations.clone(),
        external_url: None,
        truncated_alerts: 0,
        alerts: vec![event],
    })
}

/// Copy a top-level convenience field into its map, refusing contradictions.
fn merge(
    map: &mut BTreeMap<String, String>,
    map_name: &str,
    key: &str,
    value: Option<String>,
) -> Result<(), PayloadError> {
    let Some(value) = value else { return Ok(()) };
    match map.get(key) {
        Some(existing) if *existing != value => Err(PayloadError::invalid(
            ORIGIN,
            key,
            format!("{value:?} contradicts {map_name}.{key} = {existing:?}; set it in one place"),
        )),
        _ => {
            map.insert(key.to_owned(), value);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        payload::parse_rfc3339("2025-01-15T14:35:00Z").unwrap()
    }

    #[test]
    fn minimal_body_gets_defaults() {
        let batch = parse_generic(br#"{"alertname":"Down"}"#, now()).unwrap();
        let a = &batch.alerts[0];
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.starts_at, now());
        assert_eq!(a.ends_at, None);
        assert_eq!(
            a.fingerprint,
            super::super::label_set_fingerprint(&a.labels)
        );
        assert_eq!(a.group_key, format!("generic:{}", a.fingerprint));
        assert_eq!(batch.group_key, a.group_key);
    }

    #[test]
    fn convenience_fields_land_in_labels_and_annotations() {
        let body = br#"{"alertname":"Down","service":"payment-api","severity":"P0",
            "summary":"s","status":"resolved","startsAt":"2025-01-15T14:30:00+09:00",
            "labels":{"service":"payment-api"},"url":"https://x","groupKey":"g"}"#;
        let a = parse_generic(body, now()).unwrap().alerts.remove(0);
        assert_eq!(a.labels["service"], "payment-api");
        assert_eq!(a.severity, Some(super::super::Severity::Critical));
        assert_eq!(a.summary.as_deref(), Some("s"));
        assert_eq!(a.ends_at, Some(now()));
        assert_eq!(a.group_key, "g");
        assert_eq!(a.links.generator_url.as_deref(), Some("https://x"));
        assert_eq!(a.starts_at.to_rfc3339(), "2025-01-15T05:30:00+00:00");
    }

    #[test]
    fn contradiction_and_missing_name_are_errors() {
        let err = parse_generic(
            br#"{"alertname":"A","service":"a","labels":{"service":"b"}}"#,
            now(),
        )
        .unwrap_err();
        assert_eq!(err.path(), "service");
        assert!(err.to_string().contains("labels.service"), "{err}");
        let err = parse_generic(br#"{"service":"a"}"#, now()).unwrap_err();
        assert_eq!(err.path(), "alertname");
    }

    #[test]
    fn bad_status_and_label_type_name_paths() {
        let err = parse_generic(br#"{"alertname":"A","status":"ok"}"#, now()).unwrap_err();
        assert_eq!(err.path(), "status");
        let err = parse_generic(br#"{"alertname":"A","labels":{"n":1}}"#, now()).unwrap_err();
        assert_eq!(err.path(), "labels.n");
    }

    #[test]
    fn identical_bodies_with_start_time_give_identical_keys() {
        let body = br#"{"alertname":"A","startsAt":"2025-01-15T14:30:00Z"}"#;
        let a = parse_generic(body, now()).unwrap();
        let later = now() + chrono::TimeDelta::minutes(5);
        let b = parse_generic(body, later).unwrap();
        assert_eq!(a.alerts[0].idempotency_key, b.alerts[0].idempotency_key);
    }
}
