//! In-memory object store of the simulated API server.
//!
//! Objects are kept as `serde_json::Value` rather than k8s-openapi structs:
//! patches (JSON, merge, strategic) operate on JSON documents, and keeping the
//! exact JSON a client sent lets the simulator reproduce Go marshalling
//! artefacts (`creationTimestamp: null`, `resources: {}`) that kubectl compares
//! byte for byte for DaemonSet/StatefulSet history.
//!
//! Every write takes the next value of one global `resourceVersion` counter
//! and appends a watch event to a bounded log, so watches can replay from any
//! recent resourceVersion and answer `410 Expired` for older ones.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde_json::{Value, json};

/// How many watch events are kept for `resourceVersion=N` replays.
const EVENT_LOG_CAPACITY: usize = 20_000;

/// The resource kinds the simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1` Namespace (cluster-scoped).
    Namespace,
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` ReplicaSet.
    ReplicaSet,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
    /// `apps/v1` ControllerRevision.
    ControllerRevision,
    /// `coordination.k8s.io/v1` Lease.
    Lease,
    /// `argoproj.io/v1alpha1` Application (Argo CD).
    Application,
    /// `kustomize.toolkit.fluxcd.io/v1` Kustomization (Flux).
    Kustomization,
    /// `helm.toolkit.fluxcd.io/v2` HelmRelease (Flux).
    HelmRelease,
}

impl Kind {
    /// Every kind, in discovery order.
    pub const ALL: [Kind; 10] = [
        Kind::Namespace,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::ControllerRevision,
        Kind::Lease,
        Kind::Application,
        Kind::Kustomization,
        Kind::HelmRelease,
    ];

    /// API group (`""` for the core group).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Namespace => "",
            Kind::Lease => "coordination.k8s.io",
            Kind::Application => "argoproj.io",
            Kind::Kustomization => "kustomize.toolkit.fluxcd.io",
            Kind::HelmRelease => "helm.toolkit.fluxcd.io",
            _ => "apps",
        }
    }

    /// The one version the simulator serves of the kind's group.
    pub fn version(self) -> &'static str {
        match self {
            Kind::Application => "v1alpha1",
            Kind::HelmRelease => "v2",
            _ => "v1",
        }
    }

    /// `apiVersion` as written in objects.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace => "v1",
            Kind::Lease => "coordination.k8s.io/v1",
            Kind::Application => "argoproj.io/v1alpha1",
            Kind::Kustomization => "kustomize.toolkit.fluxcd.io/v1",
            Kind::HelmRelease => "helm.toolkit.fluxcd.io/v2",
            _ => "apps/v1",
        }
    }

    /// A GitOps owner of workloads (Argo CD, Flux): a custom resource the
    /// simulated GitOps controller reads (see `sim::gitops`).
    pub fn is_gitops_owner(self) -> bool {
        matches!(
            self,
            Kind::Application | Kind::Kustomization | Kind::HelmRelease
        )
    }

    /// `kind` as written in objects.
    pub fn kind(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Deployment => "Deployment",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::ControllerRevision => "ControllerRevision",
            Kind::Lease => "Lease",
            Kind::Application => "Application",
            Kind::Kustomization => "Kustomization",
            Kind::HelmRelease => "HelmRelease",
        }
    }

    /// Plural resource name used in URLs.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Deployment => "deployments",
            Kind::ReplicaSet => "replicasets",
            Kind::StatefulSet => "statefulsets",
            Kind::DaemonSet => "daemonsets",
            Kind::ControllerRevision => "controllerrevisions",
            Kind::Lease => "leases",
            Kind::Application => "applications",
            Kind::Kustomization => "kustomizations",
            Kind::HelmRelease => "helmreleases",
        }
    }

    /// Singular resource name for discovery.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Namespace => "namespace",
            Kind::Deployment => "deployment",
            Kind::ReplicaSet => "replicaset",
            Kind::StatefulSet => "statefulset",
            Kind::DaemonSet => "daemonset",
            Kind::ControllerRevision => "controllerrevision",
            Kind::Lease => "lease",
            Kind::Application => "application",
            Kind::Kustomization => "kustomization",
            Kind::HelmRelease => "helmrelease",
        }
    }

    /// Short names advertised in discovery (`kubectl get deploy`).
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["ns"],
            Kind::Deployment => &["deploy"],
            Kind::ReplicaSet => &["rs"],
            Kind::StatefulSet => &["sts"],
            Kind::DaemonSet => &["ds"],
            Kind::Application => &["app", "apps"],
            Kind::Kustomization => &["ks"],
            Kind::HelmRelease => &["hr"],
            Kind::ControllerRevision | Kind::Lease => &[],
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        self != Kind::Namespace
    }

    /// Whether `metadata.generation` is maintained for this kind.
    pub fn has_generation(self) -> bool {
        matches!(
            self,
            Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet | Kind::DaemonSet
        )
    }

    /// Whether the kind has `/status` (and, for workloads, `/scale`).
    pub fn has_status(self) -> bool {
        self.has_generation()
    }

    /// `group/resource` as used in error messages (`deployments.apps`).
    pub fn qualified(self) -> String {
        if self.group().is_empty() {
            self.plural().to_owned()
        } else {
            format!("{}.{}", self.plural(), self.group())
        }
    }

    /// Finds a kind by API group and plural resource name.
    pub fn from_group_plural(group: &str, plural: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.plural() == plural)
    }

    /// The API groups served, each with its one version, in discovery order.
    pub fn groups() -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&'static str, &'static str)> = Vec::new();
        for k in Kind::ALL {
            if !k.group().is_empty() && !out.iter().any(|(g, _)| *g == k.group()) {
                out.push((k.group(), k.version()));
            }
        }
        out
    }
}

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// Wire name of the event type.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One entry of the watch log.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// The resourceVersion the write took.
    pub rv: u64,
    /// Kind of the object.
    pub kind: Kind,
    /// What happened.
    pub event_type: EventType,
    /// The object after the write (for deletes: the last state).
    pub object: Value,
    /// The object before the write, so label-filtered watches can turn a
    /// change of labels into ADDED/DELETED like the real server.
    pub previous: Option<Value>,
}

/// How an update treats the parts of the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// A client write to the main resource: `status` is kept from the stored
    /// object; the generation is bumped when spec or annotations change.
    Main,
    /// A write to `/status`: spec and labels are kept from the stored object;
    /// the generation is not bumped.
    Status,
    /// A controller write of the whole object; the generation is bumped when
    /// the spec changes.
    Controller,
}

/// Errors returned by store operations; the server maps them to `Status`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StoreError {
    /// No such object.
    #[error("{kind} \"{name}\" not found")]
    NotFound {
        /// `deployments.apps` style resource name.
        kind: String,
        /// Object name.
        name: String,
    },
    /// Create of an existing name.
    #[error("{kind} \"{name}\" already exists")]
    AlreadyExists {
        /// `deployments.apps` style resource name.
        kind: String,
        /// Object name.
        name: String,
    },
    /// A stale `resourceVersion` precondition.
    #[error(
        "Operation cannot be fulfilled on {kind} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict {
        /// `deployments.apps` style resource name.
        kind: String,
        /// Object name.
        name: String,
    },
    /// The object lacks `metadata.name`.
    #[error("resource name may not be empty")]
    NoName,
}

/// Key of a stored object.
type Key = (Kind, String, String);

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: VecDeque<WatchEvent>,
    /// Every event with `rv > compacted` is still in `log`.
    compacted: u64,
}

/// The object store; cheap to share behind an `Arc`.
pub struct Store {
    // A std Mutex: critical sections are short and never await.
    inner: Mutex<Inner>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

/// Name of an object (`metadata.name`), or `""`.
pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Namespace of an object (`metadata.namespace`), or `""`.
pub fn namespace_of(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.uid`, or `""`.
pub fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The current time in the RFC 3339 form Kubernetes uses (seconds, `Z`).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn without_volatile(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    o
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        let (changed, _) = tokio::sync::watch::channel(0);
        Store {
            inner: Mutex::new(Inner::default()),
            changed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every write
        // is applied in one step), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to "something was written" notifications carrying the
    /// latest resourceVersion.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// One object.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Objects of a kind (in one namespace, or all with `None`), sorted by
    /// namespace and name, with the resourceVersion of the snapshot.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .iter()
            .filter(|((k, ns, _), _)| *k == kind && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    fn not_found(kind: Kind, name: &str) -> StoreError {
        StoreError::NotFound {
            kind: kind.qualified(),
            name: name.to_owned(),
        }
    }

    fn push_event(inner: &mut Inner, event: WatchEvent) {
        inner.log.push_back(event);
        while inner.log.len() > EVENT_LOG_CAPACITY {
            if let Some(old) = inner.log.pop_front() {
                inner.compacted = old.rv;
            }
        }
    }

    /// Creates an object, filling uid, resourceVersion, creationTimestamp,
    /// generation, apiVersion and kind. With `dry_run` nothing is stored.
    ///
    /// # Errors
    /// `AlreadyExists` for a taken name, `NoName` without a name.
    pub fn create(&self, kind: Kind, mut obj: Value, dry_run: bool) -> Result<Value, StoreError> {
        let name = name_of(&obj).to_owned();
        if name.is_empty() {
            return Err(StoreError::NoName);
        }
        let ns = if kind.namespaced() {
            namespace_of(&obj).to_owned()
        } else {
            String::new()
        };
        let mut inner = self.lock();
        let key = (kind, ns.clone(), name.clone());
        if inner.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists {
                kind: kind.qualified(),
                name,
            });
        }
        let rv = inner.rv + 1;
        obj["apiVersion"] = json!(kind.api_version());
        obj["kind"] = json!(kind.kind());
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let meta = &mut obj["metadata"];
        if kind.namespaced() {
            meta["namespace"] = json!(ns);
        }
        meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        meta["resourceVersion"] = json!(rv.to_string());
        meta["creationTimestamp"] = json!(now_rfc3339());
        // A generation given by the caller is kept (seeding a cluster that
        // has history); the HTTP create path removes it first.
        if kind.has_generation() && !meta["generation"].is_i64() {
            meta["generation"] = json!(1);
        }
        if dry_run {
            return Ok(obj);
        }
        inner.rv = rv;
        inner.objects.insert(key, obj.clone());
        Self::push_event(
            &mut inner,
            WatchEvent {
                rv,
                kind,
                event_type: EventType::Added,
                object: obj.clone(),
                previous: None,
            },
        );
        drop(inner);
        self.changed.send_replace(rv);
        Ok(obj)
    }

    /// Updates an object according to `mode`. A `metadata.resourceVersion`
    /// in `obj` is a precondition. A write that changes nothing is not
    /// stored and returns the stored object, as the real server does.
    ///
    /// # Errors
    /// `NotFound`, or `Conflict` for a stale resourceVersion.
    pub fn update(
        &self,
        kind: Kind,
        mut obj: Value,
        mode: WriteMode,
        dry_run: bool,
    ) -> Result<Value, StoreError> {
        let name = name_of(&obj).to_owned();
        let ns = if kind.namespaced() {
            namespace_of(&obj).to_owned()
        } else {
            String::new()
        };
        let mut inner = self.lock();
        let key = (kind, ns, name.clone());
        let Some(old) = inner.objects.get(&key).cloned() else {
            return Err(Self::not_found(kind, &name));
        };
        let old_rv = old
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(want) = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && !want.is_empty()
            && want != old_rv
        {
            return Err(StoreError::Conflict {
                kind: kind.qualified(),
                name,
            });
        }
        obj["apiVersion"] = json!(kind.api_version());
        obj["kind"] = json!(kind.kind());
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        // Identity fields are owned by the server.
        for field in ["uid", "creationTimestamp", "namespace", "generation"] {
            match old.pointer(&format!("/metadata/{field}")) {
                Some(v) => obj["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = obj["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        let spec_changed = old.get("spec") != obj.get("spec");
        match mode {
            WriteMode::Main => {
                set_or_remove(&mut obj, "status", old.get("status"));
                let ann_changed =
                    old.pointer("/metadata/annotations") != obj.pointer("/metadata/annotations");
                let ann_counts = kind == Kind::Deployment;
                if kind.has_generation() && (spec_changed || (ann_counts && ann_changed)) {
                    bump_generation(&mut obj);
                }
            }
            WriteMode::Status => {
                set_or_remove(&mut obj, "spec", old.get("spec"));
                let labels = old.pointer("/metadata/labels").cloned();
                if let Some(m) = obj["metadata"].as_object_mut() {
                    match labels {
                        Some(l) => {
                            m.insert("labels".into(), l);
                        }
                        None => {
                            m.remove("labels");
                        }
                    }
                }
            }
            WriteMode::Controller => {
                if kind.has_generation() && spec_changed {
                    bump_generation(&mut obj);
                    if kind == Kind::ReplicaSet {
                        // The simulated ReplicaSet controller observes at once.
                        let generation = obj["metadata"]["generation"].clone();
                        obj["status"]["observedGeneration"] = generation;
                    }
                }
            }
        }
        if without_volatile(&obj) == without_volatile(&old) {
            return Ok(old);
        }
        let rv = inner.rv + 1;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if dry_run {
            return Ok(obj);
        }
        inner.rv = rv;
        inner.objects.insert(key, obj.clone());
        Self::push_event(
            &mut inner,
            WatchEvent {
                rv,
                kind,
                event_type: EventType::Modified,
                object: obj.clone(),
                previous: Some(old),
            },
        );
        drop(inner);
        self.changed.send_replace(rv);
        Ok(obj)
    }

    /// Deletes an object and returns its last state.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, StoreError> {
        let mut inner = self.lock();
        let key = (kind, namespace.to_owned(), name.to_owned());
        let Some(mut obj) = inner.objects.get(&key).cloned() else {
            return Err(Self::not_found(kind, name));
        };
        if dry_run {
            return Ok(obj);
        }
        inner.objects.remove(&key);
        let rv = inner.rv + 1;
        inner.rv = rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        Self::push_event(
            &mut inner,
            WatchEvent {
                rv,
                kind,
                event_type: EventType::Deleted,
                object: obj.clone(),
                previous: None,
            },
        );
        drop(inner);
        self.changed.send_replace(rv);
        Ok(obj)
    }

    /// Events of `kind` with `rv > since`, or `None` when `since` is older
    /// than the log keeps (the caller answers 410 Expired).
    pub fn events_since(&self, kind: Kind, since: u64) -> Option<Vec<WatchEvent>> {
        let inner = self.lock();
        if since < inner.compacted {
            return None;
        }
        Some(
            inner
                .log
                .iter()
                .filter(|e| e.rv > since && e.kind == kind)
                .cloned()
                .collect(),
        )
    }

    /// Drops watch events up to `rv`, so that older resourceVersions expire.
    /// Tests use this to exercise the 410 path.
    pub fn compact(&self, rv: u64) {
        let mut inner = self.lock();
        while inner.log.front().is_some_and(|e| e.rv <= rv) {
            inner.log.pop_front();
        }
        inner.compacted = inner.compacted.max(rv);
    }
}

fn set_or_remove(obj: &mut Value, field: &str, value: Option<&Value>) {
    if let Some(m) = obj.as_object_mut() {
        match value {
            Some(v) => {
                m.insert(field.to_owned(), v.clone());
            }
            None => {
                m.remove(field);
            }
        }
    }
}

fn bump_generation(obj: &mut Value) {
    let g = obj
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    obj["metadata"]["generation"] = json!(g + 1);
}

/// The kind of a raw object, from its `apiVersion` and `kind`.
///
/// # Errors
/// A message naming what is missing or not served by the simulator.
pub fn object_kind(obj: &Value) -> Result<Kind, String> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let found = Kind::ALL
        .into_iter()
        .find(|k| k.kind() == kind && k.api_version() == api_version)
        .ok_or_else(|| {
            format!(
                "apiVersion {api_version:?} kind {kind:?} is not served by the simulator; \
                 use apps/v1 Deployment, ReplicaSet, StatefulSet, DaemonSet or ControllerRevision, \
                 argoproj.io/v1alpha1 Application, kustomize.toolkit.fluxcd.io/v1 Kustomization \
                 or helm.toolkit.fluxcd.io/v2 HelmRelease"
            )
        })?;
    if found == Kind::Namespace || found == Kind::Lease {
        return Err(format!(
            "{kind} objects cannot be loaded; namespaces are created from the objects' metadata"
        ));
    }
    if name_of(obj).is_empty() || namespace_of(obj).is_empty() {
        return Err(format!("{kind} needs metadata.name and metadata.namespace"));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"replicas": 1}})
    }

    #[test]
    fn resource_versions_increase_and_generation_follows_spec() {
        let s = Store::new();
        let a = s.create(Kind::Deployment, deploy("a"), false).unwrap();
        assert_eq!(a["metadata"]["generation"], 1);
        let mut b = a.clone();
        b["spec"]["replicas"] = json!(2);
        let b = s
            .update(Kind::Deployment, b, WriteMode::Main, false)
            .unwrap();
        assert_eq!(b["metadata"]["generation"], 2);
        assert_eq!(b["metadata"]["resourceVersion"], "2");
        // Stale precondition.
        let err = s
            .update(Kind::Deployment, a, WriteMode::Main, false)
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }));
        // Status writes keep the spec and the generation.
        let mut c = b.clone();
        c["spec"]["replicas"] = json!(9);
        c["status"] = json!({"observedGeneration": 2});
        let c = s
            .update(Kind::Deployment, c, WriteMode::Status, false)
            .unwrap();
        assert_eq!(c["spec"]["replicas"], 2);
        assert_eq!(c["metadata"]["generation"], 2);
        assert_eq!(s.events_since(Kind::Deployment, 1).unwrap().len(), 2);
        s.compact(2);
        assert!(s.events_since(Kind::Deployment, 1).is_none());
    }

    #[test]
    fn noop_updates_are_not_stored() {
        let s = Store::new();
        let a = s.create(Kind::Deployment, deploy("a"), false).unwrap();
        let b = s
            .update(Kind::Deployment, a.clone(), WriteMode::Main, false)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(s.current_rv(), 1);
    }
}
