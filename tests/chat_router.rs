//! Several chat platforms at once, one of them added from this file alone.
//!
//! [`Board`] is a whole chat platform written here: an adapter implementing
//! the `Chat` port (it records what it was asked to show) and the
//! `Answers` port, and an inbound side that feeds neutral inputs
//! (`CommandInput`, `VoteInput`) to rollbot's one command handler, as a
//! real adapter does after decoding and authenticating its platform's
//! requests. It is registered under `discord`, a platform rollbot knows the
//! ids of but has no adapter for, so nothing in `src/` helps it. The
//! other platform is Slack, against the fake Slack Web API.
//!
//! Two incidents run at the same time — payment-api proposed from Slack,
//! checkout from the board — from proposal to two approvals, rollback,
//! verification and the cleared alert; every message must reach the
//! platform of its proposal's channel and no other.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rollbot::chat::handler::{CommandHandler, CommandInput, VoteInput, VoteOn, Voted};
use rollbot::chat::reply::{Answer, Answers, Reply};
use rollbot::chat::router::ChatRouter;
use rollbot::chat::slack::{Emoji, Session, SlackChat, SlackInbound, decode};
use rollbot::config::Config;
use rollbot::domain::{ManualClock, MessageRef, Proposal, State, VoteKind, VoteVia};
use rollbot::engine::{Engine, Ports};
use rollbot::outbox::{Outbox, RetryPolicy};
use rollbot::ports::memory::{ScriptedExecutor, ScriptedVerifier};
use rollbot::ports::{Chat, ChatError, CheckResult, PrivateNote, ThreadNote, Verdict};
use rollbot::store::Store;
use rollbot::templates::Templates;
use serde_json::json;
use slack_morphism::prelude::SlackPushEvent;
use support::fake_slack::FakeSlack;
use support::*;

const CONFIG: &str = r#"
    [services.payment-api]
    approvers = ["slack:UBOB", "slack:UCAROL", "discord:1002", "discord:1003"]
    [services.payment-api.kubernetes]
    namespace = "production"
    name = "prod-payment-deploy"
    [services.checkout]
    approvers = ["slack:UBOB", "slack:UCAROL", "discord:1002", "discord:1003"]
    [services.checkout.kubernetes]
    namespace = "production"
    name = "checkout"
"#;

/// The Slack channel and the board's channel.
const SLACK_CHANNEL: &str = "CINCIDENT";
const BOARD_CHANNEL: &str = "9001";

/// What the board was asked to show.
#[derive(Debug, Clone, PartialEq)]
enum Shown {
    Posted {
        channel: String,
        id: String,
    },
    Updated {
        message: String,
        state: State,
    },
    Thread {
        message: String,
        note: String,
    },
    Told {
        user: String,
    },
    Answered {
        channel: String,
        user: String,
        reply: String,
    },
}

/// A chat platform written in this test: the `Chat` and `Answers` ports
/// outbound, neutral inputs inbound.
#[derive(Default)]
struct Board {
    shown: Mutex<Vec<Shown>>,
    /// What people would see as a new message (everything but edits of
    /// the proposal), until the test consumes it: the harness's
    /// discipline, on the board too.
    pending: Mutex<Vec<Shown>>,
    next: Mutex<u32>,
}

impl Board {
    fn show(&self, s: Shown) {
        if !matches!(s, Shown::Updated { .. }) {
            self.pending.lock().unwrap().push(s.clone());
        }
        self.shown.lock().unwrap().push(s);
    }

    /// Consumes every pending message for which `pred` holds.
    fn take_all(&self, pred: impl Fn(&Shown) -> bool) -> Vec<Shown> {
        let mut pending = self.pending.lock().unwrap();
        let (taken, left) = pending.drain(..).partition(|s| pred(s));
        *pending = left;
        taken
    }

    /// Messages shown and not consumed.
    fn unconsumed(&self) -> Vec<Shown> {
        self.pending.lock().unwrap().clone()
    }

    fn shown(&self) -> Vec<Shown> {
        self.shown.lock().unwrap().clone()
    }

    fn message(&self, channel: &str) -> MessageRef {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        MessageRef {
            platform: "discord".into(),
            channel: channel.into(),
            message: format!("board-{n}"),
        }
    }

    /// `/rollback …` typed on the board (its inbound side, decoded).
    fn typed(who: &str, text: &str, key: &str) -> CommandInput {
        CommandInput {
            platform: "discord".into(),
            channel: BOARD_CHANNEL.into(),
            user: user(&format!("discord:{who}")),
            text: text.into(),
            key: key.into(),
            locale: None,
        }
    }

