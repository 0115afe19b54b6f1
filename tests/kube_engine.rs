//! The engine driving the real Kubernetes executor against the simulator:
//! the reference incident's rollback, v1.3.0 back to v1.2.0.

mod support;

use std::sync::Arc;

use rollbot::domain::{EventKind, State};
use rollbot::exec::KubeRollback;
use rollbot::exec::kubernetes::KubeExecutor;
use rollbot::sim::{self, Kind, seed::Seed};
use support::*;

async fn sim() -> sim::SimHandle {
    let seed = Seed::from_file("config/sim-payment.yaml".as_ref()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    sim::start(seed, listener).await.unwrap()
}

fn image_of(sim: &sim::SimHandle) -> String {
    let d = sim
        .get(Kind::Deployment, "production", "prod-payment-deploy")
        .unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn two_approvals_roll_the_deployment_back_with_kubectl_progress() {
    let sim = sim().await;
    let exec = KubeRollback::new(KubeExecutor::for_url(&sim.url()).unwrap());
    run_test_in(
        || Tester::with_executor(CONFIG, Arc::new(exec)),
        |t| async move {
            let p = t.propose_by("slack:UALICE").await.unwrap();
            // The plan is kubectl's: previous = revision 2, v1.2.0.
            assert_eq!(p.plan.current.revision, 3);
            assert_eq!(p.plan.current.images[0].image, "payment-api:v1.3.0");
            assert_eq!(p.plan.target.revision, 2);
            assert_eq!(p.plan.target.images[0].image, "payment-api:v1.2.0");
            assert_eq!(
                p.plan.current.change_cause.as_deref(),
                Some("CHG-2025-015: upgrade to v1.3.0")
            );
            assert_eq!(image_of(&sim), "payment-api:v1.3.0");
            assert_eq!(success_rate(&sim).await, 0.95);

            t.approve(&p.id, "slack:UBOB").await;
            assert_eq!(
                image_of(&sim),
                "payment-api:v1.3.0",
                "one approval changes nothing"
            );
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;

            assert_eq!(image_of(&sim), "payment-api:v1.2.0");
            let x = t.proposal(&p.id);
            x.expect_state(State::RolledBack);
            let lines: Vec<_> = x
                .timeline
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::Progress { line } => Some(line.as_str()),
                    _ => None,
                })
                .collect();
            assert!(
                lines.iter().any(|l| l.starts_with(
                    "Waiting for deployment \"prod-payment-deploy\" rollout to finish:"
                )),
                "{lines:?}"
            );
            assert_eq!(
                lines.last().copied(),
                Some("deployment \"prod-payment-deploy\" successfully rolled out")
            );
            // Exactly one PATCH reached the cluster.
            let patches = sim
                .requests()
                .iter()
                .filter(|r| r.method == "PATCH")
                .count();
            assert_eq!(patches, 1);
            // The simulated payment success rate recovered with the rollback.
            assert_eq!(success_rate(&sim).await, 0.998);
            assert_eq!(t.expect_posted(&p.id), "memory:incidents");
            t.expect_threads(
                &p.id,
                &["execution_started", "progress", "execution_finished"],
            );
            t
        },
    )
    .await;
}

async fn success_rate(sim: &sim::SimHandle) -> f64 {
    let v: serde_json::Value = reqwest::get(format!(
        "{}/api/v1/query?query=payment_success_rate",
        sim.url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_simulated_metric_answers_like_prometheus() {
    bounded(async {
        let sim = sim().await;
        let client = reqwest::Client::new();
        // Form POST, as Prometheus clients may send it.
        let v: serde_json::Value = client
            .post(format!("{}/api/v1/query", sim.url()))
            .form(&[("query", "payment_success_rate")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["data"]["resultType"], "vector");
        assert_eq!(
            v["data"]["result"][0]["metric"]["__name__"],
            "payment_success_rate"
        );
        // The sampler records history for query_range.
        let now = chrono::Utc::now().timestamp();
        let url = format!(
            "{}/api/v1/query_range?query=payment_success_rate&start={}&end={}&step=1",
            sim.url(),
            now - 5,
            now + 1
        );
        let mut range = serde_json::Value::Null;
        let sampled = poll_until(WAIT_LIMIT, async || {
            range = client.get(&url).send().await.unwrap().json().await.unwrap();
            !range["data"]["result"][0]["values"]
                .as_array()
                .unwrap()
                .is_empty()
        })
        .await;
        assert!(sampled, "no sample within {WAIT_LIMIT:?}: {range}");
        assert_eq!(range["data"]["resultType"], "matrix");
        assert_eq!(range["data"]["result"][0]["values"][0][1], "0.95");
        let r = client
            .get(format!("{}/api/v1/query?query=up", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(e["errorType"], "bad_data");
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .contains("payment_success_rate")
        );
    })
    .await;
}

#[tokio::test]
async fn a_revision_that_moved_after_approval_supersedes_the_proposal() {
    let sim = sim().await;
    let exec = KubeRollback::new(KubeExecutor::for_url(&sim.url()).unwrap());
    run_test_in(
        || Tester::with_executor(CONFIG, Arc::new(exec)),
        |t| async move {
            let p = t.propose_by("slack:UALICE").await.unwrap();
            // Someone deploys a hotfix while people are voting.
            let kubeconfig = t.dir.path().join("kubeconfig");
            sim.write_kubeconfig(&kubeconfig).unwrap();
            let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "/usr/bin/kubectl".into());
            // tokio's Command: a blocking wait would stall the in-process simulator.
            let out = tokio::process::Command::new(&kubectl)
                .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
                .args(["--cache-dir", t.dir.path().join("cache").to_str().unwrap()])
                .args([
                    "-n",
                    "production",
                    "set",
                    "image",
                    "deployment/prod-payment-deploy",
                ])
                .arg("payment-api=payment-api:v1.3.1")
                .output()
                .await
                .unwrap_or_else(|e| panic!("cannot run {kubectl}: {e}; run scripts/test.sh"));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            t.proposal(&p.id).expect_state(State::Superseded);
            assert_eq!(
                image_of(&sim),
                "payment-api:v1.3.1",
                "the hotfix was not rolled back"
            );
            assert_eq!(t.expect_posted(&p.id), "memory:incidents");
            t.expect_threads(&p.id, &["execution_started", "superseded"]);
            t
        },
    )
    .await;
}
