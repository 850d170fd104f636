/*!
Shared types of proctor: what a run of untrusted code is asked to do (a [`Job`]),
what it may touch ([`Policy`]), how much it may use ([`Limits`]) and what came out
([`RunResult`]).

Every front door (gym, challenge, review) builds a [`Job`] and hands it to an
engine backend; nothing else spawns untrusted code.

```
use proctor_core::{Job, Command, Limits};
let job = Job::new(Command::Script { path: "train.py".into(), args: vec![] })
    .with_limits(Limits { timeout_ms: 5_000, ..Limits::default() });
assert_eq!(job.limits.timeout_ms, 5_000);
```
*/
#![deny(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What the sandboxed Python process runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// `python PATH ARGS...`; a relative path is resolved against the job's working directory.
    Script {
        /// The script to run.
        path: PathBuf,
        /// Arguments passed as `sys.argv[1:]`.
        args: Vec<String>,
    },
    /// `python -m MODULE ARGS...`.
    Module {
        /// Dotted module name.
        module: String,
        /// Arguments passed as `sys.argv[1:]`.
        args: Vec<String>,
    },
    /// `python -c CODE`.
    Code {
        /// Source text.
        code: String,
    },
}

/// Resource limits of one run. Every run has all of them; the defaults are generous
/// enough for a small training script and tight enough to protect the host.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Wall-clock limit; the whole process tree is killed when it passes.
    pub timeout_ms: u64,
    /// Memory limit of the whole process tree (cgroup), in MiB.
    pub memory_mb: u64,
    /// Maximum number of processes and threads of the tree.
    pub max_pids: u64,
    /// Bytes kept of stdout and of stderr each; the rest is dropped and the result says so.
    pub max_output_bytes: u64,
    /// CPU quota in cores (e.g. 1.0 = one core); 0 means no quota.
    pub cpus: f64,
    /// Disk quota of the run's scratch (its working directory), in MiB: a size-limited
    /// tmpfs charged to the run's memory limit. A write past it fails with `ENOSPC` and the
    /// run ends as [`Status::DiskLimit`].
    pub disk_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 60_000,
            memory_mb: 4096,
            max_pids: 256,
            max_output_bytes: 1 << 20,
            cpus: 0.0,
            disk_mb: 2048,
        }
    }
}

/// A path mounted into the run's view, read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Path on the host (file or directory).
    pub host: PathBuf,
    /// Name under the run's `inputs/` directory.
    pub name: String,
}

/// What a run may touch. Policy is data: it is logged, tested and applied by the
/// sandbox, which refuses to run when it cannot enforce it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Allow network access. Never set for untrusted code; exists for trusted steps.
    pub network: bool,
    /// Extra host paths readable (never writable) by the run, beyond the runtime and system libraries.
    pub read_only: Vec<PathBuf>,
}

/// One run of untrusted code: inputs, command, limits, policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// What to run.
    pub command: Command,
    /// Files and directories given to the run, read-only, under `inputs/` in its scratch.
    pub inputs: Vec<Input>,
    /// Resource limits.
    pub limits: Limits,
    /// Filesystem and network policy.
    pub policy: Policy,
    /// Extra environment variables (the environment is otherwise minimal).
    pub env: Vec<(String, String)>,
    /// Run in a fresh interpreter instead of a fork of the warm zygote.
    pub cold: bool,
    /// When set, what the run wrote in its scratch directory is copied here after the run
    /// (it must not exist yet), so that trusted code can read it. The copy is bounded (at
    /// most the disk quota in bytes, regular files and directories only, never a symlink,
    /// limited depth and entry count). Treat its content as untrusted: garbage, huge files.
    #[serde(default)]
    pub collect: Option<PathBuf>,
    /// Sees the run's output as it is produced (progress displays); not part of the job's
    /// description.
    #[serde(skip)]
    pub tap: Option<OutputTap>,
}

/// Which of a run's streams a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A callback that sees a run's output while it runs, chunk by chunk, as captured (the
/// bytes past the output limit are never seen). The bytes are the untrusted run's.
#[derive(Clone)]
pub struct OutputTap(Arc<TapFn>);

