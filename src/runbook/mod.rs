//! The runbook around a rollback, built from `[services.NAME.runbook]`:
//! pre-checks run when the plan is made, hooks before and after the
//! rollback once it is approved (see [`crate::domain::pipeline`]).
//!
//! - [`template`]: the `{variable}` templates of arguments, URLs and bodies.
//! - [`process`]: running one program in its own process group, killed
//!   with its children on timeout or shutdown.

pub mod process;
pub mod template;
