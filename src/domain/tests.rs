//! Exhaustive tests of the state machine, the two-person rule and the
//! decision rules.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::decision::{DataImpact, Finding, Scope};
use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, 14, 30, 0).unwrap()
}

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn plan() -> Plan {
    let rev = |revision, tag: &str| RevisionInfo {
        revision,
        images: vec![ContainerImage {
            container: "payment-api".into(),
            image: format!("payment-api:{tag}"),
        }],
        change_cause: None,
    };
    Plan {
        workload: "deployment production/prod-payment-deploy".into(),
        current: rev(3, "v1.3.0"),
        target: rev(2, "v1.2.0"),
        warnings: vec![],
        migrations: false,
        blockers: vec![],
        guard: serde_json::Value::Null,
    }
}

fn proposal(origin: Origin, proposer: &str) -> Proposal {
    Proposal {
        id: ProposalId::from_random(42),
        service: ServiceName::parse("payment-api").unwrap(),
        origin,
        proposer: user(proposer),
        reason: "success rate 95%".into(),
        plan: plan(),
        created_at: t0(),
        expires_at: t0() + Duration::minutes(30),
        state: State::Proposed,
        required: 2,
        single_approver: false,
        approvals: vec![],
        rejected_by: None,
        messages: vec![],
        alerts: vec![],
        extra_alerts: 0,
        alert_resolved_at: None,
        recommendation: None,
        timeline_len: 0,
        updated_at: t0(),
        drill: false,
        no_checks: false,
        locale: "en".into(),
    }
}

fn policy() -> ApprovalPolicy {
    ApprovalPolicy {
        required: 2,
        single_approver: false,
        approvers: ["slack:UALICE", "slack:UBOB", "slack:UCAROL", "discord:1001"]
            .into_iter()
            .map(user)
            .collect(),
        bots: BTreeSet::from([user("slack:UROLLBOT")]),
    }
}

fn approve(p: &mut Proposal, who: &str) -> Result<VoteOutcome, Refusal> {
    policy().vote(p, &user(who), VoteKind::Approve, VoteVia::Reaction, t0())
}

// ---- state machine ------------------------------------------------------

#[test]
fn every_transition_is_either_an_edge_or_a_typed_error() {
    use State::*;
    let edges = [
        (Proposed, Approved),
        (Proposed, Rejected),
        (Proposed, Expired),
        (Proposed, Cancelled),
        (Proposed, Superseded),
        (Approved, Executing),
        (Approved, Superseded),
        (Executing, RolledBack),
        (Executing, Failed),
        (Executing, Superseded),
        (RolledBack, Verified),
        (RolledBack, VerificationFailed),
        (RolledBack, Unverified),
    ];
    for from in State::ALL {
        for to in State::ALL {
            let mut p = proposal(Origin::Alert, "system:alertmanager");
            p.state = from;
            let result = p.transition(to, t0() + Duration::seconds(1));
            if edges.contains(&(from, to)) {
                assert!(result.is_ok(), "{from} -> {to} should be allowed");
                assert_eq!(p.state, to);
                assert_eq!(p.updated_at, t0() + Duration::seconds(1));
            } else {
                let err = result.expect_err(&format!("{from} -> {to} must be refused"));
                assert_eq!((err.from, err.to), (from, to));
                assert_eq!(p.state, from, "a refused transition changes nothing");
            }
        }
    }
}

#[test]
fn terminal_and_open_states() {
    use State::*;
    let terminal: Vec<_> = State::ALL.into_iter().filter(|s| s.is_terminal()).collect();
    assert_eq!(
        terminal,
        [
            Verified,
            VerificationFailed,
            Unverified,
            Failed,
            Rejected,
            Expired,
            Cancelled,
            Superseded
        ]
    );
    let open: Vec<_> = State::ALL.into_iter().filter(|s| s.is_open()).collect();
    assert_eq!(open, [Proposed, Approved, Executing, RolledBack]);
}

#[test]
fn transition_error_names_the_proposal_and_states() {
    let mut p = proposal(Origin::Alert, "system:alertmanager");
    let err = p.transition(State::Verified, t0()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("proposal {} cannot go from proposed to verified", p.id)
    );
}

// ---- two-person rule ----------------------------------------------------

