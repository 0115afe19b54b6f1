//! The numbers teams steer by, read off a proposal's timeline: how it
//! ended, time to decision, time to mitigate, time to resolve, how long the
//! rollback ran, and refused votes.
//!
//! One pure fold over the recorded events, so `/metrics` (kept current as
//! events are recorded, and rebuilt from the store on start), `/rollback
//! stats` and the incident report's drill comparison cannot disagree: a
//! value rebuilt after a restart is the value observed before it.
//!
//! The clocks these measures start from:
//! - **decision** starts when rollbot learned of the incident: the first
//!   alert received (`Detected`), or the proposal for a manual one;
//! - **mitigate** and **resolve** start when the incident started: the
//!   first alert's `starts_at` as its source reported it, or the proposal;
//! - the rollback's own duration runs from `ExecutionStarted` to its end.

use chrono::{DateTime, Utc};

use super::proposal::State;
use super::timeline::{EventKind, TimelineEvent};

/// One thing a proposal's timeline shows, to be counted or measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// The proposal was opened.
    Opened,
    /// The proposal reached one of the outcome states ([`OUTCOMES`]).
    Outcome(State),
    /// Seconds from detection to the approval that completed the rule.
    TimeToDecision(f64),
    /// Seconds from the incident's start to the rollback's completion.
    TimeToMitigate(f64),
    /// Seconds from the incident's start to its resolution: the alert
    /// cleared, or (for a manual proposal) verification passed.
    TimeToResolve(f64),
    /// Seconds the rollback itself ran, whether it succeeded or failed.
    RollbackDuration(f64),
    /// A vote was refused, with the refusal's stable code.
    VoteRefused(&'static str),
}

/// The states counted as a proposal's outcomes. `rolled_back` is reached
/// on the way to the verification outcomes, so it counts every rollback
/// that was carried out.
pub const OUTCOMES: [State; 9] = [
    State::RolledBack,
    State::Verified,
    State::VerificationFailed,
    State::Unverified,
    State::Failed,
    State::Rejected,
    State::Expired,
    State::Cancelled,
    State::Superseded,
];

/// What the observations of the events from `new_from` on are, given the
/// whole timeline up to them. `observe(t, 0)` is everything the timeline
/// shows; `observe(t, n)` what its events after the first `n` added.
pub fn observe(timeline: &[TimelineEvent], new_from: usize) -> Vec<Observation> {
    let mut out = Vec::new();
    let mut detected: Option<DateTime<Utc>> = None;
    let mut incident: Option<DateTime<Utc>> = None;
    let mut alerted = false;
    let mut resolved = false;
    let mut execution: Option<DateTime<Utc>> = None;
    let secs = |from: Option<DateTime<Utc>>, to: DateTime<Utc>| {
        from.map(|f| ((to - f).num_milliseconds().max(0)) as f64 / 1000.0)
    };
    for (i, e) in timeline.iter().enumerate() {
        let mut seen = Vec::new();
        match &e.kind {
            EventKind::Detected { alert } if !alerted => {
                alerted = true;
                detected = Some(e.at);
                incident = Some(alert.starts_at.min(e.at));
            }
            EventKind::Proposed { .. } => {
                detected.get_or_insert(e.at);
                incident.get_or_insert(e.at);
                seen.push(Observation::Opened);
            }
            EventKind::ExecutionStarted => execution = Some(e.at),
            EventKind::Resolved { .. } if alerted && !resolved => {
                resolved = true;
                seen.extend(secs(incident, e.at).map(Observation::TimeToResolve));
            }
            EventKind::VoteRefused { refusal, .. } => {
                seen.push(Observation::VoteRefused(refusal.code()));
            }
            EventKind::StateChanged { to, .. } => {
                match to {
                    State::Approved => {
                        seen.extend(secs(detected, e.at).map(Observation::TimeToDecision));
                    }
                    State::RolledBack => {
                        seen.extend(secs(incident, e.at).map(Observation::TimeToMitigate));
                    }
                    State::Verified if !alerted && !resolved => {
                        resolved = true;
                        seen.extend(secs(incident, e.at).map(Observation::TimeToResolve));
                    }
                    _ => {}
                }
                if matches!(to, State::RolledBack | State::Failed)
                    || (*to == State::Superseded && execution.is_some())
                {
                    seen.extend(secs(execution.take(), e.at).map(Observation::RollbackDuration));
                }
                if OUTCOMES.contains(to) {
                    seen.push(Observation::Outcome(*to));
                }
            }
            _ => {}
        }
        if i >= new_from {
            out.extend(seen);
        }
    }
    out
}

/// A proposal's measures in one place, for `/rollback stats` and the
/// incident report (seconds; `None` when the timeline has not got there).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measures {
    pub time_to_decision: Option<f64>,
    pub time_to_mitigate: Option<f64>,
    pub time_to_resolve: Option<f64>,
    pub rollback_duration: Option<f64>,
    pub rolled_back: bool,
    pub verification_failed: bool,
}

