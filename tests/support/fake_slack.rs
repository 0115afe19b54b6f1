//! A fake Slack Web API on 127.0.0.1: records every call and answers with
//! the documented response shapes from `tests/data/slack/web_api/`. It can
//! be told to fail with HTTP 500 for a while (or until told to recover), to
//! rate-limit (429 with `Retry-After`), or to refuse a call with
//! `{"ok":false,"error":…}`.
//!
//! It is as strict as Slack where rollbot could go wrong: a missing required
//! argument is refused with `invalid_arguments` (and a
//! `response_metadata.messages` line naming it), `chat.update` needs a
//! message that was posted in that channel (`message_not_found`), and the
//! file upload v2 flow is checked step by step — `files.getUploadURLExternal`
//! hands out a one-use upload URL for a new file id, the POST of the bytes
//! there answers `OK - <bytes>` as `text/plain` (a second POST is refused),
//! and `files.completeUploadExternal` accepts only uploaded, not yet
//! completed file ids (`file_not_found`) and `thread_ts` only with a
//! `channel_id`. [`FakeSlack::answer_oddly`] makes every successful answer
//! odd but valid, as Slack's sometimes are: `chat.update` without its
//! `message`, a `warning` with `response_metadata.warnings`, and fields
//! nobody documented.
//!
//! It also plays Slack's Socket Mode: `apps.connections.open` (app-level
//! `xapp-` token only) hands out a one-use `ws://127.0.0.1:PORT/link/?ticket=…`
//! URL; the WebSocket server there greets with `hello`, sends the envelopes a
//! test asks for, and records every frame the client sends back (the
//! acknowledgements `{"envelope_id":…[,"payload":…]}`). And it answers
//! `usergroups.users.list` from the user groups a test defines, and
//! `conversations.history` from the messages posted (newest first, their
//! `metadata` only with `include_all_metadata`). A call can take effect
//! and lose its answer ([`FakeSlack::lose_answers`]: HTTP 500 after the
//! message is in the channel), and a method can lack its scope
//! ([`FakeSlack::without_scope`]: `missing_scope`).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response as WsResponse,
};

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
    /// Messages people would see (see [`FakeSlack::unconsumed`]) that the
    /// test has not consumed yet, oldest first.
    pending: Mutex<Vec<Call>>,
    /// Every call fails with HTTP 500 until then.
    down_until: Mutex<Option<Instant>>,
    /// Every call fails with HTTP 500 until [`FakeSlack::recover`].
    down: std::sync::atomic::AtomicBool,
    /// Successful answers are odd but valid (see the module doc).
    odd: std::sync::atomic::AtomicBool,
    /// Messages posted: (channel, ts).
    messages: Mutex<HashSet<(String, String)>>,
    /// Every message posted, oldest first, as `conversations.history`
    /// answers it (with `channel` and `thread_ts` for the fake's filtering).
    history: Mutex<Vec<Value>>,
    /// This many next successful calls to a method take effect but are
    /// answered HTTP 500, as when Slack's answer is lost on the way.
    lost_answers: Mutex<BTreeMap<String, usize>>,
    /// Methods the bot token lacks the scope for: method → needed scope.
    unscoped: Mutex<BTreeMap<String, String>>,
    next_file: AtomicUsize,
    /// Files handed an upload URL: id → its upload so far.
    files: Mutex<BTreeMap<String, FileUpload>>,
    /// This many next calls are answered 429 with Retry-After: 1.
    rate_limited: AtomicUsize,
    /// The next call to this method is refused with this error code.
    refuse: Mutex<Option<(String, String)>>,
    failures: AtomicUsize,
    ts: AtomicUsize,
    changed: Notify,
    port: Mutex<u16>,
    socket: SocketState,
    /// `usergroups.users.list` answers: user group id → member ids.
    user_groups: Mutex<BTreeMap<String, Vec<String>>>,
    /// Answers to these methods are sent this long after the call took
    /// effect (the message exists, the caller does not know its ts yet).
    slow: Mutex<BTreeMap<String, Duration>>,
}

