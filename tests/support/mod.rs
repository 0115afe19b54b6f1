//! The test harness: an in-memory world (config, people, a fake clock,
//! recording chat, scripted executor and verifier), verbs like `approve`,
//! and fluent expectations.
//!
//! Engine-level tests run through [`run_test`] (rust-lang/bors's habit): the
//! body runs under a timeout, then the harness waits for background work
//! and fails the test if a background task panicked or if the bot sent a
//! chat message the test did not consume (`expect_posted`, `expect_thread`,
//! `expect_told`, or, where a test truly does not care, `ignore_messages`).
//! Waiting for something to happen is [`wait_until`], never a fixed sleep.
#![allow(dead_code)]

pub mod fake_discord;
pub mod fake_slack;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rollbot::config::Config;
use rollbot::domain::{
    ContainerImage, ManualClock, Origin, Plan, Proposal, ProposalId, RevisionInfo, ServiceName,
    State, UserId, VoteKind, VoteVia,
};
use rollbot::engine::{Engine, EngineError, Ports, ProposeRequest, VoteReply};
use rollbot::http::webhooks::Webhooks;
use rollbot::http::{self, AppState};
use rollbot::ports::memory::{ChatCall, MemoryChat, ScriptedExecutor, ScriptedVerifier, Sent};
use rollbot::ports::{Executor, PrivateNote, ThreadNote};
use rollbot::store::Store;

/// The default world: payment-api with three SREs and a lead as approvers.
pub const CONFIG: &str = r#"
    [approval]
    channel = "memory:incidents"
    [groups]
    sre = ["slack:UALICE", "slack:UBOB", "discord:1001"]
    [services.payment-api]
    groups = ["sre"]
    approvers = ["slack:UCAROL"]
    [services.payment-api.kubernetes]
    namespace = "production"
    name = "prod-payment-deploy"
    [services.search]
    approvers = ["slack:UALICE"]
    required_approvals = 1
    allow_single_approver = true
    [services.search.kubernetes]
    namespace = "production"
    name = "search"
"#;

pub const BOT: &str = "slack:UROLLBOT";

/// Alert webhooks for every source, secrets in files under the tester's
/// directory (`@SECRETS@`), and one route: `service=payment-api` labels go
/// to payment-api. Append it to [`CONFIG`] with [`Tester::with_alerts`].
pub const ALERTS: &str = r#"
    [alerts.alertmanager]
    bearer_token = { file = "@SECRETS@/am-token" }
    [alerts.grafana]
    hmac_secret = { file = "@SECRETS@/grafana-hmac" }
    [alerts.generic]
    basic_auth = { username = "ci", password = { file = "@SECRETS@/generic-password" } }
    [alerts.pagerduty]
    signing_secret = { file = "@SECRETS@/pd-secret" }
"#;

/// The default route of [`Tester::with_alerts`] callers that need no other.
pub const PAYMENT_ROUTE: &str = r#"
    [[alerts.routes]]
    matchers = ["service=payment-api"]
    service = "payment-api"
"#;

pub const AM_TOKEN: &str = "am-token-0123";
pub const GRAFANA_SECRET: &str = "grafana-hmac-secret";
pub const GENERIC_PASSWORD: &str = "generic-pw";
pub const PD_SECRET: &str = "pd-signing-secret";

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, 14, 30, 0).unwrap()
}

pub fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// The reference incident's plan: v1.3.0 (revision 3) back to v1.2.0 (revision 2).
pub fn reference_plan() -> Plan {
    let rev = |revision, tag: &str| RevisionInfo {
        revision,
        images: vec![ContainerImage {
            container: "payment-api".into(),
            image: format!("payment-api:{tag}"),
        }],
        change_cause: Some(format!("deploy {tag}")),
    };
    Plan {
        workload: "deployment production/prod-payment-deploy".into(),
        current: rev(3, "v1.3.0"),
        target: rev(2, "v1.2.0"),
        warnings: vec![],
        migrations: false,
        blockers: vec![],
        guard: serde_json::Value::Null,
    }
}

/// How long a test body may run.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);
/// How long background work may take to finish after the body.
pub const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// How long [`wait_until`] waits for its condition.
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// Runs `f` under a timeout: no test may hang CI.
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test timed out after 60 s")
}

