//! Fault injection: makes the simulator fail the way a real API server
//! does under load or during a control-plane restart, so tests can check
//! that rollbot retries instead of giving a verdict on a hiccup.
//!
//! A fault is armed for the next N requests of one kind of one resource
//! (e.g. "the next 3 Deployment watches") and used up as requests arrive.
//! Failures are answered as kube-apiserver answers them: a `500` `Status`
//! with reason `InternalError`, or a watch whose connection is cut after
//! its first event (what clients see when an apiserver instance goes away).

use std::collections::HashMap;
use std::sync::Mutex;

use super::store::Kind;

/// Which requests a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultOn {
    /// `GET` of a collection without `watch`.
    List,
    /// `GET …?watch=true` (answered `500` before the stream starts).
    Watch,
    /// `GET …?watch=true`, accepted, then cut after its first event.
    WatchCut,
}

/// The faults still armed, per resource kind and request kind.
#[derive(Default)]
pub(crate) struct Faults {
    armed: Mutex<HashMap<(Kind, FaultOn), usize>>,
}

impl Faults {
    /// Arms `count` more failures of `on` requests for `kind`.
    pub(crate) fn arm(&self, kind: Kind, on: FaultOn, count: usize) {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        *armed.entry((kind, on)).or_default() += count;
    }

    /// Uses up one armed fault of `on` for `kind`, if any is left.
    pub(crate) fn take(&self, kind: Kind, on: FaultOn) -> bool {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        match armed.get_mut(&(kind, on)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// Faults armed but not yet used.
    pub(crate) fn left(&self) -> usize {
        self.armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_used_up_one_request_at_a_time() {
        let f = Faults::default();
        f.arm(Kind::Deployment, FaultOn::Watch, 2);
        assert!(!f.take(Kind::Deployment, FaultOn::List));
        assert!(!f.take(Kind::ReplicaSet, FaultOn::Watch));
        assert_eq!(f.left(), 2);
        assert!(f.take(Kind::Deployment, FaultOn::Watch));
        assert!(f.take(Kind::Deployment, FaultOn::Watch));
        assert!(!f.take(Kind::Deployment, FaultOn::Watch));
        assert_eq!(f.left(), 0);
    }
}
