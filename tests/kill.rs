//! The kill test: `rollbot serve` as a child process, driven through whole
//! incidents (alert → proposal in Slack → two signed ✅ reactions →
//! rollback on the simulator → verification → resolved alert → report
//! upload) and SIGKILLed at seeded random points along the way, then
//! restarted on the same store. The senders behave as the real ones do:
//! Alertmanager re-sends a delivery that got no 2xx, Slack re-sends an
//! event that got no 2xx (same `event_id`, `X-Slack-Retry-Num`), and
//! neither re-sends what was acknowledged.
//!
//! What must hold after every incident, whatever the kill point:
//! - an approved proposal rolled back exactly once (PATCHes counted at the
//!   simulator);
//! - every vote that got a 2xx is in the proposal's approvals or timeline;
//! - the proposal names the real Slack `ts` of its message;
//! - the timeline is complete, and no completed rollback is marked failed.
//!
//! `cargo test` runs a few incidents (`ROLLBOT_KILL_INCIDENTS`, default 4);
//! `scripts/kill-test.sh` runs 100. `ROLLBOT_KILL_SEED` replays a run.

mod support;
mod support_proc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rollbot::sim::SimHandle;
use serde_json::Value;
use support::fake_slack::FakeSlack;
use support_proc::*;

/// Where in an incident the process is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// While the firing alert's delivery is in flight.
    AlertInFlight,
    /// Just after the proposal's message reached Slack.
    ProposalPosted,
    /// While the first vote's delivery is in flight.
    Vote1InFlight,
    /// ~10 ms after the first vote was acknowledged with a 200.
    Vote1Acked,
    /// ~10 ms after the second (approving) vote was acknowledged.
    Vote2Acked,
    /// Once the rollback PATCH reached the cluster.
    Executing,
    /// While the recovery checks run.
    Verifying,
    /// Just after the resolved alert was acknowledged.
    ResolvedAcked,
    /// When the report upload has begun.
    Reporting,
}

const ALL_POINTS: [Point; 9] = [
    Point::AlertInFlight,
    Point::ProposalPosted,
    Point::Vote1InFlight,
    Point::Vote1Acked,
    Point::Vote2Acked,
    Point::Executing,
    Point::Verifying,
    Point::ResolvedAcked,
    Point::Reporting,
];

/// The points the reduced `cargo test` run always covers: the ones the
/// known defects lose data at, and a SIGTERM mid-rollout (`true`).
const CORE_POINTS: [(Point, bool); 5] = [
    (Point::Vote1Acked, false),
    (Point::Vote2Acked, false),
    (Point::Executing, false),
    (Point::Executing, true),
    (Point::Verifying, false),
];

/// One incident's script.
#[derive(Debug, Clone, Copy)]
struct Script {
    point: Point,
    /// Extra delay before the kill, in ms.
    jitter_ms: u64,
    /// Slack takes longer than rollbot waits to post the proposal.
    slow_slack: bool,
    /// At [`Point::Executing`]: SIGTERM (a rolling update of rollbot)
    /// instead of SIGKILL.
    sigterm: bool,
}

/// Deployments (and services) the incidents take turns on. Few, because
/// the simulated controller reconciles every deployment every 20 ms; each
/// incident first releases a bad version of its deployment.
const POOL: usize = 8;
/// Slack's latency when it is slow: above the 3 s rollbot waits for a post.
const SLOW_SLACK: Duration = Duration::from_millis(3500);
/// How long people wait for the proposal to name its Slack message.
const BIND_WAIT: Duration = Duration::from_secs(5);
/// Bound of every wait for rollbot to get somewhere.
const WAIT: Duration = Duration::from_secs(20);
const VOTERS: [&str; 2] = ["UALICE", "UBOB"];

struct World {
    sim: Arc<SimHandle>,
    proxy: SlackProxy,
    bot: Rollbot,
    http: reqwest::Client,
    rng: Rng,
}

