//! Durable storage in sled: proposals, their timelines, the open proposal of
//! each service, deduplication keys, the chat message each proposal is
//! bound to, parked alerts, the chat outboxes' queues and when each
//! service's scheduled drill last ran.
//!
//! Every value is wrapped in an envelope carrying a schema version
//! (`{"v":1,"data":…}`) so a later rollbot can read what this one wrote.
//! Writes that change a proposal go through [`Store::update`], one sled
//! transaction over all trees: the state change, its timeline events, the
//! open-proposal index change and any deduplication keys the input claims
//! change together or not at all. Because the closure sees the stored value,
//! two tasks racing to make the same transition cannot both succeed — that
//! is what guarantees exactly one execution per proposal.
//!
//! # Why one owner
//! sled 0.34 can hang for good when one thread iterates a tree while another
//! runs a transaction (spacejam/sled#1301, #1412; never fixed in a 0.34
//! release). Its transactions take a process-wide reader-writer lock for
//! writing, and a reader that re-enters that lock (an iterator step that
//! merges or splits a node does) queues behind the waiting writer while the
//! writer waits for it: rollbot's server stopped answering that way under an
//! alert storm (`tests/store.rs` reproduces it in seconds).
//!
//! So every read, iteration and transaction here runs while holding one
//! mutex, [`Shared::trees`]: at most one of our threads is inside sled's
//! lock as a possible writer or re-entering reader at a time. The other
//! users of that lock are flushes — sled's own flusher thread, and ours,
//! one at a time — which only read it, never re-enter it and wait only for
//! their own disk writes, never for one of our calls, so no cycle can form;
//! they run beside the owner so that reads and writes go on while the disk
//! syncs. Flushes are grouped: callers that wrote before a flush started
//! share it instead of each paying one (see [`Store::flush`]). No other
//! module touches sled: the outbox and the engine's parked alerts use the
//! methods below. `tests/store.rs` runs every kind of call from many
//! threads at once and fails on any stall over 2 s.
//!
//! Once a write is committed, the store tells its [`Observer`] (the
//! rollback metrics) of the events it recorded, outside the mutex: every
//! timeline event passes through [`Store::insert_claiming`] or
//! [`Store::update_claiming`], so nothing derived from timelines can miss one.
//!
//! Each call holds the mutex only for its own sled work (microseconds);
//! long scans (the dedup sweep) work in bounded chunks so they cannot starve
//! webhooks.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::domain::{
    EventKind, MessageRef, Proposal, ProposalId, ServiceName, State, TimelineEvent,
};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// How provisional message references start (see [`crate::outbox`]): a
/// message queued for a chat platform that has not answered yet.
pub const PROVISIONAL_PREFIX: &str = "pending-";

/// Whether `reference` is a provisional message reference.
pub fn is_provisional(reference: &str) -> bool {
    reference.starts_with(PROVISIONAL_PREFIX)
}

/// Most entries one sweep step looks at while holding the store.
const SWEEP_CHUNK: usize = 2_000;

/// Storage failures, each naming what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the store at {path}: {source}. Check that the directory is writable and that no other rollbot process is using it"
    )]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("storage I/O failed: {0}. Check disk space and permissions of the store path")]
    Io(#[from] sled::Error),
    #[error(
        "stored value {tree}/{key} is unreadable: {detail}. Restore the store from a backup or remove that key"
    )]
    Corrupt {
        tree: &'static str,
        key: String,
        detail: String,
    },
    #[error(
        "stored value {tree}/{key} has schema version {found}, newer than this rollbot understands ({SCHEMA_VERSION}); run a newer rollbot"
    )]
    FutureSchema {
        tree: &'static str,
        key: String,
        found: u32,
    },
    #[error("proposal {0} does not exist; `/rollback list` shows the current ones")]
    NotFound(ProposalId),
    #[error("proposal {0} already exists")]
    Exists(ProposalId),
    #[error("{service} already has an open rollback proposal, {existing}")]
    AlreadyOpen {
        service: ServiceName,
        existing: ProposalId,
    },
    /// The input was already handled: its deduplication key is taken.
    #[error("{key} was already handled (at {})", seen.at)]
    AlreadyClaimed { key: String, seen: DedupEntry },
}

