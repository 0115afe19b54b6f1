//! Scheduled rollback drills (`[services.NAME.drill]`), run from the tick.
//!
//! At each scheduled time the engine opens the same DRILL proposal as
//! `/rollback drill NAME` — a read-only copy of the workload, nothing real
//! touched — and pings the people the schedule names in its thread. Time
//! to decision and to mitigate are then measured from its timeline like
//! any proposal's; an unanswered drill expires like any proposal.
//!
//! Exactly once per scheduled time, across restarts:
//! - the store keeps, per service, the scheduled time last dealt with
//!   ([`DrillMark`]); a schedule seen for the first time starts from now,
//!   so turning one on does not fire for times already past;
//! - the drill is opened claiming a deduplication key for its scheduled
//!   time in the same write that stores it, so a restart between opening
//!   it and moving the mark cannot open it twice;
//! - scheduled times missed while rollbot was down are not replayed: the
//!   latest one is run once, and its thread says it is late.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{DrillRequest, Engine, EngineError};
use crate::config::DrillSchedule;
use crate::domain::{ProposalId, ServiceName, UserId};
use crate::ports::ThreadNote;
use crate::store::{DrillMark, StoreError};

/// A drill that starts this long after its scheduled time (rollbot was
/// down, or busy) says it is late.
pub const LATE_AFTER: chrono::Duration = chrono::Duration::minutes(10);

/// Who proposes scheduled drills (never an approver).
pub const SCHEDULER: &str = "system:drill-schedule";

/// What a tick did about one service's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleOutcome {
    /// The drill for `slot` was opened.
    Opened {
        service: ServiceName,
        id: ProposalId,
        slot: DateTime<Utc>,
        late: bool,
    },
    /// `slot` came but no drill was opened (one was already running, or
    /// the copy could not be made); the next scheduled time will try again.
    Skipped {
        service: ServiceName,
        slot: DateTime<Utc>,
        why: String,
    },
}

impl Engine {
    /// Sets the services' drill schedules (replacing earlier ones).
    pub fn set_drill_schedules(&self, schedules: BTreeMap<ServiceName, DrillSchedule>) {
        *self
            .inner
            .schedules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = schedules;
    }

    /// Opens the drills whose scheduled time has come. Called by the tick.
    ///
    /// # Errors
    /// Storage failure (the schedule is tried again on the next tick).
    pub async fn run_drill_schedules(&self) -> Result<Vec<ScheduleOutcome>, EngineError> {
        let schedules = self
            .inner
            .schedules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut out = Vec::new();
        for (service, schedule) in schedules {
            if let Some(o) = self.run_schedule(&service, &schedule).await? {
                out.push(o);
            }
        }
        Ok(out)
    }

    async fn run_schedule(
        &self,
        service: &ServiceName,
        schedule: &DrillSchedule,
    ) -> Result<Option<ScheduleOutcome>, EngineError> {
        let store = &self.inner.store;
        let now = self.now();
        let Some(mark) = store.drill_mark(service)? else {
            // First sight of this schedule: start counting from now.
            store.set_drill_mark(
                service,
                &DrillMark {
                    slot: now,
                    drill: None,
                },
            )?;
            store.flush().await?;
            return Ok(None);
        };
        let tz = schedule.timezone;
        let Ok(next) = schedule
            .cron
            .find_next_occurrence(&mark.slot.with_timezone(&tz), false)
        else {
            return Ok(None);
        };
        let next = next.with_timezone(&Utc);
        if next > now {
            return Ok(None);
        }
        // The latest scheduled time that has come: earlier ones missed
        // while rollbot was down are not replayed.
        let slot = schedule
            .cron
            .find_previous_occurrence(&now.with_timezone(&tz), true)
            .map_or(next, |s| s.with_timezone(&Utc))
            .max(next);
        let late = slot != next || now - slot > LATE_AFTER;
        let locale = self.service(service)?.locale.clone();
        let reason = scheduled_reason(&locale, schedule);
        let claim = format!("drill-schedule/{service}/{}", slot.to_rfc3339());
        let opened = self
            .drill_claiming(
                DrillRequest {
                    service: service.clone(),
                    proposer: UserId::parse(SCHEDULER).expect("the scheduler's id is valid"),
                    reason,
                    channel: None,
                },
                std::slice::from_ref(&claim),
            )
            .await;
        let (drill, outcome) = match opened {
            Ok(p) => {
                tracing::info!(proposal = %p.id, %service, %slot, late, "scheduled drill opened");
                let note = ThreadNote::ScheduledDrill {
                    schedule: schedule.schedule.clone(),
                    timezone: tz.name().to_string(),
                    slot,
                    late,
                    notify: schedule.notify.clone(),
                };
                self.post_thread(&p, note).await?;
                (
                    Some(p.id.clone()),
                    ScheduleOutcome::Opened {
                        service: service.clone(),
                        id: p.id,
                        slot,
                        late,
                    },
                )
            }
            // Opened before a restart that came before the mark moved.
            Err(EngineError::Store(StoreError::AlreadyClaimed { seen, .. })) => (
                ProposalId::parse(&seen.value).ok(),
                ScheduleOutcome::Skipped {
                    service: service.clone(),
                    slot,
                    why: format!("already opened as {}", seen.value),
                },
            ),
            // A drill already running (the one opened for this time before
            // a restart, or one a person started) stands for this one.
            Err(EngineError::DrillOpen { existing, .. }) => (
                Some(existing.clone()),
                ScheduleOutcome::Skipped {
                    service: service.clone(),
                    slot,
                    why: format!("{service} already has a drill in progress, {existing}"),
                },
            ),
            Err(EngineError::Store(e)) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(%service, %slot, error = %e, "scheduled drill not opened; the next scheduled time tries again");
                (
                    None,
                    ScheduleOutcome::Skipped {
                        service: service.clone(),
                        slot,
                        why: e.to_string(),
                    },
                )
            }
        };
        store.set_drill_mark(service, &DrillMark { slot, drill })?;
        store.flush().await?;
        Ok(Some(outcome))
    }
}

/// The proposal's reason, in the service's locale.
fn scheduled_reason(locale: &str, schedule: &DrillSchedule) -> String {
    let args = serde_json::json!({
        "schedule": schedule.schedule,
        "timezone": schedule.timezone.name(),
    });
    crate::report::shared_templates()
        .ok()
        .and_then(|t| t.text(locale, "schedule.reason", &args).ok())
        // The templates are checked at start-up; this is only a fallback.
        .unwrap_or_else(|| format!("scheduled drill ({})", schedule.schedule))
}
