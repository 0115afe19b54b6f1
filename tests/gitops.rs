//! GitOps-aware rollbacks end to end: the engine with the real Kubernetes
//! executor against the simulator, whose Argo CD and Flux controllers put
//! a drifted workload back to git's state (`tests/data/sim/gitops.yaml`:
//! payment-api is self-healed by Argo CD application argocd/payments,
//! ledger-api is applied by Flux Kustomization flux-system/apps).
//!
//! kubectl comes from `$KUBECTL` or `/usr/bin/kubectl`.

mod support;
mod support_sim;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rollbot::chat::handler::{CommandHandler, CommandInput};
use rollbot::chat::reply::{Reply, UserError};
use rollbot::chat::router::ChatRouter;
use rollbot::domain::{EventKind, Refusal, ServiceName, State, Step};
use rollbot::engine::{EngineError, VoteReply};
use rollbot::exec::KubeRollback;
use rollbot::exec::kubernetes::KubeExecutor;
use rollbot::exec::kubernetes::gitops::{Owner, OwnerKind, SAVED_ANNOTATION, pause, pause_hooks};
use rollbot::ports::{CheckResult, Hooks, ThreadNote, Verdict};
use rollbot::sim::Kind;
use rollbot::sim::seed::{ForbidRule, Seed};
use serde_json::{Value, json};
use support::*;

/// `POLICY` is replaced by each test's `gitops` policy.
const WORLD: &str = r#"
    [approval]
    channel = "memory:incidents"
    [groups]
    sre = ["slack:UALICE", "slack:UBOB", "slack:UCAROL"]
    [services.payment-api]
    groups = ["sre"]
    gitops = "POLICY"
    [services.payment-api.kubernetes]
    namespace = "production"
    name = "payment-api"
    [services.ledger-api]
    groups = ["sre"]
    gitops = "POLICY"
    [services.ledger-api.kubernetes]
    namespace = "production"
    name = "ledger-api"
"#;

/// Longer than the simulated self-heal (0.6 s after a drift) plus a
/// rollout: how long verification watches that the rollback holds.
const HOLD: Duration = Duration::from_secs(3);

struct World {
    sim: support_sim::Sim,
    kube: KubeExecutor,
}

async fn world() -> World {
    world_with(&[]).await
}

/// The world with rollbot's service account refused `verbs` on Argo CD
/// Applications, as without the optional RBAC of deploy/gitops/.
async fn world_with(forbidden: &[&str]) -> World {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sim/gitops.yaml");
    let mut seed = Seed::from_file(&path).unwrap();
    for verb in forbidden {
        seed.forbid.push(ForbidRule {
            verb: (*verb).into(),
            resource: "applications".into(),
            namespace: None,
        });
    }
    let sim = support_sim::start(seed).await;
    let kube = KubeExecutor::for_url(&sim.handle.url()).unwrap();
    World { sim, kube }
}

impl World {
    fn tester(&self, policy: &str) -> Tester {
        let mut exec = KubeRollback::new(self.kube.clone());
        exec.gitops_hold = HOLD;
        let t = Tester::with_executor(&WORLD.replace("POLICY", policy), Arc::new(exec));
        for (service, pause) in pause_hooks(t.config.gitops_paused(), &self.kube) {
            t.engine.set_hooks(
                service,
                Hooks {
                    before: vec![pause],
                    ..Hooks::default()
                },
            );
        }
        t
    }

    fn image(&self, name: &str) -> String {
        let d = self
            .sim
            .handle
            .get(Kind::Deployment, "production", name)
            .unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn owner(&self, kind: Kind, ns: &str, name: &str) -> Value {
        self.sim.handle.get(kind, ns, name).unwrap()
    }
}

fn passing_checks() -> Verdict {
    Verdict::Passed {
        checks: vec![CheckResult {
            name: "success rate".into(),
            passed: true,
            value: "0.998".into(),
        }],
    }
}

/// Proposes `service`'s rollback and has two SREs approve it.
async fn roll_back(t: &Tester, service: &str) -> rollbot::domain::Proposal {
    let p = t.propose_for(service, "slack:UALICE").await.unwrap();
    t.approve(&p.id, "slack:UBOB").await;
    t.approve(&p.id, "slack:UCAROL").await;
    t.settle().await;
    p
}

fn hook_detail(t: &Tester, id: &rollbot::domain::ProposalId) -> String {
    t.proposal(id)
        .timeline
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::StepFinished {
                step: Step::BeforeHooks,
                ok: true,
                detail,
            } => Some(detail.clone()),
            _ => None,
        })
        .expect("the step before the rollback finished")
}

