//! The chat outboxes' durable queues.

use super::*;

impl Store {
    /// The names of the durable queues this store holds (one per chat
    /// platform that ever queued a message).
    ///
    /// # Errors
    /// Storage failure.
    pub fn queue_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.with(|t| {
            t.db.tree_names()
                .iter()
                .filter_map(|n| {
                    let n = std::str::from_utf8(n).ok()?.strip_prefix("outbox:")?;
                    (!n.ends_with(":refs")).then(|| n.to_string())
                })
                .collect()
        }))
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
    /// restart). Returns whether it was queued. `queued_at` is kept beside
    /// it, for the age of the oldest entry (`/metrics`).
    ///
    /// # Errors
    /// Storage failure.
    pub fn push(
        &self,
        seq: u64,
        pending: Option<&str>,
        entry: &[u8],
        queued_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let at = encode(&queued_at);
        let result = self.store.write(|t| {
            let (items, refs) = t.queue(&self.name)?;
            (items, refs)
                .transaction(|(items, refs)| {
                    refs.insert(queued_key(seq), at.as_slice())?;
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

    /// When the first queued entry was queued; `None` when the queue is
    /// empty or the entry was queued by a rollbot that did not record it.
    ///
    /// # Errors
    /// Storage failure, or an unreadable time.
    pub fn oldest_queued_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.with(|items, refs| {
            let Some((k, _)) = items.first()? else {
                return Ok(None);
            };
            let key = queued_key(read_u64(&k));
            match refs.get(&key)? {
                Some(v) => Ok(Some(decode("outbox", &key, &v)?)),
                None => Ok(None),
            }
        })
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
                    refs.remove(queued_key(seq))?;
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

/// Where the time an entry was queued is kept, in the reference tree.
fn queued_key(seq: u64) -> Vec<u8> {
    let mut k = b"t:".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}
