//! Following a rollout to its end through a watch that survives API
//! server hiccups: failed watches and lists are retried until the
//! rollout's own progress deadline says the verdict is due.

use std::time::Duration;

use futures_util::StreamExt;
use kube::runtime::watcher;
use serde_json::Value;

use super::{KubeError, KubeTarget, WorkloadKind, to_json};

/// First wait after a failed watch or list; doubled per failure in a row.
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// `progressDeadlineSeconds` when the Deployment was never seen (the
/// API server's default).
pub(super) const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

/// Whether a watch or list failure may pass: server errors, throttling,
/// an expired resourceVersion and network failures are retried; a refusal
/// (403, 404, 400…) will not change by retrying.
fn transient(e: &watcher::Error) -> bool {
    let retryable = |code: u16| code >= 500 || code == 429 || code == 410;
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => match e {
            kube::Error::Api(s) => retryable(s.code),
            _ => true,
        },
        watcher::Error::WatchError(s) => retryable(s.code),
        watcher::Error::NoResourceVersion => false,
    }
}

/// How long a rollout may go without progress before it counts as failed:
/// a Deployment's `spec.progressDeadlineSeconds`. StatefulSets and
/// DaemonSets have none; only the overall timeout bounds them.
pub(super) fn progress_deadline(obj: &Value) -> Option<Duration> {
    obj.pointer("/spec/progressDeadlineSeconds")
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
}

pub(super) async fn follow_stream<K, S>(
    stream: S,
    target: &KubeTarget,
    mut deadline: Option<Duration>,
    on_line: &mut impl FnMut(String),
    status: fn(&Value) -> Result<(String, bool), KubeError>,
) -> Result<(), KubeError>
where
    K: serde::Serialize,
    S: futures_util::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    // Progress as the controller counts it: a new status line.
    let mut last_line = String::new();
    let mut last_progress = tokio::time::Instant::now();
    let mut wait = RETRY_FIRST;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                wait = RETRY_FIRST;
                let obj = to_json(&o);
                if target.kind == WorkloadKind::Deployment {
                    deadline = progress_deadline(&obj).or(deadline);
                }
                let (line, done) = status(&obj)?;
                let line = line.trim_end_matches('\n').to_owned();
                if line != last_line {
                    last_progress = tokio::time::Instant::now();
                    last_line.clone_from(&line);
                }
                on_line(line);
                if done {
                    return Ok(());
                }
            }
            Ok(watcher::Event::Delete(_)) => return Err(KubeError::Deleted),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => wait = RETRY_FIRST,
            Err(e) if !transient(&e) => return Err(KubeError::Watch(e)),
            Err(e) => {
                let blind = last_progress.elapsed();
                if let Some(d) = deadline
                    && blind >= d
                {
                    return Err(KubeError::LostTrack {
                        seconds: blind.as_secs(),
                        resource: "deployment",
                        name: target.name.clone(),
                        namespace: target.namespace.clone(),
                        error: e.to_string(),
                    });
                }
                tracing::warn!(workload = %target, error = %e, retry_in = ?wait, "watching the rollout failed; retrying");
                // Never sleep past the deadline: the verdict is due then.
                let pause = deadline.map_or(wait, |d| wait.min(d.saturating_sub(blind)));
                tokio::time::sleep(pause).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
    Err(KubeError::Timeout)
}
