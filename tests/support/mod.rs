//! The test harness: an in-memory world (config, people, a fake clock,
//! recording chat, scripted executor and verifier), verbs like `approve`,
//! and fluent expectations. Every test runs under a timeout and fails if a
//! background task panicked.
#![allow(dead_code)]

pub mod fake_slack;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rollbot::config::Config;
use rollbot::domain::{
    ContainerImage, ManualClock, Origin, Plan, Proposal, ProposalId, RevisionInfo, ServiceName,
    State, UserId, VoteKind, VoteVia,
};
use rollbot::engine::{Engine, EngineError, Ports, ProposeRequest, VoteReply};
use rollbot::ports::memory::{ChatCall, MemoryChat, ScriptedExecutor, ScriptedVerifier};
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
        guard: serde_json::Value::Null,
    }
}

/// Runs `f` under a timeout: no test may hang CI.
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test timed out after 60 s")
}

pub struct Tester {
    pub engine: Engine,
    pub chat: Arc<MemoryChat>,
    pub executor: Arc<ScriptedExecutor>,
    pub verifier: Arc<ScriptedVerifier>,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
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

    fn from_parts(config: &str, store: Store, dir: tempfile::TempDir) -> Self {
        let config = Config::parse(config).expect("test config is valid");
        let chat = MemoryChat::new();
        let executor = ScriptedExecutor::new(reference_plan());
        let verifier = ScriptedVerifier::new();
        let clock = Arc::new(ManualClock::new(t0()));
        let engine = Engine::new(
            store,
            config.services(),
            Ports {
                chat: chat.clone(),
                executor: executor.clone(),
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
        }
    }

    /// Simulates a restart: drops the engine and store, reopens the same db.
    pub async fn restart(self) -> Self {
        self.engine.wait_idle().await;
        self.engine.store().flush().await.unwrap();
        let dir = self.dir;
        drop(self.engine);
        let store = Store::open(&dir.path().join("db")).unwrap();
        Self::from_parts(CONFIG, store, dir)
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

    /// Private messages told to `who`.
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
