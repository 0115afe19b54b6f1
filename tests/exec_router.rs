//! Executor kinds: a kind added from this file alone (its own `Executor`,
//! registered in the router) rolls a service back end to end; a kind with
//! no executor is refused; a service has exactly one target; and rollbot
//! connects to Kubernetes only when a service targets it.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rollbot::domain::{ContainerImage, EventKind, Plan, ProposalId, RevisionInfo, State};
use rollbot::engine::{DrillRequest, EngineError};
use rollbot::exec::{CustomTarget, Executors, Target};
use rollbot::ports::{
    CheckResult, ExecError, ExecErrorKind, ExecOutcome, Executor, PlanRequest, Verdict,
};
use support::*;
use tokio::sync::mpsc;

/// The kind this test adds.
const LEDGER: &str = "ledger";

/// `billing` targets the test's kind; `payment-api` targets Kubernetes, for
/// which the router below has no executor.
const CONFIG: &str = r#"
    [approval]
    channel = "memory:incidents"
    [groups]
    sre = ["slack:UALICE", "slack:UBOB", "slack:UCAROL"]
    [services.billing]
    groups = ["sre"]
    [services.billing.custom]
    kind = "ledger"
    [services.billing.custom.settings]
    app = "billing"
    [services.payment-api]
    groups = ["sre"]
    [services.payment-api.kubernetes]
    namespace = "production"
    name = "prod-payment-deploy"
"#;

/// A release ledger: each app's deployed versions, newest last. Rolling
/// back drops the newest; a drill works on a copy of an app's ledger, kept
/// per drill until released.
#[derive(Default)]
struct LedgerExecutor {
    apps: Mutex<BTreeMap<String, Vec<String>>>,
    /// Drill copies, by drill proposal.
    copies: Mutex<BTreeMap<ProposalId, String>>,
    /// Whether planning on a drill copy fails (to see it released).
    refuse_copies: bool,
}

impl LedgerExecutor {
    fn with(app: &str, versions: &[&str]) -> Self {
        let me = Self::default();
        me.apps.lock().unwrap().insert(
            app.into(),
            versions.iter().map(ToString::to_string).collect(),
        );
        me
    }

    fn versions(&self, app: &str) -> Vec<String> {
        self.apps
            .lock()
            .unwrap()
            .get(app)
            .cloned()
            .unwrap_or_default()
    }

    fn copies(&self) -> Vec<ProposalId> {
        self.copies.lock().unwrap().keys().cloned().collect()
    }

    /// The app a target names, read from its settings.
    fn app(target: &Target) -> Result<String, ExecError> {
        match target {
            Target::Custom(CustomTarget { kind, settings }) if kind == LEDGER => settings["app"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| ExecError::new(ExecErrorKind::Other, "settings.app is missing")),
            other => Err(ExecError::new(
                ExecErrorKind::Unsupported,
                format!("not a ledger target: {other}"),
            )),
        }
    }

    fn copy(app: &str, copy: &str) -> Target {
        Target::Custom(CustomTarget {
            kind: LEDGER.into(),
            settings: serde_json::json!({ "app": copy, "copy_of": app }),
        })
    }
}

fn revision(revision: u64, version: &str) -> RevisionInfo {
    RevisionInfo {
        revision,
        images: vec![ContainerImage {
            container: "app".into(),
            image: version.into(),
        }],
        change_cause: None,
    }
}

#[async_trait]
impl Executor for LedgerExecutor {
    async fn plan(&self, target: &Target, _request: &PlanRequest) -> Result<Plan, ExecError> {
        let app = Self::app(target)?;
        if self.refuse_copies && app.starts_with("drill-") {
            return Err(ExecError::new(ExecErrorKind::Other, "the copy is broken"));
        }
        let versions = self.versions(&app);
        let [.., previous, current] = versions.as_slice() else {
            return Err(ExecError::new(
                ExecErrorKind::NoHistory,
                format!("{app} has no earlier release"),
            ));
        };
        let n = versions.len() as u64;
        Ok(Plan {
            workload: format!("ledger {app}"),
            current: revision(n, current),
            target: revision(n - 1, previous),
            warnings: vec![],
            migrations: false,
            blockers: vec![],
            guard: serde_json::json!({ "app": app, "current": current }),
        })
    }

    async fn execute(
        &self,
        target: &Target,
        plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        let app = Self::app(target)?;
        let line = {
            let mut apps = self.apps.lock().unwrap();
            let versions = apps.entry(app.clone()).or_default();
            if versions.last() != plan.guard["current"].as_str().map(str::to_owned).as_ref() {
                return Ok(ExecOutcome::Superseded {
                    reason: format!("{app} moved since the plan"),
                });
            }
            versions.pop();
            format!("{app} is back on {}", versions.last().unwrap())
        };
        let _ = progress.send(line.clone()).await;
        Ok(ExecOutcome::RolledBack { detail: line })
    }

