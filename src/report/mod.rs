//! After the rollback: the resolved notice, the draft incident report and
//! its chart, all rendered from the proposal and its recorded timeline
//! (never from memory), in the proposal's locale.
//!
//! - [`draft`] turns a proposal, its timeline and the verifier's
//!   [`Evidence`] into [`Draft`]: Markdown following RUNBOOKS.md's report
//!   structure (timeline with times, durations, impact, trigger conditions,
//!   a verification table with before/after values, and sections left for
//!   people to fill), plus a PNG chart when there is a metric series;
//!   [`draft_compared`] adds the comparison with the service's last drills
//!   ([`DrillComparison`]).
//! - [`render_note`], [`render_proposal`] and [`render_private`] are the
//!   plain-text layouts (`templates/text/`) of every message, for the
//!   console and any chat adapter without a richer layout. The resolved
//!   notice needs the proposal and its note alone ([`impact`],
//!   [`first_check`]).
//! - [`status_update`] drafts the customer-facing status update (in the
//!   report, and for runbook HTTP steps); [`step_rows`] lists the report's
//!   steps and hooks with their durations.
//! - [`attachments`] names the report's files, as a drill's or an
//!   incident's.
//! - [`chart_png`] (in `chart`) draws the metric with markers at alert
//!   start, approval, rollback complete and resolution.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{EventKind, Origin, Proposal, ResumeStep, State, TimelineEvent, VoteKind};
use crate::ports::{CheckResult, Evidence, IncidentWindow, PrivateNote, ThreadNote};
use crate::templates::{TemplateError, Templates};

mod chart;
mod status;
mod steps;

pub use chart::{CHART_SIZE, chart_png};
pub use status::status_update;
pub use steps::{StepRow, step_rows};

/// A report problem, saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("drawing the chart failed: {0}")]
    Chart(String),
}

/// The process-wide templates, compiled on first use. `rollbot serve` and
/// `check-config` call this at start-up, so a broken template stops them
/// there rather than during an incident.
///
/// # Errors
/// The first broken or missing template.
pub fn templates() -> Result<&'static Templates, &'static TemplateError> {
    shared().map(|t| &**t)
}

/// The same process-wide templates, for adapters that keep a handle.
///
/// # Errors
/// As [`templates`].
pub fn shared_templates() -> Result<std::sync::Arc<Templates>, &'static TemplateError> {
    shared().cloned()
}

fn shared() -> Result<&'static std::sync::Arc<Templates>, &'static TemplateError> {
    static T: OnceLock<Result<std::sync::Arc<Templates>, TemplateError>> = OnceLock::new();
    T.get_or_init(|| Templates::load().map(std::sync::Arc::new))
        .as_ref()
}

/// The drafted report.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub markdown: String,
    pub chart_png: Option<Vec<u8>>,
}

/// Milestones of the incident, read off the timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Milestones {
    /// When the first alert says the problem started.
    pub alert_start: Option<DateTime<Utc>>,
    pub proposed: Option<DateTime<Utc>>,
    pub approved: Option<DateTime<Utc>>,
    pub started: Option<DateTime<Utc>>,
    pub completed: Option<DateTime<Utc>>,
    pub verified: Option<DateTime<Utc>>,
    pub resolved: Option<DateTime<Utc>>,
}

impl Milestones {
    /// Reads the milestones of `p` from its timeline.
    pub fn of(p: &Proposal, timeline: &[TimelineEvent]) -> Self {
        let mut m = Milestones {
            alert_start: p.alerts.iter().map(|a| a.starts_at).min(),
            ..Default::default()
        };
        for e in timeline {
            let at = Some(e.at);
            match &e.kind {
                EventKind::Proposed { .. } => m.proposed = m.proposed.or(at),
                EventKind::StateChanged {
                    to: State::Approved,
                    ..
                } => m.approved = at,
                EventKind::ExecutionStarted => m.started = at,
                EventKind::ExecutionFinished { ok: true, .. } => m.completed = at,
                EventKind::StateChanged {
                    to: State::Verified | State::VerificationFailed | State::Unverified,
                    ..
                } => m.verified = at,
                _ => {}
            }
        }
        m.resolved = resolution(p, m.verified);
        m
    }

