/*!
Confines untrusted processes.

A [`Spec`] (program, arguments, what is readable, what is writable, network or not)
goes in; a confined process tree comes out. The confinement is applied by a small
helper — the `proctor` binary re-executed with the hidden `__sandbox` subcommand —
so that it happens in a fresh single-threaded process:

1. join the run's cgroup (memory, pids, cpu limits; see [`cgroup`]);
2. unprivileged: a user namespace mapping the caller's own ids;
3. new mount, pid, network, ipc and uts namespaces: no network interfaces at all
   (not even loopback);
4. a tiny init (pid 1 of the namespace) builds the run's private root (see `root.rs`:
   only the listed paths, bind-mounted at their host paths, read-only but for scratch;
   private `/proc`, `/tmp`, `/dev/shm`, minimal `/dev`), pivots into it and forks the
   worker; when the worker ends, init exits and the kernel kills everything left in the
   namespace, double-forked or not;
5. the worker drops privileges (root becomes the run's own unprivileged id, [`RunId`], and
   loses every capability), sets `no_new_privs`, applies a landlock ruleset (only the
   listed paths are readable, only scratch is writable) and a seccomp filter, then
   `execve`s the program.

The parent side ([`Sandbox::command`]) creates the cgroup and builds the helper's
command line; killing the helper kills the tree (init has `PDEATHSIG`), and
[`cgroup::Cgroup::kill_all`] makes sure.

```no_run
use proctor_sandbox::{Sandbox, Spec};
let sandbox = Sandbox::detect("/usr/local/bin/proctor".into()).expect("sandbox available");
let spec = Spec::new("/usr/bin/python3".into(), vec!["-c".into(), "print(1)".into()], "/tmp/scratch".into());
let prepared = sandbox.command(&spec, &Default::default()).expect("prepared");
```
*/
#![deny(missing_docs)]

pub mod cgroup;
mod doctor;
mod helper;
mod identity;
mod root;
mod seccomp;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use proctor_core::Limits;
use serde::{Deserialize, Serialize};

pub use doctor::{doctor, Report};
pub use helper::{helper_main, read_reports, ExitReport, Reports};
pub use identity::{hand_over, RunId, ID_BLOCK};
pub use root::{scratch_options, SHM_BYTES};
pub use seccomp::denied_syscalls;

/// The hidden subcommand under which the `proctor` binary acts as the sandbox helper.
pub const HELPER_SUBCOMMAND: &str = "__sandbox";
/// File descriptor on which init reports how the worker ended (a `SOCK_SEQPACKET` socket,
/// one JSON message per report; the scratch tmpfs's root travels on it as an fd).
pub const STATUS_FD: i32 = 3;
/// File descriptor passed through to the worker when [`Spec::pass_fd`] is set.
pub const PASSED_FD: i32 = 4;

/// Errors that keep the sandbox from running anything.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A kernel feature the sandbox needs is missing or not available to this user.
    #[error("sandbox unavailable: {feature} is missing; {how} (or pass --no-sandbox to run UNSAFELY without confinement)")]
    MissingFeature {
        /// What is missing.
        feature: String,
        /// How to enable it.
        how: String,
    },
    /// Creating or configuring a cgroup failed.
    #[error("cgroup error: {0}")]
    Cgroup(String),
    /// Building or installing the seccomp filter failed.
    #[error("seccomp error: {0}")]
    Seccomp(String),
    /// The helper could not set up the confinement.
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    /// An I/O error while preparing a run.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// What one confined process runs and may touch. Serialized to the helper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// Absolute path of the program.
    pub program: PathBuf,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// The complete environment of the program.
    pub env: Vec<(String, String)>,
    /// Working directory; normally the run's scratch.
    pub cwd: PathBuf,
    /// Readable (never writable) paths, beyond the system's libraries.
    pub read_only: Vec<PathBuf>,
    /// Writable paths: the run's scratch.
    pub read_write: Vec<PathBuf>,
    /// Keep the host's network (trusted steps only).
    pub network: bool,
    /// `cgroup.procs` files the helper joins before confining itself.
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
    /// Pass the caller's fd [`PASSED_FD`] through to the program.
    #[serde(default)]
    pub pass_fd: bool,
    /// Root mode: the unprivileged uid and gid the program runs as (see [`RunId`]); for a
    /// warm parent, the first host id of its block.
    #[serde(default)]
    pub run_id: Option<u32>,
    /// The warm zygote: root of its own user namespace (with a block of ids when proctor
    /// runs as root), no landlock, `unshare` and `mount` allowed, and the full seccomp
    /// filter handed over in `PROCTOR_CHILD_SECCOMP` for each forked child to install.
    #[serde(default)]
    pub warm_parent: bool,
    /// The disk quota: when set, the run's scratch (`cwd`) is a fresh tmpfs of this many
    /// bytes (its pages charged to the run's memory cgroup) instead of a bind of the host
    /// directory, and init hands its root to the caller (see [`read_reports`]), which copies
    /// out what it needs; the tmpfs is gone once that descriptor is closed.
    #[serde(default)]
    pub scratch_bytes: Option<u64>,
}