    async fn rehearse(&self, target: &Target, drill: &ProposalId) -> Result<Target, ExecError> {
        let app = Self::app(target)?;
        let copy = format!("drill-{drill}");
        let versions = self.versions(&app);
        self.apps.lock().unwrap().insert(copy.clone(), versions);
        self.copies
            .lock()
            .unwrap()
            .insert(drill.clone(), copy.clone());
        Ok(Self::copy(&app, &copy))
    }

    fn rehearsal(&self, target: &Target, drill: &ProposalId) -> Result<Target, ExecError> {
        let app = Self::app(target)?;
        let copies = self.copies.lock().unwrap();
        let copy = copies.get(drill).ok_or_else(|| {
            ExecError::new(ExecErrorKind::Unsupported, "this drill's copy is gone")
        })?;
        Ok(Self::copy(&app, copy))
    }

    fn release(&self, over: &dyn Fn(&ProposalId) -> bool) {
        let mut copies = self.copies.lock().unwrap();
        let mut apps = self.apps.lock().unwrap();
        copies.retain(|id, copy| {
            let keep = !over(id);
            if !keep {
                apps.remove(copy);
            }
            keep
        });
    }
}

fn tester(ledger: Arc<LedgerExecutor>) -> Tester {
    let router = Executors::new().register(LEDGER, ledger);
    Tester::with_executor(CONFIG, Arc::new(router))
}

fn passed() -> Verdict {
    Verdict::Passed {
        checks: vec![CheckResult {
            name: "invoices flow".into(),
            passed: true,
            value: "42/min".into(),
        }],
    }
}

#[tokio::test]
async fn a_kind_added_by_a_test_rolls_back_its_service_end_to_end() {
    let ledger = &Arc::new(LedgerExecutor::with("billing", &["v1", "v2", "v3"]));
    run_test_in(|| tester(ledger.clone()), |t| async move {
        t.verifier.push(passed());

        let p = t.propose_for("billing", "slack:UALICE").await.unwrap();
        assert_eq!(p.plan.workload, "ledger billing");
        assert_eq!(p.plan.current.images[0].image, "v3");
        assert_eq!(p.plan.target.images[0].image, "v2");
        t.approve(&p.id, "slack:UBOB").await;
        t.proposal(&p.id).expect_state(State::Proposed);
        t.approve(&p.id, "slack:UCAROL").await;
        t.settle().await;

        let x = t.proposal(&p.id);
        x.expect_state(State::Verified)
            .expect_approved_by(&["slack:UBOB", "slack:UCAROL"]);
        assert!(x.timeline.iter().any(|e| matches!(&e.kind,
            EventKind::ExecutionFinished { ok: true, detail } if detail == "billing is back on v2")));
        assert_eq!(ledger.versions("billing"), ["v1", "v2"]);
        assert_eq!(t.expect_posted(&p.id), "memory:incidents");
        t.expect_threads(&p.id, &["execution_started", "progress", "execution_finished", "verification", "resolved", "report"]);
        t
    })
    .await;
}

#[tokio::test]
async fn a_target_whose_kind_has_no_executor_is_refused_and_nothing_runs() {
    let ledger = &Arc::new(LedgerExecutor::with("billing", &["v1", "v2"]));
    run_test_in(
        || tester(ledger.clone()),
        |t| async move {
            let err = t
                .propose_for("payment-api", "slack:UALICE")
                .await
                .unwrap_err();
            let EngineError::Plan { source, .. } = &err else {
                panic!("{err:?}");
            };
            assert_eq!(source.kind, ExecErrorKind::Unsupported);
            assert!(
                source.message.starts_with(
                    "no executor for kubernetes targets in this rollbot (it has: ledger)"
                ),
                "{source}"
            );
            assert!(t.engine.store().list().unwrap().is_empty());

            // The router alone: an unknown custom kind, and an empty router.
            let nomad = Target::Custom(CustomTarget {
                kind: "nomad".into(),
                settings: serde_json::json!({}),
            });
            let router = Executors::new().register(LEDGER, ledger.clone());
            let e = router
                .plan(&nomad, &PlanRequest::previous())
                .await
                .unwrap_err();
            assert_eq!(e.kind, ExecErrorKind::Unsupported);
            assert!(e.message.contains("no executor for nomad targets"), "{e}");
            let e = Executors::new()
                .plan(&nomad, &PlanRequest::previous())
                .await
                .unwrap_err();
            assert!(e.message.contains("(it has: none)"), "{e}");
            assert_eq!(ledger.versions("billing"), ["v1", "v2"]);
            t
        },
    )
    .await;
}

fn drill(service: &str) -> DrillRequest {
    DrillRequest {
        service: rollbot::domain::ServiceName::parse(service).unwrap(),
        proposer: user("slack:UALICE"),
        reason: "drill".into(),
        channel: None,
    }
}

