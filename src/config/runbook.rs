//! `[services.NAME.runbook]`, `[services.NAME.command]` and
//! `[services.NAME.helm]`: the runbook steps around a rollback (pre-checks,
//! before- and after-hooks) and the two target kinds that run programs.
//!
//! A step is either a command (an argv array; a shell only when
//! `shell = true` is written) or an HTTP call. Arguments, URLs and bodies
//! are templates over a fixed set of variables (see [`VARIABLES`]); each
//! value is substituted into its own argv item or JSON string, never into
//! a shell line, so an odd revision name cannot become a command.

use super::*;

/// Every variable a step's template may use, and what it holds.
pub const VARIABLES: &[(&str, &str)] = &[
    ("service", "the service's name"),
    (
        "from",
        "the version running now (the plan's current image or version)",
    ),
    ("to", "the version rolled back to"),
    ("from_revision", "the revision number running now"),
    ("to_revision", "the revision number rolled back to"),
    ("proposal", "the proposal's id"),
    ("approvers", "the approvers' ids, comma-separated"),
    (
        "status_update",
        "the customer-facing status update drafted from the timeline",
    ),
];

/// Variables that exist only once a proposal does, so not for pre-checks
/// (which run while the plan is made) or a plan command.
pub const PROPOSAL_VARIABLES: &[&str] = &["proposal", "approvers", "status_update"];

/// The variables of a command target's rollback command.
pub const COMMAND_VARIABLES: &[&str] = &["from", "to", "from_revision", "to_revision"];

/// `[services.NAME.runbook]`: the steps around the rollback, each list in order.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookConfig {
    /// Run when the plan is made, before anyone votes; read-only by contract
    /// (drills run them for real).
    #[serde(default)]
    pub pre_checks: Vec<StepConfig>,
    /// Run after approval, before the rollback; one failing stops it.
    #[serde(default)]
    pub before: Vec<StepConfig>,
    /// Run after the rollback (those marked `always` also when the rollout
    /// stopped before it).
    #[serde(default)]
    pub after: Vec<StepConfig>,
}

/// What a pre-check's result feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Exit 0: no database migrations between the versions; exit 1: some
    /// (the output says which): the plan's `migrations` flag is set and the
    /// recommendation becomes a forward fix. Any other exit is a failed check.
    Migrations,
}

/// One runbook step: a command or an HTTP call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Short name shown in the thread and on the timeline, e.g. `db-backup`.
    pub name: String,
    /// The program and its arguments, each a template.
    pub command: Option<Vec<String>>,
    /// Run `command` (one string) with `sh -c`; templates are refused
    /// there, the script reads `$ROLLBOT_…` variables instead.
    #[serde(default)]
    pub shell: bool,
    /// The command's whole environment besides `PATH` and the `ROLLBOT_…`
    /// variables: plain values, or secrets as `{ env = "VAR" }` /
    /// `{ file = "/run/secrets/x" }` (never echoed into chat).
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// Working directory of the command.
    pub dir: Option<PathBuf>,
    /// The HTTP call, instead of a command.
    pub http: Option<HttpStepConfig>,
    /// How long the step may take; past it, the command is killed with its
    /// whole process group. Required.
    pub timeout: Option<Span>,
    /// After-steps only: also run when the rollout stopped before the
    /// rollback was in place — a before-step failed, the rollback failed or
    /// was superseded (maintenance off, traffic back).
    #[serde(default)]
    pub always: bool,
    /// Safe to run again when a restart interrupted it; otherwise an
    /// interrupted step is reported, never silently re-run.
    #[serde(default)]
    pub idempotent: bool,
    /// Pre-checks only: a failure makes the proposal impossible to approve.
    #[serde(default)]
    pub blocking: bool,
    /// Pre-checks only: what the result feeds (e.g. `"migrations"`).
    pub kind: Option<CheckKind>,
}

