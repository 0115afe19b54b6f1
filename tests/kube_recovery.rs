//! The engine and the real Kubernetes executor against the simulator when
//! things go wrong after the approval: API failures while following the
//! rollout, and rollbot itself stopping mid-way.

mod support;

use std::sync::Arc;

use rollbot::config::Config;
use rollbot::domain::{EventKind, ManualClock, Plan, ResumeStep, ServiceName, State};
use rollbot::engine::{Engine, Ports};
use rollbot::exec::KubeRollback;
use rollbot::exec::Target;
use rollbot::exec::kubernetes::KubeExecutor;
use rollbot::ports::memory::{ChatCall, MemoryChat, ScriptedExecutor, ScriptedVerifier};
use rollbot::ports::{
    CheckResult, ExecError, ExecOutcome, Executor, PlanRequest, ThreadNote, Verdict, Verifier,
};
use rollbot::sim::{self, FaultOn, Kind, seed::Seed};
use rollbot::store::Store;
use rollbot::verify::HttpVerifier;
use support::*;
use tokio::sync::mpsc;

const DEPLOYMENT: &str = "prod-payment-deploy";

async fn sim_with(edit: impl FnOnce(&mut Seed)) -> sim::SimHandle {
    let mut seed = Seed::from_file("config/sim-payment.yaml".as_ref()).unwrap();
    edit(&mut seed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    sim::start(seed, listener).await.unwrap()
}

fn image_of(sim: &sim::SimHandle) -> String {
    let d = sim.get(Kind::Deployment, "production", DEPLOYMENT).unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

fn patches(sim: &sim::SimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .count()
}

fn progress_lines(x: &ProposalExpect) -> Vec<String> {
    x.timeline
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Progress { line } => Some(line.clone()),
            _ => None,
        })
        .collect()
}

fn engine_on(sim: &sim::SimHandle) -> Tester {
    let exec = KubeRollback::new(KubeExecutor::for_url(&sim.url()).unwrap());
    Tester::with_executor(CONFIG, Arc::new(exec))
}

#[tokio::test]
async fn watch_and_list_failures_after_the_patch_are_retried_not_a_verdict() {
    let sim = &sim_with(|_| {}).await;
    run_test_in(
        || engine_on(sim),
        |t| async move {
            let p = t.propose_by("slack:UALICE").await.unwrap();
            // Hold the rollout mid-way so the faults hit while it is running.
            sim.set_pods_frozen(true);
            sim.fail_next(Kind::Deployment, FaultOn::List, 2);
            sim.fail_next(Kind::Deployment, FaultOn::Watch, 3);
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            // (Or until the rollback ended: without retries it fails at once.)
            wait_until("the faults were hit or the rollback ended", || {
                sim.faults_left() == 0 || t.engine.get(&p.id).unwrap().state != State::Executing
            })
            .await;
            // Then a watch that is cut mid-stream once the pods move again.
            sim.fail_next(Kind::Deployment, FaultOn::WatchCut, 1);
            sim.set_pods_frozen(false);
            t.settle().await;

            let x = t.proposal(&p.id);
            x.expect_state(State::RolledBack);
            assert_eq!(sim.faults_left(), 0, "the cut watch was hit too");
            assert_eq!(patches(sim), 1, "retries never patch again");
            assert_eq!(image_of(sim), "payment-api:v1.2.0");
            assert_eq!(
                progress_lines(&x).last().map(String::as_str),
                Some("deployment \"prod-payment-deploy\" successfully rolled out")
            );
            assert_eq!(t.expect_posted(&p.id), "memory:incidents");
            t.expect_threads(
                &p.id,
                &["execution_started", "progress", "execution_finished"],
            );
            t
        },
    )
    .await;
}