    /// Where the incident starts: the alert, or the proposal if none.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.alert_start.or(self.proposed)
    }

    /// The incident window the verifier is asked about.
    pub fn window(&self, now: DateTime<Utc>) -> IncidentWindow {
        let start = self.start().unwrap_or(now);
        IncidentWindow {
            start,
            before: self.started.or(self.approved).unwrap_or(start),
            end: self.resolved.or(self.verified).unwrap_or(now),
        }
    }
}

/// When the incident counts as resolved: the alert cleared, or, for a
/// manual proposal, verification passed.
fn resolution(p: &Proposal, verified: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (p.alert_resolved_at, p.origin) {
        (Some(at), _) => Some(at),
        (None, Origin::Command | Origin::Drill) if p.state == State::Verified => verified,
        _ => None,
    }
}

/// Whether the report is due: verification is over and the incident is
/// resolved (alert cleared) or the proposal was manual.
pub fn report_due(p: &Proposal) -> bool {
    matches!(
        p.state,
        State::Verified | State::VerificationFailed | State::Unverified
    ) && (p.alert_resolved_at.is_some() || p.origin != Origin::Alert)
}

#[derive(Serialize)]
struct TimelineRow {
    at: DateTime<Utc>,
    what: &'static str,
    who: Option<String>,
    detail: Option<String>,
}

#[derive(Serialize)]
struct CheckRow {
    name: String,
    condition: Option<String>,
    before: Option<String>,
    after: Option<String>,
    passed: bool,
}

#[derive(Serialize)]
struct AlertRow {
    name: String,
    source: String,
    summary: Option<String>,
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct Durations {
    decision: Option<i64>,
    mitigate: Option<i64>,
    total: Option<i64>,
}

#[derive(Serialize)]
struct ReportContext<'a> {
    p: &'a Proposal,
    old: String,
    new: String,
    approvers: Vec<String>,
    alerts: Vec<AlertRow>,
    timeline: Vec<TimelineRow>,
    milestones: Milestones,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    durations: Durations,
    impact_seconds: Option<i64>,
    checks: Vec<CheckRow>,
    notes: &'a [String],
    chart: bool,
    chart_name: Option<&'a str>,
    /// The rollout's steps and hooks with their durations.
    steps: Vec<StepRow>,
    /// The customer-facing status update, for people to copy.
    status_update: String,
    /// This incident beside the service's last drills, when it had any.
    drills: Option<&'a DrillComparison>,
}

/// How many of a service's latest drills the report compares with.
pub const COMPARED_DRILLS: usize = 5;

/// The report's drill comparison: this incident's time to decision and
/// to mitigate beside the medians of the service's last drills (whole
/// seconds, measured alike by [`crate::domain::measures`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DrillComparison {
    /// Drills compared (at most [`COMPARED_DRILLS`]), and when the latest
    /// of them was opened.
    pub drills: usize,
    pub last_at: Option<DateTime<Utc>>,
    pub decision: Option<i64>,
    pub mitigate: Option<i64>,
    pub drill_decision: Option<i64>,
    pub drill_mitigate: Option<i64>,
}

impl DrillComparison {
    /// `incident`'s timeline beside `drills` (each opened at a time, with
    /// its timeline), of which the latest [`COMPARED_DRILLS`] count;
    /// `None` without drills.
    pub fn of(
        incident: &[TimelineEvent],
        drills: &[(DateTime<Utc>, Vec<TimelineEvent>)],
    ) -> Option<Self> {
        use crate::domain::measures::{Measures, quantile};
        let mut latest: Vec<_> = drills.iter().collect();
        latest.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        latest.truncate(COMPARED_DRILLS);
        let first = latest.first()?;
        let measured: Vec<Measures> = latest.iter().map(|(_, t)| Measures::of(t)).collect();
        let median = |f: fn(&Measures) -> Option<f64>| {
            let v: Vec<f64> = measured.iter().filter_map(f).collect();
            quantile(&v, 0.5).map(|s| s.round() as i64)
        };
        let this = Measures::of(incident);
        Some(Self {
            drills: latest.len(),
            last_at: Some(first.0),
            decision: this.time_to_decision.map(|s| s.round() as i64),
            mitigate: this.time_to_mitigate.map(|s| s.round() as i64),
            drill_decision: median(|m| m.time_to_decision),
            drill_mitigate: median(|m| m.time_to_mitigate),
        })
    }
}

