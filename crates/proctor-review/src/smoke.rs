//! The dynamic pass: every variation smoke-run in the sandbox, from the smoke config and
//! from a lightened full config, on stand-in data; failures classified and turned into
//! findings with the file, line and cause.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proctor_core::{Command, Job, Limits, RunResult, Status};
use proctor_engine::Backend;
use serde_json::Value;

use crate::case::Case;
use crate::checks::{names_variation, Analysed, FULL, SMOKE};
use crate::process::Failure;
use crate::report::{cut, Finding, RunStatus, Severity, SmokeRun};

/// Files shipped into the sandbox as the `proctor_review` input.
const HARNESS: &[(&str, &str)] = &[
    (
        "proctor_review_standins/__init__.py",
        include_str!("../../../python/proctor_harness/standins/__init__.py"),
    ),
    (
        "proctor_review_standins/hub.py",
        include_str!("../../../python/proctor_harness/standins/hub.py"),
    ),
    (
        "proctor_review_bootstrap.py",
        include_str!("../../../python/proctor_harness/review_bootstrap.py"),
    ),
    (
        "sitecustomize.py",
        include_str!("../../../python/proctor_harness/review_sitecustomize.py"),
    ),
];

const BOOTSTRAP: &str = "import sys\nsys.path.insert(0, '../inputs/proctor_review')\nimport proctor_review_bootstrap\nproctor_review_bootstrap.main()\n";
/// Options of the base's `main.py` that select one variation.
const VARIATION_OPTIONS: &[&str] = &[
    "--variation",
    "--run-variation",
    "--run",
    "--run-id",
    "--run_id",
];
/// Most bytes of the events file read back.
const MAX_EVENTS_BYTES: u64 = 4 << 20;

/// How smoke runs are run.
#[derive(Debug, Clone)]
pub struct SmokeOptions {
    /// A directory on the same filesystem as the engine's run directories (`$PROCTOR_HOME`),
    /// where projects are staged and run scratches collected.
    pub work_dir: PathBuf,
    /// Limits of each run.
    pub limits: Limits,
    /// Runs at once.
    pub parallel: usize,
    /// Batches each DataLoader yields per iteration.
    pub max_batches: usize,
    /// Also run each variation from the lightened full configuration.
    pub full_config: bool,
    /// Largest file a run may write, in MiB (`RLIMIT_FSIZE`; the engine has no disk quota).
    pub max_file_mb: u64,
}

struct Planned {
    variation: String,
    config: &'static str,
    /// The configuration file the run reads its variation's settings from.
    file: String,
    args: Vec<String>,
    lighten: Option<&'static str>,
}

/// A Hydra-shaped project runs `python -m src.main run=<run_id> results_dir=DIR
/// mode=trial` for each variation's run configuration (`config/runs/<run_id>.yaml`).
fn hydra_plan(case: &Case) -> Vec<Planned> {
    let runs = crate::checks::hydra_runs(&case.derived);
    let names = &case.experiment.run_variations;
    runs.iter()
        .filter_map(|path| {
            let id = crate::checks::run_id(path);
            let variation = if names.is_empty() {
                id.to_string()
            } else {
                names
                    .iter()
                    .find(|n| crate::checks::names_variation(id, n))?
                    .clone()
            };
            Some(Planned {
                variation,
                config: "trial",
                file: path.to_string(),
                args: vec![
                    format!("run={id}"),
                    "results_dir=results".into(),
                    "mode=trial".into(),
                ],
                lighten: None,
            })
        })
        .collect()
}

