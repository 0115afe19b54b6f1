//! Helpers for tests that run the real `rollbot serve` binary as a child
//! process — the kill test and the soak test — against loopback fakes: the
//! simulated Kubernetes API (in this process, so PATCHes can be counted),
//! the fake Slack behind a recording proxy that can be made slow, and a
//! health endpoint that reports what the simulated deployment really runs.
//!
//! A child process, not an in-process `App`, because only a process can be
//! SIGKILLed at an arbitrary instant and restarted on the same sled store,
//! and only a process shows a stalled runtime the way production would.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hmac::{Hmac, Mac};
use rollbot::sim::{Kind, SimHandle};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::process::{Child, Command};

/// Slack's signing secret in these tests.
pub const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// The Alertmanager bearer token in these tests.
pub const AM_TOKEN: &str = "am-token-proc-0123";
/// The incident channel proposals are posted to.
pub const CHANNEL: &str = "CINCIDENT";
/// The namespace of every simulated deployment.
pub const NAMESPACE: &str = "production";

/// A small seeded PRNG (SplitMix64): runs are reproducible from the printed
/// seed, and no crate is needed for it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The seed from `var`, else one from the clock; printed either way so
    /// a failing run can be replayed.
    pub fn from_env(var: &str) -> (Self, u64) {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{var}={seed}  (set it to replay this run)");
        (Self::new(seed), seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// An env var as a number, else `default`.
pub fn env_number(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// A seed for the simulator with `names` deployments, each rolled forward
/// from a good `v1` to a bad `v2`, with fast pods.
pub fn seed_yaml(names: &[String]) -> String {
    let mut yaml = format!("namespaces: [{NAMESPACE}]\ndeployments:\n");
    for name in names {
        yaml.push_str(&format!(
            "  - namespace: {NAMESPACE}\n    name: {name}\n    labels: {{app: {name}}}\n    replicas: 2\n    container: app\n    revisions:\n      - image: {name}:v1\n        change_cause: \"release v1\"\n      - image: {name}:v2\n        change_cause: \"release v2\"\n    behaviour:\n      ready_after_ms: 40\n"
        ));
    }
    yaml
}

/// Starts the simulator with [`seed_yaml`] and writes its kubeconfig.
pub async fn start_sim(names: &[String], dir: &Path) -> Arc<SimHandle> {
    let seed = rollbot::sim::seed::Seed::from_yaml(&seed_yaml(names)).expect("test seed parses");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = rollbot::sim::start(seed, listener)
        .await
        .expect("sim starts");
    sim.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
    Arc::new(sim)
}

/// PATCH requests the simulator received for deployment `name`: rollbot
/// sends exactly one per rollback it executes, and nothing else patches.
pub fn patches(sim: &SimHandle, name: &str) -> usize {
    let path = format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}");
    sim.requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == path)
        .count()
}

/// The image deployment `name` runs now.
pub fn image(sim: &SimHandle, name: &str) -> String {
    sim.get(Kind::Deployment, NAMESPACE, name)
        .and_then(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// A service health endpoint per deployment, `GET /health/{name}`,
/// answering `{"version": "<tag>"}` with the tag the simulated deployment
/// runs — so verification passes only once the rollback really happened.
/// After each rollout (each new generation of the deployment) the first
/// `warmup` requests answer 503, as a service does while its pods warm up,
/// which keeps verification running for a few check intervals (a window
/// for a kill to land in).
pub struct Health {
    pub base: String,
}

impl Health {
    pub async fn start(sim: Arc<SimHandle>, warmup: usize) -> Self {
        let seen: Arc<Mutex<HashMap<(String, i64), usize>>> = Arc::default();
        let app = Router::new().route(
            "/health/{name}",
            get(move |UrlPath(name): UrlPath<String>| {
                let (sim, seen) = (sim.clone(), seen.clone());
                async move {
                    let generation = sim
                        .get(Kind::Deployment, NAMESPACE, &name)
                        .and_then(|d| d["metadata"]["generation"].as_i64())
                        .unwrap_or_default();
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        let n = seen.entry((name.clone(), generation)).or_default();
                        *n += 1;
                        *n
                    };
                    if n <= warmup {
                        return (StatusCode::SERVICE_UNAVAILABLE, "warming up").into_response();
                    }
                    let image = image(&sim, &name);
                    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
                    axum::Json(json!({ "version": tag })).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base }
    }
}

/// One Web API call as the proxy saw it, with Slack's answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    /// When the call reached the proxy, before it was forwarded.
    pub at: Instant,
    pub request: Value,
    pub response: Value,
}

#[derive(Default)]
struct ProxyInner {
    upstream: String,
    client: reqwest::Client,
    exchanges: Mutex<Vec<Exchange>>,
    /// Top-level `chat.postMessage` calls are answered this much later.
    post_delay: Mutex<Duration>,
}

/// A recording proxy in front of the fake Slack's Web API. It sees Slack's
/// answers (the `ts` Slack assigned to each message) and can make posting
/// slow, as Slack sometimes is, without changing the fake itself.
#[derive(Clone)]
pub struct SlackProxy {
    inner: Arc<ProxyInner>,
    pub api_url: String,
}

impl SlackProxy {
    pub async fn start(upstream: &str) -> Self {
        let inner = Arc::new(ProxyInner {
            upstream: upstream.trim_end_matches('/').to_string(),
            ..ProxyInner::default()
        });
        let app = Router::new()
            .route("/api/{method}", any(forward))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_url = format!("http://{}/api", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { inner, api_url }
    }

    /// Delays every top-level `chat.postMessage` by `d` (zero: none).
    pub fn set_post_delay(&self, d: Duration) {
        *self.inner.post_delay.lock().unwrap() = d;
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.inner.exchanges.lock().unwrap().clone()
    }

    /// The `ts` Slack assigned to each top-level message that mentions
    /// `text` (a proposal id appears in its buttons), in order.
    pub fn posted_ts(&self, text: &str) -> Vec<String> {
        self.exchanges()
            .into_iter()
            .filter(|e| {
                e.method == "chat.postMessage"
                    && e.request.get("thread_ts").is_none_or(Value::is_null)
                    && e.request.to_string().contains(text)
                    && e.response["ok"] == true
            })
            .filter_map(|e| e.response["ts"].as_str().map(str::to_owned))
            .collect()
    }

    /// Calls of `method` whose request mentions `text`.
    pub fn calls_mentioning(&self, method: &str, text: &str) -> usize {
        self.exchanges()
            .iter()
            .filter(|e| e.method == method && e.request.to_string().contains(text))
            .count()
    }
}

async fn forward(
    State(inner): State<Arc<ProxyInner>>,
    UrlPath(method): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let raw = String::from_utf8_lossy(&body).into_owned();
    let request: Value = serde_json::from_str(&raw).unwrap_or_else(|_| {
        let form: Vec<(String, String)> = serde_urlencoded::from_str(&raw).unwrap_or_default();
        Value::Object(form.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
    });
    if method == "chat.postMessage" && request.get("thread_ts").is_none_or(Value::is_null) {
        let delay = *inner.post_delay.lock().unwrap();
        // Models the outside world: a slow network between rollbot and
        // Slack (the message exists before rollbot learns its ts).
        tokio::time::sleep(delay).await;
    }
    let mut url = format!("{}/{method}", inner.upstream);
    if let Some(q) = query {
        url = format!("{url}?{q}");
    }
    let mut req = inner.client.post(&url).body(body);
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v);
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = resp.status();
    let mut out = HeaderMap::new();
    for name in ["content-type", "retry-after"] {
        if let Some(v) = resp.headers().get(name) {
            out.insert(name, v.clone());
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    inner.exchanges.lock().unwrap().push(Exchange {
        method,
        at,
        request,
        response: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    });
    (
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        out,
        bytes,
    )
        .into_response()
}

/// Headers Slack signs a request with, for `body` at the current time.
pub fn slack_signature(body: &str) -> [(&'static str, String); 2] {
    let ts = chrono::Utc::now().timestamp();
    let mut mac = Hmac::<Sha256>::new_from_slice(SLACK_SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    [
        ("x-slack-request-timestamp", ts.to_string()),
        (
            "x-slack-signature",
            format!("v0={}", hex::encode(mac.finalize().into_bytes())),
        ),
    ]
}

/// A `reaction_added` Events API callback, as Slack sends it.
pub fn reaction_event(event_id: &str, user: &str, emoji: &str, ts: &str) -> String {
    let now = chrono::Utc::now();
    json!({
        "token": "x", "team_id": "T0TEST", "api_app_id": "A0TEST", "type": "event_callback",
        "event_id": event_id, "event_time": now.timestamp(),
        "authorizations": [{"enterprise_id": null, "team_id": "T0TEST", "user_id": "UROLLBOT",
                            "is_bot": true, "is_enterprise_install": false}],
        "event_context": format!("4-{event_id}"),
        "event": {"type": "reaction_added", "user": user, "reaction": emoji,
                  "item_user": "UROLLBOT",
                  "event_ts": format!("{}.{:06}", now.timestamp(), now.timestamp_subsec_micros()),
                  "item": {"type": "message", "channel": CHANNEL, "ts": ts}}
    })
    .to_string()
}

/// One Alertmanager v4 alert for `service`.
pub fn am_alert(name: &str, service: &str, status: &str, starts: &str, ends: &str) -> Value {
    let labels = json!({ "alertname": name, "service": service, "severity": "critical" });
    json!({
        "status": status,
        "labels": labels,
        "annotations": { "summary": format!("{name} on {service}") },
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
        "fingerprint": fingerprint(&format!("{name}/{service}")),
    })
}

/// A stable 16-hex-digit fingerprint, as Alertmanager sends one per alert.
fn fingerprint(s: &str) -> String {
    let digest = <Sha256 as sha2::Digest>::digest(s.as_bytes());
    hex::encode(&digest[..8])
}

/// An Alertmanager v4 webhook body around `alerts`.
pub fn am_body(group: &str, alerts: Vec<Value>) -> Value {
    let firing = alerts.iter().any(|a| a["status"] == "firing");
    json!({
        "receiver": "rollbot",
        "status": if firing { "firing" } else { "resolved" },
        "alerts": alerts,
        "groupLabels": { "alertname": group },
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{group}\"}}"),
        "truncatedAlerts": 0,
    })
}

/// The config of `rollbot serve` for these tests: one service per
/// deployment (routed by the alert's `service` label, verified against
/// [`Health`]), Slack through `slack_api`, the simulator's kubeconfig.
pub fn write_config(dir: &Path, names: &[String], slack_api: &str, health: &str) -> PathBuf {
    write_config_with(dir, names, slack_api, Some(health))
}

/// [`write_config`], with verification against `health` only when given:
/// without it a rollback ends when the rollout does, so a service can take
/// its next proposal at once (benchmarks).
pub fn write_config_with(
    dir: &Path,
    names: &[String],
    slack_api: &str,
    health: Option<&str>,
) -> PathBuf {
    std::fs::write(dir.join("bot-token"), "xoxb-test-token").unwrap();
    std::fs::write(dir.join("signing-secret"), SLACK_SECRET).unwrap();
    std::fs::write(dir.join("am-token"), AM_TOKEN).unwrap();
    let d = dir.display();
    let mut text = format!(
        r#"
[store]
path = "{d}/db"
[approval]
channel = "slack:{CHANNEL}"
[groups]
sre = ["slack:UALICE", "slack:UBOB", "slack:UCAROL"]
[kubernetes]
kubeconfig = "{d}/kubeconfig"
[slack]
api_url = "{slack_api}"
bot_token = {{ file = "{d}/bot-token" }}
signing_secret = {{ file = "{d}/signing-secret" }}
[alerts.alertmanager]
bearer_token = {{ file = "{d}/am-token" }}
"#
    );
    for name in names {
        text.push_str(&format!(
            r#"
[[alerts.routes]]
matchers = ["service={name}"]
service = "{name}"
"#
        ));
    }
    for name in names {
        text.push_str(&format!(
            r#"
[services.{name}]
groups = ["sre"]
[services.{name}.kubernetes]
namespace = "{NAMESPACE}"
name = "{name}"
"#
        ));
        let Some(health) = health else { continue };
        text.push_str(&format!(
            r#"[services.{name}.verify]
window = "20s"
interval = "200ms"
[[services.{name}.verify.http]]
name = "health"
url = "{health}/health/{name}"
json_field = "version"
json_equals = "{{target_tag}}"
"#
        ));
    }
    let path = dir.join("rollbot.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `rollbot serve` as a child process. Each start logs to its own file in
/// the test's directory; [`Rollbot::log_tail`] shows the newest on failure.
pub struct Rollbot {
    config: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    addr: Option<SocketAddr>,
    starts: usize,
    pub base: String,
}

/// How long a start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Rollbot {
    /// Starts `rollbot serve` on a free loopback port and waits until
    /// `/healthz` answers.
    pub async fn start(config: &Path, dir: &Path) -> Self {
        let mut me = Self {
            config: config.to_path_buf(),
            dir: dir.to_path_buf(),
            child: None,
            addr: None,
            starts: 0,
            base: String::new(),
        };
        me.spawn().await;
        me
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("rollbot-{n}.log"))
    }

    /// Starts the process: on the port of the previous run if there was
    /// one (the address senders know), else on one the kernel picks.
    async fn spawn(&mut self) {
        let listen = self
            .addr
            .map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
        match self.try_spawn(&listen).await {
            Ok(()) => {}
            // The old port was taken meanwhile: take another one.
            Err(_) if self.addr.is_some() => {
                self.try_spawn("127.0.0.1:0")
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            Err(e) => panic!("{e}"),
        }
    }

    async fn try_spawn(&mut self, listen: &str) -> Result<(), String> {
        self.starts += 1;
        let log = self.log_path(self.starts);
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rollbot"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .args(["--listen", listen])
            .env(
                "ROLLBOT_LOG",
                std::env::var("ROLLBOT_LOG").unwrap_or("info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("rollbot binary runs");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        // Polls (with the shared bounded poll) for the log line naming the
        // address, or for the process's early exit.
        let mut addr = None;
        let mut exited = None;
        let child = self.child.as_mut().unwrap();
        let seen = crate::support::poll_until(START_TIMEOUT, async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            addr = text
                .lines()
                .filter(|l| l.contains("rollbot serving"))
                .find_map(|l| l.split("addr=").nth(1)?.split_whitespace().next())
                .and_then(|a| strip_ansi(a).parse::<SocketAddr>().ok());
            exited = child.try_wait().unwrap();
            addr.is_some() || exited.is_some()
        })
        .await;
        let addr = match (addr, exited) {
            (Some(addr), _) => addr,
            (None, Some(status)) => {
                return Err(format!(
                    "rollbot serve exited ({status}) while starting:\n{}",
                    self.log_tail(40)
                ));
            }
            (None, None) => {
                assert!(!seen);
                return Err(format!(
                    "rollbot serve did not start within {START_TIMEOUT:?}:\n{}",
                    self.log_tail(40)
                ));
            }
        };
        self.addr = Some(addr);
        self.base = format!("http://{addr}");
        let http = reqwest::Client::new();
        let base = self.base.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        let healthy = crate::support::poll_until(left, async || {
            http.get(format!("{base}/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        if healthy {
            Ok(())
        } else {
            Err(format!(
                "rollbot serve never answered /healthz:\n{}",
                self.log_tail(40)
            ))
        }
    }

    /// SIGKILL: no shutdown code runs, nothing is flushed.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .expect("a SIGKILLed process is reaped within 10 s");
        }
    }

    /// SIGTERM (what Kubernetes sends on a rolling update), then wait for
    /// the process to exit; its exit code and how long it took.
    pub async fn terminate(&mut self) -> (Option<i32>, Duration) {
        let Some(mut child) = self.child.take() else {
            return (None, Duration::ZERO);
        };
        let pid = child.id().expect("a running child has a pid").to_string();
        let started = Instant::now();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("rollbot exits within 60 s of SIGTERM")
            .expect("the exit status is readable");
        (status.code(), started.elapsed())
    }

    /// SIGTERM and wait for the exit, then start again on the same store.
    pub async fn terminate_and_restart(&mut self) -> (Option<i32>, Duration) {
        let out = self.terminate().await;
        self.spawn().await;
        out
    }

    /// SIGKILL, then start again on the same store and config.
    pub async fn kill_and_restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// How many times the process was started.
    pub fn starts(&self) -> usize {
        self.starts
    }

    /// The last `n` lines of the newest log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default();
        let lines: Vec<_> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A compact, readable line per timeline event, for failure messages.
pub fn timeline_lines(detail: &Value) -> String {
    detail["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let mut e = e.clone();
            if let Some(o) = e.as_object_mut() {
                o.remove("at");
                o.remove("seq");
            }
            format!("    {e}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