/// What [`Store::update`] returns: a storage failure or the closure's own refusal.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rejected(E),
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    v: u32,
    data: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeTyped<T> {
    v: u32,
    data: T,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    v: u32,
    data: serde_json::Value,
}

/// sled's page cache unless `[store] cache_mib` says otherwise. sled's own
/// default is 1 GiB, which a store of 10,000 proposals filled to over
/// 200 MiB of RSS after a restart.
pub const DEFAULT_CACHE_MIB: u64 = 32;

/// Wraps `value` in the versioned envelope every stored value has.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own plain data types into JSON cannot fail.
    serde_json::to_vec(&EnvelopeOut {
        v: SCHEMA_VERSION,
        data: value,
    })
    .expect("store values serialize to JSON")
}

/// Reads a value written by [`encode`] (this or an older schema version).
///
/// # Errors
/// [`StoreError::Corrupt`] or [`StoreError::FutureSchema`], naming `tree`
/// and `key`.
pub fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    // The common case in one pass, straight into `T`. Anything else (a
    // newer schema, a value that does not fit) takes the slow path below,
    // which checks the version first and names the field that is wrong.
    if let Ok(env) = serde_json::from_slice::<EnvelopeTyped<T>>(bytes)
        && env.v <= SCHEMA_VERSION
    {
        return Ok(env.data);
    }
    let key_text = || String::from_utf8_lossy(key).replace('\0', "/");
    let env: EnvelopeIn = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        key: key_text(),
        detail: e.to_string(),
    })?;
    if env.v > SCHEMA_VERSION {
        return Err(StoreError::FutureSchema {
            tree,
            key: key_text(),
            found: env.v,
        });
    }
    // Version 1 is the only one so far; older versions would be migrated here.
    serde_path_to_error::deserialize(env.data).map_err(|e| StoreError::Corrupt {
        tree,
        key: key_text(),
        detail: e.to_string(),
    })
}

fn timeline_key(id: &ProposalId, seq: u64) -> Vec<u8> {
    let mut k = timeline_prefix(id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn timeline_prefix(id: &ProposalId) -> Vec<u8> {
    let mut k = id.as_str().as_bytes().to_vec();
    k.push(b'/');
    k
}

/// A recorded deduplication key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupEntry {
    pub value: String,
    pub at: DateTime<Utc>,
}

/// Whether a dedup key was new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    New,
    Seen(DedupEntry),
}

/// Which proposals a page of [`Store::page`] holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageQuery {
    pub state: Option<State>,
    pub service: Option<ServiceName>,
    /// Where the previous page stopped ([`Page::next`]).
    pub cursor: Option<String>,
    pub limit: usize,
}

/// One page of proposals, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub items: Vec<Proposal>,
    /// Pass as `cursor` to get the next page; absent on the last one.
    pub next: Option<String>,
}

/// How big the store is, for `/metrics` and the retention tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sizes {
    pub proposals: usize,
    pub dedup_keys: usize,
    /// Keys and values of the dedup entries, in bytes (what they cost
    /// before sled's own overhead).
    pub dedup_bytes: u64,
    pub parked_alerts: usize,
    pub bytes_on_disk: u64,
}

enum Abort<E> {
    Store(StoreError),
    Rejected(E),
}

type Tx<E> = ConflictableTransactionError<Abort<E>>;

fn tx_store<E>(e: StoreError) -> Tx<E> {
    ConflictableTransactionError::Abort(Abort::Store(e))
}

/// The sled database and its trees. Cheap to clone; clones share one owner.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Shared>,
}

struct Shared {
    /// The one owner: every sled call but a flush holds this (see the
    /// module doc for why). A blocking mutex: it is held for microseconds
    /// and never across an `.await`. parking_lot's, because it is
    /// eventually fair: under a storm no caller waits behind others for long.
    trees: Mutex<Trees>,
    /// Callers waiting to flush queue here, so that each one that gets its
    /// turn can see whether an earlier flush already covered its writes.
    flushing: tokio::sync::Mutex<()>,
    /// Bumped by every write (under `trees`); `flushed` is the value a
    /// completed flush covered.
    written: AtomicU64,
    flushed: AtomicU64,
    /// Told of recorded timeline events (the metrics derived from them).
    /// A std lock: read once per write, never held across a call into sled.
    observer: std::sync::RwLock<Option<Arc<dyn Observer>>>,
}

