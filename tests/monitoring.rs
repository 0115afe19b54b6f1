//! The shipped monitoring (`deploy/monitoring/`): the alert rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`); the
//! rules and the Grafana dashboard use only metrics rollbot exports; and a
//! real Prometheus scraping a running rollbot after scripted incidents on
//! the simulated cluster evaluates the rules' expressions to the expected
//! series (the Debian package `prometheus`, installed by `scripts/test.sh`).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rollbot::app::App;
use rollbot::config::Config;
use rollbot::domain::{ServiceName, State, VoteKind, VoteVia};
use rollbot::metrics::DedupReason;
use rollbot::outbox::Outbox;
use rollbot::ports::memory::{MemoryChat, Script};
use rollbot::ports::{ExecError, ExecErrorKind};
use support::*;

fn monitoring(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/monitoring")
        .join(file)
}

fn program(path: &str, package: &str) -> PathBuf {
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, which installs the Debian package `{package}`",
        path.display()
    );
    path
}

/// Every alert rule: (name, expression).
fn rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(monitoring("rollbot.rules.yml")).unwrap();
    let doc: serde_json::Value = serde_norway::from_str(&text).unwrap();
    doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_owned(),
                r["expr"].as_str().unwrap().trim().to_owned(),
            )
        })
        .collect()
}

fn rule(name: &str) -> String {
    rules()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no rule {name}"))
        .1
}

/// Every dashboard query, with Grafana's variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(monitoring("rollbot-dashboard.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut ids = BTreeSet::new();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id: {title}"
        );
        for k in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][k].is_u64(), "{title}: gridPos.{k}");
        }
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            assert!(t["refId"].is_string(), "{title}: refId");
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$service", ".*")
                .replace("$__range", "1h");
            out.push((title.to_owned(), expr));
        }
    }
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "service"]);
    out
}

/// The names rollbot's `/metrics` shows once every family has a value:
/// after a refused vote, a failed rollback, a webhook and a queued message.
async fn exported(t: &Tester) -> BTreeSet<String> {
    t.executor.set_script(Script::Fail(ExecError::new(
        ExecErrorKind::Forbidden,
        "deployments.apps is forbidden",
    )));
    let p = t.propose_by("slack:UALICE").await.unwrap();
    t.approve(&p.id, "slack:UMALLORY").await;
    t.approve(&p.id, "slack:UBOB").await;
    t.approve(&p.id, "slack:UCAROL").await;
    t.settle().await;
    t.ignore_messages();
    let m = t.engine.metrics();
    m.webhook_request("alertmanager", "accepted");
    m.alerts_received("alertmanager", 1);
    m.alerts_truncated("alertmanager", 1);
    m.alert_deduplicated("alertmanager", DedupReason::Repeat);
    m.alert_routed("alertmanager", "payment-api");
    m.alert_unmatched("alertmanager");
    Outbox::open(t.engine.store(), "slack").unwrap();
    m.read_outboxes(t.engine.store(), chrono::Utc::now())
        .unwrap();
    let mut names = BTreeSet::new();
    for line in m.render().lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    names
}

