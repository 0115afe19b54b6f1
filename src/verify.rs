//! Recovery verification: the [`Verifier`] port over HTTP health checks and
//! Prometheus instant queries.
//!
//! After a rollback, every check of the service (`[services.NAME.verify]`)
//! is evaluated once per `interval` until all pass in the same round
//! ([`Verdict::Passed`]) or the `window` is over ([`Verdict::Failed`] with
//! the last round's values; [`Verdict::Unverified`] instead when no failing
//! check's source — Prometheus, a health URL — answered in the whole
//! window, since then nothing was learnt about the service). Every result of every round is sent to the
//! engine, which records it on the timeline. For the incident report the
//! verifier also looks back: each Prometheus check's value just before the
//! rollback, and the first Prometheus check over the incident window
//! (`query_range`) for the chart.
//!
//! `{target_tag}` in a health check's URL or expected JSON value, and in a
//! query, becomes the image tag being rolled back to (e.g. `v1.2.0`), so a
//! check can assert that the old version is what now answers.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{HttpCheckConfig, PromCheckConfig, Service, VerifySpec};
use crate::domain::{Plan, ServiceName};
use crate::ports::{
    CheckEvidence, CheckResult, Evidence, IncidentWindow, Series, UnreachableSource, Verdict,
    Verifier,
};

/// Most points asked of `query_range` for a chart.
const CHART_POINTS: i64 = 240;

/// Why a check could not produce a value.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot reach {url}: {source}; check the URL and that the service is up")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered something that is not a Prometheus API response: {detail}")]
    Decode { url: String, detail: String },
    #[error("Prometheus refused the query ({kind}): {error}; fix the PromQL in the config")]
    Query { kind: String, error: String },
    #[error("no data: the query returned no series (is the metric scraped yet?)")]
    NoData,
    #[error(
        "the query returned {0} series; aggregate it (e.g. sum(...)) so it returns exactly one"
    )]
    TooMany(usize),
}

/// The verifier of `rollbot serve`: HTTP health checks and Prometheus queries.
pub struct HttpVerifier {
    specs: BTreeMap<ServiceName, VerifySpec>,
    client: reqwest::Client,
}

impl HttpVerifier {
    /// A verifier for the services that have a `verify` section.
    pub fn new(services: &BTreeMap<ServiceName, Service>) -> Self {
        Self {
            specs: services
                .iter()
                .filter_map(|(n, s)| Some((n.clone(), s.verify.clone()?)))
                .collect(),
            client: reqwest::Client::new(),
        }
    }

    /// One evaluation of every check; with each result, what did not
    /// answer if the check's source could not be reached.
    async fn round(
        &self,
        spec: &VerifySpec,
        tag: &str,
    ) -> Vec<(CheckResult, Option<UnreachableSource>)> {
        let mut out = Vec::with_capacity(spec.http.len() + spec.prometheus.len());
        for c in &spec.http {
            out.push(self.check_http(c, tag, spec.timeout).await);
        }
        for c in &spec.prometheus {
            let base = spec.prometheus_url.as_deref().unwrap_or_default();
            let query = c.query.replace("{target_tag}", tag);
            out.push(match self.instant(base, &query, None, spec.timeout).await {
                Ok(v) => (
                    CheckResult {
                        name: c.name.clone(),
                        passed: c.op.holds(v, c.threshold),
                        value: format_value(v),
                    },
                    None,
                ),
                Err(e) => {
                    let silent = match &e {
                        VerifyError::Unreachable { source, .. } => Some(UnreachableSource {
                            check: c.name.clone(),
                            source: format!("Prometheus at {base}"),
                            error: root_cause(source),
                        }),
                        _ => None,
                    };
                    let failed = CheckResult {
                        name: c.name.clone(),
                        passed: false,
                        value: e.to_string(),
                    };
                    (failed, silent)
                }
            });
        }
        out
    }

