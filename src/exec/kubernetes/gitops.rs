//! GitOps awareness: who else puts this workload back to what git holds.
//!
//! Most teams deploy through Argo CD or Flux. A `rollout undo` on a
//! workload that Argo CD self-heals is reverted within seconds, and Flux's
//! controllers re-apply git's state on their next reconcile, so a rollback
//! that ignores them reports success while production is back on the bad
//! version.
//!
//! - At plan time [`detect`] reads the workload's tracking annotation and
//!   labels, finds the owning Argo CD `Application`, Flux `Kustomization` or
//!   `HelmRelease`, reads whether it syncs on its own, and [`warnings`]
//!   tells the approvers what will happen.
//! - The `pause` policy is a step before the rollback, [`GitOpsPause`]:
//!   it turns the owner's automatic sync off (Argo CD: `automated` removed,
//!   which works on every version; Flux: `spec.suspend: true`) and saves
//!   what it changed *on the owner itself*, in the annotation
//!   [`SAVED_ANNOTATION`], so the pause survives a restart of rollbot and
//!   anyone can see with kubectl why the owner is paused. It stays paused
//!   after the rollback; [`GitOpsPause::resume`] (`/rollback resume-sync
//!   SERVICE`) restores exactly what was saved.
//!
//! Facts (annotations, labels, patches) are from Argo CD's and Flux's docs.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{KubeExecutor, KubePlan, KubeTarget, KubernetesConfig, to_json};
use crate::domain::{Plan, ServiceName};
use crate::ports::{ExecError, ExecErrorKind, Hook, HookCall, ThreadNote};

/// Argo CD's tracking annotation (`<app>:<group>/<kind>:<ns>/<name>`).
pub const TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
/// Argo CD's default `application.instanceLabelKey`.
pub const DEFAULT_INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Where Argo CD keeps Applications by default.
pub const DEFAULT_ARGOCD_NAMESPACE: &str = "argocd";
/// Where rollbot saves, on a paused owner, what it changed: Argo CD's
/// previous `spec.syncPolicy`, or Flux's previous `spec.suspend`, as JSON.
pub const SAVED_ANNOTATION: &str = "rollbot/paused-sync-policy";

/// How to find owners: Argo CD's settings, which an installation may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitOpsSettings {
    pub argocd_namespace: String,
    pub instance_label: String,
}

impl Default for GitOpsSettings {
    fn default() -> Self {
        Self {
            argocd_namespace: DEFAULT_ARGOCD_NAMESPACE.into(),
            instance_label: DEFAULT_INSTANCE_LABEL.into(),
        }
    }
}

impl GitOpsSettings {
    /// The settings in `[kubernetes]`, defaults where unset.
    pub fn of(config: Option<&KubernetesConfig>) -> Self {
        let d = Self::default();
        Self {
            argocd_namespace: config
                .and_then(|c| c.argocd_namespace.clone())
                .unwrap_or(d.argocd_namespace),
            instance_label: config
                .and_then(|c| c.argocd_instance_label.clone())
                .unwrap_or(d.instance_label),
        }
    }
}

/// The kinds of GitOps owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerKind {
    /// `argoproj.io/v1alpha1` Application.
    ArgoApplication,
    /// `kustomize.toolkit.fluxcd.io/v1` Kustomization.
    FluxKustomization,
    /// `helm.toolkit.fluxcd.io/v2` HelmRelease.
    FluxHelmRelease,
}

impl OwnerKind {
    fn resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            OwnerKind::ArgoApplication => {
                ("argoproj.io", "v1alpha1", "Application", "applications")
            }
            OwnerKind::FluxKustomization => (
                "kustomize.toolkit.fluxcd.io",
                "v1",
                "Kustomization",
                "kustomizations",
            ),
            OwnerKind::FluxHelmRelease => (
                "helm.toolkit.fluxcd.io",
                "v2",
                "HelmRelease",
                "helmreleases",
            ),
        };
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: format!("{group}/{version}"),
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    /// `applications.argoproj.io`, as RBAC and kubectl name it.
    pub fn qualified(self) -> String {
        let r = self.resource();
        format!("{}.{}", r.plural, r.group)
    }
}

