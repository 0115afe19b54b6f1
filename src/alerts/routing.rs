//! Routing alerts to services.
//!
//! A [`Router`] is an ordered list of routes built from [`RouteConfig`]s
//! (the `[[alerts.routes]]` tables of the config file):
//!
//! ```toml
//! [[alerts.routes]]
//! matchers = ["alertname=PaymentSuccessRateLow", "namespace=~prod|production"]
//! service = "payment-api"
//! severities = ["critical", "high"]   # optional; omit to accept any severity
//! for_duration = "5m"                 # optional; propose only after 5 minutes
//!
//! [[alerts.routes]]
//! matchers = ['service=~"payment-.*"', 'env!="staging"']
//! service = "payment-api"
//! auto_propose = false                # optional, default true
//! ```
//!
//! **The first route that matches wins**; put specific routes before broad
//! ones. A route matches when *all* its matchers match the alert's labels and,
//! if it has `severities`, the alert's normalized severity is in the list (an
//! alert without a recognised severity does not match such a route). A route
//! with no matchers matches every alert, which makes a catch-all last route.
//!
//! Matchers follow Alertmanager: `name=value`, `name!=value`,
//! `name=~regex`, `name!~regex`; the value may be double-quoted (with `\"`,
//! `\\`, `\n` escapes); regexes are anchored as `^(?:regex)$`; a missing label
//! reads as the empty string, so `team=""` matches alerts without `team`.
//!
//! `for_duration` (`1h30m`, `5m`, `90s`; the configuration's one duration
//! parser) delays proposing until `now - startsAt >=
//! for_duration`: the decision is then `ready: false` with `wait_until` set,
//! and the engine should re-route the alert at that time.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::event::AlertEvent;
use crate::domain::decision::{Severity, UnknownSeverity};

/// One route as written in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Label matchers, all of which must match (e.g. `service=~payment-.*`).
    #[serde(default)]
    pub matchers: Vec<String>,
    /// The service (rollback target) this route sends alerts to.
    pub service: String,
    /// Open a proposal automatically; `false` only records/announces the alert.
    #[serde(default = "default_true")]
    pub auto_propose: bool,
    /// Accepted severities (normalized: critical/high/medium/low or aliases).
    #[serde(default)]
    pub severities: Option<Vec<String>>,
    /// Minimum time the alert must have been firing before proposing.
    #[serde(default)]
    pub for_duration: Option<String>,
}

fn default_true() -> bool {
    true
}

/// Label comparison of a [`Matcher`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One parsed label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    regex: Option<Regex>,
}

/// A matcher string that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid matcher {matcher:?}: {reason}")]
pub struct MatcherError {
    /// The matcher as written.
    pub matcher: String,
    /// What is wrong, and the expected form.
    pub reason: String,
}

impl Matcher {
    /// Label name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Comparison.
    #[must_use]
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// Value or regex source, unquoted.
    #[must_use]
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the label set satisfies this matcher (missing label = `""`).
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let actual = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => actual == self.value,
            (MatchOp::NotEqual, _) => actual != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(actual),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(actual),
            // Regex matchers always carry a compiled regex (see from_str).
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

impl FromStr for Matcher {
    type Err = MatcherError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| MatcherError {
            matcher: s.to_owned(),
            reason,
        };
        let text = s.trim();
        let name_len = text
            .char_indices()
            .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
            .map_or(text.len(), |(i, _)| i);
        if name_len == 0 {
            return Err(fail(
                "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) followed by =, !=, =~ or !~".into(),
            ));
        }
        let name = &text[..name_len];
        let rest = text[name_len..].trim_start();
        let (op, rest) = [
            ("=~", MatchOp::Regex),
            ("!~", MatchOp::NotRegex),
            ("!=", MatchOp::NotEqual),
            ("=", MatchOp::Equal),
        ]
        .into_iter()
        .find_map(|(tok, op)| rest.strip_prefix(tok).map(|r| (op, r)))
        .ok_or_else(|| {
            fail(format!(
                "expected =, !=, =~ or !~ after label name {name:?}, e.g. \"{name}=value\""
            ))
        })?;
        let value = unquote(rest.trim()).map_err(|reason| fail(reason.into()))?;
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| fail(format!("invalid regex: {e}")))?,
            ),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value,
            regex,
        })
    }
}

