//! The rollout of an approved proposal: execution, progress in chat,
//! verification, the resolved notice and the report, and resuming each of
//! them after a restart.

use super::{Engine, EngineError, store_only};
use crate::config::Service;
use crate::domain::{EventKind, MessageRef, Origin, Proposal, ProposalId, ResumeStep, State};
use crate::domain::{Pipeline, Shape, Step};
use crate::exec::Target;
use crate::ports::{
    CheckResult, ExecError, ExecErrorKind, ExecOutcome, Standing, ThreadNote, Verdict,
};
use crate::store::{StoreError, UpdateError};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

impl Engine {
    /// The atomic `Approved -> Executing` step; the winner spawns the rollback.
    pub(super) async fn start_execution(&self, id: &ProposalId) -> Result<(), EngineError> {
        let now = self.now();
        let result = self.inner.store.update(id, now, |p| {
            if p.state != State::Approved {
                return Err(p.state);
            }
            p.transition(State::Executing, now).map_err(|e| e.from)?;
            Ok((
                (),
                vec![
                    EventKind::StateChanged {
                        from: State::Approved,
                        to: State::Executing,
                    },
                    EventKind::ExecutionStarted,
                ],
            ))
        });
        match result {
            Ok(((), p)) => {
                self.inner.store.flush().await?;
                tracing::info!(proposal = %id, "execution started");
                self.update_message(&p).await?;
                self.post_thread(&p, ThreadNote::ExecutionStarted).await?;
                let engine = self.clone();
                self.spawn(async move {
                    let first = engine.pipeline(&p).first_after_approval();
                    if let Err(e) = engine.run_steps(p, first, None).await {
                        tracing::error!(error = %e, "rollback task failed");
                    }
                });
                Ok(())
            }
            // Someone else won the race, or it is no longer approved.
            Err(UpdateError::Rejected(state)) => {
                tracing::debug!(proposal = %id, %state, "execution not started");
                Ok(())
            }
            Err(UpdateError::Store(e)) => Err(e.into()),
        }
    }

    /// Releases the copies of drills that are over (cancelled, expired,
    /// rejected, finished). A drill not stored yet is being opened: its
    /// copy is kept.
    pub(super) fn reap_drills(&self) {
        let store = &self.inner.store;
        self.inner
            .ports
            .executor
            .release(&|id| matches!(store.get(id), Ok(Some(p)) if !p.is_open()));
    }

    /// What `p` runs against: the service's target, or for a drill only the
    /// copy its executor keeps for it. A drill whose copy is gone fails; it
    /// never falls back to the service's real target.
    fn execution_target(&self, p: &Proposal, service: &Service) -> Result<Target, ExecError> {
        if !p.drill {
            return Ok(service.target.clone());
        }
        self.inner
            .ports
            .executor
            .rehearsal(&service.target, &p.id)
            .map_err(|e| {
                ExecError::new(
                    e.kind,
                    format!(
                        "DRILL: {}. Start a new drill with `/rollback drill {}`",
                        e.message, p.service
                    ),
                )
            })
    }

    /// A drill's stand-in for verification: its checks would measure
    /// production, which the drill did not change, so they are not run.
    async fn skip_drill_checks(&self, p: Proposal) -> Result<Proposal, EngineError> {
        if p.no_checks {
            return Ok(p);
        }
        // The timeline keeps an English line for operators; people in the
        // thread get the note in their locale.
        let text = "DRILL: verification checks were not run; they measure production, which this drill did not change";
        let (_, p) = self
            .inner
            .store
            .update(&p.id, self.now(), |p| {
                p.no_checks = true;
                Ok::<_, std::convert::Infallible>(((), vec![EventKind::Note { text: text.into() }]))
            })
            .map_err(store_only)?;
        self.inner.store.flush().await?;
        self.post_thread(&p, ThreadNote::DrillChecksSkipped).await?;
        self.update_message(&p).await?;
        // The copy stays up until the next tick reaps it, so people (and
        // tests) can look at the rolled-back copy meanwhile.
        Ok(p)
    }

    /// The resolved notice of `p`, with the current value of its first
    /// verification check read from the timeline.
    pub(super) fn resolved_note(&self, p: &Proposal) -> Result<ThreadNote, EngineError> {
        let timeline = self.inner.store.timeline(&p.id)?;
        // The notice still goes out when the draft cannot be made; the
        // draft is a convenience, the notice is the news.
        let status_update = self
            .status_update_from(p, &timeline)
            .inspect_err(|e| tracing::warn!(proposal = %p.id, error = %e, "cannot draft the status update for the resolved notice"))
            .ok();
        Ok(ThreadNote::Resolved {
            check: crate::report::first_check(&timeline),
            status_update,
        })
    }