#[tokio::test]
async fn the_rules_and_the_dashboard_use_only_exported_metrics() {
    run_test(|t| async move {
        let exported = exported(&t).await;
        assert!(exported.contains("rollbot_time_to_mitigate_seconds_bucket"));
        let metric = regex::Regex::new(r"\b(rollbot_[a-z_]+|up)\b").unwrap();
        let queries: Vec<(String, String)> =
            rules().into_iter().chain(dashboard_queries()).collect();
        assert!(queries.len() > 20, "{queries:?}");
        let mut used = BTreeSet::new();
        for (what, expr) in &queries {
            let names: Vec<&str> = metric.find_iter(expr).map(|m| m.as_str()).collect();
            assert!(!names.is_empty(), "{what}: {expr} names no metric");
            for name in names {
                assert!(
                    name == "up" || exported.contains(name),
                    "{what}: {name} is not a metric rollbot exports ({exported:?})"
                );
                used.insert(name.to_owned());
            }
        }
        // The proposal metrics are all on the dashboard.
        for family in [
            "rollbot_proposals_opened_total",
            "rollbot_proposal_outcomes_total",
            "rollbot_time_to_decision_seconds_bucket",
            "rollbot_time_to_mitigate_seconds_bucket",
            "rollbot_time_to_resolve_seconds_bucket",
            "rollbot_rollback_duration_seconds_bucket",
            "rollbot_votes_refused_total",
            "rollbot_executor_errors_total",
            "rollbot_outbox_depth",
            "rollbot_outbox_oldest_pending_age_seconds",
        ] {
            assert!(used.contains(family), "{family} is on no panel or rule");
        }
        t
    })
    .await;
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let promtool = program("/usr/bin/promtool", "prometheus");
    for args in [
        vec!["check", "rules", "rollbot.rules.yml"],
        vec!["test", "rules", "rollbot.rules.test.yml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(&args)
            .current_dir(monitoring(""))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A Prometheus on a free loopback port, scraping `target` as job
/// "rollbot" every second with the shipped rules. Killed when dropped.
struct Prometheus {
    url: String,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Prometheus {
    async fn start(target: &str) -> Self {
        let binary = program("/usr/bin/prometheus", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: rollbot\n    static_configs:\n      - targets: ['{target}']\n",
                monitoring("rollbot.rules.yml").display()
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = tokio::process::Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting prometheus");
        Self {
            url: format!("http://127.0.0.1:{port}"),
            _child: child,
            _dir: dir,
            client: reqwest::Client::new(),
        }
    }

    /// The result of an instant query; `None` while Prometheus is not up
    /// yet. A query Prometheus refuses fails the test.
    async fn query(&self, expr: &str) -> Option<Vec<serde_json::Value>> {
        let r = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = r.json().await.ok()?;
        assert_eq!(body["status"], "success", "{expr}: {body}");
        Some(body["data"]["result"].as_array().unwrap().clone())
    }

    /// Waits (bounded) until `expr` returns a series satisfying `ok`.
    async fn wait_for(&self, what: &str, expr: &str, ok: impl Fn(&serde_json::Value) -> bool) {
        let found = poll_until(Duration::from_secs(60), async || {
            self.query(expr).await.is_some_and(|r| r.iter().any(&ok))
        })
        .await;
        assert!(
            found,
            "{what}: {expr} never returned the expected series; last: {:?}",
            self.query(expr).await
        );
    }

    async fn firing(&self) -> Vec<String> {
        let body: serde_json::Value = self
            .client
            .get(format!("{}/api/v1/alerts", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| a["labels"]["alertname"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn value(series: &serde_json::Value) -> f64 {
    series["value"][1].as_str().unwrap().parse().unwrap()
}

fn for_payment(series: &serde_json::Value) -> bool {
    series["metric"]["service"] == "payment-api"
}

#[tokio::test]
async fn a_real_prometheus_evaluates_the_shipped_rules_against_rollbot_serve() {
    // Bounded: three rollouts on the simulator and Prometheus's scrapes
    // and rule evaluations (each every second) take tens of seconds.
    let test = async {
        let dir = tempfile::tempdir().unwrap();
        let seed = rollbot::sim::seed::Seed::from_file("config/sim-payment.yaml".as_ref()).unwrap();
        let sim = rollbot::sim::start(
            seed,
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .await
        .unwrap();
        sim.write_kubeconfig(&dir.path().join("kubeconfig"))
            .unwrap();
        std::fs::write(dir.path().join("token"), "t0ken").unwrap();
        let config = Config::parse(&format!(
            r#"
            [store]
            path = "{dir}/db"
            [approval]
            channel = "memory:incidents"
            [groups]
            sre = ["slack:UALICE", "slack:UBOB"]
            [services.payment-api]
            groups = ["sre"]
            [services.payment-api.kubernetes]
            namespace = "production"
            name = "prod-payment-deploy"
            [kubernetes]
            kubeconfig = "{dir}/kubeconfig"
            [alerts.alertmanager]
            bearer_token = {{ file = "{dir}/token" }}
            [[alerts.routes]]
            matchers = ["service=payment-api"]
            service = "payment-api"
            "#,
            dir = dir.path().display(),
        ))
        .unwrap();
        let chat = MemoryChat::new();
        let app = App::start(&config, Some(chat.clone())).await.unwrap();
        let engine = app.engine().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        let prometheus = Prometheus::start(&addr).await;

        // Scraped before anything happens: the rollback series exist at 0,
        // so the first rollback is an increase.
        let rolled_back = r#"rollbot_proposal_outcomes_total{service="payment-api",outcome="rolled_back",drill="false"}"#;
        prometheus
            .wait_for("the first scrape", rolled_back, |s| value(s) == 0.0)
            .await;

        // Three incidents, each alert started 40 minutes before it was
        // rolled back: three rollbacks in a day, MTTR over 30 minutes.
        let client = reqwest::Client::new();
        let starts = (chrono::Utc::now() - chrono::Duration::minutes(40)).to_rfc3339();
        for n in 1..=3 {
            let deliver = async |status: &str, ends: &str| {
                let alert = am_alert(
                    &format!("PaymentSuccessRateLow{n}"),
                    &[("scope", "all")],
                    status,
                    &starts,
                    ends,
                );
                let r = client
                    .post(format!("http://{addr}/webhooks/alertmanager"))
                    .bearer_auth("t0ken")
                    .json(&am_body(vec![alert]))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            };
            deliver("firing", "0001-01-01T00:00:00Z").await;
            let payment = ServiceName::parse("payment-api").unwrap();
            wait_until_within(
                Duration::from_secs(30),
                "the alert opens a proposal",
                async || engine.store().open_for(&payment).unwrap().is_some(),
            )
            .await;
            let p = engine.store().open_for(&payment).unwrap().unwrap();
            for who in ["slack:UALICE", "slack:UBOB"] {
                engine
                    .vote(&p.id, &user(who), VoteKind::Approve, VoteVia::Reaction)
                    .await
                    .unwrap();
            }
            wait_until_within(Duration::from_secs(60), "the rollback ends", async || {
                !matches!(
                    engine.get(&p.id).unwrap().state,
                    State::Approved | State::Executing
                )
            })
            .await;
            assert_eq!(engine.get(&p.id).unwrap().state, State::RolledBack);
            // The alert clears: the incident is over, the next alert is a new one.
            deliver("resolved", &chrono::Utc::now().to_rfc3339()).await;
            wait_until_within(
                Duration::from_secs(30),
                "the incident resolves",
                async || engine.get(&p.id).unwrap().alert_resolved_at.is_some(),
            )
            .await;
        }

        // The frequent-rollback expression names payment-api, and the
        // alert fires.
        prometheus
            .wait_for("three rollbacks", &rule("RollbackFrequent"), |s| {
                for_payment(s) && value(s) >= 3.0
            })
            .await;
        prometheus
            .wait_for(
                "more than monthly",
                &rule("RollbackMoreThanMonthly"),
                for_payment,
            )
            .await;
        prometheus
            .wait_for("MTTR over 30 minutes", &rule("RollbackMTTRHigh"), |s| {
                for_payment(s) && (2300.0..2700.0).contains(&value(s))
            })
            .await;
        let fired = poll_until(Duration::from_secs(30), async || {
            prometheus
                .firing()
                .await
                .contains(&"RollbackFrequent".to_owned())
        })
        .await;
        assert!(
            fired,
            "RollbackFrequent is not firing: {:?}",
            prometheus.firing().await
        );
        // Nothing is queued for a chat platform (the chat is in memory), and
        // rollbot is up: those rules' expressions are empty.
        assert_eq!(
            prometheus.query(&rule("RollbotOutboxStuck")).await,
            Some(vec![])
        );
        assert_eq!(prometheus.query(&rule("RollbotDown")).await, Some(vec![]));
        // Every dashboard query is one Prometheus accepts; the timing
        // panels have data.
        for (title, expr) in dashboard_queries() {
            let result = prometheus.query(&expr).await.unwrap();
            if title.starts_with("Rollbacks per service")
                || title.starts_with("Mean time to mitigate")
            {
                assert!(
                    result.iter().any(for_payment),
                    "{title}: {expr} → {result:?}"
                );
            }
        }

        // rollbot stops: the down rule's expression finds it.
        chat.consume_all();
        if let Err(failure) = finish(&engine, &chat).await {
            panic!("{failure}");
        }
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
        prometheus
            .wait_for("rollbot down", &rule("RollbotDown"), |s| {
                s["metric"]["job"] == "rollbot"
            })
            .await;
    };
    tokio::time::timeout(Duration::from_secs(240), test)
        .await
        .expect("test timed out after 240 s");
}
