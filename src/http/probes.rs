//! Reachability of what rollbacks act on (e.g. a Docker endpoint), shown
//! by `/readyz`.
//!
//! An unreachable target does not make rollbot unready: alerts are still
//! taken and recorded, so a load balancer must keep sending them; the body
//! says which target cannot be reached and why, for the person or monitor
//! reading it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How long one probe may take before it counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// One check: `Ok` when the target answers, else why not.
pub type ProbeFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The targets `/readyz` looks at, by name (e.g. `docker unix:///var/run/docker.sock`).
#[derive(Clone, Default)]
pub struct TargetProbes {
    probes: Vec<(String, ProbeFn)>,
}

impl TargetProbes {
    /// Adds the probe of `name`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, probe: ProbeFn) -> Self {
        self.probes.push((name.into(), probe));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// Every probe's answer, run together, each bounded by [`PROBE_TIMEOUT`]:
    /// `"ok"` or `"unreachable: …"`.
    pub async fn check(&self) -> std::collections::BTreeMap<String, String> {
        let runs = self.probes.iter().map(|(name, probe)| async move {
            let answer = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                Ok(Ok(())) => "ok".to_string(),
                Ok(Err(e)) => format!("unreachable: {e}"),
                Err(_) => format!(
                    "unreachable: no answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                ),
            };
            (name.clone(), answer)
        });
        futures::future::join_all(runs).await.into_iter().collect()
    }
}
