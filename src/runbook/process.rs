//! Running one program for a runbook step or a command rollback: in its
//! own process group, with an explicit environment, its output streamed
//! line by line (secrets masked), and the whole group killed when the
//! step times out or the task running it is dropped (rollbot shutting
//! down) — a script's children go with it, not just the script.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

/// How many of the last output lines are kept for the timeline and warnings.
pub const TAIL_LINES: usize = 10;

/// How many standard output lines are kept for a program's answer.
pub const STDOUT_LINES: usize = 10_000;

/// One program to run.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub argv: Vec<String>,
    /// The whole environment besides `PATH` (which rollbot's own is passed on for).
    pub env: Vec<(String, String)>,
    pub dir: Option<PathBuf>,
    pub timeout: Duration,
    /// Values never shown: replaced by `***` in every line.
    pub secrets: Vec<String>,
    /// Pass rollbot's whole environment on (a tool like helm reads its
    /// kubeconfig and cache locations from it) instead of `env` alone.
    pub inherit_env: bool,
}

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// The last output lines (stdout and stderr, interleaved as they came).
    pub tail: Vec<String>,
    /// Standard output alone (at most [`STDOUT_LINES`] lines), e.g. a
    /// plan command's JSON.
    pub stdout: Vec<String>,
    pub elapsed: Duration,
}

impl Finished {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// `exit 3` or `killed by a signal`.
    pub fn status(&self) -> String {
        match self.code {
            Some(c) => format!("exit {c}"),
            None => "killed by a signal".into(),
        }
    }

    /// The tail as one line for the timeline, e.g. `… | last line`.
    pub fn tail_line(&self) -> String {
        self.tail.join(" | ")
    }
}

/// Why a program did not run to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("cannot start {program}: {error}; check the path and that it is executable")]
    Spawn { program: String, error: String },
    #[error("timed out after {}; it was killed with its child processes{}", humantime::format_duration(*after), tail_suffix(tail))]
    TimedOut { after: Duration, tail: Vec<String> },
}

fn tail_suffix(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(" (last output: {})", tail.join(" | "))
    }
}

/// The path `program` would run from: itself when it names a path, else
/// the first executable match on `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// Kills the process group it names when dropped, unless disarmed: the
/// task running a step can be dropped at any await (shutdown), and the
/// group must not outlive it.
struct GroupGuard(Option<rustix::process::Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            // ESRCH (the group is gone already) is the usual, fine answer.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `spec`, sending each output line to `progress` as it comes.
///
/// # Errors
/// The program cannot start, or it ran past `spec.timeout` (then it and
/// every process of its group were killed).
pub async fn run(
    spec: &Spec,
    progress: Option<&mpsc::Sender<String>>,
) -> Result<Finished, RunError> {
    let started = Instant::now();
    let program = spec.argv.first().cloned().unwrap_or_default();
    let mut cmd = Command::new(&program);
    cmd.args(&spec.argv[1.min(spec.argv.len())..]);
    if !spec.inherit_env {
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so its children can be killed with it.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|e| RunError::Spawn {
        program: program.clone(),
        error: e.to_string(),
    })?;
    let mut guard = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw),
    );
    let (lines_tx, mut lines) = mpsc::channel::<(bool, String)>(64);
    let readers = [
        child
            .stdout
            .take()
            .map(|o| read_lines(o, true, lines_tx.clone())),
        child
            .stderr
            .take()
            .map(|e| read_lines(e, false, lines_tx.clone())),
    ];
    drop(lines_tx);
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut stdout = Vec::new();
    let mut keep = |(out, line): (bool, String)| {
        if out && stdout.len() < STDOUT_LINES {
            stdout.push(line.clone());
        }
        let line = mask(&line, &spec.secrets);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        line
    };
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let status = loop {
        tokio::select! {
            Some(line) = lines.recv() => {
                let line = keep(line);
                if let Some(p) = progress {
                    let _ = p.send(line).await;
                }
            }
            status = child.wait() => break Some(status),
            () = tokio::time::sleep_until(deadline) => break None,
        }
    };
    // The program is over (or out of time): whatever it left running in its
    // group goes too, so the readers see the end of the pipes.
    guard.kill();
    for reader in readers.into_iter().flatten() {
        let _ = reader.await;
    }
    while let Ok(line) = lines.try_recv() {
        let line = keep(line);
        if let Some(p) = progress {
            let _ = p.send(line).await;
        }
    }
    let tail: Vec<String> = tail.into_iter().collect();
    match status {
        Some(Ok(status)) => Ok(Finished {
            code: status.code(),
            tail,
            stdout,
            elapsed: started.elapsed(),
        }),
        Some(Err(e)) => Err(RunError::Spawn {
            program,
            error: e.to_string(),
        }),
        None => {
            let _ = child.kill().await;
            Err(RunError::TimedOut {
                after: spec.timeout,
                tail,
            })
        }
    }
}

