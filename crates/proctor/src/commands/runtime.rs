//! `proctor runtime ensure`: provision the managed Python runtime (and, with `--research`,
//! the research stack reviews install projects' dependencies from).

use std::process::ExitCode;

use anyhow::{anyhow, Result};

use crate::cli::EnsureArgs;

pub fn ensure(args: EnsureArgs) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let home = proctor_runtime::proctor_home();
    let runtime = proctor_runtime::ensure(&proctor_runtime::EnsureOptions {
        home: home.clone(),
        quiet: args.json,
    })?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let research = if args.research {
        let options = proctor_review::EnvOptions::new(&home, &runtime);
        let (took, modules) = super::tokio()?
            .block_on(proctor_review::install_research(&options))
            .map_err(|e| anyhow!("the research stack could not be installed: {e}"))?;
        Some(serde_json::json!({ "install_ms": took, "modules": modules }))
    } else {
        None
    };
    if args.json {
        super::print_json(
            &serde_json::json!({ "runtime": runtime, "elapsed_ms": elapsed_ms, "research": research }),
        )?;
    } else {
        println!(
            "runtime {} ready: python {}, torch {} at {} ({elapsed_ms:.0} ms)",
            runtime.id,
            runtime.python_version,
            runtime.torch_version,
            runtime.root.display()
        );
        if let Some(r) = research {
            match r["install_ms"].as_u64() {
                Some(ms) => println!(
                    "research stack installed in {:.1} s ({} modules)",
                    ms as f64 / 1000.0,
                    r["modules"]
                ),
                None => println!("research stack ready (cached, {} modules)", r["modules"]),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
