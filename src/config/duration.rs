//! Durations in the config file, written like `"30m"`, `"1h30m"` or `"90s"`:
//! parsed once, when the file is read, by the one parser ([`parse`]).
//!
//! A [`Span`] keeps what was written (for messages) and its value. A span
//! that does not parse still deserializes, so validation reports it with its
//! key path together with every other problem, instead of stopping at the
//! first one; [`crate::config::Config::parse`] refuses a config holding one.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The longest duration a config may name (ten years): longer ones are
/// typos, and every duration then fits date arithmetic ([`to_chrono`]).
pub const LONGEST: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The one duration parser (humantime's units: `ms s m h d w y`, largest
/// first, e.g. `1h30m`).
///
/// # Errors
/// A sentence saying what was wrong and how to write a duration.
pub fn parse(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d > LONGEST => Err(format!(
            "{text:?} is longer than ten years; write a shorter duration, like \"30m\" or \"7d\""
        )),
        Ok(d) => Ok(d),
        Err(_) => Err(format!(
            "{text:?} is not a duration; write one like \"30m\", \"1h\" or \"90s\""
        )),
    }
}

/// `d` for date arithmetic. Config durations are at most [`LONGEST`], which
/// always fits; a longer one is cut to it.
pub fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d.min(LONGEST)).unwrap_or(chrono::Duration::MAX)
}

/// A duration as written in the config file, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    text: String,
    value: Result<Duration, String>,
}

impl Span {
    /// A default: `d`, written the way humantime prints it.
    pub fn of(d: Duration) -> Self {
        Self {
            text: humantime::format_duration(d).to_string(),
            value: Ok(d),
        }
    }

    /// What the file says, e.g. `5m`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value, or `default` — the key's one default — for a span that
    /// did not parse, which only a config refused by validation holds.
    pub fn or(&self, default: Duration) -> Duration {
        self.value.as_ref().copied().unwrap_or(default)
    }

    /// The value; a span that did not parse is reported at `at`.
    pub fn check(&self, at: &str, problems: &mut Vec<super::Problem>) -> Option<Duration> {
        match &self.value {
            Ok(d) => Some(*d),
            Err(message) => {
                problems.push(super::Problem::new(at, message.clone()));
                None
            }
        }
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let value = parse(&text);
        Ok(Self { text, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_parser_reads_every_duration() {
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 24 * 3600)));
        assert!(parse("soon").unwrap_err().contains("is not a duration"));
        assert!(parse("11y").unwrap_err().contains("longer than ten years"));
        assert_eq!(
            to_chrono(Duration::from_secs(90)),
            chrono::Duration::seconds(90)
        );
        assert_eq!(to_chrono(Duration::MAX), to_chrono(LONGEST));
    }

    #[test]
    fn a_span_keeps_its_text_and_reports_itself_once() {
        let bad: Span = serde_json::from_value(serde_json::json!("soon")).unwrap();
        assert_eq!(bad.text(), "soon");
        assert_eq!(bad.or(Duration::from_secs(1)), Duration::from_secs(1));
        let mut problems = Vec::new();
        assert_eq!(bad.check("a.b", &mut problems), None);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .to_string()
                .starts_with("a.b: \"soon\" is not a duration")
        );
        assert_eq!(Span::of(Duration::from_secs(300)).text(), "5m");
    }
}
