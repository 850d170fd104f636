//! The sandbox helper: runs as `proctor __sandbox SPEC`, single-threaded, and turns
//! itself into a confined process tree (see the crate docs for the steps).

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;

use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, ABI,
};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::{
    seccomp, SandboxError, Spec, PASSED_FD, STATUS_FD, SYSTEM_READ_ONLY, SYSTEM_READ_WRITE,
};

/// How the sandboxed program ended, reported by init as one JSON line on [`STATUS_FD`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExitReport {
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// Peak resident set of the program (and reaped descendants), KiB.
    pub maxrss_kb: i64,
    /// Set when the sandbox could not be set up; nothing untrusted ran.
    pub setup_error: Option<String>,
}

/// Entry point of the helper; never returns. `spec_json` must be a copy of the command
/// line's argument: the command line itself is wiped.
pub fn helper_main(spec_json: &str) -> ! {
    wipe_command_line();
    let code = match serde_json::from_str::<Spec>(spec_json) {
        Ok(spec) => run(&spec).unwrap_or_else(|e| setup_failed(&e.to_string())),
        Err(e) => setup_failed(&format!("bad sandbox spec: {e}")),
    };
    std::process::exit(code)
}

/// Overwrites this process's command line (the spec: environment, paths, cgroups, ids)
/// with zeros, so that `/proc/<init>/cmdline`, which a run can read, shows nothing of it.
/// The kernel reads it from the memory between `arg_start` and `arg_end` (fields 48 and 49
/// of `/proc/self/stat`, counted after the parenthesised command name).
fn wipe_command_line() {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return;
    };
    let Some((_, after_name)) = stat.rsplit_once(')') else {
        return;
    };
    // Fields after the name start at field 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<usize>().ok());
    if let (Some(start), Some(end)) = (field(48), field(49)) {
        if start != 0 && end > start {
            // SAFETY: [arg_start, arg_end) is this process's own argument area on its
            // initial stack, writable and no longer read (the caller holds a copy).
            unsafe { std::ptr::write_bytes(start as *mut u8, 0, end - start) };
        }
    }
}

/// Reports that the sandbox could not be set up (nothing untrusted ran); the exit code to use.
fn setup_failed(message: &str) -> i32 {
    report(&ExitReport {
        setup_error: Some(message.to_string()),
        ..ExitReport::default()
    });
    126
}

fn report(r: &ExitReport) {
    // SAFETY: STATUS_FD was placed by the parent; ManuallyDrop keeps it open for init's later use.
    let mut f = std::mem::ManuallyDrop::new(unsafe { fs::File::from_raw_fd(STATUS_FD) });
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    let _ = f.write_all(&line);
}

/// Sends the roots of the scratch tmpfs and of `/dev/shm` to the caller on [`STATUS_FD`]:
/// they outlive the run's namespaces for as long as the caller holds them, and go with
/// the last descriptor.
fn hand_scratch(mounts: &[std::os::fd::OwnedFd; 2]) -> Result<(), SandboxError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let fds = mounts.each_ref().map(|fd| fd.as_raw_fd());
    let iov = [std::io::IoSlice::new(SCRATCH_MESSAGE)];
    sendmsg::<()>(
        STATUS_FD,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
    .map_err(|e| setup("handing over the scratch", e))
}

/// The message that carries the scratch's and `/dev/shm`'s descriptors on [`STATUS_FD`].
const SCRATCH_MESSAGE: &[u8] = b"scratch";

/// What init reported: how the worker ended, and the scratch tmpfs's root when the run
/// had a disk quota.
#[derive(Debug, Default)]
pub struct Reports {
    /// The worker's end, when init saw it.
    pub exit: Option<ExitReport>,
    /// The root of the scratch tmpfs (see [`Spec::scratch_bytes`]).
    pub scratch: Option<std::os::fd::OwnedFd>,
}

