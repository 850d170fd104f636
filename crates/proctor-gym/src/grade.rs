//! Grading a fix: run it in the sandbox under instrumentation, let the task's trusted
//! grader measure the trained model on held-out data, and score from the measurements.

use std::collections::BTreeMap;
use std::path::Path;

use proctor_core::{Command, Job, Limits, Status};
use proctor_engine::{Backend, LocalBackend};
use serde::Serialize;
use serde_json::Value;

use crate::score::{self, Outcome};
use crate::task::Task;
use crate::GymError;

/// Graded runs get this multiple of the task's memory limit.
const GRADE_MEMORY_HEADROOM: u64 = 4;

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

fn write_task_dir(task: &Task, dir: &Path) -> Result<(), GymError> {
    std::fs::create_dir_all(dir).map_err(GymError::io("creating the grading directory"))?;
    for (name, text) in task.files {
        // The agent's code is the only script that runs; the pristine files are for the grader.
        std::fs::write(dir.join(name), text).map_err(GymError::io("writing the task files"))?;
    }
    Ok(())
}

/// Grades `code` as a fix of `task`.
pub async fn grade(
    backend: &LocalBackend,
    task: &Task,
    code: &str,
) -> Result<GradeReport, GymError> {
    if code.len() > MAX_CODE_BYTES {
        return Err(GymError::BadAction(format!(
            "the fix is {} bytes; the limit is {MAX_CODE_BYTES}",
            code.len()
        )));
    }
    let scratch = backend.config().home.join("gym");
    std::fs::create_dir_all(&scratch).map_err(GymError::io("creating the gym directory"))?;
    let tmp = tempdir_in(&scratch)?;
    let task_dir = tmp.join("task");
    write_task_dir(task, &task_dir)?;
    let fix = tmp.join("fix.py");
    std::fs::write(&fix, code).map_err(GymError::io("writing the fix"))?;
    let collected = tmp.join("out");
    let limits = Limits {
        timeout_ms: (task.spec.timeout_s * 1000.0) as u64,
        // Headroom, so that the other bugs are still observed in a run that exceeds the
        // task's limit; exceeding it is judged from the measured peak (see `report`).
        memory_mb: task.spec.memory_mb * GRADE_MEMORY_HEADROOM,
        max_pids: 64,
        max_output_bytes: 256 * 1024,
        ..Limits::default()
    };
    let job = Job::new(Command::Module {
        module: "proctor_harness.gym_grade".into(),
        args: vec![
            "../inputs/task".into(),
            "../inputs/fix.py".into(),
            "grade.json".into(),
        ],
    })
    .with_input(&task_dir, "task")
    .with_input(&fix, "fix.py")
    .with_limits(limits)
    .collect_into(&collected);
    let run = backend.run(job).await;
    let verdict = read_verdict(&collected.join("grade.json"));
    let _ = std::fs::remove_dir_all(&tmp);
    let run = run.map_err(|e| GymError::Engine(e.to_string()))?;
    Ok(report(task, run, verdict))
}

fn tempdir_in(parent: &Path) -> Result<std::path::PathBuf, GymError> {
    let dir = parent.join(format!("grade-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(GymError::io("creating a grading directory"))?;
    Ok(dir)
}

/// The grader's JSON; anything malformed or oversized counts as no verdict.
fn read_verdict(path: &Path) -> Option<Value> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 4 << 20 {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn report(task: &Task, run: proctor_core::RunResult, verdict: Option<Value>) -> GradeReport {
    let spec = &task.spec;
    let v = verdict.unwrap_or(Value::Null);
    let crashed = v["crashed"].as_bool().unwrap_or(true);
    let mut bugs: BTreeMap<String, bool> = spec
        .bugs
        .iter()
        .map(|b| (b.id.clone(), v["bugs"][&b.id].as_bool().unwrap_or(false)))
        .collect();
    let metrics: BTreeMap<String, f64> = v["metrics"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, x)| x.as_f64().filter(|f| f.is_finite()).map(|f| (k.clone(), f)))
                .collect()
        })
        .unwrap_or_default();
    let losses: Vec<f64> = v["observations"]["losses"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let partial: Vec<String> = v["partial"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| b.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // Graded with headroom: memory past the task's own limit counts as its OOM.
    let over_limit = run
        .memory_peak_mb
        .is_some_and(|m| m > spec.memory_mb as f64);
    let oom = run.status == Status::Oom || over_limit;
    if let Some(bug) = spec.memory_bug.as_ref().filter(|_| oom) {
        bugs.insert(bug.clone(), false);
    }
    let outcome = Outcome {
        bugs: bugs.clone(),
        metrics: metrics.clone(),
        ran: run.status == Status::Ok && !crashed && !oom,
        oom,
        partial,
    };
    let scored = score::score(spec, &outcome);
    let mut error_log = String::new();
    if let Some(e) = v["error"].as_str() {
        error_log.push_str(e);
    }
    if let Some(e) = v["grader_error"].as_str() {
        error_log.push_str("\n[grader] ");
        error_log.push_str(e);
    }
    if run.status != Status::Ok {
        let tail: String = run
            .stderr
            .chars()
            .rev()
            .take(4000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        error_log.push_str(&format!("\n[run ended: {}]\n{tail}", run.status));
    }
    let fixed: Vec<&str> = bugs
        .iter()
        .filter(|(_, f)| **f)
        .map(|(b, _)| b.as_str())
        .collect();
    let open: Vec<&str> = bugs
        .iter()
        .filter(|(_, f)| !**f)
        .map(|(b, _)| b.as_str())
        .collect();
    let feedback = match (outcome.ran, open.is_empty()) {
        (false, _) if outcome.oom => format!(
            "the run needed {:.0} MiB, over the task's {} MiB limit; still open: [{}]",
            run.memory_peak_mb.unwrap_or(run.peak_rss_mb),
            spec.memory_mb,
            open.join(", ")
        ),
        (false, _) if run.status == Status::Timeout => {
            format!("the run did not finish within {:.0} s", spec.timeout_s)
        }
        (false, _) => format!(
            "the script crashed (see error_log); fixed so far: [{}], still open: [{}]",
            fixed.join(", "),
            open.join(", ")
        ),
        (true, true) => format!("all {} bug(s) fixed; band {}", bugs.len(), scored.band),
        (true, false) => format!(
            "fixed: [{}]; still open: [{}]",
            fixed.join(", "),
            open.join(", ")
        ),
    };
    GradeReport {
        task: spec.id.clone(),
        score: scored.score,
        band: scored.band,
        band_rule: scored.band_rule,
        bugs,
        metrics,
        reported: printed_metrics(&run.stdout),
        status: run.status,
        crashed,
        error_log: error_log.trim().to_string(),
        feedback,
        wall_ms: run.wall_ms,
        peak_rss_mb: run.peak_rss_mb,
        memory_peak_mb: run.memory_peak_mb,
        losses,
    }
}
