//! The HTTP server: health, readiness, the read API, `/metrics`, and the
//! alert webhooks ([`webhooks`]). The Slack routes (`/slack/commands`,
//! `/slack/events`, `/slack/interactions`) come from
//! [`crate::chat::slack::inbound::router`] and are merged in by
//! [`crate::app::serve`] when `[slack]` is configured.

pub mod probes;
pub mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::domain::{Proposal, ProposalId, TimelineEvent};
use crate::engine::Engine;
use crate::metrics::Metrics;
use webhooks::{BodyLimit, Faults, Webhooks};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    /// Set once configuration is loaded and every adapter has started.
    pub ready: Arc<AtomicBool>,
    /// Each chat platform's connection, reported by `/readyz`.
    pub chat: Arc<ChatStatus>,
    /// Alert webhook sources, their credentials and the alert routes.
    pub webhooks: Arc<Webhooks>,
    /// Counters served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Test-only fault injection; inert unless a test arms it.
    #[doc(hidden)]
    pub faults: Arc<Faults>,
    /// `server.api_token`: required on the read API and `/metrics` when set.
    pub api_token: Option<Arc<str>>,
    /// The rollback targets whose reachability `/readyz` reports.
    pub targets: Arc<probes::TargetProbes>,
}

impl AppState {
    /// State with alert webhooks disabled and the engine's metrics; set
    /// `webhooks` to enable them.
    pub fn new(engine: Engine, ready: Arc<AtomicBool>) -> Self {
        Self {
            metrics: engine.metrics().clone(),
            engine,
            ready,
            chat: Arc::new(ChatStatus::default()),
            webhooks: Arc::new(Webhooks::disabled()),
            faults: Arc::new(Faults::default()),
            api_token: None,
            targets: Arc::new(probes::TargetProbes::default()),
        }
    }
}

/// How far a chat platform's adapter has got connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatState {
    /// Still learning who the bot is (or reading what it needs) and
    /// retrying while the platform does not answer; alerts are accepted and
    /// messages wait in the outbox.
    Connecting,
    Connected,
}

/// Every configured chat platform's [`ChatState`], for `/readyz`.
#[derive(Debug, Default)]
pub struct ChatStatus {
    /// A std Mutex: never held across an await.
    states: std::sync::Mutex<std::collections::BTreeMap<String, ChatState>>,
}