/// What happened in one incident, for assertions and failure messages.
#[derive(Default)]
struct Incident {
    index: usize,
    service: String,
    /// Proposals that existed before this incident.
    before: Vec<String>,
    /// PATCHes the deployment had received when the incident began.
    patch_base: usize,
    id: Option<String>,
    /// Vote events answered 2xx: (event id, voter).
    acked: Vec<(String, String)>,
    /// The message ts the votes were cast on.
    voted_on: Option<String>,
    log: Vec<String>,
    problems: Vec<String>,
}

impl Incident {
    fn note(&mut self, s: impl Into<String>) {
        self.log.push(s.into());
    }

    fn problem(&mut self, s: impl Into<String>) {
        self.problems.push(s.into());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_points_nothing_is_lost_and_nothing_repeats() {
    let incidents = env_number("ROLLBOT_KILL_INCIDENTS", CORE_POINTS.len() as u64) as usize;
    // Generous per incident: a slow Slack costs ~4 s per post.
    let bound = Duration::from_secs(60 + 40 * incidents as u64);
    tokio::time::timeout(bound, run(incidents))
        .await
        .unwrap_or_else(|_| panic!("the kill test did not finish within {bound:?}"));
}

async fn run(incidents: usize) {
    let (mut rng, seed) = Rng::from_env("ROLLBOT_KILL_SEED");
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..incidents.min(POOL))
        .map(|i| format!("svc-{i:03}"))
        .collect();
    let sim = start_sim(&names, dir.path()).await;
    let health = Health::start(sim.clone(), 2).await;
    let fake = FakeSlack::start().await;
    let proxy = SlackProxy::start(&fake.api_url).await;
    let config = write_config(dir.path(), &names, &proxy.api_url, &health.base);
    let bot = Rollbot::start(&config, dir.path()).await;

    let mut core = CORE_POINTS.to_vec();
    rng.shuffle(&mut core);
    let scripts: Vec<Script> = (0..incidents)
        .map(|i| {
            let (point, sigterm) = core.get(i).copied().unwrap_or_else(|| {
                (
                    ALL_POINTS[rng.below(ALL_POINTS.len() as u64) as usize],
                    rng.chance(50),
                )
            });
            Script {
                point,
                jitter_ms: rng.below(30),
                // The first incident always meets a slow Slack, then one in four.
                slow_slack: i == 0 || rng.chance(25),
                sigterm,
            }
        })
        .collect();

    let mut world = World {
        sim,
        proxy,
        bot,
        http: reqwest::Client::new(),
        rng,
    };
    let started = Instant::now();
    let mut failed = Vec::new();
    for (i, script) in scripts.iter().enumerate() {
        let all = proposals(&world).await.unwrap_or_default();
        let open = |name: &String| {
            all.iter().any(|p| {
                p["service"] == name.as_str()
                    && matches!(
                        p["state"].as_str(),
                        Some("proposed" | "approved" | "executing" | "rolled_back")
                    )
            })
        };
        // A service whose last proposal is stuck open would absorb the new
        // alert; take the next free one, and stop when none is left.
        let Some(service) = (0..names.len())
            .map(|k| &names[(i + k) % names.len()])
            .find(|n| !open(n))
        else {
            eprintln!("incident {i}: every service still has an open proposal; stopping");
            failed.push((
                *script,
                Incident {
                    index: i,
                    problems: vec![format!(
                        "every service still has an open proposal from an earlier incident; {} incidents not run",
                        incidents - i
                    )],
                    ..Incident::default()
                },
            ));
            break;
        };
        let mut inc = Incident {
            index: i,
            service: service.clone(),
            before: all
                .iter()
                .filter_map(|p| p["id"].as_str().map(str::to_owned))
                .collect(),
            ..Incident::default()
        };
        release_bad_version(&world, &inc.service, i).await;
        inc.patch_base = patches(&world.sim, &inc.service);
        drive(&mut world, *script, &mut inc).await;
        check(&world, &mut inc).await;
        if inc.problems.is_empty() {
            eprintln!("incident {i} ({}) {script:?}: ok", inc.service);
        } else {
            // In full, at once: a long run shows its failures as they happen.
            eprintln!(
                "incident {i} FAILED\n{}",
                describe(&world, script, &inc).await
            );
            failed.push((*script, inc));
        }
    }
    eprintln!(
        "{incidents} incidents, {} failed, {} starts of rollbot, {:.1} s",
        failed.len(),
        world.bot.starts(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        let mut report = format!(
            "{} of {incidents} incidents broke an invariant (replay with ROLLBOT_KILL_SEED={seed}); each is described in full above:\n",
            failed.len()
        );
        for (script, inc) in &failed {
            report.push_str(&format!(
                "- incident {} ({}), kill point {:?} +{} ms, slow Slack {}: {}\n",
                inc.index,
                inc.id.as_deref().unwrap_or("no proposal"),
                script.point,
                script.jitter_ms,
                script.slow_slack,
                inc.problems.join("; ")
            ));
        }
        report.push_str(&format!(
            "\nlast rollbot log lines:\n{}",
            world.bot.log_tail(30)
        ));
        let kept = dir.keep();
        report.push_str(&format!(
            "\nrollbot's logs (one per start) and store are kept in {}",
            kept.display()
        ));
        panic!("{report}");
    }
}

/// One failed incident: its script, problems, what the driver did, and
/// the proposal's state and timeline as the API shows them now.
async fn describe(w: &World, script: &Script, inc: &Incident) -> String {
    let detail = match &inc.id {
        Some(id) => proposal(w, id).await.unwrap_or(Value::Null),
        None => Value::Null,
    };
    format!(
        "- incident {} ({}, proposal {}), kill point {:?} +{} ms, slow Slack: {}\n  problems:\n{}\n  what the driver did:\n{}\n  state: {}, approvals: {}, messages: {}\n  timeline:\n{}\n",
        inc.index,
        inc.service,
        inc.id.as_deref().unwrap_or("none"),
        script.point,
        script.jitter_ms,
        script.slow_slack,
        inc.problems
            .iter()
            .map(|p| format!("    * {p}"))
            .collect::<Vec<_>>()
            .join("\n"),
        inc.log
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        detail["state"],
        detail["approvals"],
        detail["messages"],
        timeline_lines(&detail),
    )
}

/// Runs one incident end to end, killing rollbot at `script.point`.
async fn drive(w: &mut World, script: Script, inc: &mut Incident) {
    let kill_at = |p: Point| script.point == p;
    let jitter = Duration::from_millis(script.jitter_ms);
    w.proxy.set_post_delay(if script.slow_slack {
        SLOW_SLACK
    } else {
        Duration::ZERO
    });
    let service = inc.service.clone();
    let alert_name = format!("ErrorRateHigh{}", inc.index);
    let starts = chrono::Utc::now() - chrono::Duration::minutes(1);
    let firing = am_body(
        &alert_name,
        vec![am_alert(
            &alert_name,
            &service,
            "firing",
            &starts.to_rfc3339(),
            "0001-01-01T00:00:00Z",
        )],
    );
    deliver_alert(
        w,
        &firing,
        kill_at(Point::AlertInFlight).then_some(jitter),
        inc,
    )
    .await;

    // The proposal, through the read API.
    let r: &World = w;
    let svc = service.as_str();
    let before = inc.before.as_slice();
    let Some(id) = wait_for(WAIT, || async move { proposal_of(r, svc, before).await }).await else {
        inc.problem("no proposal was opened for the firing alert");
        return;
    };
    inc.id = Some(id.clone());
    inc.note(format!("proposal {id} opened"));

    // Its message in Slack, as people see it.
    let (r, pid) = (&*w, id.as_str());
    let posted = wait_for(
        WAIT,
        || async move { r.proxy.posted_ts(pid).first().cloned() },
    )
    .await;
    let Some(first_ts) = posted else {
        inc.problem("the proposal's message never reached Slack");
        return;
    };
    inc.note(format!(
        "Slack assigned ts {first_ts} to the proposal message"
    ));
    if kill_at(Point::ProposalPosted) {
        // Models the outside world: a kill lands at a random moment.
        tokio::time::sleep(jitter).await;
        kill(w, inc, "after the proposal reached Slack").await;
    }
    w.proxy.set_post_delay(Duration::ZERO);

    // People react on the message they see: the one rollbot names and
    // keeps up to date once it names one Slack has, else the latest one
    // Slack shows (a second copy is reported below).
    let (r, pid) = (&*w, id.as_str());
    let named = wait_for(BIND_WAIT, || async move {
        let p = proposal(r, pid).await?;
        let named = p["messages"][0]["message"].as_str()?.to_owned();
        r.proxy.posted_ts(pid).contains(&named).then_some(named)
    })
    .await;
    let ts = match named {
        Some(t) => t,
        None => {
            let latest = w.proxy.posted_ts(&id).pop().unwrap_or(first_ts);
            inc.note(format!(
                "rollbot named no Slack message within {BIND_WAIT:?}; voting on {latest}"
            ));
            latest
        }
    };
    inc.voted_on = Some(ts.clone());

    for (n, voter) in VOTERS.iter().enumerate() {
        let in_flight = match n {
            0 => kill_at(Point::Vote1InFlight),
            _ => false,
        };
        let event_id = format!("Ev{:04}{voter}", inc.index);
        let acked = deliver_vote(w, &event_id, voter, &ts, in_flight.then_some(jitter), inc).await;
        let after_ack = match n {
            0 => kill_at(Point::Vote1Acked),
            _ => kill_at(Point::Vote2Acked),
        };
        if acked && after_ack {
            // Models the outside world: the kill lands anywhere from at once
            // to ~10 ms later, the window in which a vote
            // acknowledged before it is stored is lost.
            tokio::time::sleep(Duration::from_millis(script.jitter_ms % 11)).await;
            kill(
                w,
                inc,
                &format!("~10 ms after vote {} was acknowledged", n + 1),
            )
            .await;
        }
    }

    if kill_at(Point::Executing) {
        let (r, deployment, base) = (&*w, service.as_str(), inc.patch_base);
        let patched = wait_for(WAIT, || async move {
            (patches(&r.sim, deployment) > base).then_some(())
        })
        .await;
        if patched.is_some() {
            // Models the outside world: a kill lands at a random moment.
            tokio::time::sleep(jitter).await;
            if script.sigterm {
                // A rolling update of rollbot itself: SIGTERM mid-rollout
                // must end in a clean exit within the grace (25 s).
                inc.note("SIGTERM after the rollback PATCH reached the cluster");
                let (code, took) = w.bot.terminate_and_restart().await;
                inc.note(format!(
                    "exited with {code:?} after {took:?}; restarted (start #{})",
                    w.bot.starts()
                ));
                if code != Some(0) || took > Duration::from_secs(25) {
                    inc.problem(format!(
                        "SIGTERM during the rollout: exit code {code:?} after {took:?}, wanted 0 within the 25 s grace"
                    ));
                }
            } else {
                kill(w, inc, "after the rollback PATCH reached the cluster").await;
            }
        } else {
            inc.note("no PATCH reached the cluster; no kill during execution");
        }
    }
    if kill_at(Point::Verifying) {
        let (r, pid) = (&*w, id.as_str());
        let rolled = wait_for(WAIT, || async move {
            let p = proposal(r, pid).await?;
            matches!(p["state"].as_str(), Some("rolled_back" | "verified")).then_some(p)
        })
        .await;
        match rolled {
            Some(p) if p["state"] == "rolled_back" => {
                kill(w, inc, "while verification was running").await
            }
            Some(_) => inc.note("verification was over before the kill; no kill"),
            None => inc.note("never reached rolled_back; no kill during verification"),
        }
    }

    // The rollback and its verification run their course.
    let (r, pid) = (&*w, id.as_str());
    let settled = wait_for(WAIT, || async move {
        let p = proposal(r, pid).await?;
        let state = p["state"].as_str()?.to_owned();
        (!matches!(
            state.as_str(),
            "proposed" | "approved" | "executing" | "rolled_back"
        ))
        .then_some(state)
    })
    .await;
    let Some(state) = settled else {
        let state = proposal(w, &id)
            .await
            .map(|p| p["state"].clone())
            .unwrap_or(Value::Null);
        inc.problem(format!(
            "the proposal did not settle within {WAIT:?}; it is still {state}"
        ));
        return;
    };
    inc.note(format!("proposal settled as {state}"));

    // The alert clears; Alertmanager says so.
    let resolved = am_body(
        &alert_name,
        vec![am_alert(
            &alert_name,
            &service,
            "resolved",
            &starts.to_rfc3339(),
            &chrono::Utc::now().to_rfc3339(),
        )],
    );
    deliver_alert(w, &resolved, None, inc).await;
    if kill_at(Point::ResolvedAcked) {
        // Models the outside world: a kill lands at a random moment.
        tokio::time::sleep(jitter).await;
        kill(w, inc, "just after the resolved alert was acknowledged").await;
    }
    if kill_at(Point::Reporting) {
        let (r, title) = (&*w, format!("incident-report-{id}"));
        let title = title.as_str();
        let began = wait_for(WAIT, || async move {
            (r.proxy
                .calls_mentioning("files.getUploadURLExternal", title)
                > 0)
            .then_some(())
        })
        .await;
        if began.is_some() {
            // Models the outside world: a kill lands at a random moment.
            tokio::time::sleep(jitter).await;
            kill(w, inc, "when the report upload had begun").await;
        }
    }
    if state == "verified" {
        let (r, title) = (&*w, format!("Incident report {id}"));
        let title = title.as_str();
        let uploaded = wait_for(WAIT, || async move {
            (r.proxy
                .calls_mentioning("files.completeUploadExternal", title)
                > 0)
            .then_some(())
        })
        .await;
        if uploaded.is_none() {
            inc.problem("the incident report was never uploaded to Slack");
        }
    }
}

/// A test on one timeline event.
type EventPred = dyn Fn(&Value) -> bool;

fn is(e: &Value, name: &str) -> bool {
    e["event"] == name
}

/// Releases a bad version of `name` (unless it still runs the seeded bad
/// `v2`), as a deploy pipeline would: the PATCH `kubectl set image` sends,
/// then waits for the rollout to finish.
async fn release_bad_version(w: &World, name: &str, incident: usize) {
    if image(&w.sim, name) == format!("{name}:v1") {
        let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": format!("{name}:bad-{incident}")}
        ]}}}});
        let url = format!(
            "{}/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}",
            w.sim.url()
        );
        let r = w
            .http
            .patch(url)
            .header("content-type", "application/strategic-merge-patch+json")
            .body(patch.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("the simulator answers");
        assert!(r.status().is_success(), "releasing {name}: {r:?}");
    }
    let done = wait_for(WAIT, || async {
        let d = w.sim.get(rollbot::sim::Kind::Deployment, NAMESPACE, name)?;
        let want = d["spec"]["replicas"].as_i64()?;
        let status = &d["status"];
        (d["metadata"]["generation"] == status["observedGeneration"]
            && status["updatedReplicas"].as_i64() == Some(want)
            && status["availableReplicas"].as_i64() == Some(want)
            && status["replicas"].as_i64() == Some(want))
        .then_some(())
    })
    .await;
    assert!(
        done.is_some(),
        "the bad release of {name} did not roll out within {WAIT:?}"
    );
}

