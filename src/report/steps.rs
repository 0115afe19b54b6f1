//! The report's list of rollout steps and runbook hooks, each with how it
//! ended and how long it took, read off the timeline.

use serde::Serialize;

use crate::domain::{EventKind, TimelineEvent};

/// One row of the report's step table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRow {
    /// The step's stable name (`before_hooks`, `rollback`…).
    pub step: &'static str,
    /// The hook's name, for a hook's row (listed under its step).
    pub hook: Option<String>,
    pub ok: bool,
    /// Seconds, to a tenth.
    pub seconds: f64,
    /// How it ended, cut short and safe inside a Markdown table.
    pub detail: String,
}

/// Longest detail shown in a row.
const DETAIL_CHARS: usize = 160;

fn cell(text: &str) -> String {
    let short: String = text.chars().take(DETAIL_CHARS).collect();
    let short = if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    };
    short.replace('|', "\\|").replace('\n', " ")
}

/// The finished steps of `timeline` in order, each followed by its hooks.
pub fn step_rows(timeline: &[TimelineEvent]) -> Vec<StepRow> {
    let mut rows = Vec::new();
    let mut hooks = Vec::new();
    let mut started = std::collections::BTreeMap::new();
    for e in timeline {
        match &e.kind {
            EventKind::StepStarted { step } => {
                started.insert(*step, e.at);
            }
            EventKind::HookFinished {
                name,
                ok,
                detail,
                millis,
                step,
            } => hooks.push(StepRow {
                step: step.name(),
                hook: Some(name.clone()),
                ok: *ok,
                seconds: (*millis as f64 / 100.0).round() / 10.0,
                detail: cell(detail),
            }),
            EventKind::StepFinished { step, ok, detail } => {
                let seconds = started.get(step).map_or(0.0, |at| {
                    (e.at - *at).num_milliseconds().max(0) as f64 / 1000.0
                });
                rows.push(StepRow {
                    step: step.name(),
                    hook: None,
                    ok: *ok,
                    seconds: (seconds * 10.0).round() / 10.0,
                    detail: cell(detail),
                });
                rows.append(&mut hooks);
            }
            _ => {}
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pipeline::Step;
    use chrono::TimeZone;

    fn at(second: u32, kind: EventKind) -> TimelineEvent {
        TimelineEvent {
            seq: 0,
            at: chrono::Utc
                .with_ymd_and_hms(2026, 11, 28, 3, 0, second)
                .unwrap(),
            kind,
        }
    }

    #[test]
    fn lists_each_step_then_its_hooks_with_durations() {
        let rows = step_rows(&[
            at(
                0,
                EventKind::StepStarted {
                    step: Step::BeforeHooks,
                },
            ),
            at(
                4,
                EventKind::HookFinished {
                    step: Step::BeforeHooks,
                    name: "db-backup".into(),
                    ok: true,
                    detail: "exit 0 | done".into(),
                    millis: 3_960,
                },
            ),
            at(
                5,
                EventKind::StepFinished {
                    step: Step::BeforeHooks,
                    ok: true,
                    detail: "db-backup: exit 0".into(),
                },
            ),
            at(5, EventKind::StepStarted { step: Step::Report }),
        ]);
        assert_eq!(rows.len(), 2, "an unfinished step is left out");
        assert_eq!(
            (rows[0].step, rows[0].hook.as_deref()),
            ("before_hooks", None)
        );
        assert_eq!(rows[0].seconds, 5.0);
        assert_eq!(rows[1].hook.as_deref(), Some("db-backup"));
        assert_eq!(rows[1].seconds, 4.0);
        assert_eq!(rows[1].detail, "exit 0 \\| done");
    }
}
