//! The Slack adapter end to end: signed requests into the real axum router,
//! the engine with a scripted executor, and a fake Slack Web API on
//! 127.0.0.1 that records what rollbot sent.

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rollbot::chat::handler::CommandHandler;
use rollbot::chat::slack::{Emoji, Session, SlackChat, SlackInbound, inbound};
use rollbot::config::Config;
use rollbot::domain::{ManualClock, ProposalId, State};
use rollbot::engine::{Engine, Ports};
use rollbot::http::{self, AppState};
use rollbot::outbox::{Outbox, RetryPolicy};
use rollbot::ports::memory::{ScriptedExecutor, ScriptedVerifier};
use rollbot::store::Store;
use rollbot::templates::Templates;
use serde_json::{Value, json};
use sha2::Sha256;
use support::fake_slack::FakeSlack;
use support::*;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const CHANNEL: &str = "CINCIDENT";

struct SlackTester {
    engine: Engine,
    executor: Arc<ScriptedExecutor>,
    inbound: Arc<SlackInbound>,
    chat: Arc<SlackChat>,
    fake: FakeSlack,
    url: String,
    http: reqwest::Client,
    worker: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl SlackTester {
    async fn new() -> Self {
        Self::with_policy(RetryPolicy {
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
        })
        .await
    }

    async fn with_policy(policy: RetryPolicy) -> Self {
        let fake = FakeSlack::start().await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let config = Config::parse(CONFIG).unwrap();
        let templates = Arc::new(Templates::load().unwrap());
        let session = Session::new(&fake.api_url, "xoxb-test-token".into()).unwrap();
        let outbox = Outbox::open(&store, "slack").unwrap();
        let chat = Arc::new(SlackChat::new(
            session.clone(),
            outbox.clone(),
            templates,
            Emoji {
                approve: "white_check_mark".into(),
                reject: "x".into(),
            },
        ));
        let worker = tokio::spawn(outbox.run(chat.clone(), policy));
        let executor = ScriptedExecutor::new(reference_plan());
        let engine = Engine::new(
            store,
            config.services(),
            Ports {
                chat: chat.clone(),
                executor: executor.clone(),
                verifier: ScriptedVerifier::new(),
                clock: Arc::new(ManualClock::new(t0())),
            },
        );
        let bot = session.bot_user_id().await.unwrap();
        engine.add_bot_identity(user(&format!("slack:{bot}")));
        let handler = CommandHandler::new(engine.clone(), chat.clone());
        let inbound = SlackInbound::new(handler, chat.clone(), SECRET.into());
        let state = AppState::new(engine.clone(), Arc::new(AtomicBool::new(true)));
        let router = http::router(state, 1 << 20).merge(inbound::router(inbound.clone(), 1 << 20));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(http::serve(listener, router, std::future::pending()));
        Self {
            engine,
            executor,
            inbound,
            chat,
            fake,
            url,
            http: reqwest::Client::new(),
            worker,
            _dir: dir,
        }
    }

    fn sign(body: &str, ts: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("v0:{ts}:{body}").as_bytes());
        format!("v0={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// POSTs `body` signed at `ts` (now when `None`).
    async fn post_signed(
        &self,
        path: &str,
        content_type: &str,
        body: String,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let ts = chrono::Utc::now().timestamp();
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", Self::sign(&body, ts));
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.body(body).send().await.unwrap()
    }

    async fn command(&self, who: &str, text: &str) -> Value {
        let body = serde_urlencoded::to_string([
            ("token", "legacy"),
            ("team_id", "T0TEST"),
            ("team_domain", "test"),
            ("channel_id", CHANNEL),
            ("channel_name", "incident"),
            ("user_id", who),
            ("user_name", who),
            ("command", "/rollback"),
            ("text", text),
            (
                "response_url",
                "https://hooks.slack.com/commands/T0TEST/1/abc",
            ),
            // Slack gives every invocation its own trigger id.
            ("trigger_id", &next_trigger_id()),
        ])
        .unwrap();
        let r = self
            .post_signed(
                "/slack/commands",
                "application/x-www-form-urlencoded",
                body,
                &[],
            )
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    fn reaction_event(event_id: &str, who: &str, emoji: &str, ts: &str, added: bool) -> String {
        json!({
            "token": "XXYYZZ", "team_id": "T0TEST", "api_app_id": "A0TEST",
            "event": {
                "type": if added { "reaction_added" } else { "reaction_removed" },
                "user": who, "reaction": emoji, "item_user": "UROLLBOT",
                "item": { "type": "message", "channel": CHANNEL, "ts": ts },
                "event_ts": "1700000100.000100"
            },
            "type": "event_callback", "authed_users": ["UROLLBOT"],
            "event_id": event_id, "event_time": 1700000100
        })
        .to_string()
    }

    async fn react(&self, event_id: &str, who: &str, emoji: &str, ts: &str) {
        let body = Self::reaction_event(event_id, who, emoji, ts, true);
        let r = self
            .post_signed("/slack/events", "application/json", body, &[])
            .await;
        assert_eq!(r.status(), 200);
        self.settle().await;
    }

    async fn click(&self, who: &str, action: &str, id: &ProposalId, ts: &str) {
        self.click_quiet(who, action, id, ts).await;
        self.settle().await;
    }

    /// Clicks and waits for the engine, not for Slack to receive anything.
    async fn click_quiet(&self, who: &str, action: &str, id: &ProposalId, ts: &str) {
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
                "action_id": action, "block_id": "rollbot_vote",
                "text": { "type": "plain_text", "text": "Approve" },
                "value": id.as_str(), "type": "button", "action_ts": "1700000101.000200"
            }]
        });
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        let r = self
            .post_signed(
                "/slack/interactions",
                "application/x-www-form-urlencoded",
                body,
                &[],
            )
            .await;
        assert_eq!(r.status(), 200);
        self.inbound.wait_idle().await;
        self.engine.wait_idle().await;
    }

    /// Waits for event tasks, the engine and the outbox, then fails on panics.
    async fn settle(&self) {
        self.inbound.wait_idle().await;
        self.engine.wait_idle().await;
        self.chat.outbox().wait_empty().await;
        assert!(!self.inbound.background_panicked());
        assert!(!self.engine.background_panicked());
    }

    /// `/rollback payment-api` by Alice; returns the proposal id and its ts.
    async fn propose(&self) -> (ProposalId, String) {
        let reply = self
            .command("UALICE", "payment-api payment success rate 95%")
            .await;
        assert!(
            reply["text"]
                .as_str()
                .unwrap()
                .contains("Planning a rollback of payment-api"),
            "{reply}"
        );
        self.settle().await;
        let posts = self.fake.calls_to("chat.postMessage");
        assert_eq!(posts.len(), 1, "{posts:#?}");
        let post = &self.fake.expect_post("Rollback proposal").body;
        assert_eq!(post["channel"], CHANNEL);
        let p = self.engine.store().list().unwrap().pop().unwrap();
        assert!(post["text"].as_str().unwrap().contains(p.id.as_str()));
        let at = p.primary_message().unwrap();
        assert_eq!(at.platform, "slack");
        assert_eq!(at.channel, CHANNEL);
        (p.id.clone(), at.message.clone())
    }

    /// Consumes the pending ephemeral notes to `who`; returns their texts.
    fn ephemerals_to(&self, who: &str) -> Vec<String> {
        self.fake
            .take_all(|c| c.method == "chat.postEphemeral" && c.body["user"] == who)
            .into_iter()
            .map(|c| c.body["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn update_texts(&self) -> Vec<String> {
        self.fake
            .calls_to("chat.update")
            .into_iter()
            .map(|c| c.body.to_string())
            .collect()
    }
}

impl SlackTester {
    /// The end-of-test checks: inbound tasks, the engine and the outbox
    /// settle without a panic, and every message the bot showed on Slack
    /// was consumed.
    async fn finish(self) -> Result<(), Failure> {
        tokio::time::timeout(IDLE_LIMIT, async {
            self.inbound.wait_idle().await;
            self.engine.wait_idle().await;
            self.chat.outbox().wait_empty().await;
        })
        .await
        .map_err(|_| Failure::StillBusy(IDLE_LIMIT))?;
        if self.inbound.background_panicked() {
            return Err(Failure::BackgroundPanic);
        }
        finish_slack(&self.engine, &self.fake).await
    }
}

/// Runs a test against a fresh [`SlackTester`] under the harness's timeout
/// and end-of-test checks ([`SlackTester::finish`]).
async fn run<F, Fut>(body: F)
where
    F: FnOnce(SlackTester) -> Fut,
    Fut: std::future::Future<Output = SlackTester>,
{
    run_world(SlackTester::new, body, SlackTester::finish).await;
}

impl Drop for SlackTester {
    fn drop(&mut self) {
        self.worker.abort();
    }
}

#[tokio::test]
async fn two_reactions_update_the_message_and_start_the_rollback() {
    run(|t| async move {
        let (id, ts) = t.propose().await;
        assert_eq!(ts, "1700000000.000001");
        let post = &t.fake.calls_to("chat.postMessage")[0].body;
        let blocks = post["blocks"].to_string();
        assert!(blocks.contains("rollbot_approve") && blocks.contains("rollbot_reject"));
        assert!(blocks.contains("0 of 2 approvals"), "{blocks}");

        t.react("Ev1", "UBOB", "white_check_mark", &ts).await;
        let updates = t.update_texts();
        assert_eq!(updates.len(), 1, "{updates:#?}");
        assert!(
            updates[0].contains("1 of 2 approvals: <@UBOB>"),
            "{}",
            updates[0]
        );
        assert_eq!(t.executor.executions(), 0);

        t.react("Ev2", "UCAROL", "white_check_mark", &ts).await;
        let updates = t.update_texts();
        assert!(
            updates[1].contains("2 of 2 approvals: <@UBOB>, <@UCAROL>"),
            "{}",
            updates[1]
        );
        assert!(
            !updates.last().unwrap().contains("rollbot_approve"),
            "buttons go once votes close"
        );
        assert_eq!(t.executor.executions(), 1);
        t.engine.get(&id).unwrap();
        assert_eq!(t.engine.get(&id).unwrap().state, State::RolledBack);
        // Progress and the result went into the proposal's thread.
        let thread: Vec<_> = t
            .fake
            .calls_to("chat.postMessage")
            .into_iter()
            .skip(1)
            .collect();
        assert!(!thread.is_empty());
        assert!(thread.iter().all(|c| c.body["thread_ts"] == ts.as_str()));
        assert!(
            thread[0].body["text"]
                .as_str()
                .unwrap()
                .contains("Rolling back payment-api")
        );
        t.fake.expect_replies(
            &ts,
            &[
                "Rolling back payment-api",
                "`successfully rolled out`",
                "Rollback complete",
            ],
        );
        // Every update went to the proposal's message.
        assert!(
            t.fake
                .calls_to("chat.update")
                .iter()
                .all(|c| c.body["ts"] == ts.as_str())
        );
        t
    })
    .await;
}

#[tokio::test]
async fn self_approval_and_unauthorised_votes_are_refused_privately() {
    run(|t| async move {
        let (id, ts) = t.propose().await;
        t.react("Ev1", "UALICE", "white_check_mark", &ts).await;
        t.react("Ev2", "UMALLORY", "white_check_mark", &ts).await;
        t.react("Ev3", "UROLLBOT", "white_check_mark", &ts).await;
        let alice = t.ephemerals_to("UALICE");
        assert_eq!(alice.len(), 1, "{alice:?}");
        assert!(
            alice[0].contains(id.as_str()) && alice[0].contains("you proposed this rollback"),
            "{alice:?}"
        );
        let mallory = t.ephemerals_to("UMALLORY");
        assert_eq!(mallory.len(), 1);
        assert!(
            mallory[0].contains("not an authorised approver for payment-api"),
            "{mallory:?}"
        );
        // rollbot's own refused vote is not worth a note to itself.
        assert_eq!(t.ephemerals_to("UROLLBOT").len(), 0);
        for e in t.fake.calls_to("chat.postEphemeral") {
            assert_eq!(e.body["channel"], CHANNEL);
        }
        assert!(
            t.update_texts().is_empty(),
            "refusals do not touch the message"
        );
        let p = t.engine.get(&id).unwrap();
        assert!(p.approvals.is_empty());
        assert_eq!(p.state, State::Proposed);
        t
    })
    .await;
}

#[tokio::test]
async fn buttons_work_like_reactions() {
    run(|t| async move {
        let (id, ts) = t.propose().await;
        t.click("UALICE", "rollbot_approve", &id, &ts).await;
        assert_eq!(t.ephemerals_to("UALICE").len(), 1);
        t.click("UBOB", "rollbot_approve", &id, &ts).await;
        assert!(t.update_texts()[0].contains("1 of 2 approvals: <@UBOB>"));
        t.click("UCAROL", "rollbot_approve", &id, &ts).await;
        assert_eq!(t.executor.executions(), 1);
        let p = t.engine.get(&id).unwrap();
        assert_eq!(p.state, State::RolledBack);
        let timeline = t.engine.store().timeline(&id).unwrap();
        let via: Vec<_> = timeline
            .iter()
            .filter_map(|e| match &e.kind {
                rollbot::domain::EventKind::Voted { via, .. } => Some(*via),
                _ => None,
            })
            .collect();
        assert_eq!(via, [rollbot::domain::VoteVia::Button; 2]);
        t.fake.expect_replies(
            &ts,
            &[
                "Rolling back payment-api",
                "`successfully rolled out`",
                "Rollback complete",
            ],
        );
        t
    })
    .await;
}

#[tokio::test]
async fn a_reject_reaction_vetoes_and_removing_a_reaction_withdraws() {
    run(|t| async move {
        let (id, ts) = t.propose().await;
        t.react("Ev1", "UBOB", "white_check_mark", &ts).await;
        let body = SlackTester::reaction_event("Ev2", "UBOB", "white_check_mark", &ts, false);
        t.post_signed("/slack/events", "application/json", body, &[])
            .await;
        t.settle().await;
        assert!(t.engine.get(&id).unwrap().approvals.is_empty());
        assert!(t.update_texts()[1].contains("0 of 2 approvals"));
        t.react("Ev3", "UCAROL", "x", &ts).await;
        assert_eq!(t.engine.get(&id).unwrap().state, State::Rejected);
        // Other emoji are not votes.
        t.react("Ev4", "UBOB", "tada", &ts).await;
        assert_eq!(t.update_texts().len(), 3);
        t
    })
    .await;
}

#[tokio::test]
async fn a_retried_event_counts_once() {
    run(|t| async move {
        let (id, ts) = t.propose().await;
        let body = SlackTester::reaction_event("EvSame", "UBOB", "white_check_mark", &ts, true);
        t.post_signed("/slack/events", "application/json", body.clone(), &[])
            .await;
        t.settle().await;
        let retry = t
            .post_signed(
                "/slack/events",
                "application/json",
                body,
                &[
                    ("x-slack-retry-num", "1"),
                    ("x-slack-retry-reason", "http_timeout"),
                ],
            )
            .await;
        assert_eq!(retry.status(), 200);
        t.settle().await;
        let voted = t
            .engine
            .store()
            .timeline(&id)
            .unwrap()
            .iter()
            .filter(|e| e.kind.name() == "voted")
            .count();
        assert_eq!(voted, 1);
        assert_eq!(t.update_texts().len(), 1);
        t
    })
    .await;
}

#[tokio::test]
async fn unsigned_or_stale_requests_are_rejected_and_nothing_is_stored() {
    run(|t| async move {
        let form = "team_id=T0&channel_id=C1&user_id=UALICE&command=%2Frollback&text=payment-api&response_url=https%3A%2F%2Fhooks.slack.com%2Fx&trigger_id=1";
        let now = chrono::Utc::now().timestamp();
        let cases = [
            ("wrong secret", now, "v0=0000000000000000000000000000000000000000000000000000000000000000".to_string()),
            ("stale", now - 301, SlackTester::sign(form, now - 301)),
            ("future", now + 400, SlackTester::sign(form, now + 400)),
        ];
        for (path, ctype) in [
            ("/slack/commands", "application/x-www-form-urlencoded"),
            ("/slack/events", "application/json"),
            ("/slack/interactions", "application/x-www-form-urlencoded"),
        ] {
            for (what, ts, sig) in &cases {
                let r = t
                    .http
                    .post(format!("{}{path}", t.url))
                    .header("content-type", ctype)
                    .header("x-slack-request-timestamp", ts.to_string())
                    .header("x-slack-signature", sig)
                    .body(form)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 401, "{path} {what}");
            }
            let r = t
                .http
                .post(format!("{}{path}", t.url))
                .body(form)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{path} unsigned");
        }
        t.settle().await;
        assert!(t.engine.store().list().unwrap().is_empty());
        assert!(t.fake.calls_to("chat.postMessage").is_empty());
        assert!(t.fake.calls_to("chat.postEphemeral").is_empty());
        t
    })
    .await;
}