/// Plans and runs the smoke runs; returns the runs and the findings they prove.
pub async fn run<B: Backend>(
    backend: &B,
    case: &Case,
    derived: &Analysed,
    base: &Analysed,
    overlay: Option<&Path>,
    opts: &SmokeOptions,
) -> (Vec<SmokeRun>, Vec<Finding>) {
    let mut findings = Vec::new();
    if !case.derived.files.contains_key("src/main.py") {
        findings.push(
            Finding::new(
                "not-run",
                Severity::Blocker,
                "no smoke run was possible: the experiment code has no `src/main.py`",
            )
            .at("src/main.py", None)
            .fix("add `src/main.py` accepting `--smoke-test --results-dir DIR`"),
        );
        return (Vec::new(), findings);
    }
    let options = |a: &Analysed| {
        a.modules
            .get("src/main.py")
            .map(|m| m.options.clone())
            .unwrap_or_default()
    };
    let mut base_options = options(base);
    if base_options.is_empty() {
        base_options = options(derived);
    }
    let per_variation = VARIATION_OPTIONS
        .iter()
        .find(|o| base_options.iter().any(|b| b == *o))
        .copied();
    let has_full = base_options.iter().any(|o| o == "--full-experiment");
    let mut plan = Vec::new();
    let configs: Vec<(&'static str, &'static str, Option<&'static str>)> =
        if opts.full_config && has_full {
            vec![
                ("smoke_test", "--smoke-test", None),
                ("full_experiment", "--full-experiment", Some(FULL)),
            ]
        } else {
            vec![("smoke_test", "--smoke-test", None)]
        };
    let hydra = hydra_plan(case);
    let configs = if hydra.is_empty() {
        configs
    } else {
        Vec::new()
    };
    plan.extend(hydra);
    for (config, flag, lighten) in configs {
        let base_args = vec![
            flag.to_string(),
            "--results-dir".to_string(),
            "results".to_string(),
        ];
        match per_variation {
            Some(opt) if !case.experiment.run_variations.is_empty() => {
                for v in &case.experiment.run_variations {
                    let mut args = base_args.clone();
                    args.extend([opt.to_string(), v.clone()]);
                    plan.push(Planned {
                        variation: v.clone(),
                        config,
                        file: config_path(config).into(),
                        args,
                        lighten,
                    });
                }
            }
            _ => plan.push(Planned {
                variation: "*".into(),
                config,
                file: config_path(config).into(),
                args: base_args,
                lighten,
            }),
        }
    }
    let staged = match stage(case, &opts.work_dir) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            findings.push(Finding::new(
                "not-run",
                Severity::Warning,
                format!("the smoke runs could not be prepared: {e}"),
            ));
            return (Vec::new(), findings);
        }
    };
    let semaphore = Arc::new(tokio::sync::Semaphore::new(opts.parallel.max(1)));
    let jobs = plan.iter().enumerate().map(|(i, p)| {
        let semaphore = semaphore.clone();
        let staged = staged.clone();
        async move {
            let _permit = semaphore.acquire().await;
            let collect = staged.root.path().join(format!("run-{i}"));
            let mut job = Job::new(Command::Code {
                code: BOOTSTRAP.into(),
            })
            .with_limits(opts.limits)
            .with_input(staged.project.clone(), "project")
            .with_input(staged.harness.clone(), "proctor_review")
            .collect_into(&collect);
            if let Some(dir) = overlay {
                // The project's installed dependencies, put after the runtime on the path.
                job = job.with_input(dir, "project_env");
            }
            job.env.push((
                "PROCTOR_REVIEW_ARGS".into(),
                serde_json::to_string(&p.args).unwrap_or_default(),
            ));
            job.env.push((
                "PROCTOR_REVIEW_MAX_BATCHES".into(),
                opts.max_batches.to_string(),
            ));
            job.env.push(("OMP_NUM_THREADS".into(), "1".into()));
            // Hydra re-raises a task's exception (instead of printing it and exiting 1), so
            // every process records where it failed.
            job.env.push(("HYDRA_FULL_ERROR".into(), "1".into()));
            // The sandbox is offline: hub clients fail at once instead of retrying for a minute.
            for var in [
                "HF_HUB_OFFLINE",
                "HF_DATASETS_OFFLINE",
                "TRANSFORMERS_OFFLINE",
            ] {
                job.env.push((var.into(), "1".into()));
            }
            job.env.push((
                "PROCTOR_REVIEW_MAX_FILE_MB".into(),
                opts.max_file_mb.to_string(),
            ));
            if let Some(l) = p.lighten {
                job.env.push(("PROCTOR_REVIEW_LIGHTEN".into(), l.into()));
            }
            let result = backend.run(job).await;
            let events = read_events(&collect.join(".proctor_review/events.jsonl"));
            proctor_engine::remove_tree_blocking(collect.clone()).await;
            (result, events)
        }
    });
    let results = futures::future::join_all(jobs).await;
    let mut runs = Vec::new();
    // Per configuration: (variation, its configuration file, its losses).
    type Losses = Vec<(String, String, Vec<f64>)>;
    let mut losses: BTreeMap<&'static str, Losses> = BTreeMap::new();
    for (p, (result, events)) in plan.iter().zip(results) {
        let command = format!("python -m src.main {}", p.args.join(" "));
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                findings.push(Finding::new(
                    "not-run",
                    Severity::Warning,
                    format!("smoke run `{command}` could not be started: {e}"),
                ));
                continue;
            }
        };
        let (run, mut found) = classify(p, &command, &result, &events);
        if run.status == RunStatus::Ok {
            let variations = &case.experiment.run_variations;
            for (variation, l) in losses_by_variation(p, &events, variations) {
                losses
                    .entry(p.config)
                    .or_default()
                    .push((variation, p.file.clone(), l));
            }
        }
        findings.append(&mut found);
        runs.push(run);
    }
    // Variations that should differ but produced the very same losses.
    for (config, list) in &losses {
        for (i, (a, fa, la)) in list.iter().enumerate() {
            for (b, fb, lb) in &list[..i] {
                if la == lb {
                    let (same_as, name, path) = if is_reference(a) {
                        (a, b, fb)
                    } else {
                        (b, a, fa)
                    };
                    findings.push(
                        Finding::new(
                            "variation-not-implemented",
                            Severity::Blocker,
                            format!("run variation `{name}` behaves exactly like `{same_as}`: its smoke run ({config}) produced identical losses, so what distinguishes it is not implemented"),
                        )
                        .at(path, None)
                        .evidence(format!(
                            "first losses of both runs: {}",
                            la.iter().take(5).map(|v| format!("{v:.6}")).collect::<Vec<_>>().join(", ")
                        ))
                        .fix(format!("implement what makes `{name}` differ from `{same_as}` in the training code")),
                    );
                }
            }
        }
    }
    (runs, findings)
}