/// The invariants, checked against the API, the simulator and Slack.
async fn check(w: &World, inc: &mut Incident) {
    let Some(id) = inc.id.clone() else { return };
    let all = proposals(w).await.unwrap_or_default();
    let of_service = all
        .iter()
        .filter(|p| {
            p["service"] == inc.service.as_str()
                && !inc.before.iter().any(|b| p["id"] == b.as_str())
        })
        .count();
    if of_service != 1 {
        inc.problem(format!(
            "{of_service} proposals were opened for {} in this incident; one alert must open one",
            inc.service
        ));
    }
    let Some(p) = proposal(w, &id).await else {
        inc.problem("the proposal cannot be read back from the API");
        return;
    };
    let events: Vec<&Value> = p["timeline"].as_array().into_iter().flatten().collect();
    let has = |name: &str, pred: &dyn Fn(&Value) -> bool| {
        events.iter().any(|e| e["event"] == name && pred(e))
    };
    let state = p["state"].as_str().unwrap_or_default().to_owned();

    // No acknowledged vote is lost.
    for (event, voter) in inc.acked.clone() {
        let user = format!("slack:{voter}");
        let in_approvals = p["approvals"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["user"] == user.as_str());
        if !in_approvals && !has("voted", &|e| e["user"] == user.as_str()) {
            inc.problem(format!(
                "vote {event} by {voter} was acknowledged with a 2xx but is neither in the approvals nor on the timeline"
            ));
        }
    }

    // Bound to its message, posted once: a second copy would be an orphan
    // whose votes nobody counts.
    let posted = w.proxy.posted_ts(&id);
    if posted.len() > 1 {
        inc.problem(format!(
            "the proposal was posted {} times ({posted:?}); people see it once",
            posted.len()
        ));
    }
    let named = p["messages"][0]["message"].as_str().unwrap_or_default();
    if !posted.iter().any(|t| t == named) {
        inc.problem(format!(
            "the proposal names message {named:?}, not the ts Slack assigned to it ({posted:?})"
        ));
    }

    // Exactly one rollback once approved.
    let approved = has("state_changed", &|e| e["to"] == "approved");
    let n = patches(&w.sim, &inc.service) - inc.patch_base;
    if approved && n != 1 {
        inc.problem(format!(
            "the approved proposal sent {n} rollback PATCHes to the cluster; exactly one is allowed"
        ));
    }
    if !approved && n != 0 {
        inc.problem(format!(
            "{n} rollback PATCHes were sent for a proposal that was never approved"
        ));
    }

    // A completed rollback is not reported failed.
    let rolled_back = image(&w.sim, &inc.service) == format!("{}:v1", inc.service);
    if rolled_back && n > 0 && matches!(state.as_str(), "failed" | "verification_failed") {
        inc.problem(format!(
            "the rollback completed (the cluster runs {}:v1) but the proposal is {state}",
            inc.service
        ));
    }

    // The whole story is on the timeline.
    let wanted: [(&str, &EventPred); 9] = [
        ("detected", &|e| is(e, "detected")),
        ("proposed", &|e| is(e, "proposed")),
        ("voted by UALICE", &|e| {
            is(e, "voted") && e["user"] == "slack:UALICE"
        }),
        ("voted by UBOB", &|e| {
            is(e, "voted") && e["user"] == "slack:UBOB"
        }),
        ("approved", &|e| {
            is(e, "state_changed") && e["to"] == "approved"
        }),
        ("execution_started", &|e| is(e, "execution_started")),
        ("execution_finished ok", &|e| {
            is(e, "execution_finished") && e["ok"] == true
        }),
        ("verified", &|e| {
            is(e, "state_changed") && e["to"] == "verified"
        }),
        ("resolved", &|e| is(e, "resolved")),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(_, pred)| !events.iter().any(|e| pred(e)))
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        inc.problem(format!("the timeline lacks: {}", missing.join(", ")));
    }
    if state != "verified" {
        inc.problem(format!("the incident ended {state}, not verified"));
    }
}