/// Told of timeline events once they are stored: what keeps values
/// derived from timelines (the rollback metrics) current without a second
/// place that appends events.
pub trait Observer: Send + Sync {
    /// `written` were just recorded on `p` (which counts them in
    /// `timeline_len`); the events before them are in `store.timeline`.
    fn recorded(&self, store: &Store, p: &Proposal, written: &[TimelineEvent]);
}

struct Trees {
    db: sled::Db,
    proposals: sled::Tree,
    timeline: sled::Tree,
    open: sled::Tree,
    dedup: sled::Tree,
    /// `msg/{platform}/{channel}/{message}` → proposal id, and
    /// `pending/{reference}` → the binding made with a provisional reference.
    messages: sled::Tree,
    /// Proposals stored but not yet bound to a chat message: id → channel.
    unbound: sled::Tree,
    /// `{created_at}{id}` → empty: proposals in time order, for pages.
    by_time: sled::Tree,
    /// Alerts counted on a proposal (past the kept ones) since it was last
    /// rewritten: id → u64, folded into the proposal by the next update.
    counted: sled::Tree,
    parked: sled::Tree,
    /// Inputs acknowledged but not yet carried out (a slash command whose
    /// proposal is still being planned): key → the input.
    inbox: sled::Tree,
    queues: HashMap<String, (sled::Tree, sled::Tree)>,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the directory cannot be used, e.g. another
    /// process holds its lock.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_MIB)
    }

    /// [`Store::open`] with `cache_mib` MiB for sled's page cache.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with_cache(path: &Path, cache_mib: u64) -> Result<Self, StoreError> {
        // sled lets go of its file lock from a background thread shortly
        // after the last handle is dropped, so a store closed and opened
        // again in one process (a restart in tests, `rollbot report` after
        // a server stopped) may find it still held for a moment.
        let mut tries = 0;
        let db = loop {
            let config = sled::Config::new()
                .path(path)
                .cache_capacity(cache_mib.max(1) * 1024 * 1024);
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e)) if e.to_string().contains("lock") && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(source) => {
                    return Err(StoreError::Open {
                        path: path.display().to_string(),
                        source,
                    });
                }
            }
        };
        Self::from_db(db)
    }

    /// A throwaway store that lives in memory (tests, the demo).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|source| StoreError::Open {
                path: "<temporary>".into(),
                source,
            })?;
        Self::from_db(db)
    }

    fn from_db(db: sled::Db) -> Result<Self, StoreError> {
        let trees = Trees {
            proposals: db.open_tree("proposals")?,
            timeline: db.open_tree("timeline")?,
            open: db.open_tree("open_by_service")?,
            dedup: db.open_tree("dedup")?,
            messages: db.open_tree("messages")?,
            unbound: db.open_tree("unbound")?,
            by_time: db.open_tree("proposals_by_time")?,
            counted: {
                let counted = db.open_tree("counted_alerts")?;
                counted.set_merge_operator(add_u64);
                counted
            },
            parked: db.open_tree("pending_alerts")?,
            inbox: db.open_tree("inbox")?,
            queues: HashMap::new(),
            db,
        };
        migrate::migrate(&trees)?;
        Ok(Self {
            inner: Arc::new(Shared {
                trees: Mutex::new(trees),
                flushing: tokio::sync::Mutex::new(()),
                written: AtomicU64::new(0),
                flushed: AtomicU64::new(0),
                observer: std::sync::RwLock::new(None),
            }),
        })
    }

    /// Runs `f` as the store's one owner (see the module doc).
    fn with<T>(&self, f: impl FnOnce(&mut Trees) -> T) -> T {
        let mut trees = self.lock();
        f(&mut trees)
    }

    /// Like [`Store::with`] for a call that writes: a later flush covers it.
    fn write<T>(&self, f: impl FnOnce(&mut Trees) -> T) -> T {
        let mut trees = self.lock();
        let out = f(&mut trees);
        self.inner.written.fetch_add(1, Ordering::SeqCst);
        out
    }

    fn lock(&self) -> MutexGuard<'_, Trees> {
        self.inner.trees.lock()
    }

    /// Waits until everything written so far is on disk. Concurrent callers
    /// share one flush (group commit).
    ///
    /// # Errors
    /// [`StoreError::Io`].
    pub async fn flush(&self) -> Result<(), StoreError> {
        let wanted = self.inner.written.load(Ordering::SeqCst);
        if self.inner.flushed.load(Ordering::SeqCst) >= wanted && wanted > 0 {
            return Ok(());
        }
        let _turn = self.inner.flushing.lock().await;
        // Let the tasks that are ready to run go first: under load they are
        // other deliveries about to write, and this flush then covers them
        // too instead of each paying one. Idle, this returns at once.
        tokio::task::yield_now().await;
        // A flush that started after our write may have finished meanwhile.
        if self.inner.flushed.load(Ordering::SeqCst) >= wanted && wanted > 0 {
            return Ok(());
        }
        // Outside the owner's mutex: a flush only reads sled's lock and
        // waits for its own disk writes, never for one of our calls, so it
        // can run beside them (see the module doc), and reads and writes go
        // on while the disk syncs.
        let covers = self.inner.written.load(Ordering::SeqCst);
        let db = self.with(|t| t.db.clone());
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Io(sled::Error::ReportableBug(e.to_string())))??;
        self.inner.flushed.fetch_max(covers, Ordering::SeqCst);
        Ok(())
    }

    /// A quick read proving the store answers (for `/readyz`).
    ///
    /// # Errors
    /// [`StoreError::Io`].
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with(|t| t.proposals.first())?;
        Ok(())
    }

    /// Stores a new proposal with its first timeline events.
    ///
    /// # Errors
    /// [`StoreError::AlreadyOpen`] when the service already has an open
    /// proposal; [`StoreError::Exists`] on an id clash.
    pub fn insert(
        &self,
        proposal: &Proposal,
        events: &[(DateTime<Utc>, EventKind)],
    ) -> Result<(), StoreError> {
        self.insert_claiming(proposal, events, None, &[])
    }

    /// [`Store::insert`] that also records that the proposal still has to
    /// be posted to `channel` (until [`Store::bind_message`]) and claims
    /// `claims` (key, value) — all in one transaction.
    ///
    /// # Errors
    /// As [`Store::insert`], and [`StoreError::AlreadyClaimed`] when a key
    /// was taken (nothing is written then).
    pub fn insert_claiming(
        &self,
        proposal: &Proposal,
        events: &[(DateTime<Utc>, EventKind)],
        channel: Option<&str>,
        claims: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let id_key = proposal.id.as_str().as_bytes();
        let result = self.write(|t| {
            (
                &t.proposals,
                &t.timeline,
                &t.open,
                &t.dedup,
                &t.unbound,
                &t.by_time,
            )
                .transaction(|(proposals, timeline, open, dedup, unbound, by_time)| {
                    if proposals.get(id_key)?.is_some() {
                        return Err(tx_store::<()>(StoreError::Exists(proposal.id.clone())));
                    }
                    let mut p = proposal.clone();
                    if p.is_open() {
                        let service_key = open_key(&p.service, p.drill);
                        let service_key = service_key.as_slice();
                        if let Some(existing) = open.get(service_key)? {
                            let existing = parse_id("open_by_service", service_key, &existing)
                                .map_err(tx_store)?;
                            return Err(tx_store(StoreError::AlreadyOpen {
                                service: p.service.clone(),
                                existing,
                            }));
                        }
                        open.insert(service_key, id_key)?;
                    }
                    claim_all(dedup, claims, p.created_at)?;
                    if let Some(channel) = channel {
                        unbound.insert(id_key, channel.as_bytes())?;
                    }
                    by_time.insert(time_key(&p), &[][..])?;
                    let written = write_events(timeline, &mut p, events)?;
                    proposals.insert(id_key, encode(&p))?;
                    Ok((p, written))
                })
        });
        let (p, written) = flatten(result).map_err(|e| match e {
            UpdateError::Store(s) => s,
            UpdateError::Rejected(()) => unreachable!("insert never rejects"),
        })?;
        self.notify(&p, &written);
        Ok(())
    }

    /// Atomically applies `change` to the stored proposal and records the
    /// events it returns. The closure may run more than once (optimistic
    /// concurrency), so it must not have side effects.
    ///
    /// # Errors
    /// [`UpdateError::Rejected`] with the closure's error (nothing is
    /// written), or a storage error.
    pub fn update<T, E>(
        &self,
        id: &ProposalId,
        now: DateTime<Utc>,
        change: impl Fn(&mut Proposal) -> Result<(T, Vec<EventKind>), E>,
    ) -> Result<(T, Proposal), UpdateError<E>> {
        self.update_claiming(id, now, &[], change)
    }

    /// [`Store::update`] that also claims `claims` (key, value) in the same
    /// transaction: an input's effect and its deduplication key are stored
    /// together or not at all.
    ///
    /// # Errors
    /// As [`Store::update`]; [`StoreError::AlreadyClaimed`] when a key was
    /// taken (nothing is written then).
    pub fn update_claiming<T, E>(
        &self,
        id: &ProposalId,
        now: DateTime<Utc>,
        claims: &[(&str, &str)],
        change: impl Fn(&mut Proposal) -> Result<(T, Vec<EventKind>), E>,
    ) -> Result<(T, Proposal), UpdateError<E>> {
        let id_key = id.as_str().as_bytes();
        let result = self.write(|t| {
            (&t.proposals, &t.timeline, &t.open, &t.dedup, &t.counted).transaction(
                |(proposals, timeline, open, dedup, counted)| {
                    let Some(bytes) = proposals.get(id_key)? else {
                        return Err(tx_store(StoreError::NotFound(id.clone())));
                    };
                    let mut p: Proposal = decode("proposals", id_key, &bytes).map_err(tx_store)?;
                    // Fold alerts counted since the last rewrite into the proposal.
                    if let Some(n) = counted.remove(id_key)? {
                        p.extra_alerts += read_u64(&n);
                    }
                    let was_open = p.is_open();
                    let (out, events) = change(&mut p)
                        .map_err(|e| ConflictableTransactionError::Abort(Abort::Rejected(e)))?;
                    claim_all(dedup, claims, now)?;
                    if was_open && !p.is_open() {
                        let key = open_key(&p.service, p.drill);
                        let key = key.as_slice();
                        // Only clear the index if it still points at us.
                        if open.get(key)?.as_deref() == Some(id_key) {
                            open.remove(key)?;
                        }
                    }
                    let stamped: Vec<_> = events.into_iter().map(|k| (now, k)).collect();
                    let written = write_events(timeline, &mut p, &stamped)?;
                    proposals.insert(id_key, encode(&p))?;
                    Ok((out, p, written))
                },
            )
        });
        let (out, p, written) = flatten(result)?;
        self.notify(&p, &written);
        Ok((out, p))
    }

    /// Tells `observer` of every timeline event recorded from now on,
    /// after it is stored (replacing an earlier observer).
    pub fn set_observer(&self, observer: Arc<dyn Observer>) {
        *self
            .inner
            .observer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(observer);
    }

    fn notify(&self, p: &Proposal, written: &[TimelineEvent]) {
        if written.is_empty() {
            return;
        }
        let observer = self
            .inner
            .observer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        // Outside the owner's mutex: the observer may read the store.
        if let Some(o) = observer {
            o.recorded(self, p, written);
        }
    }

    /// Records events without changing the proposal otherwise.
    ///
    /// # Errors
    /// As [`Store::update`].
    pub fn append(
        &self,
        id: &ProposalId,
        now: DateTime<Utc>,
        events: Vec<EventKind>,
    ) -> Result<Proposal, StoreError> {
        self.update(id, now, |_| {
            Ok::<_, std::convert::Infallible>(((), events.clone()))
        })
        .map(|((), p)| p)
        .map_err(|e| match e {
            UpdateError::Store(s) => s,
            UpdateError::Rejected(never) => match never {},
        })
    }

    /// Counts `n` more alerts on `id` without rewriting the proposal (an
    /// alert storm past the kept alerts costs a counter, not a proposal),
    /// claiming `claims` first.
    ///
    /// This is the one write of an alert storm, so it is not a sled
    /// transaction: each of those writes its log buffer out twice on the
    /// spot (`PageCache::pin_log`), which made a storm pay two disk writes
    /// per delivery. Single-key writes here share the buffer that the
    /// caller's grouped flush then writes once for many deliveries. Holding
    /// the owner's mutex keeps the claims and the count from interleaving
    /// with any other call. A crash before the flush can keep the claims
    /// and lose the count: the alerts of that delivery, which was never
    /// acknowledged, are then missing from the summary count, and its retry
    /// is a repeat. Nothing acknowledged is lost.
    ///
    /// # Errors
    /// [`StoreError::AlreadyClaimed`] (and nothing written), or a storage
    /// failure.
    pub fn count_alerts(
        &self,
        id: &ProposalId,
        n: u64,
        now: DateTime<Utc>,
        claims: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let id_key = id.as_str().as_bytes();
        self.write(|t| {
            // Each claim is one compare-and-swap (absent → claimed). As in a
            // transaction, a key already claimed, or twice in `claims`,
            // refuses the whole write: the claims made so far are undone.
            let mut made: Vec<&str> = Vec::with_capacity(claims.len());
            for (key, value) in claims {
                let entry = encode(&DedupEntry {
                    value: (*value).to_string(),
                    at: now,
                });
                if let Err(taken) =
                    t.dedup
                        .compare_and_swap(key.as_bytes(), None::<&[u8]>, Some(entry))?
                {
                    for k in made {
                        t.dedup.remove(k.as_bytes())?;
                    }
                    let current = taken.current.unwrap_or_default();
                    return Err(StoreError::AlreadyClaimed {
                        key: (*key).to_string(),
                        seen: decode("dedup", key.as_bytes(), &current)?,
                    });
                }
                made.push(key);
            }
            // One step, not a read then a write (see `add_u64`).
            t.counted.merge(id_key, n.to_be_bytes())?;
            Ok(())
        })
    }

    /// # Errors
    /// [`StoreError::Corrupt`] naming the key if the value cannot be read.
    pub fn get(&self, id: &ProposalId) -> Result<Option<Proposal>, StoreError> {
        self.with(|t| t.get(id))
    }

    /// All proposals, newest first.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn list(&self) -> Result<Vec<Proposal>, StoreError> {
        let mut all = self.with(|t| {
            t.proposals
                .iter()
                .map(|kv| {
                    let (k, v) = kv?;
                    t.with_counted(decode("proposals", &k, &v)?)
                })
                .collect::<Result<Vec<Proposal>, _>>()
        })?;
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// One page of proposals, newest first, optionally only those in a
    /// state or of a service. Reads only as many proposals as the page
    /// needs (plus those the filters skip), not the whole history.
    ///
    /// # Errors
    /// A cursor that is not one this store gave out; as [`Store::get`].
    pub fn page(&self, q: &PageQuery) -> Result<Page, StoreError> {
        let start = match &q.cursor {
            Some(c) => Some(hex::decode(c).map_err(|_| StoreError::Corrupt {
                tree: "proposals_by_time",
                key: c.clone(),
                detail: "not a cursor this rollbot gave out; start again without one".into(),
            })?),
            None => None,
        };
        let limit = q.limit.max(1);
        self.with(|t| {
            let iter = match &start {
                Some(s) => t.by_time.range(..s.as_slice()),
                None => t.by_time.iter(),
            };
            let mut items = Vec::new();
            let mut next = None;
            for kv in iter.rev() {
                let (key, _) = kv?;
                if items.len() == limit {
                    next = Some(hex::encode(items_last_key(&items)));
                    break;
                }
                let id_bytes = key.get(8..).unwrap_or_default();
                let id = parse_id("proposals_by_time", &key, id_bytes)?;
                let Some(p) = t.get(&id)? else { continue };
                if q.state.is_some_and(|s| s != p.state)
                    || q.service.as_ref().is_some_and(|s| *s != p.service)
                {
                    continue;
                }
                items.push(p);
            }
            Ok(Page { items, next })
        })
    }

    /// The open proposal of `service`, if any.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn open_for(&self, service: &ServiceName) -> Result<Option<Proposal>, StoreError> {
        self.with(|t| t.open_at(&open_key(service, false)))
    }

    /// The id of the open proposal of `service`, if any, without reading
    /// the proposal.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn open_id_for(&self, service: &ServiceName) -> Result<Option<ProposalId>, StoreError> {
        let key = open_key(service, false);
        self.with(|t| t.open.get(&key))?
            .map(|id| parse_id("open_by_service", &key, &id))
            .transpose()
    }

    /// The open drill of `service`, if any. Drills have their own slot in
    /// the open index: a drill never blocks a real proposal, and alerts
    /// never join a drill.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn open_drill_for(&self, service: &ServiceName) -> Result<Option<Proposal>, StoreError> {
        self.with(|t| t.open_at(&open_key(service, true)))
    }

    /// Every open proposal (real and drill): what periodic work looks at,
    /// without reading the whole history.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn open_proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        self.with(|t| {
            let mut out = Vec::new();
            for kv in t.open.iter() {
                let (key, id) = kv?;
                let id = parse_id("open_by_service", &key, &id)?;
                out.extend(t.get(&id)?);
            }
            Ok(out)
        })
    }

    /// The proposal's timeline, in order.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn timeline(&self, id: &ProposalId) -> Result<Vec<TimelineEvent>, StoreError> {
        self.with(|t| {
            t.timeline
                .scan_prefix(timeline_prefix(id))
                .map(|kv| {
                    let (k, v) = kv?;
                    decode("timeline", &k, &v)
                })
                .collect()
        })
    }

    /// Counts and the size on disk. Reads every dedup key: for tests,
    /// benchmarks and occasional inspection, not a hot path.
    ///
    /// # Errors
    /// Storage failure.
    pub fn sizes(&self) -> Result<Sizes, StoreError> {
        self.with(|t| {
            let mut dedup_bytes = 0;
            for kv in t.dedup.iter() {
                let (k, v) = kv?;
                dedup_bytes += (k.len() + v.len()) as u64;
            }
            Ok(Sizes {
                proposals: t.proposals.len(),
                dedup_keys: t.dedup.len(),
                dedup_bytes,
                parked_alerts: t.parked.len(),
                bytes_on_disk: t.db.size_on_disk()?,
            })
        })
    }

    /// Writes a raw value; for tests that need to corrupt or age the store.
    #[doc(hidden)]
    pub fn raw_insert(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(|t| t.db.open_tree(tree)?.insert(key, value))?;
        Ok(())
    }
}