/// The losses of a run, per variation: a run of one variation gives it all of them; a run
/// of every variation (`*`) gives each variation the losses of the process whose command
/// line names it (a `main.py` launching `src.train --run smoke_<variation>` per run). A
/// process naming several variations is not attributed.
fn losses_by_variation(
    p: &Planned,
    events: &[Value],
    variations: &[String],
) -> Vec<(String, Vec<f64>)> {
    let losses = |pid: Option<i64>| -> Vec<f64> {
        events
            .iter()
            .filter(|e| e["kind"] == "loss" && (pid.is_none() || e["pid"].as_i64() == pid))
            .filter_map(|e| e["value"].as_f64())
            .collect()
    };
    if p.variation != "*" {
        let all = losses(None);
        return match all.is_empty() {
            true => Vec::new(),
            false => vec![(p.variation.clone(), all)],
        };
    }
    let mut out: Vec<(String, Vec<f64>)> = Vec::new();
    for e in events.iter().filter(|e| e["kind"] == "process") {
        let argv: Vec<&str> = e["argv"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // An argument or one component of a path argument (`results/smoke_<variation>/
        // config.yaml`, the per-run config a `main.py` writes and passes on).
        let named: Vec<&String> = variations
            .iter()
            .filter(|v| {
                argv.iter()
                    .flat_map(|a| std::iter::once(*a).chain(a.split('/')))
                    .any(|a| names_variation(a, v))
            })
            .collect();
        // `ohgw-3` also names `ohgw`: the longer name is the one meant.
        let meant: Vec<&&String> = named
            .iter()
            .filter(|v| !named.iter().any(|w| w != *v && names_variation(w, v)))
            .collect();
        let ([variation], Some(pid)) = (meant.as_slice(), e["pid"].as_i64()) else {
            continue;
        };
        let l = losses(Some(pid));
        if !l.is_empty() && !out.iter().any(|(n, _)| n == **variation) {
            out.push((variation.to_string(), l));
        }
    }
    out
}

/// A variation the others are compared against (`asha-baseline`, `comparative-1-…`).
fn is_reference(variation: &str) -> bool {
    let v = variation.to_ascii_lowercase();
    ["baseline", "comparative", "control"]
        .iter()
        .any(|w| v.contains(w))
}

/// The file of a smoke/full configuration label.
fn config_path(config: &str) -> &'static str {
    if config == "smoke_test" {
        SMOKE
    } else {
        FULL
    }
}

