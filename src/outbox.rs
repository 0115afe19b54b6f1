//! A durable, ordered outbox for chat messages, shared by every chat adapter.
//!
//! # Why
//! A proposal, a status line or an incident report must survive a chat
//! outage and a rollbot restart. So adapters never call the platform
//! directly from the engine's path: they render the message, **persist** it
//! here (a sled tree, flushed before the call returns), and a single worker
//! delivers entries in the order they were queued.
//!
//! # Design
//! - Entries are keyed by a big-endian sequence number, so sled's key order
//!   is queue order. One worker delivers the head entry and only then the
//!   next one: order per proposal (in fact globally) is preserved, which is
//!   what matters when Slack comes back after an outage — the proposal is
//!   posted before its updates, its thread before the report.
//! - **Provisional references.** `Chat::post_proposal` must return a
//!   message reference, but while the platform is down there is none yet.
//!   The adapter then returns a *pending id* (`pending-…`) and queues the
//!   post with that id. When the post is delivered the worker records, in
//!   the same sled transaction that removes the entry, `pending → real` and
//!   `real → pending`. Later entries (updates, thread replies) that name the
//!   pending id are queued behind the post and resolve it when they are
//!   delivered; inbound events carry the real id and are mapped back with
//!   [`Outbox::pending_for`] to find the proposal the engine knows.
//! - **Retries.** The adapter classifies each attempt ([`Delivery`]): a rate
//!   limit waits exactly what the platform asked for, a transient failure
//!   (5xx, network) backs off exponentially up to [`RetryPolicy::max_backoff`],
//!   a permanent refusal (e.g. `channel_not_found`) is logged and dropped so
//!   one bad message cannot block every later one.
//!
//! # Caveats
//! Delivery is at least once: if rollbot stops after the platform accepted
//! a message but before the entry was removed, that message is sent again
//! after the restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::store::{Queue, Store, StoreError};

/// One outbox's backlog, for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct Backlog {
    /// The outbox's name: its chat platform.
    pub name: String,
    pub depth: usize,
    pub oldest_queued_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The backlog of every outbox in `store`.
///
/// # Errors
/// Storage failure.
pub fn backlogs(store: &Store) -> Result<Vec<Backlog>, StoreError> {
    let mut out = Vec::new();
    for name in store.queue_names()? {
        let queue = store.queue(&name)?;
        out.push(Backlog {
            depth: queue.len(),
            oldest_queued_at: queue.oldest_queued_at()?,
            name,
        });
    }
    Ok(out)
}

/// The schema version written with every entry.
pub const ENTRY_VERSION: u32 = 1;

/// Failures of the outbox's storage.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "outbox entry {seq} is unreadable ({detail}); it was written by an incompatible rollbot"
    )]
    Corrupt { seq: u64, detail: String },
    #[error("cannot encode an outbox entry: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One queued message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub version: u32,
    /// What the entry belongs to (a proposal id, or a channel), for logs.
    pub lane: String,
    /// The provisional reference this entry's delivery establishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// The adapter's own description of the call to make.
    pub op: serde_json::Value,
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered; `real` is the platform's reference for the entry's
    /// `pending` id, when it has one.
    Done { real: Option<String> },
    /// Rate limited: try again after exactly this long.
    RetryAfter(Duration),
    /// Worth retrying (5xx, network).
    Transient(String),
    /// Will never succeed; dropped after logging.
    Permanent(String),
}

/// Delivers one entry; implemented by each chat adapter.
#[async_trait]
pub trait Deliver: Send + Sync {
    async fn deliver(&self, entry: &Entry) -> Delivery;
}

/// Backoff for transient failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// The queue. Cheap to clone; clones share the queue.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Queue,
    store: Store,
    next: AtomicU64,
    queued: Notify,
    delivered: Notify,
}

impl Outbox {
    /// Opens the outbox called `name` (e.g. `slack`) in `store`; entries
    /// left by a previous run are delivered first.
    ///
    /// # Errors
    /// Storage failure.
    pub fn open(store: &Store, name: &str) -> Result<Self, OutboxError> {
        let queue = store.queue(name)?;
        let next = queue.last_seq()?.map_or(1, |s| s + 1);
        Ok(Self {
            inner: Arc::new(Inner {
                queue,
                store: store.clone(),
                next: AtomicU64::new(next),
                queued: Notify::new(),
                delivered: Notify::new(),
            }),
        })
    }

