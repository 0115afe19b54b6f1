//! `serve` as deployed with `[discord]`, against the fake Discord (REST and
//! gateway) and the simulated cluster: `/rollback` proposes, self-approval
//! and strangers are refused privately, two authorised people approve (by
//! user id and by role), the cluster is rolled back, progress, the
//! resolved notice and the report arrive in the proposal's thread — over
//! the signed interactions endpoint and over the gateway.

mod support;

use rollbot::app::App;
use rollbot::config::Config;
use rollbot::domain::State;
use rollbot::engine::Engine;
use rollbot::sim::{self, Kind, seed::Seed};
use serde_json::{Value, json};
use support::fake_discord::{self, FakeDiscord};
use support::*;

const CHANNEL: &str = "645027906669510667";
/// Carol proposes; Alice approves by id; Bob by role; Mallory may not.
const CAROL: &str = "1001";
const ALICE: &str = "1002";
const BOB: &str = "1003";
const MALLORY: &str = "6666";
const SRE_ROLE: &str = "539082325061836999";

struct World {
    _dir: tempfile::TempDir,
    fake: FakeDiscord,
    _cluster: sim::SimHandle,
    engine: Engine,
    base: String,
}

/// Starts the simulator, the fake Discord and `serve` with `[discord]`
/// (`gateway` on or off) plus `extra` TOML.
async fn world(gateway: bool, extra: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDiscord::start(&[CHANNEL]).await;
    let seed = Seed::from_file("config/sim-payment.yaml".as_ref()).unwrap();
    let cluster = sim::start(
        seed,
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let d = dir.path();
    cluster.write_kubeconfig(&d.join("kubeconfig")).unwrap();
    std::fs::write(d.join("discord-token"), fake_discord::TOKEN).unwrap();
    std::fs::write(d.join("discord-key"), fake_discord::PUBLIC_KEY).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let dd = d.display();
    let config = Config::parse(&format!(
        r#"
        [store]
        path = "{dd}/db"
        [groups]
        sre = ["discord:{ALICE}", "discord-role:{SRE_ROLE}"]
        [services.payment-api]
        groups = ["sre"]
        approvers = ["discord:{CAROL}"]
        channel = "discord:{CHANNEL}"
        [services.payment-api.kubernetes]
        namespace = "production"
        name = "prod-payment-deploy"
        [services.payment-api.verify]
        window = "30s"
        interval = "1s"
        [[services.payment-api.verify.http]]
        name = "rollbot health"
        url = "{base}/healthz"
        [kubernetes]
        kubeconfig = "{dd}/kubeconfig"
        [discord]
        api_url = "{api}"
        bot_token = {{ file = "{dd}/discord-token" }}
        public_key = {{ file = "{dd}/discord-key" }}
        application_id = "{app}"
        guild_id = "{guild}"
        gateway = {gateway}
        {extra}
        "#,
        api = fake.api_url,
        app = fake_discord::APP_ID,
        guild = fake_discord::GUILD_ID,
    ))
    .unwrap();
    let app = App::start(&config, None).await.unwrap();
    let engine = app.engine().clone();
    tokio::spawn(app.serve(listener, std::future::pending()));
    World {
        _dir: dir,
        fake,
        _cluster: cluster,
        engine,
        base,
    }
}

impl World {
    fn endpoint(&self) -> String {
        format!("{}/discord/interactions", self.base)
    }

    /// The proposal and its Discord message id, once the outbox mapped it.
    async fn proposal(&self) -> (rollbot::domain::Proposal, String) {
        let mut found = None;
        wait_until(
            "the outbox maps the proposal to its Discord message",
            || {
                found = self.engine.store().list().unwrap().pop().and_then(|p| {
                    let id = p.primary_message()?.message.clone();
                    (!id.starts_with("pending")).then_some((p, id))
                });
                found.is_some()
            },
        )
        .await;
        found.unwrap()
    }

    async fn state_is(&self, id: &rollbot::domain::ProposalId, want: State) {
        wait_until(&format!("the proposal is {want:?}"), || {
            self.engine.get(id).unwrap().state == want
        })
        .await;
    }

    /// The proposal message's approvals line, as last edited.
    fn shown(&self, message: &str) -> String {
        self.fake.message(message).unwrap()["embeds"][0]["description"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits for the outbox to deliver everything, then checks nothing
    /// the bot showed was left unconsumed and nothing panicked.
    async fn finish(self) -> Self {
        let outbox = rollbot::outbox::Outbox::open(self.engine.store(), "discord").unwrap();
        assert!(
            poll_until_sync(IDLE_LIMIT, || outbox.is_empty()).await,
            "the Slack outbox delivered everything"
        );
        tokio::time::timeout(IDLE_LIMIT, self.engine.wait_idle())
            .await
            .expect("background work finished");
        assert!(!self.engine.background_panicked());
        let left = self.fake.describe_unconsumed();
        assert!(
            left.is_empty(),
            "unconsumed Discord messages:\n{}",
            left.join("\n")
        );
        self
    }
}

fn propose_options() -> Value {
    json!([
        { "type": 3, "name": "service", "value": "payment-api" },
        { "type": 3, "name": "reason", "value": "success rate 95%" }
    ])
}

/// The whole incident once a proposal message `msg` exists; `vote` casts
/// a click (or reaction) by a user with roles and returns the interaction
/// id whose follow-up tells them, if any.
async fn rolls_back(w: &World, p: &rollbot::domain::Proposal, msg: &str) {
    w.state_is(&p.id, State::Verified).await;
    let d = w
        ._cluster
        .get(Kind::Deployment, "production", "prod-payment-deploy")
        .unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "payment-api:v1.2.0"
    );
    // The thread is the proposal message's; the report is attached there.
    w.fake
        .wait_until("the report in the thread", |f| {
            f.calls_to(&format!("POST /channels/{msg}/messages"))
                .iter()
                .any(|c| !c.files.is_empty())
        })
        .await;
    assert!(w.fake.thread_exists(msg));
    w.fake.expect_message(msg, "Rolling back payment-api");
    w.fake.take_all(msg, "⏳");
    w.fake.expect_message(msg, "Rollback complete");
    w.fake.expect_message(msg, "Verification passed");
    w.fake.expect_message(msg, "Resolved: payment-api");
    let report = w.fake.expect_message(msg, &p.id.to_string());
    let names: Vec<&str> = report.files.iter().map(|f| f.1.as_str()).collect();
    assert!(
        names.contains(&format!("incident-report-{}.md", p.id).as_str()),
        "{names:?}"
    );
    let md = &report
        .files
        .iter()
        .find(|f| f.1.ends_with(".md"))
        .unwrap()
        .2;
    assert!(String::from_utf8_lossy(md).contains(&p.id.to_string()));
    // The proposal was edited in place: votes, then the outcome, no buttons.
    let last = w.fake.message(msg).unwrap();
    assert_eq!(last["components"], json!([]), "{last}");
}

#[tokio::test]
async fn over_the_interactions_endpoint_two_authorised_clicks_roll_back() {
    let w = bounded(async {
        let w = world(false, "").await;
        let f = &w.fake;
        f.wait_until("/rollback registered in the guild", |f| {
            !f.calls_to(&format!(
                "PUT /applications/{}/guilds/{}/commands",
                fake_discord::APP_ID,
                fake_discord::GUILD_ID
            ))
            .is_empty()
        })
        .await;

        // PING → PONG, signed.
        let ping = json!({ "id": "1", "application_id": fake_discord::APP_ID, "type": 1,
                           "token": "t", "version": 1 });
        assert_eq!(
            f.post_interaction(&w.endpoint(), &ping).await,
            (200, json!({ "type": 1 }))
        );

        let cmd = f.slash(CHANNEL, CAROL, &[], "propose", propose_options());
        let (status, answer) = f.post_interaction(&w.endpoint(), &cmd).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["type"], 4, "{answer}");
        assert_eq!(answer["data"]["flags"], 64, "ephemeral: {answer}");
        assert!(
            answer["data"]["content"]
                .as_str()
                .unwrap()
                .contains("Planning a rollback of payment-api"),
            "{answer}"
        );
        let (p, msg) = w.proposal().await;
        let posted = f.expect_message(CHANNEL, &format!("Rollback proposal {}", p.id));
        assert_eq!(posted.id, msg);

        // Carol proposed: her click is refused, privately.
        let click = f.click(
            CHANNEL,
            CAROL,
            &[],
            &msg,
            &format!("rollbot_approve:{}", p.id),
        );
        let (status, answer) = f.post_interaction(&w.endpoint(), &click).await;
        assert_eq!((status, answer["type"].as_u64()), (200, Some(6)));
        let id = click["id"].as_str().unwrap();
        let told = f.followup(id, "you proposed this rollback").await;
        assert_eq!(told.body["flags"], 64);
        // Mallory is nobody's approver.
        let click = f.click(
            CHANNEL,
            MALLORY,
            &[],
            &msg,
            &format!("rollbot_approve:{}", p.id),
        );
        assert_eq!(f.post_interaction(&w.endpoint(), &click).await.0, 200);
        f.followup(click["id"].as_str().unwrap(), "not an authorised approver")
            .await;

        // Alice (by id), then Bob (by his role).
        let click = f.click(
            CHANNEL,
            ALICE,
            &[],
            &msg,
            &format!("rollbot_approve:{}", p.id),
        );
        assert_eq!(f.post_interaction(&w.endpoint(), &click).await.0, 200);
        f.wait_until("the edit with Alice's vote", |_| {
            w.shown(&msg).contains("Approvals: 1 of 2: discord:1002")
        })
        .await;
        let click = f.click(
            CHANNEL,
            BOB,
            &[SRE_ROLE],
            &msg,
            &format!("rollbot_approve:{}", p.id),
        );
        assert_eq!(f.post_interaction(&w.endpoint(), &click).await.0, 200);
        rolls_back(&w, &p, &msg).await;
        assert!(f.calls_to("GET /gateway").is_empty(), "gateway = false");
        w
    })
    .await;
    w.finish().await;
}

/// Discord checks endpoints with bad signatures: each is refused with 401
/// before anything is read or stored.
#[tokio::test]
async fn unsigned_forged_and_stale_interactions_are_refused() {
    let w = bounded(async {
        let w = world(false, "").await;
        let f = &w.fake;
        let cmd = f.slash(CHANNEL, CAROL, &[], "propose", propose_options());
        let body = cmd.to_string();
        let now = chrono::Utc::now().timestamp();
        let stale = (now - 600).to_string();
        let fresh = now.to_string();
        let http = reqwest::Client::new();
        let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
            ("no headers", vec![]),
            (
                "no timestamp",
                vec![(
                    "x-signature-ed25519",
                    fake_discord::sign(&fresh, body.as_bytes()),
                )],
            ),
            (
                "forged",
                vec![
                    ("x-signature-ed25519", "00".repeat(64)),
                    ("x-signature-timestamp", fresh.clone()),
                ],
            ),
            (
                "not hex",
                vec![
                    ("x-signature-ed25519", "example invalid signature".into()),
                    ("x-signature-timestamp", fresh.clone()),
                ],
            ),
            (
                "another timestamp",
                vec![
                    (
                        "x-signature-ed25519",
                        fake_discord::sign(&fresh, body.as_bytes()),
                    ),
                    ("x-signature-timestamp", (now + 1).to_string()),
                ],
            ),
            (
                "stale",
                vec![
                    (
                        "x-signature-ed25519",
                        fake_discord::sign(&stale, body.as_bytes()),
                    ),
                    ("x-signature-timestamp", stale.clone()),
                ],
            ),
        ];
        for (what, headers) in cases {
            let mut req = http
                .post(w.endpoint())
                .header("content-type", "application/json")
                .body(body.clone());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{what}");
        }
        assert!(w.engine.store().list().unwrap().is_empty(), "no proposal");
        assert!(
            w.engine.store().inbox::<Value>("").unwrap().is_empty(),
            "no command recorded"
        );
        w
    })
    .await;
    w.finish().await;
}