struct Staged {
    root: tempfile::TempDir,
    project: PathBuf,
    harness: PathBuf,
}

fn stage(case: &Case, work_dir: &Path) -> std::io::Result<Staged> {
    std::fs::create_dir_all(work_dir)?;
    let root = tempfile::Builder::new()
        .prefix("review-")
        .tempdir_in(work_dir)?;
    let project = root.path().join("project");
    for (path, file) in &case.derived.files {
        if path.split('/').any(|c| c == ".." || c.is_empty()) || path.starts_with('/') {
            continue;
        }
        let dest = project.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(dest, &file.text)?;
    }
    std::fs::create_dir_all(project.join("src"))?;
    let harness = root.path().join("harness");
    for (name, text) in HARNESS {
        let dest = harness.join(name);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(dest, text)?;
    }
    Ok(Staged {
        root,
        project,
        harness,
    })
}

/// The events the run recorded (untrusted: size-capped, malformed lines skipped).
fn read_events(path: &Path) -> Vec<Value> {
    use std::io::Read;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Vec::new();
    };
    if !meta.is_file() {
        return Vec::new();
    }
    let mut text = String::new();
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let _ = file.take(MAX_EVENTS_BYTES).read_to_string(&mut text);
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect()
}

const NETWORK_TYPES: &[&str] = &[
    "URLError",
    "HTTPError",
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "gaierror",
    "SSLError",
    "MaxRetryError",
    "NewConnectionError",
    "ProxyError",
    "ReadTimeout",
    "ConnectTimeout",
    "LocalEntryNotFoundError",
    "OfflineModeIsEnabled",
];

