//! Grafana unified-alerting webhook contact point payloads (version "1").
//!
//! The body is Alertmanager's shape plus Grafana fields: per alert
//! `silenceURL`, `dashboardURL`, `panelURL`, `values` (query refID → number),
//! `valueString`, `imageURL`, `orgId`…; at the top `orgId`, `title`, `state`
//! and `message` (the last three deprecated and ignored here). Grafana may be
//! configured to use PUT instead of POST; that is the HTTP route's concern.
//!
//! Grafana can sign the body: see [`super::auth::verify_grafana_signature`].

use super::alertmanager::parse_template_payload;
use super::event::{AlertBatch, AlertSource};
use super::payload::PayloadError;

/// Payload versions [`parse_grafana`] accepts.
pub const SUPPORTED_VERSIONS: &[&str] = &["1"];

/// Parse a Grafana webhook body.
///
/// `dashboardURL`, `panelURL` and `silenceURL` become [`super::AlertLinks`]
/// (empty strings, which Grafana sends for alerts without a dashboard, become
/// `None`); `values` is kept on the event.
///
/// # Errors
///
/// [`PayloadError::UnsupportedVersion`] if `version` is not `"1"`;
/// [`PayloadError::Invalid`] naming the JSON path for anything malformed.
pub fn parse_grafana(body: &[u8]) -> Result<AlertBatch, PayloadError> {
    parse_template_payload(AlertSource::Grafana, body, SUPPORTED_VERSIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alertmanager_version_is_rejected_with_supported_list() {
        let err = parse_grafana(br#"{"version":"4","status":"firing","alerts":[]}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"version: unsupported Grafana webhook payload version "4"; supported: "1""#
        );
    }

    #[test]
    fn values_and_links_are_kept() {
        let body = br#"{"version":"1","status":"firing","alerts":[{
            "status":"firing","labels":{"alertname":"A"},"annotations":{},
            "startsAt":"2024-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z",
            "dashboardURL":"https://g/d/1","panelURL":"","values":{"B":0.5}}]}"#;
        let batch = parse_grafana(body).unwrap();
        let alert = &batch.alerts[0];
        assert_eq!(alert.links.dashboard_url.as_deref(), Some("https://g/d/1"));
        assert_eq!(alert.links.panel_url, None);
        assert_eq!(alert.values.get("B"), Some(&0.5));
    }
}