/// Over the gateway: the command and the refusals as before, votes by
/// ✅ reactions (a removed reaction withdraws its vote), and the
/// connection dropped mid-incident: serenity resumes the session, the
/// reactions made meanwhile are replayed and count, and nothing is posted
/// twice.
#[tokio::test]
async fn over_the_gateway_reactions_vote_and_a_dropped_connection_resumes() {
    let w = bounded(async {
        let w = world(true, "").await;
        let f = &w.fake;
        f.wait_until("the gateway identified", |f| f.connected())
            .await;
        let intents = f.identified_intents().unwrap();
        assert_ne!(intents & (1 << 10), 0, "GUILD_MESSAGE_REACTIONS: {intents}");

        let cmd = f.slash(CHANNEL, CAROL, &[], "propose", propose_options());
        let cmd_id = cmd["id"].as_str().unwrap().to_string();
        f.dispatch_interaction(cmd);
        f.wait_until("the command's answer", |f| f.answer_to(&cmd_id).is_some())
            .await;
        let answer = f.answer_to(&cmd_id).unwrap();
        assert_eq!(
            (answer["type"].as_u64(), answer["data"]["flags"].as_u64()),
            (Some(4), Some(64)),
            "{answer}"
        );
        let (p, msg) = w.proposal().await;
        f.expect_message(CHANNEL, &format!("Rollback proposal {}", p.id));

        // Carol's own ✅: told privately, after her command.
        f.react(true, CHANNEL, &msg, CAROL, &[], "✅");
        f.followup(&cmd_id, "you proposed this rollback").await;
        // Mallory has no interaction to answer: a direct message.
        f.react(true, CHANNEL, &msg, MALLORY, &[], "✅");
        f.message_in(&format!("dm{MALLORY}"), "not an authorised approver")
            .await;
        // A reaction that is not a vote changes nothing.
        f.react(true, CHANNEL, &msg, ALICE, &[], "🔥");
        // Alice approves, then takes it back.
        f.react(true, CHANNEL, &msg, ALICE, &[], "✅");
        f.wait_until("Alice's vote shown", |_| {
            w.shown(&msg).contains("Approvals: 1 of 2: discord:1002")
        })
        .await;
        f.react(false, CHANNEL, &msg, ALICE, &[], "✅");
        f.wait_until("Alice's vote withdrawn", |_| {
            w.shown(&msg).contains("Approvals: 0 of 2")
        })
        .await;

        // The connection drops; both approve while rollbot is away.
        f.drop_connection();
        f.wait_until("the connection is gone", |f| !f.connected())
            .await;
        f.react(true, CHANNEL, &msg, ALICE, &[], "✅");
        f.react(true, CHANNEL, &msg, BOB, &[SRE_ROLE], "✅");
        f.wait_until("the session resumed", |f| f.resumes() == 1)
            .await;
        rolls_back(&w, &p, &msg).await;
        assert_eq!(f.identifies(), 1, "resumed, not identified again");
        let p = w.engine.get(&p.id).unwrap();
        let voters: Vec<&str> = p.approvals.iter().map(|v| v.user.as_str()).collect();
        assert_eq!(voters, ["discord:1002", "discord:1003"]);
        w
    })
    .await;
    w.finish().await;
}

