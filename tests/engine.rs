//! The engine end to end with in-memory ports: the two-person rule, expiry,
//! races and restarts.

mod support;

use chrono::Duration;
use rollbot::domain::{EventKind, Refusal, State, VoteOutcome, Withdrawal};
use rollbot::engine::{EngineError, VoteReply};
use rollbot::ports::memory::{ChatCall, Script};
use rollbot::ports::{CheckResult, ExecError, ExecErrorKind, PrivateNote, ThreadNote, Verdict};
use support::*;

#[tokio::test]
async fn two_distinct_approvals_run_the_rollback_once_and_verify() {
    run_test(|t| async move {
        t.verifier.push(Verdict::Passed {
            checks: vec![CheckResult {
                name: "success rate".into(),
                passed: true,
                value: "0.997".into(),
            }],
        });
        let p = t.propose_by("slack:UALICE").await.unwrap();
        assert!(matches!(
            t.approve(&p.id, "slack:UBOB").await,
            VoteReply::Counted(VoteOutcome::Counted {
                approvals: 1,
                required: 2
            })
        ));
        t.proposal(&p.id).expect_state(State::Proposed);
        assert_eq!(
            t.approve(&p.id, "slack:UCAROL").await,
            VoteReply::Counted(VoteOutcome::Approved)
        );
        t.settle().await;
        assert_eq!(t.executor.executions(), 1);
        t.proposal(&p.id)
            .expect_state(State::Verified)
            .expect_approved_by(&["slack:UBOB", "slack:UCAROL"])
            .expect_events(&[
                "proposed",
                "voted",
                "voted",
                "state_changed",
                "state_changed",
                "execution_started",
                // The rollout's steps, each recorded at its start and end.
                "step_started",
                "progress",
                "execution_finished",
                "step_finished",
                "state_changed",
                "step_started",
                "check",
                "step_finished",
                "state_changed",
                "step_started",
                "step_finished",
            ]);
        // The message was posted once, then updated for each vote and state;
        // the thread tells the rollback's story.
        assert_eq!(t.expect_posted(&p.id), "memory:incidents");
        let notes = t.expect_threads(
            &p.id,
            &[
                "execution_started",
                "progress",
                "execution_finished",
                "verification",
                "resolved",
                "report",
            ],
        );
        assert!(matches!(
            &notes[3],
            ThreadNote::Verification { passed: true, checks } if checks.len() == 1
        ));
        let calls = t.chat.calls();
        let updates: Vec<State> = calls
            .iter()
            .filter_map(|c| match c {
                ChatCall::Updated { state, .. } => Some(*state),
                _ => None,
            })
            .collect();
        assert_eq!(
            updates,
            [
                State::Proposed,
                State::Approved,
                State::Executing,
                State::RolledBack,
                State::Verified
            ]
        );
        t
    })
    .await;
}

#[tokio::test]
async fn self_approval_is_refused_privately_and_recorded() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        assert_eq!(
            t.approve(&p.id, "slack:UALICE").await,
            VoteReply::Refused(Refusal::SelfApproval)
        );
        t.expect_posted(&p.id);
        assert_eq!(
            t.expect_told("slack:UALICE", "vote_refused"),
            PrivateNote::VoteRefused {
                refusal: Refusal::SelfApproval
            }
        );
        let x = t.proposal(&p.id);
        x.expect_state(State::Proposed).expect_approved_by(&[]);
        assert_eq!(x.events(), ["proposed", "vote_refused"]);
        t
    })
    .await;
}

#[tokio::test]
async fn the_bots_own_vote_is_refused() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        assert_eq!(
            t.approve(&p.id, BOT).await,
            VoteReply::Refused(Refusal::Bot)
        );
        t.proposal(&p.id).expect_approved_by(&[]);
        t.expect_posted(&p.id);
        // The refusal is recorded, but rollbot does not tell itself.
        assert_eq!(t.proposal(&p.id).events(), ["proposed", "vote_refused"]);
        t
    })
    .await;
}

