//! The one handler of chat inputs, for every platform.
//!
//! A platform's adapter decodes and authenticates its requests into the
//! neutral inputs here — a [`CommandInput`] (`/rollback …` typed by a user
//! in a channel) or a [`VoteInput`] (a vote or its withdrawal on a proposal
//! or its message) — and lays out the neutral [`Answer`] it gets back. All
//! the rest is done once, here: parsing the command, answering
//! `help|list|status|history|cancel` from the store, opening proposals and
//! drills, finding the proposal a message belongs to, counting votes once
//! per delivery, and telling a person's mistakes from rollbot's own
//! ([`Failure`]: the person sees the latter only as a reference id).
//!
//! **Durable before acknowledged.** A command that opens a proposal (or a
//! drill; planning can take longer than a platform waits for its answer) is
//! written to the store's inbox under `{platform}:cmd:{key}`, `key` being
//! the platform's id of the invocation (Slack's `trigger_id`), and flushed
//! before [`CommandHandler::command`] returns; then it is carried out in the
//! background, and the proposal claims the same key, so it is opened once
//! even when a restart carries it out again ([`CommandHandler::resume`]).
//! Entries written by earlier versions (`slack:cmd:…`, without a platform
//! field) read as Slack's. When the store cannot record an input, the
//! handler returns the store error and the adapter answers that it did not
//! work (Slack: 503).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::commands::{self, Command};
use super::failure::Failure;
use super::reply::{Answer, Answers, Reply, Summary};
use crate::domain::{
    MessageRef, Origin, Proposal, ProposalId, ServiceName, UserId, VoteKind, VoteVia,
};
use crate::engine::{Engine, EngineError, ProposeRequest};
use crate::ports::PlanRequest;
use crate::store::{Claim, StoreError};

/// `/rollback …` as a platform delivered it, authenticated.
#[derive(Debug, Clone)]
pub struct CommandInput {
    /// The platform's name, as in `platform:channel` (`slack`).
    pub platform: String,
    /// The channel it was typed in, as the platform names it (`C0123ABCD`).
    pub channel: String,
    pub user: UserId,
    /// What followed `/rollback`.
    pub text: String,
    /// The platform's id of this invocation (Slack's `trigger_id`): a
    /// redelivery with the same key opens nothing twice.
    pub key: String,
    /// The locale to answer in when the answer is about no service or
    /// proposal (help, mistakes, lists), when the platform tells; else `en`.
    /// Answers about a service or a proposal use its locale.
    pub locale: Option<String>,
}

/// A vote, or its withdrawal, as a platform delivered it, authenticated.
#[derive(Debug, Clone)]
pub struct VoteInput {
    pub on: VoteOn,
    pub voter: UserId,
    pub kind: VoteKind,
    /// The vote is taken back (a removed reaction), not cast.
    pub withdraw: bool,
    pub via: VoteVia,
    /// The platform's id of this delivery (Slack's `event_id`), claimed in
    /// the write that records the vote, so a redelivery counts once.
    pub key: Option<String>,
}

/// What a vote was cast on.
#[derive(Debug, Clone)]
pub enum VoteOn {
    /// A proposal named by id (a button carries it).
    Proposal(ProposalId),
    /// A message, as the platform names it (a reaction).
    Message {
        at: MessageRef,
        /// The provisional reference the adapter's outbox gave the message
        /// before the platform assigned `at` (see [`crate::outbox`]).
        provisional: Option<String>,
        /// The adapter still has posts to deliver: an unknown message may
        /// be a proposal whose reference is not recorded yet.
        posting: bool,
    },
}

/// How a vote input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voted {
    /// Counted (or refused, and the voter told why).
    Taken,
    /// A redelivery of an input already taken: nothing changed.
    Repeat,
    /// Not on a proposal's message: nothing to do.
    NotOurs,
}

/// Why a vote input was not taken; the adapter answers so that the
/// platform delivers it again (Slack: 503).
#[derive(Debug, thiserror::Error)]
pub enum VoteError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "a vote on message {0}, which rollbot may still be posting; the platform delivers it again"
    )]
    NotYetBound(String),
}