/// Reads init's reports from [`crate::Prepared::status`] until the sandbox has ended
/// (blocking). A setup error (nothing untrusted ran) is returned as `Err`. As soon as init
/// hands them over (before the run starts), `mounted` is shown the roots of the run's
/// scratch tmpfs and of its `/dev/shm`, to be watched while it runs.
pub fn read_reports(
    status: std::os::fd::OwnedFd,
    mut mounted: impl FnMut(&std::os::fd::OwnedFd, &std::os::fd::OwnedFd),
) -> Result<Reports, String> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut reports = Reports::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(
            status.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        let len = msg.bytes;
        for cmsg in msg.cmsgs().into_iter().flatten() {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                // SAFETY: the kernel just installed these descriptors for us.
                let mut fds = fds
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
                if let (Some(scratch), Some(shm)) = (fds.next(), fds.next()) {
                    mounted(&scratch, &shm);
                    reports.scratch.get_or_insert(scratch);
                }
            }
        }
        if len == 0 {
            break;
        }
        if let Ok(report) = serde_json::from_slice::<ExitReport>(buf[..len].trim_ascii()) {
            if let Some(err) = report.setup_error {
                return Err(err);
            }
            reports.exit = Some(report);
        }
    }
    Ok(reports)
}

fn setup(context: &str, e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(format!("{context}: {e}"))
}

fn die_with_parent() -> Result<(), SandboxError> {
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        return Err(setup(
            "prctl(PR_SET_PDEATHSIG)",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn run(spec: &Spec) -> Result<i32, SandboxError> {
    let parent = nix::unistd::getppid();
    die_with_parent()?;
    if nix::unistd::getppid() != parent {
        return Err(setup("parent", "proctor exited before the sandbox started"));
    }
    let me = std::process::id().to_string();
    for procs in &spec.cgroup_procs {
        fs::write(procs, &me)
            .map_err(|e| setup(&format!("joining cgroup {}", procs.display()), e))?;
    }
    let root = nix::unistd::geteuid().is_root();
    if !root {
        if spec.warm_parent {
            enter_warm_user_namespace()?;
        } else {
            enter_user_namespace()?;
        }
    }
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if !spec.network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| {
        SandboxError::MissingFeature {
            feature: format!("namespaces (unshare failed: {e})"),
            how: "enable user namespaces: sysctl -w kernel.unprivileged_userns_clone=1 (Debian) or kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu), or run as root".into(),
        }
    })?;
    let filters = seccomp::build(spec.network, spec.warm_parent)?;
    let child_filters = match spec.warm_parent {
        true => Some(seccomp::build(spec.network, false)?.to_hex()),
        false => None,
    };
    // SAFETY: this process is single-threaded (a fresh exec of the helper).
    match unsafe { fork() }.map_err(|e| setup("fork of init", e))? {
        ForkResult::Child => {
            let code = init(spec, &filters, child_filters.as_deref())
                .unwrap_or_else(|e| setup_failed(&e.to_string()));
            std::process::exit(code)
        }
        ForkResult::Parent { child } => Ok(wait_exit_code(child)),
    }
}

fn wait_exit_code(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 125,
        }
    }
}

fn enter_user_namespace() -> Result<(), SandboxError> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| SandboxError::MissingFeature {
        feature: format!("unprivileged user namespaces (unshare(CLONE_NEWUSER) failed: {e})"),
        how: "enable them: sysctl -w kernel.unprivileged_userns_clone=1 (Debian), sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 24.04+), or user.max_user_namespaces>0".into(),
    })?;
    fs::write("/proc/self/setgroups", "deny").map_err(|e| setup("writing setgroups", e))?;
    fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))
        .map_err(|e| setup("writing uid_map", e))?;
    fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))
        .map_err(|e| setup("writing gid_map", e))?;
    Ok(())
}