#[tokio::test]
async fn an_unauthorised_approver_is_refused_with_the_reason() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        let reply = t.approve(&p.id, "slack:UMALLORY").await;
        let VoteReply::Refused(refusal) = reply else {
            panic!("expected a refusal, got {reply:?}");
        };
        assert_eq!(
            refusal.to_string(),
            "you are not an authorised approver for payment-api; ask someone on its approver list"
        );
        t.expect_posted(&p.id);
        assert_eq!(
            t.expect_told("slack:UMALLORY", "vote_refused"),
            PrivateNote::VoteRefused { refusal }
        );
        t
    })
    .await;
}

#[tokio::test]
async fn the_same_person_twice_counts_once() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&p.id, "slack:UBOB").await;
        assert_eq!(
            t.approve(&p.id, "slack:UBOB").await,
            VoteReply::Counted(VoteOutcome::AlreadyCounted {
                approvals: 1,
                required: 2
            })
        );
        t.proposal(&p.id)
            .expect_state(State::Proposed)
            .expect_events(&["proposed", "voted"]);
        assert_eq!(t.executor.executions(), 0);
        // The voter is told privately why nothing happened.
        t.expect_posted(&p.id);
        assert_eq!(
            t.expect_told("slack:UBOB", "already_counted"),
            PrivateNote::AlreadyCounted {
                approvals: 1,
                required: 2
            }
        );
        t
    })
    .await;
}

#[tokio::test]
async fn a_reject_vetoes_and_later_votes_are_refused() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&p.id, "slack:UBOB").await;
        assert_eq!(
            t.reject(&p.id, "discord:1001").await,
            VoteReply::Counted(VoteOutcome::Rejected)
        );
        assert_eq!(
            t.approve(&p.id, "slack:UCAROL").await,
            VoteReply::Refused(Refusal::Closed {
                state: State::Rejected
            })
        );
        t.settle().await;
        assert_eq!(t.executor.executions(), 0);
        t.proposal(&p.id).expect_state(State::Rejected);
        t.expect_posted(&p.id);
        t.expect_told("slack:UCAROL", "vote_refused");
        // A rejected proposal no longer blocks a new one.
        let next = t.propose_by("slack:UBOB").await.unwrap();
        t.expect_posted(&next.id);
        t
    })
    .await;
}

#[tokio::test]
async fn removing_a_reaction_withdraws_the_vote() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&p.id, "slack:UBOB").await;
        let w = t.engine.withdraw(&p.id, &user("slack:UBOB")).await.unwrap();
        assert_eq!(w, Ok(Withdrawal::Withdrawn));
        t.approve(&p.id, "slack:UCAROL").await;
        t.proposal(&p.id)
            .expect_state(State::Proposed)
            .expect_approved_by(&["slack:UCAROL"]);
        // Once approved, removing an emoji cannot undo the decision.
        t.approve(&p.id, "slack:UBOB").await;
        t.settle().await;
        let w = t.engine.withdraw(&p.id, &user("slack:UBOB")).await.unwrap();
        assert!(matches!(w, Err(Refusal::Closed { .. })));
        assert_eq!(t.executor.executions(), 1);
        t.expect_posted(&p.id);
        t.expect_threads(
            &p.id,
            &["execution_started", "progress", "execution_finished"],
        );
        assert_eq!(
            t.expect_told("slack:UBOB", "vote_refused"),
            PrivateNote::VoteRefused {
                refusal: Refusal::Closed {
                    state: State::RolledBack
                }
            }
        );
        t
    })
    .await;
}

