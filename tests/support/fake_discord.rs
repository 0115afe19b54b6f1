//! A fake Discord on 127.0.0.1: the REST routes rollbot uses and a
//! WebSocket gateway, both as strict as Discord where rollbot could go
//! wrong.
//!
//! REST (`/api/v10/…`): every call but interaction callbacks and webhooks
//! needs `Authorization: Bot <token>` (401 otherwise). `GET /gateway` points
//! at the fake's gateway; `GET /users/@me` is the bot. Messages are posted
//! in known channels only (404 Unknown Channel, code 10003), must not be
//! empty (50006), and are edited only where they were posted (404 Unknown
//! Message, 10008). A thread is started on an existing message once
//! (160004 after that) and has the message's id; attachments come as
//! `multipart/form-data` with `payload_json` and `files[n]`. An
//! interaction is answered once (40060 "already acknowledged" after that),
//! its follow-ups only after that answer (404 Unknown Webhook, 10015), and
//! `@original` is edited only after a deferred answer. A post with
//! `enforce_nonce` and a nonce seen before returns the earlier message. It
//! can answer 429 (with the documented body) or 500 to the next calls, or
//! post a message and lose the answer.
//!
//! Interactions reach rollbot as Discord sends them: over the gateway
//! (`INTERACTION_CREATE`) or as a signed `POST` to the interactions
//! endpoint ([`FakeDiscord::post_interaction`], signed with the RFC 8032
//! TEST 1 key whose public half the tests configure).
//!
//! Gateway: Hello, then Identify (token and intents checked; privileged
//! intents refused with close code 4014) → READY, Heartbeat → ACK, Resume
//! (replays what was dispatched after the client's sequence, then
//! RESUMED), dispatches with increasing sequence numbers. A test can drop
//! the connection; what is dispatched meanwhile is replayed on resume.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use ed25519_dalek::{Signer, SigningKey};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub const TOKEN: &str = "discord-test-token";
pub const APP_ID: &str = "775799577604522054";
pub const BOT_ID: &str = "3";
pub const GUILD_ID: &str = "290926798626357999";
/// The RFC 8032 section 7.1 TEST 1 key pair.
pub const SECRET_KEY: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
pub const PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// One REST call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
    /// Files of a multipart call: (field, filename, bytes).
    pub files: Vec<(String, String, Vec<u8>)>,
}

/// A message people see.
#[derive(Debug, Clone)]
pub struct Posted {
    pub id: String,
    pub channel: String,
    pub body: Value,
    pub files: Vec<(String, String, Vec<u8>)>,
}

impl Posted {
    /// The message's words: content and embed titles and descriptions.
    pub fn text(&self) -> String {
        let mut t = self.body["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for e in self.body["embeds"].as_array().into_iter().flatten() {
            for k in ["title", "description"] {
                t.push('\n');
                t.push_str(e[k].as_str().unwrap_or_default());
            }
        }
        t
    }
}

#[derive(Debug, Clone, Default)]
struct Interaction {
    token: String,
    /// The first answer's type, once answered.
    answered: Option<u64>,
}

#[derive(Default)]
struct Inner {
    calls: Mutex<Vec<Call>>,
    /// Messages people would see that the test has not consumed.
    pending: Mutex<Vec<Posted>>,
    /// Text channels, threads and DM channels that exist.
    channels: Mutex<HashSet<String>>,
    /// message id → (channel, latest body).
    messages: Mutex<HashMap<String, (String, Value)>>,
    threads: Mutex<HashSet<String>>,
    /// interaction id → it.
    interactions: Mutex<HashMap<String, Interaction>>,
    /// Answers to interactions, in order: (interaction id, response).
    answers: Mutex<Vec<(String, Value)>>,
    next_id: AtomicU64,
    rate_limited: AtomicUsize,
    failing: AtomicUsize,
    /// This many next message posts take effect but are answered 500, as
    /// when the answer is lost on the way.
    lose_answers: AtomicUsize,
    /// (channel, nonce) → message id, for `enforce_nonce`.
    nonces: Mutex<HashMap<(String, String), String>>,
    changed: Notify,
    gateway: Gateway,
}

