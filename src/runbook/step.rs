//! One configured runbook step — a command or an HTTP call — run as a
//! before/after hook or as a pre-check.
//!
//! Values reach a command as separate argv items (and as `ROLLBOT_…`
//! environment variables), never through a shell line; secrets from
//! `env`/`headers` are masked in everything shown.

use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::process::{self, Spec, TAIL_LINES};
use super::vars::Vars;
use crate::config::{CheckKind, HttpStepConfig, Secret, StepConfig};
use crate::domain::{Plan, ServiceName};
use crate::ports::{ExecError, ExecErrorKind, Finding, Hook, HookCall, PreCheck};

/// How a step ended, for either use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// `exit 0`, `exit 1`, `HTTP 503`.
    pub status: String,
    /// The exit code, for commands.
    pub code: Option<i32>,
    /// The last output lines (or response body lines), secrets masked.
    pub tail: Vec<String>,
}

impl Outcome {
    fn tail_line(&self) -> String {
        if self.tail.is_empty() {
            "no output".into()
        } else {
            self.tail.join(" | ")
        }
    }
}

/// One configured step.
pub struct Step {
    config: StepConfig,
    locale: String,
    http: reqwest::Client,
}

impl Step {
    pub fn new(config: &StepConfig, locale: &str, http: reqwest::Client) -> Self {
        Self {
            config: config.clone(),
            locale: locale.to_string(),
            http,
        }
    }

    /// Runs the step with `vars`, sending output lines to `progress`.
    ///
    /// # Errors
    /// It could not run at all (missing program, unreadable secret,
    /// timeout, connection refused), said in a sentence.
    pub async fn perform(
        &self,
        vars: &Vars,
        progress: Option<&mpsc::Sender<String>>,
    ) -> Result<Outcome, String> {
        match (&self.config.command, &self.config.http) {
            (Some(argv), _) => self.command(argv, vars, progress).await,
            (None, Some(http)) => self.call(http, vars, progress).await,
            (None, None) => Err("the step has neither a command nor an http call".into()),
        }
    }

    async fn command(
        &self,
        argv: &[String],
        vars: &Vars,
        progress: Option<&mpsc::Sender<String>>,
    ) -> Result<Outcome, String> {
        let argv = if self.config.shell {
            let script = argv.first().cloned().unwrap_or_default();
            vec!["sh".into(), "-c".into(), script]
        } else {
            let mut out = Vec::with_capacity(argv.len());
            for (i, a) in argv.iter().enumerate() {
                out.push(if i == 0 { a.clone() } else { vars.render(a)? });
            }
            out
        };
        let mut env = vars.env();
        let mut secrets = Vec::new();
        for (name, value) in &self.config.env {
            let (v, secret) = read(value, &format!("env.{name}"))?;
            if secret {
                secrets.push(v.clone());
            }
            env.push((name.clone(), v));
        }
        let spec = Spec {
            argv,
            env,
            dir: self.config.dir.clone(),
            timeout: self.config.limit(),
            secrets,
            inherit_env: false,
        };
        let done = process::run(&spec, progress)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Outcome {
            ok: done.ok(),
            status: done.status(),
            code: done.code,
            tail: done.tail,
        })
    }

    async fn call(
        &self,
        http: &HttpStepConfig,
        vars: &Vars,
        progress: Option<&mpsc::Sender<String>>,
    ) -> Result<Outcome, String> {
        let url = vars.render(&http.url)?;
        let method = reqwest::Method::from_bytes(http.method.as_bytes())
            .map_err(|_| format!("{:?} is not an HTTP method", http.method))?;
        let mut req = self
            .http
            .request(method.clone(), &url)
            .timeout(self.config.limit());
        let mut secrets = Vec::new();
        for (name, value) in &http.headers {
            let (v, secret) = read(value, &format!("http.headers.{name}"))?;
            if secret {
                secrets.push(v.clone());
            }
            req = req.header(name.as_str(), v);
        }
        if let Some(body) = &http.body {
            let body = serde_json::to_value(body).map_err(|e| e.to_string())?;
            req = req.json(&fill(body, vars)?);
        }
        if let Some(p) = progress {
            let _ = p
                .send(format!("{method} {}", process::mask(&url, &secrets)))
                .await;
        }
        let response = req.send().await.map_err(|e| {
            process::mask(
                &format!("{method} {url} failed: {}", error_chain(&e)),
                &secrets,
            )
        })?;
        let status = response.status();
        let ok = match http.expect_status {
            Some(want) => status.as_u16() == want,
            None => status.is_success(),
        };
        let text = response.text().await.unwrap_or_default();
        let mut tail: Vec<String> = text
            .lines()
            .rev()
            .take(TAIL_LINES)
            .map(|l| process::mask(&l.chars().take(300).collect::<String>(), &secrets))
            .collect();
        tail.reverse();
        if let Some(p) = progress {
            let _ = p.send(format!("HTTP {}", status.as_u16())).await;
        }
        Ok(Outcome {
            ok,
            status: match http.expect_status {
                Some(want) if !ok => format!("HTTP {}, expected {want}", status.as_u16()),
                _ => format!("HTTP {}", status.as_u16()),
            },
            code: None,
            tail,
        })
    }

    fn word(&self, key: &str, args: minijinja::Value) -> String {
        match crate::report::templates() {
            Ok(t) => t
                .text(&self.locale, &format!("runbook.{key}"), args)
                .unwrap_or_else(|e| format!("{key}: {e}")),
            Err(e) => format!("{key}: {e}"),
        }
    }
}

