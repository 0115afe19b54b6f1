//! PagerDuty V3 webhook payloads (incident events).
//!
//! The body is an envelope `{"event": {id, event_type, resource_type,
//! occurred_at, agent, client, data}}`. rollbot acts on two event types:
//!
//! | `event_type`         | becomes                          |
//! |----------------------|----------------------------------|
//! | `incident.triggered` | a [`AlertStatus::Firing`] event   |
//! | `incident.resolved`  | a [`AlertStatus::Resolved`] event |
//! | anything else        | [`PagerDutyDelivery::Ignored`]   |
//!
//! A subscription usually delivers many more types (acknowledged, annotated,
//! priority_updated, `pagey.ping`…); those are not errors, and the route
//! should answer them with 2xx so PagerDuty does not retry or disable the
//! subscription.
//!
//! Mapping of the incident (`data`) into the normalized event:
//!
//! - labels: `alertname` = `title`, `service` = `service.summary`,
//!   `pagerduty_service_id`, `incident_id`, `incident_number`,
//!   `incident_key`, `urgency`, `priority` (when set), `escalation_policy`,
//!   `teams` (comma-separated), and `severity` = the priority name if set,
//!   else the urgency (so `P1` / `high` normalize to [`super::Severity::High`]);
//! - annotations: `summary` = `title`;
//! - `starts_at` = `created_at` (stable across the incident's events, so the
//!   resolved event pairs with the triggered one), `ends_at` = `occurred_at`
//!   of a resolved event;
//! - fingerprint: computed from `{incident_id}` only, because urgency and
//!   priority can change during an incident and must not change its identity;
//! - group key: `pagerduty:incident:<id>`; link: `html_url`.
//!
//! Verify `X-PagerDuty-Signature` first: [`super::auth::verify_pagerduty_signature`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::{
    AlertBatch, AlertEvent, AlertLinks, AlertSource, AlertStatus, NewAlert, label_set_fingerprint,
};
use super::payload::{self, PayloadError, non_empty};

const ORIGIN: AlertSource = AlertSource::PagerDuty;

/// What a PagerDuty delivery amounts to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PagerDutyDelivery {
    /// An `incident.triggered` or `incident.resolved` event, as a batch of one.
    Alert(AlertBatch),
    /// Any other event type: acknowledge it and do nothing.
    Ignored(IgnoredEvent),
}

/// A well-formed PagerDuty event that rollbot does not act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error(
    "ignored PagerDuty event type {event_type:?} (event {event_id}): rollbot only acts on incident.triggered and incident.resolved"
)]
pub struct IgnoredEvent {
    /// The event's `id`.
    pub event_id: String,
    /// The event's `event_type`.
    pub event_type: String,
}

#[derive(Deserialize)]
struct Envelope<E> {
    event: E,
}

#[derive(Deserialize)]
struct EventHead {
    #[serde(default)]
    id: String,
    event_type: String,
}

#[derive(Deserialize)]
struct Event {
    #[serde(deserialize_with = "payload::rfc3339")]
    occurred_at: DateTime<Utc>,
    data: Incident,
}

#[derive(Deserialize)]
struct Reference {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    summary: Option<String>,
}

#[derive(Deserialize)]
struct Incident {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    number: Option<u64>,
    #[serde(default)]
    incident_key: Option<String>,
    #[serde(deserialize_with = "payload::rfc3339")]
    created_at: DateTime<Utc>,
    title: String,
    #[serde(default)]
    service: Option<Reference>,
    #[serde(default)]
    escalation_policy: Option<Reference>,
    #[serde(default)]
    teams: Vec<Reference>,
    #[serde(default)]
    priority: Option<Reference>,
    #[serde(default)]
    urgency: Option<String>,
}

