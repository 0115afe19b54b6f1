//! Alert webhook routes: `POST /webhooks/alertmanager`,
//! `POST|PUT /webhooks/grafana`, `POST /webhooks/generic`,
//! `POST /webhooks/pagerduty`.
//!
//! Every route does the same four steps, in this order, so nothing from a
//! rejected request is ever stored:
//!
//! 1. read the raw body, at most `server.body_limit_bytes` (else 413);
//! 2. authenticate the request against the source's `[alerts.<source>]`
//!    table — bearer token or basic auth, and the HMAC signature where the
//!    source signs (else 401, the body is not looked at);
//! 3. parse it ([`crate::alerts`] parsers; 400 naming the JSON path, or
//!    listing the supported payload versions);
//! 4. hand each alert to [`Engine::alert`](crate::engine::Engine::alert),
//!    then flush the store before answering 200.
//!
//! A storage failure answers 500, which Alertmanager and PagerDuty retry;
//! the retry is safe because every alert's idempotency key is claimed only
//! once it was handled. A source without its table answers 404 saying how to
//! enable it.

use std::sync::atomic::{AtomicU32, Ordering};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use super::{AppError, AppState};
use crate::alerts::{
    self, AlertBatch, AlertSource, GrafanaSigning, PagerDutyDelivery, verify_basic, verify_bearer,
    verify_grafana_signature, verify_pagerduty_signature,
};
use crate::config::{AlertsConfig, BasicAuthConfig, Secret, WebhookAuthConfig};
use crate::engine::AlertOutcome;
use crate::metrics::DedupReason;

/// The request body limit in force (`server.body_limit_bytes`), for messages.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The webhook routes; merged into [`super::router`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks/alertmanager", post(alertmanager))
        .route("/webhooks/grafana", post(grafana).put(grafana))
        .route("/webhooks/generic", post(generic))
        .route("/webhooks/pagerduty", post(pagerduty))
}

/// `Authorization` a sender must present.
enum Credentials {
    Bearer(String),
    Basic { username: String, password: String },
}

impl Credentials {
    fn check(&self, headers: &HeaderMap) -> Result<(), alerts::AuthError> {
        let authorization = header_str(headers, header::AUTHORIZATION.as_str());
        match self {
            Credentials::Bearer(token) => verify_bearer(authorization, token),
            Credentials::Basic { username, password } => {
                verify_basic(authorization, username, password)
            }
        }
    }
}

struct GrafanaAuth {
    credentials: Option<Credentials>,
    hmac_secret: Option<String>,
    signature_header: String,
    timestamp_header: Option<String>,
}

/// Alert webhook settings with their secrets read: which sources are
/// enabled, how each authenticates, and the alert routes.
///
/// Deliberately not `Debug`: it holds secrets.
#[derive(Default)]
pub struct Webhooks {
    router: alerts::Router,
    alertmanager: Option<Credentials>,
    grafana: Option<GrafanaAuth>,
    generic: Option<Credentials>,
    pagerduty: Option<String>,
}

impl Webhooks {
    /// Every source disabled (no `[alerts]` section).
    #[must_use]
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Reads the secrets `config` names and builds the routes.
    ///
    /// # Errors
    /// A secret that cannot be read (unset variable, unreadable file) or an
    /// invalid route, each naming the config key. [`crate::config::Config::parse`]
    /// has already reported everything that can be checked without the
    /// environment.
    pub fn from_config(config: Option<&AlertsConfig>) -> Result<Self, String> {
        let Some(config) = config else {
            return Ok(Self::disabled());
        };
        let router = alerts::Router::new(&config.routes).map_err(|e| format!("alerts.{e}"))?;
        let credentials = |path: &str,
                           bearer: &Option<Secret>,
                           basic: &Option<BasicAuthConfig>|
         -> Result<Option<Credentials>, String> {
            Ok(match (bearer, basic) {
                (Some(token), _) => Some(Credentials::Bearer(
                    token.read(&format!("{path}.bearer_token"))?,
                )),
                (None, Some(basic)) => Some(Credentials::Basic {
                    username: basic.username.clone(),
                    password: basic
                        .password
                        .read(&format!("{path}.basic_auth.password"))?,
                }),
                (None, None) => None,
            })
        };
        let required = |path: &str, auth: &WebhookAuthConfig| {
            credentials(path, &auth.bearer_token, &auth.basic_auth)?
                .ok_or_else(|| format!("{path}: no credentials; set bearer_token or basic_auth"))
        };
        let alertmanager = config
            .alertmanager
            .as_ref()
            .map(|a| required("alerts.alertmanager", a))
            .transpose()?;
        let generic = config
            .generic
            .as_ref()
            .map(|a| required("alerts.generic", a))
            .transpose()?;
        let grafana = config
            .grafana
            .as_ref()
            .map(|g| -> Result<_, String> {
                Ok(GrafanaAuth {
                    credentials: credentials("alerts.grafana", &g.bearer_token, &g.basic_auth)?,
                    hmac_secret: g
                        .hmac_secret
                        .as_ref()
                        .map(|s| s.read("alerts.grafana.hmac_secret"))
                        .transpose()?,
                    signature_header: g
                        .signature_header
                        .clone()
                        .unwrap_or_else(|| alerts::auth::GRAFANA_SIGNATURE_HEADER.to_string()),
                    timestamp_header: g.timestamp_header.clone(),
                })
            })
            .transpose()?;
        let pagerduty = config
            .pagerduty
            .as_ref()
            .map(|p| p.signing_secret.read("alerts.pagerduty.signing_secret"))
            .transpose()?;
        Ok(Self {
            router,
            alertmanager,
            grafana,
            generic,
            pagerduty,
        })
    }
}

