//! rollbot: a ChatOps bot for incident rollback with a two-person rule.
//!
//! # Layout
//!
//! The core:
//! - [`domain`]: proposals, the state machine, the two-person rule, timeline
//!   events, the rollout's steps, the runbook decision rules and the
//!   measures read off timelines (time to decision, mitigate, resolve).
//!   Pure: no I/O, no async.
//! - [`store`]: durable sled storage of proposals, timelines, dedup keys,
//!   message bindings, parked alerts, acknowledged inputs and the outbox
//!   queues, with atomic state transitions; the only module that touches
//!   sled, through one owner so it cannot deadlock.
//! - [`engine`]: the one place that decides. Takes inputs (alerts, commands,
//!   votes, ticks), applies domain rules, persists, then calls the ports;
//!   runs an approved rollback as a pipeline of recorded, resumable steps
//!   (before-hooks, rollback, after-hooks, verify, report); opens scheduled
//!   drills from its tick.
//! - [`ports`]: the small traits the engine talks through (`Chat`,
//!   `Executor`, `Hook`, `Verifier`) and their in-memory doubles.
//! - [`config`]: the TOML configuration, one module per section, each
//!   validating itself; durations parsed once, one default per key.
//! - [`tasks`]: the one tracker of background tasks (wait for idle, panics).
//!
//! Inputs and outputs:
//! - [`alerts`]: alert webhook payloads (Alertmanager, Grafana, PagerDuty,
//!   generic) parsed into one `AlertEvent`, source authentication, routing.
//! - [`http`]: the axum server: health, readiness, the read API, alert
//!   webhooks (`/webhooks/…`) and `/metrics`.
//! - [`metrics`]: the Prometheus metrics behind `/metrics`: webhook
//!   counters, and the proposal metrics derived from the stored timelines
//!   (rebuilt on start), outbox backlog, executor errors.
//! - [`chat`]: the platform-neutral side of chat: the `/rollback` parser,
//!   the one handler of commands and votes for every platform, `/rollback
//!   stats`, the
//!   `ChatRouter` that sends each message to its channel's platform, the
//!   user/internal error split; and the adapters (Slack, Discord, the
//!   console used by the demo and drills, none), which only decode and
//!   render.
//! - [`outbox`]: the durable, ordered queue every chat message goes through.
//! - [`exec`]: targets and executors; the router picks the executor by the
//!   target's kind; `kubernetes` plans and runs kubectl-identical
//!   rollbacks with kube-rs, finds a workload's Argo CD or Flux owner
//!   (warns, pauses it before the rollback, resumes it on
//!   `/rollback resume-sync`), and holds drills: a read-only copy of a
//!   service's workload and history in an in-process simulator; `swarm`
//!   rolls Docker Swarm services back as `docker service rollback` does,
//!   through the Docker Engine API (bollard); `command` runs a service's
//!   own plan and rollback programs; `helm` rolls back a Helm release with
//!   the `helm` program.
//! - [`runbook`]: the runbook steps around a rollback from config:
//!   pre-checks at plan time, hooks before and after it (commands in their
//!   own process group, HTTP calls), `{variable}` templates.
//! - [`verify`]: the `Verifier` over HTTP health checks and Prometheus queries.
//! - [`report`]: rendering of messages, the resolved notice, the draft
//!   incident report and its chart.
//! - [`templates`]: every user-facing message: layouts per platform
//!   (`templates/{slack,text,markdown}/`), wording per locale (`templates/locales/`).
//!
//! Around them:
//! - [`app`]: wiring for `rollbot serve` (and the demo), shared by `main`
//!   and tests.
//! - [`sim`]: a kubectl-compatible simulated Kubernetes API server with a
//!   deployment controller and the GitOps controllers' self-heal, for
//!   drills, the demo and tests.
//! - [`drill_cli`]: `rollbot drill`, a rehearsal run from the command line
//!   (the drills themselves live behind the Kubernetes executor).
//! - [`demo`]: `rollbot demo`, the reference incident end to end on the
//!   simulator with a console chat.
//! - `fuzzing` (hidden): one entry function per parser of outside input,
//!   shared by the `fuzz/` targets and `tests/fuzz_corpus.rs`.

pub mod alerts;
pub mod app;
pub mod chat;
pub mod config;
pub mod demo;
pub mod domain;
pub mod drill_cli;
pub mod engine;
pub mod exec;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod ports;
pub mod report;
pub mod runbook;
pub mod sim;
pub mod store;
pub mod tasks;
pub mod templates;
pub mod verify;
