//! Recovery verification against a real Prometheus (the Debian package's
//! `/usr/bin/prometheus`, installed by `scripts/test.sh`) scraping a small
//! exporter whose values the test controls.
//!
//! Two services roll back at once: `payment-api` recovers (its success rate
//! goes from 95 to 99.8 and its health endpoint reports the target version
//! once the "rollback" runs) and must end `Verified`; `search` never
//! recovers and must end `VerificationFailed` when its window is over.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Json;
use axum::extract::{Path, State as AxState};
use axum::routing::get;
use rollbot::config::Config;
use rollbot::domain::{Origin, Plan, ServiceName, State, SystemClock, VoteKind, VoteVia};
use rollbot::engine::{Engine, Ports, ProposeRequest};
use rollbot::exec::Target;
use rollbot::exec::kubernetes::KubeTarget;
use rollbot::ports::memory::MemoryChat;
use rollbot::ports::{ExecError, ExecOutcome, Executor, PlanRequest, ThreadNote};
use rollbot::store::Store;
use rollbot::verify::HttpVerifier;
use support::{finish, poll_until, reference_plan, user};
use tokio::sync::mpsc;

/// deployment name → (success rate %, version the health endpoint reports)
type Exported = Arc<Mutex<HashMap<String, (f64, String)>>>;

async fn start_exporter(values: Exported) -> String {
    async fn metrics(AxState(v): AxState<Exported>) -> String {
        let v = v.lock().unwrap();
        let mut out = String::from("# TYPE payment_success_ratio gauge\n");
        for (deployment, (rate, _)) in v.iter() {
            out.push_str(&format!(
                "payment_success_ratio{{deployment=\"{deployment}\"}} {rate}\n"
            ));
        }
        out
    }
    async fn health(
        AxState(v): AxState<Exported>,
        Path(deployment): Path<String>,
    ) -> Json<serde_json::Value> {
        let version = v.lock().unwrap()[&deployment].1.clone();
        Json(serde_json::json!({ "status": "healthy", "version": version }))
    }
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/health/{deployment}", get(health))
        .with_state(values);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("127.0.0.1:{}", addr.port())
}

fn prometheus_binary() -> PathBuf {
    let path = PathBuf::from("/usr/bin/prometheus");
    assert!(
        path.exists(),
        "{} is missing: this test needs a real Prometheus. Run scripts/test.sh, which installs the Debian package `prometheus`",
        path.display()
    );
    path
}

/// A Prometheus on a free loopback port, scraping `target` every second.
/// Killed when dropped.
struct Prometheus {
    url: String,
    _child: tokio::process::Child,
    dir: tempfile::TempDir,
}

async fn start_prometheus(target: &str) -> Prometheus {
    let binary = prometheus_binary();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: exporter\n    static_configs:\n      - targets: ['{target}']\n"
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
    Prometheus {
        url: format!("http://127.0.0.1:{port}"),
        _child: child,
        dir,
    }
}

/// "Rolls back" by making the exporter report the recovered service.
struct ExporterExecutor {
    values: Exported,
}

#[async_trait]
impl Executor for ExporterExecutor {
    async fn plan(&self, _t: &Target, _request: &PlanRequest) -> Result<Plan, ExecError> {
        Ok(reference_plan())
    }

    async fn execute(
        &self,
        target: &Target,
        _plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        let Target::Kubernetes(KubeTarget { name, .. }) = target else {
            panic!("this test runs no drills: {target}");
        };
        if name == "prod-payment-deploy" {
            self.values
                .lock()
                .unwrap()
                .insert(name.clone(), (99.8, "v1.2.0".into()));
        }
        let line = format!("deployment \"{name}\" successfully rolled out");
        progress.send(line.clone()).await.unwrap();
        Ok(ExecOutcome::RolledBack { detail: line })
    }
}

fn config(prometheus: &str, exporter: &str) -> String {
    let service = |name: &str, deployment: &str, window: &str| {
        format!(
            r#"
[services.{name}]
groups = ["sre"]
[services.{name}.kubernetes]
namespace = "production"
name = "{deployment}"
[services.{name}.verify]
window = "{window}"
interval = "1s"
[[services.{name}.verify.http]]
name = "health"
url = "http://{exporter}/health/{deployment}"
json_field = "version"
json_equals = "{{target_tag}}"
[[services.{name}.verify.prometheus]]
name = "success rate"
query = 'max(payment_success_ratio{{deployment="{deployment}"}})'
op = ">="
threshold = 99.5
"#
        )
    };
    format!(
        r#"
[approval]
channel = "memory:incidents"
[groups]
sre = ["slack:UALICE", "slack:UBOB", "slack:UCAROL"]
[prometheus]
url = "{prometheus}"
timeout = "5s"
{}
{}"#,
        service("payment-api", "prod-payment-deploy", "40s"),
        service("search", "search", "5s"),
    )
}

