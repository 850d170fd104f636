/*!
Experiment-code review: decides whether experiment code derived from a base template is
ready to run, by syntax-aware analysis (tree-sitter, YAML, TOML) and by smoke-running
every variation in the sandbox on stand-in data.

The input is the AIRAS-compatible JSON (or two project directories); the output is a
[`Review`]: the verdict, the numbered issue list a code generator can act on, the
findings with file, line, evidence and the code around it, and the smoke runs with
their log tails. Reviews done through the server are stored ([`store_review`]) and belong
to the account that asked: its own page per review, `GET /api/reviews[/{id}]` (see
[`router`]).

```no_run
# async fn demo() -> Result<(), Box<dyn std::error::Error>> {
use proctor_engine::{EngineConfig, LocalBackend};
let backend = LocalBackend::start(EngineConfig::detect(false)?).await?;
let case = proctor_review::Case::from_json_str(&std::fs::read_to_string("case.json")?)?;
let options = proctor_review::ReviewOptions::for_backend(&backend);
let review = proctor_review::review(&backend, &case, &options).await;
println!("ready: {}\n{}", review.is_experiment_code_ready, review.experiment_code_issue);
# Ok(()) }
```
*/
#![deny(missing_docs)]

mod budget;
mod case;
mod checks;
mod deps;
mod env;
mod http;
mod method;
mod pages;
mod process;
mod python;
mod report;
mod smoke;
mod stored;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use budget::Budget;
pub use case::{key_to_path, Case, CaseError, Experiment, Project, SourceFile, MAX_CASE_BYTES};
pub use env::{install_research, EnvOptions};
pub use http::{router, ReviewState, RUNNING_PER_ACCOUNT};
pub use report::{Finding, Review, RunStatus, Severity, SmokeRun};
pub use smoke::SmokeOptions;
pub use stored::store_review;

use proctor_core::Limits;
use proctor_engine::{Backend, LocalBackend};

/// How a review runs.
#[derive(Debug, Clone)]
pub struct ReviewOptions {
    /// Smoke-run the code (the static pass alone when false).
    pub run: bool,
    /// How the smoke runs are run.
    pub smoke: SmokeOptions,
    /// Time the static pass may take before the review says so instead of going on.
    pub static_budget: Duration,
    /// How the project's declared dependencies are installed for the smoke runs (`None`:
    /// they are not, the runs have the managed runtime alone).
    pub env: Option<EnvOptions>,
}

impl ReviewOptions {
    /// Defaults for a local backend: scratch under `$PROCTOR_HOME/reviews`, 120 s and
    /// 3 GiB per run, as many runs at once as the machine has cores.
    /// Declared dependencies are installed into `$PROCTOR_HOME/review-envs` (at most
    /// 5 minutes and 3 GiB).
    pub fn for_backend(backend: &LocalBackend) -> ReviewOptions {
        let config = backend.config();
        let mut options = ReviewOptions::in_dir(config.home.join("reviews"));
        options.env = Some(EnvOptions::new(&config.home, &config.runtime));
        options
    }

    /// Defaults with the given scratch directory (on the filesystem of `$PROCTOR_HOME`):
    /// 120 s per run (a generated pipeline may start three processes importing torch).
    pub fn in_dir(work_dir: PathBuf) -> ReviewOptions {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        ReviewOptions {
            run: true,
            static_budget: Duration::from_secs(10),
            env: None,
            smoke: SmokeOptions {
                work_dir,
                limits: Limits {
                    timeout_ms: 120_000,
                    memory_mb: 3072,
                    max_pids: 64,
                    max_output_bytes: 256 << 10,
                    cpus: 0.0,
                    disk_mb: 1024,
                },
                parallel: cores.max(2),
                max_batches: 3,
                full_config: true,
                max_file_mb: 512,
            },
        }
    }
}

/// The static pass alone, on the calling thread: findings from reading the code (no run).
pub fn review_static(case: &Case, budget: &Budget) -> Review {
    let mut review = match checks::run(case, budget, &deps::Installed::default()) {
        Some(pass) => Review::new(pass.findings, Vec::new()),
        None => Review::new(vec![over_budget()], Vec::new()),
    };
    review.attach_excerpts(&case.derived);
    review
}

/// The finding of a static pass that ran out of time: the review says so and stops.
fn over_budget() -> Finding {
    Finding::new(
        "review-over-budget",
        Severity::Blocker,
        "the static analysis did not finish within its time budget: the project is too large or too deeply nested to be checked",
    )
    .fix("keep source files and configs to the size and nesting of real experiment code")
}

/// A full review: the project's declared dependencies installed (when running), the
/// static pass (on a blocking thread, within `options.static_budget`), then every
/// variation smoke-run in the sandbox. Dropping the future (a client that disconnected)
/// cancels the install and the static pass.
pub async fn review<B: Backend>(backend: &B, case: &Case, options: &ReviewOptions) -> Review {
    let env = match (&options.env, options.run) {
        (Some(opts), true) => env::prepare(&case.derived, opts).await,
        _ => env::Prepared::default(),
    };
    let budget = Budget::new(options.static_budget);
    let _cancel = budget.cancel_on_drop();
    let pass = {
        let (case, budget, installed) = (case.clone(), budget.clone(), env.installed.clone());
        let task = tokio::task::spawn_blocking(move || checks::run(&case, &budget, &installed));
        // The budget is checked cooperatively; this bounds the wait even if a check is slow.
        tokio::time::timeout(options.static_budget + Duration::from_secs(2), task).await
    };
    let Ok(Ok(Some(pass))) = pass else {
        return Review::new(vec![over_budget()], Vec::new());
    };
    let mut findings = pass.findings;
    findings.extend(env.findings);
    let mut runs = Vec::new();
    if options.run && env.blocked {
        findings.push(Finding::new(
            "not-run",
            Severity::Info,
            "the smoke runs were not started: the project's declared dependencies cannot be installed, so running it would only fail at that import",
        ));
    } else if options.run {
        let (derived, base) = (&pass.derived, &pass.base);
        let overlay = env.overlay.as_deref();
        let (r, dynamic) = smoke::run(backend, case, derived, base, overlay, &options.smoke).await;
        runs = r;
        findings.extend(merge(dynamic));
        if runs.iter().any(|r| r.data == "stand-in") {
            findings.push(Finding::new(
                "stand-in-data",
                Severity::Info,
                "smoke runs used synthetic stand-ins for dataset or weight downloads: they prove the code runs, their metrics mean nothing",
            ));
        }
    }
    let mut review = Review::new(findings, runs);
    review.env_install_ms = env.install_ms;
    review.attach_excerpts(&case.derived);
    review
}

/// One finding per (id, file, line): the runs it showed up in are listed in the first.
fn merge(findings: Vec<Finding>) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    type Key = (String, Option<String>, Option<usize>);
    let mut index: BTreeMap<Key, (usize, usize)> = BTreeMap::new();
    for f in findings {
        let key = (f.id.clone(), f.file.clone(), f.line);
        match index.get_mut(&key) {
            Some((_, n)) => *n += 1,
            None => {
                index.insert(key, (out.len(), 1));
                out.push(f);
            }
        }
    }
    for (i, n) in index.values() {
        if *n > 1 {
            out[*i]
                .message
                .push_str(&format!(" (seen in {n} smoke runs)"));
        }
    }
    out
}