impl Measures {
    /// Everything `timeline` shows.
    pub fn of(timeline: &[TimelineEvent]) -> Self {
        let mut m = Measures::default();
        for o in observe(timeline, 0) {
            match o {
                Observation::TimeToDecision(s) => m.time_to_decision = Some(s),
                Observation::TimeToMitigate(s) => m.time_to_mitigate = Some(s),
                Observation::TimeToResolve(s) => m.time_to_resolve = Some(s),
                Observation::RollbackDuration(s) => m.rollback_duration = Some(s),
                Observation::Outcome(State::RolledBack) => m.rolled_back = true,
                Observation::Outcome(State::VerificationFailed) => m.verification_failed = true,
                _ => {}
            }
        }
        m
    }
}

/// The value below which `q` (0..=1) of `values` lie, by the nearest-rank
/// method (an observed value, never an interpolation); `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::domain::approval::Refusal;
    use crate::domain::ids::UserId;
    use crate::domain::proposal::AlertRef;

    fn at(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 14, 30, 0).unwrap() + Duration::minutes(min)
    }

    fn ev(seq: u64, min: i64, kind: EventKind) -> TimelineEvent {
        TimelineEvent {
            seq,
            at: at(min),
            kind,
        }
    }

    fn changed(from: State, to: State) -> EventKind {
        EventKind::StateChanged { from, to }
    }

    /// The reference incident: the alert started at 14:25, arrived 14:30,
    /// decided 14:35, rolled back 14:37–14:40, verified 14:45, cleared 15:00.
    fn reference() -> Vec<TimelineEvent> {
        let alert = AlertRef {
            source: "alertmanager".into(),
            name: "PaymentSuccessLow".into(),
            fingerprint: "f1".into(),
            summary: None,
            starts_at: at(-5),
            ends_at: None,
            links: vec![],
            labels: Default::default(),
        };
        let user = UserId::parse("slack:U1").unwrap();
        vec![
            ev(0, 0, EventKind::Detected { alert }),
            ev(
                1,
                0,
                EventKind::Proposed {
                    by: user.clone(),
                    reason: "r".into(),
                },
            ),
            ev(
                2,
                3,
                EventKind::VoteRefused {
                    user,
                    refusal: Refusal::SelfApproval,
                },
            ),
            ev(3, 5, changed(State::Proposed, State::Approved)),
            ev(4, 7, changed(State::Approved, State::Executing)),
            ev(5, 7, EventKind::ExecutionStarted),
            ev(6, 10, changed(State::Executing, State::RolledBack)),
            ev(7, 15, changed(State::RolledBack, State::Verified)),
            ev(
                8,
                30,
                EventKind::Resolved {
                    fingerprint: "f1".into(),
                    ends_at: at(30),
                },
            ),
            ev(
                9,
                31,
                EventKind::Resolved {
                    fingerprint: "f2".into(),
                    ends_at: at(31),
                },
            ),
        ]
    }

    #[test]
    fn the_reference_incident_measures_as_the_runbook_tells_it() {
        let m = Measures::of(&reference());
        assert_eq!(m.time_to_decision, Some(300.0));
        assert_eq!(m.time_to_mitigate, Some(900.0));
        assert_eq!(m.time_to_resolve, Some(2100.0));
        assert_eq!(m.rollback_duration, Some(180.0));
        assert!(m.rolled_back && !m.verification_failed);
    }

    #[test]
    fn observing_in_pieces_equals_observing_at_once() {
        let t = reference();
        let whole = observe(&t, 0);
        let mut pieces = Vec::new();
        for n in 1..=t.len() {
            pieces.extend(observe(&t[..n], n - 1));
        }
        assert_eq!(pieces, whole);
        assert_eq!(
            whole
                .iter()
                .filter(|o| matches!(o, Observation::Outcome(_)))
                .count(),
            2,
            "rolled_back and verified: {whole:?}"
        );
        assert!(whole.contains(&Observation::VoteRefused("self_approval")));
        assert!(whole.contains(&Observation::Opened));
    }

    #[test]
    fn a_manual_proposal_resolves_when_verified_and_a_failure_still_has_a_duration() {
        let user = UserId::parse("slack:U1").unwrap();
        let proposed = ev(
            0,
            0,
            EventKind::Proposed {
                by: user,
                reason: "r".into(),
            },
        );
        let mut t = vec![
            proposed,
            ev(1, 2, changed(State::Proposed, State::Approved)),
            ev(2, 2, EventKind::ExecutionStarted),
            ev(3, 6, changed(State::Executing, State::Failed)),
        ];
        let m = Measures::of(&t);
        assert_eq!(m.time_to_decision, Some(120.0));
        assert_eq!(m.rollback_duration, Some(240.0));
        assert_eq!(m.time_to_mitigate, None);
        assert_eq!(m.time_to_resolve, None);
        t[3] = ev(3, 6, changed(State::Executing, State::RolledBack));
        t.push(ev(4, 8, changed(State::RolledBack, State::Verified)));
        assert_eq!(Measures::of(&t).time_to_resolve, Some(480.0));
    }

    #[test]
    fn quantiles_are_observed_values() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        let tens: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile(&tens, 0.9), Some(9.0));
        assert_eq!(quantile(&tens, 1.0), Some(10.0));
        assert_eq!(quantile(&[5.0], 0.9), Some(5.0));
    }
}