#[tokio::test]
async fn an_api_server_silent_past_the_progress_deadline_is_a_verdict() {
    let sim = &sim_with(|s| s.deployments[0].progress_deadline_seconds = Some(2)).await;
    run_test_in(
        || engine_on(sim),
        |t| async move {
            let p = t.propose_by("slack:UALICE").await.unwrap();
            // Nothing about the Deployment can be listed or watched any more.
            sim.fail_next(Kind::Deployment, FaultOn::List, 100_000);
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;

            let x = t.proposal(&p.id);
            x.expect_state(State::Failed);
            let detail = x
                .timeline
                .iter()
                .find_map(|e| match &e.kind {
                    EventKind::ExecutionFinished { ok: false, detail } => Some(detail.clone()),
                    _ => None,
                })
                .unwrap();
            assert!(detail.contains("lost track of the rollout"), "{detail}");
            assert!(detail.contains("progress deadline"), "{detail}");
            assert!(
                detail.contains(
                    "kubectl rollout status deployment/prod-payment-deploy -n production"
                ),
                "{detail}"
            );
            assert_eq!(patches(sim), 1);
            assert_eq!(t.expect_posted(&p.id), "memory:incidents");
            t.expect_threads(&p.id, &["execution_started", "execution_failed"]);
            t
        },
    )
    .await;
}

// ---- restarts ---------------------------------------------------------------

/// Where the first rollbot process stops. A stop is a panic inside the
/// engine's background task: like a killed process, the task ends at that
/// await point and writes nothing more.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    BeforePatch,
    AfterPatch,
    DuringRollout,
    DuringVerification,
}

/// The real executor, except that it stops at `at`.
struct Stopping {
    inner: KubeRollback,
    at: Stop,
}

#[async_trait::async_trait]
impl Executor for Stopping {
    async fn plan(&self, target: &Target, request: &PlanRequest) -> Result<Plan, ExecError> {
        self.inner.plan(target, request).await
    }

    async fn execute(
        &self,
        target: &Target,
        plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        if self.at == Stop::BeforePatch {
            panic!("rollbot stops before the PATCH");
        }
        self.inner.apply(target, plan).await?;
        match self.at {
            Stop::AfterPatch => panic!("rollbot stops right after the PATCH"),
            Stop::DuringRollout => {
                let (tx, mut rx) = mpsc::channel(64);
                let follow = self.inner.follow(target, plan, tx);
                tokio::select! {
                    Some(line) = rx.recv() => {
                        let _ = progress.send(line).await;
                        panic!("rollbot stops during the rollout");
                    }
                    r = follow => panic!("the rollout ended before the stop: {r:?}"),
                }
            }
            _ => self.inner.follow(target, plan, progress).await,
        }
    }
}

/// The real verifier, except that it stops after its first result.
struct StoppingVerifier(HttpVerifier);

#[async_trait::async_trait]
impl Verifier for StoppingVerifier {
    async fn verify(
        &self,
        service: &ServiceName,
        plan: &Plan,
        results: mpsc::Sender<CheckResult>,
    ) -> Verdict {
        let (tx, mut rx) = mpsc::channel(64);
        let verify = self.0.verify(service, plan, tx);
        tokio::select! {
            Some(c) = rx.recv() => {
                let _ = results.send(c).await;
                panic!("rollbot stops during verification");
            }
            v = verify => panic!("verification ended before the stop: {v:?}"),
        }
    }
}

/// [`CONFIG`] plus a recovery check of payment-api on the simulator's
/// Prometheus API.
fn config_with_checks(sim: &sim::SimHandle) -> String {
    format!(
        r#"{CONFIG}
[prometheus]
url = "{}"
timeout = "2s"
[services.payment-api.verify]
window = "20s"
interval = "1s"
[[services.payment-api.verify.prometheus]]
name = "success rate"
query = "payment_success_rate"
op = ">="
threshold = 0.99
"#,
        sim.url()
    )
}

