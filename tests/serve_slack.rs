//! `serve` as deployed with `[slack]`: the application wired from config
//! alone (Slack adapter, outbox worker, `auth.test`, the `/slack/*` routes,
//! the Kubernetes executor) — a slash command and two ✅ reactions roll the
//! simulated cluster back, and every message reaches the fake Slack.

mod support;

use hmac::{Hmac, Mac};
use rollbot::app::App;
use rollbot::config::Config;
use rollbot::domain::State;
use rollbot::sim::{self, Kind, seed::Seed};
use serde_json::json;
use sha2::Sha256;
use support::fake_slack::FakeSlack;
use support::*;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const CHANNEL: &str = "CINCIDENT";

fn signed(
    http: &reqwest::Client,
    url: String,
    content_type: &str,
    body: String,
) -> reqwest::RequestBuilder {
    let ts = chrono::Utc::now().timestamp();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    http.post(url)
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", ts.to_string())
        .header(
            "x-slack-signature",
            format!("v0={}", hex::encode(mac.finalize().into_bytes())),
        )
        .body(body)
}

#[tokio::test]
async fn a_slash_command_and_two_reactions_roll_the_cluster_back() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSlack::start().await;
        let cluster = cluster_and_secrets(dir.path()).await;
        let config = Config::parse(&serve_config(
            dir.path(),
            &fake.api_url,
            &["UALICE", "UBOB", "UCAROL"],
            "",
        ))
        .unwrap();
        let app = App::start(&config, None).await.unwrap();
        let engine = app.engine().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(app.serve(listener, std::future::pending()));
        let http = reqwest::Client::new();

        let form = serde_urlencoded::to_string([
            ("team_id", "T0TEST"),
            ("channel_id", CHANNEL),
            ("user_id", "UCAROL"),
            ("user_name", "carol"),
            ("command", "/rollback"),
            ("text", "payment-api success rate 95%"),
            (
                "response_url",
                "https://hooks.slack.com/commands/T0TEST/1/abc",
            ),
            ("trigger_id", "1.2.3"),
        ])
        .unwrap();
        let r = signed(
            &http,
            format!("{base}/slack/commands"),
            "application/x-www-form-urlencoded",
            form,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        fake.wait_for("the proposal", |c| {
            c.iter().any(|c| c.method == "chat.postMessage")
        })
        .await;
        // The message's ts, once the outbox has mapped Slack's answer to it.
        let mut mapped = None;
        wait_until("the outbox maps the proposal to its Slack ts", || {
            mapped = engine.store().list().unwrap().pop().and_then(|p| {
                let at = p.primary_message()?;
                let ts = at.message.clone();
                (!ts.starts_with("pending")).then_some((p, ts))
            });
            mapped.is_some()
        })
        .await;
        let (p, ts) = mapped.unwrap();

        for (event, who) in [("Ev1", "UALICE"), ("Ev2", "UBOB")] {
            let body = json!({
                "token": "x", "team_id": "T0TEST", "api_app_id": "A0TEST", "type": "event_callback",
                "event_id": event, "event_time": 1700000100,
                "event": {"type": "reaction_added", "user": who, "reaction": "white_check_mark",
                          "item_user": "UROLLBOT", "event_ts": "1700000100.000100",
                          "item": {"type": "message", "channel": CHANNEL, "ts": ts}}
            })
            .to_string();
            let r = signed(
                &http,
                format!("{base}/slack/events"),
                "application/json",
                body,
            )
            .send()
            .await
            .unwrap();
            assert_eq!(r.status(), 200);
        }

        wait_until("the rollback finishes", || {
            !matches!(
                engine.get(&p.id).unwrap().state,
                State::Proposed | State::Approved | State::Executing
            )
        })
        .await;
        assert_eq!(engine.get(&p.id).unwrap().state, State::RolledBack);
        let d = cluster
            .get(Kind::Deployment, "production", "prod-payment-deploy")
            .unwrap();
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "payment-api:v1.2.0"
        );
        // The message was updated in place and the rollout reported in its thread.
        fake.wait_for("thread replies", |c| {
            c.iter().any(|c| {
                c.method == "chat.postMessage"
                    && c.body["thread_ts"].is_string()
                    && c.body.to_string().contains("successfully rolled out")
            })
        })
        .await;
        assert!(fake.calls_to("chat.update").len() >= 2);
        assert!(
            !fake.calls_to("auth.test").is_empty(),
            "the bot's id was asked"
        );
        fake.expect_post(&format!("Rollback proposal {}", p.id));
        fake.expect_reply(&ts, "Rolling back payment-api");
        // kubectl's progress lines, as many as the rollout took.
        fake.take_replies(&ts, "`Waiting for");
        fake.expect_reply(&ts, "Rollback complete");
        finish_app(&engine, &fake)
            .await
            .unwrap_or_else(|f| panic!("{f}"));
    })
    .await;
}

