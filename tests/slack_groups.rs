//! Approver groups kept in Slack (`slack-group:S…` in `[groups]`): read
//! with `usergroups.users.list` from the fake Slack at start-up, refreshed,
//! and fed to the engine's approval policy.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rollbot::chat::slack::Slack;
use rollbot::chat::slack::user_groups::UserGroups;
use rollbot::config::Config;
use rollbot::domain::{ManualClock, Refusal, ServiceName, State, UserId, VoteKind, VoteVia};
use rollbot::engine::{Engine, Ports, VoteReply};
use rollbot::ports::memory::{MemoryChat, ScriptedExecutor, ScriptedVerifier};
use rollbot::store::Store;
use rollbot::templates::Templates;
use support::fake_slack::FakeSlack;
use support::*;

/// payment-api: group `sre` = Alice plus Slack user group S0SRE; `leads`
/// (also S0SRE) is used by search, so S0SRE is read once for both.
fn config(fake: &FakeSlack, dir: &std::path::Path) -> Config {
    std::fs::write(dir.join("bot-token"), "xoxb-test-token").unwrap();
    std::fs::write(dir.join("signing-secret"), "secret").unwrap();
    let d = dir.display();
    Config::parse(&format!(
        r#"
        [approval]
        channel = "memory:incidents"
        [groups]
        sre = ["slack:UALICE", "slack-group:S0SRE"]
        leads = ["slack-group:S0SRE"]
        [services.payment-api]
        groups = ["sre"]
        [services.payment-api.kubernetes]
        namespace = "production"
        name = "prod-payment-deploy"
        [services.search]
        groups = ["leads"]
        [services.search.kubernetes]
        namespace = "production"
        name = "search"
        [slack]
        api_url = "{api}"
        bot_token = {{ file = "{d}/bot-token" }}
        signing_secret = {{ file = "{d}/signing-secret" }}
        "#,
        api = fake.api_url
    ))
    .unwrap()
}

struct GroupTester {
    engine: Engine,
    chat: Arc<MemoryChat>,
    executor: Arc<ScriptedExecutor>,
    slack: Slack,
    config: Config,
    fake: FakeSlack,
    _dir: tempfile::TempDir,
}