/// The Socket Mode side of the fake.
#[derive(Default)]
struct SocketState {
    ws_port: Mutex<u16>,
    next_ticket: AtomicUsize,
    /// Tickets handed out by `apps.connections.open` and not used yet.
    tickets: Mutex<HashSet<String>>,
    /// WebSocket connections, in the order they were accepted.
    conns: Mutex<Vec<Conn>>,
    /// Connection attempts refused (no or a used ticket).
    refused: AtomicUsize,
    /// Every text frame a client sent, parsed, with its connection.
    frames: Mutex<Vec<(usize, Value)>>,
    next_envelope: AtomicUsize,
}

/// One file of the upload v2 flow, as the fake tracks it.
#[derive(Debug, Clone, Default)]
pub struct FileUpload {
    pub filename: String,
    /// The `length` announced to `files.getUploadURLExternal`.
    pub length: usize,
    /// The bytes POSTed to the upload URL (`None` until then).
    pub bytes: Option<Vec<u8>>,
    /// The content type of that POST.
    pub content_type: Option<String>,
    /// `files.completeUploadExternal` arguments once completed:
    /// (title, channel_id, thread_ts).
    pub completed: Option<(Option<String>, Option<String>, Option<String>)>,
}

struct Conn {
    open: bool,
    to_client: mpsc::UnboundedSender<Message>,
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
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        *inner.socket.ws_port.lock().unwrap() = ws.local_addr().unwrap().port();
        tokio::spawn(accept_sockets(ws, inner.clone()));
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

    /// Answers 500 to everything until [`FakeSlack::recover`].
    pub fn go_down(&self) {
        self.inner.down.store(true, Ordering::SeqCst);
    }

    /// Ends [`FakeSlack::go_down`] and [`FakeSlack::down_for`].
    pub fn recover(&self) {
        self.inner.down.store(false, Ordering::SeqCst);
        *self.inner.down_until.lock().unwrap() = None;
    }

    /// Makes every successful answer odd but valid (see the module doc).
    pub fn answer_oddly(&self) {
        self.inner.odd.store(true, Ordering::SeqCst);
    }

    /// Files of the upload v2 flow, by id.
    pub fn files(&self) -> BTreeMap<String, FileUpload> {
        self.inner.files.lock().unwrap().clone()
    }

    /// Answers 429 (Retry-After: 1) to the next `n` calls.
    pub fn rate_limit(&self, n: usize) {
        self.inner.rate_limited.store(n, Ordering::SeqCst);
    }

    /// Answers calls to `method` `d` after they took effect, as a slow
    /// network does: a posted message is in the channel (people can react
    /// to it) before its sender learns its ts.
    pub fn answer_slowly(&self, method: &str, d: Duration) {
        self.inner.slow.lock().unwrap().insert(method.into(), d);
    }

    /// Lets the next `n` successful calls to `method` take effect (a post
    /// is in the channel) but answers them HTTP 500, as when Slack's answer
    /// is lost on the way back: the caller cannot know the call worked.
    pub fn lose_answers(&self, method: &str, n: usize) {
        self.inner
            .lost_answers
            .lock()
            .unwrap()
            .insert(method.into(), n);
    }

    /// Takes `scope` away from the bot token: every call to `method` is
    /// refused with `missing_scope`, as Slack does.
    pub fn without_scope(&self, method: &str, scope: &str) {
        self.inner
            .unscoped
            .lock()
            .unwrap()
            .insert(method.into(), scope.into());
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
        self.wait_until(what, |f| pred(&f.calls())).await;
    }

