//! The [`Chat`] port for several platforms at once: each message goes to the
//! adapter registered for its channel's platform.
//!
//! The engine addresses channels as `platform:channel` (`slack:C0123ABCD`)
//! and messages by [`MessageRef`], which carries its platform. The router
//! reads that platform and hands the call, unchanged, to the adapter
//! registered under it, so adapters keep their own channel handling and the
//! engine (its outbox retries, its tick) does not know how many platforms
//! there are. A platform nobody registered is a clear, permanent
//! [`ChatError`] naming the platforms that are configured.
//!
//! Adding a platform is one registration ([`ChatRouter::with`]), plus
//! [`ChatRouter::with_answers`] when it takes `/rollback` commands.
//!
//! A *fallback* chat stands in for every platform that has no adapter: the
//! demo's console and the tests' in-memory chat, which show every channel,
//! and [`NoChat`](super::none::NoChat) when no platform is configured.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::reply::{Answer, Answers};
use crate::domain::{MessageRef, Proposal, UserId};
use crate::ports::{Chat, ChatError, PrivateNote, ThreadNote};

/// One registered platform.
struct Platform {
    chat: Arc<dyn Chat>,
    answers: Option<Arc<dyn Answers>>,
}

/// Sends each message to its platform's adapter. Built once at start-up,
/// then shared (it is immutable).
#[derive(Default)]
pub struct ChatRouter {
    platforms: BTreeMap<String, Platform>,
    fallback: Option<Arc<dyn Chat>>,
}

impl ChatRouter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `chat` for the channels and messages of `platform`
    /// (replacing an earlier registration of the same name).
    #[must_use]
    pub fn with(mut self, platform: &str, chat: Arc<dyn Chat>) -> Self {
        let answers = self.platforms.remove(platform).and_then(|p| p.answers);
        self.platforms
            .insert(platform.to_string(), Platform { chat, answers });
        self
    }

    /// Registers where answers to `platform`'s commands go; `platform` must
    /// already be registered with [`ChatRouter::with`].
    ///
    /// # Panics
    /// When `platform` is not registered: a wiring bug.
    #[must_use]
    pub fn with_answers(mut self, platform: &str, answers: Arc<dyn Answers>) -> Self {
        let Some(p) = self.platforms.get_mut(platform) else {
            panic!("register the {platform} chat before its answers");
        };
        p.answers = Some(answers);
        self
    }

    /// Sends the channels of every unregistered platform to `chat`.
    #[must_use]
    pub fn with_fallback(mut self, chat: Arc<dyn Chat>) -> Self {
        self.fallback = Some(chat);
        self
    }

    /// The registered platforms' names, sorted.
    pub fn platforms(&self) -> impl Iterator<Item = &str> {
        self.platforms.keys().map(String::as_str)
    }

    fn chat(&self, platform: &str, what: &str) -> Result<&Arc<dyn Chat>, ChatError> {
        if let Some(p) = self.platforms.get(platform) {
            return Ok(&p.chat);
        }
        self.fallback
            .as_ref()
            .ok_or_else(|| self.unknown(platform, what))
    }

    fn unknown(&self, platform: &str, what: &str) -> ChatError {
        let known = match self.platforms().collect::<Vec<_>>().join(", ") {
            k if k.is_empty() => "none".to_string(),
            k => k,
        };
        ChatError {
            platform: platform.to_string(),
            message: format!(
                "no {platform} chat is configured, so {what} cannot be delivered; configure [{platform}] or use a channel of a configured platform (configured: {known})"
            ),
            retryable: false,
        }
    }
}

/// The platform of a `platform:channel` string.
///
/// # Errors
/// A channel without a platform prefix.
fn platform_of(channel: &str) -> Result<&str, ChatError> {
    match channel.split_once(':') {
        Some((platform, rest)) if !platform.is_empty() && !rest.is_empty() => Ok(platform),
        _ => Err(ChatError {
            platform: "unknown".into(),
            message: format!(
                "channel {channel:?} names no platform; write it platform:channel, e.g. slack:C0123ABCD"
            ),
            retryable: false,
        }),
    }
}

#[async_trait]
impl Chat for ChatRouter {
    async fn post_proposal(&self, channel: &str, p: &Proposal) -> Result<MessageRef, ChatError> {
        let what = format!("proposal {} (to {channel})", p.id);
        self.chat(platform_of(channel)?, &what)?
            .post_proposal(channel, p)
            .await
    }

    async fn update_proposal(&self, at: &MessageRef, p: &Proposal) -> Result<(), ChatError> {
        let what = format!("the update of proposal {}", p.id);
        self.chat(&at.platform, &what)?.update_proposal(at, p).await
    }