#[tokio::test]
async fn url_verification_echoes_the_challenge() {
    run(|t| async move {
        let body =
            std::fs::read_to_string("tests/data/slack/events/url_verification.docs.json").unwrap();
        let r = t
            .post_signed("/slack/events", "application/json", body, &[])
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v,
            json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
        );
        t
    })
    .await;
}

#[tokio::test]
async fn commands_answer_privately_with_suggestions_and_lists() {
    run(|t| async move {
        let r = t.command("UBOB", "stauts").await;
        assert_eq!(r["response_type"], "ephemeral");
        let text = r["text"].as_str().unwrap();
        assert!(
            text.contains("Did you mean `status`?") && text.contains("*Usage*"),
            "{text}"
        );
        let r = t.command("UBOB", "payment-api --to-revison 2").await;
        assert!(
            r["text"]
                .as_str()
                .unwrap()
                .contains("Did you mean `--to-revision`?")
        );
        let (id, _) = t.propose().await;
        let r = t.command("UBOB", "list").await;
        assert!(r.to_string().contains(id.as_str()), "{r}");
        let r = t.command("UBOB", &format!("status {id}")).await;
        assert!(r.to_string().contains("waiting for approvals"), "{r}");
        let r = t.command("UBOB", "history payment-api").await;
        assert!(r.to_string().contains(id.as_str()));
        // A second proposal for the same service is refused, privately.
        t.command("UBOB", "payment-api").await;
        t.settle().await;
        let bob = t.ephemerals_to("UBOB");
        assert!(
            bob.iter()
                .any(|m| m.contains("already has an open rollback proposal")),
            "{bob:?}"
        );
        // Cancelling by someone not allowed, then by the proposer.
        // Cancelling is quick: the answer to the command is its outcome.
        let r = t.command("UMALLORY", &format!("cancel {id}")).await;
        assert!(r.to_string().contains("Only the proposer"), "{r}");
        let r = t.command("UALICE", &format!("cancel {id}")).await;
        assert!(r.to_string().contains(id.as_str()), "{r}");
        t.settle().await;
        assert_eq!(t.engine.get(&id).unwrap().state, State::Cancelled);
        assert!(t.update_texts().last().unwrap().contains("Cancelled"));
        t
    })
    .await;
}