/// `/readyz`'s status and body.
async fn readyz(http: &reqwest::Client, base: &str) -> (u16, serde_json::Value) {
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A signed `reaction_added` of ✅ by `who` on `ts`.
fn reaction(event: &str, who: &str, ts: &str) -> String {
    json!({
        "token": "x", "team_id": "T0TEST", "api_app_id": "A0TEST", "type": "event_callback",
        "event_id": event, "event_time": 1700000100,
        "event": {"type": "reaction_added", "user": who, "reaction": "white_check_mark",
                  "item_user": "UROLLBOT", "event_ts": "1700000100.000100",
                  "item": {"type": "message", "channel": CHANNEL, "ts": ts}}
    })
    .to_string()
}

#[tokio::test]
async fn serve_takes_alerts_while_slack_is_down_and_posts_them_once_it_is_back() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSlack::start().await;
        fake.go_down();
        // Kept alive for the whole test: the simulator stops when dropped.
        let _cluster = cluster_and_secrets(dir.path()).await;
        std::fs::write(dir.path().join("am-token"), AM_TOKEN).unwrap();
        let d = dir.path().display();
        let config = Config::parse(&serve_config(
            dir.path(),
            &fake.api_url,
            &["UALICE", "UBOB"],
            &format!(
                r#"
                [approval]
                channel = "slack:{CHANNEL}"
                [alerts.alertmanager]
                bearer_token = {{ file = "{d}/am-token" }}
                [[alerts.routes]]
                matchers = ["service=payment-api"]
                service = "payment-api"
                "#
            ),
        ))
        .unwrap();
        // Slack answers 500 to everything: rollbot starts anyway.
        let app = App::start(&config, None)
            .await
            .expect("start-up does not wait for Slack");
        let engine = app.engine().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = tokio::spawn(app.serve(listener, std::future::pending()));
        let http = reqwest::Client::new();
        let (status, body) = readyz(&http, &base).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            json!({"status": "ready", "chat": {"slack": "connecting"}})
        );

        // A vote cannot be told from the bot's own yet: Slack is asked to retry.
        let r = signed(
            &http,
            format!("{base}/slack/events"),
            "application/json",
            reaction("Ev0", "UALICE", "1700000000.000001"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));

        // The alert is accepted and its proposal stored.
        let starts = (chrono::Utc::now() - chrono::Duration::minutes(6)).to_rfc3339();
        let alert = am_alert(
            "PaymentSuccessRateLow",
            &[],
            "firing",
            &starts,
            "0001-01-01T00:00:00Z",
        );
        let r = http
            .post(format!("{base}/webhooks/alertmanager"))
            .bearer_auth(AM_TOKEN)
            .json(&am_body(vec![alert]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let p = engine.store().list().unwrap().pop().expect("the proposal");
        assert!(fake.calls_to("chat.postMessage").is_empty());
        assert!(fake.failures() > 0, "Slack was asked and failed");

        // Slack is back: the proposal is posted, once, and Slack connected.
        fake.recover();
        fake.wait_for("the proposal", |c| {
            c.iter().any(|c| c.method == "chat.postMessage")
        })
        .await;
        // The engine keeps the provisional reference it got while Slack was
        // down; the outbox maps it to the message's real ts, the first the
        // fake hands out.
        let ts = "1700000000.000001".to_string();
        wait_until_async("/readyz reports Slack connected", async || {
            let (status, body) = readyz(&http, &base).await;
            assert_eq!(status, 200, "{body}");
            body["chat"]["slack"] == "connected"
        })
        .await;

        // Later updates reach that message.
        let r = signed(
            &http,
            format!("{base}/slack/events"),
            "application/json",
            reaction("Ev1", "UALICE", &ts),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        fake.wait_for("the vote's update", |c| {
            c.iter().any(|c| {
                c.method == "chat.update" && c.body.to_string().contains("1 of 2 approvals")
            })
        })
        .await;
        let posts: Vec<_> = fake
            .calls_to("chat.postMessage")
            .into_iter()
            .filter(|c| {
                c.body["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(p.id.as_str())
            })
            .filter(|c| c.body.get("thread_ts").is_none())
            .collect();
        assert_eq!(posts.len(), 1, "posted once: {posts:#?}");
        let updates = fake.calls_to("chat.update");
        assert!(
            updates.iter().all(|c| c.body["ts"] == ts.as_str()),
            "{updates:#?}"
        );
        assert_eq!(engine.get(&p.id).unwrap().approvals.len(), 1);
        assert!(!served.is_finished(), "still serving");
        fake.expect_post(&format!("Rollback proposal {}", p.id));
        finish_app(&engine, &fake)
            .await
            .unwrap_or_else(|f| panic!("{f}"));
    })
    .await;
}

#[tokio::test]
async fn a_refused_bot_token_stops_serve_with_advice() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSlack::start().await;
        // A revoked token, after Slack first asked to wait: the 429 is
        // waited out, the refusal is final.
        fake.rate_limit(1);
        fake.refuse_next("auth.test", "token_revoked");
        std::fs::write(dir.path().join("bot-token"), "xoxb-revoked").unwrap();
        std::fs::write(dir.path().join("signing-secret"), SECRET).unwrap();
        // Never contacted: nothing is rolled back.
        std::fs::write(
            dir.path().join("kubeconfig"),
            "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\nusers: [{name: u, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
        )
        .unwrap();
        let cfg = dir.path().join("rollbot.toml");
        std::fs::write(
            &cfg,
            serve_config(
                dir.path(),
                &fake.api_url,
                &["UALICE", "UBOB"],
                "[server]\nlisten = \"127.0.0.1:0\"\n",
            ),
        )
        .unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollbot"))
            .args(["serve", "--config", cfg.to_str().unwrap()])
            .env("ROLLBOT_LOG", "warn")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("token_revoked"), "{stderr}");
        assert!(stderr.contains("check slack.bot_token"), "{stderr}");
        assert_eq!(fake.calls_to("auth.test").len(), 1, "asked again after the 429 only");
        assert_eq!(fake.failures(), 1);
        fake.expect_no_messages();
    })
    .await;
}

