//! Experiment-code review on the OHGW fixtures (`tasks/research/ohgw`): the ready
//! derivation is ready, every mutant is not (with the expected finding in the right
//! file), the base template is not, and hostile projects are contained.

mod util;

use std::path::{Path, PathBuf};

use proctor_engine::LocalBackend;
use proctor_review::{Case, Review, ReviewOptions, RunStatus, Severity};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks/research/ohgw")
}

fn variations() -> Vec<String> {
    std::fs::read_to_string(fixtures().join("variations.txt"))
        .unwrap()
        .trim()
        .split(',')
        .map(str::to_string)
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// The ready derivation with a mutant's files laid over it.
fn derived(mutant: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("ready"), dir.path());
    if let Some(m) = mutant {
        copy_dir(&fixtures().join("mutants").join(m), dir.path());
        std::fs::remove_file(dir.path().join("mutant.toml")).unwrap();
    }
    dir
}

fn case_of(derived: &Path) -> Case {
    let method = fixtures().join("method.md");
    Case::from_dirs(
        &fixtures().join("base"),
        derived,
        &variations(),
        Some(&method),
    )
    .unwrap()
}

async fn backend() -> LocalBackend {
    let backend = util::backend().await;
    backend.warm_up().await.unwrap();
    backend
}

fn summary(review: &Review) -> String {
    serde_json::to_string_pretty(review).unwrap()
}

fn mutants() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixtures().join("mutants")).unwrap() {
        let entry = entry.unwrap();
        let meta = std::fs::read_to_string(entry.path().join("mutant.toml")).unwrap();
        let get = |key: &str| {
            meta.lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = ")))
                .unwrap()
                .trim_matches('"')
                .to_string()
        };
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            get("expect_id"),
            get("expect_file"),
        ));
    }
    out.sort();
    out
}

#[test]
fn static_pass_of_the_ready_derivation_has_no_blockers() {
    let dir = derived(None);
    let case = case_of(dir.path());
    let start = std::time::Instant::now();
    let review = proctor_review::review_static(&case, &proctor_review::Budget::unlimited());
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    eprintln!("review_static_ms={ms:.1}");
    assert!(review.is_experiment_code_ready, "{}", summary(&review));
    assert!(review.experiment_code_issue.is_empty());
    // The method text names PASHA and DyHPO as alternatives; exp-1 uses ASHA only, so the
    // reviewer may say it cannot find them, and nothing else.
    for f in review
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
    {
        assert!(
            f.id == "method-component-missing"
                && (f.message.contains("PASHA") || f.message.contains("DyHPO")),
            "unexpected warning on the ready code: {}",
            summary(&review)
        );
    }
}

#[test]
fn the_base_template_is_not_ready() {
    let base = fixtures().join("base");
    let case = case_of(&base);
    let review = proctor_review::review_static(&case, &proctor_review::Budget::unlimited());
    assert!(!review.is_experiment_code_ready);
    for file in [
        "src/preprocess.py",
        "src/model.py",
        "config/smoke_test.yaml",
    ] {
        assert!(
            review
                .blockers()
                .any(|f| f.id == "placeholder" && f.file.as_deref() == Some(file)),
            "placeholder in {file}: {}",
            summary(&review)
        );
    }
    assert!(review
        .blockers()
        .any(|f| f.id == "missing-variation-in-smoke-config"));
    assert!(review.experiment_code_issue.starts_with("1. "));
}

#[test]
fn static_mutants_are_found_statically() {
    for (name, id, file) in mutants() {
        let dynamic_only = [
            "variation-not-implemented",
            "runtime-crash",
            "zero-hypergradient",
            "graph-reused-after-free",
            "cli-rejected",
        ];
        if dynamic_only.contains(&id.as_str()) {
            continue;
        }
        let dir = derived(Some(&name));
        let review = proctor_review::review_static(
            &case_of(dir.path()),
            &proctor_review::Budget::unlimited(),
        );
        assert!(!review.is_experiment_code_ready, "{name}");
        assert!(
            review
                .blockers()
                .any(|f| f.id == id && f.file.as_deref() == Some(file.as_str())),
            "{name}: expected {id} in {file}: {}",
            summary(&review)
        );
    }
}