    /// A fresh provisional reference.
    pub fn new_pending() -> String {
        format!(
            "{}{}",
            crate::store::PROVISIONAL_PREFIX,
            uuid::Uuid::new_v4().simple()
        )
    }

    /// The provisional reference of a proposal's own message.
    pub fn pending_for_proposal(proposal: &str) -> String {
        format!("{}{proposal}", crate::store::PROVISIONAL_PREFIX)
    }

    /// Whether `reference` is a provisional one.
    pub fn is_pending(reference: &str) -> bool {
        crate::store::is_provisional(reference)
    }

    /// Queues `op` durably (flushed to disk) and wakes the worker.
    ///
    /// An entry that establishes a provisional reference is queued once:
    /// pushing it again (a proposal posted again after a restart) queues
    /// nothing, so a message is never posted twice that way.
    ///
    /// # Errors
    /// Storage failure: the message is not queued.
    pub async fn push(
        &self,
        lane: &str,
        pending: Option<String>,
        op: &impl Serialize,
    ) -> Result<u64, OutboxError> {
        let entry = Entry {
            version: ENTRY_VERSION,
            lane: lane.to_string(),
            pending: pending.clone(),
            op: serde_json::to_value(op)?,
        };
        let seq = self.inner.next.fetch_add(1, Ordering::SeqCst);
        self.inner.queue.push(
            seq,
            pending.as_deref(),
            &serde_json::to_vec(&entry)?,
            // Wall time: the outbox waits in real time, whatever clock
            // the engine's timelines use.
            chrono::Utc::now(),
        )?;
        self.inner.store.flush().await?;
        self.inner.queued.notify_one();
        Ok(seq)
    }

    /// The real reference a pending one became, once delivered.
    ///
    /// # Errors
    /// Storage failure.
    pub fn resolve(&self, pending: &str) -> Result<Option<String>, OutboxError> {
        Ok(self.inner.queue.reference(&format!("p:{pending}"))?)
    }

    /// The pending reference a real one was delivered for, if any.
    ///
    /// # Errors
    /// Storage failure.
    pub fn pending_for(&self, real: &str) -> Result<Option<String>, OutboxError> {
        Ok(self.inner.queue.reference(&format!("r:{real}"))?)
    }

    /// Entries not yet delivered.
    pub fn len(&self) -> usize {
        self.inner.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.queue.is_empty()
    }

    /// Waits until every queued entry was delivered or dropped.
    pub async fn wait_empty(&self) {
        loop {
            let notified = self.inner.delivered.notified();
            if self.is_empty() {
                return;
            }
            notified.await;
        }
    }

    fn head(&self) -> Result<Option<(u64, Entry)>, OutboxError> {
        let Some((seq, v)) = self.inner.queue.head()? else {
            return Ok(None);
        };
        let entry = serde_json::from_slice(&v).map_err(|e| OutboxError::Corrupt {
            seq,
            detail: e.to_string(),
        })?;
        Ok(Some((seq, entry)))
    }

    /// Removes `seq` and, atomically with it, records `pending ↔ real`
    /// (and points the proposal bound to `pending` at `real`).
    fn complete(&self, seq: u64, mapping: Option<(&str, &str)>) -> Result<(), OutboxError> {
        Ok(self.inner.queue.complete(seq, mapping)?)
    }

    /// Delivers entries forever, in order, one at a time. Spawn it once per
    /// outbox; it never returns.
    pub async fn run(self, deliver: Arc<dyn Deliver>, policy: RetryPolicy) {
        let mut backoff = policy.first_backoff;
        loop {
            let queued = self.inner.queued.notified();
            let (seq, entry) = match self.head() {
                Ok(Some(head)) => head,
                Ok(None) => {
                    queued.await;
                    continue;
                }
                Err(OutboxError::Corrupt { seq, detail }) => {
                    tracing::error!(seq, %detail, "dropping an unreadable outbox entry");
                    self.finish(seq, None);
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "outbox unreadable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(policy.max_backoff);
                    continue;
                }
            };
            match deliver.deliver(&entry).await {
                Delivery::Done { real } => {
                    backoff = policy.first_backoff;
                    let mapping = entry.pending.as_deref().zip(real.as_deref());
                    self.finish(seq, mapping);
                }
                Delivery::RetryAfter(wait) => {
                    tracing::warn!(lane = %entry.lane, ?wait, "rate limited; waiting as asked");
                    tokio::time::sleep(wait).await;
                }
                Delivery::Transient(detail) => {
                    tracing::warn!(lane = %entry.lane, %detail, ?backoff, "delivery failed; will retry");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(policy.max_backoff);
                }
                Delivery::Permanent(detail) => {
                    tracing::error!(lane = %entry.lane, %detail, "message refused; dropping it");
                    backoff = policy.first_backoff;
                    self.finish(seq, None);
                }
            }
        }
    }