fn classify(
    p: &Planned,
    command: &str,
    result: &RunResult,
    events: &[Value],
) -> (SmokeRun, Vec<Finding>) {
    let standin = events.iter().any(|e| e["kind"] == "standin");
    let mut run = SmokeRun {
        variation: p.variation.clone(),
        config: p.config.to_string(),
        status: RunStatus::Ok,
        data: if standin { "stand-in" } else { "real" }.to_string(),
        wall_ms: result.wall_ms as u64,
        error: None,
        command: command.to_string(),
        log_tail: log_tail(&result.stdout, &result.stderr),
    };
    let config_file = p.file.as_str();
    let which = format!("`{}` ({})", p.variation, p.config);
    let mut findings = Vec::new();
    let failure = crate::process::first_failure(events);
    let root = events
        .iter()
        .find(|e| e["kind"] == "process")
        .map(|e| &e["pid"]);
    // Only the entry point's parser rejects "the command the pipeline runs".
    let argparse = events
        .iter()
        .find(|e| e["kind"] == "argparse_error" && root.is_none_or(|r| &e["pid"] == r));
    match result.status {
        Status::Ok => {
            // A child that crashed while its parent went on (`check=False`): the variation
            // did not run, whatever the exit status says.
            if let Some(f) = failure.as_ref().filter(|f| f.in_child) {
                let (_, finding) = from_exception(f, &which);
                run.status = RunStatus::CodeDefect;
                run.error = Some(cut(&error_summary(f.error), 300));
                findings.push(finding);
            }
            // Hyper-gradients that are None or zero on every call at a call site.
            let mut sites: BTreeMap<(String, u64), (usize, Vec<usize>)> = BTreeMap::new();
            for e in events.iter().filter(|e| e["kind"] == "hypergrad") {
                let key = (
                    e["file"].as_str().unwrap_or("?").to_string(),
                    e["line"].as_u64().unwrap_or(0),
                );
                let zero: Vec<bool> = e["zero"]
                    .as_array()
                    .map(|a| a.iter().map(|z| z.as_bool().unwrap_or(false)).collect())
                    .unwrap_or_default();
                let entry = sites.entry(key).or_insert((0, vec![0; zero.len()]));
                entry.0 += 1;
                if entry.1.len() != zero.len() {
                    entry.1 = vec![0; zero.len()];
                }
                for (i, z) in zero.iter().enumerate() {
                    entry.1[i] += usize::from(*z);
                }
            }
            for ((file, line), (calls, zeros)) in sites {
                let always: Vec<String> = zeros
                    .iter()
                    .enumerate()
                    .filter(|(_, z)| **z == calls)
                    .map(|(i, _)| format!("#{i}"))
                    .collect();
                if !always.is_empty() && !file.starts_with('/') {
                    findings.push(
                        Finding::new(
                            "zero-hypergradient",
                            Severity::Blocker,
                            format!(
                                "the gradient taken at {file}:{line} is structurally zero for input(s) {} on all {calls} call(s) in {which}: the value made differentiable never reaches the loss",
                                always.join(", ")
                            ),
                        )
                        .at(&file, Some(line as usize))
                        .evidence(format!("torch.autograd.grad returned None or exact zeros for input(s) {} on every call", always.join(", ")))
                        .fix("differentiate a loss that depends on the hyper-parameter, e.g. the loss after a differentiable one-step look-ahead update that uses it"),
                    );
                }
            }
        }
        Status::Timeout => {
            run.status = RunStatus::Timeout;
            run.error = Some(format!(
                "did not finish within {} s",
                result.wall_ms as u64 / 1000
            ));
            findings.push(
                Finding::new("smoke-run-timeout", Severity::Blocker, format!("the smoke run of {which} did not finish in time"))
                    .at(config_file, None)
                    .evidence(tail(&result.stderr))
                    .fix("make the smoke configuration lightweight (few epochs and trials) and make sure nothing loops forever"),
            );
        }
        Status::Oom => {
            run.status = RunStatus::Oom;
            run.error = Some("ran out of memory".into());
            findings.push(
                Finding::new("smoke-run-oom", Severity::Blocker, format!("the smoke run of {which} ran out of memory"))
                    .at(config_file, None)
                    .fix("reduce the model/batch size of the smoke configuration, or fix the memory leak"),
            );
        }
        Status::Killed | Status::OutputLimit | Status::DiskLimit | Status::Error => {
            run.status = RunStatus::CodeDefect;
            let summary = failure
                .as_ref()
                .map(|f| error_summary(f.error))
                .or_else(|| {
                    argparse.map(|a| format!("argparse: {}", a["message"].as_str().unwrap_or("")))
                })
                .unwrap_or_else(|| match result.status {
                    Status::Killed => "killed (process limit or a signal)".to_string(),
                    Status::OutputLimit => "wrote more output than allowed".to_string(),
                    Status::DiskLimit => "filled its disk quota".to_string(),
                    _ => last_line(&result.stderr),
                });
            run.error = Some(cut(&summary, 300));
            if let Some(a) = argparse {
                findings.push(
                    Finding::new(
                        "cli-rejected",
                        Severity::Blocker,
                        format!("`src/main.py` rejects the command the pipeline runs: {}", a["message"].as_str().unwrap_or("")),
                    )
                    .at("src/main.py", None)
                    .evidence(format!("{command} → {}", a["message"].as_str().unwrap_or("")))
                    .fix("accept `--smoke-test`, `--full-experiment`, `--results-dir DIR` (and the base's per-variation option) in the argument parser"),
                );
            } else if let Some(f) = &failure {
                let (status, finding) = from_exception(f, &which);
                run.status = status;
                findings.push(finding);
            } else if matches!(
                result.status,
                Status::Killed | Status::OutputLimit | Status::DiskLimit
            ) {
                findings.push(
                    Finding::new(
                        "smoke-run-killed",
                        Severity::Blocker,
                        format!("the smoke run of {which} was killed: {summary}"),
                    )
                    .evidence(tail(&result.stderr))
                    .fix("do not fork without bound, flood the output or fill the disk"),
                );
            } else {
                let exit = events.iter().find(|e| e["kind"] == "exit");
                let msg = exit
                    .and_then(|e| e["message"].as_str())
                    .map(str::to_string)
                    .unwrap_or(summary);
                findings.push(
                    Finding::new(
                        "smoke-run-failed",
                        Severity::Blocker,
                        format!("the smoke run of {which} failed: {msg}"),
                    )
                    .at("src/main.py", None)
                    .evidence(tail(&result.stderr))
                    .fix("make the smoke run exit 0"),
                );
            }
        }
    }
    (run, findings)
}

