//! Test helpers for the simulator tests: start a simulator from a seed on
//! port 0, write its kubeconfig into a temp dir and run the real kubectl
//! against it with a fresh discovery cache.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rollbot::sim::{SimHandle, seed::Seed};

/// Every kubectl invocation is bounded by this.
pub const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// The kubectl to test with: `$KUBECTL`, else `/usr/bin/kubectl`. Panics
/// (fails the test) with a clear message when it does not exist.
pub fn kubectl_bin() -> PathBuf {
    let p = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/kubectl"));
    assert!(
        p.exists(),
        "kubectl not found at {} — install kubectl or set KUBECTL=/path/to/kubectl",
        p.display()
    );
    p
}

/// Output of one kubectl run.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// A running simulator plus a scratch directory with its kubeconfig.
pub struct Sim {
    pub handle: SimHandle,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

/// The fast test seed (`tests/data/sim/fast-payment.yaml`).
pub fn fast_seed() -> Seed {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sim/fast-payment.yaml");
    Seed::from_file(&path).expect("test seed parses")
}

/// Starts a simulator on 127.0.0.1:0.
pub async fn start(seed: Seed) -> Sim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = rollbot::sim::start(seed, listener)
        .await
        .expect("sim starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    handle
        .write_kubeconfig(&kubeconfig)
        .expect("write kubeconfig");
    Sim {
        handle,
        dir,
        kubeconfig,
    }
}

impl Sim {
    /// Runs the default kubectl in namespace `production`.
    pub async fn kubectl(&self, args: &[&str]) -> Out {
        self.kubectl_with(&kubectl_bin(), &[], args).await
    }

    /// Runs a given kubectl binary with extra environment variables. Each
    /// run gets a fresh discovery cache (kubectl caches discovery for 6 h).
    pub async fn kubectl_with(&self, bin: &Path, env: &[(&str, &str)], args: &[&str]) -> Out {
        let cache = tempfile::tempdir_in(self.dir.path()).expect("cache dir");
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(cache.path())
            .args(["-n", "production"])
            .args(args)
            .env("HOME", self.dir.path())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(KUBECTL_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in {KUBECTL_TIMEOUT:?}"))
            .expect("kubectl runs");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Like [`Sim::kubectl`] but fails the test unless kubectl succeeded.
    pub async fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            out.ok,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        out.stdout
    }
}

/// The revision numbers of a `rollout history` table.
pub fn history_revisions(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Whitespace-split words of each non-empty line.
pub fn words(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}