    /// The verify step: runs the checks, and records the verdict together
    /// with the step's end.
    async fn run_verification(&self, p: Proposal) -> Result<Proposal, EngineError> {
        let (tx, mut rx) = mpsc::channel::<CheckResult>(64);
        let verify = self.inner.ports.verifier.verify(&p.service, &p.plan, tx);
        tokio::pin!(verify);
        // Meanwhile the executor watches that the rollback holds (a GitOps
        // controller may put the workload back); verification ends when
        // both are done, or at once if the rollback did not hold.
        let target = self.service(&p.service)?.target.clone();
        let hold = self.inner.ports.executor.watch_hold(&target, &p.plan);
        tokio::pin!(hold);
        let (mut verdict, mut held) = (None, false);
        let reverted = loop {
            tokio::select! {
                biased;
                Some(check) = rx.recv() => self.record_check(&p.id, check)?,
                moved = &mut hold, if !held => {
                    held = true;
                    if moved.is_some() || verdict.is_some() {
                        break moved;
                    }
                }
                v = &mut verify, if verdict.is_none() => {
                    verdict = Some(v);
                    if held {
                        break None;
                    }
                }
            }
        };
        while let Ok(check) = rx.try_recv() {
            self.record_check(&p.id, check)?;
        }
        let now = self.now();
        let verdict = match (reverted, verdict) {
            (Some(reason), _) => return self.reverted(&p.id, reason).await,
            (None, Some(v)) => v,
            (None, None) => unreachable!("the loop ends with a verdict or a revert"),
        };
        let p = match &verdict {
            Verdict::NotConfigured => {
                let (_, p) = self
                    .inner
                    .store
                    .update(&p.id, now, |p| {
                        p.no_checks = true;
                        Ok::<_, std::convert::Infallible>((
                            (),
                            vec![
                                EventKind::Note {
                                    text: "no verification checks are configured for this service"
                                        .into(),
                                },
                                step_finished(Step::Verify, true, "no checks configured"),
                            ],
                        ))
                    })
                    .map_err(store_only)?;
                p
            }
            Verdict::Unverified {
                checks,
                unreachable,
            } => {
                let sources: Vec<String> = unreachable
                    .iter()
                    .map(|u| format!("{} ({}: {})", u.source, u.check, u.error))
                    .collect();
                let text = format!(
                    "could not verify recovery: {} did not answer during the whole verification window",
                    sources.join(", ")
                );
                let p = self.finish(
                    &p.id,
                    now,
                    State::Unverified,
                    vec![
                        EventKind::Note { text },
                        step_finished(Step::Verify, true, "unverified"),
                    ],
                )?;
                self.post_thread(
                    &p,
                    ThreadNote::Unverified {
                        checks: checks.clone(),
                        unreachable: unreachable.clone(),
                    },
                )
                .await?;
                p
            }
            Verdict::Passed { checks } | Verdict::Failed { checks } => {
                let passed = matches!(verdict, Verdict::Passed { .. });
                let to = if passed {
                    State::Verified
                } else {
                    State::VerificationFailed
                };
                let verdict = if passed { "passed" } else { "failed" };
                let p = self.finish(
                    &p.id,
                    now,
                    to,
                    vec![step_finished(Step::Verify, true, verdict)],
                )?;
                self.post_thread(
                    &p,
                    ThreadNote::Verification {
                        passed,
                        checks: checks.clone(),
                    },
                )
                .await?;
                p
            }
        };
        self.inner.store.flush().await?;
        self.update_message(&p).await?;
        // A manual proposal has no alert to clear: passing verification is
        // its resolution. Alert proposals get the notice from `alert_resolved`.
        if p.state == State::Verified && p.origin != Origin::Alert && p.alert_resolved_at.is_none()
        {
            self.post_thread(&p, self.resolved_note(&p)?).await?;
        }
        Ok(p)
    }

