//! Socket Mode end to end: rollbot started from a `[slack]` config with
//! `socket_mode = true` connects to the fake Slack (`apps.connections.open`,
//! then its WebSocket), receives envelopes the way Slack sends them, and
//! must acknowledge each one. The engine runs with a scripted executor; what
//! rollbot posts goes through the fake Web API.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rollbot::chat::handler::CommandHandler;
use rollbot::chat::slack::socket::SocketMode;
use rollbot::chat::slack::{Slack, SlackInbound, SlackSetupError};
use rollbot::config::Config;
use rollbot::domain::{ManualClock, ProposalId, State, VoteVia};
use rollbot::engine::{Engine, Ports};
use rollbot::outbox::RetryPolicy;
use rollbot::ports::memory::{ScriptedExecutor, ScriptedVerifier};
use rollbot::store::Store;
use rollbot::templates::Templates;
use serde_json::{Value, json};
use support::fake_slack::FakeSlack;
use support::*;

const CHANNEL: &str = "CINCIDENT";

struct SocketTester {
    engine: Engine,
    executor: Arc<ScriptedExecutor>,
    inbound: Arc<SlackInbound>,
    slack: Slack,
    socket: SocketMode,
    fake: FakeSlack,
    worker: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// [`CONFIG`] plus a `[slack]` section in Socket Mode pointing at `fake`,
/// with the tokens in files under `dir`.
fn socket_config(fake: &FakeSlack, dir: &std::path::Path, app_token: &str) -> Config {
    for (file, value) in [
        ("bot-token", "xoxb-test-token"),
        ("signing-secret", "8f742231b10e8888abcd99yyyzzz85a5"),
        ("app-token", app_token),
    ] {
        std::fs::write(dir.join(file), value).unwrap();
    }
    let d = dir.display();
    let text = format!(
        r#"{CONFIG}
        [slack]
        api_url = "{api}"
        socket_mode = true
        bot_token = {{ file = "{d}/bot-token" }}
        signing_secret = {{ file = "{d}/signing-secret" }}
        app_token = {{ file = "{d}/app-token" }}
        "#,
        api = fake.api_url,
    );
    Config::parse(&text).unwrap()
}

impl SocketTester {
    async fn start() -> Self {
        let fake = FakeSlack::start().await;
        Self::try_start(fake, "xapp-1-A0TEST-1-test")
            .await
            .expect("Socket Mode starts")
    }

    /// Starts the Slack adapter the way `App::start` does, with a scripted
    /// executor, and waits until the first connection is open.
    async fn try_start(fake: FakeSlack, app_token: &str) -> Result<Self, SlackSetupError> {
        let dir = tempfile::tempdir().unwrap();
        let config = socket_config(&fake, dir.path(), app_token);
        let slack_config = config.slack.as_ref().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let templates = Arc::new(Templates::load().unwrap());
        let slack = Slack::new(slack_config, &store, templates)?;
        let worker = slack.deliver(RetryPolicy {
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
        });
        let executor = ScriptedExecutor::new(reference_plan());
        let engine = Engine::new(
            store,
            config.services(),
            Ports {
                chat: slack.chat.clone(),
                executor: executor.clone(),
                verifier: ScriptedVerifier::new(),
                clock: Arc::new(ManualClock::new(t0())),
            },
        );
        slack.register_bot(&engine).await?;
        let handler = CommandHandler::new(engine.clone(), slack.chat.clone());
        let inbound = slack.inbound(slack_config, handler)?;
        let socket = match slack.socket_mode(slack_config, inbound.clone()).await {
            Ok(socket) => socket.expect("socket_mode = true starts Socket Mode"),
            Err(e) => {
                worker.abort();
                return Err(e);
            }
        };
        fake.wait_until("a Socket Mode connection", |f| f.sockets_open() >= 1)
            .await;
        Ok(Self {
            engine,
            executor,
            inbound,
            slack,
            socket,
            fake,
            worker,
            _dir: dir,
        })
    }

    /// Waits for event tasks, the engine and the outbox, then fails on panics.
    async fn settle(&self) {
        self.inbound.wait_idle().await;
        self.engine.wait_idle().await;
        self.slack.chat.outbox().wait_empty().await;
        assert!(!self.inbound.background_panicked());
        assert!(!self.engine.background_panicked());
    }

    /// Sends a `slash_commands` envelope; returns its acknowledgement.
    async fn command(&self, who: &str, text: &str) -> Value {
        // The payload Slack sends over Socket Mode: the HTTP form's fields as JSON.
        let payload = json!({
            "token": "legacy", "team_id": "T0TEST", "team_domain": "test",
            "channel_id": CHANNEL, "channel_name": "incident",
            "user_id": who, "user_name": who, "command": "/rollback", "text": text,
            "api_app_id": "A0TEST", "is_enterprise_install": "false",
            "response_url": "https://hooks.slack.com/commands/T0TEST/1/abc",
            "trigger_id": "1.2.3"
        });
        let id = self
            .fake
            .send_envelope("slash_commands", payload, true, &[]);
        let ack = self.fake.ack(&id).await;
        self.settle().await;
        ack
    }