/// A revision in words, e.g. `payment-api:v1.2.0 (revision 2)`, in `locale`;
/// only the images for a kind without revision numbers (revision 0).
///
/// # Errors
/// A catalogue entry that fails to render.
pub fn version(
    t: &Templates,
    locale: &str,
    rev: &crate::domain::RevisionInfo,
) -> Result<String, TemplateError> {
    let list: Vec<_> = rev.images.iter().map(|i| i.image.as_str()).collect();
    // Revision 0: the target kind has no revision numbers (a Swarm
    // service keeps only its previous spec); its images name it.
    if rev.revision == 0 && !list.is_empty() {
        return Ok(list.join(", "));
    }
    if list.is_empty() {
        t.text(
            locale,
            "revision.bare",
            minijinja::context! { revision => rev.revision },
        )
    } else {
        t.text(
            locale,
            "revision.version",
            minijinja::context! { images => list.join(", "), revision => rev.revision },
        )
    }
}

fn seconds(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<i64> {
    Some((b? - a?).num_seconds().max(0))
}

fn timeline_rows(p: &Proposal, timeline: &[TimelineEvent], m: &Milestones) -> Vec<TimelineRow> {
    let mut rows = Vec::new();
    for a in &p.alerts {
        rows.push(TimelineRow {
            at: a.starts_at,
            what: "alert_started",
            who: None,
            detail: Some(a.summary.clone().unwrap_or_else(|| a.name.clone())),
        });
    }
    for e in timeline {
        let (what, who, detail) = match &e.kind {
            EventKind::Detected { alert } => ("detected", None, Some(alert.name.clone())),
            EventKind::Proposed { by, reason } => {
                ("proposed", Some(by.to_string()), Some(reason.clone()))
            }
            EventKind::Voted { user, vote, .. } => (
                match vote {
                    VoteKind::Approve => "voted_approve",
                    VoteKind::Reject => "voted_reject",
                },
                Some(user.to_string()),
                None,
            ),
            EventKind::StateChanged { to, .. } => match to {
                State::Approved => ("approved", None, None),
                State::Verified => ("verified", None, None),
                State::VerificationFailed => ("verification_failed", None, None),
                State::Unverified => ("unverified", None, None),
                State::Failed => ("failed", None, None),
                State::Rejected | State::Expired | State::Cancelled | State::Superseded => {
                    ("closed", None, Some(to.to_string()))
                }
                _ => continue,
            },
            EventKind::ExecutionStarted => ("started", None, None),
            EventKind::ExecutionFinished { ok: true, detail } => {
                ("completed", None, Some(detail.clone()))
            }
            EventKind::Resolved { .. } => ("alert_resolved", None, None),
            EventKind::Restarted { .. } => ("restarted", None, None),
            EventKind::Resumed { step } => (
                match step {
                    ResumeStep::Apply => "resumed_apply",
                    ResumeStep::Follow => "resumed_follow",
                    ResumeStep::Verify => "resumed_verify",
                    ResumeStep::BeforeHooks => "resumed_before_hooks",
                    ResumeStep::AfterHooks => "resumed_after_hooks",
                    ResumeStep::Report => "resumed_report",
                },
                None,
                None,
            ),
            _ => continue,
        };
        // The alert's own end time is the resolution, not when we heard of it.
        let at = match &e.kind {
            EventKind::Resolved { ends_at, .. } => *ends_at,
            _ => e.at,
        };
        rows.push(TimelineRow {
            at,
            what,
            who,
            detail,
        });
    }
    if p.alert_resolved_at.is_none()
        && let Some(at) = m.resolved
    {
        rows.push(TimelineRow {
            at,
            what: "resolved",
            who: None,
            detail: None,
        });
    }
    rows.sort_by_key(|r| r.at);
    rows
}

/// The verification table: each check's condition, the value before the
/// rollback (from the evidence) and the last value recorded after it.
fn check_rows(timeline: &[TimelineEvent], evidence: &Evidence) -> Vec<CheckRow> {
    let mut rows: Vec<CheckRow> = evidence
        .checks
        .iter()
        .map(|c| CheckRow {
            name: c.name.clone(),
            condition: Some(c.condition.clone()),
            before: c.before.clone(),
            after: None,
            passed: false,
        })
        .collect();
    for e in timeline {
        if let EventKind::Check {
            name,
            passed,
            value,
        } = &e.kind
        {
            let row = match rows.iter().position(|r| &r.name == name) {
                Some(i) => &mut rows[i],
                None => {
                    rows.push(CheckRow {
                        name: name.clone(),
                        condition: None,
                        before: None,
                        after: None,
                        passed: false,
                    });
                    rows.last_mut().expect("just pushed")
                }
            };
            row.after = Some(value.clone());
            row.passed = *passed;
        }
    }
    rows
}

/// Drafts the incident report of `p` in `locale`.
///
/// # Errors
/// A template that fails to render (a bug caught by the template tests).
/// A chart that cannot be drawn leaves the chart out and says so.
pub fn draft(
    t: &Templates,
    p: &Proposal,
    timeline: &[TimelineEvent],
    evidence: &Evidence,
    locale: &str,
) -> Result<Draft, ReportError> {
    draft_compared(t, p, timeline, evidence, None, locale)
}

/// [`draft`] with the drill comparison section, when `drills` is given.
///
/// # Errors
/// As [`draft`].
pub fn draft_compared(
    t: &Templates,
    p: &Proposal,
    timeline: &[TimelineEvent],
    evidence: &Evidence,
    drills: Option<&DrillComparison>,
    locale: &str,
) -> Result<Draft, ReportError> {
    let m = Milestones::of(p, timeline);
    let mut notes = evidence.notes.clone();
    let chart_png = match &evidence.series {
        Some(s) if !s.points.is_empty() => match chart_png(s, &m) {
            Ok(png) => Some(png),
            Err(e) => {
                tracing::warn!(proposal = %p.id, error = %e, "chart left out of the report");
                notes.push(e.to_string());
                None
            }
        },
        _ => None,
    };
    let start = m.start();
    let end = m.resolved;
    let ctx = ReportContext {
        p,
        old: version(t, locale, &p.plan.current)?,
        new: version(t, locale, &p.plan.target)?,
        approvers: p.approvers().map(ToString::to_string).collect(),
        alerts: p
            .alerts
            .iter()
            .map(|a| AlertRow {
                name: a.name.clone(),
                source: a.source.clone(),
                summary: a.summary.clone(),
                starts_at: a.starts_at,
                ends_at: a.ends_at,
            })
            .collect(),
        timeline: timeline_rows(p, timeline, &m),
        durations: Durations {
            decision: seconds(start, m.approved),
            mitigate: seconds(start, m.completed),
            total: seconds(start, m.resolved),
        },
        impact_seconds: seconds(start, end),
        start,
        end,
        milestones: m,
        checks: check_rows(timeline, evidence),
        notes: &notes,
        chart: chart_png.is_some(),
        chart_name: evidence.series.as_ref().map(|s| s.name.as_str()),
        steps: step_rows(timeline),
        status_update: status_update(
            t,
            p,
            timeline,
            timeline.last().map_or(p.updated_at, |e| e.at),
        )?,
        drills,
    };
    let markdown = t.render(locale, "markdown/report.md", &ctx)?;
    Ok(Draft {
        markdown,
        chart_png,
    })
}

#[derive(Serialize)]
struct NoteContext<'a> {
    p: &'a Proposal,
    note: &'a ThreadNote,
    old: String,
    new: String,
    approvers: Vec<String>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    impact_seconds: i64,
}

