//! A Prometheus-like metric source inside the simulator, so a drill or the
//! demo can verify recovery the way production does: with PromQL queries.
//!
//! Each seeded metric is a service-level ratio (e.g. a payment success rate)
//! derived from what the simulated Deployment runs: every ready pod
//! contributes `healthy`, or `unhealthy` if its image is listed as bad, and
//! the metric is the average over ready pods. Rolling a bad release back
//! therefore makes the metric recover pod by pod.
//!
//! It answers `GET|POST /api/v1/query` and `/api/v1/query_range` with
//! Prometheus's response shapes, for a query that is exactly a metric's name;
//! anything else gets Prometheus's `bad_data` error naming the known metrics.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::store::{Kind, Store};

/// Samples kept per metric (at the sampling interval, ~10 minutes).
const HISTORY: usize = 3000;

/// A metric in the seed file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSeed {
    /// Metric name, also the only query it answers.
    pub name: String,
    /// `namespace/name` of the Deployment it follows.
    pub deployment: String,
    /// Value contributed by a ready pod running a good image.
    pub healthy: f64,
    /// Value contributed by a ready pod running a bad image.
    pub unhealthy: f64,
    /// Images whose pods are unhealthy.
    #[serde(default)]
    pub unhealthy_images: Vec<String>,
}

/// The metrics and their recorded history.
pub struct Metrics {
    seeds: Vec<MetricSeed>,
    // A std Mutex: held only to push or copy samples, never across an await.
    history: Mutex<HashMap<String, VecDeque<(f64, f64)>>>,
}

impl Metrics {
    pub fn new(seeds: Vec<MetricSeed>) -> Self {
        Self {
            seeds,
            history: Mutex::new(HashMap::new()),
        }
    }

    /// The metric's value now, from the simulated Deployment's pods.
    pub fn value(&self, store: &Store, seed: &MetricSeed) -> Option<f64> {
        let (ns, name) = seed.deployment.split_once('/')?;
        let (sets, _) = store.list(Kind::ReplicaSet, Some(ns));
        let prefix = format!("{name}-");
        let (mut total, mut pods) = (0.0, 0.0);
        for rs in sets.iter().filter(|rs| {
            rs["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&prefix))
        }) {
            let ready = rs["status"]["readyReplicas"].as_f64().unwrap_or(0.0);
            let images: Vec<&str> = rs["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["image"].as_str())
                .collect();
            let bad = images
                .iter()
                .any(|i| seed.unhealthy_images.iter().any(|b| b == i));
            total += ready * if bad { seed.unhealthy } else { seed.healthy };
            pods += ready;
        }
        // No ready pod serves nothing: nothing succeeds.
        // Rounded like a dashboard would show it, without float noise.
        Some(if pods > 0.0 {
            (total / pods * 1e6).round() / 1e6
        } else {
            0.0
        })
    }

    /// Records one sample of every metric (called by the simulator's ticker).
    pub fn sample(&self, store: &Store) {
        self.sample_at(store, Utc::now().timestamp_millis() as f64 / 1000.0);
    }

    fn sample_at(&self, store: &Store, at: f64) {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        for seed in &self.seeds {
            if let Some(v) = self.value(store, seed) {
                let h = history.entry(seed.name.clone()).or_default();
                if h.len() == HISTORY {
                    h.pop_front();
                }
                h.push_back((at, v));
            }
        }
    }

    /// Fills the past `seconds` with the seeded state's values, as if the
    /// cluster had been running it all along (a chart of an incident that
    /// began before the simulator started then has data).
    pub fn backfill(&self, store: &Store, seconds: u32) {
        let now = Utc::now().timestamp_millis() as f64 / 1000.0;
        for back in (1..=seconds / 5).rev() {
            self.sample_at(store, now - f64::from(back * 5));
        }
    }

    /// The recorded value of `seed` at `at` (the latest sample at or before it).
    fn value_at(&self, seed: &MetricSeed, at: f64) -> Option<f64> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history
            .get(&seed.name)?
            .iter()
            .rev()
            .find(|(ts, _)| *ts <= at)
            .map(|(_, v)| *v)
    }

    fn find(&self, query: &str) -> Result<&MetricSeed, Value> {
        let q = query.trim();
        self.seeds.iter().find(|s| s.name == q).ok_or_else(|| {
            let known: Vec<_> = self.seeds.iter().map(|s| s.name.as_str()).collect();
            json!({"status": "error", "errorType": "bad_data",
                "error": format!("the simulator only answers these metric names as queries: {}; got {q:?}", known.join(", "))})
        })
    }

    /// `/api/v1/query`, now or at `time` (from the recorded history).
    pub fn query(&self, store: &Store, params: &HashMap<String, String>) -> Result<Value, Value> {
        let seed = self.find(params.get("query").map_or("", String::as_str))?;
        let (at, v) = match params.get("time") {
            Some(t) => {
                let at = parse_time(t).ok_or_else(|| {
                    json!({"status": "error", "errorType": "bad_data",
                        "error": format!("invalid parameter \"time\": {t:?}")})
                })?;
                match self.value_at(seed, at) {
                    Some(v) => (at, v),
                    // Prometheus answers an empty vector where no sample exists.
                    None => {
                        return Ok(json!({"status": "success",
                            "data": {"resultType": "vector", "result": []}}));
                    }
                }
            }
            None => (
                Utc::now().timestamp_millis() as f64 / 1000.0,
                self.value(store, seed).unwrap_or(0.0),
            ),
        };
        Ok(
            json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"__name__": seed.name}, "value": [at, v.to_string()]}
            ]}}),
        )
    }

    /// `/api/v1/query_range`: the latest sample at or before each step.
    pub fn query_range(&self, params: &HashMap<String, String>) -> Result<Value, Value> {
        let seed = self.find(params.get("query").map_or("", String::as_str))?;
        let num = |k: &str| -> Result<f64, Value> {
            let raw = params.get(k).map_or("", String::as_str);
            parse_time(raw)
                .or_else(|| humantime::parse_duration(raw).ok().map(|d| d.as_secs_f64()))
                .ok_or_else(|| {
                    json!({"status": "error", "errorType": "bad_data",
                    "error": format!("invalid parameter {k:?}: {raw:?}")})
                })
        };
        let (start, end, step) = (num("start")?, num("end")?, num("step")?);
        if step <= 0.0 || end < start {
            return Err(json!({"status": "error", "errorType": "bad_data",
                "error": "need start <= end and a positive step"}));
        }
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let samples = history.get(&seed.name).cloned().unwrap_or_default();
        let mut values = Vec::new();
        let mut t = start;
        while t <= end {
            if let Some((_, v)) = samples.iter().rev().find(|(ts, _)| *ts <= t) {
                values.push(json!([t, v.to_string()]));
            }
            t += step;
        }
        Ok(
            json!({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"__name__": seed.name}, "values": values}
            ]}}),
        )
    }
}

/// A Prometheus time parameter: Unix seconds (with fraction) or RFC 3339.
fn parse_time(raw: &str) -> Option<f64> {
    raw.parse::<f64>().ok().or_else(|| {
        chrono::DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| t.timestamp_millis() as f64 / 1000.0)
    })
}