async fn roll_back(engine: &Engine, service: &str) -> rollbot::domain::ProposalId {
    let p = engine
        .propose(ProposeRequest {
            service: ServiceName::parse(service).unwrap(),
            origin: Origin::Command,
            proposer: user("slack:UALICE"),
            reason: "success rate 95%".into(),
            to_revision: None,
            image: None,
            alert: None,
            channel: None,
        })
        .await
        .unwrap();
    for who in ["slack:UBOB", "slack:UCAROL"] {
        engine
            .vote(&p.id, &user(who), VoteKind::Approve, VoteVia::Reaction)
            .await
            .unwrap();
    }
    p.id
}

fn last_check(engine: &Engine, id: &rollbot::domain::ProposalId, name: &str) -> (bool, String) {
    engine
        .store()
        .timeline(id)
        .unwrap()
        .into_iter()
        .rev()
        .find_map(|e| match e.kind {
            rollbot::domain::EventKind::Check {
                name: n,
                passed,
                value,
            } if n == name => Some((passed, value)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {name} check recorded"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_follows_prometheus_until_recovered_or_out_of_time() {
    let values: Exported = Arc::new(Mutex::new(HashMap::from([
        (
            "prod-payment-deploy".to_string(),
            (95.0, "v1.3.0".to_string()),
        ),
        ("search".to_string(), (95.0, "v1.3.0".to_string())),
    ])));
    let exporter = start_exporter(values.clone()).await;
    let prom = start_prometheus(&exporter).await;
    let log = prom.dir.path().join("prometheus.log");
    tokio::time::timeout(Duration::from_secs(150), async {
        let config = Config::parse(&config(&prom.url, &exporter)).unwrap();
        let services = config.services();
        let verifier = Arc::new(HttpVerifier::new(&services));
        // Prometheus needs a few seconds for its first samples: wait for them.
        for deployment in ["prod-payment-deploy", "search"] {
            let q = format!("max(payment_success_ratio{{deployment=\"{deployment}\"}})");
            let mut last = None;
            let sampled = poll_until(Duration::from_secs(60), async || {
                let answer = verifier
                    .instant(&prom.url, &q, None, Duration::from_secs(2))
                    .await;
                let ok = answer.is_ok();
                last = Some(answer);
                ok
            })
            .await;
            match last {
                Some(Ok(v)) if sampled => assert_eq!(v, 95.0),
                other => panic!(
                    "Prometheus has no samples for {deployment} after 60 s ({other:?}); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let chat = MemoryChat::new();
        let engine = Engine::new(
            Store::open(&dir.path().join("db")).unwrap(),
            services,
            Ports {
                chat: chat.clone(),
                executor: Arc::new(ExporterExecutor {
                    values: values.clone(),
                }),
                verifier,
                clock: Arc::new(SystemClock),
            },
        );
        let t0 = Instant::now();
        let payment = roll_back(&engine, "payment-api").await;
        let search = roll_back(&engine, "search").await;
        engine.wait_idle().await;

        // payment-api recovered: Verified with the values Prometheus saw.
        assert_eq!(engine.get(&payment).unwrap().state, State::Verified);
        assert_eq!(
            last_check(&engine, &payment, "success rate"),
            (true, "99.8".into())
        );
        assert_eq!(
            last_check(&engine, &payment, "health"),
            (true, "HTTP 200, version=v1.2.0".into())
        );
        // search never recovered: VerificationFailed with the last values,
        // once its 5 s window was over (and not much later).
        assert_eq!(
            engine.get(&search).unwrap().state,
            State::VerificationFailed
        );
        assert_eq!(
            last_check(&engine, &search, "success rate"),
            (false, "95".into())
        );
        assert_eq!(
            last_check(&engine, &search, "health"),
            (false, "HTTP 200, version=v1.3.0".into())
        );
        let search_checks = engine
            .store()
            .timeline(&search)
            .unwrap()
            .iter()
            .filter(|e| e.kind.name() == "check")
            .count();
        assert!(
            (6..=14).contains(&search_checks),
            "2 checks a second over a 5 s window, got {search_checks}"
        );
        assert!(t0.elapsed() < Duration::from_secs(45));

        // The verification verdicts went to the threads.
        let verdict = |id| {
            assert!(chat.take_post(id).is_some(), "{id} was posted");
            let notes = chat.take_threads(id);
            let verdicts: Vec<bool> = notes
                .iter()
                .filter_map(|n| match n {
                    ThreadNote::Verification { passed, .. } => Some(*passed),
                    _ => None,
                })
                .collect();
            assert_eq!(verdicts.len(), 1, "{notes:?}");
            verdicts[0]
        };
        assert!(verdict(&payment));
        assert!(!verdict(&search));
        // run_test's end-of-test checks: nothing else sent, no panic.
        if let Err(failure) = finish(&engine, &chat).await {
            panic!("{failure}");
        }

        // The report shows before/after from Prometheus, and a chart from query_range.
        let report = engine.report(&payment, "en").await.unwrap();
        assert!(
            report
                .markdown
                .contains("| success rate | >= 99.5 | 95 | 99.8 | ✅ |"),
            "{}",
            report.markdown
        );
        assert!(report.chart_png.is_some(), "{}", report.markdown);
    })
    .await
    .expect("the Prometheus test took longer than 150 s");
}
