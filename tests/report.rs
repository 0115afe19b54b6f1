//! After the rollback, end to end with the in-memory chat: the reference
//! incident (alert → proposal → two approvals → rollback → progress →
//! verified → alert resolves → resolved notice → report) on a fixed clock,
//! with the report snapshotted in every locale and its chart decoded; and
//! the throttling of progress lines.
//!
//! The executor and verifier here are test doubles that move the manual
//! clock as a real rollout would take time; any `Executor` (e.g. the
//! Kubernetes simulator's) can take the executor's place.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use rollbot::config::Config;
use rollbot::domain::{
    AlertRef, Clock, ManualClock, Origin, Plan, Proposal, ServiceName, State, VoteKind, VoteVia,
};
use rollbot::engine::{Engine, Ports, ProposeRequest};
use rollbot::exec::Target;
use rollbot::ports::memory::{ChatCall, MemoryChat};
use rollbot::ports::{
    CheckEvidence, CheckResult, Evidence, ExecError, ExecOutcome, Executor, IncidentWindow,
    PlanRequest, Series, ThreadNote, Verdict, Verifier,
};
use rollbot::store::Store;
use support::{BOT, bounded, reference_plan, user};
use tokio::sync::mpsc;

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, h, m, s).unwrap()
}

/// Sends each line after `step` of (manual) time, like a rollout.
struct TimedExecutor {
    clock: Arc<ManualClock>,
    lines: Vec<String>,
    step: Duration,
}

#[async_trait]
impl Executor for TimedExecutor {
    async fn plan(&self, _t: &Target, _request: &PlanRequest) -> Result<Plan, ExecError> {
        Ok(reference_plan())
    }

    async fn execute(
        &self,
        _t: &Target,
        _plan: &Plan,
        progress: mpsc::Sender<String>,
    ) -> Result<ExecOutcome, ExecError> {
        for line in &self.lines {
            self.clock.advance(self.step);
            progress.send(line.clone()).await.unwrap();
            // Let the engine take the line before time moves on, as it
            // would with a real rollout's pace.
            while progress.capacity() < progress.max_capacity() {
                tokio::task::yield_now().await;
            }
        }
        Ok(ExecOutcome::RolledBack {
            detail: self.lines.last().cloned().unwrap_or_default(),
        })
    }
}

/// Passes after five minutes with the reference incident's values, and
/// remembers what the incident looked like for the report.
struct ReferenceVerifier {
    clock: Arc<ManualClock>,
    asked: std::sync::Mutex<Vec<IncidentWindow>>,
}

#[async_trait]
impl Verifier for ReferenceVerifier {
    async fn verify(
        &self,
        _s: &ServiceName,
        _plan: &Plan,
        results: mpsc::Sender<CheckResult>,
    ) -> Verdict {
        let checks = vec![
            CheckResult {
                name: "health".into(),
                passed: true,
                value: "HTTP 200, version=v1.2.0".into(),
            },
            CheckResult {
                name: "payment success rate".into(),
                passed: true,
                value: "99.7".into(),
            },
        ];
        self.clock.advance(Duration::minutes(5));
        for c in &checks {
            results.send(c.clone()).await.unwrap();
        }
        Verdict::Passed { checks }
    }

    async fn evidence(&self, _s: &ServiceName, _p: &Plan, w: &IncidentWindow) -> Evidence {
        self.asked.lock().unwrap().push(w.clone());
        // The success rate per minute from 14:20 to 15:10.
        let points = (0..=50)
            .map(|i| {
                let t = at(14, 20, 0) + Duration::minutes(i);
                let v = match i {
                    0..=9 => 99.8,
                    10..=20 => 95.0,
                    21..=29 => 97.0 + (i - 20) as f64 * 0.3,
                    _ => 99.8,
                };
                (t, v)
            })
            .collect();
        Evidence {
            checks: vec![
                CheckEvidence {
                    name: "health".into(),
                    condition: "HTTP 200, version == v1.2.0".into(),
                    before: None,
                },
                CheckEvidence {
                    name: "payment success rate".into(),
                    condition: ">= 99.5".into(),
                    before: Some("95".into()),
                },
            ],
            series: Some(Series {
                name: "payment success rate (%)".into(),
                points,
                threshold: Some(99.5),
            }),
            notes: vec![],
        }
    }
}

/// The harness's default world, with every message in `locale`.
fn config(locale: &str) -> String {
    format!("locale = \"{locale}\"\n{}", support::CONFIG)
}

struct World {
    engine: Engine,
    chat: Arc<MemoryChat>,
    clock: Arc<ManualClock>,
    verifier: Arc<ReferenceVerifier>,
    _dir: tempfile::TempDir,
}

