//! `/rollback stats` answered from the stored timelines of scripted
//! incidents on an injected clock.

mod support;

use std::sync::Arc;

use chrono::Duration;
use rollbot::chat::handler::{CommandHandler, CommandInput};
use rollbot::chat::reply::Reply;
use rollbot::chat::router::ChatRouter;
use rollbot::chat::stats::Stats;
use rollbot::domain::State;
use rollbot::ports::memory::Script;
use rollbot::ports::{CheckResult, ExecError, ExecErrorKind, Verdict};
use support::*;

fn check(passed: bool) -> Vec<CheckResult> {
    vec![CheckResult {
        name: "success rate".into(),
        passed,
        value: if passed { "99.8" } else { "95" }.into(),
    }]
}

/// A proposal of `service` decided after `decide` minutes with `verdict`
/// (or a failing executor when `None`).
async fn incident(t: &Tester, service: &str, decide: i64, verdict: Option<Verdict>) -> State {
    match verdict {
        Some(v) => {
            t.executor.set_script(Script::Succeed { lines: vec![] });
            t.verifier.push(v);
        }
        None => t.executor.set_script(Script::Fail(ExecError::new(
            ExecErrorKind::RolloutFailed,
            "progress deadline exceeded",
        ))),
    }
    let p = t.propose_for(service, "slack:UALICE").await.unwrap();
    t.clock.advance(Duration::minutes(decide));
    t.approve(&p.id, "slack:UBOB").await;
    t.approve(&p.id, "slack:UCAROL").await;
    t.settle().await;
    t.clock.advance(Duration::minutes(30));
    t.engine.get(&p.id).unwrap().state
}

async fn stats(handler: &Arc<CommandHandler>, text: &str) -> (String, Stats) {
    let answer = handler
        .command(CommandInput {
            platform: "memory".into(),
            channel: "incidents".into(),
            user: user("slack:UALICE"),
            text: text.into(),
            key: format!("trigger-{text}"),
            locale: None,
        })
        .await
        .unwrap();
    match answer.reply {
        Reply::Stats { stats } => (answer.locale, stats),
        other => panic!("{text}: expected stats, got {other:?}"),
    }
}

#[tokio::test]
async fn stats_count_the_window_and_measure_from_the_timelines() {
    run_test(|t| async move {
        let handler = CommandHandler::new(
            t.engine.clone(),
            Arc::new(ChatRouter::new().with_fallback(t.chat.clone())),
        );
        // Forty days ago: outside the default window.
        let old = incident(
            &t,
            "payment-api",
            1,
            Some(Verdict::Passed {
                checks: check(true),
            }),
        )
        .await;
        assert_eq!(old, State::Verified);
        t.clock.advance(Duration::days(40));

        let passed = Some(Verdict::Passed {
            checks: check(true),
        });
        let failed = Some(Verdict::Failed {
            checks: check(false),
        });
        assert_eq!(
            incident(&t, "payment-api", 5, passed).await,
            State::Verified
        );
        assert_eq!(incident(&t, "payment-api", 10, None).await, State::Failed);
        assert_eq!(
            incident(&t, "payment-api", 20, failed).await,
            State::VerificationFailed
        );
        let r = t.propose_for("search", "slack:UBOB").await.unwrap();
        t.reject(&r.id, "slack:UALICE").await;
        let unanswered = t.propose_for("search", "slack:UBOB").await.unwrap();
        t.clock.advance(Duration::hours(1));
        t.engine.tick().await.unwrap();
        t.proposal(&unanswered.id).expect_state(State::Expired);
        t.ignore_messages();

        let (_, s) = stats(&handler, "stats payment-api").await;
        assert_eq!(
            s,
            Stats {
                service: Some("payment-api".into()),
                days: 30,
                proposals: 3,
                rollbacks: 2,
                failed: 1,
                verification_failed: 1,
                rejected: 0,
                expired: 0,
                // Mitigated after 5 and 20 minutes (nearest rank).
                mttr_median: Some(300),
                mttr_p90: Some(1200),
                decision_median: Some(600),
                decision_p90: Some(1200),
                drills: 0,
                drills_expired: 0,
                drill_decision_median: None,
                drill_mitigate_median: None,
            }
        );
        let (_, all) = stats(&handler, "stats").await;
        assert_eq!((all.proposals, all.rejected, all.expired), (5, 1, 1));
        let (_, longer) = stats(&handler, "stats payment-api --days 60").await;
        assert_eq!((longer.proposals, longer.rollbacks), (4, 3));
        assert_eq!(longer.mttr_median, Some(300));
        let (_, search) = stats(&handler, "stats search --days 1").await;
        assert_eq!(
            (search.proposals, search.rollbacks, search.mttr_median),
            (2, 0, None)
        );
        t.clock.advance(Duration::days(2));
        let (_, none) = stats(&handler, "stats search --days 1").await;
        assert_eq!((none.proposals, none.decision_median), (0, None));
        t
    })
    .await;
}