#[derive(Default)]
struct Gateway {
    url: Mutex<String>,
    /// Dispatches so far: (seq, event name, data).
    log: Mutex<Vec<(u64, String, Value)>>,
    seq: AtomicU64,
    session: Mutex<Option<String>>,
    /// The live connection's sender, when one is identified or resumed.
    live: Mutex<Option<mpsc::UnboundedSender<Message>>>,
    identifies: AtomicUsize,
    resumes: AtomicUsize,
    heartbeats: AtomicUsize,
    /// The intents of the last Identify.
    intents: Mutex<Option<u64>>,
}

#[derive(Clone)]
pub struct FakeDiscord {
    inner: Arc<Inner>,
    /// What `discord.api_url` is set to.
    pub api_url: String,
}

/// A Discord error body.
fn error(status: StatusCode, code: u64, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "code": code, "message": message })),
    )
        .into_response()
}

impl FakeDiscord {
    /// Starts the fake with these text channels.
    pub async fn start(channels: &[&str]) -> Self {
        let inner = Arc::new(Inner::default());
        inner
            .next_id
            .store(900_000_000_000_000_000, Ordering::SeqCst);
        inner
            .channels
            .lock()
            .unwrap()
            .extend(channels.iter().map(ToString::to_string));
        let app = Router::new()
            .route("/api/v10/{*path}", any(rest))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        *inner.gateway.url.lock().unwrap() =
            format!("ws://127.0.0.1:{}", ws.local_addr().unwrap().port());
        tokio::spawn(accept(ws, inner.clone()));
        Self {
            inner,
            api_url: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().unwrap().clone()
    }

    /// Calls whose `METHOD path` starts with `prefix`.
    pub fn calls_to(&self, prefix: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| format!("{} {}", c.method, c.path).starts_with(prefix))
            .collect()
    }

    /// Answers 429 (`retry_after` 0.2 s) to the next `n` calls.
    pub fn rate_limit(&self, n: usize) {
        self.inner.rate_limited.store(n, Ordering::SeqCst);
    }

    /// Posts the next `n` messages but answers 500, as if the answer was lost.
    pub fn lose_answers(&self, n: usize) {
        self.inner.lose_answers.store(n, Ordering::SeqCst);
    }

    /// Answers 500 to the next `n` calls.
    pub fn fail(&self, n: usize) {
        self.inner.failing.store(n, Ordering::SeqCst);
    }

