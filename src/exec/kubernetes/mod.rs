//! `kubectl rollout undo` / `rollout status` done with direct API calls
//! (kube-rs), so rollbot can plan a rollback, show it for approval, execute
//! exactly what kubectl would, and follow the rollout.
//!
//! The flow is [`KubeExecutor::plan`] (read-only: which revision is current,
//! which one a rollback restores), then [`KubeExecutor::execute`] (re-reads,
//! and refuses with [`Outcome::Superseded`] if the workload moved since the
//! plan; otherwise sends kubectl's patch), then [`KubeExecutor::follow`]
//! (watches and reports kubectl's status lines).
//!
//! # Caveats
//! Template comparison is semantic (missing, `null`, `{}` and `[]` are
//! equal), as in kubectl, but quantities are compared as written.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Map, Value, json};

use crate::sim::semantic::{canonical_json, equal_ignore_hash, revision_data, strip_hash_label};

pub mod drill;
mod follow;
pub mod gitops;
mod status;
pub mod target;

use follow::{DEFAULT_PROGRESS_DEADLINE, follow_stream, progress_deadline};
pub use status::{daemonset_status_line, deployment_status_line, statefulset_status_line};
pub use target::{DrillTarget, KubeTarget, KubernetesConfig, WorkloadKind};

const REVISION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

impl WorkloadKind {
    fn resource(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments.apps",
            WorkloadKind::StatefulSet => "statefulsets.apps",
            WorkloadKind::DaemonSet => "daemonsets.apps",
        }
    }
}

/// One revision of a workload's history.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RevisionInfo {
    /// Revision number.
    pub revision: u64,
    /// `(container, image)` pairs of the pod template.
    pub images: Vec<(String, String)>,
    /// `kubernetes.io/change-cause`, if recorded.
    pub change_cause: Option<String>,
}

/// What a rollback would do, and what [`KubeExecutor::execute`] checks
/// before doing it. Serializable: it is stored with the proposal, so the
/// approved plan survives a restart.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KubePlan {
    /// The workload.
    pub target: KubeTarget,
    /// What runs now.
    pub current: RevisionInfo,
    /// What the rollback restores.
    pub rollback_to: RevisionInfo,
    /// The workload's resourceVersion when planned.
    pub resource_version: String,
    /// The workload's generation when planned.
    pub generation: i64,
    /// Deployments: the `deployment.kubernetes.io/revision` annotation when
    /// planned; otherwise the current ControllerRevision number.
    planned_revision: u64,
    /// The pod template when planned (JSON), to detect a changed workload.
    current_template: Value,
    /// Deployments: the target ReplicaSet's template, hash label removed.
    /// StatefulSets/DaemonSets: the ControllerRevision `data`.
    restore: Value,
    /// Deployments: the target ReplicaSet's annotations.
    restore_annotations: Map<String, Value>,
    /// The workload's Argo CD or Flux owner, as read when planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<gitops::Ownership>,
}

/// Where an interrupted rollback stands ([`KubeExecutor::standing`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The restored template is in place: the patch was sent.
    Applied,
    /// The workload is as planned: the patch was not sent.
    NotApplied,
    /// The workload moved since the plan.
    Moved {
        /// What changed.
        reason: String,
    },
}

/// Result of [`KubeExecutor::execute`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The patch was sent.
    RolledBack,
    /// The workload changed since the plan; nothing was sent.
    Superseded {
        /// What changed, for the people who approved the plan.
        reason: String,
    },
}

