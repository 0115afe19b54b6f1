//! Upgrades a store written by an older rollbot to this one's layout.

use super::*;

/// Brings a store written by an older rollbot up to this one's layout:
/// message bindings move out of the dedup keys (so those can expire), and
/// the time index of proposals is built once.
pub(super) fn migrate(t: &Trees) -> Result<(), StoreError> {
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