    /// Waits until `pred` holds for the fake (calls, connections, frames).
    ///
    /// # Panics
    /// After 30 s, naming `what` and listing the calls and frames seen.
    pub async fn wait_until(&self, what: &str, pred: impl Fn(&Self) -> bool) {
        let wait = async {
            loop {
                let notified = self.inner.changed.notified();
                if pred(self) {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .is_err()
        {
            panic!(
                "fake Slack never saw {what}; calls: {:#?}\nsocket frames: {:#?}",
                self.calls(),
                self.socket_frames()
            );
        }
    }

    /// Messages the bot showed people (posts, thread replies, ephemeral
    /// notes, shared files) that the test has not consumed, oldest first.
    /// Edits (`chat.update`) are not messages: read them with
    /// [`FakeSlack::calls_to`].
    pub fn unconsumed(&self) -> Vec<Call> {
        self.inner.pending.lock().unwrap().clone()
    }

    /// Consumes the oldest pending message for which `pred` holds.
    pub fn take(&self, pred: impl Fn(&Call) -> bool) -> Option<Call> {
        let mut pending = self.inner.pending.lock().unwrap();
        let at = pending.iter().position(pred)?;
        Some(pending.remove(at))
    }

    /// Consumes every pending message for which `pred` holds (progress
    /// lines whose number depends on timing), oldest first.
    pub fn take_all(&self, pred: impl Fn(&Call) -> bool) -> Vec<Call> {
        let mut pending = self.inner.pending.lock().unwrap();
        let (taken, left) = pending.drain(..).partition(|c| pred(c));
        *pending = left;
        taken
    }

    /// Consumes every pending reply in the thread of `ts` containing
    /// `needle` (progress lines, however many there were).
    pub fn take_replies(&self, ts: &str, needle: &str) -> Vec<Call> {
        self.take_all(|c| {
            c.method == "chat.postMessage" && thread_ts(c) == Some(ts) && mentions(c, needle)
        })
    }

    /// Consumes the oldest pending top-level `chat.postMessage` (a
    /// proposal, not a thread reply) whose text or blocks contain `needle`.
    #[track_caller]
    pub fn expect_post(&self, needle: &str) -> Call {
        self.take(|c| {
            c.method == "chat.postMessage" && thread_ts(c).is_none() && mentions(c, needle)
        })
        .unwrap_or_else(|| self.missing(&format!("a post containing {needle:?}")))
    }

    /// Consumes the oldest pending reply in the thread of `ts` containing
    /// `needle`.
    #[track_caller]
    pub fn expect_reply(&self, ts: &str, needle: &str) -> Call {
        self.take(|c| {
            c.method == "chat.postMessage" && thread_ts(c) == Some(ts) && mentions(c, needle)
        })
        .unwrap_or_else(|| {
            self.missing(&format!(
                "a reply in the thread of {ts} containing {needle:?}"
            ))
        })
    }

    /// Consumes every pending reply in the thread of `ts` and checks, in
    /// order, that each contains its `needles` entry: nothing missing,
    /// nothing extra.
    #[track_caller]
    pub fn expect_replies(&self, ts: &str, needles: &[&str]) -> Vec<Call> {
        let mut replies = Vec::new();
        while let Some(c) =
            self.take(|c| c.method == "chat.postMessage" && thread_ts(c) == Some(ts))
        {
            replies.push(c);
        }
        let texts: Vec<String> = replies.iter().map(text_of).collect();
        assert_eq!(
            replies.len(),
            needles.len(),
            "the replies in the thread of {ts}: {texts:#?}"
        );
        for (text, needle) in texts.iter().zip(needles) {
            assert!(
                text.contains(needle),
                "expected {needle:?} in the reply {text:?}"
            );
        }
        replies
    }

    /// Consumes the oldest pending ephemeral note to `user` containing
    /// `needle`; returns its text.
    #[track_caller]
    pub fn expect_ephemeral(&self, user: &str, needle: &str) -> String {
        let c = self
            .take(|c| {
                c.method == "chat.postEphemeral" && c.body["user"] == user && mentions(c, needle)
            })
            .unwrap_or_else(|| {
                self.missing(&format!(
                    "an ephemeral note to {user} containing {needle:?}"
                ))
            });
        text_of(&c)
    }

    /// Consumes the oldest pending shared file (`files.completeUploadExternal`)
    /// whose arguments contain `needle` (a title).
    #[track_caller]
    pub fn expect_upload(&self, needle: &str) -> Call {
        self.take(|c| c.method == "files.completeUploadExternal" && c.raw.contains(needle))
            .unwrap_or_else(|| self.missing(&format!("a shared file mentioning {needle:?}")))
    }

    /// Fails now if a message is pending.
    #[track_caller]
    pub fn expect_no_messages(&self) {
        let left = self.describe_unconsumed();
        assert!(
            left.is_empty(),
            "unconsumed Slack messages:\n{}",
            left.join("\n")
        );
    }

    /// Consumes every pending message; for a test about something else.
    /// Use sparingly: the messages are part of the behaviour.
    pub fn ignore_messages(&self) {
        self.inner.pending.lock().unwrap().clear();
    }

    /// One line per pending message, for failure reports.
    pub fn describe_unconsumed(&self) -> Vec<String> {
        self.unconsumed()
            .iter()
            .map(|c| {
                let to = c.body["user"]
                    .as_str()
                    .map(|u| format!(" to {u}"))
                    .unwrap_or_default();
                let thread = thread_ts(c)
                    .map(|t| format!(" in thread {t}"))
                    .unwrap_or_default();
                format!("  - {}{to}{thread}: {}", c.method, text_of(c))
            })
            .collect()
    }

    #[track_caller]
    fn missing(&self, what: &str) -> ! {
        let pending = self.describe_unconsumed();
        panic!(
            "expected {what}; pending Slack messages:\n{}",
            if pending.is_empty() {
                "  (none)".to_string()
            } else {
                pending.join("\n")
            }
        )
    }

    /// Defines a user group for `usergroups.users.list`; other ids are
    /// answered `no_such_subteam`.
    pub fn set_user_group(&self, id: &str, members: &[&str]) {
        self.inner.user_groups.lock().unwrap().insert(
            id.to_string(),
            members.iter().map(ToString::to_string).collect(),
        );
    }

    /// Deletes a user group: `usergroups.users.list` answers `no_such_subteam`.
    pub fn remove_user_group(&self, id: &str) {
        self.inner.user_groups.lock().unwrap().remove(id);
    }

    /// Socket Mode connections accepted so far (open or closed).
    pub fn sockets_accepted(&self) -> usize {
        self.inner.socket.conns.lock().unwrap().len()
    }

    /// Socket Mode connections open now.
    pub fn sockets_open(&self) -> usize {
        let conns = self.inner.socket.conns.lock().unwrap();
        conns.iter().filter(|c| c.open).count()
    }

    /// WebSocket connection attempts refused for a missing or used ticket.
    pub fn sockets_refused(&self) -> usize {
        self.inner.socket.refused.load(Ordering::SeqCst)
    }

    /// Every frame the client sent over Socket Mode, in order.
    pub fn socket_frames(&self) -> Vec<Value> {
        let frames = self.inner.socket.frames.lock().unwrap();
        frames.iter().map(|(_, f)| f.clone()).collect()
    }

    /// The acknowledgements received for `envelope_id`.
    pub fn acks_for(&self, envelope_id: &str) -> Vec<Value> {
        self.socket_frames()
            .into_iter()
            .filter(|f| f["envelope_id"] == envelope_id)
            .collect()
    }

    /// Waits for the acknowledgement of `envelope_id` and returns it.
    pub async fn ack(&self, envelope_id: &str) -> Value {
        let what = format!("an acknowledgement of envelope {envelope_id}");
        self.wait_until(&what, |f| !f.acks_for(envelope_id).is_empty())
            .await;
        self.acks_for(envelope_id).remove(0)
    }

    /// Sends a Socket Mode envelope of `kind` (`slash_commands`,
    /// `events_api`, `interactive`) over the newest open connection, as
    /// Slack does; returns its `envelope_id`. `extra` fields (e.g.
    /// `retry_attempt`) go beside `payload`.
    ///
    /// # Panics
    /// When no connection is open.
    pub fn send_envelope(
        &self,
        kind: &str,
        payload: Value,
        accepts_response_payload: bool,
        extra: &[(&str, Value)],
    ) -> String {
        let n = self
            .inner
            .socket
            .next_envelope
            .fetch_add(1, Ordering::SeqCst)
            + 1;
        let envelope_id = format!("{n:08x}-4d35-4d0b-b6aa-3361493e1caf");
        let mut frame = json!({
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        });
        for (k, v) in extra {
            frame[*k] = v.clone();
        }
        self.send_frame(frame);
        envelope_id
    }

    /// Sends any JSON frame over the newest open connection.
    pub fn send_frame(&self, frame: Value) {
        let conns = self.inner.socket.conns.lock().unwrap();
        let conn = conns
            .iter()
            .rev()
            .find(|c| c.open)
            .expect("no Socket Mode connection is open");
        conn.to_client
            .send(Message::Text(frame.to_string().into()))
            .expect("the connection task is running");
    }

    /// Asks the newest connection to reconnect, as Slack does a few
    /// seconds before it closes a connection (`refresh_requested`).
    pub fn request_refresh(&self) {
        self.send_frame(json!({
            "type": "disconnect",
            "reason": "refresh_requested",
            "debug_info": { "host": "applink-fake" }
        }));
    }
}

/// The `thread_ts` of a post, if it is a thread reply.
fn thread_ts(c: &Call) -> Option<&str> {
    c.body["thread_ts"].as_str().filter(|t| !t.is_empty())
}

/// A message's `text`, or its raw arguments when it has none.
pub fn text_of(c: &Call) -> String {
    c.body["text"]
        .as_str()
        .map_or_else(|| c.raw.clone(), str::to_string)
}

/// Whether a message's arguments (text, blocks, title…) contain `needle`.
fn mentions(c: &Call, needle: &str) -> bool {
    c.raw.contains(needle) || c.body.to_string().contains(needle)
}

/// Accepts WebSocket connections that present a ticket from
/// `apps.connections.open`, each used once.
async fn accept_sockets(listener: tokio::net::TcpListener, inner: Arc<Inner>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            match tokio_tungstenite::accept_hdr_async(tcp, TicketCheck(inner.clone())).await {
                Ok(ws) => serve_socket(ws, inner).await,
                Err(_) => {
                    inner.socket.refused.fetch_add(1, Ordering::SeqCst);
                    inner.changed.notify_waiters();
                }
            }
        });
    }
}

