//! `proctor review`: decide whether derived experiment code is ready to run.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use proctor_review::{Case, ReviewOptions};

use crate::cli::ReviewArgs;

pub fn run(args: ReviewArgs) -> Result<ExitCode> {
    let case = match (&args.input, &args.base, &args.derived) {
        (None, None, None) if args.zip.is_some() => {
            let zip = args.zip.as_deref().unwrap_or_else(|| std::path::Path::new(""));
            let bytes = std::fs::read(zip)
                .with_context(|| format!("cannot read {zip:?}: pass an existing zip file"))?;
            Case::from_zip(&bytes).with_context(|| format!("invalid review archive {zip:?}"))?
        }
        (Some(input), None, None) => {
            let text = std::fs::read_to_string(input)
                .with_context(|| format!("cannot read {input:?}: pass an existing JSON file"))?;
            Case::from_json_str(&text).with_context(|| format!("invalid review input {input:?}"))?
        }
        (None, Some(base), Some(derived)) => {
            let variations: Vec<String> = args
                .variations
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect();
            if variations.is_empty() {
                bail!("--variations is required with --base/--derived, e.g. --variations a,b,c");
            }
            Case::from_dirs(base, derived, &variations, args.method.as_deref())?
        }
        _ => bail!("pass either --input case.json, --zip case.zip, or --base DIR --derived DIR --variations a,b,c"),
    };
    let review = super::tokio()?.block_on(async {
        let backend = super::backend(args.sandbox.no_sandbox).await?;
        let mut options = ReviewOptions::for_backend(&backend);
        options.run = !args.static_only;
        anyhow::Ok(proctor_review::review(&backend, &case, &options).await)
    })?;
    if args.json {
        super::print_json(&review)?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{}",
            if review.is_experiment_code_ready {
                "READY"
            } else {
                "NOT READY"
            }
        )?;
        if !review.experiment_code_issue.is_empty() {
            writeln!(out, "\n{}", review.experiment_code_issue)?;
        }
        for f in review
            .findings
            .iter()
            .filter(|f| f.severity != proctor_review::Severity::Blocker)
        {
            let place = f.file.as_deref().map(|p| match f.line {
                Some(l) => format!(" {p}:{l}"),
                None => format!(" {p}"),
            });
            writeln!(
                out,
                "{:?} [{}]{} {}",
                f.severity,
                f.id,
                place.unwrap_or_default(),
                f.message
            )?;
        }
        for r in &review.runs {
            writeln!(
                out,
                "run {} ({}): {:?}, data {}, {:.1} s{}",
                r.variation,
                r.config,
                r.status,
                r.data,
                r.wall_ms as f64 / 1000.0,
                r.error
                    .as_deref()
                    .map(|e| format!(" — {e}"))
                    .unwrap_or_default()
            )?;
        }
    }
    Ok(if review.is_experiment_code_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