/// The warm zygote's user namespace when proctor is not root: the zygote is its root (so
/// that each child can unshare its IPC and mount namespaces and mount its own `/dev/shm`),
/// the caller's own id mapped to 0, no capability on the host. (As root, see [`id_block`].)
fn enter_warm_user_namespace() -> Result<(), SandboxError> {
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| SandboxError::MissingFeature {
        feature: format!("user namespaces (unshare(CLONE_NEWUSER) failed: {e})"),
        how: "enable them: sysctl -w kernel.unprivileged_userns_clone=1 (Debian), sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 24.04+), or user.max_user_namespaces>0".into(),
    })?;
    fs::write("/proc/self/setgroups", "deny").map_err(|e| setup("writing setgroups", e))?;
    fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
        .map_err(|e| setup("writing uid_map", e))?;
    fs::write("/proc/self/gid_map", format!("0 {gid} 1")).map_err(|e| setup("writing gid_map", e))
}

/// As root, the warm zygote (the worker) enters a user namespace of its own once init has
/// built the root, and init maps `0..ID_BLOCK` to the host ids `base..` (only a process
/// outside the namespace may map a range): the zygote is the namespace's root (host id
/// `base`) and each child takes one id of the block.
mod id_block {
    use super::*;
    use std::os::fd::{AsRawFd, OwnedFd};

    /// Pipes between init and the worker: "unshared" one way, "mapped" the other.
    pub struct Sync {
        unshared: (OwnedFd, OwnedFd),
        mapped: (OwnedFd, OwnedFd),
    }

    pub fn pipes() -> Result<Sync, SandboxError> {
        let pipe = || nix::unistd::pipe().map_err(|e| setup("pipe", e));
        Ok(Sync {
            unshared: pipe()?,
            mapped: pipe()?,
        })
    }

    fn signal(fd: OwnedFd) -> bool {
        fs::File::from(fd).write_all(b"x").is_ok()
    }

    fn wait(fd: &OwnedFd) -> bool {
        let mut byte = [0u8; 1];
        nix::unistd::read(fd.as_raw_fd(), &mut byte).is_ok_and(|n| n == 1)
    }

    /// In the worker: unshare, let init map, become the namespace's root.
    pub fn enter(sync: Sync) -> Result<(), SandboxError> {
        let Sync { unshared, mapped } = sync;
        drop((unshared.0, mapped.1));
        unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| setup("unshare(CLONE_NEWUSER)", e))?;
        if !signal(unshared.1) || !wait(&mapped.0) {
            return Err(setup("mapping the zygote's ids", "init did not map them"));
        }
        // SAFETY: plain syscalls with constant arguments.
        let failed = unsafe {
            libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(0, 0, 0) != 0
                || libc::setresuid(0, 0, 0) != 0
        };
        if failed {
            return Err(setup(
                "becoming the namespace's root",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// In init: once the worker has unshared, write its maps.
    pub fn map(sync: Sync, worker: Pid, base: u32) -> Result<(), SandboxError> {
        let Sync { unshared, mapped } = sync;
        drop((unshared.1, mapped.0));
        if !wait(&unshared.0) {
            return Err(setup(
                "mapping the zygote's ids",
                "the worker did not unshare",
            ));
        }
        let range = format!("0 {base} {}", crate::identity::ID_BLOCK);
        for name in ["uid_map", "gid_map"] {
            fs::write(format!("/proc/{worker}/{name}"), &range)
                .map_err(|e| setup(&format!("writing {name}"), e))?;
        }
        if !signal(mapped.1) {
            return Err(setup("mapping the zygote's ids", "the worker is gone"));
        }
        Ok(())
    }
}

/// pid 1 of the new pid namespace: mounts, forks the worker, reaps, reports.
fn init(
    spec: &Spec,
    filters: &seccomp::Filters,
    child_filters: Option<&str>,
) -> Result<i32, SandboxError> {
    die_with_parent()?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| setup("making mounts private", e))?;
    let (uid, gid) = match spec.run_id {
        Some(id) if !spec.warm_parent => (id, id),
        _ => (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        ),
    };
    if let Some(mounts) = crate::root::enter(crate::root::plan(spec)?, uid, gid, &spec.cwd)? {
        hand_scratch(&mounts)?;
    }
    // SAFETY: single-threaded.
    let block = match (spec.warm_parent, spec.run_id) {
        (true, Some(base)) => Some((id_block::pipes()?, base)),
        _ => None,
    };
    let worker = match unsafe { fork() }.map_err(|e| setup("fork of worker", e))? {
        ForkResult::Child => {
            let entered = match block {
                Some((sync, _)) => id_block::enter(sync),
                None => Ok(()),
            };
            let failure = match entered {
                Ok(()) => exec_worker(spec, filters, child_filters),
                Err(e) => e,
            };
            let code = setup_failed(&failure.to_string());
            // SAFETY: leaving the forked worker without running destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    if let Some((sync, base)) = block {
        id_block::map(sync, worker, base)?;
    }
    if spec.pass_fd {
        // SAFETY: init does not use the passed fd; only the worker keeps it.
        unsafe { libc::close(PASSED_FD) };
    }
    // Reap everything; the worker's end ends the run (and, by init's exit, the namespace).
    loop {
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: plain wait4 with valid out-pointers.
        let pid = unsafe { libc::wait4(-1, &mut status, 0, &mut usage) };
        if pid < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Ok(125);
        }
        if pid != worker.as_raw() {
            continue;
        }
        let mut children: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid out-pointer.
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut children) };
        let (exit_code, signal) = if libc::WIFEXITED(status) {
            (Some(libc::WEXITSTATUS(status)), None)
        } else {
            (None, Some(libc::WTERMSIG(status)))
        };
        report(&ExitReport {
            exit_code,
            signal,
            maxrss_kb: usage.ru_maxrss.max(children.ru_maxrss),
            setup_error: None,
        });
        return Ok(exit_code.unwrap_or(128 + signal.unwrap_or(0)));
    }
}