/// The WebSocket handshake succeeds only with an unused ticket on `/link/`.
struct TicketCheck(Arc<Inner>);

impl Callback for TicketCheck {
    fn on_request(self, req: &Request, resp: WsResponse) -> Result<WsResponse, ErrorResponse> {
        let ticket = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("ticket="))
            .unwrap_or_default();
        let known =
            req.uri().path() == "/link/" && self.0.socket.tickets.lock().unwrap().remove(ticket);
        if known {
            Ok(resp)
        } else {
            let mut refusal = ErrorResponse::new(Some("invalid or used ticket".into()));
            *refusal.status_mut() = StatusCode::UNAUTHORIZED;
            Err(refusal)
        }
    }
}

/// One Socket Mode connection: `hello`, then frames both ways until either
/// side closes. Pings are answered by tungstenite while reading.
async fn serve_socket(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    inner: Arc<Inner>,
) {
    let (mut sink, mut stream) = ws.split();
    let (to_client, mut outgoing) = mpsc::unbounded_channel();
    let id = {
        let mut conns = inner.socket.conns.lock().unwrap();
        conns.push(Conn {
            open: true,
            to_client,
        });
        conns.len() - 1
    };
    let open_now = inner
        .socket
        .conns
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.open)
        .count();
    let hello = json!({
        "type": "hello",
        "num_connections": open_now,
        "debug_info": {
            "host": "applink-fake",
            "build_number": 1,
            "approximate_connection_time": 18060
        },
        "connection_info": { "app_id": "A0TEST" }
    });
    let greeted = sink
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_ok();
    inner.changed.notify_waiters();
    if !greeted {
        inner.socket.conns.lock().unwrap()[id].open = false;
        return;
    }
    loop {
        tokio::select! {
            out = outgoing.recv() => match out {
                Some(m) => if sink.send(m).await.is_err() { break },
                None => break,
            },
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let value = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|_| Value::String(text.to_string()));
                    inner.socket.frames.lock().unwrap().push((id, value));
                    inner.changed.notify_waiters();
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    inner.socket.conns.lock().unwrap()[id].open = false;
    inner.changed.notify_waiters();
}