#[tokio::test]
async fn the_outbox_delivers_everything_once_in_order_after_an_outage() {
    let policy = RetryPolicy {
        first_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
    };
    run_world(
        || SlackTester::with_policy(policy),
        |t| async move {
            t.fake.down_for(Duration::from_secs(10));
            let reply = t.command("UALICE", "payment-api bad deploy").await;
            assert!(reply["text"].as_str().unwrap().contains("Planning"));
            t.inbound.wait_idle().await;
            let p = t.engine.store().list().unwrap().pop().unwrap();
            let provisional = p.primary_message().unwrap().message.clone();
            assert!(Outbox::is_pending(&provisional), "{provisional}");
            // Votes by button while Slack is down: nothing is lost.
            for who in ["UBOB", "UCAROL"] {
                t.click_quiet(who, "rollbot_approve", &p.id, "unknown")
                    .await;
            }
            assert!(t.fake.failures() > 0, "Slack was down");
            assert_eq!(t.fake.calls().len(), 1, "only auth.test got through");
            assert_eq!(t.executor.executions(), 1);
            t.settle().await;
            // Reads (who the bot is; whether a post that got no answer is
            // already in the channel) are not deliveries.
            let calls: Vec<_> = t
                .fake
                .calls()
                .into_iter()
                .filter(|c| c.method != "auth.test" && c.method != "conversations.history")
                .collect();
            let posts: Vec<_> = calls
                .iter()
                .filter(|c| c.method == "chat.postMessage")
                .collect();
            assert!(
                posts[0].body.get("thread_ts").is_none(),
                "the proposal is a top-level post"
            );
            assert_eq!(
                calls[0].method, "chat.postMessage",
                "the proposal comes first"
            );
            assert!(
                calls[0].body["text"]
                    .as_str()
                    .unwrap()
                    .contains(p.id.as_str())
            );
            let real = "1700000000.000001";
            // Updates in order: 1 vote, 2 votes, approved → executing …, each once.
            let updates: Vec<String> = calls
                .iter()
                .filter(|c| c.method == "chat.update")
                .map(|c| {
                    assert_eq!(c.body["ts"], real);
                    c.body["text"].as_str().unwrap().to_string()
                })
                .collect();
            let states: Vec<&str> = updates
                .iter()
                .map(|u| u.split_once("payment-api: ").unwrap().1)
                .collect();
            assert_eq!(
                states,
                [
                    ":hourglass_flowing_sand: Waiting for approvals",
                    ":white_check_mark: Approved; starting the rollback",
                    ":arrows_counterclockwise: Rolling back…",
                    ":leftwards_arrow_with_hook: Rolled back; verifying",
                    ":leftwards_arrow_with_hook: Rolled back (no verification checks configured)",
                ],
                "{updates:#?}"
            );
            let blocks: Vec<String> = calls
                .iter()
                .filter(|c| c.method == "chat.update")
                .map(|c| c.body["blocks"].to_string())
                .collect();
            assert!(blocks[0].contains("1 of 2 approvals"));
            assert!(blocks[1].contains("2 of 2 approvals"));
            // Thread posts all hang off the real ts, after the proposal.
            for c in posts.iter().skip(1) {
                assert_eq!(c.body["thread_ts"], real);
            }
            let texts: Vec<_> = posts.iter().map(|c| c.body["text"].to_string()).collect();
            let unique: std::collections::BTreeSet<_> = texts.iter().collect();
            assert_eq!(unique.len(), texts.len(), "no message twice: {texts:#?}");
            assert_eq!(
                t.chat.outbox().pending_for(real).unwrap().as_deref(),
                Some(provisional.as_str())
            );
            // Once delivered, the proposal names the real message, not the
            // provisional reference it was bound to.
            let now = t.engine.get(&p.id).unwrap();
            assert_eq!(now.primary_message().unwrap().message, real);
            t.fake.expect_post(p.id.as_str());
            t.fake.expect_replies(
                real,
                &[
                    "Rolling back payment-api",
                    "`successfully rolled out`",
                    "Rollback complete",
                ],
            );
            t
        },
        SlackTester::finish,
    )
    .await;
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_refusals_dropped() {
    run(|t| async move {
        t.fake.rate_limit(2);
        let (id, shown) = t.propose().await;
        assert_eq!(t.fake.failures(), 2);
        // The proposal was bound to a provisional reference at once; when
        // Slack finally took the post, the real ts replaced it.
        let ts = "1700000000.000001";
        assert_eq!(shown, ts);
        assert_eq!(
            t.chat.outbox().pending_for(ts).unwrap(),
            Some(Outbox::pending_for_proposal(id.as_str()))
        );
        t.fake.refuse_next("chat.update", "cant_update_message");
        t.react("Ev1", "UBOB", "white_check_mark", ts).await;
        t.react("Ev2", "UCAROL", "white_check_mark", ts).await;
        // The refused update was dropped; the later ones still arrived.
        assert!(t.update_texts().len() >= 2);
        assert_eq!(t.executor.executions(), 1);
        assert_eq!(t.engine.get(&id).unwrap().state, State::RolledBack);
        t.fake.expect_replies(
            ts,
            &[
                "Rolling back payment-api",
                "`successfully rolled out`",
                "Rollback complete",
            ],
        );
        t
    })
    .await;
}

/// One outbox entry for `op`, as `SlackChat` queues it.
fn entry(op: Value) -> rollbot::outbox::Entry {
    rollbot::outbox::Entry {
        version: 1,
        lane: "test".into(),
        pending: None,
        op,
    }
}

#[tokio::test]
async fn odd_but_valid_answers_count_as_delivered() {
    use rollbot::outbox::{Deliver, Delivery};
    run(|t| async move {
        t.fake.answer_oddly();
        let content = json!({ "text": "hello", "blocks": [] });
        let posted = t
            .chat
            .deliver(&entry(json!({
                "op": "post", "channel": CHANNEL, "content": content
            })))
            .await;
        let Delivery::Done { real: Some(ts) } = posted else {
            panic!("chat.postMessage: {posted:?}");
        };
        // chat.update without `message`, with a warning and unknown fields.
        let updated = t
            .chat
            .deliver(&entry(json!({
                "op": "update", "channel": CHANNEL, "message": ts, "content": content
            })))
            .await;
        assert_eq!(updated, Delivery::Done { real: None }, "chat.update");
        let told = t
            .chat
            .deliver(&entry(json!({
                "op": "ephemeral", "channel": CHANNEL, "user": "UALICE", "content": content
            })))
            .await;
        assert_eq!(told, Delivery::Done { real: None }, "chat.postEphemeral");
        // The whole upload v2 flow; the upload URL answers `OK - 5` as text.
        let uploaded = t
            .chat
            .deliver(&entry(json!({
                "op": "upload", "channel": CHANNEL, "thread": ts,
                "filename": "notes.md", "title": "Notes",
                "content_type": "text/markdown", "data": "aGVsbG8="
            })))
            .await;
        assert_eq!(uploaded, Delivery::Done { real: None }, "file upload");
        let files = t.fake.files();
        assert_eq!(files.len(), 1, "{files:#?}");
        let f = files.values().next().unwrap();
        assert_eq!(f.filename, "notes.md");
        assert_eq!(f.length, 5);
        assert_eq!(f.bytes.as_deref(), Some(&b"hello"[..]));
        assert_eq!(f.content_type.as_deref(), Some("text/markdown"));
        assert_eq!(
            f.completed,
            Some((Some("Notes".into()), Some(CHANNEL.into()), Some(ts.clone())))
        );
        // A refusal is still a refusal.
        t.fake.refuse_next("chat.update", "cant_update_message");
        let refused = t
            .chat
            .deliver(&entry(json!({
                "op": "update", "channel": CHANNEL, "message": ts, "content": content
            })))
            .await;
        assert!(
            matches!(&refused, Delivery::Permanent(m) if m.contains("cant_update_message")),
            "{refused:?}"
        );
        t.fake.expect_post("hello");
        t.fake.expect_ephemeral("UALICE", "hello");
        t.fake.expect_upload("Notes");
        t
    })
    .await;
}

#[tokio::test]
async fn the_report_and_its_chart_reach_the_proposals_thread() {
    use rollbot::ports::{Chat, ThreadNote};
    run(|t| async move {
        t.fake.answer_oddly();
        let (id, ts) = t.propose().await;
        let p = t.engine.get(&id).unwrap();
        let at = p.primary_message().unwrap().clone();
        let markdown = format!("# Incident report {id}\n\nRolled back.\n");
        let png = vec![0x89, b'P', b'N', b'G', 13, 10, 26, 10, 0, 1, 2, 3];
        // The first completion fails as Slack sometimes does: the upload
        // starts over with a new URL (the first one is used up).
        t.fake
            .refuse_next("files.completeUploadExternal", "internal_error");
        t.chat
            .post_thread(
                &at,
                &p,
                &ThreadNote::Report {
                    markdown: markdown.clone(),
                    chart_png: Some(png.clone()),
                },
            )
            .await
            .unwrap();
        t.settle().await;
        let thread: Vec<_> = t
            .fake
            .calls_to("chat.postMessage")
            .into_iter()
            .filter(|c| c.body["thread_ts"] == ts.as_str())
            .collect();
        assert_eq!(thread.len(), 1, "the report's message: {thread:#?}");
        let completed: Vec<_> = t
            .fake
            .files()
            .into_values()
            .filter(|f| f.completed.is_some())
            .collect();
        assert_eq!(completed.len(), 2, "{:#?}", t.fake.files());
        let (md, chart) = (&completed[0], &completed[1]);
        assert_eq!(md.filename, format!("incident-report-{id}.md"));
        assert_eq!(md.bytes.as_deref(), Some(markdown.as_bytes()));
        assert_eq!(chart.filename, format!("incident-chart-{id}.png"));
        assert_eq!(chart.bytes.as_deref(), Some(&png[..]));
        for (f, title) in [(md, "report"), (chart, "chart")] {
            let (t_, channel, thread_ts) = f.completed.clone().unwrap();
            assert_eq!(t_, Some(format!("Incident {title} {id}")));
            assert_eq!(channel.as_deref(), Some(CHANNEL));
            assert_eq!(thread_ts.as_deref(), Some(ts.as_str()));
        }
        // Three URLs were asked for: the retry did not reuse the first.
        assert_eq!(t.fake.calls_to("files.getUploadURLExternal").len(), 3);
        assert_eq!(t.chat.outbox().len(), 0);
        t.fake.expect_reply(&ts, "Draft incident report");
        t.fake.expect_upload(&format!("Incident report {id}"));
        t.fake.expect_upload(&format!("Incident chart {id}"));
        t
    })
    .await;
}

/// A fresh trigger id shaped like Slack's (`<n>.<n>.<hex>`).
fn next_trigger_id() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{n}.738474920.8088930838d88f008e0{n:x}")
}

