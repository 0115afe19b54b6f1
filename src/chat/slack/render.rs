//! Slack messages: the Slack layouts (`templates/slack/*.json.j2`), worded
//! from the catalogue of the proposal's or service's locale (see
//! [`crate::templates`]).
//!
//! Each layout renders one Block Kit message (`{"text": …, "blocks": […]}`,
//! i.e. slack-morphism's `SlackMessageContent`). minijinja escapes every
//! `{{ … }}` as JSON in `.json` layouts, so layouts never build JSON
//! strings by hand. What people typed (reasons, change causes) and what
//! programs printed is escaped for Slack's mrkdwn here, before it reaches a
//! layout, so nobody can inject a mention or a link into the bot's message.
//! The `text` of every message (what notifications and previews show)
//! carries the drill mark when the proposal is a drill.

use serde::Serialize;
use slack_morphism::prelude::SlackMessageContent;

use crate::domain::{Proposal, State, UserId};
use crate::ports::{PrivateNote, ThreadNote};
use crate::templates::{TemplateError, Templates};

pub use crate::chat::reply::{Reply, Summary};

/// A rendering failure: a template bug, never a person's mistake.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(
        "template slack/{name} rendered invalid Block Kit JSON: {source}; fix the template (output: {output})"
    )]
    Json {
        name: &'static str,
        output: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A rendered message: the JSON as rendered and as slack-morphism content.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub json: serde_json::Value,
    pub content: SlackMessageContent,
}

/// Escapes `&`, `<` and `>` as Slack's mrkdwn requires.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `<@U123>` for Slack users, the plain id for anyone else.
pub fn mention(user: &UserId) -> String {
    match user.as_str().strip_prefix("slack:") {
        Some(id) => format!("<@{id}>"),
        None => escape(user.as_str()),
    }
}

#[derive(Serialize)]
struct RevisionView {
    revision: u64,
    images: String,
    /// The images alone, comma-separated, for kinds without revision numbers.
    plain: String,
    change_cause: Option<String>,
}

#[derive(Serialize)]
struct ProposalView {
    id: String,
    service: String,
    state: State,
    workload: String,
    current: RevisionView,
    target: RevisionView,
    warnings: Vec<String>,
    blockers: Vec<String>,
    advice: Option<&'static str>,
    /// The findings behind the advice (worded under `finding.` in the catalogue).
    because: Vec<crate::domain::decision::Finding>,
    proposer: String,
    from_alert: bool,
    reason: String,
    approvals: usize,
    approvers: String,
    required: u8,
    single_approver: bool,
    expires_at: String,
    rejected_by: Option<String>,
    drill: bool,
    no_checks: bool,
    alert_resolved_at: Option<String>,
    approve_emoji: String,
    reject_emoji: String,
}

fn revision(r: &crate::domain::RevisionInfo) -> RevisionView {
    RevisionView {
        revision: r.revision,
        images: r
            .images
            .iter()
            .map(|i| format!("{}: `{}`", escape(&i.container), escape(&i.image)))
            .collect::<Vec<_>>()
            .join("\n"),
        plain: r
            .images
            .iter()
            .map(|i| format!("`{}`", escape(&i.image)))
            .collect::<Vec<_>>()
            .join(", "),
        change_cause: r.change_cause.as_deref().map(escape),
    }
}

/// The emoji names that vote, shown on the proposal.
#[derive(Debug, Clone)]
pub struct Emoji {
    pub approve: String,
    pub reject: String,
}

fn proposal_view(p: &Proposal, emoji: &Emoji) -> ProposalView {
    ProposalView {
        id: p.id.to_string(),
        service: p.service.to_string(),
        state: p.state,
        workload: escape(&p.plan.workload),
        current: revision(&p.plan.current),
        target: revision(&p.plan.target),
        warnings: p.plan.warnings.iter().map(|w| escape(w)).collect(),
        blockers: p.plan.blockers.iter().map(|w| escape(w)).collect(),
        advice: p.recommendation.as_ref().map(|r| r.advice.as_str()),
        because: p
            .recommendation
            .as_ref()
            .map(|r| r.because.clone())
            .unwrap_or_default(),
        proposer: mention(&p.proposer),
        from_alert: !p.origin.proposer_is_person(),
        reason: escape(&p.reason),
        approvals: p.approvals.len(),
        approvers: p.approvers().map(mention).collect::<Vec<_>>().join(", "),
        required: p.required,
        single_approver: p.single_approver,
        expires_at: p.expires_at.to_rfc3339(),
        rejected_by: p.rejected_by.as_ref().map(mention),
        drill: p.drill,
        no_checks: p.no_checks,
        alert_resolved_at: p.alert_resolved_at.map(|at| at.to_rfc3339()),
        approve_emoji: emoji.approve.clone(),
        reject_emoji: emoji.reject.clone(),
    }
}

