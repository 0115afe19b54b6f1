//! The background-task tracker shared by the engine and the chat adapters:
//! every task rollbot spawns is counted, so shutdown and tests can wait
//! until none is running, and a panicking task is remembered instead of
//! vanishing.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::FutureExt;
use tokio::sync::Notify;

/// Counts running tasks. Cheap to clone; all clones share the counters.
///
/// A spawned task holds only these counters, never its owner: once the
/// future (and whatever it captured) is dropped, a waiter may go on, e.g.
/// reopen the store.
#[derive(Clone, Default)]
pub struct Tasks {
    inner: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    running: AtomicUsize,
    idle: Notify,
    panicked: AtomicBool,
}

impl Tasks {
    /// Runs `fut` on the runtime, counted until it ends. `what` names the
    /// task in the log if it panics.
    pub fn spawn(
        &self,
        what: &'static str,
        fut: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.inner.running.fetch_add(1, Ordering::SeqCst);
        let counters = self.inner.clone();
        tokio::spawn(async move {
            if AssertUnwindSafe(fut).catch_unwind().await.is_err() {
                tracing::error!(task = what, "a background task panicked");
                counters.panicked.store(true, Ordering::SeqCst);
            }
            if counters.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                counters.idle.notify_waiters();
            }
        });
    }

    /// Waits until no counted task is running.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.inner.running.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// How many counted tasks are running now.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// Whether any counted task panicked (tests fail on this).
    pub fn panicked(&self) -> bool {
        self.inner.panicked.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_every_task_and_remembers_a_panic() {
        let tasks = Tasks::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("waiter", async move {
            let _ = rx.await;
        });
        tasks.spawn("panics", async { panic!("boom") });
        assert!(tasks.running() >= 1);
        tx.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), tasks.wait_idle())
            .await
            .expect("idle once both ended");
        assert_eq!(tasks.running(), 0);
        assert!(tasks.panicked());
    }
}