impl ChatStatus {
    pub fn set(&self, platform: &str, state: ChatState) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.insert(platform.to_string(), state);
    }

    /// The state of `platform`, when it is configured.
    pub fn get(&self, platform: &str) -> Option<ChatState> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.get(platform).copied()
    }

    fn snapshot(&self) -> std::collections::BTreeMap<String, ChatState> {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The one error type of the HTTP layer: client errors are returned as they
/// are, server errors are logged once and shown as a short generic line.
#[derive(Debug)]
pub enum AppError {
    Client { status: StatusCode, message: String },
    Internal(String),
}

impl AppError {
    pub fn client(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Client {
            status,
            message: message.into(),
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<crate::engine::EngineError> for AppError {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError as E;
        match e {
            E::NotFound(_) => Self::client(StatusCode::NOT_FOUND, e.to_string()),
            E::Store(_) | E::Report(_) | E::AlertNotHandled(_) => Self::Internal(e.to_string()),
            other => Self::client(StatusCode::CONFLICT, other.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AppError::Client { status, message } => (status, message),
            AppError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the rollbot logs".to_string(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

/// A proposal with its timeline, as the API returns it.
#[derive(Serialize)]
pub struct ProposalWithTimeline {
    #[serde(flatten)]
    pub proposal: Proposal,
    pub timeline: Vec<TimelineEvent>,
}

/// Builds the router with every route; `body_limit` caps request bodies.
pub fn router(state: AppState, body_limit: usize) -> Router {
    // What reads proposals or counters; behind the API token when one is set.
    let guarded = Router::new()
        .route("/api/v1/proposals", get(list_proposals))
        .route("/api/v1/proposals/{id}", get(get_proposal))
        .route("/api/v1/proposals/{id}/report", get(get_report))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .merge(webhooks::routes())
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(Extension(BodyLimit(body_limit)))
        .with_state(state)
}

/// Serves `router` on an already-bound listener until `shutdown` resolves,
/// so `main` and tests start the server the same way.
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready means rollbot can accept alerts: configuration loaded and the
/// store answering. A chat platform that is still connecting does not make
/// it unready — alerts are still taken and their messages wait in the
/// outbox — so Kubernetes keeps routing webhooks to it during a chat
/// outage; the body says how each platform is doing, e.g.
/// `{"status":"ready","chat":{"slack":"connecting"}}`. Likewise a rollback
/// target that cannot be reached (a Docker endpoint) is reported under
/// `targets` — `{"docker unix:///var/run/docker.sock": "unreachable: …"}` —
/// without making rollbot unready (see [`probes`]).
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    if !state.ready.load(Ordering::SeqCst) {
        return Err(AppError::client(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting up: configuration or adapters not ready yet",
        ));
    }
    state.engine.store().ping().map_err(|e| {
        AppError::client(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store not available: {e}"),
        )
    })?;
    let mut body = serde_json::json!({ "status": "ready", "chat": state.chat.snapshot() });
    if !state.targets.is_empty() {
        body["targets"] = serde_json::json!(state.targets.check().await);
    }
    Ok(Json(body))
}

async fn metrics(State(state): State<AppState>) -> Response {
    if state.metrics.rebuilding() {
        // Counters that start low and jump when the rebuild ends would
        // read as a burst of incidents; a failed scrape reads as what it is.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            "rebuilding the rollback metrics from the stored timelines; scrape again in a moment\n",
        )
            .into_response();
    }
    // Gauges of what is queued now, read at the scrape.
    if let Err(e) = state
        .metrics
        .read_outboxes(state.engine.store(), chrono::Utc::now())
    {
        tracing::warn!(error = %e, "cannot read the outboxes for /metrics");
    }
    (
        [(axum::http::header::CONTENT_TYPE, Metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

/// 401 unless the request carries `Authorization: Bearer <api_token>`
/// (compared in constant time), when `server.api_token` is set.
async fn require_token(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = &state.api_token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    use subtle::ConstantTimeEq;
    if given.as_bytes().ct_eq(token.as_bytes()).into() {
        return next.run(request).await;
    }
    let mut r = AppError::client(
        StatusCode::UNAUTHORIZED,
        "this endpoint needs `Authorization: Bearer <token>` with the token configured as server.api_token",
    )
    .into_response();
    r.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Proposals per page when `limit` is not given, and the most one page holds.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;

/// `GET /api/v1/proposals` query: `limit`, `cursor`, `state`, `service`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    state: Option<String>,
    service: Option<String>,
}

/// One page of proposals, newest first, as a JSON array. When there are
/// more, a `Link: <…>; rel="next"` header (RFC 8288, as GitHub's API does)
/// names the next page's URL; its `cursor` is opaque.
async fn list_proposals(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let Query(q) = query.map_err(|e| {
        AppError::client(
            StatusCode::BAD_REQUEST,
            format!("{e}; the query takes limit, cursor, state and service"),
        )
    })?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(AppError::client(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let wanted_state = match &q.state {
        None => None,
        Some(s) => Some(
            crate::domain::State::ALL
                .into_iter()
                .find(|st| st.as_str() == s)
                .ok_or_else(|| {
                    let known: Vec<_> = crate::domain::State::ALL
                        .iter()
                        .map(|st| st.as_str())
                        .collect();
                    AppError::client(
                        StatusCode::BAD_REQUEST,
                        format!("unknown state {s:?}; use one of {}", known.join(", ")),
                    )
                })?,
        ),
    };
    let service = match &q.service {
        None => None,
        Some(s) => Some(crate::domain::ServiceName::parse(s).map_err(|e| {
            AppError::client(StatusCode::BAD_REQUEST, format!("service {s:?}: {e}"))
        })?),
    };
    let page = state
        .engine
        .store()
        .page(&crate::store::PageQuery {
            state: wanted_state,
            service,
            cursor: q.cursor.clone(),
            limit,
        })
        .map_err(|e| match e {
            crate::store::StoreError::Corrupt {
                tree: "proposals_by_time",
                ..
            } => AppError::client(StatusCode::BAD_REQUEST, format!("cursor: {e}")),
            other => other.into(),
        })?;
    let mut response = Json(page.items).into_response();
    if let Some(next) = page.next {
        let mut url = format!("/api/v1/proposals?limit={limit}&cursor={next}");
        if let Some(s) = &q.state {
            url.push_str(&format!("&state={s}"));
        }
        if let Some(s) = &q.service {
            url.push_str(&format!("&service={s}"));
        }
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("<{url}>; rel=\"next\"")) {
            response.headers_mut().insert(axum::http::header::LINK, v);
        }
    }
    Ok(response)
}

async fn get_proposal(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ProposalWithTimeline>, AppError> {
    let id = ProposalId::parse(&id)
        .map_err(|e| AppError::client(StatusCode::BAD_REQUEST, e.to_string()))?;
    let proposal = state.engine.get(&id)?;
    let timeline = state.engine.store().timeline(&id)?;
    Ok(Json(ProposalWithTimeline { proposal, timeline }))
}

/// Query of the report route: `?locale=zh`; the proposal's locale otherwise.
#[derive(serde::Deserialize)]
pub struct ReportQuery {
    locale: Option<String>,
}

/// The draft incident report as Markdown (`text/markdown`), drafted now
/// from the stored timeline.
async fn get_report(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, AppError> {
    let id = ProposalId::parse(&id)
        .map_err(|e| AppError::client(StatusCode::BAD_REQUEST, e.to_string()))?;
    let locale = match q.locale {
        Some(l) if crate::config::LOCALES.contains(&l.as_str()) => l,
        Some(l) => {
            return Err(AppError::client(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown locale {l:?}; use one of {}",
                    crate::config::LOCALES.join(", ")
                ),
            ));
        }
        None => state.engine.get(&id)?.locale,
    };
    let draft = state.engine.report(&id, &locale).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/markdown; charset=utf-8",
        )],
        draft.markdown,
    )
        .into_response())
}
