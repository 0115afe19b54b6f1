//! What a service's rollback acts on: its target, whose kind picks the
//! executor ([`super::Executors`]).
//!
//! A kind rollbot ships (Kubernetes, Docker Swarm, commands, Helm) is
//! one variant here, one table under `[services.NAME]` and one executor. A
//! kind rollbot does not ship — an executor registered by a program that
//! embeds rollbot, or by a test — needs no change here: its services name it
//! in a `[services.NAME.custom]` table, which becomes a [`Target::Custom`]
//! carrying the kind's name and its settings as a JSON value, and the
//! executor registered under that kind reads the settings itself. A JSON
//! value, rather than a type parameter or a boxed trait object, keeps
//! `Target` a plain value: comparable, printable and stored as it is.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::command::target::{COMMAND, CommandTarget};
use super::helm::target::{HELM, HelmTarget};
use super::kubernetes::target::{DrillTarget, KubeTarget};
use super::swarm::target::{SWARM, SwarmTarget};

/// The kind of Kubernetes targets (and of their drill copies).
pub const KUBERNETES: &str = "kubernetes";

/// What a service's rollback acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    Kubernetes(KubeTarget),
    /// A drill's copy of a Kubernetes workload, in an in-process simulator
    /// on loopback ([`super::kubernetes::drill`]); made and read only by the
    /// Kubernetes executor (see [`crate::ports::Executor::rehearse`]), never
    /// a real cluster.
    Drill(DrillTarget),
    /// A Docker Swarm service (`[services.NAME.swarm]`).
    Swarm(SwarmTarget),
    /// A kind rollbot does not ship, for an executor registered under
    /// [`CustomTarget::kind`].
    Custom(CustomTarget),
    /// A rollback run by the service's own plan and rollback commands
    /// ([`super::command`]).
    Command(CommandTarget),
    /// A Helm release ([`super::helm`]).
    Helm(HelmTarget),
}

impl Target {
    /// The kind that picks this target's executor, e.g. `kubernetes`.
    pub fn kind(&self) -> &str {
        match self {
            Target::Kubernetes(_) | Target::Drill(_) => KUBERNETES,
            Target::Swarm(_) => SWARM,
            Target::Custom(c) => &c.kind,
            Target::Command(_) => COMMAND,
            Target::Helm(_) => HELM,
        }
    }
}

/// `[services.NAME.custom]`: a target of a kind registered by the program
/// embedding rollbot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomTarget {
    /// The kind its executor is registered under, e.g. `nomad`.
    pub kind: String,
    /// `[services.NAME.custom.settings]`: whatever that executor needs to
    /// find the workload, read by the executor alone.
    #[serde(default = "no_settings")]
    pub settings: serde_json::Value,
}

fn no_settings() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Kubernetes(k) => write!(f, "{k}"),
            Target::Drill(d) => write!(f, "DRILL copy of {}", d.workload),
            Target::Swarm(s) => write!(f, "{s}"),
            Target::Custom(c) => write!(f, "{} {}", c.kind, c.settings),
            Target::Command(c) => write!(f, "command {}", c.rollback.join(" ")),
            Target::Helm(h) => write!(f, "helm release {}/{}", h.namespace, h.release),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_target_is_routed_by_its_own_kind() {
        let t = Target::Custom(CustomTarget {
            kind: "nomad".into(),
            settings: serde_json::json!({"job": "payment"}),
        });
        assert_eq!(t.kind(), "nomad");
        assert_eq!(t.to_string(), r#"nomad {"job":"payment"}"#);
        let stored = serde_json::to_value(&t).unwrap();
        assert_eq!(serde_json::from_value::<Target>(stored).unwrap(), t);
    }
}
