//! The executor router: one `Executor` for the engine, which hands each
//! call to the executor registered for the target's kind.
//!
//! A kind is registered once, at start-up (`rollbot serve` registers
//! `kubernetes` when a service targets it; a program embedding rollbot, or a
//! test, registers its own kinds). A target whose kind has none is refused
//! with [`ExecErrorKind::Unsupported`], and nothing is changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::Target;
use crate::domain::{Plan, ProposalId};
use crate::ports::{ExecError, ExecErrorKind, ExecOutcome, Executor, PlanRequest, Standing};

/// Executors by target kind.
#[derive(Clone, Default)]
pub struct Executors {
    by_kind: BTreeMap<String, Arc<dyn Executor>>,
}

impl Executors {
    /// A router with no kind registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs targets of `kind` with `executor` (replacing an earlier one).
    #[must_use]
    pub fn register(mut self, kind: impl Into<String>, executor: Arc<dyn Executor>) -> Self {
        self.by_kind.insert(kind.into(), executor);
        self
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.by_kind.keys().map(String::as_str)
    }

    /// Whether targets of `kind` can run here.
    pub fn serves(&self, kind: &str) -> bool {
        self.by_kind.contains_key(kind)
    }

    /// The executor for `target`'s kind.
    ///
    /// # Errors
    /// [`ExecErrorKind::Unsupported`] when no executor has that kind.
    pub fn route(&self, target: &Target) -> Result<&Arc<dyn Executor>, ExecError> {
        let kind = target.kind();
        self.by_kind.get(kind).ok_or_else(|| {
            let known: Vec<&str> = self.kinds().collect();
            ExecError::new(
                ExecErrorKind::Unsupported,
                format!(
                    "no executor for {kind} targets in this rollbot (it has: {}); nothing was changed. Register an executor for {kind:?}, or point the service at a target kind listed here",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
    }
}

#[async_trait]
impl Executor for Executors {
    async fn plan(&self, target: &Target, request: &PlanRequest) -> Result<Plan, ExecError> {
        self.route(target)?.plan(target, request).await
    }

    async fn execute(
        &self,
        target: &Target,
        plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        self.route(target)?.execute(target, plan, progress).await
    }

    async fn standing(&self, target: &Target, plan: &Plan) -> Result<Standing, ExecError> {
        self.route(target)?.standing(target, plan).await
    }

    async fn follow(
        &self,
        target: &Target,
        plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        self.route(target)?.follow(target, plan, progress).await
    }

    async fn rehearse(&self, target: &Target, drill: &ProposalId) -> Result<Target, ExecError> {
        self.route(target)?.rehearse(target, drill).await
    }

    fn rehearsal(&self, target: &Target, drill: &ProposalId) -> Result<Target, ExecError> {
        self.route(target)?.rehearsal(target, drill)
    }

    async fn watch_hold(&self, target: &Target, plan: &Plan) -> Option<String> {
        match self.route(target) {
            Ok(executor) => executor.watch_hold(target, plan).await,
            Err(_) => None,
        }
    }

    /// Every executor releases its own drills' copies.
    fn release(&self, over: &dyn Fn(&ProposalId) -> bool) {
        for executor in self.by_kind.values() {
            executor.release(over);
        }
    }
}