impl From<StoreError> for VoteError {
    fn from(e: StoreError) -> Self {
        Self::Engine(e.into())
    }
}

/// A command acknowledged and recorded in the inbox, to be carried out.
/// `channel` and `user` are the platform's own ids.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingCommand {
    key: String,
    /// Absent from entries written before there were several platforms,
    /// which were all Slack's.
    #[serde(default = "PendingCommand::slack")]
    platform: String,
    channel: String,
    user: String,
    service: String,
    origin: Origin,
    to_revision: Option<u64>,
    /// `--image IMAGE`; absent from entries written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    reason: String,
}

impl PendingCommand {
    fn slack() -> String {
        "slack".into()
    }

    /// The channel as the ports name it, `platform:channel`.
    fn channel(&self) -> String {
        format!("{}:{}", self.platform, self.channel)
    }
}

/// The inbox key of a command: `{platform}:cmd:{key}`.
pub fn command_key(platform: &str, key: &str) -> String {
    format!("{platform}:cmd:{key}")
}

/// Whether an inbox key is a command's (of any platform).
fn is_command_key(key: &str) -> bool {
    key.split(':').nth(1) == Some("cmd")
}

/// Answers `/rollback` and takes votes for every platform.
pub struct CommandHandler {
    engine: Engine,
    /// Where answers go once the command was acknowledged.
    answers: Arc<dyn Answers>,
}

