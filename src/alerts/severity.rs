//! Severity normalization.
//!
//! Every team spells severity differently (`critical`, `P0`, `SEV-1`,
//! `page`…). The decision rules in the runbooks speak of four levels, so
//! label values are folded into [`Severity`] here, once.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Normalized alert severity; `Critical` is the most severe.
///
/// Ordered by severity: `Severity::Critical > Severity::Low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `critical`, `crit`, `fatal`, `emergency`, `p0`, `sev0`, `sev1`.
    Critical,
    /// `high`, `error`, `page`, `major`, `p1`, `sev2`.
    High,
    /// `medium`, `warning`, `warn`, `moderate`, `p2`, `sev3`.
    Medium,
    /// `low`, `info`, `informational`, `minor`, `notice`, `debug`, `p3`,
    /// `p4`, `p5`, `sev4`, `sev5`.
    Low,
}

impl Severity {
    /// All levels, most severe first.
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    /// Normalize a label value; `None` when it is not recognised.
    ///
    /// Case, surrounding whitespace and `-`, `_`, space separators are
    /// ignored, so `SEV-1`, `sev_1` and `Sev 1` all read as `sev1`.
    #[must_use]
    pub fn from_label(value: &str) -> Option<Self> {
        let folded: String = value
            .trim()
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        Some(match folded.as_str() {
            "critical" | "crit" | "fatal" | "emergency" | "disaster" | "p0" | "sev0" | "sev1" => {
                Severity::Critical
            }
            "high" | "error" | "err" | "page" | "major" | "p1" | "sev2" => Severity::High,
            "medium" | "warning" | "warn" | "moderate" | "average" | "p2" | "sev3" => {
                Severity::Medium
            }
            "low" | "info" | "informational" | "information" | "minor" | "notice" | "debug"
            | "p3" | "p4" | "p5" | "sev4" | "sev5" => Severity::Low,
            _ => return None,
        })
    }

    /// Canonical lowercase name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Severity::Critical => 3,
            Severity::High => 2,
            Severity::Medium => 1,
            Severity::Low => 0,
        }
    }
}

impl PartialOrd for Severity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Severity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity label value that [`Severity::from_label`] does not recognise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown severity {0:?}: use critical, high, medium or low (aliases such as p0-p4, sev1-sev5, warning, info are accepted)"
)]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::from_label(s).ok_or_else(|| UnknownSeverity(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_aliases_map_to_levels() {
        let cases = [
            ("critical", Severity::Critical),
            ("P0", Severity::Critical),
            ("SEV-1", Severity::Critical),
            ("sev1", Severity::Critical),
            ("high", Severity::High),
            ("p1", Severity::High),
            ("error", Severity::High),
            ("page", Severity::High),
            ("warning", Severity::Medium),
            ("Medium", Severity::Medium),
            ("p2", Severity::Medium),
            ("low", Severity::Low),
            (" info ", Severity::Low),
            ("p3", Severity::Low),
            ("P4", Severity::Low),
        ];
        for (label, expected) in cases {
            assert_eq!(Severity::from_label(label), Some(expected), "{label}");
        }
    }

    #[test]
    fn unknown_values_are_none_and_errors_say_what_to_use() {
        assert_eq!(Severity::from_label("banana"), None);
        assert_eq!(Severity::from_label(""), None);
        let err = "banana".parse::<Severity>().unwrap_err();
        assert!(err.to_string().contains("\"banana\""));
        assert!(err.to_string().contains("critical, high, medium or low"));
    }

    #[test]
    fn ordering_is_by_severity() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::High > Severity::Medium);
        assert!(Severity::Medium > Severity::Low);
        let mut all = Severity::ALL;
        all.sort();
        assert_eq!(all[0], Severity::Low);
    }

    #[test]
    fn canonical_names_round_trip() {
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
        }
    }
}