fn patched_paths(w: &World) -> Vec<String> {
    w.sim
        .handle
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.path)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_a_self_healed_argo_cd_workload_is_reverted_and_not_verified() {
    let w = &world().await;
    run_test_in(
        || w.tester("warn"),
        |t| async move {
            // The checks alone would pass: the revert must still fail it.
            t.verifier.push(passing_checks());
            let p = t.propose_for("payment-api", "slack:UALICE").await.unwrap();
            assert_eq!(
                p.plan.warnings.len(),
                1,
                "the proposal warns about the owner: {:?}",
                p.plan.warnings
            );
            let warning = &p.plan.warnings[0];
            assert!(
                warning.starts_with("Argo CD application argocd/payments has self-heal on"),
                "{warning}"
            );
            assert!(
                warning.contains("it would revert this rollback"),
                "{warning}"
            );
            assert!(
                warning.contains("https://git.example.com/platform/deploy.git, path apps/payments"),
                "{warning}"
            );
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;

            t.proposal(&p.id).expect_state(State::VerificationFailed);
            assert_eq!(
                w.image("payment-api"),
                "payment-api:v1.3.0",
                "Argo CD reverted it"
            );
            assert_eq!(t.expect_posted(&p.id), "memory:incidents");
            let notes = t.expect_threads(
                &p.id,
                &[
                    "execution_started",
                    "progress",
                    "execution_finished",
                    "reverted",
                    "report",
                ],
            );
            let ThreadNote::Reverted { reason } = &notes[3] else {
                unreachable!()
            };
            assert!(
                reason.contains(
                    "Argo CD application argocd/payments, which manages this workload, put it back"
                ),
                "{reason}"
            );
            // Nothing rollbot did touched the owner, and there is nothing to resume.
            assert_eq!(patched_paths(w).len(), 1, "{:?}", patched_paths(w));
            let service = ServiceName::parse("payment-api").unwrap();
            let nothing = t.engine.resume_sync(&service, &user("slack:UBOB")).await;
            assert!(
                matches!(nothing, Err(EngineError::NothingToResume { .. })),
                "{nothing:?}"
            );
            t
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_turns_auto_sync_off_first_and_resume_sync_restores_it_exactly() {
    let w = &world().await;
    let before = w.owner(Kind::Application, "argocd", "payments")["spec"]["syncPolicy"].clone();
    run_test_in(
        || w.tester("pause"),
        |t| async move {
            t.verifier.push(passing_checks());
            let p = roll_back(&t, "payment-api").await;
            t.proposal(&p.id).expect_state(State::Verified);
            assert_eq!(w.image("payment-api"), "payment-api:v1.2.0", "the rollback held");

            // Auto-sync was off before the rollback's PATCH.
            let patches = patched_paths(w);
            assert_eq!(
                patches,
                [
                    "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/payments",
                    "/apis/apps/v1/namespaces/production/deployments/payment-api",
                ]
            );
            let app = w.owner(Kind::Application, "argocd", "payments");
            assert_eq!(app["spec"]["syncPolicy"], json!({"syncOptions": ["CreateNamespace=true"]}));
            let saved: Value = serde_json::from_str(
                app["metadata"]["annotations"][SAVED_ANNOTATION].as_str().unwrap(),
            )
            .unwrap();
            assert_eq!(saved, before, "the previous policy is saved on the application");

            // Real kubectl sees the policy as rollbot left it.
            let shown = w
                .sim
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
            assert_eq!(
                serde_json::from_str::<Value>(&shown).unwrap(),
                json!({"syncOptions": ["CreateNamespace=true"]})
            );

            // The timeline and the thread say what was paused and what to revert.
            let detail = hook_detail(&t, &p.id);
            for part in [
                "paused Argo CD application argocd/payments: automated sync turned off",
                "revert deployment production/payment-api to payment-api:v1.2.0 in git (https://git.example.com/platform/deploy.git, path apps/payments, revision main)",
                "`/rollback resume-sync payment-api`",
            ] {
                assert!(detail.contains(part), "{part:?} in {detail}");
            }
            assert_eq!(t.expect_posted(&p.id), "memory:incidents");
            let notes = t.expect_threads(
                &p.id,
                &[
                    "execution_started",
                    "progress",
                    "progress",
                    "execution_finished",
                    "gitops_paused",
                    "verification",
                    "resolved",
                    "report",
                ],
            );
            assert_eq!(
                notes[1],
                ThreadNote::Progress {
                    line: detail.clone()
                }
            );
            // After the rollback: what stays paused, what to revert, how to resume.
            assert_eq!(
                notes[4],
                ThreadNote::GitopsPaused {
                    owner: "Argo CD application argocd/payments".into(),
                    workload: "deployment production/payment-api".into(),
                    version: "payment-api:v1.2.0".into(),
                    git: "https://git.example.com/platform/deploy.git, path apps/payments, revision main".into(),
                    rolled_back: true,
                }
            );

            // The step run again (after a restart) keeps the first saved policy.
            let owner = Owner {
                kind: OwnerKind::ArgoApplication,
                namespace: "argocd".into(),
                name: "payments".into(),
            };
            let again = pause(&w.kube.client(), &owner).await.unwrap();
            assert!(again.contains("already paused by rollbot"), "{again}");
            let app = w.owner(Kind::Application, "argocd", "payments");
            assert_eq!(
                app["metadata"]["annotations"][SAVED_ANNOTATION].as_str(),
                Some(before.to_string().as_str())
            );

            // `/rollback resume-sync payment-api`: one authorised approver,
            // and it puts back exactly what was there.
            let handler = CommandHandler::new(t.engine.clone(), Arc::new(ChatRouter::new()));
            let typed = |who: &str| CommandInput {
                platform: "slack".into(),
                channel: "C0INCIDENT".into(),
                user: user(who),
                text: "resume-sync payment-api".into(),
                key: format!("trigger-{who}"),
                locale: None,
            };
            let refused = handler.command(typed("slack:UMALLORY")).await.unwrap();
            assert!(
                matches!(
                    refused.reply,
                    Reply::Refused {
                        error: UserError::ResumeNotAllowed { .. }
                    }
                ),
                "{refused:?}"
            );
            let answer = handler.command(typed("slack:UBOB")).await.unwrap();
            let Reply::SyncResumed { restored, .. } = answer.reply else {
                panic!("{answer:?}")
            };
            let resumed = restored.join("; ");
            assert!(
                resumed.contains("resumed Argo CD application argocd/payments"),
                "{resumed}"
            );
            let app = w.owner(Kind::Application, "argocd", "payments");
            assert_eq!(app["spec"]["syncPolicy"], before);
            assert!(app["metadata"]["annotations"][SAVED_ANNOTATION].is_null());
            // Who resumed it is on the proposal's timeline.
            assert!(t.proposal(&p.id).timeline.iter().any(|e| matches!(
                &e.kind,
                EventKind::Note { text } if text.starts_with("slack:UBOB resumed the GitOps sync")
            )));
            t
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_an_unsuspended_flux_kustomization_reverts_the_rollback() {
    let w = &world().await;
    run_test_in(
        || w.tester("warn"),
        |t| async move {
            t.verifier.push(passing_checks());
            let p = t.propose_for("ledger-api", "slack:UALICE").await.unwrap();
            assert!(
                p.plan.warnings[0].starts_with(
                    "Flux Kustomization flux-system/apps is not suspended: it would revert this rollback at its next reconcile (every 10m)"
                ),
                "{:?}",
                p.plan.warnings
            );
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            t.proposal(&p.id).expect_state(State::VerificationFailed);
            assert_eq!(w.image("ledger-api"), "ledger-api:v2.1.0");
            t.expect_posted(&p.id);
            t.expect_threads(
                &p.id,
                &[
                    "execution_started",
                    "progress",
                    "execution_finished",
                    "reverted",
                    "report",
                ],
            );
            t
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_suspends_a_flux_kustomization_and_resume_sync_unsuspends_it() {
    let w = &world().await;
    run_test_in(
        || w.tester("pause"),
        |t| async move {
            t.verifier.push(passing_checks());
            let p = roll_back(&t, "ledger-api").await;
            t.proposal(&p.id).expect_state(State::Verified);
            assert_eq!(w.image("ledger-api"), "ledger-api:v2.0.0", "the rollback held");
            let ks = w.owner(Kind::Kustomization, "flux-system", "apps");
            assert_eq!(ks["spec"]["suspend"], true);
            assert_eq!(ks["metadata"]["annotations"][SAVED_ANNOTATION], "null");
            let detail = hook_detail(&t, &p.id);
            assert!(
                detail.contains("paused Flux Kustomization flux-system/apps: suspended"),
                "{detail}"
            );
            assert!(
                detail.contains("to ledger-api:v2.0.0 in git (GitRepository flux-system, path ./apps/production)"),
                "{detail}"
            );
            t.expect_posted(&p.id);
            t.expect_threads(
                &p.id,
                &[
                    "execution_started",
                    "progress",
                    "progress",
                    "execution_finished",
                    "gitops_paused",
                    "verification",
                    "resolved",
                    "report",
                ],
            );
            let service = ServiceName::parse("ledger-api").unwrap();
            pause_hooks(t.config.gitops_paused(), &w.kube)[&service]
                .resume(&service)
                .await
                .unwrap()
                .unwrap();
            let ks = w.owner(Kind::Kustomization, "flux-system", "apps");
            assert!(ks["spec"].get("suspend").is_none(), "as before: {ks}");
            assert!(ks["metadata"]["annotations"][SAVED_ANNOTATION].is_null());
            t
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_makes_approval_impossible_and_says_why() {
    let w = &world().await;
    run_test_in(
        || w.tester("refuse"),
        |t| async move {
            let p = t.propose_for("payment-api", "slack:UALICE").await.unwrap();
            assert_eq!(p.plan.blockers.len(), 1, "{:?}", p.plan.blockers);
            let reason = &p.plan.blockers[0];
            assert!(
                reason.starts_with("Argo CD application argocd/payments would revert this rollback, and this service's gitops policy is \"refuse\""),
                "{reason}"
            );
            for who in ["slack:UBOB", "slack:UCAROL"] {
                assert_eq!(
                    t.approve(&p.id, who).await,
                    VoteReply::Refused(Refusal::Blocked {
                        reasons: p.plan.blockers.clone()
                    })
                );
                t.expect_told(who, "vote_refused");
            }
            t.settle().await;
            t.proposal(&p.id).expect_state(State::Proposed);
            assert_eq!(w.image("payment-api"), "payment-api:v1.3.0");
            assert!(patched_paths(w).is_empty(), "{:?}", patched_paths(w));
            t.expect_posted(&p.id);
            t
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_gitops_rbac_the_proposal_says_so_and_pause_rolls_nothing_back() {
    let w = &world_with(&["get", "patch"]).await;
    run_test_in(
        || w.tester("pause"),
        |t| async move {
            let p = t.propose_for("payment-api", "slack:UALICE").await.unwrap();
            let warning = &p.plan.warnings[0];
            assert!(
                warning.starts_with("This workload is managed by Argo CD application argocd/payments (found by annotation argocd.argoproj.io/tracking-id), which rollbot could not read: rollbot may not get applications.argoproj.io in namespace argocd"),
                "{warning}"
            );
            assert!(warning.contains("deploy/gitops/"), "{warning}");
            t.approve(&p.id, "slack:UBOB").await;
            t.approve(&p.id, "slack:UCAROL").await;
            t.settle().await;
            // The owner could not be paused, so nothing was rolled back.
            t.proposal(&p.id).expect_state(State::Failed);
            assert!(patched_paths(w).is_empty(), "{:?}", patched_paths(w));
            assert_eq!(w.image("payment-api"), "payment-api:v1.3.0");
            t.expect_posted(&p.id);
            let notes = t.expect_threads(
                &p.id,
                &["execution_started", "execution_failed"],
            );
            let ThreadNote::ExecutionFailed { error } = &notes[1] else {
                unreachable!()
            };
            assert!(
                error.message.contains("Nothing was rolled back, since Argo CD application argocd/payments would revert it"),
                "{error:?}"
            );
            t
        },
    )
    .await;
}