/// Errors of the Kubernetes executor; messages follow kubectl's wording.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The workload does not exist.
    #[error("{resource} \"{name}\" not found in namespace \"{namespace}\"")]
    NotFound {
        /// e.g. `deployments.apps`.
        resource: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Fewer than two revisions.
    #[error("no rollout history found for {kind} \"{name}\"")]
    NoHistory {
        /// `deployment`, `statefulset`, `daemonset`.
        kind: &'static str,
        /// Name.
        name: String,
    },
    /// The requested revision is not in the history.
    #[error("unable to find specified revision {0} in history")]
    RevisionNotFound(u64),
    /// The target template is already running.
    #[error("skipped rollback (current template already matches revision {0})")]
    AlreadyCurrent(u64),
    /// Deployments cannot be rolled back while paused.
    #[error(
        "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again"
    )]
    Paused,
    /// RBAC refused a request. The message says which rule to add.
    #[error(
        "forbidden: rollbot may not {verb} {resource} in namespace \"{namespace}\" ({message}); grant {verb} on {resource} in namespace {namespace} to rollbot's service account with the RBAC rule {rule} (see deploy/rbac.yaml), then try again",
        rule = rbac_rule(.verb, .resource)
    )]
    Forbidden {
        /// The verb refused.
        verb: &'static str,
        /// The resource, e.g. `replicasets.apps`.
        resource: &'static str,
        /// Namespace.
        namespace: String,
        /// The server's message.
        message: String,
    },
    /// The rollout stalled (`ProgressDeadlineExceeded`).
    #[error("deployment \"{0}\" exceeded its progress deadline")]
    ProgressDeadlineExceeded(String),
    /// `follow` ran out of time.
    #[error("timed out waiting for the condition")]
    Timeout,
    /// The workload was deleted while following it.
    #[error("object has been deleted")]
    Deleted,
    /// A status kubectl also refuses (e.g. DaemonSet OnDelete strategy).
    #[error("{0}")]
    Unsupported(String),
    /// Another API failure.
    #[error("kubernetes API error during {verb} {resource}: {source}")]
    Api {
        /// The verb.
        verb: &'static str,
        /// The resource.
        resource: &'static str,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The watch failed.
    #[error("watch failed: {0}")]
    Watch(#[from] watcher::Error),
    /// After the patch, the workload could not be read for longer than the
    /// rollout's own deadline, so rollbot cannot say how the rollout ended.
    #[error(
        "lost track of the rollout: the API server gave no answer for {seconds} s, longer than the rollout's progress deadline ({error}); the rollback patch was applied, so check it with `kubectl rollout status {resource}/{name} -n {namespace}`"
    )]
    LostTrack {
        /// How long nothing could be read.
        seconds: u64,
        /// e.g. `deployment`.
        resource: &'static str,
        /// Name.
        name: String,
        /// Namespace.
        namespace: String,
        /// The last watch or list error.
        error: String,
    },
}

/// The RBAC rule granting `verb` on `resource` (`deployments.apps`), in
/// the YAML flow form of `deploy/rbac.yaml`.
fn rbac_rule(verb: &str, resource: &str) -> String {
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    format!("{{apiGroups: [\"{group}\"], resources: [\"{plural}\"], verbs: [\"{verb}\"]}}")
}

/// Executes rollbacks with a kube client.
#[derive(Clone)]
pub struct KubeExecutor {
    client: kube::Client,
    /// How GitOps owners are found (Argo CD's settings).
    gitops: gitops::GitOpsSettings,
}

fn api_err(
    target: &KubeTarget,
    verb: &'static str,
    resource: &'static str,
    e: kube::Error,
) -> KubeError {
    if let kube::Error::Api(s) = &e {
        if s.code == 403 {
            return KubeError::Forbidden {
                verb,
                resource,
                namespace: target.namespace.clone(),
                message: s.message.clone(),
            };
        }
        if s.code == 404 && resource == target.kind.resource() {
            return KubeError::NotFound {
                resource,
                namespace: target.namespace.clone(),
                name: target.name.clone(),
            };
        }
    }
    KubeError::Api {
        verb,
        resource,
        source: e,
    }
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn images(template: &Value) -> Vec<(String, String)> {
    template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_owned(),
                        c["image"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn annotation(obj: &Value, key: &str) -> Option<String> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// kubectl's `Revision()`: missing → 0, unparseable → skipped.
fn revision_of(obj: &Value) -> Option<u64> {
    match annotation(obj, REVISION) {
        None => Some(0),
        Some(s) => s.parse().ok(),
    }
}

fn controlled_by(obj: &Value, uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["controller"] == json!(true) && r["uid"] == uid)
        })
}

