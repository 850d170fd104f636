//! Split-trust evaluation of one submission: train (sandbox), count (trusted), infer
//! (fresh sandbox), score (trusted).

use std::path::{Path, PathBuf};
use std::time::Instant;

use proctor_core::{Command, Job, Limits, RunResult, Status};
use proctor_engine::Backend;
use serde::{Deserialize, Serialize};

use crate::artifact::{self, ArtifactError, Count};
use crate::data::{self, tail, DataSet, Split};
use crate::definition::Challenge;
use crate::intake::Manifest;
use crate::progress::Progress;

const TRAIN: &str = include_str!("../../../python/proctor_harness/challenge_train.py");
const INFER: &str = include_str!("../../../python/proctor_harness/challenge_infer.py");
/// Saves and loads the module (classes defined inside `solve()` by value); both sandboxes
/// import it as `proctor_export`.
const EXPORT: &str = include_str!("../../../python/proctor_harness/challenge_export.py");
/// The declared CPU profile, applied in both sandboxes as `proctor_cpu`.
const CPU: &str = include_str!("../../../python/proctor_harness/challenge_cpu.py");
/// Tracebacks without proctor's frames, in both sandboxes as `proctor_errors`.
const ERRORS: &str = include_str!("../../../python/proctor_harness/challenge_errors.py");

/// How a submission ended (or where it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Persisted, waiting for a worker.
    Queued,
    /// A worker is evaluating it.
    Running,
    /// Evaluated and scored.
    Scored,
    /// Counted over the parameter limit: score 0.
    OverBudget,
    /// Refused before or after training (invalid upload, uncountable artifact).
    Rejected,
    /// `solve()` or inference raised, or the outputs were malformed.
    Error,
    /// Passed the time limit.
    Timeout,
    /// Passed the memory limit.
    Oom,
}

impl Outcome {
    /// The status name used in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::Running => "running",
            Outcome::Scored => "scored",
            Outcome::OverBudget => "over_budget",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Oom => "oom",
        }
    }

    /// Parses a stored status name.
    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "queued" => Outcome::Queued,
            "running" => Outcome::Running,
            "scored" => Outcome::Scored,
            "over_budget" => Outcome::OverBudget,
            "rejected" => Outcome::Rejected,
            "error" => Outcome::Error,
            "timeout" => Outcome::Timeout,
            "oom" => Outcome::Oom,
            _ => return None,
        })
    }

    /// Whether the submission is done.
    pub fn is_final(self) -> bool {
        !matches!(self, Outcome::Queued | Outcome::Running)
    }
}

/// The result of evaluating one submission.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    /// How it ended.
    pub status: Outcome,
    /// Rank metric (0 when over budget); `None` when not scored.
    pub score: Option<f64>,
    /// Test accuracy.
    pub accuracy: Option<f64>,
    /// Counted parameters (every stored tensor element, see [`Count`]).
    pub params: Option<u64>,
    /// The original rule's count (trainable parameters).
    pub params_trainable: Option<u64>,
    /// The counter's breakdown.
    pub count: Option<Count>,
    /// What went wrong, for the submitter (traceback included).
    pub error: Option<String>,
    /// Output of the runs (tails).
    pub logs: String,
    /// Accuracy of the nearest-true-prototype rule on the same test data.
    pub oracle_accuracy: Option<f64>,
    /// Seconds spent in `solve()`, as measured inside the sandbox.
    pub solve_s: Option<f64>,
    /// Seconds of the whole evaluation.
    pub total_s: f64,
    /// Evaluation time that is not `solve()`: data, sandboxes, counting, inference, scoring.
    pub overhead_s: Option<f64>,
}

impl Evaluation {
    fn failed(status: Outcome, error: String) -> Evaluation {
        Evaluation {
            status,
            score: None,
            accuracy: None,
            params: None,
            params_trainable: None,
            count: None,
            error: Some(error),
            logs: String::new(),
            oracle_accuracy: None,
            solve_s: None,
            total_s: 0.0,
            overhead_s: None,
        }
    }
}