/// "Type: message" of a recorded exception.
fn error_summary(e: &Value) -> String {
    format!(
        "{}: {}",
        e["type"].as_str().unwrap_or("Error"),
        e["message"].as_str().unwrap_or("")
    )
}

/// A finding from the run's first failure: its innermost frame in project code, in the
/// process where it happened.
fn from_exception(failure: &Failure, which: &str) -> (RunStatus, Finding) {
    let e = failure.error;
    let ty = e["type"].as_str().unwrap_or("Exception");
    let module = e["module"].as_str().unwrap_or("");
    let message = e["message"].as_str().unwrap_or("");
    let frames: Vec<&Value> = e["frames"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let project_frame = frames.iter().rev().find(|f| {
        f["file"]
            .as_str()
            .is_some_and(|p| !p.starts_with('/') && !p.starts_with('<'))
    });
    let file = project_frame
        .and_then(|f| f["file"].as_str())
        .map(str::to_string);
    let line = project_frame
        .and_then(|f| f["line"].as_u64())
        .map(|l| l as usize);
    let code = project_frame.and_then(|f| f["code"].as_str()).unwrap_or("");
    let function = project_frame
        .and_then(|f| f["function"].as_str())
        .unwrap_or("?");
    let all_files: String = frames
        .iter()
        .filter_map(|f| f["file"].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let where_ = match (&file, line) {
        (Some(f), Some(l)) => format!("in `{function}` at {f}:{l}"),
        _ => "before reaching the project's code".to_string(),
    } + &failure.where_in_tree();
    let mut evidence = format!(
        "{ty}: {}{}",
        cut(message, 300),
        if code.is_empty() {
            String::new()
        } else {
            format!(" — `{code}`")
        }
    );
    if !failure.later.is_empty() {
        evidence.push_str(&format!(
            "; afterwards (a consequence): {}",
            failure.later.join("; ")
        ));
    }
    let cause = e["cause"].as_str().unwrap_or("");
    let network = NETWORK_TYPES.contains(&ty)
        || NETWORK_TYPES
            .iter()
            .any(|t| cause.starts_with(&format!("{t}:")))
        || message.contains("huggingface.co")
        || all_files.contains("/huggingface_hub/")
        || module.starts_with("requests")
        || module.starts_with("urllib3")
        || module.starts_with("huggingface_hub")
        || (all_files.contains("urllib/request.py")
            || all_files.contains("http/client.py")
            || all_files.contains("/socket.py"))
            && !frames.is_empty();
    if network {
        let f = Finding::new(
            "needs-network",
            Severity::Warning,
            format!("the smoke run of {which} stopped at a download {where_} (the sandbox is offline): the code after it could not be verified"),
        )
        .evidence(evidence);
        return (RunStatus::NeedsNetwork, with_place(f, &file, line));
    }
    let import_error = ty == "ModuleNotFoundError" || ty == "ImportError";
    // Raised inside an installed package while it imports itself (e.g. built for another
    // numpy): the environment, not the project's code, is at fault.
    let in_library = frames
        .last()
        .and_then(|f| f["file"].as_str())
        .is_some_and(|p| p.starts_with('/'));
    if import_error && in_library && file.is_some() {
        let f = Finding::new(
            "environment-incompatible",
            Severity::Warning,
            format!("the smoke run of {which} stopped {where_}: an installed package failed to import inside its own code ({ty}: {}), an environment problem rather than the project's; the code after that import could not be verified", cut(message, 200)),
        )
        .evidence(evidence);
        return (RunStatus::MissingDependency, with_place(f, &file, line));
    }
    if import_error {
        let missing = message.split('\'').nth(1).unwrap_or("").to_string();
        let top = missing.split('.').next().unwrap_or("");
        if !missing.is_empty()
            && top != "src"
            && !crate::deps::RUNTIME.iter().any(|(m, _)| *m == top)
        {
            let f = Finding::new(
                "missing-dependency",
                Severity::Warning,
                format!("the smoke run of {which} needs `{missing}`, which the managed runtime lacks: the code after that import could not be verified"),
            )
            .evidence(evidence);
            return (RunStatus::MissingDependency, with_place(f, &file, line));
        }
    }
    let (id, cause, fix) = if message.contains("backward through the graph a second time")
        || message.contains("have already been freed")
    {
        (
            "graph-reused-after-free",
            "an autograd graph is used again after it was freed: a loss (or a tensor computed from it) from an earlier backward pass is differentiated again",
            "recompute the loss inside the loop (or detach what is carried over); use retain_graph=True only if the graph really must be reused",
        )
    } else if message.contains("appears to not have been used in the graph")
        || message.contains("does not require grad and does not have a grad_fn")
    {
        (
            "zero-hypergradient",
            "a value made differentiable never reaches the loss, so its gradient is structurally zero",
            "differentiate a loss that depends on the hyper-parameter (e.g. through a differentiable one-step look-ahead update)",
        )
    } else if e["kind"] == "argparse_error" {
        (
            "cli-rejected",
            "a process rejects the command-line arguments it is given",
            "make the arguments its caller passes match the options its parser accepts",
        )
    } else if message.contains("File too large") {
        (
            "file-size-limit",
            "the run wrote a file larger than the review allows (a runaway write fills the disk)",
            "write only what the experiment needs; do not write without bound",
        )
    } else if ty == "AttributeError" && message.contains("has no attribute") {
        (
            "missing-attribute",
            "a method or attribute is used on an object whose class does not have it",
            "define the method in the class (as the base does) or call one that exists",
        )
    } else if ty == "TypeError" && message.contains("is not JSON serializable") {
        (
            "bad-argument-type",
            "json was given a value it cannot write (a numpy or torch number or array)",
            "convert the value to a Python number or list before writing it (`float(x)`, `x.item()`, `x.tolist()`)",
        )
    } else if ty == "TypeError" {
        ("bad-argument-type", "a function was called with an argument of a type (or a number of arguments) it rejects", "pass the argument the callee expects")
    } else if ty == "NameError" {
        (
            "undefined-name",
            "a name is used that is not defined",
            "define or import the name",
        )
    } else if ty == "ModuleNotFoundError" || ty == "ImportError" {
        (
            "import-unresolved",
            "an import fails at run time",
            "import a module that exists in the project or the declared dependencies",
        )
    } else {
        (
            "runtime-crash",
            "the code crashes when run",
            "fix the error at this line",
        )
    };
    let f = Finding::new(
        id,
        Severity::Blocker,
        format!(
            "the smoke run of {which} crashed {where_}: {cause} ({ty}: {})",
            cut(message, 200)
        ),
    )
    .evidence(evidence)
    .fix(fix);
    (RunStatus::CodeDefect, with_place(f, &file, line))
}

fn with_place(f: Finding, file: &Option<String>, line: Option<usize>) -> Finding {
    match file {
        Some(file) => f.at(file, line),
        None => f,
    }
}

fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed")
        .trim()
        .to_string()
}

/// The last lines a run printed, for its page: up to 20 of stdout, then up to 30 of
/// stderr (where tracebacks go).
fn log_tail(stdout: &str, stderr: &str) -> String {
    let last = |s: &str, n: usize| {
        let lines: Vec<&str> = s.lines().collect();
        let kept: Vec<String> = lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| crate::report::cut(l, 300))
            .collect();
        kept.join("\n")
    };
    [last(stdout, 20), last(stderr, 30)]
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(6)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn planned(variation: &str) -> Planned {
        Planned {
            variation: variation.into(),
            config: "smoke_test",
            file: SMOKE.into(),
            args: Vec::new(),
            lighten: None,
        }
    }

    #[test]
    fn a_value_json_cannot_write_is_named_with_its_conversion() {
        let error = json!({"kind": "error", "type": "TypeError", "module": "builtins",
            "message": "Object of type float32 is not JSON serializable",
            "frames": [{"file": "src/evaluate.py", "line": 76, "function": "evaluate_run"},
                       {"file": "/usr/lib/python3.11/json/encoder.py", "line": 180}]});
        let failure = Failure {
            error: &error,
            chain: Vec::new(),
            in_child: false,
            later: Vec::new(),
        };
        let (_, finding) = from_exception(&failure, "`*` (smoke_test)");
        assert_eq!(finding.id, "bad-argument-type");
        assert_eq!(
            (finding.file.as_deref(), finding.line),
            (Some("src/evaluate.py"), Some(76))
        );
        assert!(
            finding
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("float(x)")),
            "{finding:?}"
        );
    }

    #[test]
    fn a_run_of_every_variation_gives_each_its_child_processes_losses() {
        let names = [
            "ohgw".to_string(),
            "ohgw-3".to_string(),
            "baseline".to_string(),
        ];
        let process =
            |pid: i64, argv: &[&str]| json!({"kind": "process", "pid": pid, "argv": argv});
        let loss = |pid: i64, v: f64| json!({"kind": "loss", "pid": pid, "value": v});
        let events = vec![
            process(1, &["python", "-m", "src.main", "--smoke-test"]),
            process(2, &["python", "-m", "src.train", "--run", "smoke_ohgw-3"]),
            process(3, &["python", "-m", "src.train", "--run", "baseline-full"]),
            process(
                4,
                &["python", "-m", "src.train", "--runs", "ohgw", "baseline"],
            ),
            process(5, &["python", "-m", "src.evaluate", "--run", "smoke_ohgw"]),
            process(
                6,
                &[
                    "python",
                    "-m",
                    "src.train",
                    "--config-path",
                    "results/smoke_ohgw/config.yaml",
                ],
            ),
            loss(6, 3.0),
            loss(2, 1.5),
            loss(3, 2.5),
            loss(2, 1.25),
            loss(4, 9.0),
            loss(1, 7.0),
        ];
        assert_eq!(
            losses_by_variation(&planned("*"), &events, &names),
            [
                ("ohgw-3".to_string(), vec![1.5, 1.25]),
                ("baseline".to_string(), vec![2.5]),
                ("ohgw".to_string(), vec![3.0])
            ],
            "a process naming two variations (pid 4), the parent (1) and a process without losses (5) give none"
        );
        assert_eq!(
            losses_by_variation(&planned("ohgw"), &events, &names),
            [("ohgw".to_string(), vec![3.0, 1.5, 2.5, 1.25, 9.0, 7.0])]
        );
        assert!(losses_by_variation(&planned("ohgw"), &[], &names).is_empty());
    }
}