/// The impact window the resolved notice shows: from the first alert's
/// start (or the proposal) to the alert's resolution (or, for a manual
/// proposal, its last update — verification), and its length in seconds.
pub fn impact(p: &Proposal) -> (DateTime<Utc>, DateTime<Utc>, i64) {
    let start = p
        .alerts
        .iter()
        .map(|a| a.starts_at)
        .min()
        .unwrap_or(p.created_at);
    let end = p.alert_resolved_at.unwrap_or(p.updated_at);
    (start, end, (end - start).num_seconds().max(0))
}

/// The current value of the first verification check on `timeline`: the
/// check recorded first, with the last value recorded for it. The resolved
/// notice shows it, as the runbooks' `[RESOLVED]` message does.
pub fn first_check(timeline: &[TimelineEvent]) -> Option<CheckResult> {
    let mut first: Option<CheckResult> = None;
    for e in timeline {
        if let EventKind::Check {
            name,
            passed,
            value,
        } = &e.kind
            && first.as_ref().is_none_or(|c| &c.name == name)
        {
            first = Some(CheckResult {
                name: name.clone(),
                passed: *passed,
                value: value.clone(),
            });
        }
    }
    first
}

/// Plain-text rendering of a thread note in `p`'s locale, usable by any
/// chat (`templates/text/thread.txt.j2`). The resolved notice needs only
/// the proposal and the note (see [`impact`]); the report note is its
/// Markdown.
///
/// # Errors
/// A template that fails to render.
pub fn render_note(t: &Templates, p: &Proposal, note: &ThreadNote) -> Result<String, ReportError> {
    if let ThreadNote::Report { markdown, .. } = note {
        return Ok(markdown.clone());
    }
    let (start, end, impact_seconds) = impact(p);
    let ctx = NoteContext {
        p,
        note,
        old: version(t, &p.locale, &p.plan.current)?,
        new: version(t, &p.locale, &p.plan.target)?,
        approvers: p.approvers().map(ToString::to_string).collect(),
        start,
        end,
        impact_seconds,
    };
    Ok(t.render(&p.locale, "text/thread.txt", &ctx)?)
}

