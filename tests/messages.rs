//! Messages as people read them, on every platform and in every locale:
//!
//! - the same incident rendered for Slack and for the console in `en`, `zh`
//!   and `ja` (snapshots);
//! - no English sentence in a Chinese or Japanese message, apart from
//!   quoted program output and identifiers (a check that is shown to catch
//!   what rollbot used to print);
//! - a drill marked as one in every message a person can see;
//! - the Slack resolved notice carrying the runbooks' `[RESOLVED]` facts.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use regex::Regex;
use rollbot::chat::commands::CommandError;
use rollbot::chat::console::ConsoleChat;
use rollbot::chat::slack::render::{self, Emoji, Reply, Summary};
use rollbot::chat::stats::Stats;
use rollbot::config::LOCALES;
use rollbot::domain::decision::Finding;
use rollbot::domain::{
    Advice, AlertRef, Origin, Proposal, ProposalId, Recommendation, Refusal, ResumeStep,
    ServiceName, State, Vote, VoteVia,
};
use rollbot::ports::{
    Chat, CheckResult, Evidence, ExecError, ExecErrorKind, PrivateNote, ThreadNote,
    UnreachableSource,
};
use rollbot::templates::Templates;
use support::{reference_plan, user};

// What the world says (people, alerts, programs): it may be English in any
// locale, so the English check leaves it out.
const REASON: &str = "payment success rate 95% (v1.3.0)";
const SUMMARY: &str = "payment success rate below 98% for 5 minutes";
const PROGRESS: &str = "Waiting for deployment \"prod-payment-deploy\" rollout to finish: 1 of 3 updated replicas are available...";
const ROLLED_OUT: &str = "deployment \"prod-payment-deploy\" successfully rolled out";
const MOVED: &str = "the deployment moved to revision 4";
const FORBIDDEN: &str = "deployments.apps \"prod-payment-deploy\" is forbidden: User \"system:serviceaccount:rollbot:rollbot\" cannot patch resource \"deployments\"";
const SOURCE: &str = "Prometheus at http://prometheus:9090";
const REFUSED: &str = "Connection refused (os error 111)";
const UNREACHABLE_VALUE: &str = "cannot reach http://prometheus:9090/api/v1/query";
const WORKLOAD: &str = "deployment production/prod-payment-deploy";
const CHECK: &str = "payment success rate";
const BLOCKER: &str = "pre-check schema-diff: exit 3: 2 migrations drop columns";
// Program output (the executor's details, sources' errors) is not listed:
// every layout quotes it as code.
const WORLD: &[&str] = &[
    REASON,
    SUMMARY,
    // The console shows progress lines as they come, after ⏳.
    PROGRESS,
    UNREACHABLE_VALUE,
    WORKLOAD,
    CHECK,
    BLOCKER,
    "deploy v1.3.0",
    "deploy v1.2.0",
];

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, h, m, 0).unwrap()
}

/// The reference incident: an alert, a recommendation, two approvals.
fn incident(locale: &str) -> Proposal {
    let vote = |u: &str, t| Vote {
        user: user(u),
        via: VoteVia::Reaction,
        at: t,
    };
    Proposal {
        id: ProposalId::parse("RB-7K3M9Q").unwrap(),
        service: ServiceName::parse("payment-api").unwrap(),
        origin: Origin::Alert,
        proposer: user("slack:UROLLBOT"),
        reason: REASON.into(),
        plan: reference_plan(),
        created_at: at(14, 31),
        expires_at: at(15, 1),
        state: State::Proposed,
        required: 2,
        single_approver: false,
        approvals: vec![vote("slack:UALICE", at(14, 33))],
        rejected_by: None,
        messages: vec![],
        alerts: vec![AlertRef {
            source: "alertmanager".into(),
            name: "PaymentSuccessRateLow".into(),
            fingerprint: "f1".into(),
            summary: Some(SUMMARY.into()),
            starts_at: at(14, 30),
            ends_at: None,
            links: vec![],
            labels: Default::default(),
        }],
        extra_alerts: 0,
        alert_resolved_at: None,
        recommendation: Some(Recommendation {
            advice: Advice::RollBackNow,
            because: vec![Finding::HighAllUsersOver5Min, Finding::UrgentNoQuickFix],
        }),
        timeline_len: 0,
        updated_at: at(14, 31),
        drill: false,
        no_checks: false,
        locale: locale.into(),
    }
}

