//! The rollback metrics on `/metrics`: derived from the stored timelines,
//! kept current as events are recorded, and rebuilt equal after a restart.

mod support;

use chrono::Duration;
use rollbot::domain::{State, VoteOutcome};
use rollbot::engine::VoteReply;
use rollbot::ports::memory::Script;
use rollbot::ports::{CheckResult, ExecError, ExecErrorKind, Verdict};
use support::*;

/// The lines of the timeline-derived families (not the webhook counters,
/// which count requests, nor the outbox gauges, which read the queue),
/// sorted: series come out in no particular order.
fn rollback_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| {
            [
                "rollbot_proposals_opened",
                "rollbot_proposal_outcomes",
                "rollbot_time_to_",
                "rollbot_rollback_duration",
                "rollbot_votes_refused",
            ]
            .iter()
            .any(|m| l.starts_with(m))
        })
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn incidents_are_measured_and_the_values_survive_a_restart() {
    run_test(|t| async move {
        let before_any = t.engine.metrics().render();
        // Every configured service's series exist at zero before anything happens.
        assert_eq!(
            sample(
                &before_any,
                r#"rollbot_proposal_outcomes_total{service="search",outcome="rolled_back",drill="false"}"#
            ),
            0.0
        );

        // A verified rollback: decided 4 minutes after the proposal, rolled
        // back 3 minutes later.
        t.verifier.push(Verdict::Passed {
            checks: vec![CheckResult {
                name: "success rate".into(),
                passed: true,
                value: "0.997".into(),
            }],
        });
        let a = t.propose_by("slack:UALICE").await.unwrap();
        t.clock.advance(Duration::minutes(2));
        // Not an approver: refused, and counted by reason.
        assert!(matches!(
            t.approve(&a.id, "slack:UMALLORY").await,
            VoteReply::Refused(_)
        ));
        t.approve(&a.id, "slack:UBOB").await;
        t.clock.advance(Duration::minutes(2));
        assert_eq!(
            t.approve(&a.id, "slack:UCAROL").await,
            VoteReply::Counted(VoteOutcome::Approved)
        );
        t.settle().await;
        t.proposal(&a.id).expect_state(State::Verified);

        // A rollback that fails.
        t.executor.set_script(Script::Fail(ExecError::new(
            ExecErrorKind::Forbidden,
            "deployments.apps is forbidden",
        )));
        let b = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&b.id, "slack:UBOB").await;
        t.approve(&b.id, "slack:UCAROL").await;
        t.settle().await;
        t.proposal(&b.id).expect_state(State::Failed);

        // A rejected one on the other service.
        let c = t.propose_for("search", "slack:UBOB").await.unwrap();
        t.reject(&c.id, "slack:UALICE").await;
        t.proposal(&c.id).expect_state(State::Rejected);
        t.ignore_messages();

        let text = t.engine.metrics().render();
        let pay = |outcome: &str| {
            sample(
                &text,
                &format!(
                    r#"rollbot_proposal_outcomes_total{{service="payment-api",outcome="{outcome}",drill="false"}}"#
                ),
            )
        };
        assert_eq!(pay("rolled_back"), 1.0);
        assert_eq!(pay("verified"), 1.0);
        assert_eq!(pay("failed"), 1.0);
        assert_eq!(pay("rejected"), 0.0);
        assert_eq!(
            sample(
                &text,
                r#"rollbot_proposal_outcomes_total{service="search",outcome="rejected",drill="false"}"#
            ),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                r#"rollbot_proposals_opened_total{service="payment-api",origin="command"}"#
            ),
            2.0
        );
        assert_eq!(
            sample(
                &text,
                r#"rollbot_time_to_decision_seconds_sum{service="payment-api",drill="false"}"#
            ),
            240.0
        );
        assert_eq!(
            sample(
                &text,
                r#"rollbot_time_to_decision_seconds_count{service="payment-api",drill="false"}"#
            ),
            2.0
        );
        assert_eq!(
            sample(
                &text,
                r#"rollbot_time_to_mitigate_seconds_bucket{le="300.0",service="payment-api",drill="false"}"#
            ),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                r#"rollbot_time_to_resolve_seconds_count{service="payment-api",drill="false"}"#
            ),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                r#"rollbot_rollback_duration_seconds_count{service="payment-api",drill="false"}"#
            ),
            2.0
        );
        assert_eq!(
            sample(
                &text,
                r#"rollbot_votes_refused_total{service="payment-api",reason="not_authorised"}"#
            ),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                r#"rollbot_executor_errors_total{service="payment-api",kind="forbidden"}"#
            ),
            1.0
        );

        let before = rollback_lines(&text);
        let t = t.restart().await;
        wait_until("the metrics are rebuilt", || !t.engine.metrics().rebuilding()).await;
        let after = rollback_lines(&t.engine.metrics().render());
        assert_eq!(after, before, "rebuilt from the store after a restart");

        // And they keep counting after the restart.
        let d = t.propose_for("search", "slack:UBOB").await.unwrap();
        t.reject(&d.id, "slack:UALICE").await;
        t.ignore_messages();
        assert_eq!(
            sample(
                &t.engine.metrics().render(),
                r#"rollbot_proposal_outcomes_total{service="search",outcome="rejected",drill="false"}"#
            ),
            2.0
        );
        t
    })
    .await;
}

#[tokio::test]
async fn metrics_are_served_with_the_engines_values() {
    run_test(|t| async move {
        let server = t.serve().await;
        let c = t.propose_for("search", "slack:UBOB").await.unwrap();
        t.reject(&c.id, "slack:UALICE").await;
        t.ignore_messages();
        assert_eq!(
            server
                .metric(r#"rollbot_proposal_outcomes_total{service="search",outcome="rejected",drill="false"}"#)
                .await,
            1
        );
        t
    })
    .await;
}

/// The rebuild after a start runs beside the server: a write recorded while
/// it runs counts once, whether or not the rebuild's read already saw it.
#[tokio::test]
async fn writes_while_the_metrics_are_rebuilt_count_once() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.reject(&p.id, "slack:UBOB").await;
        let store = t.engine.store().clone();
        let m = std::sync::Arc::new(rollbot::metrics::Metrics::new());
        m.begin_rebuild();
        store.set_observer(m.clone());
        assert!(m.rebuilding());
        // Recorded before the rebuild reads it: held back, then found read.
        let q = t.propose_by("slack:UALICE").await.unwrap();
        assert_eq!(m.rebuild(&store).unwrap(), 2);
        assert!(!m.rebuilding());
        let opened = r#"rollbot_proposals_opened_total{service="payment-api",origin="command"}"#;
        let rejected = r#"rollbot_proposal_outcomes_total{service="payment-api",outcome="rejected",drill="false"}"#;
        assert_eq!(sample(&m.render(), opened), 2.0);
        assert_eq!(sample(&m.render(), rejected), 1.0);
        // Recorded after it: counted as it comes.
        t.reject(&q.id, "slack:UBOB").await;
        assert_eq!(sample(&m.render(), rejected), 2.0);
        assert_eq!(sample(&m.render(), opened), 2.0);
        t.ignore_messages();
        t
    })
    .await;
}