    /// Waits until `pred` holds, for at most 30 s.
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
                "fake Discord never saw {what}; calls: {:#?}\npending: {:#?}",
                self.calls()
                    .iter()
                    .map(|c| format!("{} {}", c.method, c.path))
                    .collect::<Vec<_>>(),
                self.describe_unconsumed()
            );
        }
    }

    /// Consumes the oldest pending message in `channel` containing `needle`.
    #[track_caller]
    pub fn expect_message(&self, channel: &str, needle: &str) -> Posted {
        let mut pending = self.inner.pending.lock().unwrap();
        match pending
            .iter()
            .position(|m| m.channel == channel && m.text().contains(needle))
        {
            Some(at) => pending.remove(at),
            None => panic!(
                "expected a message in {channel} containing {needle:?}; pending:\n{}",
                describe(&pending).join("\n")
            ),
        }
    }

    /// Waits for a message in `channel` containing `needle`, then
    /// consumes it.
    pub async fn message_in(&self, channel: &str, needle: &str) -> Posted {
        let what = format!("a message in {channel} containing {needle:?}");
        self.wait_until(&what, |f| {
            f.inner
                .pending
                .lock()
                .unwrap()
                .iter()
                .any(|m| m.channel == channel && m.text().contains(needle))
        })
        .await;
        self.expect_message(channel, needle)
    }

    /// Waits for the ephemeral follow-up to `interaction` containing
    /// `needle`, then consumes it.
    pub async fn followup(&self, interaction: &str, needle: &str) -> Posted {
        self.message_in(&format!("interaction:{interaction}"), needle)
            .await
    }

    /// Consumes every pending message in `channel` containing `needle`.
    pub fn take_all(&self, channel: &str, needle: &str) -> Vec<Posted> {
        let mut pending = self.inner.pending.lock().unwrap();
        let (taken, left) = pending
            .drain(..)
            .partition(|m| m.channel == channel && m.text().contains(needle));
        *pending = left;
        taken
    }

    /// Consumes the ephemeral follow-up (or deferred answer) to
    /// `interaction` containing `needle`.
    #[track_caller]
    pub fn expect_followup(&self, interaction: &str, needle: &str) -> Posted {
        self.expect_message(&format!("interaction:{interaction}"), needle)
    }

    /// Pending messages, one line each.
    pub fn describe_unconsumed(&self) -> Vec<String> {
        describe(&self.inner.pending.lock().unwrap())
    }

    /// The latest body of message `id`.
    pub fn message(&self, id: &str) -> Option<Value> {
        self.inner
            .messages
            .lock()
            .unwrap()
            .get(id)
            .map(|(_, b)| b.clone())
    }

    pub fn thread_exists(&self, message: &str) -> bool {
        self.inner.threads.lock().unwrap().contains(message)
    }

    /// The first answer to an interaction, once given.
    pub fn answer_to(&self, interaction: &str) -> Option<Value> {
        let answers = self.inner.answers.lock().unwrap();
        answers
            .iter()
            .find(|(id, _)| id == interaction)
            .map(|(_, r)| r.clone())
    }

    fn next_id(&self) -> String {
        self.inner
            .next_id
            .fetch_add(1, Ordering::SeqCst)
            .to_string()
    }

    /// An interaction as Discord sends it (from the full documented
    /// payloads), by `user` with `roles`, in `channel`.
    pub fn interaction(
        &self,
        kind: u8,
        channel: &str,
        user: &str,
        roles: &[&str],
        data: Value,
        message: Option<&str>,
    ) -> Value {
        let id = self.next_id();
        let token = format!("token-{id}");
        self.inner.interactions.lock().unwrap().insert(
            id.clone(),
            Interaction {
                token: token.clone(),
                answered: None,
            },
        );
        let mut i = json!({
            "id": id, "application_id": APP_ID, "type": kind, "data": data,
            "guild_id": GUILD_ID, "channel_id": channel,
            "channel": { "id": channel, "type": 0, "guild_id": GUILD_ID, "name": "incidents" },
            "member": {
                "user": { "id": user, "username": format!("user{user}"), "avatar": null,
                          "discriminator": "0", "public_flags": 0, "global_name": null },
                "roles": roles, "premium_since": null, "permissions": "2147483647",
                "pending": false, "nick": null, "mute": false,
                "joined_at": "2017-03-13T19:19:14.040000+00:00", "deaf": false, "flags": 0
            },
            "token": token, "version": 1, "app_permissions": "442368",
            "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
            "authorizing_integration_owners": { "0": GUILD_ID }, "context": 0,
            "attachment_size_limit": 10485760
        });
        if let Some(m) = message {
            let body = self.message(m).unwrap_or(Value::Null);
            i["message"] = json!({
                "type": 0, "tts": false, "timestamp": "2021-05-19T02:12:51.710000+00:00",
                "pinned": false, "mentions": [], "mention_roles": [], "mention_everyone": false,
                "id": m, "flags": 0, "embeds": body["embeds"].clone(), "edited_timestamp": null,
                "content": body["content"].clone(), "components": body["components"].clone(),
                "channel_id": channel,
                "author": { "username": "rollbot", "public_flags": 0, "id": BOT_ID,
                            "discriminator": "0", "avatar": null, "bot": true },
                "attachments": []
            });
        }
        i
    }

    /// `/rollback SUB options…` as an application command interaction.
    pub fn slash(
        &self,
        channel: &str,
        user: &str,
        roles: &[&str],
        sub: &str,
        options: Value,
    ) -> Value {
        self.interaction(
            2,
            channel,
            user,
            roles,
            json!({ "id": "771825006014889984", "name": "rollback", "type": 1,
                    "options": [{ "type": 1, "name": sub, "options": options }] }),
            None,
        )
    }

    /// A click on the button `custom_id` of message `message`.
    pub fn click(
        &self,
        channel: &str,
        user: &str,
        roles: &[&str],
        message: &str,
        custom_id: &str,
    ) -> Value {
        self.interaction(
            3,
            channel,
            user,
            roles,
            json!({ "custom_id": custom_id, "component_type": 2 }),
            Some(message),
        )
    }

    /// Sends `interaction` to rollbot's endpoint as Discord does: signed,
    /// now; records its answer. Returns (status, answer).
    pub async fn post_interaction(&self, endpoint: &str, interaction: &Value) -> (u16, Value) {
        let body = interaction.to_string();
        let ts = chrono::Utc::now().timestamp().to_string();
        let r = reqwest::Client::new()
            .post(endpoint)
            .header("content-type", "application/json")
            .header("x-signature-ed25519", sign(&ts, body.as_bytes()))
            .header("x-signature-timestamp", &ts)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        if status == 200 {
            let id = interaction["id"].as_str().unwrap().to_string();
            self.answered(&id, &answer);
        }
        (status, answer)
    }

    fn answered(&self, id: &str, answer: &Value) {
        if let Some(i) = self.inner.interactions.lock().unwrap().get_mut(id) {
            i.answered = answer["type"].as_u64();
        }
        self.inner
            .answers
            .lock()
            .unwrap()
            .push((id.to_string(), answer.clone()));
        self.inner.changed.notify_waiters();
    }

    // ---- gateway ----

    /// Sends a dispatch (or keeps it for the resume when no connection is
    /// live); returns its sequence number.
    pub fn dispatch(&self, event: &str, data: Value) -> u64 {
        let g = &self.inner.gateway;
        let seq = g.seq.fetch_add(1, Ordering::SeqCst) + 1;
        g.log
            .lock()
            .unwrap()
            .push((seq, event.to_string(), data.clone()));
        if let Some(tx) = g.live.lock().unwrap().as_ref() {
            let _ = tx.send(frame(0, Some(seq), Some(event), data));
        }
        seq
    }

    /// An interaction over the gateway.
    pub fn dispatch_interaction(&self, interaction: Value) -> u64 {
        self.dispatch("INTERACTION_CREATE", interaction)
    }

    /// A ✅/❌ (or any) reaction added or removed by `user` with `roles`.
    pub fn react(
        &self,
        added: bool,
        channel: &str,
        message: &str,
        user: &str,
        roles: &[&str],
        emoji: &str,
    ) -> u64 {
        let mut d = json!({
            "user_id": user, "channel_id": channel, "message_id": message,
            "guild_id": GUILD_ID, "emoji": { "id": null, "name": emoji },
            "burst": false, "type": 0
        });
        if added {
            d["member"] = json!({
                "user": { "id": user, "username": format!("user{user}"), "avatar": null,
                          "discriminator": "0", "public_flags": 0 },
                "nick": null, "avatar": null, "banner": null, "roles": roles,
                "joined_at": "2017-03-13T19:19:14.040000+00:00", "premium_since": null,
                "deaf": false, "mute": false, "flags": 0, "pending": false,
                "communication_disabled_until": null
            });
            d["message_author_id"] = json!(BOT_ID);
            d["burst_colors"] = json!([]);
        }
        self.dispatch(
            if added {
                "MESSAGE_REACTION_ADD"
            } else {
                "MESSAGE_REACTION_REMOVE"
            },
            d,
        )
    }

    /// Drops the live connection without a close frame, as a network
    /// failure does.
    pub fn drop_connection(&self) {
        let tx = self.inner.gateway.live.lock().unwrap().take();
        if let Some(tx) = tx {
            let _ = tx.send(Message::Close(Some(CloseFrame {
                code: CloseCode::Library(4000),
                reason: "dropped by the test".into(),
            })));
        }
    }

    pub fn identifies(&self) -> usize {
        self.inner.gateway.identifies.load(Ordering::SeqCst)
    }

    pub fn resumes(&self) -> usize {
        self.inner.gateway.resumes.load(Ordering::SeqCst)
    }

    pub fn connected(&self) -> bool {
        self.inner.gateway.live.lock().unwrap().is_some()
    }

    pub fn identified_intents(&self) -> Option<u64> {
        *self.inner.gateway.intents.lock().unwrap()
    }
}

