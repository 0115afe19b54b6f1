//! Emulation of the kube-controller-manager loops the rollout commands
//! depend on: the deployment controller (one ReplicaSet per template,
//! revisions, rolling update, history cleanup, status and conditions), a
//! stand-in for the ReplicaSet controller and kubelet (pods are not modelled;
//! each ReplicaSet's status walks towards its spec one step per
//! `ready_after_ms`), and the StatefulSet/DaemonSet history
//! (ControllerRevisions).
//!
//! Everything runs in [`Controller::tick`], called by a background task every
//! few milliseconds. A tick only writes objects whose content changes, so an
//! idle cluster produces no watch events.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::seed::Behaviour;
use super::selector::Selector;
use super::semantic::{
    POD_TEMPLATE_HASH, canonical_json, compute_hash, equal_ignore_hash, fnv32a, revision_data,
    safe_encode,
};
use super::store::{
    Kind, Store, StoreError, WriteMode, name_of, namespace_of, now_rfc3339, uid_of,
};

/// `deployment.kubernetes.io/revision`
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// `deployment.kubernetes.io/revision-history`
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `deployment.kubernetes.io/desired-replicas`
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `deployment.kubernetes.io/max-replicas`
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// `kubernetes.io/change-cause`
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// DaemonSet ControllerRevision hash label.
pub const DS_HASH_LABEL: &str = "controller-revision-hash";
/// StatefulSet ControllerRevision hash label.
pub const STS_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Annotations never copied between a Deployment and its ReplicaSets
/// (`annotationsToSkip` in kubectl and the controller).
pub const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// `revision-history` is capped at this many characters, dropping the
/// oldest entries.
const REVISION_HISTORY_MAX_CHARS: usize = 2000;

/// Reads an integer at a JSON pointer, 0 when absent.
pub fn int_at(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// The `deployment.kubernetes.io/revision` of an object: `Some(0)` when
/// missing, `None` when not an integer (such objects are skipped, as in
/// kubectl).
pub fn revision_of(obj: &Value) -> Option<i64> {
    match obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
    {
        None => Some(0),
        Some(s) => s.parse().ok(),
    }
}

/// Whether `obj` has a controller ownerReference to the object with `uid`.
pub fn controlled_by(obj: &Value, uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["controller"] == json!(true) && r["uid"].as_str() == Some(uid))
        })
}

fn owner_ref(owner: &Value, kind: Kind) -> Value {
    json!([{
        "apiVersion": kind.api_version(), "kind": kind.kind(),
        "name": name_of(owner), "uid": uid_of(owner),
        "controller": true, "blockOwnerDeletion": true,
    }])
}

