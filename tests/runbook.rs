//! The runbook from configuration, with real processes: a symlinked-release
//! service rolled back by its own commands with hooks around it, pre-checks
//! at plan time, a failing before-hook, a hook killed with its children on
//! timeout, and an HTTP step checked by a local server.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rollbot::config::Config;
use rollbot::domain::decision::Advice;
use rollbot::domain::pipeline::Step;
use rollbot::domain::{EventKind, Refusal, State, TimelineEvent};
use rollbot::engine::VoteReply;
use rollbot::exec::{COMMAND, CommandExecutor, Executors};
use rollbot::ports::{CheckResult, ExecErrorKind, ThreadNote, Verdict};
use support::*;

/// A symlinked-release host in a temporary directory: `releases/v1.2.9`,
/// `releases/v1.3.0`, `current -> releases/v1.3.0`, and the scripts its
/// runbook runs.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for v in ["v1.2.9", "v1.3.0"] {
            std::fs::create_dir_all(root.join("releases").join(v)).unwrap();
        }
        std::fs::create_dir(root.join("backups")).unwrap();
        std::os::unix::fs::symlink(root.join("releases/v1.3.0"), root.join("current")).unwrap();
        let script = |name: &str, body: &str| {
            let path = root.join(name);
            std::fs::write(
                &path,
                format!("#!/bin/sh\nset -eu\nroot={}\n{body}", root.display()),
            )
            .unwrap();
            let mut perm = std::fs::metadata(&path).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            std::fs::set_permissions(&path, perm).unwrap();
        };
        // The plan: the release `current` points at, and the one before it.
        script(
            "plan.sh",
            r#"now=$(basename "$(readlink "$root/current")")
prev=$(ls "$root/releases" | sort -V | grep -B1 -x "$now" | head -n1)
[ "$prev" != "$now" ] || { echo "no release before $now" >&2; exit 2; }
echo "releases: $(ls "$root/releases" | tr '\n' ' ')"
printf '{"workload": "release symlink %s/current", "current": {"version": "%s"}, "target": {"version": "%s"}}\n' "$root" "$now" "$prev"
"#,
        );
        // The rollback of the runbooks: ln -sfn, then a restart.
        script(
            "rollback.sh",
            r#"[ -d "$root/releases/$1" ] || { echo "no release $1" >&2; exit 3; }
echo "switching current from $2 to $1"
ln -sfn "$root/releases/$1" "$root/current.new"
mv -T "$root/current.new" "$root/current"
echo "restarted on $1"
"#,
        );
        script(
            "backup.sh",
            r#"echo "dumping database for $ROLLBOT_SERVICE"
echo "backup of $2" > "$root/backups/pre-rollback-$1.sql"
echo "backup written"
"#,
        );
        script(
            "maintenance.sh",
            r#"case "$1" in on) touch "$root/maintenance";; off) rm -f "$root/maintenance";; esac
echo "maintenance $1"
"#,
        );
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    fn current(&self) -> String {
        let link = std::fs::read_link(self.path("current")).unwrap();
        link.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// A config with service `web` on this host; `runbook` is TOML under
    /// `[services.web.runbook]` (arrays of tables), `@ROOT@` this directory.
    fn config(&self, runbook: &str) -> String {
        format!(
            r#"
            [approval]
            channel = "memory:incidents"
            [services.web]
            approvers = ["slack:UALICE", "slack:UBOB", "slack:UCAROL"]
            [services.web.command]
            plan = ["@ROOT@/plan.sh"]
            rollback = ["@ROOT@/rollback.sh", "{{to}}", "{{from}}"]
            timeout = "30s"
            {runbook}
            "#
        )
        .replace("@ROOT@", &self.root().display().to_string())
    }
}

/// A tester whose service `web` runs on `host` with the real command
/// executor and the runbook of `config`, installed as `rollbot serve` does.
fn tester(config: &str) -> Tester {
    let executors = Executors::new().register(COMMAND, Arc::new(CommandExecutor::new()));
    let t = Tester::with_executor(config, Arc::new(executors));
    rollbot::runbook::install(&t.engine, &t.config, Default::default());
    t
}

fn recovers(t: &Tester) {
    t.verifier.push(Verdict::Passed {
        checks: vec![CheckResult {
            name: "health".into(),
            passed: true,
            value: "HTTP 200".into(),
        }],
    });
}