/// The label selector of a workload's `spec.selector`, in list-query form.
pub(crate) fn selector_string(obj: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
    {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(es) = obj
        .pointer("/spec/selector/matchExpressions")
        .and_then(Value::as_array)
    {
        for e in es {
            let key = e["key"].as_str().unwrap_or_default();
            let vals: Vec<&str> = e["values"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            parts.push(match e["operator"].as_str().unwrap_or_default() {
                "In" => format!("{key} in ({})", vals.join(",")),
                "NotIn" => format!("{key} notin ({})", vals.join(",")),
                "Exists" => key.to_owned(),
                _ => format!("!{key}"),
            });
        }
    }
    parts.join(",")
}

impl KubeExecutor {
    /// An executor using `client`.
    pub fn new(client: kube::Client) -> Self {
        KubeExecutor {
            client,
            gitops: gitops::GitOpsSettings::default(),
        }
    }

    /// Finds GitOps owners with `settings` instead of Argo CD's defaults.
    #[must_use]
    pub fn with_gitops(mut self, settings: gitops::GitOpsSettings) -> Self {
        self.gitops = settings;
        self
    }

    /// The kube client, e.g. for a drill's read-only snapshot.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// An executor for a plain-http API server such as the simulator.
    ///
    /// # Errors
    /// An unparsable URL or a client that cannot be built.
    pub fn for_url(url: &str) -> Result<Self, kube::Error> {
        let uri: axum::http::Uri = url
            .parse()
            .map_err(|e: axum::http::uri::InvalidUri| kube::Error::Service(Box::new(e)))?;
        let config = kube::Config::new(uri);
        Ok(Self::new(kube::Client::try_from(config)?))
    }

    async fn get_workload(&self, t: &KubeTarget) -> Result<Value, KubeError> {
        let (c, ns) = (self.client.clone(), t.namespace.as_str());
        let r = match t.kind {
            WorkloadKind::Deployment => Api::<Deployment>::namespaced(c, ns)
                .get(&t.name)
                .await
                .map(|o| to_json(&o)),
            WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(c, ns)
                .get(&t.name)
                .await
                .map(|o| to_json(&o)),
            WorkloadKind::DaemonSet => Api::<DaemonSet>::namespaced(c, ns)
                .get(&t.name)
                .await
                .map(|o| to_json(&o)),
        };
        r.map_err(|e| api_err(t, "get", t.kind.resource(), e))
    }

    /// The history entries of a workload: (revision, template, annotations,
    /// raw object) for ReplicaSets or ControllerRevisions it controls.
    async fn history(&self, t: &KubeTarget, obj: &Value) -> Result<Vec<Value>, KubeError> {
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let lp = ListParams::default().labels(&selector_string(obj));
        let items: Vec<Value> = match t.kind {
            WorkloadKind::Deployment => {
                Api::<ReplicaSet>::namespaced(self.client.clone(), &t.namespace)
                    .list(&lp)
                    .await
                    .map_err(|e| api_err(t, "list", "replicasets.apps", e))?
                    .items
                    .iter()
                    .map(to_json)
                    .collect()
            }
            _ => Api::<ControllerRevision>::namespaced(self.client.clone(), &t.namespace)
                .list(&lp)
                .await
                .map_err(|e| api_err(t, "list", "controllerrevisions.apps", e))?
                .items
                .iter()
                .map(to_json)
                .collect(),
        };
        Ok(items
            .into_iter()
            .filter(|o| controlled_by(o, uid))
            .collect())
    }

    /// Works out what `kubectl rollout undo [--to-revision=N]` would do.
    /// `to_revision` `None` means the previous revision.
    ///
    /// # Errors
    /// `NotFound`, `NoHistory`, `RevisionNotFound`, `AlreadyCurrent`,
    /// `Paused`, `Forbidden` (naming the verb and resource), `Api`.
    pub async fn plan(
        &self,
        target: &KubeTarget,
        to_revision: Option<u64>,
    ) -> Result<KubePlan, KubeError> {
        let obj = self.get_workload(target).await?;
        let history = self.history(target, &obj).await?;
        let owner = gitops::detect(&self.client, &self.gitops, &obj).await;
        let template = obj["spec"]["template"].clone();
        let resource_version = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let generation = obj
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let requested = to_revision.unwrap_or(0);
        match target.kind {
            WorkloadKind::Deployment => {
                let revs: Vec<(u64, &Value)> = history
                    .iter()
                    .filter_map(|rs| Some((revision_of(rs)?, rs)))
                    .collect();
                let chosen = if requested == 0 {
                    // The previous revision is the second-highest number.
                    let mut nums: Vec<u64> = revs.iter().map(|(r, _)| *r).collect();
                    nums.sort_unstable();
                    nums.dedup();
                    if history.len() < 2 || nums.len() < 2 {
                        return Err(KubeError::NoHistory {
                            kind: "deployment",
                            name: target.name.clone(),
                        });
                    }
                    let second = nums[nums.len() - 2];
                    revs.iter().find(|(r, _)| *r == second).map(|(_, rs)| *rs)
                } else {
                    revs.iter()
                        .find(|(r, _)| *r == requested)
                        .map(|(_, rs)| *rs)
                };
                let rs = chosen.ok_or(KubeError::RevisionNotFound(requested))?;
                if obj.pointer("/spec/paused") == Some(&json!(true)) {
                    return Err(KubeError::Paused);
                }
                let rs_template = rs["spec"]["template"].clone();
                if equal_ignore_hash(&rs_template, &template) {
                    return Err(KubeError::AlreadyCurrent(requested));
                }
                let current_rs = history
                    .iter()
                    .find(|r| equal_ignore_hash(&r["spec"]["template"], &template));
                let current = RevisionInfo {
                    revision: current_rs
                        .and_then(revision_of)
                        .or_else(|| revision_of(&obj))
                        .unwrap_or(0),
                    images: images(&template),
                    change_cause: current_rs
                        .and_then(|r| annotation(r, CHANGE_CAUSE))
                        .or_else(|| annotation(&obj, CHANGE_CAUSE)),
                };
                let rollback_to = RevisionInfo {
                    revision: revision_of(rs).unwrap_or(0),
                    images: images(&rs_template),
                    change_cause: annotation(rs, CHANGE_CAUSE),
                };
                let mut restore = rs_template;
                strip_hash_label(&mut restore);
                let restore_annotations = rs
                    .pointer("/metadata/annotations")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                Ok(KubePlan {
                    target: target.clone(),
                    current,
                    rollback_to,
                    resource_version,
                    generation,
                    planned_revision: revision_of(&obj).unwrap_or(0),
                    current_template: template,
                    restore,
                    restore_annotations,
                    gitops: owner,
                })
            }
            WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => {
                let mut revs: Vec<&Value> = history.iter().collect();
                revs.sort_by_key(|cr| cr["revision"].as_i64().unwrap_or(0));
                let rev_of =
                    |cr: &Value| u64::try_from(cr["revision"].as_i64().unwrap_or(0)).unwrap_or(0);
                let chosen = if requested == 0 {
                    if revs.len() <= 1 {
                        return Err(KubeError::Unsupported(
                            "no last revision to roll back to".into(),
                        ));
                    }
                    revs[revs.len() - 2]
                } else {
                    revs.iter()
                        .copied()
                        .find(|cr| rev_of(cr) == requested)
                        .ok_or(KubeError::RevisionNotFound(requested))?
                };
                let data = canonical_json(&chosen["data"]);
                let current_data = revision_data(&template);
                if data == current_data {
                    return Err(KubeError::AlreadyCurrent(requested));
                }
                let cr_template = chosen
                    .pointer("/data/spec/template")
                    .cloned()
                    .unwrap_or(Value::Null);
                let current_cr = revs
                    .iter()
                    .rev()
                    .find(|cr| canonical_json(&cr["data"]) == current_data);
                let current = RevisionInfo {
                    revision: current_cr.map_or(0, |cr| rev_of(cr)),
                    images: images(&template),
                    change_cause: current_cr.and_then(|cr| annotation(cr, CHANGE_CAUSE)),
                };
                let rollback_to = RevisionInfo {
                    revision: rev_of(chosen),
                    images: images(&cr_template),
                    change_cause: annotation(chosen, CHANGE_CAUSE),
                };
                let planned_revision = current.revision;
                Ok(KubePlan {
                    target: target.clone(),
                    current,
                    rollback_to,
                    resource_version,
                    generation,
                    planned_revision,
                    current_template: template,
                    restore: chosen["data"].clone(),
                    restore_annotations: Map::new(),
                    gitops: owner,
                })
            }
        }
    }

    /// Why the workload no longer matches `plan`, if it moved: another
    /// revision, or another pod template, than when planned.
    fn moved(plan: &KubePlan, obj: &Value) -> Option<String> {
        let rev = match plan.target.kind {
            WorkloadKind::Deployment => revision_of(obj).unwrap_or(0),
            _ => plan.planned_revision,
        };
        if rev != plan.planned_revision {
            Some(format!(
                "the current revision moved from {} to {rev}",
                plan.planned_revision
            ))
        } else if !equal_ignore_hash(&obj["spec"]["template"], &plan.current_template) {
            Some("the pod template changed since the plan".to_owned())
        } else {
            None
        }
    }

    /// Whether the workload already runs the template `plan` restores.
    fn restored(plan: &KubePlan, obj: &Value) -> bool {
        let template = &obj["spec"]["template"];
        match plan.target.kind {
            WorkloadKind::Deployment => equal_ignore_hash(template, &plan.restore),
            _ => revision_data(template) == canonical_json(&plan.restore),
        }
    }

    /// After a restart: reads the workload and tells whether `plan`'s patch
    /// is already in place ([`Standing::Applied`], checked first: the patch
    /// itself moves the revision), still to be sent
    /// ([`Standing::NotApplied`]), or no longer valid ([`Standing::Moved`]).
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, `Api`.
    pub async fn standing(&self, plan: &KubePlan) -> Result<Standing, KubeError> {
        let obj = self.get_workload(&plan.target).await?;
        Ok(if Self::restored(plan, &obj) {
            Standing::Applied
        } else if let Some(reason) = Self::moved(plan, &obj) {
            Standing::Moved { reason }
        } else {
            Standing::NotApplied
        })
    }

    /// Re-reads the workload and, unless it changed since `plan`, sends the
    /// patch kubectl would send.
    ///
    /// # Errors
    /// `NotFound`, `Paused`, `Forbidden`, `Api`.
    pub async fn execute(&self, plan: &KubePlan) -> Result<Outcome, KubeError> {
        let t = &plan.target;
        let obj = self.get_workload(t).await?;
        if let Some(reason) = Self::moved(plan, &obj) {
            return Ok(Outcome::Superseded { reason });
        }
        let ns = t.namespace.as_str();
        match t.kind {
            WorkloadKind::Deployment => {
                if obj.pointer("/spec/paused") == Some(&json!(true)) {
                    return Err(KubeError::Paused);
                }
                let mut ann = Map::new();
                if let Some(cur) = obj
                    .pointer("/metadata/annotations")
                    .and_then(Value::as_object)
                {
                    for (k, v) in cur {
                        if ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
                            ann.insert(k.clone(), v.clone());
                        }
                    }
                }
                for (k, v) in &plan.restore_annotations {
                    if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
                        ann.insert(k.clone(), v.clone());
                    }
                }
                let ops: json_patch::Patch = serde_json::from_value(json!([
                    {"op": "replace", "path": "/spec/template", "value": plan.restore},
                    {"op": "replace", "path": "/metadata/annotations", "value": ann},
                ]))
                .map_err(|e| KubeError::Unsupported(format!("cannot build the patch: {e}")))?;
                Api::<Deployment>::namespaced(self.client.clone(), ns)
                    .patch(&t.name, &PatchParams::default(), &Patch::<()>::Json(ops))
                    .await
                    .map_err(|e| api_err(t, "patch", t.kind.resource(), e))?;
            }
            WorkloadKind::StatefulSet => {
                Api::<StatefulSet>::namespaced(self.client.clone(), ns)
                    .patch(
                        &t.name,
                        &PatchParams::default(),
                        &Patch::Strategic(plan.restore.clone()),
                    )
                    .await
                    .map_err(|e| api_err(t, "patch", t.kind.resource(), e))?;
            }
            WorkloadKind::DaemonSet => {
                Api::<DaemonSet>::namespaced(self.client.clone(), ns)
                    .patch(
                        &t.name,
                        &PatchParams::default(),
                        &Patch::Strategic(plan.restore.clone()),
                    )
                    .await
                    .map_err(|e| api_err(t, "patch", t.kind.resource(), e))?;
            }
        }
        Ok(Outcome::RolledBack)
    }

    /// Watches the workload and calls `on_line` with each of kubectl's
    /// `rollout status` lines (without the trailing newline) until the
    /// rollout completes.
    ///
    /// A failed watch or list is not a verdict: the patch is already
    /// applied, so the watcher re-lists or re-watches from the last
    /// resourceVersion, with backoff, until the rollout's own deadline
    /// (`progressDeadlineSeconds` of a Deployment: that long without
    /// seeing any progress) or `timeout`, whichever comes first.
    ///
    /// # Errors
    /// `ProgressDeadlineExceeded`, `Timeout` after `timeout`, `Deleted`,
    /// `Unsupported` for non-RollingUpdate DaemonSets/StatefulSets,
    /// `LostTrack` when the API server stayed unreadable past the deadline.
    pub async fn follow(
        &self,
        target: &KubeTarget,
        mut on_line: impl FnMut(String),
        timeout: Duration,
    ) -> Result<(), KubeError> {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={}", target.name));
        let ns = target.namespace.as_str();
        let c = self.client.clone();
        let run = async {
            // The deadline is known before the watch works, if a GET does.
            let deadline = match target.kind {
                WorkloadKind::Deployment => Some(
                    self.get_workload(target)
                        .await
                        .ok()
                        .and_then(|o| progress_deadline(&o))
                        .unwrap_or(DEFAULT_PROGRESS_DEADLINE),
                ),
                _ => None,
            };
            match target.kind {
                WorkloadKind::Deployment => {
                    follow_stream(
                        watcher(Api::<Deployment>::namespaced(c, ns), cfg),
                        target,
                        deadline,
                        &mut on_line,
                        deployment_status_line,
                    )
                    .await
                }
                WorkloadKind::StatefulSet => {
                    follow_stream(
                        watcher(Api::<StatefulSet>::namespaced(c, ns), cfg),
                        target,
                        deadline,
                        &mut on_line,
                        statefulset_status_line,
                    )
                    .await
                }
                WorkloadKind::DaemonSet => {
                    follow_stream(
                        watcher(Api::<DaemonSet>::namespaced(c, ns), cfg),
                        target,
                        deadline,
                        &mut on_line,
                        daemonset_status_line,
                    )
                    .await
                }
            }
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| KubeError::Timeout)?
    }
}