impl Trees {
    fn get(&self, id: &ProposalId) -> Result<Option<Proposal>, StoreError> {
        let key = id.as_str().as_bytes();
        match self.proposals.get(key)? {
            Some(bytes) => Ok(Some(self.with_counted(decode(
                "proposals",
                key,
                &bytes,
            )?)?)),
            None => Ok(None),
        }
    }

    /// `p` with the alerts counted since its last rewrite.
    fn with_counted(&self, mut p: Proposal) -> Result<Proposal, StoreError> {
        if let Some(n) = self.counted.get(p.id.as_str().as_bytes())? {
            p.extra_alerts += read_u64(&n);
        }
        Ok(p)
    }

    fn open_at(&self, key: &[u8]) -> Result<Option<Proposal>, StoreError> {
        let Some(id) = self.open.get(key)? else {
            return Ok(None);
        };
        let id = parse_id("open_by_service", key, &id)?;
        self.get(&id)
    }

    fn queue(&mut self, name: &str) -> Result<&(sled::Tree, sled::Tree), StoreError> {
        if !self.queues.contains_key(name) {
            let items = self.db.open_tree(format!("outbox:{name}"))?;
            let refs = self.db.open_tree(format!("outbox:{name}:refs"))?;
            self.queues.insert(name.to_string(), (items, refs));
        }
        Ok(&self.queues[name])
    }
}