/// In the worker: drop privileges, confine, exec. Returns only on failure.
fn exec_worker(
    spec: &Spec,
    filters: &seccomp::Filters,
    child_filters: Option<&str>,
) -> SandboxError {
    match confine(spec, filters) {
        Ok(()) => {}
        Err(e) => return e,
    }
    let program = match CString::new(spec.program.as_os_str().as_bytes()) {
        Ok(p) => p,
        Err(e) => return setup("program path", e),
    };
    let mut argv = vec![program.clone()];
    for a in &spec.args {
        match CString::new(a.as_bytes()) {
            Ok(a) => argv.push(a),
            Err(e) => return setup("argument", e),
        }
    }
    let mut envp = Vec::new();
    let handed = child_filters.map(|f| ("PROCTOR_CHILD_SECCOMP".to_string(), f.to_string()));
    for (k, v) in spec.env.iter().chain(&handed) {
        match CString::new(format!("{k}={v}")) {
            Ok(e) => envp.push(e),
            Err(e) => return setup("environment", e),
        }
    }
    // Only stdio, and the passed fd if asked, survive into the program. Close-on-exec
    // rather than close, so that a failed exec can still report on STATUS_FD.
    let keep_until = if spec.pass_fd {
        PASSED_FD
    } else {
        STATUS_FD - 1
    };
    // SAFETY: marking fds this process owns; CLOSE_RANGE_CLOEXEC exists since Linux 5.11.
    let marked = unsafe {
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        libc::syscall(
            libc::SYS_close_range,
            (keep_until + 1) as u32,
            u32::MAX,
            CLOSE_RANGE_CLOEXEC,
        ) == 0
            && libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC) == 0
    };
    if !marked {
        // A descriptor could leak into the program: refuse rather than run.
        return setup(
            "marking descriptors close-on-exec",
            std::io::Error::last_os_error(),
        );
    }
    match nix::unistd::execve(&program, &argv, &envp) {
        Ok(never) => match never {},
        Err(e) => setup(&format!("cannot execute {}", spec.program.display()), e),
    }
}

