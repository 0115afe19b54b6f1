//! The GitOps controllers' behaviour that matters to a rollback: Argo CD's
//! self-heal and Flux's reconciliation put a workload back to what git
//! says, so a `rollout undo` on such a workload does not last.
//!
//! A workload is owned when it carries Argo CD's tracking annotation or
//! instance label (`argocd.argoproj.io/tracking-id`,
//! `app.kubernetes.io/instance`, with Applications in namespace `argocd`
//! unless the tracking id names another) or Flux's labels
//! (`kustomize.toolkit.fluxcd.io/name|namespace`,
//! `helm.toolkit.fluxcd.io/name|namespace`). What git holds is the pod
//! template the workload had when the simulator started. While the owner
//! is active — an Application with `syncPolicy.automated.selfHeal` (and
//! `automated.enabled` not `false`), a Kustomization not suspended, a
//! HelmRelease not suspended with `driftDetection.mode: enabled` — a
//! workload whose pod template differs from git's is put back
//! `revert_after_ms` after the change was first seen, as the real
//! controllers do on their next sync. A suspended owner leaves it alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use super::semantic::equal_ignore_hash;
use super::store::{Kind, Store, WriteMode, name_of, namespace_of};

/// Argo CD's default self-heal delay, about 5 s after a drift.
pub const DEFAULT_REVERT_AFTER_MS: u64 = 5_000;

/// Where Argo CD keeps Applications when the tracking id names none.
const ARGOCD_NAMESPACE: &str = "argocd";
const TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// `gitops:` in the seed: how fast the simulated GitOps controllers revert.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GitOpsBehaviour {
    /// Milliseconds from a drift being seen to its revert.
    #[serde(default = "default_revert_after")]
    pub revert_after_ms: u64,
}

fn default_revert_after() -> u64 {
    DEFAULT_REVERT_AFTER_MS
}

impl Default for GitOpsBehaviour {
    fn default() -> Self {
        Self {
            revert_after_ms: DEFAULT_REVERT_AFTER_MS,
        }
    }
}

/// The kinds a GitOps tool may own.
const WORKLOADS: [Kind; 3] = [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet];

type Key = (Kind, String, String);

/// The owner a workload's labels and annotations name, as the GitOps
/// tools themselves read them: `(kind, namespace, name)`.
pub fn owner_of(workload: &Value) -> Option<Key> {
    let meta = &workload["metadata"];
    let label = |k: &str| meta["labels"][k].as_str().filter(|v| !v.is_empty());
    if let Some(id) = meta["annotations"][TRACKING_ID].as_str() {
        // `<app>:<group>/<kind>:<ns>/<name>`; `<app>` is `<ns>_<name>` for
        // an Application outside Argo CD's own namespace.
        let app = id.split(':').next().unwrap_or_default();
        let (ns, name) = app.split_once('_').unwrap_or((ARGOCD_NAMESPACE, app));
        if !name.is_empty() {
            return Some((Kind::Application, ns.to_owned(), name.to_owned()));
        }
    }
    for (kind, prefix) in [
        (Kind::Kustomization, "kustomize.toolkit.fluxcd.io"),
        (Kind::HelmRelease, "helm.toolkit.fluxcd.io"),
    ] {
        if let (Some(name), Some(ns)) = (
            label(&format!("{prefix}/name")),
            label(&format!("{prefix}/namespace")),
        ) {
            return Some((kind, ns.to_owned(), name.to_owned()));
        }
    }
    label(INSTANCE_LABEL).map(|app| {
        (
            Kind::Application,
            ARGOCD_NAMESPACE.to_owned(),
            app.to_owned(),
        )
    })
}

/// Whether `owner` (of `kind`) puts drifted workloads back now.
pub fn reverts(kind: Kind, owner: &Value) -> bool {
    let spec = &owner["spec"];
    match kind {
        Kind::Application => {
            let auto = &spec["syncPolicy"]["automated"];
            auto.is_object() && auto["enabled"] != false && auto["selfHeal"] == true
        }
        Kind::Kustomization => spec["suspend"] != true,
        Kind::HelmRelease => spec["suspend"] != true && spec["driftDetection"]["mode"] == "enabled",
        _ => false,
    }
}

/// The simulated GitOps controllers of one simulator.
pub(crate) struct Reconciler {
    store: Arc<Store>,
    delay: Duration,
    /// What git holds: each owned workload's pod template at start-up.
    desired: HashMap<Key, Value>,
    /// When each workload was first seen away from git while its owner
    /// was active.
    drift_since: HashMap<Key, Instant>,
}

