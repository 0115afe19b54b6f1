//! A chat in the terminal: renders the `#incidents` channel as a transcript
//! (the proposal, votes, progress, verification, the resolved notice and the
//! report) for `rollbot demo` and drills run from a shell.
//!
//! It renders the same plain-text templates every chat uses; attachments
//! (the report and its chart) are written to a directory and named in the
//! transcript.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::Utc;

use crate::domain::{MessageRef, Proposal, UserId};
use crate::ports::{Chat, ChatError, PrivateNote, ThreadNote};
use crate::report;

/// Writes the channel to `out`.
pub struct ConsoleChat {
    // A std Mutex: each message is written whole, never across an await.
    out: Mutex<Box<dyn Write + Send>>,
    attachments: PathBuf,
    counter: AtomicUsize,
}

impl ConsoleChat {
    /// A console writing to `out`, saving attachments under `attachments`.
    pub fn new(out: Box<dyn Write + Send>, attachments: PathBuf) -> Self {
        Self {
            out: Mutex::new(out),
            attachments,
            counter: AtomicUsize::new(0),
        }
    }

    /// Prints a line as if `who` had typed it in the channel.
    pub fn said(&self, who: &UserId, text: &str) {
        self.write(&format!("{} {who}: {text}", stamp()), "");
    }

    fn write(&self, head: &str, body: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A closed terminal is not worth failing a rollback over.
        let _ = writeln!(out, "{head}");
        for line in body.lines() {
            let _ = writeln!(out, "    {line}");
        }
        let _ = out.flush();
    }

    fn next_ref(&self, channel: &str) -> MessageRef {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        MessageRef {
            platform: "console".into(),
            channel: channel.to_string(),
            message: n.to_string(),
        }
    }

    fn error(e: impl std::fmt::Display) -> ChatError {
        ChatError {
            platform: "console".into(),
            message: e.to_string(),
            retryable: false,
        }
    }

    fn templates() -> Result<&'static crate::templates::Templates, ChatError> {
        report::templates().map_err(Self::error)
    }

    fn thread_text(&self, p: &Proposal, note: &ThreadNote) -> Result<String, ChatError> {
        let t = Self::templates()?;
        if let ThreadNote::Report {
            markdown,
            chart_png,
        } = note
        {
            std::fs::create_dir_all(&self.attachments).map_err(Self::error)?;
            let md = self.attachments.join(format!("{}-report.md", p.id));
            std::fs::write(&md, markdown).map_err(Self::error)?;
            let mut text = format!("📄 Draft incident report: {}", md.display());
            if let Some(png) = chart_png {
                let chart = self.attachments.join(format!("{}-chart.png", p.id));
                std::fs::write(&chart, png).map_err(Self::error)?;
                text.push_str(&format!("\n📈 Chart: {}", chart.display()));
            }
            let preview: Vec<&str> = markdown.lines().take(8).collect();
            text.push_str(&format!("\n{}\n…", preview.join("\n")));
            return Ok(text);
        }
        report::render_note(t, p, note).map_err(Self::error)
    }
}

fn stamp() -> String {
    Utc::now().format("[%H:%M:%S UTC]").to_string()
}

#[async_trait]
impl Chat for ConsoleChat {
    async fn post_proposal(&self, channel: &str, p: &Proposal) -> Result<MessageRef, ChatError> {
        let text = report::render_proposal(Self::templates()?, p).map_err(Self::error)?;
        let at = self.next_ref(channel);
        let name = channel.strip_prefix("console:").unwrap_or(channel);
        self.write(&format!("{} rollbot in {name}:", stamp()), &text);
        Ok(at)
    }

    async fn update_proposal(&self, _at: &MessageRef, p: &Proposal) -> Result<(), ChatError> {
        let text = report::render_status_line(Self::templates()?, p).map_err(Self::error)?;
        self.write(&format!("{} ✎ {} updated:", stamp(), p.id), &text);
        Ok(())
    }

    async fn post_thread(
        &self,
        at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<MessageRef, ChatError> {
        let text = self.thread_text(p, note)?;
        self.write(&format!("{} ↳ rollbot in thread {}:", stamp(), p.id), &text);
        Ok(self.next_ref(&at.channel))
    }

    async fn edit_thread(
        &self,
        _at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<(), ChatError> {
        let text = self.thread_text(p, note)?;
        self.write(&format!("{} ↳ ✎ thread {}:", stamp(), p.id), &text);
        Ok(())
    }

    async fn tell(
        &self,
        p: &Proposal,
        _channel: &str,
        user: &UserId,
        note: &PrivateNote,
    ) -> Result<(), ChatError> {
        let text = match note {
            PrivateNote::Text { text } => text.clone(),
            PrivateNote::AlreadyCounted {
                approvals,
                required,
            } => {
                let t = Self::templates()?;
                t.render(
                    &p.locale,
                    "already_counted.txt",
                    minijinja::context! { id => p.id.as_str(), approvals => approvals, required => required },
                )
                .map_err(Self::error)?
            }
            PrivateNote::VoteRefused { refusal } => {
                let t = Self::templates()?;
                t.render(
                    &p.locale,
                    "vote_refused.txt",
                    minijinja::context! { id => p.id.as_str(), refusal => minijinja::value::Serde(refusal) },
                )
                .map_err(Self::error)?
            }
        };
        self.write(&format!("{} (only visible to {user}):", stamp()), &text);
        Ok(())
    }
}
