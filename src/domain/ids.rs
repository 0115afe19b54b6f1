//! Validated identifiers: proposal ids, user ids, service names.
//!
//! Each newtype is constructed only through a validating constructor so the
//! rest of the code never has to wonder whether a string is well-formed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string was not accepted as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} {value:?} is invalid: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// A proposal id as people type it in chat, e.g. `RB-7K3M9Q`.
///
/// Short and unambiguous on purpose: at 3 a.m. someone types
/// `/rollback cancel RB-7K3M9Q` by hand.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProposalId(String);

/// Letters that cannot be confused with each other when read aloud or
/// typed from a phone (no 0/O, 1/I/L).
const ID_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";
const ID_LEN: usize = 6;

impl ProposalId {
    /// Builds an id from random bits (callers pass e.g. a UUID's bits).
    pub fn from_random(mut bits: u128) -> Self {
        let mut s = String::from("RB-");
        for _ in 0..ID_LEN {
            let i = (bits % ID_ALPHABET.len() as u128) as usize;
            bits /= ID_ALPHABET.len() as u128;
            s.push(ID_ALPHABET[i] as char);
        }
        Self(s)
    }

    /// Parses an id typed by a person; case-insensitive, `RB-` prefix optional.
    ///
    /// # Errors
    /// Returns [`IdError`] when the text is not a well-formed proposal id.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let t = text.trim().to_ascii_uppercase();
        if t.is_empty() {
            return Err(IdError::Empty {
                what: "proposal id",
            });
        }
        let body = t.strip_prefix("RB-").unwrap_or(&t);
        if body.len() != ID_LEN || !body.bytes().all(|b| ID_ALPHABET.contains(&b)) {
            return Err(IdError::Invalid {
                what: "proposal id",
                value: text.to_string(),
                reason: "expected RB- followed by 6 letters/digits, e.g. RB-7K3M9Q",
            });
        }
        Ok(Self(format!("RB-{body}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProposalId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ProposalId> for String {
    fn from(id: ProposalId) -> Self {
        id.0
    }
}

impl fmt::Display for ProposalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A chat identity, qualified by platform: `slack:U012AB3CD`,
/// `discord:80351110224678912`, `console:alice`.
///
/// The platform prefix keeps a Slack id from ever matching a Discord id in an
/// approver list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

/// Platforms a [`UserId`] may belong to. `system` is for rollbot itself and
/// alert sources, which can propose but never approve.
pub const PLATFORMS: &[&str] = &["slack", "discord", "console", "system"];

impl UserId {
    /// # Errors
    /// Returns [`IdError`] unless the text is `platform:id` with a known platform.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let Some((platform, id)) = text.split_once(':') else {
            return Err(IdError::Invalid {
                what: "user id",
                value: text.to_string(),
                reason: "expected platform:id, e.g. slack:U012AB3CD or discord:80351110224678912",
            });
        };
        if !PLATFORMS.contains(&platform) {
            return Err(IdError::Invalid {
                what: "user id",
                value: text.to_string(),
                reason: "platform must be one of slack, discord, console, system",
            });
        }
        if id.is_empty() || id.chars().any(char::is_whitespace) {
            return Err(IdError::Invalid {
                what: "user id",
                value: text.to_string(),
                reason: "the id after the platform must be non-empty without spaces",
            });
        }
        Ok(Self(text.to_string()))
    }

    /// Builds `platform:id` from parts an adapter already trusts.
    ///
    /// # Errors
    /// As [`UserId::parse`].
    pub fn new(platform: &str, id: &str) -> Result<Self, IdError> {
        Self::parse(&format!("{platform}:{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn platform(&self) -> &str {
        self.0.split_once(':').map_or("", |(p, _)| p)
    }

    /// The platform-local part, e.g. `U012AB3CD`.
    pub fn local(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, id)| id)
    }

    /// The identity under which alert sources and rollbot itself act.
    pub fn system(name: &str) -> Self {
        Self(format!("system:{name}"))
    }
}

impl TryFrom<String> for UserId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> Self {
        id.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A service name as used in config and chat (`payment-api`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName(String);

impl ServiceName {
    /// # Errors
    /// Returns [`IdError`] unless the name is 1–63 characters of lowercase
    /// letters, digits, `-`, `_` or `.`, starting with a letter or digit.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        if text.is_empty() {
            return Err(IdError::Empty {
                what: "service name",
            });
        }
        let ok_chars = text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        let ok_start = text.as_bytes()[0].is_ascii_alphanumeric();
        if !ok_chars || !ok_start || text.len() > 63 {
            return Err(IdError::Invalid {
                what: "service name",
                value: text.to_string(),
                reason: "use 1-63 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit",
            });
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServiceName {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ServiceName> for String {
    fn from(id: ServiceName) -> Self {
        id.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposal_ids_round_trip_and_accept_sloppy_typing() {
        let id = ProposalId::from_random(123_456_789);
        assert!(id.as_str().starts_with("RB-"));
        assert_eq!(id.as_str().len(), 9);
        let typed = id.as_str().trim_start_matches("RB-").to_lowercase();
        assert_eq!(ProposalId::parse(&format!("  {typed} ")).unwrap(), id);
        assert!(ProposalId::parse("RB-0OIL11").is_err());
        assert!(ProposalId::parse("").is_err());
    }

    #[test]
    fn user_ids_need_a_known_platform() {
        let u = UserId::parse("slack:U012AB3CD").unwrap();
        assert_eq!(u.platform(), "slack");
        assert_eq!(u.local(), "U012AB3CD");
        assert!(UserId::parse("U012AB3CD").is_err());
        assert!(UserId::parse("irc:bob").is_err());
        assert!(UserId::parse("slack:").is_err());
        assert!(UserId::parse("slack:a b").is_err());
    }

    #[test]
    fn service_names_are_validated() {
        assert!(ServiceName::parse("payment-api").is_ok());
        assert!(ServiceName::parse("Payment").is_err());
        assert!(ServiceName::parse("-x").is_err());
        assert!(ServiceName::parse("").is_err());
        assert!(ServiceName::parse(&"a".repeat(64)).is_err());
    }
}
