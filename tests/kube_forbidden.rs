//! What rollbot and kubectl do when RBAC refuses a request, on a simulator
//! whose seed forbids it (`forbid:` rules): the raw `403` Status, real
//! kubectl's output, the executor's `Forbidden` error, and the engine's
//! proposal states.
//!
//! kubectl comes from `$KUBECTL` or `/usr/bin/kubectl`; a missing kubectl
//! fails the kubectl tests.

mod support;
mod support_sim;

use std::sync::Arc;

use rollbot::domain::{EventKind, State};
use rollbot::engine::EngineError;
use rollbot::exec::KubeRollback;
use rollbot::exec::kubernetes::{KubeError, KubeExecutor, KubeTarget, Outcome, WorkloadKind};
use rollbot::ports::ExecErrorKind;
use rollbot::sim::Kind;
use rollbot::sim::seed::ForbidRule;
use serde_json::{Value, json};
use support::{CONFIG, Tester, bounded, run_test_in};
use support_sim::{Sim, fast_seed, start};

const NAME: &str = "prod-payment-deploy";

/// What kube-apiserver says when rollbot's service account may not patch
/// the Deployment.
const PATCH_DENIED: &str = r#"deployments.apps "prod-payment-deploy" is forbidden: User "system:serviceaccount:rollbot:rollbot" cannot patch resource "deployments" in API group "apps" in the namespace "production""#;

/// A simulator of the reference incident that refuses `verb` on `resource`
/// in `production`.
async fn forbidding(verb: &str, resource: &str) -> Sim {
    let mut seed = fast_seed();
    seed.forbid = vec![ForbidRule {
        verb: verb.into(),
        resource: resource.into(),
        namespace: Some("production".into()),
    }];
    start(seed).await
}

fn target() -> KubeTarget {
    KubeTarget {
        kind: WorkloadKind::Deployment,
        namespace: "production".into(),
        name: NAME.into(),
    }
}