/// Slack takes a 200 as "handled": the vote must already be stored when it
/// is sent, with its event id, so a redelivery (Slack retries what got no
/// answer, with the same `event_id`) changes nothing — not even after a
/// restart.
#[tokio::test]
async fn a_reaction_vote_is_stored_before_its_200_and_counts_once() {
    run(|t| async move {
        let (id, ts) = t.propose().await;
        let body = SlackTester::reaction_event("EvDurable", "UBOB", "white_check_mark", &ts, true);
        let r = t
            .post_signed("/slack/events", "application/json", body.clone(), &[])
            .await;
        assert_eq!(r.status(), 200);
        // No settling: the answer itself means it is stored.
        let p = t.engine.get(&id).unwrap();
        assert_eq!(
            p.approvals
                .iter()
                .map(|a| a.user.to_string())
                .collect::<Vec<_>>(),
            ["slack:UBOB"]
        );
        for retry in ["1", "2"] {
            let r = t
                .post_signed(
                    "/slack/events",
                    "application/json",
                    body.clone(),
                    &[
                        ("x-slack-retry-num", retry),
                        ("x-slack-retry-reason", "http_timeout"),
                    ],
                )
                .await;
            assert_eq!(r.status(), 200);
        }
        t.settle().await;
        let votes = t
            .engine
            .store()
            .timeline(&id)
            .unwrap()
            .into_iter()
            .filter(|e| matches!(e.kind, rollbot::domain::EventKind::Voted { .. }))
            .count();
        assert_eq!(votes, 1, "one vote for one event, however often delivered");
        // The private "already counts" note is not sent for a redelivery.
        assert!(
            t.ephemerals_to("UBOB").is_empty(),
            "{:?}",
            t.ephemerals_to("UBOB")
        );
        t
    })
    .await;
}

