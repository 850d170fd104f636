//! `proctor bench`: the warm paths, measured on this machine in one run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use proctor_core::{Command, Job, Limits, RunResult};
use proctor_engine::{Backend, LocalBackend};
use serde::Serialize;

use crate::cli::BenchArgs;

/// A snippet that imports torch and runs one op: what a tool call costs.
const SNIPPET: &str = "import torch\nprint(torch.ones(4).sum().item())\n";

/// ~2 s of single-threaded CPU-bound torch; prints its own compute time, so that the
/// ratio compares the computation, not the interpreter start.
const CPU_BOUND: &str = r#"
import time, torch
torch.set_num_threads(1)
torch.manual_seed(0)
a = torch.randn(256, 256)
start = time.perf_counter()
n = 0
while n < ITERS:
    a = torch.tanh(a @ a * 0.01)
    n += 1
print(f"COMPUTE_S={time.perf_counter() - start:.6f}")
"#;

/// One core's worth of work for the parallelism figure.
const PARALLEL_UNIT: &str = "import torch\ntorch.set_num_threads(1)\na = torch.randn(256, 256)\nfor _ in range(ITERS):\n    a = torch.tanh(a @ a * 0.01)\nprint('done')\n";

#[derive(Serialize)]
struct Figures {
    cold_exec_ms_p50: f64,
    warm_exec_ms_p50: f64,
    warm_exec_ms_p90: f64,
    warm_speedup: f64,
    session_call_ms_p50: f64,
    sandbox_overhead_ratio: f64,
    sandbox_compute_s: f64,
    bare_compute_s: f64,
    parallel_speedup: f64,
    parallel_8_ms: f64,
    sequential_8_ms: f64,
    cold_reps: usize,
    warm_reps: usize,
    cores: usize,
    /// Figures of the front doors (gym, review), by name.
    #[serde(flatten)]
    front_doors: std::collections::BTreeMap<String, f64>,
}

fn p(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let idx = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[idx]
}

fn job(code: &str, cold: bool) -> Job {
    Job::new(Command::Code { code: code.into() })
        .with_limits(Limits {
            timeout_ms: 120_000,
            ..Limits::default()
        })
        .cold(cold)
}

async fn timed(backend: &LocalBackend, job: Job) -> Result<(f64, RunResult)> {
    let start = Instant::now();
    let result = backend.run(job).await?;
    if !result.is_ok() {
        bail!("bench run failed ({}): {}", result.status, result.stderr);
    }
    Ok((start.elapsed().as_secs_f64() * 1000.0, result))
}

fn compute_seconds(stdout: &str) -> Result<f64> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("COMPUTE_S="))
        .and_then(|v| v.trim().parse().ok())
        .context("the CPU-bound script did not report its compute time")
}