/// Parse a PagerDuty V3 webhook body.
///
/// # Errors
///
/// [`PayloadError::Invalid`] naming the JSON path when the body is not a V3
/// envelope (`event.event_type` missing), or when a triggered/resolved
/// event's incident lacks `id`, `title`, `created_at`, or its `data.type` is
/// not `"incident"`. Event types rollbot does not act on are *not* errors:
/// they return [`PagerDutyDelivery::Ignored`].
pub fn parse_pagerduty(body: &[u8]) -> Result<PagerDutyDelivery, PayloadError> {
    let head: Envelope<EventHead> = payload::decode(ORIGIN, body)?;
    let status = match head.event.event_type.as_str() {
        "incident.triggered" => AlertStatus::Firing,
        "incident.resolved" => AlertStatus::Resolved,
        _ => {
            return Ok(PagerDutyDelivery::Ignored(IgnoredEvent {
                event_id: head.event.id,
                event_type: head.event.event_type,
            }));
        }
    };
    let Envelope { event } = payload::decode::<Envelope<Event>>(ORIGIN, body)?;
    let incident = event.data;
    if incident.kind != "incident" {
        return Err(PayloadError::invalid(
            ORIGIN,
            "event.data.type",
            format!(
                "expected \"incident\" for {}, found {:?}",
                head.event.event_type, incident.kind
            ),
        ));
    }

    let mut labels = BTreeMap::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(v) = non_empty(value) {
            labels.insert(name.to_owned(), v);
        }
    };
    let service = incident.service.unwrap_or(Reference {
        id: None,
        summary: None,
    });
    let priority = incident.priority.and_then(|p| p.summary);
    put("alertname", Some(incident.title.clone()));
    put("service", service.summary);
    put("pagerduty_service_id", service.id);
    put("incident_id", Some(incident.id.clone()));
    put("incident_number", incident.number.map(|n| n.to_string()));
    put("incident_key", incident.incident_key);
    put("urgency", incident.urgency.clone());
    put("priority", priority.clone());
    put("severity", priority.or(incident.urgency));
    put(
        "escalation_policy",
        incident.escalation_policy.and_then(|p| p.summary),
    );
    let teams: Vec<String> = incident
        .teams
        .into_iter()
        .filter_map(|t| t.summary)
        .collect();
    put("teams", Some(teams.join(",")));

    let identity = BTreeMap::from([("incident_id".to_owned(), incident.id.clone())]);
    let group_key = format!("pagerduty:incident:{}", incident.id);
    let alert = AlertEvent::from(NewAlert {
        source: ORIGIN,
        status,
        labels: labels.clone(),
        annotations: BTreeMap::from([("summary".to_owned(), incident.title)]),
        starts_at: incident.created_at,
        ends_at: (status == AlertStatus::Resolved).then_some(event.occurred_at),
        fingerprint: Some(label_set_fingerprint(&identity)),
        group_key: group_key.clone(),
        links: AlertLinks {
            incident_url: non_empty(incident.html_url),
            ..AlertLinks::default()
        },
        values: BTreeMap::new(),
    });
    Ok(PagerDutyDelivery::Alert(AlertBatch {
        source: ORIGIN,
        receiver: None,
        status,
        group_key,
        group_labels: BTreeMap::new(),
        common_labels: labels,
        common_annotations: alert.annotations.clone(),
        external_url: None,
        truncated_alerts: 0,
        alerts: vec![alert],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(event_type: &str, data_type: &str) -> String {
        format!(
            r#"{{"event":{{"id":"E1","event_type":"{event_type}","resource_type":"incident",
            "occurred_at":"2024-01-01T01:00:00Z","agent":null,"client":null,
            "data":{{"id":"P1","type":"{data_type}","title":"Down","created_at":"2024-01-01T00:00:00Z",
            "urgency":"low","priority":null,"teams":[]}}}}}}"#
        )
    }

    #[test]
    fn triggered_and_resolved_share_fingerprint_and_start() {
        let fire = match parse_pagerduty(body("incident.triggered", "incident").as_bytes()).unwrap()
        {
            PagerDutyDelivery::Alert(b) => b,
            other => panic!("{other:?}"),
        };
        let resolve =
            match parse_pagerduty(body("incident.resolved", "incident").as_bytes()).unwrap() {
                PagerDutyDelivery::Alert(b) => b,
                other => panic!("{other:?}"),
            };
        let (f, r) = (&fire.alerts[0], &resolve.alerts[0]);
        assert_eq!(f.status, AlertStatus::Firing);
        assert_eq!(r.status, AlertStatus::Resolved);
        assert_eq!(f.fingerprint, r.fingerprint);
        assert_eq!(f.starts_at, r.starts_at);
        assert_eq!(f.ends_at, None);
        assert_eq!(
            r.ends_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2024-01-01T01:00:00+00:00")
        );
        assert_ne!(f.idempotency_key, r.idempotency_key);
        // No priority: severity falls back to urgency.
        assert_eq!(f.severity, Some(super::super::Severity::Low));
        assert!(!f.labels.contains_key("teams"));
    }

    #[test]
    fn other_event_types_are_ignored_not_errors() {
        let out = parse_pagerduty(br#"{"event":{"id":"X","event_type":"pagey.ping","data":{}}}"#)
            .unwrap();
        let PagerDutyDelivery::Ignored(ignored) = out else {
            panic!("expected Ignored, got {out:?}");
        };
        assert_eq!(ignored.event_type, "pagey.ping");
        assert!(ignored.to_string().contains("incident.triggered"));
    }

    #[test]
    fn non_incident_data_is_an_error() {
        let err =
            parse_pagerduty(body("incident.triggered", "incident_note").as_bytes()).unwrap_err();
        assert_eq!(err.path(), "event.data.type");
    }

    #[test]
    fn missing_envelope_names_path() {
        let err = parse_pagerduty(br#"{"messages":[]}"#).unwrap_err();
        assert_eq!(err.to_string(), "missing field `event`");
        assert_eq!(err.path(), ".");
    }
}