    /// An approval given on the board's message `at`.
    fn approval(who: &str, at: &MessageRef, delivery: &str) -> VoteInput {
        VoteInput {
            on: VoteOn::Message {
                at: at.clone(),
                provisional: None,
                posting: false,
            },
            voter: user(&format!("discord:{who}")),
            kind: VoteKind::Approve,
            withdraw: false,
            via: VoteVia::Reaction,
            key: Some(format!("discord:event:{delivery}")),
        }
    }
}

fn note_name(note: &ThreadNote) -> String {
    serde_json::to_value(note).unwrap()["note"]
        .as_str()
        .unwrap()
        .to_string()
}

#[async_trait]
impl Chat for Board {
    async fn post_proposal(&self, channel: &str, p: &Proposal) -> Result<MessageRef, ChatError> {
        let bare = channel
            .strip_prefix("discord:")
            .expect("the router sends only discord: channels here");
        self.show(Shown::Posted {
            channel: channel.into(),
            id: p.id.to_string(),
        });
        Ok(self.message(bare))
    }

    async fn update_proposal(&self, at: &MessageRef, p: &Proposal) -> Result<(), ChatError> {
        self.show(Shown::Updated {
            message: at.message.clone(),
            state: p.state,
        });
        Ok(())
    }

    async fn post_thread(
        &self,
        at: &MessageRef,
        _p: &Proposal,
        note: &ThreadNote,
    ) -> Result<MessageRef, ChatError> {
        self.show(Shown::Thread {
            message: at.message.clone(),
            note: note_name(note),
        });
        Ok(self.message(&at.channel))
    }

    async fn edit_thread(
        &self,
        at: &MessageRef,
        _p: &Proposal,
        note: &ThreadNote,
    ) -> Result<(), ChatError> {
        self.show(Shown::Thread {
            message: at.message.clone(),
            note: note_name(note),
        });
        Ok(())
    }

    async fn tell(
        &self,
        _p: &Proposal,
        _channel: &str,
        user: &rollbot::domain::UserId,
        _note: &PrivateNote,
    ) -> Result<(), ChatError> {
        self.show(Shown::Told {
            user: user.to_string(),
        });
        Ok(())
    }
}

#[async_trait]
impl Answers for Board {
    async fn answer(
        &self,
        channel: &str,
        user: &rollbot::domain::UserId,
        answer: &Answer,
    ) -> Result<(), ChatError> {
        self.show(Shown::Answered {
            channel: channel.into(),
            user: user.to_string(),
            reply: serde_json::to_string(&answer.reply).unwrap(),
        });
        Ok(())
    }
}

struct World {
    engine: Engine,
    handler: Arc<CommandHandler>,
    slack: Arc<SlackInbound>,
    slack_chat: Arc<SlackChat>,
    fake: FakeSlack,
    board: Arc<Board>,
    worker: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        self.worker.abort();
    }
}

impl World {
    async fn new() -> Self {
        let fake = FakeSlack::start().await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let config = Config::parse(CONFIG).unwrap();
        let session = Session::new(&fake.api_url, "xoxb-test-token".into()).unwrap();
        let outbox = Outbox::open(&store, "slack").unwrap();
        let slack_chat = Arc::new(SlackChat::new(
            session,
            outbox.clone(),
            Arc::new(Templates::load().unwrap()),
            Emoji {
                approve: "white_check_mark".into(),
                reject: "x".into(),
            },
        ));
        let worker = tokio::spawn(outbox.run(
            slack_chat.clone(),
            RetryPolicy {
                first_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
            },
        ));
        let board = Arc::new(Board::default());
        // The whole of adding a platform: its registration.
        let chats = Arc::new(
            ChatRouter::new()
                .with("slack", slack_chat.clone())
                .with_answers("slack", slack_chat.clone())
                .with("discord", board.clone())
                .with_answers("discord", board.clone()),
        );
        let verifier = ScriptedVerifier::new();
        for _ in 0..2 {
            verifier.push(Verdict::Passed {
                checks: vec![CheckResult {
                    name: "success rate".into(),
                    passed: true,
                    value: "0.997".into(),
                }],
            });
        }
        let engine = Engine::new(
            store,
            config.services(),
            Ports {
                chat: chats.clone(),
                executor: ScriptedExecutor::new(reference_plan()),
                verifier,
                clock: Arc::new(ManualClock::new(t0())),
            },
        );
        engine.add_bot_identity(user(BOT));
        let handler = CommandHandler::new(engine.clone(), chats);
        let slack = SlackInbound::new(handler.clone(), slack_chat.clone(), "secret".into());
        Self {
            engine,
            handler,
            slack,
            slack_chat,
            fake,
            board,
            worker,
            _dir: dir,
        }
    }

