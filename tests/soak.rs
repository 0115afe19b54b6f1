//! The soak test: `rollbot serve` as a child process under steady mixed
//! load — 32 concurrent connections delivering distinct Alertmanager alerts
//! for several services (some resolved again), signed Slack votes on the
//! proposals' messages, and API reads — while the serve tick runs every
//! 5 s and a watchdog polls `/healthz` every 100 ms.
//!
//! Nothing may stall: a health probe that takes more than 2 s fails the
//! test, as does a load request slower than 5 s (this is the debug build on
//! two cores shared with the load generator; `scripts/storm.sh` holds a
//! release build to the 2 s), a 5xx or a dead process. The figures
//! (requests done, latency) are printed either way.
//!
//! `cargo test` soaks for 30 s (`ROLLBOT_SOAK_SECS`); `scripts/soak.sh`
//! runs longer. `ROLLBOT_SOAK_SEED` replays a run's choices.

mod support;
mod support_proc;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fake_slack::FakeSlack;
use support_proc::*;

/// Concurrent connections, each a sequential client.
const CONNECTIONS: usize = 32;
/// Services (and simulated deployments) the alerts are spread over.
const SERVICES: usize = 6;
/// A request slower than this is a stall.
const STALL: Duration = Duration::from_secs(2);
/// A load request (alert, vote, read) slower than this is a stall.
const SLOW: Duration = Duration::from_secs(5);
/// How long a load request may take before it is given up as hung. Longer
/// than [`STALL`] so a failure tells a slow answer from none at all.
const GIVE_UP: Duration = Duration::from_secs(10);
/// How often the watchdog probes `/healthz`.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// One request's outcome.
#[derive(Clone, Debug)]
struct Sample {
    what: &'static str,
    latency: Duration,
    /// HTTP status, or `None` when there was no answer within [`STALL`].
    status: Option<u16>,
    error: Option<String>,
    at: Duration,
}

#[derive(Default)]
struct Record {
    samples: Mutex<Vec<Sample>>,
}