    async fn post_thread(
        &self,
        at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<MessageRef, ChatError> {
        let what = format!("a thread message of proposal {}", p.id);
        self.chat(&at.platform, &what)?
            .post_thread(at, p, note)
            .await
    }

    async fn edit_thread(
        &self,
        at: &MessageRef,
        p: &Proposal,
        note: &ThreadNote,
    ) -> Result<(), ChatError> {
        let what = format!("a thread message of proposal {}", p.id);
        self.chat(&at.platform, &what)?
            .edit_thread(at, p, note)
            .await
    }

    /// Goes to the platform `channel` names when it names a registered one;
    /// otherwise (the engine passes a message's own channel, which adapters
    /// may keep without its prefix) to the platform of the proposal's
    /// message, else to the user's.
    async fn tell(
        &self,
        p: &Proposal,
        channel: &str,
        user: &UserId,
        note: &PrivateNote,
    ) -> Result<(), ChatError> {
        let named = channel
            .split_once(':')
            .map(|(platform, _)| platform)
            .filter(|platform| self.platforms.contains_key(*platform));
        let platform = named
            .or_else(|| p.primary_message().map(|at| at.platform.as_str()))
            .unwrap_or_else(|| user.platform());
        let what = format!("a private note to {user} about {}", p.id);
        self.chat(platform, &what)?
            .tell(p, channel, user, note)
            .await
    }
}

#[async_trait]
impl Answers for ChatRouter {
    async fn answer(&self, channel: &str, user: &UserId, answer: &Answer) -> Result<(), ChatError> {
        let platform = platform_of(channel)?;
        match self
            .platforms
            .get(platform)
            .and_then(|p| p.answers.as_ref())
        {
            Some(answers) => answers.answer(channel, user, answer).await,
            None => Err(self.unknown(platform, &format!("an answer to {user}'s command"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::chat::reply::Reply;
    use crate::domain::{Origin, Plan, ProposalId, RevisionInfo, ServiceName, State};

    /// A platform's adapter that records what reached it, as
    /// `"<call> <channel or message>"`.
    struct Recorder {
        platform: &'static str,
        seen: Mutex<Vec<String>>,
    }

    impl Recorder {
        fn new(platform: &'static str) -> Arc<Self> {
            Arc::new(Self {
                platform,
                seen: Mutex::new(Vec::new()),
            })
        }

        fn seen(&self) -> Vec<String> {
            self.seen.lock().unwrap().clone()
        }

        fn note(&self, line: String) {
            self.seen.lock().unwrap().push(line);
        }
    }

    #[async_trait]
    impl Chat for Recorder {
        async fn post_proposal(
            &self,
            channel: &str,
            _: &Proposal,
        ) -> Result<MessageRef, ChatError> {
            self.note(format!("post {channel}"));
            Ok(MessageRef {
                platform: self.platform.into(),
                channel: channel.into(),
                message: "m1".into(),
            })
        }
        async fn update_proposal(&self, at: &MessageRef, _: &Proposal) -> Result<(), ChatError> {
            self.note(format!("update {}", at.message));
            Ok(())
        }
        async fn post_thread(
            &self,
            at: &MessageRef,
            _: &Proposal,
            _: &ThreadNote,
        ) -> Result<MessageRef, ChatError> {
            self.note(format!("thread {}", at.message));
            Ok(at.clone())
        }
        async fn edit_thread(
            &self,
            at: &MessageRef,
            _: &Proposal,
            _: &ThreadNote,
        ) -> Result<(), ChatError> {
            self.note(format!("edit {}", at.message));
            Ok(())
        }
        async fn tell(
            &self,
            _: &Proposal,
            channel: &str,
            user: &UserId,
            _: &PrivateNote,
        ) -> Result<(), ChatError> {
            self.note(format!("tell {user} in {channel}"));
            Ok(())
        }
    }

    #[async_trait]
    impl Answers for Recorder {
        async fn answer(&self, channel: &str, user: &UserId, a: &Answer) -> Result<(), ChatError> {
            self.note(format!("answer {user} in {channel} ({})", a.locale));
            Ok(())
        }
    }

    fn proposal(messages: Vec<MessageRef>) -> Proposal {
        let t0 = Utc.with_ymd_and_hms(2025, 3, 14, 14, 30, 0).unwrap();
        let rev = |revision| RevisionInfo {
            revision,
            images: vec![],
            change_cause: None,
        };
        Proposal {
            id: ProposalId::from_random(42),
            service: ServiceName::parse("payment-api").unwrap(),
            origin: Origin::Command,
            proposer: UserId::parse("slack:UALICE").unwrap(),
            reason: "success rate 95%".into(),
            plan: Plan {
                workload: "deployment production/payment-api".into(),
                current: rev(3),
                target: rev(2),
                warnings: vec![],
                migrations: false,
                blockers: vec![],
                guard: serde_json::Value::Null,
            },
            created_at: t0,
            expires_at: t0,
            state: State::Proposed,
            required: 2,
            single_approver: false,
            approvals: vec![],
            rejected_by: None,
            messages,
            alerts: vec![],
            extra_alerts: 0,
            alert_resolved_at: None,
            recommendation: None,
            timeline_len: 0,
            updated_at: t0,
            drill: false,
            no_checks: false,
            locale: "en".into(),
        }
    }

    fn at(platform: &str, channel: &str) -> MessageRef {
        MessageRef {
            platform: platform.into(),
            channel: channel.into(),
            message: format!("{platform}-msg"),
        }
    }

    #[tokio::test]
    async fn each_message_goes_to_its_platform() {
        let slack = Recorder::new("slack");
        let teams = Recorder::new("teams");
        let router = ChatRouter::new()
            .with("slack", slack.clone())
            .with("teams", teams.clone());
        let p = proposal(vec![]);
        let posted = router.post_proposal("teams:T1", &p).await.unwrap();
        assert_eq!(posted.platform, "teams");
        router.post_proposal("slack:C1", &p).await.unwrap();
        let on_slack = at("slack", "C1");
        let on_teams = at("teams", "teams:T1");
        router.update_proposal(&on_slack, &p).await.unwrap();
        router
            .post_thread(
                &on_teams,
                &p,
                &ThreadNote::Resolved {
                    check: None,
                    status_update: None,
                },
            )
            .await
            .unwrap();
        router
            .edit_thread(
                &on_slack,
                &p,
                &ThreadNote::Resolved {
                    check: None,
                    status_update: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            slack.seen(),
            ["post slack:C1", "update slack-msg", "edit slack-msg"]
        );
        assert_eq!(teams.seen(), ["post teams:T1", "thread teams-msg"]);
        assert_eq!(router.platforms().collect::<Vec<_>>(), ["slack", "teams"]);
    }

    /// The engine tells a voter in the channel of the proposal's message,
    /// which Slack keeps without its prefix: the message's platform decides.
    #[tokio::test]
    async fn private_notes_follow_the_channel_then_the_message() {
        let slack = Recorder::new("slack");
        let teams = Recorder::new("teams");
        let router = ChatRouter::new()
            .with("slack", slack.clone())
            .with("teams", teams.clone());
        let note = PrivateNote::AlreadyCounted {
            approvals: 1,
            required: 2,
        };
        let bob = UserId::parse("slack:UBOB").unwrap();
        let on_teams = proposal(vec![at("teams", "T1")]);
        router.tell(&on_teams, "T1", &bob, &note).await.unwrap();
        router
            .tell(&on_teams, "slack:C1", &bob, &note)
            .await
            .unwrap();
        // No message yet: the user's platform.
        router
            .tell(&proposal(vec![]), "C9", &bob, &note)
            .await
            .unwrap();
        assert_eq!(teams.seen(), ["tell slack:UBOB in T1"]);
        assert_eq!(
            slack.seen(),
            ["tell slack:UBOB in slack:C1", "tell slack:UBOB in C9"]
        );
    }

    #[tokio::test]
    async fn an_unconfigured_platform_is_a_clear_permanent_error() {
        let slack = Recorder::new("slack");
        let router = ChatRouter::new().with("slack", slack.clone());
        let p = proposal(vec![]);
        let err = router.post_proposal("discord:1234", &p).await.unwrap_err();
        assert_eq!(err.platform, "discord");
        assert!(!err.retryable);
        assert!(
            err.message.contains("no discord chat is configured")
                && err.message.contains("configure [discord]")
                && err.message.contains("configured: slack"),
            "{err}"
        );
        let err = router
            .update_proposal(&at("discord", "1234"), &p)
            .await
            .unwrap_err();
        assert!(err.message.contains("proposal RB-"), "{err}");
        let err = router.post_proposal("C0123", &p).await.unwrap_err();
        assert!(err.message.contains("names no platform"), "{err}");
        assert!(slack.seen().is_empty());
        // Nothing registered at all says so.
        let err = ChatRouter::new()
            .post_proposal("slack:C1", &p)
            .await
            .unwrap_err();
        assert!(err.message.contains("configured: none"), "{err}");
    }

    #[tokio::test]
    async fn the_fallback_takes_every_unregistered_platform() {
        let slack = Recorder::new("slack");
        let console = Recorder::new("console");
        let router = ChatRouter::new()
            .with("slack", slack.clone())
            .with_fallback(console.clone());
        let p = proposal(vec![]);
        router
            .post_proposal("console:#incidents", &p)
            .await
            .unwrap();
        router.post_proposal("slack:C1", &p).await.unwrap();
        assert_eq!(console.seen(), ["post console:#incidents"]);
        assert_eq!(slack.seen(), ["post slack:C1"]);
    }

    #[tokio::test]
    async fn answers_go_to_the_platform_that_takes_commands() {
        let slack = Recorder::new("slack");
        let console = Recorder::new("console");
        let router = ChatRouter::new()
            .with("slack", slack.clone())
            .with_answers("slack", slack.clone())
            .with("console", console.clone());
        let alice = UserId::parse("slack:UALICE").unwrap();
        let answer = Answer::new("ja", Reply::Cancelled { id: "RB-1".into() });
        router.answer("slack:C1", &alice, &answer).await.unwrap();
        assert_eq!(slack.seen(), ["answer slack:UALICE in slack:C1 (ja)"]);
        // The console takes no commands, so it has nobody to answer.
        let err = router
            .answer("console:#incidents", &alice, &answer)
            .await
            .unwrap_err();
        assert!(err.message.contains("answer"), "{err}");
        assert!(console.seen().is_empty());
    }
}
