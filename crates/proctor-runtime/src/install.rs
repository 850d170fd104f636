//! Installing the runtime: finding a base python and uv, creating the venv in
//! a temporary directory, syncing the lock into it, verifying it, writing the
//! marker and renaming it into place, all under an exclusive file lock.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::progress::Progress;
use crate::{
    absolute_home, load_runtime, lock, lock_sha256, runtime_id, runtimes_dir, EnsureOptions,
    Marker, Runtime, RuntimeError, LOCK, MARKER_FILE, PYTHON_VERSION, UV_VERSION,
};

/// How many lines of a tool's stderr an error keeps.
const TAIL_LINES: usize = 20;

const STEP_UV: &str = "resolving uv";
const STEP_VENV: &str = "creating venv";
const STEP_VERIFY: &str = "verifying";
const STEP_FINAL: &str = "finalizing";

/// Prefix of temporary directories; anything with it is stale once the
/// install lock is held.
const TMP_PREFIX: &str = ".tmp-";

/// Imports the runtime must provide; prints the torch and python versions.
const VERIFY_CODE: &str = "import sys, torch, numpy, torchvision, yaml, safetensors; \
     print(torch.__version__); print('%d.%d.%d' % sys.version_info[:3])";
/// Prints the venv prefix; run after the rename to check the venv relocated.
const PREFIX_CODE: &str = "import sys; print(sys.prefix)";
/// Prints the interpreter's version.
const VERSION_CODE: &str = "import sys; print('%d.%d.%d' % sys.version_info[:3])";

/// Where to look for the base python and uv. [`Config::from_env`] reads the
/// process environment; tests pass explicit values instead.
#[derive(Debug, Clone, Default)]
pub(crate) struct Config {
    /// `PROCTOR_PYTHON`: a path, or a name looked up in `path`.
    pub(crate) python: Option<OsString>,
    /// `PROCTOR_UV`: a path, or a name looked up in `path`.
    pub(crate) uv: Option<OsString>,
    /// The `PATH` to search for `python3.11`, `python3` and `uv`.
    pub(crate) path: Option<OsString>,
}

impl Config {
    pub(crate) fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Config {
            python: var("PROCTOR_PYTHON"),
            uv: var("PROCTOR_UV"),
            path: std::env::var_os("PATH"),
        }
    }
}

/// [`crate::ensure`] with explicit lookups.
pub(crate) fn ensure_with(opts: &EnsureOptions, cfg: &Config) -> Result<Runtime, RuntimeError> {
    let home = absolute_home(&opts.home);
    let id = runtime_id();
    let runtimes = runtimes_dir(&home);
    let final_dir = runtimes.join(id);

    // Fast path: marker + bin/python, no process spawned, no lock taken.
    if let Some(runtime) = load_runtime(&final_dir, id) {
        cleanup_stale_if_idle(&home);
        return Ok(runtime);
    }

    fs::create_dir_all(&runtimes).map_err(io_err("create directory", &runtimes))?;
    let progress = Progress::new(opts.quiet);
    let _lock = InstallLock::acquire(&runtimes.join(".lock"), &progress)?;

    // Another process may have installed it while we waited for the lock.
    if let Some(runtime) = load_runtime(&final_dir, id) {
        progress.clear();
        return Ok(runtime);
    }

    // We hold the lock, so every temporary directory belongs to an install
    // that failed or was interrupted.
    remove_stale(&home);
    if fs::symlink_metadata(&final_dir).is_ok() {
        // Present on disk but not a valid runtime (no marker, no python):
        // a broken leftover; move it out of the way before installing.
        progress.note(&format!("removing broken runtime {}", final_dir.display()));
        discard(&final_dir, &runtimes)?;
    }

    let started = Instant::now();
    let tmp = runtimes.join(format!("{TMP_PREFIX}{id}-{}", std::process::id()));
    if let Err(err) = build(&home, &tmp, id, cfg, &progress) {
        let _ = remove_path(&tmp);
        progress.clear();
        return Err(err);
    }
    if let Err(err) = fs::rename(&tmp, &final_dir) {
        let _ = remove_path(&tmp);
        progress.clear();
        return Err(io_err("rename the new runtime to", &final_dir)(err));
    }
    // The venv is relocatable; make sure its python works from the final
    // place before anyone relies on it.
    if let Err(err) = check_relocated(&final_dir, &progress) {
        let _ = discard(&final_dir, &runtimes);
        progress.clear();
        return Err(err);
    }
    let runtime = load_runtime(&final_dir, id).ok_or_else(|| RuntimeError::Step {
        step: STEP_FINAL.to_owned(),
        detail: format!(
            "the installed runtime at {} is not readable after the rename; remove it and retry",
            final_dir.display()
        ),
        stderr_tail: Vec::new(),
    })?;
    progress.finish(&format!(
        "runtime {id} ready in {:.1}s (python {}, torch {}) at {}",
        started.elapsed().as_secs_f64(),
        runtime.python_version,
        runtime.torch_version,
        runtime.root.display()
    ));
    Ok(runtime)
}

