//! Executors that carry out an approved rollback against the outside world.

pub mod kubernetes;