/// Sends each line of `from` to `to`, tagged `out` (standard output).
fn read_lines(
    from: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    out: bool,
    to: mpsc::Sender<(bool, String)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if to.send((out, line)).await.is_err() {
                return;
            }
        }
    })
}

/// `line` with every secret value replaced by `***`.
pub fn mask(line: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(line.to_string(), |l, s| l.replace(s.as_str(), "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Spec {
        Spec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![("TOKEN".into(), "s3cret".into())],
            timeout,
            secrets: vec!["s3cret".into()],
            ..Spec::default()
        }
    }

    #[tokio::test]
    async fn streams_output_masks_secrets_and_keeps_the_exit_code() {
        let (tx, mut rx) = mpsc::channel(16);
        let done = run(
            &sh(
                "echo one; echo token=$TOKEN >&2; exit 3",
                Duration::from_secs(20),
            ),
            Some(&tx),
        )
        .await
        .unwrap();
        drop(tx);
        assert_eq!(done.code, Some(3));
        assert_eq!(done.status(), "exit 3");
        let mut seen = Vec::new();
        while let Some(l) = rx.recv().await {
            seen.push(l);
        }
        seen.sort();
        assert_eq!(seen, ["one", "token=***"]);
        assert!(!done.tail_line().contains("s3cret"));
    }

    #[tokio::test]
    async fn the_environment_is_only_what_was_given() {
        // HOME is set for the tests themselves; the step must not see it.
        let done = run(
            &sh("echo \"home=${HOME:-none}\"", Duration::from_secs(20)),
            None,
        )
        .await
        .unwrap();
        assert_eq!(done.tail, ["home=none"]);
    }

    #[tokio::test]
    async fn a_missing_program_says_so() {
        let spec = Spec {
            argv: vec!["/nonexistent/backup.sh".into()],
            timeout: Duration::from_secs(5),
            ..Spec::default()
        };
        let e = run(&spec, None).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot start /nonexistent/backup.sh"),
            "{e}"
        );
    }

    /// Whether `pid` runs nothing any more (gone, or a zombie).
    fn gone(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
        })
    }

    #[tokio::test]
    async fn dropping_a_running_step_kills_its_whole_group() {
        // What happens to a hook when rollbot shuts down mid-step: the task
        // running it is dropped.
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let spec = sh(&script, Duration::from_secs(300));
        let task = tokio::spawn(async move { run(&spec, None).await });
        let pid = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Ok(pid) = std::fs::read_to_string(&pidfile)
                    && let Ok(pid) = pid.trim().parse::<u32>()
                {
                    return pid;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the step started its child");
        assert!(!gone(pid));
        task.abort();
        let _ = task.await;
        let killed = tokio::time::timeout(Duration::from_secs(20), async {
            while !gone(pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(killed.is_ok(), "the grandchild {pid} outlived its step");
    }

    #[test]
    fn finds_programs_on_path_or_by_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("/bin/sh").is_some());
        assert!(find_program("no-such-program-here").is_none());
    }
}
