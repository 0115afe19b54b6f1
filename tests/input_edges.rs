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
    bounded(async {
        let t = Tester::with_alerts(SEARCH_ROUTE);
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
    })
    .await;
}
