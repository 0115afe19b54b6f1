//! In-memory doubles of the ports: a chat that records every call, an
//! executor and a verifier that follow a script. Used by the engine tests
//! and the test harness (`serve` without a chat uses `chat::none`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};

use super::{
    Chat, ChatError, CheckResult, ExecError, ExecOutcome, Executor, PrivateNote, Standing,
    ThreadNote, Verdict, Verifier,
};
use crate::domain::{MessageRef, Plan, Proposal, ServiceName, State, UserId};
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

/// A chat that records calls. Can be told to fail, to exercise retries.
#[derive(Default)]
pub struct MemoryChat {
    calls: Mutex<Vec<ChatCall>>,
    counter: AtomicUsize,
    failing: std::sync::atomic::AtomicBool,
    changed: Notify,
}

impl MemoryChat {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<ChatCall> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

    fn record(&self, call: ChatCall) -> Result<(), ChatError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(ChatError {
                platform: "memory".into(),
                message: "chat is down (test)".into(),
                retryable: true,
            });
        }
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
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
        self.record(ChatCall::Posted {
            channel: channel.to_string(),
            id: p.id.to_string(),
            state: p.state,
        })?;
        Ok(r)
    }

    async fn update_proposal(&self, at: &MessageRef, p: &Proposal) -> Result<(), ChatError> {
        self.record(ChatCall::Updated {
            message: at.message.clone(),
            state: p.state,
            approvals: p.approvers().cloned().collect(),
        })
    }

    async fn post_thread(
        &self,
        at: &MessageRef,
        _p: &Proposal,
        note: &ThreadNote,
    ) -> Result<MessageRef, ChatError> {
        let r = self.next_ref(&at.channel);
        self.record(ChatCall::Thread {
            message: at.message.clone(),
            note: note.clone(),
        })?;
        Ok(r)
    }

    async fn edit_thread(
        &self,
        at: &MessageRef,
        _p: &Proposal,
        note: &ThreadNote,
    ) -> Result<(), ChatError> {
        self.record(ChatCall::EditedThread {
            message: at.message.clone(),
            note: note.clone(),
        })
    }

    async fn tell(
        &self,
        _p: &Proposal,
        channel: &str,
        user: &UserId,
        note: &PrivateNote,
    ) -> Result<(), ChatError> {
        self.record(ChatCall::Told {
            channel: channel.to_string(),
            user: user.clone(),
            note: note.clone(),
        })
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
    async fn plan(&self, _target: &Target, _to: Option<u64>) -> Result<Plan, ExecError> {
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
