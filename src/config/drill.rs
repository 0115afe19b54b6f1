//! `[services.NAME.drill]`: a service's scheduled rollback drills.
//!
//! ```toml
//! [services.payment-api.drill]
//! schedule = "0 2 * * 1"          # cron: minute hour day-of-month month day-of-week
//! timezone = "Europe/Berlin"      # IANA name; default UTC
//! approvers_to_notify = ["slack:U0123ABCD"]
//! ```
//!
//! At each scheduled time rollbot opens the same DRILL proposal as
//! `/rollback drill NAME` (a read-only copy of the workload; nothing real
//! is touched) and asks `approvers_to_notify` to take part.

use std::str::FromStr;

use super::*;

/// A service's drill schedule, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// Five-field cron (`minute hour day-of-month month day-of-week`), e.g.
    /// `"0 2 * * 1"` for Mondays at 02:00.
    pub schedule: String,
    /// The IANA time zone the schedule is read in; default `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// People pinged in the drill's thread, as `platform:id`.
    #[serde(default)]
    pub approvers_to_notify: Vec<String>,
}

/// The default `timezone`.
pub const DEFAULT_DRILL_TIMEZONE: &str = "UTC";

/// A checked drill schedule, ready for the engine.
#[derive(Debug, Clone)]
pub struct DrillSchedule {
    /// The cron expression as written (shown to people).
    pub schedule: String,
    pub cron: croner::Cron,
    pub timezone: chrono_tz::Tz,
    pub notify: Vec<UserId>,
}

impl DrillConfig {
    /// Checks `[services.NAME.drill]` at `at`.
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        if let Err(e) = parse_cron(&self.schedule) {
            problems.push(Problem::new(format!("{at}.schedule"), e));
        }
        if let Some(tz) = &self.timezone
            && let Err(e) = parse_timezone(tz)
        {
            problems.push(Problem::new(format!("{at}.timezone"), e));
        }
        for (i, a) in self.approvers_to_notify.iter().enumerate() {
            if let Err(e) = UserId::parse(a) {
                problems.push(Problem::new(
                    format!("{at}.approvers_to_notify[{i}]"),
                    e.to_string(),
                ));
            }
        }
    }

    /// The schedule the engine runs; `None` when [`DrillConfig::validate`]
    /// reports a problem.
    pub fn resolve(&self) -> Option<DrillSchedule> {
        Some(DrillSchedule {
            schedule: self.schedule.trim().to_string(),
            cron: parse_cron(&self.schedule).ok()?,
            timezone: parse_timezone(self.timezone.as_deref().unwrap_or(DEFAULT_DRILL_TIMEZONE))
                .ok()?,
            notify: self
                .approvers_to_notify
                .iter()
                .map(|a| UserId::parse(a))
                .collect::<Result<_, _>>()
                .ok()?,
        })
    }
}

fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    let fields = text.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "{text:?} has {fields} fields; write five: minute hour day-of-month month day-of-week, e.g. \"0 2 * * 1\" for Mondays at 02:00"
        ));
    }
    croner::Cron::from_str(text).map_err(|e| {
        format!(
            "{text:?} is not a cron schedule ({e}); write minute hour day-of-month month day-of-week, e.g. \"0 2 * * 1\" for Mondays at 02:00"
        )
    })
}

fn parse_timezone(text: &str) -> Result<chrono_tz::Tz, String> {
    chrono_tz::Tz::from_str(text).map_err(|_| {
        format!(
            "{text:?} is not an IANA time zone; write one such as \"UTC\", \"Europe/Berlin\" or \"Asia/Tokyo\""
        )
    })
}

impl Config {
    /// The drill schedule of every service that has one.
    pub fn drill_schedules(&self) -> BTreeMap<ServiceName, DrillSchedule> {
        self.services
            .iter()
            .filter_map(|(name, s)| {
                Some((ServiceName::parse(name).ok()?, s.drill.as_ref()?.resolve()?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml: &str) -> Vec<String> {
        let c: DrillConfig = toml::from_str(toml).unwrap();
        let mut out = Vec::new();
        c.validate("services.pay.drill", &mut out);
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_weekly_schedule_in_a_time_zone_resolves() {
        let c: DrillConfig = toml::from_str(
            r#"
            schedule = "0 2 * * 1"
            timezone = "Asia/Tokyo"
            approvers_to_notify = ["slack:UALICE"]
            "#,
        )
        .unwrap();
        let s = c.resolve().unwrap();
        assert_eq!(s.timezone, chrono_tz::Asia::Tokyo);
        assert_eq!(s.notify, vec![UserId::parse("slack:UALICE").unwrap()]);
        let none = problems(r#"schedule = "30 9 1 * *""#);
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn every_problem_names_its_key_and_the_fix() {
        let got = problems(
            r#"
            schedule = "0 2 * *"
            timezone = "Mars/Olympus"
            approvers_to_notify = ["alice"]
            "#,
        );
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].starts_with("services.pay.drill.schedule") && got[0].contains("five"));
        assert!(got[1].starts_with("services.pay.drill.timezone") && got[1].contains("IANA"));
        assert!(got[2].starts_with("services.pay.drill.approvers_to_notify[0]"));
        let bad = problems(r#"schedule = "61 2 * * 1""#);
        assert!(
            bad.len() == 1 && bad[0].contains("not a cron schedule"),
            "{bad:?}"
        );
        assert!(toml::from_str::<DrillConfig>("schedule = \"0 2 * * 1\"\nevery = 1").is_err());
    }
}