    /// Sends a `reaction_added` `events_api` envelope; returns its id.
    async fn react(&self, event_id: &str, who: &str, ts: &str, extra: &[(&str, Value)]) -> String {
        let payload = json!({
            "token": "XXYYZZ", "team_id": "T0TEST", "api_app_id": "A0TEST",
            "event": {
                "type": "reaction_added", "user": who, "reaction": "white_check_mark",
                "item_user": "UROLLBOT",
                "item": { "type": "message", "channel": CHANNEL, "ts": ts },
                "event_ts": "1700000100.000100"
            },
            "type": "event_callback", "authed_users": ["UROLLBOT"],
            "event_id": event_id, "event_time": 1700000100
        });
        let id = self.fake.send_envelope("events_api", payload, false, extra);
        self.fake.ack(&id).await;
        self.settle().await;
        id
    }

    /// `/rollback payment-api` by Alice; returns the proposal and its ts.
    async fn propose(&self) -> (ProposalId, String) {
        let ack = self
            .command("UALICE", "payment-api payment success rate 95%")
            .await;
        let payload = &ack["payload"];
        assert_eq!(payload["response_type"], "ephemeral", "{ack}");
        assert!(
            payload["text"]
                .as_str()
                .unwrap()
                .contains("Planning a rollback of payment-api"),
            "{ack}"
        );
        let posts = self.fake.calls_to("chat.postMessage");
        assert_eq!(posts.len(), 1, "{posts:#?}");
        assert_eq!(posts[0].body["channel"], CHANNEL);
        self.fake.expect_post("Rollback proposal");
        let p = self.engine.store().list().unwrap().pop().unwrap();
        assert!(
            posts[0].body["text"]
                .as_str()
                .unwrap()
                .contains(p.id.as_str())
        );
        let at = p.primary_message().unwrap().clone();
        assert_eq!(
            (at.platform.as_str(), at.channel.as_str()),
            ("slack", CHANNEL)
        );
        (p.id, at.message)
    }

