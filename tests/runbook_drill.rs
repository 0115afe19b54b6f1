//! Drills and the runbook: a drill runs the service's pre-checks for real
//! (they are read-only by contract) and only says which hooks would run,
//! since hooks act on production.

mod support;

use std::sync::Arc;

use rollbot::domain::{ServiceName, State};
use rollbot::engine::DrillRequest;
use rollbot::exec::KubeRollback;
use rollbot::exec::kubernetes::KubeExecutor;
use rollbot::ports::ThreadNote;
use rollbot::sim::{self, seed::Seed};
use support::*;

#[tokio::test]
async fn a_drill_runs_pre_checks_and_shows_hooks_as_would_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let seed = Seed::from_file("config/sim-payment.yaml".as_ref()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let source = bounded(sim::start(seed, listener)).await.unwrap();
    let runbook = r#"
        [[services.payment-api.runbook.pre_checks]]
        name = "check-migrations"
        kind = "migrations"
        command = ["sh", "-c", "touch @ROOT@/pre-checked; echo 20251120_add_refunds_table; exit 1"]
        timeout = "10s"
        [[services.payment-api.runbook.before]]
        name = "db-backup"
        command = ["sh", "-c", "touch @ROOT@/backup-ran"]
        timeout = "10s"
        [[services.payment-api.runbook.after]]
        name = "maintenance-off"
        command = ["sh", "-c", "touch @ROOT@/after-ran"]
        timeout = "10s"
    "#
    .replace("@ROOT@", &root);
    let config = format!("{CONFIG}\n{runbook}");
    let kube = KubeRollback::new(KubeExecutor::for_url(&source.url()).unwrap());
    let make = || {
        let t = Tester::with_executor(&config, Arc::new(kube));
        rollbot::runbook::install(&t.engine, &t.config, Default::default());
        t
    };
    run_test_in(make, |t| async move {
        let p = t
            .engine
            .drill(DrillRequest {
                service: ServiceName::parse("payment-api").unwrap(),
                proposer: user("slack:UALICE"),
                reason: "quarterly rollback drill".into(),
                channel: None,
            })
            .await
            .unwrap();
        assert!(dir.path().join("pre-checked").exists(), "the pre-check ran");
        assert!(p.plan.migrations, "its finding reached the drill's plan");
        t.approve(&p.id, "slack:UBOB").await;
        t.approve(&p.id, "slack:UCAROL").await;
        t.settle().await;
        t.proposal(&p.id).expect_state(State::RolledBack);
        assert!(!dir.path().join("backup-ran").exists(), "no hook ran");
        assert!(!dir.path().join("after-ran").exists(), "no hook ran");
        t.expect_posted(&p.id);
        let notes = t.expect_threads(
            &p.id,
            &[
                "execution_started",
                "hooks_would_run",
                "progress",
                "execution_finished",
                "hooks_would_run",
                "drill_checks_skipped",
                "report",
            ],
        );
        assert_eq!(
            notes[1],
            ThreadNote::HooksWouldRun {
                hooks: vec!["db-backup".into()]
            }
        );
        let templates = rollbot::report::templates().unwrap();
        let text = rollbot::report::render_note(templates, &p, &notes[4]).unwrap();
        assert!(text.contains("DRILL"), "{text}");
        assert!(text.contains("Would run maintenance-off"), "{text}");
        // On Slack too, in every locale, with the hook names escaped.
        let odd = ThreadNote::HooksWouldRun {
            hooks: vec!["purge <cdn>".into()],
        };
        for (locale, words) in [
            ("en", "Would run"),
            ("zh", "将会执行"),
            ("ja", "実行する予定"),
        ] {
            let mut q = p.clone();
            q.locale = locale.into();
            let slack = rollbot::chat::slack::render::thread(templates, &q, &odd).unwrap();
            let text = slack.json["text"].as_str().unwrap();
            assert!(text.contains(words), "{text}");
            assert!(text.contains("purge &lt;cdn&gt;"), "{text}");
        }
        t.engine.tick().await.unwrap();
        t
    })
    .await;
}