/// The incident once approved, rolled back, verified and resolved.
fn resolved(locale: &str) -> Proposal {
    let mut p = incident(locale);
    p.approvals.push(Vote {
        user: user("slack:UCAROL"),
        via: VoteVia::Button,
        at: at(14, 35),
    });
    p.state = State::Verified;
    p.alert_resolved_at = Some(at(15, 0));
    p.updated_at = at(15, 0);
    p
}

fn check(passed: bool, value: &str) -> CheckResult {
    CheckResult {
        name: CHECK.into(),
        passed,
        value: value.into(),
    }
}

/// The thread of the incident as it happened.
fn incident_notes(t: &Templates, p: &Proposal) -> Vec<ThreadNote> {
    let draft = rollbot::report::draft(t, p, &[], &Evidence::default(), &p.locale).unwrap();
    vec![
        ThreadNote::ExecutionStarted,
        ThreadNote::Progress {
            line: PROGRESS.into(),
        },
        ThreadNote::ExecutionFinished {
            ok: true,
            detail: ROLLED_OUT.into(),
        },
        ThreadNote::Verification {
            passed: true,
            checks: vec![check(true, "0.998")],
        },
        ThreadNote::Resolved {
            check: Some(check(true, "0.998")),
            status_update: Some(rollbot::report::status_update(t, p, &[], at(15, 0)).unwrap()),
        },
        ThreadNote::Report {
            markdown: draft.markdown,
            chart_png: None,
        },
    ]
}

/// Every other thread note, on the paths the incident did not take.
fn other_notes() -> Vec<ThreadNote> {
    vec![
        ThreadNote::ExecutionFailed {
            error: ExecError::new(ExecErrorKind::Forbidden, FORBIDDEN),
        },
        ThreadNote::ExecutionFailed {
            error: ExecError::new(ExecErrorKind::RolloutFailed, PROGRESS),
        },
        ThreadNote::ExecutionFinished {
            ok: false,
            detail: ROLLED_OUT.into(),
        },
        ThreadNote::Superseded {
            reason: MOVED.into(),
        },
        ThreadNote::Resumed {
            step: ResumeStep::Apply,
        },
        ThreadNote::Resumed {
            step: ResumeStep::Follow,
        },
        ThreadNote::Resumed {
            step: ResumeStep::Verify,
        },
        ThreadNote::Resumed {
            step: ResumeStep::BeforeHooks,
        },
        ThreadNote::Resumed {
            step: ResumeStep::AfterHooks,
        },
        ThreadNote::Resumed {
            step: ResumeStep::Report,
        },
        ThreadNote::AfterHookFailed {
            failure: "cdn-purge: exit status 1: purge request rejected".into(),
        },
        ThreadNote::Verification {
            passed: false,
            checks: vec![check(false, "0.95")],
        },
        ThreadNote::Unverified {
            checks: vec![check(false, UNREACHABLE_VALUE)],
            unreachable: vec![UnreachableSource {
                check: CHECK.into(),
                source: SOURCE.into(),
                error: REFUSED.into(),
            }],
        },
        ThreadNote::DrillChecksSkipped,
        ThreadNote::Reverted {
            reason: MOVED.into(),
        },
        ThreadNote::GitopsPaused {
            owner: "Argo CD application argocd/payments".into(),
            workload: "deployment production/prod-payment-deploy".into(),
            version: "payment-api:v1.2.0".into(),
            git: "https://git.example.com/deploy.git, path apps/payments".into(),
            rolled_back: true,
        },
        ThreadNote::GitopsPaused {
            owner: "Argo CD application argocd/payments".into(),
            workload: "deployment production/prod-payment-deploy".into(),
            version: "payment-api:v1.2.0".into(),
            git: "https://git.example.com/deploy.git, path apps/payments".into(),
            rolled_back: false,
        },
        ThreadNote::Resolved {
            check: None,
            status_update: None,
        },
        ThreadNote::ScheduledDrill {
            schedule: "0 2 * * 1".into(),
            timezone: "Asia/Tokyo".into(),
            slot: Utc.with_ymd_and_hms(2025, 3, 16, 17, 0, 0).unwrap(),
            late: true,
            notify: vec![user("slack:UBOB"), user("slack:UCAROL")],
        },
    ]
}

