//! `proctor review [list|show ID]`: decide whether derived experiment code is ready to
//! run, here (kept in the local database) or on a server with `--server URL --token
//! TOKEN` (kept there under the token's account); list and show kept reviews.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use proctor_review::{Case, Review, ReviewOptions, Severity};
use proctor_store::{ReviewScope, Store};
use serde_json::{json, Value};

use crate::cli::{ReviewArgs, ReviewCommand, ReviewListArgs, ReviewShowArgs, ReviewStoreArgs};

pub fn run(mut args: ReviewArgs) -> Result<ExitCode> {
    match args.command.take() {
        Some(ReviewCommand::List(a)) => list(a),
        Some(ReviewCommand::Show(a)) => show(a),
        None => review(args),
    }
}

/// The case the arguments name, and the body a server takes for it (the JSON or zip
/// file as given; a directory case zipped).
fn read_case(args: &ReviewArgs) -> Result<(Case, Vec<u8>)> {
    match (&args.input, &args.base, &args.derived, &args.zip) {
        (None, None, None, Some(zip)) => {
            let bytes = std::fs::read(zip)
                .with_context(|| format!("cannot read {zip:?}: pass an existing zip file"))?;
            let case = Case::from_zip(&bytes)
                .with_context(|| format!("invalid review archive {zip:?}"))?;
            Ok((case, bytes))
        }
        (Some(input), None, None, None) => {
            let text = std::fs::read_to_string(input)
                .with_context(|| format!("cannot read {input:?}: pass an existing JSON file"))?;
            let case = Case::from_json_str(&text)
                .with_context(|| format!("invalid review input {input:?}"))?;
            Ok((case, text.into_bytes()))
        }
        (None, Some(base), Some(derived), None) => {
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
            let case = Case::from_dirs(base, derived, &variations, args.method.as_deref())?;
            let zip = case.to_zip()?;
            Ok((case, zip))
        }
        _ => bail!("pass either --input case.json, --zip case.zip, or --base DIR --derived DIR --variations a,b,c"),
    }
}

/// The local database (where `proctor serve` keeps its reviews too, by default).
async fn local_store(at: &ReviewStoreArgs) -> Result<Store> {
    Ok(super::user::open(&at.db).await?.store().clone())
}

/// A server's base URL and the token to use there.
fn remote(at: &ReviewStoreArgs) -> Option<Result<(String, &str)>> {
    let server = at.server.as_deref()?;
    Some(match &at.token {
        Some(token) => Ok((server.trim_end_matches('/').to_string(), token.as_str())),
        None => Err(anyhow::anyhow!("--server needs an account token: pass --token or set PROCTOR_TOKEN (an operator creates one with `proctor user token NAME` on the server)")),
    })
}

/// One call to a server's review API; its JSON answer, or the error it gave.
async fn call(request: reqwest::RequestBuilder, url: &str) -> Result<Value> {
    let resp = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "{url}: {status}: {}",
            body["error"].as_str().unwrap_or("no message")
        );
    }
    Ok(body)
}

fn review(args: ReviewArgs) -> Result<ExitCode> {
    let (case, body) = read_case(&args)?;
    let answer = super::tokio()?.block_on(async {
        if let Some(remote) = remote(&args.store) {
            let (base, token) = remote?;
            let url = format!("{base}/api/review");
            let request = reqwest::Client::new()
                .post(&url)
                .bearer_auth(token)
                .header("content-type", "application/octet-stream")
                .body(body);
            return call(request, &url).await;
        }
        let backend = super::backend(args.sandbox.no_sandbox).await?;
        let mut options = ReviewOptions::for_backend(&backend);
        options.run = !args.static_only;
        let started = Instant::now();
        let review = proctor_review::review(&backend, &case, &options).await;
        let mut answer = serde_json::to_value(&review)?;
        // A review is worth keeping, but not worth failing for: say so and go on.
        let stored = match local_store(&args.store).await {
            Ok(store) => {
                proctor_review::store_review(&store, &case, &review, None, started.elapsed())
                    .await
                    .map_err(anyhow::Error::from)
            }
            Err(e) => Err(e),
        };
        match stored {
            Ok(id) => answer["review_id"] = json!(id),
            Err(e) => eprintln!("[proctor] the review was not kept: {e:#}"),
        }
        anyhow::Ok(answer)
    })?;
    let review: Review =
        serde_json::from_value(answer.clone()).context("the server's answer is not a review")?;
    if args.json {
        super::print_json(&answer)?;
    } else {
        print_review(&review)?;
        if let Some(id) = answer["review_id"].as_str() {
            eprintln!("[proctor] kept as review {id}: `proctor review show {id}`");
        }
    }
    Ok(if review.is_experiment_code_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_review(review: &Review) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let verdict = match review.is_experiment_code_ready {
        true => "READY",
        false => "NOT READY",
    };
    writeln!(out, "{verdict}")?;
    if !review.experiment_code_issue.is_empty() {
        writeln!(out, "\n{}", review.experiment_code_issue)?;
    }
    for f in review
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Blocker)
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
    Ok(())
}

fn list(args: ReviewListArgs) -> Result<ExitCode> {
    let answer = super::tokio()?.block_on(async {
        if let Some(remote) = remote(&args.store) {
            let (base, token) = remote?;
            let url = format!("{base}/api/reviews");
            return call(reqwest::Client::new().get(&url).bearer_auth(token), &url).await;
        }
        let store = local_store(&args.store).await?;
        let rows = store.reviews(ReviewScope::All, 200).await?;
        anyhow::Ok(json!({ "reviews": rows }))
    })?;
    if args.json {
        super::print_json(&answer)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    let rows = answer["reviews"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        writeln!(out, "no reviews yet")?;
    }
    for r in rows {
        writeln!(
            out,
            "{}  {:<9}  {} blockers, {} warnings  {:.1} s  {}{}",
            r["id"].as_str().unwrap_or(""),
            if r["ready"] == true {
                "READY"
            } else {
                "NOT READY"
            },
            r["blockers"],
            r["warnings"],
            r["wall_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            r["experiment"].as_str().unwrap_or(""),
            r["account_name"]
                .as_str()
                .map(|n| format!(" (by {n})"))
                .unwrap_or_default(),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn show(args: ReviewShowArgs) -> Result<ExitCode> {
    let answer = super::tokio()?.block_on(async {
        if let Some(remote) = remote(&args.store) {
            let (base, token) = remote?;
            let url = format!("{base}/api/reviews/{}", args.id);
            return call(reqwest::Client::new().get(&url).bearer_auth(token), &url).await;
        }
        let store = local_store(&args.store).await?;
        match store.review(&args.id, ReviewScope::All).await? {
            Some(r) => Ok(serde_json::to_value(r)?),
            None => bail!(
                "no review {:?} in the local database: see `proctor review list`",
                args.id
            ),
        }
    })?;
    if args.json {
        super::print_json(&answer)?;
        return Ok(ExitCode::SUCCESS);
    }
    let review: Review = serde_json::from_value(answer["report"].clone())
        .context("the stored report cannot be read by this version of proctor")?;
    print_review(&review)?;
    Ok(ExitCode::SUCCESS)
}
