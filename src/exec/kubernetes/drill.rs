//! Rollback drills: rehearse the whole flow on a copy of the real history.
//!
//! A drill copies one service's workload and the objects that carry its
//! revision history (a Deployment's ReplicaSets, a StatefulSet's or
//! DaemonSet's ControllerRevisions) from the configured cluster with GET and
//! LIST only, loads them into a fresh in-process simulator ([`crate::sim`])
//! on 127.0.0.1, and runs the proposal, the two-person rule, the rollback and
//! the report against that copy. `rollout history` of the copy is the
//! source's: same revision numbers, change-causes, images and templates.
//!
//! [`Drills`] keeps each drill's simulator alive until its proposal is over;
//! the engine runs a drill proposal only against the simulator registered for
//! it here, so a drill whose simulator is gone (e.g. after a restart) fails
//! with nothing changed instead of falling back to the real cluster.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::Value;

use crate::domain::ProposalId;
use crate::exec::kubernetes::{KubeTarget, WorkloadKind};
use crate::sim::SimHandle;
use crate::sim::seed::{Behaviour, Seed};

/// How long one simulated pod step takes in a drill. Shorter than a real
/// pod start so a drill's rollout takes seconds, long enough that progress
/// is visible.
pub const DRILL_POD_STEP_MS: u64 = 200;

/// Why a drill could not start.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error(
        "{what} \"{name}\" not found in namespace \"{namespace}\"; check [services.*.kubernetes] in the config"
    )]
    NotFound {
        what: &'static str,
        namespace: String,
        name: String,
    },
    #[error(
        "cannot read {what} in namespace \"{namespace}\" from the cluster: {source}; drills need get/list on it (see deploy/rbac.yaml)"
    )]
    Read {
        what: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot start the drill simulator: {0}")]
    Simulator(String),
}

/// The copied objects of one workload: the workload first, then its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub target: KubeTarget,
    pub objects: Vec<Value>,
}

fn resource(kind: WorkloadKind) -> (ApiResource, &'static str) {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
    match kind {
        WorkloadKind::Deployment => (ApiResource::erase::<Deployment>(&()), "deployment"),
        WorkloadKind::StatefulSet => (ApiResource::erase::<StatefulSet>(&()), "statefulset"),
        WorkloadKind::DaemonSet => (ApiResource::erase::<DaemonSet>(&()), "daemonset"),
    }
}

fn history_resource(kind: WorkloadKind) -> (ApiResource, &'static str) {
    use k8s_openapi::api::apps::v1::{ControllerRevision, ReplicaSet};
    match kind {
        WorkloadKind::Deployment => (ApiResource::erase::<ReplicaSet>(&()), "replicasets"),
        WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => (
            ApiResource::erase::<ControllerRevision>(&()),
            "controllerrevisions",
        ),
    }
}

/// Server-managed fields that mean nothing in another server.
fn strip(mut obj: Value) -> Value {
    if let Some(meta) = obj["metadata"].as_object_mut() {
        meta.remove("managedFields");
        meta.remove("selfLink");
        meta.remove("resourceVersion");
    }
    obj
}

fn controlled_by(obj: &Value, uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["controller"] == Value::Bool(true) && r["uid"] == uid)
        })
}

/// Reads `target` and the objects holding its history, with GET and LIST
/// only: nothing on the cluster is written.
///
/// # Errors
/// [`DrillError::NotFound`] for a missing workload, [`DrillError::Read`]
/// for any other API failure (RBAC, network).
pub async fn snapshot(client: &kube::Client, target: &KubeTarget) -> Result<Snapshot, DrillError> {
    let ns = target.namespace.as_str();
    let (ar, what) = resource(target.kind);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let read = |what, source| DrillError::Read {
        what,
        namespace: ns.to_owned(),
        source,
    };
    let workload = api
        .get_opt(&target.name)
        .await
        .map_err(|e| read(what, e))?
        .ok_or_else(|| DrillError::NotFound {
            what,
            namespace: ns.to_owned(),
            name: target.name.clone(),
        })?;
    let mut workload = serde_json::to_value(&workload).map_err(|e| DrillError::Read {
        what,
        namespace: ns.to_owned(),
        source: kube::Error::SerdeError(e),
    })?;
    // Typed GETs may omit these; the simulator needs them to load the copy.
    workload["apiVersion"] = Value::from(ar.api_version.clone());
    workload["kind"] = Value::from(ar.kind.clone());
    let uid = workload["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (har, hwhat) = history_resource(target.kind);
    let hapi: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &har);
    let selector = crate::exec::kubernetes::selector_string(&workload);
    let list = hapi
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| read(hwhat, e))?;
    let mut objects = vec![strip(workload)];
    for item in list.items {
        let mut v = serde_json::to_value(&item).map_err(|e| DrillError::Read {
            what: hwhat,
            namespace: ns.to_owned(),
            source: kube::Error::SerdeError(e),
        })?;
        if !controlled_by(&v, &uid) {
            continue;
        }
        v["apiVersion"] = Value::from(har.api_version.clone());
        v["kind"] = Value::from(har.kind.clone());
        objects.push(strip(v));
    }
    Ok(Snapshot {
        target: target.clone(),
        objects,
    })
}

