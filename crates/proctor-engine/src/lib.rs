/*!
Runs jobs. One trait, [`Backend`], takes a [`Job`] and returns a [`RunResult`]; the
[`LocalBackend`] runs it on this machine, either cold (a fresh sandboxed interpreter)
or warm (a fork of a sandboxed zygote that has already imported torch and numpy), and
opens persistent [`Session`]s for tools that need state across calls. A later backend
can run the same jobs on a cluster.

```no_run
# async fn demo() -> Result<(), Box<dyn std::error::Error>> {
use proctor_core::{Command, Job};
use proctor_engine::{Backend, EngineConfig, LocalBackend};
let backend = LocalBackend::start(EngineConfig::detect(false)?).await?;
let result = backend.run(Job::new(Command::Code { code: "print(1 + 1)".into() })).await?;
assert_eq!(result.stdout, "2\n");
# Ok(()) }
```
*/
#![deny(missing_docs)]

mod cold;
mod pool;
mod scratch;
mod supervise;
mod tree;
mod workspace;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proctor_core::{Job, JobError, Limits, RunResult};
use proctor_runtime::Runtime;
use proctor_sandbox::Sandbox;

pub use pool::{Session, SessionReply, MAX_FRAME_BYTES};
pub use tree::{remove_tree, remove_tree_blocking};

/// Runs jobs somewhere. The only door through which untrusted code is run.
pub trait Backend: Send + Sync {
    /// Runs one job to its end.
    fn run(
        &self,
        job: Job,
    ) -> impl std::future::Future<Output = Result<RunResult, JobError>> + Send;
}

/// The harness files, embedded so that the binary is all there is to install.
const HARNESS: &[(&str, &str)] = &[
    (
        "proctor_harness/__init__.py",
        include_str!("../../../python/proctor_harness/__init__.py"),
    ),
    (
        "proctor_harness/confine.py",
        include_str!("../../../python/proctor_harness/confine.py"),
    ),
    (
        "proctor_harness/zygote.py",
        include_str!("../../../python/proctor_harness/zygote.py"),
    ),
    (
        "proctor_harness/child.py",
        include_str!("../../../python/proctor_harness/child.py"),
    ),
    (
        "proctor_harness/gym_train.py",
        include_str!("../../../python/proctor_harness/gym_train.py"),
    ),
    (
        "proctor_harness/gym_record.py",
        include_str!("../../../python/proctor_harness/gym_record.py"),
    ),
    (
        "proctor_harness/gym_tolerant.py",
        include_str!("../../../python/proctor_harness/gym_tolerant.py"),
    ),
    (
        "proctor_harness/gym_heldout.py",
        include_str!("../../../python/proctor_harness/gym_heldout.py"),
    ),
    (
        "proctor_harness/gym_judge.py",
        include_str!("../../../python/proctor_harness/gym_judge.py"),
    ),
    (
        "proctor_harness/gym_tools.py",
        include_str!("../../../python/proctor_harness/gym_tools.py"),
    ),
];

/// Where and how the local backend runs things.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `$PROCTOR_HOME`: runs, harness, runtime.
    pub home: PathBuf,
    /// The managed Python runtime.
    pub runtime: Runtime,
    /// The `proctor` binary, re-executed as the sandbox helper.
    pub helper: PathBuf,
    /// Run without any confinement. Unsafe; for developing proctor itself.
    pub no_sandbox: bool,
    /// Limits of a session unless the caller says otherwise.
    pub session_limits: Limits,
    /// Tests only: warm runs without landlock's signal and abstract-socket scoping, as on
    /// kernels before landlock ABI 6, to show what keeps siblings apart without it (their
    /// own pid namespaces). Set by `PROCTOR_TEST_WITHOUT_LANDLOCK_SCOPING=1`.
    pub test_without_landlock_scoping: bool,
}

/// The environment variable behind [`EngineConfig::test_without_landlock_scoping`].
pub const WITHOUT_LANDLOCK_SCOPING_ENV: &str = "PROCTOR_TEST_WITHOUT_LANDLOCK_SCOPING";

impl EngineConfig {
    /// The default configuration: `$PROCTOR_HOME`, the runtime (provisioned if missing),
    /// and this executable as the helper.
    pub fn detect(no_sandbox: bool) -> Result<EngineConfig, JobError> {
        let home = proctor_runtime::proctor_home();
        let runtime = proctor_runtime::ensure(&proctor_runtime::EnsureOptions {
            home: home.clone(),
            quiet: false,
        })
        .map_err(|e| JobError::Engine(e.to_string()))?;
        let helper = std::env::current_exe()
            .map_err(|e| JobError::Engine(format!("cannot find the proctor executable: {e}")))?;
        Ok(EngineConfig {
            home,
            runtime,
            helper,
            no_sandbox,
            session_limits: Limits::default(),
            test_without_landlock_scoping: std::env::var(WITHOUT_LANDLOCK_SCOPING_ENV)
                .is_ok_and(|v| v == "1"),
        })
    }
}

