//! The rollout as a pipeline of recorded steps: runbook hooks before and
//! after the rollback, what a failing hook does, and resuming each step
//! after a restart. Hooks are plugged in from here, as the runbook
//! executors will be.

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rollbot::domain::pipeline::Step;
use rollbot::domain::{EventKind, ServiceName, State, TimelineEvent};
use rollbot::ports::memory::ChatCall;
use rollbot::ports::{
    CheckResult, ExecError, ExecErrorKind, Hook, HookCall, Hooks, ThreadNote, Verdict,
};
use support::*;
use tokio::sync::mpsc;

/// A hook that writes what it saw into a shared log, optionally failing.
struct LogHook {
    name: String,
    log: Arc<Mutex<Vec<String>>>,
    executions: Arc<rollbot::ports::memory::ScriptedExecutor>,
    fail: bool,
    /// Safe to run again after a restart (the trait's default).
    idempotent: bool,
}

#[async_trait]
impl Hook for LogHook {
    fn name(&self) -> &str {
        &self.name
    }

    fn idempotent(&self) -> bool {
        self.idempotent
    }

    async fn run(
        &self,
        call: &HookCall,
        progress: mpsc::Sender<String>,
    ) -> Result<String, ExecError> {
        self.log.lock().unwrap().push(format!(
            "{} for {} after {} rollbacks",
            self.name,
            call.proposal.service,
            self.executions.executions()
        ));
        let _ = progress.send("working".into()).await;
        if self.fail {
            return Err(ExecError::new(ExecErrorKind::Other, "exit status 3"));
        }
        Ok("done".into())
    }
}

fn hook(t: &Tester, name: &str, log: &Arc<Mutex<Vec<String>>>, fail: bool) -> Arc<dyn Hook> {
    Arc::new(LogHook {
        name: name.into(),
        log: log.clone(),
        executions: t.executor.clone(),
        fail,
        idempotent: true,
    })
}

/// A hook that must not run twice (e.g. a backup named by the minute).
fn once_only_hook(t: &Tester, name: &str, log: &Arc<Mutex<Vec<String>>>) -> Arc<dyn Hook> {
    Arc::new(LogHook {
        name: name.into(),
        log: log.clone(),
        executions: t.executor.clone(),
        fail: false,
        idempotent: false,
    })
}

/// The verifier's answer: recovered.
fn recovers(t: &Tester) {
    t.verifier.push(Verdict::Passed {
        checks: vec![CheckResult {
            name: "success rate".into(),
            passed: true,
            value: "0.998".into(),
        }],
    });
}

fn payment() -> ServiceName {
    ServiceName::parse("payment-api").unwrap()
}

/// The steps recorded on a timeline: (step, "started" | "ok" | "failed").
fn steps(timeline: &[TimelineEvent]) -> Vec<(Step, &'static str)> {
    timeline
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepStarted { step } => Some((*step, "started")),
            EventKind::StepFinished { step, ok, .. } => {
                Some((*step, if *ok { "ok" } else { "failed" }))
            }
            _ => None,
        })
        .collect()
}

