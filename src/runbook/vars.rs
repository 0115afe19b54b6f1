//! The values a step's templates are filled with, and the `ROLLBOT_…`
//! environment variables that carry them. Read by the runbook's steps and
//! by the command executor, so it depends on no configuration.

use std::collections::BTreeMap;

use super::template;
use crate::domain::{Plan, RevisionInfo, ServiceName};
use crate::ports::HookCall;

/// The environment variables every command gets, one per template
/// variable (`ROLLBOT_SERVICE`, `ROLLBOT_FROM`, …): a `shell = true`
/// script reads them instead of templates.
pub fn env_name(variable: &str) -> String {
    format!("ROLLBOT_{}", variable.to_ascii_uppercase())
}

/// The values a step's templates are filled with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars(BTreeMap<&'static str, String>);

/// A revision as a version: its images (`payment-api:v1.2.0`; a command
/// target's version, e.g. `v1.2.9`), or its number when it has none.
pub fn version_of(rev: &RevisionInfo) -> String {
    if rev.images.is_empty() {
        rev.revision.to_string()
    } else {
        rev.images
            .iter()
            .map(|i| i.image.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Vars {
    /// What is known when the plan is made (pre-checks, a plan's rollback).
    pub fn of_plan(service: &ServiceName, plan: &Plan) -> Self {
        Self(BTreeMap::from([
            ("service", service.to_string()),
            ("from", version_of(&plan.current)),
            ("to", version_of(&plan.target)),
            ("from_revision", plan.current.revision.to_string()),
            ("to_revision", plan.target.revision.to_string()),
        ]))
    }

    /// Everything, for a hook of an approved proposal.
    pub fn of_call(call: &HookCall) -> Self {
        let p = &call.proposal;
        let mut vars = Self::of_plan(&p.service, &p.plan);
        vars.0.insert("proposal", p.id.to_string());
        vars.0.insert(
            "approvers",
            p.approvers()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
        vars.0.insert("status_update", call.status_update.clone());
        vars
    }

    /// Adds a value (e.g. the proposal id for a rollback command).
    pub fn with(mut self, name: &'static str, value: String) -> Self {
        self.0.insert(name, value);
        self
    }

    /// `text` with the variables filled in.
    ///
    /// # Errors
    /// An unknown variable or an unclosed brace (check-config reports these
    /// before they can happen).
    pub fn render(&self, text: &str) -> Result<String, String> {
        template::render(text, &|name| self.0.get(name).cloned())
    }

    /// The variables as `ROLLBOT_…` environment variables.
    pub fn env(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(k, v)| (env_name(k), v.clone()))
            .collect()
    }
}