/// The steps recorded on a timeline: (step, "started" | "ok" | "failed").
fn steps(timeline: &[TimelineEvent]) -> Vec<(Step, &'static str)> {
    timeline
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepStarted { step } => Some((*step, "started")),
            EventKind::StepFinished { step, ok, .. } => {
                Some((*step, if *ok { "ok" } else { "failed" }))
            }
            _ => None,
        })
        .collect()
}

/// The hooks recorded on a timeline: (name, ok, detail).
fn hooks(timeline: &[TimelineEvent]) -> Vec<(String, bool, String)> {
    timeline
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::HookFinished {
                name, ok, detail, ..
            } => Some((name.clone(), *ok, detail.clone())),
            _ => None,
        })
        .collect()
}

const HOOKS: &str = r#"
    [[services.web.runbook.before]]
    name = "maintenance-on"
    command = ["@ROOT@/maintenance.sh", "on"]
    timeout = "10s"
    [[services.web.runbook.before]]
    name = "db-backup"
    command = ["@ROOT@/backup.sh", "{proposal}", "{from}"]
    timeout = "10s"
    [[services.web.runbook.after]]
    name = "maintenance-off"
    command = ["@ROOT@/maintenance.sh", "off"]
    timeout = "10s"
    always = true
"#;

#[tokio::test]
async fn a_symlink_release_rolls_back_end_to_end_with_its_hooks() {
    let host = Host::new();
    let config = host.config(HOOKS);
    run_test_in(
        || tester(&config),
        |t| async move {
            recovers(&t);
            let p = t.propose_for("web", "slack:UALICE").await.unwrap();
            // The plan command's versions, shown like a Kubernetes plan's.
            let text = rollbot::report::render_proposal(rollbot::report::templates().unwrap(), &p)
                .unwrap();
            assert!(text.contains("v1.3.0"), "{text}");
            assert!(text.contains("v1.2.9"), "{text}");
            assert_eq!(p.plan.current.images[0].image, "v1.3.0");
            assert_eq!(p.plan.target.images[0].image, "v1.2.9");
            t.expect_posted(&p.id);
            t.approve(&p.id, "slack:UBOB").await;
            assert_eq!(host.current(), "v1.3.0", "one approval runs nothing");
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;

            assert_eq!(host.current(), "v1.2.9");
            let backup = host.path(&format!("backups/pre-rollback-{}.sql", p.id));
            assert_eq!(
                std::fs::read_to_string(&backup).unwrap(),
                "backup of v1.3.0\n",
                "the backup ran with the plan's versions"
            );
            assert!(
                !host.path("maintenance").exists(),
                "maintenance is off again"
            );
            let e = t.proposal(&p.id);
            e.expect_state(State::Verified);
            use Step::*;
            assert_eq!(
                steps(&e.timeline),
                [
                    (BeforeHooks, "started"),
                    (BeforeHooks, "ok"),
                    (Rollback, "started"),
                    (Rollback, "ok"),
                    (AfterHooks, "started"),
                    (AfterHooks, "ok"),
                    (Verify, "started"),
                    (Verify, "ok"),
                    (Report, "started"),
                    (Report, "ok"),
                ]
            );
            let ran = hooks(&e.timeline);
            let names: Vec<&str> = ran.iter().map(|(n, _, _)| n.as_str()).collect();
            assert_eq!(names, ["maintenance-on", "db-backup", "maintenance-off"]);
            assert!(ran.iter().all(|(_, ok, _)| *ok), "{ran:?}");
            assert!(ran[1].2.contains("exit 0"), "{ran:?}");
            assert!(ran[1].2.contains("backup written"), "{ran:?}");
            // Hook output and the rollback's output reach the thread.
            let lines: Vec<&str> = e
                .timeline
                .iter()
                .filter_map(|ev| match &ev.kind {
                    EventKind::Progress { line } => Some(line.as_str()),
                    _ => None,
                })
                .collect();
            assert!(
                lines.contains(&"db-backup: dumping database for web"),
                "{lines:?}"
            );
            assert!(
                lines.contains(&"switching current from v1.3.0 to v1.2.9"),
                "{lines:?}"
            );
            let notes = t.expect_threads(
                &p.id,
                &[
                    "execution_started",
                    "progress",
                    "progress",
                    "execution_finished",
                    "progress",
                    "verification",
                    "resolved",
                    "report",
                ],
            );
            // The report lists every step with its duration.
            let Some(ThreadNote::Report { markdown, .. }) = notes.last() else {
                panic!("no report: {notes:?}");
            };
            for name in ["maintenance-on", "db-backup", "maintenance-off"] {
                assert!(markdown.contains(name), "{name} missing from:\n{markdown}");
            }
            assert!(markdown.contains("Before the rollback"), "{markdown}");
            t
        },
    )
    .await;
}