    /// Ends verification of `id` because the rollback did not hold
    /// (`reason`): the service is not on the rolled-back version, so
    /// whatever the checks said, recovery is not verified.
    async fn reverted(&self, id: &ProposalId, reason: String) -> Result<Proposal, EngineError> {
        let now = self.now();
        let p = self.finish(
            id,
            now,
            State::VerificationFailed,
            vec![
                EventKind::Note {
                    text: format!("the rollback did not hold: {reason}"),
                },
                step_finished(Step::Verify, true, "reverted"),
            ],
        )?;
        self.inner.store.flush().await?;
        self.post_thread(&p, ThreadNote::Reverted { reason })
            .await?;
        self.update_message(&p).await?;
        Ok(p)
    }

    /// Drafts the incident report of `id` in `locale`, asking the verifier
    /// for the values before the rollback and the chart's series.
    ///
    /// # Errors
    /// Unknown proposal, storage failure, or a template that fails to render.
    pub async fn report(
        &self,
        id: &ProposalId,
        locale: &str,
    ) -> Result<crate::report::Draft, EngineError> {
        let p = self.get(id)?;
        let timeline = self.inner.store.timeline(id)?;
        let window = crate::report::Milestones::of(&p, &timeline).window(self.now());
        let evidence = if p.drill {
            // Production's metrics say nothing about a rehearsal.
            crate::ports::Evidence::default()
        } else {
            self.inner
                .ports
                .verifier
                .evidence(&p.service, &p.plan, &window)
                .await
        };
        let templates =
            crate::report::templates().map_err(|e| EngineError::Report(e.to_string()))?;
        let drills = self.drill_comparison(&p, &timeline)?;
        crate::report::draft_compared(templates, &p, &timeline, &evidence, drills.as_ref(), locale)
            .map_err(|e| EngineError::Report(e.to_string()))
    }

    /// `p` beside its service's latest drills that ended before it was
    /// drafted (not itself, not ones still running).
    fn drill_comparison(
        &self,
        p: &Proposal,
        timeline: &[crate::domain::TimelineEvent],
    ) -> Result<Option<crate::report::DrillComparison>, EngineError> {
        let store = &self.inner.store;
        let mut drills = Vec::new();
        for d in store.list()? {
            if drills.len() == crate::report::COMPARED_DRILLS {
                break;
            }
            if d.drill && d.service == p.service && d.id != p.id && !d.is_open() {
                drills.push((d.created_at, store.timeline(&d.id)?));
            }
        }
        Ok(crate::report::DrillComparison::of(timeline, &drills))
    }

