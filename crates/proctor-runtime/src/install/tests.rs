//! Install tests with fake `python` and `uv` shell scripts: fast, offline,
//! and without touching the process environment.

use super::*;
use crate::find;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use tempfile::TempDir;

const SYNC_OK: &str = r#"echo "Resolved 45 packages in 1ms" >&2
echo "Installed 45 packages in 1ms" >&2
exit 0"#;

const SYNC_FAIL: &str = r#"i=1
while [ $i -le 30 ]; do echo "line $i" >&2; i=$((i+1)); done
echo "error: network unreachable" >&2
exit 2"#;

/// The venv python the fake uv creates: answers the prefix check with its
/// own venv directory and the verify check with torch and python versions.
const VENV_PYTHON_OK: &str = r#"case "$*" in
  *prefix*) cd "$(dirname "$0")/.." && pwd ;;
  *) echo 2.4.1+fake; echo 3.11.99 ;;
esac"#;

fn write_script(path: &Path, body: &str) {
    // A fresh inode each time: the mode applies, and no running copy is
    // rewritten in place.
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)
        .unwrap();
    writeln!(file, "#!/bin/sh\n{body}").unwrap();
}

fn fake_uv_body(log: &Path, sync: &str, venv_python: &str) -> String {
    format!(
        r#"echo "$*" >> '{log}'
case "$1" in
  --version) echo "uv 0.13.9 (fake)"; exit 0 ;;
  venv)
    for a in "$@"; do dir="$a"; done
    mkdir -p "$dir/bin" || exit 1
    cat > "$dir/bin/python" <<'PYEOF'
#!/bin/sh
{venv_python}
PYEOF
    chmod +x "$dir/bin/python"
    echo "Creating virtual environment at: $dir" >&2
    exit 0 ;;
  pip)
{sync}
    ;;
esac
echo "fake uv: unexpected $*" >&2
exit 64"#,
        log = log.display()
    )
}

struct Fixture {
    _dir: TempDir,
    bin: PathBuf,
    home: PathBuf,
    log: PathBuf,
    cfg: Config,
}

impl Fixture {
    /// A PATH with a fake `python3.11` (3.11.99) and a fake `uv`.
    fn new(sync: &str, venv_python: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        let log = dir.path().join("uv.log");
        write_script(&bin.join("python3.11"), "echo 3.11.99");
        write_script(&bin.join("uv"), &fake_uv_body(&log, sync, venv_python));
        let home = dir.path().join("home");
        let cfg = Config {
            python: None,
            uv: None,
            path: Some(bin.clone().into_os_string()),
        };
        Fixture {
            _dir: dir,
            bin,
            home,
            log,
            cfg,
        }
    }

    fn ok() -> Self {
        Self::new(SYNC_OK, VENV_PYTHON_OK)
    }

    fn opts(&self) -> EnsureOptions {
        EnsureOptions {
            home: self.home.clone(),
            quiet: true,
        }
    }

    fn ensure(&self) -> Result<Runtime, RuntimeError> {
        ensure_with(&self.opts(), &self.cfg)
    }

    fn uv_calls(&self, sub: &str) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(sub))
            .count()
    }

    fn runtimes_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(runtimes_dir(&self.home))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// `f()` until it returns `Some`, for up to 5 s.
fn retry<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn install_step() -> String {
    format!("installing {} packages", lock::package_count(LOCK))
}

#[test]
fn installs_then_is_a_noop() {
    let fx = Fixture::ok();
    let rt = fx.ensure().expect("install with fakes");
    let root = runtimes_dir(&fx.home).join(runtime_id());
    assert_eq!(rt.id, runtime_id());
    assert_eq!(rt.root, root);
    assert_eq!(rt.python, root.join("bin/python"));
    assert_eq!(rt.torch_version, "2.4.1+fake");
    assert_eq!(rt.python_version, "3.11.99");
    assert_eq!(
        fs::read_to_string(root.join("requirements.lock")).unwrap(),
        LOCK
    );
    let marker: Marker =
        serde_json::from_str(&fs::read_to_string(root.join(MARKER_FILE)).unwrap()).unwrap();
    assert_eq!(marker.id, runtime_id());
    assert_eq!(marker.lock_sha256, lock_sha256());
    assert_eq!(marker.uv_version, "0.13.9");
    assert_eq!(marker.packages, lock::package_count(LOCK));
    assert!(marker.created > 1_600_000_000);
    assert_eq!(
        fx.runtimes_entries(),
        vec![".lock".to_owned(), runtime_id().to_owned()]
    );

    // The venv and sync commands got the flags that matter.
    let log = fs::read_to_string(&fx.log).unwrap();
    assert!(
        log.contains("venv --no-project --relocatable --python"),
        "{log}"
    );
    assert!(log.contains("pip sync --require-hashes"), "{log}");

    // Present now: find and ensure return it without running anything.
    assert_eq!(find(&fx.home).as_ref(), Some(&rt));
    let started = Instant::now();
    let again = fx.ensure().unwrap();
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(again, rt);
    assert_eq!(fx.uv_calls("venv"), 1);
    assert_eq!(fx.uv_calls("--version"), 1);
}