/// Everything that happens inside the temporary directory `tmp`.
fn build(
    home: &Path,
    tmp: &Path,
    id: &str,
    cfg: &Config,
    progress: &Progress,
) -> Result<(), RuntimeError> {
    let (base_python, base_version) = resolve_python(cfg)?;
    tracing::debug!("base python {base_version} at {}", base_python.display());

    progress.step(1, STEP_UV);
    let (uv, uv_version) = resolve_uv(cfg, home, &base_python, progress)?;
    tracing::debug!("uv {uv_version} at {}", uv.display());

    progress.step(2, STEP_VENV);
    remove_path(tmp).map_err(io_err("remove", tmp))?;
    let mut venv = uv_command(&uv, home);
    venv.args(["venv", "--no-project", "--relocatable", "--python"])
        .arg(&base_python)
        .arg(tmp);
    run_step(
        STEP_VENV,
        &mut venv,
        progress,
        "uv venv",
        "check that the base python works and that PROCTOR_HOME is writable",
    )?;
    let venv_python = tmp.join("bin").join("python");
    if !venv_python.exists() {
        return Err(step_err(
            STEP_VENV,
            format!(
                "uv venv succeeded but {} does not exist; check the uv executable",
                venv_python.display()
            ),
            Vec::new(),
        ));
    }

    let lockfile = tmp.join("requirements.lock");
    fs::write(&lockfile, LOCK).map_err(io_err("write", &lockfile))?;
    let count = lock::package_count(LOCK);
    let install_step = format!("installing {count} packages");
    progress.step(3, &install_step);
    let mut sync = uv_command(&uv, home);
    sync.args([
        "pip",
        "sync",
        "--require-hashes",
        "--compile-bytecode",
        "--python",
    ])
    .arg(&venv_python)
    .arg(&lockfile);
    run_step(
        &install_step,
        &mut sync,
        progress,
        "uv pip sync",
        "check network access to PyPI (or UV_INDEX_URL) and free disk space in PROCTOR_HOME, \
         then retry",
    )?;

    progress.step(4, STEP_VERIFY);
    let mut verify = python_command(&venv_python);
    verify.args(["-I", "-c", VERIFY_CODE]);
    let ran = run_step(
        STEP_VERIFY,
        &mut verify,
        progress,
        "importing torch, numpy, torchvision, yaml and safetensors",
        "the installed packages do not import; see the python error below",
    )?;
    let mut lines = ran.stdout.lines().map(str::trim).filter(|l| !l.is_empty());
    let torch_version = lines.next().unwrap_or_default().to_owned();
    let python_version = lines.next().unwrap_or(&base_version).to_owned();
    let pinned = lock::pinned_version(LOCK, "torch").unwrap_or_default();
    if torch_version.is_empty() || !torch_version.starts_with(pinned) {
        return Err(step_err(
            STEP_VERIFY,
            format!("torch reports version {torch_version:?} but the lock pins {pinned:?}"),
            ran.tail,
        ));
    }

    let marker = Marker {
        id: id.to_owned(),
        python_version,
        torch_version,
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        lock_sha256: lock_sha256().to_owned(),
        uv_version,
        packages: count,
    };
    let marker_path = tmp.join(MARKER_FILE);
    let mut text = serde_json::to_string_pretty(&marker).expect("marker serializes");
    text.push('\n');
    fs::write(&marker_path, text).map_err(io_err("write", &marker_path))?;
    Ok(())
}

