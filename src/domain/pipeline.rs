//! The rollout as a list of steps, and where a recorded timeline says it
//! stands.
//!
//! An approved proposal runs, in order: plan (done when the proposal
//! opened, with its pre-checks), before-hooks, rollback, after-hooks,
//! verify, report. Hooks are steps only for services that have some, and a
//! drill has no verify step (its checks would measure production, which a
//! drill does not touch). Each step records [`EventKind::StepStarted`] and
//! [`EventKind::StepFinished`] on the timeline, so after a restart the
//! engine resumes at the step that was running, or at the one after the
//! last finished — it never needs memory of the process that died.

use super::proposal::State;
pub use super::step::Step;
use super::timeline::{EventKind, TimelineEvent};

/// The steps one rollout runs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    steps: Vec<Step>,
}

/// What decides which steps a rollout has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    pub before_hooks: bool,
    pub after_hooks: bool,
    /// A drill: rehearses on a copy, so production's checks are not run.
    pub drill: bool,
}

impl Pipeline {
    pub fn new(shape: Shape) -> Self {
        let mut steps = vec![Step::Plan];
        if shape.before_hooks {
            steps.push(Step::BeforeHooks);
        }
        steps.push(Step::Rollback);
        if shape.after_hooks {
            steps.push(Step::AfterHooks);
        }
        if !shape.drill {
            steps.push(Step::Verify);
        }
        steps.push(Step::Report);
        Self { steps }
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn contains(&self, step: Step) -> bool {
        self.steps.contains(&step)
    }

    /// The step after `step`, if any.
    pub fn after(&self, step: Step) -> Option<Step> {
        let i = self.steps.iter().position(|s| *s == step)?;
        self.steps.get(i + 1).copied()
    }

    /// The first step that runs once the proposal is approved.
    pub fn first_after_approval(&self) -> Step {
        self.after(Step::Plan).unwrap_or(Step::Rollback)
    }

    /// Where to pick up a rollout that was interrupted, from its timeline
    /// and its state (`Executing` or `RolledBack`). `None` when there is
    /// nothing left to run.
    ///
    /// A timeline with no step events was written before steps were
    /// recorded, or cut off between approval and the first step: an
    /// executing proposal resumes at the first step after approval (the
    /// rollback step asks the workload whether it was applied, so that is
    /// safe), a rolled-back one at the step after the rollback.
    pub fn resume_at(&self, state: State, timeline: &[TimelineEvent]) -> Option<Step> {
        match last_step(timeline) {
            None if state == State::RolledBack => self.after(Step::Rollback),
            None => Some(self.first_after_approval()),
            Some(StepMark::Started(step)) => Some(step),
            Some(StepMark::Finished { step, ok }) if ok || !step.failure_stops() => {
                self.after(step)
            }
            Some(StepMark::Finished { .. }) => None,
        }
    }
}

/// The last step event of a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepMark {
    Started(Step),
    Finished { step: Step, ok: bool },
}

/// The last [`StepMark`] recorded on `timeline`, if any.
pub fn last_step(timeline: &[TimelineEvent]) -> Option<StepMark> {
    timeline.iter().rev().find_map(|e| match &e.kind {
        EventKind::StepStarted { step } => Some(StepMark::Started(*step)),
        EventKind::StepFinished { step, ok, .. } => Some(StepMark::Finished {
            step: *step,
            ok: *ok,
        }),
        _ => None,
    })
}

/// Where one hook of a step stands on a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookMark {
    /// It ran to a successful end: not run again after a restart.
    Done,
    /// It started and never finished: a restart interrupted it.
    Interrupted,
}