    pub(super) async fn post_report(&self, p: &Proposal) -> Result<(), EngineError> {
        match self.report(&p.id, &p.locale).await {
            Ok(d) => {
                let note = ThreadNote::Report {
                    markdown: d.markdown,
                    chart_png: d.chart_png,
                };
                self.post_thread(p, note).await
            }
            Err(EngineError::Report(detail)) => {
                tracing::error!(proposal = %p.id, error = %detail, "incident report not drafted");
                self.inner.store.append(
                    &p.id,
                    self.now(),
                    vec![EventKind::Note {
                        text: format!(
                            "the incident report could not be drafted ({detail}); run `rollbot report {}` after fixing the templates",
                            p.id
                        ),
                    }],
                )?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn finish(
        &self,
        id: &ProposalId,
        now: DateTime<Utc>,
        to: State,
        events: Vec<EventKind>,
    ) -> Result<Proposal, EngineError> {
        let (_, p) = self
            .inner
            .store
            .update(id, now, |p| -> Result<_, crate::domain::TransitionError> {
                let from = p.state;
                p.transition(to, now)?;
                let mut ev = events.clone();
                ev.push(EventKind::StateChanged { from, to });
                Ok(((), ev))
            })
            .map_err(|e| match e {
                UpdateError::Rejected(t) => EngineError::Store(StoreError::Corrupt {
                    tree: "proposals",
                    key: id.to_string(),
                    detail: t.to_string(),
                }),
                UpdateError::Store(e) => e.into(),
            })?;
        Ok(p)
    }

    /// Records a progress line, then shows it: the first line becomes a
    /// thread message, later ones edit that message at most once per the
    /// stream's interval; lines in between wait (only the newest is kept).
    async fn progress(
        &self,
        id: &ProposalId,
        line: String,
        stream: &mut ProgressStream,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let p =
            self.inner
                .store
                .append(id, now, vec![EventKind::Progress { line: line.clone() }])?;
        let note = ThreadNote::Progress { line };
        match (&stream.message, stream.last_shown) {
            (None, _) => {
                stream.message = self.post_thread_ref(&p, &note).await?;
                stream.last_shown = Some(now);
                stream.pending = None;
            }
            (Some(_), Some(last)) if now - last < stream.interval => {
                stream.pending = Some(note);
            }
            (Some(at), _) => {
                let at = at.clone();
                self.edit_thread(&p, &at, &note).await?;
                stream.last_shown = Some(now);
                stream.pending = None;
            }
        }
        Ok(())
    }

    /// Delivers the last progress line if throttling held it back.
    async fn flush_progress(
        &self,
        id: &ProposalId,
        stream: &mut ProgressStream,
    ) -> Result<(), EngineError> {
        if let (Some(at), Some(note)) = (stream.message.clone(), stream.pending.take()) {
            let p = self.get(id)?;
            self.edit_thread(&p, &at, &note).await?;
            stream.last_shown = Some(self.now());
        }
        Ok(())
    }

    async fn post_thread_ref(
        &self,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<Option<MessageRef>, EngineError> {
        let Some(at) = p.primary_message() else {
            return Ok(None);
        };
        match self.inner.ports.chat.post_thread(at, p, note).await {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                self.record_chat_error(&p.id, &e.to_string())?;
                Ok(None)
            }
        }
    }

    async fn edit_thread(
        &self,
        p: &Proposal,
        at: &MessageRef,
        note: &ThreadNote,
    ) -> Result<(), EngineError> {
        if let Err(e) = self.inner.ports.chat.edit_thread(at, p, note).await {
            self.record_chat_error(&p.id, &e.to_string())?;
        }
        Ok(())
    }

    fn record_check(&self, id: &ProposalId, c: CheckResult) -> Result<(), EngineError> {
        self.inner.store.append(
            id,
            self.now(),
            vec![EventKind::Check {
                name: c.name,
                passed: c.passed,
                value: c.value,
            }],
        )?;
        Ok(())
    }

    /// The steps `p`'s rollout runs (see [`crate::domain::pipeline`]).
    pub(super) fn pipeline(&self, p: &Proposal) -> Pipeline {
        let hooks = self.hooks_of(&p.service);
        Pipeline::new(Shape {
            before_hooks: !hooks.before.is_empty(),
            after_hooks: !hooks.after.is_empty(),
            drill: p.drill,
        })
    }

    /// Runs `p`'s pipeline from `from` to its end, or until a step stops
    /// it. `resumed` says how the rollback step resumes after a restart.
    async fn run_steps(
        &self,
        mut p: Proposal,
        from: Step,
        resumed: Option<ResumeStep>,
    ) -> Result<(), EngineError> {
        let pipeline = self.pipeline(&p);
        let mut next = Some(from);
        while let Some(step) = next {
            let follow_only = resumed == Some(ResumeStep::Follow) && step == from;
            match self.run_step(p, step, follow_only).await? {
                Some(q) => {
                    p = q;
                    next = pipeline.after(step);
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Runs one step; `None` when the rollout stops there (a failure
    /// before the change is in place, or a report that waits for the
    /// incident to be resolved).
    async fn run_step(
        &self,
        p: Proposal,
        step: Step,
        follow_only: bool,
    ) -> Result<Option<Proposal>, EngineError> {
        match step {
            // Planned when the proposal opened.
            Step::Plan => Ok(Some(p)),
            Step::BeforeHooks | Step::AfterHooks => self.hooks_step(p, step).await,
            Step::Rollback => {
                let p = self.step_started(&p, step).await?;
                let p = self.rollback_step(p, follow_only).await?;
                self.remind(&p).await?;
                if p.state == State::RolledBack {
                    return Ok(Some(p));
                }
                self.always_after_hooks(p).await?;
                Ok(None)
            }
            Step::Verify => {
                let p = self.step_started(&p, step).await?;
                Ok(Some(self.run_verification(p).await?))
            }
            Step::Report => {
                let p = if p.drill {
                    self.skip_drill_checks(p).await?
                } else {
                    p
                };
                self.report_step(&p).await?;
                Ok(None)
            }
        }
    }

    /// Posts what the steps before the rollback left in place on purpose
    /// (a paused GitOps sync) and what people do about it, once the
    /// rollback step has ended, however it ended.
    async fn remind(&self, p: &Proposal) -> Result<(), EngineError> {
        let rolled_back = p.state == State::RolledBack;
        for hook in self.hooks_of(&p.service).before {
            if let Some(note) = hook.reminder(&p.service, &p.plan, rolled_back) {
                self.post_thread(p, note).await?;
            }
        }
        Ok(())
    }

    /// Records that `step` began.
    async fn step_started(&self, p: &Proposal, step: Step) -> Result<Proposal, EngineError> {
        let p =
            self.inner
                .store
                .append(&p.id, self.now(), vec![EventKind::StepStarted { step }])?;
        self.inner.store.flush().await?;
        Ok(p)
    }

    /// The report step: drafts and posts the incident report once the
    /// rollout is over and the incident resolved (a drill's at once).
    /// Until then it waits: the alert's resolution runs it.
    ///
    /// Exactly one of the verify step and `alert_resolved` sees both
    /// "verification over" and "resolved" (each reads the proposal its own
    /// atomic update returned), so the report is posted once.
    pub(super) async fn report_step(&self, p: &Proposal) -> Result<(), EngineError> {
        let due = if p.drill {
            p.state == State::RolledBack
        } else {
            crate::report::report_due(p)
        };
        if !due {
            return Ok(());
        }
        let p = self.step_started(p, Step::Report).await?;
        self.post_report(&p).await?;
        self.inner.store.append(
            &p.id,
            self.now(),
            vec![step_finished(Step::Report, true, "posted")],
        )?;
        self.inner.store.flush().await?;
        Ok(())
    }

    /// Runs the service's hooks before or after the rollback, in order,
    /// streaming their progress into the thread like the rollback's. A
    /// drill only says which hooks would run.
    async fn hooks_step(&self, p: Proposal, step: Step) -> Result<Option<Proposal>, EngineError> {
        let all = self.hooks_of(&p.service);
        let hooks = if step == Step::BeforeHooks {
            all.before
        } else {
            all.after
        };
        let earlier = self.inner.store.timeline(&p.id)?;
        let p = self.step_started(&p, step).await?;
        if p.drill {
            return self.hooks_would_run(p, step, &hooks).await.map(Some);
        }
        let (p, done, failure) = self.run_hooks(p, step, &hooks, &earlier).await?;
        let Some(failure) = failure else {
            let p = self.inner.store.append(
                &p.id,
                self.now(),
                vec![step_finished(step, true, &done.join("; "))],
            )?;
            self.inner.store.flush().await?;
            return Ok(Some(p));
        };
        if step.failure_stops() {
            // Nothing was rolled back: the proposal fails with the hook's
            // error, recorded with the step's end in one write; then the
            // after-hooks marked `always` put things back (maintenance off).
            let e = ExecError::new(ExecErrorKind::HookFailed, failure);
            let p = self.conclude(&p, Err(e), Some(step)).await?;
            self.always_after_hooks(p).await?;
            return Ok(None);
        }
        // The rollback is in place: verification and the report still run;
        // people finish the failed step by hand.
        let p = self.inner.store.append(
            &p.id,
            self.now(),
            vec![step_finished(step, false, &failure)],
        )?;
        self.inner.store.flush().await?;
        self.post_thread(&p, ThreadNote::AfterHookFailed { failure })
            .await?;
        Ok(Some(p))
    }

    /// The after-hooks marked `always` of a proposal whose rollout stopped
    /// before the rollback was in place (a before-hook failed, the rollback
    /// failed or was superseded), recorded as its after-hooks step: they
    /// put back what the before-hooks changed (maintenance off, traffic
    /// back). A drill runs none.
    async fn always_after_hooks(&self, p: Proposal) -> Result<(), EngineError> {
        let always: Vec<_> = self
            .hooks_of(&p.service)
            .after
            .into_iter()
            .filter(|h| h.always())
            .collect();
        if always.is_empty() || p.drill {
            return Ok(());
        }
        let always = always.as_slice();
        let earlier = self.inner.store.timeline(&p.id)?;
        let p = self.step_started(&p, Step::AfterHooks).await?;
        let (p, done, failure) = self
            .run_hooks(p, Step::AfterHooks, always, &earlier)
            .await?;
        let (ok, detail) = match &failure {
            None => (true, done.join("; ")),
            Some(f) => (false, f.clone()),
        };
        let p = self.inner.store.append(
            &p.id,
            self.now(),
            vec![step_finished(Step::AfterHooks, ok, &detail)],
        )?;
        self.inner.store.flush().await?;
        if let Some(failure) = failure {
            self.post_thread(&p, ThreadNote::AfterHookFailed { failure })
                .await?;
        }
        Ok(())
    }

    /// Runs `hooks` of `step` in order until one fails; returns what each
    /// did and the failure. A hook that finished before a
    /// restart (per `earlier`, the timeline before this run) is not run
    /// again; one a restart interrupted runs again only if it is
    /// idempotent, and is otherwise the failure.
    async fn run_hooks(
        &self,
        mut p: Proposal,
        step: Step,
        hooks: &[std::sync::Arc<dyn crate::ports::Hook>],
        earlier: &[crate::domain::TimelineEvent],
    ) -> Result<(Proposal, Vec<String>, Option<String>), EngineError> {
        let service = self.service(&p.service)?.clone();
        let mut stream = ProgressStream::new(service.progress_interval);
        let mut done = Vec::new();
        let mut failure = None;
        for hook in hooks {
            let name = hook.name().to_string();
            match crate::domain::pipeline::hook_mark(earlier, step, &name) {
                Some(crate::domain::pipeline::HookMark::Done) => {
                    done.push(format!("{name}: done before the restart"));
                    continue;
                }
                Some(crate::domain::pipeline::HookMark::Interrupted) if !hook.idempotent() => {
                    failure = Some(format!(
                        "{name}: interrupted by a restart and not run again, since it is not marked idempotent; check what it did and finish it by hand"
                    ));
                    break;
                }
                _ => {}
            }
            p = self.inner.store.append(
                &p.id,
                self.now(),
                vec![EventKind::HookStarted {
                    step,
                    name: name.clone(),
                }],
            )?;
            self.inner.store.flush().await?;
            // A hook still runs if the update cannot be drafted (start-up
            // checks the templates, so this is a bug, not an incident).
            let status_update = self.status_update(&p).unwrap_or_else(|e| {
                tracing::error!(proposal = %p.id, error = %e, "status update not drafted");
                String::new()
            });
            let call = crate::ports::HookCall {
                status_update,
                proposal: p.clone(),
            };
            let (tx, rx) = mpsc::channel::<String>(64);
            let began = std::time::Instant::now();
            let run = hook.run(&call, tx);
            let result = self
                .streaming(&p.id, Some(&name), &mut stream, rx, run)
                .await?;
            let millis = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
            let (ok, detail) = match &result {
                Ok(detail) => (true, detail.clone()),
                Err(e) => (false, e.message.clone()),
            };
            p = self.inner.store.append(
                &p.id,
                self.now(),
                vec![EventKind::HookFinished {
                    step,
                    name: name.clone(),
                    ok,
                    detail: detail.clone(),
                    millis,
                }],
            )?;
            self.inner.store.flush().await?;
            if ok {
                done.push(format!("{name}: {detail}"));
            } else {
                failure = Some(format!("{name}: {detail}"));
                break;
            }
        }
        self.flush_progress(&p.id, &mut stream).await?;
        Ok((p, done, failure))
    }

    /// A drill's hooks step: nothing runs (hooks act on production); the
    /// thread and the timeline say what would have.
    async fn hooks_would_run(
        &self,
        p: Proposal,
        step: Step,
        hooks: &[std::sync::Arc<dyn crate::ports::Hook>],
    ) -> Result<Proposal, EngineError> {
        let names: Vec<String> = hooks.iter().map(|h| h.name().to_string()).collect();
        let p = self.inner.store.append(
            &p.id,
            self.now(),
            vec![step_finished(
                step,
                true,
                &format!("DRILL: not run; would run {}", names.join(", ")),
            )],
        )?;
        self.inner.store.flush().await?;
        self.post_thread(&p, ThreadNote::HooksWouldRun { hooks: names })
            .await?;
        Ok(p)
    }

    /// The customer-facing status update of `p`, drafted from its timeline
    /// in its locale (see [`crate::report::status_update`]).
    pub(super) fn status_update(&self, p: &Proposal) -> Result<String, EngineError> {
        let timeline = self.inner.store.timeline(&p.id)?;
        self.status_update_from(p, &timeline)
    }

    /// As [`Self::status_update`], from a timeline already read.
    fn status_update_from(
        &self,
        p: &Proposal,
        timeline: &[crate::domain::TimelineEvent],
    ) -> Result<String, EngineError> {
        let templates =
            crate::report::templates().map_err(|e| EngineError::Report(e.to_string()))?;
        crate::report::status_update(templates, p, timeline, self.now())
            .map_err(|e| EngineError::Report(e.to_string()))
    }

    /// The rollback step: runs the rollback of `p` (with `follow_only`,
    /// only follows a rollout already applied) and records how it ended.
    async fn rollback_step(&self, p: Proposal, follow_only: bool) -> Result<Proposal, EngineError> {
        let service = self.service(&p.service)?.clone();
        let (tx, rx) = mpsc::channel::<String>(64);
        let mut stream = ProgressStream::new(service.progress_interval);
        let target = self.execution_target(&p, &service);
        let executor = self.inner.ports.executor.clone();
        let plan = p.plan.clone();
        let exec = async move {
            match target {
                Ok(target) if follow_only => executor.follow(&target, &plan, tx).await,
                Ok(target) => executor.execute(&target, &plan, tx).await,
                Err(e) => Err(e),
            }
        };
        let outcome = self.streaming(&p.id, None, &mut stream, rx, exec).await?;
        self.flush_progress(&p.id, &mut stream).await?;
        self.conclude(&p, outcome, Some(Step::Rollback)).await
    }

    /// Runs `work` while its progress lines (from `rx`, prefixed with
    /// `name` when given) go to the proposal's thread through `stream`;
    /// lines sent just before `work` ended are shown too.
    async fn streaming<T>(
        &self,
        id: &ProposalId,
        name: Option<&str>,
        stream: &mut ProgressStream,
        mut rx: mpsc::Receiver<String>,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, EngineError> {
        let label = |line: String| match name {
            Some(name) => format!("{name}: {line}"),
            None => line,
        };
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                biased;
                Some(line) = rx.recv() => self.progress(id, label(line), stream).await?,
                result = &mut work => break result,
            }
        };
        while let Ok(line) = rx.try_recv() {
            self.progress(id, label(line), stream).await?;
        }
        Ok(result)
    }

    /// Records the end of an execution (and of `step`, in the same write),
    /// and tells the thread.
    async fn conclude(
        &self,
        p: &Proposal,
        outcome: Result<ExecOutcome, ExecError>,
        step: Option<Step>,
    ) -> Result<Proposal, EngineError> {
        let now = self.now();
        if let Err(e) = &outcome {
            self.inner.metrics.executor_error(&p.service, e.kind);
        }
        let (to, mut events, note) = match outcome {
            Ok(ExecOutcome::RolledBack { detail }) => (
                State::RolledBack,
                vec![EventKind::ExecutionFinished {
                    ok: true,
                    detail: detail.clone(),
                }],
                ThreadNote::ExecutionFinished { ok: true, detail },
            ),
            Ok(ExecOutcome::Superseded { reason }) => (
                State::Superseded,
                vec![EventKind::Superseded {
                    reason: reason.clone(),
                }],
                ThreadNote::Superseded { reason },
            ),
            Err(e) => (
                State::Failed,
                vec![EventKind::ExecutionFinished {
                    ok: false,
                    detail: e.message.clone(),
                }],
                ThreadNote::ExecutionFailed { error: e },
            ),
        };
        if let Some(step) = step {
            events.push(step_finished(step, to == State::RolledBack, to.as_str()));
        }
        let p = self.finish(&p.id, now, to, events)?;
        self.post_thread(&p, note).await?;
        self.update_message(&p).await?;
        if to != State::RolledBack {
            self.reap_drills();
        }
        Ok(p)
    }

    /// Resumes `p`, found `Executing` or `RolledBack` at start-up. The
    /// restart is recorded with a compare-and-set on the timeline length,
    /// so two recoveries racing over one store resume it once.
    pub(super) async fn resume(&self, p: Proposal) -> Result<(), EngineError> {
        let lock = self.lock_for(&p.id);
        let _guard = lock.lock().await;
        let (seen, state) = (p.timeline_len, p.state);
        let result = self.inner.store.update(&p.id, self.now(), |q| {
            if q.timeline_len != seen || q.state != state {
                return Err(());
            }
            Ok(((), vec![EventKind::Restarted { state }]))
        });
        let p = match result {
            Ok(((), p)) => p,
            Err(UpdateError::Rejected(())) => return Ok(()),
            Err(UpdateError::Store(e)) => return Err(e.into()),
        };
        self.inner.store.flush().await?;
        let timeline = self.inner.store.timeline(&p.id)?;
        let Some(step) = self.pipeline(&p).resume_at(p.state, &timeline) else {
            tracing::info!(proposal = %p.id, %state, "nothing left to resume");
            return Ok(());
        };
        tracing::info!(proposal = %p.id, %state, %step, "resuming after a restart");
        // Only a report that was being drafted is news; one still waiting
        // for the incident to be resolved just goes on waiting.
        let running = crate::domain::pipeline::last_step(&timeline)
            == Some(crate::domain::pipeline::StepMark::Started(step));
        let engine = self.clone();
        self.spawn(async move {
            if let Err(e) = engine.resume_at(p, step, running).await {
                tracing::error!(error = %e, "resuming after a restart failed");
            }
        });
        Ok(())
    }

    /// Picks the rollout up at `step` (`running`: it had started), saying
    /// so in the thread.
    async fn resume_at(&self, p: Proposal, step: Step, running: bool) -> Result<(), EngineError> {
        match step {
            Step::Rollback => self.resume_rollback(p).await,
            Step::Plan => Ok(()),
            Step::Report if p.drill || !running => self.run_steps(p, step, None).await,
            _ => {
                let resumed = match step {
                    Step::BeforeHooks => ResumeStep::BeforeHooks,
                    Step::AfterHooks => ResumeStep::AfterHooks,
                    Step::Verify => ResumeStep::Verify,
                    _ => ResumeStep::Report,
                };
                let p = self.note_resumed(&p, resumed).await?;
                self.run_steps(p, step, Some(resumed)).await
            }
        }
    }

    /// An interrupted rollback step: the workload says whether the patch
    /// went out, so it is sent at most once in all.
    async fn resume_rollback(&self, p: Proposal) -> Result<(), EngineError> {
        let service = self.service(&p.service)?.clone();
        let target = match self.execution_target(&p, &service) {
            Ok(t) => t,
            // A drill whose simulator went with the old process.
            Err(e) => {
                let p = self.conclude(&p, Err(e), Some(Step::Rollback)).await?;
                return self.always_after_hooks(p).await;
            }
        };
        let standing = self.inner.ports.executor.standing(&target, &p.plan).await;
        let resumed = match standing {
            Ok(Standing::NotApplied) => ResumeStep::Apply,
            Ok(Standing::Applied) => ResumeStep::Follow,
            Ok(Standing::Moved { reason }) => {
                let p = self
                    .conclude(
                        &p,
                        Ok(ExecOutcome::Superseded { reason }),
                        Some(Step::Rollback),
                    )
                    .await?;
                return self.always_after_hooks(p).await;
            }
            Ok(Standing::Unknown) => {
                let e = ExecError::new(
                    crate::ports::ExecErrorKind::Interrupted,
                    "the executor cannot tell whether the plan was applied",
                );
                let p = self.conclude(&p, Err(e), Some(Step::Rollback)).await?;
                return self.always_after_hooks(p).await;
            }
            Err(e) => {
                // The executor's own words say why it could not read the
                // workload; the catalogue says what the restart means.
                let e = ExecError::new(crate::ports::ExecErrorKind::Interrupted, e.message);
                let p = self.conclude(&p, Err(e), Some(Step::Rollback)).await?;
                return self.always_after_hooks(p).await;
            }
        };
        let p = self.note_resumed(&p, resumed).await?;
        self.run_steps(p, Step::Rollback, Some(resumed)).await
    }

    /// Records where work resumed and says so in the thread.
    async fn note_resumed(&self, p: &Proposal, step: ResumeStep) -> Result<Proposal, EngineError> {
        let p = self
            .inner
            .store
            .append(&p.id, self.now(), vec![EventKind::Resumed { step }])?;
        self.inner.store.flush().await?;
        self.post_thread(&p, ThreadNote::Resumed { step }).await?;
        Ok(p)
    }
}

/// The event ending `step`.
fn step_finished(step: Step, ok: bool, detail: &str) -> EventKind {
    EventKind::StepFinished {
        step,
        ok,
        detail: detail.to_string(),
    }
}

/// The progress of one rollout in chat: the thread message being edited,
/// when it was last changed, and a line held back by throttling.
struct ProgressStream {
    interval: chrono::Duration,
    message: Option<MessageRef>,
    last_shown: Option<DateTime<Utc>>,
    pending: Option<ThreadNote>,
}

impl ProgressStream {
    fn new(interval: std::time::Duration) -> Self {
        Self {
            interval: crate::config::to_chrono(interval),
            message: None,
            last_shown: None,
            pending: None,
        }
    }
}