/// Runs the moved venv's python and checks its `sys.prefix` is the final
/// directory.
fn check_relocated(root: &Path, progress: &Progress) -> Result<(), RuntimeError> {
    let python = root.join("bin").join("python");
    let mut cmd = python_command(&python);
    cmd.args(["-I", "-c", PREFIX_CODE]);
    let ran = run_step(
        STEP_FINAL,
        &mut cmd,
        progress,
        "the runtime's python after moving it into place",
        "the venv is not relocatable; use a uv that supports `uv venv --relocatable`",
    )?;
    let prefix = PathBuf::from(ran.stdout.trim());
    let same = match (prefix.canonicalize(), root.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        return Err(step_err(
            STEP_FINAL,
            format!(
                "the moved runtime's python reports prefix {} instead of {}; the venv is not \
                 relocatable",
                prefix.display(),
                root.display()
            ),
            ran.tail,
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Base python and uv.

/// The base interpreter and its full version.
pub(crate) fn resolve_python(cfg: &Config) -> Result<(PathBuf, String), RuntimeError> {
    let path = cfg.path.as_deref();
    if let Some(value) = &cfg.python {
        let shown = value.to_string_lossy().into_owned();
        let bad = |reason: String| RuntimeError::BadPythonOverride {
            value: shown.clone(),
            reason,
        };
        let exe = resolve_named(value, path).ok_or_else(|| {
            bad(if is_bare_name(value) {
                "no such executable is on PATH".to_owned()
            } else {
                "that file does not exist or is not executable".to_owned()
            })
        })?;
        return match python_version(&exe) {
            Ok(version) if is_wanted_python(&version) => Ok((exe, version)),
            Ok(version) => Err(bad(format!("it is python {version}"))),
            Err(why) => Err(bad(format!("running it failed: {why}"))),
        };
    }
    let mut found = Vec::new();
    for name in [format!("python{PYTHON_VERSION}"), "python3".to_owned()] {
        let Some(exe) = find_in_path(OsStr::new(&name), path) else {
            continue;
        };
        match python_version(&exe) {
            Ok(version) if is_wanted_python(&version) => return Ok((exe, version)),
            Ok(version) => found.push(format!("{name} {version} at {}", exe.display())),
            Err(why) => found.push(format!("{name} at {} does not run: {why}", exe.display())),
        }
    }
    Err(RuntimeError::PythonNotFound { found })
}

fn is_wanted_python(version: &str) -> bool {
    version == PYTHON_VERSION
        || version
            .strip_prefix(PYTHON_VERSION)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// `exe`'s `major.minor.micro`.
fn python_version(exe: &Path) -> Result<String, String> {
    let mut cmd = python_command(exe);
    cmd.args(["-c", VERSION_CODE]);
    let ran = run(&mut cmd, None).map_err(|e| e.to_string())?;
    if !ran.status.success() {
        let last = ran.tail.last().cloned().unwrap_or_default();
        return Err(format!(
            "exited with {}: {last}",
            describe_status(ran.status)
        ));
    }
    let version = ran.stdout.trim().to_owned();
    let looks_right = version.split('.').count() >= 2
        && version
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if looks_right {
        Ok(version)
    } else {
        Err(format!("printed {version:?} instead of a python version"))
    }
}

/// The uv executable and its version.
pub(crate) fn resolve_uv(
    cfg: &Config,
    home: &Path,
    base_python: &Path,
    progress: &Progress,
) -> Result<(PathBuf, String), RuntimeError> {
    let path = cfg.path.as_deref();
    let uv = if let Some(value) = &cfg.uv {
        resolve_named(value, path).ok_or_else(|| {
            step_err(
                STEP_UV,
                format!(
                    "PROCTOR_UV is set to {} but that is not an executable file; point \
                     PROCTOR_UV at a uv executable or unset it",
                    value.to_string_lossy()
                ),
                Vec::new(),
            )
        })?
    } else if let Some(uv) = find_in_path(OsStr::new("uv"), path) {
        uv
    } else {
        install_uv(home, base_python, progress)?
    };

    let mut cmd = Command::new(&uv);
    cmd.arg("--version");
    let ran = run(&mut cmd, Some(progress)).map_err(|e| {
        step_err(
            STEP_UV,
            format!(
                "could not run {}: {e}; point PROCTOR_UV at a working uv executable",
                uv.display()
            ),
            Vec::new(),
        )
    })?;
    if !ran.status.success() {
        return Err(step_err(
            STEP_UV,
            format!(
                "`{} --version` exited with {}; point PROCTOR_UV at a working uv executable",
                uv.display(),
                describe_status(ran.status)
            ),
            ran.tail,
        ));
    }
    // "uv 0.13.9 (x86_64-unknown-linux-gnu)"
    let version = ran
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or("unknown")
        .to_owned();
    Ok((uv, version))
}

/// `$home/tools/uv-<UV_VERSION>/bin/uv`, installed from PyPI with the base
/// python's pip if not there yet. Call with the install lock held.
pub(crate) fn install_uv(
    home: &Path,
    base_python: &Path,
    progress: &Progress,
) -> Result<PathBuf, RuntimeError> {
    let tools = home.join("tools");
    let target = tools.join(format!("uv-{UV_VERSION}"));
    let uv = target.join("bin").join("uv");
    if is_executable(&uv) {
        return Ok(uv);
    }
    fs::create_dir_all(&tools).map_err(io_err("create directory", &tools))?;
    let tmp = tools.join(format!(
        "{TMP_PREFIX}uv-{UV_VERSION}-{}",
        std::process::id()
    ));
    remove_path(&tmp).map_err(io_err("remove", &tmp))?;
    progress.note(&format!(
        "uv is not on PATH; installing uv {UV_VERSION} from PyPI into {}",
        target.display()
    ));
    let mut cmd = python_command(base_python);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--target",
    ])
    .arg(&tmp)
    .arg(format!("uv=={UV_VERSION}"));
    let what = format!(
        "uv is not on PATH, and `{} -m pip install uv=={UV_VERSION}`",
        base_python.display()
    );
    let hint = "install uv (e.g. `pipx install uv`) and put it on PATH, or set PROCTOR_UV to a \
                uv executable";
    let result = run_step(STEP_UV, &mut cmd, progress, &what, hint).and_then(|_| {
        if is_executable(&tmp.join("bin").join("uv")) {
            Ok(())
        } else {
            Err(step_err(
                STEP_UV,
                format!("{what} did not produce bin/uv; {hint}"),
                Vec::new(),
            ))
        }
    });
    if let Err(err) = result {
        let _ = remove_path(&tmp);
        return Err(err);
    }
    remove_path(&target).map_err(io_err("remove", &target))?;
    if let Err(err) = fs::rename(&tmp, &target) {
        let _ = remove_path(&tmp);
        return Err(io_err("rename uv into", &target)(err));
    }
    Ok(uv)
}

fn is_bare_name(value: &OsStr) -> bool {
    !value.as_encoded_bytes().contains(&b'/')
}

/// A path given as `value` (made absolute), or a bare name looked up in `path`.
fn resolve_named(value: &OsStr, path: Option<&OsStr>) -> Option<PathBuf> {
    if is_bare_name(value) {
        find_in_path(value, path)
    } else {
        let p = Path::new(value);
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        is_executable(&p).then_some(p)
    }
}

/// The first executable `name` in the directories of `path`.
pub(crate) fn find_in_path(name: &OsStr, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

// ---------------------------------------------------------------------------
// Running tools.

/// A uv command with proctor's cache and quiet, colourless output.
fn uv_command(uv: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(uv);
    cmd.env("UV_CACHE_DIR", home.join("cache").join("uv"))
        .env("UV_PYTHON_DOWNLOADS", "never")
        .env("UV_NO_PROGRESS", "1")
        .env("NO_COLOR", "1")
        .env_remove("VIRTUAL_ENV")
        .env_remove("CONDA_PREFIX")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .current_dir(runtimes_dir(home));
    cmd
}

/// A python command unaffected by the caller's python environment variables.
fn python_command(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env_remove("PYTHONSTARTUP")
        .env_remove("VIRTUAL_ENV");
    cmd
}

/// What a finished tool printed.
struct Ran {
    status: ExitStatus,
    stdout: String,
    /// The last [`TAIL_LINES`] non-empty lines of stderr.
    tail: Vec<String>,
}

/// Spawn, retrying a few times on ETXTBSY: an executable that was just
/// written (e.g. by pip, or by a test) can be briefly held open for writing
/// by a concurrently forked child.
fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let mut delay = Duration::from_millis(5);
    let mut attempts = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            result => return result,
        }
    }
}

/// Run `cmd` to completion, collecting stdout and streaming stderr lines to
/// `progress` while keeping the last [`TAIL_LINES`] of them.
fn run(cmd: &mut Command, progress: Option<&Progress>) -> io::Result<Ran> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(cmd)?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let stdout_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES + 1);
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match stderr.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        let text = String::from_utf8_lossy(&buf);
        for piece in text.split(['\r', '\n']) {
            let line = strip_ansi(piece);
            let line = line.trim_end();
            if line.trim().is_empty() {
                continue;
            }
            if let Some(progress) = progress {
                progress.line(line);
            }
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
        }
    }
    let status = child.wait()?;
    let stdout = stdout_reader.join().unwrap_or_default();
    Ok(Ran {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        tail: tail.into(),
    })
}

