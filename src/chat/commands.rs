//! The `/rollback` command language, shared by every chat platform.
//!
//! ```text
//! /rollback SERVICE [--to-revision N | --image IMAGE] [reason…]
//!                                                 propose a rollback
//! /rollback status [ID]                           one proposal, or the open ones
//! /rollback list                                  open proposals
//! /rollback history SERVICE                       recent proposals of a service
//! /rollback cancel ID                             cancel a proposal still waiting for votes
//! /rollback drill SERVICE [reason…]               rehearse a rollback on a copy (DRILL)
//! /rollback resume-sync SERVICE                   resume the GitOps sync a rollback paused
//! /rollback stats [SERVICE] [--days N]            rollbacks, MTTR, decisions, drills (N days, 30)
//! /rollback help                                  usage
//! ```
//!
//! The parser is pure: it needs only the text and the names of the
//! configured services (so `/rollback stauts` can be told apart from a
//! service name and answered with a suggestion). Mistakes come back as
//! [`CommandError`], which the adapters render for the person who typed it.

use serde::Serialize;

use crate::domain::ProposalId;

/// The verbs, in the order `help` lists them.
pub const VERBS: &[&str] = &[
    "status",
    "list",
    "history",
    "cancel",
    "drill",
    "stats",
    "resume-sync",
    "help",
];

/// The window of `/rollback stats` without `--days`, and the longest one.
pub const STATS_DAYS: u32 = 30;
pub const STATS_MAX_DAYS: u32 = 366;

/// Roll back to a specific revision instead of the previous one.
pub const TO_REVISION: &str = "--to-revision";

/// Roll to a named image (targets that run one image, e.g. Swarm services).
pub const IMAGE: &str = "--image";

/// A well-formed `/rollback` command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verb", rename_all = "snake_case")]
pub enum Command {
    /// `/rollback SERVICE [--to-revision N | --image IMAGE] [reason…]`
    Propose {
        service: String,
        to_revision: Option<u64>,
        /// `--image IMAGE`: the image to roll to, e.g. `app:v1.2.9`.
        image: Option<String>,
        reason: String,
    },
    /// `/rollback status [ID]`; without an id, the open proposals.
    Status { id: Option<ProposalId> },
    /// `/rollback list`
    List,
    /// `/rollback history SERVICE`
    History { service: String },
    /// `/rollback cancel ID`
    Cancel { id: ProposalId },
    /// `/rollback drill SERVICE [reason…]`: the full flow on a copy of the
    /// service's workload and history; nothing real is touched.
    Drill { service: String, reason: String },
    /// `/rollback resume-sync SERVICE`: restores the Argo CD or Flux sync
    /// that the rollback's GitOps pause step left paused.
    ResumeSync { service: String },
    /// `/rollback help` (also an empty `/rollback`)
    Help,
    /// `/rollback stats [SERVICE] [--days N]`: the numbers teams steer by
    /// over the last `days` days, for one service or all.
    Stats { service: Option<String>, days: u32 },
}

