//! Alert ingest side by side with a bare axum handler.
//!
//! Starts the release `rollbot serve` (with `rollbot sim` as its cluster)
//! and, as a peer, this program again as a bare axum server whose one
//! handler checks the same bearer token and parses the same Alertmanager
//! JSON with rollbot's own parser, then answers 200 — no engine, no store.
//! The same `wrk` load (`benches/wrk/alert.lua`) goes to both, interleaved,
//! for each kind of delivery and each number of connections:
//!
//! - `new`: every delivery a new alert, for eight services in turn (each
//!   joins its service's open proposal after the first);
//! - `repeat`: the same delivery again and again (the dedup path);
//! - `storm`: every delivery a new alert for one service (all join one
//!   open proposal, so they queue on that proposal's lock).
//!
//! Prints req/s and p99 for both and their ratio, as markdown, to `--out`;
//! with `--profile DIR` it also records the server with `perf` during one
//! more 32-connection run of each kind and adds the top of the profile.
//! Asserts nothing about speed.
//!
//! ```text
//! cargo bench --bench ingest -- [--rollbot PATH] [--out FILE] [--seconds S]
//!     [--runs N] [--conns 4,32,128] [--profile DIR] [--wrk PATH]
//!     [--goals FILE]
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const TOKEN: &str = "bench-token";
const SERVICES: usize = 8;