/// The signature Discord puts on `timestamp` + `body`.
pub fn sign(timestamp: &str, body: &[u8]) -> String {
    let key = SigningKey::from_bytes(&hex::decode(SECRET_KEY).unwrap().try_into().unwrap());
    let mut msg = timestamp.as_bytes().to_vec();
    msg.extend_from_slice(body);
    hex::encode(key.sign(&msg).to_bytes())
}

fn describe(pending: &[Posted]) -> Vec<String> {
    pending
        .iter()
        .map(|m| {
            let files: Vec<&str> = m.files.iter().map(|f| f.1.as_str()).collect();
            format!(
                "  - in {}: {} {files:?}",
                m.channel,
                m.text().replace('\n', " ⏎ ")
            )
        })
        .collect()
}

fn frame(op: u8, s: Option<u64>, t: Option<&str>, d: Value) -> Message {
    Message::Text(
        json!({ "op": op, "d": d, "s": s, "t": t })
            .to_string()
            .into(),
    )
}

/// Splits a `multipart/form-data` body into (name, filename, bytes).
fn multipart(content_type: &str, body: &[u8]) -> Vec<(String, Option<String>, Vec<u8>)> {
    let Some(boundary) = content_type.split("boundary=").nth(1) else {
        return vec![];
    };
    let delim = format!("--{}", boundary.trim_matches('"'));
    let text = body;
    let mut out = Vec::new();
    let positions: Vec<usize> = text
        .windows(delim.len())
        .enumerate()
        .filter(|(_, w)| *w == delim.as_bytes())
        .map(|(i, _)| i)
        .collect();
    for pair in positions.windows(2) {
        let part = &text[pair[0] + delim.len()..pair[1]];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let Some(split) = part.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..split]).to_string();
        let mut data = part[split + 4..].to_vec();
        if data.ends_with(b"\r\n") {
            data.truncate(data.len() - 2);
        }
        let field = |key: &str| {
            head.split(';')
                .map(str::trim)
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| {
                    v.trim_end_matches(|c: char| c == '"' || c.is_whitespace())
                        .split('"')
                        .next()
                        .unwrap_or_default()
                        .to_string()
                })
        };
        if let Some(name) = field("name") {
            out.push((name, field("filename"), data));
        }
    }
    out
}