/// A slash command is acknowledged as soon as it is recorded; if rollbot
/// stops before the proposal is opened, the next start opens it — once.
#[tokio::test]
async fn a_command_acknowledged_before_a_restart_is_carried_out_once() {
    run(|t| async move {
        // What `/rollback payment-api …` leaves in the store before it
        // is carried out.
        let pending = json!({
            "key": "slack:cmd:7.738474920.8088930838d88f008e0",
            "channel": CHANNEL,
            "user": "UALICE",
            "service": "payment-api",
            "origin": "command",
            "to_revision": null,
            "reason": "checkout errors after the deploy"
        });
        let store = t.engine.store();
        store
            .inbox_put("slack:cmd:7.738474920.8088930838d88f008e0", &pending)
            .unwrap();
        assert_eq!(t.inbound.resume().unwrap(), 1);
        t.settle().await;
        let all = store.list().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].reason, "checkout errors after the deploy");
        assert_eq!(t.fake.calls_to("chat.postMessage").len(), 1);
        // Done: nothing left, and doing it again (a second restart that
        // raced the removal) opens nothing new.
        assert_eq!(t.inbound.resume().unwrap(), 0);
        store
            .inbox_put("slack:cmd:7.738474920.8088930838d88f008e0", &pending)
            .unwrap();
        assert_eq!(t.inbound.resume().unwrap(), 1);
        t.settle().await;
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(t.fake.calls_to("chat.postMessage").len(), 1);
        assert!(t.ephemerals_to("UALICE").is_empty());
        t.fake.expect_post(all[0].id.as_str());
        t
    })
    .await;
}