async fn api(
    State(inner): State<Arc<Inner>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let down = inner.down.load(Ordering::SeqCst)
        || inner
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
    // Slack refuses `apps.connections.open` with any but an app-level token,
    // and app-level tokens everywhere else.
    let app_token = auth.starts_with("Bearer xapp-");
    if app_token != (method == "apps.connections.open") {
        return axum::Json(json!({ "ok": false, "error": "not_allowed_token_type" }))
            .into_response();
    }
    // GET methods (usergroups.users.list) carry their arguments in the query.
    let raw = match query {
        Some(q) if body.is_empty() => q,
        _ => String::from_utf8_lossy(&body).into_owned(),
    };
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
    let unscoped = inner.unscoped.lock().unwrap().get(&method).cloned();
    let answer = match refused {
        Some(code) => json!({ "ok": false, "error": code }),
        None if unscoped.is_some() => json!({
            "ok": false, "error": "missing_scope",
            "needed": unscoped, "provided": "commands,chat:write,reactions:read,files:write,files:read"
        }),
        None => match missing_argument(&method, &parsed) {
            Some(arg) => json!({
                "ok": false,
                "error": "invalid_arguments",
                "response_metadata": { "messages": [format!("[ERROR] missing required field: {arg}")] }
            }),
            None => answer(&inner, &method, &parsed),
        },
    };
    let answer = if answer["ok"] == true && inner.odd.load(Ordering::SeqCst) {
        oddly(&method, answer)
    } else {
        answer
    };
    let slow = inner.slow.lock().unwrap().get(&method).copied();
    let lost = answer["ok"] == true
        && inner
            .lost_answers
            .lock()
            .unwrap()
            .get_mut(&method)
            .is_some_and(|n| match n.checked_sub(1) {
                Some(left) => {
                    *n = left;
                    true
                }
                None => false,
            });
    let call = Call {
        method,
        body: parsed,
        raw,
    };
    if answer["ok"] == true && is_message(&call.method) {
        inner.pending.lock().unwrap().push(call.clone());
    }
    inner.calls.lock().unwrap().push(call);
    inner.changed.notify_waiters();
    if let Some(d) = slow {
        // Models the outside world: a deliberately slow network
        // (`answer_slowly`), not synchronisation.
        tokio::time::sleep(d).await;
    }
    if lost {
        inner.failures.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "upstream request timeout",
        )
            .into_response();
    }
    axum::Json(answer).into_response()
}