impl CommandHandler {
    /// A handler for `engine`; `answers` (usually the
    /// [`ChatRouter`](super::router::ChatRouter)) carries answers to
    /// commands whose work failed after they were acknowledged.
    pub fn new(engine: Engine, answers: Arc<dyn Answers>) -> Arc<Self> {
        Arc::new(Self { engine, answers })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Waits until no command is being carried out (nor any rollback running).
    pub async fn wait_idle(&self) {
        self.engine.wait_idle().await;
    }

    /// Whether any background task panicked (tests fail on this).
    pub fn background_panicked(&self) -> bool {
        self.engine.background_panicked()
    }

    /// The locale of a channel the platform gave none for: the one its
    /// services share, else the one all services share (a deployment in
    /// one language), else none.
    fn channel_locale(&self, platform: &str, channel: &str) -> Option<String> {
        let services = self.engine.services();
        let here = format!("{platform}:{channel}");
        let one = |mut locales: std::collections::BTreeSet<&str>| {
            (locales.len() == 1).then(|| locales.pop_first().unwrap_or("en").to_string())
        };
        one(services
            .values()
            .filter(|s| s.channel.as_deref() == Some(here.as_str()))
            .map(|s| s.locale.as_str())
            .collect())
        .or_else(|| one(services.values().map(|s| s.locale.as_str()).collect()))
    }

    fn locale_of(&self, service: &str) -> String {
        self.engine
            .service_named(service)
            .map(|s| s.locale.clone())
            .unwrap_or_else(|_| "en".into())
    }

    /// Answers `/rollback …`. Quick verbs are answered from the store; a
    /// command that opens a proposal or a drill is recorded, answered as
    /// accepted, and carried out in the background (a failure is answered
    /// later, privately, through `answers`).
    ///
    /// # Errors
    /// The command could not be recorded (or a cancel stored): tell the
    /// person it did not work.
    pub async fn command(self: &Arc<Self>, input: CommandInput) -> Result<Answer, StoreError> {
        let services: Vec<String> = self
            .engine
            .services()
            .keys()
            .map(ToString::to_string)
            .collect();
        let names: Vec<&str> = services.iter().map(String::as_str).collect();
        let locale = input
            .locale
            .clone()
            .filter(|l| crate::config::LOCALES.contains(&l.as_str()))
            .or_else(|| self.channel_locale(&input.platform, &input.channel))
            .unwrap_or_else(|| "en".into());
        let cmd = match commands::parse(&input.text, &names) {
            Ok(c) => c,
            Err(error) => return Ok(Answer::new(locale, Reply::Error { error })),
        };
        tracing::info!(platform = %input.platform, user = %input.user, channel = %input.channel, ?cmd, "chat command");
        Ok(match cmd {
            Command::Help => Answer::new(locale, Reply::Help { services }),
            Command::List | Command::Status { id: None } => {
                Answer::new(locale, self.list("list", None, |p| p.is_open()))
            }
            Command::Status { id: Some(id) } => match self.engine.get(&id) {
                Ok(p) => Answer::new(
                    p.locale.clone(),
                    Reply::Proposals {
                        title: "one",
                        service: None,
                        items: vec![Summary::of(&p)],
                    },
                ),
                Err(e) => Answer::new(locale, Failure::of(&e, "reading a proposal").reply()),
            },
            Command::History { service } => {
                let s = service.clone();
                Answer::new(
                    self.locale_of(&service),
                    self.list("history", Some(service), |p| p.service.as_str() == s),
                )
            }
            Command::Stats { service, days } => {
                let locale = match &service {
                    Some(s) => self.locale_of(s),
                    None => locale,
                };
                Answer::new(locale, self.stats(service.as_deref(), days))
            }
            // Quick: done before answering, so the answer is the outcome.
            Command::Cancel { id } => match self.engine.cancel(&id, &input.user).await {
                Ok(p) => Answer::new(p.locale.clone(), Reply::Cancelled { id: id.to_string() }),
                Err(EngineError::Store(e)) => return Err(e),
                Err(e) => Answer::new(locale, Failure::of(&e, "cancelling a proposal").reply()),
            },
            // Two API calls to the cluster: answered with the outcome.
            Command::ResumeSync { service } => {
                let locale = self.locale_of(&service);
                // The parser accepts configured services only, whose names parsed.
                let resumed = match ServiceName::parse(&service) {
                    Ok(name) => self.engine.resume_sync(&name, &input.user).await,
                    Err(_) => Err(EngineError::UnknownService {
                        name: service.clone(),
                        known: String::new(),
                    }),
                };
                let reply = match resumed {
                    Ok(restored) => Reply::SyncResumed { service, restored },
                    Err(EngineError::Store(e)) => return Err(e),
                    Err(e) => Failure::of(&e, "resuming a GitOps sync").reply(),
                };
                Answer::new(locale, reply)
            }
            Command::Drill { service, reason } => {
                let reason = if reason.is_empty() {
                    "rollback drill".to_string()
                } else {
                    reason
                };
                let accepted = Reply::DrillAccepted {
                    service: service.clone(),
                };
                self.open(
                    &input,
                    service,
                    Origin::Drill,
                    PlanRequest::previous(),
                    reason,
                    accepted,
                )
                .await?
            }
            Command::Propose {
                service,
                to_revision,
                image,
                reason,
            } => {
                let accepted = Reply::Accepted {
                    service: service.clone(),
                };
                let request = PlanRequest {
                    to_revision,
                    image,
                    ..PlanRequest::default()
                };
                self.open(&input, service, Origin::Command, request, reason, accepted)
                    .await?
            }
        })
    }

    /// `/rollback stats`: read from the stored timelines of the window.
    fn stats(&self, service: Option<&str>, days: u32) -> Reply {
        let now = self.engine.now();
        let since = now - chrono::Duration::days(i64::from(days));
        let read = || -> Result<Vec<_>, StoreError> {
            let store = self.engine.store();
            let mut out = Vec::new();
            for p in store.list()? {
                // Newest first: the rest are older than the window.
                if p.created_at <= since {
                    break;
                }
                let timeline = store.timeline(&p.id)?;
                out.push((p, timeline));
            }
            Ok(out)
        };
        match read() {
            Ok(proposals) => Reply::Stats {
                stats: super::stats::summarize(&proposals, service, days, now),
            },
            Err(e) => Failure::internal(&e, "reading proposals for stats").reply(),
        }
    }

    /// Up to ten proposals that `keep` selects, newest first.
    fn list(
        &self,
        title: &'static str,
        service: Option<String>,
        keep: impl Fn(&Proposal) -> bool,
    ) -> Reply {
        let mut items: Vec<_> = match self.engine.store().list() {
            Ok(l) => l.into_iter().filter(|p| keep(p)).collect(),
            Err(e) => return Failure::internal(&e, "listing proposals").reply(),
        };
        items.sort_by_key(|p| std::cmp::Reverse(p.created_at));
        items.truncate(10);
        Reply::Proposals {
            title,
            service,
            items: items.iter().map(Summary::of).collect(),
        }
    }

    /// Records the command in the store's inbox, answers `accepted`, and
    /// opens the proposal (or drill) in the background.
    async fn open(
        self: &Arc<Self>,
        input: &CommandInput,
        service: String,
        origin: Origin,
        request: PlanRequest,
        reason: String,
        accepted: Reply,
    ) -> Result<Answer, StoreError> {
        let user = input.user.as_str();
        let cmd = PendingCommand {
            key: command_key(&input.platform, &input.key),
            platform: input.platform.clone(),
            channel: input.channel.clone(),
            user: user
                .strip_prefix(&format!("{}:", input.user.platform()))
                .unwrap_or(user)
                .to_string(),
            service,
            origin,
            to_revision: request.to_revision,
            image: request.image,
            reason,
        };
        let answer = Answer::new(self.locale_of(&cmd.service), accepted);
        let store = self.engine.store();
        store.inbox_put(&cmd.key, &cmd)?;
        store.flush().await?;
        self.spawn(cmd);
        Ok(answer)
    }

    /// Carries `cmd` out on the engine's task tracker, so shutdown and
    /// tests wait for it as for rollbacks.
    fn spawn(self: &Arc<Self>, cmd: PendingCommand) {
        let me = self.clone();
        self.engine
            .tasks()
            .spawn("chat command", async move { me.carry_out(cmd).await });
    }

    /// Opens the proposal a recorded command asks for, then forgets the
    /// command. Opening claims the command's key, so doing it again after a
    /// restart opens nothing twice.
    async fn carry_out(&self, cmd: PendingCommand) {
        let user = UserId::new(&cmd.platform, &cmd.user);
        let (Ok(name), Ok(proposer)) = (ServiceName::parse(&cmd.service), user.clone()) else {
            tracing::warn!(command = %cmd.key, service = %cmd.service, user = %cmd.user, "dropping a recorded command naming no valid service or user");
            self.forget(&cmd.key);
            return;
        };
        let req = ProposeRequest {
            service: name,
            origin: cmd.origin,
            proposer: proposer.clone(),
            reason: cmd.reason.clone(),
            to_revision: cmd.to_revision,
            image: cmd.image.clone(),
            alert: None,
            channel: Some(cmd.channel()),
        };
        // `propose_once` sends a drill to the engine's drill path.
        match self.engine.propose_once(req, &cmd.key).await {
            Ok(_) => {}
            // Left in the inbox: the next start tries again.
            Err(EngineError::Store(e)) => {
                tracing::error!(command = %cmd.key, error = %e, "command not carried out; it is retried at the next start");
                return;
            }
            Err(e) => {
                let doing = if cmd.origin == Origin::Drill {
                    "starting a drill"
                } else {
                    "opening a proposal"
                };
                let failure = Failure::of(&e, doing);
                let answer = Answer::new(self.locale_of(&cmd.service), failure.reply());
                if let Err(e) = self
                    .answers
                    .answer(&cmd.channel(), &proposer, &answer)
                    .await
                {
                    tracing::error!(command = %cmd.key, error = %e, "could not send a command's answer");
                }
            }
        }
        self.forget(&cmd.key);
    }

    fn forget(&self, key: &str) {
        if let Err(e) = self.engine.store().inbox_done(key) {
            tracing::error!(command = %key, error = %e, "could not forget a carried-out command");
        }
    }

    /// Carries out the commands of every platform acknowledged before a
    /// restart but not yet done. Call once at start-up.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn resume(self: &Arc<Self>) -> Result<usize, StoreError> {
        let mut n = 0;
        for (key, value) in self.engine.store().inbox::<serde_json::Value>("")? {
            if !is_command_key(&key) {
                continue;
            }
            let cmd: PendingCommand = match serde_json::from_value(value) {
                Ok(cmd) => cmd,
                Err(e) => {
                    tracing::error!(command = %key, error = %e, "a recorded command is unreadable and is left in the store; carry it out by hand");
                    continue;
                }
            };
            tracing::info!(command = %cmd.key, service = %cmd.service, "carrying out a command acknowledged before the restart");
            self.spawn(cmd);
            n += 1;
        }
        Ok(n)
    }

