//! The runbook around a rollback, built from `[services.NAME.runbook]`:
//! pre-checks run when the plan is made, hooks before and after the
//! rollback once it is approved (see [`crate::domain::pipeline`]).
//!
//! - [`template`]: the `{variable}` templates of arguments, URLs and bodies.
//! - [`process`]: running one program in its own process group, killed
//!   with its children on timeout or shutdown.
//! - [`step`]: one configured step (a command or an HTTP call) as a
//!   [`crate::ports::Hook`] or a [`crate::ports::PreCheck`].
//!
//! [`hooks_for`] turns a service's configuration into the
//! [`crate::ports::Hooks`] the engine runs; `rollbot serve` calls it for
//! every service ([`install`]).

pub mod process;
pub mod step;
pub mod template;
pub mod vars;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Config, RunbookConfig};
use crate::domain::ServiceName;
use crate::engine::Engine;
use crate::ports::Hooks;

/// The pre-checks and hooks of a service's `[services.NAME.runbook]`,
/// wording its findings in `locale`.
pub fn hooks_for(runbook: &RunbookConfig, locale: &str) -> Hooks {
    let http = reqwest::Client::new();
    let step = |c: &crate::config::StepConfig| Arc::new(step::Step::new(c, locale, http.clone()));
    Hooks {
        pre_checks: runbook
            .pre_checks
            .iter()
            .map(|c| step(c) as Arc<dyn crate::ports::PreCheck>)
            .collect(),
        before: runbook
            .before
            .iter()
            .map(|c| step(c) as Arc<dyn crate::ports::Hook>)
            .collect(),
        after: runbook
            .after
            .iter()
            .map(|c| step(c) as Arc<dyn crate::ports::Hook>)
            .collect(),
    }
}

/// Gives `engine` the runbook of every configured service, with `first`
/// (e.g. the GitOps pause) ahead of the service's own before-hooks.
pub fn install(
    engine: &Engine,
    config: &Config,
    mut first: BTreeMap<ServiceName, Arc<dyn crate::ports::Hook>>,
) {
    for (name, service) in config.services() {
        let mut hooks = config
            .services
            .get(name.as_str())
            .and_then(|s| s.runbook.as_ref())
            .map(|r| hooks_for(r, &service.locale))
            .unwrap_or_default();
        if let Some(hook) = first.remove(&name) {
            hooks.before.insert(0, hook);
        }
        if !(hooks.pre_checks.is_empty() && hooks.before.is_empty() && hooks.after.is_empty()) {
            engine.set_hooks(name, hooks);
        }
    }
}