#[tokio::test]
async fn proposals_expire_on_the_tick_after_their_deadline() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&p.id, "slack:UBOB").await;
        t.clock.advance(Duration::minutes(29));
        assert!(t.engine.tick().await.unwrap().is_empty());
        t.clock.advance(Duration::minutes(1));
        // Before the tick runs, a late vote is already refused.
        assert_eq!(
            t.approve(&p.id, "slack:UCAROL").await,
            VoteReply::Refused(Refusal::Expired)
        );
        assert_eq!(t.engine.tick().await.unwrap(), std::slice::from_ref(&p.id));
        t.proposal(&p.id).expect_state(State::Expired);
        assert_eq!(
            t.approve(&p.id, "slack:UCAROL").await,
            VoteReply::Refused(Refusal::Closed {
                state: State::Expired
            })
        );
        assert_eq!(t.executor.executions(), 0);
        t.expect_posted(&p.id);
        // Each late voter is told why, in the order they voted.
        assert_eq!(
            t.expect_told("slack:UCAROL", "vote_refused"),
            PrivateNote::VoteRefused {
                refusal: Refusal::Expired
            }
        );
        assert_eq!(
            t.expect_told("slack:UCAROL", "vote_refused"),
            PrivateNote::VoteRefused {
                refusal: Refusal::Closed {
                    state: State::Expired
                }
            }
        );
        t
    })
    .await;
}

#[tokio::test]
async fn one_open_proposal_per_service() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        let err = t.propose_by("slack:UBOB").await.unwrap_err();
        assert!(matches!(err, EngineError::AlreadyOpen { ref existing, .. } if *existing == p.id));
        assert!(
            err.to_string()
                .contains(&format!("/rollback cancel {}", p.id))
        );
        t.engine.cancel(&p.id, &user("slack:UALICE")).await.unwrap();
        t.proposal(&p.id).expect_state(State::Cancelled);
        t.expect_posted(&p.id);
        let next = t.propose_by("slack:UBOB").await.unwrap();
        t.expect_posted(&next.id);
        t
    })
    .await;
}

#[tokio::test]
async fn only_the_proposer_or_an_approver_may_cancel() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        let err = t
            .engine
            .cancel(&p.id, &user("slack:UMALLORY"))
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::NotAllowed { .. }));
        t.approve(&p.id, "slack:UBOB").await;
        t.approve(&p.id, "slack:UCAROL").await;
        t.settle().await;
        let err = t
            .engine
            .cancel(&p.id, &user("slack:UALICE"))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("only a proposal still waiting for votes"),
            "{err}"
        );
        t.expect_posted(&p.id);
        t.expect_threads(
            &p.id,
            &["execution_started", "progress", "execution_finished"],
        );
        t
    })
    .await;
}

#[tokio::test]
async fn single_approver_services_run_after_one_vote() {
    run_test(|t| async move {
        let p = t.propose_for("search", "slack:UBOB").await.unwrap();
        assert!(p.single_approver);
        assert_eq!(p.required, 1);
        assert_eq!(
            t.approve(&p.id, "slack:UALICE").await,
            VoteReply::Counted(VoteOutcome::Approved)
        );
        t.settle().await;
        assert_eq!(t.executor.executions(), 1);
        // No checks configured: it stays RolledBack and frees the service.
        t.proposal(&p.id).expect_state(State::RolledBack);
        t.expect_posted(&p.id);
        t.expect_threads(
            &p.id,
            &["execution_started", "progress", "execution_finished"],
        );
        let next = t.propose_for("search", "slack:UBOB").await.unwrap();
        t.expect_posted(&next.id);
        t
    })
    .await;
}

