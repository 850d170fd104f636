//! What the machine offers the sandbox, for `proctor doctor` and for failing closed.

use std::fs;

use serde::Serialize;

use crate::cgroup::CgroupRoot;
use crate::SandboxError;

/// The sandbox's view of this machine.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `uname -r`.
    pub kernel: String,
    /// Whether proctor runs as root (then each run gets its own unprivileged uid, see [`crate::RunId`]).
    pub root: bool,
    /// Landlock ABI version, 0 when unavailable.
    pub landlock_abi: i64,
    /// Whether seccomp filters are available.
    pub seccomp: bool,
    /// Whether this user can create the namespaces the sandbox needs.
    pub namespaces: bool,
    /// Cgroup interface and the parents run cgroups go under, when usable.
    pub cgroup: Option<CgroupRoot>,
    /// System calls the seccomp filter denies.
    pub denied_syscalls: Vec<&'static str>,
    /// What isolation each run gets here, and what proctor falls back to where the
    /// machine offers less.
    pub isolation: Vec<String>,
    /// Everything missing, each with how to fix it; empty means untrusted code may run.
    pub problems: Vec<String>,
}

impl Report {
    /// Whether the sandbox can run untrusted code here.
    pub fn ready(&self) -> bool {
        self.problems.is_empty()
    }
}

fn landlock_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented version query: null attr, zero size, version flag.
    unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    }
    .max(0)
}

fn seccomp_available() -> bool {
    fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
        .unwrap_or(false)
}

fn read_sysctl(path: &str) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn namespaces_problem(root: bool) -> Option<String> {
    if root {
        return None;
    }
    if read_sysctl("/proc/sys/user/max_user_namespaces") == Some(0) {
        return Some(
            "user namespaces are disabled: sysctl -w user.max_user_namespaces=15000".into(),
        );
    }
    if read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        return Some("unprivileged user namespaces are disabled: sysctl -w kernel.unprivileged_userns_clone=1".into());
    }
    if read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        return Some("AppArmor restricts unprivileged user namespaces: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or run proctor as root".into());
    }
    None
}

fn kernel_problems(root: bool, abi: i64, seccomp: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if abi < 1 {
        problems.push(
            "landlock is missing: boot a kernel ≥ 5.13 with landlock in the lsm= list".into(),
        );
    }
    if !seccomp {
        problems.push("seccomp is missing: use a kernel built with CONFIG_SECCOMP_FILTER".into());
    }
    problems.extend(namespaces_problem(root));
    problems
}

/// Refuses with the first missing kernel feature (cgroups are checked separately).
pub(crate) fn require_kernel_features() -> Result<(), SandboxError> {
    let root = nix::unistd::geteuid().is_root();
    match kernel_problems(root, landlock_abi(), seccomp_available())
        .into_iter()
        .next()
    {
        None => Ok(()),
        Some(problem) => {
            let (feature, how) = problem
                .split_once(": ")
                .unwrap_or((&problem, "see proctor doctor"));
            Err(SandboxError::MissingFeature {
                feature: feature.to_string(),
                how: how.to_string(),
            })
        }
    }
}

/// What each run gets on this machine, fallbacks named.
fn isolation(root: bool, abi: i64) -> Vec<String> {
    use crate::identity::{FIRST_ID, ID_BLOCK};
    let mut said = vec![
        "private root: a run sees only the system libraries, the runtime, the harness and its inputs (read-only binds) and its scratch, with its own /proc, /tmp, /dev/shm and a minimal /dev; host sockets, /root and other runs are not in it".to_string(),
        "private IPC: every run, warm or cold, has its own IPC namespace and /dev/shm".to_string(),
        "own pid namespace: every run, warm or cold, runs in a pid namespace of its own, under a tiny init (the run is not pid 1: signals keep their default actions, orphans are reaped): kill(-1) reaches only its own processes, /proc lists only them, and what it leaves is killed when it ends".to_string(),
        "disk quota: a run's scratch is a tmpfs of its disk_mb (--disk-mb; /tmp and /dev/shm 1 GiB each), in its own mount namespace, whose pages count against its memory limit; a write past it (or past /dev/shm) fails with ENOSPC and the run ends as disk_limit (seen full while it runs or at its end); nothing reaches the host's disk".to_string(),
    ];
    if root {
        said.push(format!("identity: each cold run has a uid/gid of its own (from {FIRST_ID}), each warm zygote a block of {ID_BLOCK} mapped in its user namespace (one id per child); host files and other runs' files belong to ids a run does not have"));
    } else {
        said.push("identity: FALLBACK — every run has your own uid (only root can hand out ids of their own); instead, your files outside a run are not in its world and read-only binds protect those it sees, each run's scratch is a tmpfs in its own mount namespace (a sibling's is not in its world) and its own pid namespace keeps its signals from siblings and the zygote".to_string());
        if abi < 6 {
            said.push("signals: landlock ABI < 6 cannot scope signals; each run's own pid namespace still keeps them from siblings and the zygote".to_string());
        }
    }
    said
}

/// Probes the machine without running anything.
pub fn doctor() -> Report {
    let root = nix::unistd::geteuid().is_root();
    let abi = landlock_abi();
    let seccomp = seccomp_available();
    let mut problems = kernel_problems(root, abi, seccomp);
    let namespaces = namespaces_problem(root).is_none();
    let cgroup = match CgroupRoot::detect() {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    Report {
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        root,
        landlock_abi: abi,
        seccomp,
        namespaces,
        cgroup,
        denied_syscalls: crate::denied_syscalls(),
        isolation: isolation(root, abi),
        problems,
    }
}
