//! Odd but possible inputs at the HTTP edge, through the real router: header
//! values that are malformed, at the edges of their number type, or mixed
//! with valid ones. Each must get a clean answer, never a dropped connection.

mod support;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use support::*;

const PD_FIXTURE: &str = "tests/data/alerts/pagerduty/webhook_v3.incident.triggered.assembled.json";

const SEARCH_ROUTE: &str = r#"
    [[alerts.routes]]
    matchers = ["service=~search|API Service"]
    service = "search"
"#;

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// PagerDuty lists several `v1=` signatures during secret rotation; a
/// damaged entry before the valid one used to reject the delivery.
#[tokio::test]
async fn a_pagerduty_signature_list_with_a_malformed_entry_still_authenticates() {
    run_test_in(
        || Tester::with_alerts(SEARCH_ROUTE),
        |t| async move {
            let s = t.serve().await;
            let body = std::fs::read(PD_FIXTURE).unwrap();
            let good = hmac_hex(PD_SECRET, &body);

            // Only malformed entries: refused, and nothing stored.
            let r = s
                .post(
                    "/webhooks/pagerduty",
                    &[("x-pagerduty-signature", "v1=not-hex, v1=abc")],
                    body.clone(),
                )
                .await;
            assert_eq!(r.status(), 401);
            let v: Value = r.json().await.unwrap();
            assert!(
                v["error"]
                    .as_str()
                    .unwrap()
                    .contains("malformed X-PagerDuty-Signature"),
                "{v}"
            );
            assert!(t.proposals().is_empty());

            // The same list with the real signature after the damaged entries.
            let header = format!("v1=not-hex, v1=abc, v1={good}");
            let r = s
                .post(
                    "/webhooks/pagerduty",
                    &[("x-pagerduty-signature", &header)],
                    body,
                )
                .await;
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["outcomes"][0]["outcome"], "proposed", "{v}");
            assert_eq!(v["outcomes"][0]["service"], "search", "{v}");
            let p = t.expect_new_proposal();
            assert_eq!(t.engine.get(&p).unwrap().service.as_str(), "search");
            t
        },
    )
    .await;
}

/// Sends raw request bytes and returns the status line hyper answers.
async fn raw_status(base: &str, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    // Read until the status line is complete; the server may keep the
    // connection open, so stop at the first line.
    while !answer.contains(&b'\n') {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_string()
}

/// Content-Length values at and past the edge of `u64`, against the body
/// limit: a clean 4xx, and the server keeps answering.
#[tokio::test]
async fn absurd_content_lengths_are_refused_cleanly() {
    run_test_in(|| Tester::with_alerts(PAYMENT_ROUTE), |t| async move {
        let s = t.serve().await;
        for length in [
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999999",
            "-1",
        ] {
            let request = format!(
                "POST /webhooks/alertmanager HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {AM_TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n{{}}"
            );
            let status = raw_status(&s.base, request).await;
            assert!(
                status.starts_with("HTTP/1.1 4"),
                "content-length {length}: {status}"
            );
        }
        let r = s
            .client
            .get(format!("{}/healthz", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(t.proposals().is_empty());
        t
    })
    .await;
}
