//! When each service's scheduled drill last ran, so that a restart neither
//! repeats a drill nor loses one.

use super::*;

/// The tree of drill schedule marks: service → [`DrillMark`].
const TREE: &str = "drill_schedule";

/// The scheduled time a service's drill schedule has been carried out to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillMark {
    /// The latest scheduled time dealt with (a drill opened for it, or the
    /// moment the schedule was first seen, which opens none).
    pub slot: DateTime<Utc>,
    /// The drill opened for `slot`, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<ProposalId>,
}

impl Store {
    /// The mark of `service`'s drill schedule, if it was ever seen.
    ///
    /// # Errors
    /// Storage failure or an unreadable mark.
    pub fn drill_mark(&self, service: &ServiceName) -> Result<Option<DrillMark>, StoreError> {
        let key = service.as_str().as_bytes();
        self.with(|t| match t.db.open_tree(TREE)?.get(key)? {
            Some(v) => decode(TREE, key, &v).map(Some),
            None => Ok(None),
        })
    }

    /// Records `mark` for `service` (durable after the next flush).
    ///
    /// # Errors
    /// Storage failure.
    pub fn set_drill_mark(
        &self,
        service: &ServiceName,
        mark: &DrillMark,
    ) -> Result<(), StoreError> {
        self.write(|t| {
            t.db.open_tree(TREE)?
                .insert(service.as_str().as_bytes(), encode(mark))
        })?;
        Ok(())
    }
}