/// A command that could not be understood, with what to type instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum CommandError {
    #[error(
        "unknown command or service {verb:?}{}; try `/rollback help`",
        suggest(did_you_mean)
    )]
    UnknownVerb {
        verb: String,
        did_you_mean: Option<String>,
    },
    #[error(
        "unknown flag {flag:?}{}; the flags are --to-revision N and --image IMAGE",
        suggest(did_you_mean)
    )]
    UnknownFlag {
        flag: String,
        did_you_mean: Option<String>,
    },
    #[error("--to-revision needs a revision number, e.g. --to-revision 41")]
    MissingRevision,
    #[error("--image needs an image, e.g. --image app:v1.2.9")]
    MissingImage,
    #[error(
        "--to-revision and --image cannot go together: a revision is for Kubernetes workloads, an image for Swarm services; keep the one for this service"
    )]
    RevisionAndImage,
    #[error(
        "`/rollback drill` takes no flags ({flag:?}); a drill rehearses the rollback to the previous revision, e.g. `/rollback drill payment-api`"
    )]
    DrillFlag { flag: String },
    #[error("--to-revision {value:?} is not a revision number; use a whole number such as 41")]
    BadRevision { value: String },
    #[error("`/rollback {verb}` needs {what}, e.g. `/rollback {verb} {example}`")]
    MissingArgument {
        verb: String,
        what: String,
        example: String,
    },
    #[error(
        "{value:?} is not a proposal id; ids look like RB-7K3M9Q (`/rollback list` shows them)"
    )]
    BadId { value: String },
    #[error("`/rollback {verb}` takes {max}; remove {extra:?}")]
    TooManyArguments {
        verb: String,
        max: String,
        extra: String,
    },
    #[error("the service name comes before {flag:?}, e.g. `/rollback {example} --to-revision 41`")]
    ServiceFirst { flag: String, example: String },
    #[error(
        "unknown service {service:?}{}; configured services: {known}",
        suggest(did_you_mean)
    )]
    UnknownService {
        service: String,
        did_you_mean: Option<String>,
        known: String,
    },
    #[error(
        "`/rollback stats` takes an optional service name and --days N (1 to {STATS_MAX_DAYS}), not {word:?}; e.g. `/rollback stats payment-api --days 30`"
    )]
    BadStats { word: String },
}

fn suggest(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default()
}

/// Parses the text after `/rollback`.
///
/// `services` are the configured service names; a first word that is
/// neither a verb nor a service is an [`CommandError::UnknownVerb`] with the
/// closest verb or service as suggestion.
///
/// # Errors
/// A [`CommandError`] describing the first mistake.
pub fn parse(text: &str, services: &[&str]) -> Result<Command, CommandError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some((&first, rest)) = words.split_first() else {
        return Ok(Command::Help);
    };
    let verb = first.to_ascii_lowercase();
    match verb.as_str() {
        "help" => {
            no_more("help", "no arguments", rest)?;
            Ok(Command::Help)
        }
        "list" => {
            no_more("list", "no arguments", rest)?;
            Ok(Command::List)
        }
        "status" => {
            let id = match rest {
                [] => None,
                [id, more @ ..] => {
                    no_more("status", "at most one proposal id", more)?;
                    Some(parse_id(id)?)
                }
            };
            Ok(Command::Status { id })
        }
        "cancel" => match rest {
            [] => Err(missing("cancel", "a proposal id", "RB-7K3M9Q")),
            [id, more @ ..] => {
                no_more("cancel", "at most one proposal id", more)?;
                Ok(Command::Cancel { id: parse_id(id)? })
            }
        },
        "history" => match rest {
            [] => Err(missing(
                "history",
                "a service name",
                services.first().copied().unwrap_or("payment-api"),
            )),
            [service, more @ ..] => {
                no_more("history", "one service name only", more)?;
                Ok(Command::History {
                    service: known_service(service, services)?,
                })
            }
        },
        "resume-sync" => match rest {
            [] => Err(missing(
                "resume-sync",
                "a service name",
                services.first().copied().unwrap_or("payment-api"),
            )),
            [service, more @ ..] => {
                no_more("resume-sync", "one service name only", more)?;
                Ok(Command::ResumeSync {
                    service: known_service(service, services)?,
                })
            }
        },
        "drill" => match rest {
            [] => Err(missing(
                "drill",
                "a service name",
                services.first().copied().unwrap_or("payment-api"),
            )),
            [service, reason @ ..] => {
                if let Some(flag) = reason.iter().find(|w| w.starts_with("--")) {
                    return Err(CommandError::DrillFlag {
                        flag: flag.split_once('=').map_or(*flag, |(n, _)| n).to_string(),
                    });
                }
                Ok(Command::Drill {
                    service: known_service(service, services)?,
                    reason: reason.join(" "),
                })
            }
        },
        "stats" => stats(rest, services),
        _ if first.starts_with("--") => Err(CommandError::ServiceFirst {
            flag: first.to_string(),
            example: services
                .first()
                .copied()
                .unwrap_or("payment-api")
                .to_string(),
        }),
        _ if services.contains(&first) => propose(first, rest),
        _ => {
            let candidates = VERBS.iter().copied().chain(services.iter().copied());
            Err(CommandError::UnknownVerb {
                verb: first.to_string(),
                did_you_mean: closest(first, candidates),
            })
        }
    }
}

