//! Discord messages, from the shared message definitions.
//!
//! Discord shows Markdown, so most messages are the plain-text layouts
//! every chat shares (`templates/text/`): thread notes, private notes. Only
//! where Markdown does not fit is there a Discord layout
//! (`templates/discord/`): the proposal, an embed with Approve/Reject
//! buttons, and the answers to `/rollback`, which Slack lays out as Block
//! Kit. Words always come from the catalogue of the proposal's (or the
//! person's) locale.
//!
//! Every message carries `allowed_mentions: {"parse": []}`: what people
//! typed (a reason, a change cause) and what programs printed can contain
//! `@everyone` or `<@id>`, and must never ping anybody.

use serde_json::{Value, json};

use crate::chat::reply::Reply;
use crate::domain::Proposal;
use crate::ports::{PrivateNote, ThreadNote};
use crate::report::ReportError;
use crate::templates::{TemplateError, Templates};

/// A rendering failure: a template bug, never a person's mistake.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(
        "template discord/{name} rendered invalid JSON: {source}; fix the template (output: {output})"
    )]
    Json {
        name: &'static str,
        output: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Discord's limit on an embed's description.
const EMBED_TEXT_MAX: usize = 4096;
/// Discord's limit on a message's content.
const CONTENT_MAX: usize = 2000;

/// `text` cut to at most `max` characters, marked with `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// A plain message whose content is `text`, mentioning nobody.
pub fn plain(text: &str) -> Value {
    json!({ "content": cut(text, CONTENT_MAX), "allowed_mentions": { "parse": [] } })
}

/// The proposal: an embed with the plain-text proposal and, while votes
/// are open, the Approve and Reject buttons (custom ids
/// `rollbot_approve:RB-…` / `rollbot_reject:RB-…`).
///
/// # Errors
/// A template bug.
pub fn proposal(t: &Templates, p: &Proposal) -> Result<Value, RenderError> {
    let text = crate::report::render_proposal(t, p)?;
    // The first line is the title, which the embed shows as its title.
    let text = text
        .split_once('\n')
        .map_or(text.as_str(), |(_, rest)| rest);
    let out = t.render(
        &p.locale,
        "discord/proposal.json",
        minijinja::context! {
            id => p.id.as_str(),
            service => p.service.as_str(),
            state => minijinja::Value::from(minijinja::value::Serde(p.state)),
            drill => p.drill,
            text => cut(text, EMBED_TEXT_MAX),
        },
    )?;
    serde_json::from_str(&out).map_err(|source| RenderError::Json {
        name: "proposal.json",
        output: out,
        source,
    })
}

/// A message in the proposal's thread (the report note's text only: its
/// files are attached by the adapter).
///
/// # Errors
/// A template bug.
pub fn thread(t: &Templates, p: &Proposal, note: &ThreadNote) -> Result<Value, RenderError> {
    let text = match note {
        // The report itself is attached; the message names it.
        ThreadNote::Report { .. } => format!(
            "📄 {}",
            t.text(
                &p.locale,
                "thread.report",
                minijinja::context! { id => p.id.as_str() }
            )?
        ),
        _ => crate::report::render_note(t, p, note)?,
    };
    Ok(plain(&text))
}

/// What one person alone is told about `p`.
///
/// # Errors
/// A template bug.
pub fn private(t: &Templates, p: &Proposal, note: &PrivateNote) -> Result<Value, RenderError> {
    let text = crate::report::render_private(t, p, note)?;
    Ok(plain(&format!("🔒 {text}")))
}

/// The answer to a `/rollback` command, in `locale`.
///
/// # Errors
/// A template bug.
pub fn reply(t: &Templates, locale: &str, r: &Reply) -> Result<Value, RenderError> {
    let text = t.render(
        locale,
        "discord/reply.md",
        minijinja::context! { r => minijinja::Value::from(minijinja::value::Serde(r)) },
    )?;
    Ok(plain(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_with_a_mark() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        assert_eq!(cut("äöüß", 2), "ä…");
        let long = "x".repeat(5000);
        assert_eq!(
            plain(&long)["content"].as_str().unwrap().chars().count(),
            2000
        );
    }
}
