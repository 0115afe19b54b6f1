//! Every captured Slack payload under `tests/data/slack/` (copied from
//! the shared fixtures) is read by the code that handles its kind.

use rollbot::chat::slack::inbound::{SignatureError, verify_signature};
use serde_json::Value;
use slack_morphism::prelude::*;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("tests/data/slack/{path}")).unwrap()
}

#[test]
fn every_fixture_file_is_covered() {
    let mut seen = Vec::new();
    for dir in ["events", "signing", "slash_command", "web_api"] {
        for e in std::fs::read_dir(format!("tests/data/slack/{dir}")).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name != "RULES.md" {
                seen.push(format!("{dir}/{name}"));
            }
        }
    }
    seen.sort();
    insta::assert_yaml_snapshot!(seen);
}

#[test]
fn events_parse_into_slack_morphism_push_events() {
    for name in ["reaction_added", "reaction_removed"] {
        let ev: SlackPushEvent =
            serde_json::from_str(&read(&format!("events/{name}.docs.json"))).unwrap();
        let SlackPushEvent::EventCallback(cb) = ev else {
            panic!("{name} is not an event callback")
        };
        assert_eq!(cb.event_id.0, "Ev123ABC456");
        let (user, reaction, item) = match cb.event {
            SlackEventCallbackBody::ReactionAdded(r) => (r.user, r.reaction, r.item),
            SlackEventCallbackBody::ReactionRemoved(r) => (r.user, r.reaction, r.item),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(
            (user.0.as_str(), reaction.0.as_str()),
            ("U123ABC456", "thumbsup")
        );
        let SlackReactionsItem::Message(m) = item else {
            panic!("{name}: item is not a message")
        };
        assert_eq!(m.origin.ts.0, "1360782400.498405");
        assert_eq!(m.origin.channel.unwrap().0, "C123ABC456");
    }
    let ev: SlackPushEvent =
        serde_json::from_str(&read("events/url_verification.docs.json")).unwrap();
    let SlackPushEvent::UrlVerification(v) = ev else {
        panic!("not url_verification")
    };
    let expected = read("events/url_verification.expected_responses.txt");
    assert!(expected.contains(&format!("{{\"challenge\":\"{}\"}}", v.challenge)));
}

#[test]
fn the_documented_slash_command_form_parses_and_its_signature_verifies() {
    let form = read("slash_command/docs_signing_example.form.txt");
    let ev: SlackCommandEvent = serde_urlencoded::from_str(form.trim_end()).unwrap();
    assert_eq!(ev.user_id.0, "U2CERLKJA");
    assert_eq!(ev.channel_id.0, "G8PSS9T3V");
    assert_eq!(ev.command.0, "/webhook-collect");
    assert_eq!(ev.text.as_deref(), Some(""));

    let vectors: Value =
        serde_json::from_str(&read("signing/slack_signature_vectors.json")).unwrap();
    for v in vectors["vectors"].as_array().unwrap() {
        let body = v["body"].as_str().unwrap();
        let secret = v["signing_secret"].as_str().unwrap();
        let sig = v["headers"]["X-Slack-Signature"].as_str();
        let ts = v["headers"]["X-Slack-Request-Timestamp"].as_str();
        let now = v["now_for_test"].as_i64().unwrap();
        assert_eq!(
            verify_signature(secret, sig, ts, body.as_bytes(), now),
            Ok(()),
            "{}",
            v["id"]
        );
        let tampered = format!("{body}------");
        assert_eq!(
            verify_signature(secret, sig, ts, tampered.as_bytes(), now),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify_signature(
                secret,
                sig,
                ts,
                body.as_bytes(),
                chrono::Utc::now().timestamp()
            ),
            Err(SignatureError::Stale(_))
        ));
        assert_eq!(
            verify_signature(secret, None, None, body.as_bytes(), now),
            Err(SignatureError::Missing("X-Slack-Signature"))
        );
    }
    assert_eq!(
        form.trim_end(),
        vectors["vectors"][0]["body"].as_str().unwrap(),
        "the form file is the signed body"
    );
}

#[test]
fn web_api_responses_parse_into_slack_morphism_types() {
    let ok = |name: &str| read(&format!("web_api/{name}"));
    let r: SlackApiChatPostMessageResponse =
        serde_json::from_str(&ok("chat.postMessage.ok.openapi.json")).unwrap();
    assert_eq!(r.ts.0, "1503435956.000247");
    let r: SlackApiChatUpdateResponse =
        serde_json::from_str(&ok("chat.update.ok.openapi.json")).unwrap();
    assert_eq!(r.ts.0, "1401383885.000061");
    let r: SlackApiFilesGetUploadUrlExternalResponse =
        serde_json::from_str(&ok("files.getUploadURLExternal.ok.docs.json")).unwrap();
    assert_eq!(r.file_id.0, "F123ABC456");
    let r: SlackApiFilesCompleteUploadExternalResponse =
        serde_json::from_str(&ok("files.completeUploadExternal.ok.docs.json")).unwrap();
    assert_eq!(r.files.len(), 1);
    let r: SlackApiReactionsGetResponse =
        serde_json::from_str(&ok("reactions.get.message.ok.assembled_from_docs.json")).unwrap();
    assert!(matches!(r, SlackApiReactionsGetResponse::Message(_)));
    // The documented file item does not fit slack-morphism's model; rollbot
    // never calls reactions.get for this reason.
    let file = ok("reactions.get.file.ok.openapi.json");
    assert!(serde_json::from_str::<SlackApiReactionsGetResponse>(&file).is_err());
    assert_eq!(
        serde_json::from_str::<Value>(&file).unwrap()["type"],
        "file"
    );
    for (name, code) in [
        (
            "chat.postMessage.error.openapi.json",
            "too_many_attachments",
        ),
        ("chat.update.error.openapi.json", "cant_update_message"),
        ("error.generic.json", "invalid_auth"),
        ("files.getUploadURLExternal.error.docs.json", "invalid_auth"),
        ("reactions.get.error.openapi.json", "invalid_auth"),
    ] {
        let v: Value = serde_json::from_str(&ok(name)).unwrap();
        assert_eq!(
            (v["ok"].as_bool(), v["error"].as_str()),
            (Some(false), Some(code)),
            "{name}"
        );
    }
}

#[test]
fn the_rate_limit_response_carries_retry_after() {
    let text = read("web_api/rate_limited.429.http.txt");
    let (head, body) = text.split_once("\n\n").unwrap();
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("HTTP/1.1 429 Too Many Requests"));
    let retry = lines
        .filter_map(|l| l.split_once(": "))
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.trim().parse::<u64>().unwrap());
    assert_eq!(retry, Some(1));
    let v: Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(v["error"], "ratelimited");
}