impl Snapshot {
    /// A simulator seed holding exactly these objects; their pods step
    /// every `behaviour.ready_after_ms`.
    pub fn seed(&self, behaviour: Behaviour) -> Seed {
        Seed {
            server_version: "v1.33.1".into(),
            objects: self.objects.clone(),
            objects_behaviour: behaviour,
            ..Seed::default()
        }
    }

    /// Starts a simulator on 127.0.0.1 (a free port) holding this copy.
    ///
    /// # Errors
    /// [`DrillError::Simulator`] when the copy cannot be loaded or no port
    /// can be bound.
    pub async fn start(&self, behaviour: Behaviour) -> Result<SimHandle, DrillError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| DrillError::Simulator(format!("cannot bind 127.0.0.1:0: {e}")))?;
        crate::sim::start(self.seed(behaviour), listener)
            .await
            .map_err(|e| DrillError::Simulator(e.to_string()))
    }
}

/// The drills in progress: where to copy from, and each drill's simulator.
pub struct Drills {
    source: kube::Client,
    behaviour: Behaviour,
    // A std Mutex: held only to insert, look up or remove a handle.
    labs: Mutex<HashMap<ProposalId, SimHandle>>,
}

impl Drills {
    /// Drills copying from the cluster `source` talks to.
    pub fn new(source: kube::Client) -> Self {
        Self {
            source,
            behaviour: Behaviour {
                ready_after_ms: DRILL_POD_STEP_MS,
                ..Behaviour::default()
            },
            labs: Mutex::new(HashMap::new()),
        }
    }

    /// Sets how the drill simulators' pods behave.
    #[must_use]
    pub fn with_behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    fn labs(&self) -> std::sync::MutexGuard<'_, HashMap<ProposalId, SimHandle>> {
        // Inserts and removes are single steps; a poisoned map is consistent.
        self.labs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies `target` from the source cluster into a new simulator.
    ///
    /// # Errors
    /// As [`snapshot`] and [`Snapshot::start`].
    pub async fn open(&self, target: &KubeTarget) -> Result<SimHandle, DrillError> {
        let snap = snapshot(&self.source, target).await?;
        let lab = snap.start(self.behaviour.clone()).await?;
        tracing::info!(workload = %target, url = %lab.url(), objects = snap.objects.len(), "drill copy started");
        Ok(lab)
    }

    /// Keeps `lab` alive as the simulator of drill proposal `id`.
    pub fn keep(&self, id: ProposalId, lab: SimHandle) {
        self.labs().insert(id, lab);
    }

    /// The URL of drill `id`'s simulator, while it runs.
    pub fn url(&self, id: &ProposalId) -> Option<String> {
        self.labs().get(id).map(SimHandle::url)
    }

    /// Stops drill `id`'s simulator.
    pub fn release(&self, id: &ProposalId) {
        if self.labs().remove(id).is_some() {
            tracing::info!(proposal = %id, "drill simulator stopped");
        }
    }

    /// Stops the simulators of drills that are over.
    pub fn reap(&self, over: impl Fn(&ProposalId) -> bool) {
        self.labs().retain(|id, _| !over(id));
    }

    /// Drills with a running simulator.
    pub fn running(&self) -> Vec<ProposalId> {
        self.labs().keys().cloned().collect()
    }
}
