//! A service's pre-checks, run when its plan is made (before anyone votes,
//! and for real in drills): their findings become the plan's warnings,
//! its migrations flag (which the decision rules read) and its blockers.

use super::Engine;
use crate::domain::{Plan, ServiceName};

impl Engine {
    /// Runs `service`'s pre-checks against `plan`, in order, and records
    /// what they found on it.
    pub(super) async fn pre_check(&self, service: &ServiceName, plan: &mut Plan) {
        for check in self.hooks_of(service).pre_checks {
            let found = check.check(service, plan).await;
            tracing::info!(%service, check = check.name(), migrations = found.migrations, blocked = found.blocker.is_some(), "pre-check done");
            plan.warnings.extend(found.warnings);
            plan.migrations |= found.migrations;
            plan.blockers.extend(found.blocker);
        }
    }
}
