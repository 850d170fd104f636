//! `proctor exec FILE.py`: run a file in the sandbox and report how it ended.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use proctor_core::{Command, Job, Limits};
use proctor_engine::Backend;

use crate::cli::ExecArgs;

pub fn run(args: ExecArgs) -> Result<ExitCode> {
    let file = std::fs::canonicalize(&args.file)
        .with_context(|| format!("cannot read {:?}: pass an existing Python file", args.file))?;
    if !file.is_file() {
        bail!("{:?} is not a file: pass a Python file", args.file);
    }
    if args.timeout_s.is_nan() || args.timeout_s <= 0.0 {
        bail!("--timeout-s must be positive, got {}", args.timeout_s);
    }
    let limits = Limits {
        timeout_ms: (args.timeout_s * 1000.0) as u64,
        memory_mb: args.memory_mb,
        max_pids: args.max_pids,
        max_output_bytes: args.max_output_bytes,
        disk_mb: args.disk_mb,
        ..Limits::default()
    };
    let job = Job::new(Command::Script {
        path: file,
        args: args.args.clone(),
    })
    .with_limits(limits)
    .cold(args.cold);
    let result = super::tokio()?.block_on(async {
        let backend = super::backend(args.sandbox.no_sandbox).await?;
        anyhow::Ok(backend.run(job).await?)
    })?;
    if args.json {
        super::print_json(&serde_json::json!({
            "status": result.status,
            "exit_code": result.exit_code,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "wall_ms": result.wall_ms,
            "peak_rss_mb": result.peak_rss_mb,
            "output_truncated": result.output_truncated,
        }))?;
    } else {
        std::io::stdout().write_all(result.stdout.as_bytes())?;
        std::io::stderr().write_all(result.stderr.as_bytes())?;
        eprintln!(
            "[proctor] status={} exit_code={} wall_ms={:.1} peak_rss_mb={:.1}",
            result.status,
            result.exit_code.map_or("-".into(), |c| c.to_string()),
            result.wall_ms,
            result.peak_rss_mb
        );
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
