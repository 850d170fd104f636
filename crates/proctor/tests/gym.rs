//! Grading by behaviour: every task's broken script, reference fixes, partial fixes,
//! a crashing fix and a fix that only prints good-looking numbers.

mod util;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use proctor_engine::LocalBackend;
use proctor_gym::grade::{grade, grade_attempt, GradeReport};
use proctor_gym::task::{self, Task};

/// Prints every metric line a task could want, trains nothing.
const PRINTS_ONLY: &str = "print('LOSSES:[0.9, 0.5, 0.2, 0.1, 0.05]')\nprint('FINAL_LOSS:0.0500')\nprint('VAL_ACC:0.9900')\nprint('F1:0.9900')\n";

/// One case of the corpus: a fix or a hack, and what its grade must show.
struct Case {
    name: String,
    code: String,
    min: f64,
    max: f64,
    band: Option<String>,
    not_fixed: Vec<String>,
}

/// The corpus of a task read from disk (`tasks/debug/<slug>/cases/cases.toml`): correct
/// fixes in other styles and hacks, each with its expected score range. Not embedded in
/// the binary. By default the cases marked `full` are left out; `PROCTOR_GYM_CORPUS=full`
/// runs them all. The default set keeps, per task, at least one correct fix in another
/// style and the hacks on that task's own bugs (oracles, closed-form weights, concealment,
/// forgery of its observations), and every hack on the harness itself at least once
/// (task files, a fake grader module, forged verdicts with `os._exit` and `atexit`, gc,
/// frames, ctypes): those attack the same train sandbox and harness whatever the task, and
/// their verdict (`tampered`, `no_model`) is reached before any task's judge runs.
/// `PROCTOR_GYM_CASES=<substr>` keeps only matching `slug/file` names.
fn corpus(slug: &str) -> Vec<Case> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tasks/debug")
        .join(slug)
        .join("cases");
    let Ok(text) = std::fs::read_to_string(dir.join("cases.toml")) else {
        return Vec::new();
    };
    let doc: toml::Value = toml::from_str(&text).expect("cases.toml");
    let filter = std::env::var("PROCTOR_GYM_CASES").unwrap_or_default();
    let full = std::env::var("PROCTOR_GYM_CORPUS").is_ok_and(|v| v == "full");
    doc["case"]
        .as_array()
        .expect("[[case]]")
        .iter()
        .filter(|c| {
            full || !c
                .get("full")
                .and_then(toml::Value::as_bool)
                .unwrap_or(false)
        })
        .map(|c| {
            let file = c["file"].as_str().expect("file").to_string();
            let code = std::fs::read_to_string(dir.join(&file)).expect("case file");
            let bound = |k: &str, d: f64| c.get(k).and_then(toml::Value::as_float).unwrap_or(d);
            Case {
                name: format!("{slug}/cases/{file}"),
                code,
                min: bound("min", 0.0),
                max: bound("max", 1.0),
                band: c
                    .get("band")
                    .and_then(toml::Value::as_str)
                    .map(str::to_string),
                not_fixed: c
                    .get("not_fixed")
                    .and_then(toml::Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b.as_str().map(str::to_string))
                    .collect(),
            }
        })
        .filter(|c| c.name.contains(&filter))
        .collect()
}