#[tokio::test]
async fn a_failing_before_hook_rolls_nothing_back_and_runs_the_always_after_hooks() {
    let host = Host::new();
    let config = host.config(
        r#"
        [[services.web.runbook.before]]
        name = "maintenance-on"
        command = ["@ROOT@/maintenance.sh", "on"]
        timeout = "10s"
        [[services.web.runbook.before]]
        name = "db-backup"
        command = ["sh", "-c", "echo 'pg_dump: disk full' >&2; exit 4"]
        timeout = "10s"
        [[services.web.runbook.after]]
        name = "maintenance-off"
        command = ["@ROOT@/maintenance.sh", "off"]
        timeout = "10s"
        always = true
        [[services.web.runbook.after]]
        name = "cdn-purge"
        command = ["sh", "-c", "touch @ROOT@/purged"]
        timeout = "10s"
        "#,
    );
    run_test_in(
        || tester(&config),
        |t| async move {
            let p = t.propose_for("web", "slack:UALICE").await.unwrap();
            t.expect_posted(&p.id);
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            assert_eq!(host.current(), "v1.3.0", "nothing was rolled back");
            assert!(
                !host.path("maintenance").exists(),
                "the always after-hook switched maintenance off"
            );
            assert!(
                !host.path("purged").exists(),
                "only `always` after-hooks run"
            );
            let e = t.proposal(&p.id);
            e.expect_state(State::Failed);
            let notes = t.expect_threads(
                &p.id,
                &[
                    "execution_started",
                    "progress",
                    "execution_failed",
                    "progress",
                ],
            );
            let ThreadNote::ExecutionFailed { error } = &notes[2] else {
                panic!("{notes:?}");
            };
            assert_eq!(error.kind, ExecErrorKind::HookFailed);
            assert!(error.message.starts_with("db-backup: exit 4"), "{error:?}");
            assert!(error.message.contains("pg_dump: disk full"), "{error:?}");
            let ran: Vec<(String, bool)> = hooks(&e.timeline)
                .into_iter()
                .map(|(n, ok, _)| (n, ok))
                .collect();
            assert_eq!(
                ran,
                [
                    ("maintenance-on".into(), true),
                    ("db-backup".into(), false),
                    ("maintenance-off".into(), true),
                ]
            );
            t
        },
    )
    .await;
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet: it runs
/// nothing any more).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[tokio::test]
async fn a_hook_past_its_timeout_is_killed_with_its_children() {
    let host = Host::new();
    // The hook starts a grandchild that would outlive it, records its pid
    // and waits: only killing the whole process group stops both.
    let config = host.config(
        r#"
        [[services.web.runbook.before]]
        name = "drain"
        command = ["sh -c 'sleep 300' & echo $! > @ROOT@/grandchild.pid; echo draining; wait"]
        shell = true
        timeout = "1s"
        "#,
    );
    run_test_in(
        || tester(&config),
        |t| async move {
            let p = t.propose_for("web", "slack:UALICE").await.unwrap();
            t.expect_posted(&p.id);
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            let pid: u32 = std::fs::read_to_string(host.path("grandchild.pid"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            wait_until("the grandchild is killed", || gone(pid)).await;
            assert_eq!(host.current(), "v1.3.0");
            t.proposal(&p.id).expect_state(State::Failed);
            let notes = t.expect_threads(
                &p.id,
                &["execution_started", "progress", "execution_failed"],
            );
            let ThreadNote::ExecutionFailed { error } = &notes[2] else {
                panic!("{notes:?}");
            };
            assert!(
                error.message.starts_with("drain: timed out after 1s"),
                "{error:?}"
            );
            assert!(error.message.contains("draining"), "{error:?}");
            t
        },
    )
    .await;
}

#[tokio::test]
async fn a_migrations_pre_check_turns_the_advice_into_a_forward_fix() {
    let host = Host::new();
    let config = host.config(
        r#"
        [[services.web.runbook.pre_checks]]
        name = "check-migrations"
        kind = "migrations"
        command = ["sh", "-c", "echo \"checking $0..$1\"; echo 20251120_add_refunds_table; exit 1", "{to}", "{from}"]
        timeout = "10s"
        [[services.web.runbook.pre_checks]]
        name = "target-exists"
        command = ["test", "-d", "@ROOT@/releases/{to}"]
        timeout = "10s"
        "#,
    );
    run_test_in(
        || tester(&config),
        |t| async move {
            let p = t.propose_for("web", "slack:UALICE").await.unwrap();
            t.expect_posted(&p.id);
            assert!(p.plan.migrations);
            assert_eq!(
                p.recommendation.as_ref().unwrap().advice,
                Advice::ForwardFix
            );
            assert_eq!(p.plan.warnings.len(), 1, "{:?}", p.plan.warnings);
            let w = &p.plan.warnings[0];
            assert!(w.contains("check-migrations"), "{w}");
            assert!(w.contains("20251120_add_refunds_table"), "{w}");
            assert!(w.contains("checking v1.2.9..v1.3.0"), "{w}");
            assert!(w.contains("forward fix"), "{w}");
            t
        },
    )
    .await;
}

#[tokio::test]
async fn a_blocking_pre_check_makes_approval_impossible_and_says_why() {
    let host = Host::new();
    let config = host.config(
        r#"
        [[services.web.runbook.pre_checks]]
        name = "change-freeze"
        blocking = true
        command = ["sh", "-c", "echo 'change freeze until 18:00 UTC' >&2; exit 3"]
        timeout = "10s"
        "#,
    );
    run_test_in(
        || tester(&config),
        |t| async move {
            let p = t.propose_for("web", "slack:UALICE").await.unwrap();
            t.expect_posted(&p.id);
            assert_eq!(p.plan.blockers.len(), 1, "{:?}", p.plan);
            let reason = &p.plan.blockers[0];
            assert!(reason.contains("change-freeze"), "{reason}");
            assert!(reason.contains("exit 3"), "{reason}");
            assert!(reason.contains("change freeze until 18:00 UTC"), "{reason}");
            assert!(p.plan.warnings.is_empty(), "{:?}", p.plan.warnings);
            // The proposal shows the reason.
            let text = rollbot::report::render_proposal(rollbot::report::templates().unwrap(), &p)
                .unwrap();
            assert!(text.contains("change freeze until 18:00 UTC"), "{text}");
            let reply = t.approve(&p.id, "slack:UBOB").await;
            let VoteReply::Refused(Refusal::Blocked { reasons }) = reply else {
                panic!("{reply:?}");
            };
            assert_eq!(&reasons, &p.plan.blockers);
            t.expect_told("slack:UBOB", "vote_refused");
            t.approve(&p.id, "slack:UCAROL").await;
            t.expect_told("slack:UCAROL", "vote_refused");
            t.settle().await;
            t.proposal(&p.id).expect_state(State::Proposed);
            assert_eq!(host.current(), "v1.3.0");
            t
        },
    )
    .await;
}

#[tokio::test]
async fn a_release_switched_after_the_plan_supersedes_the_command_rollback() {
    let host = Host::new();
    let config = host.config(HOOKS);
    run_test_in(
        || tester(&config),
        |t| async move {
            let p = t.propose_for("web", "slack:UALICE").await.unwrap();
            t.expect_posted(&p.id);
            // Someone switches the release by hand while people vote.
            std::fs::create_dir(host.path("releases/v1.3.1")).unwrap();
            std::fs::remove_file(host.path("current")).unwrap();
            std::os::unix::fs::symlink(host.path("releases/v1.3.1"), host.path("current")).unwrap();
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            t.proposal(&p.id).expect_state(State::Superseded);
            assert_eq!(host.current(), "v1.3.1", "the rollback command did not run");
            assert!(
                !host.path("maintenance").exists(),
                "the always after-hook put maintenance off again"
            );
            let notes = t.expect_threads(
                &p.id,
                &["execution_started", "progress", "superseded", "progress"],
            );
            let ThreadNote::Superseded { reason } = &notes[2] else {
                panic!("{notes:?}");
            };
            assert_eq!(reason, "v1.3.1 runs now, not v1.3.0 as planned");
            t
        },
    )
    .await;
}

#[tokio::test]
async fn a_failing_rollback_command_fails_the_proposal_with_its_output() {
    let host = Host::new();
    let config = host.config("");
    // The switch half-works: the service does not come back.
    std::fs::write(
        host.path("rollback.sh"),
        "#!/bin/sh\necho \"switching to $1\"\necho 'restart failed: port 8080 in use' >&2\nexit 3\n",
    )
    .unwrap();
    run_test_in(
        || tester(&config),
        |t| async move {
            let p = t.propose_for("web", "slack:UALICE").await.unwrap();
            t.expect_posted(&p.id);
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            t.proposal(&p.id).expect_state(State::Failed);
            let notes = t.expect_threads(
                &p.id,
                &["execution_started", "progress", "execution_failed"],
            );
            let ThreadNote::ExecutionFailed { error } = &notes[2] else {
                panic!("{notes:?}");
            };
            assert_eq!(error.kind, ExecErrorKind::RolloutFailed);
            assert!(error.message.contains("exit 3"), "{error:?}");
            assert!(error.message.contains("port 8080 in use"), "{error:?}");
            t
        },
    )
    .await;
}

/// What the local change-request server received.
#[derive(Default)]
struct Received {
    requests: Vec<(String, Option<String>, serde_json::Value)>,
}

#[tokio::test]
async fn an_http_step_posts_its_templated_body_with_the_status_update() {
    use axum::extract::State as AxState;
    use axum::http::{HeaderMap, StatusCode};
    let received = Arc::new(Mutex::new(Received::default()));
    let app = axum::Router::new()
        .route(
            "/api/changes/{id}",
            axum::routing::patch(
                |AxState(r): AxState<Arc<Mutex<Received>>>,
                 axum::extract::Path(id): axum::extract::Path<String>,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    // As strict as a real API: a token, and a JSON body.
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    if auth.as_deref() != Some("Bearer cr-token-42") {
                        return (StatusCode::UNAUTHORIZED, "bad token".to_string());
                    }
                    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
                        return (StatusCode::BAD_REQUEST, "not JSON".to_string());
                    };
                    r.lock().unwrap().requests.push((id, auth, json));
                    (StatusCode::OK, "{\"status\":\"rolled-back\"}".to_string())
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let host = Host::new();
    std::fs::write(host.path("cr-token"), "Bearer cr-token-42\n").unwrap();
    let config = host.config(&format!(
        r#"
        [[services.web.runbook.after]]
        name = "change-request"
        timeout = "10s"
        [services.web.runbook.after.http]
        method = "PATCH"
        url = "http://{addr}/api/changes/{{proposal}}"
        headers = {{ Authorization = {{ file = "@ROOT@/cr-token" }} }}
        expect_status = 200
        [services.web.runbook.after.http.body]
        status = "rolled-back"
        versions = ["{{from}}", "{{to}}"]
        approvers = "{{approvers}}"
        text = "{{status_update}}"
        "#
    ));
    run_test_in(
        || tester(&config),
        |t| async move {
            recovers(&t);
            let p = t.propose_for("web", "slack:UALICE").await.unwrap();
            t.expect_posted(&p.id);
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            t.proposal(&p.id).expect_state(State::Verified);
            let r = received.lock().unwrap();
            assert_eq!(r.requests.len(), 1);
            let (id, _, body) = &r.requests[0];
            assert_eq!(id, p.id.as_str());
            assert_eq!(body["status"], "rolled-back");
            assert_eq!(body["versions"], serde_json::json!(["v1.3.0", "v1.2.9"]));
            assert_eq!(body["approvers"], "slack:UBOB,slack:UCAROL");
            let text = body["text"].as_str().unwrap();
            assert!(text.starts_with("web: Monitoring"), "{text}");
            assert!(text.contains("We rolled web back from v1.3.0"), "{text}");
            assert!(text.contains("Data loss: none expected."), "{text}");
            drop(r);
            let e = t.proposal(&p.id);
            let detail = &hooks(&e.timeline)[0].2;
            assert!(detail.starts_with("HTTP 200"), "{detail}");
            assert!(!detail.contains("cr-token-42"), "the secret is never shown");
            t.expect_threads(
                &p.id,
                &[
                    "execution_started",
                    "progress",
                    "execution_finished",
                    "progress",
                    "verification",
                    "resolved",
                    "report",
                ],
            );
            t
        },
    )
    .await;
}

#[test]
fn check_config_names_each_bad_step_by_its_key() {
    let text = r#"
        [services.web]
        approvers = ["slack:UALICE"]
        [services.web.command]
        plan = ["/nonexistent/plan.sh"]
        rollback = ["sh", "-c", "true", "{too}"]
        timeout = "soon"
        [[services.web.runbook.pre_checks]]
        name = "migrations"
        kind = "migrations"
        command = ["sh", "{approvers}"]
        timeout = "10s"
        [[services.web.runbook.before]]
        name = "backup"
        command = ["no-such-backup-program"]
        [[services.web.runbook.before]]
        name = "script"
        shell = true
        command = ["pg_dump > /b/{proposal}.sql"]
        timeout = "1m"
        [[services.web.runbook.after]]
        name = "cr"
        timeout = "1m"
        http = { url = "cr.example.com/{proposl}", body = { text = "{status_update}" } }
        [[services.web.runbook.after]]
        name = "flags"
        timeout = "1m"
        http = { url = "https://flags.example.com/off", headers = { Authorization = "Bearer abc" } }
    "#;
    let problems = Config::parse(text).unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    let has = |path: &str, words: &str| {
        assert!(
            problems
                .iter()
                .any(|p| p.path == path && p.message.contains(words)),
            "no problem at {path} saying {words:?}: {problems:#?}"
        );
    };
    has("services.web.command.plan[0]", "not found");
    has("services.web.command.rollback[3]", "{too}");
    has("services.web.command.timeout", "not a duration");
    has(
        "services.web.runbook.pre_checks[0].command[1]",
        "before there is a proposal",
    );
    has(
        "services.web.runbook.before[0].command[0]",
        "not found on PATH",
    );
    has("services.web.runbook.before[0].timeout", "needs a timeout");
    has("services.web.runbook.before[1].command", "$ROLLBOT_SERVICE");
    has("services.web.runbook.after[0].http.url", "{proposl}");
    has(
        "services.web.runbook.after[0].http.url",
        "not an http(s) URL",
    );
    has(
        "services.web.runbook.after[1].http.headers.Authorization",
        "looks like a secret",
    );
    assert_eq!(paths.len(), 10, "{problems:#?}");
}

#[tokio::test]
async fn an_http_step_answered_with_another_status_fails_with_what_the_service_said() {
    let app = axum::Router::new().route(
        "/flags/checkout",
        axum::routing::put(|| async {
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "flag service in maintenance",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let host = Host::new();
    let config = host.config(&format!(
        r#"
        [[services.web.runbook.before]]
        name = "flag-off"
        timeout = "10s"
        http = {{ method = "PUT", url = "http://{addr}/flags/checkout", body = {{ enabled = false }} }}
        "#
    ));
    run_test_in(
        || tester(&config),
        |t| async move {
            let p = t.propose_for("web", "slack:UALICE").await.unwrap();
            t.expect_posted(&p.id);
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            t.proposal(&p.id).expect_state(State::Failed);
            assert_eq!(host.current(), "v1.3.0", "nothing was rolled back");
            let notes = t.expect_threads(
                &p.id,
                &["execution_started", "progress", "execution_failed"],
            );
            let ThreadNote::ExecutionFailed { error } = &notes[2] else {
                panic!("{notes:?}");
            };
            assert_eq!(error.kind, ExecErrorKind::HookFailed);
            assert!(error.message.starts_with("flag-off: HTTP 503"), "{error:?}");
            assert!(
                error.message.contains("flag service in maintenance"),
                "{error:?}"
            );
            t
        },
    )
    .await;
}

/// `rollbot serve`'s own wiring: the command executor is registered and
/// each service's runbook installed, with no Kubernetes in sight.
#[tokio::test]
async fn serve_runs_command_services_with_their_runbook() {
    let host = Host::new();
    let config = host
        .config(
            r#"
            [[services.web.runbook.pre_checks]]
            name = "check-migrations"
            kind = "migrations"
            command = ["sh", "-c", "echo 20251120_add_refunds_table; exit 1"]
            timeout = "10s"
            "#,
        )
        .replace(
            "[approval]",
            &format!(
                "[store]\npath = \"{}/db\"\n[approval]",
                host.root().display()
            ),
        );
    let config = Config::parse(&config).expect("valid config");
    bounded(async {
        let app = rollbot::app::App::start(&config, None).await.unwrap();
        let p = app
            .engine()
            .propose(rollbot::engine::ProposeRequest {
                service: rollbot::domain::ServiceName::parse("web").unwrap(),
                origin: rollbot::domain::Origin::Command,
                proposer: user("slack:UALICE"),
                reason: "checkout errors".into(),
                to_revision: None,
                image: None,
                alert: None,
                channel: None,
            })
            .await
            .unwrap();
        assert_eq!(p.plan.current.images[0].image, "v1.3.0");
        assert_eq!(p.plan.target.images[0].image, "v1.2.9");
        assert!(p.plan.migrations, "the pre-check ran: {:?}", p.plan);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        app.serve(listener, async {}).await.unwrap();
    })
    .await;
}