fn propose(service: &str, rest: &[&str]) -> Result<Command, CommandError> {
    let mut to_revision = None;
    let mut image = None;
    let mut reason = Vec::new();
    let mut words = rest.iter();
    while let Some(&word) = words.next() {
        if let Some(flag) = word.strip_prefix("--") {
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (flag, None),
            };
            let name = format!("--{name}");
            let (missing, value) = if name == TO_REVISION {
                (CommandError::MissingRevision, inline)
            } else if name == IMAGE {
                (CommandError::MissingImage, inline)
            } else {
                return Err(unknown_flag(word));
            };
            // A value is the next word unless it is itself a flag.
            let value = match value {
                Some(v) => v,
                None => match words.clone().next() {
                    Some(next) if !next.starts_with("--") => {
                        words.next();
                        next
                    }
                    _ => return Err(missing),
                },
            };
            if value.is_empty() {
                return Err(missing);
            }
            if name == TO_REVISION {
                to_revision =
                    Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| CommandError::BadRevision {
                                value: value.to_string(),
                            })?,
                    );
            } else {
                image = Some(value.to_string());
            }
        } else {
            reason.push(word);
        }
    }
    if to_revision.is_some() && image.is_some() {
        return Err(CommandError::RevisionAndImage);
    }
    Ok(Command::Propose {
        service: service.to_string(),
        to_revision,
        image,
        reason: reason.join(" "),
    })
}

fn stats(rest: &[&str], services: &[&str]) -> Result<Command, CommandError> {
    let mut service = None;
    let mut days = None;
    let mut words = rest.iter();
    let bad = |word: &str| CommandError::BadStats {
        word: word.to_string(),
    };
    while let Some(&word) = words.next() {
        if let Some(flag) = word.strip_prefix("--") {
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (flag, None),
            };
            if name != "days" || days.is_some() {
                return Err(bad(word));
            }
            let value = match inline {
                Some(v) => v,
                None => words.next().copied().ok_or_else(|| bad(word))?,
            };
            days = Some(
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|d| (1..=STATS_MAX_DAYS).contains(d))
                    .ok_or_else(|| bad(value))?,
            );
        } else if service.is_none() {
            service = Some(known_service(word, services)?);
        } else {
            return Err(bad(word));
        }
    }
    Ok(Command::Stats {
        service,
        days: days.unwrap_or(STATS_DAYS),
    })
}

fn unknown_flag(word: &str) -> CommandError {
    let name = word.split_once('=').map_or(word, |(n, _)| n);
    CommandError::UnknownFlag {
        flag: name.to_string(),
        did_you_mean: closest(name, [TO_REVISION, IMAGE]),
    }
}

fn parse_id(text: &str) -> Result<ProposalId, CommandError> {
    ProposalId::parse(text).map_err(|_| CommandError::BadId {
        value: text.to_string(),
    })
}

fn known_service(name: &str, services: &[&str]) -> Result<String, CommandError> {
    if services.contains(&name) {
        return Ok(name.to_string());
    }
    Err(CommandError::UnknownService {
        service: name.to_string(),
        did_you_mean: closest(name, services.iter().copied()),
        known: services.join(", "),
    })
}

fn missing(verb: &str, what: &str, example: &str) -> CommandError {
    CommandError::MissingArgument {
        verb: verb.into(),
        what: what.into(),
        example: example.into(),
    }
}