fn thread_texts(t: &Tester) -> Vec<String> {
    t.chat
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            ChatCall::Thread { note, .. } => Some(serde_json::to_string(&note).unwrap()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn hooks_run_in_order_around_the_rollback_and_every_step_is_recorded() {
    run_test(|t| async move {
        recovers(&t);
        let log = Arc::new(Mutex::new(Vec::new()));
        t.engine.set_hooks(
            payment(),
            Hooks {
                before: vec![
                    hook(&t, "db-backup", &log, false),
                    hook(&t, "maintenance-on", &log, false),
                ],
                after: vec![hook(&t, "maintenance-off", &log, false)],
                ..Hooks::default()
            },
        );
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&p.id, "slack:UBOB").await;
        t.approve(&p.id, "slack:UCAROL").await;
        t.settle().await;
        assert_eq!(
            *log.lock().unwrap(),
            [
                "db-backup for payment-api after 0 rollbacks",
                "maintenance-on for payment-api after 0 rollbacks",
                "maintenance-off for payment-api after 1 rollbacks",
            ]
        );
        let e = t.proposal(&p.id);
        e.expect_state(State::Verified);
        use Step::*;
        assert_eq!(
            steps(&e.timeline),
            [
                (BeforeHooks, "started"),
                (BeforeHooks, "ok"),
                (Rollback, "started"),
                (Rollback, "ok"),
                (AfterHooks, "started"),
                (AfterHooks, "ok"),
                (Verify, "started"),
                (Verify, "ok"),
                (Report, "started"),
                (Report, "ok"),
            ]
        );
        // Hook output reaches the thread like the rollback's progress.
        assert!(
            e.timeline.iter().any(|ev| matches!(
                &ev.kind,
                EventKind::Progress { line } if line == "db-backup: working"
            )),
            "{:?}",
            e.timeline
        );
        t.expect_posted(&p.id);
        // The first hook's line opens a progress message that later ones
        // edit; the rollback's progress is a message of its own.
        t.expect_threads(
            &p.id,
            &[
                "execution_started",
                "progress",
                "progress",
                "execution_finished",
                "progress",
                "verification",
                "resolved",
                "report",
            ],
        );
        t
    })
    .await;
}

#[tokio::test]
async fn a_failing_before_hook_stops_the_rollout_before_anything_is_rolled_back() {
    run_test(|t| async move {
        recovers(&t);
        let log = Arc::new(Mutex::new(Vec::new()));
        t.engine.set_hooks(
            payment(),
            Hooks {
                before: vec![
                    hook(&t, "db-backup", &log, true),
                    hook(&t, "never", &log, false),
                ],
                after: vec![],
                ..Hooks::default()
            },
        );
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&p.id, "slack:UBOB").await;
        t.approve(&p.id, "slack:UCAROL").await;
        t.settle().await;
        assert_eq!(t.executor.executions(), 0, "nothing may be rolled back");
        assert_eq!(log.lock().unwrap().len(), 1, "later hooks do not run");
        let e = t.proposal(&p.id);
        e.expect_state(State::Failed);
        assert_eq!(
            steps(&e.timeline),
            [
                (Step::BeforeHooks, "started"),
                (Step::BeforeHooks, "failed")
            ]
        );
        let failed = t
            .chat
            .calls()
            .into_iter()
            .find_map(|c| match c {
                ChatCall::Thread {
                    note: ThreadNote::ExecutionFailed { error },
                    ..
                } => Some(error),
                _ => None,
            })
            .expect("the thread says the rollout failed");
        assert_eq!(failed.kind, ExecErrorKind::HookFailed);
        assert_eq!(failed.message, "db-backup: exit status 3");
        t.expect_posted(&p.id);
        t.expect_threads(
            &p.id,
            &["execution_started", "progress", "execution_failed"],
        );
        t
    })
    .await;
}

#[tokio::test]
async fn a_failing_after_hook_still_verifies_and_asks_people_to_finish_it() {
    run_test(|t| async move {
        recovers(&t);
        let log = Arc::new(Mutex::new(Vec::new()));
        t.engine.set_hooks(
            payment(),
            Hooks {
                before: vec![],
                after: vec![hook(&t, "traffic-back", &log, true)],
                ..Hooks::default()
            },
        );
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&p.id, "slack:UBOB").await;
        t.approve(&p.id, "slack:UCAROL").await;
        t.settle().await;
        assert_eq!(t.executor.executions(), 1);
        let e = t.proposal(&p.id);
        e.expect_state(State::Verified);
        assert!(steps(&e.timeline).contains(&(Step::AfterHooks, "failed")));
        assert!(steps(&e.timeline).contains(&(Step::Verify, "ok")));
        assert!(
            thread_texts(&t)
                .iter()
                .any(|n| n.contains("traffic-back: exit status 3")),
            "{:?}",
            thread_texts(&t)
        );
        t.expect_posted(&p.id);
        t.expect_threads(
            &p.id,
            &[
                "execution_started",
                "progress",
                "execution_finished",
                "progress",
                "after_hook_failed",
                "verification",
                "resolved",
                "report",
            ],
        );
        t
    })
    .await;
}

