//! The Kubernetes target of a service (`[services.NAME.kubernetes]`), a
//! drill's copy of it, and how rollbot reaches the cluster (`[kubernetes]`).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The workload kinds rollbot can roll back in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

/// A Kubernetes workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeTarget {
    pub namespace: String,
    #[serde(default = "default_kind")]
    pub kind: WorkloadKind,
    pub name: String,
}

fn default_kind() -> WorkloadKind {
    WorkloadKind::Deployment
}

/// Where a drill runs: the simulator's loopback URL and the copied workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillTarget {
    /// e.g. `http://127.0.0.1:41234`.
    pub url: String,
    pub workload: KubeTarget,
}

impl fmt::Display for KubeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
        };
        write!(f, "{kind} {}/{}", self.namespace, self.name)
    }
}

/// How rollbot reaches the cluster. Without this section it uses the
/// in-cluster service account or `~/.kube/config`, like kubectl.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Argo CD: the namespace of Applications whose tracking id names none
    /// (default `argocd`).
    pub argocd_namespace: Option<String>,
    /// Argo CD's `application.instanceLabelKey` (default
    /// `app.kubernetes.io/instance`).
    pub argocd_instance_label: Option<String>,
}