fn image_of(sim: &Sim) -> String {
    let d = sim
        .handle
        .get(Kind::Deployment, "production", NAME)
        .unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Asserts `message` says what was refused and which RBAC rule to add.
fn assert_says_what_to_grant(message: &str, verb: &str, plural: &str) {
    for part in [
        format!("rollbot may not {verb} {plural}.apps in namespace \"production\""),
        format!("cannot {verb} resource \"{plural}\" in API group \"apps\""),
        format!(
            "grant {verb} on {plural}.apps in namespace production to rollbot's service account"
        ),
        format!(r#"{{apiGroups: ["apps"], resources: ["{plural}"], verbs: ["{verb}"]}}"#),
        "deploy/rbac.yaml".to_owned(),
    ] {
        assert!(message.contains(&part), "{part:?} missing from: {message}");
    }
}

#[tokio::test]
async fn a_forbidden_request_gets_kube_apiservers_status() {
    bounded(async {
        let sim = forbidding("patch", "deployments").await;
        let url = format!(
            "{}/apis/apps/v1/namespaces/production/deployments/{NAME}",
            sim.handle.url()
        );
        let client = reqwest::Client::new();
        let r = client
            .patch(&url)
            .header("Content-Type", "application/merge-patch+json")
            .body(r#"{"spec":{"replicas":1}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": PATCH_DENIED, "reason": "Forbidden",
                "details": {"name": NAME, "group": "apps", "kind": "deployments"}, "code": 403})
        );
        // Refused before the object is looked at, as the API server does.
        let r = client
            .patch(format!("{url}-nosuch"))
            .header("Content-Type", "application/merge-patch+json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        // Other verbs on the same object, and the same verb elsewhere, pass.
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
        let r = client
            .patch(format!("{url}/scale"))
            .header("Content-Type", "application/merge-patch+json")
            .body(r#"{"spec":{"replicas":3}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "deployments/scale is another resource");
        assert_eq!(
            sim.handle
                .get(Kind::Deployment, "production", NAME)
                .unwrap()["spec"]["replicas"],
            3
        );
    })
    .await;
}

#[tokio::test]
async fn a_forbidden_list_names_no_object() {
    bounded(async {
        let sim = forbidding("list", "deployments").await;
        let r = reqwest::get(format!(
            "{}/apis/apps/v1/namespaces/production/deployments",
            sim.handle.url()
        ))
        .await
        .unwrap();
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["message"],
            r#"deployments.apps is forbidden: User "system:serviceaccount:rollbot:rollbot" cannot list resource "deployments" in API group "apps" in the namespace "production""#
        );
        assert_eq!(body["details"], json!({"group": "apps", "kind": "deployments"}));
        // kubectl shows the API error as it is.
        let out = sim.kubectl(&["get", "deployments"]).await;
        assert!(!out.ok);
        assert_eq!(
            out.stderr,
            format!("Error from server (Forbidden): {}\n", body["message"].as_str().unwrap())
        );
    })
    .await;
}

#[tokio::test]
async fn kubectl_rollout_undo_reports_the_forbidden_patch() {
    bounded(async {
        let sim = forbidding("patch", "deployments").await;
        // Reading the history is allowed.
        let history = sim
            .kubectl_ok(&["rollout", "history", &format!("deployment/{NAME}")])
            .await;
        assert!(history.contains("CHG-2025-015"), "{history}");
        let out = sim
            .kubectl(&["rollout", "undo", &format!("deployment/{NAME}")])
            .await;
        assert!(!out.ok, "undo succeeded: {}", out.stdout);
        // kubectl's DeploymentRollbacker wraps the patch error in its own
        // ("failed restoring revision %d: %v", with the requested revision,
        // 0 for "previous"), so the output has no "Error from server" prefix:
        // the same as against a real cluster.
        assert_eq!(
            out.stderr,
            format!("error: failed restoring revision 0: {PATCH_DENIED}\n")
        );
        assert_eq!(
            image_of(&sim),
            "payment-api:v1.3.0",
            "nothing was rolled back"
        );
    })
    .await;
}

#[tokio::test]
async fn kubectl_rollout_undo_reports_a_forbidden_read() {
    bounded(async {
        let sim = forbidding("get", "deployments").await;
        let out = sim
            .kubectl(&["rollout", "undo", &format!("deployment/{NAME}")])
            .await;
        assert!(!out.ok, "undo succeeded: {}", out.stdout);
        // The resource builder's GET fails: kubectl prints the API error.
        assert_eq!(
            out.stderr,
            format!(
                "Error from server (Forbidden): {}\n",
                PATCH_DENIED.replace("cannot patch", "cannot get")
            )
        );
        assert_eq!(image_of(&sim), "payment-api:v1.3.0");
    })
    .await;
}

#[tokio::test]
async fn plan_without_list_on_replicasets_is_forbidden_and_says_what_to_grant() {
    bounded(async {
        let sim = forbidding("list", "replicasets").await;
        let exec = KubeExecutor::for_url(&sim.handle.url()).unwrap();
        let err = exec.plan(&target(), None).await.unwrap_err();
        let KubeError::Forbidden {
            verb,
            resource,
            namespace,
            message,
        } = &err
        else {
            panic!("expected Forbidden, got {err:?}");
        };
        assert_eq!((*verb, *resource, namespace.as_str()), ("list", "replicasets.apps", "production"));
        assert_eq!(
            message,
            r#"replicasets.apps is forbidden: User "system:serviceaccount:rollbot:rollbot" cannot list resource "replicasets" in API group "apps" in the namespace "production""#
        );
        assert_says_what_to_grant(&err.to_string(), "list", "replicasets");
    })
    .await;
}

#[tokio::test]
async fn execute_without_patch_on_deployments_is_forbidden_and_changes_nothing() {
    bounded(async {
        let sim = forbidding("patch", "deployments").await;
        let exec = KubeExecutor::for_url(&sim.handle.url()).unwrap();
        // Planning only reads.
        let plan = exec.plan(&target(), None).await.unwrap();
        assert_eq!(plan.rollback_to.revision, 2);
        let err = exec.execute(&plan).await.unwrap_err();
        let KubeError::Forbidden {
            verb,
            resource,
            message,
            ..
        } = &err
        else {
            panic!("expected Forbidden, got {err:?}");
        };
        assert_eq!((*verb, *resource), ("patch", "deployments.apps"));
        assert_eq!(message, PATCH_DENIED);
        assert_says_what_to_grant(&err.to_string(), "patch", "deployments");
        assert_eq!(image_of(&sim), "payment-api:v1.3.0");
        // With the grant in place (a simulator without the rule), the same
        // plan goes through: the refusal was RBAC's alone.
        let allowed = start(fast_seed()).await;
        let exec = KubeExecutor::for_url(&allowed.handle.url()).unwrap();
        let plan = exec.plan(&target(), None).await.unwrap();
        assert_eq!(exec.execute(&plan).await.unwrap(), Outcome::RolledBack);
    })
    .await;
}

fn tester(sim: &Sim) -> Tester {
    let exec = KubeRollback::new(KubeExecutor::for_url(&sim.handle.url()).unwrap());
    Tester::with_executor(CONFIG, Arc::new(exec))
}

#[tokio::test]
async fn an_approved_rollback_refused_by_rbac_fails_with_what_to_grant() {
    let sim = &forbidding("patch", "deployments").await;
    run_test_in(
        || tester(sim),
        |t| async move {
            let p = t.propose_by("slack:UALICE").await.unwrap();
            assert_eq!(p.plan.target.revision, 2);
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            let x = t.proposal(&p.id);
            x.expect_state(State::Failed);
            let details: Vec<&str> = x
                .timeline
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::ExecutionFinished { ok: false, detail } => Some(detail.as_str()),
                    _ => None,
                })
                .collect();
            let [detail] = details.as_slice() else {
                panic!("expected one failed execution, got {details:?}");
            };
            assert!(detail.contains(PATCH_DENIED), "{detail}");
            assert_says_what_to_grant(detail, "patch", "deployments");
            assert_eq!(image_of(sim), "payment-api:v1.3.0");
            assert_eq!(t.expect_posted(&p.id), "memory:incidents");
            let notes = t.expect_threads(&p.id, &["execution_started", "execution_failed"]);
            // The thread tells people the same: forbidden, and what to grant.
            let rollbot::ports::ThreadNote::ExecutionFailed { error } = &notes[1] else {
                unreachable!("checked by name above");
            };
            assert_eq!(error.kind, ExecErrorKind::Forbidden);
            assert_says_what_to_grant(&error.message, "patch", "deployments");
            t
        },
    )
    .await;
}

#[tokio::test]
async fn proposing_without_read_access_is_a_plan_error_with_what_to_grant() {
    let sim = &forbidding("list", "replicasets").await;
    run_test_in(
        || tester(sim),
        |t| async move {
            let err = t.propose_by("slack:UALICE").await.unwrap_err();
            let EngineError::Plan { source, .. } = &err else {
                panic!("expected a plan error, got {err:?}");
            };
            assert_eq!(source.kind, ExecErrorKind::Forbidden);
            assert_says_what_to_grant(&source.message, "list", "replicasets");
            assert!(
                err.to_string()
                    .starts_with("cannot plan a rollback of payment-api: forbidden: "),
                "{err}"
            );
            assert!(t.proposals().is_empty(), "no proposal was opened");
            // Nothing but reads reached the cluster.
            assert!(sim.handle.requests().iter().all(|r| r.method == "GET"));
            t
        },
    )
    .await;
}