type TapFn = dyn Fn(Stream, &[u8]) + Send + Sync;

impl OutputTap {
    /// A tap calling `f` with every captured chunk.
    pub fn new(f: impl Fn(Stream, &[u8]) + Send + Sync + 'static) -> OutputTap {
        OutputTap(Arc::new(f))
    }

    /// Hands `chunk` of `stream` to the callback.
    pub fn feed(&self, stream: Stream, chunk: &[u8]) {
        (self.0)(stream, chunk)
    }
}

impl std::fmt::Debug for OutputTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputTap")
    }
}

impl PartialEq for OutputTap {
    fn eq(&self, other: &OutputTap) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Job {
    /// A job with default limits, default policy, no inputs.
    pub fn new(command: Command) -> Job {
        Job {
            command,
            inputs: Vec::new(),
            limits: Limits::default(),
            policy: Policy::default(),
            env: Vec::new(),
            cold: false,
            collect: None,
            tap: None,
        }
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: Limits) -> Job {
        self.limits = limits;
        self
    }

    /// Adds a read-only input, visible as `inputs/<name>` from the run's working directory.
    pub fn with_input(mut self, host: impl Into<PathBuf>, name: impl Into<String>) -> Job {
        self.inputs.push(Input {
            host: host.into(),
            name: name.into(),
        });
        self
    }

    /// Copies the run's scratch directory to `dir` after the run (see [`Job::collect`]).
    pub fn collect_into(mut self, dir: impl Into<PathBuf>) -> Job {
        self.collect = Some(dir.into());
        self
    }

    /// Shows the run's output to `tap` while it runs.
    pub fn with_output_tap(mut self, tap: OutputTap) -> Job {
        self.tap = Some(tap);
        self
    }

    /// Runs in a fresh interpreter rather than a fork of the warm pool.
    pub fn cold(mut self, cold: bool) -> Job {
        self.cold = cold;
        self
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exited with code 0.
    Ok,
    /// Exited with a non-zero code (an exception, a syntax error, `sys.exit(1)`).
    Error,
    /// Passed its wall-clock limit and was killed.
    Timeout,
    /// Passed its memory limit.
    Oom,
    /// Killed by a signal for another reason (its own, or the pids limit).
    Killed,
    /// Wrote more than its output limit; it was killed and the output cut.
    OutputLimit,
    /// Filled its disk quota ([`Limits::disk_mb`]): writes past it failed with `ENOSPC`.
    DiskLimit,
}

impl Status {
    /// The name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Oom => "oom",
            Status::Killed => "killed",
            Status::OutputLimit => "output_limit",
            Status::DiskLimit => "disk_limit",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What came out of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// How it ended.
    pub status: Status,
    /// Exit code; `None` when killed by a signal.
    pub exit_code: Option<i32>,
    /// Standard output, lossily decoded as UTF-8, at most `max_output_bytes`.
    pub stdout: String,
    /// Standard error, lossily decoded as UTF-8, at most `max_output_bytes`.
    pub stderr: String,
    /// Wall-clock time from request to end.
    pub wall_ms: f64,
    /// Peak resident memory of the run's processes, in MiB.
    pub peak_rss_mb: f64,
    /// Whether output was cut at the limit.
    #[serde(default)]
    pub output_truncated: bool,
    /// Peak memory charged to the run's cgroup, in MiB: what its memory limit applies to
    /// (a warm run's pages shared with the zygote are not charged to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_peak_mb: Option<f64>,
}

impl RunResult {
    /// Whether the run finished with status `ok`.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

/// Errors that stop a job from running at all (as opposed to a run that fails,
/// which is a [`RunResult`] with a non-ok status).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// An input the job names does not exist.
    #[error("input {path:?} does not exist: pass an existing file or directory")]
    MissingInput {
        /// The missing path.
        path: PathBuf,
    },
    /// The sandbox cannot enforce the policy on this machine.
    #[error("{0}")]
    Sandbox(String),
    /// The engine failed (spawn, pipes, zygote).
    #[error("{0}")]
    Engine(String),
}