    /// The end-of-test checks: background work and Slack's outbox done
    /// without a panic; every message on Slack and on the board consumed.
    async fn finish(self) -> Result<(), Failure> {
        tokio::time::timeout(IDLE_LIMIT, async {
            self.engine.wait_idle().await;
            self.slack_chat.outbox().wait_empty().await;
        })
        .await
        .map_err(|_| Failure::StillBusy(IDLE_LIMIT))?;
        finish_slack(&self.engine, &self.fake).await?;
        let left = self.board.unconsumed();
        assert!(
            left.is_empty(),
            "the board showed messages the test did not consume: {left:#?}"
        );
        Ok(())
    }

    /// Waits for background work and Slack's outbox; fails on panics.
    async fn settle(&self) {
        self.engine.wait_idle().await;
        self.slack_chat.outbox().wait_empty().await;
        assert!(!self.engine.background_panicked());
    }

    /// `/rollback …` typed on Slack (decoded as the HTTP route does).
    async fn slack_command(&self, who: &str, text: &str, trigger: &str) -> serde_json::Value {
        let body = serde_urlencoded::to_string([
            ("team_id", "T0TEST"),
            ("channel_id", SLACK_CHANNEL),
            ("channel_name", "incident"),
            ("user_id", who),
            ("user_name", who),
            ("command", "/rollback"),
            ("text", text),
            (
                "response_url",
                "https://hooks.slack.com/commands/T0TEST/1/abc",
            ),
            ("trigger_id", trigger),
        ])
        .unwrap();
        let ev = decode::command(body.as_bytes()).unwrap();
        self.slack.command(&ev).await.unwrap()
    }

    /// An approving reaction on Slack's message `ts`.
    async fn slack_approval(&self, event: &str, who: &str, ts: &str) {
        let body = json!({
            "token": "XXYYZZ", "team_id": "T0TEST", "api_app_id": "A0TEST",
            "event": {
                "type": "reaction_added", "user": who, "reaction": "white_check_mark",
                "item_user": "UROLLBOT",
                "item": { "type": "message", "channel": SLACK_CHANNEL, "ts": ts },
                "event_ts": "1700000100.000100"
            },
            "type": "event_callback", "authed_users": ["UROLLBOT"],
            "event_id": event, "event_time": 1700000100
        });
        let SlackPushEvent::EventCallback(cb) = decode::event(body.to_string().as_bytes()).unwrap()
        else {
            panic!("a reaction is an event callback");
        };
        self.slack.push(cb).await.unwrap();
        self.settle().await;
    }

    fn proposal_of(&self, service: &str) -> Proposal {
        self.engine
            .store()
            .list()
            .unwrap()
            .into_iter()
            .find(|p| p.service.as_str() == service)
            .unwrap_or_else(|| panic!("no proposal for {service}"))
    }
}