/// Test-only fault injection: makes webhook answers fail on purpose to
/// exercise senders' retries. Never set outside tests.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Faults {
    fail_after_processing: AtomicU32,
}

impl Faults {
    /// The next `n` webhook deliveries are processed normally, then answered
    /// 500 as if rollbot had crashed before replying.
    #[doc(hidden)]
    pub fn fail_next_deliveries(&self, n: u32) {
        self.fail_after_processing.store(n, Ordering::SeqCst);
    }

    fn take_failure(&self) -> bool {
        self.fail_after_processing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// What a 200 answer says.
#[derive(Serialize)]
struct Accepted {
    source: &'static str,
    alerts: usize,
    truncated_alerts: u64,
    outcomes: Vec<AlertOutcome>,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn disabled(source: AlertSource) -> AppError {
    AppError::client(
        StatusCode::NOT_FOUND,
        format!(
            "the {} webhook is not enabled; add an [alerts.{}] table with its credentials to the rollbot config",
            source.display_name(),
            source.as_str()
        ),
    )
}

fn unauthorized(e: &alerts::AuthError) -> AppError {
    AppError::client(StatusCode::UNAUTHORIZED, e.to_string())
}

fn body_error(rejection: &BytesRejection, limit: usize) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body is larger than {limit} bytes (server.body_limit_bytes); send smaller batches (Alertmanager: max_alerts) or raise the limit"
            ),
        )
    } else {
        AppError::client(
            rejection.status(),
            format!("cannot read the request body: {rejection}"),
        )
    }
}

fn bad_payload(e: &alerts::PayloadError) -> AppError {
    AppError::client(StatusCode::BAD_REQUEST, e.to_string())
}

/// The metrics label of an answer.
fn outcome_label(result: &Result<Response, AppError>) -> &'static str {
    match result {
        Ok(_) => "accepted",
        Err(AppError::Internal(_)) => "error",
        Err(AppError::Client { status, .. }) => match *status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::NOT_FOUND => "disabled",
            _ => "rejected",
        },
    }
}

/// Runs one request through `step` and records its outcome.
async fn answer(
    state: &AppState,
    source: AlertSource,
    step: impl std::future::Future<Output = Result<Response, AppError>>,
) -> Response {
    let span = tracing::info_span!("webhook", source = source.as_str());
    let result = tracing::Instrument::instrument(step, span).await;
    let result = match result {
        Ok(_) if state.faults.take_failure() => Err(AppError::Internal(
            "fault injected by a test after processing the delivery".into(),
        )),
        other => other,
    };
    state
        .metrics
        .webhook_request(source.as_str(), outcome_label(&result));
    result.into_response()
}

