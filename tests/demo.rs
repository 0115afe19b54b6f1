//! `rollbot demo` as a newcomer runs it: the real binary, as a subprocess.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_rollbot");

#[tokio::test]
async fn the_demo_runs_the_reference_incident_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BIN)
            .args(["demo", "--out"])
            .arg(dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the demo finishes within 60 s")
    .unwrap();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "🔁 Rollback proposal RB-",
        "Now: payment-api:v1.3.0 (revision 3)",
        "Roll back to: payment-api:v1.2.0 (revision 2)",
        "Recommendation: roll back now",
        "not an authorised approver for payment-api",
        "console:alice: ✅",
        "Your approval of RB-",
        "already counts (1 of 2): the two-person rule needs a second, different person.",
        "console:bob: ✅",
        "Approvals: 2 of 2: console:alice, console:bob",
        "Waiting for deployment \"prod-payment-deploy\" rollout to finish",
        "deployment \"prod-payment-deploy\" successfully rolled out",
        "✅ Verification passed",
        "payment success rate: 0.998",
        "Status: rolled back and verified",
        "✅ Resolved: payment-api",
        "📄 Draft incident report:",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let report = text
        .lines()
        .find_map(|l| l.strip_prefix("Report: "))
        .expect("the demo prints where the report is");
    let chart = text
        .lines()
        .find_map(|l| l.strip_prefix("Chart:  "))
        .expect("the demo prints where the chart is");
    let md = std::fs::read_to_string(report).unwrap();
    assert!(
        md.contains("| payment success rate | >= 0.98 | 0.95 | 0.998 | ✅ |"),
        "{md}"
    );
    let png = std::fs::read(chart).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "the chart is a PNG");
    println!("demo took {took:?}");
}

/// The person at the keyboard approves through a pseudo-terminal (util-linux
/// `script` provides it), tries again, and sees the two-person rule.
#[tokio::test]
async fn an_interactive_demo_takes_the_keyboard_users_vote() {
    let dir = tempfile::tempdir().unwrap();
    let command = format!("{BIN} demo --interactive --out {}", dir.path().display());
    let mut child = tokio::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("util-linux `script` is needed for the pseudo-terminal; run scripts/test.sh");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut transcript = String::new();
    let run = async {
        let mut prompts = 0;
        while let Some(line) = lines.next_line().await.unwrap() {
            transcript.push_str(&line);
            transcript.push('\n');
            if line.contains("Type approve or reject") {
                prompts += 1;
                // A pty echoes what we type; only answer the first two prompts.
                if prompts <= 2 {
                    stdin.write_all(b"approve\n").await.unwrap();
                    stdin.flush().await.unwrap();
                }
            }
            if line.starts_with("Report: ") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("the interactive demo did not finish:\n{transcript}"));
    for expected in [
        "console:you: ✅",
        "Approvals: 1 of 2: console:you",
        "(only visible to console:you)",
        "already counts (1 of 2)",
        "console:bob: ✅",
        "Approvals: 2 of 2: console:you, console:bob",
        "✅ Verification passed",
    ] {
        assert!(
            transcript.contains(expected),
            "missing {expected:?} in:\n{transcript}"
        );
    }
}
