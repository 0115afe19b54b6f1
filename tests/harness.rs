//! The harness's own checks fail when they should: an unconsumed message,
//! a background panic, a body that hangs and background work that never
//! ends each fail the test; consumed messages pass.

mod support;

use std::time::Duration;

use rollbot::domain::State;
use rollbot::ports::memory::ChatCall;
use rollbot::ports::{PrivateNote, ThreadNote};
use support::*;

#[tokio::test]
async fn a_message_nobody_consumed_fails_the_test() {
    let result = try_run_test(TEST_LIMIT, Tester::new, |t| async move {
        t.propose_by("slack:UALICE").await.unwrap();
        t
    })
    .await;
    let Err(Failure::Unconsumed(left)) = result else {
        panic!("expected the unconsumed proposal post to fail the test, got {result:?}");
    };
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        matches!(
            left[0].call,
            ChatCall::Posted {
                state: State::Proposed,
                ..
            }
        ),
        "{left:?}"
    );
    // The report names the message, so the failure says what to consume.
    let report = Failure::Unconsumed(left.clone()).to_string();
    assert!(report.contains(left[0].proposal.as_str()), "{report}");
    assert!(report.contains("memory:incidents"), "{report}");
}

#[tokio::test]
async fn unconsumed_thread_and_private_notes_fail_the_test_too() {
    let result = try_run_test(TEST_LIMIT, Tester::new, |t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.expect_posted(&p.id);
        t.approve(&p.id, "slack:UALICE").await;
        t.approve(&p.id, "slack:UBOB").await;
        t.approve(&p.id, "slack:UCAROL").await;
        t.engine.wait_idle().await;
        t
    })
    .await;
    let Err(Failure::Unconsumed(left)) = result else {
        panic!("expected unconsumed notes to fail the test, got {result:?}");
    };
    let names: Vec<String> = left.iter().map(|s| s.name()).collect();
    assert_eq!(
        names,
        [
            "vote_refused",
            "execution_started",
            "progress",
            "execution_finished"
        ]
    );
}

#[tokio::test]
async fn consumed_messages_pass() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        assert_eq!(t.expect_posted(&p.id), "memory:incidents");
        t.approve(&p.id, "slack:UALICE").await;
        let refused = t.expect_told("slack:UALICE", "vote_refused");
        assert!(matches!(refused, PrivateNote::VoteRefused { .. }));
        t.approve(&p.id, "slack:UBOB").await;
        t.approve(&p.id, "slack:UCAROL").await;
        t.engine.wait_idle().await;
        let notes = t.expect_threads(
            &p.id,
            &["execution_started", "progress", "execution_finished"],
        );
        assert!(matches!(
            notes[2],
            ThreadNote::ExecutionFinished { ok: true, .. }
        ));
        t
    })
    .await;
}

#[tokio::test]
async fn an_expectation_of_a_message_never_sent_fails() {
    let t = Tester::new();
    let p = t.propose_by("slack:UALICE").await.unwrap();
    t.expect_posted(&p.id);
    // Already consumed: a second expectation of the same post must fail.
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.expect_posted(&p.id)));
    assert!(again.is_err());
    let never = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        t.expect_thread(&p.id, "verification")
    }));
    assert!(never.is_err());
}

#[tokio::test]
async fn ignore_messages_consumes_everything_pending() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&p.id, "slack:UMALLORY").await;
        assert_eq!(t.chat.unconsumed().len(), 2);
        t.ignore_messages();
        t.expect_no_messages();
        t
    })
    .await;
}

#[tokio::test]
async fn a_background_panic_fails_the_test() {
    let result = try_run_test(TEST_LIMIT, Tester::new, |t| async move {
        t.engine
            .tasks()
            .spawn("test", async { panic!("boom (expected)") });
        t
    })
    .await;
    assert!(
        matches!(result, Err(Failure::BackgroundPanic)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_body_that_hangs_times_out() {
    let limit = Duration::from_millis(100);
    let result = try_run_test(limit, Tester::new, |t| async move {
        std::future::pending::<()>().await;
        t
    })
    .await;
    assert!(
        matches!(result, Err(Failure::TimedOut(d)) if d == limit),
        "{result:?}"
    );
}

#[tokio::test]
async fn background_work_that_never_ends_fails_the_test() {
    let t = Tester::new();
    let (_keep, never) = tokio::sync::oneshot::channel::<()>();
    t.engine.tasks().spawn("test", async move {
        let _ = never.await;
    });
    let limit = Duration::from_millis(100);
    let result = tokio::time::timeout(TEST_LIMIT, finish_within(limit, &t.engine, &t.chat))
        .await
        .expect("finish is bounded itself");
    assert!(
        matches!(result, Err(Failure::StillBusy(d)) if d == limit),
        "{result:?}"
    );
}

#[tokio::test]
async fn wait_until_gives_up_naming_what_it_waited_for() {
    let limit = Duration::from_millis(100);
    let waited = tokio::spawn(wait_until_within(limit, "pigs fly", async || false));
    let err = waited.await.expect_err("wait_until must give up");
    let msg = err
        .into_panic()
        .downcast::<String>()
        .map(|s| *s)
        .unwrap_or_default();
    assert!(msg.contains("pigs fly"), "{msg}");
}

#[tokio::test]
#[should_panic(expected = "did not consume")]
async fn run_test_panics_on_an_unconsumed_message() {
    run_test(|t| async move {
        t.propose_by("slack:UALICE").await.unwrap();
        t
    })
    .await;
}