#[tokio::test]
async fn executor_outcomes_map_to_states() {
    run_test(|t| async move {
        t.executor.set_script(Script::Supersede {
            reason: "revision moved from 3 to 4 since the plan".into(),
        });
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&p.id, "slack:UBOB").await;
        t.approve(&p.id, "slack:UCAROL").await;
        t.settle().await;
        t.proposal(&p.id).expect_state(State::Superseded);
        t.expect_posted(&p.id);
        t.expect_threads(&p.id, &["execution_started", "superseded"]);

        t.executor.set_script(Script::Fail(ExecError::new(
            ExecErrorKind::RolloutFailed,
            "deployment \"prod-payment-deploy\" exceeded its progress deadline",
        )));
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&p.id, "slack:UBOB").await;
        t.approve(&p.id, "slack:UCAROL").await;
        t.settle().await;
        let x = t.proposal(&p.id);
        x.expect_state(State::Failed);
        assert!(x.timeline.iter().any(|e| matches!(&e.kind,
            EventKind::ExecutionFinished { ok: false, detail } if detail.contains("progress deadline"))));
        t.expect_posted(&p.id);
        let notes = t.expect_threads(&p.id, &["execution_started", "execution_failed"]);
        assert!(matches!(
            &notes[1],
            ThreadNote::ExecutionFailed { error } if error.message.contains("progress deadline")
        ));
        t
    })
    .await;
}