    fn votes(&self, id: &ProposalId) -> usize {
        self.engine
            .store()
            .timeline(id)
            .unwrap()
            .iter()
            .filter(|e| e.kind.name() == "voted")
            .count()
    }
}

impl SocketTester {
    /// The end-of-test checks: inbound tasks, the engine and the outbox
    /// settle without a panic, and every message the bot showed on Slack
    /// was consumed.
    async fn finish(self) -> Result<(), Failure> {
        tokio::time::timeout(IDLE_LIMIT, async {
            self.inbound.wait_idle().await;
            self.engine.wait_idle().await;
            self.slack.chat.outbox().wait_empty().await;
        })
        .await
        .map_err(|_| Failure::StillBusy(IDLE_LIMIT))?;
        if self.inbound.background_panicked() {
            return Err(Failure::BackgroundPanic);
        }
        finish_slack(&self.engine, &self.fake).await
    }
}

/// Runs a test against a started [`SocketTester`] under the harness's
/// timeout and end-of-test checks ([`SocketTester::finish`]).
async fn run<F, Fut>(body: F)
where
    F: FnOnce(SocketTester) -> Fut,
    Fut: std::future::Future<Output = SocketTester>,
{
    run_world(SocketTester::start, body, SocketTester::finish).await;
}

impl Drop for SocketTester {
    fn drop(&mut self) {
        self.worker.abort();
    }
}

#[tokio::test]
async fn a_command_and_two_reactions_over_socket_mode_roll_back_once() {
    run(|t| async move {
        // The connection came from apps.connections.open with the app token.
        assert!(!t.fake.calls_to("apps.connections.open").is_empty());
        assert_eq!(t.fake.sockets_refused(), 0);

        let (id, ts) = t.propose().await;
        assert_eq!(ts, "1700000000.000001");

        let first = t.react("Ev1", "UBOB", &ts, &[]).await;
        assert_eq!(t.votes(&id), 1);
        assert_eq!(t.executor.executions(), 0);
        let updates = t.fake.calls_to("chat.update");
        assert_eq!(updates.len(), 1, "{updates:#?}");
        assert!(
            updates[0]
                .body
                .to_string()
                .contains("1 of 2 approvals: <@UBOB>")
        );

        // Slack redelivers an event it thinks was not acknowledged: a new
        // envelope, the same event_id. It is acknowledged and counts once.
        let retry = t
            .react(
                "Ev1",
                "UBOB",
                &ts,
                &[
                    ("retry_attempt", json!(1)),
                    ("retry_reason", json!("timeout")),
                ],
            )
            .await;
        assert_ne!(retry, first);
        assert_eq!(t.votes(&id), 1);
        assert_eq!(t.fake.calls_to("chat.update").len(), 1);

        t.react("Ev2", "UCAROL", &ts, &[]).await;
        assert_eq!(t.executor.executions(), 1);
        let p = t.engine.get(&id).unwrap();
        assert_eq!(p.state, State::RolledBack);
        let who: Vec<_> = p.approvers().map(|u| u.as_str()).collect();
        assert_eq!(who, ["slack:UBOB", "slack:UCAROL"]);
        // Progress went into the proposal's thread through the Web API.
        let thread = t.fake.calls_to("chat.postMessage");
        assert!(thread.len() > 1);
        assert!(
            thread[1..]
                .iter()
                .all(|c| c.body["thread_ts"] == ts.as_str())
        );

        // Every envelope was acknowledged exactly once, and the client sent
        // nothing but acknowledgements; only the command's carried a payload.
        let frames = t.fake.socket_frames();
        assert_eq!(frames.len(), 4, "{frames:#?}");
        let ids: std::collections::BTreeSet<_> = frames
            .iter()
            .map(|f| f["envelope_id"].as_str().expect("an acknowledgement"))
            .collect();
        assert_eq!(
            ids.len(),
            4,
            "one acknowledgement per envelope: {frames:#?}"
        );
        let with_payload = frames.iter().filter(|f| f.get("payload").is_some()).count();
        assert_eq!(with_payload, 1, "{frames:#?}");
        t.fake.expect_replies(
            &ts,
            &[
                "Rolling back payment-api",
                "`successfully rolled out`",
                "Rollback complete",
            ],
        );
        t.socket.shutdown().await;
        t
    })
    .await;
}

#[tokio::test]
async fn buttons_arrive_as_interactive_envelopes() {
    run(|t| async move {
        let (id, ts) = t.propose().await;
        for who in ["UBOB", "UCAROL"] {
            let payload = json!({
                "type": "block_actions",
                "user": { "id": who, "username": who, "team_id": "T0TEST" },
                "api_app_id": "A0TEST", "token": "legacy",
                "container": { "type": "message", "message_ts": ts, "channel_id": CHANNEL, "is_ephemeral": false },
                "trigger_id": "1.2.3",
                "team": { "id": "T0TEST", "domain": "test" },
                "channel": { "id": CHANNEL, "name": "incident" },
                "response_url": "https://hooks.slack.com/actions/T0TEST/1/abc",
                "actions": [{
                    "action_id": "rollbot_approve", "block_id": "rollbot_vote",
                    "text": { "type": "plain_text", "text": "Approve" },
                    "value": id.as_str(), "type": "button", "action_ts": "1700000101.000200"
                }]
            });
            let envelope = t.fake.send_envelope("interactive", payload, true, &[]);
            let ack = t.fake.ack(&envelope).await;
            assert_eq!(ack, json!({ "envelope_id": envelope }));
            t.settle().await;
        }
        assert_eq!(t.executor.executions(), 1);
        let via: Vec<_> = t
            .engine
            .store()
            .timeline(&id)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.kind {
                rollbot::domain::EventKind::Voted { via, .. } => Some(via),
                _ => None,
            })
            .collect();
        assert_eq!(via, [VoteVia::Button; 2]);
        t.fake.expect_replies(&ts, &["Rolling back payment-api", "`successfully rolled out`", "Rollback complete"]);
        t.socket.shutdown().await;
        t
    })
    .await;
}

#[tokio::test]
async fn a_refresh_request_reconnects_with_a_fresh_url() {
    run(|t| async move {
        let opened = t.fake.calls_to("apps.connections.open").len();
        let accepted = t.fake.sockets_accepted();
        t.fake.request_refresh();
        t.fake
            .wait_until("a new Socket Mode connection", |f| {
                f.sockets_accepted() > accepted && f.sockets_open() >= 1
            })
            .await;
        // Each connection used a URL of its own: tickets are single-use.
        assert!(t.fake.calls_to("apps.connections.open").len() > opened);
        assert_eq!(t.fake.sockets_refused(), 0);
        // Envelopes on the new connection are handled and acknowledged.
        let ack = t.command("UBOB", "list").await;
        assert_eq!(ack["payload"]["response_type"], "ephemeral", "{ack}");
        t.socket.shutdown().await;
        t
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_the_connections() {
    run(|t| async move {
        t.socket.shutdown().await;
        t.fake
            .wait_until("every Socket Mode connection closed", |f| {
                f.sockets_open() == 0
            })
            .await;
        t
    })
    .await;
}

#[tokio::test]
async fn a_bot_token_in_app_token_fails_start_up_and_says_what_to_fix() {
    bounded(async {
        let fake = FakeSlack::start().await;
        let err = match SocketTester::try_start(fake.clone(), "xoxb-not-an-app-token").await {
            Ok(_) => panic!("a bot token cannot open Socket Mode"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("\"not_allowed_token_type\""), "{err}");
        assert!(err.contains("slack.app_token"), "{err}");
        assert!(
            !err.contains("xoxb-not-an-app-token"),
            "never print a token: {err}"
        );
        assert_eq!(fake.sockets_accepted(), 0);
        fake.expect_no_messages();
    })
    .await;
}