/// Why [`run_test`] failed a test whose body itself passed.
#[derive(Debug)]
pub enum Failure {
    /// The body did not finish within the limit.
    TimedOut(Duration),
    /// Background work was still running this long after the body.
    StillBusy(Duration),
    BackgroundPanic,
    /// Messages the bot sent that the test never consumed.
    Unconsumed(Vec<Sent>),
    /// Messages the bot showed on the fake Slack that the test never
    /// consumed, one line each ([`fake_slack::FakeSlack::describe_unconsumed`]).
    UnconsumedSlack(Vec<String>),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::TimedOut(d) => write!(f, "the test timed out after {d:?}"),
            Failure::StillBusy(d) => {
                write!(f, "background work still running {d:?} after the test")
            }
            Failure::BackgroundPanic => write!(f, "a background task panicked (see the log)"),
            Failure::Unconsumed(sent) => {
                writeln!(
                    f,
                    "the bot sent {} message(s) the test did not consume \
                     (expect_posted / expect_thread / expect_told them):",
                    sent.len()
                )?;
                for s in sent {
                    writeln!(f, "  - {s}")?;
                }
                Ok(())
            }
            Failure::UnconsumedSlack(left) => {
                writeln!(
                    f,
                    "the bot showed {} message(s) on Slack the test did not consume \
                     (expect_post / expect_reply / expect_ephemeral / expect_upload them):",
                    left.len()
                )?;
                for l in left {
                    writeln!(f, "{l}")?;
                }
                Ok(())
            }
        }
    }
}

/// Runs an engine-level test in the default world ([`Tester::new`]). The
/// body gets the tester and hands it back (after a restart it is a new
/// one) for the final checks; see [`try_run_test`].
pub async fn run_test<F, Fut>(body: F)
where
    F: FnOnce(Tester) -> Fut,
    Fut: std::future::Future<Output = Tester>,
{
    run_test_in(Tester::new, body).await;
}

/// [`run_test`] with a tester built by `make` (another config, executor…).
pub async fn run_test_in<F, Fut>(make: impl FnOnce() -> Tester, body: F)
where
    F: FnOnce(Tester) -> Fut,
    Fut: std::future::Future<Output = Tester>,
{
    run_test_within(TEST_LIMIT, make, body).await;
}

/// [`run_test_in`] with another limit, for a test that does a lot of work
/// on purpose (a day of alerts); say why where it is used.
pub async fn run_test_within<F, Fut>(limit: Duration, make: impl FnOnce() -> Tester, body: F)
where
    F: FnOnce(Tester) -> Fut,
    Fut: std::future::Future<Output = Tester>,
{
    if let Err(failure) = try_run_test(limit, make, body).await {
        panic!("{failure}");
    }
}

/// The body of [`run_test`] without the panic: builds the tester, runs
/// `body` under `limit`, then [`finish`]es. A failing assertion in the
/// body panics as usual.
///
/// # Errors
/// The body timed out, or [`finish`] failed.
pub async fn try_run_test<F, Fut>(
    limit: Duration,
    make: impl FnOnce() -> Tester,
    body: F,
) -> Result<(), Failure>
where
    F: FnOnce(Tester) -> Fut,
    Fut: std::future::Future<Output = Tester>,
{
    let t = tokio::time::timeout(limit, body(make()))
        .await
        .map_err(|_| Failure::TimedOut(limit))?;
    finish(&t.engine, &t.chat).await
}

/// The end-of-test checks, usable on an engine built some other way (the
/// whole `App`): waits for background work, then fails if any of it
/// panicked or if a message sent to `chat` was not consumed.
///
/// # Errors
/// The first of: still busy after [`IDLE_LIMIT`], a background panic,
/// unconsumed messages.
pub async fn finish(engine: &Engine, chat: &MemoryChat) -> Result<(), Failure> {
    finish_within(IDLE_LIMIT, engine, chat).await
}

/// [`finish`] with another limit on the wait for background work.
///
/// # Errors
/// As [`finish`].
pub async fn finish_within(
    idle_limit: Duration,
    engine: &Engine,
    chat: &MemoryChat,
) -> Result<(), Failure> {
    tokio::time::timeout(idle_limit, engine.wait_idle())
        .await
        .map_err(|_| Failure::StillBusy(idle_limit))?;
    // Checked before the messages: a panic usually explains a missing or
    // stray message, and is the thing to fix first.
    if engine.background_panicked() {
        return Err(Failure::BackgroundPanic);
    }
    let left = chat.unconsumed();
    if !left.is_empty() {
        return Err(Failure::Unconsumed(left));
    }
    Ok(())
}

