//! Turns a [`Seed`] into stored objects: namespaces, Deployments with one
//! ReplicaSet per historical revision, StatefulSets and DaemonSets with
//! ControllerRevisions, all in the steady state a real cluster would show
//! after those rollouts finished; and loads the seed's raw `objects`.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use super::controller::{
    CHANGE_CAUSE, DESIRED_REPLICAS, DS_HASH_LABEL, MAX_REPLICAS, REVISION, REVISION_HISTORY,
    STS_HASH_LABEL, fenceposts, new_controller_revision,
};
use super::seed::{Behaviour, Seed, WorkloadSeed};
use super::semantic::{POD_TEMPLATE_HASH, compute_hash, go_template, revision_data};
use super::store::{Kind, Store, StoreError, WriteMode, now_rfc3339, object_kind};

/// Per-workload behaviour knobs, keyed by kind, namespace and name.
pub type Knobs = HashMap<(Kind, String, String), Behaviour>;

fn labels_json(labels: &BTreeMap<String, String>) -> Value {
    Value::Object(labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn template_of(w: &WorkloadSeed, containers: &[(String, String)]) -> Value {
    let cs: Vec<Value> = containers
        .iter()
        .map(|(n, i)| json!({"name": n, "image": i}))
        .collect();
    go_template(
        &json!({"metadata": {"labels": labels_json(&w.labels)}, "spec": {"containers": cs}}),
    )
}

/// Templates of a workload's revisions (1-based numbers, oldest first).
/// A template repeated later keeps only its latest number, the earlier ones
/// going to `revision-history`, as the controller does on reuse.
fn revisions(w: &WorkloadSeed) -> Vec<(i64, Value, Option<String>, Vec<i64>)> {
    let mut out: Vec<(i64, Value, Option<String>, Vec<i64>)> = Vec::new();
    for (i, r) in w.revisions.iter().enumerate() {
        // Validated when the seed was parsed.
        let containers = w.containers_of(r).unwrap_or_default();
        let t = template_of(w, &containers);
        let rev = i64::try_from(i).unwrap_or(0) + 1;
        let mut history = Vec::new();
        if let Some(pos) = out.iter().position(|(_, ot, _, _)| *ot == t) {
            let (old_rev, _, _, old_hist) = out.remove(pos);
            history = old_hist;
            history.push(old_rev);
        }
        out.push((rev, t, r.change_cause.clone(), history));
    }
    out
}

/// Creates the seed's objects in `store` and returns the behaviour knobs.
///
/// # Errors
/// A store error, e.g. two workloads with the same name.
pub fn populate(store: &Store, seed: &Seed) -> Result<Knobs, StoreError> {
    let mut namespaces: Vec<String> = vec!["default".into()];
    for ns in seed
        .namespaces
        .iter()
        .chain(seed.deployments.iter().map(|d| &d.namespace))
        .chain(seed.statefulsets.iter().map(|d| &d.namespace))
        .chain(seed.daemonsets.iter().map(|d| &d.namespace))
    {
        if !namespaces.contains(ns) {
            namespaces.push(ns.clone());
        }
    }
    for ns in &namespaces {
        store.create(
            Kind::Namespace,
            json!({"metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
            false,
        )?;
    }
    let mut knobs = Knobs::new();
    for w in &seed.deployments {
        seed_deployment(store, w)?;
        knobs.insert(
            (Kind::Deployment, w.namespace.clone(), w.name.clone()),
            w.behaviour.clone(),
        );
    }
    for (kind, list) in [
        (Kind::StatefulSet, &seed.statefulsets),
        (Kind::DaemonSet, &seed.daemonsets),
    ] {
        for w in list {
            seed_history_workload(store, kind, w)?;
            knobs.insert(
                (kind, w.namespace.clone(), w.name.clone()),
                w.behaviour.clone(),
            );
        }
    }
    for (kind, ns, name) in load_objects(store, &seed.objects, &namespaces)? {
        knobs.insert((kind, ns, name), seed.objects_behaviour.clone());
    }
    Ok(knobs)
}

/// Owners before the objects they own, so owner uids are known when the
/// owned objects' references are rewritten.
fn load_order(kind: Kind) -> u8 {
    match kind {
        Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet => 0,
        _ => 1,
    }
}

/// Stores raw objects: server-managed metadata is dropped and reassigned,
/// and `ownerReferences` follow the owners' new uids. Returns the
/// workloads loaded, for their behaviour knobs.
fn load_objects(
    store: &Store,
    objects: &[Value],
    namespaces: &[String],
) -> Result<Vec<(Kind, String, String)>, StoreError> {
    let mut typed: Vec<(Kind, &Value)> = objects
        .iter()
        // Validated when the seed was parsed.
        .filter_map(|o| object_kind(o).ok().map(|k| (k, o)))
        .collect();
    typed.sort_by_key(|(k, _)| load_order(*k));
    let mut created_ns: Vec<String> = namespaces.to_vec();
    let mut uids: HashMap<String, String> = HashMap::new();
    let mut workloads = Vec::new();
    for (kind, obj) in typed {
        let ns = super::store::namespace_of(obj).to_owned();
        if !created_ns.contains(&ns) {
            store.create(
                Kind::Namespace,
                json!({"metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
                false,
            )?;
            created_ns.push(ns.clone());
        }
        let mut o = obj.clone();
        let old_uid = super::store::uid_of(obj).to_owned();
        if let Some(meta) = o["metadata"].as_object_mut() {
            for k in [
                "uid",
                "resourceVersion",
                "managedFields",
                "selfLink",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                meta.remove(k);
            }
            if let Some(refs) = meta
                .get_mut("ownerReferences")
                .and_then(Value::as_array_mut)
            {
                for r in refs {
                    let new = r["uid"].as_str().and_then(|u| uids.get(u)).cloned();
                    if let Some(new) = new {
                        r["uid"] = json!(new);
                    }
                }
            }
        }
        let stored = store.create(kind, o, false)?;
        if !old_uid.is_empty() {
            uids.insert(old_uid, super::store::uid_of(&stored).to_owned());
        }
        if load_order(kind) == 0 {
            workloads.push((kind, ns, super::store::name_of(&stored).to_owned()));
        }
    }
    Ok(workloads)
}

fn base_annotations(w: &WorkloadSeed) -> Map<String, Value> {
    w.annotations
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect()
}

fn seed_deployment(store: &Store, w: &WorkloadSeed) -> Result<(), StoreError> {
    let revs = revisions(w);
    let (cur_rev, cur_template, cur_cause, _) =
        revs.last().cloned().unwrap_or((1, json!({}), None, vec![]));
    let mut ann = base_annotations(w);
    ann.insert(REVISION.into(), json!(cur_rev.to_string()));
    if let Some(c) = &cur_cause {
        ann.insert(CHANGE_CAUSE.into(), json!(c));
    }
    let strategy = match w.strategy.as_deref() {
        Some("Recreate") => json!({"type": "Recreate"}),
        _ => {
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        }
    };
    let generation = i64::try_from(w.revisions.len()).unwrap_or(1);
    let d = json!({
        "metadata": {"name": w.name, "namespace": w.namespace, "labels": labels_json(&w.labels), "annotations": ann},
        "spec": {
            "replicas": w.replicas,
            "selector": {"matchLabels": labels_json(&w.labels)},
            "template": cur_template,
            "strategy": strategy,
            "revisionHistoryLimit": w.revision_history_limit.unwrap_or(10),
            "progressDeadlineSeconds": w.progress_deadline_seconds.unwrap_or(600),
            "paused": w.paused,
        },
    });
    let mut d = d;
    if !w.paused
        && let Some(m) = d["spec"].as_object_mut()
    {
        m.remove("paused");
    }
    // Several rollouts happened before the seed's moment.
    d["metadata"]["generation"] = json!(generation);
    let new_rs_name = format!("{}-{}", w.name, compute_hash(&cur_template, None));
    d["status"] = deployment_status(w.replicas, generation, &new_rs_name);
    let d = store.create(Kind::Deployment, d, false)?;
    let (surge, _) = fenceposts(&d);
    let uid = d["metadata"]["uid"].clone();
    for (rev, template, cause, history) in &revs {
        let current = *rev == cur_rev;
        let hash = compute_hash(template, None);
        let name = format!("{}-{hash}", w.name);
        let mut t = template.clone();
        t["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
        let mut sel = d["spec"]["selector"].clone();
        sel["matchLabels"][POD_TEMPLATE_HASH] = json!(hash);
        let mut ann = base_annotations(w);
        ann.insert(REVISION.into(), json!(rev.to_string()));
        ann.insert(DESIRED_REPLICAS.into(), json!(w.replicas.to_string()));
        ann.insert(MAX_REPLICAS.into(), json!((w.replicas + surge).to_string()));
        if !history.is_empty() {
            let h: Vec<String> = history.iter().map(i64::to_string).collect();
            ann.insert(REVISION_HISTORY.into(), json!(h.join(",")));
        }
        if let Some(c) = cause {
            ann.insert(CHANGE_CAUSE.into(), json!(c));
        }
        let n = if current { w.replicas } else { 0 };
        let mut status = json!({"replicas": n, "observedGeneration": 1});
        if n > 0 {
            status["fullyLabeledReplicas"] = json!(n);
            status["readyReplicas"] = json!(n);
            status["availableReplicas"] = json!(n);
        }
        let rs = json!({
            "metadata": {"name": name, "namespace": w.namespace, "labels": t["metadata"]["labels"].clone(),
                "annotations": ann,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": w.name,
                    "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": n, "selector": sel, "template": t},
            "status": status,
        });
        store.create(Kind::ReplicaSet, rs, false)?;
    }
    Ok(())
}

fn deployment_status(r: i64, generation: i64, new_rs_name: &str) -> Value {
    let now = now_rfc3339();
    let mut status = json!({
        "observedGeneration": generation, "replicas": r, "updatedReplicas": r, "readyReplicas": r,
        "availableReplicas": r,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": format!("ReplicaSet \"{new_rs_name}\" has successfully progressed."),
             "lastUpdateTime": now, "lastTransitionTime": now},
        ],
    });
    if r == 0
        && let Some(m) = status.as_object_mut()
    {
        for k in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
        ] {
            m.remove(k);
        }
    }
    status
}

fn seed_history_workload(store: &Store, kind: Kind, w: &WorkloadSeed) -> Result<(), StoreError> {
    let revs = revisions(w);
    let (_, cur_template, cur_cause, _) =
        revs.last().cloned().unwrap_or((1, json!({}), None, vec![]));
    let mut ann = base_annotations(w);
    if let Some(c) = &cur_cause {
        ann.insert(CHANGE_CAUSE.into(), json!(c));
    }
    let mut spec = json!({
        "selector": {"matchLabels": labels_json(&w.labels)},
        "template": cur_template,
        "revisionHistoryLimit": w.revision_history_limit.unwrap_or(10),
    });
    let hash_label;
    if kind == Kind::StatefulSet {
        spec["replicas"] = json!(w.replicas);
        spec["serviceName"] = json!(w.name);
        spec["podManagementPolicy"] = json!("OrderedReady");
        spec["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}});
        hash_label = STS_HASH_LABEL;
    } else {
        spec["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}});
        hash_label = DS_HASH_LABEL;
    }
    let obj = json!({
        "metadata": {"name": w.name, "namespace": w.namespace, "labels": labels_json(&w.labels), "annotations": ann},
        "spec": spec,
    });
    let mut obj = store.create(kind, obj, false)?;
    let mut current = String::new();
    for (rev, template, cause, _) in &revs {
        let data = revision_data(template);
        let mut cr_owner = obj.clone();
        // Each ControllerRevision of a DaemonSet carries the annotations the
        // DaemonSet had at that revision.
        let mut a = base_annotations(w);
        if let Some(c) = cause {
            a.insert(CHANGE_CAUSE.into(), json!(c));
        }
        cr_owner["metadata"]["annotations"] = Value::Object(a.clone());
        let mut cr = new_controller_revision(kind, &cr_owner, template, &data, *rev, hash_label);
        if let Some(c) = cause {
            cr["metadata"]["annotations"][CHANGE_CAUSE] = json!(c);
        }
        let cr = store.create(Kind::ControllerRevision, cr, false)?;
        current = cr["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    let n = w.replicas;
    obj["status"] = if kind == Kind::StatefulSet {
        json!({"observedGeneration": 1, "replicas": n, "readyReplicas": n, "availableReplicas": n,
            "currentReplicas": n, "updatedReplicas": n, "currentRevision": current,
            "updateRevision": current, "collisionCount": 0})
    } else {
        json!({"observedGeneration": 1, "desiredNumberScheduled": n, "currentNumberScheduled": n,
            "numberMisscheduled": 0, "numberReady": n, "numberAvailable": n, "updatedNumberScheduled": n})
    };
    store.update(kind, obj, WriteMode::Status, false)?;
    Ok(())
}
