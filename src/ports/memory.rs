//! In-memory doubles of the ports: a chat that records every call, an
//! executor and a verifier that follow a script. Used by the engine tests
//! and the test harness (`serve` without a chat uses `chat::none`).
//!
//! The chat also keeps track of which messages a test has looked at: each
//! message the bot sends (a proposal, a thread note, a private note) stays
//! pending until a `take_*` call consumes it, so the harness can fail a test
//! that let a message go unnoticed (rust-lang/bors does the same with
//! comments). Edits of a message already sent need no consuming.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};

use super::{
    Chat, ChatError, CheckResult, ExecError, ExecOutcome, Executor, PlanRequest, PrivateNote,
    Standing, ThreadNote, Verdict, Verifier,
};
use crate::domain::{MessageRef, Plan, Proposal, ProposalId, ServiceName, State, UserId};
use crate::exec::Target;

/// One call the engine made to the chat.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatCall {
    Posted {
        channel: String,
        id: String,
        state: State,
    },
    Updated {
        message: String,
        state: State,
        approvals: Vec<UserId>,
    },
    Thread {
        message: String,
        note: ThreadNote,
    },
    EditedThread {
        message: String,
        note: ThreadNote,
    },
    Told {
        channel: String,
        user: UserId,
        note: PrivateNote,
    },
}

impl ChatCall {
    /// Whether the call sent a new message (which a test must consume)
    /// rather than editing one already sent.
    pub fn is_message(&self) -> bool {
        matches!(
            self,
            ChatCall::Posted { .. } | ChatCall::Thread { .. } | ChatCall::Told { .. }
        )
    }
}

/// A message the bot sent, with the proposal it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub proposal: ProposalId,
    /// A [`ChatCall::Posted`], [`ChatCall::Thread`] or [`ChatCall::Told`].
    pub call: ChatCall,
}

impl Sent {
    /// The note's name as serialised (`verification`, `vote_refused`…), or
    /// `proposal` for the proposal message itself.
    pub fn name(&self) -> String {
        match &self.call {
            ChatCall::Thread { note, .. } | ChatCall::EditedThread { note, .. } => note_name(note),
            ChatCall::Told { note, .. } => note_name(note),
            ChatCall::Posted { .. } | ChatCall::Updated { .. } => "proposal".into(),
        }
    }
}

impl fmt::Display for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.proposal;
        match &self.call {
            ChatCall::Posted { channel, state, .. } => {
                write!(f, "{id}: proposal posted in {channel} ({state:?})")
            }
            ChatCall::Thread { note, .. } => write!(f, "{id}: thread note {note:?}"),
            ChatCall::Told { user, note, .. } => write!(f, "{id}: told {user}: {note:?}"),
            other => write!(f, "{id}: {other:?}"),
        }
    }
}