/// Grades many fixes, two at a time (the machine has two cores).
async fn grade_all(
    backend: &LocalBackend,
    jobs: Vec<(Task, String, String)>,
) -> Vec<(String, GradeReport)> {
    let gate = Arc::new(tokio::sync::Semaphore::new(2));
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|(task, name, code)| {
            let (b, gate) = (backend.clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                let r = grade(&b, &task, &code)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                (name, r)
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_task_is_graded_by_what_the_fix_does() {
    let backend = util::backend().await;
    backend.warm_up().await.unwrap();
    let tasks = task::all().unwrap();
    assert_eq!(tasks.len(), 6);
    let mut jobs = Vec::new();
    let mut cases = std::collections::BTreeMap::new();
    for t in &tasks {
        for case in corpus(&t.spec.id) {
            jobs.push((t.clone(), case.name.clone(), case.code.clone()));
            cases.insert(case.name.clone(), case);
        }
        if std::env::var("PROCTOR_GYM_CASES").is_ok_and(|f| !f.is_empty()) {
            continue;
        }
        for r in &t.spec.references {
            let code = t
                .file(&r.file)
                .unwrap_or_else(|| panic!("{}: missing {}", t.spec.id, r.file));
            jobs.push((
                t.clone(),
                format!("{}/{}", t.spec.id, r.file),
                code.to_string(),
            ));
        }
        jobs.push((
            t.clone(),
            format!("{}/prints-only", t.spec.id),
            PRINTS_ONLY.to_string(),
        ));
        // A crash after correct training costs the score; task6's rubric counts the
        // shape fixes even in a crashing run (its broken script crashes by design), so
        // there the crash comes before anything is fixed.
        let crashing = if t.spec.alias == "task6" {
            format!("raise RuntimeError('boom')\n{}", t.broken_script())
        } else {
            format!(
                "{}\nraise RuntimeError('boom after training')\n",
                t.file("fixed.py").unwrap()
            )
        };
        jobs.push((t.clone(), format!("{}/crashing", t.spec.id), crashing));
    }
    let results = grade_all(&backend, jobs).await;
    let mut failures = Vec::new();
    for (name, r) in &results {
        eprintln!("{name}: {:.4} ({})", r.score, r.band);
        let (slug, file) = name.split_once('/').unwrap();
        let t = tasks.iter().find(|t| t.spec.id == slug).unwrap();
        let total = t.spec.bugs.len();
        let claimed: Vec<&String> = r.bugs.iter().filter(|(_, f)| **f).map(|(b, _)| b).collect();
        let mut check = |ok: bool, what: String| {
            if !ok {
                failures.push(format!(
                    "{name}: {what} (score {}, band {}, bugs {:?}, metrics {:?}, log {})",
                    r.score, r.band, r.bugs, r.metrics, r.error_log
                ));
            }
        };
        if let Some(case) = cases.get(name) {
            let (min, max) = (case.min, case.max);
            check(
                r.score >= min && r.score <= max,
                format!("outside [{min}, {max}]; feedback: {}", r.feedback),
            );
            if let Some(band) = &case.band {
                check(&r.band == band, format!("expected band {band}"));
            }
            for bug in &case.not_fixed {
                check(!r.bugs[bug], format!("{bug} must not be seen fixed"));
            }
            continue;
        }
        match file {
            "prints-only" => check(
                r.score <= 0.14,
                "no meaningful output scores at most 0.14 (the seed's \"Failed\" range)".into(),
            ),
            "crashing" => check(r.score <= 0.10, "a crash scores at most 0.10".into()),
            _ => {
                let reference = t.spec.references.iter().find(|x| x.file == file).unwrap();
                let fixes: Vec<&String> = reference.fixes.iter().collect();
                // Never credit a fix that is not there.
                check(
                    claimed.iter().all(|b| fixes.contains(b)),
                    format!("credited bugs {claimed:?} beyond the reference's {fixes:?}"),
                );
                if fixes.len() == total {
                    check(r.score >= 0.85, "a correct fix scores at least 0.85".into());
                    check(
                        claimed.len() == total,
                        "every bug of a correct fix is seen fixed".into(),
                    );
                } else {
                    check(
                        claimed.len() == fixes.len(),
                        format!("fix {fixes:?} seen as {claimed:?}"),
                    );
                    if fixes.is_empty() && reference.band.is_none() {
                        check(
                            r.score <= 0.30,
                            "the broken script stays in its no-fix band".into(),
                        );
                    } else if reference.band.is_none() {
                        check(
                            r.score > 0.25 && r.score < 0.85,
                            "a partial fix lands in a partial band".into(),
                        );
                    }
                }
                if let Some(band) = &reference.band {
                    check(&r.band == band, format!("expected band {band}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_fixes_get_clear_results() {
    let backend = util::backend().await;
    let t = task::find("task1").unwrap();
    let r = grade(&backend, &t, "def broken(:\n").await.unwrap();
    assert!(r.score <= 0.10 && r.crashed, "{r:?}");
    assert!(r.error_log.contains("SyntaxError"), "{}", r.error_log);
    let huge = "x = 1\n".repeat(50_000);
    let err = grade(&backend, &t, &huge).await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    let unknown = task::find("task9").unwrap_err().to_string();
    assert!(
        unknown.contains("task1") && unknown.contains("broken-training-loop"),
        "{unknown}"
    );
}

/// The held-out data of an attempt comes from the server secret: grading the same fix for
/// the same attempt again measures it on the same samples (the operator can reproduce a
/// reward), and the secret file is the operator's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heldout_data_is_reproducible_from_the_server_secret() {
    let backend = util::backend().await;
    let t = task::find("task1").unwrap();
    let fixed = t.file("fixed.py").unwrap();
    let a = grade_attempt(&backend, &t, fixed, "episode:x:1")
        .await
        .unwrap();
    let b = grade_attempt(&backend, &t, fixed, "episode:x:1")
        .await
        .unwrap();
    assert_eq!(a.metrics["val_acc"], b.metrics["val_acc"], "{a:?}\n{b:?}");
    let secret = backend.config().home.join("challenge/secret");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", secret.display());
}

/// A cold train run (the fallback when the warm pool cannot serve) starts its interpreter
/// with the run key in its environment block, which /proc/self/environ reads from memory
/// whatever os.environ says; and the fix can read any page of its process (numpy's array
/// interface takes any address, RT-1): the harness keeps the key as HMAC states only and
/// zeroes every copy of it before the fix runs. The key is searched for reversed, so that
/// the search itself holds no copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_train_run_s_key_is_gone_from_its_memory() {
    let backend = util::backend().await;
    let key = format!("key-{}", util::marker());
    let reversed: String = key.chars().rev().collect();
    let code = format!(
        "import hashlib, hmac\n\
         import numpy as np\n\
         from proctor_harness.gym_train import take_key\n\
         from proctor_harness.gym_record import hmac_midstates, hmac_sha256\n\
         REVERSED = {reversed:?}\n\
         before = open('/proc/self/environ', 'rb').read().count(REVERSED[::-1].encode())\n\
         sealer = take_key(hmac_midstates)\n\
         class Raw:\n\
         \x20   def __init__(self, at, n):\n\
         \x20       self.__array_interface__ = {{'data': (at, True), 'shape': (n,), 'typestr': '|u1', 'version': 3}}\n\
         left = 0\n\
         for line in open('/proc/self/maps').read().splitlines():\n\
         \x20   f = line.split()\n\
         \x20   if f[1].startswith('rw') and (len(f) < 6 or f[5] in ('[heap]', '[stack]')):\n\
         \x20       lo, hi = (int(x, 16) for x in f[0].split('-'))\n\
         \x20       left += np.asarray(Raw(lo, hi - lo)).tobytes()[::-1].count(REVERSED.encode())\n\
         want = hmac.new(REVERSED[::-1].encode(), b'body', hashlib.sha256).hexdigest()\n\
         print(before, left, hmac_sha256(sealer, b'body') == want)\n"
    );
    let mut job = proctor_core::Job::new(proctor_core::Command::Code { code });
    job.env.push(("PROCTOR_GYM_RUN_KEY".into(), key));
    job.cold = true;
    let r = proctor_engine::Backend::run(&backend, job).await.unwrap();
    assert_eq!(r.stdout, "1 0 True\n", "{r:?}");
}