/// A timestamp at the edge of `i64` used to overflow the skew computation
/// and panic the request's task before the signature was even looked at.
#[tokio::test]
async fn out_of_range_timestamps_are_refused_and_the_server_keeps_answering() {
    run(|t| async move {
        let form = "team_id=T0&channel_id=C1&user_id=UALICE&command=%2Frollback&text=help&response_url=https%3A%2F%2Fhooks.slack.com%2Fx&trigger_id=1";
        for ts in [
            "-9223372036854775808",
            "9223372036854775807",
            "9223372036854775808",
            "-99999999999999999999999",
        ] {
            // Signed with the right secret over the odd timestamp: only the
            // timestamp check may refuse it.
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(format!("v0:{ts}:{form}").as_bytes());
            let sig = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
            for path in ["/slack/commands", "/slack/events", "/slack/interactions"] {
                let r = t
                    .http
                    .post(format!("{}{path}", t.url))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-slack-request-timestamp", ts)
                    .header("x-slack-signature", &sig)
                    .body(form)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{path} with timestamp {ts}: no answer: {e}"));
                assert_eq!(r.status(), 401, "{path} {ts}");
                let v: Value = r.json().await.unwrap();
                let error = v["error"].as_str().unwrap();
                assert!(
                    error.contains("X-Slack-Request-Timestamp"),
                    "{path} {ts}: {error}"
                );
            }
        }
        // The same server still serves a properly signed request.
        let reply = t.command("UALICE", "help").await;
        assert!(reply["text"].is_string(), "{reply}");
        t.settle().await;
        assert!(t.engine.store().list().unwrap().is_empty());
        t
    })
    .await;
}