#[test]
fn failing_install_leaves_nothing_and_names_the_step() {
    let fx = Fixture::new(SYNC_FAIL, VENV_PYTHON_OK);
    let err = fx.ensure().expect_err("sync fails");
    let RuntimeError::Step {
        step, stderr_tail, ..
    } = &err
    else {
        panic!("expected a step error, got {err:?}");
    };
    assert_eq!(step, &install_step());
    assert_eq!(stderr_tail.len(), TAIL_LINES);
    assert_eq!(stderr_tail.last().unwrap(), "error: network unreachable");
    assert_eq!(stderr_tail.first().unwrap(), "line 12");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{} failed: uv pip sync exited with status 2",
            install_step()
        )),
        "{msg}"
    );
    assert!(msg.contains("\n  error: network unreachable"), "{msg}");
    assert!(!msg.contains("line 5\n"), "{msg}");
    // No final dir, no temp dir: only the lock file.
    assert_eq!(fx.runtimes_entries(), vec![".lock".to_owned()]);
    assert!(find(&fx.home).is_none());
}

#[test]
fn failing_uv_script_names_resolving_uv() {
    let fx = Fixture::ok();
    let bad = fx.bin.join("bad-uv");
    write_script(&bad, "echo 'uv: boom' >&2\nexit 1");
    let cfg = Config {
        uv: Some(bad.into_os_string()),
        ..fx.cfg.clone()
    };
    let err = ensure_with(&fx.opts(), &cfg).expect_err("uv fails");
    let msg = err.to_string();
    assert!(msg.starts_with("resolving uv failed: "), "{msg}");
    assert!(msg.contains("uv: boom"), "{msg}");
    assert_eq!(fx.runtimes_entries(), vec![".lock".to_owned()]);
}

#[test]
fn uv_failing_at_venv_names_creating_venv() {
    let fx = Fixture::ok();
    let bad = fx.bin.join("venv-fails-uv");
    write_script(
        &bad,
        "case \"$1\" in --version) echo 'uv 0.13.9'; exit 0;; esac\n\
         echo 'error: cannot create venv' >&2\nexit 2",
    );
    let cfg = Config {
        uv: Some(bad.into_os_string()),
        ..fx.cfg.clone()
    };
    let err = ensure_with(&fx.opts(), &cfg).expect_err("venv fails");
    let msg = err.to_string();
    assert!(
        msg.starts_with("creating venv failed: uv venv exited with status 2"),
        "{msg}"
    );
    assert!(msg.contains("error: cannot create venv"), "{msg}");
    assert_eq!(fx.runtimes_entries(), vec![".lock".to_owned()]);
}

#[test]
fn missing_uv_override_is_reported() {
    let fx = Fixture::ok();
    let cfg = Config {
        uv: Some("/nonexistent/proctor-test/uv".into()),
        ..fx.cfg.clone()
    };
    let msg = ensure_with(&fx.opts(), &cfg).unwrap_err().to_string();
    assert!(
        msg.starts_with("resolving uv failed: PROCTOR_UV is set to /nonexistent/proctor-test/uv"),
        "{msg}"
    );
    assert!(find(&fx.home).is_none());
}

#[test]
fn failing_verify_names_verifying() {
    let fx = Fixture::new(
        SYNC_OK,
        "echo 'Traceback (most recent call last):' >&2\n\
         echo \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1",
    );
    let msg = fx.ensure().unwrap_err().to_string();
    assert!(
        msg.starts_with("verifying failed: importing torch"),
        "{msg}"
    );
    assert!(msg.contains("No module named 'torch'"), "{msg}");
    assert_eq!(fx.runtimes_entries(), vec![".lock".to_owned()]);
}

