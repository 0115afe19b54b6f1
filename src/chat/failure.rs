//! User errors and internal errors, as a person in chat sees them
//! (triagebot's `UserError`).
//!
//! A *user error* is about what was asked — an unknown service, a proposal
//! that is not open, a person not allowed to cancel — and its text, worded
//! for people with what to do next, is shown to them. An *internal error*
//! is rollbot's own trouble (the store failing, a template bug): its text
//! would mean nothing to them and may leak details, so it is logged once,
//! at error level, with a short reference id, and the person sees only a
//! generic line carrying that reference, which operators find in the logs.

use crate::chat::reply::Reply;
pub use crate::chat::reply::UserError;
use crate::engine::EngineError;

/// How a failure reaches the person who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Their request cannot be done as asked; the catalogue words why and
    /// what to do.
    User(UserError),
    /// rollbot's own fault, logged under `reference`.
    Internal { reference: String },
}

impl Failure {
    /// Classifies an engine error; an internal one is logged here, once.
    /// `doing` says what failed, for the log (e.g. `"listing proposals"`).
    pub fn of(e: &EngineError, doing: &str) -> Self {
        let user = match e {
            EngineError::UnknownService { name, known } => UserError::UnknownService {
                service: name.clone(),
                known: known.clone(),
            },
            EngineError::AlreadyOpen {
                service,
                existing,
                state,
            } => UserError::AlreadyOpen {
                service: service.clone(),
                existing: existing.clone(),
                state: *state,
            },
            EngineError::Plan { service, source } => UserError::Plan {
                service: service.clone(),
                error: source.clone(),
            },
            EngineError::NotFound(id) => UserError::NotFound { id: id.clone() },
            EngineError::NotAllowed { service, id } => UserError::NotAllowed {
                service: service.clone(),
                id: id.clone(),
            },
            EngineError::NotCancellable { id, state } => UserError::NotCancellable {
                id: id.clone(),
                state: *state,
            },
            EngineError::Drill { service, source } => UserError::Drill {
                service: service.clone(),
                error: source.clone(),
            },
            EngineError::DrillOpen {
                service,
                existing,
                state,
            } => UserError::DrillOpen {
                service: service.clone(),
                existing: existing.clone(),
                state: *state,
            },
            EngineError::ResumeNotAllowed { service } => UserError::ResumeNotAllowed {
                service: service.clone(),
            },
            EngineError::NothingToResume { service } => UserError::NothingToResume {
                service: service.clone(),
            },
            EngineError::ResumeSync { service, source } => UserError::ResumeSync {
                service: service.clone(),
                error: source.clone(),
            },
            EngineError::Store(_) | EngineError::Report(_) | EngineError::AlertNotHandled(_) => {
                return Self::internal(e, doing);
            }
        };
        Self::User(user)
    }

    /// An internal error: logs `e` at error level with a new reference id.
    pub fn internal(e: &dyn std::fmt::Display, doing: &str) -> Self {
        let reference = new_reference();
        tracing::error!(%reference, error = %e, "internal error while {doing}; the person was shown this reference");
        Self::Internal { reference }
    }

    /// The answer to show.
    pub fn reply(self) -> Reply {
        match self {
            Self::User(error) => Reply::Refused { error },
            Self::Internal { reference } => Reply::Internal { reference },
        }
    }
}

/// Eight hex characters: short enough to read out, and with a few errors
/// a day, unique enough to find the one log line.
fn new_reference() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(8);
    id
}

/// Captures what is logged on the current thread, for tests of what is
/// logged.
#[cfg(test)]
pub(crate) fn capture() -> (tracing::subscriber::DefaultGuard, impl Fn() -> String) {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let out = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || out.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (guard, move || {
        String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ProposalId, ServiceName, State};
    use crate::store::StoreError;

    /// Log lines written while `f` runs on this thread.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        let (guard, text) = capture();
        let value = f();
        drop(guard);
        (value, text())
    }

    #[test]
    fn people_see_their_mistakes_and_a_reference_for_ours() {
        let id = ProposalId::parse("RB-7K3M9Q").unwrap();
        let (user, log) = logged(|| {
            Failure::of(
                &EngineError::NotCancellable {
                    id: id.clone(),
                    state: State::Executing,
                },
                "cancelling",
            )
        });
        assert_eq!(
            user,
            Failure::User(UserError::NotCancellable {
                id: id.clone(),
                state: State::Executing
            })
        );
        assert!(log.is_empty(), "a user error is not logged: {log}");

        let store = EngineError::Store(StoreError::Corrupt {
            tree: "proposals",
            key: "RB-7K3M9Q".into(),
            detail: "expected value at line 1".into(),
        });
        let (internal, log) = logged(|| Failure::of(&store, "listing proposals"));
        let Failure::Internal { reference } = &internal else {
            panic!("a store failure is internal: {internal:?}");
        };
        assert_eq!(reference.len(), 8);
        assert!(
            reference.chars().all(|c| c.is_ascii_hexdigit()),
            "{reference}"
        );
        // Logged once, at error level, with the reference and the cause.
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(
            log.contains("ERROR")
                && log.contains(reference.as_str())
                && log.contains("proposals/RB-7K3M9Q")
                && log.contains("listing proposals"),
            "{log}"
        );
        // The person gets the reference, not the store's words.
        let shown = serde_json::to_string(&internal.clone().reply()).unwrap();
        assert!(shown.contains(reference.as_str()), "{shown}");
        assert!(!shown.contains("proposals/"), "{shown}");

        let unknown = EngineError::UnknownService {
            name: "paymnet-api".into(),
            known: ServiceName::parse("payment-api").unwrap().to_string(),
        };
        assert!(
            matches!(Failure::of(&unknown, "x"), Failure::User(UserError::UnknownService { service, .. }) if service == "paymnet-api")
        );
        // Two failures, two references.
        let (a, _) = logged(|| Failure::internal(&"disk full", "x"));
        let (b, _) = logged(|| Failure::internal(&"disk full", "x"));
        assert_ne!(a, b);
    }

    /// The generic line carries the reference in every locale, worded in
    /// that locale.
    #[test]
    fn the_generic_line_is_worded_in_every_locale() {
        let t = crate::templates::Templates::load().unwrap();
        let reply = Reply::Internal {
            reference: "0a1b2c3d".into(),
        };
        for (locale, words) in [
            ("en", "Something went wrong inside rollbot"),
            ("zh", "rollbot 内部出错"),
            ("ja", "rollbot の内部でエラーが発生しました"),
        ] {
            let r = crate::chat::slack::render::reply(&t, locale, &reply).unwrap();
            let text = r.json["text"].as_str().unwrap();
            assert!(
                text.contains("`0a1b2c3d`") && text.contains(words),
                "{locale}: {text}"
            );
            assert_eq!(r.json["response_type"], "ephemeral");
        }
    }
}