/// Paths every run of this engine reads: the runtime, its base interpreter, the harness.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub python: PathBuf,
    pub read_only: Vec<PathBuf>,
    pub harness: PathBuf,
    pub runs: PathBuf,
}

impl Paths {
    fn new(config: &EngineConfig) -> Result<Paths, JobError> {
        let harness = install_harness(&config.home)?;
        let mut read_only = vec![config.runtime.root.clone(), harness.clone()];
        // A venv's interpreter and stdlib live in its base installation (e.g. under pyenv);
        // only that prefix is readable, not the home directory around it.
        read_only.extend(config.runtime.base_prefix());
        let runs = config.home.join("runs");
        std::fs::create_dir_all(&runs)
            .map_err(|e| JobError::Engine(format!("cannot create {}: {e}", runs.display())))?;
        sweep_stale_runs(&runs);
        Ok(Paths {
            python: config.runtime.python.clone(),
            read_only,
            harness,
            runs,
        })
    }

    /// The environment of every sandboxed interpreter, for a run whose work dir is `work`.
    pub fn env(&self, work: &Path, extra: &[(String, String)]) -> Vec<(String, String)> {
        let bin = self.python.parent().unwrap_or(Path::new("/usr/bin"));
        let mut env = vec![
            ("PATH".into(), format!("{}:/usr/bin:/bin", bin.display())),
            ("HOME".into(), work.display().to_string()),
            // Runs have ids of their own that no passwd names (getpass.getuser() asks here).
            ("USER".into(), "sandbox".into()),
            ("LOGNAME".into(), "sandbox".into()),
            ("TMPDIR".into(), work.join(".tmp").display().to_string()),
            ("PYTHONUNBUFFERED".into(), "1".into()),
            ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
            ("PYTHONPATH".into(), self.harness.display().to_string()),
            ("MPLBACKEND".into(), "Agg".into()),
            (
                "MPLCONFIGDIR".into(),
                work.join(".tmp").display().to_string(),
            ),
            ("LANG".into(), "C.UTF-8".into()),
        ];
        env.extend(extra.iter().cloned());
        env
    }
}

/// Run directories are named `<pid>-...` or `warm-<pid>-...` after the proctor process
/// that made them; those of processes that died without cleaning up are removed.
fn sweep_stale_runs(runs: &Path) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.trim_start_matches("warm-").split('-').next() else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            // NotFound: another proctor process starting now sweeps the same run
            if let Err(e) = tree::remove_tree(&entry.path()).or_else(|e| {
                (e.kind() == std::io::ErrorKind::NotFound)
                    .then_some(())
                    .ok_or(e)
            }) {
                tracing::warn!(
                    "cannot remove the stale run {}: {e}",
                    entry.path().display()
                );
            }
        }
    }
}

/// Installs the embedded harness under `<home>/harness/<hash>`, read-only (0444 files,
/// 0555 directories), and checks an existing install byte for byte: a file a run or a
/// user changed (content or mode) is rewritten, loudly.
fn install_harness(home: &Path) -> Result<PathBuf, JobError> {
    use std::os::unix::fs::PermissionsExt;
    let mut hash: u64 = 0xcbf29ce484222325;
    for (name, text) in HARNESS {
        for b in name.bytes().chain(text.bytes()) {
            hash = (hash ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
    let dir = home.join("harness").join(format!("{hash:016x}"));
    let err = |e: std::io::Error| JobError::Engine(format!("cannot install the harness: {e}"));
    // Backends started concurrently in one process must not repair the same files at once.
    static REPAIRING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _repairing = REPAIRING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if dir.exists() {
        repair_harness(&dir).map_err(err)?;
        return Ok(dir);
    }
    // Unique per call, not per process: tests (and servers) start several backends
    // concurrently in one process, and a shared temporary name let one install rename
    // the directory away while another was still writing into it.
    static INSTALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let attempt = INSTALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = home
        .join("harness")
        .join(format!(".tmp-{}-{attempt}", std::process::id()));
    std::fs::create_dir_all(tmp.join("proctor_harness")).map_err(err)?;
    for (name, text) in HARNESS {
        // read-only as written: `repair_harness` takes any other mode for tampering
        std::fs::write(tmp.join(name), text).map_err(err)?;
        std::fs::set_permissions(tmp.join(name), std::fs::Permissions::from_mode(0o444))
            .map_err(err)?;
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => {}
        // Another process installed the same harness first.
        Err(_) if dir.exists() => {
            let _ = tree::remove_tree(&tmp);
        }
        Err(e) => return Err(err(e)),
    }
    repair_harness(&dir).map_err(err)?;
    Ok(dir)
}

/// Makes the harness at `dir` exactly the embedded one, read-only.
fn repair_harness(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    };
    let package = dir.join("proctor_harness");
    let intact = |path: &Path, text: &str| {
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o444)
            && std::fs::read(path).is_ok_and(|b| b == text.as_bytes())
    };
    let damaged: Vec<&(&str, &str)> = HARNESS
        .iter()
        .filter(|(name, text)| !intact(&dir.join(name), text))
        .collect();
    if !damaged.is_empty() {
        mode(dir, 0o755)?;
        mode(&package, 0o755)?;
    }
    for (name, text) in damaged {
        let path = dir.join(name);
        tracing::warn!(
            "the harness file {} was altered; restoring it",
            path.display()
        );
        if path.exists() {
            mode(&path, 0o644)?;
        }
        std::fs::write(&path, text)?;
        mode(&path, 0o444)?;
    }
    mode(&package, 0o555)?;
    mode(dir, 0o555)
}

/// The state of the warm pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarmPool {
    /// The zygote is up.
    Ready,
    /// The zygote is starting (or will be started by the next warm run).
    Starting,
    /// The last start failed; warm runs fall back to cold ones, gym sessions cannot open.
    Failed(String),
    /// No sandbox (`--no-sandbox`): no warm pool at all.
    Disabled,
}