    fn finish(&self, seq: u64, mapping: Option<(&str, &str)>) {
        if let Err(e) = self.complete(seq, mapping) {
            tracing::error!(seq, error = %e, "could not remove a delivered outbox entry");
        }
        self.inner.delivered.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Fails the first `fail` attempts with the given outcome, then records.
    struct Flaky {
        fail: Mutex<Vec<Delivery>>,
        got: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Deliver for Flaky {
        async fn deliver(&self, entry: &Entry) -> Delivery {
            if let Some(d) = self.fail.lock().unwrap().pop() {
                return d;
            }
            let text = entry.op["text"].as_str().unwrap_or_default().to_string();
            self.got.lock().unwrap().push(text.clone());
            Delivery::Done {
                real: entry.pending.as_ref().map(|_| format!("real-{text}")),
            }
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            first_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn entries_survive_a_restart_and_arrive_in_order_after_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let pending = Outbox::new_pending();
        {
            let store = Store::open(&path).unwrap();
            let outbox = Outbox::open(&store, "test").unwrap();
            outbox
                .push(
                    "RB-1",
                    Some(pending.clone()),
                    &serde_json::json!({"text": "a"}),
                )
                .await
                .unwrap();
            outbox
                .push("RB-1", None, &serde_json::json!({"text": "b"}))
                .await
                .unwrap();
            store.flush().await.unwrap();
        }
        let store = Store::open(&path).unwrap();
        let outbox = Outbox::open(&store, "test").unwrap();
        assert_eq!(outbox.len(), 2);
        outbox
            .push("RB-1", None, &serde_json::json!({"text": "c"}))
            .await
            .unwrap();
        let flaky = Arc::new(Flaky {
            fail: Mutex::new(vec![
                Delivery::Transient("500".into()),
                Delivery::RetryAfter(Duration::from_millis(10)),
                Delivery::Transient("connection refused".into()),
            ]),
            got: Mutex::new(vec![]),
        });
        let worker = tokio::spawn(outbox.clone().run(flaky.clone(), fast()));
        tokio::time::timeout(Duration::from_secs(10), outbox.wait_empty())
            .await
            .unwrap();
        let real = outbox.resolve(&pending).unwrap();
        worker.abort();
        assert_eq!(*flaky.got.lock().unwrap(), ["a", "b", "c"]);
        assert_eq!(real.as_deref(), Some("real-a"));
        assert_eq!(outbox.pending_for("real-a").unwrap(), Some(pending));
    }

    #[tokio::test]
    async fn a_permanent_refusal_does_not_block_later_entries() {
        let store = Store::temporary().unwrap();
        let outbox = Outbox::open(&store, "test").unwrap();
        for t in ["x", "y"] {
            outbox
                .push("C1", None, &serde_json::json!({ "text": t }))
                .await
                .unwrap();
        }
        let flaky = Arc::new(Flaky {
            fail: Mutex::new(vec![Delivery::Permanent("channel_not_found".into())]),
            got: Mutex::new(vec![]),
        });
        let worker = tokio::spawn(outbox.clone().run(flaky.clone(), fast()));
        tokio::time::timeout(Duration::from_secs(10), outbox.wait_empty())
            .await
            .unwrap();
        worker.abort();
        assert_eq!(*flaky.got.lock().unwrap(), ["y"]);
    }

    #[tokio::test]
    async fn an_undelivered_pending_reference_stays_unresolved() {
        let store = Store::temporary().unwrap();
        let outbox = Outbox::open(&store, "test").unwrap();
        let p = Outbox::new_pending();
        outbox
            .push("RB-1", Some(p.clone()), &serde_json::json!({"text": "a"}))
            .await
            .unwrap();
        assert!(Outbox::is_pending(&p));
        assert_eq!(outbox.resolve(&p).unwrap(), None);
        assert_eq!(outbox.len(), 1);
    }
}
