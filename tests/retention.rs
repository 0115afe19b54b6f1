//! Retention: deduplication keys expire, so an alert stream cannot grow the
//! store without bound, and what an alert that only joins an open proposal
//! costs.

mod support;

use chrono::Duration;
use rollbot::domain::MessageRef;
use rollbot::store::Claim;
use support::*;

#[tokio::test]
async fn dedup_keys_expire_after_the_retention_and_message_bindings_stay() {
    run_test(|t| async move {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.expect_posted(&p.id);
        let store = t.engine.store();
        let old = t0() - Duration::days(8);
        store.claim("alert:old", p.id.as_str(), old).unwrap();
        store.claim("slack:event:EvOld", "seen", old).unwrap();
        store.claim("alert:new", p.id.as_str(), t0()).unwrap();
        let at: MessageRef = p.primary_message().unwrap().clone();
        assert_eq!(store.sweep_dedup(t0() - Duration::days(7)).unwrap(), 2);
        assert!(store.seen("alert:old").unwrap().is_none());
        assert!(store.seen("slack:event:EvOld").unwrap().is_none());
        assert!(store.seen("alert:new").unwrap().is_some());
        // The proposal's message binding is not a dedup key: it stays.
        assert_eq!(store.message_owner(&at).unwrap(), Some(p.id.clone()));
        // Through the engine: the tick sweeps with the configured retention.
        t.engine
            .set_dedup_retention(std::time::Duration::from_secs(3600));
        t.clock.advance(Duration::hours(2));
        t.engine.tick().await.unwrap();
        assert!(store.seen("alert:new").unwrap().is_none());
        assert_eq!(store.claim("alert:new", "again", t0()).unwrap(), Claim::New);
        assert_eq!(store.message_owner(&at).unwrap(), Some(p.id));
        t
    })
    .await;
}

/// A day of alerts, one delivery of five new alerts every 30 s (injected
/// clock), joining the open proposal, with a retention of 1 h: the dedup
/// keys level off at what an hour (plus one sweep interval) holds, and
/// alerts past the kept ones do not rewrite the proposal. Prints the
/// figures.
#[tokio::test]
async fn a_day_of_alerts_keeps_the_store_bounded() {
    // 2,880 deliveries and ticks: more than the usual minute on a loaded
    // 2-core CI machine in a debug build.
    let limit = std::time::Duration::from_secs(240);
    run_test_within(limit, || Tester::with_alerts(PAYMENT_ROUTE), |t| async move {
        t.engine
            .set_dedup_retention(std::time::Duration::from_secs(3600));
        let server = t.serve().await;
        const PER_DELIVERY: usize = 5;
        const EVERY_SECONDS: i64 = 30;
        let deliveries = 24 * 3600 / EVERY_SECONDS;
        let mut max_keys = 0;
        let mut first_hour = None;
        for n in 0..deliveries {
            let now = t0() + Duration::seconds(n * EVERY_SECONDS);
            let starts = now.to_rfc3339();
            let alerts = (0..PER_DELIVERY)
                .map(|i| {
                    am_alert(
                        "PaymentErrors",
                        &[("instance", &format!("i-{n}-{i}"))],
                        "firing",
                        &starts,
                        "0001-01-01T00:00:00Z",
                    )
                })
                .collect();
            let r = server.alertmanager(&am_body(alerts)).await;
            assert_eq!(r.status(), 200, "delivery {n}");
            t.clock.advance(Duration::seconds(EVERY_SECONDS));
            // The serve loop ticks every 5 s; one tick per delivery here.
            t.engine.tick().await.unwrap();
            let sizes = t.engine.store().sizes().unwrap();
            max_keys = max_keys.max(sizes.dedup_keys);
            if n == 3600 / EVERY_SECONDS {
                first_hour = Some(sizes);
            }
        }
        let end = t.engine.store().sizes().unwrap();
        // Unanswered proposals expire after 30 min; the next alert opens
        // a new one, which the following alerts join.
        let proposals = t.proposals();
        assert_eq!(proposals.len(), 48, "one proposal per half hour");
        for p in &proposals {
            t.expect_posted(&p.id);
        }
        let total = deliveries as u64 * PER_DELIVERY as u64;
        let counted: u64 = proposals
            .iter()
            .map(|p| p.alerts.len() as u64 + p.extra_alerts)
            .sum();
        assert_eq!(counted, total, "every alert is on a proposal");
        // Two keys per alert (delivery and fingerprint) for at most the
        // retention plus one sweep interval (10 min) of deliveries.
        let bound = 2 * PER_DELIVERY * ((3600 + 600) / EVERY_SECONDS as usize + 1);
        assert!(max_keys <= bound, "{max_keys} dedup keys > {bound}");
        let first_hour = first_hour.unwrap();
        let per_alert = end.dedup_bytes as f64 / end.dedup_keys as f64 * 2.0;
        println!(
            "24 h, {total} alerts: dedup keys max {max_keys} (bound {bound}), at 1 h {}, at 24 h {}; \
             dedup bytes at 24 h {} ({per_alert:.0} B per alert: two keys); \
             on disk at 1 h {} B, at 24 h {} B",
            first_hour.dedup_keys,
            end.dedup_keys,
            end.dedup_bytes,
            first_hour.bytes_on_disk,
            end.bytes_on_disk,
        );
        assert!(
            end.bytes_on_disk < 64 * 1024 * 1024,
            "the store grew to {} bytes",
            end.bytes_on_disk
        );
        t
    })
    .await;
}
