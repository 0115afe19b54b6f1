//! The simulator's GitOps owners (Argo CD Applications, Flux
//! Kustomizations) against the real kubectl, and its model of their
//! controllers: a drift of an owned workload is put back while the owner
//! is active, and left alone while it is paused or suspended.
//!
//! kubectl comes from `$KUBECTL` or `/usr/bin/kubectl`; a missing kubectl
//! fails these tests. Everything runs on 127.0.0.1 with port 0.

mod support;
mod support_sim;

use std::path::Path;
use std::time::Duration;

use rollbot::sim::Kind;
use rollbot::sim::seed::Seed;
use serde_json::Value;
use support::{bounded, poll_until, wait_until};
use support_sim::start;

fn gitops_seed() -> Seed {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sim/gitops.yaml");
    Seed::from_file(&path).expect("test seed parses")
}

fn image(sim: &rollbot::sim::SimHandle, name: &str) -> String {
    let d = sim.get(Kind::Deployment, "production", name).unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Three times the seed's revert delay: long enough that an active owner
/// would have reverted, used only to show that a paused one does not.
const QUIET: Duration = Duration::from_millis(1800);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_and_patches_an_argo_cd_application() {
    bounded(async {
        let sim = start(gitops_seed()).await;
        let policy = sim
            .kubectl_ok(&[
                "-n",
                "argocd",
                "get",
                "application",
                "payments",
                "-o",
                "jsonpath={.spec.syncPolicy}",
            ])
            .await;
        let policy: Value = serde_json::from_str(&policy).expect("JSON");
        assert_eq!(policy["automated"]["selfHeal"], true, "{policy}");
        // Discovery knows the short name and the group, as with the CRD.
        let table = sim
            .kubectl_ok(&["-n", "argocd", "get", "apps.argoproj.io"])
            .await;
        assert!(table.contains("payments"), "{table}");
        let ks = sim
            .kubectl_ok(&[
                "-n",
                "flux-system",
                "get",
                "kustomizations.kustomize.toolkit.fluxcd.io",
                "apps",
                "-o",
                "jsonpath={.spec.path}",
            ])
            .await;
        assert_eq!(ks, "./apps/production");
        // A merge patch, as `flux suspend` sends.
        sim.kubectl_ok(&[
            "-n",
            "flux-system",
            "patch",
            "kustomization",
            "apps",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ])
        .await;
        let ks = sim
            .handle
            .get(Kind::Kustomization, "flux-system", "apps")
            .unwrap();
        assert_eq!(ks["spec"]["suspend"], true);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_heal_reverts_a_drift_until_auto_sync_is_off() {
    bounded(async {
        let sim = start(gitops_seed()).await;
        let set = |tag: &'static str| {
            let sim = &sim;
            async move {
                sim.kubectl_ok(&[
                    "set",
                    "image",
                    "deployment/payment-api",
                    &format!("payment-api=payment-api:{tag}"),
                ])
                .await;
            }
        };
        set("v1.2.0").await;
        assert_eq!(image(&sim.handle, "payment-api"), "payment-api:v1.2.0");
        wait_until("self-heal puts v1.3.0 back", || {
            image(&sim.handle, "payment-api") == "payment-api:v1.3.0"
        })
        .await;

        // Auto-sync off, as `argocd app set --sync-policy none` does.
        sim.kubectl_ok(&[
            "-n",
            "argocd",
            "patch",
            "application",
            "payments",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"syncPolicy":{"automated":null}}}"#,
        ])
        .await;
        set("v1.2.0").await;
        let reverted = poll_until(QUIET, async || {
            image(&sim.handle, "payment-api") != "payment-api:v1.2.0"
        })
        .await;
        assert!(!reverted, "a paused application does not revert");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flux_kustomization_reverts_unless_suspended() {
    bounded(async {
        let sim = start(gitops_seed()).await;
        let set = |tag: &'static str| {
            let sim = &sim;
            async move {
                sim.kubectl_ok(&[
                    "set",
                    "image",
                    "deployment/ledger-api",
                    &format!("ledger-api=ledger-api:{tag}"),
                ])
                .await;
            }
        };
        set("v2.0.0").await;
        wait_until("Flux re-applies v2.1.0", || {
            image(&sim.handle, "ledger-api") == "ledger-api:v2.1.0"
        })
        .await;
        sim.kubectl_ok(&[
            "-n",
            "flux-system",
            "patch",
            "kustomization",
            "apps",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ])
        .await;
        set("v2.0.0").await;
        let reverted = poll_until(QUIET, async || {
            image(&sim.handle, "ledger-api") != "ledger-api:v2.0.0"
        })
        .await;
        assert!(!reverted, "a suspended Kustomization does not revert");
    })
    .await;
}