/// Discord answers 429 and 500 for a while, then takes the post but the
/// answer is lost: the outbox waits as asked, retries, and the proposal
/// arrives once.
#[tokio::test]
async fn rate_limits_and_server_errors_delay_but_do_not_duplicate() {
    let w = bounded(async {
        let w = world(false, "").await;
        let f = &w.fake;
        f.wait_until("the command registered", |f| {
            !f.calls_to("PUT /applications/").is_empty()
        })
        .await;
        f.rate_limit(1);
        f.fail(1);
        // Then the post goes through but its answer is lost: the retry
        // must not post it again.
        f.lose_answers(1);
        let cmd = f.slash(CHANNEL, CAROL, &[], "propose", propose_options());
        let (status, _) = f.post_interaction(&w.endpoint(), &cmd).await;
        assert_eq!(status, 200);
        let (p, _) = w.proposal().await;
        let posts = f.calls_to(&format!("POST /channels/{CHANNEL}/messages"));
        assert_eq!(
            posts.len(),
            4,
            "429, 500, posted but unanswered, then found"
        );
        f.expect_message(CHANNEL, &format!("Rollback proposal {}", p.id));
        w
    })
    .await;
    w.finish().await;
}

/// A bot token Discord refuses stops `serve` with what to fix.
#[tokio::test]
async fn a_refused_bot_token_stops_serve_with_advice() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDiscord::start(&[CHANNEL]).await;
        std::fs::write(dir.path().join("token"), "not-the-token").unwrap();
        let d = dir.path().display();
        let config = Config::parse(&format!(
            r#"
            [store]
            path = "{d}/db"
            [discord]
            api_url = "{api}"
            bot_token = {{ file = "{d}/token" }}
            application_id = "{app}"
            "#,
            api = fake.api_url,
            app = fake_discord::APP_ID,
        ))
        .unwrap();
        let app = App::start(&config, None).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let e = app
            .serve(listener, std::future::pending())
            .await
            .expect_err("a refused token stops rollbot");
        let text = format!("{e:#}");
        assert!(
            text.contains("connecting to Discord")
                && text.contains("401")
                && text.contains("check discord.bot_token"),
            "{text}"
        );
    })
    .await;
}