/// [`finish`] for an engine whose chat is Slack (the fake): waits for
/// background work, then fails on a background panic or on a message the
/// bot showed on `slack` that the test did not consume. The caller waits
/// for its own adapter first (inbound tasks, the outbox), as only it knows
/// them.
///
/// # Errors
/// As [`finish`].
pub async fn finish_slack(engine: &Engine, slack: &fake_slack::FakeSlack) -> Result<(), Failure> {
    tokio::time::timeout(IDLE_LIMIT, engine.wait_idle())
        .await
        .map_err(|_| Failure::StillBusy(IDLE_LIMIT))?;
    if engine.background_panicked() {
        return Err(Failure::BackgroundPanic);
    }
    let left = slack.describe_unconsumed();
    if !left.is_empty() {
        return Err(Failure::UnconsumedSlack(left));
    }
    Ok(())
}

/// [`finish_slack`] for a whole `App` (whose Slack adapter a test cannot
/// reach): also waits until the `slack` outbox in the engine's store has
/// delivered everything, so no message is still on its way.
///
/// # Errors
/// As [`finish`].
pub async fn finish_app(engine: &Engine, slack: &fake_slack::FakeSlack) -> Result<(), Failure> {
    let outbox = rollbot::outbox::Outbox::open(engine.store(), "slack").unwrap();
    tokio::time::timeout(IDLE_LIMIT, async {
        loop {
            engine.wait_idle().await;
            if outbox.is_empty() {
                return;
            }
            poll_until_sync(IDLE_LIMIT, || outbox.is_empty()).await;
        }
    })
    .await
    .map_err(|_| Failure::StillBusy(IDLE_LIMIT))?;
    finish_slack(engine, slack).await
}

/// Runs a Slack-level test: builds its world with `make`, runs `body`
/// under [`TEST_LIMIT`], then calls `finish` on what the body hands back
/// (which settles the world and calls [`finish_slack`]), panicking on
/// failure.
pub async fn run_world<W, M, MF, F, Fut, Fin, FinF>(make: M, body: F, finish: Fin)
where
    M: FnOnce() -> MF,
    MF: std::future::Future<Output = W>,
    F: FnOnce(W) -> Fut,
    Fut: std::future::Future<Output = W>,
    Fin: FnOnce(W) -> FinF,
    FinF: std::future::Future<Output = Result<(), Failure>>,
{
    let w = tokio::time::timeout(TEST_LIMIT, async { body(make().await).await })
        .await
        .unwrap_or_else(|_| panic!("{}", Failure::TimedOut(TEST_LIMIT)));
    if let Err(failure) = finish(w).await {
        panic!("{failure}");
    }
}

/// Waits until `cond` holds, polling, for at most [`WAIT_LIMIT`]; panics
/// naming `what` otherwise. For conditions nothing notifies us of (a
/// state in the store, a file, a process); where something does notify
/// (`MemoryChat::wait_for`, `Engine::wait_idle`), wait on that instead.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    wait_until_within(WAIT_LIMIT, what, async || cond()).await;
}

/// [`wait_until`] for a condition that must itself await (an HTTP probe).
pub async fn wait_until_async(what: &str, cond: impl AsyncFnMut() -> bool) {
    wait_until_within(WAIT_LIMIT, what, cond).await;
}

/// [`wait_until_async`] with another limit (a slow external program).
pub async fn wait_until_within(limit: Duration, what: &str, cond: impl AsyncFnMut() -> bool) {
    assert!(
        poll_until(limit, cond).await,
        "timed out after {limit:?} waiting until {what}"
    );
}

