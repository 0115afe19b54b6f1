//! `rollbot demo`: the reference incident of the runbooks, end to end, on
//! embedded defaults — nothing to configure, nothing real touched.
//!
//! Payment service v1.3.0 is a bad release (payment success rate 95 %). A
//! simulated cluster runs it, with v1.2.0 before it in the history and a
//! Prometheus-like metric source for the success rate. An Alertmanager alert
//! goes through the real webhook route; the proposal, the votes, the
//! kubectl-style progress, verification, the resolved notice and the report
//! appear in a console rendering of `#incidents`. The engine, store,
//! executor, verifier and templates are the ones `serve` uses; only the chat
//! is the console and the approvers are scripted (or, with
//! `--interactive`, one of them is the person at the keyboard).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use tokio::io::AsyncBufReadExt;

use crate::app::App;
use crate::chat::console::ConsoleChat;
use crate::config::Config;
use crate::domain::{Proposal, ProposalId, State, UserId, VoteKind, VoteOutcome, VoteVia};
use crate::engine::{Engine, VoteReply};

const SEED: &str = include_str!("../config/sim-payment.yaml");
const CONFIG: &str = include_str!("../config/demo.toml");
const TOKEN: &str = "demo-alertmanager-token";

/// Options of `rollbot demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Be one of the two approvers: type `approve` or `reject` when asked.
    #[arg(long)]
    pub interactive: bool,
    /// Where to keep the store, the report and the chart (default: a new
    /// directory under the system temp dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Message language: en, zh or ja.
    #[arg(long, default_value = "en")]
    pub locale: String,
}