/// An HTTP step: a change request, a status page, a CDN purge, a feature flag.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStepConfig {
    #[serde(default = "default_method")]
    pub method: String,
    /// A template, e.g. `https://cr.example.com/api/changes/{proposal}`.
    pub url: String,
    /// Header values: plain, or secrets (`{ env = "CR_TOKEN" }`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// The JSON body; every string in it is a template.
    pub body: Option<toml::Value>,
    /// The status that means success; any 2xx when absent.
    pub expect_status: Option<u16>,
}

fn default_method() -> String {
    "POST".into()
}

/// Which list a step is in; decides the keys and variables it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    PreChecks,
    Before,
    After,
}

impl RunbookConfig {
    /// Checks `[services.NAME.runbook]` at `at`.
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        for (list, key, steps) in [
            (List::PreChecks, "pre_checks", &self.pre_checks),
            (List::Before, "before", &self.before),
            (List::After, "after", &self.after),
        ] {
            let mut names = BTreeSet::new();
            for (i, s) in steps.iter().enumerate() {
                let at = format!("{at}.{key}[{i}]");
                if !names.insert(s.name.as_str()) {
                    problems.push(Problem::new(
                        format!("{at}.name"),
                        format!("{:?} is used twice in {key}; give each step its own name, it is how the thread and the timeline tell them apart", s.name),
                    ));
                }
                s.validate(&at, list, problems);
            }
        }
    }
}

impl StepConfig {
    fn validate(&self, at: &str, list: List, problems: &mut Vec<Problem>) {
        let key = |k: &str| format!("{at}.{k}");
        if self.name.trim().is_empty() {
            problems.push(Problem::new(
                key("name"),
                "must name the step, e.g. \"db-backup\"",
            ));
        }
        let allowed: Vec<&str> = VARIABLES
            .iter()
            .map(|(v, _)| *v)
            .filter(|v| list != List::PreChecks || !PROPOSAL_VARIABLES.contains(v))
            .collect();
        match (&self.command, &self.http) {
            (None, None) => problems.push(Problem::new(
                at,
                "a step needs either command = [\"program\", \"arg\"…] or an http = { url = … } table",
            )),
            (Some(_), Some(_)) => problems.push(Problem::new(
                at,
                "a step is either a command or an http call; split it into two steps",
            )),
            (Some(argv), None) => {
                check_command(argv, self.shell, &key("command"), &allowed, problems);
                if let Some(dir) = &self.dir
                    && !dir.is_dir()
                {
                    problems.push(Problem::new(
                        key("dir"),
                        format!("{} is not a directory here", dir.display()),
                    ));
                }
                for (name, value) in &self.env {
                    check_value(name, value, &format!("{}.{name}", key("env")), problems);
                }
            }
            (None, Some(http)) => {
                if self.shell || self.dir.is_some() || !self.env.is_empty() {
                    problems.push(Problem::new(
                        at,
                        "shell, dir and env belong to command steps; an http step has headers and a body",
                    ));
                }
                http.validate(&key("http"), &allowed, problems);
            }
        }
        match &self.timeout {
            None => problems.push(Problem::new(
                key("timeout"),
                "every step needs a timeout, e.g. timeout = \"5m\"; a hung step must not hold the rollback",
            )),
            Some(t) => {
                t.check(&key("timeout"), problems);
            }
        }
        if self.always && list != List::After {
            problems.push(Problem::new(
                key("always"),
                "only after-steps can be `always` (they run even when the rollout stopped before the rollback)",
            ));
        }
        if list != List::PreChecks && (self.blocking || self.kind.is_some()) {
            problems.push(Problem::new(
                at,
                "blocking and kind belong to pre_checks, which run when the plan is made",
            ));
        }
        if list == List::PreChecks && self.idempotent {
            problems.push(Problem::new(
                key("idempotent"),
                "pre-checks are read-only and always run again; remove idempotent",
            ));
        }
    }
}