/// Strip optional double quotes, resolving `\"`, `\\` and `\n`.
fn unquote(raw: &str) -> Result<String, &'static str> {
    let Some(inner) = raw.strip_prefix('"') else {
        if raw.contains('"') {
            return Err("unquoted value contains '\"'; quote the whole value");
        }
        return Ok(raw.to_owned());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or("quoted value has no closing '\"'")?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                _ => return Err("invalid escape in quoted value (use \\\", \\\\ or \\n)"),
            },
            '"' => return Err("unescaped '\"' inside quoted value"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Parses a route's `for_duration` with the configuration's one duration
/// parser (`1h30m`, `5m`, `90s`, `500ms`, `1d`).
///
/// # Errors
/// A sentence saying what was wrong and how to write a duration.
pub fn parse_duration(text: &str) -> Result<TimeDelta, String> {
    crate::config::duration::parse(text).map(crate::config::duration::to_chrono)
}

/// A route configuration that cannot be used. Paths are relative to the
/// list of routes: `routes[1].matchers[0]` is the first matcher of the second route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteConfigError {
    /// A matcher string does not parse.
    #[error("routes[{route}].matchers[{index}]: {source}")]
    InvalidMatcher {
        /// Route index (0-based).
        route: usize,
        /// Matcher index (0-based).
        index: usize,
        /// What is wrong.
        #[source]
        source: MatcherError,
    },
    /// `service` is empty.
    #[error("routes[{route}].service: must name the service to roll back, e.g. \"payment-api\"")]
    EmptyService {
        /// Route index (0-based).
        route: usize,
    },
    /// A `severities` entry is not a known severity.
    #[error("routes[{route}].severities[{index}]: {source}")]
    UnknownSeverity {
        /// Route index (0-based).
        route: usize,
        /// Entry index (0-based).
        index: usize,
        /// What is wrong.
        #[source]
        source: UnknownSeverity,
    },
    /// `for_duration` does not parse.
    #[error("routes[{route}].for_duration: invalid duration {value:?}: {reason}")]
    InvalidDuration {
        /// Route index (0-based).
        route: usize,
        /// The value as written.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct Route {
    matchers: Vec<Matcher>,
    service: String,
    auto_propose: bool,
    severities: Option<Vec<Severity>>,
    for_duration: Option<TimeDelta>,
}

impl Route {
    /// Validate one route; `index` is only used in error paths.
    ///
    /// # Errors
    ///
    /// See [`RouteConfigError`].
    pub fn from_config(index: usize, config: &RouteConfig) -> Result<Self, RouteConfigError> {
        if config.service.trim().is_empty() {
            return Err(RouteConfigError::EmptyService { route: index });
        }
        let matchers = config
            .matchers
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.parse::<Matcher>()
                    .map_err(|source| RouteConfigError::InvalidMatcher {
                        route: index,
                        index: i,
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        let severities = config
            .severities
            .as_ref()
            .map(|list| {
                list.iter()
                    .enumerate()
                    .map(|(i, s)| {
                        s.parse::<Severity>()
                            .map_err(|source| RouteConfigError::UnknownSeverity {
                                route: index,
                                index: i,
                                source,
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let for_duration = config
            .for_duration
            .as_ref()
            .map(|text| {
                parse_duration(text).map_err(|reason| RouteConfigError::InvalidDuration {
                    route: index,
                    value: text.clone(),
                    reason,
                })
            })
            .transpose()?;
        Ok(Route {
            matchers,
            service: config.service.trim().to_owned(),
            auto_propose: config.auto_propose,
            severities,
            for_duration,
        })
    }

    /// Whether the alert satisfies every matcher and the severity filter.
    #[must_use]
    pub fn matches(&self, event: &AlertEvent) -> bool {
        let severity_ok = match (&self.severities, event.severity) {
            (None, _) => true,
            (Some(list), Some(sev)) => list.contains(&sev),
            (Some(_), None) => false,
        };
        severity_ok && self.matchers.iter().all(|m| m.matches(&event.labels))
    }

    /// Target service.
    #[must_use]
    pub fn service(&self) -> &str {
        &self.service
    }
}

/// What the router decided for one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum RouteDecision {
    /// No route matched: record the alert, propose nothing.
    Unmatched,
    /// A route matched.
    Matched {
        /// Index of the matching route in the config (0-based).
        route: usize,
        /// Target service.
        service: String,
        /// Whether to open a proposal automatically.
        auto_propose: bool,
        /// `true` once the route's `for_duration` has elapsed since
        /// `starts_at` (always `true` without `for_duration`).
        ready: bool,
        /// When `ready` is `false`: the instant it becomes `true`; route the
        /// alert again then. `None` when `ready`.
        wait_until: Option<DateTime<Utc>>,
    },
}

/// Ordered routes; the first match wins.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Build a router from config, validating every route.
    ///
    /// # Errors
    ///
    /// The first [`RouteConfigError`] found, naming the route and field.
    pub fn new(configs: &[RouteConfig]) -> Result<Self, RouteConfigError> {
        let routes = configs
            .iter()
            .enumerate()
            .map(|(i, c)| Route::from_config(i, c))
            .collect::<Result<_, _>>()?;
        Ok(Router { routes })
    }

    /// The validated routes, in order.
    #[must_use]
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Route one alert; `now` decides whether `for_duration` has elapsed.
    ///
    /// The `for_duration` gate is computed from `starts_at` whatever the
    /// alert's status; it only matters for proposing, which only firing
    /// alerts do.
    #[must_use]
    pub fn route(&self, event: &AlertEvent, now: DateTime<Utc>) -> RouteDecision {
        let Some((index, route)) = self
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(event))
        else {
            return RouteDecision::Unmatched;
        };
        let due = route
            .for_duration
            .and_then(|d| event.starts_at.checked_add_signed(d))
            .filter(|&due| now < due);
        RouteDecision::Matched {
            route: index,
            service: route.service.clone(),
            auto_propose: route.auto_propose,
            ready: due.is_none(),
            wait_until: due,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn matcher_parsing_forms() {
        let m: Matcher = "alertname=PaymentSuccessRateLow".parse().unwrap();
        assert_eq!(
            (m.name(), m.op(), m.value()),
            ("alertname", MatchOp::Equal, "PaymentSuccessRateLow")
        );
        let m: Matcher = r#" service =~ "payment-.*" "#.parse().unwrap();
        assert_eq!(
            (m.name(), m.op(), m.value()),
            ("service", MatchOp::Regex, "payment-.*")
        );
        let m: Matcher = r#"msg!="say \"hi\"\\""#.parse().unwrap();
        assert_eq!((m.op(), m.value()), (MatchOp::NotEqual, "say \"hi\"\\"));
        let m: Matcher = "env!~staging|dev".parse().unwrap();
        assert_eq!(m.op(), MatchOp::NotRegex);
        let m: Matcher = "team=".parse().unwrap();
        assert_eq!(m.value(), "");
        assert_eq!(m.to_string(), "team=\"\"");
    }

    #[test]
    fn matcher_parse_errors() {
        for bad in [
            "",
            "=x",
            "9lives=x",
            "name",
            "name~x",
            r#"a="open"#,
            r#"a=x"y"#,
            r#"a="\q""#,
            "a=~(",
            "a-b=c",
        ] {
            let err = bad.parse::<Matcher>().unwrap_err();
            assert_eq!(err.matcher, bad);
            assert!(!err.reason.is_empty());
        }
        let err = "a=~(".parse::<Matcher>().unwrap_err();
        assert!(err.reason.starts_with("invalid regex"), "{}", err.reason);
    }

    #[test]
    fn regexes_are_anchored_and_missing_labels_are_empty() {
        let m: Matcher = "service=~pay".parse().unwrap();
        assert!(m.matches(&labels(&[("service", "pay")])));
        assert!(!m.matches(&labels(&[("service", "payment")])));
        assert!(!m.matches(&labels(&[("service", "prepay")])));
        let alt: Matcher = "env=~prod|production".parse().unwrap();
        assert!(alt.matches(&labels(&[("env", "production")])));
        assert!(!alt.matches(&labels(&[("env", "prod2")])));
        let absent: Matcher = "team=\"\"".parse().unwrap();
        assert!(absent.matches(&labels(&[])));
        let present: Matcher = "team!=\"\"".parse().unwrap();
        assert!(!present.matches(&labels(&[])));
        let not_re: Matcher = "env!~stag.*".parse().unwrap();
        assert!(not_re.matches(&labels(&[])));
        assert!(!not_re.matches(&labels(&[("env", "staging")])));
    }

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("5m"), TimeDelta::minutes(5));
        assert_eq!(ok("1h30m"), TimeDelta::minutes(90));
        assert_eq!(ok("90s"), TimeDelta::seconds(90));
        assert_eq!(ok("1d"), TimeDelta::days(1));
        assert_eq!(ok("1s500ms"), TimeDelta::milliseconds(1500));
        assert_eq!(ok("0"), TimeDelta::zero());
        for bad in ["", "5", "m", "5x", "-5m", "11y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