impl Reconciler {
    /// Takes git's state from the owned workloads now in `store`.
    pub(crate) fn new(store: Arc<Store>, behaviour: &GitOpsBehaviour) -> Self {
        let mut desired = HashMap::new();
        for kind in WORKLOADS {
            for w in store.list(kind, None).0 {
                if owner_of(&w).is_some() {
                    let key = (kind, namespace_of(&w).to_owned(), name_of(&w).to_owned());
                    desired.insert(key, w["spec"]["template"].clone());
                }
            }
        }
        Self {
            store,
            delay: Duration::from_millis(behaviour.revert_after_ms),
            desired,
            drift_since: HashMap::new(),
        }
    }

    /// Reconciles every `interval` until `shutdown`.
    pub(crate) async fn run(
        mut self,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        if self.desired.is_empty() {
            return;
        }
        let mut every = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = every.tick() => self.reconcile(Instant::now()),
                _ = shutdown.wait_for(|v| *v) => return,
            }
        }
    }

    /// One pass: note new drifts, revert those that are due.
    fn reconcile(&mut self, now: Instant) {
        let keys: Vec<Key> = self.desired.keys().cloned().collect();
        for key in keys {
            let (kind, ns, name) = &key;
            let Some(w) = self.store.get(*kind, ns, name) else {
                continue;
            };
            let desired = &self.desired[&key];
            let active = owner_of(&w)
                .and_then(|(ok, ons, oname)| Some((ok, self.store.get(ok, &ons, &oname)?)))
                .is_some_and(|(ok, owner)| reverts(ok, &owner));
            if !active || equal_ignore_hash(&w["spec"]["template"], desired) {
                self.drift_since.remove(&key);
                continue;
            }
            let since = *self.drift_since.entry(key.clone()).or_insert(now);
            if now.duration_since(since) < self.delay {
                continue;
            }
            let mut reverted = w.clone();
            reverted["spec"]["template"] = desired.clone();
            match self.store.update(*kind, reverted, WriteMode::Main, false) {
                Ok(_) => {
                    tracing::info!(workload = %name, namespace = %ns, "simulated GitOps controller reverted a drift");
                    self.drift_since.remove(&key);
                }
                // A concurrent write: try again on the next pass.
                Err(e) => tracing::debug!(error = %e, "GitOps revert deferred"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn owners_are_read_like_the_tools_read_them() {
        let w = |labels: Value, annotations: Value| json!({"metadata": {"labels": labels, "annotations": annotations}});
        assert_eq!(
            owner_of(&w(
                json!({}),
                json!({TRACKING_ID: "payments:apps/Deployment:production/api"})
            )),
            Some((Kind::Application, "argocd".into(), "payments".into()))
        );
        assert_eq!(
            owner_of(&w(
                json!({}),
                json!({TRACKING_ID: "team-a_payments:apps/Deployment:production/api"})
            )),
            Some((Kind::Application, "team-a".into(), "payments".into()))
        );
        assert_eq!(
            owner_of(&w(json!({INSTANCE_LABEL: "payments"}), json!({}))),
            Some((Kind::Application, "argocd".into(), "payments".into()))
        );
        assert_eq!(
            owner_of(&w(
                json!({"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}),
                json!({})
            )),
            Some((Kind::Kustomization, "flux-system".into(), "apps".into()))
        );
        assert_eq!(
            owner_of(&w(
                json!({"helm.toolkit.fluxcd.io/name": "api", "helm.toolkit.fluxcd.io/namespace": "production"}),
                json!({})
            )),
            Some((Kind::HelmRelease, "production".into(), "api".into()))
        );
        assert_eq!(owner_of(&w(json!({"app": "x"}), json!({}))), None);
    }

    #[test]
    fn only_an_active_owner_reverts() {
        let app = |policy: Value| json!({"spec": {"syncPolicy": policy}});
        assert!(reverts(
            Kind::Application,
            &app(json!({"automated": {"selfHeal": true}}))
        ));
        assert!(!reverts(
            Kind::Application,
            &app(json!({"automated": {"selfHeal": false}}))
        ));
        assert!(!reverts(
            Kind::Application,
            &app(json!({"automated": {"selfHeal": true, "enabled": false}}))
        ));
        assert!(!reverts(Kind::Application, &app(json!({}))));
        assert!(reverts(Kind::Kustomization, &json!({"spec": {}})));
        assert!(!reverts(
            Kind::Kustomization,
            &json!({"spec": {"suspend": true}})
        ));
        assert!(!reverts(Kind::HelmRelease, &json!({"spec": {}})));
        assert!(reverts(
            Kind::HelmRelease,
            &json!({"spec": {"driftDetection": {"mode": "enabled"}}})
        ));
    }
}