impl HttpStepConfig {
    fn validate(&self, at: &str, allowed: &[&str], problems: &mut Vec<Problem>) {
        let key = |k: &str| format!("{at}.{k}");
        if reqwest::Method::from_bytes(self.method.as_bytes()).is_err()
            || self.method != self.method.to_ascii_uppercase()
        {
            problems.push(Problem::new(
                key("method"),
                format!(
                    "{:?} is not an HTTP method; write e.g. \"POST\"",
                    self.method
                ),
            ));
        }
        check_template(&self.url, &key("url"), allowed, problems);
        // The URL must be one once its variables are filled in.
        if let Ok(example) = crate::runbook::template::render(&self.url, &|_| Some("x".into()))
            && !matches!(reqwest::Url::parse(&example), Ok(u) if matches!(u.scheme(), "http" | "https"))
        {
            problems.push(Problem::new(
                key("url"),
                format!("{:?} is not an http(s) URL", self.url),
            ));
        }
        for (name, value) in &self.headers {
            let at = format!("{}.{name}", key("headers"));
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(Problem::new(&at, "is not a valid header name"));
            }
            check_value(name, value, &at, problems);
        }
        if let Some(body) = &self.body {
            check_body(body, &key("body"), allowed, problems);
        }
        if let Some(s) = self.expect_status
            && !(100..=599).contains(&s)
        {
            problems.push(Problem::new(
                key("expect_status"),
                format!("{s} is not an HTTP status"),
            ));
        }
    }
}

/// Names of values that hold secrets, which never sit in the config file.
const SECRET_WORDS: &[&str] = &["authorization", "password", "secret", "token", "key"];

/// Checks an env or header value at `at`: a secret-looking `name` must come
/// from the environment or a file, and an `env` reference must name a variable.
fn check_value(name: &str, value: &Secret, at: &str, problems: &mut Vec<Problem>) {
    let lower = name.to_ascii_lowercase();
    match value {
        Secret::Inline(_) if SECRET_WORDS.iter().any(|w| lower.contains(w)) => {
            problems.push(Problem::new(
                at,
                format!("{name} looks like a secret; write {{ env = \"VAR\" }} or {{ file = \"/run/secrets/...\" }} instead of the value, so it stays out of the config file and out of chat"),
            ));
        }
        Secret::Env { env } if env.is_empty() => {
            problems.push(Problem::new(at, "env must name an environment variable"));
        }
        _ => {}
    }
}

fn check_body(v: &toml::Value, at: &str, allowed: &[&str], problems: &mut Vec<Problem>) {
    match v {
        toml::Value::String(s) => check_template(s, at, allowed, problems),
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_body(item, &format!("{at}[{i}]"), allowed, problems);
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t {
                check_body(item, &format!("{at}.{k}"), allowed, problems);
            }
        }
        toml::Value::Datetime(_) => problems.push(Problem::new(
            at,
            "write dates as strings; JSON has no date type",
        )),
        _ => {}
    }
}

