//! A kubectl-compatible simulated Kubernetes API server.
//!
//! It serves, over plain HTTP on loopback, the subset of kube-apiserver that
//! `kubectl get|scale|set image|rollout history|undo|status|restart|pause|resume`
//! and kube-rs use for Deployments, ReplicaSets, StatefulSets, DaemonSets,
//! ControllerRevisions, Leases and the GitOps owners (Argo CD Applications,
//! Flux Kustomizations and HelmReleases), and emulates the deployment controller so
//! rollouts progress over (configurable, sub-second) time. It exists so that
//! rollbot's Kubernetes executor and its tests can run against real kubectl
//! behaviour without a cluster.
//!
//! # Layout
//! - [`seed`]: the YAML seed format (initial objects and behaviour knobs).
//! - [`authz`]: the seed's `forbid` rules, answered as RBAC's `403`.
//! - `bootstrap`: turns a seed into stored objects.
//! - [`store`]: objects, the global resourceVersion and the watch log.
//! - [`selector`]: label and field selectors.
//! - [`semantic`]: semantic template equality, hashing, Go-style encoding.
//! - [`smp`]: strategic merge patch.
//! - [`controller`]: deployment / StatefulSet / DaemonSet controller emulation.
//! - [`faults`]: injected API failures (500s, cut watches) for retry tests.
//! - [`gitops`]: Argo CD's self-heal and Flux's reconciliation, which put
//!   an owned workload back to git's pod template after a rollback.
//! - `table`, `server`: Table printing and the HTTP routes.
//!
//! # Example
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let seed = rollbot::sim::seed::Seed::from_file("config/sim-payment.yaml".as_ref())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let sim = rollbot::sim::start(seed, listener).await?;
//! sim.write_kubeconfig("/tmp/kubeconfig".as_ref())?;
//! println!("{}", sim.url());
//! # Ok(()) }
//! ```

pub mod authz;
pub(crate) mod bootstrap;
pub mod controller;
pub mod faults;
pub mod gitops;
pub mod metrics;
pub mod seed;
pub mod selector;
pub mod semantic;
mod server;
pub mod smp;
pub mod store;
mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

pub use faults::FaultOn;
pub use server::RequestRecord;
pub use store::Kind;

use seed::Seed;
use store::Store;

/// How often the simulated controllers reconcile.
const TICK: Duration = Duration::from_millis(20);

/// How often the simulated metrics are sampled for `query_range`.
const METRIC_SAMPLE: Duration = Duration::from_millis(200);

/// Arguments of `rollbot sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Seed file describing namespaces, workloads, history and behaviour.
    #[arg(long)]
    pub seed: PathBuf,
    /// Where to write a kubeconfig pointing at the simulator.
    #[arg(long)]
    pub kubeconfig_out: Option<PathBuf>,
}

/// Runs `rollbot sim` until Ctrl-C.
///
/// # Errors
/// A bad seed, an address that cannot be bound, or an unwritable kubeconfig.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let seed = Seed::from_file(&args.seed)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let sim = start(seed, listener).await?;
    if let Some(path) = &args.kubeconfig_out {
        sim.write_kubeconfig(path)?;
        println!("kubeconfig written to {}", path.display());
    }
    println!("simulated Kubernetes API server listening on {}", sim.url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    sim.shutdown().await;
    Ok(())
}

