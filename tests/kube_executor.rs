//! The kube-rs rollback executor against the simulator, checked for
//! equivalence with real `kubectl rollout undo` on an identical simulator.

mod support;
mod support_sim;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use rollbot::exec::kubernetes::{KubeError, KubeExecutor, KubeTarget, Outcome, WorkloadKind};
use rollbot::sim::Kind;
use serde_json::Value;
use support_sim::{Sim, fast_seed, start};

const NAME: &str = "prod-payment-deploy";
const FOLLOW: Duration = Duration::from_secs(60);

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("test timed out");
}

fn target(kind: WorkloadKind, name: &str) -> KubeTarget {
    KubeTarget {
        kind,
        namespace: "production".into(),
        name: name.into(),
    }
}

fn executor(sim: &Sim) -> KubeExecutor {
    KubeExecutor::for_url(&sim.handle.url()).expect("client")
}

/// What must be identical after the same rollback on two simulators.
fn snapshot(sim: &Sim, kind: Kind, name: &str) -> (Value, Value, BTreeMap<String, Value>) {
    let obj = sim.handle.get(kind, "production", name).expect("workload");
    let history_kind = if kind == Kind::Deployment {
        Kind::ReplicaSet
    } else {
        Kind::ControllerRevision
    };
    let history = sim
        .handle
        .list(history_kind, Some("production"))
        .into_iter()
        .filter(|o| o["metadata"]["name"].as_str().unwrap().starts_with(name))
        .map(|o| {
            let key = o["metadata"]["name"].as_str().unwrap().to_owned();
            let v = if kind == Kind::Deployment {
                serde_json::json!({"annotations": o["metadata"]["annotations"], "replicas": o["spec"]["replicas"]})
            } else {
                o["revision"].clone()
            };
            (key, v)
        })
        .collect();
    (
        obj["spec"].clone(),
        obj["metadata"]["annotations"].clone(),
        history,
    )
}

