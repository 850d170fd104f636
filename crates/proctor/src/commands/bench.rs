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
    }
    Ok(ExitCode::SUCCESS)
}
