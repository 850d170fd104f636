//! The seccomp filter applied to every sandboxed process: privileged and
//! escape-prone system calls fail with `EPERM`, and without network every socket
//! family but `AF_UNIX` is refused.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::SandboxError;

/// System calls no sandboxed run may make.
const DENIED: &[(&str, libc::c_long)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsmount", libc::SYS_fsmount),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    // Watching files reveals other runs' and the host's activity in directories a run
    // may not even read.
    ("inotify_init1", libc::SYS_inotify_init1),
    ("inotify_add_watch", libc::SYS_inotify_add_watch),
    ("fanotify_mark", libc::SYS_fanotify_mark),
];

/// The names of the denied system calls, for `doctor` and the docs.
pub fn denied_syscalls() -> Vec<&'static str> {
    let mut names: Vec<&str> = DENIED.iter().map(|(n, _)| *n).collect();
    names.extend(["clone3", "clone(CLONE_NEW*)", "socket(!AF_UNIX)"]);
    names
}

fn arch() -> TargetArch {
    #[cfg(target_arch = "x86_64")]
    {
        TargetArch::x86_64
    }
    #[cfg(target_arch = "aarch64")]
    {
        TargetArch::aarch64
    }
}

/// What the warm zygote may still do so that each child can build its own world
/// (children install the full filter themselves, see [`Filters::to_hex`]).
const WARM_PARENT_ALLOWED: &[libc::c_long] = &[libc::SYS_unshare, libc::SYS_mount];

/// Builds the filter program. Built before fork, installed right before exec.
/// `warm_parent` keeps `unshare` and `mount` for the zygote.
pub fn build(network: bool, warm_parent: bool) -> Result<Filters, SandboxError> {
    let err = |e: &dyn std::fmt::Display| SandboxError::Seccomp(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in DENIED {
        if !(warm_parent && WARM_PARENT_ALLOWED.contains(nr)) {
            rules.insert(*nr, vec![]);
        }
    }
    // clone(2) creating namespaces: one rule per flag (rules of a syscall are OR-ed).
    let ns_flags = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
    ];
    let mut clone_rules = Vec::new();
    for flag in ns_flags {
        let flag = flag as u64;
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .map_err(|e| err(&e))?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(|e| err(&e))?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    if !network {
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Ne,
            libc::AF_UNIX as u64,
        )
        .map_err(|e| err(&e))?;
        rules.insert(
            libc::SYS_socket,
            vec![SeccompRule::new(vec![cond]).map_err(|e| err(&e))?],
        );
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch(),
    )
    .map_err(|e| err(&e))?;
    let main: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| err(&e))?;
    // clone3 passes its flags in memory, where seccomp cannot look; answering ENOSYS
    // makes libc fall back to clone(2), whose flags the main filter checks.
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch(),
    )
    .map_err(|e| err(&e))?;
    let clone3: BpfProgram = clone3
        .try_into()
        .map_err(|e: seccompiler::BackendError| err(&e))?;
    Ok(Filters { main, clone3 })
}

/// The compiled filters, installed together by [`apply`].
pub struct Filters {
    main: BpfProgram,
    clone3: BpfProgram,
}

impl Filters {
    /// The programs as hex (8 bytes per instruction, native layout), comma-separated:
    /// how the warm zygote hands the full filter to each child (`confine.seccomp`).
    pub fn to_hex(&self) -> String {
        [&self.main, &self.clone3]
            .iter()
            .map(|program| {
                program
                    .iter()
                    .flat_map(|i| {
                        let mut b = Vec::with_capacity(8);
                        b.extend(i.code.to_ne_bytes());
                        b.extend([i.jt, i.jf]);
                        b.extend(i.k.to_ne_bytes());
                        b
                    })
                    .map(|byte| format!("{byte:02x}"))
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Installs the filter on the calling thread (no_new_privs must be set).
pub fn apply(filters: &Filters) -> Result<(), SandboxError> {
    for program in [&filters.main, &filters.clone3] {
        seccompiler::apply_filter(program).map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    }
    Ok(())
}
