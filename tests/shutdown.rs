//! `rollbot serve` as a process: SIGTERM (Kubernetes, `docker stop`) and
//! SIGINT (Ctrl-C) stop it cleanly — exit 0 within `server.shutdown_grace`,
//! the store closed and readable with what was acknowledged before the
//! signal.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rollbot::domain::State;
use rollbot::store::Store;
use support::*;

/// The grace the tests configure; the default (25 s) is checked in config.
const GRACE: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, sim_kubeconfig: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("am-token"), AM_TOKEN).unwrap();
    let d = dir.display();
    let cfg = dir.join("rollbot.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
            [server]
            shutdown_grace = "{grace}s"
            [store]
            path = "{d}/db"
            [groups]
            sre = ["slack:UALICE", "slack:UBOB"]
            [services.payment-api]
            groups = ["sre"]
            [services.payment-api.kubernetes]
            namespace = "production"
            name = "prod-payment-deploy"
            [kubernetes]
            kubeconfig = "{kubeconfig}"
            [alerts.alertmanager]
            bearer_token = {{ file = "{d}/am-token" }}
            [[alerts.routes]]
            matchers = ["service=payment-api"]
            service = "payment-api"
            "#,
            grace = GRACE.as_secs(),
            kubeconfig = sim_kubeconfig.display(),
        ),
    )
    .unwrap();
    cfg
}

/// Starts `rollbot serve`, has it acknowledge an alert, sends `signal`
/// and checks the exit and the store.
async fn stops_cleanly_on(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let seed = rollbot::sim::seed::Seed::from_file("config/sim-payment.yaml".as_ref()).unwrap();
    let sim = rollbot::sim::start(
        seed,
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let cfg = write_config(dir.path(), &kubeconfig);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollbot"))
        .args(["serve", "--config", cfg.to_str().unwrap(), "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("ROLLBOT_LOG", "info")
        .kill_on_drop(true)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    wait_until_within(
        Duration::from_secs(45),
        "rollbot serve answers /readyz",
        async || {
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                assert_eq!(r.status(), 200);
                return true;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "rollbot serve exited before it was ready"
            );
            false
        },
    )
    .await;

    let starts = (chrono::Utc::now() - chrono::Duration::minutes(6)).to_rfc3339();
    let alert = am_alert(
        "PaymentSuccessRateLow",
        &[],
        "firing",
        &starts,
        "0001-01-01T00:00:00Z",
    );
    let r = http
        .post(format!("{base}/webhooks/alertmanager"))
        .bearer_auth(AM_TOKEN)
        .json(&am_body(vec![alert]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // An idle keep-alive connection must not hold the shutdown up.
    drop(http);

    let pid = child.id().unwrap().to_string();
    let sent = Instant::now();
    let kill = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::time::timeout(GRACE + Duration::from_secs(5), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("rollbot did not stop within the grace after {signal}"))
        .unwrap();
    let took = sent.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{signal}: {:?}\n{stderr}", out.status);
    assert!(took < GRACE, "{signal}: stopping took {took:?}\n{stderr}");
    assert!(stderr.contains(&format!("SIG{signal}")), "{stderr}");
    assert!(stderr.contains("rollbot stopped"), "{stderr}");
    // The store lock is released and the acknowledged alert is there.
    let store = Store::open(&dir.path().join("db")).expect("the store opens after the stop");
    let proposals = store.list().unwrap();
    assert_eq!(proposals.len(), 1, "{proposals:#?}");
    assert_eq!(proposals[0].service.as_str(), "payment-api");
    assert_eq!(proposals[0].state, State::Proposed);
}

#[tokio::test]
async fn sigterm_stops_serve_cleanly_within_the_grace() {
    bounded(stops_cleanly_on("TERM")).await;
}

#[tokio::test]
async fn sigint_stops_serve_cleanly_within_the_grace() {
    bounded(stops_cleanly_on("INT")).await;
}