/// Slack and Discord in one `serve`: each service's proposal goes to its
/// own platform, and each platform's command is answered on it.
#[tokio::test]
async fn slack_and_discord_serve_side_by_side() {
    use hmac::{Hmac, Mac};
    let slack = support::fake_slack::FakeSlack::start().await;
    let w = bounded(async {
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("slack-token"), "xoxb-test-token").unwrap();
        std::fs::write(dir.path().join("slack-secret"), secret).unwrap();
        let d = dir.path().display();
        let w = world(
            false,
            &format!(
                r#"
                [slack]
                api_url = "{api}"
                bot_token = {{ file = "{d}/slack-token" }}
                signing_secret = {{ file = "{d}/slack-secret" }}
                [services.payment-web]
                approvers = ["slack:UALICE", "slack:UBOB"]
                channel = "slack:CINCIDENT"
                [services.payment-web.kubernetes]
                namespace = "production"
                name = "prod-payment-deploy"
                "#,
                api = slack.api_url
            ),
        )
        .await;
        let f = &w.fake;
        let cmd = f.slash(CHANNEL, CAROL, &[], "propose", propose_options());
        assert_eq!(f.post_interaction(&w.endpoint(), &cmd).await.0, 200);
        let form = serde_urlencoded::to_string([
            ("team_id", "T0TEST"),
            ("channel_id", "CINCIDENT"),
            ("user_id", "UALICE"),
            ("user_name", "alice"),
            ("command", "/rollback"),
            ("text", "payment-web checkout errors"),
            (
                "response_url",
                "https://hooks.slack.com/commands/T0TEST/1/abc",
            ),
            ("trigger_id", "1.2.3"),
        ])
        .unwrap();
        let ts = chrono::Utc::now().timestamp();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("v0:{ts}:{form}").as_bytes());
        let r = reqwest::Client::new()
            .post(format!("{}/slack/commands", w.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header(
                "x-slack-signature",
                format!("v0={}", hex::encode(mac.finalize().into_bytes())),
            )
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        f.message_in(CHANNEL, "payment-api").await;
        slack
            .wait_for("the Slack proposal", |c| {
                c.iter().any(|c| c.method == "chat.postMessage")
            })
            .await;
        slack.expect_post("payment-web");
        // Each platform showed its own proposal only.
        let discord_posts = f.calls_to("POST /channels/");
        assert_eq!(discord_posts.len(), 1, "{discord_posts:?}");
        assert!(!discord_posts[0].body.to_string().contains("payment-web"));
        assert_eq!(slack.calls_to("chat.postMessage").len(), 1);
        w
    })
    .await;
    let w = w.finish().await;
    // Another handle on the App's queue: polled, as its worker tells
    // only its own handle.
    let outbox = rollbot::outbox::Outbox::open(w.engine.store(), "slack").unwrap();
    assert!(
        poll_until_sync(IDLE_LIMIT, || outbox.is_empty()).await,
        "the Slack outbox delivered everything"
    );
    slack.expect_no_messages();
}

