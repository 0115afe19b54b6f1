//! Alert ingestion: turning webhook deliveries into normalized
//! [`AlertEvent`]s, authenticating them, and routing them to services.
//!
//! Everything here is pure — no I/O, no async, no clock — so the HTTP layer
//! and the engine wire it up, and tests exercise it directly.
//!
//! # Layout
//!
//! - [`event`]: the normalized model ([`AlertEvent`], [`AlertBatch`],
//!   [`IdempotencyKey`]) and the Prometheus label-set fingerprint.
//! - [`alertmanager`], [`grafana`], [`pagerduty`], [`generic`]: one parser
//!   per source; each returns a [`PayloadError`] that names the JSON path of
//!   the offending field. Receivers ignore unknown fields.
//! - [`auth`]: bearer/basic tokens and the Grafana and PagerDuty HMAC
//!   signatures, with constant-time comparisons.
//! - [`severity`]: folding `critical`/`P1`/`SEV-2`/`warning`… into [`Severity`].
//!
//! The generic payload shape is documented in [`generic`].

pub mod alertmanager;
pub mod auth;
pub mod event;
pub mod generic;
pub mod grafana;
pub mod pagerduty;
mod payload;
pub mod severity;

pub use alertmanager::parse_alertmanager;
pub use auth::{
    AuthError, AuthFailure, GrafanaSigning, verify_basic, verify_bearer, verify_grafana_signature,
    verify_pagerduty_signature,
};
pub use event::{
    AlertBatch, AlertEvent, AlertLinks, AlertSource, AlertStatus, IdempotencyKey, NewAlert,
    label_set_fingerprint,
};
pub use generic::parse_generic;
pub use grafana::parse_grafana;
pub use pagerduty::{IgnoredEvent, PagerDutyDelivery, parse_pagerduty};
pub use payload::PayloadError;
pub use severity::{Severity, UnknownSeverity};
