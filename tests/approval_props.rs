//! Property tests of the two-person rule and the state machine: arbitrary
//! sequences of votes, withdrawals, vetoes and engine transitions, applied
//! through [`ApprovalPolicy`] and [`Proposal::transition`], checked against
//! DESIGN.md's rule written out independently here.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use rollbot::domain::{
    ApprovalPolicy, ContainerImage, Origin, Plan, Proposal, ProposalId, RevisionInfo, ServiceName,
    State, UserId, VoteKind, VoteVia,
};

/// DESIGN.md's state machine, edge by edge (Superseded from Approved and
/// Executing: the target moved since the plan was made).
const EDGES: &[(State, State)] = &[
    (State::Proposed, State::Approved),
    (State::Proposed, State::Rejected),
    (State::Proposed, State::Expired),
    (State::Proposed, State::Cancelled),
    (State::Proposed, State::Superseded),
    (State::Approved, State::Executing),
    (State::Approved, State::Superseded),
    (State::Executing, State::RolledBack),
    (State::Executing, State::Failed),
    (State::Executing, State::Superseded),
    (State::RolledBack, State::Verified),
    (State::RolledBack, State::VerificationFailed),
    (State::RolledBack, State::Unverified),
];

/// Everyone who may show up: the proposer, authorised people, people
/// outside the approver list, rollbot itself (listed as an approver by
/// mistake, still never counted) and an alert source.
const PEOPLE: &[&str] = &[
    "slack:UPROPOSER",
    "slack:UALICE",
    "slack:UBOB",
    "discord:1001",
    "console:carol",
    "slack:UMALLORY",
    "discord:2002",
    "slack:UROLLBOT",
    "system:alertmanager",
];
const AUTHORISED: &[&str] = &[
    "slack:UPROPOSER",
    "slack:UALICE",
    "slack:UBOB",
    "discord:1001",
    "console:carol",
    "slack:UROLLBOT",
];
const BOT: &str = "slack:UROLLBOT";
const EXPIRES_AFTER_MINUTES: i64 = 30;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, 14, 30, 0).unwrap()
}

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

#[derive(Debug, Clone)]
enum Action {
    Vote {
        who: usize,
        kind: VoteKind,
        via: VoteVia,
    },
    Withdraw {
        who: usize,
    },
    /// What the engine does besides votes (expiry, cancel, run, verify…).
    Transition(State),
}

#[derive(Debug, Clone)]
struct Step {
    /// Minutes after creation; steps are applied in increasing time.
    minute: i64,
    action: Action,
}