async fn rest(
    State(inner): State<Arc<Inner>>,
    method: Method,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/{path}");
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (json_body, files) = if content_type.starts_with("multipart/form-data") {
        let parts = multipart(&content_type, &body);
        let payload = parts
            .iter()
            .find(|p| p.0 == "payload_json")
            .and_then(|p| serde_json::from_slice(&p.2).ok())
            .unwrap_or(Value::Null);
        let files = parts
            .into_iter()
            .filter(|p| p.0.starts_with("files["))
            .map(|p| (p.0, p.1.unwrap_or_default(), p.2))
            .collect();
        (payload, files)
    } else {
        (serde_json::from_slice(&body).unwrap_or(Value::Null), vec![])
    };
    inner.calls.lock().unwrap().push(Call {
        method: method.to_string(),
        path: path.clone(),
        body: json_body.clone(),
        files: files.clone(),
    });
    inner.changed.notify_waiters();
    if inner
        .rate_limited
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1"), ("x-ratelimit-scope", "user")],
            axum::Json(json!({ "message": "You are being rate limited.", "retry_after": 0.2, "global": false })),
        )
            .into_response();
    }
    if inner
        .failing
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            0,
            "500: Internal Server Error",
        );
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let by_token = matches!(parts.first(), Some(&"interactions" | &"webhooks"));
    if !by_token {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bot {TOKEN}")) {
            return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
        }
    }
    let fake = FakeDiscord {
        inner: inner.clone(),
        api_url: String::new(),
    };
    let ok = |v: Value| (StatusCode::OK, axum::Json(v)).into_response();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["gateway"]) => ok(json!({ "url": inner.gateway.url.lock().unwrap().clone() })),
        ("GET", ["users", "@me"]) => ok(json!({
            "id": BOT_ID, "username": "rollbot", "discriminator": "0", "global_name": null,
            "avatar": null, "bot": true, "mfa_enabled": false, "verified": true, "flags": 0
        })),
        (
            "PUT",
            ["applications", app, "guilds", _, "commands"] | ["applications", app, "commands"],
        ) => {
            if *app != APP_ID {
                return error(StatusCode::FORBIDDEN, 50001, "Missing Access");
            }
            let Some(cmds) = json_body.as_array() else {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            };
            for c in cmds {
                let ok_name = c["name"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty() && n.len() <= 32);
                let ok_desc = c["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty() && d.chars().count() <= 100);
                if !ok_name || !ok_desc {
                    return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
                }
            }
            ok(Value::Array(
                cmds.iter()
                    .map(|c| {
                        let mut c = c.clone();
                        c["id"] = json!(fake.next_id());
                        c["application_id"] = json!(APP_ID);
                        c["version"] = json!("1");
                        c
                    })
                    .collect(),
            ))
        }
        ("POST", ["channels", channel, "messages"]) => {
            if !inner.channels.lock().unwrap().contains(*channel) {
                return error(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
            }
            let empty = json_body["content"].as_str().is_none_or(str::is_empty)
                && json_body["embeds"].as_array().is_none_or(Vec::is_empty)
                && files.is_empty();
            if empty {
                return error(
                    StatusCode::BAD_REQUEST,
                    50006,
                    "Cannot send an empty message",
                );
            }
            let nonce = json_body["nonce"].as_str().map(str::to_string);
            if json_body["enforce_nonce"] == json!(true)
                && let Some(n) = &nonce
                && let Some(id) = inner
                    .nonces
                    .lock()
                    .unwrap()
                    .get(&(channel.to_string(), n.clone()))
            {
                // Discord returns the message it already has.
                return ok(message(id, channel, &json_body));
            }
            let id = fake.next_id();
            if let Some(n) = nonce {
                inner
                    .nonces
                    .lock()
                    .unwrap()
                    .insert((channel.to_string(), n), id.clone());
            }
            inner
                .messages
                .lock()
                .unwrap()
                .insert(id.clone(), (channel.to_string(), json_body.clone()));
            inner.pending.lock().unwrap().push(Posted {
                id: id.clone(),
                channel: channel.to_string(),
                body: json_body.clone(),
                files,
            });
            inner.changed.notify_waiters();
            if inner
                .lose_answers
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    0,
                    "500: Internal Server Error",
                );
            }
            ok(message(&id, channel, &json_body))
        }
        ("PATCH", ["channels", channel, "messages", id]) => {
            let mut messages = inner.messages.lock().unwrap();
            match messages.get_mut(*id) {
                Some((c, body)) if c == channel => {
                    *body = json_body.clone();
                    inner.changed.notify_waiters();
                    ok(message(id, channel, &json_body))
                }
                _ => error(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
            }
        }
        ("POST", ["channels", channel, "messages", id, "threads"]) => {
            let exists = inner
                .messages
                .lock()
                .unwrap()
                .get(*id)
                .is_some_and(|(c, _)| c == channel);
            if !exists {
                return error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
            }
            if json_body["name"].as_str().is_none_or(str::is_empty) {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            }
            if !inner.threads.lock().unwrap().insert(id.to_string()) {
                return error(
                    StatusCode::BAD_REQUEST,
                    160004,
                    "A thread has already been created for this message",
                );
            }
            inner.channels.lock().unwrap().insert(id.to_string());
            inner.changed.notify_waiters();
            ok(
                json!({ "id": id, "type": 11, "parent_id": channel, "guild_id": GUILD_ID, "name": json_body["name"] }),
            )
        }
        ("POST", ["users", "@me", "channels"]) => {
            let Some(user) = json_body["recipient_id"].as_str() else {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            };
            let dm = format!("dm{user}");
            inner.channels.lock().unwrap().insert(dm.clone());
            ok(json!({ "id": dm, "type": 1, "recipients": [{ "id": user }] }))
        }
        ("POST", ["interactions", id, token, "callback"]) => {
            let known = inner.interactions.lock().unwrap().get(*id).cloned();
            match known {
                Some(i) if i.token == *token && i.answered.is_none() => {
                    fake.answered(id, &json_body);
                    StatusCode::NO_CONTENT.into_response()
                }
                Some(i) if i.token == *token => error(
                    StatusCode::BAD_REQUEST,
                    40060,
                    "Interaction has already been acknowledged.",
                ),
                _ => error(StatusCode::NOT_FOUND, 10062, "Unknown interaction"),
            }
        }
        ("POST", ["webhooks", app, token]) => {
            let Some(id) = answered_interaction(&inner, app, token) else {
                return error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook");
            };
            let mid = fake.next_id();
            inner.pending.lock().unwrap().push(Posted {
                id: mid.clone(),
                channel: format!("interaction:{id}"),
                body: json_body.clone(),
                files,
            });
            inner.changed.notify_waiters();
            ok(message(&mid, "0", &json_body))
        }
        ("PATCH", ["webhooks", app, token, "messages", "@original"]) => {
            let Some(id) = answered_interaction(&inner, app, token) else {
                return error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook");
            };
            let deferred = inner
                .interactions
                .lock()
                .unwrap()
                .get(&id)
                .and_then(|i| i.answered)
                == Some(5);
            if !deferred {
                return error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
            }
            inner.pending.lock().unwrap().push(Posted {
                id: id.clone(),
                channel: format!("interaction:{id}"),
                body: json_body.clone(),
                files,
            });
            inner.changed.notify_waiters();
            ok(message(&id, "0", &json_body))
        }
        _ => error(StatusCode::NOT_FOUND, 0, "404: Not Found"),
    }
}