fn annotations(obj: &Value) -> Map<String, Value> {
    obj.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn skip_annotation(k: &str) -> bool {
    ANNOTATIONS_TO_SKIP.contains(&k)
}

/// Resolves an IntOrString against a total (`GetScaledValueFromIntOrPercent`).
fn scaled(v: Option<&Value>, total: i64, round_up: bool, default_pct: i64) -> i64 {
    let pct = match v {
        Some(Value::Number(n)) => return n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .unwrap_or(default_pct),
        _ => default_pct,
    };
    // In i128, then saturated: a patched object may carry any i64 in
    // `replicas` or the percentage, and the product of two i64 fits in i128.
    let prod = i128::from(pct) * i128::from(total);
    let scaled = if round_up {
        (prod + 99) / 100
    } else {
        prod / 100
    };
    i64::try_from(scaled).unwrap_or(if scaled < 0 { i64::MIN } else { i64::MAX })
}

/// `ResolveFenceposts`: (maxSurge, maxUnavailable) for a Deployment.
pub fn fenceposts(d: &Value) -> (i64, i64) {
    let replicas = desired_replicas(d);
    let ru = d.pointer("/spec/strategy/rollingUpdate");
    let surge = scaled(ru.and_then(|r| r.get("maxSurge")), replicas, true, 25);
    let unavailable = scaled(
        ru.and_then(|r| r.get("maxUnavailable")),
        replicas,
        false,
        25,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn desired_replicas(d: &Value) -> i64 {
    d.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn is_recreate(d: &Value) -> bool {
    d.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate")
}

/// The progress deadline, or `None` when unset / MaxInt32 (no Progressing
/// condition is maintained then).
fn progress_deadline(d: &Value, knobs: &Behaviour) -> Option<Duration> {
    let secs = d.pointer("/spec/progressDeadlineSeconds")?.as_i64()?;
    if secs == i64::from(i32::MAX) {
        return None;
    }
    Some(match knobs.progress_deadline_ms {
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_secs(u64::try_from(secs).unwrap_or(0)),
    })
}

fn images_of(template: &Value) -> Vec<String> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|l| {
            template
                .pointer(&format!("/spec/{l}"))
                .and_then(Value::as_array)
        })
        .flatten()
        .filter_map(|c| c["image"].as_str().map(str::to_owned))
        .collect()
}

fn never_ready(template: &Value, knobs: &Behaviour) -> bool {
    images_of(template)
        .iter()
        .any(|i| knobs.never_ready_images.contains(i))
}

fn get_condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn remove_condition(status: &mut Value, type_: &str) {
    if let Some(a) = status["conditions"].as_array_mut() {
        a.retain(|c| c["type"] != type_);
    }
}

/// `SetDeploymentCondition`: no change when status and reason are the same;
/// the transition time is kept while the status stays.
fn set_condition(status: &mut Value, type_: &str, st: &str, reason: &str, message: &str) {
    let now = now_rfc3339();
    let mut transition = now.clone();
    if let Some(cur) = get_condition(status, type_) {
        if cur["status"] == st && cur["reason"] == reason {
            return;
        }
        if cur["status"] == st {
            transition = cur["lastTransitionTime"]
                .as_str()
                .unwrap_or(&now)
                .to_owned();
        }
    }
    remove_condition(status, type_);
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    if let Some(a) = status["conditions"].as_array_mut() {
        a.push(
            json!({"type": type_, "status": st, "reason": reason, "message": message,
            "lastUpdateTime": now, "lastTransitionTime": transition}),
        );
    }
}

/// The simulated controllers and their timing state.
pub struct Controller {
    store: Arc<Store>,
    knobs: HashMap<(Kind, String, String), Behaviour>,
    /// Last pod step of each ReplicaSet / StatefulSet / DaemonSet, by uid.
    steps: HashMap<String, Instant>,
    /// Last observed progress of each Deployment, by uid (the Progressing
    /// condition's lastUpdateTime has only second resolution, too coarse for
    /// sub-second test deadlines).
    progress: HashMap<String, Instant>,
    /// (updateRevision, currentRevision) ControllerRevision names of each
    /// StatefulSet / DaemonSet, by uid.
    revisions: HashMap<String, (String, String)>,
    /// While set, no pod becomes ready or terminates (tests use it to hold
    /// a rollout mid-way deterministically).
    frozen: Arc<AtomicBool>,
}

impl Controller {
    /// A controller over `store` with per-workload behaviour knobs.
    pub fn new(
        store: Arc<Store>,
        knobs: HashMap<(Kind, String, String), Behaviour>,
        frozen: Arc<AtomicBool>,
    ) -> Self {
        Controller {
            store,
            knobs,
            steps: HashMap::new(),
            progress: HashMap::new(),
            revisions: HashMap::new(),
            frozen,
        }
    }

    fn knobs(&self, kind: Kind, ns: &str, name: &str) -> Behaviour {
        self.knobs
            .get(&(kind, ns.to_owned(), name.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    fn owner_name(obj: &Value) -> String {
        obj.pointer("/metadata/ownerReferences/0/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    /// One reconcile pass over every workload.
    pub fn tick(&mut self, now: Instant) {
        let (rss, _) = self.store.list(Kind::ReplicaSet, None);
        for rs in rss {
            if let Err(e) = self.step_replicaset(rs, now) {
                tracing::debug!(error = %e, "replicaset step skipped");
            }
        }
        let (ds, _) = self.store.list(Kind::Deployment, None);
        for d in ds {
            if let Err(e) = self.reconcile_deployment(d, now) {
                tracing::debug!(error = %e, "deployment sync skipped");
            }
        }
        for kind in [Kind::StatefulSet, Kind::DaemonSet] {
            let (objs, _) = self.store.list(kind, None);
            for o in objs {
                if let Err(e) = self.reconcile_history(kind, o, now) {
                    tracing::debug!(error = %e, "history sync skipped");
                }
            }
        }
    }

    /// Runs [`Controller::tick`] every `interval` until `shutdown` flips.
    pub async fn run(
        mut self,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.tick(Instant::now()),
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
            }
        }
    }

    fn step_due(&mut self, uid: &str, now: Instant, every: Duration) -> bool {
        if self.frozen.load(Ordering::Relaxed) {
            return false;
        }
        let last = *self.steps.entry(uid.to_owned()).or_insert(now);
        now.duration_since(last) >= every
    }

    /// The ReplicaSet controller and kubelet in one: pods appear at once,
    /// become ready (or terminate) one per step.
    fn step_replicaset(&mut self, mut rs: Value, now: Instant) -> Result<(), StoreError> {
        let knobs = self.knobs(Kind::Deployment, namespace_of(&rs), &Self::owner_name(&rs));
        let uid = uid_of(&rs).to_owned();
        let spec = int_at(&rs, "/spec/replicas");
        let mut replicas = int_at(&rs, "/status/replicas");
        let mut ready = int_at(&rs, "/status/readyReplicas").min(spec);
        let mut available = int_at(&rs, "/status/availableReplicas").min(spec);
        if replicas < spec {
            replicas = spec;
            self.steps.insert(uid.clone(), now);
        } else if (replicas > spec || ready < replicas)
            && self.step_due(&uid, now, Duration::from_millis(knobs.ready_after_ms))
        {
            if replicas > spec {
                replicas -= 1;
            } else if !never_ready(&rs["spec"]["template"], &knobs) {
                ready += 1;
                available += 1;
            }
            self.steps.insert(uid, now);
        }
        let generation = int_at(&rs, "/metadata/generation");
        let st = &mut rs["status"];
        st["replicas"] = json!(replicas);
        st["fullyLabeledReplicas"] = json!(replicas);
        st["readyReplicas"] = json!(ready.min(replicas));
        st["availableReplicas"] = json!(available.min(replicas));
        st["observedGeneration"] = json!(generation);
        self.store
            .update(Kind::ReplicaSet, rs, WriteMode::Status, false)?;
        Ok(())
    }

    fn scale_rs(
        &mut self,
        rs: &mut Value,
        to: i64,
        d: &Value,
        now: Instant,
    ) -> Result<(), StoreError> {
        let (surge, _) = fenceposts(d);
        let replicas = desired_replicas(d);
        rs["spec"]["replicas"] = json!(to);
        let ann = &mut rs["metadata"]["annotations"];
        if !ann.is_object() {
            *ann = json!({});
        }
        ann[DESIRED_REPLICAS] = json!(replicas.to_string());
        ann[MAX_REPLICAS] = json!((replicas + surge).to_string());
        if int_at(rs, "/status/replicas") < to {
            // Pods are created at once; they become ready a step later.
            rs["status"]["replicas"] = json!(to);
            self.steps.insert(uid_of(rs).to_owned(), now);
        }
        *rs = self
            .store
            .update(Kind::ReplicaSet, rs.clone(), WriteMode::Controller, false)?;
        Ok(())
    }

    /// `syncDeployment` for one Deployment.
    fn reconcile_deployment(&mut self, d: Value, now: Instant) -> Result<(), StoreError> {
        if d.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(());
        }
        let ns = namespace_of(&d).to_owned();
        let name = name_of(&d).to_owned();
        let uid = uid_of(&d).to_owned();
        let knobs = self.knobs(Kind::Deployment, &ns, &name);
        let replicas = desired_replicas(&d);
        let (surge, max_unavailable) = fenceposts(&d);
        let template = d["spec"]["template"].clone();
        let paused = d.pointer("/spec/paused") == Some(&json!(true));
        let deadline = progress_deadline(&d, &knobs);
        let old_status = d.get("status").cloned().unwrap_or_else(|| json!({}));
        let mut status = old_status.clone();
        let mut d_ann = annotations(&d);

        let (all, _) = self.store.list(Kind::ReplicaSet, Some(&ns));
        let mut owned: Vec<Value> = all
            .into_iter()
            .filter(|rs| controlled_by(rs, &uid))
            .collect();
        owned.sort_by(|a, b| {
            let ka = (
                a.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str),
                name_of(a),
            );
            let kb = (
                b.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str),
                name_of(b),
            );
            ka.cmp(&kb)
        });
        let mut new_idx = owned
            .iter()
            .position(|rs| equal_ignore_hash(&rs["spec"]["template"], &template));
        let max_old = owned
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_idx)
            .filter_map(|(_, rs)| revision_of(rs))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;

        if paused {
            if deadline.is_some() {
                set_condition(
                    &mut status,
                    "Progressing",
                    "Unknown",
                    "DeploymentPaused",
                    "Deployment is paused",
                );
            }
        } else if get_condition(&status, "Progressing")
            .is_some_and(|c| c["reason"] == "DeploymentPaused")
        {
            set_condition(
                &mut status,
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
            );
        }

        match new_idx {
            Some(i) => {
                let mut rs = owned[i].clone();
                if set_new_rs_annotations(&d, &mut rs, new_revision, replicas, surge) {
                    rs = self
                        .store
                        .update(Kind::ReplicaSet, rs, WriteMode::Controller, false)?;
                    owned[i] = rs;
                }
                if deadline.is_some() && get_condition(&status, "Progressing").is_none() {
                    let msg = format!("Found new replica set \"{}\"", name_of(&owned[i]));
                    set_condition(
                        &mut status,
                        "Progressing",
                        "True",
                        "FoundNewReplicaSet",
                        &msg,
                    );
                    self.progress.insert(uid.clone(), now);
                }
            }
            None if !paused => {
                let collision = d.pointer("/status/collisionCount").and_then(Value::as_i64);
                let hash = compute_hash(&template, collision);
                let rs_name = format!("{name}-{hash}");
                if self.store.get(Kind::ReplicaSet, &ns, &rs_name).is_some() {
                    // Same name, different template: bump the collision count
                    // so the next sync hashes differently.
                    status["collisionCount"] = json!(collision.unwrap_or(0) + 1);
                    let mut nd = d.clone();
                    nd["status"] = status;
                    self.store
                        .update(Kind::Deployment, nd, WriteMode::Status, false)?;
                    return Ok(());
                }
                let olds: Vec<&Value> = owned.iter().collect();
                let new_replicas = if is_recreate(&d) {
                    if olds.iter().any(|rs| {
                        int_at(rs, "/status/replicas") > 0 || int_at(rs, "/spec/replicas") > 0
                    }) {
                        0
                    } else {
                        replicas
                    }
                } else {
                    new_rs_new_replicas(replicas, surge, &olds, 0)
                };
                let mut t = template.clone();
                t["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"][POD_TEMPLATE_HASH] = json!(hash);
                let mut ann: Map<String, Value> = d_ann
                    .iter()
                    .filter(|(k, _)| !skip_annotation(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                ann.insert(REVISION.into(), json!(new_revision.to_string()));
                ann.insert(DESIRED_REPLICAS.into(), json!(replicas.to_string()));
                ann.insert(MAX_REPLICAS.into(), json!((replicas + surge).to_string()));
                let mut rs = json!({
                    "metadata": {"name": rs_name, "namespace": ns, "labels": t["metadata"]["labels"].clone(),
                        "annotations": ann, "ownerReferences": owner_ref(&d, Kind::Deployment)},
                    "spec": {"replicas": new_replicas, "selector": selector, "template": t},
                    "status": {"replicas": new_replicas, "observedGeneration": 1},
                });
                if let Some(m) = d.pointer("/spec/minReadySeconds") {
                    rs["spec"]["minReadySeconds"] = m.clone();
                }
                let created = self.store.create(Kind::ReplicaSet, rs, false)?;
                self.steps.insert(uid_of(&created).to_owned(), now);
                if deadline.is_some() {
                    let msg = format!("Created new replica set \"{rs_name}\"");
                    set_condition(
                        &mut status,
                        "Progressing",
                        "True",
                        "NewReplicaSetCreated",
                        &msg,
                    );
                    self.progress.insert(uid.clone(), now);
                }
                owned.push(created);
                new_idx = Some(owned.len() - 1);
            }
            None => {}
        }

        if let Some(i) = new_idx {
            let rev = owned[i]
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(REVISION))
                .cloned();
            if let Some(rev) = rev
                && d_ann.get(REVISION) != Some(&rev)
            {
                d_ann.insert(REVISION.into(), rev);
            }
        }

        if !paused && let Some(ni) = new_idx {
            if is_recreate(&d) {
                self.rollout_recreate(&d, &mut owned, ni, now)?;
            } else {
                self.rollout_rolling(&d, &mut owned, ni, now)?;
            }
        }

        // calculateStatus
        let sum = |ptr: &str| owned.iter().map(|rs| int_at(rs, ptr)).sum::<i64>();
        let total_spec = sum("/spec/replicas");
        let available = sum("/status/availableReplicas");
        let updated = new_idx.map_or(0, |i| int_at(&owned[i], "/status/replicas"));
        status["observedGeneration"] = json!(int_at(&d, "/metadata/generation"));
        status["replicas"] = json!(sum("/status/replicas"));
        status["updatedReplicas"] = json!(updated);
        status["readyReplicas"] = json!(sum("/status/readyReplicas"));
        status["availableReplicas"] = json!(available);
        status["unavailableReplicas"] = json!((total_spec - available).max(0));
        for k in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        ] {
            if status[k] == json!(0) {
                status.as_object_mut().map(|m| m.remove(k));
            }
        }
        if available >= replicas - max_unavailable {
            set_condition(
                &mut status,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            );
        } else {
            set_condition(
                &mut status,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            );
        }

        let complete = updated == replicas
            && int_at(&status, "/replicas") == replicas
            && available == replicas
            && int_at(&status, "/observedGeneration") >= int_at(&d, "/metadata/generation");

        // syncRolloutStatus
        if paused {
            // The paused condition set above stays.
        } else if let Some(deadline) = deadline {
            let cur = get_condition(&status, "Progressing").cloned();
            let already_complete = int_at(&status, "/replicas") == updated
                && cur
                    .as_ref()
                    .is_some_and(|c| c["reason"] == "NewReplicaSetAvailable");
            let rs_name = new_idx.map(|i| name_of(&owned[i]).to_owned());
            if !already_complete {
                let old_old =
                    int_at(&old_status, "/replicas") - int_at(&old_status, "/updatedReplicas");
                let new_old = int_at(&status, "/replicas") - updated;
                let progressing = updated > int_at(&old_status, "/updatedReplicas")
                    || new_old < old_old
                    || int_at(&status, "/readyReplicas") > int_at(&old_status, "/readyReplicas")
                    || available > int_at(&old_status, "/availableReplicas");
                if complete {
                    let msg = match &rs_name {
                        Some(n) => format!("ReplicaSet \"{n}\" has successfully progressed."),
                        None => format!("Deployment \"{name}\" has successfully progressed."),
                    };
                    set_condition(
                        &mut status,
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        &msg,
                    );
                } else if progressing {
                    let msg = match &rs_name {
                        Some(n) => format!("ReplicaSet \"{n}\" is progressing."),
                        None => format!("Deployment \"{name}\" is progressing."),
                    };
                    let transition = cur
                        .as_ref()
                        .filter(|c| c["status"] == "True")
                        .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_owned));
                    remove_condition(&mut status, "Progressing");
                    set_condition(
                        &mut status,
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        &msg,
                    );
                    if let (Some(t), Some(a)) = (transition, status["conditions"].as_array_mut())
                        && let Some(c) = a.iter_mut().find(|c| c["type"] == "Progressing")
                    {
                        c["lastTransitionTime"] = json!(t);
                    }
                    self.progress.insert(uid.clone(), now);
                } else {
                    let timed_out = match cur.as_ref().map(|c| c["reason"].as_str().unwrap_or("")) {
                        None | Some("NewReplicaSetAvailable") => false,
                        Some("ProgressDeadlineExceeded") => true,
                        Some(_) => {
                            let since = *self.progress.entry(uid.clone()).or_insert(now);
                            now.duration_since(since) > deadline
                        }
                    };
                    if timed_out {
                        let msg = match &rs_name {
                            Some(n) => format!("ReplicaSet \"{n}\" has timed out progressing."),
                            None => format!("Deployment \"{name}\" has timed out progressing."),
                        };
                        set_condition(
                            &mut status,
                            "Progressing",
                            "False",
                            "ProgressDeadlineExceeded",
                            &msg,
                        );
                    }
                }
            }
        } else {
            remove_condition(&mut status, "Progressing");
        }

        if complete && !paused {
            self.cleanup(&d, &owned, new_idx)?;
        }

        let mut nd = d.clone();
        nd["status"] = status;
        nd["metadata"]["annotations"] = Value::Object(d_ann);
        self.store
            .update(Kind::Deployment, nd, WriteMode::Status, false)?;
        Ok(())
    }

    fn rollout_rolling(
        &mut self,
        d: &Value,
        owned: &mut [Value],
        ni: usize,
        now: Instant,
    ) -> Result<(), StoreError> {
        let replicas = desired_replicas(d);
        let (surge, max_unavailable) = fenceposts(d);
        // reconcileNewReplicaSet
        let new_spec = int_at(&owned[ni], "/spec/replicas");
        if new_spec > replicas {
            let mut rs = owned[ni].clone();
            self.scale_rs(&mut rs, replicas, d, now)?;
            owned[ni] = rs;
        } else if new_spec < replicas {
            let olds: Vec<&Value> = owned
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != ni)
                .map(|(_, r)| r)
                .collect();
            let to = new_rs_new_replicas(replicas, surge, &olds, new_spec);
            if to != new_spec {
                let mut rs = owned[ni].clone();
                self.scale_rs(&mut rs, to, d, now)?;
                owned[ni] = rs;
            }
        }
        // reconcileOldReplicaSets
        let old_idx: Vec<usize> = (0..owned.len()).filter(|i| *i != ni).collect();
        let old_pods: i64 = old_idx
            .iter()
            .map(|i| int_at(&owned[*i], "/spec/replicas"))
            .sum();
        if old_pods == 0 {
            return Ok(());
        }
        let all_pods: i64 = owned.iter().map(|rs| int_at(rs, "/spec/replicas")).sum();
        let min_available = replicas - max_unavailable;
        let new_unavailable =
            int_at(&owned[ni], "/spec/replicas") - int_at(&owned[ni], "/status/availableReplicas");
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(());
        }
        // cleanupUnhealthyReplicas: oldest first.
        let mut done = 0;
        for &i in &old_idx {
            if done >= max_scaled_down {
                break;
            }
            let spec = int_at(&owned[i], "/spec/replicas");
            let unhealthy = spec - int_at(&owned[i], "/status/availableReplicas");
            if spec == 0 || unhealthy <= 0 {
                continue;
            }
            let n = unhealthy.min(max_scaled_down - done);
            let mut rs = owned[i].clone();
            self.scale_rs(&mut rs, spec - n, d, now)?;
            owned[i] = rs;
            done += n;
        }
        // scaleDownOldReplicaSetsForRollingUpdate
        let available: i64 = owned
            .iter()
            .map(|rs| int_at(rs, "/status/availableReplicas").min(int_at(rs, "/spec/replicas")))
            .sum();
        if available <= min_available {
            return Ok(());
        }
        let total = available - min_available;
        let mut done = 0;
        for &i in &old_idx {
            if done >= total {
                break;
            }
            let spec = int_at(&owned[i], "/spec/replicas");
            if spec == 0 {
                continue;
            }
            let n = spec.min(total - done);
            let mut rs = owned[i].clone();
            self.scale_rs(&mut rs, spec - n, d, now)?;
            owned[i] = rs;
            done += n;
        }
        Ok(())
    }

    fn rollout_recreate(
        &mut self,
        d: &Value,
        owned: &mut [Value],
        ni: usize,
        now: Instant,
    ) -> Result<(), StoreError> {
        let mut old_pods = false;
        for (i, rs) in owned.iter_mut().enumerate() {
            if i == ni {
                continue;
            }
            if int_at(rs, "/spec/replicas") > 0 {
                self.scale_rs(rs, 0, d, now)?;
            }
            old_pods |= int_at(rs, "/status/replicas") > 0;
        }
        let replicas = desired_replicas(d);
        if !old_pods && int_at(&owned[ni], "/spec/replicas") != replicas {
            let mut rs = owned[ni].clone();
            self.scale_rs(&mut rs, replicas, d, now)?;
            owned[ni] = rs;
        }
        Ok(())
    }

    /// `cleanupDeployment`: deletes the oldest idle ReplicaSets beyond
    /// `revisionHistoryLimit`.
    fn cleanup(
        &mut self,
        d: &Value,
        owned: &[Value],
        new_idx: Option<usize>,
    ) -> Result<(), StoreError> {
        let Some(limit) = d
            .pointer("/spec/revisionHistoryLimit")
            .and_then(Value::as_i64)
        else {
            return Ok(());
        };
        if limit == i64::from(i32::MAX) {
            return Ok(());
        }
        let mut olds: Vec<&Value> = owned
            .iter()
            .enumerate()
            .filter(|(i, rs)| {
                Some(*i) != new_idx && rs.pointer("/metadata/deletionTimestamp").is_none()
            })
            .map(|(_, rs)| rs)
            .collect();
        let excess = i64::try_from(olds.len()).unwrap_or(0) - limit;
        if excess <= 0 {
            return Ok(());
        }
        olds.sort_by_key(|rs| revision_of(rs).unwrap_or(0));
        let mut deleted = 0;
        for rs in olds {
            if deleted >= excess {
                break;
            }
            if int_at(rs, "/status/replicas") != 0
                || int_at(rs, "/spec/replicas") != 0
                || int_at(rs, "/metadata/generation") > int_at(rs, "/status/observedGeneration")
            {
                continue;
            }
            self.store
                .delete(Kind::ReplicaSet, namespace_of(rs), name_of(rs), false)?;
            self.steps.remove(uid_of(rs));
            deleted += 1;
        }
        Ok(())
    }

    /// ControllerRevision history and simulated status for a StatefulSet or
    /// DaemonSet.
    fn reconcile_history(
        &mut self,
        kind: Kind,
        obj: Value,
        now: Instant,
    ) -> Result<(), StoreError> {
        let ns = namespace_of(&obj).to_owned();
        let name = name_of(&obj).to_owned();
        let uid = uid_of(&obj).to_owned();
        let knobs = self.knobs(kind, &ns, &name);
        let template = obj["spec"]["template"].clone();
        let data = revision_data(&template);
        let hash_label = if kind == Kind::DaemonSet {
            DS_HASH_LABEL
        } else {
            STS_HASH_LABEL
        };

        let (all, _) = self.store.list(Kind::ControllerRevision, Some(&ns));
        let mut owned: Vec<Value> = all
            .into_iter()
            .filter(|cr| controlled_by(cr, &uid))
            .collect();
        owned.sort_by_key(|cr| int_at(cr, "/revision"));
        let max_rev = owned.last().map_or(0, |cr| int_at(cr, "/revision"));
        let current = owned
            .iter()
            .position(|cr| canonical_json(&cr["data"]) == data);
        let update_name = match current {
            Some(i) => {
                let mut cr = owned[i].clone();
                if int_at(&cr, "/revision") < max_rev {
                    cr["revision"] = json!(max_rev + 1);
                    cr = self.store.update(
                        Kind::ControllerRevision,
                        cr,
                        WriteMode::Controller,
                        false,
                    )?;
                    owned[i] = cr;
                }
                name_of(&owned[i]).to_owned()
            }
            None => {
                let cr =
                    new_controller_revision(kind, &obj, &template, &data, max_rev + 1, hash_label);
                let cr = self.store.create(Kind::ControllerRevision, cr, false)?;
                let n = name_of(&cr).to_owned();
                owned.push(cr);
                n
            }
        };

        // Simulated pods: one pod is replaced (or becomes ready) per step.
        let mut st = obj.get("status").cloned().unwrap_or_else(|| json!({}));
        let generation = int_at(&obj, "/metadata/generation");
        let every = Duration::from_millis(knobs.ready_after_ms);
        let bad = never_ready(&template, &knobs);
        let (total, ready_key, updated_key) = if kind == Kind::DaemonSet {
            let nodes = st
                .get("desiredNumberScheduled")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            (nodes, "numberReady", "updatedNumberScheduled")
        } else {
            (desired_replicas(&obj), "readyReplicas", "updatedReplicas")
        };
        // Without history (first tick after seeding) the stored status is
        // taken as the steady state.
        let (prev_update, prev_current) = self.revisions.get(&uid).cloned().unwrap_or_else(|| {
            let cur = st
                .get("currentRevision")
                .and_then(Value::as_str)
                .unwrap_or(&update_name);
            (update_name.clone(), cur.to_owned())
        });
        let mut updated = int_at(&st, &format!("/{updated_key}")).min(total);
        let mut ready = int_at(&st, &format!("/{ready_key}")).min(total);
        if prev_update != update_name {
            updated = if prev_current == update_name {
                total
            } else {
                0
            };
        }
        if (ready < total || updated < total) && self.step_due(&uid, now, every) {
            if ready < total {
                if !bad {
                    ready += 1;
                }
            } else {
                updated += 1;
                ready -= 1;
            }
            self.steps.insert(uid.clone(), now);
        }
        let done = updated == total && ready == total;
        st["observedGeneration"] = json!(generation);
        let current_name = if done || prev_current.is_empty() {
            update_name.clone()
        } else {
            prev_current
        };
        st["updateRevision"] = json!(update_name);
        st["currentRevision"] = json!(current_name);
        self.revisions
            .insert(uid.clone(), (update_name.clone(), current_name));
        st[updated_key] = json!(updated);
        st[ready_key] = json!(ready);
        if kind == Kind::DaemonSet {
            // DaemonSetStatus has no revision fields; the controller keeps
            // them on the side.
            if let Some(m) = st.as_object_mut() {
                m.remove("updateRevision");
                m.remove("currentRevision");
            }
            st["desiredNumberScheduled"] = json!(total);
            st["currentNumberScheduled"] = json!(total);
            st["numberMisscheduled"] = json!(0);
            st["numberAvailable"] = json!(ready);
            if total > ready {
                st["numberUnavailable"] = json!(total - ready);
            } else if let Some(m) = st.as_object_mut() {
                m.remove("numberUnavailable");
            }
        } else {
            st["replicas"] = json!(total);
            st["availableReplicas"] = json!(ready);
            st["currentReplicas"] = json!(if done { total } else { total - updated });
        }
        let mut no = obj.clone();
        no["status"] = st;
        self.store.update(kind, no, WriteMode::Status, false)?;

        // Keep at most revisionHistoryLimit old revisions.
        let limit = obj
            .pointer("/spec/revisionHistoryLimit")
            .and_then(Value::as_i64)
            .unwrap_or(10);
        let olds: Vec<&Value> = owned
            .iter()
            .filter(|cr| name_of(cr) != update_name)
            .collect();
        let excess = i64::try_from(olds.len()).unwrap_or(0) - limit;
        for cr in olds
            .into_iter()
            .take(usize::try_from(excess.max(0)).unwrap_or(0))
        {
            self.store
                .delete(Kind::ControllerRevision, &ns, name_of(cr), false)?;
        }
        Ok(())
    }
}

