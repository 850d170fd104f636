/*!
Experiment-code review: decides whether experiment code derived from a base template is
ready to run, by syntax-aware analysis (tree-sitter, YAML, TOML) and by smoke-running
every variation in the sandbox on stand-in data.

The input is the AIRAS-compatible JSON (or two project directories); the output is a
[`Review`]: the verdict, the numbered issue list a code generator can act on, the
findings with file, line and evidence, and the smoke runs.

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

mod case;
mod checks;
mod deps;
mod http;
mod method;
mod python;
mod report;
mod smoke;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use case::{key_to_path, Case, CaseError, Experiment, Project, SourceFile};
pub use http::router;
pub use report::{Finding, Review, RunStatus, Severity, SmokeRun};
pub use smoke::SmokeOptions;

use proctor_core::Limits;
use proctor_engine::{Backend, LocalBackend};

/// How a review runs.
#[derive(Debug, Clone)]
pub struct ReviewOptions {
    /// Smoke-run the code (the static pass alone when false).
    pub run: bool,
    /// How the smoke runs are run.
    pub smoke: SmokeOptions,
}

impl ReviewOptions {
    /// Defaults for a local backend: scratch under `$PROCTOR_HOME/reviews`, 60 s and
    /// 3 GiB per run, as many runs at once as the machine has cores.
    pub fn for_backend(backend: &LocalBackend) -> ReviewOptions {
        ReviewOptions::in_dir(backend.config().home.join("reviews"))
    }

    /// Defaults with the given scratch directory (on the filesystem of `$PROCTOR_HOME`).
    pub fn in_dir(work_dir: PathBuf) -> ReviewOptions {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        ReviewOptions {
            run: true,
            smoke: SmokeOptions {
                work_dir,
                limits: Limits {
                    timeout_ms: 60_000,
                    memory_mb: 3072,
                    max_pids: 64,
                    max_output_bytes: 256 << 10,
                    cpus: 0.0,
                },
                parallel: cores.max(2),
                max_batches: 3,
                full_config: true,
                max_file_mb: 512,
            },
        }
    }
}

/// The static pass alone: findings from reading the code (no run).
pub fn review_static(case: &Case) -> Review {
    Review::new(checks::run(case), Vec::new())
}

/// A full review: the static pass, then every variation smoke-run in the sandbox.
pub async fn review<B: Backend>(backend: &B, case: &Case, options: &ReviewOptions) -> Review {
    let mut findings = checks::run(case);
    let mut runs = Vec::new();
    if options.run {
        let derived = checks::Analysed::new(&case.derived);
        let base = checks::Analysed::new(&case.base);
        let (r, dynamic) = smoke::run(backend, case, &derived, &base, &options.smoke).await;
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
    Review::new(findings, runs)
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
