//! Durable storage in sled: proposals, their timelines, the open proposal of
//! each service, and deduplication keys.
//!
//! Every value is wrapped in an envelope carrying a schema version
//! (`{"v":1,"data":…}`) so a later rollbot can read what this one wrote.
//! Writes that change a proposal go through [`Store::update`], one sled
//! transaction over all trees: the state change, its timeline events and the
//! open-proposal index change together or not at all. Because the closure
//! sees the stored value, two tasks racing to make the same transition cannot
//! both succeed — that is what guarantees exactly one execution per proposal.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::domain::{EventKind, Proposal, ProposalId, ServiceName, TimelineEvent};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;

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

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own plain data types into JSON cannot fail.
    serde_json::to_vec(&EnvelopeOut {
        v: SCHEMA_VERSION,
        data: value,
    })
    .expect("store values serialize to JSON")
}

fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    let key_text = || String::from_utf8_lossy(key).into_owned();
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

enum Abort<E> {
    Store(StoreError),
    Rejected(E),
}

type Tx<E> = ConflictableTransactionError<Abort<E>>;

fn tx_store<E>(e: StoreError) -> Tx<E> {
    ConflictableTransactionError::Abort(Abort::Store(e))
}

/// The sled database and its trees. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    proposals: sled::Tree,
    timeline: sled::Tree,
    open: sled::Tree,
    dedup: sled::Tree,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the directory cannot be used, e.g. another
    /// process holds its lock.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
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
        Ok(Self {
            proposals: db.open_tree("proposals")?,
            timeline: db.open_tree("timeline")?,
            open: db.open_tree("open_by_service")?,
            dedup: db.open_tree("dedup")?,
            db,
        })
    }

    /// A tree for another module's own records (e.g. the chat outbox).
    ///
    /// # Errors
    /// [`StoreError::Io`].
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Waits until everything written so far is on disk.
    ///
    /// # Errors
    /// [`StoreError::Io`].
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// A quick read proving the store answers (for `/readyz`).
    ///
    /// # Errors
    /// [`StoreError::Io`].
    pub fn ping(&self) -> Result<(), StoreError> {
        self.proposals.first()?;
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
        let id_key = proposal.id.as_str().as_bytes();
        let result = (&self.proposals, &self.timeline, &self.open).transaction(
            |(proposals, timeline, open)| {
                if proposals.get(id_key)?.is_some() {
                    return Err(tx_store::<()>(StoreError::Exists(proposal.id.clone())));
                }
                let mut p = proposal.clone();
                if p.is_open() {
                    let service_key = open_key(&p.service, p.drill);
                    let service_key = service_key.as_slice();
                    if let Some(existing) = open.get(service_key)? {
                        let existing = String::from_utf8_lossy(&existing).into_owned();
                        let existing = ProposalId::parse(&existing).map_err(|e| {
                            tx_store(StoreError::Corrupt {
                                tree: "open_by_service",
                                key: p.service.to_string(),
                                detail: e.to_string(),
                            })
                        })?;
                        return Err(tx_store(StoreError::AlreadyOpen {
                            service: p.service.clone(),
                            existing,
                        }));
                    }
                    open.insert(service_key, id_key)?;
                }
                write_events(timeline, &mut p, events)?;
                proposals.insert(id_key, encode(&p))?;
                Ok(())
            },
        );
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
        let id_key = id.as_str().as_bytes();
        let result = (&self.proposals, &self.timeline, &self.open).transaction(
            |(proposals, timeline, open)| {
                let Some(bytes) = proposals.get(id_key)? else {
                    return Err(tx_store(StoreError::NotFound(id.clone())));
                };
                let mut p: Proposal = decode("proposals", id_key, &bytes).map_err(tx_store)?;
                let was_open = p.is_open();
                let (out, events) = change(&mut p)
                    .map_err(|e| ConflictableTransactionError::Abort(Abort::Rejected(e)))?;
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
        );
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

    /// # Errors
    /// [`StoreError::Corrupt`] naming the key if the value cannot be read.
    pub fn get(&self, id: &ProposalId) -> Result<Option<Proposal>, StoreError> {
        let key = id.as_str().as_bytes();
        self.proposals
            .get(key)?
            .map(|bytes| decode("proposals", key, &bytes))
            .transpose()
    }

    /// All proposals, newest first.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn list(&self) -> Result<Vec<Proposal>, StoreError> {
        let mut all = self
            .proposals
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode("proposals", &k, &v)
            })
            .collect::<Result<Vec<Proposal>, _>>()?;
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// The open proposal of `service`, if any.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn open_for(&self, service: &ServiceName) -> Result<Option<Proposal>, StoreError> {
        self.open_at(&open_key(service, false))
    }

    /// The open drill of `service`, if any. Drills have their own slot in
    /// the open index: a drill never blocks a real proposal, and alerts
    /// never join a drill.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn open_drill_for(&self, service: &ServiceName) -> Result<Option<Proposal>, StoreError> {
        self.open_at(&open_key(service, true))
    }

    fn open_at(&self, key: &[u8]) -> Result<Option<Proposal>, StoreError> {
        let Some(id) = self.open.get(key)? else {
            return Ok(None);
        };
        self.open_entry(key, &id)
    }

    /// Every open proposal (real and drill): what periodic work looks at,
    /// without reading the whole history.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn open_proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        let mut out = Vec::new();
        for kv in self.open.iter() {
            let (key, id) = kv?;
            out.extend(self.open_entry(&key, &id)?);
        }
        Ok(out)
    }

    fn open_entry(&self, key: &[u8], id: &[u8]) -> Result<Option<Proposal>, StoreError> {
        let text = String::from_utf8_lossy(id).into_owned();
        let id = ProposalId::parse(&text).map_err(|e| StoreError::Corrupt {
            tree: "open_by_service",
            key: String::from_utf8_lossy(key).into_owned(),
            detail: e.to_string(),
        })?;
        self.get(&id)
    }

    /// The proposal's timeline, in order.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn timeline(&self, id: &ProposalId) -> Result<Vec<TimelineEvent>, StoreError> {
        self.timeline
            .scan_prefix(timeline_prefix(id))
            .map(|kv| {
                let (k, v) = kv?;
                decode("timeline", &k, &v)
            })
            .collect()
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
        match self.dedup.compare_and_swap(
            key.as_bytes(),
            None as Option<&[u8]>,
            Some(encode(&entry)),
        )? {
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
        self.dedup
            .get(key.as_bytes())?
            .map(|v| decode("dedup", key.as_bytes(), &v))
            .transpose()
    }

    /// Writes a raw value; for tests that need to corrupt or age the store.
    #[doc(hidden)]
    pub fn raw_insert(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.db.open_tree(tree)?.insert(key, value)?;
        Ok(())
    }
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

/// Key of a service's slot in the open-proposal index; drills use their own.
fn open_key(service: &ServiceName, drill: bool) -> Vec<u8> {
    if drill {
        format!("drill/{service}").into_bytes()
    } else {
        service.as_str().as_bytes().to_vec()
    }
}