/// Whether a successful call to `method` shows people something new: a
/// message, a thread reply, a private (ephemeral) note or a shared file.
/// Edits of a message (`chat.update`), the upload steps before a file is
/// shared, and reads are not messages, as in `MemoryChat`.
fn is_message(method: &str) -> bool {
    matches!(
        method,
        "chat.postMessage" | "chat.postEphemeral" | "files.completeUploadExternal"
    )
}

/// The first required argument of `method` that `body` lacks.
fn missing_argument(method: &str, body: &Value) -> Option<&'static str> {
    let required: &[&'static str] = match method {
        "chat.postMessage" => &["channel"],
        "chat.update" => &["channel", "ts"],
        "chat.postEphemeral" => &["channel", "user"],
        "files.getUploadURLExternal" => &["filename", "length"],
        "files.completeUploadExternal" => &["files"],
        "usergroups.users.list" => &["usergroup"],
        "conversations.history" => &["channel"],
        _ => &[],
    };
    required.iter().copied().find(|arg| match &body[*arg] {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    })
}

/// `answer` made odd but valid, as Slack sometimes answers.
fn oddly(method: &str, mut answer: Value) -> Value {
    if method == "chat.update" {
        answer.as_object_mut().unwrap().remove("message");
    }
    answer["warning"] = json!("superfluous_charset");
    answer["response_metadata"] = json!({ "warnings": ["superfluous_charset"] });
    answer["x_fake_undocumented"] = json!({ "nested": [1, 2, 3] });
    answer
}

