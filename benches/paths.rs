//! Critical-path and footprint figures of the real release `rollbot serve`
//! process (issue 16), written as markdown tables to `--out PATH`. Prints
//! figures; asserts nothing about time.
//!
//! Everything runs on 127.0.0.1: the Kubernetes simulator in this process
//! (so every request it receives carries its arrival instant), the fake
//! Slack behind the recording proxy of `tests/support_proc` (every call
//! carries the instant it reached the proxy), real `kubectl` and `wrk`.
//!
//! ```text
//! cargo bench --bench paths -- --out /tmp/paths.md [--runs 15]
//!     [--rollbot target/release/rollbot] [--kubectl PATH] [--wrk wrk]
//! ```
//!
//! `PATHS_DEBUG=1` also prints the Slack call each completion was told by.

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support_proc/mod.rs"]
mod support_proc;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rollbot::sim::{Kind, RequestRecord, SimHandle};
use serde_json::{Value, json};
use support_proc::{
    AM_TOKEN, NAMESPACE, SlackProxy, am_alert, am_body, reaction_event, slack_signature, start_sim,
    write_config_with,
};
use tokio::process::{Child, Command};

/// Bound of every wait for something to happen.
const WAIT: Duration = Duration::from_secs(20);
/// Bound of the whole run.
const WHOLE_RUN: Duration = Duration::from_secs(230);
/// Services whose incidents are measured, taken in turn.
const POOL: usize = 3;
/// The service the alert storm is about.
const STORM: &str = "storm";
/// The deployments kubectl works on.
const KUBECTL_UNDO: &str = "kctl-undo";
const KUBECTL_STATUS: &str = "kctl-status";
/// Closed proposals stored for the growth figures.
const STORED: usize = 10_000;

struct Args {
    out: PathBuf,
    rollbot: PathBuf,
    kubectl: PathBuf,
    wrk: PathBuf,
    runs: usize,
    /// Rows of the goals table are appended here (`scripts/bench.sh`).
    goals: Option<PathBuf>,
}

impl Args {
    fn parse() -> Result<Self> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let pinned = Path::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33");
        let mut args = Args {
            out: PathBuf::from("paths.md"),
            rollbot: target.join("release/rollbot"),
            // `/usr/bin/kubectl` may be a dispatcher that picks a version
            // per call; a pinned binary measures kubectl alone.
            kubectl: if pinned.exists() {
                pinned.to_path_buf()
            } else {
                PathBuf::from("kubectl")
            },
            wrk: PathBuf::from("wrk"),
            runs: 15,
            goals: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
            match a.as_str() {
                "--out" => args.out = value("--out")?.into(),
                "--rollbot" => args.rollbot = value("--rollbot")?.into(),
                "--kubectl" => args.kubectl = value("--kubectl")?.into(),
                "--wrk" => args.wrk = value("--wrk")?.into(),
                "--goals" => args.goals = Some(value("--goals")?.into()),
                "--runs" => {
                    args.runs = value("--runs")?.parse().context("--runs takes a number")?;
                    if args.runs == 0 {
                        bail!("--runs must be at least 1");
                    }
                }
                // `cargo bench` adds `--bench`; other harness flags too.
                _ => {}
            }
        }
        if !args.rollbot.exists() {
            bail!(
                "no rollbot binary at {}; build it with `cargo build --release --bin rollbot` or pass --rollbot",
                args.rollbot.display()
            );
        }
        Ok(args)
    }
}