/// Plain-text rendering of what one person alone is told about `p`, in
/// its locale (`templates/text/private.txt.j2`); a drill's notes say so.
///
/// # Errors
/// A template that fails to render.
pub fn render_private(
    t: &Templates,
    p: &Proposal,
    note: &PrivateNote,
) -> Result<String, TemplateError> {
    t.render(
        &p.locale,
        "text/private.txt",
        minijinja::context! {
            id => p.id.as_str(),
            drill => p.drill,
            note => minijinja::Value::from(minijinja::value::Serde(note)),
        },
    )
}

/// The names and titles under which the report and its chart are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachments {
    pub report_file: String,
    pub report_title: String,
    pub chart_file: String,
    pub chart_title: String,
}

/// Where the report of `p` goes: a drill's files are named and titled as a
/// drill's, so nobody mistakes one for a real incident's.
///
/// # Errors
/// A catalogue entry that fails to render.
pub fn attachments(t: &Templates, p: &Proposal) -> Result<Attachments, TemplateError> {
    let kind = if p.drill { "drill" } else { "incident" };
    let mark = if p.drill {
        format!("[{}] ", t.text(&p.locale, "drill.tag", ())?)
    } else {
        String::new()
    };
    let id = minijinja::context! { id => p.id.as_str() };
    Ok(Attachments {
        report_file: format!("{kind}-report-{}.md", p.id),
        report_title: format!("{mark}{}", t.text(&p.locale, "report.upload_title", &id)?),
        chart_file: format!("{kind}-chart-{}.png", p.id),
        chart_title: format!("{mark}{}", t.text(&p.locale, "report.chart_title", &id)?),
    })
}

#[derive(Serialize)]
struct ProposalContext<'a> {
    p: &'a Proposal,
    old: String,
    new: String,
    approvers: Vec<String>,
}

/// Plain-text rendering of the proposal message in `p`'s locale: the
/// console transcript and the text fallback of richer chat messages.
///
/// # Errors
/// A template that fails to render.
pub fn render_proposal(t: &Templates, p: &Proposal) -> Result<String, ReportError> {
    render_proposal_part(t, p, "text/proposal.txt")
}

/// The proposal's votes and status lines alone (the end of
/// [`render_proposal`]), for transcripts that show updates compactly.
///
/// # Errors
/// A template that fails to render.
pub fn render_status_line(t: &Templates, p: &Proposal) -> Result<String, ReportError> {
    render_proposal_part(t, p, "text/status_line.txt")
}