/// `serve` routes by the channel's platform: with only Slack configured, a
/// proposal for a Discord channel is not handed to Slack (which would post
/// it to a channel named `discord:…`) but recorded on the proposal's
/// timeline with what to configure.
#[tokio::test]
async fn a_channel_of_an_unconfigured_platform_is_refused_by_name() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSlack::start().await;
        let _cluster = cluster_and_secrets(dir.path()).await;
        let config = Config::parse(&serve_config(
            dir.path(),
            &fake.api_url,
            &["UALICE", "UBOB"],
            "[approval]\nchannel = \"discord:1234567890\"\n",
        ))
        .unwrap();
        let app = App::start(&config, None).await.unwrap();
        let engine = app.engine().clone();
        let p = engine
            .propose(rollbot::engine::ProposeRequest {
                service: rollbot::domain::ServiceName::parse("payment-api").unwrap(),
                origin: rollbot::domain::Origin::Command,
                proposer: user("slack:UALICE"),
                reason: "checkout errors".into(),
                to_revision: None,
                image: None,
                alert: None,
                channel: None,
            })
            .await
            .unwrap();
        assert!(p.primary_message().is_none(), "{:?}", p.messages);
        let errors: Vec<String> = engine
            .store()
            .timeline(&p.id)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.kind {
                rollbot::domain::EventKind::ChatError { detail } => Some(detail),
                _ => None,
            })
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("no discord chat is configured")
                && errors[0].contains("configured: slack"),
            "{errors:?}"
        );
        engine.wait_idle().await;
        assert!(fake.calls_to("chat.postMessage").is_empty());
        finish_app(&engine, &fake)
            .await
            .unwrap_or_else(|f| panic!("{f}"));
    })
    .await;
}

/// There is no Discord adapter yet: `[discord]` stops start-up saying so,
/// instead of running without the chat the operator asked for.
#[tokio::test]
async fn a_discord_section_is_refused_until_there_is_an_adapter() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSlack::start().await;
        let _cluster = cluster_and_secrets(dir.path()).await;
        let config = Config::parse(&serve_config(
            dir.path(),
            &fake.api_url,
            &["UALICE", "UBOB"],
            "[discord]\nbot_token = { env = \"ROLLBOT_TEST_DISCORD_TOKEN\" }\npublic_key = \"abc\"\n",
        ))
        .unwrap();
        let Err(e) = App::start(&config, None).await else {
            panic!("[discord] must be refused");
        };
        let text = format!("{e:#}");
        assert!(
            text.contains("[discord] is configured")
                && text.contains("no Discord adapter yet")
                && text.contains("remove the [discord] section"),
            "{text}"
        );
        assert!(fake.calls().is_empty(), "nothing started: {:?}", fake.calls());
    })
    .await;
}

/// The reference cluster in a simulator, with its kubeconfig and Slack's
/// token and signing secret written to `dir` for the config to name.
async fn cluster_and_secrets(dir: &std::path::Path) -> sim::SimHandle {
    let seed = Seed::from_file("config/sim-payment.yaml".as_ref()).unwrap();
    let cluster = sim::start(
        seed,
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    cluster.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
    std::fs::write(dir.join("bot-token"), "xoxb-test-token").unwrap();
    std::fs::write(dir.join("signing-secret"), SECRET).unwrap();
    cluster
}

/// A config for `serve` against [`cluster_and_secrets`] in `dir` and the
/// fake Slack at `api`: payment-api approved by `approvers` (Slack ids),
/// plus the `extra` TOML sections a test needs.
fn serve_config(dir: &std::path::Path, api: &str, approvers: &[&str], extra: &str) -> String {
    let d = dir.display();
    let sre: Vec<String> = approvers.iter().map(|a| format!("\"slack:{a}\"")).collect();
    format!(
        r#"
        [store]
        path = "{d}/db"
        [groups]
        sre = [{sre}]
        [services.payment-api]
        groups = ["sre"]
        [services.payment-api.kubernetes]
        namespace = "production"
        name = "prod-payment-deploy"
        [kubernetes]
        kubeconfig = "{d}/kubeconfig"
        [slack]
        api_url = "{api}"
        bot_token = {{ file = "{d}/bot-token" }}
        signing_secret = {{ file = "{d}/signing-secret" }}
        {extra}
        "#,
        sre = sre.join(", ")
    )
}
