//! Scheduled drills (`[services.NAME.drill]`) on an injected clock: a weekly
//! schedule fires once a week, schedules missed while rollbot was down run
//! once, late, and say so; restarts neither repeat nor lose a drill; and the
//! real workload (a source simulator) is only read.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rollbot::domain::{Origin, ServiceName, State};
use rollbot::engine::{SCHEDULER, ScheduleOutcome};
use rollbot::exec::KubeRollback;
use rollbot::exec::kubernetes::KubeExecutor;
use rollbot::ports::ThreadNote;
use rollbot::sim::{self, Kind, seed::Seed};
use rollbot::store::DrillMark;
use support::*;

/// Mondays at 02:00 in Tokyo, which is Sunday 17:00 UTC.
fn config() -> String {
    format!(
        r#"{CONFIG}
    [services.payment-api.drill]
    schedule = "0 2 * * 1"
    timezone = "Asia/Tokyo"
    approvers_to_notify = ["slack:UBOB", "slack:UCAROL"]
"#
    )
}

/// Sunday `day` March 2025 (16, 23, 30), 17:00 UTC plus `min` minutes.
fn sunday(day: u32, min: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, day, 17, 0, 0).unwrap() + Duration::minutes(min)
}

/// The simulator standing in for the real cluster, once its controller
/// settled (so resourceVersions only move if someone writes).
async fn source() -> sim::SimHandle {
    let seed = Seed::from_file("config/sim-payment.yaml".as_ref()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = sim::start(seed, listener).await.unwrap();
    let mut changes = sim.store().subscribe();
    while tokio::time::timeout(std::time::Duration::from_millis(300), changes.changed())
        .await
        .is_ok()
    {}
    sim
}

fn resource_versions(sim: &sim::SimHandle) -> BTreeMap<String, String> {
    Kind::ALL
        .iter()
        .flat_map(|&k| sim.list(k, None))
        .map(|o| {
            (
                format!(
                    "{}/{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["namespace"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap()
                ),
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

fn kube(source: &sim::SimHandle) -> Arc<KubeRollback> {
    Arc::new(KubeRollback::new(
        KubeExecutor::for_url(&source.url()).unwrap(),
    ))
}

/// A tester on `config()` whose real cluster is `source`, schedules on.
fn tester(source: &sim::SimHandle) -> Tester {
    let t = Tester::with_executor(&config(), kube(source));
    t.engine.set_drill_schedules(t.config.drill_schedules());
    t
}

async fn restart(t: Tester, source: &sim::SimHandle) -> Tester {
    let t = t.restart_with(&config(), Some(kube(source))).await;
    t.engine.set_drill_schedules(t.config.drill_schedules());
    t
}

fn payment() -> ServiceName {
    ServiceName::parse("payment-api").unwrap()
}

fn drills(t: &Tester) -> Vec<rollbot::domain::Proposal> {
    t.proposals().into_iter().filter(|p| p.drill).collect()
}

/// The drill opened by this tick, with its thread note consumed.
#[track_caller]
fn expect_opened(t: &Tester, out: &[ScheduleOutcome], slot: DateTime<Utc>, late: bool) {
    let [
        ScheduleOutcome::Opened {
            id,
            slot: s,
            late: l,
            ..
        },
    ] = out
    else {
        panic!("expected one drill opened, got {out:?}");
    };
    assert_eq!((*s, *l), (slot, late), "{out:?}");
    let p = t.engine.get(id).unwrap();
    assert!(p.drill && p.origin == Origin::Drill);
    assert_eq!(p.proposer.as_str(), SCHEDULER);
    assert!(p.reason.contains("0 2 * * 1"), "{}", p.reason);
    assert_eq!(t.expect_posted(id), "memory:incidents");
    let note = t.expect_thread(id, "scheduled_drill");
    let ThreadNote::ScheduledDrill {
        schedule,
        timezone,
        slot: note_slot,
        late: note_late,
        notify,
    } = note
    else {
        unreachable!()
    };
    assert_eq!(schedule, "0 2 * * 1");
    assert_eq!(timezone, "Asia/Tokyo");
    assert_eq!((note_slot, note_late), (slot, late));
    assert_eq!(notify, vec![user("slack:UBOB"), user("slack:UCAROL")]);
}

#[tokio::test]
async fn a_weekly_schedule_fires_once_a_week_and_a_missed_one_runs_once_late() {
    let source = bounded(source()).await;
    let before = resource_versions(&source);
    let t = tester(&source);
    run_test_in(
        || t,
        |t| async move {
            // First sight (Friday): nothing is due yet, and nothing past fires.
            assert_eq!(t.engine.run_drill_schedules().await.unwrap(), vec![]);
            t.clock.set(sunday(16, -1));
            assert_eq!(t.engine.run_drill_schedules().await.unwrap(), vec![]);

            // Monday 02:00 in Tokyo: one drill, on time.
            t.clock.set(sunday(16, 0) + Duration::seconds(20));
            let out = t.engine.run_drill_schedules().await.unwrap();
            expect_opened(&t, &out, sunday(16, 0), false);
            let first = drills(&t)[0].id.clone();
            // The following ticks of that week open nothing more.
            for hours in [0, 1, 50, 160] {
                t.clock.set(sunday(16, 1) + Duration::hours(hours));
                t.engine.tick().await.unwrap();
            }
            assert_eq!(drills(&t).len(), 1);
            // Unanswered, it expired (and its copy was released).
            t.proposal(&first).expect_state(State::Expired);
            t.ignore_messages();

            // The next Monday: the second drill.
            t.clock.set(sunday(23, 3));
            let out = t.engine.run_drill_schedules().await.unwrap();
            expect_opened(&t, &out, sunday(23, 0), false);
            assert_eq!(drills(&t).len(), 2);
            t.clock.set(sunday(23, 40));
            t.engine.tick().await.unwrap();
            t.ignore_messages();

            // rollbot is down from that Monday until after the next two:
            // one drill, late, for the latest scheduled time.
            let t = restart(t, &source).await;
            t.clock
                .set(sunday(30, 0) + Duration::days(7) + Duration::hours(5));
            let out = t.engine.run_drill_schedules().await.unwrap();
            let latest = sunday(30, 0) + Duration::days(7);
            expect_opened(&t, &out, latest, true);
            assert_eq!(drills(&t).len(), 3);
            assert_eq!(t.engine.run_drill_schedules().await.unwrap(), vec![]);

            // A restart right away neither repeats it nor loses the next.
            let t = restart(t, &source).await;
            assert_eq!(t.engine.run_drill_schedules().await.unwrap(), vec![]);
            assert_eq!(drills(&t).len(), 3);

            // Every drill ran on a copy: the real workload was only read.
            assert_eq!(resource_versions(&source), before);
            assert!(
                source.requests().iter().all(|r| r.method == "GET"),
                "the source was written to"
            );
            t.ignore_messages();
            t
        },
    )
    .await;
}

#[tokio::test]
async fn a_drill_opened_before_a_crash_is_not_opened_again() {
    let source = bounded(source()).await;
    let t = tester(&source);
    run_test_in(
        || t,
        |t| async move {
            t.engine.run_drill_schedules().await.unwrap();
            let mark = t.engine.store().drill_mark(&payment()).unwrap().unwrap();
            t.clock.set(sunday(16, 1));
            let out = t.engine.run_drill_schedules().await.unwrap();
            expect_opened(&t, &out, sunday(16, 0), false);
            // rollbot stopped after storing the drill, before moving the mark.
            t.engine.store().set_drill_mark(&payment(), &mark).unwrap();
            let t = restart(t, &source).await;
            let out = t.engine.run_drill_schedules().await.unwrap();
            // The drill is still open, so it stands for this scheduled time.
            assert!(
                matches!(&out[..], [ScheduleOutcome::Skipped { why, .. }] if why.contains("already has a drill in progress")),
                "{out:?}"
            );
            assert_eq!(drills(&t).len(), 1);
            assert_eq!(
                t.engine.store().drill_mark(&payment()).unwrap(),
                Some(DrillMark {
                    slot: sunday(16, 0),
                    drill: Some(drills(&t)[0].id.clone()),
                })
            );
            t.ignore_messages();
            t
        },
    )
    .await;
}

#[tokio::test]
async fn the_next_incidents_report_compares_it_with_the_drill() {
    let source = bounded(source()).await;
    let t = tester(&source);
    run_test_in(
        || t,
        |t| async move {
            t.engine.run_drill_schedules().await.unwrap();
            t.clock.set(sunday(16, 0));
            let out = t.engine.run_drill_schedules().await.unwrap();
            let [ScheduleOutcome::Opened { id: drill, .. }] = &out[..] else {
                panic!("{out:?}")
            };
            // The on-call pair decides after three minutes.
            t.clock.advance(Duration::minutes(3));
            t.approve(drill, "slack:UBOB").await;
            t.approve(drill, "slack:UCAROL").await;
            t.settle().await;
            t.proposal(drill).expect_state(State::RolledBack);

            // A real incident a week later takes ten minutes to decide.
            t.clock.set(sunday(23, 30));
            let p = t.propose_by("slack:UALICE").await.unwrap();
            t.clock.advance(Duration::minutes(10));
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            // The report as `rollbot report` and the thread draft it.
            let report = t.engine.report(&p.id, "en").await.unwrap().markdown;
            assert!(report.contains("## Compared with drills"), "{report}");
            assert!(
                report.contains("| Time to decision | 10 min | 3 min |"),
                "{report}"
            );
            assert!(
                report.contains("last 1 drill(s), the latest opened 2025-03-16 17:00:00 UTC"),
                "{report}"
            );
            t.ignore_messages();
            t
        },
    )
    .await;
}
