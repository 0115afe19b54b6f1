//! The seed file: the initial state and behaviour of a simulated cluster.
//!
//! A seed is YAML (keys in `snake_case`, unknown keys rejected):
//!
//! ```yaml
//! server_version: v1.33.1          # optional; reported by /version
//! namespaces: [production]         # created in addition to `default`
//! deployments:
//!   - namespace: production
//!     name: prod-payment-deploy
//!     labels: {app: payment-api}   # selector (matchLabels) and pod labels
//!     replicas: 3
//!     container: payment-api       # container name used by `image:` entries
//!     revision_history_limit: 10   # optional, default 10
//!     progress_deadline_seconds: 600  # optional, default 600 (spec field)
//!     strategy: RollingUpdate      # or Recreate
//!     paused: false
//!     annotations: {}              # extra Deployment annotations
//!     revisions:                   # oldest first; the last one is current
//!       - image: payment-api:v1.1.0
//!         change_cause: "CHG-2025-001: initial release"
//!       - containers:              # several containers instead of `image:`
//!           - {name: payment-api, image: payment-api:v1.2.0}
//!     behaviour:
//!       ready_after_ms: 200        # one pod step (ready / terminated) per interval
//!       never_ready_images: [payment-api:v9.9.9-bad]
//!       progress_deadline_ms: 2000 # optional: the deadline the simulated
//!                                  # controller enforces, overriding the spec field
//! statefulsets:                    # optional, same fields minus `strategy`
//!   - {namespace: production, name: ledger-db, labels: {app: ledger}, replicas: 2,
//!      container: db, revisions: [{image: "postgres:15"}, {image: "postgres:16"}]}
//! metrics:                         # optional; answered at /api/v1/query(_range)
//!   - name: payment_success_rate   # the query it answers
//!     deployment: production/prod-payment-deploy
//!     healthy: 0.998               # per ready pod on a good image
//!     unhealthy: 0.95              # per ready pod on a listed image
//!     unhealthy_images: [payment-api:v1.3.0]
//! daemonsets:                      # optional; `replicas` is the node count
//!   - {namespace: production, name: log-agent, labels: {app: log-agent},
//!      container: agent, revisions: [{image: "fluent-bit:3.0"}]}
//! objects:                         # optional; raw API objects loaded as they are
//!   - {apiVersion: apps/v1, kind: Deployment, metadata: {name: web, namespace: shop, uid: a1}, spec: {…}}
//!   - {apiVersion: apps/v1, kind: ReplicaSet, metadata: {ownerReferences: [{uid: a1, …}], …}, …}
//! objects_behaviour: {ready_after_ms: 100}   # how the pods of `objects` behave
//!   - {apiVersion: argoproj.io/v1alpha1, kind: Application, metadata: {name: payments, namespace: argocd},
//!      spec: {syncPolicy: {automated: {selfHeal: true}}}}   # also Flux Kustomization, HelmRelease
//! gitops: {revert_after_ms: 5000}  # optional; how soon an active GitOps owner reverts a drift (sim::gitops)
//! forbid:                          # optional; requests RBAC would refuse
//!   - {verb: patch, resource: deployments, namespace: production}
//!   - {verb: list, resource: replicasets}        # no namespace: everywhere
//!   - {verb: update, resource: deployments/scale, namespace: production}
//! ```
//!
//! Each Deployment revision becomes a ReplicaSet with
//! `deployment.kubernetes.io/revision: N` (1-based, oldest first) and its
//! change-cause; only the last one has replicas. StatefulSet and DaemonSet
//! revisions become ControllerRevisions.
//!
//! `objects` are copies of real objects (a drill's snapshot, see
//! [`crate::exec::kubernetes::drill`]): kept as given (annotations, revisions, templates,
//! status), except that the simulator assigns new uids, resourceVersions and
//! creation times, and rewrites `ownerReferences` to the new uids so
//! ownership (and with it `rollout history`) survives the copy.
//!
//! `forbid` stands in for RBAC. Every request is made as rollbot's service
//! account (`system:serviceaccount:rollbot:rollbot`, see `deploy/rbac.yaml`),
//! and one a rule matches is refused with the `403 Forbidden` Status
//! kube-apiserver sends (see `sim::authz`); the simulated controllers are not
//! affected. A rule names a verb as Kubernetes does (`get`, `list`, `watch`,
//! `create`, `update`, `patch`, `delete`, `deletecollection`), a resource by
//! its plural, optionally with a subresource (`deployments/scale`), and
//! optionally a namespace. Since a rule stands for a missing grant, a rule
//! for one namespace also refuses the cluster-wide request (e.g. listing
//! Deployments in all namespaces), which no namespaced grant would allow.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

