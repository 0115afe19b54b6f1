//! Discord's documented payloads and signing vectors (`tests/data/discord/`)
//! against rollbot's decoding and signature check.

use rollbot::chat::discord::inbound::{self, SignatureError};
use serde_json::Value;

fn data(path: &str) -> Vec<u8> {
    let p = format!("{}/tests/data/discord/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn vectors() -> Value {
    serde_json::from_slice(&data("signing/discord_ed25519_vectors.json")).unwrap()
}

/// The vectors' time: their timestamps are all 1700000000.
const THEN: i64 = 1_700_000_000;

#[test]
fn the_signing_vectors_verify_and_the_forgeries_do_not() {
    let v = vectors();
    let key = v["rfc8032_test1"]["public_key_hex"].as_str().unwrap();
    let mut checked = 0;
    for case in v["positive"].as_array().unwrap() {
        // Bodies are the documented payloads next to the vectors.
        let Some(file) = case["body_file"].as_str() else {
            continue;
        };
        let path = file.trim_start_matches("../");
        if !std::path::Path::new(&format!(
            "{}/tests/data/discord/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .exists()
        {
            continue;
        }
        let body = data(path);
        let verifier = inbound::verifier(case["public_key_hex"].as_str().unwrap()).unwrap();
        let h = &case["headers"];
        assert_eq!(
            inbound::verify_signature(
                &verifier,
                h["X-Signature-Ed25519"].as_str(),
                h["X-Signature-Timestamp"].as_str(),
                &body,
                THEN,
            ),
            Ok(()),
            "{}",
            case["id"]
        );
        // The same request ten minutes later is a replay.
        assert!(matches!(
            inbound::verify_signature(
                &verifier,
                h["X-Signature-Ed25519"].as_str(),
                h["X-Signature-Timestamp"].as_str(),
                &body,
                THEN + 600,
            ),
            Err(SignatureError::Stale(600))
        ));
        checked += 1;
    }
    assert_eq!(checked, 4, "every vector with its body is checked");
    let verifier = inbound::verifier(key).unwrap();
    let body = data("interactions/application_command.slash_with_option.docs.json");
    let good = v["positive"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "slash_command_docs_body")
        .unwrap()["headers"]["X-Signature-Ed25519"]
        .as_str()
        .unwrap()
        .to_string();
    // A changed body, timestamp or signature, another key, no headers.
    let mut changed = body.clone();
    changed.push(b' ');
    let at = |sig: Option<&str>, ts: Option<&str>, body: &[u8]| {
        inbound::verify_signature(&verifier, sig, ts, body, THEN)
    };
    assert_eq!(
        at(Some(&good), Some("1700000000"), &changed),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        at(Some(&good), Some("1699990000"), &body),
        Err(SignatureError::Mismatch)
    );
    for case in v["negative"].as_array().unwrap() {
        let sig = case["headers"]["X-Signature-Ed25519"].as_str();
        assert_eq!(
            at(sig, Some("1700000000"), &body),
            Err(SignatureError::Mismatch),
            "{}",
            case["id"]
        );
    }
    let other =
        inbound::verifier("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
            .unwrap();
    assert_eq!(
        inbound::verify_signature(&other, Some(&good), Some("1700000000"), &body, THEN),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        at(None, Some("1700000000"), &body),
        Err(SignatureError::Missing("X-Signature-Ed25519"))
    );
    assert_eq!(
        at(Some(&good), None, &body),
        Err(SignatureError::Missing("X-Signature-Timestamp"))
    );
}

/// Discord's examples omit fields serenity's model requires; rollbot reads
/// what it uses from every one of them.
#[test]
fn documented_interactions_decode() {
    let slash = inbound::decode(&data(
        "interactions/application_command.slash_with_option.docs.json",
    ))
    .unwrap();
    assert_eq!((slash.kind, slash.id.as_str()), (2, "786008729715212338"));
    assert_eq!(slash.user_id(), Some("53908232506183680"));
    assert_eq!(
        slash.roles().into_iter().collect::<Vec<_>>(),
        ["discord-role:539082325061836999"]
    );
    assert_eq!(slash.channel_id.as_deref(), Some("645027906669510667"));
    assert_eq!(
        inbound::locale_of(slash.locale.as_deref()).as_deref(),
        Some("en")
    );
    let full = inbound::decode(&data(
        "interactions/application_command.slash_with_options.full.assembled.json",
    ))
    .unwrap();
    assert_eq!(full.data.unwrap().name.as_deref(), Some("rollback"));
    for file in [
        "interactions/message_component.button.docs_2024.json",
        "interactions/message_component.button.full.assembled.json",
    ] {
        let b = inbound::decode(&data(file)).unwrap();
        assert_eq!(b.kind, 3, "{file}");
        assert_eq!(
            b.data.as_ref().unwrap().custom_id.as_deref(),
            Some("click_one"),
            "{file}"
        );
        assert_eq!(b.user_id(), Some("53908232506183680"), "{file}");
    }
    // Something that is not an interaction names what is wrong.
    let e = inbound::decode(br#"{"id": "1", "type": "two", "token": "t"}"#).unwrap_err();
    assert!(e.to_string().contains("type"), "{e}");
}