/// Where hook `name` of `step` stands on `timeline`; `None` when it never
/// started, or its last run failed (it runs again with the step).
pub fn hook_mark(timeline: &[TimelineEvent], step: Step, name: &str) -> Option<HookMark> {
    timeline.iter().rev().find_map(|e| match &e.kind {
        EventKind::HookStarted { step: s, name: n } if *s == step && n == name => {
            Some(Some(HookMark::Interrupted))
        }
        EventKind::HookFinished {
            step: s,
            name: n,
            ok,
            ..
        } if *s == step && n == name => Some(ok.then_some(HookMark::Done)),
        _ => None,
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(kind: EventKind) -> TimelineEvent {
        TimelineEvent {
            seq: 0,
            at: chrono::Utc.with_ymd_and_hms(2026, 11, 28, 3, 0, 0).unwrap(),
            kind,
        }
    }

    fn started(step: Step) -> TimelineEvent {
        at(EventKind::StepStarted { step })
    }

    fn finished(step: Step, ok: bool) -> TimelineEvent {
        at(EventKind::StepFinished {
            step,
            ok,
            detail: String::new(),
        })
    }

    #[test]
    fn steps_follow_the_runbook_order() {
        let all = Pipeline::new(Shape {
            before_hooks: true,
            after_hooks: true,
            drill: false,
        });
        assert_eq!(
            all.steps(),
            [
                Step::Plan,
                Step::BeforeHooks,
                Step::Rollback,
                Step::AfterHooks,
                Step::Verify,
                Step::Report
            ]
        );
        let plain = Pipeline::new(Shape::default());
        assert_eq!(
            plain.steps(),
            [Step::Plan, Step::Rollback, Step::Verify, Step::Report]
        );
        let drill = Pipeline::new(Shape {
            drill: true,
            ..Shape::default()
        });
        assert!(!drill.contains(Step::Verify));
        assert_eq!(drill.after(Step::Rollback), Some(Step::Report));
    }

    #[test]
    fn resumes_at_the_running_step_or_the_next_one() {
        let p = Pipeline::new(Shape {
            before_hooks: true,
            after_hooks: false,
            drill: false,
        });
        let exec = State::Executing;
        assert_eq!(p.resume_at(exec, &[]), Some(Step::BeforeHooks));
        // Written before steps were recorded: the state says where.
        assert_eq!(p.resume_at(State::RolledBack, &[]), Some(Step::Verify));
        assert_eq!(
            p.resume_at(exec, &[started(Step::BeforeHooks)]),
            Some(Step::BeforeHooks)
        );
        assert_eq!(
            p.resume_at(
                exec,
                &[
                    started(Step::BeforeHooks),
                    finished(Step::BeforeHooks, true)
                ]
            ),
            Some(Step::Rollback)
        );
        assert_eq!(
            p.resume_at(
                State::RolledBack,
                &[
                    started(Step::Rollback),
                    at(EventKind::Progress { line: "x".into() }),
                    finished(Step::Rollback, true)
                ]
            ),
            Some(Step::Verify)
        );
        assert_eq!(
            p.resume_at(
                exec,
                &[
                    started(Step::BeforeHooks),
                    finished(Step::BeforeHooks, false)
                ]
            ),
            None
        );
        assert_eq!(
            p.resume_at(
                State::RolledBack,
                &[started(Step::Report), finished(Step::Report, true)]
            ),
            None
        );
    }

    #[test]
    fn a_hook_is_done_interrupted_or_to_run() {
        let hook = |kind| at(kind);
        let started = |name: &str| {
            hook(EventKind::HookStarted {
                step: Step::BeforeHooks,
                name: name.into(),
            })
        };
        let finished = |name: &str, ok| {
            hook(EventKind::HookFinished {
                step: Step::BeforeHooks,
                name: name.into(),
                ok,
                detail: String::new(),
                millis: 5,
            })
        };
        let timeline = [
            started("backup"),
            finished("backup", true),
            started("maintenance"),
            finished("maintenance", false),
            started("drain"),
        ];
        assert_eq!(
            hook_mark(&timeline, Step::BeforeHooks, "backup"),
            Some(HookMark::Done)
        );
        assert_eq!(hook_mark(&timeline, Step::BeforeHooks, "maintenance"), None);
        assert_eq!(
            hook_mark(&timeline, Step::BeforeHooks, "drain"),
            Some(HookMark::Interrupted)
        );
        assert_eq!(hook_mark(&timeline, Step::AfterHooks, "backup"), None);
        assert_eq!(hook_mark(&timeline, Step::BeforeHooks, "never"), None);
    }

    #[test]
    fn a_failed_step_after_the_rollback_does_not_end_the_rollout() {
        let p = Pipeline::new(Shape {
            before_hooks: false,
            after_hooks: true,
            drill: false,
        });
        assert_eq!(
            p.resume_at(
                State::RolledBack,
                &[started(Step::AfterHooks), finished(Step::AfterHooks, false)]
            ),
            Some(Step::Verify)
        );
    }
}