/// A new ControllerRevision for `obj` holding `data`.
pub fn new_controller_revision(
    kind: Kind,
    obj: &Value,
    template: &Value,
    data: &str,
    revision: i64,
    hash_label: &str,
) -> Value {
    let hash = safe_encode(&fnv32a(data.as_bytes()).to_string());
    let mut labels = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.insert(hash_label.into(), json!(hash));
    let mut meta = json!({
        "name": format!("{}-{hash}", name_of(obj)), "namespace": namespace_of(obj),
        "labels": labels, "ownerReferences": owner_ref(obj, kind),
    });
    if kind == Kind::DaemonSet
        && let Some(a) = obj.pointer("/metadata/annotations")
    {
        meta["annotations"] = a.clone();
    }
    let data: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    json!({"metadata": meta, "revision": revision, "data": data})
}

/// `NewRSNewReplicas` for RollingUpdate.
fn new_rs_new_replicas(replicas: i64, surge: i64, olds: &[&Value], new_spec: i64) -> i64 {
    let current: i64 = olds
        .iter()
        .map(|rs| int_at(rs, "/spec/replicas"))
        .sum::<i64>()
        + new_spec;
    let max_total = replicas + surge;
    if current >= max_total {
        return new_spec;
    }
    new_spec + (max_total - current).min(replicas - new_spec)
}