/// The interaction of a follow-up webhook, when it was answered.
fn answered_interaction(inner: &Inner, app: &str, token: &str) -> Option<String> {
    if app != APP_ID {
        return None;
    }
    inner
        .interactions
        .lock()
        .unwrap()
        .iter()
        .find(|(_, i)| i.token == token && i.answered.is_some())
        .map(|(id, _)| id.clone())
}

/// A Message object as Create/Edit Message return it.
fn message(id: &str, channel: &str, body: &Value) -> Value {
    json!({
        "id": id, "channel_id": channel, "type": 0, "tts": false, "pinned": false,
        "content": body["content"].as_str().unwrap_or_default(),
        "embeds": body["embeds"].clone(), "components": body["components"].clone(),
        "attachments": [], "mentions": [], "mention_roles": [], "mention_everyone": false,
        "timestamp": "2017-07-11T17:27:07.299000+00:00", "edited_timestamp": null,
        "author": { "id": BOT_ID, "username": "rollbot", "discriminator": "0", "avatar": null, "bot": true }
    })
}

async fn accept(listener: tokio::net::TcpListener, inner: Arc<Inner>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                serve(ws, inner).await;
            }
        });
    }
}

/// Privileged intents: GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT.
const PRIVILEGED: u64 = (1 << 1) | (1 << 8) | (1 << 15);