fn private_notes() -> Vec<PrivateNote> {
    let refused = |refusal| PrivateNote::VoteRefused { refusal };
    vec![
        refused(Refusal::Closed {
            state: State::Executing,
        }),
        refused(Refusal::Expired),
        refused(Refusal::Bot),
        refused(Refusal::NotAuthorised {
            service: "payment-api".into(),
        }),
        refused(Refusal::SelfApproval),
        PrivateNote::AlreadyCounted {
            approvals: 1,
            required: 2,
        },
    ]
}

/// Every command answer, for proposal `p` in its listings.
fn replies(p: &Proposal) -> Vec<Reply> {
    let error = |error| Reply::Error { error };
    vec![
        Reply::Help {
            services: vec!["payment-api".into(), "search".into()],
        },
        error(CommandError::UnknownVerb {
            verb: "stauts".into(),
            did_you_mean: Some("status".into()),
        }),
        error(CommandError::UnknownFlag {
            flag: "--to-revison".into(),
            did_you_mean: Some("--to-revision".into()),
        }),
        error(CommandError::MissingRevision),
        error(CommandError::DrillFlag {
            flag: "--to-revision".into(),
        }),
        error(CommandError::BadRevision { value: "x".into() }),
        error(CommandError::MissingArgument {
            verb: "history".into(),
            what: "a service name".into(),
            example: "payment-api".into(),
        }),
        error(CommandError::BadId {
            value: "RB-1".into(),
        }),
        error(CommandError::TooManyArguments {
            verb: "status".into(),
            max: "at most one proposal id".into(),
            extra: "more".into(),
        }),
        error(CommandError::ServiceFirst {
            flag: "--to-revision".into(),
            example: "payment-api".into(),
        }),
        error(CommandError::UnknownService {
            service: "paymnet-api".into(),
            did_you_mean: Some("payment-api".into()),
            known: "payment-api, search".into(),
        }),
        Reply::Internal {
            reference: "E-4F2A9C".into(),
        },
        Reply::Accepted {
            service: "payment-api".into(),
        },
        Reply::DrillAccepted {
            service: "payment-api".into(),
        },
        Reply::Cancelled {
            id: "RB-7K3M9Q".into(),
        },
        Reply::SyncResumed {
            service: "payment-api".into(),
            restored: vec![MOVED.into()],
        },
        Reply::Refused {
            error: rollbot::chat::reply::UserError::ResumeNotAllowed {
                service: ServiceName::parse("payment-api").unwrap(),
            },
        },
        Reply::Refused {
            error: rollbot::chat::reply::UserError::NothingToResume {
                service: ServiceName::parse("payment-api").unwrap(),
            },
        },
        Reply::Refused {
            error: rollbot::chat::reply::UserError::ResumeSync {
                service: ServiceName::parse("payment-api").unwrap(),
                error: ExecError::new(ExecErrorKind::Forbidden, MOVED),
            },
        },
        Reply::Proposals {
            title: "list",
            service: None,
            items: vec![Summary::of(p)],
        },
        Reply::Proposals {
            title: "one",
            service: None,
            items: vec![Summary::of(p)],
        },
        Reply::Proposals {
            title: "history",
            service: Some("payment-api".into()),
            items: vec![Summary::of(p)],
        },
        Reply::Proposals {
            title: "status",
            service: None,
            items: vec![],
        },
        Reply::Stats {
            stats: Stats {
                service: Some("payment-api".into()),
                days: 30,
                proposals: 4,
                rollbacks: 3,
                failed: 1,
                verification_failed: 1,
                rejected: 1,
                expired: 0,
                mttr_median: Some(1500),
                mttr_p90: Some(3960),
                decision_median: Some(300),
                decision_p90: Some(720),
                drills: 4,
                drills_expired: 1,
                drill_decision_median: Some(240),
                drill_mitigate_median: Some(420),
            },
        },
        Reply::Stats {
            stats: Stats {
                service: None,
                days: 7,
                proposals: 0,
                rollbacks: 0,
                failed: 0,
                verification_failed: 0,
                rejected: 0,
                expired: 0,
                mttr_median: None,
                mttr_p90: None,
                decision_median: None,
                decision_p90: None,
                drills: 0,
                drills_expired: 0,
                drill_decision_median: None,
                drill_mitigate_median: None,
            },
        },
        error(CommandError::BadStats {
            word: "--weeks".into(),
        }),
    ]
}

