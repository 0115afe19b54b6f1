//! Helm releases rolled back through the `helm` program. No helm package
//! exists for these machines, so the tests run `tests/support/helm`, a
//! stand-in reproducing `helm history -o json` and `helm rollback` over a
//! release history kept in JSON beside it.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rollbot::domain::State;
use rollbot::exec::helm::HistoryEntry;
use rollbot::exec::{Executors, HELM, HelmExecutor};
use rollbot::ports::{CheckResult, ThreadNote, Verdict};
use support::*;

/// The stand-in helm in a directory of its own, with release
/// `production/payment` at revision 3 (v1.3.0) after 1 and 2.
struct Helm {
    dir: tempfile::TempDir,
}

impl Helm {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("helm");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/helm"),
            &bin,
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("releases/production")).unwrap();
        let h = Self { dir };
        h.write(&[
            entry(1, "superseded", "1.1.0", "Install complete"),
            entry(2, "superseded", "1.2.0", "Upgrade complete"),
            entry(3, "deployed", "1.3.0", "Upgrade complete"),
        ]);
        h
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("helm")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("releases/production/payment.json")
    }

    fn write(&self, history: &[HistoryEntry]) {
        std::fs::write(self.state(), serde_json::to_string(history).unwrap()).unwrap();
    }

    fn history(&self) -> Vec<HistoryEntry> {
        serde_json::from_str(&std::fs::read_to_string(self.state()).unwrap()).unwrap()
    }

    /// The helm command lines run so far.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn config(&self) -> String {
        format!(
            r#"
            [approval]
            channel = "memory:incidents"
            [services.payment]
            approvers = ["slack:UALICE", "slack:UBOB", "slack:UCAROL"]
            [services.payment.helm]
            release = "payment"
            namespace = "production"
            binary = "{}"
            timeout = "2m"
            "#,
            self.bin().display()
        )
    }
}

fn entry(revision: u64, status: &str, version: &str, description: &str) -> HistoryEntry {
    HistoryEntry {
        revision,
        updated: format!("2026-11-2{revision}T10:00:00.000000000Z"),
        status: status.into(),
        chart: format!("payment-api-{version}"),
        app_version: format!("v{version}"),
        description: description.into(),
    }
}

fn tester(config: &str) -> Tester {
    let executors = Executors::new().register(HELM, Arc::new(HelmExecutor::new()));
    Tester::with_executor(config, Arc::new(executors))
}

#[tokio::test]
async fn a_helm_release_is_planned_from_its_history_and_rolled_back() {
    let helm = Helm::new();
    let config = helm.config();
    run_test_in(
        || tester(&config),
        |t| async move {
            t.verifier.push(Verdict::Passed {
                checks: vec![CheckResult {
                    name: "health".into(),
                    passed: true,
                    value: "HTTP 200".into(),
                }],
            });
            let p = t.propose_for("payment", "slack:UALICE").await.unwrap();
            t.expect_posted(&p.id);
            assert_eq!(p.plan.workload, "helm release production/payment");
            assert_eq!(p.plan.current.revision, 3);
            assert_eq!(p.plan.target.revision, 2);
            assert_eq!(p.plan.target.images[0].image, "payment-api-1.2.0");
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            t.proposal(&p.id).expect_state(State::Verified);
            let history = helm.history();
            assert_eq!(history.len(), 4);
            assert_eq!(history[2].status, "superseded");
            assert_eq!(history[3].status, "deployed");
            assert_eq!(history[3].description, "Rolled back to 2");
            assert_eq!(history[3].app_version, "v1.2.0");
            assert!(
                helm.calls().contains(
                    &"rollback payment 2 --wait --timeout 120s --namespace production".to_string()
                ),
                "{:?}",
                helm.calls()
            );
            let notes = t.expect_threads(
                &p.id,
                &[
                    "execution_started",
                    "progress",
                    "execution_finished",
                    "verification",
                    "resolved",
                    "report",
                ],
            );
            let ThreadNote::ExecutionFinished { detail, .. } = &notes[2] else {
                panic!("{notes:?}");
            };
            assert_eq!(detail, "release payment at revision 4: Rolled back to 2");
            t
        },
    )
    .await;
}

#[tokio::test]
async fn a_release_made_after_the_plan_supersedes_the_proposal() {
    let helm = Helm::new();
    let config = helm.config();
    run_test_in(
        || tester(&config),
        |t| async move {
            let p = t.propose_for("payment", "slack:UALICE").await.unwrap();
            t.expect_posted(&p.id);
            // Someone runs `helm upgrade` while the proposal waits for votes.
            let mut history = helm.history();
            history[2].status = "superseded".into();
            history.push(entry(4, "deployed", "1.3.1", "Upgrade complete"));
            helm.write(&history);
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            t.proposal(&p.id).expect_state(State::Superseded);
            assert_eq!(helm.history(), history, "nothing was rolled back");
            assert!(
                !helm.calls().iter().any(|c| c.starts_with("rollback")),
                "{:?}",
                helm.calls()
            );
            let notes = t.expect_threads(&p.id, &["execution_started", "superseded"]);
            let ThreadNote::Superseded { reason } = &notes[1] else {
                panic!("{notes:?}");
            };
            assert!(reason.contains("revision 4"), "{reason}");
            t
        },
    )
    .await;
}

#[tokio::test]
async fn a_missing_release_is_refused_at_plan_time() {
    let helm = Helm::new();
    let config = helm
        .config()
        .replace("release = \"payment\"", "release = \"payments\"");
    run_test_in(
        || tester(&config),
        |t| async move {
            let e = t.propose_for("payment", "slack:UALICE").await.unwrap_err();
            let text = e.to_string();
            assert!(text.contains("release: not found"), "{text}");
            t
        },
    )
    .await;
}

#[tokio::test]
async fn after_a_restart_the_history_says_whether_the_rollback_went_out() {
    use rollbot::exec::{HelmTarget, Target};
    use rollbot::ports::{Executor, PlanRequest, Standing};
    let helm = Helm::new();
    let target = Target::Helm(HelmTarget {
        release: "payment".into(),
        namespace: "production".into(),
        binary: helm.bin().display().to_string(),
        timeout: "2m".into(),
    });
    let exec = HelmExecutor::new();
    bounded(async {
        let plan = exec.plan(&target, &PlanRequest::previous()).await.unwrap();
        assert_eq!(
            exec.standing(&target, &plan).await.unwrap(),
            Standing::NotApplied
        );
        // The rollback went out just before rollbot stopped.
        let out = std::process::Command::new(helm.bin())
            .args(["rollback", "payment", "2", "-n", "production", "--wait"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            exec.standing(&target, &plan).await.unwrap(),
            Standing::Applied
        );
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let followed = exec.follow(&target, &plan, tx).await.unwrap();
        assert!(matches!(
            followed,
            rollbot::ports::ExecOutcome::RolledBack { .. }
        ));
        // Someone released again since: the plan no longer holds.
        let mut history = helm.history();
        history[3].status = "superseded".into();
        history.push(entry(5, "deployed", "1.3.2", "Upgrade complete"));
        helm.write(&history);
        assert!(matches!(
            exec.standing(&target, &plan).await.unwrap(),
            Standing::Moved { .. }
        ));
        let rollbacks = helm
            .calls()
            .iter()
            .filter(|c| c.starts_with("rollback"))
            .count();
        assert_eq!(rollbacks, 1, "rollbot itself rolled nothing back");
    })
    .await;
}
