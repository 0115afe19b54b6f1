//! The Swarm executor against a real Docker daemon: a private `dockerd`
//! (Debian's `docker.io`) started on a socket in a temporary directory, in
//! Swarm mode on 127.0.0.1, with images made locally from a static busybox
//! (no registry). Each test starts its own daemon and tears it down,
//! leaving nothing behind, even when it fails; the tests take turns, as
//! only one such daemon can run on a machine. If dockerd cannot start, the
//! test fails with the reason: it never passes without Docker.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rollbot::app::App;
use rollbot::config::Config;
use rollbot::domain::{EventKind, State};
use rollbot::exec::SwarmRollback;
use rollbot::exec::swarm::SwarmTarget;
use rollbot::ports::{Executor, PlanRequest, Standing};
use serde_json::{Value, json};
use support::fake_slack::FakeSlack;
use support::*;

/// The daemon is one per machine: tests take turns.
static ONE_DAEMON: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a Docker operation (start, converge, tear down) may take.
const DOCKER_LIMIT: Duration = Duration::from_secs(40);

/// Host paths the daemon creates outside its directory; removed on
/// teardown unless they were there before (another Docker on the machine).
const HOST_LEFTOVERS: &[&str] = &["/run/docker", "/run/containerd", "/etc/docker/key.json"];

/// A private dockerd in Swarm mode, torn down on drop.
struct Dockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    host: String,
    /// The [`HOST_LEFTOVERS`] that existed before the daemon started.
    existed: Vec<&'static str>,
}