fn confine(spec: &Spec, filters: &seccomp::Filters) -> Result<(), SandboxError> {
    std::env::set_current_dir(&spec.cwd)
        .map_err(|e| setup(&format!("entering {}", spec.cwd.display()), e))?;
    set_rlimit(libc::RLIMIT_CORE, 0)?;
    // The warm zygote keeps its capabilities inside its own user namespace (none on the
    // host) and has no landlock domain (it would forbid mounts): each child confines itself.
    if nix::unistd::geteuid().is_root() && !spec.warm_parent {
        drop_capabilities(spec.run_id)?;
    }
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(setup("no_new_privs", std::io::Error::last_os_error()));
    }
    if !spec.warm_parent {
        restrict_filesystem(spec)?;
    }
    seccomp::apply(filters)
}

/// Root becomes the run's own unprivileged id (see [`crate::RunId`]) and loses every
/// capability for good: securebits stop exec from granting them back, the bounding set
/// is emptied, changing uid clears the current sets, and they are cleared again to be sure.
fn drop_capabilities(run_id: Option<u32>) -> Result<(), SandboxError> {
    const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
    const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
    const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
    const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
    const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
    const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;
    // Without NO_SETUID_FIXUP (locked off): leaving uid 0 below clears every capability.
    let bits = SECBIT_NOROOT
        | SECBIT_NOROOT_LOCKED
        | SECBIT_NO_SETUID_FIXUP_LOCKED
        | SECBIT_KEEP_CAPS_LOCKED
        | SECBIT_NO_CAP_AMBIENT_RAISE
        | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let fail = |what: &str| setup(what, std::io::Error::last_os_error());
    // SAFETY: prctl/capset with valid arguments and pointers to locals.
    unsafe {
        if libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) != 0 {
            return Err(fail("setting securebits"));
        }
        for cap in 0..=63 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
            {
                return Err(fail("dropping the capability bounding set"));
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        if let Some(id) = run_id {
            if libc::setgroups(0, std::ptr::null()) != 0 {
                return Err(fail("dropping supplementary groups"));
            }
            if libc::setresgid(id, id, id) != 0 {
                return Err(fail("setresgid"));
            }
            if libc::setresuid(id, id, id) != 0 {
                return Err(fail("setresuid"));
            }
        }
        let header = CapHeader {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
            return Err(fail("clearing capabilities"));
        }
    }
    Ok(())
}

fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> Result<(), SandboxError> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: valid pointer to a local.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(setup("setrlimit", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The landlock ABI the ruleset is written for; the kernel may offer more.
const LANDLOCK_ABI: ABI = ABI::V5;

fn restrict_filesystem(spec: &Spec) -> Result<(), SandboxError> {
    let existing = |paths: Vec<std::path::PathBuf>| -> Vec<std::path::PathBuf> {
        paths.into_iter().filter(|p| p.exists()).collect()
    };
    let read_only = existing(
        SYSTEM_READ_ONLY
            .iter()
            .map(Into::into)
            .chain(spec.read_only.iter().cloned())
            .collect(),
    );
    let read_write = existing(
        SYSTEM_READ_WRITE
            .iter()
            .map(Into::into)
            .chain(spec.read_write.iter().cloned())
            .collect(),
    );
    let ll = |e: landlock::RulesetError| setup("landlock", e);
    let ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))
        .map_err(ll)?;
    // Signals and abstract unix sockets stay inside the run (kernels with landlock ABI 6+).
    let ruleset = ruleset.scope(Scope::from_all(ABI::V6)).map_err(ll)?;
    let status = ruleset
        .create()
        .map_err(ll)?
        .add_rules(path_beneath_rules(
            &read_only,
            AccessFs::from_read(LANDLOCK_ABI),
        ))
        .map_err(ll)?
        .add_rules(path_beneath_rules(
            &read_write,
            AccessFs::from_all(LANDLOCK_ABI),
        ))
        .map_err(ll)?
        .restrict_self()
        .map_err(ll)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(SandboxError::MissingFeature {
            feature: "landlock".into(),
            how: "boot a kernel ≥ 5.13 with landlock in the lsm= list (e.g. lsm=landlock,lockdown,yama,apparmor)".into(),
        });
    }
    Ok(())
}