async fn equivalent_undo(kind: WorkloadKind, name: &str, to_revision: Option<u64>) {
    let (sim_kind, short) = match kind {
        WorkloadKind::Deployment => (Kind::Deployment, "deploy"),
        WorkloadKind::StatefulSet => (Kind::StatefulSet, "sts"),
        WorkloadKind::DaemonSet => (Kind::DaemonSet, "ds"),
    };
    let a = start(fast_seed()).await;
    let b = start(fast_seed()).await;
    let res = format!("{short}/{name}");
    let mut args = vec!["rollout", "undo", res.as_str()];
    let rev_arg = to_revision.map(|r| format!("--to-revision={r}"));
    if let Some(r) = &rev_arg {
        args.push(r);
    }
    a.kubectl_ok(&args).await;
    a.kubectl_ok(&["rollout", "status", &res, "--timeout", "60s"])
        .await;

    let exec = executor(&b);
    let t = target(kind, name);
    let plan = exec.plan(&t, to_revision).await.expect("plan");
    assert_ne!(plan.current.images, plan.rollback_to.images);
    assert_eq!(
        exec.execute(&plan).await.expect("execute"),
        Outcome::RolledBack
    );
    let mut lines = Vec::new();
    exec.follow(&t, |l| lines.push(l), FOLLOW)
        .await
        .expect("follow");
    assert!(
        lines.last().is_some_and(
            |l| l.contains("successfully rolled out") || l.contains("roll out complete")
        ),
        "{lines:?}"
    );
    // The last controller writes (history cleanup, revision bump) land
    // after the rollout reports done: wait until both sides agree, and on
    // a timeout show where they differ.
    support::poll_until_sync(support::WAIT_LIMIT, || {
        snapshot(&a, sim_kind, name) == snapshot(&b, sim_kind, name)
    })
    .await;
    assert_eq!(snapshot(&a, sim_kind, name), snapshot(&b, sim_kind, name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_to_previous_matches_kubectl() {
    bounded(equivalent_undo(WorkloadKind::Deployment, NAME, None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_to_explicit_revision_matches_kubectl() {
    bounded(equivalent_undo(WorkloadKind::Deployment, NAME, Some(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_and_daemonset_undo_match_kubectl() {
    bounded(async {
        equivalent_undo(WorkloadKind::StatefulSet, "ledger-db", None).await;
        equivalent_undo(WorkloadKind::DaemonSet, "log-agent", None).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_describes_current_and_target() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let plan = executor(&sim)
            .plan(&target(WorkloadKind::Deployment, NAME), None)
            .await
            .unwrap();
        assert_eq!(plan.current.revision, 3);
        assert_eq!(
            plan.current.images,
            [("payment-api".to_owned(), "payment-api:v1.3.0".to_owned())]
        );
        assert_eq!(
            plan.current.change_cause.as_deref(),
            Some("CHG-2025-015: upgrade to v1.3.0")
        );
        assert_eq!(plan.rollback_to.revision, 2);
        assert_eq!(plan.rollback_to.images[0].1, "payment-api:v1.2.0");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_match_kubectl_wording() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let exec = executor(&sim);
        let t = target(WorkloadKind::Deployment, NAME);

        let err = exec.plan(&t, Some(3)).await.unwrap_err();
        assert!(matches!(err, KubeError::AlreadyCurrent(3)), "{err}");
        let kubectl = sim
            .kubectl_ok(&[
                "rollout",
                "undo",
                "deploy/prod-payment-deploy",
                "--to-revision=3",
            ])
            .await;
        assert!(kubectl.contains(&err.to_string()), "{kubectl} vs {err}");

        let err = exec.plan(&t, Some(9)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find specified revision 9 in history"
        );

        let fresh = target(WorkloadKind::Deployment, "fresh-deploy");
        let err = exec.plan(&fresh, None).await.unwrap_err();
        let kubectl = sim
            .kubectl(&["rollout", "undo", "deploy/fresh-deploy"])
            .await;
        assert!(
            kubectl.stderr.contains(&err.to_string()),
            "{} vs {err}",
            kubectl.stderr
        );

        let err = exec
            .plan(&target(WorkloadKind::Deployment, "nosuch"), None)
            .await
            .unwrap_err();
        assert!(matches!(err, KubeError::NotFound { .. }), "{err}");

        // Nothing was patched by any of these.
        assert!(!sim.handle.requests().iter().any(|r| r.method == "PATCH"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_between_plan_and_execute_supersedes_the_plan() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let exec = executor(&sim);
        let t = target(WorkloadKind::Deployment, NAME);
        let plan = exec.plan(&t, None).await.unwrap();
        sim.kubectl_ok(&[
            "set",
            "image",
            "deploy/prod-payment-deploy",
            "payment-api=payment-api:v1.4.0",
        ])
        .await;
        let patches_before = sim
            .handle
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count();
        support::wait_until(
            "the controller assigns revision 4 to the new template",
            || {
                sim.handle
                    .get(Kind::Deployment, "production", NAME)
                    .is_some_and(|d| {
                        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
                    })
            },
        )
        .await;
        let outcome = exec.execute(&plan).await.unwrap();
        assert!(matches!(outcome, Outcome::Superseded { .. }), "{outcome:?}");
        let patches_after = sim
            .handle
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count();
        assert_eq!(
            patches_before, patches_after,
            "execute must not patch a superseded plan"
        );
        let d = sim
            .handle
            .get(Kind::Deployment, "production", NAME)
            .unwrap();
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "payment-api:v1.4.0"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_a_bad_release_reports_the_progress_deadline() {
    bounded(async {
        let sim = start(fast_seed()).await;
        sim.kubectl_ok(&["set", "image", "deploy/prod-payment-deploy", "payment-api=payment-api:v1.3.1-broken"])
            .await;
        let mut lines = Vec::new();
        let err = executor(&sim)
            .follow(&target(WorkloadKind::Deployment, NAME), |l| lines.push(l), FOLLOW)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), r#"deployment "prod-payment-deploy" exceeded its progress deadline"#);
        assert!(
            lines.iter().any(|l| l
                == r#"Waiting for deployment "prod-payment-deploy" rollout to finish: 1 out of 3 new replicas have been updated..."#),
            "{lines:?}"
        );
    })
    .await;
}