/// An error with its causes, e.g. `error sending request: connection refused`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A value from the config: plain (inline), or a secret read from the
/// environment or a file (`true`: mask it).
fn read(value: &Secret, key: &str) -> Result<(String, bool), String> {
    match value {
        Secret::Inline(v) => Ok((v.clone(), false)),
        secret => secret.read(key).map(|v| (v, true)),
    }
}

/// `body` with every string filled in.
fn fill(body: serde_json::Value, vars: &Vars) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match body {
        Value::String(s) => Value::String(vars.render(&s)?),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| fill(v, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| Ok((k, fill(v, vars)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other,
    })
}

#[async_trait]
impl Hook for Step {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn always(&self) -> bool {
        self.config.always
    }

    fn idempotent(&self) -> bool {
        self.config.idempotent
    }

    async fn run(
        &self,
        call: &HookCall,
        progress: mpsc::Sender<String>,
    ) -> Result<String, ExecError> {
        let began = Instant::now();
        let outcome = self
            .perform(&Vars::of_call(call), Some(&progress))
            .await
            .map_err(|e| ExecError::new(ExecErrorKind::HookFailed, e))?;
        let took = humantime::format_duration(std::time::Duration::from_millis(
            u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
        ));
        if outcome.ok {
            Ok(format!(
                "{} after {took}: {}",
                outcome.status,
                outcome.tail_line()
            ))
        } else {
            Err(ExecError::new(
                ExecErrorKind::HookFailed,
                format!("{} after {took}: {}", outcome.status, outcome.tail_line()),
            ))
        }
    }
}

#[async_trait]
impl PreCheck for Step {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn check(&self, service: &ServiceName, plan: &Plan) -> Finding {
        let name = self.config.name.as_str();
        let mut finding = Finding::default();
        let outcome = self.perform(&Vars::of_plan(service, plan), None).await;
        let ctx = |o: &Outcome| minijinja::context! { name => name, status => o.status.clone(), tail => o.tail_line() };
        let problem = match &outcome {
            Err(error) => Some(self.word(
                "check_error",
                minijinja::context! { name => name, error => error },
            )),
            Ok(o) if self.config.kind == Some(CheckKind::Migrations) => match o.code {
                Some(0) => None,
                Some(1) => {
                    finding.migrations = true;
                    finding.warnings.push(self.word("migrations_found", ctx(o)));
                    None
                }
                _ => Some(self.word("migrations_unknown", ctx(o))),
            },
            Ok(o) if o.ok => None,
            Ok(o) => Some(self.word("check_failed", ctx(o))),
        };
        if let Some(problem) = problem {
            if self.config.blocking {
                finding.blocker = Some(match &outcome {
                    Ok(o) => self.word("blocked", ctx(o)),
                    Err(_) => problem,
                });
            } else {
                finding.warnings.push(problem);
            }
        }
        finding
    }
}