#[test]
fn two_distinct_authorised_approvals_approve() {
    let mut p = proposal(Origin::Alert, "system:alertmanager");
    assert_eq!(
        approve(&mut p, "slack:UALICE").unwrap(),
        VoteOutcome::Counted {
            approvals: 1,
            required: 2
        }
    );
    assert_eq!(p.state, State::Proposed);
    assert_eq!(
        approve(&mut p, "slack:UBOB").unwrap(),
        VoteOutcome::Approved
    );
    assert_eq!(p.state, State::Approved);
    let who: Vec<_> = p.approvers().map(UserId::as_str).collect();
    assert_eq!(who, ["slack:UALICE", "slack:UBOB"]);
}

#[test]
fn approvals_across_platforms_are_distinct_people() {
    let mut p = proposal(Origin::Alert, "system:alertmanager");
    approve(&mut p, "slack:UALICE").unwrap();
    assert_eq!(
        approve(&mut p, "discord:1001").unwrap(),
        VoteOutcome::Approved
    );
}

#[test]
fn the_same_person_twice_is_one_vote() {
    let mut p = proposal(Origin::Alert, "system:alertmanager");
    approve(&mut p, "slack:UALICE").unwrap();
    assert_eq!(
        approve(&mut p, "slack:UALICE").unwrap(),
        VoteOutcome::AlreadyCounted {
            approvals: 1,
            required: 2
        }
    );
    assert_eq!(p.approvals.len(), 1);
    assert_eq!(p.state, State::Proposed);
}

#[test]
fn a_blocked_plan_takes_no_approval_but_can_be_rejected() {
    let mut p = proposal(Origin::Alert, "system:alertmanager");
    p.plan.blockers = vec!["pre-check schema-diff failed: exit 3".into()];
    assert_eq!(
        approve(&mut p, "slack:UBOB").unwrap_err(),
        Refusal::Blocked {
            reasons: vec!["pre-check schema-diff failed: exit 3".into()]
        }
    );
    assert!(p.approvals.is_empty());
    assert_eq!(p.state, State::Proposed);
    let reject = policy().vote(
        &mut p,
        &user("slack:UCAROL"),
        VoteKind::Reject,
        VoteVia::Reaction,
        t0(),
    );
    assert_eq!(reject.unwrap(), VoteOutcome::Rejected);
    assert_eq!(p.state, State::Rejected);
}

#[test]
fn the_proposer_of_a_manual_proposal_never_counts() {
    for origin in [Origin::Command, Origin::Drill] {
        let mut p = proposal(origin, "slack:UALICE");
        assert_eq!(
            approve(&mut p, "slack:UALICE").unwrap_err(),
            Refusal::SelfApproval
        );
        assert!(p.approvals.is_empty());
        approve(&mut p, "slack:UBOB").unwrap();
        assert_eq!(
            approve(&mut p, "slack:UCAROL").unwrap(),
            VoteOutcome::Approved
        );
    }
}

#[test]
fn the_proposer_may_still_veto_their_own_proposal() {
    let mut p = proposal(Origin::Command, "slack:UALICE");
    let out = policy()
        .vote(
            &mut p,
            &user("slack:UALICE"),
            VoteKind::Reject,
            VoteVia::Button,
            t0(),
        )
        .unwrap();
    assert_eq!(out, VoteOutcome::Rejected);
    assert_eq!(p.state, State::Rejected);
}

#[test]
fn the_bot_never_counts_even_if_listed_as_approver() {
    let mut pol = policy();
    pol.approvers.insert(user("slack:UROLLBOT"));
    let mut p = proposal(Origin::Alert, "system:alertmanager");
    let err = pol
        .vote(
            &mut p,
            &user("slack:UROLLBOT"),
            VoteKind::Approve,
            VoteVia::Reaction,
            t0(),
        )
        .unwrap_err();
    assert_eq!(err, Refusal::Bot);
    assert_eq!(
        approve(&mut p, "system:alertmanager").unwrap_err(),
        Refusal::Bot
    );
}

#[test]
fn unauthorised_approver_is_refused_with_a_reason() {
    let mut p = proposal(Origin::Alert, "system:alertmanager");
    let err = approve(&mut p, "slack:UMALLORY").unwrap_err();
    assert_eq!(
        err,
        Refusal::NotAuthorised {
            service: "payment-api".into()
        }
    );
    assert!(
        err.to_string()
            .contains("not an authorised approver for payment-api")
    );
    // An unauthorised reject does not veto either.
    let err = policy()
        .vote(
            &mut p,
            &user("slack:UMALLORY"),
            VoteKind::Reject,
            VoteVia::Reaction,
            t0(),
        )
        .unwrap_err();
    assert_eq!(err.code(), "not_authorised");
    assert_eq!(p.state, State::Proposed);
}