impl Dockerd {
    /// Starts the daemon, waits for it, makes it a one-node swarm and
    /// imports `localtest/app:v1`, `v2` and `v3`.
    async fn start() -> Self {
        let dockerd = Path::new("/usr/sbin/dockerd");
        assert!(
            dockerd.exists(),
            "{} is missing: install Debian's docker.io and busybox-static (scripts/test.sh does) to run the Swarm tests",
            dockerd.display()
        );
        let existed = HOST_LEFTOVERS
            .iter()
            .copied()
            .filter(|p| Path::new(p).exists())
            .collect();
        // A short path: the daemon's sockets live under it.
        let dir = tempfile::Builder::new()
            .prefix("rbd")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let host = format!("unix://{}/docker.sock", d.display());
        let child = Command::new(dockerd)
            .env("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", "1")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("d.pid"))
            .args(["-H", &host])
            .args(["--storage-driver", "overlay2"])
            .args(["--iptables=false", "--ip-masq=false", "--bridge=none"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", dockerd.display()));
        let mut daemon = Self {
            dir,
            child: Some(child),
            host,
            existed,
        };
        let up = poll_until(DOCKER_LIMIT, async || {
            if let Some(Ok(Some(status))) = daemon.child.as_mut().map(Child::try_wait) {
                panic!(
                    "dockerd exited with {status} before answering:\n{}",
                    daemon.log_tail()
                );
            }
            daemon.docker(&["version"]).await.is_ok()
        })
        .await;
        assert!(
            up,
            "dockerd did not answer within {DOCKER_LIMIT:?}:\n{}",
            daemon.log_tail()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        daemon
            .ok(&[
                "swarm",
                "init",
                "--advertise-addr",
                "127.0.0.1",
                "--listen-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .await;
        for version in ["v1", "v2", "v3"] {
            daemon.import(version).await;
        }
        daemon
    }

    /// Imports `localtest/app:VERSION`: busybox sleeping, labelled with its
    /// version so each version is its own image.
    async fn import(&self, version: &str) {
        let rootfs = self.dir.path().join("rootfs");
        if !rootfs.exists() {
            std::fs::create_dir_all(rootfs.join("bin")).unwrap();
            std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
            for link in ["sh", "sleep"] {
                std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(link)).unwrap();
            }
        }
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .output()
            .unwrap();
        assert!(tar.status.success(), "tar: {tar:?}");
        let mut import = tokio::process::Command::new("docker")
            .args(["-H", &self.host, "import"])
            .args(["-c", r#"CMD ["/bin/sh","-c","sleep 100000"]"#])
            .args(["-c", &format!("LABEL ver={version}")])
            .args(["-", &format!("localtest/app:{version}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = import.stdin.take().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stdin, &tar.stdout)
            .await
            .unwrap();
        drop(stdin);
        let out = import.wait_with_output().await.unwrap();
        assert!(out.status.success(), "docker import: {out:?}");
    }

    /// Runs the docker CLI against this daemon; its stdout, or why it failed.
    async fn docker(&self, args: &[&str]) -> Result<String, String> {
        let out = tokio::process::Command::new("docker")
            .args(["-H", &self.host])
            .args(args)
            .output()
            .await
            .map_err(|e| format!("cannot run docker: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "docker {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// [`Dockerd::docker`], failing the test if it fails.
    async fn ok(&self, args: &[&str]) -> String {
        match self.docker(args).await {
            Ok(out) => out,
            Err(e) => panic!("{e}\n{}", self.log_tail()),
        }
    }

    /// The service as the Engine API returns it.
    async fn inspect(&self, service: &str) -> Value {
        let out = self.ok(&["service", "inspect", service]).await;
        let all: Value = serde_json::from_str(&out).unwrap();
        all[0].clone()
    }

    /// Creates `name` on `localtest/app:v1` with the fast settings, and
    /// waits for both replicas.
    async fn create(&self, name: &str) {
        self.ok(&[
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--replicas",
            "2",
            "--no-resolve-image",
            "--update-order",
            "start-first",
            "--update-monitor",
            "1s",
            "--rollback-monitor",
            "1s",
            "--rollback-order",
            "start-first",
            "--stop-grace-period",
            "1s",
            "localtest/app:v1",
        ])
        .await;
        self.wait_running(name, "localtest/app:v1").await;
    }

    /// `docker service update --image localtest/app:VERSION`, waiting for
    /// `completed` and the replicas.
    async fn update(&self, name: &str, version: &str) {
        let image = format!("localtest/app:{version}");
        self.ok(&[
            "service",
            "update",
            "--detach",
            "--no-resolve-image",
            "--image",
            &image,
            name,
        ])
        .await;
        self.wait_state(name, "completed").await;
        self.wait_running(name, &image).await;
    }

    async fn wait_state(&self, name: &str, state: &str) {
        let mut last = Value::Null;
        let reached = poll_until(DOCKER_LIMIT, async || {
            last = self.inspect(name).await["UpdateStatus"].clone();
            last["State"] == state
        })
        .await;
        assert!(reached, "{name} never reached {state}: {last}");
    }

    /// The images of `name`'s tasks that should run and do.
    async fn running(&self, name: &str) -> Vec<String> {
        let out = self
            .ok(&[
                "service",
                "ps",
                name,
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Image}} {{.CurrentState}}",
            ])
            .await;
        out.lines()
            .filter(|l| l.contains(" Running "))
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
            .collect()
    }

    async fn wait_running(&self, name: &str, image: &str) {
        let mut last = Vec::new();
        let reached = poll_until(DOCKER_LIMIT, async || {
            last = self.running(name).await;
            last.len() == 2 && last.iter().all(|i| i == image)
        })
        .await;
        assert!(reached, "{name} never ran 2 × {image}: {last:?}");
    }

    fn target(&self, service: &str) -> SwarmTarget {
        SwarmTarget {
            service: service.into(),
            docker_host: self.host.clone(),
            tls: None,
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Runs the docker CLI synchronously (for teardown, which runs in Drop).
    fn docker_sync(&self, args: &[&str]) -> String {
        Command::new("docker")
            .args(["-H", &self.host])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }
}

impl Drop for Dockerd {
    /// Tears down so that nothing is left: services and containers, the
    /// swarm, the daemon (containerd and its shims exit with it), leftover
    /// mounts, then what the daemon made on the host.
    fn drop(&mut self) {
        let deadline = std::time::Instant::now() + DOCKER_LIMIT;
        let services = self.docker_sync(&["service", "ls", "-q"]);
        for id in services.lines() {
            self.docker_sync(&["service", "rm", id]);
        }
        while !self.docker_sync(&["ps", "-aq"]).is_empty() && std::time::Instant::now() < deadline {
            // Polling the daemon; teardown runs outside any runtime.
            std::thread::sleep(Duration::from_millis(100));
        }
        self.docker_sync(&["swarm", "leave", "--force"]);
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            while child.try_wait().ok().flatten().is_none() {
                if std::time::Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let d = self.dir.path().to_string_lossy().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&d))
            .collect();
        // Deepest first.
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = Command::new("umount").arg(m).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", "docker_gwbridge"])
            .stderr(Stdio::null())
            .status();
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let _ = std::fs::remove_dir(h.path().join("docker"));
            }
        }
        for path in HOST_LEFTOVERS {
            if !self.existed.contains(path) {
                let p = PathBuf::from(path);
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            }
        }
    }
}

/// The rollback's progress lines on the proposal's timeline.
fn progress_lines(timeline: &[rollbot::domain::TimelineEvent]) -> Vec<String> {
    timeline
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Progress { line } => Some(line.clone()),
            _ => None,
        })
        .collect()
}

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const CHANNEL: &str = "CINCIDENT";

fn signed(
    http: &reqwest::Client,
    url: String,
    content_type: &str,
    body: String,
) -> reqwest::RequestBuilder {
    use hmac::Mac;
    let ts = chrono::Utc::now().timestamp();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    http.post(url)
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", ts.to_string())
        .header(
            "x-slack-signature",
            format!("v0={}", hex::encode(mac.finalize().into_bytes())),
        )
        .body(body)
}

/// A signed ✅ `reaction_added` by `who` on the message `ts`.
fn reaction(event: &str, who: &str, ts: &str) -> String {
    json!({
        "token": "x", "team_id": "T0TEST", "api_app_id": "A0TEST", "type": "event_callback",
        "event_id": event, "event_time": 1700000100,
        "event": {"type": "reaction_added", "user": who, "reaction": "white_check_mark",
                  "item_user": "UROLLBOT", "event_ts": "1700000100.000100",
                  "item": {"type": "message", "channel": CHANNEL, "ts": ts}}
    })
    .to_string()
}

/// `rollbot serve` from config alone: the service `app` on the private
/// daemon, Slack (the fake) and Alertmanager's webhook.
fn serve_config(dir: &Path, slack: &str, docker_host: &str, health: &str) -> String {
    let d = dir.display();
    std::fs::write(dir.join("bot-token"), "xoxb-test-token").unwrap();
    std::fs::write(dir.join("signing-secret"), SECRET).unwrap();
    std::fs::write(dir.join("am-token"), AM_TOKEN).unwrap();
    format!(
        r#"
        [store]
        path = "{d}/db"
        [approval]
        channel = "slack:{CHANNEL}"
        [groups]
        sre = ["slack:UALICE", "slack:UBOB", "slack:UCAROL"]
        [services.app]
        groups = ["sre"]
        [services.app.swarm]
        service = "app"
        docker_host = "{docker_host}"
        [services.app.verify]
        window = "30s"
        interval = "1s"
        [[services.app.verify.http]]
        name = "health"
        url = "{health}"
        [slack]
        api_url = "{slack}"
        bot_token = {{ file = "{d}/bot-token" }}
        signing_secret = {{ file = "{d}/signing-secret" }}
        [alerts.alertmanager]
        bearer_token = {{ file = "{d}/am-token" }}
        [[alerts.routes]]
        matchers = ["service=app"]
        service = "app"
        "#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_and_two_approvals_roll_the_swarm_service_back_to_its_previous_spec() {
    let _turn = ONE_DAEMON.lock().await;
    let docker = Dockerd::start().await;
    docker.create("app").await;
    docker.update("app", "v2").await;
    let before = docker.inspect("app").await;
    assert_eq!(
        before["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        "localtest/app:v1"
    );

    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSlack::start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // Recovery is verified against rollbot's own /healthz: the app
        // itself is a sleeping busybox.
        let health = format!("{base}/healthz");
        let config = Config::parse(&serve_config(
            dir.path(),
            &fake.api_url,
            &docker.host,
            &health,
        ))
        .unwrap_or_else(|p| panic!("{p:?}"));
        let app = App::start(&config, None).await.unwrap();
        let engine = app.engine().clone();
        tokio::spawn(app.serve(listener, std::future::pending()));
        let http = reqwest::Client::new();

        // /readyz says the Docker endpoint answers.
        let ready: Value = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            ready["targets"],
            json!({ format!("docker {}", docker.host): "ok" }),
            "{ready}"
        );

        let starts = (chrono::Utc::now() - chrono::Duration::minutes(6)).to_rfc3339();
        let firing = am_alert(
            "AppErrorRateHigh",
            &[("service", "app")],
            "firing",
            &starts,
            "0001-01-01T00:00:00Z",
        );
        let r = http
            .post(format!("{base}/webhooks/alertmanager"))
            .bearer_auth(AM_TOKEN)
            .json(&am_body(vec![firing]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

        let mut mapped = None;
        wait_until("the proposal is posted on Slack", || {
            mapped = engine.store().list().unwrap().pop().and_then(|p| {
                let ts = p.primary_message()?.message.clone();
                (!ts.starts_with("pending")).then_some((p, ts))
            });
            mapped.is_some()
        })
        .await;
        let (p, ts) = mapped.unwrap();
        // The plan: v2 now, back to v1 (what `docker service rollback` restores).
        assert_eq!(
            p.plan.workload,
            format!("swarm service app on {}", docker.host)
        );
        assert_eq!(p.plan.current.images[0].image, "localtest/app:v2");
        assert_eq!(p.plan.target.images[0].image, "localtest/app:v1");
        let post = fake.expect_post(&format!("Rollback proposal {}", p.id));
        let shown = post.body.to_string();
        let (now, back) = (
            shown.find("localtest/app:v2").expect("v2 shown"),
            shown.find("localtest/app:v1").expect("v1 shown"),
        );
        assert!(now < back, "shown as v2 → v1: {shown}");
        assert_eq!(docker.inspect("app").await["Spec"], before["Spec"]);

        for (event, who) in [("Ev1", "UALICE"), ("Ev2", "UBOB")] {
            let r = signed(
                &http,
                format!("{base}/slack/events"),
                "application/json",
                reaction(event, who, &ts),
            )
            .send()
            .await
            .unwrap();
            assert_eq!(r.status(), 200);
        }
        wait_until_within(DOCKER_LIMIT, "the rollback finishes", async || {
            !matches!(
                engine.get(&p.id).unwrap().state,
                State::Proposed | State::Approved | State::Executing | State::RolledBack
            )
        })
        .await;
        let done = engine.get(&p.id).unwrap();
        assert_eq!(done.state, State::Verified, "{done:?}");

        // Docker's own record: rolled back, v1 specified and running.
        let after = docker.inspect("app").await;
        assert_eq!(after["UpdateStatus"]["State"], "rollback_completed");
        let image = |spec: &Value| spec["TaskTemplate"]["ContainerSpec"]["Image"].clone();
        assert_eq!(image(&after["Spec"]), "localtest/app:v1");
        assert_eq!(image(&after["PreviousSpec"]), "localtest/app:v2");
        assert_eq!(
            docker.running("app").await,
            vec!["localtest/app:v1", "localtest/app:v1"]
        );
        let timeline = engine.store().timeline(&p.id).unwrap();
        let lines = progress_lines(&timeline);
        assert!(
            lines.contains(&"rollback: manually requested rollback".to_string()),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("app.") && l.contains("localtest/app:v1")),
            "per-task lines: {lines:?}"
        );
        assert!(
            lines.contains(&"overall progress: rolling back update: 2 out of 2 tasks".to_string()),
            "{lines:?}"
        );
        assert_eq!(
            lines.last().map(String::as_str),
            Some("verify: Service converged")
        );

        // The thread: started, Docker's progress, done.
        fake.wait_for("the rollback's end in the thread", |c| {
            c.iter()
                .any(|c| c.body.to_string().contains("Rollback complete"))
        })
        .await;
        fake.expect_reply(&ts, "Rolling back app");
        fake.expect_reply(&ts, "Rollback complete: `verify: Service converged`");
        // Docker's progress: the first line posted, the latest edited in
        // (as often as `progress.edit_interval` allows; every line is on
        // the timeline, checked above).
        fake.expect_reply(&ts, "`rollback: manually requested rollback`");
        let edits: Vec<String> = fake
            .calls_to("chat.update")
            .iter()
            .filter_map(|c| c.body["text"].as_str().map(str::to_string))
            .collect();
        assert!(
            edits.contains(&"`verify: Service converged`".to_string()),
            "{edits:#?}"
        );

        // The alert clears: the resolved notice and the incident report.
        let resolved = am_alert(
            "AppErrorRateHigh",
            &[("service", "app")],
            "resolved",
            &starts,
            &chrono::Utc::now().to_rfc3339(),
        );
        let r = http
            .post(format!("{base}/webhooks/alertmanager"))
            .bearer_auth(AM_TOKEN)
            .json(&am_body(vec![resolved]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        fake.wait_for("the incident report", |c| {
            c.iter()
                .any(|c| c.raw.contains(&format!("Incident report {}", p.id)))
        })
        .await;
        fake.expect_upload(&format!("Incident report {}", p.id));
        let report = engine.report(&p.id, "en").await.unwrap().markdown;
        assert!(
            report.contains("localtest/app:v2") && report.contains("localtest/app:v1"),
            "{report}"
        );
        fake.expect_reply(&ts, "Verification passed");
        fake.expect_reply(&ts, "Resolved: app");
        fake.expect_reply(&ts, "Draft incident report");
        finish_app(&engine, &fake)
            .await
            .unwrap_or_else(|f| panic!("{f}"));
    })
    .await;
}

/// The Swarm executor in the engine's world (memory chat, scripted clock).
fn swarm_world(docker: &Dockerd) -> Tester {
    let config = format!(
        r#"
        [approval]
        channel = "memory:incidents"
        [services.app]
        approvers = ["slack:UALICE", "slack:UBOB", "slack:UCAROL"]
        [services.app.swarm]
        service = "app"
        docker_host = "{}"
        "#,
        docker.host
    );
    Tester::with_executor(&config, Arc::new(SwarmRollback::default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_between_plan_and_approval_supersedes_and_changes_nothing() {
    let _turn = ONE_DAEMON.lock().await;
    let docker = Dockerd::start().await;
    docker.create("app").await;
    docker.update("app", "v2").await;
    let docker = &docker;
    run_test_in(
        || swarm_world(docker),
        |t| async move {
            let p = t.propose_for("app", "slack:UCAROL").await.unwrap();
            t.expect_posted(&p.id);
            assert_eq!(p.plan.current.images[0].image, "localtest/app:v2");
            assert_eq!(p.plan.target.images[0].image, "localtest/app:v1");
            // Someone ships v3 while people vote.
            docker.update("app", "v3").await;
            let moved = docker.inspect("app").await;

            t.approve(&p.id, "slack:UALICE").await;
            t.approve(&p.id, "slack:UBOB").await;
            t.settle().await;
            let x = t.proposal(&p.id);
            x.expect_state(State::Superseded);
            // Nothing was sent: the service is exactly as v3 left it.
            assert_eq!(docker.inspect("app").await, moved);
            assert_eq!(
                docker.running("app").await,
                vec!["localtest/app:v3", "localtest/app:v3"]
            );
            let notes = t.expect_threads(&p.id, &["execution_started", "superseded"]);
            let rollbot::ports::ThreadNote::Superseded { reason } = &notes[1] else {
                panic!("{notes:?}");
            };
            assert!(
                reason.contains("localtest/app:v3") && reason.contains("localtest/app:v2"),
                "{reason}"
            );
            t
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_image_is_rolled_to_and_a_restart_finds_it_applied() {
    let _turn = ONE_DAEMON.lock().await;
    let docker = Dockerd::start().await;
    docker.create("app").await;
    docker.update("app", "v2").await;
    docker.update("app", "v3").await;
    let docker = &docker;
    run_test_in(
        || swarm_world(docker),
        |t| async move {
            // The runbook's second form, `/rollback app --image
            // localtest/app:v1`: v3 → v1, past the previous spec (v2).
            let p = t
                .engine
                .propose(rollbot::engine::ProposeRequest {
                    service: rollbot::domain::ServiceName::parse("app").unwrap(),
                    origin: rollbot::domain::Origin::Command,
                    proposer: user("slack:UCAROL"),
                    reason: "v2 and v3 both bad".into(),
                    to_revision: None,
                    image: Some("localtest/app:v1".into()),
                    alert: None,
                    channel: None,
                })
                .await
                .unwrap();
            t.expect_posted(&p.id);
            assert_eq!(p.plan.current.images[0].image, "localtest/app:v3");
            assert_eq!(p.plan.target.images[0].image, "localtest/app:v1");
            t.approve(&p.id, "slack:UALICE").await;
            t.approve(&p.id, "slack:UBOB").await;
            t.settle().await;
            t.proposal(&p.id).expect_state(State::RolledBack);
            t.expect_threads(
                &p.id,
                &["execution_started", "progress", "execution_finished"],
            );
            let lines = progress_lines(&t.engine.store().timeline(&p.id).unwrap());
            assert!(
                lines.contains(&"overall progress: 2 out of 2 tasks".to_string()),
                "{lines:?}"
            );
            let after = docker.inspect("app").await;
            assert_eq!(after["UpdateStatus"]["State"], "completed");
            assert_eq!(
                after["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
                "localtest/app:v1"
            );
            assert_eq!(
                docker.running("app").await,
                vec!["localtest/app:v1", "localtest/app:v1"]
            );

            // After a restart the update is found sent, and not sent again.
            let exec = SwarmRollback::default();
            let target = rollbot::exec::Target::Swarm(docker.target("app"));
            let plan = t.engine.get(&p.id).unwrap().plan;
            assert_eq!(
                exec.standing(&target, &plan).await.unwrap(),
                Standing::Applied
            );
            let (tx, _rx) = tokio::sync::mpsc::channel(256);
            exec.follow(&target, &plan, tx).await.unwrap();
            assert_eq!(docker.inspect("app").await["Version"], after["Version"]);
            // The image that runs already cannot be a plan.
            let e = exec
                .plan(
                    &target,
                    &PlanRequest {
                        image: Some("localtest/app:v1".into()),
                        ..PlanRequest::default()
                    },
                )
                .await
                .unwrap_err();
            assert_eq!(e.kind, rollbot::ports::ExecErrorKind::AlreadyCurrent);
            t
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_say_what_swarm_cannot_do() {
    let _turn = ONE_DAEMON.lock().await;
    let docker = Dockerd::start().await;
    docker.create("app").await;
    bounded(async {
        let exec = SwarmRollback::default();
        let target = rollbot::exec::Target::Swarm(docker.target("app"));
        // Never updated: no previous spec.
        let e = exec
            .plan(&target, &PlanRequest::previous())
            .await
            .unwrap_err();
        assert_eq!(e.kind, rollbot::ports::ExecErrorKind::NoHistory);
        assert!(e.message.contains("--image"), "{e}");
        let e = exec
            .plan(&target, &PlanRequest::to_revision(41))
            .await
            .unwrap_err();
        assert_eq!(e.kind, rollbot::ports::ExecErrorKind::Unsupported);
        assert!(e.message.contains("--to-revision 41"), "{e}");
        let missing = rollbot::exec::Target::Swarm(docker.target("nope"));
        let e = exec
            .plan(&missing, &PlanRequest::previous())
            .await
            .unwrap_err();
        assert_eq!(e.kind, rollbot::ports::ExecErrorKind::NotFound);
        let e = exec
            .rehearse(
                &target,
                &rollbot::domain::ProposalId::parse("RB-7K3M9Q").unwrap(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, rollbot::ports::ExecErrorKind::Unsupported);
        // A daemon that is not there says where it looked.
        let gone = SwarmTarget {
            service: "app".into(),
            docker_host: format!("unix://{}/nothing.sock", docker.dir.path().display()),
            tls: None,
        };
        let e = exec
            .plan(
                &rollbot::exec::Target::Swarm(gone.clone()),
                &PlanRequest::previous(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, rollbot::ports::ExecErrorKind::Unreachable);
        assert!(e.message.contains("nothing.sock"), "{e}");
        assert!(rollbot::exec::swarm::ping(&gone).await.is_err());
        rollbot::exec::swarm::ping(&docker.target("app"))
            .await
            .unwrap();
    })
    .await;
}

/// A config whose one service targets Swarm at `docker_host`.
fn unreachable_config(dir: &Path, docker_host: &str) -> String {
    format!(
        r#"
        [store]
        path = "{}/db"
        [services.app]
        approvers = ["slack:UALICE", "slack:UBOB"]
        [services.app.swarm]
        service = "app"
        docker_host = "{docker_host}"
        "#,
        dir.display()
    )
}

#[tokio::test]
async fn an_unreachable_docker_endpoint_is_named_by_readyz_and_check_config() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("unix://{}/no-docker.sock", dir.path().display());
        let text = unreachable_config(dir.path(), &host);
        let file = dir.path().join("rollbot.toml");
        std::fs::write(&file, &text).unwrap();

        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollbot"))
            .args(["check-config", "--config"])
            .arg(&file)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "services.app.swarm.docker_host: cannot reach Docker at {host}"
            )),
            "{stderr}"
        );

        // serve starts (alerts are still taken) and /readyz says why
        // rollbacks of app cannot run.
        let config = Config::parse(&text).unwrap();
        let app = App::start(&config, None).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(app.serve(listener, std::future::pending()));
        let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        let said = body["targets"][format!("docker {host}")]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            said.starts_with(&format!("unreachable: cannot reach Docker at {host}")),
            "{body}"
        );
    })
    .await;
}

#[tokio::test]
async fn what_swarm_cannot_do_and_image_mistakes_are_worded_in_the_persons_language() {
    use rollbot::chat::failure::UserError;
    use rollbot::chat::slack::render;
    use rollbot::domain::ServiceName;
    bounded(async {
        let exec = SwarmRollback::default();
        // No daemon needed: neither request reaches Docker.
        let target = rollbot::exec::Target::Swarm(SwarmTarget {
            service: "app".into(),
            docker_host: "unix:///nonexistent/docker.sock".into(),
            tls: None,
        });
        let id = rollbot::domain::ProposalId::parse("RB-7K3M9Q").unwrap();
        let drill = exec.rehearse(&target, &id).await.unwrap_err();
        let revision = exec
            .plan(&target, &PlanRequest::to_revision(41))
            .await
            .unwrap_err();
        let service = ServiceName::parse("app").unwrap();
        let t = rollbot::templates::Templates::load().unwrap();
        for (locale, drill_says, plan_says) in [
            (
                "en",
                "Drills rehearse on a copy",
                "rollbot cannot plan that",
            ),
            (
                "zh",
                "演练是在 Kubernetes 工作负载的副本上进行的",
                "rollbot 无法为该服务",
            ),
            (
                "ja",
                "ドリルは Kubernetes ワークロードのコピー上で",
                "rollbot はこの種類のターゲット",
            ),
        ] {
            let reply = |error| {
                let r = render::Reply::Refused { error };
                render::reply(&t, locale, &r).unwrap().json["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            };
            let text = reply(UserError::Drill {
                service: service.clone(),
                error: drill.clone(),
            });
            assert!(text.contains(drill_says), "{locale}: {text}");
            // The executor's message is quoted as the detail.
            assert!(
                text.contains("drills are not available for swarm targets"),
                "{text}"
            );
            let text = reply(UserError::Plan {
                service: service.clone(),
                error: revision.clone(),
            });
            assert!(text.contains(plan_says), "{locale}: {text}");
            assert!(text.contains("--to-revision 41"), "{text}");
        }
        // The image form's mistakes, worded from the catalogue.
        for (locale, missing_says, both_says) in [
            ("en", "needs the image to roll to", "cannot go together"),
            ("zh", "需要指定要回滚到的镜像", "不能同时使用"),
            ("ja", "には戻し先のイメージが必要です", "は同時に使えません"),
        ] {
            let error = |error| {
                let r = render::Reply::Error { error };
                render::reply(&t, locale, &r).unwrap().json["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            };
            let missing = rollbot::chat::commands::parse("app --image", &["app"]).unwrap_err();
            let text = error(missing);
            assert!(text.contains(missing_says), "{locale}: {text}");
            let both =
                rollbot::chat::commands::parse("app --to-revision 3 --image app:v1", &["app"])
                    .unwrap_err();
            let text = error(both);
            assert!(text.contains(both_says), "{locale}: {text}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_update_fails_with_dockers_message() {
    let _turn = ONE_DAEMON.lock().await;
    let docker = Dockerd::start().await;
    docker.create("app").await;
    bounded(async {
        let exec = SwarmRollback::default();
        let target = rollbot::exec::Target::Swarm(docker.target("app"));
        // An image the daemon does not have (and no registry to pull it
        // from): the new task fails, and Swarm pauses the update.
        let plan = exec
            .plan(
                &target,
                &PlanRequest {
                    image: Some("localtest/app:missing".into()),
                    ..PlanRequest::default()
                },
            )
            .await
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        let e = exec.execute(&target, &plan, tx).await.unwrap_err();
        assert_eq!(e.kind, rollbot::ports::ExecErrorKind::RolloutFailed);
        let status = docker.inspect("app").await["UpdateStatus"].clone();
        assert_eq!(status["State"], "paused");
        let message = status["Message"].as_str().unwrap();
        assert!(
            e.message.contains(message) && e.message.contains("docker service ps app"),
            "{e}"
        );
        let mut lines = Vec::new();
        while let Ok(line) = rx.try_recv() {
            lines.push(line);
        }
        assert!(
            lines.iter().any(|l| l.contains("localtest/app:missing")),
            "the failing task is reported: {lines:?}"
        );
    })
    .await;
}

#[test]
fn swarm_tables_are_checked_with_their_key_paths() {
    let problems = Config::parse(
        r#"
        [services.a]
        approvers = ["slack:U1", "slack:U2"]
        [services.a.swarm]
        service = " "
        docker_host = "tcp://manager-1"
        [services.b]
        approvers = ["slack:U1", "slack:U2"]
        [services.b.swarm]
        service = "b"
        [services.b.swarm.tls]
        ca = "/nonexistent/ca.pem"
        cert = "/nonexistent/cert.pem"
        key = "/nonexistent/key.pem"
        "#,
    )
    .unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "services.a.swarm.service",
            "services.a.swarm.docker_host",
            "services.b.swarm.tls",
            "services.b.swarm.tls.ca",
            "services.b.swarm.tls.cert",
            "services.b.swarm.tls.key",
        ],
        "{problems:#?}"
    );
    let unknown = Config::parse(
        r#"
        [services.a]
        approvers = ["slack:U1", "slack:U2"]
        [services.a.swarm]
        service = "a"
        host = "unix:///var/run/docker.sock"
        "#,
    )
    .unwrap_err();
    assert_eq!(unknown[0].path, "services.a.swarm.host", "{unknown:?}");
    assert!(unknown[0].message.contains("docker_host"), "{unknown:?}");
    // Swarm is built in: not a custom kind.
    let custom = Config::parse(
        r#"
        [services.a]
        approvers = ["slack:U1", "slack:U2"]
        [services.a.custom]
        kind = "swarm"
        "#,
    )
    .unwrap_err();
    assert_eq!(custom[0].path, "services.a.custom.kind", "{custom:?}");
    assert!(
        custom[0].message.contains("[services.NAME.swarm]"),
        "{custom:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slash_command_naming_an_image_rolls_the_service_to_it() {
    let _turn = ONE_DAEMON.lock().await;
    let docker = Dockerd::start().await;
    docker.create("app").await;
    docker.update("app", "v2").await;
    docker.update("app", "v3").await;
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSlack::start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let health = format!("{base}/healthz");
        let text = serve_config(dir.path(), &fake.api_url, &docker.host, &health);
        let config = Config::parse(&text).unwrap_or_else(|p| panic!("{p:?}"));
        let app = App::start(&config, None).await.unwrap();
        let engine = app.engine().clone();
        tokio::spawn(app.serve(listener, std::future::pending()));
        let http = reqwest::Client::new();

        let form = serde_urlencoded::to_string([
            ("team_id", "T0TEST"),
            ("channel_id", CHANNEL),
            ("user_id", "UCAROL"),
            ("user_name", "carol"),
            ("command", "/rollback"),
            ("text", "app --image localtest/app:v1 v2 and v3 both bad"),
            (
                "response_url",
                "https://hooks.slack.com/commands/T0TEST/1/abc",
            ),
            ("trigger_id", "1.2.3"),
        ])
        .unwrap();
        let r = signed(
            &http,
            format!("{base}/slack/commands"),
            "application/x-www-form-urlencoded",
            form,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        let mut mapped = None;
        wait_until("the proposal is posted on Slack", || {
            mapped = engine.store().list().unwrap().pop().and_then(|p| {
                let ts = p.primary_message()?.message.clone();
                (!ts.starts_with("pending")).then_some((p, ts))
            });
            mapped.is_some()
        })
        .await;
        let (p, ts) = mapped.unwrap();
        assert_eq!(p.reason, "v2 and v3 both bad");
        let post = fake.expect_post(&format!("Rollback proposal {}", p.id));
        assert!(
            post.body
                .to_string()
                .contains("`localtest/app:v3` → `localtest/app:v1`"),
            "{}",
            post.body
        );
        for (event, who) in [("Ev1", "UALICE"), ("Ev2", "UBOB")] {
            let r = signed(
                &http,
                format!("{base}/slack/events"),
                "application/json",
                reaction(event, who, &ts),
            )
            .send()
            .await
            .unwrap();
            assert_eq!(r.status(), 200);
        }
        wait_until_within(
            DOCKER_LIMIT,
            "the rollback and its checks finish",
            async || {
                !matches!(
                    engine.get(&p.id).unwrap().state,
                    State::Proposed | State::Approved | State::Executing | State::RolledBack
                )
            },
        )
        .await;
        assert_eq!(engine.get(&p.id).unwrap().state, State::Verified);
        let after = docker.inspect("app").await;
        assert_eq!(after["UpdateStatus"]["State"], "completed");
        assert_eq!(
            after["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
            "localtest/app:v1"
        );
        assert_eq!(
            docker.running("app").await,
            vec!["localtest/app:v1", "localtest/app:v1"]
        );
        fake.wait_for("the rollback's end in the thread", |c| {
            c.iter()
                .any(|c| c.body.to_string().contains("Rollback complete"))
        })
        .await;
        fake.expect_reply(&ts, "Rolling back app");
        fake.expect_reply(&ts, "Rollback complete: `verify: Service converged`");
        // The rest of the thread (progress, verification, the report) is
        // what the alert test checks.
        fake.ignore_messages();
        finish_app(&engine, &fake)
            .await
            .unwrap_or_else(|f| panic!("{f}"));
    })
    .await;
}

/// The real executor, except that rollbot stops right after sending the
/// update (a panic in the engine's task ends it there, like a kill).
struct StopsAfterTheUpdate(SwarmRollback);

#[async_trait::async_trait]
impl Executor for StopsAfterTheUpdate {
    async fn plan(
        &self,
        target: &rollbot::exec::Target,
        request: &PlanRequest,
    ) -> Result<rollbot::domain::Plan, rollbot::ports::ExecError> {
        self.0.plan(target, request).await
    }

    async fn execute(
        &self,
        target: &rollbot::exec::Target,
        plan: &rollbot::domain::Plan,
        _progress: tokio::sync::mpsc::Sender<String>,
    ) -> Result<rollbot::ports::ExecOutcome, rollbot::ports::ExecError> {
        self.0.apply(target, plan).await?;
        panic!("rollbot stops right after sending the update");
    }
}

/// An engine over the store in `dir` (fresh, or the one a stopped process
/// left) posting to `chat`, which outlives restarts as Slack does.
fn engine_in(
    dir: tempfile::TempDir,
    config: &str,
    chat: Arc<rollbot::ports::memory::MemoryChat>,
    executor: Arc<dyn Executor>,
) -> Tester {
    let config = Config::parse(config).unwrap();
    let store = rollbot::store::Store::open(&dir.path().join("db")).unwrap();
    let clock = Arc::new(rollbot::domain::ManualClock::new(t0()));
    let services = config.services();
    let engine = rollbot::engine::Engine::new(
        store,
        services.clone(),
        rollbot::engine::Ports {
            chat: chat.clone(),
            executor,
            verifier: Arc::new(rollbot::verify::HttpVerifier::new(&services)),
            clock: clock.clone(),
        },
    );
    engine.add_bot_identity(user(BOT));
    Tester {
        engine,
        chat,
        executor: rollbot::ports::memory::ScriptedExecutor::new(reference_plan()),
        verifier: rollbot::ports::memory::ScriptedVerifier::new(),
        clock,
        dir,
        config,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_the_update_was_sent_follows_it_without_sending_it_again() {
    let _turn = ONE_DAEMON.lock().await;
    let docker = Dockerd::start().await;
    docker.create("app").await;
    docker.update("app", "v2").await;
    let config = format!(
        r#"
        [approval]
        channel = "memory:incidents"
        [services.app]
        approvers = ["slack:UALICE", "slack:UBOB", "slack:UCAROL"]
        [services.app.swarm]
        service = "app"
        docker_host = "{}"
        "#,
        docker.host
    );
    let chat = rollbot::ports::memory::MemoryChat::new();
    let make = {
        let (config, chat) = (config.clone(), chat.clone());
        move || {
            engine_in(
                tempfile::tempdir().unwrap(),
                &config,
                chat,
                Arc::new(StopsAfterTheUpdate(SwarmRollback::default())),
            )
        }
    };
    let docker = &docker;
    run_test_in(make, |t| async move {
        let p = t.propose_for("app", "slack:UCAROL").await.unwrap();
        t.approve(&p.id, "slack:UALICE").await;
        t.approve(&p.id, "slack:UBOB").await;
        t.engine.wait_idle().await;
        assert!(t.engine.background_panicked(), "the first process stopped");
        assert_eq!(t.engine.get(&p.id).unwrap().state, State::Executing);
        let sent = docker.inspect("app").await;
        assert_eq!(
            sent["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"], "localtest/app:v1",
            "the update was sent"
        );

        // The second process, on the same store.
        t.engine.store().flush().await.unwrap();
        let dir = t.dir;
        drop(t.engine);
        let t = engine_in(
            dir,
            &config,
            chat.clone(),
            Arc::new(SwarmRollback::default()),
        );
        t.engine.recover().await.unwrap();
        t.settle().await;

        let x = t.proposal(&p.id);
        x.expect_state(State::RolledBack);
        assert!(x.timeline.iter().any(|e| matches!(
            &e.kind,
            EventKind::Resumed { step } if *step == rollbot::domain::ResumeStep::Follow
        )));
        // Sent once: a second `rollback=previous` would have swapped back to v2.
        let after = docker.inspect("app").await;
        assert_eq!(after["UpdateStatus"]["State"], "rollback_completed");
        assert_eq!(
            after["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
            "localtest/app:v1"
        );
        assert_eq!(
            after["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"],
            "localtest/app:v2"
        );
        assert_eq!(
            docker.running("app").await,
            vec!["localtest/app:v1", "localtest/app:v1"]
        );
        assert_eq!(
            progress_lines(&x.timeline).last().map(String::as_str),
            Some("verify: Service converged")
        );
        assert_eq!(t.expect_posted(&p.id), "memory:incidents");
        t.expect_threads(
            &p.id,
            &[
                "execution_started",
                "resumed",
                "progress",
                "execution_finished",
            ],
        );
        t
    })
    .await;
}

#[tokio::test]
async fn a_daemon_that_stays_silent_after_the_update_is_reported_as_lost_track() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        // A plan as stored before the daemon went away.
        let gone = SwarmTarget {
            service: "app".into(),
            docker_host: format!("unix://{}/docker.sock", dir.path().display()),
            tls: None,
        };
        let guard = rollbot::exec::swarm::SwarmPlan {
            target: gone.clone(),
            id: "x1".into(),
            version: 7,
            spec: json!({"TaskTemplate": {"ContainerSpec": {"Image": "app:v2"}}}),
            previous: json!({"TaskTemplate": {"ContainerSpec": {"Image": "app:v1"}}}),
            action: rollbot::exec::swarm::Action::Rollback,
            restore_image: "app:v1".into(),
        };
        let mut plan = reference_plan();
        plan.guard = serde_json::to_value(&guard).unwrap();
        let exec = SwarmRollback {
            lost_track: Duration::from_secs(1),
            ..SwarmRollback::default()
        };
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let started = std::time::Instant::now();
        let e = exec
            .follow(&rollbot::exec::Target::Swarm(gone), &plan, tx)
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_secs(1), "waited first");
        assert_eq!(e.kind, rollbot::ports::ExecErrorKind::Unreachable);
        assert!(
            e.message.starts_with("lost track of the update")
                && e.message.contains("docker service ps app"),
            "{e}"
        );
    })
    .await;
}
