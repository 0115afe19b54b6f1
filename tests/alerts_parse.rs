//! Alert ingestion against real captured payloads (`tests/data/alerts/`):
//! every fixture is parsed and snapshotted, plus timestamp edge cases,
//! error paths, signature vectors and routing decisions.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use rollbot::alerts::{
    AlertBatch, AlertEvent, AlertStatus, AuthError, AuthFailure, GrafanaSigning, PagerDutyDelivery,
    PayloadError, RouteConfig, RouteConfigError, RouteDecision, Router, Severity,
    label_set_fingerprint, parse_alertmanager, parse_generic, parse_grafana, parse_pagerduty,
    verify_basic, verify_bearer, verify_grafana_signature, verify_pagerduty_signature,
};
use serde_json::{Value, json};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/alerts")
}

fn fixture(rel: &str) -> Vec<u8> {
    fs::read(data_dir().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn json_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(data_dir().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .contains("hmac_vectors")
        })
        .collect();
    files.sort();
    files
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn snapshot_name(path: &Path) -> String {
    let dir = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let file = path.file_stem().unwrap().to_str().unwrap();
    format!("{dir}__{file}")
}

/// Parse a fixture after editing it as JSON, so edge cases start from a real payload.
fn edited(rel: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(&fixture(rel)).unwrap();
    edit(&mut value);
    serde_json::to_vec(&value).unwrap()
}

const AM_FIRING: &str = "alertmanager/webhook.v4.firing.assembled_from_test.json";
const AM_RESOLVED: &str = "alertmanager/webhook.v4.resolved.assembled_from_test.json";
const AM_MIXED: &str =
    "alertmanager/webhook.v4.mixed_firing_resolved.pre_v0.32_shape.assembled.json";
const GRAFANA_FIRING: &str = "grafana/webhook.firing.docs.json";
const PD_TRIGGERED: &str = "pagerduty/webhook_v3.incident.triggered.assembled.json";
const PD_PRIORITY: &str = "pagerduty/webhook_v3.incident.priority_updated.docs.json";

// ---- every fixture, snapshotted ------------------------------------------

#[test]
fn every_alertmanager_fixture_parses() {
    let files = json_files("alertmanager");
    assert_eq!(files.len(), 3, "fixtures: {files:?}");
    for path in files {
        let batch = parse_alertmanager(&fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Alertmanager's fingerprints are Prometheus label-set fingerprints.
        for alert in &batch.alerts {
            assert_eq!(alert.fingerprint, label_set_fingerprint(&alert.labels));
        }
        insta::assert_yaml_snapshot!(snapshot_name(&path), batch);
    }
}

#[test]
fn every_grafana_fixture_parses() {
    let files = json_files("grafana");
    assert_eq!(files.len(), 2, "fixtures: {files:?}");
    for path in files {
        let batch = parse_grafana(&fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        insta::assert_yaml_snapshot!(snapshot_name(&path), batch);
    }
}

#[test]
fn every_pagerduty_fixture_parses() {
    let files = json_files("pagerduty");
    assert_eq!(files.len(), 2, "fixtures: {files:?}");
    for path in files {
        let delivery = parse_pagerduty(&fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        insta::assert_yaml_snapshot!(snapshot_name(&path), delivery);
    }
}

#[test]
fn every_generic_fixture_parses() {
    let files = json_files("generic");
    assert_eq!(files.len(), 1, "fixtures: {files:?}");
    for path in files {
        let batch = parse_generic(&fs::read(&path).unwrap(), utc(NOW))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let alert = &batch.alerts[0];
        assert_eq!(alert.labels["service"], "payment-api");
        assert_eq!(alert.severity, Some(Severity::Critical));
        insta::assert_yaml_snapshot!(snapshot_name(&path), batch);
    }
}

// ---- Alertmanager semantics ----------------------------------------------

#[test]
fn alertmanager_mixed_group_keeps_each_status() {
    let batch = parse_alertmanager(&fixture(AM_MIXED)).unwrap();
    assert_eq!(batch.status, AlertStatus::Firing);
    assert_eq!(batch.receiver.as_deref(), Some("chatops-bot"));
    let statuses: Vec<_> = batch.alerts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [AlertStatus::Firing, AlertStatus::Resolved]);
    let [firing, resolved] = &batch.alerts[..] else {
        panic!("two alerts expected")
    };
    assert_eq!(firing.ends_at, None);
    assert_eq!(resolved.ends_at, Some(utc("2024-05-01T09:55:00.456Z")));
    assert_eq!(firing.severity, Some(Severity::Critical));
    assert_eq!(
        firing.links.runbook_url.as_deref(),
        Some("https://runbooks.example.com/high-error-rate")
    );
    assert!(
        firing
            .links
            .generator_url
            .as_deref()
            .unwrap()
            .starts_with("http://prometheus:9090/")
    );
    assert_eq!(firing.group_key, batch.group_key);
}

#[test]
fn identical_deliveries_share_idempotency_keys_and_new_states_do_not() {
    let first = parse_alertmanager(&fixture(AM_FIRING)).unwrap();
    // A retry or a group_interval re-send: same body, possibly re-serialized.
    let resend = parse_alertmanager(&edited(AM_FIRING, |_| {})).unwrap();
    assert_eq!(
        first.alerts[0].idempotency_key,
        resend.alerts[0].idempotency_key
    );

    let resolved = parse_alertmanager(&fixture(AM_RESOLVED)).unwrap();
    assert_eq!(first.alerts[0].fingerprint, resolved.alerts[0].fingerprint);
    assert_ne!(
        first.alerts[0].idempotency_key,
        resolved.alerts[0].idempotency_key
    );

    let refired = parse_alertmanager(&edited(AM_FIRING, |v| {
        v["alerts"][0]["startsAt"] = json!("2020-01-02T00:00:00Z");
    }))
    .unwrap();
    assert_ne!(
        first.alerts[0].idempotency_key,
        refired.alerts[0].idempotency_key
    );

    let other_group = parse_alertmanager(&edited(AM_FIRING, |v| {
        v["groupKey"] = json!("{}:{alertname=\"test2\"}");
    }))
    .unwrap();
    assert_ne!(
        first.alerts[0].idempotency_key,
        other_group.alerts[0].idempotency_key
    );
}

#[test]
fn timestamps_with_zero_and_nine_fraction_digits_and_offsets() {
    let body = edited(AM_MIXED, |v| {
        v["alerts"][0]["startsAt"] = json!("2024-05-01T10:00:00Z");
        v["alerts"][1]["startsAt"] = json!("2024-05-01T18:40:00.123456789+09:00");
        v["alerts"][1]["endsAt"] = json!("2024-05-01T09:55:00.000000001Z");
    });
    let batch = parse_alertmanager(&body).unwrap();
    assert_eq!(batch.alerts[0].starts_at, utc("2024-05-01T10:00:00Z"));
    assert_eq!(
        batch.alerts[0].ends_at, None,
        "zero endsAt means still firing"
    );
    assert_eq!(
        batch.alerts[1]
            .starts_at
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "2024-05-01T09:40:00.123456789Z"
    );
    assert_eq!(
        batch.alerts[1].ends_at.unwrap().timestamp_subsec_nanos(),
        1,
        "nanosecond precision kept"
    );
    // Grafana's docs payload uses a +02:00 offset with microseconds.
    let grafana = parse_grafana(&fixture(GRAFANA_FIRING)).unwrap();
    assert_eq!(
        grafana.alerts[0].starts_at,
        utc("2021-10-12T07:51:03.157076Z")
    );
}

#[test]
fn truncated_alerts_are_reported() {
    let body = edited(AM_MIXED, |v| v["truncatedAlerts"] = json!(7));
    assert_eq!(parse_alertmanager(&body).unwrap().truncated_alerts, 7);
}

#[test]
fn newer_alertmanager_fields_are_ignored() {
    let body = edited(AM_FIRING, |v| {
        v["routeLabels"] = json!({"team": "payments"});
        v["alerts"][0]["someFutureField"] = json!({"nested": [1, 2, 3]});
    });
    parse_alertmanager(&body).unwrap();
}

// ---- errors name the JSON path -------------------------------------------

fn invalid(err: PayloadError) -> (String, String) {
    let shown = err.to_string();
    match err {
        PayloadError::Invalid { path, .. } => (path, shown),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn bad_timestamp_error_names_path_and_value() {
    let body = edited(AM_MIXED, |v| {
        v["alerts"][1]["startsAt"] = json!("yesterday")
    });
    let (path, shown) = invalid(parse_alertmanager(&body).unwrap_err());
    assert_eq!(path, "alerts[1].startsAt");
    assert_eq!(
        shown,
        r#"alerts[1].startsAt: invalid RFC 3339 timestamp "yesterday""#
    );
}

#[test]
fn wrong_types_and_missing_fields_name_paths() {
    let body = edited(AM_MIXED, |v| {
        v["alerts"][0]["labels"]["severity"] = json!(3)
    });
    let (path, shown) = invalid(parse_alertmanager(&body).unwrap_err());
    assert_eq!(path, "alerts[0].labels.severity");
    assert!(shown.contains("expected a string"), "{shown}");

    let body = edited(GRAFANA_FIRING, |v| {
        v["alerts"][1].as_object_mut().unwrap().remove("startsAt");
    });
    let (path, shown) = invalid(parse_grafana(&body).unwrap_err());
    assert_eq!(path, "alerts[1]");
    assert!(shown.contains("missing field `startsAt`"), "{shown}");

    let body = edited(PD_TRIGGERED, |v| {
        v["event"]["data"]["created_at"] = json!(12)
    });
    let (path, _) = invalid(parse_pagerduty(&body).unwrap_err());
    assert_eq!(path, "event.data.created_at");
}

#[test]
fn malformed_json_is_an_error_with_position() {
    let mut body = fixture(AM_FIRING);
    body.truncate(body.len() / 2);
    let (_, shown) = invalid(parse_alertmanager(&body).unwrap_err());
    assert!(shown.contains("line"), "{shown}");
    let (path, _) = invalid(parse_generic(b"not json", utc("2025-01-01T00:00:00Z")).unwrap_err());
    assert_eq!(path, ".");
}

#[test]
fn unknown_versions_list_supported_ones() {
    let body = edited(AM_FIRING, |v| v["version"] = json!("5"));
    let err = parse_alertmanager(&body).unwrap_err();
    assert!(matches!(err, PayloadError::UnsupportedVersion { .. }));
    assert_eq!(
        err.to_string(),
        r#"version: unsupported Alertmanager webhook payload version "5"; supported: "4""#
    );
    // A Grafana body on the Alertmanager route (and vice versa) is caught by version.
    let err = parse_alertmanager(&fixture(GRAFANA_FIRING)).unwrap_err();
    assert!(err.to_string().contains(r#"version "1""#), "{err}");
    let err = parse_grafana(&fixture(AM_FIRING)).unwrap_err();
    assert!(err.to_string().contains(r#"supported: "1""#), "{err}");
}

// ---- PagerDuty -----------------------------------------------------------

#[test]
fn pagerduty_triggered_maps_service_urgency_and_link() {
    let PagerDutyDelivery::Alert(batch) = parse_pagerduty(&fixture(PD_TRIGGERED)).unwrap() else {
        panic!("triggered must be an alert")
    };
    let alert = &batch.alerts[0];
    assert_eq!(alert.status, AlertStatus::Firing);
    assert_eq!(alert.alert_name, "A little bump in the road");
    assert_eq!(alert.labels["service"], "API Service");
    assert_eq!(alert.labels["urgency"], "high");
    assert!(!alert.labels.contains_key("priority"), "priority is null");
    assert_eq!(alert.severity, Some(Severity::High));
    assert_eq!(
        alert.links.incident_url.as_deref(),
        Some("https://acme.pagerduty.com/incidents/PGR0VU2")
    );
    assert_eq!(alert.starts_at, utc("2020-04-09T15:16:27Z"));

    let resolved = edited(PD_TRIGGERED, |v| {
        v["event"]["event_type"] = json!("incident.resolved");
        v["event"]["occurred_at"] = json!("2020-04-09T15:46:27.000Z");
        v["event"]["data"]["status"] = json!("resolved");
    });
    let PagerDutyDelivery::Alert(res) = parse_pagerduty(&resolved).unwrap() else {
        panic!("resolved must be an alert")
    };
    assert_eq!(res.alerts[0].status, AlertStatus::Resolved);
    assert_eq!(res.alerts[0].ends_at, Some(utc("2020-04-09T15:46:27Z")));
    assert_eq!(res.alerts[0].fingerprint, alert.fingerprint);
}

#[test]
fn pagerduty_other_event_types_are_ignored() {
    match parse_pagerduty(&fixture(PD_PRIORITY)).unwrap() {
        PagerDutyDelivery::Ignored(ignored) => {
            assert_eq!(ignored.event_type, "incident.priority_updated");
            assert_eq!(ignored.event_id, "5ac64822-4adc-4fda-ade0-410becf0de4f");
        }
        other => panic!("expected Ignored, got {other:?}"),
    }
}

// ---- signatures and credentials ------------------------------------------

#[test]
fn grafana_hmac_vectors_pass_and_tampering_fails() {
    let vectors: Value =
        serde_json::from_slice(&fixture("grafana/webhook_hmac_vectors.derived.json")).unwrap();
    let vectors = vectors["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 4);
    for v in vectors {
        let secret = v["secret"].as_str().unwrap().as_bytes();
        let body = v["body"].as_str().unwrap().as_bytes();
        let sig = v["expected_signature"].as_str().unwrap();
        let ts_header = v["timestamp_header"].as_str();
        let ts = v["timestamp"].as_str();
        let signing = GrafanaSigning {
            timestamp_header: ts_header,
            ..GrafanaSigning::default()
        };
        verify_grafana_signature(secret, signing, Some(sig), ts, body)
            .unwrap_or_else(|e| panic!("vector {v}: {e}"));

        let mut tampered = body.to_vec();
        tampered.push(b'!');
        let err = verify_grafana_signature(secret, signing, Some(sig), ts, &tampered).unwrap_err();
        assert_eq!(err.kind(), AuthFailure::Wrong, "vector {v}");
        let err = verify_grafana_signature(b"other", signing, Some(sig), ts, body).unwrap_err();
        assert_eq!(err.kind(), AuthFailure::Wrong, "vector {v}");
        if ts_header.is_some() {
            let err = verify_grafana_signature(secret, signing, Some(sig), Some("1"), body);
            assert_eq!(
                err.unwrap_err().kind(),
                AuthFailure::Wrong,
                "changed timestamp"
            );
        }
    }
}

fn pagerduty_sig(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn pagerduty_signature_list_accepts_any_matching_entry() {
    let body = fixture(PD_TRIGGERED);
    let header = format!(
        "{},{}",
        pagerduty_sig(b"old-secret", &body),
        pagerduty_sig(b"new-secret", &body)
    );
    verify_pagerduty_signature(b"new-secret", Some(&header), &body).unwrap();
    verify_pagerduty_signature(b"old-secret", Some(&header), &body).unwrap();
    let err = verify_pagerduty_signature(b"unknown", Some(&header), &body).unwrap_err();
    assert!(matches!(err, AuthError::WrongSignature { .. }));
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let err = verify_pagerduty_signature(b"new-secret", Some(&header), &tampered).unwrap_err();
    assert_eq!(err.kind(), AuthFailure::Wrong);
    let err = verify_pagerduty_signature(b"new-secret", None, &body).unwrap_err();
    assert_eq!(err.kind(), AuthFailure::Missing);
    assert!(err.to_string().contains("X-PagerDuty-Signature"), "{err}");
}

#[test]
fn bearer_and_basic_good_missing_wrong() {
    verify_bearer(Some("Bearer t0ken"), "t0ken").unwrap();
    assert_eq!(
        verify_bearer(None, "t0ken").unwrap_err().kind(),
        AuthFailure::Missing
    );
    assert_eq!(
        verify_bearer(Some("Bearer nope"), "t0ken")
            .unwrap_err()
            .kind(),
        AuthFailure::Wrong
    );

    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("am:pw")
    );
    verify_basic(Some(&good), "am", "pw").unwrap();
    let err = verify_basic(None, "am", "pw").unwrap_err();
    assert_eq!(err.kind(), AuthFailure::Missing);
    assert!(err.to_string().contains("basic_auth"), "{err}");
    let bad = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("am:px")
    );
    assert_eq!(
        verify_basic(Some(&bad), "am", "pw"),
        Err(AuthError::WrongBasicCredentials)
    );
}

// ---- routing -------------------------------------------------------------

fn routes(toml_text: &str) -> Result<Router, RouteConfigError> {
    #[derive(serde::Deserialize)]
    struct Config {
        routes: Vec<RouteConfig>,
    }
    let config: Config = toml::from_str(toml_text).expect("route TOML");
    Router::new(&config.routes)
}

fn event(labels: &[(&str, &str)], starts_at: &str) -> AlertEvent {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    AlertEvent::from(rollbot::alerts::NewAlert {
        labels,
        starts_at: utc(starts_at),
        group_key: "g".into(),
        ..Default::default()
    })
}

fn service(decision: &RouteDecision) -> Option<&str> {
    match decision {
        RouteDecision::Matched { service, .. } => Some(service),
        RouteDecision::Unmatched => None,
    }
}

const NOW: &str = "2025-01-15T14:35:00Z";

#[test]
fn routes_by_equality_regex_and_negative_matchers() {
    let router = routes(
        r#"
        [[routes]]
        matchers = ["alertname=PaymentSuccessRateLow", "env!=staging"]
        service = "payment-api"

        [[routes]]
        matchers = ['service=~"checkout-.*"', "namespace!~dev|test"]
        service = "checkout"
        auto_propose = false
        "#,
    )
    .unwrap();
    let now = utc(NOW);
    let pay = event(
        &[("alertname", "PaymentSuccessRateLow"), ("env", "prod")],
        NOW,
    );
    assert_eq!(service(&router.route(&pay, now)), Some("payment-api"));
    let pay_staging = event(
        &[("alertname", "PaymentSuccessRateLow"), ("env", "staging")],
        NOW,
    );
    assert_eq!(router.route(&pay_staging, now), RouteDecision::Unmatched);

    let checkout = event(&[("service", "checkout-api"), ("namespace", "prod")], NOW);
    assert_eq!(
        router.route(&checkout, now),
        RouteDecision::Matched {
            route: 1,
            service: "checkout".into(),
            auto_propose: false,
            ready: true,
            wait_until: None,
        }
    );
    let checkout_dev = event(&[("service", "checkout-api"), ("namespace", "dev")], NOW);
    assert_eq!(router.route(&checkout_dev, now), RouteDecision::Unmatched);
    // Anchored: a substring is not a match.
    let precheckout = event(&[("service", "precheckout-api")], NOW);
    assert_eq!(router.route(&precheckout, now), RouteDecision::Unmatched);
}

#[test]
fn first_matching_route_wins() {
    let router = routes(
        r#"
        [[routes]]
        matchers = ["service=payment-api"]
        severities = ["critical"]
        service = "payment-critical"

        [[routes]]
        matchers = ["service=payment-api"]
        service = "payment-any"

        [[routes]]
        service = "catch-all"
        "#,
    )
    .unwrap();
    let now = utc(NOW);
    let crit = event(&[("service", "payment-api"), ("severity", "P0")], NOW);
    let warn = event(&[("service", "payment-api"), ("severity", "warning")], NOW);
    let none = event(&[("service", "payment-api")], NOW);
    let other = event(&[("service", "search")], NOW);
    assert_eq!(service(&router.route(&crit, now)), Some("payment-critical"));
    assert_eq!(service(&router.route(&warn, now)), Some("payment-any"));
    assert_eq!(service(&router.route(&none, now)), Some("payment-any"));
    assert_eq!(service(&router.route(&other, now)), Some("catch-all"));
}

#[test]
fn severity_filter_uses_normalized_severity() {
    let router = routes(
        r#"
        [[routes]]
        severities = ["critical", "high"]
        service = "s"
        "#,
    )
    .unwrap();
    let now = utc(NOW);
    for (label, matched) in [
        ("sev1", true),
        ("page", true),
        ("p2", false),
        ("info", false),
        ("???", false),
    ] {
        let e = event(&[("severity", label)], NOW);
        assert_eq!(
            service(&router.route(&e, now)).is_some(),
            matched,
            "severity {label}"
        );
    }
    assert_eq!(
        router.route(&event(&[], NOW), now),
        RouteDecision::Unmatched
    );
}

#[test]
fn min_duration_before_and_after() {
    let router = routes(
        r#"
        [[routes]]
        matchers = ["alertname=PaymentSuccessRateLow"]
        service = "payment-api"
        for_duration = "5m"
        "#,
    )
    .unwrap();
    let e = event(
        &[("alertname", "PaymentSuccessRateLow")],
        "2025-01-15T14:30:00Z",
    );
    let due = utc("2025-01-15T14:35:00Z");
    let before = router.route(&e, due - TimeDelta::seconds(1));
    assert_eq!(
        before,
        RouteDecision::Matched {
            route: 0,
            service: "payment-api".into(),
            auto_propose: true,
            ready: false,
            wait_until: Some(due),
        }
    );
    for now in [due, due + TimeDelta::hours(1)] {
        assert!(matches!(
            router.route(&e, now),
            RouteDecision::Matched {
                ready: true,
                wait_until: None,
                ..
            }
        ));
    }
}

#[test]
fn routes_real_fixture_alerts() {
    let router = routes(
        r#"
        [[routes]]
        matchers = ["alertname=HighErrorRate", "namespace=prod"]
        service = "checkout-api"
        "#,
    )
    .unwrap();
    let batch: AlertBatch = parse_alertmanager(&fixture(AM_MIXED)).unwrap();
    let decisions: Vec<_> = batch
        .alerts
        .iter()
        .map(|a| service(&router.route(a, utc(NOW))).map(str::to_owned))
        .collect();
    assert_eq!(decisions, [Some("checkout-api".to_owned()), None]);
}

#[test]
fn bad_route_configs_name_the_problem() {
    let err = routes(
        r#"
        [[routes]]
        service = "ok"
        [[routes]]
        matchers = ["alertname=A", "service=~payment-("]
        service = "payment-api"
        "#,
    )
    .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with("routes[1].matchers[1]: invalid matcher \"service=~payment-(\""),
        "{shown}"
    );
    assert!(matches!(
        err,
        RouteConfigError::InvalidMatcher {
            route: 1,
            index: 1,
            ..
        }
    ));

    let err = routes("[[routes]]\nmatchers = [\"alertname\"]\nservice = \"s\"").unwrap_err();
    assert!(
        err.to_string().contains("expected =, !=, =~ or !~"),
        "{err}"
    );

    let err = routes("[[routes]]\nservice = \"s\"\nseverities = [\"urgent\"]").unwrap_err();
    assert_eq!(
        err.to_string(),
        "routes[0].severities[0]: unknown severity \"urgent\": use critical, high, medium or low (aliases such as p0-p4, sev1-sev5, warning, info are accepted)"
    );

    let err = routes("[[routes]]\nservice = \"s\"\nfor_duration = \"5 fortnights\"").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("routes[0].for_duration: invalid duration \"5 fortnights\""),
        "{err}"
    );

    let err = routes("[[routes]]\nservice = \" \"").unwrap_err();
    assert!(matches!(err, RouteConfigError::EmptyService { route: 0 }));

    // deny_unknown_fields: a typo is a config error, not a silently ignored key.
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Config {
        routes: Vec<RouteConfig>,
    }
    let typo = toml::from_str::<Config>("[[routes]]\nservice = \"s\"\nauto_propse = false");
    assert!(typo.unwrap_err().to_string().contains("auto_propse"));
}