impl Record {
    fn push(&self, s: Sample) {
        self.samples.lock().unwrap().push(s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_concurrent_load_nothing_stalls() {
    let secs = env_number("ROLLBOT_SOAK_SECS", 30);
    let bound = Duration::from_secs(secs + 90);
    tokio::time::timeout(bound, soak(Duration::from_secs(secs)))
        .await
        .unwrap_or_else(|_| panic!("the soak test did not finish within {bound:?}"));
}

async fn soak(duration: Duration) {
    let (mut rng, seed) = Rng::from_env("ROLLBOT_SOAK_SEED");
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..SERVICES).map(|i| format!("svc-{i:03}")).collect();
    let sim = start_sim(&names, dir.path()).await;
    let health = Health::start(sim.clone(), 1).await;
    let fake = FakeSlack::start().await;
    let proxy = SlackProxy::start(&fake.api_url).await;
    let config = write_config(dir.path(), &names, &proxy.api_url, &health.base);
    let mut bot = Rollbot::start(&config, dir.path()).await;
    let base = Arc::new(bot.base.clone());

    let record = Arc::new(Record::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let watchdog = tokio::spawn({
        let (base, record, stop) = (base.clone(), record.clone(), stop.clone());
        async move {
            let http = reqwest::Client::new();
            let mut every = tokio::time::interval(PROBE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::SeqCst) {
                every.tick().await;
                let req = http.get(format!("{base}/healthz"));
                record.push(timed_within("healthz", req, started, STALL).await.0);
            }
        }
    });

    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|n| {
            let seed = rng.next_u64();
            let (base, record, stop) = (base.clone(), record.clone(), stop.clone());
            let (names, proxy) = (names.clone(), proxy.clone());
            tokio::spawn(async move {
                worker(
                    n,
                    Rng::new(seed),
                    &base,
                    &names,
                    &proxy,
                    &record,
                    &stop,
                    started,
                )
                .await
            })
        })
        .collect();

    // The soak's run length: the load runs for this long, on purpose.
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::SeqCst);
    // Every request is bounded by GIVE_UP, so the workers stop promptly.
    for w in workers {
        tokio::time::timeout(GIVE_UP + STALL, w)
            .await
            .expect("a load worker did not stop")
            .expect("a load worker panicked");
    }
    tokio::time::timeout(STALL * 3, watchdog)
        .await
        .expect("the watchdog did not stop")
        .expect("the watchdog panicked");
    let alive = bot.running();

    // The figures.
    let samples = record.samples.lock().unwrap().clone();
    let elapsed = started.elapsed();
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let max = latencies.last().copied().unwrap_or_default();
    let mut kinds: Vec<(&str, usize, Duration)> = Vec::new();
    for s in &samples {
        match kinds.iter_mut().find(|(k, _, _)| *k == s.what) {
            Some((_, n, m)) => {
                *n += 1;
                *m = (*m).max(s.latency);
            }
            None => kinds.push((s.what, 1, s.latency)),
        }
    }
    let proposals = fake.calls_to("chat.postMessage").len();
    eprintln!(
        "soak: {} requests in {:.1} s ({:.0}/s) over {CONNECTIONS} connections + watchdog; latency p50 {:?}, p99 {:?}, max {:?}; {proposals} Slack posts",
        samples.len(),
        elapsed.as_secs_f64(),
        samples.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        max,
    );
    for (kind, n, m) in &kinds {
        eprintln!("  {kind:<10} {n:>6} requests, max {m:?}");
    }

    let stalls: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            let limit = if s.what == "healthz" { STALL } else { SLOW };
            s.status.is_none() || s.latency > limit
        })
        .collect();
    let errors: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.status.is_some_and(|c| c >= 500))
        .collect();
    let mut problems = Vec::new();
    if !alive {
        problems.push("rollbot serve exited during the soak".to_string());
    }
    if !stalls.is_empty() {
        let first = stalls.iter().map(|s| s.at).min().unwrap_or_default();
        let last = stalls.iter().map(|s| s.at).max().unwrap_or_default();
        let hung = stalls.iter().filter(|s| s.status.is_none()).count();
        let mut by_kind: Vec<(&str, usize)> = Vec::new();
        for s in &stalls {
            match by_kind.iter_mut().find(|(k, _)| *k == s.what) {
                Some((_, n)) => *n += 1,
                None => by_kind.push((s.what, 1)),
            }
        }
        problems.push(format!(
            "{} requests stalled (probes over {STALL:?}, others over {SLOW:?}; {hung} of them got no answer at all), from {:.1} s to {:.1} s into the soak, by kind {by_kind:?}; the first ones:\n{}",
            stalls.len(),
            first.as_secs_f64(),
            last.as_secs_f64(),
            describe(&stalls)
        ));
    }
    if !errors.is_empty() {
        problems.push(format!(
            "{} requests answered 5xx; the first ones:\n{}",
            errors.len(),
            describe(&errors)
        ));
    }
    if samples.len() < CONNECTIONS {
        problems.push(format!("only {} requests were done", samples.len()));
    }
    if !problems.is_empty() {
        let tail = bot.log_tail(30);
        bot.kill().await;
        let kept = dir.keep();
        panic!(
            "the soak failed (replay with ROLLBOT_SOAK_SEED={seed}):\n- {}\nlast rollbot log lines:\n{tail}\nlogs and store kept in {}",
            problems.join("\n- "),
            kept.display()
        );
    }
    bot.kill().await;
}