fn action() -> impl Strategy<Value = Action> {
    let who = 0..PEOPLE.len();
    let kind = prop_oneof![Just(VoteKind::Approve), Just(VoteKind::Reject)];
    let via = prop_oneof![Just(VoteVia::Reaction), Just(VoteVia::Button)];
    prop_oneof![
        // Mostly approvals, so `required` is often reached.
        6 => (who.clone(), via.clone()).prop_map(|(who, via)| Action::Vote { who, kind: VoteKind::Approve, via }),
        1 => (who.clone(), kind, via).prop_map(|(who, kind, via)| Action::Vote { who, kind, via }),
        2 => who.prop_map(|who| Action::Withdraw { who }),
        // Approved and Rejected are reached through votes only.
        1 => proptest::sample::select(
            State::ALL
                .into_iter()
                .filter(|s| !matches!(s, State::Approved | State::Rejected))
                .collect::<Vec<_>>(),
        )
        .prop_map(Action::Transition),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((0..EXPIRES_AFTER_MINUTES + 5, action()), 0..24).prop_map(|mut v| {
        v.sort_by_key(|(m, _)| *m);
        v.into_iter()
            .map(|(minute, action)| Step { minute, action })
            .collect()
    })
}

fn proposal(origin: Origin, proposer: &str, required: u8) -> Proposal {
    let rev = |revision, tag: &str| RevisionInfo {
        revision,
        images: vec![ContainerImage {
            container: "payment-api".into(),
            image: format!("payment-api:{tag}"),
        }],
        change_cause: None,
    };
    Proposal {
        id: ProposalId::from_random(7),
        service: ServiceName::parse("payment-api").unwrap(),
        origin,
        proposer: user(proposer),
        reason: "success rate 95%".into(),
        plan: Plan {
            workload: "deployment production/prod-payment-deploy".into(),
            current: rev(3, "v1.3.0"),
            target: rev(2, "v1.2.0"),
            warnings: vec![],
            migrations: false,
            blockers: vec![],
            guard: serde_json::Value::Null,
        },
        created_at: t0(),
        expires_at: t0() + Duration::minutes(EXPIRES_AFTER_MINUTES),
        state: State::Proposed,
        required,
        single_approver: required == 1,
        approvals: vec![],
        rejected_by: None,
        messages: vec![],
        alerts: vec![],
        extra_alerts: 0,
        alert_resolved_at: None,
        recommendation: None,
        timeline_len: 0,
        updated_at: t0(),
        drill: origin == Origin::Drill,
        no_checks: false,
        locale: "en".into(),
    }
}

fn policy(required: u8) -> ApprovalPolicy {
    ApprovalPolicy {
        required,
        single_approver: required == 1,
        approvers: AUTHORISED.iter().copied().map(user).collect(),
        bots: BTreeSet::from([user(BOT)]),
    }
}

/// Whether `who`'s vote may count at all (the proposer aside).
fn may_vote(who: &str) -> bool {
    AUTHORISED.contains(&who) && who != BOT && !who.starts_with("system:")
}

fn origin_and_proposer() -> impl Strategy<Value = (Origin, &'static str)> {
    prop_oneof![
        Just((Origin::Alert, "system:alertmanager")),
        (
            prop_oneof![Just(Origin::Command), Just(Origin::Drill)],
            proptest::sample::select(&PEOPLE[..7])
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn approved_iff_enough_distinct_valid_approvals_and_no_veto(
        (origin, proposer) in origin_and_proposer(),
        required in 1u8..=4,
        steps in steps(),
    ) {
        let policy = policy(required);
        let mut p = proposal(origin, proposer, required);
        // The reference model: DESIGN.md's rule, as plain bookkeeping.
        let mut counted: BTreeSet<&str> = BTreeSet::new();
        let mut vetoed_by: Option<&str> = None;
        let mut model = State::Proposed;

        for step in &steps {
            let now = t0() + Duration::minutes(step.minute);
            let before = p.state;
            let open = before == State::Proposed && now < p.expires_at;
            match &step.action {
                Action::Vote { who, kind, via } => {
                    let who = PEOPLE[*who];
                    let result = policy.vote(&mut p, &user(who), *kind, *via, now);
                    let counts = open
                        && may_vote(who)
                        && !(*kind == VoteKind::Approve
                            && origin != Origin::Alert
                            && who == proposer);
                    prop_assert_eq!(result.is_ok(), counts, "{:?} by {} at {}: {:?}", kind, who, step.minute, result);
                    if counts {
                        match kind {
                            VoteKind::Reject => {
                                vetoed_by = Some(who);
                                model = State::Rejected;
                            }
                            VoteKind::Approve => {
                                counted.insert(who);
                                if counted.len() >= usize::from(required) {
                                    model = State::Approved;
                                }
                            }
                        }
                    }
                }
                Action::Withdraw { who } => {
                    let who = PEOPLE[*who];
                    let result = policy.withdraw(&mut p, &user(who), now);
                    prop_assert_eq!(result.is_ok(), before == State::Proposed);
                    if before == State::Proposed {
                        counted.remove(who);
                    }
                }
                Action::Transition(next) => {
                    let result = p.transition(*next, now);
                    prop_assert_eq!(result.is_ok(), EDGES.contains(&(before, *next)));
                    if result.is_ok() {
                        model = *next;
                    }
                }
            }
            let after = p.state;
            // Only edges of the table are ever taken, and terminal states
            // never move.
            prop_assert!(after == before || EDGES.contains(&(before, after)), "{} -> {}", before, after);
            if before.is_terminal() {
                prop_assert_eq!(after, before);
            }
            prop_assert_eq!(after, model, "after {:?}", step);
            if before == State::Proposed && after == State::Approved {
                // The rule, stated on the moment of approval: enough distinct,
                // authorised people, none of them the proposer or a bot, no veto.
                let approvers: BTreeSet<&str> = p.approvers().map(UserId::as_str).collect();
                prop_assert_eq!(approvers.len(), p.approvals.len(), "an approver counted twice");
                prop_assert!(approvers.len() >= usize::from(required));
                for a in &approvers {
                    prop_assert!(may_vote(a), "{} must not count", a);
                    prop_assert!(origin == Origin::Alert || *a != proposer, "the proposer counted");
                }
                prop_assert!(p.rejected_by.is_none(), "approved after a veto");
            }
            if after == State::Proposed {
                // Still open: exactly the counted approvals, below the bar.
                let recorded: BTreeSet<&str> = p.approvers().map(UserId::as_str).collect();
                prop_assert_eq!(recorded.len(), p.approvals.len(), "an approver counted twice");
                prop_assert_eq!(&recorded, &counted);
                prop_assert!(counted.len() < usize::from(required));
            }
        }

        prop_assert_eq!(p.rejected_by.as_ref().map(UserId::as_str), vetoed_by);
    }
}

#[test]
fn the_edge_list_is_the_state_machine() {
    for from in State::ALL {
        for to in State::ALL {
            assert_eq!(
                from.can_become(to),
                EDGES.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
}