#[test]
fn an_authorised_reject_vetoes_even_after_an_approval() {
    let mut p = proposal(Origin::Alert, "system:alertmanager");
    approve(&mut p, "slack:UALICE").unwrap();
    let out = policy()
        .vote(
            &mut p,
            &user("slack:UBOB"),
            VoteKind::Reject,
            VoteVia::Reaction,
            t0(),
        )
        .unwrap();
    assert_eq!(out, VoteOutcome::Rejected);
    assert_eq!(p.state, State::Rejected);
    assert_eq!(p.rejected_by, Some(user("slack:UBOB")));
    assert_eq!(
        approve(&mut p, "slack:UCAROL").unwrap_err(),
        Refusal::Closed {
            state: State::Rejected
        }
    );
}

#[test]
fn withdrawing_removes_the_vote_while_proposed() {
    let mut p = proposal(Origin::Alert, "system:alertmanager");
    approve(&mut p, "slack:UALICE").unwrap();
    let pol = policy();
    assert_eq!(
        pol.withdraw(&mut p, &user("slack:UALICE"), t0()).unwrap(),
        Withdrawal::Withdrawn
    );
    assert!(p.approvals.is_empty());
    assert_eq!(
        pol.withdraw(&mut p, &user("slack:UALICE"), t0()).unwrap(),
        Withdrawal::NothingToWithdraw
    );
    // After a withdrawal the rule starts over: one more approval is not enough.
    approve(&mut p, "slack:UBOB").unwrap();
    assert_eq!(p.state, State::Proposed);
    assert_eq!(
        approve(&mut p, "slack:UALICE").unwrap(),
        VoteOutcome::Approved
    );
}

#[test]
fn withdrawing_after_approval_is_refused() {
    let mut p = proposal(Origin::Alert, "system:alertmanager");
    approve(&mut p, "slack:UALICE").unwrap();
    approve(&mut p, "slack:UBOB").unwrap();
    let err = policy()
        .withdraw(&mut p, &user("slack:UALICE"), t0())
        .unwrap_err();
    assert_eq!(
        err,
        Refusal::Closed {
            state: State::Approved
        }
    );
    assert_eq!(p.approvals.len(), 2);
}

#[test]
fn votes_after_every_non_proposed_state_are_refused() {
    for state in State::ALL.into_iter().filter(|s| *s != State::Proposed) {
        let mut p = proposal(Origin::Alert, "system:alertmanager");
        p.state = state;
        let err = approve(&mut p, "slack:UALICE").unwrap_err();
        assert_eq!(err, Refusal::Closed { state });
        assert!(err.to_string().contains(state.as_str()));
        assert!(p.approvals.is_empty());
    }
}

#[test]
fn votes_after_the_expiry_time_are_refused_before_the_tick() {
    let mut p = proposal(Origin::Alert, "system:alertmanager");
    let late = p.expires_at;
    let err = policy()
        .vote(
            &mut p,
            &user("slack:UALICE"),
            VoteKind::Approve,
            VoteVia::Button,
            late,
        )
        .unwrap_err();
    assert_eq!(err, Refusal::Expired);
}

#[test]
fn a_single_approver_service_needs_one_vote() {
    let mut p = proposal(Origin::Alert, "system:alertmanager");
    p.required = 1;
    p.single_approver = true;
    assert_eq!(
        approve(&mut p, "slack:UALICE").unwrap(),
        VoteOutcome::Approved
    );
}

#[test]
fn three_required_needs_three_people() {
    let mut p = proposal(Origin::Alert, "system:alertmanager");
    p.required = 3;
    approve(&mut p, "slack:UALICE").unwrap();
    approve(&mut p, "slack:UBOB").unwrap();
    assert_eq!(p.state, State::Proposed);
    assert_eq!(
        approve(&mut p, "slack:UCAROL").unwrap(),
        VoteOutcome::Approved
    );
}

#[test]
fn refusal_messages_tell_people_what_to_do() {
    let all = [
        Refusal::Closed {
            state: State::Executing,
        },
        Refusal::Expired,
        Refusal::Bot,
        Refusal::NotAuthorised {
            service: "payment-api".into(),
        },
        Refusal::SelfApproval,
    ];
    let text: Vec<String> = all.iter().map(|r| format!("{}: {r}", r.code())).collect();
    insta::assert_yaml_snapshot!(text);
}

