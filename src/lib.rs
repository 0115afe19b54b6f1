//! rollbot: a ChatOps bot for incident rollback with a two-person rule.
//!
//! # Layout
//!
//! - [`domain`]: proposals, the state machine, the two-person rule, timeline
//!   events and the runbook decision rules. Pure: no I/O, no async.
//! - [`store`]: durable sled storage of proposals, timelines and dedup keys,
//!   with atomic state transitions.
//! - [`engine`]: the one place that decides. Takes inputs (alerts, commands,
//!   votes, ticks), applies domain rules, persists, then calls the ports.
//! - [`ports`]: the small traits the engine talks through (`Chat`,
//!   `Executor`, `Verifier`) and their in-memory doubles.
//! - [`alerts`]: alert webhook payloads (Alertmanager, Grafana, PagerDuty,
//!   generic) parsed into one `AlertEvent`, source authentication, routing.
//! - [`config`]: the TOML configuration, its loading and validation.
//! - [`app`]: wiring for `rollbot serve`, shared by `main` and tests.
//! - [`templates`]: every user-facing message, from `templates/<locale>/`.
//! - [`http`]: the axum server: health, readiness and the read API.
//! - [`chat`]: the `/rollback` command parser and the chat adapters (Slack).
//! - [`outbox`]: the durable, ordered queue every chat message goes through.

pub mod alerts;
pub mod app;
pub mod chat;
pub mod config;
pub mod domain;
pub mod engine;
pub mod http;
pub mod outbox;
pub mod ports;
pub mod store;
pub mod templates;