/// The `note` tag a note serialises with: its variant's snake_case name.
fn note_name(note: &impl serde::Serialize) -> String {
    serde_json::to_value(note)
        .ok()
        .and_then(|v| v.get("note")?.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// One recorded call and whether a test has consumed it.
struct Entry {
    proposal: ProposalId,
    call: ChatCall,
    consumed: bool,
}

/// A chat that records calls. Can be told to fail, to exercise retries.
#[derive(Default)]
pub struct MemoryChat {
    calls: Mutex<Vec<Entry>>,
    counter: AtomicUsize,
    failing: std::sync::atomic::AtomicBool,
    changed: Notify,
}

impl MemoryChat {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every call so far, consumed or not.
    pub fn calls(&self) -> Vec<ChatCall> {
        self.entries().iter().map(|e| e.call.clone()).collect()
    }

    /// Messages sent that no test consumed yet, oldest first.
    pub fn unconsumed(&self) -> Vec<Sent> {
        self.entries()
            .iter()
            .filter(|e| !e.consumed)
            .map(Entry::sent)
            .collect()
    }

    /// Consumes the oldest pending message for which `pred` holds.
    pub fn take(&self, pred: impl Fn(&Sent) -> bool) -> Option<Sent> {
        let mut entries = self.entries();
        let entry = entries
            .iter_mut()
            .find(|e| !e.consumed && pred(&e.sent()))?;
        entry.consumed = true;
        Some(entry.sent())
    }

    /// Waits until a pending message for which `pred` holds is sent (or
    /// already was), then consumes it. Unbounded: callers put a timeout
    /// around it.
    pub async fn take_when(&self, pred: impl Fn(&Sent) -> bool) -> Sent {
        loop {
            // Registered before looking, so a message recorded in between
            // still wakes us.
            let notified = self.changed.notified();
            if let Some(sent) = self.take(&pred) {
                return sent;
            }
            notified.await;
        }
    }

    /// Consumes every pending message for which `pred` holds, oldest first.
    pub fn take_all(&self, pred: impl Fn(&Sent) -> bool) -> Vec<Sent> {
        let mut entries = self.entries();
        entries
            .iter_mut()
            .filter(|e| !e.consumed && pred(&e.sent()))
            .map(|e| {
                e.consumed = true;
                e.sent()
            })
            .collect()
    }

    /// Consumes the post of proposal `id`; returns the channel it went to.
    pub fn take_post(&self, id: &ProposalId) -> Option<String> {
        match self
            .take(|s| &s.proposal == id && matches!(s.call, ChatCall::Posted { .. }))?
            .call
        {
            ChatCall::Posted { channel, .. } => Some(channel),
            _ => None,
        }
    }

    /// Consumes the oldest pending thread note named `name` (e.g.
    /// `verification`) on proposal `id`.
    pub fn take_thread(&self, id: &ProposalId, name: &str) -> Option<ThreadNote> {
        let sent = self.take(|s| {
            &s.proposal == id && matches!(s.call, ChatCall::Thread { .. }) && s.name() == name
        })?;
        match sent.call {
            ChatCall::Thread { note, .. } => Some(note),
            _ => None,
        }
    }

    /// Consumes every pending thread note on proposal `id`, oldest first.
    pub fn take_threads(&self, id: &ProposalId) -> Vec<ThreadNote> {
        self.take_all(|s| &s.proposal == id && matches!(s.call, ChatCall::Thread { .. }))
            .into_iter()
            .filter_map(|s| match s.call {
                ChatCall::Thread { note, .. } => Some(note),
                _ => None,
            })
            .collect()
    }

    /// Consumes the oldest pending private note named `name` (e.g.
    /// `vote_refused`) told to `user`.
    pub fn take_told(&self, user: &UserId, name: &str) -> Option<PrivateNote> {
        let sent = self.take(|s| {
            matches!(&s.call, ChatCall::Told { user: u, .. } if u == user) && s.name() == name
        })?;
        match sent.call {
            ChatCall::Told { note, .. } => Some(note),
            _ => None,
        }
    }

    /// Marks every pending message consumed; returns how many there were.
    pub fn consume_all(&self) -> usize {
        self.take_all(|_| true).len()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // A test that panicked while holding the lock must not hide its
        // recorded calls from the harness's report.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every later call fail (retryable) until set back.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Waits until `pred` holds for the recorded calls.
    pub async fn wait_for(&self, pred: impl Fn(&[ChatCall]) -> bool) {
        loop {
            let notified = self.changed.notified();
            if pred(&self.calls()) {
                return;
            }
            notified.await;
        }
    }

    fn record(&self, proposal: &ProposalId, call: ChatCall) -> Result<(), ChatError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(ChatError {
                platform: "memory".into(),
                message: "chat is down (test)".into(),
                retryable: true,
            });
        }
        let consumed = !call.is_message();
        self.entries().push(Entry {
            proposal: proposal.clone(),
            call,
            consumed,
        });
        self.changed.notify_waiters();
        Ok(())
    }

    fn next_ref(&self, channel: &str) -> MessageRef {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        MessageRef {
            platform: "memory".into(),
            channel: channel.to_string(),
            message: format!("m{n}"),
        }
    }
}

#[async_trait]
impl Chat for MemoryChat {
    async fn post_proposal(&self, channel: &str, p: &Proposal) -> Result<MessageRef, ChatError> {
        let r = self.next_ref(channel);
        self.record(
            &p.id,
            ChatCall::Posted {
                channel: channel.to_string(),
                id: p.id.to_string(),
                state: p.state,
            },
        )?;
        Ok(r)
    }

    async fn update_proposal(&self, at: &MessageRef, p: &Proposal) -> Result<(), ChatError> {
        self.record(
            &p.id,
            ChatCall::Updated {
                message: at.message.clone(),
                state: p.state,
                approvals: p.approvers().cloned().collect(),
            },
        )
    }

    async fn post_thread(
        &self,
        at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<MessageRef, ChatError> {
        let r = self.next_ref(&at.channel);
        self.record(
            &p.id,
            ChatCall::Thread {
                message: at.message.clone(),
                note: note.clone(),
            },
        )?;
        Ok(r)
    }

    async fn edit_thread(
        &self,
        at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<(), ChatError> {
        self.record(
            &p.id,
            ChatCall::EditedThread {
                message: at.message.clone(),
                note: note.clone(),
            },
        )
    }

    async fn tell(
        &self,
        p: &Proposal,
        channel: &str,
        user: &UserId,
        note: &PrivateNote,
    ) -> Result<(), ChatError> {
        self.record(
            &p.id,
            ChatCall::Told {
                channel: channel.to_string(),
                user: user.clone(),
                note: note.clone(),
            },
        )
    }
}

/// What the scripted executor does when asked to execute.
#[derive(Debug, Clone)]
pub enum Script {
    Succeed { lines: Vec<String> },
    Supersede { reason: String },
    Fail(ExecError),
}

/// An executor that returns a fixed plan and follows a script.
pub struct ScriptedExecutor {
    plan: Mutex<Result<Plan, ExecError>>,
    script: Mutex<Script>,
    executions: AtomicUsize,
    /// What `standing` answers after a restart (by default: cannot tell).
    standing: Mutex<Result<Standing, ExecError>>,
    follows: AtomicUsize,
    /// Held open while `execute` runs, so tests can observe `Executing`.
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
}

impl Entry {
    fn sent(&self) -> Sent {
        Sent {
            proposal: self.proposal.clone(),
            call: self.call.clone(),
        }
    }
}

impl ScriptedExecutor {
    pub fn new(plan: Plan) -> Arc<Self> {
        Arc::new(Self {
            plan: Mutex::new(Ok(plan)),
            script: Mutex::new(Script::Succeed {
                lines: vec!["successfully rolled out".into()],
            }),
            executions: AtomicUsize::new(0),
            standing: Mutex::new(Ok(Standing::Unknown)),
            follows: AtomicUsize::new(0),
            gate: Mutex::new(None),
        })
    }

    pub fn set_plan(&self, plan: Result<Plan, ExecError>) {
        *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = plan;
    }

    pub fn set_script(&self, script: Script) {
        *self.script.lock().unwrap_or_else(|e| e.into_inner()) = script;
    }

    /// Makes `execute` wait until the returned semaphore gets a permit.
    pub fn hold(&self) -> Arc<tokio::sync::Semaphore> {
        let s = Arc::new(tokio::sync::Semaphore::new(0));
        *self.gate.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
        s
    }

    /// What `standing` answers, as if read from the workload.
    pub fn set_standing(&self, standing: Result<Standing, ExecError>) {
        *self.standing.lock().unwrap_or_else(|e| e.into_inner()) = standing;
    }

    /// How many times `follow` (a resumed rollout) was called.
    pub fn follows(&self) -> usize {
        self.follows.load(Ordering::SeqCst)
    }

    /// How many times `execute` was called.
    pub fn executions(&self) -> usize {
        self.executions.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Executor for ScriptedExecutor {
    async fn plan(&self, _target: &Target, _request: &PlanRequest) -> Result<Plan, ExecError> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn execute(
        &self,
        _target: &Target,
        _plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        self.executions.fetch_add(1, Ordering::SeqCst);
        self.run_script(progress).await
    }

    async fn standing(&self, _target: &Target, _plan: &Plan) -> Result<Standing, ExecError> {
        self.standing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn follow(
        &self,
        _target: &Target,
        _plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        self.follows.fetch_add(1, Ordering::SeqCst);
        self.run_script(progress).await
    }
}

impl ScriptedExecutor {
    /// The scripted rollout, shared by `execute` and `follow`.
    async fn run_script(&self, progress: mpsc::Sender<String>) -> Result<ExecOutcome, ExecError> {
        let gate = self.gate.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(gate) = gate {
            // Each permit releases one execution; a closed semaphore releases all.
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
        }
        let script = self
            .script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match script {
            Script::Succeed { lines } => {
                let last = lines.last().cloned().unwrap_or_default();
                for line in lines {
                    // The receiver may be gone if the engine shut down; nothing to do then.
                    let _ = progress.send(line).await;
                }
                Ok(ExecOutcome::RolledBack { detail: last })
            }
            Script::Supersede { reason } => Ok(ExecOutcome::Superseded { reason }),
            Script::Fail(e) => Err(e),
        }
    }
}

/// A verifier that returns queued verdicts (then `NotConfigured`).
#[derive(Default)]
pub struct ScriptedVerifier {
    verdicts: Mutex<VecDeque<Verdict>>,
}

impl ScriptedVerifier {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn push(&self, v: Verdict) {
        self.verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(v);
    }
}

#[async_trait]
impl Verifier for ScriptedVerifier {
    async fn verify(
        &self,
        _service: &ServiceName,
        _plan: &Plan,
        results: mpsc::Sender<CheckResult>,
    ) -> Verdict {
        let v = self
            .verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .unwrap_or(Verdict::NotConfigured);
        if let Verdict::Passed { checks }
        | Verdict::Failed { checks }
        | Verdict::Unverified { checks, .. } = &v
        {
            for c in checks {
                let _ = results.send(c.clone()).await;
            }
        }
        v
    }
}
