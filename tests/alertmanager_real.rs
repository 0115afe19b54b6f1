//! A real Prometheus Alertmanager (Debian package `prometheus-alertmanager`)
//! delivering to rollbot's real router over loopback: alerts posted to its
//! v2 API must become exactly one proposal, a resolution must reach the
//! proposal's timeline, and Alertmanager's retries after a 500 must not
//! duplicate anything.
//!
//! The binary is required, not optional: without it these tests fail and
//! say to run `scripts/test.sh`, which installs it.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use support::*;

const BINARY: &str = "/usr/bin/prometheus-alertmanager";

/// How long Alertmanager may take to start or deliver: its group waits
/// and retry back-off are seconds, not milliseconds.
const ALERTMANAGER_WAIT: Duration = Duration::from_secs(30);

/// A running Alertmanager, killed (by its own pid) when dropped.
struct Alertmanager {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Alertmanager {
    /// Starts Alertmanager with a webhook receiver pointing at `rollbot`
    /// (base URL) with the bearer token, and waits until it is ready.
    async fn start(rollbot: &str) -> Self {
        assert!(
            Path::new(BINARY).exists(),
            "{BINARY} is missing: run scripts/test.sh (it installs the Debian package prometheus-alertmanager), or `apt-get install prometheus-alertmanager`"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        // Short waits so a test takes seconds; repeat_interval long so only
        // changes and retries cause deliveries.
        std::fs::write(
            &config,
            format!(
                r#"
route:
  receiver: rollbot
  group_by: ["service"]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: rollbot
    webhook_configs:
      - url: "{rollbot}/webhooks/alertmanager"
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: "{AM_TOKEN}"
"#
            ),
        )
        .unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let storage = dir.path().join("data");
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg(format!("--web.external-url={base}/"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BINARY}: {e}; run scripts/test.sh"));
        let mut am = Alertmanager {
            child,
            base,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let ready = format!("{}/-/ready", am.base);
        wait_until_within(ALERTMANAGER_WAIT, "Alertmanager is ready", async || {
            if let Some(status) = am.child.try_wait().unwrap() {
                panic!("Alertmanager exited at start-up with {status}; see its stderr above");
            }
            client
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        am
    }

    /// `POST /api/v2/alerts`.
    async fn post_alerts(&self, alerts: serde_json::Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.base))
            .json(&alerts)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "Alertmanager refused the alerts: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
}

fn alert(instance: &str, ends_at: Option<chrono::DateTime<Utc>>) -> serde_json::Value {
    let mut a = json!({
        "labels": {
            "alertname": "PaymentSuccessRateLow",
            "service": "payment-api",
            "severity": "critical",
            "instance": instance,
        },
        "annotations": { "summary": "payment success rate 95% < 98%" },
        "generatorURL": "http://prometheus.example/graph?g0.expr=payment_success_rate",
        "startsAt": (Utc::now() - chrono::Duration::minutes(10)).to_rfc3339(),
    });
    if let Some(end) = ends_at {
        a["endsAt"] = json!(end.to_rfc3339());
    }
    a
}

#[tokio::test]
async fn alertmanager_alerts_become_one_proposal_and_resolve_it() {
    run_test_in(
        || Tester::with_alerts(PAYMENT_ROUTE),
        |t| async move {
            let s = t.serve().await;
            let am = Alertmanager::start(&s.base).await;

            let starts = alert("pod-a", None)["startsAt"].clone();
            let mut a = alert("pod-a", None);
            let mut b = alert("pod-b", None);
            a["startsAt"] = starts.clone();
            b["startsAt"] = starts.clone();
            am.post_alerts(json!([a, b])).await;

            wait_until_within(
                ALERTMANAGER_WAIT,
                "one proposal with both alerts",
                async || t.proposals().first().is_some_and(|p| p.alerts.len() == 2),
            )
            .await;
            let all = t.proposals();
            assert_eq!(all.len(), 1, "exactly one proposal for payment-api");
            let p = &all[0];
            assert_eq!(p.service.as_str(), "payment-api");
            assert_eq!(p.proposer.as_str(), "system:alertmanager");
            assert_eq!(p.reason, "payment success rate 95% < 98%");

            // Resolve pod-a: the same alert with endsAt in the past.
            let mut resolved = alert("pod-a", Some(Utc::now() - chrono::Duration::seconds(5)));
            resolved["startsAt"] = starts;
            am.post_alerts(json!([resolved])).await;
            wait_until_within(ALERTMANAGER_WAIT, "the resolved event", async || {
                t.proposal(&p.id).events().contains(&"resolved")
            })
            .await;
            let e = t.proposal(&p.id);
            e.expect_events(&["detected", "proposed", "alert_attached", "resolved"]);
            // One message for both alerts, and the notice that the alert cleared.
            t.expect_posted(&p.id);
            t.expect_thread_soon(&p.id, "resolved").await;
            assert!(e.proposal.alert_resolved_at.is_some());
            assert_eq!(t.proposals().len(), 1);
            assert_eq!(
            s.metric(
                r#"rollbot_webhook_requests_total{source="alertmanager",outcome="unauthorized"}"#
            )
            .await,
            0,
            "Alertmanager's bearer token was refused"
        );
            t
        },
    )
    .await;
}

#[tokio::test]
async fn alertmanager_retries_after_a_500_do_not_duplicate() {
    run_test_in(
        || Tester::with_alerts(PAYMENT_ROUTE),
        |t| async move {
            let s = t.serve().await;
            // The first delivery is processed, then answered 500 as if rollbot
            // had crashed before replying; Alertmanager must retry.
            s.state.faults.fail_next_deliveries(1);
            let am = Alertmanager::start(&s.base).await;
            am.post_alerts(json!([alert("pod-a", None)])).await;

            let accepted =
                r#"rollbot_webhook_requests_total{source="alertmanager",outcome="accepted"}"#;
            let failed = r#"rollbot_webhook_requests_total{source="alertmanager",outcome="error"}"#;
            wait_until_within(
                ALERTMANAGER_WAIT,
                "a retry accepted after the 500",
                async || s.metric(failed).await == 1 && s.metric(accepted).await >= 1,
            )
            .await;
            let all = t.proposals();
            assert_eq!(all.len(), 1, "the retry must not open a second proposal");
            t.expect_posted(&all[0].id);
            t.proposal(&all[0].id)
                .expect_events(&["detected", "proposed"]);
            assert!(
                s.metric(
                    r#"rollbot_alerts_deduplicated_total{source="alertmanager",reason="repeat"}"#
                )
                .await
                    >= 1,
                "the retried alert was recognised as a repeat"
            );
            t
        },
    )
    .await;
}
