//! Shared decoding machinery: the payload error type, JSON decoding that
//! records the path of the failing field, and timestamp handling.

use chrono::{DateTime, Utc};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use super::event::AlertSource;

/// A webhook body that cannot be turned into alerts.
///
/// The `Display` form is meant to be returned to the sender verbatim (in a
/// 400 response) and logged: it names the JSON path of the offending field,
/// e.g. `alerts[0].startsAt: invalid RFC 3339 timestamp "yesterday"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The body is not JSON, or a field has the wrong type or value.
    #[error("{}{message}", path_prefix(path))]
    Invalid {
        /// Which parser rejected the body.
        origin: AlertSource,
        /// JSON path of the offending value (`.` for the document itself).
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The payload declares a version this parser does not understand.
    #[error(
        "version: unsupported {origin} webhook payload version {}; supported: {}",
        found.as_deref().map_or_else(|| "(none)".to_owned(), |v| format!("{v:?}")),
        supported.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ")
    )]
    UnsupportedVersion {
        /// Which parser rejected the body.
        origin: AlertSource,
        /// The version found, `None` when the field is absent.
        found: Option<String>,
        /// The versions this parser accepts.
        supported: &'static [&'static str],
    },
}

impl PayloadError {
    /// JSON path of the offending value.
    #[must_use]
    pub fn path(&self) -> &str {
        match self {
            PayloadError::Invalid { path, .. } => path,
            PayloadError::UnsupportedVersion { .. } => "version",
        }
    }

    /// The parser that rejected the body.
    #[must_use]
    pub fn origin(&self) -> AlertSource {
        match self {
            PayloadError::Invalid { origin, .. }
            | PayloadError::UnsupportedVersion { origin, .. } => *origin,
        }
    }

    pub(crate) fn invalid(origin: AlertSource, path: &str, message: impl Into<String>) -> Self {
        PayloadError::Invalid {
            origin,
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// `"alerts[0].startsAt: "`, or nothing for the document itself.
fn path_prefix(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// Decode `body` as `T`, reporting the JSON path of the first failure.
pub(crate) fn decode<T: DeserializeOwned>(
    origin: AlertSource,
    body: &[u8],
) -> Result<T, PayloadError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        PayloadError::Invalid {
            origin,
            path,
            message: describe(&err.into_inner()),
        }
    })?;
    // Trailing garbage after the document is as wrong as a syntax error.
    de.end()
        .map_err(|err| PayloadError::invalid(origin, ".", describe(&err)))?;
    Ok(value)
}

/// serde_json's message; the line/column suffix is kept only for syntax
/// errors, where the JSON path alone does not locate the problem.
fn describe(err: &serde_json::Error) -> String {
    let text = err.to_string();
    if err.is_data() {
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        if let Some(stripped) = text.strip_suffix(&suffix) {
            return stripped.to_owned();
        }
    }
    text
}

/// Check a payload's `version` field before decoding the rest, so a payload
/// of another version gets "unsupported version" instead of a confusing
/// error about some field whose shape changed.
pub(crate) fn check_version(
    origin: AlertSource,
    body: &[u8],
    supported: &'static [&'static str],
) -> Result<(), PayloadError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        version: Option<String>,
    }
    let probe: Probe = decode(origin, body)?;
    match probe.version {
        Some(v) if supported.contains(&v.as_str()) => Ok(()),
        found => Err(PayloadError::UnsupportedVersion {
            origin,
            found,
            supported,
        }),
    }
}

/// Go's `time.Time{}` as Alertmanager and Grafana render it for "no end".
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Parse an RFC 3339 timestamp (0–9 fractional digits, `Z` or offset).
pub(crate) fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("invalid RFC 3339 timestamp {s:?}"))
}

/// `deserialize_with` for a required RFC 3339 timestamp.
pub(crate) fn rfc3339<'de, D: Deserializer<'de>>(de: D) -> Result<DateTime<Utc>, D::Error> {
    let s = String::deserialize(de)?;
    parse_rfc3339(&s).map_err(D::Error::custom)
}

/// `deserialize_with` for an optional end time: absent, `null`, `""` and
/// Go's zero time all mean "has not ended".
pub(crate) fn rfc3339_or_zero<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(s) = Option::<String>::deserialize(de)? else {
        return Ok(None);
    };
    if s.is_empty() || s == GO_ZERO_TIME {
        return Ok(None);
    }
    let t = parse_rfc3339(&s).map_err(D::Error::custom)?;
    // Go's zero time may also be rendered with fractional zeros or an offset.
    if t == go_zero_time() {
        return Ok(None);
    }
    Ok(Some(t))
}

/// `deserialize_with` for an optional start time (generic payloads).
pub(crate) fn rfc3339_opt<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(de)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => parse_rfc3339(&s).map(Some).map_err(D::Error::custom),
    }
}

fn go_zero_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(GO_ZERO_TIME)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `None` for an absent or empty string, so links are either useful or absent.
pub(crate) fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Times {
        #[serde(deserialize_with = "rfc3339")]
        start: DateTime<Utc>,
        #[serde(default, deserialize_with = "rfc3339_or_zero")]
        end: Option<DateTime<Utc>>,
    }

    fn times(json: &str) -> Result<Times, PayloadError> {
        decode(AlertSource::Generic, json.as_bytes())
    }

    #[test]
    fn accepts_zero_to_nine_fraction_digits_and_offsets() {
        let t = times(r#"{"start":"2024-05-01T10:00:00Z"}"#).unwrap();
        assert_eq!(t.start.to_rfc3339(), "2024-05-01T10:00:00+00:00");
        let t = times(r#"{"start":"2024-05-01T10:00:00.123456789Z"}"#).unwrap();
        assert_eq!(t.start.nanosecond(), 123_456_789);
        let t = times(r#"{"start":"2024-05-01T19:00:00.5+09:00"}"#).unwrap();
        assert_eq!(t.start.to_rfc3339(), "2024-05-01T10:00:00.500+00:00");
    }

    #[test]
    fn zero_end_time_is_none() {
        for end in [
            r#""0001-01-01T00:00:00Z""#,
            r#""0001-01-01T00:00:00.000000000Z""#,
            r#""""#,
            "null",
        ] {
            let t = times(&format!(
                r#"{{"start":"2024-05-01T10:00:00Z","end":{end}}}"#
            ))
            .unwrap();
            assert_eq!(t.end, None, "{end}");
        }
        let t = times(r#"{"start":"2024-05-01T10:00:00Z"}"#).unwrap();
        assert_eq!(t.end, None);
        let t = times(r#"{"start":"2024-05-01T10:00:00Z","end":"2024-05-01T11:00:00Z"}"#).unwrap();
        assert!(t.end.is_some());
    }

    #[test]
    fn bad_timestamp_names_path_and_value() {
        let err = times(r#"{"start":"2024-05-01 nope"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"start: invalid RFC 3339 timestamp "2024-05-01 nope""#
        );
        assert_eq!(err.path(), "start");
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let err = times(r#"{"start":"2024-05-01T10:00:00Z"} x"#).unwrap_err();
        assert_eq!(err.path(), ".");
    }

    #[test]
    fn version_probe() {
        check_version(AlertSource::Alertmanager, br#"{"version":"4"}"#, &["4"]).unwrap();
        let err =
            check_version(AlertSource::Alertmanager, br#"{"version":"5"}"#, &["4"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"version: unsupported Alertmanager webhook payload version "5"; supported: "4""#
        );
        let err = check_version(AlertSource::Alertmanager, b"{}", &["4"]).unwrap_err();
        assert!(err.to_string().contains("(none)"), "{err}");
    }
}