    /// Takes a vote (or its withdrawal): stored, with its delivery key,
    /// before this returns.
    ///
    /// # Errors
    /// The vote could not be stored, or it is on a message that may be a
    /// proposal still being posted: the platform should deliver it again.
    pub async fn vote(&self, v: VoteInput) -> Result<Voted, VoteError> {
        let key = v.key.as_deref();
        let id = match &v.on {
            VoteOn::Proposal(id) => id.clone(),
            VoteOn::Message {
                at,
                provisional,
                posting,
            } => match self.proposal_at(at, provisional.as_deref())? {
                Some(id) => id,
                // People react before the store has recorded the post's
                // reference: not claimed, so the redelivery is taken.
                None if *posting => return Err(VoteError::NotYetBound(at.message.clone())),
                None => {
                    if let Some(key) = key {
                        self.skip(key)?;
                    }
                    return Ok(Voted::NotOurs);
                }
            },
        };
        let taken = if !v.withdraw {
            self.engine
                .vote_once(&id, &v.voter, v.kind, v.via, key)
                .await?
                .is_some()
        } else if v.kind == VoteKind::Approve {
            self.engine
                .withdraw_once(&id, &v.voter, key)
                .await?
                .is_some()
        } else {
            // Taking back a rejection changes nothing: a veto stands.
            match key {
                Some(key) => self.engine.claim(key, id.as_str())? == Claim::New,
                None => true,
            }
        };
        Ok(if taken { Voted::Taken } else { Voted::Repeat })
    }

