//! A fake Slack Web API on 127.0.0.1: records every call and answers with
//! the documented response shapes from `tests/data/slack/web_api/`. It can
//! be told to fail with HTTP 500 for a while, to rate-limit (429 with
//! `Retry-After`), or to refuse a call with `{"ok":false,"error":…}`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// One Web API call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    pub raw: String,
}

#[derive(Default)]
struct Inner {
    calls: Mutex<Vec<Call>>,
    /// Every call fails with HTTP 500 until then.
    down_until: Mutex<Option<Instant>>,
    /// This many next calls are answered 429 with Retry-After: 1.
    rate_limited: AtomicUsize,
    /// The next call to this method is refused with this error code.
    refuse: Mutex<Option<(String, String)>>,
    failures: AtomicUsize,
    ts: AtomicUsize,
    changed: Notify,
    port: Mutex<u16>,
}

#[derive(Clone)]
pub struct FakeSlack {
    inner: Arc<Inner>,
    pub api_url: String,
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/data/slack/web_api/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

impl FakeSlack {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/api/{method}", any(api))
            .route("/upload/{file}", post(upload))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        *inner.port.lock().unwrap() = port;
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            inner,
            api_url: format!("http://127.0.0.1:{port}/api"),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().unwrap().clone()
    }

    /// Calls of one Web API method, in order.
    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// Answers 500 to everything for `d`.
    pub fn down_for(&self, d: Duration) {
        *self.inner.down_until.lock().unwrap() = Some(Instant::now() + d);
    }

    /// Answers 429 (Retry-After: 1) to the next `n` calls.
    pub fn rate_limit(&self, n: usize) {
        self.inner.rate_limited.store(n, Ordering::SeqCst);
    }

    /// Refuses the next call to `method` with `{"ok":false,"error":code}`.
    pub fn refuse_next(&self, method: &str, code: &str) {
        *self.inner.refuse.lock().unwrap() = Some((method.into(), code.into()));
    }

    /// Calls answered with an error status so far.
    pub fn failures(&self) -> usize {
        self.inner.failures.load(Ordering::SeqCst)
    }

    /// Waits until `pred` holds for the recorded calls.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Call]) -> bool) {
        let wait = async {
            loop {
                let notified = self.inner.changed.notified();
                if pred(&self.calls()) {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .is_err()
        {
            panic!("fake Slack never saw {what}; calls: {:#?}", self.calls());
        }
    }
}

async fn api(
    State(inner): State<Arc<Inner>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let down = inner
        .down_until
        .lock()
        .unwrap()
        .is_some_and(|t| Instant::now() < t);
    if down {
        inner.failures.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream unavailable").into_response();
    }
    if inner
        .rate_limited
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        inner.failures.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("retry-after", "1"),
                ("content-type", "application/json;charset=utf-8"),
            ],
            r#"{"ok":false,"error":"ratelimited"}"#,
        )
            .into_response();
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !auth.starts_with("Bearer x") {
        return axum::Json(fixture("error.generic.json")).into_response();
    }
    let raw = String::from_utf8_lossy(&body).into_owned();
    let parsed = serde_json::from_str(&raw).unwrap_or_else(|_| {
        let form: Vec<(String, String)> = serde_urlencoded::from_str(&raw).unwrap_or_default();
        Value::Object(
            form.into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    });
    let refused = {
        let mut r = inner.refuse.lock().unwrap();
        match r.as_ref() {
            Some((m, code)) if *m == method => {
                let code = code.clone();
                *r = None;
                Some(code)
            }
            _ => None,
        }
    };
    let answer = match refused {
        Some(code) => json!({ "ok": false, "error": code }),
        None => answer(&inner, &method, &parsed),
    };
    inner.calls.lock().unwrap().push(Call {
        method,
        body: parsed,
        raw,
    });
    inner.changed.notify_waiters();
    axum::Json(answer).into_response()
}

fn answer(inner: &Inner, method: &str, body: &Value) -> Value {
    let channel = body["channel"].clone();
    match method {
        "chat.postMessage" => {
            let n = inner.ts.fetch_add(1, Ordering::SeqCst) + 1;
            let ts = format!("1700000000.{n:06}");
            let mut r = fixture("chat.postMessage.ok.openapi.json");
            r["channel"] = channel;
            r["ts"] = json!(ts);
            r["message"]["ts"] = json!(ts);
            r["message"]["text"] = body["text"].clone();
            r
        }
        "chat.update" => {
            let mut r = fixture("chat.update.ok.openapi.json");
            r["channel"] = channel;
            r["ts"] = body["ts"].clone();
            r
        }
        "chat.postEphemeral" => json!({ "ok": true, "message_ts": "1700000000.999999" }),
        "auth.test" => json!({
            "ok": true, "url": "https://rollbot-test.slack.com/", "team": "Test",
            "user": "rollbot", "team_id": "T0TEST", "user_id": "UROLLBOT", "bot_id": "B0TEST"
        }),
        "files.getUploadURLExternal" => {
            let mut r = fixture("files.getUploadURLExternal.ok.docs.json");
            let port = *inner.port.lock().unwrap();
            r["upload_url"] = json!(format!("http://127.0.0.1:{port}/upload/F123ABC456"));
            r
        }
        "files.completeUploadExternal" => fixture("files.completeUploadExternal.ok.docs.json"),
        _ => json!({ "ok": false, "error": "unknown_method" }),
    }
}

async fn upload(
    State(inner): State<Arc<Inner>>,
    Path(file): Path<String>,
    body: Bytes,
) -> StatusCode {
    inner.calls.lock().unwrap().push(Call {
        method: format!("upload:{file}"),
        body: Value::Null,
        raw: String::from_utf8_lossy(&body).into_owned(),
    });
    inner.changed.notify_waiters();
    StatusCode::OK
}