/// An engine over the store in `dir` (a fresh one, or the one a stopped
/// process left), posting to `chat`, which outlives restarts as Slack does.
fn engine_in(
    dir: tempfile::TempDir,
    config: &str,
    chat: Arc<MemoryChat>,
    executor: Arc<dyn Executor>,
    verifier: Arc<dyn Verifier>,
) -> Tester {
    let config = Config::parse(config).unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let engine = Engine::new(
        store,
        config.services(),
        Ports {
            chat: chat.clone(),
            executor,
            verifier,
            clock: clock.clone(),
        },
    );
    engine.add_bot_identity(user(BOT));
    Tester {
        engine,
        chat,
        executor: ScriptedExecutor::new(reference_plan()),
        verifier: ScriptedVerifier::new(),
        clock,
        dir,
        config,
    }
}

fn kube(sim: &sim::SimHandle) -> KubeRollback {
    KubeRollback::new(KubeExecutor::for_url(&sim.url()).unwrap())
}

fn resumed_notes(chat: &MemoryChat) -> Vec<ResumeStep> {
    chat.calls()
        .into_iter()
        .filter_map(|c| match c {
            ChatCall::Thread {
                note: ThreadNote::Resumed { step },
                ..
            } => Some(step),
            _ => None,
        })
        .collect()
}

/// Approves a rollback in a process that stops at `stop`, starts a second
/// process on the same store, recovers, and checks the rollback finished
/// with one PATCH in all and said where it resumed.
async fn stop_then_recover(stop: Stop, resumed_at: ResumeStep) {
    let sim = sim_with(|_| {}).await;
    let config = config_with_checks(&sim);
    let chat = MemoryChat::new();
    let verifier: Arc<dyn Verifier> = if stop == Stop::DuringVerification {
        let services = Config::parse(&config).unwrap().services();
        Arc::new(StoppingVerifier(HttpVerifier::new(&services)))
    } else {
        Arc::new(HttpVerifier::new(
            &Config::parse(&config).unwrap().services(),
        ))
    };
    let first = Stopping {
        inner: kube(&sim),
        at: stop,
    };
    let make = {
        let (config, chat) = (config.clone(), chat.clone());
        move || {
            engine_in(
                tempfile::tempdir().unwrap(),
                &config,
                chat,
                Arc::new(first),
                verifier,
            )
        }
    };
    // The first process's background task panics on purpose (the stop);
    // the harness checks the second one.
    run_test_in(make, |t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        if stop == Stop::DuringRollout {
            sim.set_pods_frozen(true);
        }
        t.approve(&p.id, "slack:UBOB").await;
        t.approve(&p.id, "slack:UCAROL").await;
        t.engine.wait_idle().await;
        assert!(t.engine.background_panicked(), "the first process stopped");
        let left = t.engine.get(&p.id).unwrap().state;
        let expected_left = if stop == Stop::DuringVerification {
            State::RolledBack
        } else {
            State::Executing
        };
        assert_eq!(left, expected_left, "where the first process left it");
        let patched_before = patches(&sim);
        assert_eq!(patched_before, usize::from(stop != Stop::BeforePatch));

        // The second process.
        t.engine.store().flush().await.unwrap();
        let dir = t.dir;
        drop(t.engine);
        sim.set_pods_frozen(false);
        let services = Config::parse(&config).unwrap().services();
        let t = engine_in(
            dir,
            &config,
            chat.clone(),
            Arc::new(kube(&sim)),
            Arc::new(HttpVerifier::new(&services)),
        );
        t.engine.recover().await.unwrap();
        t.settle().await;

        let x = t.proposal(&p.id);
        x.expect_state(State::Verified);
        assert_eq!(patches(&sim), 1, "exactly one PATCH in all");
        assert_eq!(image_of(&sim), "payment-api:v1.2.0");
        let events = x.events();
        let restarted = events.iter().position(|e| *e == "restarted").unwrap();
        assert_eq!(events[restarted + 1], "resumed", "{events:?}");
        assert!(x.timeline.iter().any(|e| matches!(
            &e.kind,
            EventKind::Restarted { state } if *state == expected_left
        )));
        assert!(x.timeline.iter().any(|e| matches!(
            &e.kind,
            EventKind::Resumed { step } if *step == resumed_at
        )));
        assert_eq!(
            resumed_notes(&chat),
            [resumed_at],
            "the thread says so once"
        );
        if stop != Stop::DuringVerification {
            assert_eq!(
                progress_lines(&x).last().map(String::as_str),
                Some("deployment \"prod-payment-deploy\" successfully rolled out")
            );
        }
        // A second start-up finds nothing left to resume.
        t.engine.recover().await.unwrap();
        t.settle().await;
        assert_eq!(resumed_notes(&chat).len(), 1);
        assert_eq!(patches(&sim), 1);
        assert_eq!(t.expect_posted(&p.id), "memory:incidents");
        // The thread says where it resumed, once, and then tells the rest.
        let thread: &[&str] = if stop == Stop::DuringVerification {
            &[
                "execution_started",
                "progress",
                "execution_finished",
                "resumed",
                "verification",
                "resolved",
                "report",
            ]
        } else {
            &[
                "execution_started",
                "resumed",
                "progress",
                "execution_finished",
                "verification",
                "resolved",
                "report",
            ]
        };
        t.expect_threads(&p.id, thread);
        t
    })
    .await;
}