fn describe(samples: &[&Sample]) -> String {
    let mut sorted: Vec<&&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.at);
    sorted
        .iter()
        .take(8)
        .map(|s| {
            format!(
                "    {:>6.2} s  {:<9} {:?} -> {}",
                s.at.as_secs_f64(),
                s.what,
                s.latency,
                s.status
                    .map_or_else(|| s.error.clone().unwrap_or_default(), |c| c.to_string())
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends `req` bounded by [`GIVE_UP`] and measures it.
async fn timed(what: &'static str, req: reqwest::RequestBuilder, started: Instant) -> Sample {
    timed_within(what, req, started, GIVE_UP).await.0
}

/// [`timed`], also returning the body (empty without an answer).
async fn timed_body(
    what: &'static str,
    req: reqwest::RequestBuilder,
    started: Instant,
) -> (Sample, Vec<u8>) {
    timed_within(what, req, started, GIVE_UP).await
}

/// Sends `req`, giving up after `limit`, and measures it.
async fn timed_within(
    what: &'static str,
    req: reqwest::RequestBuilder,
    started: Instant,
    limit: Duration,
) -> (Sample, Vec<u8>) {
    let at = started.elapsed();
    let t = Instant::now();
    let result = req.timeout(limit).send().await;
    let mut body = Vec::new();
    let (status, error) = match result {
        Ok(r) => {
            let status = r.status().as_u16();
            // The body is part of the answer.
            match tokio::time::timeout(limit.saturating_sub(t.elapsed()), r.bytes()).await {
                Ok(Ok(b)) => {
                    body = b.to_vec();
                    (Some(status), None)
                }
                Ok(Err(e)) => (None, Some(e.to_string())),
                Err(_) => (None, Some("body not received in time".into())),
            }
        }
        Err(e) if e.is_timeout() => (None, Some(format!("no answer within {limit:?}"))),
        Err(e) => (None, Some(e.to_string())),
    };
    let sample = Sample {
        what,
        latency: t.elapsed(),
        status,
        error,
        at,
    };
    (sample, body)
}

/// One connection's loop of alerts, votes and reads until `stop`.
#[allow(clippy::too_many_arguments)]
async fn worker(
    n: usize,
    mut rng: Rng,
    base: &str,
    names: &[String],
    proxy: &SlackProxy,
    record: &Record,
    stop: &AtomicBool,
    started: Instant,
) {
    // One client per worker: its own keep-alive connection.
    let http = reqwest::Client::new();
    let mut firing: Vec<(String, String, String)> = Vec::new();
    let mut sent = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let roll = rng.below(100);
        let sample = if roll < 50 {
            // A delivery of 1–3 distinct alerts over random services, and
            // sometimes one of this worker's earlier alerts resolving.
            let mut alerts = Vec::new();
            let now = chrono::Utc::now();
            for _ in 0..=rng.below(3) {
                sent += 1;
                let name = format!("SoakW{n:02}N{sent:05}");
                let service = names[rng.below(names.len() as u64) as usize].clone();
                let starts = (now - chrono::Duration::seconds(30)).to_rfc3339();
                alerts.push(am_alert(
                    &name,
                    &service,
                    "firing",
                    &starts,
                    "0001-01-01T00:00:00Z",
                ));
                firing.push((name, service, starts));
            }
            if rng.chance(30) && firing.len() > 1 {
                let (name, service, starts) = firing.remove(0);
                alerts.push(am_alert(
                    &name,
                    &service,
                    "resolved",
                    &starts,
                    &now.to_rfc3339(),
                ));
            }
            let body = am_body(&format!("soak-{n}"), alerts);
            let req = http
                .post(format!("{base}/webhooks/alertmanager"))
                .bearer_auth(AM_TOKEN)
                .json(&body);
            timed("alert", req, started).await
        } else if roll < 70 {
            let req = http.get(format!("{base}/api/v1/proposals"));
            let (list, body) = timed_body("list", req, started).await;
            record.push(list);
            let ids: Vec<String> = serde_json::from_slice::<Vec<Value>>(&body)
                .unwrap_or_default()
                .iter()
                .filter_map(|p| p["id"].as_str().map(str::to_owned))
                .collect();
            match ids.get(rng.below(ids.len().max(1) as u64) as usize) {
                Some(id) => {
                    let req = http.get(format!("{base}/api/v1/proposals/{id}"));
                    timed("get", req, started).await
                }
                None => continue,
            }
        } else if roll < 90 {
            // A ✅ (or now and then ❌) on a proposal message people see.
            let proposals_posted = || -> Vec<String> {
                proxy
                    .exchanges()
                    .into_iter()
                    .filter(|e| {
                        e.method == "chat.postMessage"
                            && e.request.get("thread_ts").is_none_or(Value::is_null)
                    })
                    .filter_map(|e| e.response["ts"].as_str().map(str::to_owned))
                    .collect()
            };
            let posted = proposals_posted();
            let Some(ts) = posted.get(rng.below(posted.len().max(1) as u64) as usize) else {
                // Nothing to vote on yet: wait until the bot has posted a
                // proposal (or the run ends), then roll again.
                support::poll_until_sync(GIVE_UP, || {
                    !proposals_posted().is_empty() || stop.load(Ordering::SeqCst)
                })
                .await;
                continue;
            };
            let voter = ["UALICE", "UBOB", "UCAROL"][rng.below(3) as usize];
            let emoji = if rng.chance(5) {
                "x"
            } else {
                "white_check_mark"
            };
            sent += 1;
            let body = reaction_event(&format!("EvSoak{n:02}x{sent:05}"), voter, emoji, ts);
            // As Slack does: a delivery answered 5xx comes again, with the
            // same event id (rollbot answers 503 to a vote on a message it
            // is still recording, see tests/slack.rs). Three retries.
            let mut attempt = 0;
            loop {
                let mut req = http
                    .post(format!("{base}/slack/events"))
                    .header("content-type", "application/json");
                for (k, v) in slack_signature(&body) {
                    req = req.header(k, v);
                }
                if attempt > 0 {
                    req = req
                        .header("x-slack-retry-num", attempt.to_string())
                        .header("x-slack-retry-reason", "http_error");
                }
                let sample = timed("vote", req.body(body.clone()), started).await;
                if sample.status == Some(503) && attempt < 3 {
                    attempt += 1;
                    // Models the outside world: Slack's retry back-off.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                break sample;
            }
        } else {
            let req = http.get(format!("{base}/readyz"));
            timed("readyz", req, started).await
        };
        record.push(sample);
    }
}