pub use super::authz::ForbidRule;

/// Default interval of one simulated pod step.
pub const DEFAULT_READY_AFTER_MS: u64 = 500;

/// A whole seed file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// `gitVersion` reported by `/version`.
    #[serde(default = "default_version")]
    pub server_version: String,
    /// Namespaces to create (`default` always exists).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Deployments with their history.
    #[serde(default)]
    pub deployments: Vec<WorkloadSeed>,
    /// StatefulSets with their history.
    #[serde(default)]
    pub statefulsets: Vec<WorkloadSeed>,
    /// DaemonSets with their history.
    #[serde(default)]
    pub daemonsets: Vec<WorkloadSeed>,
    /// Prometheus-like metrics derived from the Deployments (see `sim::metrics`).
    #[serde(default)]
    pub metrics: Vec<super::metrics::MetricSeed>,
    /// Raw API objects (Deployments, ReplicaSets, StatefulSets, DaemonSets,
    /// ControllerRevisions), e.g. copied from a real cluster.
    #[serde(default)]
    pub objects: Vec<serde_json::Value>,
    /// How the pods of the workloads in `objects` behave.
    #[serde(default)]
    pub objects_behaviour: Behaviour,
    /// Requests refused with `403 Forbidden`, as by RBAC.
    #[serde(default)]
    pub forbid: Vec<ForbidRule>,
    /// How the simulated GitOps controllers (Argo CD, Flux) behave.
    #[serde(default)]
    pub gitops: super::gitops::GitOpsBehaviour,
}

fn default_version() -> String {
    "v1.33.1".into()
}

/// Deployment / StatefulSet / DaemonSet description.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSeed {
    /// Namespace (created if missing).
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// Selector labels, also put on the pod template.
    pub labels: BTreeMap<String, String>,
    /// Desired replicas (DaemonSets: number of nodes).
    #[serde(default = "default_replicas")]
    pub replicas: i64,
    /// Container name for revisions given with `image:`.
    #[serde(default)]
    pub container: Option<String>,
    /// `spec.revisionHistoryLimit`.
    #[serde(default)]
    pub revision_history_limit: Option<i64>,
    /// `spec.progressDeadlineSeconds` (Deployments).
    #[serde(default)]
    pub progress_deadline_seconds: Option<i64>,
    /// `spec.strategy.type` (Deployments): `RollingUpdate` or `Recreate`.
    #[serde(default)]
    pub strategy: Option<String>,
    /// `spec.paused` (Deployments).
    #[serde(default)]
    pub paused: bool,
    /// Extra annotations on the object.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// History, oldest first; the last entry is the current template.
    pub revisions: Vec<RevisionSeed>,
    /// Simulation knobs.
    #[serde(default)]
    pub behaviour: Behaviour,
}

fn default_replicas() -> i64 {
    3
}

/// One historical template.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevisionSeed {
    /// Image of the single container named by `container`.
    #[serde(default)]
    pub image: Option<String>,
    /// Containers, when there are several.
    #[serde(default)]
    pub containers: Vec<ContainerSeed>,
    /// `kubernetes.io/change-cause` of this revision.
    #[serde(default)]
    pub change_cause: Option<String>,
}

