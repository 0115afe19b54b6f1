//! Throughput figures for the paths that matter during an incident. Prints
//! numbers; asserts nothing about time. Run with `cargo bench`.
//!
//! - engine: propose → two approvals → scripted rollback, on an on-disk
//!   sled store (every decision flushed), sequentially;
//! - webhook: Alertmanager deliveries through the real router (auth, parse,
//!   route, dedup, attach), each carrying 20 distinct alerts.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn engine() {
    let t = Tester::new();
    let n = 300;
    let mut decisions = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let p = t.propose_by("slack:UALICE").await.unwrap();
        t.approve(&p.id, "slack:UBOB").await;
        let vote = Instant::now();
        t.approve(&p.id, "slack:UCAROL").await;
        decisions.push(vote.elapsed());
        t.engine.wait_idle().await;
    }
    let total = start.elapsed();
    decisions.sort();
    println!(
        "engine: {n} proposals (propose, 2 votes, rollback) in {:.2?} = {:.0}/s; final vote to Executing p50 {:.2?}, p99 {:.2?}",
        total,
        n as f64 / total.as_secs_f64(),
        percentile(&decisions, 0.5),
        percentile(&decisions, 0.99),
    );
}

async fn webhook() {
    let t = Tester::with_alerts(PAYMENT_ROUTE);
    let server = t.serve().await;
    let deliveries = 500;
    let per = 20;
    let mut latencies = Vec::with_capacity(deliveries);
    let start = Instant::now();
    for d in 0..deliveries {
        let alerts = (0..per)
            .map(|i| {
                let pod = format!("pod-{d}-{i}");
                am_alert(
                    "PaymentSuccessRateLow",
                    &[("pod", pod.as_str())],
                    "firing",
                    "2025-03-14T14:30:00Z",
                    "0001-01-01T00:00:00Z",
                )
            })
            .collect();
        let body = am_body(alerts);
        let sent = Instant::now();
        let r = server.alertmanager(&body).await;
        assert_eq!(r.status(), 200);
        latencies.push(sent.elapsed());
    }
    let total = start.elapsed();
    latencies.sort();
    println!(
        "webhook: {deliveries} Alertmanager deliveries x {per} alerts in {:.2?} = {:.0} deliveries/s, {:.0} alerts/s; p50 {:.2?}, p99 {:.2?}; proposals opened: {}",
        total,
        deliveries as f64 / total.as_secs_f64(),
        (deliveries * per) as f64 / total.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        t.engine.store().list().unwrap().len(),
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(engine());
    rt.block_on(webhook());
}
