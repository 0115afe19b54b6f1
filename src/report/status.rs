//! The customer-facing status update the runbooks draft after a rollback
//! (status, time, duration of degradation, what happened, current status,
//! data loss, next steps), from the proposal and its timeline, in the
//! service's locale. People copy it from the thread; HTTP runbook steps
//! send it to a status page or a change-request system as `{status_update}`.

use chrono::{DateTime, Utc};

use super::{Milestones, version};
use crate::domain::{Proposal, State, TimelineEvent};
use crate::templates::{TemplateError, Templates};

/// Where an incident stands, in status-page words.
fn status_of(state: State) -> &'static str {
    match state {
        State::Verified => "resolved",
        State::RolledBack | State::Unverified => "monitoring",
        State::Approved | State::Executing => "identified",
        _ => "investigating",
    }
}

/// Drafts the status update of `p` as plain text, at `now`.
///
/// # Errors
/// A catalogue entry that fails to render.
pub fn status_update(
    t: &Templates,
    p: &Proposal,
    timeline: &[TimelineEvent],
    now: DateTime<Utc>,
) -> Result<String, TemplateError> {
    let locale = p.locale.as_str();
    let m = Milestones::of(p, timeline);
    let start = m.start().unwrap_or(p.created_at);
    let end = m.resolved;
    let minutes = ((end.unwrap_or(now) - start).num_seconds().max(0) + 59) / 60;
    let time = |at: DateTime<Utc>| at.format("%Y-%m-%d %H:%M UTC").to_string();
    let text =
        |key: &str, args: minijinja::Value| t.text(locale, &format!("status_update.{key}"), args);
    let status = text(
        &format!("status.{}", status_of(p.state)),
        minijinja::context! {},
    )?;
    let lines = [
        text(
            "heading",
            minijinja::context! { service => p.service.as_str(), status => status },
        )?,
        text(
            "time",
            minijinja::context! { start => time(start), end => end.map(time) },
        )?,
        text("degradation", minijinja::context! { minutes => minutes })?,
        text(
            "what",
            minijinja::context! {
                reason => p.reason.clone(),
                service => p.service.as_str(),
                old => version(t, locale, &p.plan.current)?,
                new => version(t, locale, &p.plan.target)?,
            },
        )?,
        text(
            &format!("current.{}", status_of(p.state)),
            minijinja::context! { service => p.service.as_str() },
        )?,
        text(
            if p.plan.migrations {
                "data_loss_migrations"
            } else {
                "data_loss_none"
            },
            minijinja::context! {},
        )?,
        text(
            if p.state == State::Verified {
                "next_resolved"
            } else {
                "next_ongoing"
            },
            minijinja::context! {},
        )?,
    ];
    Ok(lines.join("\n"))
}