/// A container of a revision.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSeed {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
}

/// How the simulated pods of a workload behave.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// Milliseconds per pod step: a pod becoming ready or an old pod
    /// terminating.
    #[serde(default = "default_ready_after")]
    pub ready_after_ms: u64,
    /// Images whose pods never become ready (a bad release).
    #[serde(default)]
    pub never_ready_images: Vec<String>,
    /// Deadline the simulated controller enforces, in milliseconds; when
    /// unset, `progressDeadlineSeconds` of the spec is used.
    #[serde(default)]
    pub progress_deadline_ms: Option<u64>,
}

fn default_ready_after() -> u64 {
    DEFAULT_READY_AFTER_MS
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            ready_after_ms: DEFAULT_READY_AFTER_MS,
            never_ready_images: Vec::new(),
            progress_deadline_ms: None,
        }
    }
}

/// A seed that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The file could not be read.
    #[error("cannot read seed file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not match the format.
    #[error("invalid seed: {0}")]
    Parse(#[from] serde_norway::Error),
    /// A semantic problem, e.g. a revision without an image.
    #[error("invalid seed: {0}")]
    Invalid(String),
}

impl Seed {
    /// Parses seed YAML and checks it.
    ///
    /// # Errors
    /// `Parse` for malformed YAML, `Invalid` for an inconsistent seed.
    pub fn from_yaml(text: &str) -> Result<Seed, SeedError> {
        let seed: Seed = serde_norway::from_str(text)?;
        seed.validate()?;
        Ok(seed)
    }

    /// Reads and parses a seed file.
    ///
    /// # Errors
    /// `Read` when the file cannot be read, else as [`Seed::from_yaml`].
    pub fn from_file(path: &Path) -> Result<Seed, SeedError> {
        let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Seed::from_yaml(&text)
    }

    fn validate(&self) -> Result<(), SeedError> {
        let all = self
            .deployments
            .iter()
            .chain(&self.statefulsets)
            .chain(&self.daemonsets);
        for w in all {
            if w.revisions.is_empty() {
                return Err(SeedError::Invalid(format!("{}: no revisions", w.name)));
            }
            // Kubernetes holds these in an `int32`; larger values are
            // refused by a real API server and would overflow the rollout
            // arithmetic here.
            let int32 = |key: &str, value: i64, min: i64| {
                if (min..=i64::from(i32::MAX)).contains(&value) {
                    Ok(())
                } else {
                    Err(SeedError::Invalid(format!(
                        "{}: {key} {value} is out of range; Kubernetes allows {min} to {}",
                        w.name,
                        i32::MAX
                    )))
                }
            };
            int32("replicas", w.replicas, 0)?;
            if let Some(limit) = w.revision_history_limit {
                int32("revision_history_limit", limit, 0)?;
            }
            if let Some(deadline) = w.progress_deadline_seconds {
                int32("progress_deadline_seconds", deadline, 1)?;
            }
            if w.labels.is_empty() {
                return Err(SeedError::Invalid(format!(
                    "{}: labels are required",
                    w.name
                )));
            }
            for (i, r) in w.revisions.iter().enumerate() {
                w.containers_of(r).map_err(|e| {
                    SeedError::Invalid(format!("{} revision {}: {e}", w.name, i + 1))
                })?;
            }
        }
        for (i, o) in self.objects.iter().enumerate() {
            super::store::object_kind(o)
                .map_err(|e| SeedError::Invalid(format!("objects[{i}]: {e}")))?;
        }
        for (i, r) in self.forbid.iter().enumerate() {
            super::authz::check_rule(r)
                .map_err(|e| SeedError::Invalid(format!("forbid[{i}]: {e}")))?;
        }
        Ok(())
    }
}