/// One owner: which object, where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub kind: OwnerKind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            OwnerKind::ArgoApplication => "Argo CD application",
            OwnerKind::FluxKustomization => "Flux Kustomization",
            OwnerKind::FluxHelmRelease => "Flux HelmRelease",
        };
        write!(f, "{what} {}/{}", self.namespace, self.name)
    }
}

/// What the owner does, as read at plan time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tool", rename_all = "snake_case")]
pub enum OwnerState {
    Argo {
        /// `spec.syncPolicy.automated` present (and not `enabled: false`).
        automated: bool,
        self_heal: bool,
        prune: bool,
        /// The ApplicationSet that generates the Application, if any.
        application_set: Option<String>,
        /// Where git's state comes from, e.g. `repo path apps/x at main`.
        source: Option<String>,
    },
    Flux {
        suspended: bool,
        /// HelmRelease only: `driftDetection.mode: enabled`.
        drift_detection: Option<bool>,
        /// `spec.interval`.
        interval: Option<String>,
        source: Option<String>,
    },
    /// The owner could not be read (not found, forbidden, unreachable).
    Unread { reason: String },
}

/// A workload's GitOps owner and what it does; carried in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    pub owner: Owner,
    /// How it was found, e.g. `annotation argocd.argoproj.io/tracking-id`.
    pub found_by: String,
    pub state: OwnerState,
}

impl Ownership {
    /// Whether the owner, as read, would put the workload back to git's
    /// state after a rollback without anyone doing anything.
    pub fn reverts(&self) -> bool {
        match &self.state {
            OwnerState::Argo {
                automated,
                self_heal,
                ..
            } => *automated && *self_heal,
            OwnerState::Flux {
                suspended,
                drift_detection,
                ..
            } => !suspended && drift_detection.unwrap_or(true),
            // Unknown: assume the worst, and say so.
            OwnerState::Unread { .. } => true,
        }
    }

    /// Where the change has to be reverted for good.
    fn source(&self) -> Option<String> {
        match &self.state {
            OwnerState::Argo { source, .. } | OwnerState::Flux { source, .. } => source.clone(),
            OwnerState::Unread { .. } => None,
        }
    }

    fn git(&self) -> String {
        match self.source() {
            Some(s) => format!("in git ({s})"),
            None => format!("in the git repository {} syncs from", self.owner),
        }
    }
}