impl GroupTester {
    /// The engine with a memory chat; Slack is used for the groups only.
    async fn new(fake: FakeSlack) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&fake, dir.path());
        let store = Store::open(&dir.path().join("db")).unwrap();
        let templates = Arc::new(Templates::load().unwrap());
        let slack = Slack::new(config.slack.as_ref().unwrap(), &store, templates).unwrap();
        let executor = ScriptedExecutor::new(reference_plan());
        let chat = MemoryChat::new();
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
        Self {
            engine,
            chat,
            executor,
            slack,
            config,
            fake,
            _dir: dir,
        }
    }

    /// The end-of-test checks: background work done without a panic, and
    /// every message consumed, in the engine's chat and on the fake Slack.
    async fn finish(self) -> Result<(), Failure> {
        finish(&self.engine, &self.chat).await?;
        finish_slack(&self.engine, &self.fake).await
    }

    /// Consumes the post of proposal `id` in the engine's chat.
    #[track_caller]
    fn expect_posted(&self, id: &rollbot::domain::ProposalId) {
        assert!(self.chat.take_post(id).is_some(), "the post of {id}");
    }

    /// Consumes every thread note on `id`, checking their names in order.
    #[track_caller]
    fn expect_threads(&self, id: &rollbot::domain::ProposalId, names: &[&str]) {
        let got: Vec<String> = self
            .chat
            .take_threads(id)
            .iter()
            .map(|n| {
                serde_json::to_value(n).unwrap()["note"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(got, names, "the thread notes on {id}");
    }

    fn approvers(&self, service: &str) -> Vec<String> {
        let s = ServiceName::parse(service).unwrap();
        self.engine
            .approvers(&s)
            .unwrap()
            .iter()
            .map(|u| u.as_str().to_string())
            .collect()
    }

    /// Waits until `service`'s approvers are `want` (a refresh landed).
    async fn wait_approvers(&self, service: &str, want: &[&str]) {
        let landed = poll_until(WAIT_LIMIT, async || self.approvers(service) == want).await;
        assert!(
            landed,
            "{service}'s approvers stayed {:?}, expected {want:?}",
            self.approvers(service)
        );
    }
}

#[tokio::test]
async fn slack_group_members_approve_and_refreshes_follow_membership() {
    run(
        |fake| fake.set_user_group("S0SRE", &["UDAVE", "UERIN"]),
        |t| async move {
        let refresher = t
            .slack
            .user_groups(
                t.config.slack_user_groups(),
                &t.engine,
                Duration::from_millis(50),
            )
            .await
            .unwrap()
            .expect("services use a Slack user group");
        let calls = t.fake.calls_to("usergroups.users.list");
        assert_eq!(calls.len(), 1, "S0SRE is read once for both services");
        assert_eq!(calls[0].body["usergroup"], "S0SRE");
        assert_eq!(
            t.approvers("payment-api"),
            ["slack:UALICE", "slack:UDAVE", "slack:UERIN"]
        );
        assert_eq!(t.approvers("search"), ["slack:UDAVE", "slack:UERIN"]);

        // Group members vote like configured approvers; others are refused.
        let p = t.engine.propose(support_request("UALICE")).await.unwrap();
        t.expect_posted(&p.id);
        let frank = t
            .engine
            .vote(&p.id, &user("slack:UFRANK"), VoteKind::Approve, VoteVia::Reaction)
            .await
            .unwrap();
        assert!(
            matches!(
                frank,
                VoteReply::Refused(Refusal::NotAuthorised { ref service }) if service == "payment-api"
            ),
            "{frank:?}"
        );
        t.chat
            .take_told(&user("slack:UFRANK"), "vote_refused")
            .expect("Frank is told his vote was refused");
        assert!(t.engine.get(&p.id).unwrap().approvals.is_empty());
        t.engine
            .vote(&p.id, &user("slack:UDAVE"), VoteKind::Approve, VoteVia::Reaction)
            .await
            .unwrap();
        assert_eq!(t.engine.get(&p.id).unwrap().approvals.len(), 1);

        // Erin leaves the group, Frank joins: the next refresh applies it,
        // to the open proposal too.
        t.fake.set_user_group("S0SRE", &["UDAVE", "UFRANK"]);
        t.wait_approvers("payment-api", &["slack:UALICE", "slack:UDAVE", "slack:UFRANK"])
            .await;
        t.engine
            .vote(&p.id, &user("slack:UFRANK"), VoteKind::Approve, VoteVia::Reaction)
            .await
            .unwrap();
        t.engine.wait_idle().await;
        assert_eq!(t.executor.executions(), 1);
        assert_eq!(t.engine.get(&p.id).unwrap().state, State::RolledBack);
        t.expect_threads(
            &p.id,
            &["execution_started", "progress", "execution_finished"],
        );
        refresher.abort();
        t
    },
    )
    .await;
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_members_last_read() {
    run(
        |fake| fake.set_user_group("S0SRE", &["UDAVE"]),
        |t| async move {
            let session = t.slack.session.clone();
            let groups = UserGroups::new(session, t.config.slack_user_groups());
            groups.load(&t.engine).await.unwrap();
            assert_eq!(t.approvers("search"), ["slack:UDAVE"]);

            t.fake.remove_user_group("S0SRE");
            let errors = groups.refresh(&t.engine).await;
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].id, "S0SRE");
            assert_eq!(
                t.approvers("search"),
                ["slack:UDAVE"],
                "not emptied by a failure"
            );

            t.fake.set_user_group("S0SRE", &[]);
            assert!(groups.refresh(&t.engine).await.is_empty());
            assert!(
                t.approvers("search").is_empty(),
                "an emptied group is applied"
            );
            assert_eq!(t.approvers("payment-api"), ["slack:UALICE"]);
            t
        },
    )
    .await;
}

#[tokio::test]
async fn an_unknown_group_stops_start_up_naming_it() {
    run(
        |_| {},
        |t| async move {
        let err = t
            .slack
            .user_groups(t.config.slack_user_groups(), &t.engine, Duration::from_secs(600))
            .await
            .expect_err("S0SRE does not exist")
            .to_string();
        assert_eq!(
            err,
            "cannot read the members of Slack user group S0SRE (groups.leads[0], groups.sre[1]): Slack answered \"no_such_subteam\"; check the id (S…, from the group's page in Slack) and that the bot token has the usergroups:read scope"
        );
        assert!(t.approvers("search").is_empty());
        t
    },
    )
    .await;
}

#[tokio::test]
async fn without_slack_groups_nothing_is_read() {
    run(
        |_| {},
        |t| async move {
            let none = UserGroups::new(t.slack.session.clone(), Default::default());
            assert!(none.is_empty());
            let started = t
                .slack
                .user_groups(Default::default(), &t.engine, Duration::from_millis(10))
                .await
                .unwrap();
            assert!(started.is_none());
            assert!(t.fake.calls_to("usergroups.users.list").is_empty());
            t
        },
    )
    .await;
}

/// Runs a test in a world whose fake Slack `setup` prepared, under the
/// harness's timeout and end-of-test checks.
async fn run<F, Fut>(setup: impl FnOnce(&FakeSlack), body: F)
where
    F: FnOnce(GroupTester) -> Fut,
    Fut: std::future::Future<Output = GroupTester>,
{
    run_world(
        || async {
            let fake = FakeSlack::start().await;
            setup(&fake);
            GroupTester::new(fake).await
        },
        body,
        GroupTester::finish,
    )
    .await;
}

fn support_request(who: &str) -> rollbot::engine::ProposeRequest {
    rollbot::engine::ProposeRequest {
        service: ServiceName::parse("payment-api").unwrap(),
        origin: rollbot::domain::Origin::Command,
        proposer: UserId::parse(&format!("slack:{who}")).unwrap(),
        reason: "payment success rate 95%".into(),
        to_revision: None,
        image: None,
        alert: None,
        channel: None,
    }
}