/// Errors starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The seed's objects could not be stored (e.g. duplicate names).
    #[error("cannot load the seed: {0}")]
    Seed(#[from] store::StoreError),
    /// The listener has no local address.
    #[error("listener has no local address: {0}")]
    Listener(#[from] std::io::Error),
}

/// A running simulator; dropping it stops the server and the controllers.
pub struct SimHandle {
    addr: SocketAddr,
    store: Arc<Store>,
    state: Arc<server::AppState>,
    frozen: Arc<AtomicBool>,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<()>>,
    controller: Option<tokio::task::JoinHandle<()>>,
    sampler: Option<tokio::task::JoinHandle<()>>,
    gitops: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the simulator on an already-bound listener (so tests can bind
/// port 0 and `main` binds the configured address the same way).
///
/// # Errors
/// `Seed` when the seed's objects conflict, `Listener` without a local
/// address.
pub async fn start(seed: Seed, listener: tokio::net::TcpListener) -> Result<SimHandle, SimError> {
    let addr = listener.local_addr()?;
    let store = Arc::new(Store::new());
    let knobs = bootstrap::populate(&store, &seed)?;
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let state = Arc::new(server::AppState {
        store: store.clone(),
        version: seed.server_version.clone(),
        addr,
        shutdown: shutdown_rx.clone(),
        requests: Mutex::new(Vec::new()),
        metrics: metrics::Metrics::new(seed.metrics.clone()),
        forbid: seed.forbid.clone(),
        faults: faults::Faults::default(),
    });
    let app = server::router(state.clone());
    let mut rx = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = rx.wait_for(|v| *v).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "simulated API server failed");
        }
    });
    let frozen = Arc::new(AtomicBool::new(false));
    let ctrl = controller::Controller::new(store.clone(), knobs, frozen.clone());
    let controller = tokio::spawn(ctrl.run(TICK, shutdown_rx.clone()));
    let gitops = gitops::Reconciler::new(store.clone(), &seed.gitops);
    let gitops = tokio::spawn(gitops.run(TICK, shutdown_rx.clone()));
    // The seeded state has been running for a while.
    state.metrics.backfill(&state.store, 15 * 60);
    let sampler = {
        let (state, mut stop) = (state.clone(), shutdown_rx);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(METRIC_SAMPLE);
            loop {
                tokio::select! {
                    _ = every.tick() => state.metrics.sample(&state.store),
                    _ = stop.wait_for(|v| *v) => break,
                }
            }
        })
    };
    Ok(SimHandle {
        addr,
        store,
        state,
        frozen,
        shutdown,
        server: Some(server),
        controller: Some(controller),
        sampler: Some(sampler),
        gitops: Some(gitops),
    })
}

impl SimHandle {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig (YAML) for the simulator: plain http, no credentials.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: rollbot-sim\n  cluster:\n    server: {}\n\
             contexts:\n- name: rollbot-sim\n  context:\n    cluster: rollbot-sim\n    user: rollbot-sim\n    namespace: default\n\
             current-context: rollbot-sim\nusers:\n- name: rollbot-sim\n  user: {{}}\n",
            self.url()
        )
    }

    /// Writes [`SimHandle::kubeconfig`] to `path`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// One stored object, as the API would return it.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        self.store.get(kind, namespace, name)
    }

    /// Stored objects of a kind in a namespace (all with `None`).
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<Value> {
        self.store.list(kind, namespace).0
    }

    /// The store, for direct manipulation in tests (e.g. a concurrent
    /// change, or compaction to force `410 Expired`).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Freezes (or releases) the simulated pods: while frozen no pod
    /// becomes ready or terminates, though the controllers still observe
    /// spec changes and create ReplicaSets. Lets a test hold a rollout
    /// mid-way without depending on timing.
    pub fn set_pods_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::Relaxed);
    }

    /// Fails the next `count` `on` requests for `kind` (see [`faults`]),
    /// e.g. the next 3 Deployment watches answer `500 InternalError`.
    pub fn fail_next(&self, kind: Kind, on: FaultOn, count: usize) {
        self.state.faults.arm(kind, on, count);
    }

    /// Injected faults not yet used up by a request.
    pub fn faults_left(&self) -> usize {
        self.state.faults.left()
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Stops the server and controllers and waits for them.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(c) = self.controller.take() {
            let _ = c.await;
        }
        if let Some(s) = self.sampler.take() {
            let _ = s.await;
        }
        if let Some(g) = self.gitops.take() {
            let _ = g.await;
        }
        if let Some(s) = self.server.take() {
            // Open connections are closed by graceful shutdown; do not wait
            // forever on a client that keeps one open.
            let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(c) = self.controller.take() {
            c.abort();
        }
        if let Some(s) = self.sampler.take() {
            s.abort();
        }
        if let Some(g) = self.gitops.take() {
            g.abort();
        }
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}