#[tokio::test]
async fn a_stop_before_the_patch_applies_it_after_the_restart() {
    stop_then_recover(Stop::BeforePatch, ResumeStep::Apply).await;
}

#[tokio::test]
async fn a_stop_right_after_the_patch_follows_the_rollout_without_patching_again() {
    stop_then_recover(Stop::AfterPatch, ResumeStep::Follow).await;
}

#[tokio::test]
async fn a_stop_during_the_rollout_follows_it_to_the_end() {
    stop_then_recover(Stop::DuringRollout, ResumeStep::Follow).await;
}

#[tokio::test]
async fn a_stop_during_verification_verifies_again() {
    stop_then_recover(Stop::DuringVerification, ResumeStep::Verify).await;
}

#[tokio::test]
async fn a_workload_that_moved_while_rollbot_was_down_supersedes_the_proposal() {
    let sim = &sim_with(|_| {}).await;
    let config = &config_with_checks(sim);
    let chat = &MemoryChat::new();
    let services = &Config::parse(config).unwrap().services();
    let make = || {
        engine_in(
            tempfile::tempdir().unwrap(),
            config,
            chat.clone(),
            Arc::new(Stopping {
                inner: kube(sim),
                at: Stop::BeforePatch,
            }),
            Arc::new(HttpVerifier::new(services)),
        )
    };
    // The first process's background task panics on purpose (the stop);
    // the harness checks the second one.
    run_test_in(make, |t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&p.id, "slack:UBOB").await;
        t.approve(&p.id, "slack:UCAROL").await;
        t.engine.wait_idle().await;
        // While rollbot is down, someone deploys a hotfix.
        let mut d = sim.get(Kind::Deployment, "production", DEPLOYMENT).unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "payment-api:v1.3.1".into();
        sim.store()
            .update(Kind::Deployment, d, sim::store::WriteMode::Main, false)
            .unwrap();
        wait_until("the controller assigns revision 4 to the hotfix", || {
            sim.get(Kind::Deployment, "production", DEPLOYMENT).unwrap()["metadata"]["annotations"]
                ["deployment.kubernetes.io/revision"]
                == "4"
        })
        .await;
        t.engine.store().flush().await.unwrap();
        let dir = t.dir;
        drop(t.engine);
        let t = engine_in(
            dir,
            config,
            chat.clone(),
            Arc::new(kube(sim)),
            Arc::new(HttpVerifier::new(services)),
        );
        t.engine.recover().await.unwrap();
        t.settle().await;
        t.proposal(&p.id).expect_state(State::Superseded);
        assert_eq!(patches(sim), 0, "the hotfix was not rolled back");
        assert_eq!(image_of(sim), "payment-api:v1.3.1");
        assert!(resumed_notes(chat).is_empty());
        assert_eq!(t.expect_posted(&p.id), "memory:incidents");
        t.expect_threads(&p.id, &["execution_started", "superseded"]);
        t
    })
    .await;
}

