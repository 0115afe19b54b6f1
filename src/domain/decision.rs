//! The runbooks' rollback decision rules, as one pure function.
//!
//! Three rules from RUNBOOKS.md are evaluated and all their findings are kept
//! so people see *why*:
//! 1. severity × scope × how long it has lasted;
//! 2. severity × data impact × expected time to fix;
//! 3. the decision tree: P0/P1 roll back unless a fix ships in < 5 min,
//!    P2/P3 roll back unless a fix ships within the hour.
//!
//! The strongest finding wins (roll back now > evaluate > forward fix > keep
//! monitoring), because "when unsure, roll back". Database migrations between
//! the versions override everything with "forward fix": rolling back a schema
//! can lose data.

use serde::{Deserialize, Serialize};

/// Alert severity, normalised from labels; `Critical` is the most severe.
///
/// Every team spells severity differently (`critical`, `P0`, `SEV-1`,
/// `page`…). The runbooks' decision rules speak of four levels, so label
/// values are folded into this one type, once; alert routing uses it too.
/// Ordered by severity: `Severity::Critical > Severity::Low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// `low`, `info`, `informational`, `minor`, `notice`, `debug`, `p3`,
    /// `p4`, `p5`, `sev4`, `sev5`.
    Low,
    /// `medium`, `warning`, `warn`, `moderate`, `p2`, `sev3`.
    Medium,
    /// `high`, `error`, `page`, `major`, `p1`, `sev2`.
    High,
    /// `critical`, `crit`, `fatal`, `emergency`, `p0`, `sev0`, `sev1`.
    Critical,
}

impl Severity {
    /// All levels, most severe first.
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    /// Reads the usual spellings of a severity label value; `None` when it
    /// is not recognised.
    ///
    /// Case, surrounding whitespace and `-`, `_`, space separators are
    /// ignored, so `SEV-1`, `sev_1` and `Sev 1` all read as `sev1`.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
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
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity label value that [`Severity::parse`] does not recognise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown severity {0:?}: use critical, high, medium or low (aliases such as p0-p4, sev1-sev5, warning, info are accepted)"
)]
pub struct UnknownSeverity(pub String);

impl std::str::FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::parse(s).ok_or_else(|| UnknownSeverity(s.to_owned()))
    }
}

/// Share of users affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    All,
    Some,
    Few,
}

impl Scope {
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "all" | "all_users" | "global" => Some(Self::All),
            "some" | "some_users" | "partial" | "region" => Some(Self::Some),
            "few" | "few_users" | "single" => Some(Self::Few),
            _ => None,
        }
    }
}

/// Data affected by the incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataImpact {
    None,
    Minor,
    Major,
}

impl DataImpact {
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" | "no" => Some(Self::None),
            "minor" | "low" => Some(Self::Minor),
            "major" | "high" | "severe" => Some(Self::Major),
            _ => None,
        }
    }
}

/// What we know about the incident; unknowns stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionInput {
    pub severity: Option<Severity>,
    pub scope: Option<Scope>,
    /// How long the problem has lasted, in minutes.
    pub lasting_minutes: Option<u64>,
    pub data_impact: Option<DataImpact>,
    /// Expected time to ship a forward fix, in minutes.
    pub time_to_fix_minutes: Option<u64>,
    /// Database migrations ran between the current and target versions.
    pub migrations: bool,
}

/// The advice shown on a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Advice {
    KeepMonitoring,
    ForwardFix,
    Evaluate,
    RollBackNow,
}

impl Advice {
    pub fn as_str(self) -> &'static str {
        match self {
            Advice::KeepMonitoring => "keep_monitoring",
            Advice::ForwardFix => "forward_fix",
            Advice::Evaluate => "evaluate",
            Advice::RollBackNow => "roll_back_now",
        }
    }
}

/// Advice plus the findings that led to it (stable codes, localised by templates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    pub advice: Advice,
    pub because: Vec<Finding>,
}