/// Knobs of an evaluation (tests shorten the time limit).
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    /// Overrides the challenge's time limit (whole evaluation), in seconds.
    pub time_limit_s: Option<f64>,
    /// Tests: makes the runs look like a host with this many CPUs before the challenge's
    /// CPU profile applies, to show that the profile hides the host.
    pub simulate_host_cpus: Option<u32>,
    /// Where the evaluation reports its phase and the training's last line.
    pub progress: Progress,
}

#[derive(Serialize)]
struct JobSpec<'a> {
    entrypoint: &'a str,
    class: &'a str,
    cpu_threads: u32,
    simulate_host_cpus: Option<u32>,
    batch_size: u32,
    metadata: serde_json::Value,
}

/// Evaluates the project in `project` (a directory written by intake) on `split` data.
/// `work` is a fresh directory for this evaluation (removed by the caller).
pub async fn evaluate<B: Backend>(
    backend: &B,
    home: &Path,
    challenge: &Challenge,
    project: &Path,
    split: Split,
    work: &Path,
    options: &EvalOptions,
) -> Evaluation {
    let start = Instant::now();
    let mut ev = match run(
        backend, home, challenge, project, split, work, options, start,
    )
    .await
    {
        Ok(ev) => ev,
        Err(e) => Evaluation::failed(Outcome::Error, e),
    };
    ev.total_s = start.elapsed().as_secs_f64();
    ev.overhead_s = ev.solve_s.map(|s| (ev.total_s - s).max(0.0));
    if split == Split::Official {
        // The runs' lengths can be made to depend on the official data: show them only
        // in whole minutes, and no overhead.
        ev.total_s = official_time(ev.total_s);
        ev.overhead_s = None;
    }
    ev
}

/// A time shown for an official evaluation: rounded up to whole minutes.
fn official_time(seconds: f64) -> f64 {
    (seconds / OFFICIAL_TIME_GRAIN_S).ceil() * OFFICIAL_TIME_GRAIN_S
}

/// The log section of a run on the official split: its status alone.
fn withheld(name: &str, r: &RunResult, step: &str) -> String {
    format!(
        "== {name}: status {} ==\n-- output, time and memory withheld: {step} on the official split --\n",
        r.status
    )
}

/// An official run's error without its details: a message or traceback could carry the
/// official data (`raise ValueError(str(x))`); the public split shows the same code's.
fn withhold_error(mut ev: Evaluation, step: &str) -> Evaluation {
    if ev.status == Outcome::Error {
        ev.error = Some(format!(
            "{step} failed on the official split (details withheld: they could show the \
             official data); run on the public split to see the error"
        ));
    }
    ev
}

/// Granularity of the total time shown for an official evaluation, in seconds.
const OFFICIAL_TIME_GRAIN_S: f64 = 60.0;

fn io(what: &Path, e: std::io::Error) -> String {
    format!("internal error: {}: {e}", what.display())
}

