//! A chat in the terminal: renders the `#incidents` channel as a transcript
//! (the proposal, votes, progress, verification, the resolved notice and the
//! report) for `rollbot demo` and drills run from a shell.
//!
//! It renders the plain-text layouts (`templates/text/`) in the proposal's
//! locale; attachments (the report and its chart) are written to a
//! directory under the names a drill's or an incident's report gets, and
//! named in the transcript.

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
            // `<ID>-report.md` as before (`rollbot demo` waits for it); a
            // drill's files say so in their names.
            let kind = if p.drill { "-drill" } else { "" };
            let report_file = format!("{}{kind}-report.md", p.id);
            let chart_file = format!("{}{kind}-chart.png", p.id);
            let path = |file: &str| minijinja::context! { path => self.attachments.join(file).display().to_string() };
            std::fs::create_dir_all(&self.attachments).map_err(Self::error)?;
            std::fs::write(self.attachments.join(&report_file), markdown).map_err(Self::error)?;
            let mut text = format!(
                "📄 {}",
                t.text(&p.locale, "thread.report_file", path(&report_file))
                    .map_err(Self::error)?
            );
            if let Some(png) = chart_png {
                std::fs::write(self.attachments.join(&chart_file), png).map_err(Self::error)?;
                text.push_str(&format!(
                    "\n📈 {}",
                    t.text(&p.locale, "thread.chart_file", path(&chart_file))
                        .map_err(Self::error)?
                ));
            }
            let preview: Vec<&str> = markdown.lines().take(8).collect();
            text.push_str(&format!("\n{}\n…", preview.join("\n")));
            return Ok(text);
        }
        report::render_note(t, p, note).map_err(Self::error)
    }

    /// A header line's words (`console.<key>` in the catalogue), in `p`'s locale.
    fn header(p: &Proposal, key: &str, args: minijinja::Value) -> Result<String, ChatError> {
        Self::templates()?
            .text(&p.locale, &format!("console.{key}"), args)
            .map_err(Self::error)
    }

    /// `[DRILL] ` before a drill's headers, so every line of its transcript
    /// says what it is.
    fn drill_mark(p: &Proposal) -> Result<String, ChatError> {
        if !p.drill {
            return Ok(String::new());
        }
        let tag = Self::templates()?
            .text(&p.locale, "drill.tag", ())
            .map_err(Self::error)?;
        Ok(format!("[{tag}] "))
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
        let head = Self::header(p, "posted", minijinja::context! { channel => name })?;
        self.write(&format!("{} {head}", stamp()), &text);
        Ok(at)
    }

    async fn update_proposal(&self, _at: &MessageRef, p: &Proposal) -> Result<(), ChatError> {
        let text = report::render_status_line(Self::templates()?, p).map_err(Self::error)?;
        let mark = Self::drill_mark(p)?;
        let head = Self::header(p, "updated", minijinja::context! { id => p.id.as_str() })?;
        self.write(&format!("{} ✎ {mark}{head}", stamp()), &text);
        Ok(())
    }

    async fn post_thread(
        &self,
        at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<MessageRef, ChatError> {
        let text = self.thread_text(p, note)?;
        let head = Self::header(p, "thread", minijinja::context! { id => p.id.as_str() })?;
        self.write(&format!("{} ↳ {head}", stamp()), &text);
        Ok(self.next_ref(&at.channel))
    }

    async fn edit_thread(
        &self,
        _at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<(), ChatError> {
        let text = self.thread_text(p, note)?;
        let head = Self::header(
            p,
            "thread_edited",
            minijinja::context! { id => p.id.as_str() },
        )?;
        self.write(&format!("{} ↳ ✎ {head}", stamp()), &text);
        Ok(())
    }

    async fn tell(
        &self,
        p: &Proposal,
        _channel: &str,
        user: &UserId,
        note: &PrivateNote,
    ) -> Result<(), ChatError> {
        let text = report::render_private(Self::templates()?, p, note).map_err(Self::error)?;
        let head = Self::header(p, "private", minijinja::context! { user => user.as_str() })?;
        self.write(&format!("{} {head}", stamp()), &text);
        Ok(())
    }
}