/// Slack can take a post and lose its answer on the way back. Posting the
/// proposal again would leave an orphan message whose votes nobody counts:
/// rollbot finds its own message (tagged with metadata) and binds to it.
#[tokio::test]
async fn a_proposal_slack_took_without_answering_is_not_posted_twice() {
    run(|t| async move {
        t.fake.lose_answers("chat.postMessage", 1);
        t.command("UALICE", "payment-api payment success rate 95%")
            .await;
        t.fake
            .wait_for("the lookup of the unconfirmed post", |calls| {
                calls.iter().any(|c| c.method == "conversations.history")
            })
            .await;
        let ts = "1700000000.000001";
        let bound = || {
            let p = t.engine.store().list().unwrap().pop().unwrap();
            p.primary_message().is_some_and(|m| m.message == ts)
        };
        support::wait_until("the proposal bound to its only message", bound).await;
        t.settle().await;
        let posts = t
            .fake
            .calls()
            .iter()
            .filter(|c| c.method == "chat.postMessage" && c.body["thread_ts"].is_null())
            .count();
        assert_eq!(posts, 1, "the proposal was posted again");
        let p = t.engine.store().list().unwrap().pop().unwrap();
        t.fake.expect_post(p.id.as_str());
        // Votes on that message count.
        t.react("EvBob", "UBOB", "white_check_mark", ts).await;
        t.settle().await;
        let p = t.engine.store().list().unwrap().pop().unwrap();
        assert_eq!(p.approvals.len(), 1, "{p:?}");
        t
    })
    .await;
}

