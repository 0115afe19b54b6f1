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
    pub timeout: String,
}

fn default_check_timeout() -> String {
    "10s".into()
}

/// A service's recovery checks, run after its rollback completes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// How long checks may take to pass before verification fails.
    #[serde(default = "default_verify_window")]
    pub window: String,
    /// Time between two rounds of checks.
    #[serde(default = "default_verify_interval")]
    pub interval: String,
    #[serde(default)]
    pub http: Vec<HttpCheckConfig>,
    #[serde(default)]
    pub prometheus: Vec<PromCheckConfig>,
}

fn default_verify_window() -> String {
    "10m".into()
}

fn default_verify_interval() -> String {
    "30s".into()
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

impl Config {
    pub(super) fn validate_verify(
        &self,
        service: &str,
        v: &VerifyConfig,
        problem: &mut impl FnMut(String, String),
    ) {
        let at = |k: &str| format!("services.{service}.verify.{k}");
        let window = humantime::parse_duration(&v.window);
        let interval = humantime::parse_duration(&v.interval);
        if window.is_err() {
            problem(at("window"), bad_duration(&v.window));
        }
        match interval {
            Err(_) => problem(at("interval"), bad_duration(&v.interval)),
            Ok(i) if i.is_zero() => problem(at("interval"), "must be more than 0s".into()),
            Ok(i) if window.as_ref().is_ok_and(|w| i > *w) => problem(
                at("interval"),
                format!(
                    "{} is longer than the window {}; checks would run only once",
                    v.interval, v.window
                ),
            ),
            Ok(_) => {}
        }
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
        if !v.prometheus.is_empty() && self.prometheus.is_none() {
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
            window: humantime::parse_duration(&v.window).unwrap_or(Duration::from_secs(600)),
            interval: humantime::parse_duration(&v.interval).unwrap_or(Duration::from_secs(30)),
            http: v.http.clone(),
            prometheus: v.prometheus.clone(),
            prometheus_url: self.prometheus.as_ref().map(|p| p.url.clone()),
            timeout: self
                .prometheus
                .as_ref()
                .and_then(|p| humantime::parse_duration(&p.timeout).ok())
                .unwrap_or(Duration::from_secs(10)),
        }
    }
}
