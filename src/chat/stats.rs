//! `/rollback stats [SERVICE] [--days N]`: the numbers teams steer by over
//! a window — rollbacks, MTTR (median and p90), time to decision,
//! verification failures, and drills with their timings.
//!
//! Read from the stored timelines with the same measures as `/metrics`
//! ([`crate::domain::measures`]), so chat and dashboards agree.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::domain::measures::{Measures, quantile};
use crate::domain::{Proposal, State, TimelineEvent};

/// The facts of one `/rollback stats` answer; seconds are whole seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// The service asked about; all services when `None`.
    pub service: Option<String>,
    pub days: u32,
    /// Real (not drill) proposals opened in the window.
    pub proposals: usize,
    /// Of those, rollbacks carried out.
    pub rollbacks: usize,
    pub failed: usize,
    pub verification_failed: usize,
    pub rejected: usize,
    pub expired: usize,
    /// Time to mitigate (incident start → rolled back).
    pub mttr_median: Option<i64>,
    pub mttr_p90: Option<i64>,
    /// Time to decision (alert or proposal → approved).
    pub decision_median: Option<i64>,
    pub decision_p90: Option<i64>,
    /// Drills opened in the window, and how many nobody answered.
    pub drills: usize,
    pub drills_expired: usize,
    pub drill_decision_median: Option<i64>,
    pub drill_mitigate_median: Option<i64>,
}

/// The stats of `proposals` (each with its timeline) created in the
/// `days` days up to `now`, of `service` or of all.
pub fn summarize(
    proposals: &[(Proposal, Vec<TimelineEvent>)],
    service: Option<&str>,
    days: u32,
    now: DateTime<Utc>,
) -> Stats {
    let since = now - Duration::days(i64::from(days));
    let window = proposals.iter().filter(|(p, _)| {
        p.created_at > since
            && p.created_at <= now
            && service.is_none_or(|s| p.service.as_str() == s)
    });
    let (mut real, mut drills) = (Vec::new(), Vec::new());
    for (p, timeline) in window {
        let m = Measures::of(timeline);
        if p.drill {
            drills.push((p, m));
        } else {
            real.push((p, m));
        }
    }
    let count = |set: &[(&Proposal, Measures)], f: &dyn Fn(&Proposal, &Measures) -> bool| {
        set.iter().filter(|(p, m)| f(p, m)).count()
    };
    let values = |set: &[(&Proposal, Measures)], f: fn(&Measures) -> Option<f64>| {
        set.iter().filter_map(|(_, m)| f(m)).collect::<Vec<f64>>()
    };
    let secs = |v: Option<f64>| v.map(|s| s.round() as i64);
    let mttr = values(&real, |m| m.time_to_mitigate);
    let decision = values(&real, |m| m.time_to_decision);
    Stats {
        service: service.map(str::to_owned),
        days,
        proposals: real.len(),
        rollbacks: count(&real, &|_, m| m.rolled_back),
        failed: count(&real, &|p, _| p.state == State::Failed),
        verification_failed: count(&real, &|_, m| m.verification_failed),
        rejected: count(&real, &|p, _| p.state == State::Rejected),
        expired: count(&real, &|p, _| p.state == State::Expired),
        mttr_median: secs(quantile(&mttr, 0.5)),
        mttr_p90: secs(quantile(&mttr, 0.9)),
        decision_median: secs(quantile(&decision, 0.5)),
        decision_p90: secs(quantile(&decision, 0.9)),
        drills: drills.len(),
        drills_expired: count(&drills, &|p, _| p.state == State::Expired),
        drill_decision_median: secs(quantile(&values(&drills, |m| m.time_to_decision), 0.5)),
        drill_mitigate_median: secs(quantile(&values(&drills, |m| m.time_to_mitigate), 0.5)),
    }
}