/// Step 4: every alert to the engine, then make it durable.
async fn ingest(state: &AppState, batch: AlertBatch) -> Result<Response, AppError> {
    let source = batch.source.as_str();
    let metrics = &state.metrics;
    metrics.alerts_received(source, batch.alerts.len() as u64);
    if batch.truncated_alerts > 0 {
        metrics.alerts_truncated(source, batch.truncated_alerts);
        tracing::warn!(
            truncated = batch.truncated_alerts,
            group = %batch.group_key,
            "the sender dropped alerts from this delivery (max_alerts); they are not seen by rollbot"
        );
    }
    let mut outcomes = Vec::with_capacity(batch.alerts.len());
    let mut failure = None;
    let results = state
        .engine
        .alerts(&batch.alerts, &state.webhooks.router)
        .await;
    for result in results {
        match result {
            Ok(outcome) => {
                match &outcome {
                    AlertOutcome::Unmatched => metrics.alert_unmatched(source),
                    AlertOutcome::Repeat => metrics.alert_deduplicated(source, DedupReason::Repeat),
                    AlertOutcome::Attached { service, .. } => {
                        metrics.alert_routed(source, service);
                        metrics.alert_deduplicated(source, DedupReason::Attached);
                    }
                    AlertOutcome::Proposed { service, .. }
                    | AlertOutcome::Pending { service, .. }
                    | AlertOutcome::NotProposed { service, .. }
                    | AlertOutcome::Resolved { service, .. }
                    | AlertOutcome::ClearedWhilePending { service }
                    | AlertOutcome::ResolvedUntracked { service } => {
                        metrics.alert_routed(source, service);
                    }
                }
                outcomes.push(outcome);
            }
            // Keep going: the other alerts are independent, and the failed
            // one is retried with the whole delivery.
            Err(e) => failure = Some(e),
        }
    }
    state.engine.store().flush().await?;
    if let Some(e) = failure {
        return Err(AppError::Internal(format!(
            "handling an alert failed, the sender should retry: {e}"
        )));
    }
    Ok(Json(Accepted {
        source,
        alerts: batch.alerts.len(),
        truncated_alerts: batch.truncated_alerts,
        outcomes,
    })
    .into_response())
}

async fn alertmanager(
    State(state): State<AppState>,
    Extension(BodyLimit(limit)): Extension<BodyLimit>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let source = AlertSource::Alertmanager;
    answer(&state, source, async {
        let body = body.map_err(|r| body_error(&r, limit))?;
        let creds = state
            .webhooks
            .alertmanager
            .as_ref()
            .ok_or_else(|| disabled(source))?;
        creds.check(&headers).map_err(|e| unauthorized(&e))?;
        let batch = alerts::parse_alertmanager(&body).map_err(|e| bad_payload(&e))?;
        ingest(&state, batch).await
    })
    .await
}

async fn grafana(
    State(state): State<AppState>,
    Extension(BodyLimit(limit)): Extension<BodyLimit>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let source = AlertSource::Grafana;
    answer(&state, source, async {
        let body = body.map_err(|r| body_error(&r, limit))?;
        let auth = state
            .webhooks
            .grafana
            .as_ref()
            .ok_or_else(|| disabled(source))?;
        if let Some(creds) = &auth.credentials {
            creds.check(&headers).map_err(|e| unauthorized(&e))?;
        }
        if let Some(secret) = &auth.hmac_secret {
            let signing = GrafanaSigning {
                signature_header: &auth.signature_header,
                timestamp_header: auth.timestamp_header.as_deref(),
            };
            let timestamp = auth
                .timestamp_header
                .as_deref()
                .and_then(|h| header_str(&headers, h));
            verify_grafana_signature(
                secret.as_bytes(),
                signing,
                header_str(&headers, &auth.signature_header),
                timestamp,
                &body,
            )
            .map_err(|e| unauthorized(&e))?;
        }
        let batch = alerts::parse_grafana(&body).map_err(|e| bad_payload(&e))?;
        ingest(&state, batch).await
    })
    .await
}

async fn generic(
    State(state): State<AppState>,
    Extension(BodyLimit(limit)): Extension<BodyLimit>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let source = AlertSource::Generic;
    answer(&state, source, async {
        let body = body.map_err(|r| body_error(&r, limit))?;
        let creds = state
            .webhooks
            .generic
            .as_ref()
            .ok_or_else(|| disabled(source))?;
        creds.check(&headers).map_err(|e| unauthorized(&e))?;
        let batch = alerts::parse_generic(&body, state.engine.current_time())
            .map_err(|e| bad_payload(&e))?;
        ingest(&state, batch).await
    })
    .await
}

async fn pagerduty(
    State(state): State<AppState>,
    Extension(BodyLimit(limit)): Extension<BodyLimit>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let source = AlertSource::PagerDuty;
    answer(&state, source, async {
        let body = body.map_err(|r| body_error(&r, limit))?;
        let secret = state
            .webhooks
            .pagerduty
            .as_ref()
            .ok_or_else(|| disabled(source))?;
        verify_pagerduty_signature(
            secret.as_bytes(),
            header_str(&headers, alerts::auth::PAGERDUTY_SIGNATURE_HEADER),
            &body,
        )
        .map_err(|e| unauthorized(&e))?;
        match alerts::parse_pagerduty(&body).map_err(|e| bad_payload(&e))? {
            PagerDutyDelivery::Alert(batch) => ingest(&state, batch).await,
            PagerDutyDelivery::Ignored(ignored) => {
                tracing::debug!(event = %ignored.event_type, "PagerDuty event ignored");
                Ok(Json(serde_json::json!({
                    "source": source.as_str(),
                    "ignored": ignored.event_type,
                }))
                .into_response())
            }
        }
    })
    .await
}