impl WarmPool {
    /// Whether the server can serve everything it offers.
    pub fn healthy(&self) -> bool {
        !matches!(self, WarmPool::Failed(_))
    }
}

impl std::fmt::Display for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WarmPool::Ready => write!(f, "ready"),
            WarmPool::Starting => write!(f, "starting"),
            WarmPool::Failed(why) => write!(f, "failed: {why}"),
            WarmPool::Disabled => write!(f, "disabled"),
        }
    }
}

/// Runs jobs on this machine: cold, or warm through the zygote pool.
#[derive(Clone)]
pub struct LocalBackend {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: EngineConfig,
    pub paths: Paths,
    pub sandbox: Option<Sandbox>,
    pub pool: pool::Pool,
}

impl LocalBackend {
    /// Checks the sandbox (failing closed unless `no_sandbox`), installs the harness and
    /// starts warming the zygote in the background.
    pub async fn start(config: EngineConfig) -> Result<LocalBackend, JobError> {
        let sandbox = if config.no_sandbox {
            tracing::warn!(
                "running WITHOUT a sandbox: untrusted code has full access to this machine"
            );
            None
        } else {
            Some(
                Sandbox::detect(config.helper.clone())
                    .map_err(|e| JobError::Sandbox(e.to_string()))?,
            )
        };
        let paths = Paths::new(&config)?;
        let pool = pool::Pool::new();
        let backend = LocalBackend {
            inner: Arc::new(Inner {
                config,
                paths,
                sandbox,
                pool,
            }),
        };
        let warm = backend.clone();
        tokio::spawn(async move {
            match warm.inner.pool.zygote(&warm.inner).await {
                Ok(_) => pool::refill(warm.inner.clone()),
                Err(e) => tracing::warn!("warm pool not started: {e}"),
            }
        });
        Ok(backend)
    }

    /// Waits until the warm zygote is up (it starts in the background).
    pub async fn warm_up(&self) -> Result<(), JobError> {
        self.inner.pool.zygote(&self.inner).await.map(|_| ())
    }

    /// Opens a persistent session: a forked child keeping one namespace across snippets.
    pub async fn open_session(
        &self,
        limits: Limits,
        idle_timeout: std::time::Duration,
    ) -> Result<Session, JobError> {
        pool::open_session(&self.inner, limits, idle_timeout).await
    }

    /// The warm pool's real state, answered at once (for `/health`).
    pub fn warm_pool(&self) -> WarmPool {
        match self.inner.sandbox {
            None => WarmPool::Disabled,
            Some(_) => self.inner.pool.state(),
        }
    }

    /// Host pid of the warm zygote, when one is running.
    pub async fn zygote_pid(&self) -> Option<i32> {
        self.inner.pool.zygote_pid().await
    }

    /// Whether runs are confined.
    pub fn sandboxed(&self) -> bool {
        self.inner.sandbox.is_some()
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }
}

impl Backend for LocalBackend {
    async fn run(&self, job: Job) -> Result<RunResult, JobError> {
        if job.cold || job.policy.network || self.inner.sandbox.is_none() {
            cold::run(&self.inner, job).await
        } else {
            pool::run(&self.inner, job).await
        }
    }
}