fn finish(name: &'static str, output: String) -> Result<Rendered, RenderError> {
    let parse = |s: &str| -> Result<(serde_json::Value, SlackMessageContent), serde_json::Error> {
        let json: serde_json::Value = serde_json::from_str(s)?;
        let content = serde_json::from_value(json.clone())?;
        Ok((json, content))
    };
    match parse(&output) {
        Ok((json, content)) => Ok(Rendered { json, content }),
        Err(source) => Err(RenderError::Json {
            name,
            output,
            source,
        }),
    }
}

/// The proposal message with its buttons (while votes are open).
///
/// # Errors
/// A template bug.
pub fn proposal(t: &Templates, p: &Proposal, emoji: &Emoji) -> Result<Rendered, RenderError> {
    let out = t.render(
        &p.locale,
        "slack/proposal.json",
        minijinja::context! { p => minijinja::Value::from(minijinja::value::Serde(proposal_view(p, emoji))) },
    )?;
    finish("proposal.json", out)
}

/// The facts of the proposal a thread message may name, escaped.
#[derive(Serialize)]
struct ThreadView {
    id: String,
    service: String,
    workload: String,
    reason: String,
    /// The first alert's name, for the resolved notice.
    alert: Option<String>,
    approvers: String,
    drill: bool,
}

/// A message in the proposal's thread.
///
/// # Errors
/// A template bug.
pub fn thread(t: &Templates, p: &Proposal, note: &ThreadNote) -> Result<Rendered, RenderError> {
    let locale = p.locale.as_str();
    let view = ThreadView {
        id: p.id.to_string(),
        service: p.service.to_string(),
        workload: escape(&p.plan.workload),
        reason: escape(&p.reason),
        alert: p.alerts.first().map(|a| escape(&a.name)),
        approvers: p.approvers().map(mention).collect::<Vec<_>>().join(", "),
        drill: p.drill,
    };
    // Everything in a note (progress lines, executor output, check values)
    // comes from outside: escape it all.
    let mut note_json = serde_json::to_value(note).unwrap_or_default();
    escape_strings(&mut note_json);
    // People to ping are mentions, not escaped text.
    if let ThreadNote::ScheduledDrill { notify, .. } = note {
        note_json["notify"] = notify.iter().map(mention).collect();
    }
    let note = note_json;
    let (start, end, impact_seconds) = crate::report::impact(p);
    let out = t.render(
        locale,
        "slack/thread.json",
        minijinja::context! {
            p => minijinja::Value::from(minijinja::value::Serde(view)),
            note => minijinja::Value::from(minijinja::value::Serde(note)),
            old => escape(&crate::report::version(t, locale, &p.plan.current)?),
            new => escape(&crate::report::version(t, locale, &p.plan.target)?),
            start => start.to_rfc3339(),
            end => end.to_rfc3339(),
            impact_seconds => impact_seconds,
        },
    )?;
    finish("thread.json", out)
}

/// What one person alone sees (ephemeral).
///
/// # Errors
/// A template bug.
pub fn private(t: &Templates, p: &Proposal, note: &PrivateNote) -> Result<Rendered, RenderError> {
    let locale = p.locale.as_str();
    let text = crate::report::render_private(t, p, note)?;
    let out = t.render(
        locale,
        "slack/private.json",
        minijinja::context! { text => escape(&text) },
    )?;
    finish("private.json", out)
}

/// Renders a command reply.
///
/// # Errors
/// A template bug.
pub fn reply(t: &Templates, locale: &str, r: &Reply) -> Result<Rendered, RenderError> {
    // Everything in a reply may echo what the person typed: escape it all.
    let mut r = serde_json::to_value(r).unwrap_or_default();
    escape_strings(&mut r);
    let out = t.render(
        locale,
        "slack/reply.json",
        minijinja::context! { r => minijinja::Value::from(minijinja::value::Serde(r)) },
    )?;
    finish("reply.json", out)
}

fn escape_strings(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => *s = escape(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(escape_strings),
        serde_json::Value::Object(o) => o.values_mut().for_each(escape_strings),
        _ => {}
    }
}