impl Spec {
    /// A spec with no extra paths, no network and a minimal environment.
    pub fn new(program: PathBuf, args: Vec<String>, cwd: PathBuf) -> Spec {
        Spec {
            program,
            args,
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            read_write: vec![cwd.clone()],
            cwd,
            read_only: Vec::new(),
            network: false,
            cgroup_procs: Vec::new(),
            pass_fd: false,
            run_id: None,
            warm_parent: false,
            scratch_bytes: None,
        }
    }
}

/// System paths every sandboxed program may read: shared libraries, locale and time zone data,
/// fonts. Nothing under a home directory, nothing secret (`/etc/shadow` is not here).
pub const SYSTEM_READ_ONLY: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/fonts",
    "/etc/mime.types",
    "/proc",
    "/sys/devices/system/cpu",
    "/dev/urandom",
    "/dev/random",
];

/// Device files and private mounts every sandboxed program may write.
pub const SYSTEM_READ_WRITE: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/shm"];

/// A machine's sandbox: the helper binary and the cgroup root, checked once.
#[derive(Debug, Clone)]
pub struct Sandbox {
    helper: PathBuf,
    cgroups: cgroup::CgroupRoot,
}

/// A helper command ready to spawn, with the run's cgroup and the read end of the status pipe.
pub struct Prepared {
    /// The helper process to spawn (stdin/stdout/stderr still to be chosen by the caller).
    pub command: std::process::Command,
    /// The run's cgroup; the caller kills and removes it when the run ends.
    pub cgroup: cgroup::Cgroup,
    /// Where init reports the worker's end (see [`read_reports`]).
    pub status: OwnedFd,
    /// The parent's copy of the status socket's other end: drop it right after spawning,
    /// so that reading [`Prepared::status`] ends when the sandbox does.
    pub status_writer: OwnedFd,
    /// Root mode: the id the program runs as, already owning its writable paths. Keep it
    /// until the run has ended and its files are gone; dropping it frees the id.
    pub run_id: Option<RunId>,
}

impl Sandbox {
    /// Checks the kernel features and finds the cgroup root; fails closed with the missing
    /// feature named. `helper` is the `proctor` binary (usually `std::env::current_exe()`).
    pub fn detect(helper: PathBuf) -> Result<Sandbox, SandboxError> {
        doctor::require_kernel_features()?;
        let cgroups = cgroup::CgroupRoot::detect()?;
        cgroups.sweep_stale();
        Ok(Sandbox { helper, cgroups })
    }

    /// The cgroup interface in use.
    pub fn cgroups(&self) -> &cgroup::CgroupRoot {
        &self.cgroups
    }

    /// Creates the run's cgroup and the helper command for `spec`. The caller spawns it;
    /// `pass_fd`, when given, becomes the program's fd [`PASSED_FD`].
    pub fn command(&self, spec: &Spec, limits: &Limits) -> Result<Prepared, SandboxError> {
        self.command_with_fd(spec, limits, None)
    }

    /// Like [`Sandbox::command`], passing `fd` through to the program as [`PASSED_FD`].
    pub fn command_with_fd(
        &self,
        spec: &Spec,
        limits: &Limits,
        fd: Option<&OwnedFd>,
    ) -> Result<Prepared, SandboxError> {
        let cgroup = self.cgroups.create(limits)?;
        let mut spec = spec.clone();
        spec.cgroup_procs = cgroup.procs_files();
        spec.pass_fd = fd.is_some();
        let run_id = match (nix::unistd::geteuid().is_root(), spec.warm_parent) {
            (false, _) => None,
            (true, false) => Some(RunId::allocate()),
            (true, true) => Some(RunId::allocate_block()),
        };
        if let Some(id) = &run_id {
            for path in &spec.read_write {
                hand_over(path, id.uid())?;
            }
            spec.run_id = Some(id.uid());
        }
        let (status_read, status_write) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| SandboxError::Io {
            context: "cannot create the status socket".into(),
            source: e.into(),
        })?;
        let json = serde_json::to_string(&spec).expect("spec serializes");
        let mut command = std::process::Command::new(&self.helper);
        command.arg(HELPER_SUBCOMMAND).arg(json).env_clear();
        let status_raw = status_write.as_raw_fd();
        let passed_raw = fd.map(|f| f.as_raw_fd());
        // SAFETY: only fcntl and dup2 (async-signal-safe) run between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Move both out of the way first so neither target clobbers the other source;
                // dup2 onto the target then clears close-on-exec.
                let high = |fd: i32| {
                    let r = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                    if r < 0 {
                        Err(std::io::Error::last_os_error())
                    } else {
                        Ok(r)
                    }
                };
                let status = high(status_raw)?;
                let passed = passed_raw.map(high).transpose()?;
                if libc::dup2(status, STATUS_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(passed) = passed {
                    if libc::dup2(passed, PASSED_FD) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(Prepared {
            command,
            cgroup,
            status: status_read,
            status_writer: status_write,
            run_id,
        })
    }
}
