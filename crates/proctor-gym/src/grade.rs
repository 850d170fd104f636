//! Grading a fix with split trust. The fix trains in a sandbox that holds nothing of the
//! task's answers, under instrumentation (`proctor_harness.gym_train`) that exports the
//! model it trained and seals its observations; trusted code draws held-out inputs with a
//! secret seed meanwhile; a fresh sandbox runs the exported model on them; the metric is
//! computed here against labels no sandbox saw. A band is reachable only when these
//! measurements (held-out metric, memory peak, exit status, time) support it: the
//! observations explain a score, lower it or place it inside a band, never lift it.

use std::collections::BTreeMap;
use std::path::Path;

use hmac::{Hmac, Mac};
use proctor_core::{Command, Job, Limits, Status};
use proctor_engine::{Backend, LocalBackend};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::heldout::Tensor;
use crate::score::{self, Outcome};
use crate::stream;
use crate::task::Task;
use crate::GymError;

/// Graded runs get this multiple of the task's memory limit.
const GRADE_MEMORY_HEADROOM: u64 = 4;
/// Graded runs get this multiple of the task's time limit (instrumentation costs time).
const GRADE_TIME_FACTOR: f64 = 3.0;

/// Output a train run may write: what the fix prints and the observations the recorder
/// streams on stderr as they happen (`stream`, ~250 bytes per optimizer step).
const TRAIN_OUTPUT_BYTES: u64 = 8 << 20;

/// The largest script accepted for grading.
pub const MAX_CODE_BYTES: usize = 100_000;

/// A graded fix, as `proctor gym grade --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct GradeReport {
    /// Task slug.
    pub task: String,
    /// 0–1.
    pub score: f64,
    /// The rubric band.
    pub band: String,
    /// The band's condition in words.
    pub band_rule: String,
    /// Bug id → fixed, as measured.
    pub bugs: BTreeMap<String, bool>,
    /// Measured metrics (held-out accuracy or F1, final loss, …).
    pub metrics: BTreeMap<String, f64>,
    /// What the script printed (`LOSSES`, `VAL_ACC`, `F1`, `FINAL_LOSS`); shown, never scored.
    pub reported: BTreeMap<String, Value>,
    /// How the graded run ended.
    pub status: Status,
    /// The script raised (the traceback is in `error_log`).
    pub crashed: bool,
    /// Evidence that the run tampered with the harness or its records (scores 0).
    pub tampered: Vec<String>,
    /// Traceback or reason, when the run did not go well.
    pub error_log: String,
    /// What to look at next, in words.
    pub feedback: String,
    /// Wall time of the graded run.
    pub wall_ms: f64,
    /// Peak memory of the graded run.
    pub peak_rss_mb: f64,
    /// Memory the run's cgroup was charged at its peak (what the task's limit applies to).
    pub memory_peak_mb: Option<f64>,
    /// Per-epoch losses, measured when the script printed none.
    pub losses: Vec<f64>,
}

/// Parses the `KEY:value` lines the task scripts print, for display only.
pub fn printed_metrics(stdout: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for line in stdout.lines() {
        for key in ["LOSSES", "VAL_ACC", "F1", "FINAL_LOSS"] {
            if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
                let value = serde_json::from_str(rest.trim())
                    .unwrap_or(Value::String(rest.trim().to_string()));
                out.insert(key.to_ascii_lowercase(), value);
            }
        }
    }
    out
}

/// Memory for the trusted held-out steps (generation, prediction).
const HELDOUT_MEMORY_MB: u64 = 2048;
/// Time for the held-out evaluation: six passes over the held-out rows (first step, final,
/// three re-drawn, rebatched), one batch of the traced size at a time for a model whose
/// trace fixed its batch size; a task6 CNN evaluated 4 rows at a time took over 120 s on
/// a loaded machine.
const PREDICT_TIMEOUT_S: f64 = 360.0;

/// The memory a grading of `task` may use at once: the train run and the held-out draw run
/// together; the tolerant re-run and the prediction come after them and need less.
pub fn memory_limit_mb(task: &Task) -> u64 {
    task.spec.memory_mb * GRADE_MEMORY_HEADROOM + HELDOUT_MEMORY_MB
}

