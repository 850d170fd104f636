//! `proctor challenge list|submit`: the challenge platform from the command line. A
//! submission is evaluated here (private: no account, on no leaderboard), or uploaded to
//! a server with `--server URL --token TOKEN` and ranked there under the token's account.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use proctor_challenge::evaluate::Outcome;
use proctor_challenge::progress::ProgressView;
use proctor_challenge::{Catalog, Platform, PlatformConfig, Split};
use proctor_engine::Backend;

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
    let split = if args.official {
        Split::Official
    } else {
        Split::Public
    };
    let view = match &args.server {
        Some(server) => super::tokio()?.block_on(remote(server, &args, &file_name, bytes))?,
        None => super::tokio()?.block_on(local(&args, &file_name, &bytes, split))?,
    };
    let view: proctor_challenge::SubmissionView =
        serde_json::from_value(view).context("the server's answer is not a submission")?;
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
            "total_s": view.total_s,
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
        if let Some(total) = view.total_s {
            let solve = view
                .solve_s
                .map_or(String::new(), |s| format!(", solve() {s:.1} s"));
            writeln!(out, "time      {total:.1} s{solve}")?;
        }
        if let Some(error) = &view.error {
            writeln!(out, "error     {error}")?;
        }
    }
    Ok(ExitCode::from(exit_code(&view.status)))
}

/// One exit code per outcome (documented in `proctor challenge submit --help`); 2 is
/// reserved for proctor's own failures.
fn exit_code(status: &str) -> u8 {
    match Outcome::parse(status) {
        Some(Outcome::Scored) => 0,
        Some(Outcome::OverBudget) => 3,
        Some(Outcome::Error) => 4,
        Some(Outcome::Timeout) => 5,
        Some(Outcome::Oom) => 6,
        Some(Outcome::Rejected) => 7,
        Some(Outcome::Queued | Outcome::Running) | None => 2,
    }
}

/// Progress on stderr while an evaluation runs (training can take minutes): the phase,
/// the elapsed time and the last line the training printed; shown when it changes (at
/// most every 2 s) and at least every 10 s.
struct ProgressLine {
    start: Instant,
    shown: Option<(Option<ProgressView>, Instant)>,
}

impl ProgressLine {
    fn new() -> ProgressLine {
        ProgressLine {
            start: Instant::now(),
            shown: None,
        }
    }

    fn update(&mut self, now: Option<ProgressView>) {
        let due = match &self.shown {
            None => self.start.elapsed() >= Duration::from_secs(2),
            Some((before, at)) => {
                (before != &now && at.elapsed() >= Duration::from_secs(2))
                    || at.elapsed() >= Duration::from_secs(10)
            }
        };
        if !due {
            return;
        }
        let elapsed = self.start.elapsed().as_secs_f64();
        match &now {
            Some(ProgressView {
                phase,
                last_line: Some(line),
            }) => eprintln!("[proctor] {phase}, {elapsed:.0} s elapsed | {line}"),
            Some(ProgressView { phase, .. }) => {
                eprintln!("[proctor] {phase}, {elapsed:.0} s elapsed")
            }
            None => eprintln!("[proctor] still evaluating: {elapsed:.0} s elapsed"),
        }
        self.shown = Some((now, Instant::now()));
    }
}

/// Shows the progress of a local evaluation until aborted.
async fn watch<B: Backend + Clone + 'static>(platform: Platform<B>, id: String) {
    let mut line = ProgressLine::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        line.update(platform.progress(&id));
    }
}

/// Evaluates here, in the local database, without an account: private, on no leaderboard.
async fn local(
    args: &ChallengeSubmitArgs,
    file_name: &str,
    bytes: &[u8],
    split: Split,
) -> Result<serde_json::Value> {
    // Fail early (before provisioning anything) on an unknown challenge.
    Catalog::builtin().get(&args.challenge)?;
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
        .submit(&args.challenge, file_name, bytes, None, split)
        .await?;
    let progress = (!args.json).then(|| {
        eprintln!(
            "[proctor] submission {}: evaluating on the {} data",
            submitted.id,
            if args.official { "official" } else { "public" }
        );
        tokio::spawn(watch(platform.clone(), submitted.id.clone()))
    });
    let done = platform.evaluate_now(&submitted.id).await;
    if let Some(task) = progress {
        task.abort();
    }
    Ok(serde_json::to_value(platform.view(&done?))?)
}

/// Uploads to `server` with the account's token and waits until the submission is final.
async fn remote(
    server: &str,
    args: &ChallengeSubmitArgs,
    file_name: &str,
    bytes: Vec<u8>,
) -> Result<serde_json::Value> {
    let Some(token) = &args.token else {
        bail!("--server needs an account token: pass --token or set PROCTOR_TOKEN (an operator creates one with `proctor user token NAME` on the server)");
    };
    let base = server.trim_end_matches('/');
    let client = reqwest::Client::new();
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_string()),
        )
        .text("official", args.official.to_string());
    let url = format!("{base}/api/challenges/{}/submissions", args.challenge);
    let resp = client
        .post(&url)
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
        return Ok(body); // rejected, with the reason
    }
    if !status.is_success() {
        bail!(
            "{url}: {status}: {}",
            body["error"].as_str().unwrap_or("no message")
        );
    }
    let id = body["submission_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !args.json {
        eprintln!(
            "[proctor] submission {id} {}",
            body["status"].as_str().unwrap_or("")
        );
    }
    let url = format!("{base}/api/submissions/{id}");
    let mut line = ProgressLine::new();
    loop {
        let resp = client.get(&url).bearer_auth(token).send().await?;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "{url}: {status}: {}",
                v["error"].as_str().unwrap_or("no message")
            );
        }
        if !matches!(v["status"].as_str(), Some("queued" | "running")) {
            return Ok(v);
        }
        if !args.json {
            line.update(serde_json::from_value(v["progress"].clone()).ok());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