async fn serve(ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, inner: Arc<Inner>) {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
    });
    let g = &inner.gateway;
    let _ = tx.send(frame(
        10,
        None,
        None,
        json!({ "heartbeat_interval": 41250 }),
    ));
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            let _ = tx.send(Message::Close(Some(CloseFrame {
                code: CloseCode::Library(4002),
                reason: "Decode error".into(),
            })));
            break;
        };
        let token_ok = |t: &Value| t.as_str().map(|t| t.trim_start_matches("Bot ")) == Some(TOKEN);
        match v["op"].as_u64() {
            Some(1) => {
                g.heartbeats.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(frame(11, None, None, Value::Null));
            }
            Some(2) => {
                if !token_ok(&v["d"]["token"]) {
                    let _ = tx.send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Library(4004),
                        reason: "Authentication failed.".into(),
                    })));
                    break;
                }
                let intents = v["d"]["intents"].as_u64().unwrap_or(0);
                *g.intents.lock().unwrap() = Some(intents);
                if intents & PRIVILEGED != 0 {
                    let _ = tx.send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Library(4014),
                        reason: "Disallowed intent(s).".into(),
                    })));
                    break;
                }
                g.identifies.fetch_add(1, Ordering::SeqCst);
                let session = format!("session-{}", g.identifies.load(Ordering::SeqCst));
                *g.session.lock().unwrap() = Some(session.clone());
                // A new session: earlier dispatches are not replayed.
                g.log.lock().unwrap().clear();
                g.seq.store(0, Ordering::SeqCst);
                let url = g.url.lock().unwrap().clone();
                let seq = g.seq.fetch_add(1, Ordering::SeqCst) + 1;
                let ready = json!({
                    "v": 10,
                    "user": { "id": BOT_ID, "username": "rollbot", "discriminator": "0", "global_name": null,
                              "avatar": null, "bot": true, "mfa_enabled": false, "verified": true, "email": null, "flags": 0 },
                    "guilds": [], "session_id": session, "resume_gateway_url": url,
                    "shard": [0, 1], "application": { "id": APP_ID, "flags": 0 }
                });
                g.log
                    .lock()
                    .unwrap()
                    .push((seq, "READY".into(), ready.clone()));
                let _ = tx.send(frame(0, Some(seq), Some("READY"), ready));
                *g.live.lock().unwrap() = Some(tx.clone());
                inner.changed.notify_waiters();
            }
            Some(6) => {
                let same = g.session.lock().unwrap().as_deref() == v["d"]["session_id"].as_str();
                if !token_ok(&v["d"]["token"]) || !same {
                    let _ = tx.send(frame(9, None, None, json!(false)));
                    continue;
                }
                g.resumes.fetch_add(1, Ordering::SeqCst);
                let after = v["d"]["seq"].as_u64().unwrap_or(0);
                // Replays what the client missed, then RESUMED; the lock is
                // held so no new dispatch slips between them.
                let mut live = g.live.lock().unwrap();
                for (seq, t, d) in g.log.lock().unwrap().iter().filter(|(s, _, _)| *s > after) {
                    let _ = tx.send(frame(0, Some(*seq), Some(t), d.clone()));
                }
                let seq = g.seq.fetch_add(1, Ordering::SeqCst) + 1;
                g.log
                    .lock()
                    .unwrap()
                    .push((seq, "RESUMED".into(), json!({})));
                let _ = tx.send(frame(0, Some(seq), Some("RESUMED"), json!({})));
                *live = Some(tx.clone());
                drop(live);
                inner.changed.notify_waiters();
            }
            _ => {
                let _ = tx.send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Library(4001),
                    reason: "Unknown opcode.".into(),
                })));
                break;
            }
        }
    }
    // This connection is gone: dispatches wait for a resume.
    let mut live = g.live.lock().unwrap();
    if live.as_ref().is_some_and(|l| l.same_channel(&tx)) {
        *live = None;
    }
    drop(live);
    writer.abort();
    inner.changed.notify_waiters();
}
