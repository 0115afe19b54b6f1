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
//! - [`routing`]: Alertmanager-style label matchers → target service, with
//!   severity filter and minimum firing duration. First match wins.
//! - [`Severity`] is the domain's ([`crate::domain::decision::Severity`]):
//!   one type folds `critical`/`P1`/`SEV-2`/`warning`… for routing and the
//!   decision rules alike.
//!
//! # Wiring a webhook route
//!
//! 1. Limit the body size; keep the raw bytes.
//! 2. Authenticate: [`verify_bearer`] / [`verify_basic`] (Alertmanager,
//!    generic), [`verify_grafana_signature`], [`verify_pagerduty_signature`].
//!    Map [`AuthError::kind`] to a status code.
//! 3. Parse: [`parse_alertmanager`], [`parse_grafana`], [`parse_pagerduty`]
//!    (answer [`PagerDutyDelivery::Ignored`] with 2xx), [`parse_generic`]
//!    (pass the arrival time). A [`PayloadError`] is a 400 whose `Display` is
//!    safe to return.
//! 4. Hand the events to [`crate::engine::Engine::alerts`]: it routes each
//!    with [`Router::route`] at the engine's time, drops repeats by
//!    [`AlertEvent::idempotency_key`] (retries, `group_interval` re-sends)
//!    and proposes, attaches, parks or resolves. `src/http/webhooks.rs`
//!    is the wiring.
//!
//! ```
//! use rollbot::alerts::{parse_alertmanager, RouteConfig, RouteDecision, Router};
//!
//! let body = br#"{"version":"4","status":"firing","groupKey":"{}:{}","alerts":[
//!   {"status":"firing","labels":{"alertname":"PaymentSuccessRateLow","service":"payment-api"},
//!    "startsAt":"2025-01-15T14:30:00Z","endsAt":"0001-01-01T00:00:00Z"}]}"#;
//! let batch = parse_alertmanager(body)?;
//! let router = Router::new(&[RouteConfig {
//!     matchers: vec!["service=~payment-.*".into()],
//!     service: "payment-api".into(),
//!     auto_propose: true,
//!     severities: None,
//!     for_duration: Some("5m".into()),
//! }])?;
//! let now = "2025-01-15T14:36:00Z".parse()?;
//! assert!(matches!(
//!     router.route(&batch.alerts[0], now),
//!     RouteDecision::Matched { ready: true, .. }
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The generic payload shape is documented in [`generic`].

pub mod alertmanager;
pub mod auth;
pub mod event;
pub mod generic;
pub mod grafana;
pub mod pagerduty;
mod payload;
pub mod routing;

pub use crate::domain::decision::{Severity, UnknownSeverity};
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
pub use routing::{
    MatchOp, Matcher, MatcherError, RouteConfig, RouteConfigError, RouteDecision, Router,
    parse_duration,
};
