//! Prometheus Alertmanager `webhook_config` payloads (version "4").
//!
//! Alertmanager POSTs one JSON document per notification group:
//! `{receiver, status, alerts[], groupLabels, commonLabels,
//! commonAnnotations, externalURL, version, groupKey, truncatedAlerts}` plus,
//! in newer releases, `notification_reason` (v0.32) and `routeLabels`
//! (v0.34). Unknown fields are ignored so newer releases keep working.
//! Grafana's webhook contact point sends the same shape with extra fields
//! (see [`super::grafana`]), so the wire types here are shared.
//!
//! Alertmanager does not sign webhooks; protect the route with
//! [`super::auth::verify_bearer`] or [`super::auth::verify_basic`] matching
//! the receiver's `http_config`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::event::{AlertBatch, AlertEvent, AlertLinks, AlertSource, AlertStatus, NewAlert};
use super::payload::{self, PayloadError, non_empty};

/// Payload versions [`parse_alertmanager`] accepts.
pub const SUPPORTED_VERSIONS: &[&str] = &["4"];

/// Parse an Alertmanager webhook body.
///
/// Every alert of the group becomes one [`AlertEvent`] carrying the group's
/// `groupKey`; firing and resolved alerts may be mixed in one delivery.
///
/// # Errors
///
/// [`PayloadError::UnsupportedVersion`] if `version` is not `"4"`;
/// [`PayloadError::Invalid`] naming the JSON path if the body is not JSON, a
/// required field (`status`, `alerts[].status`, `alerts[].labels`,
/// `alerts[].startsAt`) is missing, or a value has the wrong type, e.g.
/// `alerts[0].startsAt: invalid RFC 3339 timestamp "yesterday"`.
pub fn parse_alertmanager(body: &[u8]) -> Result<AlertBatch, PayloadError> {
    parse_template_payload(AlertSource::Alertmanager, body, SUPPORTED_VERSIONS)
}

/// `template.Data` plus the webhook envelope, as Alertmanager and Grafana send it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage {
    #[serde(default)]
    receiver: Option<String>,
    status: AlertStatus,
    alerts: Vec<WireAlert>,
    #[serde(default)]
    group_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    external_url: Option<String>,
    #[serde(default)]
    group_key: String,
    #[serde(default)]
    truncated_alerts: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAlert {
    status: AlertStatus,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(deserialize_with = "payload::rfc3339")]
    starts_at: DateTime<Utc>,
    #[serde(default, deserialize_with = "payload::rfc3339_or_zero")]
    ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
    // Grafana only.
    #[serde(default, rename = "silenceURL")]
    silence_url: Option<String>,
    #[serde(default, rename = "dashboardURL")]
    dashboard_url: Option<String>,
    #[serde(default, rename = "panelURL")]
    panel_url: Option<String>,
    #[serde(default)]
    values: Option<BTreeMap<String, f64>>,
}

/// Parse the Alertmanager-shaped payload shared with Grafana.
pub(crate) fn parse_template_payload(
    origin: AlertSource,
    body: &[u8],
    supported: &'static [&'static str],
) -> Result<AlertBatch, PayloadError> {
    payload::check_version(origin, body, supported)?;
    let msg: WireMessage = payload::decode(origin, body)?;
    let group_key = msg.group_key;
    let alerts = msg
        .alerts
        .into_iter()
        .map(|a| {
            AlertEvent::from(NewAlert {
                source: origin,
                status: a.status,
                labels: a.labels,
                annotations: a.annotations,
                starts_at: a.starts_at,
                ends_at: a.ends_at,
                fingerprint: a.fingerprint,
                group_key: group_key.clone(),
                links: AlertLinks {
                    generator_url: non_empty(a.generator_url),
                    dashboard_url: non_empty(a.dashboard_url),
                    panel_url: non_empty(a.panel_url),
                    silence_url: non_empty(a.silence_url),
                    runbook_url: None,
                    incident_url: None,
                },
                values: a.values.unwrap_or_default(),
            })
        })
        .collect();
    Ok(AlertBatch {
        source: origin,
        receiver: non_empty(msg.receiver),
        status: msg.status,
        group_key,
        group_labels: msg.group_labels,
        common_labels: msg.common_labels,
        common_annotations: msg.common_annotations,
        external_url: non_empty(msg.external_url),
        truncated_alerts: msg.truncated_alerts,
        alerts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{
        "version": "4", "status": "firing", "groupKey": "{}:{alertname=\"A\"}",
        "alerts": [{"status": "firing", "labels": {"alertname": "A"},
                    "startsAt": "2024-05-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}]
    }"#;

    #[test]
    fn minimal_payload_parses_with_defaults() {
        let batch = parse_alertmanager(MINIMAL.as_bytes()).unwrap();
        assert_eq!(batch.receiver, None);
        assert_eq!(batch.truncated_alerts, 0);
        let alert = &batch.alerts[0];
        assert_eq!(alert.alert_name, "A");
        assert_eq!(alert.ends_at, None);
        assert_eq!(alert.group_key, "{}:{alertname=\"A\"}");
        // No fingerprint on the wire: computed like Prometheus does.
        assert_eq!(
            alert.fingerprint,
            super::super::event::label_set_fingerprint(&alert.labels)
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let body = MINIMAL.replacen("\"version\"", "\"futureField\": [1,2], \"version\"", 1);
        parse_alertmanager(body.as_bytes()).unwrap();
    }

    #[test]
    fn bad_status_names_path() {
        let body = MINIMAL.replacen(
            "\"status\": \"firing\", \"labels\"",
            "\"status\": \"pending\", \"labels\"",
            1,
        );
        let err = parse_alertmanager(body.as_bytes()).unwrap_err();
        assert_eq!(err.path(), "alerts[0].status");
        assert!(err.to_string().contains("pending"), "{err}");
    }
}
