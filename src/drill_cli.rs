//! `rollbot drill`: a rehearsal from the command line. It sits above the
//! engine (it builds one, on a throwaway store, with the console as its
//! chat), so the drills themselves, behind the Kubernetes executor
//! ([`crate::exec::kubernetes::drill`]), never import the engine.

/// Arguments of `rollbot drill`.
#[derive(clap::Args, Debug, Clone)]
pub struct DrillArgs {
    /// The service to rehearse, as named under `[services]` in the config.
    pub service: String,
    /// Configuration file (TOML); its `[kubernetes]` section names the
    /// cluster the service's workload is copied from (read-only).
    #[arg(long, short, env = "ROLLBOT_CONFIG")]
    pub config: std::path::PathBuf,
    /// Who starts the drill (`platform:id`); their own approval never counts.
    #[arg(long, default_value = "console:drill-runner")]
    pub proposer: String,
    /// An approver voting in the drill (`platform:id`), in order; repeat it
    /// for the two-person rule. Without any, the proposal is shown and the
    /// drill stops there.
    #[arg(long = "approve-as", value_name = "USER")]
    pub approve_as: Vec<String>,
    /// Why the drill is run (shown on the proposal and in the report).
    #[arg(long, default_value = "rollback drill")]
    pub reason: String,
    /// Where to write the drill's report (Markdown); default
    /// `drill-report-<ID>.md` in the current directory.
    #[arg(long)]
    pub report_out: Option<std::path::PathBuf>,
    /// Longest wait for the drill's rollback to finish, e.g. `5m`.
    #[arg(long, default_value = "5m")]
    pub timeout: humantime::Duration,
}

/// Runs `rollbot drill`: copies the service from the configured cluster,
/// opens the drill proposal, casts the scripted approvals, follows the
/// rollback in the copy and writes the report. Returns whether the drill's
/// rollback completed.
///
/// # Errors
/// A bad config or user id, an unreachable cluster, a drill that cannot
/// start, or an unwritable report — each saying what to fix.
pub async fn run_cli(args: DrillArgs) -> anyhow::Result<bool> {
    use anyhow::Context;
    use std::sync::Arc;

    use crate::domain::{ServiceName, State, SystemClock, UserId, VoteKind, VoteVia};
    use crate::engine::{DrillRequest, Engine, Ports, VoteReply};

    let config = crate::config::Config::load(&args.config)?;
    let service = ServiceName::parse(&args.service)
        .ok()
        .filter(|s| config.services().contains_key(s))
        .with_context(|| {
            format!(
                "unknown service {:?}; configured services: {}",
                args.service,
                config
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let proposer = UserId::parse(&args.proposer).context("--proposer")?;
    let approvers = args
        .approve_as
        .iter()
        .map(|a| UserId::parse(a).with_context(|| format!("--approve-as {a}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let kube = crate::exec::KubeRollback::connect(config.kubernetes.as_ref())
        .await
        .context("connecting to the Kubernetes cluster to copy from")?;
    // The drill's proposals live in a throwaway store: the drill leaves no
    // trace in (and needs no lock on) the store of a running `rollbot serve`.
    let scratch = Scratch::new()?;
    let store = crate::store::Store::open(&scratch.0.join("db"))
        .with_context(|| format!("opening a scratch store in {}", scratch.0.display()))?;
    let services = config.services();
    let engine = Engine::new(
        store,
        services.clone(),
        Ports {
            chat: Arc::new(crate::chat::console::ConsoleChat::new(
                Box::new(std::io::stdout()),
                scratch.0.clone(),
            )),
            executor: Arc::new(kube),
            verifier: Arc::new(crate::verify::HttpVerifier::new(&services)),
            clock: Arc::new(SystemClock),
        },
    );
    let p = engine
        .drill(DrillRequest {
            service: service.clone(),
            proposer,
            reason: args.reason.clone(),
            channel: Some("console:drill".into()),
        })
        .await?;
    if approvers.is_empty() {
        let who: Vec<String> = services[&service]
            .approvers
            .iter()
            .map(ToString::to_string)
            .collect();
        println!(
            "DRILL {}: waiting for {} approval(s) from: {}.\nRun again with --approve-as USER for each approver to rehearse the decision and the rollback.",
            p.id,
            p.required,
            who.join(", ")
        );
        return Ok(false);
    }
    for a in &approvers {
        println!("DRILL {}: {a} approves", p.id);
        match engine
            .vote(&p.id, a, VoteKind::Approve, VoteVia::Console)
            .await?
        {
            VoteReply::Counted(_) => {}
            VoteReply::Refused(r) => println!("DRILL {}: {a}'s approval did not count: {r}", p.id),
        }
    }
    let timeout: std::time::Duration = args.timeout.into();
    if tokio::time::timeout(timeout, engine.wait_idle())
        .await
        .is_err()
    {
        anyhow::bail!(
            "the drill's rollback did not finish within {}; raise --timeout",
            args.timeout
        );
    }
    let done = engine.get(&p.id)?;
    let timeline = engine.store().timeline(&p.id)?;
    let m = crate::report::Milestones::of(&done, &timeline);
    let span = |to: Option<chrono::DateTime<chrono::Utc>>| match (m.start(), to) {
        (Some(s), Some(t)) => format!("{:.1} s", (t - s).num_milliseconds() as f64 / 1000.0),
        _ => "n/a".into(),
    };
    println!(
        "DRILL {} verdict: {} (time to decision {}, time to mitigate {})",
        done.id,
        done.state,
        span(m.approved),
        span(m.completed)
    );
    let draft = engine.report(&done.id, &done.locale).await?;
    let path = args
        .report_out
        .clone()
        .unwrap_or_else(|| format!("drill-report-{}.md", done.id).into());
    std::fs::write(&path, &draft.markdown)
        .with_context(|| format!("writing the drill report to {}", path.display()))?;
    println!("DRILL report: {}", path.display());
    Ok(done.state == State::RolledBack)
}

/// A scratch directory under the system temp dir, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("rollbot-drill-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            anyhow::anyhow!("cannot create a scratch directory {}: {e}", dir.display())
        })?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
