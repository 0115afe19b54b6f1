//! Getting the report out: `GET /api/v1/proposals/{id}/report` and
//! `rollbot report ID`, both from the store directly and through a running
//! server (whose store lock keeps direct readers out).

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rollbot::config::Config;
use rollbot::domain::{ManualClock, ProposalId, State};
use rollbot::engine::{Engine, Ports};
use rollbot::http::{self, AppState};
use rollbot::ports::memory::{MemoryChat, ScriptedExecutor, ScriptedVerifier};
use rollbot::ports::{CheckResult, Verdict};
use rollbot::store::Store;
use support::*;

fn config_file(dir: &std::path::Path) -> std::path::PathBuf {
    let text = format!(
        "[store]\npath = \"{}\"\n{}",
        dir.join("db").display(),
        CONFIG
    );
    let path = dir.join("rollbot.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A verified manual rollback of payment-api in a store under `dir`.
async fn verified_rollback(dir: &std::path::Path) -> (Engine, ProposalId) {
    let config = Config::load(&config_file(dir)).unwrap();
    let verifier = ScriptedVerifier::new();
    verifier.push(Verdict::Passed {
        checks: vec![CheckResult {
            name: "payment success rate".into(),
            passed: true,
            value: "99.7".into(),
        }],
    });
    let engine = Engine::new(
        Store::open(&config.store.path).unwrap(),
        config.services(),
        Ports {
            chat: MemoryChat::new(),
            executor: ScriptedExecutor::new(reference_plan()),
            verifier,
            clock: Arc::new(ManualClock::new(t0())),
        },
    );
    let p = engine
        .propose(rollbot::engine::ProposeRequest {
            service: rollbot::domain::ServiceName::parse("payment-api").unwrap(),
            origin: rollbot::domain::Origin::Command,
            proposer: user("slack:UALICE"),
            reason: "payment success rate 95%".into(),
            to_revision: None,
            image: None,
            alert: None,
            channel: None,
        })
        .await
        .unwrap();
    for who in ["slack:UBOB", "slack:UCAROL"] {
        engine
            .vote(
                &p.id,
                &user(who),
                rollbot::domain::VoteKind::Approve,
                rollbot::domain::VoteVia::Reaction,
            )
            .await
            .unwrap();
    }
    engine.wait_idle().await;
    assert_eq!(engine.get(&p.id).unwrap().state, State::Verified);
    engine.store().flush().await.unwrap();
    (engine, p.id)
}

fn rollbot(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rollbot"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_comes_from_the_api_or_the_store() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (engine, id) = verified_rollback(dir.path()).await;
        let config = config_file(dir.path());
        let config = config.to_str().unwrap();

        // While the store is open (as `serve` holds it), reading it directly
        // fails and says to use --url.
        let out = rollbot(&["report", id.as_str(), "--config", config]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--url"), "{err}");

        // Through the running server.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::new(engine.clone(), Arc::new(AtomicBool::new(true)));
        tokio::spawn(http::serve(
            listener,
            http::router(state, 64 * 1024),
            std::future::pending(),
        ));
        let client = reqwest::Client::new();
        let r = client
            .get(format!("{base}/api/v1/proposals/{id}/report?locale=ja"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/markdown")
        );
        let ja = r.text().await.unwrap();
        assert!(ja.starts_with("# インシデントレポート（草案）"), "{ja}");
        assert!(
            ja.contains("| payment success rate | — | — | 99.7 | ✅ |"),
            "{ja}"
        );
        let r = client
            .get(format!("{base}/api/v1/proposals/{id}/report?locale=fr"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("en, zh, ja"));
        let r = client
            .get(format!("{base}/api/v1/proposals/RB-AAAAAA/report"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        let out = tokio::task::spawn_blocking({
            let (id, base) = (id.to_string(), base.clone());
            move || rollbot(&["report", &id, "--url", &base, "--locale", "zh"])
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let zh = String::from_utf8(out.stdout).unwrap();
        assert!(zh.starts_with(&format!("# 事故报告（草稿）：payment-api 回滚 {id}")));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_is_read_from_the_store_when_no_server_runs() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (engine, id) = verified_rollback(dir.path()).await;
        drop(engine);
        let config = config_file(dir.path());
        let chart = dir.path().join("chart.png");
        let args: Vec<String> = [
            "report",
            id.as_str(),
            "--config",
            config.to_str().unwrap(),
            "--locale",
            "zh",
            "--chart",
            chart.to_str().unwrap(),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            rollbot(&args)
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let zh = String::from_utf8(out.stdout).unwrap();
        assert!(
            zh.starts_with(&format!("# 事故报告（草稿）：payment-api 回滚 {id}")),
            "{zh}"
        );
        assert!(zh.contains("| 总时长 |"), "{zh}");
        // The scripted verifier has no metric history, so no chart, and it says so.
        assert!(stderr.contains("no chart"), "{stderr}");
        assert!(!chart.exists());
    })
    .await;
}