impl WorkloadSeed {
    /// The `(name, image)` pairs of a revision.
    ///
    /// # Errors
    /// A message when the revision names no image, or `image:` is used
    /// without `container:`.
    pub fn containers_of(&self, r: &RevisionSeed) -> Result<Vec<(String, String)>, String> {
        match (&r.image, r.containers.is_empty()) {
            (Some(image), true) => {
                let name = self
                    .container
                    .clone()
                    .ok_or("`image:` needs the workload's `container:`")?;
                Ok(vec![(name, image.clone())])
            }
            (None, false) => Ok(r
                .containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone()))
                .collect()),
            _ => Err("give exactly one of `image:` or `containers:`".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payment_seed_parses() {
        let text = include_str!("../../config/sim-payment.yaml");
        let seed = Seed::from_yaml(text).unwrap();
        let d = &seed.deployments[0];
        assert_eq!(d.name, "prod-payment-deploy");
        assert_eq!(d.revisions.len(), 3);
        assert_eq!(
            d.containers_of(&d.revisions[2]).unwrap(),
            vec![("payment-api".to_owned(), "payment-api:v1.3.0".to_owned())]
        );
    }

    #[test]
    fn forbid_rules_parse_and_are_checked() {
        let seed = Seed::from_yaml(
            "forbid: [{verb: patch, resource: deployments, namespace: production}, {verb: list, resource: replicasets}]",
        )
        .unwrap();
        assert_eq!(
            seed.forbid,
            vec![
                ForbidRule {
                    verb: "patch".into(),
                    resource: "deployments".into(),
                    namespace: Some("production".into()),
                },
                ForbidRule {
                    verb: "list".into(),
                    resource: "replicasets".into(),
                    namespace: None,
                },
            ]
        );
        let Err(SeedError::Invalid(e)) =
            Seed::from_yaml("forbid: [{verb: rollback, resource: deployments}]")
        else {
            panic!("an unknown verb was accepted");
        };
        assert!(e.starts_with("forbid[0]: unknown verb \"rollback\""), "{e}");
        assert!(
            Seed::from_yaml("forbid: [{verb: get, resource: deployments, group: apps}]").is_err()
        );
    }

    /// Kubernetes keeps these fields in an `int32`; larger values used to
    /// overflow the rollout arithmetic while the seed was loaded.
    #[test]
    fn rejects_numbers_kubernetes_cannot_hold() {
        let workload = |field: &str| {
            format!(
                "deployments: [{{namespace: a, name: b, labels: {{a: b}}, container: c, {field}, revisions: [{{image: i}}]}}]"
            )
        };
        for (field, key) in [
            ("replicas: 9223372036854775807", "replicas"),
            ("replicas: 2147483648", "replicas"),
            ("replicas: -1", "replicas"),
            ("revision_history_limit: -1", "revision_history_limit"),
            (
                "revision_history_limit: 4294967296",
                "revision_history_limit",
            ),
            ("progress_deadline_seconds: 0", "progress_deadline_seconds"),
            (
                "progress_deadline_seconds: 9223372036854775807",
                "progress_deadline_seconds",
            ),
        ] {
            let Err(SeedError::Invalid(e)) = Seed::from_yaml(&workload(field)) else {
                panic!("{field} was accepted");
            };
            assert!(e.starts_with(&format!("b: {key} ")), "{field}: {e}");
            assert!(e.contains("2147483647"), "{field}: {e}");
        }
        for field in [
            "replicas: 0",
            "replicas: 2147483647",
            "progress_deadline_seconds: 2147483647",
        ] {
            assert!(Seed::from_yaml(&workload(field)).is_ok(), "{field}");
        }
    }

    #[test]
    fn rejects_unknown_keys_and_missing_images() {
        assert!(Seed::from_yaml("bogus: 1").is_err());
        let no_image = "deployments: [{namespace: a, name: b, labels: {a: b}, revisions: [{}]}]";
        assert!(matches!(
            Seed::from_yaml(no_image),
            Err(SeedError::Invalid(_))
        ));
    }
}