    /// Remembers a delivery that asks nothing of rollbot, so its
    /// redeliveries are skipped quietly.
    ///
    /// # Errors
    /// Storage failure.
    pub fn skip(&self, key: &str) -> Result<(), EngineError> {
        if let Claim::Seen(_) = self.engine.claim(key, "ignored")? {
            tracing::debug!(%key, "duplicate chat event ignored");
        }
        Ok(())
    }

    /// The proposal whose message is `at`, directly or through the
    /// adapter's provisional reference for it.
    fn proposal_at(
        &self,
        at: &MessageRef,
        provisional: Option<&str>,
    ) -> Result<Option<ProposalId>, StoreError> {
        if let Some(id) = self.engine.proposal_for_message(at)? {
            return Ok(Some(id));
        }
        let Some(pending) = provisional else {
            return Ok(None);
        };
        self.engine.proposal_for_message(&MessageRef {
            message: pending.to_string(),
            ..at.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::router::ChatRouter;
    use crate::ports::memory::{MemoryChat, ScriptedExecutor, ScriptedVerifier};

    #[test]
    fn command_keys_name_their_platform_and_old_slack_entries_read() {
        assert_eq!(command_key("slack", "7.1.ab"), "slack:cmd:7.1.ab");
        assert!(is_command_key("slack:cmd:7.1.ab"));
        assert!(is_command_key("teams:cmd:xyz"));
        assert!(!is_command_key("slack:event:Ev1"));
        assert!(!is_command_key("cmd"));
        // As the previous version wrote it: no platform field.
        let old: PendingCommand = serde_json::from_value(serde_json::json!({
            "key": "slack:cmd:7.1.ab", "channel": "CINCIDENT", "user": "UALICE",
            "service": "payment-api", "origin": "command", "to_revision": null,
            "reason": "checkout errors"
        }))
        .unwrap();
        assert_eq!(old.platform, "slack");
        assert_eq!(old.channel(), "slack:CINCIDENT");
        assert_eq!(old.image, None);
    }

    fn engine_over(store: crate::store::Store) -> Engine {
        engine_with(
            store,
            r#"
            [services.payment-api]
            approvers = ["slack:UALICE", "slack:UBOB"]
            [services.payment-api.kubernetes]
            namespace = "production"
            name = "payment-api"
            "#,
        )
    }

    fn engine_with(store: crate::store::Store, config: &str) -> Engine {
        let config = crate::config::Config::parse(config).unwrap();
        let plan = crate::domain::Plan {
            workload: "deployment production/payment-api".into(),
            current: crate::domain::RevisionInfo {
                revision: 3,
                images: vec![],
                change_cause: None,
            },
            target: crate::domain::RevisionInfo {
                revision: 2,
                images: vec![],
                change_cause: None,
            },
            warnings: vec![],
            migrations: false,
            blockers: vec![],
            guard: serde_json::Value::Null,
        };
        Engine::new(
            store,
            config.services(),
            crate::engine::Ports {
                chat: MemoryChat::new(),
                executor: ScriptedExecutor::new(plan),
                verifier: ScriptedVerifier::new(),
                clock: Arc::new(crate::domain::ManualClock::new(chrono::Utc::now())),
            },
        )
    }

    fn typed(text: &str) -> CommandInput {
        CommandInput {
            platform: "slack".into(),
            channel: "CINCIDENT".into(),
            user: UserId::parse("slack:UALICE").unwrap(),
            text: text.into(),
            key: format!("trigger-{text}"),
            locale: None,
        }
    }

    /// A store that cannot be read is rollbot's trouble: the person sees a
    /// reference id and not the store's words; the log has both, once.
    #[tokio::test]
    async fn a_store_failure_shows_a_reference_and_is_logged_once() {
        let store = crate::store::Store::temporary().unwrap();
        store
            .raw_insert("proposals", b"RB-7K3M9Q", b"{not json")
            .unwrap();
        let handler = CommandHandler::new(engine_over(store), Arc::new(ChatRouter::new()));
        for text in ["list", "history payment-api", "status RB-7K3M9Q"] {
            let (guard, log) = crate::chat::failure::capture();
            let answer = handler.command(typed(text)).await.unwrap();
            drop(guard);
            let log = log();
            let Reply::Internal { reference } = &answer.reply else {
                panic!("{text}: {answer:?}");
            };
            let shown = serde_json::to_string(&answer.reply).unwrap();
            assert!(!shown.contains("RB-7K3M9Q"), "{text}: {shown}");
            let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
            assert_eq!(errors.len(), 1, "{text}: {log}");
            assert!(
                errors[0].contains(reference.as_str())
                    && errors[0].contains("proposals/RB-7K3M9Q is unreadable"),
                "{text}: {log}"
            );
        }
        // A person's mistake is theirs to see, and nothing is logged as an error.
        let (guard, log) = crate::chat::failure::capture();
        let answer = handler.command(typed("cancel RB-AAAAAA")).await.unwrap();
        drop(guard);
        assert!(
            matches!(&answer.reply, Reply::Refused { error: crate::chat::failure::UserError::NotFound { id } } if id.as_str() == "RB-AAAAAA"),
            "{answer:?}"
        );
        assert!(!log().contains("ERROR"), "{}", log());
    }

    /// The platform's locale words answers about no service; a service's
    /// answers keep the service's locale; an unknown locale falls back to en.
    #[tokio::test]
    async fn answers_are_worded_in_the_locale_the_platform_gives() {
        let store = crate::store::Store::temporary().unwrap();
        let handler = CommandHandler::new(engine_over(store), Arc::new(ChatRouter::new()));
        let with = |text: &str, locale: Option<&str>| CommandInput {
            locale: locale.map(str::to_string),
            ..typed(text)
        };
        for (text, locale, expect) in [
            ("help", Some("ja"), "ja"),
            ("stauts", Some("zh"), "zh"),
            ("list", Some("ja"), "ja"),
            ("help", Some("xx"), "en"),
            ("help", None, "en"),
            // payment-api is configured in en.
            ("history payment-api", Some("ja"), "en"),
        ] {
            let answer = handler.command(with(text, locale)).await.unwrap();
            assert_eq!(answer.locale, expect, "{text} in {locale:?}");
        }
    }

    /// Slack gives no locale: help and mistakes are worded in the locale of
    /// the channel's services, else in the one all services share.
    #[tokio::test]
    async fn a_channel_without_a_given_locale_answers_in_its_services_locale() {
        let handler = CommandHandler::new(
            engine_with(
                crate::store::Store::temporary().unwrap(),
                r#"
                [services.payment-api]
                approvers = ["slack:UALICE", "slack:UBOB"]
                channel = "slack:CZH"
                locale = "zh"
                [services.payment-api.kubernetes]
                namespace = "production"
                name = "payment-api"
                [services.search]
                approvers = ["slack:UALICE", "slack:UBOB"]
                channel = "slack:CJA"
                locale = "ja"
                [services.search.kubernetes]
                namespace = "production"
                name = "search"
                "#,
            ),
            Arc::new(ChatRouter::new()),
        );
        for (channel, expect) in [("CZH", "zh"), ("CJA", "ja"), ("COTHER", "en")] {
            for text in ["help", "stauts"] {
                let answer = handler
                    .command(CommandInput {
                        channel: channel.into(),
                        ..typed(text)
                    })
                    .await
                    .unwrap();
                assert_eq!(answer.locale, expect, "{text} in {channel}");
            }
        }
        // One language everywhere: every channel speaks it.
        let handler = CommandHandler::new(
            engine_with(
                crate::store::Store::temporary().unwrap(),
                r#"
                locale = "ja"
                [services.payment-api]
                approvers = ["slack:UALICE", "slack:UBOB"]
                [services.payment-api.kubernetes]
                namespace = "production"
                name = "payment-api"
                "#,
            ),
            Arc::new(ChatRouter::new()),
        );
        assert_eq!(handler.command(typed("help")).await.unwrap().locale, "ja");
    }

    /// A command that fails after it was acknowledged is answered later,
    /// through the platform that took it, in the service's locale.
    #[tokio::test]
    async fn a_failure_after_acknowledging_is_answered_on_the_platform() {
        let store = crate::store::Store::temporary().unwrap();
        let engine = engine_over(store);
        let answers = Arc::new(Recorded::default());
        let handler = CommandHandler::new(engine.clone(), answers.clone());
        let first = handler
            .command(typed("payment-api deploy broke it"))
            .await
            .unwrap();
        assert!(matches!(first.reply, Reply::Accepted { .. }), "{first:?}");
        handler.wait_idle().await;
        // A second proposal for the same service is refused, to its typist.
        let mut again = typed("payment-api again");
        again.user = UserId::parse("slack:UBOB").unwrap();
        handler.command(again).await.unwrap();
        handler.wait_idle().await;
        let got = answers.0.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "{got:?}");
        let (channel, user, answer) = &got[0];
        assert_eq!(
            (channel.as_str(), user.as_str()),
            ("slack:CINCIDENT", "slack:UBOB")
        );
        assert!(
            matches!(
                &answer.reply,
                Reply::Refused {
                    error: crate::chat::failure::UserError::AlreadyOpen { .. }
                }
            ),
            "{answer:?}"
        );
        // Carried out and forgotten: nothing left for a restart.
        assert_eq!(handler.resume().unwrap(), 0);
    }

    #[derive(Default)]
    struct Recorded(std::sync::Mutex<Vec<(String, UserId, Answer)>>);

    #[async_trait::async_trait]
    impl Answers for Recorded {
        async fn answer(
            &self,
            channel: &str,
            user: &UserId,
            answer: &Answer,
        ) -> Result<(), crate::ports::ChatError> {
            self.0
                .lock()
                .unwrap()
                .push((channel.into(), user.clone(), answer.clone()));
            Ok(())
        }
    }
}