fn storage_only(e: TransactionError<()>) -> StoreError {
    match e {
        TransactionError::Storage(e) => StoreError::Io(e),
        TransactionError::Abort(()) => StoreError::Io(sled::Error::Unsupported("aborted".into())),
    }
}

fn claim_all<E>(
    dedup: &TransactionalTree,
    claims: &[(&str, &str)],
    now: DateTime<Utc>,
) -> Result<(), Tx<E>> {
    for (key, value) in claims {
        if let Some(seen) = dedup.get(key.as_bytes())? {
            let seen = decode("dedup", key.as_bytes(), &seen).map_err(tx_store)?;
            return Err(tx_store(StoreError::AlreadyClaimed {
                key: (*key).to_string(),
                seen,
            }));
        }
        let entry = DedupEntry {
            value: (*value).to_string(),
            at: now,
        };
        dedup.insert(key.as_bytes(), encode(&entry))?;
    }
    Ok(())
}

fn write_events<E>(
    timeline: &TransactionalTree,
    p: &mut Proposal,
    events: &[(DateTime<Utc>, EventKind)],
) -> Result<Vec<TimelineEvent>, Tx<E>> {
    let mut written = Vec::with_capacity(events.len());
    for (at, kind) in events {
        let event = TimelineEvent {
            seq: p.timeline_len,
            at: *at,
            kind: kind.clone(),
        };
        timeline.insert(timeline_key(&p.id, event.seq), encode(&event))?;
        p.timeline_len += 1;
        written.push(event);
    }
    Ok(written)
}