/// A message needs text or blocks (or attachments).
fn has_content(body: &Value) -> bool {
    ["text", "blocks", "attachments"]
        .iter()
        .any(|k| !matches!(&body[*k], Value::Null) && body[*k] != "")
}

/// The `files` argument: a JSON array, or (form-encoded) a string holding one.
fn files_argument(body: &Value) -> Option<Vec<Value>> {
    match &body["files"] {
        Value::Array(a) => Some(a.clone()),
        Value::String(s) => serde_json::from_str(s).ok(),
        _ => None,
    }
}

fn answer(inner: &Inner, method: &str, body: &Value) -> Value {
    let channel = body["channel"].clone();
    match method {
        "chat.postMessage" | "chat.postEphemeral" if !has_content(body) => {
            json!({ "ok": false, "error": "no_text" })
        }
        "chat.update" if !has_content(body) => json!({ "ok": false, "error": "no_text" }),
        "chat.postMessage" => {
            let n = inner.ts.fetch_add(1, Ordering::SeqCst) + 1;
            let ts = format!("1700000000.{n:06}");
            inner
                .messages
                .lock()
                .unwrap()
                .insert((channel.as_str().unwrap_or_default().to_string(), ts.clone()));
            // Metadata comes as an object (JSON body) or a string holding
            // one (form body).
            let metadata = match &body["metadata"] {
                Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                other => other.clone(),
            };
            inner.history.lock().unwrap().push(json!({
                "type": "message", "user": "UROLLBOT", "bot_id": "B0TEST",
                "ts": ts, "text": body["text"], "metadata": metadata,
                "channel": channel, "thread_ts": body["thread_ts"],
            }));
            let mut r = fixture("chat.postMessage.ok.openapi.json");
            r["channel"] = channel;
            r["ts"] = json!(ts);
            r["message"]["ts"] = json!(ts);
            r["message"]["text"] = body["text"].clone();
            r
        }
        "chat.update" => {
            let key = (
                channel.as_str().unwrap_or_default().to_string(),
                body["ts"].as_str().unwrap_or_default().to_string(),
            );
            if !inner.messages.lock().unwrap().contains(&key) {
                return json!({ "ok": false, "error": "message_not_found" });
            }
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
            // Form and query arguments are strings; `length` must be a
            // positive byte count.
            let length = match &body["length"] {
                Value::String(s) => s.parse::<usize>().ok(),
                Value::Number(n) => n.as_u64().map(|n| n as usize),
                _ => None,
            };
            let Some(length) = length.filter(|l| *l > 0) else {
                return json!({ "ok": false, "error": "invalid_arguments",
                    "response_metadata": { "messages": ["[ERROR] length must be a positive integer"] } });
            };
            let n = inner.next_file.fetch_add(1, Ordering::SeqCst) + 1;
            let id = format!("F{n:09}");
            inner.files.lock().unwrap().insert(
                id.clone(),
                FileUpload {
                    filename: body["filename"].as_str().unwrap_or_default().to_string(),
                    length,
                    ..FileUpload::default()
                },
            );
            let mut r = fixture("files.getUploadURLExternal.ok.docs.json");
            let port = *inner.port.lock().unwrap();
            r["upload_url"] = json!(format!("http://127.0.0.1:{port}/upload/{id}"));
            r["file_id"] = json!(id);
            r
        }
        "files.completeUploadExternal" => {
            let Some(files) = files_argument(body).filter(|f| !f.is_empty()) else {
                return json!({ "ok": false, "error": "invalid_arguments",
                    "response_metadata": { "messages": ["[ERROR] files must be a non-empty array of {\"id\":…}"] } });
            };
            let channel_id = body["channel_id"].as_str().map(String::from);
            let thread_ts = body["thread_ts"].as_str().map(String::from);
            if thread_ts.is_some() && channel_id.is_none() {
                return json!({ "ok": false, "error": "invalid_arguments",
                    "response_metadata": { "messages": ["[ERROR] thread_ts needs channel_id"] } });
            }
            let mut known = inner.files.lock().unwrap();
            let ready = files.iter().all(|f| {
                f["id"]
                    .as_str()
                    .and_then(|id| known.get(id))
                    .is_some_and(|u| u.bytes.is_some() && u.completed.is_none())
            });
            if !ready {
                return json!({ "ok": false, "error": "file_not_found" });
            }
            let mut done = Vec::new();
            for f in &files {
                let id = f["id"].as_str().unwrap_or_default();
                let title = f["title"].as_str().map(String::from);
                let u = known.get_mut(id).unwrap();
                u.completed = Some((title.clone(), channel_id.clone(), thread_ts.clone()));
                done.push(
                    json!({ "id": id, "title": title.unwrap_or_else(|| u.filename.clone()) }),
                );
            }
            let mut r = fixture("files.completeUploadExternal.ok.docs.json");
            r["files"] = json!(done);
            r
        }
        "apps.connections.open" => {
            let n = inner.socket.next_ticket.fetch_add(1, Ordering::SeqCst) + 1;
            let ticket = format!("fake-ticket-{n}");
            inner.socket.tickets.lock().unwrap().insert(ticket.clone());
            let port = *inner.socket.ws_port.lock().unwrap();
            json!({
                "ok": true,
                "url": format!("ws://127.0.0.1:{port}/link/?ticket={ticket}&app_id=A0TEST")
            })
        }
        // Top-level messages of a channel, newest first; their metadata
        // only when asked for with `include_all_metadata`.
        "conversations.history" => {
            let with_metadata = matches!(&body["include_all_metadata"], Value::Bool(true))
                || body["include_all_metadata"] == "true";
            let limit = match &body["limit"] {
                Value::String(s) => s.parse().unwrap_or(100),
                Value::Number(n) => n.as_u64().unwrap_or(100) as usize,
                _ => 100,
            };
            let messages: Vec<Value> = inner
                .history
                .lock()
                .unwrap()
                .iter()
                .rev()
                .filter(|m| m["channel"] == channel && m["thread_ts"].is_null())
                .take(limit)
                .map(|m| {
                    let mut m = m.clone();
                    let o = m.as_object_mut().unwrap();
                    o.remove("channel");
                    o.remove("thread_ts");
                    if !with_metadata || o["metadata"].is_null() {
                        o.remove("metadata");
                    }
                    m
                })
                .collect();
            json!({ "ok": true, "messages": messages, "has_more": false,
                    "pin_count": 0, "response_metadata": { "next_cursor": "" } })
        }
        "usergroups.users.list" => {
            let group = body["usergroup"].as_str().unwrap_or_default();
            match inner.user_groups.lock().unwrap().get(group) {
                Some(users) => json!({ "ok": true, "users": users }),
                None => json!({ "ok": false, "error": "no_such_subteam" }),
            }
        }
        _ => json!({ "ok": false, "error": "unknown_method" }),
    }
}

/// The upload URL: valid once, for a file id `files.getUploadURLExternal`
/// handed out. Slack answers `OK - <bytes>` as plain text, not JSON.
async fn upload(
    State(inner): State<Arc<Inner>>,
    Path(file): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let accepted = {
        let mut files = inner.files.lock().unwrap();
        match files.get_mut(&file) {
            Some(u) if u.bytes.is_none() => {
                u.bytes = Some(body.to_vec());
                u.content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                true
            }
            _ => false,
        }
    };
    inner.calls.lock().unwrap().push(Call {
        method: format!("upload:{file}"),
        body: Value::Null,
        raw: String::from_utf8_lossy(&body).into_owned(),
    });
    inner.changed.notify_waiters();
    if !accepted {
        inner.failures.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "text/plain; charset=utf-8")],
            "upload URL unknown or already used",
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [("content-type", "text/plain; charset=utf-8")],
        format!("OK - {}", body.len()),
    )
        .into_response()
}
