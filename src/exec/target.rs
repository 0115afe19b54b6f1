//! What a service's rollback acts on: its target, whose kind picks the
//! executor.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::kubernetes::{DrillTarget, KubeTarget};

/// What a service's rollback acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    Kubernetes(KubeTarget),
    /// A drill's copy of a workload, in an in-process simulator on
    /// loopback (see [`crate::exec::kubernetes::drill`]); never a real cluster.
    Drill(DrillTarget),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Kubernetes(k) => write!(f, "{k}"),
            Target::Drill(d) => write!(f, "DRILL copy of {}", d.workload),
        }
    }
}
