//! The reference incident end to end through the real application: the
//! Alertmanager webhook, the engine, the Kubernetes executor against the
//! simulator, verification against the simulator's metric, the resolved
//! notice and the report — with the in-memory chat recording the channel.

mod support;

use std::time::Duration;

use rollbot::app::App;
use rollbot::config::Config;
use rollbot::domain::{State, VoteKind, VoteVia};
use rollbot::ports::ThreadNote;
use rollbot::ports::memory::{ChatCall, MemoryChat};
use support::*;

#[tokio::test]
async fn alert_to_report_on_the_simulated_cluster() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let seed = rollbot::sim::seed::Seed::from_file("config/sim-payment.yaml".as_ref()).unwrap();
        let sim = rollbot::sim::start(
            seed,
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .await
        .unwrap();
        sim.write_kubeconfig(&dir.path().join("kubeconfig"))
            .unwrap();
        std::fs::write(dir.path().join("token"), "t0ken").unwrap();
        let config = Config::parse(&format!(
            r#"
            [store]
            path = "{dir}/db"
            [approval]
            channel = "memory:incidents"
            [groups]
            sre = ["slack:UALICE", "slack:UBOB"]
            [services.payment-api]
            groups = ["sre"]
            locale = "ja"
            [services.payment-api.kubernetes]
            namespace = "production"
            name = "prod-payment-deploy"
            [services.payment-api.verify]
            window = "30s"
            interval = "1s"
            [[services.payment-api.verify.prometheus]]
            name = "payment success rate"
            query = "payment_success_rate"
            op = ">="
            threshold = 0.98
            [prometheus]
            url = "{sim}"
            [progress]
            edit_interval = "1s"
            [kubernetes]
            kubeconfig = "{dir}/kubeconfig"
            [alerts.alertmanager]
            bearer_token = {{ file = "{dir}/token" }}
            [[alerts.routes]]
            matchers = ["alertname=PaymentSuccessRateLow"]
            service = "payment-api"
            "#,
            dir = dir.path().display(),
            sim = sim.url()
        ))
        .unwrap();
        let chat = MemoryChat::new();
        let app = App::start(&config, Some(chat.clone())).await.unwrap();
        let engine = app.engine().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(app.serve(listener, std::future::pending()));

        let client = reqwest::Client::new();
        // The alert started six minutes ago, within the simulator's history.
        let starts = (chrono::Utc::now() - chrono::Duration::minutes(6)).to_rfc3339();
        let deliver = |status: &'static str, ends: String| {
            let client = client.clone();
            let base = base.clone();
            let starts = starts.clone();
            async move {
                let alert = am_alert(
                    "PaymentSuccessRateLow",
                    &[("scope", "all")],
                    status,
                    &starts,
                    &ends,
                );
                let r = client
                    .post(format!("{base}/webhooks/alertmanager"))
                    .bearer_auth("t0ken")
                    .json(&am_body(vec![alert]))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            }
        };
        deliver("firing", "0001-01-01T00:00:00Z".into()).await;
        let p = engine.store().list().unwrap().pop().expect("one proposal");
        assert_eq!(p.plan.target.images[0].image, "payment-api:v1.2.0");
        for who in ["slack:UALICE", "slack:UBOB"] {
            engine
                .vote(&p.id, &user(who), VoteKind::Approve, VoteVia::Reaction)
                .await
                .unwrap();
        }
        // The simulator's metric recovers within the verification window.
        wait_until_within(
            Duration::from_secs(45),
            "the rollback is verified or has failed",
            async || {
                !matches!(
                    engine.get(&p.id).unwrap().state,
                    State::Approved | State::Executing | State::RolledBack
                )
            },
        )
        .await;
        assert_eq!(engine.get(&p.id).unwrap().state, State::Verified);
        deliver("resolved", chrono::Utc::now().to_rfc3339()).await;
        tokio::time::timeout(
            Duration::from_secs(20),
            chat.wait_for(|c| {
                c.iter().any(|c| {
                    matches!(
                        c,
                        ChatCall::Thread {
                            note: ThreadNote::Report { .. },
                            ..
                        }
                    )
                })
            }),
        )
        .await
        .expect("the report is posted");

        assert_eq!(chat.take_post(&p.id).as_deref(), Some("memory:incidents"));
        let notes = chat.take_threads(&p.id);
        let mut order: Vec<&'static str> = notes
            .iter()
            .map(|note| match note {
                ThreadNote::ExecutionStarted => "started",
                ThreadNote::Progress { .. } => "progress",
                ThreadNote::ExecutionFinished { ok: true, .. } => "finished",
                ThreadNote::Verification { passed: true, .. } => "verified",
                ThreadNote::Resolved { .. } => "resolved",
                ThreadNote::Report { .. } => "report",
                _ => "other",
            })
            .collect();
        // Progress lines beyond the first may be new messages or edits,
        // depending on timing.
        order.dedup();
        assert_eq!(
            order,
            [
                "started", "progress", "finished", "verified", "resolved", "report"
            ],
            "{notes:?}"
        );
        let Some(ThreadNote::Report {
            markdown,
            chart_png,
        }) = notes.last().cloned()
        else {
            unreachable!("the order above ends with the report")
        };
        let report = (markdown, chart_png);
        // The service's locale is Japanese; the values are the simulator's.
        assert!(
            report.0.contains("インシデント") || report.0.contains("報告"),
            "{}",
            report.0
        );
        assert!(
            report.0.contains("0.95") && report.0.contains("0.998"),
            "{}",
            report.0
        );
        let png = report.1.expect("a chart");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        // run_test's end-of-test checks, on the whole application's engine.
        if let Err(failure) = finish(&engine, &chat).await {
            panic!("{failure}");
        }
    })
    .await;
}