/// The owner named by `workload`'s annotation or labels, with how it was
/// found. Argo CD's tracking id wins over its instance label (it is the
/// default since 3.0); a `<ns>_<app>` app name is an Application outside
/// Argo CD's own namespace.
pub fn owner_of(workload: &Value, settings: &GitOpsSettings) -> Option<(Owner, String)> {
    let meta = &workload["metadata"];
    let label = |k: &str| {
        meta["labels"][k]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    if let Some(id) = meta["annotations"][TRACKING_ID].as_str() {
        let app = id.split(':').next().unwrap_or_default();
        let (ns, name) = app
            .split_once('_')
            .unwrap_or((&settings.argocd_namespace, app));
        if !name.is_empty() {
            let owner = Owner {
                kind: OwnerKind::ArgoApplication,
                namespace: ns.to_owned(),
                name: name.to_owned(),
            };
            return Some((owner, format!("annotation {TRACKING_ID}")));
        }
    }
    for (kind, prefix) in [
        (OwnerKind::FluxKustomization, "kustomize.toolkit.fluxcd.io"),
        (OwnerKind::FluxHelmRelease, "helm.toolkit.fluxcd.io"),
    ] {
        if let (Some(name), Some(namespace)) = (
            label(&format!("{prefix}/name")),
            label(&format!("{prefix}/namespace")),
        ) {
            let owner = Owner {
                kind,
                namespace,
                name,
            };
            return Some((owner, format!("labels {prefix}/name and /namespace")));
        }
    }
    label(&settings.instance_label).map(|name| {
        let owner = Owner {
            kind: OwnerKind::ArgoApplication,
            namespace: settings.argocd_namespace.clone(),
            name,
        };
        (owner, format!("label {}", settings.instance_label))
    })
}

/// What `owner`, read as `obj`, does.
fn state_of(kind: OwnerKind, obj: &Value) -> OwnerState {
    let spec = &obj["spec"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    match kind {
        OwnerKind::ArgoApplication => {
            let auto = &spec["syncPolicy"]["automated"];
            let application_set = obj["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["kind"] == "ApplicationSet")
                .and_then(|r| text(&r["name"]));
            let src = if spec["source"].is_object() {
                &spec["source"]
            } else {
                &spec["sources"][0]
            };
            let source = text(&src["repoURL"]).map(|repo| {
                let mut s = repo;
                if let Some(p) = text(&src["path"]) {
                    s.push_str(&format!(", path {p}"));
                }
                if let Some(c) = text(&src["chart"]) {
                    s.push_str(&format!(", chart {c}"));
                }
                if let Some(r) = text(&src["targetRevision"]) {
                    s.push_str(&format!(", revision {r}"));
                }
                s
            });
            OwnerState::Argo {
                automated: auto.is_object() && auto["enabled"] != false,
                self_heal: auto["selfHeal"] == true,
                prune: auto["prune"] == true,
                application_set,
                source,
            }
        }
        OwnerKind::FluxKustomization | OwnerKind::FluxHelmRelease => {
            let source_ref = if kind == OwnerKind::FluxKustomization {
                &spec["sourceRef"]
            } else if spec["chartRef"].is_object() {
                &spec["chartRef"]
            } else {
                &spec["chart"]["spec"]["sourceRef"]
            };
            let source = text(&source_ref["name"]).map(|name| {
                let mut s = format!("{} {name}", source_ref["kind"].as_str().unwrap_or("source"));
                if let Some(p) = text(&spec["path"]) {
                    s.push_str(&format!(", path {p}"));
                }
                if let Some(c) = text(&spec["chart"]["spec"]["chart"]) {
                    s.push_str(&format!(", chart {c}"));
                }
                s
            });
            OwnerState::Flux {
                suspended: spec["suspend"] == true,
                drift_detection: (kind == OwnerKind::FluxHelmRelease)
                    .then(|| spec["driftDetection"]["mode"] == "enabled"),
                interval: text(&spec["interval"]),
                source,
            }
        }
    }
}

/// Why reading or changing `owner` failed, worded with what to do.
fn owner_error(owner: &Owner, verb: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "rollbot may not {verb} {} in namespace {} ({}); apply the optional RBAC overlay deploy/gitops/ to grant it",
            owner.kind.qualified(),
            owner.namespace,
            s.message
        ),
        kube::Error::Api(s) if s.code == 404 => format!(
            "{owner} was not found ({}); check the workload's tracking annotation and labels, and [kubernetes] argocd_namespace",
            s.message
        ),
        other => format!("cannot {verb} {owner}: {other}"),
    }
}

fn api(client: &kube::Client, owner: &Owner) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), &owner.namespace, &owner.kind.resource())
}

async fn read(client: &kube::Client, owner: &Owner) -> Result<Value, String> {
    api(client, owner)
        .get(&owner.name)
        .await
        .map(|o| to_json(&o))
        .map_err(|e| owner_error(owner, "get", &e))
}

/// Finds and reads `workload`'s GitOps owner, if it has one. Never fails:
/// an owner that cannot be read is [`OwnerState::Unread`], which the
/// approvers are told about.
pub async fn detect(
    client: &kube::Client,
    settings: &GitOpsSettings,
    workload: &Value,
) -> Option<Ownership> {
    let (owner, found_by) = owner_of(workload, settings)?;
    let state = match read(client, &owner).await {
        Ok(obj) => state_of(owner.kind, &obj),
        Err(reason) => OwnerState::Unread { reason },
    };
    Some(Ownership {
        owner,
        found_by,
        state,
    })
}

