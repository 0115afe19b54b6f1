//! Rollback drills: a source simulator stands in for the real cluster; the
//! drill copies the service's history from it read-only and runs the whole
//! flow in its own simulator.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use rollbot::domain::{EventKind, Origin, Refusal, ServiceName, State};
use rollbot::engine::{DrillRequest, EngineError};
use rollbot::exec::KubeRollback;
use rollbot::exec::kubernetes::drill::{Drills, snapshot};
use rollbot::exec::kubernetes::{KubeExecutor, KubeTarget, WorkloadKind};
use rollbot::ports::memory::ChatCall;
use rollbot::ports::{ExecErrorKind, PrivateNote, ThreadNote};
use rollbot::sim::{self, Kind, seed::Seed};
use support::*;

/// The simulator standing in for the real cluster, once its controller's
/// first reconcile (which tidies the seeded ReplicaSets) is over, so the
/// resourceVersions recorded afterwards only move if someone writes.
async fn source() -> sim::SimHandle {
    let seed = Seed::from_file("config/sim-payment.yaml".as_ref()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = sim::start(seed, listener).await.unwrap();
    let mut changes = sim.store().subscribe();
    // Quiet for 300 ms (15 controller ticks) = settled.
    while tokio::time::timeout(std::time::Duration::from_millis(300), changes.changed())
        .await
        .is_ok()
    {}
    sim
}

/// Every object's resourceVersion, by kind, namespace and name.
fn resource_versions(sim: &sim::SimHandle) -> BTreeMap<String, String> {
    Kind::ALL
        .iter()
        .flat_map(|&k| sim.list(k, None))
        .map(|o| {
            (
                format!(
                    "{}/{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["namespace"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap()
                ),
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

fn writes(sim: &sim::SimHandle) -> Vec<String> {
    sim.requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn image(d: &serde_json::Value) -> String {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn payment() -> KubeTarget {
    KubeTarget {
        namespace: "production".into(),
        kind: WorkloadKind::Deployment,
        name: "prod-payment-deploy".into(),
    }
}

/// A tester whose "real cluster" is `source`, with drills enabled.
fn tester(source: &sim::SimHandle) -> (Tester, Arc<Drills>) {
    let kube = KubeRollback::new(KubeExecutor::for_url(&source.url()).unwrap());
    let drills = kube.drills().clone();
    let t = Tester::with_executor(CONFIG, Arc::new(kube));
    (t, drills)
}

fn drill_request(who: &str) -> DrillRequest {
    DrillRequest {
        service: ServiceName::parse("payment-api").unwrap(),
        proposer: user(who),
        reason: "quarterly rollback drill".into(),
        channel: None,
    }
}

#[tokio::test]
async fn a_drill_rolls_back_its_copy_and_leaves_the_source_untouched() {
    let source = bounded(source()).await;
    let before = resource_versions(&source);
    let (t, drills) = tester(&source);
    run_test_in(|| t, |t| async move {
        let p = t.engine.drill(drill_request("slack:UALICE")).await.unwrap();
        assert!(p.drill);
        assert_eq!(p.origin, Origin::Drill);
        assert!(p.plan.workload.contains("DRILL"), "{}", p.plan.workload);
        // The plan is the source's history: v1.3.0 (rev 3) back to v1.2.0 (rev 2).
        assert_eq!(p.plan.current.revision, 3);
        assert_eq!(p.plan.current.images[0].image, "payment-api:v1.3.0");
        assert_eq!(
            p.plan.current.change_cause.as_deref(),
            Some("CHG-2025-015: upgrade to v1.3.0")
        );
        assert_eq!(p.plan.target.revision, 2);
        assert_eq!(p.plan.target.images[0].image, "payment-api:v1.2.0");
        assert_eq!(
            p.plan.target.change_cause.as_deref(),
            Some("CHG-2025-011: upgrade to v1.2.0")
        );
        let lab = drills.url(&p.id).expect("the drill's simulator runs");
        assert_ne!(lab, source.url());

        // The two-person rule is rehearsed too: the proposer does not count.
        t.approve(&p.id, "slack:UALICE").await;
        assert_eq!(
            t.expect_told("slack:UALICE", "vote_refused"),
            PrivateNote::VoteRefused {
                refusal: Refusal::SelfApproval
            }
        );
        t.approve(&p.id, "slack:UBOB").await;
        t.proposal(&p.id).expect_state(State::Proposed);
        t.approve(&p.id, "slack:UCAROL").await;
        t.settle().await;

        let x = t.proposal(&p.id);
        x.expect_state(State::RolledBack)
            .expect_approved_by(&["slack:UBOB", "slack:UCAROL"]);
        assert!(x.proposal.no_checks, "a drill runs no production checks");
        assert!(x.timeline.iter().any(|e| matches!(&e.kind,
            EventKind::Progress { line } if line == "deployment \"prod-payment-deploy\" successfully rolled out")));

        // The copy was rolled back…
        let copy: serde_json::Value = reqwest::get(format!(
            "{lab}/apis/apps/v1/namespaces/production/deployments/prod-payment-deploy"
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(image(&copy), "payment-api:v1.2.0");
        // …the source was only read.
        assert_eq!(writes(&source), Vec::<String>::new());
        assert_eq!(resource_versions(&source), before);
        let src = source
            .get(Kind::Deployment, "production", "prod-payment-deploy")
            .unwrap();
        assert_eq!(image(&src), "payment-api:v1.3.0");

        // Every message in the thread says DRILL, and so does the report,
        // which measures time to decision and time to mitigate.
        let templates = rollbot::report::templates().unwrap();
        let mut report = None;
        for call in t.chat.calls() {
            if let ChatCall::Thread { note, .. } | ChatCall::EditedThread { note, .. } = call {
                let text = rollbot::report::render_note(templates, &x.proposal, &note).unwrap();
                assert!(text.contains("DRILL"), "{text}");
                if let ThreadNote::Report { markdown, .. } = note {
                    report = Some(markdown);
                }
            }
        }
        let proposal_text = rollbot::report::render_proposal(templates, &x.proposal).unwrap();
        assert!(proposal_text.contains("DRILL"), "{proposal_text}");
        let report = report.expect("the drill's report was posted");
        assert!(report.starts_with("# [DRILL]"), "{report}");
        for line in ["Time to decision", "Time to mitigate"] {
            let l = report.lines().find(|l| l.contains(line)).unwrap();
            assert!(!l.ends_with("n/a"), "{l}");
        }

        // The next tick stops the finished drill's simulator.
        t.engine.tick().await.unwrap();
        assert!(drills.running().is_empty());
        assert!(reqwest::get(&lab).await.is_err(), "the copy is shut down");
        assert_eq!(t.expect_posted(&p.id), "memory:incidents");
        t.expect_threads(&p.id, &["execution_started", "progress", "execution_finished", "drill_checks_skipped", "report"]);
        t
    })
    .await;
}

/// `kubectl rollout history` of `deployment/prod-payment-deploy`.
async fn history(sim: &sim::SimHandle, dir: &std::path::Path, revision: Option<u32>) -> String {
    let kubeconfig = dir.join(format!("kubeconfig-{}", sim.addr().port()));
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "/usr/bin/kubectl".into());
    let mut cmd = tokio::process::Command::new(&kubectl);
    cmd.args(["--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["--cache-dir", dir.join("cache").to_str().unwrap()])
        .args(["-n", "production", "rollout", "history"])
        .arg("deployment/prod-payment-deploy");
    if let Some(r) = revision {
        cmd.arg(format!("--revision={r}"));
    }
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {kubectl}: {e}; run scripts/test.sh"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_copy_has_the_sources_rollout_history() {
    bounded(async {
        let source = source().await;
        let client = KubeExecutor::for_url(&source.url()).unwrap().client();
        let snap = snapshot(&client, &payment()).await.unwrap();
        let kinds: Vec<&str> = snap
            .objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["Deployment", "ReplicaSet", "ReplicaSet", "ReplicaSet"]
        );
        let copy = snap.start(Default::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let theirs = history(&source, dir.path(), None).await;
        assert!(
            theirs.contains("CHG-2025-015: upgrade to v1.3.0"),
            "{theirs}"
        );
        assert_eq!(history(&copy, dir.path(), None).await, theirs);
        for r in 1..=3 {
            assert_eq!(
                history(&copy, dir.path(), Some(r)).await,
                history(&source, dir.path(), Some(r)).await
            );
        }
        assert_eq!(writes(&source), Vec::<String>::new());
    })
    .await;
}

#[tokio::test]
async fn a_drill_and_a_real_proposal_do_not_block_each_other() {
    let source = bounded(source()).await;
    let (t, _drills) = tester(&source);
    run_test_in(|| t, |t| async move {
        let drill = t.engine.drill(drill_request("slack:UALICE")).await.unwrap();
        let real = t.propose_by("slack:UBOB").await.unwrap();
        assert!(!real.drill);
        assert_eq!(
            t.engine
                .store()
                .open_for(&real.service)
                .unwrap()
                .map(|p| p.id),
            Some(real.id.clone())
        );
        // One drill per service at a time.
        let again = t.engine.drill(drill_request("slack:UCAROL")).await;
        assert!(
            matches!(&again, Err(EngineError::DrillOpen { existing, .. }) if *existing == drill.id),
            "{again:?}"
        );
        assert_eq!(t.expect_posted(&drill.id), "memory:incidents");
        assert_eq!(t.expect_posted(&real.id), "memory:incidents");
        t
    })
    .await;
}

#[tokio::test]
async fn a_drill_without_its_simulator_fails_and_changes_nothing() {
    let source = bounded(source()).await;
    let before = resource_versions(&source);
    let (t, drills) = tester(&source);
    run_test_in(|| t, |t| async move {
        let p = t.engine.drill(drill_request("slack:UALICE")).await.unwrap();
        // As after a restart: the drill's simulator is gone.
        drills.release(&p.id);
        t.approve(&p.id, "slack:UBOB").await;
        t.approve(&p.id, "slack:UCAROL").await;
        t.settle().await;
        let x = t.proposal(&p.id);
        x.expect_state(State::Failed);
        assert!(x.timeline.iter().any(|e| matches!(&e.kind,
            EventKind::ExecutionFinished { ok: false, detail } if detail.contains("no longer running"))));
        assert_eq!(writes(&source), Vec::<String>::new());
        assert_eq!(resource_versions(&source), before);
        assert_eq!(t.expect_posted(&p.id), "memory:incidents");
        t.expect_threads(&p.id, &["execution_started", "execution_failed"]);
        t
    })
    .await;
}

#[tokio::test]
async fn a_drill_interrupted_by_a_restart_keeps_its_clear_message() {
    let source = bounded(source()).await;
    let (t, drills) = tester(&source);
    run_test_in(
        || t,
        |t| async move {
            let p = t.engine.drill(drill_request("slack:UALICE")).await.unwrap();
            // As a stop mid-rollback leaves it: executing; after the restart
            // the drill's simulator is gone with the old process.
            let store = t.engine.store().clone();
            for s in [State::Approved, State::Executing] {
                store
                    .update(&p.id, t0(), |p| p.transition(s, t0()).map(|_| ((), vec![])))
                    .unwrap();
            }
            drop(store);
            drills.release(&p.id);
            t.engine.recover().await.unwrap();
            t.settle().await;
            let x = t.proposal(&p.id);
            x.expect_state(State::Failed);
            assert!(x.events().contains(&"restarted"), "{:?}", x.events());
            assert!(x.timeline.iter().any(|e| matches!(&e.kind,
            EventKind::ExecutionFinished { ok: false, detail }
                if detail.starts_with("DRILL: this drill's simulator is no longer running"))));
            assert_eq!(writes(&source), Vec::<String>::new());
            assert_eq!(t.expect_posted(&p.id), "memory:incidents");
            t.expect_threads(&p.id, &["execution_failed"]);
            t
        },
    )
    .await;
}

#[tokio::test]
async fn an_executor_that_cannot_rehearse_refuses_drills() {
    // The scripted executor stands for a kind with no drills.
    run_test(|t| async move {
        let err = t
            .engine
            .drill(drill_request("slack:UALICE"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EngineError::Drill { source, .. } if source.kind == ExecErrorKind::Unsupported),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("drills are not available for kubernetes targets"),
            "{err}"
        );
        assert!(t.engine.store().list().unwrap().is_empty());
        t
    })
    .await;
}

#[tokio::test]
async fn a_drill_of_a_missing_workload_says_what_to_check_and_keeps_nothing() {
    let source = bounded(source()).await;
    let (t, drills) = tester(&source);
    run_test_in(|| t, |t| async move {
        // `search` is configured but its Deployment is not in the cluster.
        let mut req = drill_request("slack:UALICE");
        req.service = ServiceName::parse("search").unwrap();
        let err = t.engine.drill(req).await.unwrap_err();
        assert!(
            matches!(&err, EngineError::Drill { source, .. } if source.kind == ExecErrorKind::NotFound),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("\"search\" not found in namespace \"production\""),
            "{err}"
        );
        assert!(drills.running().is_empty());
        assert!(t.engine.store().list().unwrap().is_empty());
        t
    })
    .await;
}

#[tokio::test]
async fn a_missing_workload_says_what_to_check() {
    bounded(async {
        let source = source().await;
        let client = KubeExecutor::for_url(&source.url()).unwrap().client();
        let mut target = payment();
        target.name = "nosuch".into();
        let err = snapshot(&client, &target).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("\"nosuch\" not found in namespace \"production\""),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn rollbot_drill_runs_the_flow_from_the_command_line() {
    bounded(async {
        let source = source().await;
        let before = resource_versions(&source);
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        source.write_kubeconfig(&kubeconfig).unwrap();
        let config = dir.path().join("rollbot.toml");
        std::fs::write(
            &config,
            format!(
                r#"
                [kubernetes]
                kubeconfig = "{}"
                [services.payment-api]
                approvers = ["console:alice", "console:bob"]
                [services.payment-api.kubernetes]
                namespace = "production"
                name = "prod-payment-deploy"
                "#,
                kubeconfig.display()
            ),
        )
        .unwrap();
        let report = dir.path().join("report.md");
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollbot"))
            .args(["drill", "payment-api", "--config"])
            .arg(&config)
            .args([
                "--approve-as",
                "console:alice",
                "--approve-as",
                "console:bob",
            ])
            .arg("--report-out")
            .arg(&report)
            .env("ROLLBOT_LOG", "warn")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("[DRILL — nothing real is touched]"),
            "{stdout}"
        );
        assert!(stdout.contains("payment-api:v1.3.0"), "{stdout}");
        assert!(
            stdout
                .contains("[DRILL] ⏳ deployment \"prod-payment-deploy\" successfully rolled out"),
            "{stdout}"
        );
        assert!(
            stdout.contains("verdict: rolled_back (time to decision"),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("DRILL report: {}", report.display())),
            "{stdout}"
        );
        let markdown = std::fs::read_to_string(&report).unwrap();
        assert!(markdown.starts_with("# [DRILL]"), "{markdown}");
        assert!(markdown.contains("Time to mitigate"), "{markdown}");
        assert!(
            markdown.contains("console:alice, console:bob"),
            "{markdown}"
        );
        assert_eq!(writes(&source), Vec::<String>::new());
        assert_eq!(resource_versions(&source), before);
    })
    .await;
}

#[tokio::test]
async fn rollbot_drill_without_approvers_shows_the_proposal_and_stops() {
    bounded(async {
        let source = source().await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        source.write_kubeconfig(&kubeconfig).unwrap();
        let config = dir.path().join("rollbot.toml");
        std::fs::write(
            &config,
            format!(
                "[kubernetes]\nkubeconfig = \"{}\"\n[services.payment-api]\napprovers = [\"console:alice\", \"console:bob\"]\n[services.payment-api.kubernetes]\nnamespace = \"production\"\nname = \"prod-payment-deploy\"\n",
                kubeconfig.display()
            ),
        )
        .unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollbot"))
            .args(["drill", "payment-api", "--config"])
            .arg(&config)
            .env("ROLLBOT_LOG", "warn")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{stdout}");
        assert!(stdout.contains("[DRILL — nothing real is touched]"), "{stdout}");
        assert!(stdout.contains("--approve-as"), "{stdout}");
        assert!(stdout.contains("console:alice, console:bob"), "{stdout}");
        assert_eq!(writes(&source), Vec::<String>::new());
    })
    .await;
}
