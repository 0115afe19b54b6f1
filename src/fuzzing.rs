//! Entry points for fuzzing: one function per parser of outside input.
//!
//! The fuzz crate (`fuzz/`, run with `cargo fuzz`) and the corpus replay
//! test (`tests/fuzz_corpus.rs`) call these same functions, so a crash found
//! by the fuzzer and saved into `fuzz/corpus/<target>/` stays a regression
//! test of the ordinary `cargo test`.
//!
//! Each function takes arbitrary bytes, runs them through the same code an
//! HTTP route, the command parser or the simulator runs on a real input, and
//! returns nothing: every input must end in `Ok` or a clean error, and the
//! errors are rendered too, since people read them. A panic is the failure.
//! They are not API; the module is hidden from the docs.

use std::sync::OnceLock;

use chrono::{DateTime, TimeZone, Utc};

use crate::alerts::{self, AlertBatch, GrafanaSigning, PagerDutyDelivery, RouteConfig, Router};
use crate::chat::commands;
use crate::chat::slack::decode;
use crate::chat::slack::inbound::verify_signature;
use crate::domain::ProposalId;
use crate::sim;

/// A fuzz target's entry: arbitrary bytes in, a panic the only failure.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("alertmanager", alertmanager),
    ("grafana", grafana),
    ("pagerduty", pagerduty),
    ("generic", generic),
    ("slack_command", slack_command),
    ("slack_event", slack_event),
    ("slack_interaction", slack_interaction),
    ("rollback_command", rollback_command),
    ("sim_seed", sim_seed),
    ("auth_headers", auth_headers),
];

/// Service names the command parser is given (for suggestions and
/// service-vs-verb decisions).
const SERVICES: &[&str] = &["payment-api", "search", "ledger-db"];

/// A fixed "now": the fuzzer must be deterministic.
fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_736_951_400, 0)
        .single()
        .unwrap_or_default()
}

/// Routes like an operator would write, with a regex, a severity filter and
/// a minimum firing duration, so routing arithmetic on alert times runs.
fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let route = |matchers: &[&str], service: &str, for_duration: Option<&str>| RouteConfig {
            matchers: matchers.iter().map(|m| (*m).to_string()).collect(),
            service: service.into(),
            auto_propose: true,
            severities: Some(vec!["critical".into(), "high".into()]),
            for_duration: for_duration.map(Into::into),
        };
        Router::new(&[
            route(&["service=~payment-.*"], "payment-api", Some("5m")),
            route(&["service=~search|API Service"], "search", Some("520w")),
            route(&["alertname!=", "team=~.+"], "ledger-db", None),
        ])
        .unwrap_or_else(|e| panic!("the fuzzing routes are valid: {e}"))
    })
}

fn route_all(batch: &AlertBatch) {
    for alert in &batch.alerts {
        let _ = router().route(alert, now());
        let _ = alert.idempotency_key.as_str();
    }
}

/// `POST /webhooks/alertmanager` after authentication.
pub fn alertmanager(data: &[u8]) {
    match alerts::parse_alertmanager(data) {
        Ok(batch) => route_all(&batch),
        Err(e) => drop(e.to_string()),
    }
}

/// `POST /webhooks/grafana` after authentication.
pub fn grafana(data: &[u8]) {
    match alerts::parse_grafana(data) {
        Ok(batch) => route_all(&batch),
        Err(e) => drop(e.to_string()),
    }
}

/// `POST /webhooks/pagerduty` after authentication.
pub fn pagerduty(data: &[u8]) {
    match alerts::parse_pagerduty(data) {
        Ok(PagerDutyDelivery::Alert(batch)) => route_all(&batch),
        Ok(PagerDutyDelivery::Ignored(_)) => {}
        Err(e) => drop(e.to_string()),
    }
}

/// `POST /webhooks/generic` after authentication.
pub fn generic(data: &[u8]) {
    match alerts::parse_generic(data, now()) {
        Ok(batch) => route_all(&batch),
        Err(e) => drop(e.to_string()),
    }
}

/// `POST /slack/commands`: the form, then the `/rollback` text in it.
pub fn slack_command(data: &[u8]) {
    match decode::command(data) {
        Ok(ev) => {
            let _ = commands::parse(ev.text.as_deref().unwrap_or_default(), SERVICES)
                .map_err(|e| e.to_string());
        }
        Err(e) => drop(e.to_string()),
    }
}

/// `POST /slack/events`.
pub fn slack_event(data: &[u8]) {
    if let Err(e) = decode::event(data) {
        drop(e.to_string());
    }
}

/// `POST /slack/interactions`: the form, its JSON payload, and the
/// proposal ids in the buttons' values, as the handler reads them.
pub fn slack_interaction(data: &[u8]) {
    match decode::interaction(data) {
        Ok(slack_morphism::prelude::SlackInteractionEvent::BlockActions(ev)) => {
            for action in ev.actions.unwrap_or_default() {
                if let Some(v) = action.value.as_deref() {
                    let _ = ProposalId::parse(v).map_err(|e| e.to_string());
                }
            }
        }
        Ok(_) => {}
        Err(e) => drop(e.to_string()),
    }
}

/// The text after `/rollback`, from any chat platform.
pub fn rollback_command(data: &[u8]) {
    // Chat platforms deliver UTF-8; the lossy decode still feeds odd bytes.
    let text = String::from_utf8_lossy(data);
    if let Err(e) = commands::parse(&text, SERVICES) {
        drop(e.to_string());
    }
}

/// A simulator seed file: parsed, checked, then loaded into a store as
/// `rollbot sim` does at start-up.
pub fn sim_seed(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match sim::seed::Seed::from_yaml(text) {
        Ok(seed) => {
            let store = sim::store::Store::new();
            if let Err(e) = sim::bootstrap::populate(&store, &seed) {
                drop(e.to_string());
            }
        }
        Err(e) => drop(e.to_string()),
    }
}

/// Authentication headers of every inbound route. The input is
/// `signature \n timestamp \n body`: the first two lines are header values
/// (absent when the line is missing), the rest the raw body.
pub fn auth_headers(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    fn header(p: Option<&[u8]>) -> Option<&str> {
        p.and_then(|p| std::str::from_utf8(p).ok())
    }
    let signature = header(parts.next());
    let timestamp = header(parts.next());
    let body = parts.next().unwrap_or_default();
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    for now in [1_531_420_618, 0, i64::MAX, i64::MIN] {
        if let Err(e) = verify_signature(secret, signature, timestamp, body, now) {
            drop(e.to_string());
        }
    }
    let results = [
        alerts::verify_pagerduty_signature(secret.as_bytes(), signature, body),
        alerts::verify_grafana_signature(
            secret.as_bytes(),
            GrafanaSigning {
                timestamp_header: Some("X-Grafana-Alerting-Timestamp"),
                ..GrafanaSigning::default()
            },
            signature,
            timestamp,
            body,
        ),
        alerts::verify_bearer(signature, secret),
        alerts::verify_basic(signature, "user", secret),
    ];
    for r in results {
        if let Err(e) = r {
            let _ = (e.kind(), e.to_string());
        }
    }
}
