//! `proctor challenge list|submit`: the challenge platform from the command line.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use proctor_challenge::{Catalog, Platform, PlatformConfig, Split};

use crate::cli::{ChallengeCommand, ChallengeListArgs, ChallengeSubmitArgs};

pub fn run(command: ChallengeCommand) -> Result<ExitCode> {
    match command {
        ChallengeCommand::List(args) => list(args),
        ChallengeCommand::Submit(args) => submit(args),
    }
}

fn list(args: ChallengeListArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin();
    if args.json {
        let challenges: Vec<_> = catalog
            .list()
            .into_iter()
            .map(proctor_challenge::web::challenge_json)
            .collect();
        super::print_json(&serde_json::json!({ "challenges": challenges }))?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{:<24} {:>11} {:>9}  title",
            "id", "param_limit", "baseline"
        )?;
        for c in catalog.list() {
            writeln!(
                out,
                "{:<24} {:>11} {:>9.2}  {}",
                c.id, c.param_limit, c.baseline_accuracy, c.title
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn submit(args: ChallengeSubmitArgs) -> Result<ExitCode> {
    let bytes = std::fs::read(&args.file).with_context(|| {
        format!(
            "cannot read {:?}: pass a .zip project or a solution.py",
            args.file
        )
    })?;
    let file_name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload".into());
    // Fail early (before provisioning anything) on an unknown challenge.
    Catalog::builtin().get(&args.challenge)?;
    let split = if args.official {
        Split::Official
    } else {
        Split::Public
    };
    let view = super::tokio()?.block_on(async {
        let backend = super::backend(args.sandbox.no_sandbox).await?;
        let mut config = PlatformConfig::new(backend.config().home.clone());
        if let Some(db) = &args.database {
            config.database = db.clone();
        }
        // A database URL (Postgres, or an SQLite URL) takes precedence over the path.
        if let Some(url) = &args.database_url {
            config.database_url = Some(url.clone());
        }
        let platform = Platform::open(backend, config).await?;
        let submitted = platform
            .submit(
                &args.challenge,
                &file_name,
                &bytes,
                &args.participant,
                split,
            )
            .await?;
        if !args.json {
            eprintln!("[proctor] submission {} {}", submitted.id, submitted.status);
        }
        let done = platform.evaluate_now(&submitted.id).await?;
        anyhow::Ok(platform.view(&done))
    })?;
    if args.json {
        super::print_json(&serde_json::json!({
            "submission_id": view.submission_id,
            "status": view.status,
            "score": view.score,
            "accuracy": view.accuracy,
            "params": view.params,
            "params_trainable": view.params_trainable,
            "param_limit": view.param_limit,
            "baseline_accuracy": view.baseline_accuracy,
            "oracle_accuracy": view.oracle_accuracy,
            "error": view.error,
            "params_note": view.params_note,
            "solve_s": view.solve_s,
            "overhead_s": view.overhead_s,
        }))?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "submission {}: {}", view.submission_id, view.status)?;
        if let Some(score) = view.score {
            writeln!(out, "score     {score:.2}")?;
        }
        if let Some(acc) = view.accuracy {
            writeln!(
                out,
                "accuracy  {acc:.4} (baseline {:.2}, oracle {})",
                view.baseline_accuracy,
                view.oracle_accuracy
                    .map_or("-".into(), |o| format!("{o:.4}"))
            )?;
        }
        if let Some(params) = view.params {
            writeln!(
                out,
                "params    {params} of {} (trainable {})",
                view.param_limit,
                view.params_trainable.unwrap_or(0)
            )?;
        }
        if let Some(note) = &view.params_note {
            writeln!(out, "          {note}")?;
        }
        if let Some(error) = &view.error {
            writeln!(out, "error     {error}")?;
        }
    }
    Ok(if view.status == "scored" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