    async fn check_http(
        &self,
        c: &HttpCheckConfig,
        tag: &str,
        timeout: Duration,
    ) -> (CheckResult, Option<UnreachableSource>) {
        let url = c.url.replace("{target_tag}", tag);
        let resp = match self.client.get(&url).timeout(timeout).send().await {
            Ok(r) => r,
            Err(source) => {
                let silent = UnreachableSource {
                    check: c.name.clone(),
                    source: url.clone(),
                    error: root_cause(&source),
                };
                let failed = CheckResult {
                    name: c.name.clone(),
                    passed: false,
                    value: VerifyError::Unreachable { url, source }.to_string(),
                };
                return (failed, Some(silent));
            }
        };
        let status = resp.status().as_u16();
        let mut value = format!("HTTP {status}");
        let mut passed = status == c.expect_status;
        if let (Some(field), Some(want)) = (&c.json_field, &c.json_equals) {
            let want = want.replace("{target_tag}", tag);
            let body = resp.bytes().await.unwrap_or_default();
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(json) => match json_path(&json, field) {
                    Some(got) => {
                        let got = json_text(got);
                        passed &= got == want;
                        value = format!("{value}, {field}={got}");
                    }
                    None => {
                        passed = false;
                        value = format!("{value}, no field {field:?} in the body");
                    }
                },
                Err(_) => {
                    passed = false;
                    value = format!("{value}, body is not JSON");
                }
            }
        }
        let answered = CheckResult {
            name: c.name.clone(),
            passed,
            value,
        };
        (answered, None)
    }

    /// One value from `/api/v1/query`, at `at` or now.
    ///
    /// # Errors
    /// [`VerifyError`] saying what Prometheus did or did not answer.
    pub async fn instant(
        &self,
        base: &str,
        query: &str,
        at: Option<DateTime<Utc>>,
        timeout: Duration,
    ) -> Result<f64, VerifyError> {
        let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
        let mut params = vec![("query", query.to_string())];
        if let Some(at) = at {
            params.push(("time", format!("{:.3}", at.timestamp_millis() as f64 / 1e3)));
        }
        let data = self.prom_get(&url, &params, timeout).await?;
        match data.result_type.as_str() {
            "scalar" => sample_value(&data.result),
            "vector" => {
                let series: Vec<VectorSample> =
                    serde_json::from_value(data.result).map_err(|e| VerifyError::Decode {
                        url: url.clone(),
                        detail: e.to_string(),
                    })?;
                match series.as_slice() {
                    [] => Err(VerifyError::NoData),
                    [one] => sample_value(&one.value),
                    many => Err(VerifyError::TooMany(many.len())),
                }
            }
            other => Err(VerifyError::Decode {
                url,
                detail: format!("result type {other:?} where a vector or scalar was expected"),
            }),
        }
    }

    /// A series from `/api/v1/query_range` (the first one, if several).
    ///
    /// # Errors
    /// [`VerifyError`] saying what Prometheus did or did not answer.
    pub async fn range(
        &self,
        base: &str,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, VerifyError> {
        let url = format!("{}/api/v1/query_range", base.trim_end_matches('/'));
        let step = ((end - start).num_seconds() / CHART_POINTS).max(1);
        let params = [
            ("query", query.to_string()),
            ("start", start.timestamp().to_string()),
            ("end", end.timestamp().to_string()),
            ("step", step.to_string()),
        ];
        let data = self.prom_get(&url, &params, timeout).await?;
        let series: Vec<MatrixSeries> =
            serde_json::from_value(data.result).map_err(|e| VerifyError::Decode {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        let first = series.into_iter().next().ok_or(VerifyError::NoData)?;
        Ok(first
            .values
            .iter()
            .filter_map(|(t, v)| Some((timestamp(*t)?, v.parse().ok()?)))
            .collect())
    }

    async fn prom_get(
        &self,
        url: &str,
        params: &[(&str, String)],
        timeout: Duration,
    ) -> Result<PromData, VerifyError> {
        let resp = self
            .client
            .get(url)
            .query(params)
            .timeout(timeout)
            .send()
            .await
            .map_err(|source| VerifyError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let body: PromResponse = match serde_json::from_str(&text) {
            Ok(b) => b,
            Err(_) if status != 200 => {
                return Err(VerifyError::Status {
                    url: url.to_string(),
                    status,
                    body: text.chars().take(200).collect(),
                });
            }
            Err(e) => {
                return Err(VerifyError::Decode {
                    url: url.to_string(),
                    detail: e.to_string(),
                });
            }
        };
        match (body.status.as_str(), body.data) {
            ("success", Some(data)) => Ok(data),
            _ => Err(VerifyError::Query {
                kind: body.error_type.unwrap_or_else(|| format!("HTTP {status}")),
                error: body.error.unwrap_or_default(),
            }),
        }
    }
}

#[async_trait]
impl Verifier for HttpVerifier {
    async fn verify(
        &self,
        service: &ServiceName,
        plan: &Plan,
        results: mpsc::Sender<CheckResult>,
    ) -> Verdict {
        let Some(spec) = self.specs.get(service) else {
            return Verdict::NotConfigured;
        };
        if spec.http.is_empty() && spec.prometheus.is_empty() {
            return Verdict::NotConfigured;
        }
        let tag = target_tag(plan);
        let deadline = Instant::now() + spec.window;
        // Per check (same order every round): did its source ever answer?
        let mut answered = vec![false; spec.http.len() + spec.prometheus.len()];
        loop {
            let round = self.round(spec, &tag).await;
            for (seen, (c, silent)) in answered.iter_mut().zip(&round) {
                *seen |= silent.is_none();
                // The engine may be shutting down; the verdict still returns.
                let _ = results.send(c.clone()).await;
            }
            if round.iter().all(|(c, _)| c.passed) {
                return Verdict::Passed {
                    checks: round.into_iter().map(|(c, _)| c).collect(),
                };
            }
            let next = Instant::now() + spec.interval;
            if next > deadline {
                return verdict_at_the_end(round, &answered);
            }
            tokio::time::sleep_until(next).await;
        }
    }

    async fn evidence(
        &self,
        service: &ServiceName,
        plan: &Plan,
        window: &IncidentWindow,
    ) -> Evidence {
        let Some(spec) = self.specs.get(service) else {
            return Evidence::default();
        };
        let tag = target_tag(plan);
        let mut ev = Evidence::default();
        for c in &spec.http {
            let mut condition = format!("HTTP {}", c.expect_status);
            if let (Some(f), Some(v)) = (&c.json_field, &c.json_equals) {
                condition = format!("{condition}, {f} == {}", v.replace("{target_tag}", &tag));
            }
            ev.checks.push(CheckEvidence {
                name: c.name.clone(),
                condition,
                before: None,
            });
        }
        let base = spec.prometheus_url.as_deref().unwrap_or_default();
        for c in &spec.prometheus {
            let query = c.query.replace("{target_tag}", &tag);
            let before = match self
                .instant(base, &query, Some(window.before), spec.timeout)
                .await
            {
                Ok(v) => Some(format_value(v)),
                Err(e) => {
                    ev.notes.push(format!("{}: {e}", c.name));
                    None
                }
            };
            ev.checks.push(CheckEvidence {
                name: c.name.clone(),
                condition: condition(c),
                before,
            });
        }
        if let Some(c) = spec.prometheus.first() {
            // Some context either side of the incident makes the chart readable.
            let margin = chrono::Duration::minutes(5);
            let query = c.query.replace("{target_tag}", &tag);
            match self
                .range(
                    base,
                    &query,
                    window.start - margin,
                    window.end + margin,
                    spec.timeout,
                )
                .await
            {
                Ok(points) => {
                    ev.series = Some(Series {
                        name: c.name.clone(),
                        points,
                        threshold: Some(c.threshold),
                    })
                }
                Err(e) => ev.notes.push(format!("{} (chart): {e}", c.name)),
            }
        }
        ev
    }
}

/// The verdict when the window is over and not every check passed: a
/// check that got answers and saw bad values means the service did not
/// recover (`Failed`); if every failing check's source stayed silent for
/// the whole window, nobody knows (`Unverified`, naming the sources).
fn verdict_at_the_end(
    round: Vec<(CheckResult, Option<UnreachableSource>)>,
    answered: &[bool],
) -> Verdict {
    let saw_bad_values = round
        .iter()
        .zip(answered)
        .any(|((c, _), seen)| !c.passed && *seen);
    let mut unreachable = Vec::new();
    let mut checks = Vec::with_capacity(round.len());
    for ((c, silent), seen) in round.into_iter().zip(answered) {
        if let Some(s) = silent
            && !c.passed
            && !seen
        {
            unreachable.push(s);
        }
        checks.push(c);
    }
    if saw_bad_values || unreachable.is_empty() {
        Verdict::Failed { checks }
    } else {
        Verdict::Unverified {
            checks,
            unreachable,
        }
    }
}

/// The innermost cause of an error (`Connection refused (os error 111)`),
/// which says more than reqwest's outer "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn condition(c: &PromCheckConfig) -> String {
    format!("{} {}", c.op.as_str(), format_value(c.threshold))
}

/// The tag of the first image being rolled back to: `payment-api:v1.2.0` →
/// `v1.2.0`; `registry:5000/app@sha256:…` → the digest; no tag → `latest`.
pub fn target_tag(plan: &Plan) -> String {
    let Some(image) = plan.target.images.first().map(|i| i.image.as_str()) else {
        return String::new();
    };
    if let Some((_, digest)) = image.split_once('@') {
        return digest.to_string();
    }
    match image.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => tag.to_string(),
        _ => "latest".to_string(),
    }
}

/// A value as people write it: `99.8`, `95`, `0.125`.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `version`, `build.tag`, `items.0.name` inside a JSON value.
fn json_path<'a>(json: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(json, |v, key| match v {
        serde_json::Value::Array(a) => a.get(key.parse::<usize>().ok()?),
        _ => v.get(key),
    })
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn timestamp(t: f64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt((t * 1000.0).round() as i64)
        .single()
}

