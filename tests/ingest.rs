//! Alert ingestion end to end over real HTTP: webhook routes → routing →
//! engine → deduplicated proposals, resolved alerts, rejections that store
//! nothing, and `/metrics`.

mod support;

use chrono::Duration;
use hmac::{Hmac, Mac};
use rollbot::alerts::parse_alertmanager;
use rollbot::domain::{Origin, State};
use rollbot::engine::MAX_ATTACHED_ALERTS;
use serde_json::{Value, json};
use sha2::Sha256;
use support::*;

const STARTS: &str = "2025-03-14T14:20:00Z";
const ZERO: &str = "0001-01-01T00:00:00Z";

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Asserts a rejected request left no trace: no proposal, no claimed key.
fn assert_nothing_stored(t: &Tester, body: &[u8]) {
    assert!(t.proposals().is_empty(), "a proposal was stored");
    if let Ok(batch) = parse_alertmanager(body) {
        for a in batch.alerts {
            let key = format!("alert:{}", a.idempotency_key);
            assert!(
                t.engine.store().seen(&key).unwrap().is_none(),
                "{key} was claimed by a rejected request"
            );
        }
    }
}

/// Path, headers, expected error text.
type Rejection = (&'static str, Vec<(&'static str, String)>, &'static str);

async fn json_of(r: reqwest::Response) -> Value {
    r.json().await.unwrap()
}