/// `SetNewReplicaSetAnnotations` for an existing new ReplicaSet: copies the
/// Deployment's annotations, raises the revision (recording the old one in
/// `revision-history`) and the replica annotations. Returns whether
/// anything changed.
fn set_new_rs_annotations(
    d: &Value,
    rs: &mut Value,
    new_revision: i64,
    replicas: i64,
    surge: i64,
) -> bool {
    let before = rs.clone();
    let mut ann = annotations(rs);
    for (k, v) in annotations(d) {
        if !skip_annotation(&k) {
            ann.insert(k, v);
        }
    }
    let old_rev = revision_of(rs).unwrap_or(0);
    if old_rev < new_revision {
        ann.insert(REVISION.into(), json!(new_revision.to_string()));
        if old_rev > 0 {
            let mut history: Vec<String> = ann
                .get(REVISION_HISTORY)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| s.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            history.push(old_rev.to_string());
            while history.join(",").len() > REVISION_HISTORY_MAX_CHARS && history.len() > 1 {
                history.remove(0);
            }
            ann.insert(REVISION_HISTORY.into(), json!(history.join(",")));
        }
    }
    ann.insert(DESIRED_REPLICAS.into(), json!(replicas.to_string()));
    ann.insert(MAX_REPLICAS.into(), json!((replicas + surge).to_string()));
    rs["metadata"]["annotations"] = Value::Object(ann);
    *rs != before
}

