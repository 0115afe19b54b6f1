//! The simulated API server against the real kubectl binary (and a few raw
//! HTTP checks of the API semantics kubectl and kube-rs rely on).
//!
//! kubectl comes from `$KUBECTL` or `/usr/bin/kubectl`; a missing kubectl
//! fails these tests. Everything runs on 127.0.0.1 with port 0.

mod support;
mod support_sim;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use rollbot::sim::Kind;
use serde_json::{Value, json};
use support_sim::{fast_seed, history_revisions, start, words};

const DEPLOY: &str = "deploy/prod-payment-deploy";

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("test timed out");
}

/// Unfreezes the pods once a watch request has arrived. kubectl lists
/// before it watches, so it has seen the frozen rollout by then; and a
/// watch replays from its resourceVersion, so no event is lost however
/// soon after the request the pods move.
async fn release_when_watched(sim: &rollbot::sim::SimHandle) {
    support::wait_until("kubectl watches the rollout", || {
        sim.requests()
            .iter()
            .any(|r| r.query.contains("watch=true"))
    })
    .await;
    sim.set_pods_frozen(false);
}

fn image_of(d: &Value) -> String {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_deploy_prints_table_with_real_numbers() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let out = sim.kubectl_ok(&["get", "deploy"]).await;
        let w = words(&out);
        assert_eq!(
            w[0],
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            "{out}"
        );
        let row = w
            .iter()
            .find(|r| r[0] == "prod-payment-deploy")
            .expect(&out);
        assert_eq!(&row[1..4], ["3/3", "3", "3"], "{out}");
        let wide = sim
            .kubectl_ok(&["get", "deploy", "prod-payment-deploy", "-o", "wide"])
            .await;
        assert!(
            wide.contains("payment-api:v1.3.0") && wide.contains("app=payment-api"),
            "{wide}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_missing_deployment_is_not_found() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let out = sim.kubectl(&["get", "deploy", "nosuch"]).await;
        assert!(!out.ok);
        assert!(
            out.stderr
                .contains(r#"Error from server (NotFound): deployments.apps "nosuch" not found"#),
            "{}",
            out.stderr
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_revisions_and_shows_one_template() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let out = sim.kubectl_ok(&["rollout", "history", DEPLOY]).await;
        assert_eq!(
            out,
            "deployment.apps/prod-payment-deploy \nREVISION  CHANGE-CAUSE\n\
             1         CHG-2025-007: initial release v1.1.0\n\
             2         CHG-2025-011: upgrade to v1.2.0\n\
             3         CHG-2025-015: upgrade to v1.3.0\n\n"
        );
        let rev = sim
            .kubectl_ok(&["rollout", "history", DEPLOY, "--revision", "2"])
            .await;
        assert!(
            rev.starts_with("deployment.apps/prod-payment-deploy with revision #2"),
            "{rev}"
        );
        assert!(rev.contains("Image:\tpayment-api:v1.2.0"), "{rev}");
        assert!(rev.contains("pod-template-hash="), "{rev}");
        let missing = sim
            .kubectl(&["rollout", "history", DEPLOY, "--revision", "7"])
            .await;
        assert!(!missing.ok);
        assert!(
            missing
                .stderr
                .contains("unable to find the specified revision"),
            "{}",
            missing.stderr
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_rolls_back_and_reuses_the_old_replicaset() {
    bounded(async {
        let sim = start(fast_seed()).await;
        // Hold the rollout until kubectl watches, so the progress lines are
        // seen whatever the machine's speed.
        sim.handle.set_pods_frozen(true);
        let out = sim.kubectl_ok(&["rollout", "undo", DEPLOY]).await;
        assert_eq!(out, "deployment.apps/prod-payment-deploy rolled back\n");
        let (status, ()) = tokio::join!(
            sim.kubectl_ok(&["rollout", "status", DEPLOY, "--timeout", "60s"]),
            release_when_watched(&sim.handle),
        );
        let lines: Vec<&str> = status.lines().collect();
        assert_eq!(
            lines.last(),
            Some(&r#"deployment "prod-payment-deploy" successfully rolled out"#),
            "{status}"
        );
        assert!(lines.len() > 1, "expected progress lines before success:\n{status}");
        for l in &lines[..lines.len() - 1] {
            assert!(
                l.starts_with(r#"Waiting for deployment "prod-payment-deploy" rollout to finish: "#)
                    || *l == "Waiting for deployment spec update to be observed...",
                "{l}"
            );
        }
        let history = sim.kubectl_ok(&["rollout", "history", DEPLOY]).await;
        assert_eq!(history_revisions(&history), [1, 3, 4], "{history}");
        assert!(history.contains("4         CHG-2025-011: upgrade to v1.2.0"), "{history}");
        let d = sim.handle.get(Kind::Deployment, "production", "prod-payment-deploy").unwrap();
        assert_eq!(image_of(&d), "payment-api:v1.2.0");
        assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "4");
        // The reused ReplicaSet (no duplicate was created) remembers its old number.
        let rss = sim.handle.list(Kind::ReplicaSet, Some("production"));
        let owned: Vec<&Value> = rss
            .iter()
            .filter(|r| r["metadata"]["name"].as_str().unwrap().starts_with("prod-payment-deploy-"))
            .collect();
        assert_eq!(owned.len(), 3);
        let reused = owned
            .iter()
            .find(|r| r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4")
            .unwrap();
        assert_eq!(reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"], "2");
        // Undo to the current revision is skipped.
        let skip = sim.kubectl_ok(&["rollout", "undo", DEPLOY, "--to-revision", "4"]).await;
        assert_eq!(
            skip,
            "deployment.apps/prod-payment-deploy skipped rollback (current template already matches revision 4)\n"
        );
        let get = sim.kubectl_ok(&["get", "deploy", "prod-payment-deploy"]).await;
        assert_eq!(&words(&get)[1][1..4], ["3/3", "3", "3"], "{get}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_to_an_explicit_revision() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let out = sim
            .kubectl_ok(&["rollout", "undo", DEPLOY, "--to-revision", "1"])
            .await;
        assert_eq!(out, "deployment.apps/prod-payment-deploy rolled back\n");
        sim.kubectl_ok(&["rollout", "status", DEPLOY, "--timeout", "60s"])
            .await;
        let history = sim.kubectl_ok(&["rollout", "history", DEPLOY]).await;
        assert_eq!(history_revisions(&history), [2, 3, 4], "{history}");
        let d = sim
            .handle
            .get(Kind::Deployment, "production", "prod-payment-deploy")
            .unwrap();
        assert_eq!(image_of(&d), "payment-api:v1.1.0");
        let bad = sim
            .kubectl(&["rollout", "undo", DEPLOY, "--to-revision", "9"])
            .await;
        assert!(!bad.ok);
        assert!(
            bad.stderr
                .contains("unable to find specified revision 9 in history"),
            "{}",
            bad.stderr
        );
        // Dry runs on the server change nothing.
        let dry = sim
            .kubectl_ok(&["rollout", "undo", DEPLOY, "--dry-run=server"])
            .await;
        assert_eq!(
            dry,
            "deployment.apps/prod-payment-deploy rolled back (server dry run)\n"
        );
        let after = sim
            .handle
            .get(Kind::Deployment, "production", "prod-payment-deploy")
            .unwrap();
        assert_eq!(image_of(&after), "payment-api:v1.1.0");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_without_history_fails_like_a_real_cluster() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let out = sim
            .kubectl(&["rollout", "undo", "deploy/fresh-deploy"])
            .await;
        assert!(!out.ok);
        assert!(
            out.stderr
                .contains(r#"no rollout history found for deployment "fresh-deploy""#),
            "{}",
            out.stderr
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_image_scale_and_restart_create_the_expected_revisions() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let out = sim
            .kubectl_ok(&["set", "image", DEPLOY, "payment-api=payment-api:v1.4.0"])
            .await;
        assert_eq!(out, "deployment.apps/prod-payment-deploy image updated\n");
        let status = sim
            .kubectl_ok(&["rollout", "status", DEPLOY, "--timeout", "60s"])
            .await;
        assert!(status.contains("successfully rolled out"), "{status}");
        let history = sim.kubectl_ok(&["rollout", "history", DEPLOY]).await;
        assert_eq!(history_revisions(&history), [1, 2, 3, 4], "{history}");

        let out = sim.kubectl_ok(&["scale", DEPLOY, "--replicas", "5"]).await;
        assert_eq!(out, "deployment.apps/prod-payment-deploy scaled\n");
        sim.kubectl_ok(&["rollout", "status", DEPLOY, "--timeout", "60s"])
            .await;
        let get = sim
            .kubectl_ok(&["get", "deploy", "prod-payment-deploy"])
            .await;
        assert_eq!(&words(&get)[1][1..4], ["5/5", "5", "5"], "{get}");
        // Scaling is not a new revision.
        let history = sim.kubectl_ok(&["rollout", "history", DEPLOY]).await;
        assert_eq!(history_revisions(&history), [1, 2, 3, 4], "{history}");

        let out = sim.kubectl_ok(&["rollout", "restart", DEPLOY]).await;
        assert_eq!(out, "deployment.apps/prod-payment-deploy restarted\n");
        sim.kubectl_ok(&["rollout", "status", DEPLOY, "--timeout", "60s"])
            .await;
        let history = sim.kubectl_ok(&["rollout", "history", DEPLOY]).await;
        assert_eq!(history_revisions(&history), [1, 2, 3, 4, 5], "{history}");
        let d = sim
            .handle
            .get(Kind::Deployment, "production", "prod-payment-deploy")
            .unwrap();
        assert!(
            d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                .is_string()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_ready_image_exceeds_the_progress_deadline() {
    bounded(async {
        let sim = start(fast_seed()).await;
        sim.kubectl_ok(&["set", "image", DEPLOY, "payment-api=payment-api:v1.3.1-broken"]).await;
        let out = sim.kubectl(&["rollout", "status", DEPLOY, "--timeout", "60s"]).await;
        assert!(!out.ok, "{out:?}");
        assert!(
            out.stdout.contains(
                r#"Waiting for deployment "prod-payment-deploy" rollout to finish: 1 out of 3 new replicas have been updated..."#
            ),
            "{}",
            out.stdout
        );
        assert!(
            out.stderr.contains(r#"deployment "prod-payment-deploy" exceeded its progress deadline"#),
            "{}",
            out.stderr
        );
        // The old pods keep serving: maxUnavailable is 0 for 3 replicas.
        let get = sim.kubectl_ok(&["get", "deploy", "prod-payment-deploy"]).await;
        assert_eq!(&words(&get)[1][1..4], ["3/3", "1", "3"], "{get}");
        // Rolling back recovers.
        sim.kubectl_ok(&["rollout", "undo", DEPLOY]).await;
        let status = sim.kubectl_ok(&["rollout", "status", DEPLOY, "--timeout", "60s"]).await;
        assert!(status.contains("successfully rolled out"), "{status}");
        let history = sim.kubectl_ok(&["rollout", "history", DEPLOY]).await;
        assert_eq!(history_revisions(&history), [1, 2, 4, 5], "{history}");
    })
    .await;
}

/// kubectl versions shipped next to the default one, when present.
fn versioned_kubectl(v: &str) -> Option<std::path::PathBuf> {
    let p = Path::new("/usr/lib/google-cloud-sdk/bin").join(format!("kubectl.{v}"));
    p.exists().then_some(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_and_newer_kubectl_versions_work_including_watch_list() {
    bounded(async {
        let mut ran = 0;
        for (v, env) in [
            ("1.27", vec![]),
            ("1.33", vec![]),
            ("1.33", vec![("KUBE_FEATURE_WatchListClient", "true")]),
        ] {
            let Some(bin) = versioned_kubectl(v) else {
                continue;
            };
            ran += 1;
            let sim = start(fast_seed()).await;
            let history = sim
                .kubectl_with(&bin, &env, &["rollout", "history", DEPLOY])
                .await;
            assert_eq!(
                history_revisions(&history.stdout),
                [1, 2, 3],
                "{v}: {history:?}"
            );
            let undo = sim
                .kubectl_with(&bin, &env, &["rollout", "undo", DEPLOY])
                .await;
            assert_eq!(
                undo.stdout, "deployment.apps/prod-payment-deploy rolled back\n",
                "{v}: {undo:?}"
            );
            let status = sim
                .kubectl_with(
                    &bin,
                    &env,
                    &["rollout", "status", DEPLOY, "--timeout", "60s"],
                )
                .await;
            assert!(
                status.ok
                    && status
                        .stdout
                        .ends_with("deployment \"prod-payment-deploy\" successfully rolled out\n"),
                "{v} {env:?}: {status:?}"
            );
            let watch_list = sim
                .handle
                .requests()
                .iter()
                .any(|r| r.query.contains("sendInitialEvents=true"));
            assert_eq!(watch_list, !env.is_empty(), "{v} {env:?}: watch-list use");
        }
        assert!(ran > 0 || versioned_kubectl("1.33").is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_and_daemonset_history_undo_and_status() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let history = sim
            .kubectl_ok(&["rollout", "history", "sts/ledger-db"])
            .await;
        assert_eq!(history_revisions(&history), [1, 2], "{history}");
        assert!(history.contains("CHG-2025-012: postgres 16"), "{history}");
        let undo = sim.kubectl_ok(&["rollout", "undo", "sts/ledger-db"]).await;
        assert_eq!(undo, "statefulset.apps/ledger-db rolled back\n");
        let status = sim
            .kubectl_ok(&["rollout", "status", "sts/ledger-db", "--timeout", "60s"])
            .await;
        // The API defaults `rollingUpdate.partition: 0`, so real kubectl
        // reports a partitioned roll out.
        assert!(
            status.ends_with("partitioned roll out complete: 2 new pods have been updated...\n"),
            "{status}"
        );
        let history = sim
            .kubectl_ok(&["rollout", "history", "sts/ledger-db"])
            .await;
        assert_eq!(history_revisions(&history), [2, 3], "{history}");
        let skip = sim
            .kubectl_ok(&["rollout", "undo", "sts/ledger-db", "--to-revision", "3"])
            .await;
        assert!(skip.contains("skipped rollback"), "{skip}");

        let undo = sim.kubectl_ok(&["rollout", "undo", "ds/log-agent"]).await;
        assert_eq!(undo, "daemonset.apps/log-agent rolled back\n");
        let status = sim
            .kubectl_ok(&["rollout", "status", "ds/log-agent", "--timeout", "60s"])
            .await;
        assert!(
            status.ends_with("daemon set \"log-agent\" successfully rolled out\n"),
            "{status}"
        );
        let ds = sim
            .handle
            .get(Kind::DaemonSet, "production", "log-agent")
            .unwrap();
        assert_eq!(image_of(&ds), "fluent-bit:3.0");
    })
    .await;
}

// ---- raw API semantics -------------------------------------------------

async fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_put_conflicts_dry_run_and_unsupported_patches() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let c = http().await;
        let url = format!(
            "{}/apis/apps/v1/namespaces/production/deployments/prod-payment-deploy",
            sim.handle.url()
        );
        let d: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(d["kind"], "Deployment");
        assert_eq!(d["apiVersion"], "apps/v1");
        let mut stale = d.clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        let r = c.put(&url).json(&stale).send().await.unwrap();
        assert_eq!(r.status(), 409);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["reason"], "Conflict");

        let before_rv = sim.handle.store().current_rv();
        let r = c
            .patch(format!("{url}?dryRun=All"))
            .header("Content-Type", "application/merge-patch+json")
            .body(r#"{"spec":{"replicas":7}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let dry: Value = r.json().await.unwrap();
        assert_eq!(dry["spec"]["replicas"], 7);
        let now = sim
            .handle
            .get(Kind::Deployment, "production", "prod-payment-deploy")
            .unwrap();
        assert_eq!(now["spec"]["replicas"], 3);
        assert!(sim.handle.store().current_rv() >= before_rv);

        let r = c
            .patch(&url)
            .header("Content-Type", "application/apply-patch+yaml")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);

        let r = c
            .patch(&url)
            .header("Content-Type", "application/merge-patch+json")
            .body(r#"{"spec":{"template":{"metadata":{"labels":{"app":"other"}}}}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["reason"], "Invalid");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_watch_replays_from_resource_version_and_expires_old_ones() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let c = http().await;
        let base = format!("{}/apis/apps/v1/namespaces/production/deployments", sim.handle.url());
        let list: Value = c.get(&base).send().await.unwrap().json().await.unwrap();
        let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
        // A change after the list.
        let r = c
            .patch(format!("{base}/prod-payment-deploy"))
            .header("Content-Type", "application/strategic-merge-patch+json")
            .body(r#"{"metadata":{"annotations":{"note":"x"}}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = c
            .get(format!(
                "{base}?watch=true&resourceVersion={rv}&timeoutSeconds=1&fieldSelector=metadata.name%3Dprod-payment-deploy"
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let events: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(!events.is_empty(), "{body}");
        assert!(events.iter().all(|e| e["type"] == "MODIFIED"), "{body}");
        assert_eq!(events[0]["object"]["metadata"]["annotations"]["note"], "x");
        assert_eq!(events[0]["object"]["kind"], "Deployment");

        // Streaming list: ADDED per object, then the initial-events-end bookmark.
        let body = c
            .get(format!(
                "{base}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let events: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(events[0]["type"], "ADDED");
        let bookmark = events.iter().find(|e| e["type"] == "BOOKMARK").expect(&body);
        assert_eq!(bookmark["object"]["apiVersion"], "apps/v1");
        assert_eq!(bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");

        // Compacted history answers 410 Expired.
        sim.handle.store().compact(sim.handle.store().current_rv());
        let body = c
            .get(format!("{base}?watch=true&resourceVersion=1&timeoutSeconds=1"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let e: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
        assert_eq!(e["type"], "ERROR");
        assert_eq!(e["object"]["code"], 410);
        assert_eq!(e["object"]["reason"], "Expired");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_leases_and_label_selected_replicasets() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let c = http().await;
        let leases = format!("{}/apis/coordination.k8s.io/v1/namespaces/production/leases", sim.handle.url());
        let r = c
            .post(&leases)
            .json(&json!({"metadata": {"name": "rollbot"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let mut lease: Value = r.json().await.unwrap();
        assert_eq!(lease["kind"], "Lease");
        lease["spec"]["holderIdentity"] = json!("b");
        let r = c.put(format!("{leases}/rollbot")).json(&lease).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // The same (now stale) resourceVersion again conflicts.
        let r = c.put(format!("{leases}/rollbot")).json(&lease).send().await.unwrap();
        assert_eq!(r.status(), 409);
        let r = c.post(&leases).json(&json!({"metadata": {"name": "rollbot"}})).send().await.unwrap();
        assert_eq!(r.status(), 409);

        let rs = format!("{}/apis/apps/v1/namespaces/production/replicasets", sim.handle.url());
        let list: Value = c
            .get(format!("{rs}?labelSelector=app%20in%20(payment-api)"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["kind"], "ReplicaSetList");
        assert_eq!(list["items"].as_array().unwrap().len(), 3);
        let r = c.get(format!("{rs}?labelSelector=app%20in%20payment")).send().await.unwrap();
        assert_eq!(r.status(), 400);
    })
    .await;
}

/// Any `timeoutSeconds` a client sends is served, not a panic of the
/// watch's task (a deadline past what an `Instant` holds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_watch_timeout_is_served() {
    bounded(async {
        let sim = start(fast_seed()).await;
        let c = http().await;
        let base = format!(
            "{}/apis/apps/v1/namespaces/production/deployments",
            sim.handle.url()
        );
        let r = c
            .get(format!(
                "{base}?watch=true&timeoutSeconds=18446744073709551615"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // The stream stays open after its first events (it used to end
        // there, its task panicking on the deadline).
        let mut r = r;
        let mut events = 0;
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(1), r.chunk()).await {
                Ok(Ok(Some(_))) => events += 1,
                Ok(end) => panic!("the watch ended after {events} chunk(s): {end:?}"),
                Err(_) => break,
            }
        }
        assert!(events > 0, "the watch sent its initial events");
        drop(r);
        let list = c.get(&base).send().await.unwrap();
        assert_eq!(list.status(), 200, "the simulator still answers");
    })
    .await;
}