/// SIGKILL and restart, noting where.
async fn kill(w: &mut World, inc: &mut Incident, at: &str) {
    inc.note(format!("SIGKILL {at}"));
    w.bot.kill_and_restart().await;
    inc.note(format!("restarted (start #{})", w.bot.starts()));
}

/// Delivers an Alertmanager webhook as Alertmanager does: re-sent until a
/// 2xx. With `kill_after`, rollbot is killed that long after the first
/// attempt was sent.
async fn deliver_alert(
    w: &mut World,
    body: &Value,
    kill_after: Option<Duration>,
    inc: &mut Incident,
) {
    let deadline = Instant::now() + WAIT;
    let mut kill_after = kill_after;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let req = w
            .http
            .post(format!("{}/webhooks/alertmanager", w.bot.base))
            .bearer_auth(AM_TOKEN)
            .json(body)
            .timeout(Duration::from_secs(10))
            .send();
        let result = match kill_after.take() {
            Some(after) => {
                let sending = tokio::spawn(req);
                // Models the outside world: the kill lands while the request is in flight.
                tokio::time::sleep(after).await;
                kill(w, inc, "while the alert delivery was in flight").await;
                sending.await.expect("the request task")
            }
            None => req.await,
        };
        let status = result.as_ref().map(|r| r.status().as_u16()).ok();
        inc.note(format!(
            "alert {} delivery attempt {attempt}: {}",
            body["status"],
            status.map_or("no answer".into(), |s| s.to_string())
        ));
        if status.is_some_and(|s| (200..300).contains(&s)) {
            return;
        }
        // Retry once rollbot says it can take alerts (`/readyz`), rather
        // than after a guessed pause.
        let (http, base) = (w.http.clone(), w.bot.base.clone());
        let ready = support::poll_until(
            deadline.saturating_duration_since(Instant::now()),
            async || {
                http.get(format!("{base}/readyz"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
        assert!(
            ready && Instant::now() < deadline,
            "Alertmanager could not deliver an alert within {WAIT:?}: {}",
            w.bot.log_tail(20)
        );
    }
}

/// Delivers a signed `reaction_added` event as Slack does: an attempt
/// without a 2xx within 3 s is retried with the same `event_id` and
/// `X-Slack-Retry-Num`, three times at most. Returns whether it was
/// acknowledged.
async fn deliver_vote(
    w: &mut World,
    event_id: &str,
    voter: &str,
    ts: &str,
    kill_after: Option<Duration>,
    inc: &mut Incident,
) -> bool {
    let mut kill_after = kill_after;
    for retry in 0..=3u32 {
        let body = reaction_event(event_id, voter, "white_check_mark", ts);
        let mut req = w
            .http
            .post(format!("{}/slack/events", w.bot.base))
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(3));
        for (k, v) in slack_signature(&body) {
            req = req.header(k, v);
        }
        if retry > 0 {
            req = req
                .header("x-slack-retry-num", retry.to_string())
                .header("x-slack-retry-reason", "http_error");
        }
        let send = req.body(body).send();
        let result = match kill_after.take() {
            Some(after) => {
                let sending = tokio::spawn(send);
                // Models the outside world: the kill lands while the request is in flight.
                tokio::time::sleep(after).await;
                kill(w, inc, "while a vote delivery was in flight").await;
                sending.await.expect("the request task")
            }
            None => send.await,
        };
        let status = result.as_ref().map(|r| r.status().as_u16()).ok();
        inc.note(format!(
            "vote {event_id} by {voter} on {ts}, retry {retry}: {}",
            status.map_or("no answer".into(), |s| s.to_string())
        ));
        if status.is_some_and(|s| (200..300).contains(&s)) {
            inc.acked.push((event_id.to_string(), voter.to_string()));
            return true;
        }
        // Models the outside world: Slack waits before retrying (compressed).
        let pause = 100 + w.rng.below(200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    false
}

/// Polls `f` (with [`support::poll_until`]) until it yields, at most `limit`.
async fn wait_for<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let mut got = None;
    support::poll_until(limit, async || {
        got = f().await;
        got.is_some()
    })
    .await;
    got
}

async fn proposals(w: &World) -> Option<Vec<Value>> {
    let r = w
        .http
        .get(format!("{}/api/v1/proposals", w.bot.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

async fn proposal(w: &World, id: &str) -> Option<Value> {
    let r = w
        .http
        .get(format!("{}/api/v1/proposals/{id}", w.bot.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// The proposal of `service` that is not one of `before`.
async fn proposal_of(w: &World, service: &str, before: &[String]) -> Option<String> {
    proposals(w)
        .await?
        .into_iter()
        .find(|p| p["service"] == service && !before.iter().any(|b| p["id"] == b.as_str()))
        .and_then(|p| p["id"].as_str().map(str::to_owned))
}