fn sample_value(v: &serde_json::Value) -> Result<f64, VerifyError> {
    let (_, text): (f64, String) =
        serde_json::from_value(v.clone()).map_err(|e| VerifyError::Decode {
            url: "Prometheus".into(),
            detail: format!("sample {v}: {e}"),
        })?;
    text.parse().map_err(|_| VerifyError::Decode {
        url: "Prometheus".into(),
        detail: format!("sample value {text:?} is not a number"),
    })
}

#[derive(Deserialize)]
struct PromResponse {
    status: String,
    data: Option<PromData>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct PromData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    value: serde_json::Value,
}

#[derive(Deserialize)]
struct MatrixSeries {
    values: Vec<(f64, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ContainerImage, RevisionInfo};

    fn plan_to(image: &str) -> Plan {
        let rev = |image: &str| RevisionInfo {
            revision: 1,
            images: vec![ContainerImage {
                container: "app".into(),
                image: image.into(),
            }],
            change_cause: None,
        };
        Plan {
            workload: "deployment x/y".into(),
            current: rev("app:v2"),
            target: rev(image),
            warnings: vec![],
            migrations: false,
            blockers: vec![],
            guard: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_target_tag_comes_from_the_target_image() {
        assert_eq!(target_tag(&plan_to("payment-api:v1.2.0")), "v1.2.0");
        assert_eq!(
            target_tag(&plan_to("registry:5000/team/payment-api:v1.2.0")),
            "v1.2.0"
        );
        assert_eq!(target_tag(&plan_to("registry:5000/payment-api")), "latest");
        assert_eq!(target_tag(&plan_to("app@sha256:abc")), "sha256:abc");
    }

    fn check(name: &str, passed: bool) -> CheckResult {
        CheckResult {
            name: name.into(),
            passed,
            value: "v".into(),
        }
    }

    fn silent(name: &str) -> Option<UnreachableSource> {
        Some(UnreachableSource {
            check: name.into(),
            source: "Prometheus at http://127.0.0.1:9".into(),
            error: "Connection refused (os error 111)".into(),
        })
    }

    #[test]
    fn only_sources_silent_the_whole_window_make_it_unverified() {
        // Never answered, nothing else failing: nobody knows.
        let v = verdict_at_the_end(vec![(check("rate", false), silent("rate"))], &[false]);
        let Verdict::Unverified { unreachable, .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!(unreachable[0].check, "rate");
        // A passing check beside a silent one: still unknown.
        let v = verdict_at_the_end(
            vec![
                (check("health", true), None),
                (check("rate", false), silent("rate")),
            ],
            &[true, false],
        );
        assert!(matches!(v, Verdict::Unverified { .. }), "{v:?}");
        // Answered with bad values, even if silent at the end: failed.
        let v = verdict_at_the_end(vec![(check("rate", false), silent("rate"))], &[true]);
        assert!(matches!(v, Verdict::Failed { .. }), "{v:?}");
        // One check saw bad values, another was silent: failed.
        let v = verdict_at_the_end(
            vec![
                (check("health", false), None),
                (check("rate", false), silent("rate")),
            ],
            &[true, false],
        );
        assert!(matches!(v, Verdict::Failed { .. }), "{v:?}");
    }

    #[test]
    fn values_are_written_as_people_write_them() {
        assert_eq!(format_value(99.8), "99.8");
        assert_eq!(format_value(95.0), "95");
        assert_eq!(format_value(0.1254), "0.125");
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    #[test]
    fn json_paths_reach_nested_fields_and_array_items() {
        let v = serde_json::json!({"status":"healthy","build":{"tag":"v1"},"items":[{"n":3}]});
        assert_eq!(json_path(&v, "status").map(json_text).unwrap(), "healthy");
        assert_eq!(json_path(&v, "build.tag").map(json_text).unwrap(), "v1");
        assert_eq!(json_path(&v, "items.0.n").map(json_text).unwrap(), "3");
        assert!(json_path(&v, "build.missing").is_none());
    }

    #[test]
    fn samples_decode_and_bad_ones_say_why() {
        let v = serde_json::json!([1_700_000_000.5, "99.7"]);
        assert_eq!(sample_value(&v).unwrap(), 99.7);
        let bad = serde_json::json!([1_700_000_000.5, "high"]);
        assert!(
            sample_value(&bad)
                .unwrap_err()
                .to_string()
                .contains("\"high\"")
        );
    }
}
