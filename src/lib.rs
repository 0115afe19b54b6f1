//! rollbot: a ChatOps bot for incident rollback with a two-person rule.

pub mod exec;
pub mod sim;