#[test]
fn hostile_inputs_get_findings_not_panics() {
    let dir = derived(None);
    let src = dir.path().join("src");
    std::fs::write(src.join("train.py"), "def broken(:\n    return 1\n").unwrap();
    std::fs::write(src.join("evaluate.py"), "").unwrap();
    std::fs::write(
        src.join("model.py"),
        [0u8, 159, 146, 150, 255, 0, 1, 2].repeat(1000),
    )
    .unwrap();
    std::fs::write(src.join("preprocess.py"), "\n".repeat(5 << 20)).unwrap();
    std::fs::write(dir.path().join("pyproject.toml"), "[project\nname = ").unwrap();
    std::fs::write(
        dir.path().join("config/full_experiment.yaml"),
        "- just\n- a list\n",
    )
    .unwrap();
    let review =
        proctor_review::review_static(&case_of(dir.path()), &proctor_review::Budget::unlimited());
    let has = |id: &str, file: &str| {
        review
            .blockers()
            .any(|f| f.id == id && f.file.as_deref() == Some(file))
    };
    assert!(has("syntax-error", "src/train.py"), "{}", summary(&review));
    assert!(has("empty-file", "src/evaluate.py"), "{}", summary(&review));
    assert!(has("binary-file", "src/model.py"), "{}", summary(&review));
    assert!(
        has("bloated-file", "src/preprocess.py"),
        "{}",
        summary(&review)
    );
    assert!(
        has("pyproject-parse-error", "pyproject.toml"),
        "{}",
        summary(&review)
    );
    assert!(
        has("config-not-mapping", "config/full_experiment.yaml"),
        "{}",
        summary(&review)
    );
}