/// Calibrates iterations so that the CPU-bound script takes about `target` seconds.
async fn calibrate(backend: &LocalBackend, target: f64) -> Result<u64> {
    let probe = 200u64;
    let (_, r) = timed(
        backend,
        job(&CPU_BOUND.replace("ITERS", &probe.to_string()), false),
    )
    .await?;
    let secs = compute_seconds(&r.stdout)?.max(1e-4);
    Ok(((probe as f64) * target / secs).max(10.0) as u64)
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let reps = args.reps.max(3);
    let figures = super::tokio()?.block_on(async {
        let backend = super::backend(false).await?;
        eprintln!("[bench] warming the pool…");
        backend.warm_up().await?;

        eprintln!("[bench] cold runs…");
        let cold_reps = (reps / 4).max(3);
        let mut cold = Vec::new();
        for _ in 0..cold_reps {
            cold.push(timed(&backend, job(SNIPPET, true)).await?.0);
        }
        eprintln!("[bench] warm runs…");
        let mut warm = Vec::new();
        for _ in 0..reps {
            warm.push(timed(&backend, job(SNIPPET, false)).await?.0);
        }

        eprintln!("[bench] session calls…");
        let session = backend
            .open_session(Limits::default(), Duration::from_secs(60))
            .await?;
        session
            .exec("import torch", Duration::from_secs(30))
            .await?;
        let mut calls = Vec::new();
        for _ in 0..reps {
            let start = Instant::now();
            let reply = session
                .exec("y = torch.ones(4).sum().item()\ny", Duration::from_secs(30))
                .await?;
            calls.push(start.elapsed().as_secs_f64() * 1000.0);
            if reply.value.as_deref() != Some("4.0") {
                bail!("session call returned {:?}", reply);
            }
        }
        session.close().await;

        eprintln!("[bench] sandbox overhead (CPU-bound, ~2 s)…");
        let iters = calibrate(&backend, 2.0).await?;
        let script = CPU_BOUND.replace("ITERS", &iters.to_string());
        let python = backend.config().runtime.python.clone();
        let mut sandboxed = Vec::new();
        let mut bare = Vec::new();
        for _ in 0..3 {
            let (_, r) = timed(&backend, job(&script, true)).await?;
            sandboxed.push(compute_seconds(&r.stdout)?);
            let out = tokio::process::Command::new(&python)
                .arg("-c")
                .arg(&script)
                .output()
                .await
                .context("cannot run bare python")?;
            bare.push(compute_seconds(&String::from_utf8_lossy(&out.stdout))?);
        }
        let sandbox_compute_s = p(&mut sandboxed, 0.5);
        let bare_compute_s = p(&mut bare, 0.5);

        eprintln!("[bench] parallel vs sequential (8 warm runs)…");
        let unit_iters = (iters / 4).max(10);
        let unit = PARALLEL_UNIT.replace("ITERS", &unit_iters.to_string());
        let start = Instant::now();
        for _ in 0..8 {
            timed(&backend, job(&unit, false)).await?;
        }
        let sequential_8_ms = start.elapsed().as_secs_f64() * 1000.0;
        let start = Instant::now();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = backend.clone();
                let j = job(&unit, false);
                tokio::spawn(async move { timed(&b, j).await.map(|_| ()) })
            })
            .collect();
        for h in handles {
            h.await??;
        }
        let parallel_8_ms = start.elapsed().as_secs_f64() * 1000.0;

        eprintln!("[bench] gym over /ws…");
        let mut front_doors = std::collections::BTreeMap::new();
        for (name, value) in gym::figures(&backend, reps).await? {
            // Shown as measured: a later stage that fails does not lose them.
            eprintln!("[bench]   {name} = {value:.3}");
            front_doors.insert(name.to_string(), value);
        }
        eprintln!("[bench] challenge evaluation…");
        let overhead =
            proctor_challenge::evaluate::measure_overhead(&backend, &backend.config().home).await?;
        front_doors.insert("challenge_eval_overhead_s".to_string(), overhead);
        eprintln!("[bench] idle server memory…");
        front_doors.insert(
            "server_idle_rss_mb".to_string(),
            server_idle_rss_mb().await?,
        );
        eprintln!("[bench] experiment-code review…");
        for (name, value) in review_figures(&backend).await? {
            front_doors.insert(name.to_string(), value);
        }

        let cold_p50 = p(&mut cold, 0.5);
        let warm_p50 = p(&mut warm, 0.5);
        anyhow::Ok(Figures {
            cold_exec_ms_p50: cold_p50,
            warm_exec_ms_p50: warm_p50,
            warm_exec_ms_p90: p(&mut warm, 0.9),
            warm_speedup: cold_p50 / warm_p50,
            session_call_ms_p50: p(&mut calls, 0.5),
            sandbox_overhead_ratio: sandbox_compute_s / bare_compute_s,
            sandbox_compute_s,
            bare_compute_s,
            parallel_speedup: sequential_8_ms / parallel_8_ms,
            parallel_8_ms,
            sequential_8_ms,
            cold_reps,
            warm_reps: reps,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            front_doors,
        })
    })?;
    if args.json {
        super::print_json(&figures)?;
    } else {
        println!("cold_exec_ms_p50        {:>9.1}", figures.cold_exec_ms_p50);
        println!(
            "warm_exec_ms_p50        {:>9.1}  (p90 {:.1})",
            figures.warm_exec_ms_p50, figures.warm_exec_ms_p90
        );
        println!("warm_speedup            {:>9.1}x", figures.warm_speedup);
        println!(
            "session_call_ms_p50     {:>9.2}",
            figures.session_call_ms_p50
        );
        println!(
            "sandbox_overhead_ratio  {:>9.3}  ({:.3} s sandboxed vs {:.3} s bare)",
            figures.sandbox_overhead_ratio, figures.sandbox_compute_s, figures.bare_compute_s
        );
        println!(
            "parallel_speedup        {:>9.2}x ({:.0} ms for 8 at once vs {:.0} ms one by one, {} cores)",
            figures.parallel_speedup, figures.parallel_8_ms, figures.sequential_8_ms, figures.cores
        );
        for (name, value) in &figures.front_doors {
            println!("{name:<24}{value:>10.2}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resident memory of an idle `proctor serve` process (the server itself; the sandboxed
/// zygote it starts is a separate process tree).
async fn server_idle_rss_mb() -> Result<f64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let db = std::env::temp_dir().join(format!("proctor-bench-{}.db", std::process::id()));
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["serve", "--port", &port.to_string(), "--database"])
        .arg(&db)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if start.elapsed() > Duration::from_secs(120) {
            bail!("proctor serve did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = child.id().context("server exited")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")?;
    child.kill().await?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    Ok(kb / 1024.0)
}

/// Static analysis alone, then the full review (static + every variation smoke-run), of
/// the ready OHGW fixture; then the realistic fixture's first environment install and
/// its full review with that environment cached.
async fn review_figures(backend: &LocalBackend) -> Result<Vec<(&'static str, f64)>> {
    let case = research_case("ohgw")?;
    let start = Instant::now();
    let quick = proctor_review::review_static(&case, &proctor_review::Budget::unlimited());
    let static_ms = start.elapsed().as_secs_f64() * 1000.0;
    if quick.blockers().next().is_some() {
        bail!(
            "the ready fixture has static blockers: {}",
            quick.experiment_code_issue
        );
    }
    let options = proctor_review::ReviewOptions::for_backend(backend);
    let (_, full_s) = ready_review(backend, &case, &options).await?;
    // The realistic project (Hydra, a subprocess per run, datasets): its environment is
    // first built in an empty cache (uv's download cache as the machine has it), then reused.
    let case = research_case("acls")?;
    let fresh = backend
        .config()
        .home
        .join(format!("bench-envs-{}", std::process::id()));
    let mut first = options.clone();
    if let Some(env) = first.env.as_mut() {
        env.dir = fresh.clone();
    }
    let measured = async {
        let (review, _) = ready_review(backend, &case, &first).await?;
        let (_, warm_s) = ready_review(backend, &case, &first).await?;
        anyhow::Ok((review.env_install_ms.unwrap_or(0) as f64 / 1000.0, warm_s))
    }
    .await;
    let _ = std::fs::remove_dir_all(&fresh);
    let (install_s, realistic_s) = measured?;
    Ok(vec![
        ("review_static_ms", static_ms),
        ("review_full_s", full_s),
        ("review_realistic_full_s", realistic_s),
        ("review_env_first_install_s", install_s),
    ])
}

/// The ready version of the research fixture `name` (`tasks/research/<name>`).
fn research_case(name: &str) -> Result<proctor_review::Case> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tasks/research")
        .join(name);
    let variations: Vec<String> = std::fs::read_to_string(root.join("variations.txt"))
        .context("the review fixture is missing (run the bench from the repository)")?
        .trim()
        .split(',')
        .map(str::to_string)
        .collect();
    Ok(proctor_review::Case::from_dirs(
        &root.join("base"),
        &root.join("ready"),
        &variations,
        Some(&root.join("method.md")),
    )?)
}

/// A full review that must find the case ready, and its wall time in seconds.
async fn ready_review(
    backend: &LocalBackend,
    case: &proctor_review::Case,
    options: &proctor_review::ReviewOptions,
) -> Result<(proctor_review::Review, f64)> {
    let start = Instant::now();
    let review = proctor_review::review(backend, case, options).await;
    let secs = start.elapsed().as_secs_f64();
    if !review.is_experiment_code_ready {
        bail!(
            "a ready fixture was not judged ready: {}",
            review.experiment_code_issue
        );
    }
    Ok((review, secs))
}

/// The gym's figures: tool calls over `/ws`, grading vs bare python, episodes per minute.
pub(super) mod gym {
    use std::time::Instant;

    use anyhow::{bail, Context, Result};
    use futures_util::{SinkExt, StreamExt};
    use proctor_engine::LocalBackend;
    use proctor_gym::episode::{EpisodeConfig, Gym};
    use serde_json::{json, Value};
    use tokio_tungstenite::tungstenite::Message;

    use super::p;

    type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn call(ws: &mut Ws, msg: Value) -> Result<Value> {
        ws.send(Message::Text(msg.to_string().into())).await?;
        loop {
            match ws.next().await.context("the gym closed the socket")?? {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t)?;
                    if v["type"] == "error" {
                        bail!("gym error: {}", v["data"]);
                    }
                    return Ok(v);
                }
                _ => continue,
            }
        }
    }

    async fn connect(base: &str, token: Option<&str>) -> Result<Ws> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("{base}/ws").into_client_request()?;
        if let Some(t) = token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {t}").parse()?);
        }
        Ok(tokio_tungstenite::connect_async(request).await?.0)
    }

    /// `n` snippet calls on a fresh episode (reset again if one ends); their times in ms.
    async fn tool_calls(ws: &mut Ws, n: usize) -> Result<Vec<f64>> {
        let reset = json!({"type": "reset", "data": {"task_id": "task1"}});
        call(ws, reset.clone()).await?;
        let mut calls = Vec::new();
        for i in 0..n {
            let start = Instant::now();
            let r = call(ws, json!({"type": "step", "data": {"action_type": "execute_snippet", "code": format!("{i} + 1")}})).await?;
            calls.push(start.elapsed().as_secs_f64() * 1000.0);
            if r["data"]["done"] == true {
                call(ws, reset.clone()).await?;
            }
        }
        Ok(calls)
    }

    /// Tool calls on a gym that requires an account's token (the WebSocket checks it
    /// again at every message: one SQLite lookup by digest), and one check alone.
    async fn token_figures(backend: &LocalBackend, n: usize) -> Result<Vec<(&'static str, f64)>> {
        use proctor_accounts::{Accounts, Role};
        let dir =
            std::env::temp_dir().join(format!("proctor-bench-accounts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = proctor_store::Store::open(&dir.join("proctor.db")).await?;
        let accounts = Accounts::new(store);
        accounts.add_user("bench", Role::Participant, None).await?;
        let token = accounts.create_token("bench", "bench").await?;
        let access = proctor_gym::episode::Access {
            accounts: Some(accounts.clone()),
            require_token: true,
        };
        let gym = Gym::with_access(backend.clone(), 4, EpisodeConfig::default(), access);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("ws://{}", listener.local_addr()?);
        let server = tokio::spawn(proctor_server::serve_router(
            listener,
            proctor_gym::server::router(gym),
            std::future::pending(),
        ));
        let mut ws = connect(&base, Some(&token)).await?;
        let mut calls = tool_calls(&mut ws, n).await?;
        drop(ws);
        server.abort();
        let mut checks = Vec::new();
        for _ in 0..n.max(200) {
            let start = Instant::now();
            if accounts.authenticate(&token).await?.is_none() {
                bail!("the bench token did not authenticate");
            }
            checks.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(vec![
            ("gym_tool_call_ms_p50_with_token", p(&mut calls, 0.5)),
            ("gym_token_check_ms_p50", p(&mut checks, 0.5)),
            ("gym_token_check_ms_p99", p(&mut checks, 0.99)),
        ])
    }

    /// One full episode: reset, three tools, submit the reference fix.
    async fn episode(base: String, fixed: &'static str) -> Result<f64> {
        let mut ws = connect(&base, None).await?;
        let reset = json!({"type": "reset", "data": {"task_id": "task1"}});
        // As a trainer would: a reset refused while the gym's memory is taken (by the
        // gradings of the episodes that got ahead) is tried again.
        let mut tries = 0;
        while let Err(e) = call(&mut ws, reset.clone()).await {
            tries += 1;
            if tries > 600 || !e.to_string().contains("CAPACITY_REACHED") {
                return Err(e);
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        for action in [
            json!({"action_type": "execute_snippet", "code": "1 + 1"}),
            json!({"action_type": "inspect_diff", "proposed_code": fixed}),
            json!({"action_type": "get_variable_state", "expressions": ["len(SCRIPT)"]}),
            json!({"action_type": "submit_fix", "fixed_code": fixed}),
        ] {
            let r = call(&mut ws, json!({"type": "step", "data": action})).await?;
            if r["data"]["done"] == true {
                return r["data"]["reward"].as_f64().context("no reward");
            }
        }
        bail!("the episode did not end")
    }

    /// The figures, as `(name, value)` pairs.
    pub async fn figures(backend: &LocalBackend, reps: usize) -> Result<Vec<(&'static str, f64)>> {
        let gym = Gym::new(backend.clone(), 16, EpisodeConfig::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("ws://{}", listener.local_addr()?);
        let server = tokio::spawn(proctor_server::serve_router(
            listener,
            proctor_gym::server::router(gym),
            std::future::pending(),
        ));
        let task = proctor_gym::task::find("task1")?;
        let fixed: &'static str = task.file("fixed.py").context("task1 has no fixed.py")?;

        let mut ws = connect(&base, None).await?;
        let mut calls = tool_calls(&mut ws, reps.max(20) * 2).await?;
        drop(ws);
        let with_token = token_figures(backend, reps.max(20) * 2).await?;

        let start = Instant::now();
        let report = proctor_gym::grade::grade(backend, &task, fixed).await?;
        let grade_ms = start.elapsed().as_secs_f64() * 1000.0;
        if report.score < 0.85 {
            bail!("the reference fix scored {}", report.score);
        }
        let dir = tempfile_dir()?;
        let script = dir.join("fixed.py");
        std::fs::write(&script, fixed)?;
        let start = Instant::now();
        let out = tokio::process::Command::new(&backend.config().runtime.python)
            .arg(&script)
            .current_dir(&dir)
            .output()
            .await?;
        let bare_ms = start.elapsed().as_secs_f64() * 1000.0;
        let _ = std::fs::remove_dir_all(&dir);
        if !out.status.success() {
            bail!(
                "bare python failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let start = Instant::now();
        let handles: Vec<_> = (0..8)
            .map(|_| tokio::spawn(episode(base.clone(), fixed)))
            .collect();
        for h in handles {
            let reward = h.await??;
            if reward < 0.85 {
                bail!("a benchmark episode scored {reward}");
            }
        }
        let minutes = start.elapsed().as_secs_f64() / 60.0;
        server.abort();
        let mut sorted = calls.clone();
        let mut out = vec![
            ("gym_tool_call_ms_p50", p(&mut calls, 0.5)),
            ("gym_tool_call_ms_p99", p(&mut sorted, 0.99)),
        ];
        out.extend(with_token);
        out.extend([
            ("gym_grade_ms", grade_ms),
            ("gym_bare_python_ms", bare_ms),
            ("gym_grade_vs_bare_ratio", grade_ms / bare_ms),
            ("gym_episodes_per_min_8x", 8.0 / minutes),
        ]);
        Ok(out)
    }

    fn tempfile_dir() -> Result<std::path::PathBuf> {
        let dir = std::env::temp_dir().join(format!("proctor-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}