#[tokio::test]
async fn an_alertmanager_alert_proposes_once_and_its_resolution_closes_the_loop() {
    run_test_in(
        || Tester::with_alerts(PAYMENT_ROUTE),
        |t| async move {
            let s = t.serve().await;
            let firing = am_body(vec![am_alert(
                "PaymentSuccessRateLow",
                &[],
                "firing",
                STARTS,
                ZERO,
            )]);

            let r = s.alertmanager(&firing).await;
            assert_eq!(r.status(), 200);
            let answer = json_of(r).await;
            assert_eq!(answer["outcomes"][0]["outcome"], "proposed", "{answer}");

            let all = t.proposals();
            assert_eq!(all.len(), 1);
            let p = &all[0];
            assert_eq!(p.origin, Origin::Alert);
            assert_eq!(p.proposer.as_str(), "system:alertmanager");
            assert_eq!(p.reason, "PaymentSuccessRateLow on payment-api");
            assert_eq!(p.alerts[0].labels["severity"], "critical");
            assert_eq!(
                p.alerts[0].links,
                ["http://prometheus.example/graph?g0.expr=up"]
            );
            // The severity label reached the decision rules.
            let rec = p.recommendation.as_ref().unwrap();
            assert_eq!(rec.advice.as_str(), "roll_back_now", "{rec:?}");

            // Alertmanager re-sends the group (retry, group_interval): idempotent.
            let again = json_of(s.alertmanager(&firing).await).await;
            assert_eq!(again["outcomes"][0]["outcome"], "repeat", "{again}");
            // Another alert for the same service joins the open proposal.
            let other = am_body(vec![am_alert(
                "PaymentLatencyHigh",
                &[],
                "firing",
                STARTS,
                ZERO,
            )]);
            let joined = json_of(s.alertmanager(&other).await).await;
            assert_eq!(joined["outcomes"][0]["outcome"], "attached", "{joined}");
            assert_eq!(t.proposals().len(), 1);
            t.proposal(&p.id)
                .expect_events(&["detected", "proposed", "alert_attached"]);

            // The first alert resolves: a resolved event with its endsAt.
            let resolved = am_body(vec![am_alert(
                "PaymentSuccessRateLow",
                &[],
                "resolved",
                STARTS,
                "2025-03-14T14:40:00.5+01:00",
            )]);
            let r = json_of(s.alertmanager(&resolved).await).await;
            assert_eq!(r["outcomes"][0]["outcome"], "resolved", "{r}");
            let e = t.proposal(&p.id);
            e.expect_state(State::Proposed).expect_events(&[
                "detected",
                "proposed",
                "alert_attached",
                "resolved",
            ]);
            let ends = "2025-03-14T13:40:00.5Z".parse().unwrap();
            assert_eq!(e.proposal.alert_resolved_at, Some(ends));
            // While still proposed, the message notes the alert cleared.
            assert_eq!(t.expect_posted(&p.id), "memory:incidents");
            t.expect_threads(&p.id, &["resolved"]);

            assert_eq!(
                s.metric(
                    r#"rollbot_webhook_requests_total{source="alertmanager",outcome="accepted"}"#
                )
                .await,
                4
            );
            assert_eq!(
                s.metric(r#"rollbot_alerts_received_total{source="alertmanager"}"#)
                    .await,
                4
            );
            assert_eq!(
                s.metric(
                    r#"rollbot_alerts_deduplicated_total{source="alertmanager",reason="repeat"}"#
                )
                .await,
                1
            );
            assert_eq!(
                s.metric(
                    r#"rollbot_alerts_deduplicated_total{source="alertmanager",reason="attached"}"#
                )
                .await,
                1
            );
            assert_eq!(
                s.metric(
                    r#"rollbot_alerts_routed_total{source="alertmanager",service="payment-api"}"#
                )
                .await,
                3
            );
            t
        },
    )
    .await;
}

#[tokio::test]
async fn grouped_mixed_deliveries_with_any_timestamp_precision_are_handled_per_alert() {
    run_test_in(
        || Tester::with_alerts(PAYMENT_ROUTE),
        |t| async move {
            let s = t.serve().await;
            // 0, 3, 9 fractional digits, Z and offsets, zero endsAt, an unmatched alert.
            let body = am_body(vec![
                am_alert("A", &[], "firing", "2025-03-14T14:20:00Z", ZERO),
                am_alert("B", &[], "firing", "2025-03-14T15:20:00.123+01:00", ZERO),
                am_alert(
                    "C",
                    &[],
                    "resolved",
                    "2025-03-14T14:20:00.123456789Z",
                    "2025-03-14T14:25:00-00:30",
                ),
                am_alert("D", &[("service", "search-ui")], "firing", STARTS, ZERO),
            ]);
            let mut body = body;
            body["truncatedAlerts"] = json!(3);
            let r = s.alertmanager(&body).await;
            assert_eq!(r.status(), 200);
            let answer = json_of(r).await;
            let outcomes: Vec<_> = answer["outcomes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["outcome"].as_str().unwrap())
                .collect();
            assert_eq!(
                outcomes,
                ["proposed", "attached", "resolved_untracked", "unmatched"]
            );
            assert_eq!(answer["truncated_alerts"], 3);
            let p = &t.proposals()[0];
            t.expect_posted(&p.id);
            assert_eq!(
                p.alerts[1].starts_at,
                "2025-03-14T14:20:00.123Z"
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .unwrap()
            );
            assert_eq!(
                s.metric(r#"rollbot_alerts_unmatched_total{source="alertmanager"}"#)
                    .await,
                1
            );
            assert_eq!(
                s.metric(r#"rollbot_alerts_truncated_total{source="alertmanager"}"#)
                    .await,
                3
            );
            t
        },
    )
    .await;
}

#[tokio::test]
async fn an_alert_storm_makes_one_proposal_with_a_bounded_timeline() {
    run_test_in(
        || Tester::with_alerts(PAYMENT_ROUTE),
        |t| async move {
            let s = t.serve().await;
            let (requests, per_request) = (500, 20);
            for r in 0..requests {
                let alerts = (0..per_request)
                    .map(|i| {
                        let instance = format!("pod-{}", r * per_request + i);
                        am_alert(
                            "PaymentErrors",
                            &[("instance", &instance)],
                            "firing",
                            STARTS,
                            ZERO,
                        )
                    })
                    .collect();
                let resp = s.alertmanager(&am_body(alerts)).await;
                assert_eq!(resp.status(), 200, "request {r}");
            }
            let all = t.proposals();
            assert_eq!(all.len(), 1, "one proposal for one service");
            // One message, however many alerts.
            t.expect_posted(&all[0].id);
            let e = t.proposal(&all[0].id);
            let total = requests * per_request;
            assert_eq!(e.proposal.alerts.len(), MAX_ATTACHED_ALERTS);
            assert_eq!(
                e.proposal.extra_alerts as usize,
                total - MAX_ATTACHED_ALERTS
            );
            // detected + proposed + one attachment per kept alert after the first.
            assert_eq!(e.timeline.len(), 2 + MAX_ATTACHED_ALERTS - 1);
            assert_eq!(
                s.metric(r#"rollbot_alerts_received_total{source="alertmanager"}"#)
                    .await,
                total as u64
            );
            assert_eq!(
                s.metric(
                    r#"rollbot_alerts_deduplicated_total{source="alertmanager",reason="attached"}"#
                )
                .await,
                total as u64 - 1
            );
            t
        },
    )
    .await;
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_401_and_store_nothing() {
    run_test_in(
        || Tester::with_alerts(PAYMENT_ROUTE),
        |t| async move {
            let s = t.serve().await;
            let body =
                serde_json::to_vec(&am_body(vec![am_alert("A", &[], "firing", STARTS, ZERO)]))
                    .unwrap();
            let cases: [Rejection; 6] = [
                (
                    "/webhooks/alertmanager",
                    vec![],
                    "missing Authorization header",
                ),
                (
                    "/webhooks/alertmanager",
                    vec![("authorization", "Bearer nope".into())],
                    "wrong bearer token",
                ),
                (
                    "/webhooks/alertmanager",
                    vec![("authorization", format!("Basic {AM_TOKEN}"))],
                    "must be `Bearer <credentials>`",
                ),
                (
                    "/webhooks/generic",
                    vec![("authorization", "Basic Y2k6d3Jvbmc=".into())],
                    "wrong username or password",
                ),
                (
                    "/webhooks/grafana",
                    vec![("x-grafana-alerting-signature", hmac_hex("other", &body))],
                    "does not match the request body",
                ),
                (
                    "/webhooks/pagerduty",
                    vec![],
                    "missing X-PagerDuty-Signature",
                ),
            ];
            for (path, headers, expected) in cases {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let r = s.post(path, &headers, body.clone()).await;
                assert_eq!(r.status(), 401, "{path} {headers:?}");
                let err = json_of(r).await;
                let msg = err["error"].as_str().unwrap();
                assert!(msg.contains(expected), "{path}: {msg}");
                assert!(
                    !msg.contains(AM_TOKEN) && !msg.contains(GRAFANA_SECRET),
                    "{msg}"
                );
            }
            assert_nothing_stored(&t, &body);
            assert_eq!(
            s.metric(
                r#"rollbot_webhook_requests_total{source="alertmanager",outcome="unauthorized"}"#
            )
            .await,
            3
        );
            assert_eq!(
                s.metric(r#"rollbot_alerts_received_total{source="alertmanager"}"#)
                    .await,
                0
            );
            t
        },
    )
    .await;
}

#[tokio::test]
async fn malformed_payloads_are_400_naming_the_problem_and_store_nothing() {
    run_test_in(
        || Tester::with_alerts(PAYMENT_ROUTE),
        |t| async move {
            let s = t.serve().await;
            let mut bad_time = am_body(vec![
                am_alert("A", &[], "firing", STARTS, ZERO),
                am_alert("B", &[], "firing", "yesterday", ZERO),
            ]);
            let mut v5 = bad_time.clone();
            v5["version"] = json!("5");
            v5["alerts"].as_array_mut().unwrap().pop();
            bad_time["alerts"][0]["labels"]["x"] = json!("y");
            let cases = [
                (
                    serde_json::to_vec(&bad_time).unwrap(),
                    "alerts[1].startsAt: invalid RFC 3339 timestamp \"yesterday\"",
                ),
                (
                    serde_json::to_vec(&v5).unwrap(),
                    "unsupported Alertmanager webhook payload version \"5\"; supported: \"4\"",
                ),
                (b"{\"version\":\"4\",\"alerts\":[".to_vec(), "EOF"),
            ];
            for (body, expected) in cases {
                let r = s
                    .post(
                        "/webhooks/alertmanager",
                        &[("authorization", &format!("Bearer {AM_TOKEN}"))],
                        body.clone(),
                    )
                    .await;
                assert_eq!(r.status(), 400);
                let msg = json_of(r).await["error"].as_str().unwrap().to_string();
                assert!(msg.contains(expected), "{msg}");
                assert_nothing_stored(&t, &body);
            }
            assert_eq!(
                s.metric(
                    r#"rollbot_webhook_requests_total{source="alertmanager",outcome="bad_request"}"#
                )
                .await,
                3
            );
            t
        },
    )
    .await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_and_store_nothing() {
    let config = format!("[server]\nbody_limit_bytes = 4096\n{PAYMENT_ROUTE}");
    run_test_in(
        || Tester::with_alerts(&config),
        |t| async move {
            let s = t.serve().await;
            let alerts = (0..40)
                .map(|i| {
                    am_alert(
                        "A",
                        &[("instance", &format!("pod-{i}"))],
                        "firing",
                        STARTS,
                        ZERO,
                    )
                })
                .collect();
            let body = serde_json::to_vec(&am_body(alerts)).unwrap();
            assert!(body.len() > 4096);
            let r = s
                .post(
                    "/webhooks/alertmanager",
                    &[("authorization", &format!("Bearer {AM_TOKEN}"))],
                    body.clone(),
                )
                .await;
            assert_eq!(r.status(), 413);
            let msg = json_of(r).await["error"].as_str().unwrap().to_string();
            assert!(
                msg.contains("larger than 4096 bytes (server.body_limit_bytes)"),
                "{msg}"
            );
            assert_nothing_stored(&t, &body);
            assert_eq!(
                s.metric(
                    r#"rollbot_webhook_requests_total{source="alertmanager",outcome="too_large"}"#
                )
                .await,
                1
            );
            t
        },
    )
    .await;
}

#[tokio::test]
async fn a_pending_alert_is_proposed_by_the_tick_once_it_has_fired_long_enough() {
    const ROUTES: &str = r#"
        [[alerts.routes]]
        matchers = ["service=payment-api"]
        service = "payment-api"
        for_duration = "15m"
    "#;
    // Started 10 minutes before t0: due at t0 + 5m.
    let body = &am_body(vec![am_alert("A", &[], "firing", STARTS, ZERO)]);
    run_test_in(
        || Tester::with_alerts(ROUTES),
        |t| async move {
            let s = t.serve().await;
            let answer = json_of(s.alertmanager(body).await).await;
            assert_eq!(answer["outcomes"][0]["outcome"], "pending", "{answer}");
            assert_eq!(answer["outcomes"][0]["until"], "2025-03-14T14:35:00Z");
            t.engine.tick().await.unwrap();
            assert!(t.proposals().is_empty());

            // No new delivery: the tick alone proposes it once due.
            t.clock.advance(Duration::minutes(5));
            t.engine.tick().await.unwrap();
            let all = t.proposals();
            assert_eq!(all.len(), 1);
            assert_eq!(all[0].alerts[0].name, "A");
            t.engine.tick().await.unwrap();
            assert_eq!(t.proposals().len(), 1);
            t.expect_posted(&all[0].id);
            t
        },
    )
    .await;

    // An alert that resolves while pending never proposes.
    run_test_in(
        || Tester::with_alerts(ROUTES),
        |t| async move {
            let s = t.serve().await;
            s.alertmanager(body).await;
            let resolved = am_body(vec![am_alert(
                "A",
                &[],
                "resolved",
                STARTS,
                "2025-03-14T14:31:00Z",
            )]);
            let answer = json_of(s.alertmanager(&resolved).await).await;
            assert_eq!(
                answer["outcomes"][0]["outcome"], "cleared_while_pending",
                "{answer}"
            );
            t.clock.advance(Duration::minutes(30));
            t.engine.tick().await.unwrap();
            assert!(t.proposals().is_empty());
            t
        },
    )
    .await;
}

#[tokio::test]
async fn routes_filter_by_severity_and_may_only_record() {
    const ROUTES: &str = r#"
        [[alerts.routes]]
        matchers = ["service=payment-api"]
        service = "payment-api"
        severities = ["critical"]
        [[alerts.routes]]
        matchers = ["service=~search.*"]
        service = "search"
        auto_propose = false
    "#;
    run_test_in(
        || Tester::with_alerts(ROUTES),
        |t| async move {
            let s = t.serve().await;
            let body = am_body(vec![
                am_alert("Warn", &[("severity", "warning")], "firing", STARTS, ZERO),
                am_alert("Search", &[("service", "search")], "firing", STARTS, ZERO),
            ]);
            let answer = json_of(s.alertmanager(&body).await).await;
            let outcomes: Vec<_> = answer["outcomes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["outcome"].clone())
                .collect();
            assert_eq!(
                outcomes,
                [json!("unmatched"), json!("not_proposed")],
                "{answer}"
            );
            assert!(t.proposals().is_empty());
            let body = am_body(vec![am_alert(
                "Crit",
                &[("severity", "SEV-1")],
                "firing",
                STARTS,
                ZERO,
            )]);
            let answer = json_of(s.alertmanager(&body).await).await;
            assert_eq!(answer["outcomes"][0]["outcome"], "proposed", "{answer}");
            let p = &t.proposals()[0];
            assert_eq!(p.reason, "Crit on payment-api");
            t.expect_posted(&p.id);
            t
        },
    )
    .await;
}

#[tokio::test]
async fn grafana_generic_and_pagerduty_deliveries_propose_with_their_identity() {
    const ROUTES: &str = r#"
        [[alerts.routes]]
        matchers = ["team=blue"]
        service = "payment-api"
        [[alerts.routes]]
        matchers = ["service=~search|API Service"]
        service = "search"
    "#;
    run_test_in(
        || Tester::with_alerts(ROUTES),
        |t| async move {
            let s = t.serve().await;

            // Grafana, signed, sent with PUT as Grafana may be configured to.
            let body = std::fs::read("tests/data/alerts/grafana/webhook.firing.docs.json").unwrap();
            let r = s
                .client
                .put(format!("{}/webhooks/grafana", s.base))
                .header(
                    "X-Grafana-Alerting-Signature",
                    hmac_hex(GRAFANA_SECRET, &body),
                )
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let answer = json_of(r).await;
            assert_eq!(answer["outcomes"][0]["outcome"], "proposed", "{answer}");
            assert_eq!(answer["outcomes"][1]["outcome"], "attached", "{answer}");
            let p = &t.proposals()[0];
            assert_eq!(p.proposer.as_str(), "system:grafana");
            t.expect_posted(&p.id);
            assert_eq!(
                p.alerts[0].links[..2],
                [
                    "https://play.grafana.org/alerting/1afz29v7z/edit",
                    "https://myrunbook.com/runbook/1234"
                ]
            );

            // PagerDuty V3, signed (with a rotated-out entry first).
            let body = std::fs::read(
                "tests/data/alerts/pagerduty/webhook_v3.incident.triggered.assembled.json",
            )
            .unwrap();
            let sig = format!(
                "v1={},v1={}",
                hmac_hex("old", &body),
                hmac_hex(PD_SECRET, &body)
            );
            let r = s
                .post(
                    "/webhooks/pagerduty",
                    &[("x-pagerduty-signature", &sig)],
                    body,
                )
                .await;
            assert_eq!(r.status(), 200);
            let answer = json_of(r).await;
            assert_eq!(answer["outcomes"][0]["outcome"], "proposed", "{answer}");
            assert_eq!(answer["outcomes"][0]["service"], "search", "{answer}");

            // Generic, basic auth; the open search proposal absorbs it.
            let body = serde_json::to_vec(&json!({
                "alertname": "SearchDown", "service": "search", "startsAt": STARTS,
                "summary": "search is down",
            }))
            .unwrap();
            let basic = format!("Basic {}", base64_of(&format!("ci:{GENERIC_PASSWORD}")));
            let r = s
                .post("/webhooks/generic", &[("authorization", &basic)], body)
                .await;
            assert_eq!(r.status(), 200);
            let answer = json_of(r).await;
            assert_eq!(answer["outcomes"][0]["outcome"], "attached", "{answer}");
            assert_eq!(t.proposals().len(), 2);
            let search = t.expect_new_proposal();
            assert_eq!(t.engine.get(&search).unwrap().service.as_str(), "search");
            t
        },
    )
    .await;
}

#[tokio::test]
async fn a_source_without_config_is_404_saying_how_to_enable_it() {
    run_test(|t| async move {
        let s = t.serve().await;
        let r = s.post("/webhooks/alertmanager", &[], b"{}".to_vec()).await;
        assert_eq!(r.status(), 404);
        let msg = json_of(r).await["error"].as_str().unwrap().to_string();
        assert!(msg.contains("add an [alerts.alertmanager] table"), "{msg}");
        t
    })
    .await;
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