/// [`run`] for an install step: a spawn failure or non-zero exit becomes a
/// [`RuntimeError::Step`] naming `step`, saying `what` failed plus `hint`.
fn run_step(
    step: &str,
    cmd: &mut Command,
    progress: &Progress,
    what: &str,
    hint: &str,
) -> Result<Ran, RuntimeError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let ran = run(cmd, Some(progress)).map_err(|e| {
        step_err(
            step,
            format!("{what}: could not run {program}: {e}; {hint}"),
            Vec::new(),
        )
    })?;
    if !ran.status.success() {
        return Err(step_err(
            step,
            format!("{what} exited with {}; {hint}", describe_status(ran.status)),
            ran.tail,
        ));
    }
    Ok(ran)
}

fn step_err(step: &str, detail: String, stderr_tail: Vec<String>) -> RuntimeError {
    RuntimeError::Step {
        step: step.to_owned(),
        detail,
        stderr_tail,
    }
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------
// Files and locking.

fn io_err<'a>(action: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> RuntimeError + 'a {
    move |source| RuntimeError::Io {
        action: action.to_owned(),
        path: path.to_path_buf(),
        source,
    }
}

/// Remove a file, symlink or directory tree; missing is fine.
fn remove_path(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Move `dir` out of its final place (so it stops being found at once), then
/// delete it. Leftovers are temp dirs that the next install removes.
fn discard(dir: &Path, runtimes: &Path) -> Result<(), RuntimeError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = runtimes.join(format!("{TMP_PREFIX}{name}-{}-old", std::process::id()));
    let _ = remove_path(&aside);
    match fs::rename(dir, &aside) {
        Ok(()) => remove_path(&aside).map_err(io_err("remove", &aside)),
        Err(_) => remove_path(dir).map_err(io_err("remove", dir)),
    }
}

/// The directories that hold temporary install directories.
fn temp_parents(home: &Path) -> [PathBuf; 2] {
    [runtimes_dir(home), home.join("tools")]
}

fn stale_entries(home: &Path) -> Vec<PathBuf> {
    temp_parents(home)
        .iter()
        .filter_map(|dir| fs::read_dir(dir).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(TMP_PREFIX))
        .map(|e| e.path())
        .collect()
}

/// Remove leftovers of failed or interrupted installs. Only call with the
/// install lock held.
pub(crate) fn remove_stale(home: &Path) {
    for path in stale_entries(home) {
        match remove_path(&path) {
            Ok(()) => tracing::info!("removed stale {}", path.display()),
            Err(e) => tracing::warn!("could not remove stale {}: {e}", path.display()),
        }
    }
}

/// On the fast path: remove leftovers only if there are any and no install
/// is running right now.
fn cleanup_stale_if_idle(home: &Path) {
    if stale_entries(home).is_empty() {
        return;
    }
    if let Some(_lock) = InstallLock::try_acquire(&runtimes_dir(home).join(".lock")) {
        remove_stale(home);
    }
}

/// An exclusive `flock` on `$home/runtimes/.lock`, released on drop.
///
/// The lock belongs to the open file description, so it also lives on in a
/// child that another thread forks before that child execs (the fd is
/// close-on-exec); so a lock can stay taken for a moment after the drop. That
/// only makes waiters wait a little longer.
struct InstallLock {
    _file: File,
}

impl InstallLock {
    fn open(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    }

    fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
        loop {
            // SAFETY: flock on a file descriptor we own for the whole call.
            if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    fn try_acquire(path: &Path) -> Option<Self> {
        let file = Self::open(path).ok()?;
        Self::flock(&file, libc::LOCK_EX | libc::LOCK_NB).ok()?;
        Some(InstallLock { _file: file })
    }

    fn acquire(path: &Path, progress: &Progress) -> Result<Self, RuntimeError> {
        let file = Self::open(path).map_err(io_err("open lock file", path))?;
        match Self::flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => return Ok(InstallLock { _file: file }),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {}
            Err(e) => return Err(io_err("lock", path)(e)),
        }
        progress.note(&format!(
            "waiting for another proctor process that is installing the runtime (lock {})",
            path.display()
        ));
        Self::flock(&file, libc::LOCK_EX).map_err(io_err("lock", path))?;
        Ok(InstallLock { _file: file })
    }
}

#[cfg(test)]
mod tests;