/// The label selector string of a workload's `spec.selector`.
pub fn selector_string(obj: &Value) -> String {
    Selector::from_label_selector(&obj["spec"]["selector"]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A percentage or a replica count near `i64::MAX` (a patched object)
    /// must not overflow: the result saturates instead.
    #[test]
    fn scaled_values_do_not_overflow() {
        let pct = |p: &str| Some(Value::String(p.into()));
        assert_eq!(scaled(pct("25%").as_ref(), 10, true, 25), 3);
        assert_eq!(scaled(pct("25%").as_ref(), 10, false, 25), 2);
        assert_eq!(scaled(None, 10, true, 25), 3);
        assert_eq!(
            scaled(pct("25%").as_ref(), i64::MAX, true, 25),
            i64::MAX / 4 + 1
        );
        assert_eq!(scaled(None, i64::MAX, false, 25), i64::MAX / 4);
        assert_eq!(
            scaled(pct("9223372036854775807%").as_ref(), 3, true, 25),
            276_701_161_105_643_275
        );
        assert_eq!(
            scaled(pct("9223372036854775807%").as_ref(), i64::MAX, true, 25),
            i64::MAX
        );
        assert_eq!(
            scaled(pct("-9223372036854775808%").as_ref(), i64::MAX, false, 25),
            i64::MIN
        );
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let d = json!({"spec":{"replicas":3}});
        assert_eq!(fenceposts(&d), (1, 0));
        let d = json!({"spec":{"replicas":10,"strategy":{"rollingUpdate":{"maxSurge":0,"maxUnavailable":"0%"}}}});
        assert_eq!(fenceposts(&d), (0, 1));
    }

    #[test]
    fn reused_replicaset_gets_new_revision_and_history() {
        let d = json!({"metadata":{"annotations":{"kubernetes.io/change-cause":"undo", REVISION: "3"}},"spec":{"replicas":3}});
        let mut rs = json!({"metadata":{"annotations":{REVISION:"2", CHANGE_CAUSE:"old"}}});
        assert!(set_new_rs_annotations(&d, &mut rs, 4, 3, 1));
        let a = &rs["metadata"]["annotations"];
        assert_eq!(a[REVISION], "4");
        assert_eq!(a[REVISION_HISTORY], "2");
        assert_eq!(a[CHANGE_CAUSE], "undo");
        assert_eq!(a[MAX_REPLICAS], "4");
        // A second pass is a no-op.
        assert!(!set_new_rs_annotations(&d, &mut rs, 4, 3, 1));
    }

    #[test]
    fn new_replicas_respect_surge() {
        let old = json!({"spec":{"replicas":3}});
        assert_eq!(new_rs_new_replicas(3, 1, &[&old], 0), 1);
        let old2 = json!({"spec":{"replicas":2}});
        assert_eq!(new_rs_new_replicas(3, 1, &[&old2], 1), 2);
        assert_eq!(new_rs_new_replicas(3, 1, &[], 0), 3);
    }

    #[test]
    fn revision_parsing() {
        assert_eq!(revision_of(&json!({})), Some(0));
        assert_eq!(
            revision_of(&json!({"metadata":{"annotations":{REVISION:"x"}}})),
            None
        );
        assert_eq!(
            revision_of(&json!({"metadata":{"annotations":{REVISION:"7"}}})),
            Some(7)
        );
    }
}