#[test]
fn wrong_torch_version_fails_verify() {
    let fx = Fixture::new(SYNC_OK, "echo 1.13.0; echo 3.11.99");
    let msg = fx.ensure().unwrap_err().to_string();
    assert!(
        msg.starts_with("verifying failed: torch reports version \"1.13.0\""),
        "{msg}"
    );
    assert!(find(&fx.home).is_none());
}

#[test]
fn non_relocatable_venv_is_discarded() {
    // A venv whose python reports some other prefix after the move.
    let fx = Fixture::new(
        SYNC_OK,
        "case \"$*\" in *prefix*) echo /;; *) echo 2.4.1; echo 3.11.99;; esac",
    );
    let msg = fx.ensure().unwrap_err().to_string();
    assert!(msg.starts_with("finalizing failed: "), "{msg}");
    assert!(msg.contains("not relocatable"), "{msg}");
    assert_eq!(fx.runtimes_entries(), vec![".lock".to_owned()]);
}

#[test]
fn missing_python_override_is_reported() {
    let fx = Fixture::ok();
    let cfg = Config {
        python: Some("/nonexistent/proctor-test/python3.11".into()),
        ..fx.cfg.clone()
    };
    let err = ensure_with(&fx.opts(), &cfg).unwrap_err();
    assert!(
        matches!(err, RuntimeError::BadPythonOverride { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("PROCTOR_PYTHON is set to /nonexistent/proctor-test/python3.11 but"),
        "{msg}"
    );
    assert!(msg.contains("python 3.11 executable"), "{msg}");
    assert_eq!(fx.uv_calls("venv"), 0);
    assert!(find(&fx.home).is_none());
}

#[test]
fn python_override_of_wrong_version_is_reported() {
    let fx = Fixture::ok();
    let py = fx.bin.join("py312");
    write_script(&py, "echo 3.12.1");
    let cfg = Config {
        python: Some(py.into_os_string()),
        ..fx.cfg.clone()
    };
    let msg = resolve_python(&cfg).unwrap_err().to_string();
    assert!(msg.contains("but it is python 3.12.1"), "{msg}");
}

#[test]
fn no_python_on_path_lists_what_was_found() {
    let dir = tempfile::tempdir().unwrap();
    write_script(&dir.path().join("python3"), "echo 3.12.1");
    let cfg = Config {
        path: Some(dir.path().as_os_str().to_owned()),
        ..Config::default()
    };
    let err = resolve_python(&cfg).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("no python 3.11 interpreter found on PATH"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "python3 3.12.1 at {}",
            dir.path().join("python3").display()
        )),
        "{msg}"
    );
    assert!(msg.contains("install python 3.11"), "{msg}");
    assert!(msg.contains("set PROCTOR_PYTHON"), "{msg}");

    let empty = Config {
        path: Some(OsString::new()),
        ..Config::default()
    };
    let msg = resolve_python(&empty).unwrap_err().to_string();
    assert!(
        msg.contains("found neither python3.11 nor python3"),
        "{msg}"
    );
}

#[test]
fn python_discovery_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = Some(dir.path().as_os_str().to_owned());
    let cfg = Config {
        path,
        ..Config::default()
    };
    write_script(&dir.path().join("python3"), "echo 3.11.4");
    let (exe, version) = resolve_python(&cfg).unwrap();
    assert_eq!(exe, dir.path().join("python3"));
    assert_eq!(version, "3.11.4");

    write_script(&dir.path().join("python3.11"), "echo 3.11.9");
    let (exe, version) = resolve_python(&cfg).unwrap();
    assert_eq!(exe, dir.path().join("python3.11"));
    assert_eq!(version, "3.11.9");

    // A python that prints garbage is not taken for 3.11.
    write_script(&dir.path().join("python3.11"), "echo hello");
    write_script(&dir.path().join("python3"), "exit 3");
    let msg = resolve_python(&cfg).unwrap_err().to_string();
    assert!(msg.contains("instead of a python version"), "{msg}");
    assert!(msg.contains("exited with status 3"), "{msg}");
    assert!(!is_wanted_python("3.110.1"));
    assert!(is_wanted_python("3.11"));
}