// ---- verification sources ---------------------------------------------------

/// [`CONFIG`] with payment-api checked against the Prometheus at `url`.
fn config_with_prometheus(url: &str, window: &str) -> String {
    format!(
        r#"{CONFIG}
[prometheus]
url = "{url}"
timeout = "1s"
[services.payment-api.verify]
window = "{window}"
interval = "1s"
[[services.payment-api.verify.prometheus]]
name = "success rate"
query = "payment_success_rate"
op = ">="
threshold = 0.99
"#
    )
}

/// An engine with the scripted executor and the real verifier.
fn verifying_with(config: &str) -> Tester {
    let services = Config::parse(config).unwrap().services();
    engine_in(
        tempfile::tempdir().unwrap(),
        config,
        MemoryChat::new(),
        ScriptedExecutor::new(reference_plan()),
        Arc::new(HttpVerifier::new(&services)),
    )
}

/// Rolls payment-api back and returns the proposal once verification is
/// over.
async fn roll_back(t: &Tester) -> ProposalExpect {
    let p = t.propose_by("slack:UALICE").await.unwrap();
    t.approve(&p.id, "slack:UBOB").await;
    t.approve(&p.id, "slack:UCAROL").await;
    t.settle().await;
    t.proposal(&p.id)
}

#[tokio::test]
async fn a_prometheus_silent_for_the_whole_window_means_could_not_verify() {
    // A port nobody listens on: connections are refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{closed}");
    let config = config_with_prometheus(&url, "2s");
    run_test_in(
        || verifying_with(&config),
        |t| async move {
            let x = roll_back(&t).await;
            x.expect_state(State::Unverified);
            assert_eq!(t.expect_posted(&x.proposal.id), "memory:incidents");
            let notes = t.expect_threads(
                &x.proposal.id,
                &[
                    "execution_started",
                    "progress",
                    "execution_finished",
                    "unverified",
                    "report",
                ],
            );
            let note = notes
                .iter()
                .find(|n| matches!(n, ThreadNote::Unverified { .. }))
                .expect("the thread says recovery could not be verified");
            assert!(
                !notes
                    .iter()
                    .any(|n| matches!(n, ThreadNote::Verification { .. })),
                "not a verification failure: {notes:?}"
            );
            let ThreadNote::Unverified { unreachable, .. } = note else {
                unreachable!()
            };
            assert_eq!(unreachable.len(), 1);
            assert_eq!(unreachable[0].check, "success rate");
            assert_eq!(unreachable[0].source, format!("Prometheus at {url}"));
            // What people read names the source and says what to check.
            let templates = rollbot::report::templates().unwrap();
            let text = rollbot::report::render_note(templates, &x.proposal, note).unwrap();
            assert!(text.contains("Could not verify recovery"), "{text}");
            assert!(text.contains(&url), "{text}");
            assert!(text.contains("Check that rollbot can reach"), "{text}");
            assert!(!text.contains("has not recovered"), "{text}");
            t
        },
    )
    .await;
}

#[tokio::test]
async fn a_prometheus_that_answers_with_bad_values_means_failed() {
    // The simulator's Prometheus API answers 0.95: the rollback was
    // scripted, so the simulated workload never recovers.
    let sim = sim_with(|_| {}).await;
    let config = config_with_prometheus(&sim.url(), "2s");
    run_test_in(
        || verifying_with(&config),
        |t| async move {
            let x = roll_back(&t).await;
            x.expect_state(State::VerificationFailed);
            assert!(x.timeline.iter().any(|e| matches!(
                &e.kind,
                EventKind::Check { passed: false, value, .. } if value == "0.95"
            )));
            assert_eq!(t.expect_posted(&x.proposal.id), "memory:incidents");
            t.expect_threads(
                &x.proposal.id,
                &[
                    "execution_started",
                    "progress",
                    "execution_finished",
                    "verification",
                    "report",
                ],
            );
            t
        },
    )
    .await;
}
