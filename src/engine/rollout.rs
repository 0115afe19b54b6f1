//! The rollout of an approved proposal: execution, progress in chat,
//! verification, the resolved notice and the report, and resuming each of
//! them after a restart.

use super::*;

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
                    if let Err(e) = engine.run_execution(p).await {
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

    /// Stops the simulators of drills that are over (cancelled, expired,
    /// rejected, finished).
    pub(super) fn reap_drills(&self) {
        if let Some(drills) = self.drills() {
            let store = &self.inner.store;
            drills.reap(|id| store.get(id).ok().flatten().is_none_or(|p| !p.is_open()));
        }
    }

    /// What `p` runs against: the service's target, or for a drill only its
    /// own simulator. A drill whose simulator is gone fails; it never falls
    /// back to the service's real target.
    fn execution_target(&self, p: &Proposal, service: &Service) -> Result<Target, ExecError> {
        if !p.drill {
            return Ok(service.target.clone());
        }
        let url = self.drills().and_then(|d| d.url(&p.id)).ok_or_else(|| {
            ExecError::new(
                crate::ports::ExecErrorKind::Unsupported,
                format!(
                    "DRILL: this drill's simulator is no longer running (rollbot restarted?); nothing was changed. Start a new drill with `/rollback drill {}`",
                    p.service
                ),
            )
        })?;
        let workload = match &service.target {
            Target::Kubernetes(k) => k.clone(),
            Target::Drill(d) => d.workload.clone(),
        };
        Ok(Target::Drill(DrillTarget { url, workload }))
    }

    async fn run_execution(&self, p: Proposal) -> Result<(), EngineError> {
        self.drive_execution(p, false).await
    }

    /// The end of a drill's rollback: its checks would measure production,
    /// which the drill did not change, so they are not run; the report is
    /// drafted at once.
    async fn finish_drill(&self, p: Proposal) -> Result<(), EngineError> {
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
        self.post_report(&p).await?;
        Ok(())
    }

    /// The resolved notice of `p`, with the current value of its first
    /// verification check read from the timeline.
    pub(super) fn resolved_note(&self, p: &Proposal) -> Result<ThreadNote, EngineError> {
        let timeline = self.inner.store.timeline(&p.id)?;
        Ok(ThreadNote::Resolved {
            check: crate::report::first_check(&timeline),
        })
    }

    async fn run_verification(&self, p: Proposal) -> Result<(), EngineError> {
        let (tx, mut rx) = mpsc::channel::<CheckResult>(64);
        let verify = self.inner.ports.verifier.verify(&p.service, &p.plan, tx);
        tokio::pin!(verify);
        let verdict = loop {
            tokio::select! {
                biased;
                Some(check) = rx.recv() => self.record_check(&p.id, check)?,
                verdict = &mut verify => break verdict,
            }
        };
        while let Ok(check) = rx.try_recv() {
            self.record_check(&p.id, check)?;
        }
        let now = self.now();
        let p = match &verdict {
            Verdict::NotConfigured => {
                let (_, p) = self
                    .inner
                    .store
                    .update(&p.id, now, |p| {
                        p.no_checks = true;
                        Ok::<_, std::convert::Infallible>((
                            (),
                            vec![EventKind::Note {
                                text: "no verification checks are configured for this service"
                                    .into(),
                            }],
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
                    vec![EventKind::Note { text }],
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
                let p = self.finish(&p.id, now, to, vec![])?;
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
        // Exactly one of this and `alert_resolved` sees both "verification
        // over" and "resolved" (each reads the proposal its own atomic update
        // returned), so the report is posted once.
        if crate::report::report_due(&p) {
            self.post_report(&p).await?;
        }
        Ok(())
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
        crate::report::draft(templates, &p, &timeline, &evidence, locale)
            .map_err(|e| EngineError::Report(e.to_string()))
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

    /// Runs the rollback of `p` (with `follow_only`, only follows a rollout
    /// already applied), records how it ended, and goes on to verification.
    async fn drive_execution(&self, p: Proposal, follow_only: bool) -> Result<(), EngineError> {
        let service = self.service(&p.service)?.clone();
        let (tx, mut rx) = mpsc::channel::<String>(64);
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
        tokio::pin!(exec);
        let outcome = loop {
            tokio::select! {
                biased;
                Some(line) = rx.recv() => self.progress(&p.id, line, &mut stream).await?,
                outcome = &mut exec => break outcome,
            }
        };
        while let Ok(line) = rx.try_recv() {
            self.progress(&p.id, line, &mut stream).await?;
        }
        self.flush_progress(&p.id, &mut stream).await?;
        self.conclude_execution(&p, outcome).await
    }

    /// Records the end of an execution, tells the thread, and continues:
    /// verification after a rollback, the drill's end for a drill.
    async fn conclude_execution(
        &self,
        p: &Proposal,
        outcome: Result<ExecOutcome, ExecError>,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let (to, events, note) = match outcome {
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
        let p = self.finish(&p.id, now, to, events)?;
        self.post_thread(&p, note).await?;
        self.update_message(&p).await?;
        if to == State::RolledBack && p.drill {
            self.finish_drill(p).await?;
        } else if to == State::RolledBack {
            self.run_verification(p).await?;
        } else {
            self.reap_drills();
        }
        Ok(())
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
        tracing::info!(proposal = %p.id, %state, "resuming after a restart");
        let engine = self.clone();
        self.spawn(async move {
            let resumed = if p.state == State::Executing {
                engine.resume_execution(p).await
            } else {
                engine.resume_verification(p).await
            };
            if let Err(e) = resumed {
                tracing::error!(error = %e, "resuming after a restart failed");
            }
        });
        Ok(())
    }

    /// An interrupted rollback: the workload says whether the patch went
    /// out, so it is sent at most once in all.
    async fn resume_execution(&self, p: Proposal) -> Result<(), EngineError> {
        let service = self.service(&p.service)?.clone();
        let target = match self.execution_target(&p, &service) {
            Ok(t) => t,
            // A drill whose simulator went with the old process.
            Err(e) => return self.conclude_execution(&p, Err(e)).await,
        };
        let standing = self.inner.ports.executor.standing(&target, &p.plan).await;
        match standing {
            Ok(Standing::NotApplied) => {
                let p = self.note_resumed(&p, ResumeStep::Apply).await?;
                self.drive_execution(p, false).await
            }
            Ok(Standing::Applied) => {
                let p = self.note_resumed(&p, ResumeStep::Follow).await?;
                self.drive_execution(p, true).await
            }
            Ok(Standing::Moved { reason }) => {
                self.conclude_execution(&p, Ok(ExecOutcome::Superseded { reason }))
                    .await
            }
            Ok(Standing::Unknown) => {
                let e = ExecError::new(
                    crate::ports::ExecErrorKind::Other,
                    "rollbot restarted while this rollback was in progress and cannot tell whether it was applied; check the workload (e.g. `kubectl rollout status`) and propose again if needed",
                );
                self.conclude_execution(&p, Err(e)).await
            }
            Err(e) => {
                let e = ExecError::new(
                    e.kind,
                    format!(
                        "rollbot restarted while this rollback was in progress and could not read the workload to resume it ({}); check the workload (e.g. `kubectl rollout status`) and propose again if needed",
                        e.message
                    ),
                );
                self.conclude_execution(&p, Err(e)).await
            }
        }
    }

    /// An interrupted verification starts again; a drill (which runs no
    /// checks) is finished.
    async fn resume_verification(&self, p: Proposal) -> Result<(), EngineError> {
        if p.drill {
            return self.finish_drill(p).await;
        }
        let p = self.note_resumed(&p, ResumeStep::Verify).await?;
        self.run_verification(p).await
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
            interval: chrono::Duration::from_std(interval)
                .unwrap_or_else(|_| chrono::Duration::seconds(5)),
            message: None,
            last_shown: None,
            pending: None,
        }
    }
}