#[test]
fn stale_temp_dirs_are_removed() {
    let fx = Fixture::ok();
    let runtimes = runtimes_dir(&fx.home);
    let stale = runtimes.join(format!(".tmp-{}-999999", runtime_id()));
    fs::create_dir_all(stale.join("bin")).unwrap();
    fs::write(stale.join("bin/python"), "half").unwrap();
    let stale_tool = fx.home.join("tools/.tmp-uv-0.13.9-999999");
    fs::create_dir_all(&stale_tool).unwrap();
    // An interrupted install is not a runtime.
    assert!(find(&fx.home).is_none());

    fx.ensure().unwrap();
    assert!(!stale.exists());
    assert!(!stale_tool.exists());

    // On the fast path, leftovers go too, but only when no install runs.
    fs::create_dir_all(&stale).unwrap();
    // (Retried: a child forked by another test thread can briefly inherit
    // the lock's file descriptor and so keep the lock a moment longer.)
    let held = retry(|| InstallLock::try_acquire(&runtimes.join(".lock")))
        .expect("lock is free after ensure returned");
    fx.ensure().unwrap();
    assert!(
        stale.exists(),
        "removed while another install held the lock"
    );
    drop(held);
    let gone = retry(|| {
        fx.ensure().unwrap();
        (!stale.exists()).then_some(())
    });
    assert!(gone.is_some(), "stale dir not removed on the fast path");
    assert_eq!(fx.uv_calls("venv"), 1);
}

#[test]
fn broken_runtime_dir_is_replaced() {
    let fx = Fixture::ok();
    let root = runtimes_dir(&fx.home).join(runtime_id());
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("junk"), "left by a crash").unwrap();
    let rt = fx.ensure().unwrap();
    assert!(!root.join("junk").exists());
    assert_eq!(find(&fx.home), Some(rt));
    assert_eq!(
        fx.runtimes_entries(),
        vec![".lock".to_owned(), runtime_id().to_owned()]
    );
}

#[test]
fn concurrent_ensures_install_once() {
    let fx = Fixture::new(&format!("sleep 0.3\n{SYNC_OK}"), VENV_PYTHON_OK);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| fx.ensure())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let first = results[0].as_ref().unwrap();
    for r in &results {
        assert_eq!(r.as_ref().unwrap(), first);
    }
    assert_eq!(fx.uv_calls("venv"), 1);
    assert_eq!(fx.uv_calls("pip"), 1);
    assert_eq!(
        fx.runtimes_entries(),
        vec![".lock".to_owned(), runtime_id().to_owned()]
    );
}

#[test]
fn path_lookup_skips_non_executables_and_relative_dirs() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("uv"), "not executable").unwrap();
    let path = std::env::join_paths([Path::new("relative"), dir.path()]).unwrap();
    assert_eq!(find_in_path(OsStr::new("uv"), Some(&path)), None);
    write_script(&dir.path().join("uv"), "exit 0");
    assert_eq!(
        find_in_path(OsStr::new("uv"), Some(&path)),
        Some(dir.path().join("uv"))
    );
    assert_eq!(find_in_path(OsStr::new("uv"), None), None);
}

#[test]
fn ansi_sequences_are_stripped() {
    assert_eq!(
        strip_ansi("\u{1b}[1m\u{1b}[31merror\u{1b}[0m: x"),
        "error: x"
    );
    assert_eq!(strip_ansi("plain"), "plain");
}

/// The real uv bootstrap: with no uv on PATH, uv is pip-installed from PyPI
/// into a fresh home. Needs the network, so it runs only where real installs
/// are expected (PROCTOR_HOME set, as CI does).
#[test]
fn uv_is_installed_from_pypi_when_not_on_path() {
    if std::env::var_os("PROCTOR_HOME").is_none() {
        eprintln!("skipping the real uv bootstrap test: PROCTOR_HOME is not set");
        return;
    }
    let base = match resolve_python(&Config::from_env()) {
        Ok((base, _)) => base,
        Err(e) => panic!("PROCTOR_HOME is set but no base python: {e}"),
    };
    let home = tempfile::tempdir().unwrap();
    let cfg = Config {
        path: Some(OsString::new()),
        ..Config::default()
    };
    let progress = Progress::quiet();
    let (uv, version) = resolve_uv(&cfg, home.path(), &base, &progress).expect("uv bootstrap");
    assert_eq!(
        uv,
        home.path().join(format!("tools/uv-{UV_VERSION}/bin/uv"))
    );
    assert_eq!(version, UV_VERSION);
    // Second time: already there, no pip run.
    let started = Instant::now();
    let (again, _) = resolve_uv(&cfg, home.path(), &base, &progress).unwrap();
    assert_eq!(again, uv);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(stale_entries(home.path()).is_empty());
}
