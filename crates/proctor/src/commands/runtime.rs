//! `proctor runtime ensure`: provision the managed Python runtime.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::JsonArg;

pub fn ensure(args: JsonArg) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let runtime = proctor_runtime::ensure(&proctor_runtime::EnsureOptions {
        home: proctor_runtime::proctor_home(),
        quiet: args.json,
    })?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if args.json {
        super::print_json(&serde_json::json!({ "runtime": runtime, "elapsed_ms": elapsed_ms }))?;
    } else {
        println!(
            "runtime {} ready: python {}, torch {} at {} ({elapsed_ms:.0} ms)",
            runtime.id,
            runtime.python_version,
            runtime.torch_version,
            runtime.root.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