#[allow(clippy::too_many_arguments)]
async fn run<B: Backend>(
    backend: &B,
    home: &Path,
    challenge: &Challenge,
    project: &Path,
    split: Split,
    work: &Path,
    options: &EvalOptions,
    start: Instant,
) -> Result<Evaluation, String> {
    let progress = &options.progress;
    progress.enter("preparing");
    let data: DataSet = data::ensure(backend, home, &challenge.data, split)
        .await
        .map_err(|e| format!("internal error: {e}"))?;
    let manifest: Manifest = crate::intake::Project::read_manifest(project)
        .map_err(|e| io(&project.join(crate::intake::MANIFEST), e))?;
    let time_limit = options
        .time_limit_s
        .unwrap_or(challenge.resources.time_limit_s as f64);
    let inputs = work.join("in");
    std::fs::create_dir_all(&inputs).map_err(|e| io(&inputs, e))?;
    let spec = challenge.data.clone();
    let job_json = JobSpec {
        entrypoint: &manifest.entrypoint,
        class: &manifest.class,
        cpu_threads: challenge.resources.cpu_threads,
        simulate_host_cpus: options.simulate_host_cpus,
        batch_size: spec.batch_size,
        metadata: serde_json::json!({
            "num_classes": spec.num_classes,
            "input_dim": spec.input_dim,
            "train_samples": spec.train_samples(),
            "val_samples": spec.val_samples(),
            "test_samples": spec.test_samples(),
            "device": "cpu",
            "param_limit": challenge.param_limit as f64,
            "baseline_accuracy": challenge.baseline_accuracy,
        }),
    };
    let job_path = inputs.join("job.json");
    std::fs::write(
        &job_path,
        serde_json::to_vec(&job_json).expect("serializes"),
    )
    .map_err(|e| io(&job_path, e))?;
    let harness = inputs.join("harness");
    std::fs::create_dir_all(&harness).map_err(|e| io(&harness, e))?;
    for (name, text) in [
        ("challenge_train.py", TRAIN),
        ("challenge_infer.py", INFER),
        ("harness/proctor_export.py", EXPORT),
        ("harness/proctor_cpu.py", CPU),
        ("harness/proctor_errors.py", ERRORS),
    ] {
        std::fs::write(inputs.join(name), text).map_err(|e| io(&inputs, e))?;
    }
    let limits = |timeout_s: f64| Limits {
        timeout_ms: (timeout_s * 1000.0) as u64,
        memory_mb: challenge.resources.memory_mb,
        max_pids: challenge.resources.max_pids,
        max_output_bytes: 1 << 20,
        cpus: challenge.resources.cpu_quota,
        ..Limits::default()
    };
    let mut ev = Evaluation::failed(Outcome::Error, String::new());
    ev.error = None;
    ev.oracle_accuracy = Some(data.oracle_accuracy);

    // 1. Train: train/val (inputs and labels) read-only, the participant's files.
    let train_dir = work.join("train");
    let job = Job::new(Command::Script {
        path: inputs.join("challenge_train.py"),
        args: vec![],
    })
    .with_input(&job_path, "job.json")
    .with_input(project, "code")
    .with_input(&harness, "harness")
    .with_input(data.file("train"), "train.safetensors")
    .with_input(data.file("val"), "val.safetensors")
    .with_limits(limits(time_limit))
    .collect_into(&train_dir);
    // Training on the official split reads the official data: what it prints or raises,
    // and the solve time it reports, never reach the submitter, or solve() could print
    // (say) the official class means and carry them back in its source, uncounted.
    let official = split == Split::Official;
    let job = if official {
        job
    } else {
        job.with_output_tap(progress.tap())
    };
    progress.enter("training");
    let train = backend
        .run(job)
        .await
        .map_err(|e| format!("internal error: the training run could not start: {e}"))?;
    if let Some(r) = read_json::<serde_json::Value>(&train_dir.join("train_result.json")) {
        ev.solve_s = r["solve_s"].as_f64().filter(|s| s.is_finite() && *s >= 0.0);
    }
    if official {
        ev.logs = withheld("train", &train, "training");
        ev.solve_s = ev.solve_s.map(official_time);
    } else {
        ev.logs = section("train", &train);
    }
    if !train.is_ok() {
        let ev = run_failed(
            ev,
            &train,
            &train_dir.join("train_error.json"),
            "training",
            time_limit,
        );
        return Ok(if official {
            withhold_error(ev, "training")
        } else {
            ev
        });
    }

    // 2. Count, on the trusted side, from the artifact alone.
    progress.enter("counting");
    let artifact_dir = work.join("artifact");
    std::fs::create_dir_all(&artifact_dir).map_err(|e| io(&artifact_dir, e))?;
    let canonical = artifact_dir.join("model.pt");
    // Off the async runtime: parsing untrusted bytes must not stall the server's workers.
    let model = train_dir.join("model.pt");
    let target = canonical.clone();
    let allowance = artifact::Allowance {
        feature_stats: 2 * u64::from(challenge.data.input_dim),
    };
    let counted = tokio::task::spawn_blocking(move || {
        artifact::count_and_rewrite(&model, &target, allowance, artifact::COUNT_TIME_BUDGET)
    })
    .await;
    let count = match counted.unwrap_or_else(|_| {
        Err(ArtifactError::Unsupported(
            "the artifact could not be counted".into(),
        ))
    }) {
        Ok(c) => c,
        Err(e @ ArtifactError::NotArchive(_)) => {
            ev.status = Outcome::Error;
            ev.error = Some(e.to_string());
            return Ok(ev);
        }
        Err(e) => {
            ev.status = Outcome::Rejected;
            ev.error = Some(e.to_string());
            return Ok(ev);
        }
    };
    ev.params = Some(count.params);
    ev.params_trainable = Some(count.params_trainable);
    ev.count = Some(count.clone());
    proctor_engine::remove_tree_blocking(train_dir.clone()).await;
    let over_budget = (count.params > challenge.param_limit).then(|| {
        format!(
            "the model stores {} parameters, over the limit of {} ({})",
            count.params, challenge.param_limit, count.note
        )
    });
    // On the public split an over-budget model is still evaluated, so that its author
    // sees its accuracy; it scores 0 and is not ranked.
    if let (Some(reason), Split::Official) = (&over_budget, split) {
        ev.status = Outcome::OverBudget;
        ev.score = Some(0.0);
        ev.error = Some(reason.clone());
        return Ok(ev);
    }

    // 3. Infer: only the artifact, the Python source and the test inputs. Data files
    // never reach inference: weights read from them in forward() would not be counted.
    let source = work.join("source");
    crate::intake::Project::copy_source(project, &source).map_err(|e| {
        match e
            .get_ref()
            .and_then(|e| e.downcast_ref::<crate::intake::Rejection>())
        {
            Some(r) => r.to_string(),
            None => io(&source, e),
        }
    })?;
    let remaining = (time_limit - start.elapsed().as_secs_f64()).max(30.0);
    // No tap: inference output is not the participant's to watch (official test inputs).
    progress.enter("inference");
    let infer_dir = work.join("infer");
    let job = Job::new(Command::Script {
        path: inputs.join("challenge_infer.py"),
        args: vec![],
    })
    .with_input(&job_path, "job.json")
    .with_input(&source, "code")
    .with_input(&harness, "harness")
    .with_input(&canonical, "model.pt")
    .with_input(data.file("test_inputs"), "test_inputs.safetensors")
    .with_limits(limits(remaining))
    .collect_into(&infer_dir);
    let infer = backend
        .run(job)
        .await
        .map_err(|e| format!("internal error: the inference run could not start: {e}"))?;
    // Inference reads the official test inputs: nothing it prints or raises may reach
    // the submitter, or a submission could print the inputs and read them back; nor its
    // peak memory or wall time, which a forward() can make proportional to an input.
    if official {
        ev.logs.push_str(&withheld("infer", &infer, "inference"));
    } else {
        ev.logs.push_str(&section("infer", &infer));
    }
    if !infer.is_ok() {
        let mut ev = run_failed(
            ev,
            &infer,
            &infer_dir.join("infer_error.json"),
            "inference",
            time_limit,
        );
        if official {
            ev = withhold_error(ev, "inference");
        }
        if let Some(reason) = over_budget {
            ev.status = Outcome::OverBudget;
            ev.score = Some(0.0);
            ev.error = Some(format!(
                "{reason}; inference failed as well: {}",
                ev.error.unwrap_or_default()
            ));
        }
        return Ok(ev);
    }

    // 4. Score, on the trusted side.
    progress.enter("scoring");
    let Some(predictions) = read_predictions(&infer_dir.join("predictions.json")) else {
        ev.status = Outcome::Error;
        ev.error = Some("inference wrote no readable predictions.json".into());
        return Ok(ev);
    };
    if predictions.len() != data.test_labels.len() {
        ev.status = Outcome::Error;
        ev.error = Some(format!(
            "the model produced {} predictions for {} test samples",
            predictions.len(),
            data.test_labels.len()
        ));
        return Ok(ev);
    }
    let correct = predictions
        .iter()
        .zip(&data.test_labels)
        .filter(|(p, y)| p == y)
        .count();
    let accuracy = correct as f64 / data.test_labels.len() as f64;
    ev.accuracy = Some(accuracy);
    match over_budget {
        Some(reason) => {
            ev.status = Outcome::OverBudget;
            ev.score = Some(0.0);
            ev.error = Some(format!(
                "{reason}; its accuracy ({accuracy:.4}) is shown for information: score 0, not ranked"
            ));
        }
        None => {
            ev.status = Outcome::Scored;
            ev.score = Some(challenge.score(accuracy));
        }
    }
    Ok(ev)
}