fn main() -> std::process::ExitCode {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("paths: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let started = Instant::now();
    // Children are killed when their handles drop and the temp dir is
    // removed when it drops: both happen on every way out of `run`.
    let result = rt.block_on(async {
        tokio::time::timeout(WHOLE_RUN, run(&args))
            .await
            .unwrap_or_else(|_| Err(anyhow!("did not finish within {WHOLE_RUN:?}")))
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => {
            eprintln!(
                "paths: wrote {} in {:.1} s",
                args.out.display(),
                started.elapsed().as_secs_f64()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("paths: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------- figures

/// Median, min and max of a sample, in ms with two decimals.
fn stats(xs: &[f64]) -> String {
    if xs.is_empty() {
        return "n/a".into();
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    format!("{:.2} ({:.2}–{:.2})", median(&v), v[0], v[v.len() - 1])
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn med(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { median(&v) }
}

/// Counts as "median (min–max)", no decimals.
fn count_stats(xs: &[usize]) -> String {
    if xs.is_empty() {
        return "n/a".into();
    }
    let mut v = xs.to_vec();
    v.sort_unstable();
    let m = med(&v.iter().map(|&x| x as f64).collect::<Vec<_>>());
    format!("{m} ({}–{})", v[0], v[v.len() - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A row of the goals table: `measured` against an upper bound `goal`.
fn goal_row(what: &str, measured: f64, goal: f64, unit: &str) -> String {
    let verdict = if measured <= goal {
        "met".to_string()
    } else {
        format!("**not met**: {:.1}× the goal", measured / goal)
    };
    format!("| {what} | ≤ {goal} {unit} | {measured:.2} {unit} | {verdict} |\n")
}

fn append_goals(path: &Path, rows: &str) -> Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(rows.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------- rollbot serve

/// One `rollbot serve` child process, killed when dropped.
struct Serve {
    child: Child,
    pid: u32,
    base: String,
}

impl Serve {
    /// Spawns `rollbot serve` on a free port and waits for `/readyz` to
    /// answer 200, polled every millisecond; returns the time from spawn
    /// to that answer.
    async fn start(bin: &Path, config: &Path, log: &Path) -> Result<(Self, Duration)> {
        // The kernel picks the port; it is free again for rollbot to bind
        // a moment later (loopback, nothing else is binding here).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let file = std::fs::File::create(log)?;
        let spawned = Instant::now();
        let mut child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("ROLLBOT_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {}", bin.display()))?;
        let pid = child.id().context("a running child has a pid")?;
        let http = reqwest::Client::new();
        let deadline = spawned + Duration::from_secs(30);
        loop {
            let ok = http
                .get(format!("{base}/readyz"))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                let took = spawned.elapsed();
                return Ok((Self { child, pid, base }, took));
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "rollbot serve exited ({status}) while starting; log: {}",
                    tail(log)
                );
            }
            if Instant::now() > deadline {
                bail!("rollbot serve not ready within 30 s; log: {}", tail(log));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// SIGTERM, then wait (bounded) for the exit: a clean stop flushes the
    /// store, so its size on disk is final.
    async fn stop(mut self) -> Result<()> {
        signal(self.pid, rustix::process::Signal::TERM)?;
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("rollbot did not exit within 30 s of SIGTERM")??;
        Ok(())
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.pid)
    }
}

fn signal(pid: u32, sig: rustix::process::Signal) -> Result<()> {
    let pid = rustix::process::Pid::from_raw(pid as i32).context("a valid pid")?;
    rustix::process::kill_process(pid, sig)?;
    Ok(())
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<_> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// VmRSS of `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Bytes a directory takes on disk (allocated blocks, as `du` counts).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    // Bounded: a store directory is shallow; cap the walk anyway.
    for _ in 0..10_000 {
        let Some(d) = todo.pop() else { break };
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

// ---------------------------------------------------------------- the world

struct World {
    args: Args,
    dir: tempfile::TempDir,
    sim: Arc<SimHandle>,
    proxy: SlackProxy,
    config: PathBuf,
    http: reqwest::Client,
    /// Incidents so far (names alerts and images uniquely).
    incidents: usize,
}

/// What one incident measured.
struct Incident {
    id: String,
    /// Alert POST sent → the proposal's `chat.postMessage` at Slack.
    alert_to_post: Duration,
    /// Final vote sent → the rollback PATCH at the simulator.
    vote_to_patch: Duration,
    /// Simulator requests from the final vote to the PATCH, inclusive.
    requests: usize,
    /// Rollout complete at the simulator → rollbot's message at Slack.
    done_to_chat: Duration,
}

fn deployment_path(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}")
}

/// Whether the deployment's rollout is complete, as `kubectl rollout
/// status` judges it.
fn rollout_complete(d: &Value) -> bool {
    let Some(want) = d["spec"]["replicas"].as_i64() else {
        return false;
    };
    let s = &d["status"];
    d["metadata"]["generation"] == s["observedGeneration"]
        && s["updatedReplicas"].as_i64() == Some(want)
        && s["replicas"].as_i64() == Some(want)
        && s["availableReplicas"].as_i64() == Some(want)
}

/// Polls `f` every `every` until it yields something, at most `limit`.
async fn poll<T>(limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// [`poll`] for an async probe.
async fn poll_async<T, F, Fut>(limit: Duration, every: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

impl World {
    /// The moment the rollout of `name` is first seen complete: a thread of
    /// its own (so a busy runtime does not delay it) woken by every write
    /// to the simulator's store (its change notification), checking the
    /// Deployment at once. Subscribed before this returns, so a completion
    /// after it cannot be missed.
    fn completion_watch(&self, name: &str) -> tokio::task::JoinHandle<Option<Instant>> {
        let sim = self.sim.clone();
        let name = name.to_string();
        let mut changes = sim.store().subscribe();
        tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .ok()?;
            rt.block_on(async move {
                let deadline = tokio::time::Instant::now() + WAIT;
                loop {
                    if sim
                        .get(Kind::Deployment, NAMESPACE, &name)
                        .is_some_and(|d| rollout_complete(&d))
                    {
                        return Some(Instant::now());
                    }
                    match tokio::time::timeout_at(deadline, changes.changed()).await {
                        Ok(Ok(())) => {}
                        _ => return None,
                    }
                }
            })
        })
    }

    async fn wait_complete(&self, name: &str) -> Result<()> {
        poll(WAIT, Duration::from_millis(2), || {
            self.sim
                .get(Kind::Deployment, NAMESPACE, name)
                .filter(rollout_complete)
        })
        .await
        .map(|_| ())
        .with_context(|| format!("the rollout of {name} did not complete within {WAIT:?}"))
    }

    /// Releases a new (bad) image of `name` as a deploy pipeline does,
    /// and waits for it to roll out.
    async fn release(&self, name: &str, tag: &str) -> Result<()> {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": format!("{name}:{tag}")}
        ]}}}});
        let r = self
            .http
            .patch(format!("{}{}", self.sim.url(), deployment_path(name)))
            .header("content-type", "application/strategic-merge-patch+json")
            .body(patch.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("releasing {name}: {}", r.status());
        }
        self.wait_complete(name).await
    }

    async fn api(&self, base: &str, path: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("{base}{path}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    async fn vote(&self, base: &str, event_id: &str, user: &str, ts: &str) -> Result<()> {
        self.react(base, event_id, user, "white_check_mark", ts)
            .await
            .with_context(|| format!("vote by {user}"))
    }

    /// A signed `reaction_added` event posted to `/slack/events`.
    async fn react(
        &self,
        base: &str,
        event_id: &str,
        user: &str,
        emoji: &str,
        ts: &str,
    ) -> Result<()> {
        let body = reaction_event(event_id, user, emoji, ts);
        let mut req = self
            .http
            .post(format!("{base}/slack/events"))
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(5));
        for (k, v) in slack_signature(&body) {
            req = req.header(k, v);
        }
        let r = req.body(body).send().await?;
        if !r.status().is_success() {
            bail!("{emoji} reaction answered {}", r.status());
        }
        Ok(())
    }

    /// One incident on `service`, measuring its three critical paths:
    /// a new bad release; an alert; the proposal posted; two ✅ votes
    /// (pods frozen, so the rollout waits); the PATCH; pods released; the
    /// rollout completes; rollbot says so in the thread.
    async fn incident(&mut self, serve: &Serve, service: &str) -> Result<Incident> {
        let base = serve.base.clone();
        let (id, ts, alert_to_post) = self.open_proposal(&base, service).await?;

        // Final vote → PATCH, with the rollout held until measured.
        self.sim.set_pods_frozen(true);
        let result = self.votes_and_rollout(&base, service, &id, &ts).await;
        self.sim.set_pods_frozen(false);
        let (vote_to_patch, requests, done_to_chat) = result?;

        // The proposal closes (no verification configured), so the service
        // takes its next incident.
        self.wait_closed(&base, &id).await?;
        Ok(Incident {
            id,
            alert_to_post,
            vote_to_patch,
            requests,
            done_to_chat,
        })
    }

    /// The first watch request the simulator received at or after `since`,
    /// waiting up to `limit` for one.
    async fn watch_opened_after(&self, since: Instant, limit: Duration) -> Option<RequestRecord> {
        poll(limit, Duration::from_millis(2), || {
            self.sim
                .requests()
                .into_iter()
                .find(|r| r.at >= since && r.query.contains("watch"))
        })
        .await
    }

    async fn wait_closed(&self, base: &str, id: &str) -> Result<String> {
        poll_async(WAIT, Duration::from_millis(5), || async {
            let p = self.api(base, &format!("/api/v1/proposals/{id}")).await?;
            let state = p["state"].as_str()?;
            (!matches!(state, "proposed" | "approved" | "executing")).then(|| state.to_owned())
        })
        .await
        .with_context(|| format!("proposal {id} did not finish"))
    }

    /// An incident people decide against: the proposal is rejected with
    /// an ❌ from an approver. Returns its id once it is closed.
    async fn rejected(&mut self, serve: &Serve, service: &str) -> Result<String> {
        let base = serve.base.clone();
        let (id, ts, _) = self.open_proposal(&base, service).await?;
        let event_id = format!("EvX{:05}", self.incidents);
        self.react(&base, &event_id, "UCAROL", "x", &ts)
            .await
            .with_context(|| format!("rejection of {id}"))?;
        let state = self.wait_closed(&base, &id).await?;
        if state != "rejected" {
            bail!("proposal {id} ended {state}, not rejected");
        }
        Ok(id)
    }

    /// A new bad release of `service`, then an alert about it: the
    /// proposal's id, the ts of its Slack message (once rollbot has bound
    /// it) and the time from the alert POST to that message at Slack.
    async fn open_proposal(
        &mut self,
        base: &str,
        service: &str,
    ) -> Result<(String, String, Duration)> {
        self.incidents += 1;
        let n = self.incidents;
        self.release(service, &format!("bad-{n}")).await?;

        // Alert → proposal message.
        let alert = format!("BenchErrorRate{n}");
        let starts = chrono::Utc::now() - chrono::Duration::minutes(1);
        let body = am_body(
            &alert,
            vec![am_alert(
                &alert,
                service,
                "firing",
                &starts.to_rfc3339(),
                "0001-01-01T00:00:00Z",
            )],
        );
        let sent = Instant::now();
        let r = self
            .http
            .post(format!("{base}/webhooks/alertmanager"))
            .bearer_auth(AM_TOKEN)
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("alert delivery for {service}: {}", r.status());
        }
        let id = poll_async(WAIT, Duration::from_millis(5), || async {
            let list = self
                .api(
                    base,
                    &format!("/api/v1/proposals?service={service}&limit=5"),
                )
                .await?;
            list.as_array()?
                .iter()
                .find(|p| p["state"] == "proposed")
                .and_then(|p| p["id"].as_str().map(str::to_owned))
        })
        .await
        .with_context(|| format!("no proposal opened for {service}'s alert"))?;
        let post = poll(WAIT, Duration::from_millis(5), || {
            self.proxy.exchanges().into_iter().find(|e| {
                e.method == "chat.postMessage"
                    && e.at >= sent
                    && e.request.get("thread_ts").is_none_or(Value::is_null)
                    && e.request.to_string().contains(&id)
                    && e.response["ok"] == true
            })
        })
        .await
        .with_context(|| format!("proposal {id} never reached Slack"))?;
        let alert_to_post = post.at - sent;
        let ts = post.response["ts"]
            .as_str()
            .context("Slack answered a ts")?
            .to_owned();
        // People vote on the message once rollbot knows it is the
        // proposal's (its ts is bound).
        poll_async(WAIT, Duration::from_millis(5), || async {
            let p = self.api(base, &format!("/api/v1/proposals/{id}")).await?;
            (p["messages"][0]["message"] == ts.as_str()).then_some(())
        })
        .await
        .with_context(|| format!("proposal {id} never named its Slack message"))?;

        Ok((id, ts, alert_to_post))
    }

    async fn votes_and_rollout(
        &self,
        base: &str,
        service: &str,
        id: &str,
        ts: &str,
    ) -> Result<(Duration, usize, Duration)> {
        let n = self.incidents;
        self.vote(base, &format!("EvA{n:05}"), "UALICE", ts).await?;
        // The first vote is recorded before the final one is sent.
        poll_async(WAIT, Duration::from_millis(2), || async {
            let p = self.api(base, &format!("/api/v1/proposals/{id}")).await?;
            p["timeline"]
                .as_array()?
                .iter()
                .any(|e| e["event"] == "voted" && e["user"] == "slack:UALICE")
                .then_some(())
        })
        .await
        .with_context(|| format!("the first vote on {id} was not recorded"))?;

        let path = deployment_path(service);
        let voted = Instant::now();
        self.vote(base, &format!("EvB{n:05}"), "UBOB", ts).await?;
        let patch = poll(WAIT, Duration::from_millis(2), || {
            self.sim
                .requests()
                .into_iter()
                .find(|r| r.at >= voted && r.method == "PATCH" && r.path == path)
        })
        .await
        .with_context(|| format!("no rollback PATCH for {id}"))?;
        let requests = self
            .sim
            .requests()
            .iter()
            .filter(|r| r.at >= voted && r.at <= patch.at)
            .count();

        // rollbot follows the rollout with a watch; release the pods once
        // it has opened one (or after a bounded wait if it polls instead).
        let watching = self
            .watch_opened_after(patch.at, Duration::from_secs(3))
            .await;
        if watching.is_none() {
            eprintln!("  ({id}: saw no watch from rollbot after its PATCH; releasing pods anyway)");
        }
        let done = self.completion_watch(service);
        self.sim.set_pods_frozen(false);
        let done = done
            .await?
            .with_context(|| format!("the rollback of {service} did not complete"))?;
        let told = poll(WAIT, Duration::from_millis(2), || {
            self.proxy.exchanges().into_iter().find(|e| {
                let text = e.request.to_string();
                e.at >= done
                    && e.method.starts_with("chat.")
                    && text.contains(service)
                    && (text.contains("successfully rolled out")
                        || text.contains("Rollback complete"))
            })
        })
        .await
        .with_context(|| format!("rollbot never said in Slack that {id}'s rollout completed"))?;
        if std::env::var_os("PATHS_DEBUG").is_some() {
            eprintln!(
                "  {id}: completion told by {}: {}",
                told.method, told.request
            );
        }
        Ok((patch.at - voted, requests, told.at - done))
    }

    // ------------------------------------------------------------ kubectl

    fn kubectl(&self, cache: &Path) -> Command {
        let mut c = Command::new(&self.args.kubectl);
        c.arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(cache)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// `kubectl rollout undo`: process start → exit, and the simulator
    /// requests made meanwhile.
    async fn kubectl_undo(&self, cache: &Path) -> Result<(Duration, usize)> {
        self.wait_complete(KUBECTL_UNDO).await?;
        let mut cmd = self.kubectl(cache);
        cmd.args([
            "rollout",
            "undo",
            &format!("deployment/{KUBECTL_UNDO}"),
            "-n",
            NAMESPACE,
        ]);
        let start = Instant::now();
        let out = tokio::time::timeout(WAIT, cmd.output())
            .await
            .context("kubectl rollout undo hung")??;
        let end = Instant::now();
        if !out.status.success() {
            bail!(
                "kubectl rollout undo failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let requests = self
            .sim
            .requests()
            .iter()
            .filter(|r| r.at >= start && r.at <= end)
            .count();
        Ok((end - start, requests))
    }

    /// `kubectl rollout status` started while the rollout is held, then
    /// the rollout completes: completion → kubectl's exit.
    async fn kubectl_status(&self, cache: &Path, n: usize) -> Result<Duration> {
        self.sim.set_pods_frozen(true);
        let result = self.kubectl_status_held(cache, n).await;
        self.sim.set_pods_frozen(false);
        let d = result?;
        self.wait_complete(KUBECTL_STATUS).await?;
        Ok(d)
    }

    async fn kubectl_status_held(&self, cache: &Path, n: usize) -> Result<Duration> {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": format!("{KUBECTL_STATUS}:v{}", n + 3)}
        ]}}}});
        let r = self
            .http
            .patch(format!(
                "{}{}",
                self.sim.url(),
                deployment_path(KUBECTL_STATUS)
            ))
            .header("content-type", "application/strategic-merge-patch+json")
            .body(patch.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("releasing {KUBECTL_STATUS}: {}", r.status());
        }
        let mut cmd = self.kubectl(cache);
        cmd.args([
            "rollout",
            "status",
            &format!("deployment/{KUBECTL_STATUS}"),
            "-n",
            NAMESPACE,
        ]);
        let started = Instant::now();
        let mut child = cmd.spawn().context("running kubectl")?;
        // kubectl is waiting once it has opened its watch.
        let watching = self.watch_opened_after(started, WAIT).await;
        if watching.is_none() {
            bail!("kubectl rollout status never opened a watch");
        }
        let done = self.completion_watch(KUBECTL_STATUS);
        self.sim.set_pods_frozen(false);
        let done = done
            .await?
            .context("the kubectl-watched rollout did not complete")?;
        let status = tokio::time::timeout(WAIT, child.wait())
            .await
            .context("kubectl rollout status did not return")??;
        let exited = Instant::now();
        if !status.success() {
            bail!("kubectl rollout status failed: {status}");
        }
        Ok(exited.saturating_duration_since(done))
    }
}

// ---------------------------------------------------------------- the storm

/// A running `wrk` storm of new alerts for [`STORM`].
struct Storm {
    child: Child,
    pid: u32,
}

impl Storm {
    fn start(wrk: &Path, base: &str) -> Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/wrk/alert.lua");
        let child = Command::new(wrk)
            .args(["-t2", "-c32", "-d120s", "--latency", "-s"])
            .arg(&script)
            .arg(base)
            .args(["--", AM_TOKEN, STORM, "new"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {}", wrk.display()))?;
        let pid = child.id().context("wrk has a pid")?;
        Ok(Self { child, pid })
    }

    /// Stops wrk (SIGINT: it prints its summary then) and returns its
    /// requests per second and total requests.
    async fn stop(self) -> Result<(f64, u64, String)> {
        signal(self.pid, rustix::process::Signal::INT)?;
        let out = tokio::time::timeout(Duration::from_secs(10), self.child.wait_with_output())
            .await
            .context("wrk did not stop within 10 s of SIGINT")??;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let rps = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
        let total = text
            .lines()
            .find(|l| l.contains("requests in"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let non2xx = text
            .lines()
            .find(|l| l.contains("Non-2xx"))
            .map(|l| l.trim().to_string())
            .unwrap_or_default();
        Ok((rps, total, non2xx))
    }
}

// ---------------------------------------------------------------- the run

/// The three paths over several incidents.
#[derive(Default)]
struct PathSet {
    alert_to_post: Vec<f64>,
    vote_to_patch: Vec<f64>,
    requests: Vec<usize>,
    done_to_chat: Vec<f64>,
    ids: Vec<String>,
}

impl PathSet {
    fn add(&mut self, i: Incident) {
        self.alert_to_post.push(ms(i.alert_to_post));
        self.vote_to_patch.push(ms(i.vote_to_patch));
        self.requests.push(i.requests);
        self.done_to_chat.push(ms(i.done_to_chat));
        self.ids.push(i.id);
    }
}

async fn incidents(w: &mut World, serve: &Serve, runs: usize, label: &str) -> Result<PathSet> {
    let mut set = PathSet::default();
    for i in 0..runs {
        let service = format!("svc-{:02}", i % POOL);
        let inc = w.incident(serve, &service).await?;
        eprintln!(
            "  {label} incident {}/{runs} {} on {service}: alert→post {:.2} ms, vote→PATCH {:.2} ms ({} requests), done→chat {:.2} ms",
            i + 1,
            inc.id,
            ms(inc.alert_to_post),
            ms(inc.vote_to_patch),
            inc.requests,
            ms(inc.done_to_chat)
        );
        set.add(inc);
    }
    Ok(set)
}

async fn run(args: &Args) -> Result<()> {
    let runs = args.runs;
    let dir = tempfile::tempdir()?;
    let mut names: Vec<String> = (0..POOL).map(|i| format!("svc-{i:02}")).collect();
    names.extend([STORM, KUBECTL_UNDO, KUBECTL_STATUS].map(String::from));
    let sim = start_sim(&names, dir.path()).await;
    let fake = support::fake_slack::FakeSlack::start().await;
    let proxy = SlackProxy::start(&fake.api_url).await;
    let config = write_config_with(dir.path(), &names, &proxy.api_url, None);
    let mut md = String::from(
        "# rollbot critical paths and footprint\n\nWritten by `cargo bench --bench paths`. Everything on 127.0.0.1: the release `rollbot serve` as a child process, the Kubernetes simulator in the bench process (it records each request's arrival instant), the fake Slack behind a proxy that records each call's arrival instant, real `kubectl` and `wrk`. Durations in ms as median (min–max).\n",
    );
    let kubectl_version = std::process::Command::new(&args.kubectl)
        .args(["version", "--client"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into());
    md.push_str(&format!(
        "\nrollbot: the release binary (`{}`); kubectl: `{}` ({kubectl_version}); runs per measurement: {runs}; {} CPUs.\n",
        args.rollbot.file_name().map_or_else(|| "rollbot".into(), |n| n.to_string_lossy()),
        args.kubectl.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    ));

    // Start-up on an empty store, several times.
    eprintln!("paths: start-up on an empty store, {runs} times");
    let mut empty_starts = Vec::new();
    for i in 0..runs {
        let d = dir.path().join(format!("empty-{i}"));
        std::fs::create_dir(&d)?;
        let text = std::fs::read_to_string(&config)?.replace(
            &format!("{}/db", dir.path().display()),
            &d.join("db").display().to_string(),
        );
        let c = d.join("rollbot.toml");
        std::fs::write(&c, text)?;
        let (s, took) = Serve::start(&args.rollbot, &c, &d.join("rollbot.log")).await?;
        empty_starts.push(ms(took));
        s.stop().await?;
    }

    let mut w = World {
        args: Args {
            out: args.out.clone(),
            rollbot: args.rollbot.clone(),
            kubectl: args.kubectl.clone(),
            wrk: args.wrk.clone(),
            runs,
            goals: args.goals.clone(),
        },
        sim,
        proxy,
        config,
        http: reqwest::Client::new(),
        incidents: 0,
        dir,
    };
    let store_dir = w.dir.path().join("db");
    let (serve, first_start) =
        Serve::start(&args.rollbot, &w.config, &w.dir.path().join("serve-1.log")).await?;
    let rss_idle = serve.rss_kib();
    eprintln!("paths: rollbot serve ready in {:.2} ms", ms(first_start));

    // Idle incidents.
    eprintln!("paths: {runs} incidents, idle");
    let idle = incidents(&mut w, &serve, runs, "idle").await?;

    // kubectl.
    eprintln!("paths: kubectl rollout undo, cold and warm cache, {runs} each");
    let warm = w.dir.path().join("kube-cache-warm");
    w.kubectl_undo(&warm).await?; // primes the warm cache
    let (mut cold_t, mut cold_n, mut warm_t, mut warm_n) = (vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        let cold = w.dir.path().join(format!("kube-cache-cold-{i}"));
        let (t, n) = w.kubectl_undo(&cold).await?;
        cold_t.push(ms(t));
        cold_n.push(n);
        let (t, n) = w.kubectl_undo(&warm).await?;
        warm_t.push(ms(t));
        warm_n.push(n);
        eprintln!(
            "  kubectl undo {}/{runs}: cold {:.2} ms ({} requests), warm {:.2} ms ({n} requests)",
            i + 1,
            cold_t[i],
            cold_n[i],
            t.as_secs_f64() * 1000.0
        );
    }
    eprintln!("paths: kubectl rollout status, {runs} times");
    let mut status_t = vec![];
    for i in 0..runs {
        let t = w.kubectl_status(&warm, i).await?;
        eprintln!("  kubectl rollout status {}/{runs}: {:.2} ms", i + 1, ms(t));
        status_t.push(ms(t));
    }

    // Under the storm.
    let store_before_storm = disk_bytes(&store_dir);
    eprintln!("paths: {runs} incidents under a wrk storm of new alerts for {STORM}");
    let storm = Storm::start(&args.wrk, &serve.base)?;
    let rss_peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let (peak, pid) = (rss_peak.clone(), serve.pid);
        tokio::spawn(async move {
            // Bounded by the run's own bound; aborted when the storm ends.
            for _ in 0..10_000 {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // Let the storm reach its pace before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let storm_started = Instant::now();
    let loaded = incidents(&mut w, &serve, runs, "storm").await;
    let storm_secs = storm_started.elapsed().as_secs_f64() + 1.0;
    let rss_storm_end = serve.rss_kib();
    let (rps, deliveries, non2xx) = storm.stop().await?;
    sampler.abort();
    let loaded = loaded?;
    eprintln!("paths: storm {rps:.0} req/s, {deliveries} deliveries in {storm_secs:.1} s {non2xx}");
    // RSS once the storm is over and rollbot has caught up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = serve.rss_kib();
    let storm_proposals = w
        .api(
            &serve.base,
            &format!("/api/v1/proposals?service={STORM}&limit=5"),
        )
        .await
        .unwrap_or(Value::Null);
    let storm_alerts = storm_proposals[0]["extra_alerts"].as_u64().unwrap_or(0)
        + storm_proposals[0]["alerts"]
            .as_array()
            .map_or(0, |a| a.len() as u64);
    let template_id = w.rejected(&serve, "svc-00").await?;
    serve.stop().await?;
    let store_after_storm = disk_bytes(&store_dir);

    // 10,000 closed proposals.
    eprintln!("paths: writing {STORED} closed proposals into the store");
    let written = Instant::now();
    let (template_state, template_events) = store_closed(&store_dir, &template_id).await?;
    let write_secs = written.elapsed().as_secs_f64();
    let store_with_closed = disk_bytes(&store_dir);
    let mut restarts = vec![];
    let mut rss_restart = vec![];
    let mut page1 = vec![];
    let mut page2 = vec![];
    let restarts_n = runs.min(5);
    for i in 0..restarts_n {
        let (s, took) = Serve::start(
            &args.rollbot,
            &w.config,
            &w.dir.path().join(format!("serve-big-{i}.log")),
        )
        .await?;
        restarts.push(ms(took));
        rss_restart.push(s.rss_kib());
        if i + 1 == restarts_n {
            eprintln!("paths: listing pages, {runs} times each");
            for _ in 0..runs {
                let (t1, t2) = list_pages(&w.http, &s.base).await?;
                page1.push(ms(t1));
                page2.push(ms(t2));
            }
        }
        s.stop().await?;
    }

    // ---------------------------------------------------------- markdown
    let ratio = |a: &[f64], b: &[f64]| med(a) / med(b);
    md.push_str(&format!(
        "\n## Undo: rollbot vs kubectl\n\nrollbot: the final (second, authorised) signed ✅ `reaction_added` event POSTed to `/slack/events` → the rollback PATCH arriving at the simulator, on a proposal an Alertmanager alert opened; requests are the simulator's log from the vote to the PATCH inclusive. kubectl: process start → exit of `kubectl rollout undo deployment/{KUBECTL_UNDO} -n {NAMESPACE} --kubeconfig K`, with a fresh empty `--cache-dir` each run (cold) or one used before (warm); requests are the whole run's.\n\n| | ms, median (min–max) | HTTP requests, median (min–max) | rollbot / this (median) | runs |\n|---|---|---|---|---|\n| rollbot vote → PATCH | {} | {} | 1.00 | {runs} |\n| kubectl undo, cold cache | {} | {} | {:.3} | {runs} |\n| kubectl undo, warm cache | {} | {} | {:.3} | {runs} |\n",
        stats(&idle.vote_to_patch),
        count_stats(&idle.requests),
        stats(&cold_t),
        count_stats(&cold_n),
        ratio(&idle.vote_to_patch, &cold_t),
        stats(&warm_t),
        count_stats(&warm_n),
        ratio(&idle.vote_to_patch, &warm_t),
    ));
    md.push_str(&format!(
        "\n## Completion detection\n\nPods frozen in the simulator until the watcher is in place (rollbot: its watch after the PATCH; kubectl: `kubectl rollout status deployment/{KUBECTL_STATUS} -n {NAMESPACE}` started, warm cache, its watch open), then released. Timed from the moment the simulator's stored Deployment first shows the rollout complete (observed in-process by a dedicated thread woken by every write to the simulator's store, not by polling) → rollbot's first chat call saying `successfully rolled out` or `Rollback complete` arriving at the Slack proxy, or → kubectl's process exit.\n\n| | ms, median (min–max) | runs |\n|---|---|---|\n| rollbot: complete → message at Slack | {} | {runs} |\n| kubectl rollout status: complete → exit | {} | {runs} |\n",
        stats(&idle.done_to_chat),
        stats(&status_t),
    ));
    md.push_str(&format!(
        "\n## Latency under load\n\nThe three critical paths, idle and while `wrk -t2 -c32 -s benches/wrk/alert.lua … -- TOKEN {STORM} new` delivers a new alert per request for the service `{STORM}` (its own deployment) to the same `rollbot serve`; the measured incidents are on other services. Alert → proposal: the Alertmanager POST sent → the proposal's top-level `chat.postMessage` arriving at the Slack proxy. Vote → PATCH and complete → chat as above. The storm ran {storm_secs:.1} s (1 s before the first measured incident) at **{rps:.0} req/s** by wrk's count ({deliveries} deliveries; {}).\n\n| path | idle, ms | under storm, ms | runs |\n|---|---|---|---|\n| alert POST → proposal at Slack | {} | {} | {runs} |\n| final vote → rollback PATCH | {} | {} | {runs} |\n| rollout complete → message at Slack | {} | {} | {runs} |\n",
        if non2xx.is_empty() { "all 2xx".to_string() } else { non2xx.clone() },
        stats(&idle.alert_to_post),
        stats(&loaded.alert_to_post),
        stats(&idle.vote_to_patch),
        stats(&loaded.vote_to_patch),
        stats(&idle.done_to_chat),
        stats(&loaded.done_to_chat),
    ));
    let per_alert =
        store_after_storm.saturating_sub(store_before_storm) as f64 / deliveries.max(1) as f64;
    let per_proposal = store_with_closed.saturating_sub(store_after_storm) as f64 / STORED as f64;
    md.push_str(&format!(
        "\n## Footprint and growth\n\nStart-up: spawning `rollbot serve` → `/readyz` answering 200 (polled every 1 ms). RSS: VmRSS from `/proc/PID/status`. Store size: disk blocks of the store directory (as `du`), the storm's after a clean stop (SIGTERM) divided by its deliveries (that includes the {runs} measured incidents under load). The {STORED} closed proposals are copies, with fresh ids and timestamps spread over the past, of a real closed proposal `rollbot serve` had written in this run: opened by an alert, posted, then `{template_state}` with an ❌ reaction ({template_events} timeline events), inserted with `rollbot::store::Store::insert` while serve was stopped ({write_secs:.1} s). The list is `GET /api/v1/proposals?limit=50` and the page its `Link` header names.\n\n| measure | value | runs |\n|---|---|---|\n| start-up, empty store | {} ms | {runs} |\n| RSS idle, just ready | {} | 1 |\n| RSS during the storm, peak (sampled every 50 ms) | {} | 1 |\n| RSS at the storm's end | {} | 1 |\n| RSS 2 s after the storm | {} | 1 |\n| store bytes per alert delivery (storm) | {per_alert:.0} B ({} B over {deliveries} deliveries; the storm's proposal counts {storm_alerts} alerts) | 1 |\n| store bytes per closed proposal | {per_proposal:.0} B ({} B over {STORED}) | 1 |\n| list page 1 (`limit=50`) with {STORED} stored | {} ms | {runs} |\n| list page 2 (its cursor) | {} ms | {runs} |\n| restart with {STORED} stored: spawn → `/readyz` | {} ms | {restarts_n} |\n| RSS after that restart | {} | {restarts_n} |\n",
        stats(&empty_starts),
        mib(rss_idle),
        mib(rss_peak.load(std::sync::atomic::Ordering::Relaxed)),
        mib(rss_storm_end),
        mib(rss_after),
        store_after_storm.saturating_sub(store_before_storm),
        store_with_closed.saturating_sub(store_after_storm),
        stats(&page1),
        stats(&page2),
        stats(&restarts),
        mib(med(&rss_restart.iter().map(|&k| k as f64).collect::<Vec<_>>()) as u64),
    ));
    std::fs::write(&args.out, md).with_context(|| format!("writing {}", args.out.display()))?;
    if let Some(path) = &args.goals {
        let rows = [
            goal_row(
                "final vote → PATCH, idle",
                med(&idle.vote_to_patch),
                5.0,
                "ms",
            ),
            goal_row(
                "final vote → PATCH, under the 32-connection storm",
                med(&loaded.vote_to_patch),
                5.0,
                "ms",
            ),
            goal_row(
                "ready after start, empty store",
                med(&empty_starts),
                100.0,
                "ms",
            ),
            goal_row(
                &format!("ready after start, {STORED} closed proposals stored"),
                med(&restarts),
                100.0,
                "ms",
            ),
            goal_row("RSS idle", rss_idle as f64 / 1024.0, 20.0, "MiB"),
        ];
        append_goals(path, &rows.concat())?;
    }
    drop(fake);
    Ok(())
}

/// Writes [`STORED`] closed proposals, copies of the closed proposal
/// `template` (as rollbot stored it, with its timeline), each with a fresh
/// id and every timestamp moved back by a few seconds per copy so the
/// newest-first order is real. Returns the template's state and its
/// number of timeline events.
async fn store_closed(store_dir: &Path, template: &str) -> Result<(String, usize)> {
    use rollbot::domain::ProposalId;
    let store = rollbot::store::Store::open(store_dir)?;
    let id = ProposalId::parse(template)?;
    let p = store.get(&id)?.context("the template proposal is stored")?;
    if p.is_open() {
        bail!("the template proposal {template} is still open");
    }
    let timeline = store.timeline(&id)?;
    for i in 0..STORED {
        let back = chrono::Duration::seconds(5 * (i as i64 + 1));
        let mut q = p.clone();
        q.id = ProposalId::from_random(uuid::Uuid::new_v4().as_u128());
        q.created_at -= back;
        q.expires_at -= back;
        q.updated_at -= back;
        q.alert_resolved_at = q.alert_resolved_at.map(|t| t - back);
        for v in &mut q.approvals {
            v.at -= back;
        }
        q.timeline_len = 0;
        let events: Vec<_> = timeline
            .iter()
            .map(|e| (e.at - back, e.kind.clone()))
            .collect();
        // Ids are short (six characters): among 10,000 random ones two may
        // meet, so draw again.
        loop {
            match store.insert(&q, &events) {
                Err(rollbot::store::StoreError::Exists(_)) => {
                    q.id = ProposalId::from_random(uuid::Uuid::new_v4().as_u128());
                }
                other => break other?,
            }
        }
    }
    store.flush().await?;
    Ok((p.state.as_str().to_string(), timeline.len()))
}

/// Times `GET /api/v1/proposals?limit=50` and the next page its `Link`
/// header names.
async fn list_pages(http: &reqwest::Client, base: &str) -> Result<(Duration, Duration)> {
    let t = Instant::now();
    let r = http
        .get(format!("{base}/api/v1/proposals?limit=50"))
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let link = r
        .headers()
        .get("link")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let items: Value = r.json().await?;
    let first = t.elapsed();
    if items.as_array().map_or(0, Vec::len) != 50 {
        bail!("page 1 did not hold 50 proposals");
    }
    let next = link
        .and_then(|l| Some(l.split('<').nth(1)?.split('>').next()?.to_owned()))
        .context("page 1 named no next page")?;
    let t = Instant::now();
    let r = http
        .get(format!("{base}{next}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let items: Value = r.json().await?;
    let second = t.elapsed();
    if items.as_array().map_or(0, Vec::len) != 50 {
        bail!("page 2 did not hold 50 proposals");
    }
    Ok((first, second))
}
