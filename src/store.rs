//! Durable storage in sled: proposals, their timelines, the open proposal of
//! each service, deduplication keys, the chat message each proposal is
//! bound to, parked alerts and the chat outboxes' queues.
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
struct EnvelopeIn {
    v: u32,
    data: serde_json::Value,
}

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
        // sled lets go of its file lock from a background thread shortly
        // after the last handle is dropped, so a store closed and opened
        // again in one process (a restart in tests, `rollbot report` after
        // a server stopped) may find it still held for a moment.
        let mut tries = 0;
        let db = loop {
            match sled::Config::new().path(path).open() {
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
            counted: db.open_tree("counted_alerts")?,
            parked: db.open_tree("pending_alerts")?,
            inbox: db.open_tree("inbox")?,
            queues: HashMap::new(),
            db,
        };
        migrate(&trees)?;
        Ok(Self {
            inner: Arc::new(Shared {
                trees: Mutex::new(trees),
                flushing: tokio::sync::Mutex::new(()),
                written: AtomicU64::new(0),
                flushed: AtomicU64::new(0),
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
                    write_events(timeline, &mut p, events)?;
                    proposals.insert(id_key, encode(&p))?;
                    Ok(())
                })
        });
        flatten(result).map_err(|e| match e {
            UpdateError::Store(s) => s,
            UpdateError::Rejected(()) => unreachable!("insert never rejects"),
        })
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
                    write_events(timeline, &mut p, &stamped)?;
                    proposals.insert(id_key, encode(&p))?;
                    Ok((out, p))
                },
            )
        });
        flatten(result)
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
    /// claiming `claims` in the same transaction.
    ///
    /// # Errors
    /// [`StoreError::AlreadyClaimed`], or a storage failure.
    pub fn count_alerts(
        &self,
        id: &ProposalId,
        n: u64,
        now: DateTime<Utc>,
        claims: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let id_key = id.as_str().as_bytes();
        let result = self.write(|t| {
            (&t.counted, &t.dedup).transaction(|(counted, dedup)| {
                claim_all::<()>(dedup, claims, now)?;
                let before = counted.get(id_key)?.map_or(0, |v| read_u64(&v));
                counted.insert(id_key, &(before + n).to_be_bytes()[..])?;
                Ok(())
            })
        });
        flatten(result).map_err(|e| match e {
            UpdateError::Store(s) => s,
            UpdateError::Rejected(()) => unreachable!("counting never rejects"),
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

    /// Records `key` if it was never seen (insert-if-absent).
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn claim(&self, key: &str, value: &str, now: DateTime<Utc>) -> Result<Claim, StoreError> {
        let entry = DedupEntry {
            value: value.to_string(),
            at: now,
        };
        let cas = self.write(|t| {
            t.dedup
                .compare_and_swap(key.as_bytes(), None as Option<&[u8]>, Some(encode(&entry)))
        })?;
        match cas {
            Ok(()) => Ok(Claim::New),
            Err(cas) => {
                let current = cas.current.unwrap_or_default();
                Ok(Claim::Seen(decode("dedup", key.as_bytes(), &current)?))
            }
        }
    }

    /// Looks a dedup key up without claiming it.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn seen(&self, key: &str) -> Result<Option<DedupEntry>, StoreError> {
        self.with(|t| t.dedup.get(key.as_bytes()))?
            .map(|v| decode("dedup", key.as_bytes(), &v))
            .transpose()
    }

    /// Forgets dedup keys claimed before `before`; returns how many. Works
    /// in chunks, letting other calls in between, so a large backlog never
    /// holds the store for long.
    ///
    /// # Errors
    /// Storage failure.
    pub fn sweep_dedup(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut from: Vec<u8> = Vec::new();
        loop {
            let (done, last) = self.write(|t| -> Result<_, StoreError> {
                let mut seen = 0;
                let mut last = None;
                for kv in t.dedup.range(from.as_slice()..) {
                    let (k, v) = kv?;
                    seen += 1;
                    // An unreadable entry is old by definition: it cannot
                    // deduplicate anything any more.
                    let old = decode::<DedupEntry>("dedup", &k, &v).map_or(true, |e| e.at < before);
                    if old {
                        t.dedup.remove(&k)?;
                        removed += 1;
                    }
                    last = Some(k.to_vec());
                    if seen == SWEEP_CHUNK {
                        return Ok((false, last));
                    }
                }
                Ok((true, last))
            })?;
            match (done, last) {
                (false, Some(mut k)) => {
                    // Continue just after the last key seen.
                    k.push(0);
                    from = k;
                }
                _ => return Ok(removed),
            }
        }
    }

    /// Binds `id` to its chat message `at` (reactions on it are votes on
    /// `id`), adds `at` to the proposal's messages if it is not there, and
    /// forgets that the proposal was waiting to be posted — one transaction.
    ///
    /// # Errors
    /// Unknown proposal or storage failure.
    pub fn bind_message(
        &self,
        id: &ProposalId,
        at: &MessageRef,
        now: DateTime<Utc>,
    ) -> Result<Proposal, StoreError> {
        let id_key = id.as_str().as_bytes();
        let result = self.write(|t| {
            (&t.proposals, &t.messages, &t.unbound, &t.counted).transaction(
                |(proposals, messages, unbound, counted)| {
                    let Some(bytes) = proposals.get(id_key)? else {
                        return Err(tx_store::<()>(StoreError::NotFound(id.clone())));
                    };
                    let mut p: Proposal = decode("proposals", id_key, &bytes).map_err(tx_store)?;
                    if let Some(n) = counted.remove(id_key)? {
                        p.extra_alerts += read_u64(&n);
                    }
                    messages.insert(message_key(at), id_key)?;
                    if is_provisional(&at.message) {
                        messages.insert(pending_key(&at.message), encode(at))?;
                    }
                    if !p.messages.contains(at) {
                        p.messages.push(at.clone());
                        p.updated_at = now;
                    }
                    unbound.remove(id_key)?;
                    proposals.insert(id_key, encode(&p))?;
                    Ok(p)
                },
            )
        });
        flatten(result).map_err(|e| match e {
            UpdateError::Store(s) => s,
            UpdateError::Rejected(()) => unreachable!("binding never rejects"),
        })
    }

    /// The proposal whose chat message is `at`.
    ///
    /// # Errors
    /// Storage failure.
    pub fn message_owner(&self, at: &MessageRef) -> Result<Option<ProposalId>, StoreError> {
        let key = message_key(at);
        self.with(|t| t.messages.get(&key))?
            .map(|v| parse_id("messages", &key, &v))
            .transpose()
    }

    /// Proposals stored but never bound to a chat message (rollbot stopped
    /// between the two): id and the channel they were meant for.
    ///
    /// # Errors
    /// Storage failure.
    pub fn unbound(&self) -> Result<Vec<(ProposalId, String)>, StoreError> {
        self.with(|t| {
            t.unbound
                .iter()
                .map(|kv| {
                    let (k, v) = kv?;
                    Ok((
                        parse_id("unbound", &k, &k)?,
                        String::from_utf8_lossy(&v).into_owned(),
                    ))
                })
                .collect()
        })
    }

    /// Whether `id` is still waiting to be bound to its chat message.
    ///
    /// # Errors
    /// Storage failure.
    pub fn is_unbound(&self, id: &ProposalId) -> Result<bool, StoreError> {
        Ok(self.with(|t| t.unbound.contains_key(id.as_str().as_bytes()))?)
    }

    /// Remembers `value` under `key` until [`Store::unpark`] (alerts waiting
    /// for their route's minimum firing duration).
    ///
    /// # Errors
    /// Storage failure.
    pub fn park<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StoreError> {
        self.write(|t| t.parked.insert(key, encode(value)))?;
        Ok(())
    }

    /// [`Store::park`] claiming the dedup key `claim` in the same write.
    ///
    /// # Errors
    /// [`StoreError::AlreadyClaimed`] (nothing parked), or storage failure.
    pub fn park_claiming<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        claim: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let bytes = encode(value);
        let result = self.write(|t| {
            (&t.parked, &t.dedup).transaction(|(parked, dedup)| {
                claim_all::<()>(dedup, &[(claim, "")], now)?;
                parked.insert(key, bytes.clone())?;
                Ok(())
            })
        });
        flatten(result).map_err(|e| match e {
            UpdateError::Store(s) => s,
            UpdateError::Rejected(()) => unreachable!("parking never rejects"),
        })
    }

    /// Forgets a parked value and claims `claim`, in one write.
    ///
    /// # Errors
    /// [`StoreError::AlreadyClaimed`] (nothing changed), or storage failure.
    pub fn unpark_claiming(
        &self,
        key: &[u8],
        claim: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self.write(|t| {
            (&t.parked, &t.dedup).transaction(|(parked, dedup)| {
                claim_all::<()>(dedup, &[(claim, "")], now)?;
                parked.remove(key)?;
                Ok(())
            })
        });
        flatten(result).map_err(|e| match e {
            UpdateError::Store(s) => s,
            UpdateError::Rejected(()) => unreachable!("unparking never rejects"),
        })
    }

    /// Forgets a parked value; whether it was there.
    ///
    /// # Errors
    /// Storage failure.
    pub fn unpark(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.write(|t| t.parked.remove(key))?.is_some())
    }

    /// Whether `key` is parked.
    ///
    /// # Errors
    /// Storage failure.
    pub fn is_parked(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.with(|t| t.parked.contains_key(key))?)
    }

    /// Every parked value, in key order.
    ///
    /// # Errors
    /// Storage failure or an unreadable value (named).
    pub fn parked<T: DeserializeOwned>(&self) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        self.with(|t| {
            t.parked
                .iter()
                .map(|kv| {
                    let (k, v) = kv?;
                    Ok((k.to_vec(), decode("pending_alerts", &k, &v)?))
                })
                .collect()
        })
    }

    /// Records an input that was acknowledged but whose work is still to
    /// do, until [`Store::inbox_done`]; [`Store::inbox`] lists what a
    /// restart must finish.
    ///
    /// # Errors
    /// Storage failure.
    pub fn inbox_put<T: Serialize>(&self, key: &str, input: &T) -> Result<(), StoreError> {
        self.write(|t| t.inbox.insert(key.as_bytes(), encode(input)))?;
        Ok(())
    }

    /// Forgets a finished input.
    ///
    /// # Errors
    /// Storage failure.
    pub fn inbox_done(&self, key: &str) -> Result<(), StoreError> {
        self.write(|t| t.inbox.remove(key.as_bytes()))?;
        Ok(())
    }

    /// Inputs whose keys start with `prefix` that are still to be done.
    ///
    /// # Errors
    /// Storage failure or an unreadable input (named).
    pub fn inbox<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>, StoreError> {
        self.with(|t| {
            t.inbox
                .scan_prefix(prefix.as_bytes())
                .map(|kv| {
                    let (k, v) = kv?;
                    Ok((
                        String::from_utf8_lossy(&k).into_owned(),
                        decode("inbox", &k, &v)?,
                    ))
                })
                .collect()
        })
    }

    /// The durable queue called `name` (a chat outbox).
    ///
    /// # Errors
    /// Storage failure.
    pub fn queue(&self, name: &str) -> Result<Queue, StoreError> {
        self.with(|t| t.queue(name).map(|_| ()))?;
        Ok(Queue {
            store: self.clone(),
            name: name.to_string(),
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

/// A durable FIFO of opaque entries keyed by sequence number, with a map of
/// provisional message references to real ones: the storage of a chat
/// outbox ([`crate::outbox`]). Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    store: Store,
    name: String,
}

impl Queue {
    fn with<T>(
        &self,
        f: impl FnOnce(&sled::Tree, &sled::Tree) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.store.with(|t| {
            let (items, refs) = t.queue(&self.name)?;
            f(items, refs)
        })
    }

    /// The last sequence number used, if any entry is queued.
    ///
    /// # Errors
    /// Storage failure.
    pub fn last_seq(&self) -> Result<Option<u64>, StoreError> {
        self.with(|items, _| Ok(items.last()?.map(|(k, _)| read_u64(&k))))
    }

    /// Queues `entry` as `seq` unless an entry establishing the provisional
    /// reference `pending` was queued before (a repeated post after a
    /// restart). Returns whether it was queued.
    ///
    /// # Errors
    /// Storage failure.
    pub fn push(&self, seq: u64, pending: Option<&str>, entry: &[u8]) -> Result<bool, StoreError> {
        let result = self.store.write(|t| {
            let (items, refs) = t.queue(&self.name)?;
            (items, refs)
                .transaction(|(items, refs)| {
                    if let Some(p) = pending {
                        let mark = format!("q:{p}");
                        if refs.get(mark.as_bytes())?.is_some() {
                            return Ok(false);
                        }
                        refs.insert(mark.as_bytes(), &seq.to_be_bytes()[..])?;
                    }
                    items.insert(&seq.to_be_bytes()[..], entry)?;
                    Ok::<_, ConflictableTransactionError<()>>(true)
                })
                .map_err(storage_only)
        })?;
        Ok(result)
    }

    /// The first queued entry.
    ///
    /// # Errors
    /// Storage failure.
    pub fn head(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.with(|items, _| Ok(items.first()?.map(|(k, v)| (read_u64(&k), v.to_vec()))))
    }

    /// Entries queued.
    pub fn len(&self) -> usize {
        self.with(|items, _| Ok(items.len())).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A value of the reference map (`p:{pending}` → real, `r:{real}` → pending).
    ///
    /// # Errors
    /// Storage failure.
    pub fn reference(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.with(|_, refs| {
            Ok(refs
                .get(key.as_bytes())?
                .map(|v| String::from_utf8_lossy(&v).into_owned()))
        })
    }

    /// Removes entry `seq` and, atomically with it, records that the
    /// provisional reference `pending` became `real`: in the reference map,
    /// and on the proposal bound to `pending`, whose message now names
    /// `real` (so the API shows it and reactions on it count).
    ///
    /// # Errors
    /// Storage failure.
    pub fn complete(&self, seq: u64, mapping: Option<(&str, &str)>) -> Result<(), StoreError> {
        let result = self.store.write(|t| {
            let (items, refs) = match t.queue(&self.name) {
                Ok(trees) => trees.clone(),
                Err(e) => return Err(TransactionError::Abort(Abort::Store(e))),
            };
            (&items, &refs, &t.messages, &t.proposals).transaction(
                |(items, refs, messages, proposals)| {
                    items.remove(&seq.to_be_bytes()[..])?;
                    let Some((pending, real)) = mapping else {
                        return Ok(());
                    };
                    refs.insert(format!("p:{pending}").as_bytes(), real.as_bytes())?;
                    refs.insert(format!("r:{real}").as_bytes(), pending.as_bytes())?;
                    refs.remove(format!("q:{pending}").as_bytes())?;
                    let Some(bound) = messages.get(pending_key(pending))? else {
                        return Ok(());
                    };
                    let old: MessageRef =
                        decode("messages", pending.as_bytes(), &bound).map_err(tx_store)?;
                    let Some(id) = messages.get(message_key(&old))? else {
                        return Ok(());
                    };
                    let new = MessageRef {
                        message: real.to_string(),
                        ..old.clone()
                    };
                    messages.insert(message_key(&new), id.clone())?;
                    if let Some(bytes) = proposals.get(&id)? {
                        let mut p: Proposal = decode("proposals", &id, &bytes).map_err(tx_store)?;
                        for m in &mut p.messages {
                            if *m == old {
                                *m = new.clone();
                            }
                        }
                        proposals.insert(&id, encode(&p))?;
                    }
                    Ok(())
                },
            )
        });
        flatten::<(), ()>(result).map_err(|e| match e {
            UpdateError::Store(s) => s,
            UpdateError::Rejected(()) => unreachable!("completing never rejects"),
        })
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
) -> Result<(), Tx<E>> {
    for (at, kind) in events {
        let event = TimelineEvent {
            seq: p.timeline_len,
            at: *at,
            kind: kind.clone(),
        };
        timeline.insert(timeline_key(&p.id, event.seq), encode(&event))?;
        p.timeline_len += 1;
    }
    Ok(())
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

/// Brings a store written by an older rollbot up to this one's layout:
/// message bindings move out of the dedup keys (so those can expire), and
/// the time index of proposals is built once.
fn migrate(t: &Trees) -> Result<(), StoreError> {
    if t.by_time.is_empty() && !t.proposals.is_empty() {
        for kv in t.proposals.iter() {
            let (k, v) = kv?;
            // An unreadable proposal is reported when it is read, not here.
            if let Ok(p) = decode::<Proposal>("proposals", &k, &v) {
                t.by_time.insert(time_key(&p), &[][..])?;
            }
        }
    }
    let old: Vec<_> = t
        .dedup
        .scan_prefix(b"msg:")
        .collect::<Result<Vec<_>, _>>()?;
    for (k, v) in old {
        if let Ok(e) = decode::<DedupEntry>("dedup", &k, &v) {
            // msg:{platform}:{channel}:{message}
            let text = String::from_utf8_lossy(&k[4..]).into_owned();
            let mut parts = text.splitn(3, ':');
            if let (Some(platform), Some(channel), Some(message)) =
                (parts.next(), parts.next(), parts.next())
            {
                let at = MessageRef {
                    platform: platform.into(),
                    channel: channel.into(),
                    message: message.into(),
                };
                t.messages.insert(message_key(&at), e.value.as_bytes())?;
            }
        }
        t.dedup.remove(&k)?;
    }
    Ok(())
}
