//! `/rollback resume-sync SERVICE`: undoes what the GitOps pause step left
//! in place on purpose (see [`crate::exec::kubernetes::gitops`]).
//!
//! Any one authorised approver of the service may resume: resuming only
//! gives control back to git, the state everyone already agreed on, and
//! the rollback it followed was itself approved under the two-person rule
//! (SECURITY.md says more).

use super::{Engine, EngineError};
use crate::domain::{EventKind, ServiceName, UserId};

impl Engine {
    /// Resumes the GitOps sync the pause step of `service` left paused,
    /// restoring exactly what it saved; returns what each step restored.
    /// The service's latest proposal records who resumed it, for the
    /// incident report.
    ///
    /// # Errors
    /// [`EngineError::UnknownService`]; [`EngineError::ResumeNotAllowed`]
    /// unless `by` may approve the service's rollbacks;
    /// [`EngineError::NothingToResume`] when the service pauses nothing
    /// (its policy is not `gitops = "pause"`); [`EngineError::ResumeSync`]
    /// when the owner cannot be restored.
    pub async fn resume_sync(
        &self,
        service: &ServiceName,
        by: &UserId,
    ) -> Result<Vec<String>, EngineError> {
        let policy = self.policy(service)?;
        if !policy.approvers.contains(by) || policy.bots.contains(by) {
            return Err(EngineError::ResumeNotAllowed {
                service: service.clone(),
            });
        }
        let mut done = Vec::new();
        for hook in self.hooks_of(service).before {
            match hook.resume(service).await {
                None => {}
                Some(Ok(detail)) => done.push(detail),
                Some(Err(source)) => {
                    return Err(EngineError::ResumeSync {
                        service: service.clone(),
                        source,
                    });
                }
            }
        }
        if done.is_empty() {
            return Err(EngineError::NothingToResume {
                service: service.clone(),
            });
        }
        tracing::info!(%service, user = %by, resumed = ?done, "GitOps sync resumed");
        let latest = self
            .inner
            .store
            .list()?
            .into_iter()
            .filter(|p| &p.service == service && !p.drill)
            .max_by_key(|p| p.created_at);
        if let Some(p) = latest {
            let text = format!("{by} resumed the GitOps sync: {}", done.join("; "));
            self.inner
                .store
                .append(&p.id, self.now(), vec![EventKind::Note { text }])?;
            self.inner.store.flush().await?;
        }
        Ok(done)
    }
}