/// Runs the demo, printing the channel to stdout.
///
/// # Errors
/// A step that did not happen in time (with what was expected), or a
/// component that could not start.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !crate::config::LOCALES.contains(&args.locale.as_str()) {
        bail!(
            "unknown locale {:?}; use one of {}",
            args.locale,
            crate::config::LOCALES.join(", ")
        );
    }
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("rollbot-demo-{}", Utc::now().timestamp())),
    };
    std::fs::create_dir_all(&out)
        .with_context(|| format!("creating the demo directory {}", out.display()))?;

    // The world: a cluster running the bad release.
    let seed = crate::sim::seed::Seed::from_yaml(SEED).context("the embedded simulator seed")?;
    let sim = crate::sim::start(seed, tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await
        .context("starting the simulated cluster")?;
    sim.write_kubeconfig(&out.join("kubeconfig"))?;
    std::fs::write(out.join("alertmanager-token"), TOKEN)?;

    let config_text = CONFIG
        .replace("@OUT@", &toml_path(&out))
        .replace("@SIM@", &sim.url())
        .replace("@LOCALE@", &args.locale);
    let config = Config::parse(&config_text).map_err(|problems| {
        anyhow::anyhow!(
            "the embedded demo config is invalid: {}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;

    let console = Arc::new(ConsoleChat::new(Box::new(std::io::stdout()), out.clone()));
    let app = App::start(&config, Some(console.clone())).await?;
    let engine = app.engine().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));

    println!("rollbot demo — the reference incident: payment-api v1.3.0 is a bad release");
    println!(
        "(simulated cluster {}, files in {})",
        sim.url(),
        out.display()
    );
    println!();

    // 14:30 — the alert fires (it has been firing for 6 minutes).
    let started = Utc::now() - chrono::Duration::minutes(6);
    alert(&base, "firing", started, None).await?;
    let p = wait_for(&engine, "the proposal", |_| true).await?;

    let alice = user("console:alice");
    let bob = user("console:bob");
    if args.interactive {
        interactive(&engine, &console, &p.id, &bob).await?;
    } else {
        scripted(&engine, &console, &p.id, &alice, &bob).await?;
    }

    let p = wait_until(&engine, &p.id, "the rollback to finish", |p| {
        !matches!(
            p.state,
            State::Proposed | State::Approved | State::Executing
        )
    })
    .await?;
    if p.state == State::Rejected {
        println!("\nThe proposal was rejected: nothing was rolled back.");
        return finish(stop, server, &out, None).await;
    }
    let p = wait_until(&engine, &p.id, "verification", |p| {
        p.state != State::RolledBack
    })
    .await?;
    if p.state != State::Verified {
        bail!(
            "the demo expected verification to pass, but the proposal is {}",
            p.state
        );
    }

    // The alert clears now that the success rate is back.
    alert(&base, "resolved", started, Some(Utc::now())).await?;
    let report = out.join(format!("{}-report.md", p.id));
    let chart = out.join(format!("{}-chart.png", p.id));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(report.exists() && chart.exists()) {
        if tokio::time::Instant::now() > deadline {
            bail!("the incident report was not posted within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    finish(stop, server, &out, Some((&report, &chart))).await
}

async fn finish(
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    out: &Path,
    files: Option<(&Path, &Path)>,
) -> anyhow::Result<()> {
    let _ = stop.send(());
    server.await.context("the server task failed")??;
    println!();
    if let Some((report, chart)) = files {
        println!("Report: {}", report.display());
        println!("Chart:  {}", chart.display());
    }
    println!("Store:  {}", out.join("db").display());
    Ok(())
}

fn user(id: &str) -> UserId {
    UserId::parse(id).expect("demo user ids are valid")
}

fn toml_path(p: &Path) -> String {
    // Inside a TOML basic string.
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

/// Two scripted approvers; the first one tries twice to show that a person
/// counts once, and someone off the approver list is refused.
async fn scripted(
    engine: &Engine,
    console: &ConsoleChat,
    id: &ProposalId,
    alice: &UserId,
    bob: &UserId,
) -> anyhow::Result<()> {
    pause().await;
    vote(
        engine,
        console,
        id,
        &user("console:mallory"),
        VoteKind::Approve,
    )
    .await?;
    pause().await;
    vote(engine, console, id, alice, VoteKind::Approve).await?;
    pause().await;
    vote(engine, console, id, alice, VoteKind::Approve).await?;
    pause().await;
    vote(engine, console, id, bob, VoteKind::Approve).await?;
    Ok(())
}

/// The person at the keyboard is `console:you`; bob is the second approver.
async fn interactive(
    engine: &Engine,
    console: &ConsoleChat,
    id: &ProposalId,
    bob: &UserId,
) -> anyhow::Result<()> {
    let you = user("console:you");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut counted = false;
    loop {
        println!("\n> You are console:you, an approver of payment-api. Type approve or reject:");
        let Some(line) = lines.next_line().await? else {
            bail!(
                "input ended before you voted; run `rollbot demo` without --interactive for the scripted run"
            );
        };
        let kind = match line.trim().to_ascii_lowercase().as_str() {
            "approve" | "a" | "✅" => VoteKind::Approve,
            "reject" | "r" | "❌" => VoteKind::Reject,
            "" => continue,
            other => {
                println!("{other:?} is not a vote: type approve or reject");
                continue;
            }
        };
        let reply = vote(engine, console, id, &you, kind).await?;
        match reply {
            VoteReply::Counted(VoteOutcome::Counted { .. }) if !counted => {
                counted = true;
                println!("> Your approval counts. Try `approve` again to see the two-person rule.");
            }
            VoteReply::Counted(VoteOutcome::AlreadyCounted { .. }) => break,
            VoteReply::Counted(VoteOutcome::Rejected) => return Ok(()),
            _ => {}
        }
    }
    pause().await;
    vote(engine, console, id, bob, VoteKind::Approve).await?;
    Ok(())
}

async fn vote(
    engine: &Engine,
    console: &ConsoleChat,
    id: &ProposalId,
    who: &UserId,
    kind: VoteKind,
) -> anyhow::Result<VoteReply> {
    console.said(
        who,
        if kind == VoteKind::Approve {
            "✅"
        } else {
            "❌"
        },
    );
    let reply = engine.vote(id, who, kind, VoteVia::Console).await?;
    Ok(reply)
}

async fn pause() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

/// Posts an Alertmanager (webhook v4) delivery to rollbot's real route.
async fn alert(
    base: &str,
    status: &str,
    starts: chrono::DateTime<Utc>,
    ends: Option<chrono::DateTime<Utc>>,
) -> anyhow::Result<()> {
    let ends = ends.map_or("0001-01-01T00:00:00Z".to_string(), |t| t.to_rfc3339());
    let body = serde_json::json!({
        "receiver": "rollbot",
        "status": status,
        "alerts": [{
            "status": status,
            "labels": {
                "alertname": "PaymentSuccessRateLow",
                "service": "payment-api",
                "severity": "critical",
                "scope": "all",
            },
            "annotations": {
                "summary": "Payment success rate 95.0% is below 98% for 5 minutes",
                "runbook_url": "https://runbooks.example/payment-api/rollback",
            },
            "startsAt": starts.to_rfc3339(),
            "endsAt": ends,
            "generatorURL": "http://prometheus.example/graph?g0.expr=payment_success_rate+%3C+0.98",
        }],
        "groupLabels": {"alertname": "PaymentSuccessRateLow"},
        "commonLabels": {"alertname": "PaymentSuccessRateLow", "service": "payment-api"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "version": "4",
        "groupKey": "{}:{alertname=\"PaymentSuccessRateLow\"}",
        "truncatedAlerts": 0,
    });
    let r = reqwest::Client::new()
        .post(format!("{base}/webhooks/alertmanager"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .context("posting the alert to rollbot's webhook")?;
    if !r.status().is_success() {
        bail!(
            "rollbot answered the {status} alert with {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

async fn wait_for(
    engine: &Engine,
    what: &str,
    pred: impl Fn(&Proposal) -> bool,
) -> anyhow::Result<Proposal> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(p) = engine.store().list()?.into_iter().find(|p| pred(p)) {
            return Ok(p);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what} did not appear within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_until(
    engine: &Engine,
    id: &ProposalId,
    what: &str,
    pred: impl Fn(&Proposal) -> bool,
) -> anyhow::Result<Proposal> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let p = engine.get(id)?;
        if pred(&p) {
            return Ok(p);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("waited 60 s for {what}; the proposal is still {}", p.state);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