fn section(name: &str, r: &RunResult) -> String {
    let mut s = format!(
        "== {name}: status {} in {:.1} s, peak {:.0} MiB ==\n",
        r.status,
        r.wall_ms / 1000.0,
        r.peak_rss_mb
    );
    for (what, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        if !text.is_empty() {
            s.push_str(&format!("-- {what} --\n{}\n", tail(text, 16 << 10)));
        }
    }
    s
}

fn run_failed(
    mut ev: Evaluation,
    r: &RunResult,
    error_file: &Path,
    step: &str,
    time_limit: f64,
) -> Evaluation {
    let reported = read_json::<serde_json::Value>(error_file)
        .and_then(|v| v["message"].as_str().map(str::to_string));
    let (status, error) = match r.status {
        Status::Timeout => (
            Outcome::Timeout,
            format!("{step} passed the time limit of {time_limit:.0} s and was stopped"),
        ),
        Status::Oom => (
            Outcome::Oom,
            format!("{step} passed the memory limit and was stopped"),
        ),
        Status::OutputLimit => (
            Outcome::Error,
            format!("{step} printed more than the output limit and was stopped"),
        ),
        Status::DiskLimit => (
            Outcome::Error,
            format!("{step} filled its disk quota (its scratch directory); writes past it failed"),
        ),
        Status::Killed => (
            Outcome::Error,
            format!("{step} was killed (too many processes or a signal)"),
        ),
        _ => (
            Outcome::Error,
            reported.unwrap_or_else(|| format!("{step} failed:\n{}", tail(&r.stderr, 8000))),
        ),
    };
    ev.status = status;
    ev.error = Some(error);
    ev
}