/// Leaves `payment-api`'s proposal as a crash would: approved, executing,
/// with `marks` as the last things recorded.
async fn interrupted(
    t: &Tester,
    state: State,
    marks: Vec<EventKind>,
) -> rollbot::domain::ProposalId {
    let p = t.propose_by("slack:UALICE").await.unwrap();
    let now = rollbot::domain::Clock::now(t.clock.as_ref());
    t.engine
        .store()
        .update(&p.id, now, |p| {
            for to in [State::Approved, State::Executing] {
                p.transition(to, now).map_err(|e| e.to_string())?;
            }
            if state == State::RolledBack {
                p.transition(State::RolledBack, now)
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(((), marks.clone()))
        })
        .unwrap();
    t.engine.store().flush().await.unwrap();
    p.id
}

#[tokio::test]
async fn an_interrupted_before_hook_runs_again_and_the_rollback_once() {
    run_test(|t| async move {
        recovers(&t);
        let id = interrupted(
            &t,
            State::Executing,
            vec![
                EventKind::ExecutionStarted,
                EventKind::StepStarted {
                    step: Step::BeforeHooks,
                },
            ],
        )
        .await;
        let t = t.restart().await;
        recovers(&t);
        let log = Arc::new(Mutex::new(Vec::new()));
        t.engine.set_hooks(
            payment(),
            Hooks {
                before: vec![hook(&t, "db-backup", &log, false)],
                after: vec![],
                ..Hooks::default()
            },
        );
        t.engine.recover().await.unwrap();
        t.settle().await;
        assert_eq!(log.lock().unwrap().len(), 1);
        assert_eq!(t.executor.executions(), 1);
        let e = t.proposal(&id);
        e.expect_state(State::Verified);
        assert!(e.timeline.iter().any(|ev| matches!(
            ev.kind,
            EventKind::Resumed {
                step: rollbot::domain::ResumeStep::BeforeHooks
            }
        )));
        t.expect_posted(&id);
        t.expect_threads(
            &id,
            &[
                "resumed",
                "progress",
                "progress",
                "execution_finished",
                "verification",
                "resolved",
                "report",
            ],
        );
        t
    })
    .await;
}

#[tokio::test]
async fn a_restart_after_the_rollback_step_goes_on_with_the_next_step_without_rolling_back_again() {
    run_test(|t| async move {
        recovers(&t);
        let id = interrupted(
            &t,
            State::RolledBack,
            vec![
                EventKind::StepStarted {
                    step: Step::Rollback,
                },
                EventKind::StepFinished {
                    step: Step::Rollback,
                    ok: true,
                    detail: "rolled_back".into(),
                },
            ],
        )
        .await;
        let t = t.restart().await;
        recovers(&t);
        let log = Arc::new(Mutex::new(Vec::new()));
        t.engine.set_hooks(
            payment(),
            Hooks {
                before: vec![hook(&t, "never-again", &log, false)],
                after: vec![hook(&t, "maintenance-off", &log, false)],
                ..Hooks::default()
            },
        );
        t.engine.recover().await.unwrap();
        t.settle().await;
        assert_eq!(t.executor.executions(), 0, "the rollback is not repeated");
        assert_eq!(
            *log.lock().unwrap(),
            ["maintenance-off for payment-api after 0 rollbacks"]
        );
        t.proposal(&id).expect_state(State::Verified);
        t.expect_posted(&id);
        t.expect_threads(
            &id,
            &["resumed", "progress", "verification", "resolved", "report"],
        );
        t
    })
    .await;
}

#[tokio::test]
async fn a_restart_skips_finished_hooks_and_reports_an_interrupted_one_that_is_not_idempotent() {
    run_test(|t| async move {
        let id = interrupted(
            &t,
            State::Executing,
            vec![
                EventKind::ExecutionStarted,
                EventKind::StepStarted {
                    step: Step::BeforeHooks,
                },
                EventKind::HookStarted {
                    step: Step::BeforeHooks,
                    name: "maintenance-on".into(),
                },
                EventKind::HookFinished {
                    step: Step::BeforeHooks,
                    name: "maintenance-on".into(),
                    ok: true,
                    detail: "exit 0".into(),
                    millis: 12,
                },
                EventKind::HookStarted {
                    step: Step::BeforeHooks,
                    name: "db-backup".into(),
                },
            ],
        )
        .await;
        let t = t.restart().await;
        let log = Arc::new(Mutex::new(Vec::new()));
        t.engine.set_hooks(
            payment(),
            Hooks {
                before: vec![
                    hook(&t, "maintenance-on", &log, false),
                    once_only_hook(&t, "db-backup", &log),
                ],
                ..Hooks::default()
            },
        );
        t.engine.recover().await.unwrap();
        t.settle().await;
        assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
        assert_eq!(t.executor.executions(), 0, "nothing is rolled back");
        let e = t.proposal(&id);
        e.expect_state(State::Failed);
        t.expect_posted(&id);
        let notes = t.expect_threads(&id, &["resumed", "execution_failed"]);
        let ThreadNote::ExecutionFailed { error } = &notes[1] else {
            panic!("{notes:?}");
        };
        // Worded as a failed step before the rollback: nothing was rolled back.
        assert_eq!(error.kind, ExecErrorKind::HookFailed);
        assert!(
            error
                .message
                .starts_with("db-backup: interrupted by a restart"),
            "{error:?}"
        );
        t
    })
    .await;
}