#[tokio::test]
async fn incidents_on_slack_and_on_a_platform_added_by_a_test_run_side_by_side() {
    run_world(
        World::new,
        |w| async move {
            // Proposed on each platform, each in its own channel.
            let r = w
                .slack_command("UALICE", "payment-api checkout errors", "1.1.aa")
                .await;
            assert!(
                r["text"]
                    .as_str()
                    .unwrap()
                    .contains("Planning a rollback of payment-api"),
                "{r}"
            );
            let answer = w
                .handler
                .command(Board::typed(
                    "1001",
                    "checkout cart errors",
                    "interaction-1",
                ))
                .await
                .unwrap();
            assert!(
                matches!(answer.reply, Reply::Accepted { ref service } if service == "checkout"),
                "{answer:?}"
            );
            w.settle().await;

            let pay = w.proposal_of("payment-api");
            let shop = w.proposal_of("checkout");
            let slack_at = pay.primary_message().unwrap().clone();
            let board_at = shop.primary_message().unwrap().clone();
            assert_eq!(
                (slack_at.platform.as_str(), slack_at.channel.as_str()),
                ("slack", SLACK_CHANNEL)
            );
            assert_eq!(
                (board_at.platform.as_str(), board_at.channel.as_str()),
                ("discord", BOARD_CHANNEL)
            );
            let posts = w.fake.calls_to("chat.postMessage");
            assert_eq!(posts.len(), 1, "only payment-api goes to Slack: {posts:#?}");
            assert!(
                posts[0].body["text"]
                    .as_str()
                    .unwrap()
                    .contains(pay.id.as_str())
            );
            assert_eq!(
                w.board.shown(),
                [Shown::Posted {
                    channel: format!("discord:{BOARD_CHANNEL}"),
                    id: shop.id.to_string()
                }]
            );
            w.fake.expect_post(pay.id.as_str());
            w.board.take_all(|s| matches!(s, Shown::Posted { .. }));

            // A second checkout proposal is refused, later, on the board only.
            w.handler
                .command(Board::typed("1002", "checkout again", "interaction-2"))
                .await
                .unwrap();
            w.settle().await;
            let answered = w.board.take_all(|s| matches!(s, Shown::Answered { .. }));
            assert_eq!(answered.len(), 1, "{answered:?}");
            let Shown::Answered {
                channel,
                user,
                reply,
            } = &answered[0]
            else {
                unreachable!()
            };
            assert_eq!(
                (channel.as_str(), user.as_str()),
                ("discord:9001", "discord:1002")
            );
            assert!(
                reply.contains(r#""reply":"refused","error":{"code":"already_open""#),
                "{reply}"
            );
            assert!(w.fake.calls_to("chat.postEphemeral").is_empty());

            // Two approvals each, on each platform, interleaved.
            w.slack_approval("Ev1", "UBOB", &slack_at.message).await;
            let first = w
                .handler
                .vote(Board::approval("1002", &board_at, "d1"))
                .await
                .unwrap();
            assert_eq!(first, Voted::Taken);
            // A redelivery counts once.
            let again = w
                .handler
                .vote(Board::approval("1002", &board_at, "d1"))
                .await
                .unwrap();
            assert_eq!(again, Voted::Repeat);
            w.slack_approval("Ev2", "UCAROL", &slack_at.message).await;
            w.handler
                .vote(Board::approval("1003", &board_at, "d2"))
                .await
                .unwrap();
            w.settle().await;

            // Rolled back and verified; then the alerts clear.
            for id in [&pay.id, &shop.id] {
                assert_eq!(w.engine.get(id).unwrap().state, State::Verified, "{id}");
            }
            for id in [&pay.id, &shop.id] {
                w.engine.alert_resolved(id, "fp", t0()).await.unwrap();
            }
            w.settle().await;
            for id in [&pay.id, &shop.id] {
                let events = w.engine.store().timeline(id).unwrap();
                let names: Vec<_> = events.iter().map(|e| e.kind.name()).collect();
                assert!(names.contains(&"resolved"), "{id}: {names:?}");
            }

            // The board saw checkout's whole incident, on checkout's message.
            let notes: Vec<String> = w
                .board
                .take_all(|s| matches!(s, Shown::Thread { .. }))
                .into_iter()
                .filter_map(|s| match s {
                    Shown::Thread { message, note } => {
                        assert_eq!(message, board_at.message, "threads hang off the proposal");
                        Some(note)
                    }
                    _ => None,
                })
                .collect();
            for note in [
                "execution_started",
                "execution_finished",
                "verification",
                "resolved",
            ] {
                assert!(
                    notes.iter().any(|n| n == note),
                    "{note} missing on the board: {notes:?}"
                );
            }
            let states: Vec<State> = w
                .board
                .shown()
                .into_iter()
                .filter_map(|s| match s {
                    Shown::Updated { message, state } => {
                        assert_eq!(message, board_at.message);
                        Some(state)
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(states.last(), Some(&State::Verified), "{states:?}");
            // Nothing of payment-api reached the board, nothing of checkout Slack.
            assert!(
                !format!("{:?}", w.board.shown()).contains(pay.id.as_str()),
                "{:?}",
                w.board.shown()
            );
            let slack_calls = w.fake.calls();
            assert!(
                slack_calls
                    .iter()
                    .all(|c| !c.raw.contains(shop.id.as_str())),
                "checkout leaked to Slack"
            );
            // Slack saw payment-api's whole incident in its thread.
            let thread: Vec<String> = w
                .fake
                .take_all(|c| c.body["thread_ts"] == slack_at.message.as_str())
                .into_iter()
                .map(|c| c.body["text"].as_str().unwrap_or_default().to_string())
                .collect();
            assert!(
                thread
                    .iter()
                    .any(|t| t.contains("Rolling back payment-api")),
                "{thread:#?}"
            );
            assert!(
                thread.len() >= 4,
                "started, finished, verified, resolved: {thread:#?}"
            );
            assert!(
                w.fake
                    .calls_to("chat.update")
                    .iter()
                    .all(|c| c.body["ts"] == slack_at.message.as_str())
            );
            w
        },
        World::finish,
    )
    .await;
}