/// The outputs of one grading: what each sandbox left, read on the trusted side.
struct Evidence {
    train: proctor_core::RunResult,
    /// Why the run's observations cannot be trusted at all (forged, missing, hooks removed).
    tampered: Vec<String>,
    obs: Value,
    judge: Value,
    /// Held-out metric of the weights at the first optimizer step and after the last one
    /// (the worse of the usual batching and a secret one).
    init_metric: Option<f64>,
    final_metric: Option<f64>,
    /// Held-out metric of the final weights with what training moved shuffled (median of
    /// the draws), and of the final weights on the rows in a secret order and batch size.
    redrawn_metric: Option<f64>,
    rebatched_metric: Option<f64>,
    /// Held-out metric of the first weights moved by the proven gradient steps alone, when
    /// writes that were no gradient step came between them.
    proven_metric: Option<f64>,
    /// Per-output binary cross-entropy of the final weights' outputs (0/1 labels only).
    final_log_loss: Option<f64>,
    /// Why the export, evaluated held-out, is not the model trained: its predictions are
    /// not what its parameters account for along the path from the first weights to the
    /// final ones, or it changes its own state when evaluated (`gym_heldout`).
    heldout_mismatch: Option<String>,
    heldout_note: String,
}

fn write(path: &Path, text: &[u8]) -> Result<(), GymError> {
    std::fs::write(path, text).map_err(GymError::io("writing a grading file"))
}

fn limits(timeout_s: f64, memory_mb: u64) -> Limits {
    Limits {
        timeout_ms: (timeout_s * 1000.0) as u64,
        memory_mb,
        max_pids: 64,
        max_output_bytes: 256 * 1024,
        ..Limits::default()
    }
}