/// One rule's conclusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// High severity, all users, > 5 min.
    HighAllUsersOver5Min,
    /// High severity, some users, > 15 min.
    HighSomeUsersOver15Min,
    /// Medium severity, all users, > 30 min.
    MediumAllUsersOver30Min,
    /// Low severity, few users.
    LowFewUsers,
    /// Critical, no data impact, fix > 30 min.
    CriticalNoDataFixOver30Min,
    /// High, minor data impact, fix > 60 min.
    HighMinorDataFixOver60Min,
    /// Medium, no data impact, fix > 2 h.
    MediumNoDataFixOver2H,
    /// Low, no data impact.
    LowNoData,
    /// P0/P1 with a fix deployable in under 5 minutes.
    UrgentQuickFix,
    /// P0/P1 without a fix in under 5 minutes.
    UrgentNoQuickFix,
    /// P2/P3 with a fix within the hour.
    MinorFixWithinHour,
    /// P2/P3 with no fix within the hour.
    MinorNoFixWithinHour,
    /// Database migrations ran between the versions.
    MigrationsBetweenVersions,
    /// Not enough information for any rule.
    NotEnoughInformation,
}

impl Finding {
    fn advice(self) -> Advice {
        use Finding::*;
        match self {
            HighAllUsersOver5Min
            | CriticalNoDataFixOver30Min
            | HighMinorDataFixOver60Min
            | UrgentNoQuickFix
            | MinorNoFixWithinHour => Advice::RollBackNow,
            HighSomeUsersOver15Min | MediumAllUsersOver30Min | MediumNoDataFixOver2H => {
                Advice::Evaluate
            }
            LowNoData | UrgentQuickFix | MinorFixWithinHour | MigrationsBetweenVersions => {
                Advice::ForwardFix
            }
            LowFewUsers => Advice::KeepMonitoring,
            // "When unsure, roll back" — but a human should look first.
            NotEnoughInformation => Advice::Evaluate,
        }
    }
}

/// Applies the runbook rules to what is known.
pub fn recommend(input: &DecisionInput) -> Recommendation {
    use Finding::*;
    let mut found = Vec::new();

    if let (Some(sev), Some(scope), Some(mins)) =
        (input.severity, input.scope, input.lasting_minutes)
    {
        match (sev, scope) {
            (Severity::High | Severity::Critical, Scope::All) if mins > 5 => {
                found.push(HighAllUsersOver5Min)
            }
            (Severity::High | Severity::Critical, Scope::Some) if mins > 15 => {
                found.push(HighSomeUsersOver15Min)
            }
            (Severity::Medium, Scope::All) if mins > 30 => found.push(MediumAllUsersOver30Min),
            _ => {}
        }
    }
    if let (Some(Severity::Low), Some(Scope::Few)) = (input.severity, input.scope) {
        found.push(LowFewUsers);
    }

    if let (Some(sev), Some(data)) = (input.severity, input.data_impact) {
        match (sev, data, input.time_to_fix_minutes) {
            (Severity::Critical, DataImpact::None, Some(t)) if t > 30 => {
                found.push(CriticalNoDataFixOver30Min)
            }
            (Severity::High, DataImpact::Minor, Some(t)) if t > 60 => {
                found.push(HighMinorDataFixOver60Min)
            }
            (Severity::Medium, DataImpact::None, Some(t)) if t > 120 => {
                found.push(MediumNoDataFixOver2H)
            }
            (Severity::Low, DataImpact::None, _) => found.push(LowNoData),
            _ => {}
        }
    }

    if let Some(sev) = input.severity {
        let urgent = sev >= Severity::High;
        let tree = match (urgent, input.time_to_fix_minutes) {
            (true, Some(t)) if t < 5 => Some(UrgentQuickFix),
            (true, _) => Some(UrgentNoQuickFix),
            (false, Some(t)) if t <= 60 => Some(MinorFixWithinHour),
            (false, Some(_)) => Some(MinorNoFixWithinHour),
            // An unknown time to fix is not "no fix plan": no finding.
            (false, None) => None,
        };
        found.extend(tree);
    }

    if input.migrations {
        return Recommendation {
            advice: Advice::ForwardFix,
            because: std::iter::once(MigrationsBetweenVersions)
                .chain(found)
                .collect(),
        };
    }
    if found.is_empty() {
        found.push(NotEnoughInformation);
    }
    let advice = found
        .iter()
        .map(|f| f.advice())
        .max()
        .unwrap_or(Advice::Evaluate);
    Recommendation {
        advice,
        because: found,
    }
}