fn no_more(verb: &str, max: &str, extra: &[&str]) -> Result<(), CommandError> {
    if extra.is_empty() {
        return Ok(());
    }
    Err(CommandError::TooManyArguments {
        verb: verb.into(),
        max: max.into(),
        extra: extra.join(" "),
    })
}

/// The candidate closest to `word`, if it is close enough to be a typo:
/// at most a third of the word's letters (and at least one) differ.
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let word = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Levenshtein distance, with an adjacent swap counted as one edit
/// (`stauts` → `status`), because that is the commonest typo.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICES: &[&str] = &["payment-api", "search"];

    fn run(text: &str) -> String {
        match parse(text, SERVICES) {
            Ok(c) => format!("{text:?} => {c:?}"),
            Err(e) => format!("{text:?} => error: {e}"),
        }
    }

    #[test]
    fn commands_parse() {
        let cases = [
            "",
            "help",
            "payment-api",
            "payment-api payment success rate 95%",
            "payment-api --to-revision 41 bad deploy",
            "payment-api bad deploy --to-revision=41",
            "status",
            "status rb-7k3m9q",
            "STATUS RB-7K3M9Q",
            "list",
            "history payment-api",
            "cancel RB-7K3M9Q",
            "drill payment-api",
            "DRILL search quarterly rehearsal",
            "stats",
            "stats payment-api",
            "stats --days 7",
            "stats search --days=90",
            "payment-api --image payment-api:v1.2.9 bad deploy",
            "payment-api bad deploy --image=registry.example/payment-api@sha256:0a1b",
        ];
        let out: Vec<String> = cases.iter().map(|c| run(c)).collect();
        insta::assert_yaml_snapshot!(out);
    }

    #[test]
    fn mistakes_say_what_to_type() {
        let cases = [
            "stauts",
            "payment-apj",
            "rollout",
            "payment-api --to-revison 41",
            "payment-api --force",
            "payment-api --to-revision",
            "payment-api --to-revision abc",
            "payment-api --to-revision=",
            "--to-revision 3",
            "cancel",
            "cancel RB-1234",
            "cancel RB-7K3M9Q RB-7K3M9R",
            "status RB-7K3M9Q extra",
            "history",
            "history paymnet-api",
            "list all",
            "help me",
            "drill",
            "dril payment-api",
            "drill paymnet-api",
            "drill payment-api --to-revision 2",
            "stats paymnet-api",
            "stats --days",
            "stats --days 0",
            "stats --days 1000",
            "stats --weeks 2",
            "stats payment-api search",
            "stats --days 7 --days 8",
            "payment-api --image",
            "payment-api --image=",
            "payment-api --image --to-revision 3",
            "payment-api --to-revision 3 --image payment-api:v1",
            "payment-api --imgae payment-api:v1",
        ];
        let out: Vec<String> = cases.iter().map(|c| run(c)).collect();
        insta::assert_yaml_snapshot!(out);
    }

    #[test]
    fn typed_errors_carry_the_suggestion() {
        assert_eq!(
            parse("stauts", SERVICES),
            Err(CommandError::UnknownVerb {
                verb: "stauts".into(),
                did_you_mean: Some("status".into()),
            })
        );
        assert_eq!(
            parse("payment-api --to-revison 4", SERVICES),
            Err(CommandError::UnknownFlag {
                flag: "--to-revison".into(),
                did_you_mean: Some("--to-revision".into()),
            })
        );
        assert_eq!(
            parse("zzz", SERVICES),
            Err(CommandError::UnknownVerb {
                verb: "zzz".into(),
                did_you_mean: None,
            })
        );
    }

    #[test]
    fn distance_counts_swaps_once() {
        assert_eq!(edit_distance("stauts", "status"), 1);
        assert_eq!(edit_distance("list", "list"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