#[tokio::test]
async fn a_plan_error_is_explained_and_nothing_is_stored() {
    run_test(|t| async move {
        t.executor.set_plan(Err(ExecError::new(
            ExecErrorKind::NoHistory,
            "no rollout history found for deployment \"prod-payment-deploy\"",
        )));
        let err = t.propose_by("slack:UALICE").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot plan a rollback of payment-api: no rollout history found for deployment \"prod-payment-deploy\""
        );
        assert!(t.engine.store().list().unwrap().is_empty());
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_final_approvals_start_exactly_one_execution() {
    run_test(|t| async move {
        let gate = t.executor.hold();
        for round in 0..1000 {
            let p = t.propose_by("slack:UALICE").await.unwrap();
            t.approve(&p.id, "slack:UBOB").await;
            let (a, b) = tokio::join!(
                tokio::spawn({
                    let e = t.engine.clone();
                    let id = p.id.clone();
                    async move {
                        e.vote(
                            &id,
                            &user("slack:UCAROL"),
                            rollbot::domain::VoteKind::Approve,
                            rollbot::domain::VoteVia::Reaction,
                        )
                        .await
                    }
                }),
                tokio::spawn({
                    let e = t.engine.clone();
                    let id = p.id.clone();
                    async move {
                        e.vote(
                            &id,
                            &user("discord:1001"),
                            rollbot::domain::VoteKind::Approve,
                            rollbot::domain::VoteVia::Button,
                        )
                        .await
                    }
                }),
            );
            let replies = [a.unwrap().unwrap(), b.unwrap().unwrap()];
            let approved = replies
                .iter()
                .filter(|r| **r == VoteReply::Counted(VoteOutcome::Approved))
                .count();
            assert_eq!(approved, 1, "round {round}: {replies:?}");
            // The voter who lost the race is told the vote came too late.
            let loser = if replies[0] == VoteReply::Counted(VoteOutcome::Approved) {
                "discord:1001"
            } else {
                "slack:UCAROL"
            };
            let x = t.proposal(&p.id);
            x.expect_state(State::Executing);
            let starts = x
                .events()
                .iter()
                .filter(|e| **e == "execution_started")
                .count();
            assert_eq!(starts, 1, "round {round}");
            gate.add_permits(1);
            t.settle().await;
            assert_eq!(t.executor.executions(), round + 1);
            t.expect_posted(&p.id);
            t.expect_told(loser, "vote_refused");
            t.expect_threads(
                &p.id,
                &["execution_started", "progress", "execution_finished"],
            );
        }
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_transitions_in_the_store_have_one_winner() {
    // The guarantee must hold without the engine's per-proposal lock too
    // (another process, a recovery running beside a vote).
    run_test(|t| async move {
        for round in 0..1000 {
            let p = t.propose_for("search", "slack:UBOB").await.unwrap();
            let store = t.engine.store().clone();
            store
                .update(&p.id, t0(), |p| {
                    p.transition(State::Approved, t0()).map(|_| ((), vec![]))
                })
                .unwrap();
            let race = || {
                let store = store.clone();
                let id = p.id.clone();
                std::thread::spawn(move || {
                    store
                        .update(&id, t0(), |p| {
                            p.transition(State::Executing, t0())
                                .map(|_| ((), vec![EventKind::ExecutionStarted]))
                        })
                        .is_ok()
                })
            };
            let (a, b) = (race(), race());
            let wins = [a.join().unwrap(), b.join().unwrap()];
            assert_eq!(wins.iter().filter(|w| **w).count(), 1, "round {round}");
            let started = store
                .timeline(&p.id)
                .unwrap()
                .iter()
                .filter(|e| e.kind.name() == "execution_started")
                .count();
            assert_eq!(started, 1);
            t.expect_posted(&p.id);
            store
                .update(&p.id, t0(), |p| {
                    p.transition(State::Superseded, t0()).map(|_| ((), vec![]))
                })
                .unwrap();
        }
        t
    })
    .await;
}

#[tokio::test]
async fn a_restart_keeps_proposals_votes_and_timeline() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&p.id, "slack:UBOB").await;
        t.approve(&p.id, "slack:UMALLORY").await;
        let before = t.proposal(&p.id);
        let t = t.restart().await;
        let after = t.proposal(&p.id);
        assert_eq!(after.proposal, before.proposal);
        assert_eq!(after.timeline, before.timeline);
        after.expect_approved_by(&["slack:UBOB"]).expect_events(&[
            "proposed",
            "voted",
            "vote_refused",
        ]);
        // What was sent before the restart is still in the chat.
        t.expect_posted(&p.id);
        t.expect_told("slack:UMALLORY", "vote_refused");
        // The rule continues where it stopped.
        assert_eq!(
            t.approve(&p.id, "slack:UCAROL").await,
            VoteReply::Counted(VoteOutcome::Approved)
        );
        t.settle().await;
        assert_eq!(t.executor.executions(), 1);
        t.expect_threads(
            &p.id,
            &["execution_started", "progress", "execution_finished"],
        );
        t
    })
    .await;
}

#[tokio::test]
async fn recovery_executes_approved_and_flags_interrupted_rollbacks() {
    run_test(|t| async move {
        // State as a crash would leave it: one rollback mid-flight, one
        // approved but not yet started.
        let a = t.propose_by("slack:UALICE").await.unwrap();
        let b = t.propose_for("search", "slack:UBOB").await.unwrap();
        let store = t.engine.store().clone();
        for (id, states) in [
            (&a.id, &[State::Approved, State::Executing][..]),
            (&b.id, &[State::Approved][..]),
        ] {
            for s in states {
                store
                    .update(id, t0(), |p| p.transition(*s, t0()).map(|_| ((), vec![])))
                    .unwrap();
            }
        }
        drop(store);
        let t = t.restart().await;
        t.engine.recover().await.unwrap();
        t.settle().await;
        assert_eq!(t.executor.executions(), 1, "only the approved one runs");
        t.proposal(&b.id).expect_state(State::RolledBack);
        let x = t.proposal(&a.id);
        x.expect_state(State::Failed);
        assert!(x.timeline.iter().any(|e| matches!(&e.kind,
            EventKind::Restarted { state: State::Executing })));
        assert!(x.timeline.iter().any(|e| matches!(&e.kind,
            EventKind::ExecutionFinished { ok: false, detail } if detail.contains("cannot tell whether"))));
        t.expect_posted(&a.id);
        t.expect_posted(&b.id);
        let notes = t.expect_threads(&a.id, &["execution_failed"]);
        assert!(matches!(
            &notes[0],
            ThreadNote::ExecutionFailed { error } if error.kind == rollbot::ports::ExecErrorKind::Interrupted
        ));
        t.expect_threads(
            &b.id,
            &["execution_started", "progress", "execution_finished"],
        );
        t
    })
    .await;
}

#[tokio::test]
async fn chat_outages_are_recorded_not_fatal() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.chat.set_failing(true);
        t.approve(&p.id, "slack:UBOB").await;
        let x = t.proposal(&p.id);
        assert_eq!(x.events(), ["proposed", "voted", "chat_error"]);
        x.expect_approved_by(&["slack:UBOB"]);
        // Only the post made it; the vote's update did not.
        t.expect_posted(&p.id);
        t
    })
    .await;
}