/// What the approvers must know about `o`, in the plan's warnings.
pub fn warnings(o: &Ownership) -> Vec<String> {
    let owner = &o.owner;
    let git = o.git();
    let mut out = Vec::new();
    match &o.state {
        OwnerState::Argo {
            automated,
            self_heal,
            prune,
            application_set,
            ..
        } => {
            let flags = format!(
                "auto-sync {}, self-heal {}, prune {}",
                on(*automated),
                on(*self_heal),
                on(*prune)
            );
            out.push(if *automated && *self_heal {
                format!(
                    "{owner} has self-heal on ({flags}): it would revert this rollback within seconds. Revert the change {git} as well, or pause its auto-sync first (gitops = \"pause\")."
                )
            } else if *automated {
                format!(
                    "{owner} syncs automatically ({flags}): the rollback holds only until the next commit is synced. Revert the change {git} before anyone pushes."
                )
            } else {
                format!(
                    "{owner} manages this workload ({flags}): it will show OutOfSync, and its next sync brings the current version back. Revert the change {git}."
                )
            });
            if let Some(set) = application_set {
                out.push(format!(
                    "{owner} is generated by the ApplicationSet {set}: pausing the application may not hold, since the ApplicationSet overwrites its syncPolicy unless it has ignoreApplicationDifferences for /spec/syncPolicy."
                ));
            }
        }
        OwnerState::Flux {
            suspended,
            drift_detection,
            interval,
            ..
        } => {
            let every = interval
                .as_deref()
                .map(|i| format!(" (every {i})"))
                .unwrap_or_default();
            out.push(match (suspended, drift_detection) {
                (true, _) => format!(
                    "{owner} is suspended: the rollback holds until it is resumed, which brings the current version back unless the change is reverted {git}."
                ),
                (false, Some(false)) => format!(
                    "{owner} does not correct drift (driftDetection is not enabled), but its next upgrade brings the current version back. Revert the change {git}."
                ),
                (false, _) => format!(
                    "{owner} is not suspended: it would revert this rollback at its next reconcile{every}. Revert the change {git} as well, or suspend it first (gitops = \"pause\")."
                ),
            });
        }
        OwnerState::Unread { reason } => out.push(format!(
            "This workload is managed by {owner} (found by {}), which rollbot could not read: {reason}. If it syncs automatically it would revert this rollback; check it by hand.",
            o.found_by
        )),
    }
    out
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// Why the `refuse` policy blocks approval of a plan with ownership `o`,
/// if it does: an owner that would revert the rollback, or one that could
/// not be read.
pub fn blocker(o: &Ownership) -> Option<String> {
    o.reverts().then(|| {
        format!(
            "{} would revert this rollback, and this service's gitops policy is \"refuse\": revert the change {} (or pause {} by hand), then propose again",
            o.owner,
            o.git(),
            o.owner
        )
    })
}

fn merge_patch(obj: Value) -> Patch<Value> {
    Patch::Merge(obj)
}

/// Pauses `owner`: automated sync off (Argo CD) or suspended (Flux),
/// saving what it changed on the owner. Pausing an owner rollbot already
/// paused keeps the first saved value, so a repeated step (after a
/// restart) does not save its own pause. Returns what was done.
///
/// # Errors
/// The owner cannot be read or patched; the message says what to grant.
pub async fn pause(client: &kube::Client, owner: &Owner) -> Result<String, String> {
    let obj = read(client, owner).await?;
    let already = obj["metadata"]["annotations"][SAVED_ANNOTATION].is_string();
    let (saved, spec, what) = match owner.kind {
        OwnerKind::ArgoApplication => (
            obj["spec"]["syncPolicy"].clone(),
            json!({"syncPolicy": {"automated": null}}),
            "automated sync turned off",
        ),
        _ => (
            obj["spec"]["suspend"].clone(),
            json!({"suspend": true}),
            "suspended (spec.suspend: true)",
        ),
    };
    let mut body = json!({"spec": spec});
    if !already {
        body["metadata"] = json!({"annotations": {SAVED_ANNOTATION: saved.to_string()}});
    }
    api(client, owner)
        .patch(&owner.name, &PatchParams::default(), &merge_patch(body))
        .await
        .map_err(|e| owner_error(owner, "patch", &e))?;
    Ok(if already {
        format!("{owner} was already paused by rollbot; {what}")
    } else {
        format!(
            "paused {owner}: {what}; its previous setting is saved on it as annotation {SAVED_ANNOTATION}"
        )
    })
}

/// Restores what [`pause`] saved on `owner`, exactly, and removes the
/// saved copy. Returns what was restored.
///
/// # Errors
/// The owner was not paused by rollbot, or cannot be read or patched.
pub async fn resume(client: &kube::Client, owner: &Owner) -> Result<String, String> {
    let obj = read(client, owner).await?;
    let Some(saved) = obj["metadata"]["annotations"][SAVED_ANNOTATION].as_str() else {
        return Err(format!(
            "{owner} was not paused by rollbot (it has no annotation {SAVED_ANNOTATION}); nothing was changed"
        ));
    };
    let saved: Value = serde_json::from_str(saved).map_err(|e| {
        format!(
            "the saved setting on {owner} (annotation {SAVED_ANNOTATION}) is not JSON ({e}); restore it by hand and remove the annotation"
        )
    })?;
    let path = match owner.kind {
        OwnerKind::ArgoApplication => "/spec/syncPolicy",
        _ => "/spec/suspend",
    };
    let field = path.rsplit('/').next().unwrap_or_default();
    let mut ops = vec![
        json!({"op": "remove", "path": format!("/metadata/annotations/{}", SAVED_ANNOTATION.replace('/', "~1"))}),
    ];
    if saved.is_null() {
        if obj["spec"].get(field).is_some() {
            ops.push(json!({"op": "remove", "path": path}));
        }
    } else {
        ops.push(json!({"op": "add", "path": path, "value": saved}));
    }
    let ops: json_patch::Patch = serde_json::from_value(Value::Array(ops))
        .map_err(|e| format!("cannot build the patch: {e}"))?;
    api(client, owner)
        .patch(
            &owner.name,
            &PatchParams::default(),
            &Patch::<()>::Json(ops),
        )
        .await
        .map_err(|e| owner_error(owner, "patch", &e))?;
    Ok(if saved.is_null() {
        format!("resumed {owner}: spec.{field} removed, as before the pause")
    } else {
        format!("resumed {owner}: spec.{field} restored to {saved}")
    })
}

/// The `pause` policy's step before the rollback of one service, and its
/// `/rollback resume-sync`.
pub struct GitOpsPause {
    kube: KubeExecutor,
    target: KubeTarget,
}

impl GitOpsPause {
    /// The step for the service whose workload is `target`, reached with
    /// `kube` (the cluster's client and Argo CD's settings).
    pub fn new(kube: KubeExecutor, target: KubeTarget) -> Arc<Self> {
        Arc::new(Self { kube, target })
    }
}

fn hook_error(message: String) -> ExecError {
    ExecError::new(ExecErrorKind::HookFailed, message)
}

#[async_trait]
impl Hook for GitOpsPause {
    fn name(&self) -> &str {
        "gitops-pause"
    }

    async fn run(
        &self,
        call: &HookCall,
        progress: mpsc::Sender<String>,
    ) -> Result<String, ExecError> {
        let (service, plan) = (&call.proposal.service, &call.proposal.plan);
        let kube_plan: KubePlan = serde_json::from_value(plan.guard.clone()).map_err(|e| {
            hook_error(format!(
                "the stored plan cannot be read ({e}); propose the rollback again"
            ))
        })?;
        let Some(ownership) = kube_plan.gitops else {
            return Ok(
                "no GitOps owner was found when the rollback was planned; nothing to pause".into(),
            );
        };
        let owner = &ownership.owner;
        let done = pause(&self.kube.client(), owner).await.map_err(|e| {
            hook_error(format!(
                "{e}. Nothing was rolled back, since {owner} would revert it"
            ))
        })?;
        let images: Vec<String> = plan.target.images.iter().map(|i| i.image.clone()).collect();
        let line = format!(
            "{done}. It stays paused after the rollback: revert {} to {} {}, then run `/rollback resume-sync {service}`",
            plan.workload,
            images.join(", "),
            ownership.git()
        );
        let _ = progress.send(line.clone()).await;
        Ok(line)
    }

    async fn resume(&self, _service: &ServiceName) -> Option<Result<String, ExecError>> {
        Some(self.resume_owner().await)
    }

    fn reminder(
        &self,
        _service: &ServiceName,
        plan: &Plan,
        rolled_back: bool,
    ) -> Option<ThreadNote> {
        let kube_plan: KubePlan = serde_json::from_value(plan.guard.clone()).ok()?;
        let ownership = kube_plan.gitops?;
        let images: Vec<String> = plan.target.images.iter().map(|i| i.image.clone()).collect();
        Some(ThreadNote::GitopsPaused {
            owner: ownership.owner.to_string(),
            workload: plan.workload.clone(),
            version: images.join(", "),
            git: ownership
                .source()
                .unwrap_or_else(|| format!("the repository {} syncs from", ownership.owner)),
            rolled_back,
        })
    }
}

impl GitOpsPause {
    async fn resume_owner(&self) -> Result<String, ExecError> {
        let obj = self
            .kube
            .get_workload(&self.target)
            .await
            .map_err(|e| ExecError::new(ExecErrorKind::Unreachable, e.to_string()))?;
        let Some((owner, _)) = owner_of(&obj, &self.kube.gitops) else {
            return Err(ExecError::new(
                ExecErrorKind::NotFound,
                format!(
                    "{} has no Argo CD or Flux owner (no tracking annotation or labels); nothing to resume",
                    self.target
                ),
            ));
        };
        resume(&self.kube.client(), &owner)
            .await
            .map_err(|e| ExecError::new(ExecErrorKind::Other, e))
    }
}

/// The GitOps pause steps of the services `paused` names with their
/// workloads, by service, reaching the cluster as `kube` does.
pub fn pause_hooks(
    paused: Vec<(ServiceName, KubeTarget)>,
    kube: &KubeExecutor,
) -> std::collections::BTreeMap<ServiceName, Arc<dyn Hook>> {
    paused
        .into_iter()
        .map(|(name, t)| (name, GitOpsPause::new(kube.clone(), t) as Arc<dyn Hook>))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracking_id_wins_and_names_the_applications_namespace() {
        let s = GitOpsSettings::default();
        let w = json!({"metadata": {
            "labels": {"app.kubernetes.io/instance": "other"},
            "annotations": {TRACKING_ID: "team-a_payments:apps/Deployment:production/api"}}});
        let (owner, by) = owner_of(&w, &s).unwrap();
        assert_eq!(owner.to_string(), "Argo CD application team-a/payments");
        assert_eq!(by, format!("annotation {TRACKING_ID}"));
        let custom = GitOpsSettings {
            argocd_namespace: "gitops".into(),
            instance_label: "argocd.argoproj.io/instance".into(),
        };
        let w = json!({"metadata": {"labels": {"argocd.argoproj.io/instance": "shop"}}});
        assert_eq!(
            owner_of(&w, &custom).unwrap().0.to_string(),
            "Argo CD application gitops/shop"
        );
        assert!(owner_of(&w, &s).is_none());
    }

    #[test]
    fn self_heal_and_an_unsuspended_kustomization_revert() {
        let app = |policy: Value| {
            state_of(
                OwnerKind::ArgoApplication,
                &json!({"spec": {"syncPolicy": policy}}),
            )
        };
        let own = |state| Ownership {
            owner: Owner {
                kind: OwnerKind::ArgoApplication,
                namespace: "argocd".into(),
                name: "x".into(),
            },
            found_by: String::new(),
            state,
        };
        assert!(own(app(json!({"automated": {"selfHeal": true}}))).reverts());
        assert!(
            !own(app(
                json!({"automated": {"selfHeal": true, "enabled": false}})
            ))
            .reverts()
        );
        assert!(!own(app(json!({"automated": {}}))).reverts());
        let ks = state_of(OwnerKind::FluxKustomization, &json!({"spec": {}}));
        assert!(own(ks).reverts());
        let hr = state_of(OwnerKind::FluxHelmRelease, &json!({"spec": {}}));
        assert!(!own(hr).reverts());
        assert!(own(OwnerState::Unread { reason: "x".into() }).reverts());
    }

    #[test]
    fn an_application_set_is_named_in_the_warnings() {
        let obj = json!({"metadata": {"ownerReferences": [{"kind": "ApplicationSet", "name": "all-apps"}]},
            "spec": {"source": {"repoURL": "https://git.example/deploy.git", "path": "apps/x", "targetRevision": "main"},
                     "syncPolicy": {"automated": {"selfHeal": true}}}});
        let o = Ownership {
            owner: Owner {
                kind: OwnerKind::ArgoApplication,
                namespace: "argocd".into(),
                name: "x".into(),
            },
            found_by: String::new(),
            state: state_of(OwnerKind::ArgoApplication, &obj),
        };
        let w = warnings(&o);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("self-heal on"), "{w:?}");
        assert!(
            w[0].contains("in git (https://git.example/deploy.git, path apps/x, revision main)"),
            "{w:?}"
        );
        assert!(w[1].contains("ApplicationSet all-apps"), "{w:?}");
        assert!(blocker(&o).is_some());
    }
}