/// The per-run key that seals the observations: fresh for every grading, handed to the
/// harness only (popped from the environment before the fix runs).
fn run_key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The held-out seed of one attempt: derived from the server's persistent secret (the one
/// the challenge's official data uses, `$PROCTOR_HOME/challenge/secret`, mode 0600), the
/// task and the attempt. The operator can draw the same data again; no sandbox holds the
/// secret, so no run can.
fn heldout_seed(secret: &[u8], task_id: &str, attempt: &str) -> u64 {
    let mut h = Sha256::new();
    for part in [
        b"proctor-gym-heldout-v2".as_slice(),
        secret,
        task_id.as_bytes(),
        attempt.as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes")) & (i64::MAX as u64)
}

/// Refuses a fix over [`MAX_CODE_BYTES`].
pub(crate) fn check_size(code: &str) -> Result<(), GymError> {
    if code.len() > MAX_CODE_BYTES {
        return Err(GymError::BadAction(format!(
            "the fix is {} bytes; the limit is {MAX_CODE_BYTES}",
            code.len()
        )));
    }
    Ok(())
}

/// Grades `code` as a fix of `task`, outside any episode: the attempt is named by the
/// code itself, so grading the same fix again draws the same held-out data.
pub async fn grade(
    backend: &LocalBackend,
    task: &Task,
    code: &str,
) -> Result<GradeReport, GymError> {
    let attempt = format!("code:{}", hex::encode(Sha256::digest(code.as_bytes())));
    grade_attempt(backend, task, code, &attempt).await
}

/// Grades `code` as a fix of `task`; `attempt` (e.g. the episode and its turn) picks the
/// held-out data together with the server secret.
pub async fn grade_attempt(
    backend: &LocalBackend,
    task: &Task,
    code: &str,
    attempt: &str,
) -> Result<GradeReport, GymError> {
    check_size(code)?;
    let scratch = backend.config().home.join("gym");
    std::fs::create_dir_all(&scratch).map_err(GymError::io("creating the gym directory"))?;
    let secret = proctor_challenge::data::secret(&backend.config().home)
        .map_err(|e| GymError::Engine(format!("the server secret: {e}")))?;
    let seed = heldout_seed(&secret, &task.spec.id, attempt);
    let tmp = tempdir_in(&scratch)?;
    let evidence = run_all(backend, task, code, seed, &tmp).await;
    proctor_engine::remove_tree_blocking(tmp.clone()).await;
    Ok(report(task, evidence?))
}

async fn run_all(
    backend: &LocalBackend,
    task: &Task,
    code: &str,
    seed: u64,
    tmp: &Path,
) -> Result<Evidence, GymError> {
    let spec = &task.spec;
    let key = run_key();
    let broken = tmp.join("broken.py");
    write(&tmp.join("fix.py"), code.as_bytes())?;
    write(&broken, task.broken_script().as_bytes())?;
    let train = train_job(task, tmp, "train", &key);
    // Trusted code only: the held-out samples, drawn while the fix trains.
    let gen = Job::new(Command::Module {
        module: "proctor_harness.gym_heldout".into(),
        args: vec![
            "gen".into(),
            "../inputs/broken.py".into(),
            spec.heldout.generator.clone(),
            spec.heldout.n.to_string(),
            seed.to_string(),
            spec.heldout.views.join(","),
            ".".into(),
        ],
    })
    .with_input(&broken, "broken.py")
    .with_limits(limits(120.0, HELDOUT_MEMORY_MB))
    .collect_into(tmp.join("gen"));
    let (train, gen) = tokio::join!(backend.run(train), backend.run(gen));
    let train = train.map_err(|e| GymError::Engine(e.to_string()))?;
    let gen = gen.map_err(|e| GymError::Engine(e.to_string()))?;
    if gen.status != Status::Ok {
        return Err(GymError::Engine(format!(
            "drawing the held-out data failed: {}",
            gen.stderr
        )));
    }
    let (mut obs, mut tampered) = sealed(&tmp.join("train"), &key, &train);
    if spec.tolerant_rerun && obs["tolerant_needed"] == Value::Bool(true) && tampered.is_empty() {
        // A fresh sandbox, so that nothing the first run left tells the fix it is re-run.
        let key = run_key();
        let run = backend
            .run(train_job(task, tmp, "tolerant", &key))
            .await
            .map_err(|e| GymError::Engine(e.to_string()))?;
        let (rerun, marks) = sealed(&tmp.join("tolerant"), &key, &run);
        obs["tolerant"] = rerun["tolerant"].clone();
        if obs["tolerant"].is_object() {
            // Credit from the re-run needs training in it, not one adapted batch.
            for fact in TRAINING_FACTS.iter().filter(|f| !rerun[**f].is_null()) {
                obs["tolerant"]["training"][*fact] = rerun[*fact].clone();
            }
        }
        tampered.extend(
            marks
                .into_iter()
                .map(|t| format!("in the tolerant re-run: {t}")),
        );
    }
    let mut evidence = Evidence {
        train,
        tampered,
        obs,
        judge: Value::Null,
        init_metric: None,
        final_metric: None,
        redrawn_metric: None,
        rebatched_metric: None,
        proven_metric: None,
        final_log_loss: None,
        heldout_mismatch: None,
        heldout_note: String::new(),
    };
    if evidence.obs.is_null() {
        return Ok(evidence);
    }
    predict(backend, task, tmp, &mut evidence).await?;
    Ok(evidence)
}

/// A train sandbox: the fix and the broken script, nothing of the task's answers. Its
/// `dir` is `train` (the graded run) or `tolerant` (a re-run with mismatches adapted).
fn train_job(task: &Task, tmp: &Path, dir: &str, key: &str) -> Job {
    let spec = &task.spec;
    let mut args = vec![
        "../inputs/fix.py".into(),
        ".".into(),
        spec.heldout.model.clone(),
    ];
    if dir == "tolerant" {
        args.push("tolerant".into());
    }
    let mut job = Job::new(Command::Module {
        module: "proctor_harness.gym_train".into(),
        args,
    })
    .with_input(tmp.join("fix.py"), "fix.py")
    .with_input(tmp.join("broken.py"), "broken.py")
    .with_limits(Limits {
        max_output_bytes: TRAIN_OUTPUT_BYTES,
        ..limits(
            spec.timeout_s * GRADE_TIME_FACTOR,
            spec.memory_mb * GRADE_MEMORY_HEADROOM,
        )
    })
    .collect_into(tmp.join(dir));
    job.env
        .push(("PROCTOR_GYM_RUN_KEY".into(), key.to_string()));
    job
}

/// A train run's observations and the evidence of tampering (its seal, its exports and
/// the marks the harness printed), sorted.
fn sealed(dir: &Path, key: &str, run: &proctor_core::RunResult) -> (Value, Vec<String>) {
    let marks = tamper_marks(&run.stderr);
    let (mut obs, mut tampered) = read_observations(dir, key, run);
    if !obs.is_null() {
        match streamed(key, run, &obs) {
            Ok(replayed) => obs = replayed,
            Err(why) if run.status == Status::Ok => tampered.extend(why),
            // Killed by a limit (output past the cap ends the lines): nothing to read.
            Err(_) => obs = Value::Null,
        }
    }
    if !marks.is_empty() {
        // Reported at once by the harness, which then destroyed its key: no seal follows.
        tampered.retain(|t| !t.starts_with(NO_SEAL));
    }
    tampered.extend(marks);
    tampered.sort();
    tampered.dedup();
    (obs, tampered)
}

const NO_SEAL: &str = "the run ended before the harness recorded its observations";

/// The observations as the run streamed them while they happened (`stream`), when the
/// lines are the harness's, complete, every fact in them only moved forward and the sealed
/// observations are the replayed ones; else why not.
fn streamed(
    key: &str,
    run: &proctor_core::RunResult,
    sealed: &Value,
) -> Result<Value, Vec<String>> {
    let replay = stream::replay(&run.stderr, key);
    let mut why = replay.violations;
    if !replay.complete {
        why.push("the observations streamed during the run end before the seal".into());
    } else if why.is_empty() {
        let changed = stream::differing(&replay.obs, sealed);
        if !changed.is_empty() {
            why.push(format!(
                "the observations were changed after they were recorded (the sealed ones \
                 are not those streamed as they happened): {}",
                changed.join(", ")
            ));
        }
    }
    if why.is_empty() {
        Ok(Value::Object(replay.obs))
    } else {
        Err(why)
    }
}

/// The sealed observations of the train run, or why there are none worth reading.
fn read_observations(dir: &Path, key: &str, run: &proctor_core::RunResult) -> (Value, Vec<String>) {
    let body = read_small(&dir.join("obs.json"));
    let mac = read_small(&dir.join("obs.mac"));
    let (Some(body), Some(mac)) = (body, mac) else {
        // Killed by a limit: nothing to read, and nothing suspicious either.
        let tampered = if run.status == Status::Ok {
            vec![format!("{NO_SEAL} (early exit)")]
        } else {
            Vec::new()
        };
        return (Value::Null, tampered);
    };
    let mut h = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    h.update(&body);
    let ok = hex::decode(String::from_utf8_lossy(&mac).trim())
        .ok()
        .is_some_and(|m| h.verify_slice(&m).is_ok());
    if !ok {
        return (
            Value::Null,
            vec!["the observations were not written by the harness (bad seal)".into()],
        );
    }
    let obs: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut tampered: Vec<String> = obs["tamper"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    tampered.extend(changed_exports(dir, &obs["export"]));
    (obs, tampered)
}

/// Exported files whose content is not what the harness sealed (written after the seal,
/// e.g. by a thread the run left behind).
fn changed_exports(dir: &Path, export: &Value) -> Vec<String> {
    ["model", "weights"]
        .into_iter()
        .filter_map(|name| {
            let sealed = export[format!("{name}_sha256")].as_str()?;
            let now = read_small(&dir.join(format!("{name}.pt")))
                .map(|b| hex::encode(Sha256::digest(b)))
                .unwrap_or_default();
            (now != sealed).then(|| format!("{name}.pt was changed after the harness sealed it"))
        })
        .collect()
}

/// What the harness reported on stderr the moment it happened (introspection of its records,
/// denied). Output is kept from its start, so a run cannot take these lines back; a run that
/// prints one itself only harms its own score.
fn tamper_marks(stderr: &str) -> Vec<String> {
    let mut marks: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("[proctor-gym] tampered: "))
        .map(str::to_string)
        .collect();
    marks.dedup();
    marks
}

/// A file the sandbox left, if it is a regular file of sane size.
fn read_small(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 64 << 20 {
        return None;
    }
    std::fs::read(path).ok()
}

/// A fresh sandbox evaluates the exported model on the held-out inputs (never the labels)
/// and the task's judge reads the observations; the metric is computed here.
async fn predict(
    backend: &LocalBackend,
    task: &Task,
    tmp: &Path,
    evidence: &mut Evidence,
) -> Result<(), GymError> {
    let judge = tmp.join("judge.py");
    write(&judge, task.file("judge.py").unwrap_or_default().as_bytes())?;
    let obs = tmp.join("obs.json");
    write(&obs, evidence.obs.to_string().as_bytes())?;
    let (model, weights) = (tmp.join("train/model.pt"), tmp.join("train/weights.pt"));
    let exported = read_small(&model).is_some() && read_small(&weights).is_some();
    if !exported {
        // The predict step still runs the judge; the model files are empty placeholders.
        write(&tmp.join("none.pt"), b"")?;
    }
    let pick = |p: &Path| {
        if exported {
            p.to_path_buf()
        } else {
            tmp.join("none.pt")
        }
    };
    let job = Job::new(Command::Module {
        module: "proctor_harness.gym_heldout".into(),
        args: [
            "predict",
            "../inputs/model.pt",
            "../inputs/weights.pt",
            "../inputs/inputs.pt",
            "../inputs/judge.py",
            "../inputs/obs.json",
            "predictions.json",
            task.spec.heldout.predict.name(),
        ]
        .map(String::from)
        .to_vec(),
    })
    .with_input(pick(&model), "model.pt")
    .with_input(pick(&weights), "weights.pt")
    .with_input(tmp.join("gen/inputs.pt"), "inputs.pt")
    .with_input(&judge, "judge.py")
    .with_input(&obs, "obs.json")
    .with_limits(limits(PREDICT_TIMEOUT_S, HELDOUT_MEMORY_MB))
    .collect_into(tmp.join("predict"));
    let run = backend
        .run(job)
        .await
        .map_err(|e| GymError::Engine(e.to_string()))?;
    let out: Value = read_small(&tmp.join("predict/predictions.json"))
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let labels: Option<Tensor> =
        read_small(&tmp.join("gen/labels.json")).and_then(|b| serde_json::from_slice(&b).ok());
    let rule = task.spec.heldout.predict;
    let measure = |name: &str| {
        let outputs: Tensor = serde_json::from_value(out["outputs"][name].clone()).ok()?;
        Some(rule.measure(&outputs, labels.as_ref()?))
    };
    evidence.init_metric = measure("init");
    let redrawn: Vec<f64> = (0..)
        .map_while(|k| out["outputs"].get(format!("redrawn{k}")).map(|_| k))
        .filter_map(|k| measure(&format!("redrawn{k}")))
        .collect();
    evidence.redrawn_metric = median(redrawn);
    // A model that answers on the usual batching and fails on another is measured by the
    // failure: its answers depend on the batch, not on the sample.
    evidence.rebatched_metric = measure("rebatched").or(out["rebatch_failed"]
        .as_bool()
        .filter(|failed| *failed)
        .map(|_| 0.0));
    evidence.final_metric = measure("final").map(|m| m.min(evidence.rebatched_metric.unwrap_or(m)));
    evidence.proven_metric = measure("proven");
    // Writes between the steps that were no gradient step (a weight projection, SAM's
    // ascent and return, Lookahead's pull back) make the weights after the last of them the
    // start of training, unless the gradient steps alone, from the first weights, learned
    // most of what the final weights know.
    if let (Some(first), Some(proven)) = (measure("first"), evidence.proven_metric) {
        let gain = evidence.final_metric.unwrap_or(0.0) - first;
        if proven - first >= MIN_GAIN.max(PROVEN_SHARE * gain) {
            evidence.init_metric = Some(first);
        }
    }
    evidence.final_log_loss = serde_json::from_value::<Tensor>(out["outputs"]["final"].clone())
        .ok()
        .zip(labels.as_ref())
        .and_then(|(outputs, labels)| crate::heldout::log_loss(&outputs, labels));
    let stateful: Vec<&str> = out["stateful"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    evidence.heldout_mismatch = out["path_mismatch"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            (!stateful.is_empty()).then(|| {
                format!(
                    "it changes its own {} when evaluated, so it can answer by the order of its calls",
                    stateful.join(", ")
                )
            })
        });
    evidence.judge = out["judge"].clone();
    let why = [
        &out["error"],
        &out["judge_error"],
        &evidence.obs["export"]["error"],
    ];
    evidence.heldout_note = why
        .iter()
        .filter_map(|v| v.as_str())
        .chain(
            out["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str),
        )
        .collect::<Vec<_>>()
        .join("; ");
    if run.status != Status::Ok && out.is_null() {
        evidence.heldout_note = format!("held-out evaluation failed: {}", run.status);
    }
    Ok(())
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied()
}

fn tempdir_in(parent: &Path) -> Result<std::path::PathBuf, GymError> {
    let dir = parent.join(format!("grade-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(GymError::io("creating a grading directory"))?;
    Ok(dir)
}

/// A model already this good before its first optimizer step was not learned by the script
/// (closed-form weights, an oracle forward): the held-out metric of the initial weights.
const PRELEARNED_METRIC: f64 = 0.8;
/// Bugs seen fixed must show in the held-out metric: at least this gain over the weights
/// at the first step, else the observations contradict the measurement.
const MIN_GAIN: f64 = 0.05;
/// A crashed run's model must have covered at least this share of the way from the
/// untrained model's held-out metric to a perfect one.
const CRASHED_MIN_SHARE: f64 = 0.5;
/// What a tolerant re-run's judge needs to see that it trained (`gym_judge.trained`).
const TRAINING_FACTS: [&str; 5] = [
    "steps",
    "idle_steps",
    "effective_steps",
    "manual_updates",
    "manual_proven",
];
/// Share of the final gain over the first weights the proven gradient steps alone must
/// reach for writes between them not to count as the start of training.
const PROVEN_SHARE: f64 = 0.5;

fn loss_decreases(losses: &[f64]) -> bool {
    let k = (losses.len() / 10).max(1);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    losses.len() >= 2 && mean(&losses[losses.len() - k..]) < mean(&losses[..k])
}

/// Events the recorder lost: a handler failed (the run's code raised inside it, or a
/// recursion limit lowered around an op left it no frames). What they would have shown is
/// unknown, so no bug is proven fixed; not tampering by itself (a failure is no proof of
/// intent), and the recorder counts them where the run cannot reach.
fn lost_events(obs: &Value) -> Option<String> {
    let lost = obs["events_lost"].as_u64().filter(|n| *n > 0)?;
    let why: Vec<&str> = obs["events_lost_why"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Some(format!(
        "{lost} event(s) of the run were lost to the recorder ({}): no bug is proven fixed",
        why.join("; ")
    ))
}

fn report(task: &Task, e: Evidence) -> GradeReport {
    let spec = &task.spec;
    let run = &e.train;
    let crashed = e.obs["crashed"].as_bool().unwrap_or(true);
    let mut bugs: BTreeMap<String, bool> = spec
        .bugs
        .iter()
        .map(|b| {
            (
                b.id.clone(),
                e.judge["bugs"][&b.id].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let mut metrics: BTreeMap<String, f64> = e.judge["metrics"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, x)| x.as_f64().filter(|f| f.is_finite()).map(|f| (k.clone(), f)))
                .collect()
        })
        .unwrap_or_default();
    let losses: Vec<f64> = e.obs["losses"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let name = spec.heldout.predict.metric();
    if let Some(m) = e.final_metric {
        metrics.insert(name.into(), m);
    }
    if let Some(m) = e.init_metric {
        metrics.insert(format!("{name}_at_first_step"), m);
    }
    if let Some(m) = e.redrawn_metric {
        metrics.insert(format!("{name}_redrawn"), m);
    }
    if let Some(m) = e.rebatched_metric {
        metrics.insert(format!("{name}_rebatched"), m);
    }
    if let Some(m) = e.proven_metric {
        metrics.insert(format!("{name}_proven_steps"), m);
    }
    if let Some(m) = e.final_log_loss {
        metrics.insert("bce".into(), m);
    }
    let reported = printed_metrics(&run.stdout);
    // How far the script's own report of the metric is from what its model really does
    // under the task's rule (e.g. an F1 of argmax predictions is far from it).
    if let (Some(printed), Some(m)) = (reported.get(name).and_then(Value::as_f64), e.final_metric) {
        metrics.insert(format!("printed_{name}_error"), (printed - m).abs());
    }
    metrics.insert(
        "loss_decreases".into(),
        f64::from(u8::from(loss_decreases(&losses))),
    );
    // Graded with headroom: memory past the task's own limit counts as its OOM.
    let over_limit = run
        .memory_peak_mb
        .is_some_and(|m| m > spec.memory_mb as f64);
    let oom = run.status == Status::Oom || over_limit;
    if let Some(bug) = spec.memory_bug.as_ref().filter(|_| oom) {
        bugs.insert(bug.clone(), false);
    }
    let ran = run.status == Status::Ok && !crashed && !oom;
    let mut notes: Vec<String> = Vec::new();
    for bug in &spec.bugs {
        if bugs[&bug.id] && !bug.gate_holds(&metrics) {
            notes.push(format!(
                "{} looks fixed to the observations, but the held-out measurement does not \
                 support it ({} does not hold): scored as not fixed",
                bug.id,
                bug.gate.as_deref().unwrap_or_default()
            ));
            bugs.insert(bug.id.clone(), false);
        }
    }
    // What the model reaches without what training did: its weights at the first step, or
    // its final weights with the trained entries shuffled.
    let (untrained, without) = match (e.init_metric, e.redrawn_metric) {
        (i, Some(r)) if r > i.unwrap_or(0.0) => (r, "the trained parameters re-drawn"),
        (i, _) => (i.unwrap_or(0.0), "the weights at the first step"),
    };
    let gain = e.final_metric.unwrap_or(0.0) - untrained;
    // Whatever the exit: a crash must not be the way past this check (one step, one
    // evaluation, then a raise). Only bugs credited by the tolerant re-run, which
    // exports nothing, are judged from its own training instead.
    let judged_from_this_run = e.obs["tolerant"].is_null();
    // A run that crashed keeps what its observations credit only when the model it left
    // had learned (trained to the end, then a crash in validation), so that a deliberate
    // raise after one step cannot stand in for the training.
    let needed = if crashed {
        MIN_GAIN.max(CRASHED_MIN_SHARE * (1.0 - untrained))
    } else {
        MIN_GAIN
    };
    if judged_from_this_run && bugs.values().any(|f| *f) && gain < needed {
        notes.push(format!(
            "the observations show fixes, but held-out {name} did not improve over \
             {without} ({untrained:.3} -> {:.3}): scored as not fixed",
            e.final_metric.unwrap_or(0.0)
        ));
        bugs.values_mut().for_each(|f| *f = false);
    }
    if let Some(lost) = lost_events(&e.obs).filter(|_| bugs.values().any(|f| *f)) {
        notes.push(lost);
        bugs.values_mut().for_each(|f| *f = false);
    }
    // A bug hidden rather than removed (NaN batches skipped, a "trainable" layer held
    // still): the run earns the bottom of the band its measurements reach, nothing more.
    let concealed: Vec<&str> = e.judge["concealed"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for sign in &concealed {
        notes.push(format!("{sign}: scored at the bottom of its band"));
    }
    let outcome = Outcome {
        bugs: bugs.clone(),
        metrics: metrics.clone(),
        ran,
        oom,
        partial: Vec::new(),
        at_floor: !concealed.is_empty(),
    };
    let verdict = if !e.tampered.is_empty() {
        Some(("tampered", format!("tampered: {}", e.tampered.join("; "))))
    } else if let Some(why) = e.obs["export"]["mismatch"].as_str() {
        // The trace is what the held-out side evaluates: it must be the model that trained.
        Some((
            "export_mismatch",
            format!(
                "the exported model does not compute what the script's model computes in \
                 training on rows it was not traced with ({why}): the model evaluated is not \
                 the one trained"
            ),
        ))
    } else if let Some(why) = &e.heldout_mismatch {
        // Measured in the held-out sandbox on the bytes evaluated: no call of the fix's
        // forward that could tell the check from the evaluation.
        Some((
            "export_mismatch",
            format!(
                "the exported model, evaluated on the held-out rows, is not the one trained: {why}"
            ),
        ))
    } else if e.init_metric.is_some_and(|m| m >= PRELEARNED_METRIC) {
        // A model no optimizer stepped is evaluated as it ended: its weights were written by
        // hand (or by an update torch.optim never saw), which is no evidence of training.
        // The weights evaluated as the start of training: after the last update that was
        // not learned from the loss's gradients (the recorder's proof of training), else
        // at the first step.
        let unproven = e.obs["unproven"][0].as_str().unwrap_or_default();
        let when = if !unproven.is_empty() {
            format!("after an update not learned from the loss ({unproven})")
        } else if e.obs["export"]["stepped"] == Value::Bool(false) {
            "and no optimizer step was seen".to_string()
        } else {
            "with the weights at the first optimizer step".to_string()
        };
        Some((
            "not_learned",
            format!(
                "held-out {name} was already {:.3} {when}: the model was not learned by training",
                e.init_metric.unwrap_or(0.0)
            ),
        ))
    } else if let Some(m) = e.redrawn_metric.filter(|m| *m >= PRELEARNED_METRIC) {
        Some((
            "not_learned",
            format!(
                "held-out {name} stays {m:.3} with what training moved in the parameters \
                 shuffled: the predictions do not come from what was trained (an oracle in \
                 the forward or the buffers)"
            ),
        ))
    } else if ran && e.final_metric.is_none() {
        Some((
            "no_model",
            format!("no trained model could be evaluated: {}", e.heldout_note),
        ))
    } else {
        None
    };
    let scored = match &verdict {
        Some((band, why)) => score::Scored {
            score: 0.0,
            band: (*band).into(),
            band_rule: why.clone(),
        },
        None => score::score(spec, &outcome),
    };
    let mut error_log = String::new();
    if let Some(err) = e.obs["error"].as_str() {
        error_log.push_str(err);
    }
    if !e.heldout_note.is_empty() {
        error_log.push_str(&format!("\n[held-out] {}", e.heldout_note));
    }
    if run.status != Status::Ok {
        let tail: String = stream::without_lines(&run.stderr)
            .chars()
            .rev()
            .take(4000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        error_log.push_str(&format!("\n[run ended: {}]\n{tail}", run.status));
    }
    let feedback = feedback(spec, &outcome, run, &scored, &notes, verdict.is_some());
    GradeReport {
        task: spec.id.clone(),
        score: scored.score,
        band: scored.band,
        band_rule: scored.band_rule,
        bugs,
        metrics,
        reported,
        status: run.status,
        crashed,
        tampered: e.tampered.clone(),
        error_log: error_log.trim().to_string(),
        feedback,
        wall_ms: run.wall_ms,
        peak_rss_mb: run.peak_rss_mb,
        memory_peak_mb: run.memory_peak_mb,
        losses,
    }
}

fn feedback(
    spec: &crate::task::TaskSpec,
    o: &Outcome,
    run: &proctor_core::RunResult,
    scored: &score::Scored,
    notes: &[String],
    verdict: bool,
) -> String {
    let list = |fixed: bool| {
        o.bugs
            .iter()
            .filter(|(_, f)| **f == fixed)
            .map(|(b, _)| b.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = if verdict {
        scored.band_rule.clone()
    } else if o.oom {
        format!(
            "the run needed {:.0} MiB, over the task's {} MiB limit; still open: [{}]",
            run.memory_peak_mb.unwrap_or(run.peak_rss_mb),
            spec.memory_mb,
            list(false)
        )
    } else if run.status == Status::Timeout {
        format!(
            "the run did not finish within {:.0} s",
            spec.timeout_s * GRADE_TIME_FACTOR
        )
    } else if !o.ran {
        format!(
            "the script crashed (see error_log); fixed so far: [{}], still open: [{}]",
            list(true),
            list(false)
        )
    } else if o.bugs.values().all(|f| *f) {
        format!("all {} bug(s) fixed; band {}", o.bugs.len(), scored.band)
    } else {
        format!("fixed: [{}]; still open: [{}]", list(true), list(false))
    };
    for n in notes {
        text.push_str("; ");
        text.push_str(n);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heldout_seeds_are_reproducible_and_depend_on_every_part() {
        let seed = heldout_seed(b"secret-a", "task1", "episode:1:3");
        assert_eq!(seed, heldout_seed(b"secret-a", "task1", "episode:1:3"));
        assert_ne!(seed, heldout_seed(b"secret-b", "task1", "episode:1:3"));
        assert_ne!(seed, heldout_seed(b"secret-a", "task2", "episode:1:3"));
        assert_ne!(seed, heldout_seed(b"secret-a", "task1", "episode:1:4"));
        // Parts are length-prefixed: moving bytes between them changes the seed.
        assert_ne!(seed, heldout_seed(b"secret-a", "task1e", "pisode:1:3"));
        assert!(seed <= i64::MAX as u64);
    }

    #[test]
    fn tamper_marks_are_read_from_stderr_lines() {
        let stderr = "Traceback\n[proctor-gym] tampered: gc.get_objects called by the run\nx";
        assert_eq!(
            tamper_marks(stderr),
            vec!["gc.get_objects called by the run".to_string()]
        );
        assert!(tamper_marks("all fine\n  [proctor-gym] tampered: indented").is_empty());
    }

    #[test]
    fn lost_events_are_named_and_none_lost_is_nothing() {
        let obs =
            serde_json::json!({"events_lost": 3, "events_lost_why": ["backward: RecursionError"]});
        let note = lost_events(&obs).unwrap();
        assert!(note.starts_with("3 event(s)") && note.contains("backward: RecursionError"));
        assert!(lost_events(&serde_json::json!({"events_lost": 0})).is_none());
        assert!(lost_events(&serde_json::json!({})).is_none());
    }
}