fn world(config_text: &str, lines: &[&str], step: Duration) -> World {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(config_text).unwrap();
    let clock = Arc::new(ManualClock::new(at(14, 30, 0)));
    let chat = MemoryChat::new();
    let verifier = Arc::new(ReferenceVerifier {
        clock: clock.clone(),
        asked: Default::default(),
    });
    let engine = Engine::new(
        Store::open(&dir.path().join("db")).unwrap(),
        config.services(),
        Ports {
            chat: chat.clone(),
            executor: Arc::new(TimedExecutor {
                clock: clock.clone(),
                lines: lines.iter().map(|s| s.to_string()).collect(),
                step,
            }),
            verifier: verifier.clone(),
            clock: clock.clone(),
        },
    );
    engine.add_bot_identity(user(BOT));
    World {
        engine,
        chat,
        clock,
        verifier,
        _dir: dir,
    }
}

fn alert() -> AlertRef {
    AlertRef {
        source: "alertmanager".into(),
        name: "PaymentSuccessRateLow".into(),
        fingerprint: "4f2a9c".into(),
        summary: Some("payment success rate < 98% for 5 minutes".into()),
        starts_at: at(14, 30, 0),
        ends_at: None,
        links: vec![],
        labels: [("severity", "critical"), ("scope", "all")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

const ROLLOUT: &[&str] = &[
    "Waiting for deployment \"prod-payment-deploy\" rollout to finish: 1 out of 3 new replicas have been updated...",
    "Waiting for deployment \"prod-payment-deploy\" rollout to finish: 2 out of 3 new replicas have been updated...",
    "Waiting for deployment \"prod-payment-deploy\" rollout to finish: 1 old replicas are pending termination...",
    "deployment \"prod-payment-deploy\" successfully rolled out",
];

fn thread_notes(chat: &MemoryChat) -> Vec<ThreadNote> {
    chat.calls()
        .into_iter()
        .filter_map(|c| match c {
            ChatCall::Thread { note, .. } => Some(note),
            _ => None,
        })
        .collect()
}

/// Runs the reference incident in `locale`; returns the proposal and the world.
async fn reference_incident(locale: &str) -> (World, Proposal) {
    let w = world(
        &config(locale),
        ROLLOUT,
        Duration::minutes(1) + Duration::seconds(15),
    );
    w.clock.set(at(14, 31, 10));
    let p = w
        .engine
        .propose(ProposeRequest {
            service: ServiceName::parse("payment-api").unwrap(),
            origin: Origin::Alert,
            proposer: user(BOT),
            reason: "payment success rate 95% (v1.3.0)".into(),
            to_revision: None,
            image: None,
            alert: Some(alert()),
            channel: None,
        })
        .await
        .unwrap();
    w.clock.set(at(14, 33, 0));
    w.engine
        .vote(
            &p.id,
            &user("slack:UALICE"),
            VoteKind::Approve,
            VoteVia::Reaction,
        )
        .await
        .unwrap();
    w.clock.set(at(14, 35, 0));
    w.engine
        .vote(
            &p.id,
            &user("slack:UCAROL"),
            VoteKind::Approve,
            VoteVia::Button,
        )
        .await
        .unwrap();
    w.engine.wait_idle().await;
    assert!(!w.engine.background_panicked());
    assert_eq!(w.engine.get(&p.id).unwrap().state, State::Verified);
    // Verified, but the alert still fires: no report yet.
    assert!(
        !thread_notes(&w.chat)
            .iter()
            .any(|n| matches!(n, ThreadNote::Report { .. } | ThreadNote::Resolved { .. })),
        "an alert proposal is resolved by its alert, not by verification"
    );
    w.clock.set(at(15, 0, 20));
    let p = w
        .engine
        .alert_resolved(&p.id, "4f2a9c", at(15, 0, 0))
        .await
        .unwrap();
    (w, p)
}

#[tokio::test]
async fn the_reference_incident_ends_with_a_resolved_notice_and_a_report() {
    bounded(async {
        let templates = rollbot::report::templates().unwrap();
        for locale in ["en", "zh", "ja"] {
            let (w, p) = reference_incident(locale).await;
            let notes = thread_notes(&w.chat);
            let kinds: Vec<_> = notes
                .iter()
                .map(|n| serde_json::to_value(n).unwrap()["note"].clone())
                .collect();
            assert_eq!(
                kinds,
                [
                    "execution_started",
                    "progress",
                    "execution_finished",
                    "verification",
                    "resolved",
                    "report"
                ],
                "{locale}"
            );
            // The notice carries the first check's current value, as the
            // runbooks' [RESOLVED] message does.
            let note = notes
                .iter()
                .find(|n| matches!(n, ThreadNote::Resolved { .. }))
                .unwrap();
            assert!(
                matches!(note, ThreadNote::Resolved { check: Some(c), .. }
                    if c.name == "health" && c.value == "HTTP 200, version=v1.2.0"),
                "{note:?}"
            );
            // And the customer-facing status update, drafted in the
            // service's locale, for people to copy.
            let ThreadNote::Resolved {
                status_update: Some(update),
                ..
            } = note
            else {
                panic!("the resolved notice carries no status update: {note:?}")
            };
            assert!(update.contains("payment-api"), "{update}");
            let resolved = rollbot::report::render_note(templates, &p, note)
                .unwrap()
                .replace(p.id.as_str(), "RB-ID");
            insta::assert_snapshot!(format!("resolved_notice_{locale}"), resolved);

            let Some(ThreadNote::Report {
                markdown,
                chart_png,
            }) = notes.last()
            else {
                panic!("no report posted");
            };
            insta::assert_snapshot!(
                format!("reference_incident_report_{locale}"),
                markdown.replace(p.id.as_str(), "RB-ID")
            );
            // The verifier was asked about the incident as it happened.
            assert_eq!(
                w.verifier.asked.lock().unwrap()[0],
                IncidentWindow {
                    start: at(14, 30, 0),
                    before: at(14, 35, 0),
                    end: at(15, 0, 0),
                }
            );
            let png = chart_png.as_ref().expect("the report has a chart");
            let decoder = png::Decoder::new(std::io::Cursor::new(png));
            let mut reader = decoder.read_info().unwrap();
            let mut buf = vec![0; reader.output_buffer_size()];
            let info = reader.next_frame(&mut buf).unwrap();
            assert_eq!((info.width, info.height), rollbot::report::CHART_SIZE);
            // Not a blank image: the series and markers drew something.
            let colours: std::collections::BTreeSet<_> =
                buf[..info.buffer_size()].chunks(3).take(1 << 20).collect();
            assert!(colours.len() > 10, "the chart looks empty");

            // The same report on demand, in another locale.
            let other = w.engine.report(&p.id, "en").await.unwrap();
            assert!(other.markdown.contains("## Verification"));
            assert_eq!(w.clock.now(), at(15, 0, 20));
        }
    })
    .await;
}

#[tokio::test]
async fn progress_edits_one_message_at_most_every_interval_and_delivers_the_last_line() {
    bounded(async {
        let lines = ["l1", "l2", "l3", "l4", "l5"];
        // A line every 2 s against the default 5 s edit interval.
        let w = world(&config("en"), &lines, Duration::seconds(2));
        let p = w
            .engine
            .propose(ProposeRequest {
                service: ServiceName::parse("payment-api").unwrap(),
                origin: Origin::Command,
                proposer: user("slack:UALICE"),
                reason: "bad deploy".into(),
                to_revision: None,
                image: None,
                alert: None,
                channel: None,
            })
            .await
            .unwrap();
        for who in ["slack:UBOB", "slack:UCAROL"] {
            w.engine
                .vote(&p.id, &user(who), VoteKind::Approve, VoteVia::Reaction)
                .await
                .unwrap();
        }
        w.engine.wait_idle().await;
        let calls = w.chat.calls();
        let posted: Vec<_> = calls
            .iter()
            .filter_map(|c| match c {
                ChatCall::Thread {
                    note: ThreadNote::Progress { line },
                    ..
                } => Some(line.as_str()),
                _ => None,
            })
            .collect();
        let edited: Vec<_> = calls
            .iter()
            .filter_map(|c| match c {
                ChatCall::EditedThread {
                    note: ThreadNote::Progress { line },
                    message,
                } => Some((line.as_str(), message.as_str())),
                _ => None,
            })
            .collect();
        // l1 at +2 s is posted; l2 (+4) waits; l3 (+6, 4 s later) waits;
        // l4 (+8, 6 s later) edits; l5 (+10) waits, then goes out at the end.
        assert_eq!(posted, ["l1"]);
        let lines_edited: Vec<_> = edited.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines_edited, ["l4", "l5"]);
        // Edits go to the progress message, not the proposal message.
        let proposal_message = &p.messages[0].message;
        assert!(
            edited
                .iter()
                .all(|(_, m)| m != proposal_message && *m == edited[0].1)
        );
        // Every line is still on the timeline.
        let timeline = w.engine.store().timeline(&p.id).unwrap();
        let recorded = timeline
            .iter()
            .filter(|e| e.kind.name() == "progress")
            .count();
        assert_eq!(recorded, lines.len());
        // A manual proposal is resolved by passing verification: notice, then report.
        let notes = thread_notes(&w.chat);
        assert!(matches!(
            &notes[notes.len() - 2..],
            [ThreadNote::Resolved { .. }, ThreadNote::Report { .. }]
        ));
    })
    .await;
}