/// Reads a small JSON file written by a sandbox (untrusted: regular file, size-capped).
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 4 << 20 {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn read_predictions(path: &Path) -> Option<Vec<i64>> {
    #[derive(Deserialize)]
    struct P {
        predictions: Vec<i64>,
    }
    read_json::<P>(path).map(|p| p.predictions)
}

/// A fresh working directory for one evaluation under `home`.
pub fn work_dir(home: &Path, id: &str) -> PathBuf {
    home.join("challenge").join("evals").join(id)
}

/// The strong reference solution (nearest class mean), used to measure the platform.
pub const REFERENCE_SOLUTION: &str = include_str!("../../../examples/challenge/strong/solution.py");

/// Measures `challenge_eval_overhead_s`: the time of one whole evaluation (train
/// sandbox, count, infer sandbox, score) minus the participant's `solve()` time, with
/// the public data already generated. Evaluates the reference solution on the public
/// 500k challenge twice and returns the second (steady-state) figure.
pub async fn measure_overhead<B: Backend>(backend: &B, home: &Path) -> Result<f64, crate::Error> {
    let catalog = crate::Catalog::builtin();
    let challenge = catalog.get("imagenet-pareto-500k")?;
    data::ensure(backend, home, &challenge.data, Split::Public).await?;
    let id = format!("bench-{}", uuid::Uuid::new_v4());
    let project_dir = work_dir(home, &id).with_extension("project");
    let project = crate::intake::intake(challenge, "solution.py", REFERENCE_SOLUTION.as_bytes())
        .map_err(|e| crate::Error::Data(e.to_string()))?;
    project
        .write_to(&project_dir)
        .map_err(|e| crate::Error::io(&project_dir, e))?;
    let mut overhead = f64::NAN;
    for round in 0..2 {
        let work = work_dir(home, &format!("{id}-{round}"));
        let ev = evaluate(
            backend,
            home,
            challenge,
            &project_dir,
            Split::Public,
            &work,
            &EvalOptions::default(),
        )
        .await;
        proctor_engine::remove_tree_blocking(work.clone()).await;
        match (ev.status, ev.overhead_s) {
            (Outcome::Scored, Some(o)) => overhead = o,
            _ => {
                proctor_engine::remove_tree_blocking(project_dir.clone()).await;
                return Err(crate::Error::Data(format!(
                    "the reference evaluation ended {}: {}",
                    ev.status.as_str(),
                    ev.error.unwrap_or_default()
                )));
            }
        }
    }
    proctor_engine::remove_tree_blocking(project_dir.clone()).await;
    Ok(overhead)
}
