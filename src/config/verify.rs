//! `[prometheus]` and `[services.NAME.verify]`: the checks run after a
//! rollback, and where Prometheus is.

use super::*;

/// Where Prometheus is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus.monitoring:9090`.
    pub url: String,
    /// Per-request timeout, e.g. `"10s"`.
    #[serde(default = "default_check_timeout")]
    pub timeout: Span,
}

/// The default `prometheus.timeout`.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

fn default_check_timeout() -> Span {
    Span::of(DEFAULT_CHECK_TIMEOUT)
}

impl PrometheusConfig {
    /// Checks `[prometheus]`, at `at`.
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        check_url(&self.url, &format!("{at}.url"), &mut push(problems));
        self.timeout.check(&format!("{at}.timeout"), problems);
    }
}

/// A service's recovery checks, run after its rollback completes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// How long checks may take to pass before verification fails.
    #[serde(default = "default_verify_window")]
    pub window: Span,
    /// Time between two rounds of checks.
    #[serde(default = "default_verify_interval")]
    pub interval: Span,
    #[serde(default)]
    pub http: Vec<HttpCheckConfig>,
    #[serde(default)]
    pub prometheus: Vec<PromCheckConfig>,
}

/// The default `verify.window`.
pub const DEFAULT_VERIFY_WINDOW: Duration = Duration::from_secs(10 * 60);
/// The default `verify.interval`.
pub const DEFAULT_VERIFY_INTERVAL: Duration = Duration::from_secs(30);

fn default_verify_window() -> Span {
    Span::of(DEFAULT_VERIFY_WINDOW)
}

fn default_verify_interval() -> Span {
    Span::of(DEFAULT_VERIFY_INTERVAL)
}

/// An HTTP health check. `{target_tag}` in `url` and `json_equals` becomes
/// the image tag being rolled back to (e.g. `v1.2.0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheckConfig {
    pub name: String,
    pub url: String,
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// Dot-separated path of a field in the JSON body, e.g. `version` or `build.tag`.
    pub json_field: Option<String>,
    /// The value `json_field` must have (compared as text).
    pub json_equals: Option<String>,
}

fn default_expect_status() -> u16 {
    200
}

/// How a Prometheus value is compared with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
}

impl Comparison {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Gt => value > threshold,
            Comparison::Ge => value >= threshold,
            Comparison::Lt => value < threshold,
            Comparison::Le => value <= threshold,
            Comparison::Eq => value == threshold,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Eq => "==",
        }
    }
}

/// A Prometheus instant query whose single value must satisfy `op threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromCheckConfig {
    pub name: String,
    pub query: String,
    pub op: Comparison,
    pub threshold: f64,
}

/// A service's checks with durations parsed and the Prometheus URL attached.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifySpec {
    pub window: Duration,
    pub interval: Duration,
    pub http: Vec<HttpCheckConfig>,
    pub prometheus: Vec<PromCheckConfig>,
    pub prometheus_url: Option<String>,
    pub timeout: Duration,
}

impl VerifyConfig {
    /// Checks `[services.NAME.verify]` at `at`; Prometheus checks need a
    /// `[prometheus]` section (`prometheus`).
    pub fn validate(&self, at: &str, prometheus: bool, problems: &mut Vec<Problem>) {
        let v = self;
        let key = |k: &str| format!("{at}.{k}");
        let window = v.window.check(&key("window"), problems);
        match v.interval.check(&key("interval"), problems) {
            Some(i) if i.is_zero() => {
                problems.push(Problem::new(key("interval"), "must be more than 0s"))
            }
            Some(i) if window.is_some_and(|w| i > w) => problems.push(Problem::new(
                key("interval"),
                format!(
                    "{} is longer than the window {}; checks would run only once",
                    v.interval.text(),
                    v.window.text()
                ),
            )),
            _ => {}
        }
        let at = key;
        let problem = &mut push(problems);
        if v.http.is_empty() && v.prometheus.is_empty() {
            problem(
                at("http"),
                "no checks: add [[...verify.http]] or [[...verify.prometheus]] entries, or remove the verify section".into(),
            );
        }
        let mut names = BTreeSet::new();
        for (i, c) in v.http.iter().enumerate() {
            let path = format!("{}[{i}]", at("http"));
            if !names.insert(c.name.as_str()) {
                problem(
                    format!("{path}.name"),
                    format!("check name {:?} is used twice", c.name),
                );
            }
            check_url(
                &c.url.replace("{target_tag}", "v1"),
                &format!("{path}.url"),
                problem,
            );
            if !(100..=599).contains(&c.expect_status) {
                problem(
                    format!("{path}.expect_status"),
                    format!("{} is not an HTTP status code", c.expect_status),
                );
            }
            if c.json_field.is_some() != c.json_equals.is_some() {
                problem(
                    format!("{path}.json_field"),
                    "json_field and json_equals go together; set both or neither".into(),
                );
            }
        }
        for (i, c) in v.prometheus.iter().enumerate() {
            let path = format!("{}[{i}]", at("prometheus"));
            if !names.insert(c.name.as_str()) {
                problem(
                    format!("{path}.name"),
                    format!("check name {:?} is used twice", c.name),
                );
            }
            if c.query.trim().is_empty() {
                problem(format!("{path}.query"), "the PromQL query is empty".into());
            }
            if !c.threshold.is_finite() {
                problem(
                    format!("{path}.threshold"),
                    "must be a finite number".into(),
                );
            }
        }
        if !v.prometheus.is_empty() && !prometheus {
            problem(
                at("prometheus"),
                "Prometheus checks need a [prometheus] section with the server's url".into(),
            );
        }
    }
}

impl Config {
    pub(super) fn verify_spec(&self, v: &VerifyConfig) -> VerifySpec {
        VerifySpec {
            window: v.window.or(DEFAULT_VERIFY_WINDOW),
            interval: v.interval.or(DEFAULT_VERIFY_INTERVAL),
            http: v.http.clone(),
            prometheus: v.prometheus.clone(),
            prometheus_url: self.prometheus.as_ref().map(|p| p.url.clone()),
            timeout: self.prometheus.as_ref().map_or(DEFAULT_CHECK_TIMEOUT, |p| {
                p.timeout.or(DEFAULT_CHECK_TIMEOUT)
            }),
        }
    }
}