#[tokio::test]
async fn a_kind_that_rehearses_runs_drills_on_its_copy_and_releases_it() {
    let ledger = &Arc::new(LedgerExecutor::with("billing", &["v1", "v2", "v3"]));
    run_test_in(
        || tester(ledger.clone()),
        |t| async move {
            let p = t.engine.drill(drill("billing")).await.unwrap();
            assert!(p.drill);
            assert_eq!(ledger.copies(), std::slice::from_ref(&p.id));
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            t.proposal(&p.id).expect_state(State::RolledBack);
            // The copy was rolled back; the service itself was not touched.
            assert_eq!(ledger.versions("billing"), ["v1", "v2", "v3"]);
            assert_eq!(ledger.versions(&format!("drill-{}", p.id)), ["v1", "v2"]);
            // The drill is over: the engine asks the executor to release it.
            t.engine.tick().await.unwrap();
            assert!(ledger.copies().is_empty());
            assert!(ledger.versions(&format!("drill-{}", p.id)).is_empty());
            assert_eq!(t.expect_posted(&p.id), "memory:incidents");
            t.expect_threads(
                &p.id,
                &[
                    "execution_started",
                    "progress",
                    "execution_finished",
                    "drill_checks_skipped",
                    "report",
                ],
            );
            t
        },
    )
    .await;
}

#[tokio::test]
async fn a_drill_that_cannot_be_proposed_releases_its_copy() {
    let ledger = &Arc::new(LedgerExecutor {
        refuse_copies: true,
        ..LedgerExecutor::with("billing", &["v1", "v2"])
    });
    run_test_in(
        || tester(ledger.clone()),
        |t| async move {
            let err = t.engine.drill(drill("billing")).await.unwrap_err();
            assert!(err.to_string().contains("the copy is broken"), "{err}");
            assert!(ledger.copies().is_empty(), "{:?}", ledger.copies());
            assert!(t.engine.store().list().unwrap().is_empty());
            t
        },
    )
    .await;
}

/// `rollbot check-config` on `text`: (success, stdout + stderr).
fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollbot.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollbot"))
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_config_wants_exactly_one_target_per_service_and_a_kind_it_can_run() {
    let base = r#"
        [services.billing]
        approvers = ["slack:UALICE", "slack:UBOB"]
    "#;
    let kube = "[services.billing.kubernetes]\nnamespace = \"prod\"\nname = \"billing\"\n";
    let custom = "[services.billing.custom]\nkind = \"ledger\"\n";

    let (ok, out) = check_config(&format!("{base}{kube}"));
    assert!(ok, "{out}");
    assert!(out.contains("OK (1 service(s)"), "{out}");

    let (ok, out) = check_config(base);
    assert!(!ok, "{out}");
    assert!(
        out.contains("services.billing: no rollback target; add one target table, e.g. [services.billing.kubernetes]"),
        "{out}"
    );

    let (ok, out) = check_config(&format!("{base}{kube}{custom}"));
    assert!(!ok, "{out}");
    assert!(
        out.contains("services.billing: 2 rollback targets (kubernetes, custom); a service rolls back exactly one target"),
        "{out}"
    );

    // Valid as a library config, but `rollbot serve` has no ledger executor.
    let (ok, out) = check_config(&format!("{base}{custom}"));
    assert!(!ok, "{out}");
    assert!(
        out.contains("services.billing.custom: rollbot serve has no executor for \"ledger\" targets (it has: kubernetes, swarm, command, helm)"),
        "{out}"
    );
}

/// Starts the app for `config`, then stops it at once.
async fn start_and_stop(config: &str) -> anyhow::Result<()> {
    let config = rollbot::config::Config::parse(config).expect("valid config");
    let app = rollbot::app::App::start(&config, None).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    app.serve(listener, async {}).await
}

#[tokio::test]
async fn a_config_without_kubernetes_services_starts_without_a_kubeconfig() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        // The kubeconfig does not exist: reading it would fail start-up.
        let without = format!(
            r#"
            [store]
            path = "{d}/db"
            [kubernetes]
            kubeconfig = "{d}/no-such-kubeconfig"
            "#
        );
        start_and_stop(&without).await.unwrap();

        // The same file with a Kubernetes service does connect, and says so.
        let with = format!(
            "{without}\n[services.billing]\napprovers = [\"slack:UALICE\", \"slack:UBOB\"]\n[services.billing.kubernetes]\nnamespace = \"prod\"\nname = \"billing\"\n"
        )
        .replace("/db\"", "/db2\"");
        let err = start_and_stop(&with).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("no-such-kubeconfig"),
            "{err:#}"
        );
    })
    .await;
}

#[test]
fn check_config_names_a_channel_whose_platform_is_not_configured() {
    let config = r#"
        [approval]
        channel = "slack:C0123INCIDENTS"
        [services.billing]
        approvers = ["discord:1001", "discord:1002"]
        channel = "discord:123456789012345678"
        [services.billing.kubernetes]
        namespace = "prod"
        name = "billing"
    "#;
    let (ok, out) = check_config(config);
    assert!(!ok, "{out}");
    assert!(out.contains("services.billing.channel"), "{out}");
    assert!(out.contains("no [discord] section"), "{out}");
    assert!(out.contains("approval.channel"), "{out}");
    assert!(out.contains("no [slack] section"), "{out}");
}