/// The other verbs are answered at once and privately, in the person's
/// Discord locale; the service option completes from the configuration.
#[tokio::test]
async fn commands_answer_privately_in_the_users_locale_and_services_autocomplete() {
    let w = bounded(async {
        let w = world(false, "").await;
        let f = &w.fake;
        let mut typing = f.interaction(
            4,
            CHANNEL,
            CAROL,
            &[],
            json!({ "id": "771825006014889984", "name": "rollback", "type": 1, "options": [
                { "type": 1, "name": "propose", "options": [
                    { "type": 3, "name": "service", "value": "pay", "focused": true }
                ] }
            ] }),
            None,
        );
        let (status, answer) = f.post_interaction(&w.endpoint(), &typing).await;
        assert_eq!(status, 200);
        assert_eq!(
            answer,
            json!({ "type": 8, "data": { "choices": [{ "name": "payment-api", "value": "payment-api" }] } })
        );
        typing["data"]["options"][0]["options"][0]["value"] = json!("zzz");
        typing["id"] = json!("42");
        let (_, answer) = f.post_interaction(&w.endpoint(), &typing).await;
        assert_eq!(answer["data"]["choices"], json!([]));

        for (sub, locale, needle) in [
            ("help", "en-US", "**Usage**"),
            ("list", "en-US", "**Open proposals**"),
            ("help", "zh-CN", "用法"),
            ("help", "ja", "使い方"),
        ] {
            let mut cmd = f.slash(CHANNEL, MALLORY, &[], sub, json!([]));
            cmd["locale"] = json!(locale);
            let (status, answer) = f.post_interaction(&w.endpoint(), &cmd).await;
            assert_eq!(status, 200);
            assert_eq!((answer["type"].as_u64(), answer["data"]["flags"].as_u64()), (Some(4), Some(64)), "{answer}");
            let text = answer["data"]["content"].as_str().unwrap();
            assert!(text.contains(needle), "{sub} in {locale}: {text}");
        }
        // A kind of interaction rollbot does not take, worded in the
        // person's locale.
        let mut modal = f.interaction(5, CHANNEL, MALLORY, &[], json!({ "custom_id": "x", "components": [] }), None);
        modal["locale"] = json!("ja");
        let (_, answer) = f.post_interaction(&w.endpoint(), &modal).await;
        assert!(
            answer["data"]["content"].as_str().unwrap().contains("受け付けません"),
            "{answer}"
        );
        // A proposal id that does not exist: the person's mistake, worded.
        let cmd = f.slash(CHANNEL, MALLORY, &[], "cancel", json!([{ "type": 3, "name": "id", "value": "RB-AAAAAA" }]));
        let (_, answer) = f.post_interaction(&w.endpoint(), &cmd).await;
        assert!(
            answer["data"]["content"].as_str().unwrap().contains("Proposal RB-AAAAAA does not exist"),
            "{answer}"
        );
        w
    })
    .await;
    w.finish().await;
}