/// Without the history scope, the lookup fails: rollbot says so in its log
/// and posts, at least once, as before (never zero times).
#[tokio::test]
async fn without_the_history_scope_an_unconfirmed_proposal_is_posted_again() {
    run(|t| async move {
        t.fake.lose_answers("chat.postMessage", 1);
        t.fake
            .without_scope("conversations.history", "channels:history");
        t.command("UALICE", "payment-api payment success rate 95%")
            .await;
        let reposted = |calls: &[support::fake_slack::Call]| {
            calls
                .iter()
                .filter(|c| c.method == "chat.postMessage" && c.body["thread_ts"].is_null())
                .count()
                == 2
        };
        t.fake.wait_for("the proposal posted again", reposted).await;
        t.settle().await;
        let p = t.engine.store().list().unwrap().pop().unwrap();
        assert_eq!(p.primary_message().unwrap().message, "1700000000.000002");
        t.fake.expect_post(p.id.as_str());
        t.fake.expect_post(p.id.as_str());
        t
    })
    .await;
}

/// People react as soon as Slack shows the proposal, which can be before
/// rollbot has heard back from Slack with its ts. Such a vote is not
/// dropped as "not a proposal": it is answered 503 (and not claimed), and
/// Slack's redelivery counts.
#[tokio::test]
async fn a_vote_on_a_message_still_being_posted_is_redelivered_not_lost() {
    run(|t| async move {
        t.fake
            .answer_slowly("chat.postMessage", Duration::from_millis(1500));
        t.command("UALICE", "payment-api payment success rate 95%")
            .await;
        t.fake
            .wait_for("the proposal's post", |calls| {
                calls.iter().any(|c| c.method == "chat.postMessage")
            })
            .await;
        // In the channel now, at the first ts the fake hands out.
        let ts = "1700000000.000001";
        let body = SlackTester::reaction_event("EvEarly", "UBOB", "white_check_mark", ts, true);
        let r = t
            .post_signed("/slack/events", "application/json", body.clone(), &[])
            .await;
        assert_eq!(r.status(), 503, "{:?}", r.text().await);
        t.settle().await;
        let r = t
            .post_signed(
                "/slack/events",
                "application/json",
                body,
                &[
                    ("x-slack-retry-num", "1"),
                    ("x-slack-retry-reason", "http_error"),
                ],
            )
            .await;
        assert_eq!(r.status(), 200);
        let p = t.engine.store().list().unwrap().pop().unwrap();
        assert_eq!(p.primary_message().unwrap().message, ts);
        let voters: Vec<String> = p.approvals.iter().map(|a| a.user.to_string()).collect();
        assert_eq!(voters, ["slack:UBOB"]);
        t.fake.expect_post(p.id.as_str());
        t
    })
    .await;
}