fn check_template(text: &str, at: &str, allowed: &[&str], problems: &mut Vec<Problem>) {
    let known = |name: &str| allowed.contains(&name).then(String::new);
    if let Err(e) = crate::runbook::template::render(text, &known) {
        let hint = if PROPOSAL_VARIABLES
            .iter()
            .any(|v| e.contains(&format!("{{{v}}}")))
        {
            " (pre-checks run while the plan is made, before there is a proposal)"
        } else {
            ""
        };
        problems.push(Problem::new(
            at,
            format!(
                "{e}{hint}; the variables are {}",
                allowed
                    .iter()
                    .map(|v| format!("{{{v}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
}

/// Checks an argv: a program that exists, templates with known variables.
pub(super) fn check_command(
    argv: &[String],
    shell: bool,
    at: &str,
    allowed: &[&str],
    problems: &mut Vec<Problem>,
) {
    let Some(program) = argv.first() else {
        problems.push(Problem::new(
            at,
            "is empty; write the program and its arguments, e.g. [\"/opt/bin/backup.sh\", \"{service}\"]",
        ));
        return;
    };
    if shell {
        if argv.len() != 1 {
            problems.push(Problem::new(
                at,
                "with shell = true, write the script as one string, e.g. [\"pg_dump app > /backups/$ROLLBOT_PROPOSAL.sql\"]",
            ));
        }
        if argv
            .iter()
            .any(|a| a.contains('{') && crate::runbook::template::render(a, &|_| None).is_err())
        {
            problems.push(Problem::new(
                at,
                "a shell script takes no {templates}: a value spliced into a shell line could run as a command; read $ROLLBOT_SERVICE, $ROLLBOT_TO… instead",
            ));
        }
        return;
    }
    if program.contains('{') {
        problems.push(Problem::new(
            format!("{at}[0]"),
            "the program itself cannot be a template; name it, and pass values as arguments",
        ));
    } else if crate::runbook::process::find_program(program).is_none() {
        problems.push(Problem::new(
            format!("{at}[0]"),
            format!(
                "program {program:?} not found{}; install it or write its full path",
                if program.contains('/') {
                    ""
                } else {
                    " on PATH"
                }
            ),
        ));
    }
    for (i, arg) in argv.iter().enumerate().skip(1) {
        check_template(arg, &format!("{at}[{i}]"), allowed, problems);
    }
}

impl CommandTarget {
    /// Checks `[services.NAME.command]` at `at`.
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        // The executor knows the plan, not the proposal: the plan command
        // takes no variables (a requested revision comes as
        // ROLLBOT_REQUESTED_REVISION), the rollback the plan's versions.
        check_command(&self.plan, false, &format!("{at}.plan"), &[], problems);
        check_command(
            &self.rollback,
            false,
            &format!("{at}.rollback"),
            COMMAND_VARIABLES,
            problems,
        );
        check_duration(&self.timeout, &format!("{at}.timeout"), problems);
        if let Some(dir) = &self.dir
            && !dir.is_dir()
        {
            problems.push(Problem::new(
                format!("{at}.dir"),
                format!("{} is not a directory here", dir.display()),
            ));
        }
    }

    /// Each command's limit (validated at load).
    pub fn limit(&self) -> Duration {
        parse_duration(&self.timeout).unwrap_or(DEFAULT_STEP_TIMEOUT)
    }
}

/// A limit used only if a validated duration fails to parse again.
const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(10 * 60);

impl HelmTarget {
    /// Checks `[services.NAME.helm]` at `at`.
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        if self.release.is_empty() {
            problems.push(Problem::new(
                format!("{at}.release"),
                "must name the Helm release",
            ));
        }
        if self.namespace.is_empty() {
            problems.push(Problem::new(
                format!("{at}.namespace"),
                "must name the release's namespace",
            ));
        }
        check_duration(&self.timeout, &format!("{at}.timeout"), problems);
        if crate::runbook::process::find_program(&self.binary).is_none() {
            problems.push(Problem::new(
                format!("{at}.binary"),
                format!(
                    "helm program {:?} not found; install helm 3 or set binary to its full path",
                    self.binary
                ),
            ));
        }
    }

    /// `helm rollback --timeout` (validated at load).
    pub fn limit(&self) -> Duration {
        parse_duration(&self.timeout).unwrap_or(DEFAULT_STEP_TIMEOUT)
    }
}

fn check_duration(text: &str, at: &str, problems: &mut Vec<Problem>) {
    if let Err(e) = parse_duration(text) {
        problems.push(Problem::new(at, e));
    }
}

impl StepConfig {
    /// The step's limit (validated at load).
    pub fn limit(&self) -> Duration {
        self.timeout
            .as_ref()
            .map_or(DEFAULT_STEP_TIMEOUT, |t| t.or(DEFAULT_STEP_TIMEOUT))
    }
}
