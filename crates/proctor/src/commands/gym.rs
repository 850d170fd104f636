//! `proctor gym tasks|grade|serve` and `proctor mcp`: the debug gym.

use std::process::ExitCode;

use anyhow::{Context, Result};
use proctor_gym::episode::{Access, EpisodeConfig, Gym};

use crate::cli::{GymGradeArgs, GymServeArgs, JsonArg, SandboxArg};

pub fn tasks(args: JsonArg) -> Result<ExitCode> {
    let tasks = proctor_gym::task::all()?;
    if args.json {
        let list: Vec<_> = tasks
            .iter()
            .map(|t| {
                serde_json::json!({
                    "id": t.spec.id, "alias": t.spec.alias, "title": t.spec.title,
                    "difficulty": t.spec.difficulty, "bugs": t.spec.bugs.iter().map(|b| &b.id).collect::<Vec<_>>(),
                })
            })
            .collect();
        super::print_json(&serde_json::json!({ "tasks": list }))?;
    } else {
        for t in &tasks {
            println!(
                "{:<24} {:<6} {:<7} {} ({} bug(s))",
                t.spec.id,
                t.spec.alias,
                t.spec.difficulty,
                t.spec.title,
                t.spec.bugs.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn grade(args: GymGradeArgs) -> Result<ExitCode> {
    let task = proctor_gym::task::find(&args.task)?;
    let code = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {:?}: pass the fixed Python script", args.file))?;
    let report = super::tokio()?.block_on(async {
        let backend = super::backend(false).await?;
        anyhow::Ok(proctor_gym::grade::grade(&backend, &task, &code).await?)
    })?;
    if args.json {
        super::print_json(&report)?;
    } else {
        println!("task:     {}", report.task);
        println!(
            "score:    {:.4} (band {}: {})",
            report.score, report.band, report.band_rule
        );
        for (bug, fixed) in &report.bugs {
            println!(
                "  {:<28} {}",
                bug,
                if *fixed { "fixed" } else { "NOT fixed" }
            );
        }
        for (k, v) in &report.metrics {
            println!("  measured {k:<20} {v:.4}");
        }
        for (k, v) in &report.reported {
            println!("  printed  {k:<20} {v}");
        }
        println!("feedback: {}", report.feedback);
        if !report.error_log.is_empty() {
            println!("errors:\n{}", report.error_log);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn serve(args: GymServeArgs) -> Result<ExitCode> {
    super::tokio()?.block_on(async {
        let backend = super::backend(args.sandbox.no_sandbox).await?;
        let mut config = EpisodeConfig {
            max_turns: args.max_turns,
            socket_idle_timeout: std::time::Duration::from_secs(args.ws_idle_timeout),
            ..EpisodeConfig::default()
        };
        let grading = &mut config.grading;
        grading.max_running = args.max_gradings.unwrap_or(grading.max_running);
        grading.memory_budget_mb = args.memory_budget_mb.unwrap_or(grading.memory_budget_mb);
        grading.max_queued = args.grading_queue.unwrap_or(grading.max_queued);
        let access = Access {
            accounts: Some(super::user::open(&args.db).await?),
            require_token: args.require_token,
        };
        let gym = Gym::with_access(backend, args.max_episodes, config, access);
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}: is the port taken? pass --port"))?;
        eprintln!(
            "proctor gym serving on http://{addr} (OpenEnv: /ws, /reset, /step, /state, /mcp; /grader with an account's token)"
        );
        let grading = &gym.config.grading;
        eprintln!(
            "gradings: {} at once, {} queued; sessions and gradings within {} MiB of memory limits",
            grading.max_running, grading.max_queued, grading.memory_budget_mb
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let router = proctor_gym::server::router(gym);
        proctor_server::serve_with_limits(listener, router, shutdown, args.proxies.limits())
            .await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// MCP over stdio (newline-delimited JSON-RPC), served by rmcp.
pub fn mcp_stdio(args: SandboxArg) -> Result<ExitCode> {
    super::tokio()?.block_on(async {
        let backend = super::backend(args.no_sandbox).await?;
        let gym = Gym::new(backend, 8, EpisodeConfig::default());
        proctor_gym::mcp::serve_stdio(gym)
            .await
            .context("MCP over stdio")?;
        Ok(ExitCode::SUCCESS)
    })
}
