//! Experiment-code review on realistic generated projects (`tasks/research/<project>`,
//! besides OHGW): `acls`, a Hydra pipeline whose `src.main` launches `src.train` and
//! `src.evaluate` as subprocesses per run (`run=<run_id> mode=trial`), run configurations
//! in `config/runs/` with prefixed ids, Hugging Face `datasets` loading, PEP 621
//! dependencies installed for the runs; `mixtext`, a `main.py` launching one `src.train`
//! child per configured run (`smoke_<variation>`, `<variation>-full`) with `check=False`
//! and then `src.evaluate`, on AG News; `cgtent`, the shape of a real generated repository
//! (per-run configs written by `main.py`, logs tee'd, a per-run `src.evaluate` grandchild,
//! CIFAR-10 images from the hub). The ready version has no blocker and runs on
//! stand-in data; each mutant is named by exactly its finding at its file (and line).

mod util;

use std::path::{Path, PathBuf};

use proctor_review::{Case, Review, ReviewOptions, RunStatus};

fn project(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tasks/research")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else if entry.file_name() != "mutant.toml" {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// The review case of `name`'s ready version with a mutant's files laid over it.
fn case(name: &str, mutant: Option<&str>) -> (Case, tempfile::TempDir) {
    let root = project(name);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root.join("ready"), dir.path());
    if let Some(m) = mutant {
        copy_dir(&root.join("mutants").join(m), dir.path());
    }
    let variations: Vec<String> = std::fs::read_to_string(root.join("variations.txt"))
        .unwrap()
        .trim()
        .split(',')
        .map(str::to_string)
        .collect();
    let method = root.join("method.md");
    let case = Case::from_dirs(&root.join("base"), dir.path(), &variations, Some(&method));
    (case.unwrap(), dir)
}

struct Mutant {
    name: String,
    id: String,
    file: String,
    line: Option<usize>,
    static_only: bool,
    /// Further files the same finding is expected at (one blocker each).
    also_files: Vec<String>,
}

fn mutants(name: &str) -> Vec<Mutant> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(project(name).join("mutants")).unwrap() {
        let entry = entry.unwrap();
        let meta: toml::Table = std::fs::read_to_string(entry.path().join("mutant.toml"))
            .unwrap()
            .parse()
            .unwrap();
        out.push(Mutant {
            name: entry.file_name().to_string_lossy().into_owned(),
            id: meta["expect_id"].as_str().unwrap().into(),
            file: meta["expect_file"].as_str().unwrap().into(),
            line: meta
                .get("expect_line")
                .and_then(|l| l.as_integer())
                .map(|l| l as usize),
            static_only: meta.get("static").and_then(|s| s.as_bool()) == Some(true),
            also_files: meta
                .get("also_expect_files")
                .and_then(|f| f.as_array())
                .map(|f| {
                    f.iter()
                        .filter_map(|x| x.as_str())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn summary(review: &Review) -> String {
    serde_json::to_string_pretty(review).unwrap()
}

/// The ready version of project `name` has no blocker, and runs `runs` smoke runs, all
/// fine and all on stand-in data (its Hugging Face dataset is served offline); each mutant
/// has exactly its expected blocker at its expected file (and line), and at the files of
/// `also_expect_files` when the same defect shows in several configs.
async fn ready_and_each_mutant_named_exactly(name: &str, runs: usize) {
    let backend = util::backend().await;
    backend.warm_up().await.unwrap();
    let mut options = ReviewOptions::for_backend(&backend);
    // Several processes per run, each importing torch (and datasets) on a loaded CI machine.
    options.smoke.limits.timeout_ms = 240_000;
    let (ready, _dir) = case(name, None);
    let review = proctor_review::review(&backend, &ready, &options).await;
    assert!(review.is_experiment_code_ready, "{}", summary(&review));
    assert_eq!(review.runs.len(), runs, "{}", summary(&review));
    for run in &review.runs {
        assert_eq!(run.status, RunStatus::Ok, "{}", summary(&review));
        assert_eq!(run.data, "stand-in", "the dataset is served offline");
    }
    let mut failures = Vec::new();
    for m in mutants(name) {
        let (case, _dir) = case(name, Some(&m.name));
        let mut options = options.clone();
        options.run = !m.static_only;
        let review = proctor_review::review(&backend, &case, &options).await;
        let blockers: Vec<_> = review.blockers().collect();
        let mut expected_files: Vec<&str> = m.also_files.iter().map(String::as_str).collect();
        expected_files.push(&m.file);
        expected_files.sort();
        let mut files: Vec<&str> = blockers.iter().filter_map(|b| b.file.as_deref()).collect();
        files.sort();
        let named = files == expected_files
            && blockers.len() == expected_files.len()
            && blockers.iter().all(|b| b.id == m.id)
            && blockers.iter().any(|b| {
                b.file.as_deref() == Some(m.file.as_str()) && (m.line.is_none() || b.line == m.line)
            });
        eprintln!(
            "{name}/{}: expected {} at {}:{:?}: {named}",
            m.name, m.id, m.file, m.line
        );
        if !named {
            failures.push(format!("{}: {}", m.name, summary(&review)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A Hydra pipeline whose `src.main` launches `src.train` and `src.evaluate` per run
/// (`run=<run_id> mode=trial`), run ids in `config/runs/`, SST-2 from the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hydra_subprocess_project_is_ready_and_each_mutant_is_named_exactly() {
    ready_and_each_mutant_named_exactly("acls", 2).await;
}

/// A `main.py` that launches `src.train` once per configured run (`check=False`), then
/// `src.evaluate`; YAML configs naming the runs `smoke_<variation>` and
/// `<variation>-full`; AG News from the hub; PEP 621 dependencies. Two smoke runs (the
/// smoke and the lightened full config), each running every variation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_main_launches_children_project_is_ready_and_each_mutant_is_named_exactly() {
    ready_and_each_mutant_named_exactly("mixtext", 2).await;
}

/// The shape of a real generated repository: `main.py` writes each run's configuration to
/// `results/<run_id>/config.yaml` and launches `src.train --config-path …` with its logs
/// tee'd (raising "Run X failed" on a non-zero exit); `src.train` launches `src.evaluate
/// --run-dir` for its metrics with `check=False`; `src.evaluate --results-dir` aggregates
/// (pandas, seaborn). CIFAR-10 from the hub (`uoft-cs/cifar10`, image column), runs named
/// `smoke_<variation>` with `_` for `-` and `<variation>-full`. The grandchild mutant's
/// crash is named in `src/evaluate.py`, not in the wrappers that fail after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_generated_repository_shape_is_ready_and_each_mutant_is_named_exactly() {
    ready_and_each_mutant_named_exactly("cgtent", 2).await;
}