struct Args {
    rollbot: PathBuf,
    out: Option<PathBuf>,
    seconds: u64,
    runs: usize,
    conns: Vec<u32>,
    profile: Option<PathBuf>,
    wrk: String,
    /// Rows of the goals table are appended here (`scripts/bench.sh`).
    goals: Option<PathBuf>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut argv = std::env::args().skip(1);
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let mut a = Args {
        rollbot: Path::new(&target).join("release/rollbot"),
        out: None,
        seconds: 3,
        runs: 3,
        conns: vec![4, 32, 128],
        profile: None,
        wrk: "wrk".into(),
        goals: None,
    };
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--bare" => {
                serve_bare(&value()?);
                return Ok(None);
            }
            "--rollbot" => a.rollbot = value()?.into(),
            "--out" => a.out = Some(value()?.into()),
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--runs" => a.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--conns" => {
                a.conns = value()?
                    .split(',')
                    .map(|c| c.trim().parse().map_err(|e| format!("--conns: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--profile" => a.profile = Some(value()?.into()),
            "--wrk" => a.wrk = value()?,
            "--goals" => a.goals = Some(value()?.into()),
            // `cargo bench` adds `--bench`.
            _ => {}
        }
    }
    Ok(Some(a))
}

/// The peer: one handler doing what any Alertmanager receiver must (check
/// the token, parse the payload), nothing more.
fn serve_bare(listen: &str) {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    rt.block_on(async {
        let app = axum::Router::new().route(
            "/webhooks/alertmanager",
            post(|headers: HeaderMap, body: Bytes| async move {
                let expected = format!("Bearer {TOKEN}");
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some(expected.as_str())
                {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                match rollbot::alerts::parse_alertmanager(&body) {
                    Ok(batch) => (
                        StatusCode::OK,
                        serde_json::json!({ "alerts": batch.alerts.len() }).to_string(),
                    ),
                    Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .expect("bind the bare server");
        println!("listening {}", listener.local_addr().expect("its address"));
        axum::serve(listener, app).await.expect("serve");
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn services() -> Vec<String> {
    (0..SERVICES).map(|i| format!("svc-{i}")).collect()
}

fn seed_yaml() -> String {
    let mut s = String::from("server_version: v1.33.1\nnamespaces: [production]\ndeployments:\n");
    for name in services() {
        write!(
            s,
            "  - namespace: production\n    name: {name}\n    labels: {{app: {name}}}\n    replicas: 2\n    container: app\n    revisions:\n      - image: app:v1\n      - image: app:v2\n"
        )
        .unwrap();
    }
    s
}

fn serve_config(dir: &Path, port: u16, store: &str) -> String {
    let mut s = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\npath = \"{}\"\n[groups]\nsre = [\"console:alice\", \"console:bob\"]\n[kubernetes]\nkubeconfig = \"{}\"\n[alerts.alertmanager]\nbearer_token = {{ file = \"{}\" }}\n",
        dir.join(store).display(),
        dir.join("kubeconfig").display(),
        dir.join("am-token").display(),
    );
    for name in services() {
        write!(
            s,
            "[[alerts.routes]]\nmatchers = [\"service={name}\"]\nservice = \"{name}\"\n[services.{name}]\ngroups = [\"sre\"]\n[services.{name}.kubernetes]\nnamespace = \"production\"\nname = \"{name}\"\n"
        )
        .unwrap();
    }
    s
}

async fn wait_ready(url: &str, child: &mut Child, what: &str) {
    let http = reqwest::Client::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before it was ready");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} was not ready at {url} within 20 s");
}

#[derive(Clone, Copy, Debug)]
struct WrkResult {
    rps: f64,
    p99_ms: f64,
    errors: u64,
}

fn parse_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

fn parse_wrk(out: &str) -> Option<WrkResult> {
    let mut rps = None;
    let mut p99 = None;
    let mut errors = 0;
    for line in out.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = parse_duration_ms(v);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Some(WrkResult {
        rps: rps?,
        p99_ms: p99?,
        errors,
    })
}

async fn wrk(
    args: &Args,
    lua: &Path,
    port: u16,
    conns: u32,
    seconds: u64,
    services: &str,
    mode: &str,
) -> WrkResult {
    let threads = conns.min(2);
    let out = Command::new(&args.wrk)
        .args([
            format!("-t{threads}"),
            format!("-c{conns}"),
            format!("-d{seconds}s"),
            "--latency".into(),
            "--timeout".into(),
            "10s".into(),
            "-s".into(),
            lua.display().to_string(),
            format!("http://127.0.0.1:{port}"),
            "--".into(),
            TOKEN.into(),
            services.into(),
            mode.into(),
        ])
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e} (install wrk)", args.wrk));
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text).unwrap_or_else(|| panic!("unreadable wrk output:\n{text}"))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn spread(values: &[f64], digits: usize) -> String {
    let mut v = values.to_vec();
    let m = median(&mut v);
    format!(
        "{m:.digits$} ({:.digits$}–{:.digits$})",
        v[0],
        v[v.len() - 1]
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Kind {
    name: &'static str,
    what: &'static str,
    services: String,
    mode: &'static str,
}

fn main() {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    tokio::runtime::Runtime::new()
        .expect("a tokio runtime")
        .block_on(run(args));
}

async fn run(args: Args) {
    if !args.rollbot.exists() {
        eprintln!(
            "error: no rollbot binary at {}; build it with `cargo build --release` or pass --rollbot",
            args.rollbot.display()
        );
        std::process::exit(2);
    }
    let lua = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/wrk/alert.lua");
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("am-token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(dir.path().join("seed.yaml"), seed_yaml()).unwrap();

    // The cluster.
    let sim_port = free_port();
    let mut sim = Command::new(&args.rollbot)
        .args(["sim", "--seed"])
        .arg(dir.path().join("seed.yaml"))
        .args(["--listen", &format!("127.0.0.1:{sim_port}")])
        .arg("--kubeconfig-out")
        .arg(dir.path().join("kubeconfig"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start rollbot sim");
    let start = Instant::now();
    while !dir.path().join("kubeconfig").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "rollbot sim wrote no kubeconfig"
        );
        if let Ok(Some(s)) = sim.try_wait() {
            panic!("rollbot sim exited ({s})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The peer.
    let mut bare = Command::new(std::env::current_exe().expect("this program"))
        .args(["--bare", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the bare server");
    let mut lines = BufReader::new(bare.stdout.take().unwrap()).lines();
    let line = lines
        .next_line()
        .await
        .ok()
        .flatten()
        .expect("the bare server's address");
    let bare_port: u16 = line
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");

    let all = services().join(",");
    let kinds = [
        Kind {
            name: "new",
            what: "a new alert per delivery, eight services in turn",
            services: all.clone(),
            mode: "new",
        },
        Kind {
            name: "repeat",
            what: "the same delivery repeated (dedup)",
            services: "svc-0".into(),
            mode: "repeat",
        },
        Kind {
            name: "storm",
            what: "a new alert per delivery, all into one open proposal",
            services: "svc-0".into(),
            mode: "new",
        },
    ];

    let mut table = String::new();
    let mut goals = String::new();
    let mut notes = String::new();
    let mut profiles = String::new();
    for (k, kind) in kinds.iter().enumerate() {
        // A fresh server and store for each kind of delivery.
        let port = free_port();
        let store = format!("db-{k}");
        let config = dir.path().join(format!("rollbot-{k}.toml"));
        std::fs::write(&config, serve_config(dir.path(), port, &store)).unwrap();
        let mut serve = Command::new(&args.rollbot)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("ROLLBOT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start rollbot serve");
        wait_ready(
            &format!("http://127.0.0.1:{port}/readyz"),
            &mut serve,
            "rollbot serve",
        )
        .await;
        let pid = serve.id().expect("serve's pid");
        // Warm-up: opens each service's proposal, fills the kept alerts.
        wrk(&args, &lua, port, 8, 1, &kind.services, kind.mode).await;
        wrk(&args, &lua, bare_port, 8, 1, &kind.services, kind.mode).await;
        let mut deliveries = 0.0;
        for &conns in &args.conns {
            eprintln!("ingest: {} at {conns} connections", kind.name);
            let (mut ours, mut peer) = (Vec::new(), Vec::new());
            for _ in 0..args.runs {
                let r = wrk(
                    &args,
                    &lua,
                    port,
                    conns,
                    args.seconds,
                    &kind.services,
                    kind.mode,
                )
                .await;
                deliveries += r.rps * args.seconds as f64;
                let b = wrk(
                    &args,
                    &lua,
                    bare_port,
                    conns,
                    args.seconds,
                    &kind.services,
                    kind.mode,
                )
                .await;
                ours.push(r);
                peer.push(b);
            }
            let rps: Vec<f64> = ours.iter().map(|r| r.rps).collect();
            let bare_rps: Vec<f64> = peer.iter().map(|r| r.rps).collect();
            let ratios: Vec<f64> = ours.iter().zip(&peer).map(|(r, b)| r.rps / b.rps).collect();
            let p99: Vec<f64> = ours.iter().map(|r| r.p99_ms).collect();
            let bare_p99: Vec<f64> = peer.iter().map(|r| r.p99_ms).collect();
            let errors: u64 = ours.iter().map(|r| r.errors).sum();
            if conns == 32 && kind.name != "repeat" {
                let mut r = ratios.clone();
                let m = median(&mut r);
                let verdict = if m >= 0.5 {
                    "met".to_string()
                } else {
                    format!("**not met**: {:.1}× short", 0.5 / m)
                };
                writeln!(
                    goals,
                    "| ingest `{}` at 32 connections, rollbot / bare axum | ≥ 0.5 | {m:.3} | {verdict} |",
                    kind.name
                )
                .unwrap();
            }
            writeln!(
                table,
                "| {} | {conns} | {} | {} | {} | {} | **{}** | {errors} |",
                kind.name,
                spread(&rps, 0),
                spread(&p99, 2),
                spread(&bare_rps, 0),
                spread(&bare_p99, 2),
                spread(&ratios, 3),
            )
            .unwrap();
        }
        let rss = rss_kib(pid);
        let store_kib = dir_size(&dir.path().join(&store)) / 1024;
        writeln!(
            notes,
            "- `{}`: after about {deliveries:.0} measured deliveries the server's RSS was {:.1} MiB and its store {:.1} MiB on disk.",
            kind.name,
            rss as f64 / 1024.0,
            store_kib as f64 / 1024.0,
        )
        .unwrap();
        if let Some(pdir) = &args.profile {
            eprintln!("ingest: profiling {} at 32 connections", kind.name);
            profiles.push_str(&profile(&args, pdir, &lua, port, pid, kind).await);
        }
        let _ = serve.kill().await;
    }
    let _ = bare.kill().await;
    let _ = sim.kill().await;

    let mut md = String::new();
    writeln!(
        md,
        "## Alert ingest vs a bare axum handler\n\n\
         `wrk` (2 threads, `benches/wrk/alert.lua`) posts Alertmanager deliveries of one alert each to the release `rollbot serve` (every delivery made durable before its 200) and, interleaved run by run, to a bare axum handler built by the benchmark that checks the same bearer token and parses the same JSON with rollbot's parser. \
         {} s per run, {} runs per row; median (min–max). Kinds of delivery:\n",
        args.seconds, args.runs
    )
    .unwrap();
    for kind in &kinds {
        writeln!(md, "- `{}`: {}", kind.name, kind.what).unwrap();
    }
    writeln!(
        md,
        "\n| kind | connections | rollbot req/s | rollbot p99 ms | bare req/s | bare p99 ms | ratio | rollbot errors |\n|---|---|---|---|---|---|---|---|\n{table}\n{notes}"
    )
    .unwrap();
    md.push_str(&profiles);
    if let Some(path) = &args.goals {
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(goals.as_bytes()))
            .expect("write --goals");
    }
    match &args.out {
        Some(path) => std::fs::write(path, &md).expect("write --out"),
        None => print!("{md}"),
    }
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Records `pid` with `perf` during one 32-connection run of `kind`, and
/// returns the top of the inclusive profile as markdown.
async fn profile(args: &Args, pdir: &Path, lua: &Path, port: u16, pid: u32, kind: &Kind) -> String {
    std::fs::create_dir_all(pdir).expect("create the profile directory");
    let data = pdir.join(format!("ingest-{}.perf.data", kind.name));
    let seconds = args.seconds.max(3);
    let record = Command::new("perf")
        .args(["record", "-F", "499", "-g", "-o"])
        .arg(&data)
        .args(["-p", &pid.to_string(), "--", "sleep", &seconds.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut record) = record else {
        return format!(
            "\n(no profile of `{}`: `perf` could not be started)\n",
            kind.name
        );
    };
    wrk(args, lua, port, 32, seconds, &kind.services, kind.mode).await;
    let _ = record.wait().await;
    let report = Command::new("perf")
        .args([
            "report",
            "--children",
            "--sort",
            "sym",
            "--stdio",
            "-g",
            "none",
            "-i",
        ])
        .arg(&data)
        .output()
        .await;
    let (text, stderr) = match report {
        Ok(o) => (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => {
            return format!("\n(no profile of `{}`: `perf report`: {e})\n", kind.name);
        }
    };
    // User-space symbols only (the kernel's share shows as the gap), and
    // not the frames perf could not name.
    let top: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.contains("[.] ") && !l.starts_with('#') && {
                let sym = l.rsplit("[.] ").next().unwrap_or("");
                !sym.starts_with("0x") && !sym.starts_with("0000")
            }
        })
        .take(30)
        .collect();
    if top.is_empty() {
        return format!(
            "\n(no profile of `{}`: `perf report` named no symbol: {})\n",
            kind.name,
            stderr.trim()
        );
    }
    format!(
        "\n### Profile: `{}` at 32 connections\n\n`perf record -F 499 -g` on `rollbot serve` for {seconds} s, inclusive (children) share of all samples per user-space symbol, top 30; without frame pointers most call chains stop early, so read it as where the CPU is spent (full data: `{}` in the `--profile` directory, `bench-profiles` under the target directory from `scripts/bench.sh`):\n\n```text\n{}\n```\n",
        kind.name,
        data.file_name()
            .map_or_else(|| "?".into(), |n| n.to_string_lossy()),
        top.join("\n")
    )
}