fn posts_of(t: &Tester, id: &rollbot::domain::ProposalId) -> usize {
    t.chat
        .calls()
        .iter()
        .filter(|c| matches!(c, ChatCall::Posted { id: p, .. } if p == id.as_str()))
        .count()
}

/// A proposal the chat could not take (or that rollbot stopped before
/// posting) is not left without a message: the tick, and a restart, post
/// it, once, and bind it to the message so votes on it count.
#[tokio::test]
async fn a_proposal_that_could_not_be_posted_is_posted_later_and_bound() {
    run_test(|t| async move {
        t.chat.set_failing(true);
        let p = t.propose_by("slack:UALICE").await.unwrap();
        assert!(t.engine.get(&p.id).unwrap().messages.is_empty());
        assert_eq!(posts_of(&t, &p.id), 0);
        // Still down: the ticks try and leave it unbound, and only the
        // first failure is on the timeline (a long outage cannot grow it).
        t.engine.tick().await.unwrap();
        t.engine.tick().await.unwrap();
        assert!(t.engine.get(&p.id).unwrap().messages.is_empty());
        let chat_errors = t
            .engine
            .store()
            .timeline(&p.id)
            .unwrap()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::ChatError { .. }))
            .count();
        assert_eq!(chat_errors, 1);
        t.chat.set_failing(false);
        t.engine.tick().await.unwrap();
        let bound = t.engine.get(&p.id).unwrap();
        let at = bound
            .primary_message()
            .expect("bound to its message")
            .clone();
        assert_eq!(posts_of(&t, &p.id), 1);
        assert_eq!(t.expect_posted(&p.id), "memory:incidents");
        assert_eq!(
            t.engine.proposal_for_message(&at).unwrap(),
            Some(p.id.clone())
        );
        // Nothing left to post: neither the next tick nor a restart posts again.
        t.engine.tick().await.unwrap();
        let t = t.restart().await;
        t.engine.recover().await.unwrap();
        assert_eq!(t.engine.get(&p.id).unwrap().messages, vec![at]);
        t
    })
    .await;
}

/// rollbot stopped after storing a proposal and before posting it: the
/// restart posts it.
#[tokio::test]
async fn a_restart_posts_a_proposal_stored_but_never_posted() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        let mut orphan = t.engine.get(&p.id).unwrap();
        t.engine.cancel(&p.id, &user("slack:UALICE")).await.unwrap();
        // The same proposal as it stands right after the store write.
        orphan.id = rollbot::domain::ProposalId::from_random(42);
        orphan.messages.clear();
        orphan.timeline_len = 0;
        t.engine
            .store()
            .insert_claiming(&orphan, &[], Some("slack:C0123INCIDENTS"), &[])
            .unwrap();
        let t = t.restart().await;
        t.engine.recover().await.unwrap();
        let bound = t.engine.get(&orphan.id).unwrap();
        assert_eq!(bound.messages.len(), 1, "{bound:?}");
        assert_eq!(bound.messages[0].channel, "slack:C0123INCIDENTS");
        assert_eq!(posts_of(&t, &orphan.id), 1);
        t.expect_posted(&p.id);
        assert_eq!(t.expect_posted(&orphan.id), "slack:C0123INCIDENTS");
        t.engine.recover().await.unwrap();
        assert_eq!(posts_of(&t, &orphan.id), 1);
        t
    })
    .await;
}
