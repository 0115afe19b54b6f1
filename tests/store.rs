//! The sled store: durability, schema versions, corrupt values.

mod support;

use rollbot::domain::ProposalId;
use rollbot::store::{Claim, Store, StoreError};
use support::*;

#[tokio::test]
async fn a_value_written_by_schema_v1_still_loads() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let v1 = std::fs::read("tests/data/store/proposal.v1.json").unwrap();
        store.raw_insert("proposals", b"RB-7K3M9Q", &v1).unwrap();
        let p = store
            .get(&ProposalId::parse("RB-7K3M9Q").unwrap())
            .unwrap()
            .expect("stored");
        assert_eq!(p.plan.target.images[0].image, "payment-api:v1.2.0");
        assert_eq!(p.approvals.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_corrupt_value_is_an_error_naming_the_key() {
    bounded(async {
        let store = Store::temporary().unwrap();
        store
            .raw_insert("proposals", b"RB-7K3M9Q", b"{not json")
            .unwrap();
        let err = store
            .get(&ProposalId::parse("RB-7K3M9Q").unwrap())
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }));
        let text = err.to_string();
        assert!(
            text.starts_with("stored value proposals/RB-7K3M9Q is unreadable"),
            "{text}"
        );
        // Listing fails the same way instead of panicking or hiding it.
        assert!(store.list().unwrap_err().to_string().contains("RB-7K3M9Q"));

        store
            .raw_insert(
                "proposals",
                b"RB-7K3M9Q",
                br#"{"v":1,"data":{"id":"RB-7K3M9Q"}}"#,
            )
            .unwrap();
        let text = store.list().unwrap_err().to_string();
        assert!(
            text.contains("proposals/RB-7K3M9Q") && text.contains("missing field"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_value_from_a_newer_rollbot_is_refused_clearly() {
    bounded(async {
        let store = Store::temporary().unwrap();
        store
            .raw_insert("proposals", b"RB-7K3M9Q", br#"{"v":99,"data":{}}"#)
            .unwrap();
        let err = store
            .get(&ProposalId::parse("RB-7K3M9Q").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
        assert!(err.to_string().contains("run a newer rollbot"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn dedup_keys_are_claimed_once_and_survive_restart() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(
                store.claim("slack:Ev123", "RB-7K3M9Q", t0()).unwrap(),
                Claim::New
            );
            let Claim::Seen(e) = store.claim("slack:Ev123", "other", t0()).unwrap() else {
                panic!("second claim must see the first");
            };
            assert_eq!(e.value, "RB-7K3M9Q");
            store.flush().await.unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(matches!(
            store.claim("slack:Ev123", "again", t0()).unwrap(),
            Claim::Seen(_)
        ));
    })
    .await;
}

#[tokio::test]
async fn a_second_process_on_the_same_store_gets_a_clear_error() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().expect("the lock is held");
        assert!(
            err.to_string().contains("no other rollbot process"),
            "{err}"
        );
    })
    .await;
}