fn flatten<T, E>(result: Result<T, TransactionError<Abort<E>>>) -> Result<T, UpdateError<E>> {
    match result {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(Abort::Store(e))) => Err(UpdateError::Store(e)),
        Err(TransactionError::Abort(Abort::Rejected(e))) => Err(UpdateError::Rejected(e)),
        Err(TransactionError::Storage(e)) => Err(UpdateError::Store(StoreError::Io(e))),
    }
}

fn parse_id(tree: &'static str, key: &[u8], id: &[u8]) -> Result<ProposalId, StoreError> {
    let text = String::from_utf8_lossy(id);
    ProposalId::parse(&text).map_err(|e| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        detail: e.to_string(),
    })
}

/// sled merge operator of the `counted_alerts` tree: adds big-endian u64s.
fn add_u64(_key: &[u8], old: Option<&[u8]>, more: &[u8]) -> Option<Vec<u8>> {
    let sum = old.map_or(0, read_u64).saturating_add(read_u64(more));
    Some(sum.to_be_bytes().to_vec())
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(b)
}

/// Key of a service's slot in the open-proposal index; drills use their own.
fn open_key(service: &ServiceName, drill: bool) -> Vec<u8> {
    if drill {
        format!("drill/{service}").into_bytes()
    } else {
        service.as_str().as_bytes().to_vec()
    }
}

fn message_key(at: &MessageRef) -> Vec<u8> {
    format!("msg/{}/{}/{}", at.platform, at.channel, at.message).into_bytes()
}

fn pending_key(reference: &str) -> Vec<u8> {
    format!("pending/{reference}").into_bytes()
}

/// `created_at` as sortable bytes (nanoseconds, sign bit flipped), then the id.
fn time_key(p: &Proposal) -> Vec<u8> {
    let nanos = p
        .created_at
        .timestamp_nanos_opt()
        .unwrap_or(p.created_at.timestamp().saturating_mul(1_000_000_000));
    let mut k = ((nanos as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    k.extend_from_slice(p.id.as_str().as_bytes());
    k
}

fn items_last_key(items: &[Proposal]) -> Vec<u8> {
    items.last().map(time_key).unwrap_or_default()
}

mod migrate;
mod queue;
mod records;
mod schedule;

pub use queue::Queue;
pub use schedule::DrillMark;