/// Polls `cond` until it holds (true) or `limit` has passed (false), for a
/// caller that explains a timeout itself (with an external program's log).
pub async fn poll_until(limit: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond().await {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        // The polling interval, not a guess at how long the work takes:
        // the condition decides when we go on.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// [`poll_until`] for a plain condition, usable inside a spawned task: a
/// future generic over `AsyncFnMut` is not (yet) provably `Send` to the
/// compiler, this one is.
pub async fn poll_until_sync(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        // The polling interval; the condition decides when we go on.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

pub struct Tester {
    pub engine: Engine,
    pub chat: Arc<MemoryChat>,
    pub executor: Arc<ScriptedExecutor>,
    pub verifier: Arc<ScriptedVerifier>,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

impl Tester {
    pub fn new() -> Self {
        Self::with_config(CONFIG)
    }

    pub fn with_config(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        Self::from_parts(config, store, dir)
    }

    /// A tester whose engine uses `executor` (e.g. the real Kubernetes one)
    /// instead of the scripted double.
    pub fn with_executor(config: &str, executor: Arc<dyn Executor>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        Self::build(config, store, dir, Some(executor), MemoryChat::new())
    }

    /// [`CONFIG`] plus [`ALERTS`] plus `extra` (routes, `[server]`…), with
    /// the webhook secrets written to files.
    pub fn with_alerts(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        std::fs::create_dir(&secrets).unwrap();
        for (file, value) in [
            ("am-token", AM_TOKEN),
            ("grafana-hmac", GRAFANA_SECRET),
            ("generic-password", GENERIC_PASSWORD),
            ("pd-secret", PD_SECRET),
        ] {
            std::fs::write(secrets.join(file), value).unwrap();
        }
        let text = format!("{CONFIG}\n{extra}\n{ALERTS}")
            .replace("@SECRETS@", &secrets.display().to_string());
        let store = Store::open(&dir.path().join("db")).unwrap();
        Self::from_parts(&text, store, dir)
    }

    /// Starts the real router on 127.0.0.1:0 with this tester's engine and
    /// its config's `[alerts]` and `server.body_limit_bytes`.
    pub async fn serve(&self) -> Server {
        let webhooks = Webhooks::from_config(self.config.alerts.as_ref())
            .expect("webhook secrets are readable");
        let state = AppState {
            webhooks: Arc::new(webhooks),
            ..AppState::new(self.engine.clone(), Arc::new(AtomicBool::new(true)))
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(http::serve(
            listener,
            http::router(state.clone(), self.config.server.body_limit_bytes),
            std::future::pending(),
        ));
        Server {
            base: format!("http://{addr}"),
            state,
            client: reqwest::Client::new(),
        }
    }

    /// Every proposal in the store.
    pub fn proposals(&self) -> Vec<Proposal> {
        self.engine.store().list().unwrap()
    }

    fn from_parts(config: &str, store: Store, dir: tempfile::TempDir) -> Self {
        Self::build(config, store, dir, None, MemoryChat::new())
    }

    fn build(
        config: &str,
        store: Store,
        dir: tempfile::TempDir,
        real: Option<Arc<dyn Executor>>,
        chat: Arc<MemoryChat>,
    ) -> Self {
        let config = Config::parse(config).expect("test config is valid");
        let executor = ScriptedExecutor::new(reference_plan());
        let verifier = ScriptedVerifier::new();
        let clock = Arc::new(ManualClock::new(t0()));
        let engine = Engine::new(
            store,
            config.services(),
            Ports {
                chat: chat.clone(),
                executor: real.unwrap_or_else(|| executor.clone()),
                verifier: verifier.clone(),
                clock: clock.clone(),
            },
        );
        engine.add_bot_identity(user(BOT));
        Self {
            engine,
            chat,
            executor,
            verifier,
            clock,
            dir,
            config,
        }
    }

    /// Simulates a restart: drops the engine and store, reopens the same db.
    /// The chat is the outside world and stays: what the bot sent before
    /// the restart is still there, and still has to be consumed.
    pub async fn restart(self) -> Self {
        self.engine.wait_idle().await;
        self.engine.store().flush().await.unwrap();
        let dir = self.dir;
        let chat = self.chat;
        drop(self.engine);
        let store = Store::open(&dir.path().join("db")).unwrap();
        Self::build(CONFIG, store, dir, None, chat)
    }

    /// [`Tester::restart`] into another world: `config` and `executor`
    /// (`None`: the scripted one), with the clock where it was.
    pub async fn restart_with(self, config: &str, executor: Option<Arc<dyn Executor>>) -> Self {
        self.engine.wait_idle().await;
        self.engine.store().flush().await.unwrap();
        let now = rollbot::domain::Clock::now(&*self.clock);
        let (dir, chat) = (self.dir, self.chat);
        drop(self.engine);
        let store = Store::open(&dir.path().join("db")).unwrap();
        let t = Self::build(config, store, dir, executor, chat);
        t.clock.set(now);
        t
    }

    /// `/rollback payment-api` typed by `who`.
    pub async fn propose_by(&self, who: &str) -> Result<Proposal, EngineError> {
        self.propose_for("payment-api", who).await
    }

    pub async fn propose_for(&self, service: &str, who: &str) -> Result<Proposal, EngineError> {
        self.engine
            .propose(ProposeRequest {
                service: ServiceName::parse(service).unwrap(),
                origin: Origin::Command,
                proposer: user(who),
                reason: "payment success rate 95%".into(),
                to_revision: None,
                image: None,
                alert: None,
                channel: None,
            })
            .await
    }

    pub async fn approve(&self, id: &ProposalId, who: &str) -> VoteReply {
        self.engine
            .vote(id, &user(who), VoteKind::Approve, VoteVia::Reaction)
            .await
            .unwrap()
    }

    pub async fn reject(&self, id: &ProposalId, who: &str) -> VoteReply {
        self.engine
            .vote(id, &user(who), VoteKind::Reject, VoteVia::Button)
            .await
            .unwrap()
    }

    pub fn proposal(&self, id: &ProposalId) -> ProposalExpect {
        ProposalExpect {
            proposal: self.engine.get(id).unwrap(),
            timeline: self.engine.store().timeline(id).unwrap(),
        }
    }

    /// Waits for background work, then fails if any of it panicked.
    pub async fn settle(&self) {
        self.engine.wait_idle().await;
        assert!(
            !self.engine.background_panicked(),
            "a background task panicked"
        );
    }

    /// Consumes the post of proposal `id`; returns the channel it went to.
    #[track_caller]
    pub fn expect_posted(&self, id: &ProposalId) -> String {
        self.chat
            .take_post(id)
            .unwrap_or_else(|| self.missing(&format!("the post of proposal {id}")))
    }

    /// Consumes the oldest pending proposal post, whichever proposal it is
    /// (one opened by an alert); returns that proposal's id.
    #[track_caller]
    pub fn expect_new_proposal(&self) -> ProposalId {
        self.chat
            .take(|s| matches!(s.call, ChatCall::Posted { .. }))
            .unwrap_or_else(|| self.missing("a proposal post"))
            .proposal
    }

    /// Consumes the oldest pending thread note named `name` (its serialised
    /// tag: `execution_started`, `verification`, `report`…) on `id`.
    #[track_caller]
    pub fn expect_thread(&self, id: &ProposalId, name: &str) -> ThreadNote {
        self.chat
            .take_thread(id, name)
            .unwrap_or_else(|| self.missing(&format!("a `{name}` thread note on {id}")))
    }

    /// [`Tester::expect_thread`] for a note sent by work the test does not
    /// otherwise wait for (a delivery processed by a real Alertmanager):
    /// waits for it, for at most [`WAIT_LIMIT`].
    pub async fn expect_thread_soon(&self, id: &ProposalId, name: &str) -> ThreadNote {
        let sent = tokio::time::timeout(
            WAIT_LIMIT,
            self.chat.take_when(|s| {
                &s.proposal == id && matches!(s.call, ChatCall::Thread { .. }) && s.name() == name
            }),
        )
        .await
        .unwrap_or_else(|_| {
            self.missing(&format!(
                "a `{name}` thread note on {id} within {WAIT_LIMIT:?}"
            ))
        });
        match sent.call {
            ChatCall::Thread { note, .. } => note,
            other => unreachable!("matched a thread note, got {other:?}"),
        }
    }

    /// Consumes every pending thread note on `id` and checks their names,
    /// in order: nothing missing, nothing extra.
    #[track_caller]
    pub fn expect_threads(&self, id: &ProposalId, names: &[&str]) -> Vec<ThreadNote> {
        let notes = self.chat.take_threads(id);
        let got: Vec<String> = notes
            .iter()
            .map(|n| {
                serde_json::to_value(n).unwrap()["note"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(got, names, "the thread notes on {id}");
        notes
    }

    /// Consumes the oldest pending private note named `name`
    /// (`vote_refused`, `already_counted`, `text`) told to `who`.
    #[track_caller]
    pub fn expect_told(&self, who: &str, name: &str) -> PrivateNote {
        self.chat
            .take_told(&user(who), name)
            .unwrap_or_else(|| self.missing(&format!("a `{name}` note told to {who}")))
    }

    /// Fails now if a message is pending: the bot sent nothing unexpected
    /// up to this point.
    #[track_caller]
    pub fn expect_no_messages(&self) {
        let left = self.chat.unconsumed();
        assert!(left.is_empty(), "{}", Failure::Unconsumed(left));
    }

    /// Consumes every pending message: for a test about something else
    /// (the store, HTTP) that would otherwise restate the bot's chatter.
    /// Use sparingly; the messages are part of the behaviour.
    pub fn ignore_messages(&self) {
        self.chat.consume_all();
    }

    #[track_caller]
    fn missing(&self, what: &str) -> ! {
        let pending: Vec<String> = self
            .chat
            .unconsumed()
            .iter()
            .map(|s| format!("  - {s}"))
            .collect();
        panic!(
            "expected {what}; pending messages:\n{}",
            if pending.is_empty() {
                "  (none)".to_string()
            } else {
                pending.join("\n")
            }
        )
    }

    /// Private messages told to `who`, as JSON, without consuming them
    /// (tests under [`run_test`] use [`Tester::expect_told`]).
    pub fn told(&self, who: &str) -> Vec<String> {
        self.chat
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                ChatCall::Told { user: u, note, .. } if u.as_str() == who => {
                    Some(serde_json::to_string(&note).unwrap())
                }
                _ => None,
            })
            .collect()
    }
}

/// rollbot's HTTP server started by [`Tester::serve`].
pub struct Server {
    pub base: String,
    /// The live state: arm `state.faults`, read `state.metrics`.
    pub state: AppState,
    pub client: reqwest::Client,
}

impl Server {
    /// POSTs an Alertmanager body with the right bearer token.
    pub async fn alertmanager(&self, body: &serde_json::Value) -> reqwest::Response {
        self.post(
            "/webhooks/alertmanager",
            &[("authorization", &format!("Bearer {AM_TOKEN}"))],
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// POSTs raw bytes with the given headers.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    /// The `/metrics` text, once the metrics are rebuilt after a start.
    pub async fn metrics(&self) -> String {
        for _ in 0..500 {
            let r = self
                .client
                .get(format!("{}/metrics", self.base))
                .send()
                .await
                .unwrap();
            if r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE {
                return r.text().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("/metrics still rebuilding after 5 s");
    }

    /// The value of one sample line of `/metrics` (0 when absent).
    pub async fn metric(&self, sample: &str) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
            .map_or(0, |v| v.trim().parse().unwrap())
    }
}

/// One Alertmanager v4 alert.
pub fn am_alert(
    name: &str,
    extra: &[(&str, &str)],
    status: &str,
    starts_at: &str,
    ends_at: &str,
) -> serde_json::Value {
    let mut labels =
        serde_json::json!({ "alertname": name, "service": "payment-api", "severity": "critical" });
    for (k, v) in extra {
        labels[*k] = serde_json::Value::from(*v);
    }
    serde_json::json!({
        "status": status,
        "labels": labels,
        "annotations": { "summary": format!("{name} on payment-api") },
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
    })
}

/// An Alertmanager v4 webhook body around `alerts`.
pub fn am_body(alerts: Vec<serde_json::Value>) -> serde_json::Value {
    let firing = alerts.iter().any(|a| a["status"] == "firing");
    serde_json::json!({
        "receiver": "rollbot",
        "status": if firing { "firing" } else { "resolved" },
        "alerts": alerts,
        "groupLabels": { "service": "payment-api" },
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "version": "4",
        "groupKey": "{}:{service=\"payment-api\"}",
        "truncatedAlerts": 0,
    })
}

/// Fluent assertions on one proposal.
pub struct ProposalExpect {
    pub proposal: Proposal,
    pub timeline: Vec<rollbot::domain::TimelineEvent>,
}

impl ProposalExpect {
    pub fn expect_state(&self, state: State) -> &Self {
        assert_eq!(self.proposal.state, state, "proposal {}", self.proposal.id);
        self
    }

    pub fn expect_approved_by(&self, who: &[&str]) -> &Self {
        let got: Vec<_> = self.proposal.approvers().map(UserId::as_str).collect();
        assert_eq!(got, who);
        self
    }

    /// The timeline's event names, in order.
    pub fn events(&self) -> Vec<&'static str> {
        self.timeline.iter().map(|e| e.kind.name()).collect()
    }

    pub fn expect_events(&self, names: &[&str]) -> &Self {
        assert_eq!(self.events(), names);
        self
    }
}