// ---- decision rules -----------------------------------------------------

#[test]
fn decision_rules_follow_the_runbook_tables() {
    use decision::Severity::*;
    let case = |severity, scope, lasting, data, fix, migrations| {
        recommend(&DecisionInput {
            severity,
            scope,
            lasting_minutes: lasting,
            data_impact: data,
            time_to_fix_minutes: fix,
            migrations,
        })
    };
    let rows = vec![
        (
            "reference incident: high, all users, 5+ min",
            case(Some(High), Some(Scope::All), Some(6), None, None, false),
        ),
        (
            "high, some users, 20 min",
            case(
                Some(High),
                Some(Scope::Some),
                Some(20),
                None,
                Some(3),
                false,
            ),
        ),
        (
            "medium, all users, 45 min",
            case(
                Some(Medium),
                Some(Scope::All),
                Some(45),
                None,
                Some(30),
                false,
            ),
        ),
        (
            "low, few users",
            case(
                Some(Low),
                Some(Scope::Few),
                Some(100),
                None,
                Some(10),
                false,
            ),
        ),
        (
            "critical, no data impact, fix 45 min",
            case(
                Some(Critical),
                None,
                None,
                Some(DataImpact::None),
                Some(45),
                false,
            ),
        ),
        (
            "high, minor data, fix 90 min",
            case(
                Some(High),
                None,
                None,
                Some(DataImpact::Minor),
                Some(90),
                false,
            ),
        ),
        (
            "medium, no data, fix 3 h",
            case(
                Some(Medium),
                None,
                None,
                Some(DataImpact::None),
                Some(180),
                false,
            ),
        ),
        (
            "low, no data",
            case(Some(Low), None, None, Some(DataImpact::None), None, false),
        ),
        (
            "P1 with a 3-minute fix",
            case(Some(High), None, None, None, Some(3), false),
        ),
        (
            "P2 with a 30-minute fix",
            case(Some(Medium), None, None, None, Some(30), false),
        ),
        (
            "P3, time to fix unknown",
            case(Some(Low), None, None, None, None, false),
        ),
        (
            "migrations between versions",
            case(Some(Critical), Some(Scope::All), Some(10), None, None, true),
        ),
        ("nothing known", case(None, None, None, None, None, false)),
    ];
    let rendered: Vec<String> = rows
        .into_iter()
        .map(|(name, r)| {
            let why: Vec<_> = r
                .because
                .iter()
                .map(|f| {
                    serde_json::to_value(f)
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            format!("{name} => {} ({})", r.advice.as_str(), why.join(", "))
        })
        .collect();
    insta::assert_yaml_snapshot!(rendered);
}

#[test]
fn migrations_always_prefer_forward_fix() {
    let r = recommend(&DecisionInput {
        severity: Some(Severity::Critical),
        scope: Some(Scope::All),
        lasting_minutes: Some(60),
        migrations: true,
        ..Default::default()
    });
    assert_eq!(r.advice, Advice::ForwardFix);
    assert_eq!(r.because[0], Finding::MigrationsBetweenVersions);
}

#[test]
fn severity_spellings() {
    let cases = [
        ("critical", Severity::Critical),
        ("P0", Severity::Critical),
        ("SEV-1", Severity::Critical),
        ("sev_1", Severity::Critical),
        ("high", Severity::High),
        ("p1", Severity::High),
        ("error", Severity::High),
        ("page", Severity::High),
        ("warning", Severity::Medium),
        ("Medium", Severity::Medium),
        ("p2", Severity::Medium),
        ("low", Severity::Low),
        (" info ", Severity::Low),
        ("p3", Severity::Low),
        ("P4", Severity::Low),
    ];
    for (label, expected) in cases {
        assert_eq!(Severity::parse(label), Some(expected), "{label}");
    }
    assert_eq!(Severity::parse("spicy"), None);
    assert_eq!(Severity::parse(""), None);
}

#[test]
fn unknown_severities_say_what_to_use() {
    let err = "banana".parse::<Severity>().unwrap_err();
    assert!(err.to_string().contains("\"banana\""), "{err}");
    assert!(
        err.to_string().contains("critical, high, medium or low"),
        "{err}"
    );
}

#[test]
fn severities_order_by_severity_and_round_trip() {
    assert!(Severity::Critical > Severity::High);
    assert!(Severity::High > Severity::Medium);
    assert!(Severity::Medium > Severity::Low);
    for s in Severity::ALL {
        assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
}