#[test]
fn bad_json_inputs_get_clear_errors() {
    let err = Case::from_json_str(r#"{"experiment": {"run_variations": ["a"]}}"#).unwrap_err();
    assert!(err.to_string().contains("missing key `base_code`"), "{err}");
    let err = Case::from_json_str("[1, 2]").unwrap_err();
    assert_eq!(err.to_string(), "the input must be a JSON object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ready_derivation_is_ready_and_runs_on_stand_ins() {
    let backend = backend().await;
    let dir = derived(None);
    let case = case_of(dir.path());
    let start = std::time::Instant::now();
    let review =
        proctor_review::review(&backend, &case, &ReviewOptions::for_backend(&backend)).await;
    eprintln!("review_full_s={:.2}", start.elapsed().as_secs_f64());
    for run in &review.runs {
        eprintln!(
            "{} {} {:?} {} ms",
            run.variation, run.config, run.status, run.wall_ms
        );
    }
    assert!(review.is_experiment_code_ready, "{}", summary(&review));
    assert_eq!(review.runs.len(), 8, "4 variations x 2 configs");
    assert!(
        review
            .runs
            .iter()
            .all(|r| r.status == RunStatus::Ok && r.data == "stand-in"),
        "{}",
        summary(&review)
    );
    assert!(review.findings.iter().any(|f| f.id == "stand-in-data"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_mutant_is_not_ready_with_the_expected_finding() {
    let backend = backend().await;
    let mut options = ReviewOptions::for_backend(&backend);
    options.smoke.full_config = false;
    let mut failures = Vec::new();
    for (name, id, file) in mutants() {
        let dir = derived(Some(&name));
        let review = proctor_review::review(&backend, &case_of(dir.path()), &options).await;
        let found = review
            .blockers()
            .any(|f| f.id == id && f.file.as_deref() == Some(file.as_str()));
        eprintln!(
            "{name}: ready={} expected {id} in {file}: {found}",
            review.is_experiment_code_ready
        );
        if review.is_experiment_code_ready || !found {
            failures.push(format!("{name}: {}", summary(&review)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_projects_are_contained_and_reported() {
    let backend = backend().await;
    let dir = derived(None);
    // One behaviour per variation: loop forever, fork without bound, fill a file, crash.
    std::fs::write(
        dir.path().join("src/main.py"),
        r#"
import argparse, os, time
p = argparse.ArgumentParser()
p.add_argument("--smoke-test", action="store_true")
p.add_argument("--full-experiment", action="store_true")
p.add_argument("--results-dir")
p.add_argument("--variation")
a = p.parse_args()
if a.variation == "asha-baseline":
    while True:
        pass
elif a.variation == "asha-random-warm":
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
elif a.variation == "asha-ohgw-1step":
    with open("fill.bin", "wb") as f:
        while True:
            f.write(b"x" * (1 << 20))
else:
    raise RuntimeError("boom")
"#,
    )
    .unwrap();
    let mut options = ReviewOptions::for_backend(&backend);
    options.smoke.full_config = false;
    options.smoke.limits.timeout_ms = 8_000;
    options.smoke.max_file_mb = 32;
    let review = proctor_review::review(&backend, &case_of(dir.path()), &options).await;
    let status = |v: &str| {
        review
            .runs
            .iter()
            .find(|r| r.variation == v)
            .map(|r| r.status)
    };
    assert_eq!(
        status("asha-baseline"),
        Some(RunStatus::Timeout),
        "{}",
        summary(&review)
    );
    assert!(
        matches!(
            status("asha-random-warm"),
            Some(RunStatus::Timeout | RunStatus::CodeDefect)
        ),
        "{}",
        summary(&review)
    );
    assert_eq!(
        status("asha-ohgw-1step"),
        Some(RunStatus::CodeDefect),
        "{}",
        summary(&review)
    );
    assert_eq!(
        status("asha-ohgw-3step"),
        Some(RunStatus::CodeDefect),
        "{}",
        summary(&review)
    );
    assert!(!review.is_experiment_code_ready);
    assert!(review.blockers().any(|f| f.id == "smoke-run-timeout"));
    assert!(
        review.blockers().any(|f| f.id == "file-size-limit"),
        "{}",
        summary(&review)
    );
    assert!(
        review.blockers().any(|f| f.id == "runtime-crash"
            && f.file.as_deref() == Some("src/main.py")
            && f.line == Some(23)),
        "{}",
        summary(&review)
    );
}

/// A project whose entry point starts `src.runner`, which starts `src.train`, both with
/// `check=False`; the training crashes on a missing key at src/train.py:5.
fn grandchild_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let files = [
        ("__init__.py", ""),
        (
            "main.py",
            r#"import argparse, os, subprocess, sys
p = argparse.ArgumentParser()
p.add_argument("--smoke-test", action="store_true")
p.add_argument("--results-dir")
p.add_argument("--variation")
a = p.parse_args()
subprocess.run([sys.executable, "-m", "src.runner", a.variation], check=False)
if a.variation != "quiet" and not os.path.exists(os.path.join(a.results_dir, "metrics.json")):
    raise RuntimeError(f"Run {a.variation} failed with exit code 1")
"#,
        ),
        (
            "runner.py",
            "import subprocess, sys\nsubprocess.run([sys.executable, \"-m\", \"src.train\", \"--variation\", sys.argv[1]], check=False)\n",
        ),
        (
            "train.py",
            r#"import argparse

def settings(name):
    table = {"baseline": {"lr": 0.1}}
    return table[name]

p = argparse.ArgumentParser()
p.add_argument("--variation")
settings(p.parse_args().variation)
"#,
        ),
    ];
    for (name, text) in files {
        std::fs::write(src.join(name), text).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grandchild_crash_is_named_not_the_parent_that_wrapped_it() {
    let backend = backend().await;
    let dir = grandchild_project();
    let names = ["loud".to_string(), "quiet".to_string()];
    let case = Case::from_dirs(dir.path(), dir.path(), &names, None).unwrap();
    let mut options = ReviewOptions::for_backend(&backend);
    options.smoke.limits.timeout_ms = 120_000;
    let review = proctor_review::review(&backend, &case, &options).await;
    for variation in &names {
        let run = review.runs.iter().find(|r| &r.variation == variation);
        assert_eq!(
            run.map(|r| r.status),
            Some(RunStatus::CodeDefect),
            "{variation}: {}",
            summary(&review)
        );
    }
    let crash: Vec<_> = review
        .blockers()
        .filter(|f| f.file.as_deref() == Some("src/train.py"))
        .collect();
    assert_eq!(crash.len(), 1, "{}", summary(&review));
    let crash = crash[0];
    assert_eq!(crash.line, Some(5), "{}", summary(&review));
    assert!(crash.message.contains("KeyError"), "{}", crash.message);
    assert!(
        crash.message.contains("python -m src.train --variation")
            && crash.message.contains("started by `python -m src.runner"),
        "{}",
        crash.message
    );
    assert!(
        !review
            .blockers()
            .any(|f| f.file.as_deref() == Some("src/main.py") && f.id != "missing-file"),
        "the wrapper must not be blamed: {}",
        summary(&review)
    );
}

/// A project that declares `extra` beside torch and uses `einops` (not in the runtime).
fn project_with_dependencies(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let pyproject = format!(
        "[project]\nname = \"deps-demo\"\nversion = \"0.1.0\"\ndependencies = [\n    \"torch>=2.2\",\n    \"einops>=0.7\",\n    {extra}\n]\n"
    );
    std::fs::write(dir.path().join("pyproject.toml"), pyproject).unwrap();
    std::fs::write(src.join("__init__.py"), "").unwrap();
    std::fs::write(
        src.join("main.py"),
        r#"import argparse, json, os
import torch
from einops import rearrange
p = argparse.ArgumentParser()
p.add_argument("--smoke-test", action="store_true")
p.add_argument("--results-dir")
p.add_argument("--variation")
a = p.parse_args()
x = rearrange(torch.arange(6.0), "(h w) -> h w", h=2)
os.makedirs(a.results_dir, exist_ok=True)
json.dump({"sum": float(x.sum())}, open(os.path.join(a.results_dir, "metrics.json"), "w"))
"#,
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declared_dependencies_are_installed_and_an_unknown_one_is_one_finding() {
    let backend = backend().await;
    let names = ["only".to_string()];
    let options = ReviewOptions::for_backend(&backend);
    // Installed from the index (wheels only) and seen by the run after the runtime.
    let good = project_with_dependencies("\"pyyaml>=6\",");
    let case = Case::from_dirs(good.path(), good.path(), &names, None).unwrap();
    let review = proctor_review::review(&backend, &case, &options).await;
    assert_eq!(review.runs.len(), 1, "{}", summary(&review));
    assert_eq!(review.runs[0].status, RunStatus::Ok, "{}", summary(&review));
    assert!(
        !review.findings.iter().any(|f| f.id.contains("dependency")),
        "einops is declared and installed: {}",
        summary(&review)
    );
    // A name no index has: one finding at its pyproject line; no code blamed, no run.
    let bad = project_with_dependencies("\"proctor-no-such-package-q7>=1.0\",");
    std::fs::write(
        bad.path().join("src/model.py"),
        "import proctor_no_such_package_q7\n",
    )
    .unwrap();
    let case = Case::from_dirs(bad.path(), bad.path(), &names, None).unwrap();
    let review = proctor_review::review(&backend, &case, &options).await;
    let about: Vec<_> = review
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Info && f.message.contains("no-such-package"))
        .collect();
    assert_eq!(about.len(), 1, "{}", summary(&review));
    assert_eq!(about[0].id, "dependency-unresolvable");
    assert_eq!(about[0].file.as_deref(), Some("pyproject.toml"));
    assert_eq!(about[0].line, Some(7), "{}", summary(&review));
    assert!(
        !review.findings.iter().any(|f| f.severity != Severity::Info
            && f.id != "missing-file"
            && f.file.as_deref().is_some_and(|p| p.starts_with("src/"))),
        "no code is blamed for the missing package: {}",
        summary(&review)
    );
    assert!(review.runs.is_empty() && !review.is_experiment_code_ready);
}

/// A project that tokenizes with `AutoTokenizer` / `BertTokenizer.from_pretrained` of
/// well-known names, T5's included (offline in the sandbox): each is a stand-in with the real vocabulary
/// size whose ids fit the model, the run passes and says its data was a stand-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn well_known_tokenizers_are_served_offline() {
    let backend = backend().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        dir.path().join("pyproject.toml"),
        "[project]\nname = \"tok-demo\"\nversion = \"0.1.0\"\ndependencies = [\"torch>=2.2\", \"transformers>=4.40\"]\n",
    )
    .unwrap();
    std::fs::write(src.join("__init__.py"), "").unwrap();
    std::fs::write(
        src.join("main.py"),
        r#"import argparse, json, os
import torch
from transformers import AutoTokenizer, BertTokenizer, T5TokenizerFast
p = argparse.ArgumentParser()
p.add_argument("--smoke-test", action="store_true")
p.add_argument("--results-dir")
p.add_argument("--variation")
a = p.parse_args()
sizes = {}
for name, size in [("bert-base-uncased", 30522), ("gpt2", 50257), ("roberta-base", 50265),
                   ("t5-small", 32100)]:
    tok = AutoTokenizer.from_pretrained(name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    batch = tok(["The model learns, QUICKLY! 42", "x"], padding=True, truncation=True,
                max_length=16, return_tensors="pt")
    assert len(tok) == size, (name, len(tok))
    assert batch["input_ids"].shape[0] == 2 and int(batch["input_ids"].max()) < size, name
    embed = torch.nn.Embedding(size, 4)
    loss = embed(batch["input_ids"]).float().pow(2).mean()
    loss.backward()
    sizes[name] = len(tok)
slow = BertTokenizer.from_pretrained("bert-base-uncased")
assert slow.convert_tokens_to_ids("[CLS]") == 101 and slow.cls_token_id == 101
# T5: the SentencePiece-free stand-in also when the slow tokenizer is asked for.
for t5 in (T5TokenizerFast.from_pretrained("google-t5/t5-small"),
           AutoTokenizer.from_pretrained("t5-small", use_fast=False)):
    ids = t5("summarize: the model learns").input_ids
    assert ids[-1] == t5.eos_token_id == 1 and t5.pad_token_id == 0, ids
    assert t5.convert_tokens_to_ids("<extra_id_0>") == 32099, t5
    assert t5.decode(ids, skip_special_tokens=True) == "summarize: the model learns"
os.makedirs(a.results_dir, exist_ok=True)
json.dump(sizes, open(os.path.join(a.results_dir, "metrics.json"), "w"))
"#,
    )
    .unwrap();
    let names = ["only".to_string()];
    let case = Case::from_dirs(dir.path(), dir.path(), &names, None).unwrap();
    let mut options = ReviewOptions::for_backend(&backend);
    options.smoke.limits.timeout_ms = 240_000;
    let review = proctor_review::review(&backend, &case, &options).await;
    assert_eq!(review.runs.len(), 1, "{}", summary(&review));
    assert_eq!(review.runs[0].status, RunStatus::Ok, "{}", summary(&review));
    assert_eq!(review.runs[0].data, "stand-in", "{}", summary(&review));
    assert!(review.is_experiment_code_ready, "{}", summary(&review));
}