fn emoji() -> Emoji {
    Emoji {
        approve: "white_check_mark".into(),
        reject: "x".into(),
    }
}

/// Every `text` a Slack message shows: the notification text first, then
/// each block's, in order.
fn slack_texts(json: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v) {
                        ("text", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = vec![json["text"].as_str().unwrap_or_default().to_string()];
    walk(&json["blocks"], &mut out);
    out
}

/// The line of a `/rollback status|list|history` answer about one proposal.
fn listed_line(json: &serde_json::Value) -> String {
    slack_texts(json)
        .into_iter()
        .find(|l| l.starts_with("• "))
        .unwrap_or_else(|| panic!("no proposal line in {json}"))
}

/// The incident on Slack: the proposal, its edits, its thread, what voters
/// are told, and the command answers, each message's texts joined.
fn slack_incident(t: &Templates, locale: &str, drill: bool) -> Vec<String> {
    let mut p = incident(locale);
    let mut done = resolved(locale);
    p.drill = drill;
    done.drill = drill;
    let mut out = Vec::new();
    let mut push = |json: serde_json::Value| out.push(slack_texts(&json).join("\n"));
    push(render::proposal(t, &p, &emoji()).unwrap().json);
    for state in State::ALL {
        let mut edited = done.clone();
        edited.state = state;
        push(render::proposal(t, &edited, &emoji()).unwrap().json);
    }
    for note in incident_notes(t, &done).iter().chain(&other_notes()) {
        push(render::thread(t, &done, note).unwrap().json);
    }
    for note in private_notes() {
        push(render::private(t, &p, &note).unwrap().json);
    }
    for r in replies(&done) {
        push(render::reply(t, locale, &r).unwrap().json);
    }
    out
}

/// A `Write` the test can read back.
#[derive(Clone, Default)]
struct Screen(Arc<Mutex<Vec<u8>>>);

impl Write for Screen {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The incident in the terminal chat: the transcript, split into messages
/// (a header line and its indented body), with times and paths made stable.
async fn console_incident(t: &Templates, locale: &str, drill: bool) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let screen = Screen::default();
    let chat = ConsoleChat::new(Box::new(screen.clone()), dir.path().to_path_buf());
    let mut p = incident(locale);
    let mut done = resolved(locale);
    p.drill = drill;
    done.drill = drill;
    let at = chat.post_proposal("console:#incidents", &p).await.unwrap();
    chat.update_proposal(&at, &done).await.unwrap();
    for note in incident_notes(t, &done).iter().chain(&other_notes()) {
        chat.post_thread(&at, &done, note).await.unwrap();
    }
    for note in private_notes() {
        chat.tell(&p, "console:#incidents", &user("console:bob"), &note)
            .await
            .unwrap();
    }
    let text = String::from_utf8(screen.0.lock().unwrap().clone()).unwrap();
    let text = text.replace(&dir.path().display().to_string(), "<dir>");
    let text = Regex::new(r"\[\d\d:\d\d:\d\d UTC\]")
        .unwrap()
        .replace_all(&text, "[time]");
    let mut messages: Vec<String> = Vec::new();
    for line in text.lines() {
        match messages.last_mut() {
            Some(m) if line.starts_with("    ") => {
                m.push('\n');
                m.push_str(line);
            }
            _ => messages.push(line.to_string()),
        }
    }
    messages
}

/// Runs of three or more English words in `text`, once code spans and
/// blocks (fenced, or indented under a console message), Slack emoji codes, mentions, URLs, paths and what the world said
/// ([`WORLD`]: reasons, alerts, program output) are taken out.
fn english(text: &str) -> Vec<String> {
    let mut t = text.to_string();
    for said in WORLD {
        t = t.replace(said, " ");
    }
    for pattern in [
        r"(?s)```.*?```",
        r"(?m)^ {8}.*$",
        r"`[^`\n]*`",
        r":[a-z0-9_+\-]+:",
        r"<[@#!][^>]*>",
        r"https?://\S+",
        r"(/[\w.\-<>]+)+",
    ] {
        t = Regex::new(pattern)
            .unwrap()
            .replace_all(&t, " ")
            .into_owned();
    }
    Regex::new(r"[A-Za-z][A-Za-z'’\-]*(?:[ \t]+[A-Za-z][A-Za-z'’\-]*){2,}")
        .unwrap()
        .find_iter(&t)
        .map(|m| m.as_str().to_string())
        .collect()
}

#[test]
fn the_english_check_catches_what_rollbot_used_to_print() {
    // Lines rollbot printed in zh before its messages came from catalogues.
    for old in [
        "*[演练 DRILL]* DRILL: verification checks were not run; they measure production, which this drill did not change",
        "❌ 回滚失败：progress deadline exceeded。重试前请先检查工作负载（例如 `kubectl rollout status`）。",
        ":tada: The alert for payment-api has cleared.",
    ] {
        assert!(!english(old).is_empty(), "not caught: {old}");
    }
    // Quoted output, identifiers and what people wrote pass.
    for fine in [
        "❌ 回滚失败：`progress deadline exceeded`。",
        "回滚：payment-api:v1.3.0（版本 3） → payment-api:v1.2.0（版本 2）",
        "原因：payment success rate 95% (v1.3.0)",
        "📄 事故报告草稿：<dir>/RB-7K3M9Q-report.md",
        "影响时段：2025-03-14 14:30:00 UTC → 2025-03-14 15:00:00 UTC（30 min）",
    ] {
        assert_eq!(english(fine), Vec::<String>::new(), "{fine}");
    }
}

#[tokio::test]
async fn the_incident_reads_the_same_on_slack_and_the_console_in_every_locale() {
    let t = Templates::load().unwrap();
    for locale in LOCALES {
        let slack = slack_incident(&t, locale, false);
        insta::assert_snapshot!(
            format!("incident_slack_{locale}"),
            slack.join("\n\n----\n\n")
        );
        let console = console_incident(&t, locale, false).await;
        insta::assert_snapshot!(format!("incident_console_{locale}"), console.join("\n"));
    }
}

/// A plan with a blocker: the proposal says it cannot be approved, and an
/// approver is told why their approval did not count, in every locale.
#[tokio::test]
async fn a_blocked_proposal_says_why_on_slack_and_the_console() {
    let t = Templates::load().unwrap();
    let clock = Regex::new(r"\[\d\d:\d\d:\d\d UTC\]").unwrap();
    for locale in LOCALES {
        let mut p = incident(locale);
        p.approvals.clear();
        p.plan.blockers = vec![BLOCKER.into()];
        let refusal = PrivateNote::VoteRefused {
            refusal: Refusal::Blocked {
                reasons: p.plan.blockers.clone(),
            },
        };
        let mut messages = vec![
            slack_texts(&render::proposal(&t, &p, &emoji()).unwrap().json).join("\n"),
            slack_texts(&render::private(&t, &p, &refusal).unwrap().json).join("\n"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let screen = Screen::default();
        let chat = ConsoleChat::new(Box::new(screen.clone()), dir.path().to_path_buf());
        chat.post_proposal("console:#incidents", &p).await.unwrap();
        chat.tell(&p, "console:#incidents", &user("console:bob"), &refusal)
            .await
            .unwrap();
        let console = String::from_utf8(screen.0.lock().unwrap().clone()).unwrap();
        let console = clock.replace_all(&console, "[time]").into_owned();
        messages.push(console);
        for m in &messages {
            assert!(
                m.contains(BLOCKER),
                "the blocker is not shown in {locale}: {m}"
            );
        }
        if *locale != "en" {
            let found: Vec<Vec<String>> = messages.iter().map(|m| english(m)).collect();
            assert!(
                found.iter().all(Vec::is_empty),
                "English in {locale}: {found:?}"
            );
        }
        insta::assert_snapshot!(format!("blocked_{locale}"), messages.join("\n\n----\n\n"));
    }
}

#[tokio::test]
async fn no_english_sentence_in_a_chinese_or_japanese_message() {
    let t = Templates::load().unwrap();
    for locale in ["zh", "ja"] {
        let mut messages = Vec::new();
        for drill in [false, true] {
            messages.extend(slack_incident(&t, locale, drill));
            messages.extend(console_incident(&t, locale, drill).await);
            let mut p = resolved(locale);
            p.drill = drill;
            let evidence = Evidence {
                checks: vec![rollbot::ports::CheckEvidence {
                    name: CHECK.into(),
                    condition: ">= 99.5".into(),
                    before: Some("95".into()),
                }],
                series: None,
                notes: vec![format!("{SOURCE} did not answer: {REFUSED}")],
            };
            for ev in [&evidence, &Evidence::default()] {
                let d = rollbot::report::draft(&t, &p, &[], ev, locale).unwrap();
                messages.push(d.markdown);
            }
        }
        let found: Vec<(String, Vec<String>)> = messages
            .iter()
            .map(|m| (m.clone(), english(m)))
            .filter(|(_, e)| !e.is_empty())
            .collect();
        assert!(found.is_empty(), "English in {locale}: {found:#?}");
    }
}

#[tokio::test]
async fn a_drill_is_marked_in_every_message_on_every_platform() {
    let t = Templates::load().unwrap();
    for locale in LOCALES {
        let tag = t.text(locale, "drill.tag", ()).unwrap();
        // Slack: the notification text of the proposal and of every edit,
        // the thread, private notes; the messages of a real incident do not
        // carry the mark.
        let mut p = incident(locale);
        p.drill = true;
        p.origin = Origin::Drill;
        let json = render::proposal(&t, &p, &emoji()).unwrap().json;
        assert!(json["text"].as_str().unwrap().contains(&tag), "{json}");
        for state in State::ALL {
            for no_checks in [false, true] {
                let mut edited = p.clone();
                edited.state = state;
                edited.no_checks = no_checks;
                let json = render::proposal(&t, &edited, &emoji()).unwrap().json;
                let text = json["text"].as_str().unwrap();
                assert!(text.contains(&tag), "{locale} {state}: {text}");
                edited.drill = false;
                let real = render::proposal(&t, &edited, &emoji()).unwrap().json;
                assert!(!real["text"].as_str().unwrap().contains(&tag));
            }
        }
        let mut done = resolved(locale);
        done.drill = true;
        for note in incident_notes(&t, &done).iter().chain(&other_notes()) {
            let json = render::thread(&t, &done, note).unwrap().json;
            let text = json["text"].as_str().unwrap();
            assert!(text.contains(&tag), "{locale} {note:?}: {text}");
        }
        for note in private_notes() {
            let json = render::private(&t, &p, &note).unwrap().json;
            let text = json["text"].as_str().unwrap();
            assert!(text.contains(&tag), "{locale} {note:?}: {text}");
        }

        // Command answers: status, list and history say "drill", not just
        // "rolled back".
        let untouched = t.text(locale, "drill.untouched", ()).unwrap();
        for state in [State::RolledBack, State::Verified] {
            let mut listed = done.clone();
            listed.state = state;
            for title in ["one", "list", "status", "history"] {
                let r = Reply::Proposals {
                    title,
                    service: Some("payment-api".into()),
                    items: vec![Summary::of(&listed)],
                };
                let line = listed_line(&render::reply(&t, locale, &r).unwrap().json);
                assert!(
                    line.contains(&tag) && line.contains(&untouched),
                    "{locale} {title}: {line}"
                );
                listed.drill = false;
                let r = Reply::Proposals {
                    title,
                    service: Some("payment-api".into()),
                    items: vec![Summary::of(&listed)],
                };
                let line = listed_line(&render::reply(&t, locale, &r).unwrap().json);
                assert!(!line.contains(&tag), "{locale} {title}: {line}");
                listed.drill = true;
            }
        }

        // The report: its file name, its title and its heading.
        let files = rollbot::report::attachments(&t, &done).unwrap();
        assert_eq!(files.report_file, "drill-report-RB-7K3M9Q.md");
        assert_eq!(files.chart_file, "drill-chart-RB-7K3M9Q.png");
        assert!(files.report_title.contains(&tag), "{files:?}");
        assert!(files.chart_title.contains(&tag), "{files:?}");
        let draft = rollbot::report::draft(&t, &done, &[], &Evidence::default(), locale).unwrap();
        assert!(
            draft.markdown.starts_with(&format!("# [{tag}]")),
            "{}",
            draft.markdown
        );
        let real = rollbot::report::attachments(&t, &resolved(locale)).unwrap();
        assert_eq!(real.report_file, "incident-report-RB-7K3M9Q.md");
        assert!(!real.report_title.contains(&tag), "{real:?}");

        // The console: every message of the transcript.
        for message in console_incident(&t, locale, true).await {
            assert!(message.contains(&tag), "{locale}: {message}");
        }
        for message in console_incident(&t, locale, false).await {
            assert!(!message.contains(&tag), "{locale}: {message}");
        }
    }
}

#[test]
fn the_slack_resolved_notice_carries_the_runbook_facts() {
    let t = Templates::load().unwrap();
    for locale in LOCALES {
        let p = resolved(locale);
        let note = ThreadNote::Resolved {
            check: Some(check(true, "0.998")),
            status_update: None,
        };
        let slack = render::thread(&t, &p, &note).unwrap().json["text"]
            .as_str()
            .unwrap()
            .to_string();
        let console = rollbot::report::render_note(&t, &p, &note).unwrap();
        for text in [&slack, &console] {
            for fact in [
                // What happened.
                REASON,
                "PaymentSuccessRateLow",
                // The impact window and its duration.
                "2025-03-14 14:30:00 UTC",
                "2025-03-14 15:00:00 UTC",
                "30 min",
                // The rollback, from → to.
                "payment-api:v1.3.0",
                "payment-api:v1.2.0",
                // The first check's current value.
                CHECK,
                "0.998",
            ] {
                assert!(text.contains(fact), "{locale}: {fact:?} missing in\n{text}");
            }
        }
        // Approvers, as each platform names people.
        assert!(
            slack.contains("<@UALICE>") && slack.contains("<@UCAROL>"),
            "{slack}"
        );
        assert!(console.contains("slack:UALICE") && console.contains("slack:UCAROL"));
        // The rollback reads from → to, in that order.
        let from = slack.find("payment-api:v1.3.0").unwrap();
        let to = slack.find("payment-api:v1.2.0").unwrap();
        assert!(from < to, "{slack}");
    }
}
