//! The HTTP skeleton and the CLI, over real sockets and the real binary.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rollbot::http::{self, AppState};
use support::*;

async fn start(t: &Tester) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(t.engine.clone(), Arc::new(AtomicBool::new(true)));
    tokio::spawn(http::serve(
        listener,
        http::router(state, 64 * 1024),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

#[tokio::test]
async fn health_ready_and_the_proposal_api() {
    run_test(|t| async move {
        let base = start(&t).await;
        let client = reqwest::Client::new();
        let r = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200);

        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.expect_posted(&p.id);
        t.approve(&p.id, "slack:UBOB").await;
        let list: serde_json::Value = client
            .get(format!("{base}/api/v1/proposals"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list[0]["id"], p.id.as_str());
        assert_eq!(list[0]["state"], "proposed");

        let one: serde_json::Value = client
            .get(format!("{base}/api/v1/proposals/{}", p.id))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(one["approvals"][0]["user"], "slack:UBOB");
        let events: Vec<_> = one["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(events, ["proposed", "voted"]);

        let r = client
            .get(format!("{base}/api/v1/proposals/RB-2222AA"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("/rollback list"));
        let r = client
            .get(format!("{base}/api/v1/proposals/nonsense"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        t
    })
    .await;
}

fn rollbot(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rollbot"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn check_config_accepts_the_example() {
    let out = rollbot(&["check-config", "--config", "config/rollbot.example.toml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_config_names_every_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string("config/rollbot.example.toml").unwrap();
    let cases = [
        (
            example.replace(
                "body_limit_bytes = 1048576",
                "body_limit_bytes = 1048576\nbody_limt = 3",
            ),
            "server.body_limt: unknown field `body_limt`",
        ),
        (
            example.replace("required_approvals = 2", "required_approvals = 1"),
            "services.payment-api.required_approvals: 1 breaks the two-person rule",
        ),
        (
            format!(
                "{example}\n[slack]\nbot_token = \"xoxb-1-2\"\nsigning_secret = {{ env = \"SLACK_SIGNING_SECRET\" }}\n"
            ),
            "slack.bot_token: inline secrets are not allowed",
        ),
        (
            example.replace(
                "payments-leads = [\"slack:U03CAROL\"]",
                "payments-leads = [\"slack:U03CAROL\", \"slack-group:@payments\"]",
            ),
            "groups.payments-leads[1]: \"@payments\" is not a Slack user group id",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = rollbot(&["check-config", "--config", path.to_str().unwrap()]);
        assert!(!out.status.success(), "case {i} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "case {i}: {err}");
    }
}

#[test]
fn help_describes_the_commands() {
    let out = rollbot(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("serve") && text.contains("check-config"),
        "{text}"
    );
}

#[tokio::test]
async fn serve_starts_and_answers_health_checks() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("rollbot.toml");
        let example = std::fs::read_to_string("config/rollbot.example.toml").unwrap();
        // The cluster it connects to is the simulator.
        let seed = rollbot::sim::seed::Seed::from_file("config/sim-payment.yaml".as_ref()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = rollbot::sim::start(seed, listener).await.unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        std::fs::write(
            &cfg,
            example.replace(
                "/var/lib/rollbot/db",
                dir.path().join("db").to_str().unwrap(),
            ) + &format!(
                "\n[kubernetes]\nkubeconfig = {:?}\n",
                kubeconfig.to_str().unwrap()
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollbot"))
            .args(["serve", "--config", cfg.to_str().unwrap(), "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            // The example's [alerts] secrets.
            .env("ROLLBOT_ALERTMANAGER_TOKEN", "t1")
            .env("ROLLBOT_GRAFANA_HMAC_SECRET", "t2")
            .env("ROLLBOT_GENERIC_TOKEN", "t3")
            .env("ROLLBOT_PAGERDUTY_SECRET", "t4")
            .kill_on_drop(true)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/readyz");
        let mut exited = false;
        wait_until_within(
            std::time::Duration::from_secs(45),
            "rollbot serve answers /readyz or exits",
            async || {
                if let Ok(r) = client.get(&url).send().await {
                    assert_eq!(r.status(), 200);
                    return true;
                }
                exited = child.try_wait().unwrap().is_some();
                exited
            },
        )
        .await;
        if exited {
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "rollbot serve exited early: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The container HEALTHCHECK probe agrees.
        let probe = rollbot(&[
            "healthcheck",
            "--url",
            &format!("http://127.0.0.1:{port}/healthz"),
        ]);
        assert!(
            probe.status.success(),
            "{}",
            String::from_utf8_lossy(&probe.stderr)
        );
        child.kill().await.unwrap();
        let probe = rollbot(&[
            "healthcheck",
            "--url",
            &format!("http://127.0.0.1:{port}/healthz"),
        ]);
        assert!(!probe.status.success());
        assert!(String::from_utf8_lossy(&probe.stderr).contains("cannot connect"));
    })
    .await;
}

async fn start_with_token(t: &Tester, token: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState {
        api_token: Some(Arc::from(token)),
        ..AppState::new(t.engine.clone(), Arc::new(AtomicBool::new(true)))
    };
    tokio::spawn(http::serve(
        listener,
        http::router(state, 64 * 1024),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

/// The `rel="next"` URL of a `Link` header, if any.
fn next_link(r: &reqwest::Response) -> Option<String> {
    let link = r.headers().get("link")?.to_str().ok()?;
    let (url, rel) = link.split_once(';')?;
    assert_eq!(rel.trim(), "rel=\"next\"", "{link}");
    Some(
        url.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string(),
    )
}

#[tokio::test]
async fn the_proposal_list_is_paginated_and_filtered() {
    run_test(|t| async move {
        let base = start(&t).await;
        let client = reqwest::Client::new();
        let mut made = Vec::new();
        for _ in 0..4 {
            let p = t.propose_by("slack:UALICE").await.unwrap();
            t.expect_posted(&p.id);
            t.engine.cancel(&p.id, &user("slack:UALICE")).await.unwrap();
            made.push(p.id);
        }
        let open = t.propose_by("slack:UALICE").await.unwrap();
        t.expect_posted(&open.id);
        made.push(open.id.clone());

        // Pages of two, following the Link header to the end.
        let mut url = format!("{base}/api/v1/proposals?limit=2");
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let r = client.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let next = next_link(&r);
            let page: Vec<serde_json::Value> = r.json().await.unwrap();
            assert!(page.len() <= 2, "{page:?}");
            seen.extend(page.iter().map(|p| p["id"].as_str().unwrap().to_string()));
            pages += 1;
            assert!(pages <= 5, "the pages never end");
            match next {
                Some(path) => url = format!("{base}{path}"),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let mut expected: Vec<String> = made.iter().map(ToString::to_string).collect();
        let mut got = seen.clone();
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "every proposal exactly once");

        let get = |q: &'static str| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let r = client
                    .get(format!("{base}/api/v1/proposals{q}"))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.json::<serde_json::Value>().await.unwrap())
            }
        };
        let (s, open_only) = get("?state=proposed").await;
        assert_eq!(s, 200);
        assert_eq!(open_only.as_array().unwrap().len(), 1);
        assert_eq!(open_only[0]["id"], open.id.as_str());
        let (_, cancelled) = get("?state=cancelled&service=payment-api").await;
        assert_eq!(cancelled.as_array().unwrap().len(), 4);
        let (_, none) = get("?service=checkout").await;
        assert_eq!(none.as_array().unwrap().len(), 0);
        // Mistakes are 400s that say what to send instead.
        let (s, e) = get("?state=done").await;
        assert_eq!(s, 400);
        assert!(
            e["error"].as_str().unwrap().contains("use one of proposed"),
            "{e}"
        );
        let (s, e) = get("?limit=0").await;
        assert_eq!(s, 400, "{e}");
        let (s, e) = get("?limit=100000").await;
        assert_eq!(s, 400, "{e}");
        let (s, e) = get("?cursor=not-a-cursor").await;
        assert_eq!(s, 400, "{e}");
        let (s, e) = get("?colour=blue").await;
        assert_eq!(s, 400, "{e}");
        t
    })
    .await;
}

#[tokio::test]
async fn the_read_api_and_metrics_need_the_token_once_one_is_set() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.expect_posted(&p.id);
        let base = start_with_token(&t, "s3cret-token").await;
        let client = reqwest::Client::new();
        for path in [
            "/api/v1/proposals".to_string(),
            format!("/api/v1/proposals/{}", p.id),
            "/metrics".to_string(),
        ] {
            let r = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} without a token");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            let body: serde_json::Value = r.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("server.api_token"));
            let r = client
                .get(format!("{base}{path}"))
                .bearer_auth("wrong")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{path} with a wrong token");
            let r = client
                .get(format!("{base}{path}"))
                .bearer_auth("s3cret-token")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path} with the token");
        }
        // Probes stay open for the kubelet.
        for path in ["/healthz", "/readyz"] {
            let r = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
        }
        t
    })
    .await;
}
