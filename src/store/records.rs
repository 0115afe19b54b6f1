//! The store's side records: claimed deduplication keys, the chat message
//! each proposal is bound to, parked alerts and the inbox of acknowledged
//! chat inputs.

use super::*;

impl Store {
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
}