fn render_proposal_part(t: &Templates, p: &Proposal, name: &str) -> Result<String, ReportError> {
    let ctx = ProposalContext {
        p,
        old: version(t, &p.locale, &p.plan.current)?,
        new: version(t, &p.locale, &p.plan.target)?,
        approvers: p.approvers().map(ToString::to_string).collect(),
    };
    Ok(t.render(&p.locale, name, &ctx)?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::TimeZone;

    use super::*;
    use crate::config::LOCALES;
    use crate::domain::{
        AlertRef, ContainerImage, Plan, ProposalId, RevisionInfo, ServiceName, UserId, Vote,
        VoteVia,
    };
    use crate::ports::{CheckEvidence, CheckResult};

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 14, h, m, 0).unwrap()
    }

    fn proposal() -> Proposal {
        let rev = |revision, tag: &str| RevisionInfo {
            revision,
            images: vec![ContainerImage {
                container: "payment-api".into(),
                image: format!("payment-api:{tag}"),
            }],
            change_cause: None,
        };
        let alert = AlertRef {
            source: "alertmanager".into(),
            name: "PaymentSuccessRateLow".into(),
            fingerprint: "f1".into(),
            summary: Some("payment success rate < 98% for 5 minutes".into()),
            starts_at: at(14, 30),
            ends_at: None,
            links: vec![],
            labels: Default::default(),
        };
        let vote = |u: &str, t| Vote {
            user: UserId::parse(u).unwrap(),
            via: VoteVia::Reaction,
            at: t,
        };
        Proposal {
            id: ProposalId::parse("RB-7K3M9Q").unwrap(),
            service: ServiceName::parse("payment-api").unwrap(),
            origin: Origin::Alert,
            proposer: UserId::parse("slack:UROLLBOT").unwrap(),
            reason: "payment success rate 95%".into(),
            plan: Plan {
                workload: "deployment production/prod-payment-deploy".into(),
                current: rev(3, "v1.3.0"),
                target: rev(2, "v1.2.0"),
                warnings: vec![],
                migrations: true,
                blockers: vec![],
                guard: serde_json::Value::Null,
            },
            created_at: at(14, 31),
            expires_at: at(15, 1),
            state: State::Verified,
            required: 2,
            single_approver: false,
            approvals: vec![
                vote("slack:UALICE", at(14, 33)),
                vote("slack:UBOB", at(14, 35)),
            ],
            rejected_by: None,
            messages: vec![],
            alerts: vec![alert],
            extra_alerts: 2,
            alert_resolved_at: Some(at(15, 0)),
            recommendation: None,
            timeline_len: 0,
            updated_at: at(15, 0),
            drill: true,
            no_checks: false,
            locale: "en".into(),
        }
    }

    fn notes() -> Vec<ThreadNote> {
        let check = |passed| CheckResult {
            name: "success rate".into(),
            passed,
            value: "99.7".into(),
        };
        vec![
            ThreadNote::ExecutionStarted,
            ThreadNote::Progress {
                line: "Waiting for deployment rollout to finish: 1 of 3 updated replicas are available...".into(),
            },
            ThreadNote::ExecutionFinished {
                ok: true,
                detail: "successfully rolled out".into(),
            },
            ThreadNote::ExecutionFinished {
                ok: false,
                detail: "progress deadline exceeded".into(),
            },
            ThreadNote::Superseded {
                reason: "the deployment moved to revision 4".into(),
            },
            ThreadNote::Verification {
                passed: true,
                checks: vec![check(true)],
            },
            ThreadNote::Verification {
                passed: false,
                checks: vec![check(false)],
            },
            ThreadNote::Resumed {
                step: crate::domain::ResumeStep::Apply,
            },
            ThreadNote::Resumed {
                step: crate::domain::ResumeStep::Follow,
            },
            ThreadNote::Resumed {
                step: crate::domain::ResumeStep::Verify,
            },
            ThreadNote::Unverified {
                checks: vec![check(false)],
                unreachable: vec![crate::ports::UnreachableSource {
                    check: "success rate".into(),
                    source: "Prometheus at http://prometheus:9090".into(),
                    error: "Connection refused (os error 111)".into(),
                }],
            },
            ThreadNote::ExecutionFailed {
                error: crate::ports::ExecError::new(
                    crate::ports::ExecErrorKind::Forbidden,
                    "deployments.apps \"prod-payment-deploy\" is forbidden: User \"rollbot\" cannot patch",
                ),
            },
            ThreadNote::Resumed {
                step: crate::domain::ResumeStep::BeforeHooks,
            },
            ThreadNote::Resumed {
                step: crate::domain::ResumeStep::AfterHooks,
            },
            ThreadNote::Resumed {
                step: crate::domain::ResumeStep::Report,
            },
            ThreadNote::AfterHookFailed {
                failure: "cdn-purge: exit status 1".into(),
            },
            ThreadNote::DrillChecksSkipped,
            ThreadNote::GitopsPaused {
                owner: "Argo CD application argocd/payments".into(),
                workload: "deployment production/prod-payment-deploy".into(),
                version: "payment-api:v1.2.0".into(),
                git: "https://git.example.com/deploy.git, path apps/payments, revision main".into(),
                rolled_back: true,
            },
            ThreadNote::GitopsPaused {
                owner: "Flux Kustomization flux-system/apps".into(),
                workload: "deployment production/prod-payment-deploy".into(),
                version: "payment-api:v1.2.0".into(),
                git: "GitRepository flux-system, path ./apps/production".into(),
                rolled_back: false,
            },
            ThreadNote::Reverted {
                reason: "the current revision moved from 4 to 5; Argo CD application argocd/payments, which manages this workload, put it back to what git holds".into(),
            },
            ThreadNote::ScheduledDrill {
                schedule: "0 2 * * 1".into(),
                timezone: "Asia/Tokyo".into(),
                slot: chrono::Utc.with_ymd_and_hms(2025, 3, 16, 17, 0, 0).unwrap(),
                late: true,
                notify: vec![UserId::parse("slack:UBOB").unwrap()],
            },
            ThreadNote::Resolved {
                check: None,
                status_update: None,
            },
            ThreadNote::Resolved {
                check: Some(check(true)),
                status_update: Some("payment-api: Resolved".into()),
            },
        ]
    }

    /// Renders every template in every locale with a representative
    /// context, and fails if a template exists that this test never renders.
    #[test]
    fn the_proposal_message_in_every_locale() {
        let t = templates().unwrap();
        let mut p = proposal();
        p.state = crate::domain::State::Proposed;
        let out: Vec<String> = LOCALES
            .iter()
            .map(|l| {
                p.locale = l.to_string();
                render_proposal(t, &p).unwrap()
            })
            .collect();
        insta::assert_snapshot!(out.join("\n\n----\n\n"));
    }

    fn ev(min: u32, kind: EventKind) -> TimelineEvent {
        TimelineEvent {
            seq: 0,
            at: at(14, min),
            kind,
        }
    }

    /// Proposed at 14:00, approved at `decided`, rolled back at `done`.
    fn timed(decided: u32, done: u32) -> Vec<TimelineEvent> {
        let changed = |from, to| EventKind::StateChanged { from, to };
        vec![
            ev(
                0,
                EventKind::Proposed {
                    by: UserId::parse("slack:UALICE").unwrap(),
                    reason: "r".into(),
                },
            ),
            ev(decided, changed(State::Proposed, State::Approved)),
            ev(decided, EventKind::ExecutionStarted),
            ev(done, changed(State::Executing, State::RolledBack)),
        ]
    }

    #[test]
    fn the_report_compares_the_incident_with_the_last_drills() {
        assert_eq!(DrillComparison::of(&timed(5, 9), &[]), None);
        // Seven drills: the five latest count (decided after 2..6 minutes,
        // rolled back 3 minutes later), the two oldest (an hour) do not.
        let drills: Vec<_> = (0..7u32)
            .map(|i| {
                let t = if i < 2 {
                    timed(59, 59)
                } else {
                    timed(i, i + 3)
                };
                (at(10, i), t)
            })
            .collect();
        let c = DrillComparison::of(&timed(12, 20), &drills).unwrap();
        assert_eq!(
            c,
            DrillComparison {
                drills: 5,
                last_at: Some(at(10, 6)),
                decision: Some(720),
                mitigate: Some(1200),
                drill_decision: Some(240),
                drill_mitigate: Some(420),
            }
        );
        let t = templates().unwrap();
        let mut sections = Vec::new();
        for locale in LOCALES {
            let mut p = proposal();
            p.locale = locale.to_string();
            let d = draft_compared(t, &p, &[], &Evidence::default(), Some(&c), locale).unwrap();
            // 12 minutes to decide, in the locale's units.
            let twelve = t
                .text(locale, "units.minutes", serde_json::json!({ "n": 12 }))
                .unwrap();
            let cell = format!("| {twelve} |");
            let start = d.markdown.find("## ").unwrap();
            let section: String = d.markdown[start..]
                .split("\n## ")
                .find(|s| s.contains(&cell))
                .expect("the comparison section")
                .to_string();
            sections.push(section);
            let plain = draft(t, &p, &[], &Evidence::default(), locale).unwrap();
            assert!(!plain.markdown.contains(&cell));
        }
        insta::assert_snapshot!(sections.join("\n\n----\n\n"));
    }

    #[test]
    fn every_template_renders_in_every_locale() {
        let t = templates().unwrap();
        let p = proposal();
        let evidence = Evidence {
            checks: vec![CheckEvidence {
                name: "success rate".into(),
                condition: ">= 99.5".into(),
                before: Some("95".into()),
            }],
            series: None,
            notes: vec!["Prometheus was slow".into()],
        };
        for locale in LOCALES {
            let mut p = p.clone();
            p.locale = locale.to_string();
            for note in notes() {
                let text = render_note(t, &p, &note).unwrap();
                assert!(!text.trim().is_empty(), "{locale} {note:?}");
            }
            // With no timeline, no alerts and nothing configured, too.
            for (p, timeline) in [
                (p.clone(), vec![]),
                (
                    Proposal {
                        alerts: vec![],
                        alert_resolved_at: None,
                        origin: Origin::Command,
                        state: State::VerificationFailed,
                        drill: false,
                        ..p.clone()
                    },
                    vec![],
                ),
            ] {
                for ev in [&evidence, &Evidence::default()] {
                    let d = draft(t, &p, &timeline, ev, locale).unwrap();
                    assert!(d.markdown.contains("RB-7K3M9Q"), "{}", d.markdown);
                }
            }
            for state in crate::domain::State::ALL {
                for no_checks in [false, true] {
                    let mut p = p.clone();
                    p.state = state;
                    p.no_checks = no_checks;
                    let text = render_proposal(t, &p).unwrap();
                    assert!(text.contains("RB-7K3M9Q"), "{locale} {state}: {text}");
                    let status = render_status_line(t, &p).unwrap();
                    assert!(text.ends_with(&status), "{locale} {state}: {text}");
                }
            }
            let refusals = [
                crate::domain::Refusal::Closed {
                    state: State::Executing,
                },
                crate::domain::Refusal::Expired,
                crate::domain::Refusal::Bot,
                crate::domain::Refusal::NotAuthorised {
                    service: "payment-api".into(),
                },
                crate::domain::Refusal::SelfApproval,
            ];
            for refusal in refusals {
                let text = render_private(t, &p, &PrivateNote::VoteRefused { refusal }).unwrap();
                assert!(!text.trim().is_empty(), "{locale}");
            }
            let text = render_private(
                t,
                &p,
                &PrivateNote::AlreadyCounted {
                    approvals: 1,
                    required: 2,
                },
            )
            .unwrap();
            assert!(text.contains("RB-7K3M9Q") && text.contains('2'), "{text}");
        }
        // Every layout outside slack/ and discord/ (which have their own
        // snapshot tests with their adapters) is rendered above.
        let all: BTreeSet<String> = t
            .names()
            .into_iter()
            .filter(|n| !n.starts_with("slack/") && !n.starts_with("discord/"))
            .collect();
        let rendered: BTreeSet<String> = [
            "markdown/report.md",
            "text/private.txt",
            "text/proposal.txt",
            "text/status_line.txt",
            "text/thread.txt",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(
            all, rendered,
            "every layout needs a representative render here"
        );
    }

    #[test]
    fn a_manual_proposal_is_resolved_by_passing_verification() {
        let mut p = proposal();
        p.origin = Origin::Command;
        p.alerts.clear();
        p.alert_resolved_at = None;
        assert!(report_due(&p));
        p.state = State::RolledBack;
        assert!(!report_due(&p));
        let mut a = proposal();
        a.alert_resolved_at = None;
        assert!(!report_due(&a), "an alert proposal waits for its alert");
    }
}
