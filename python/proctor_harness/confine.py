"""Confinement of a forked child of the zygote.

PROCTOR_TEST_WITHOUT_LANDLOCK_SCOPING=1 in the zygote's environment (tests only) leaves
landlock's signal and abstract-socket scoping off, as on kernels before landlock ABI 6, to
show that the pid namespace alone keeps siblings apart.

The zygote runs in the run's private root (see the sandbox crate) as root of its own user
namespace, without landlock, so that each child can build its own world cheaply: its own
IPC namespace and /dev/shm (`isolate`), its scratch as a tmpfs of its disk quota
(`scratch`), its own uid (`drop_privileges`), a landlock
ruleset limited to its own run directory with signals and abstract unix sockets scoped
to itself (`restrict`), and the cold run's seccomp filter (`seccomp`).
"""
import ctypes
import json
import os
import signal

_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446
_RULE_PATH_BENEATH = 1
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1, 2, 4, 8
_FILE_ONLY = {1: 0b111, 2: 0b111, 3: 0b111 | 1 << 14, 4: 0b111 | 1 << 14, 5: 0b111 | 1 << 14 | 1 << 15}
_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _check(ret, what):
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock {what}: {os.strerror(err)}")
    return ret


def restrict(read_only, read_write):
    """Allows reading `read_only`, everything under `read_write`, nothing else."""
    abi = _check(_libc.syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1)), "abi")
    level = min(abi, 5)
    handled = _ALL_BY_ABI[level]
    scoped = abi >= 6 and os.environ.get("PROCTOR_TEST_WITHOUT_LANDLOCK_SCOPING") != "1"
    attr = _RulesetAttr(handled, 0, (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if scoped else 0)
    size = ctypes.sizeof(_RulesetAttr) if scoped else 16
    ruleset = _check(_libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)), "create")
    try:
        read = _EXECUTE | _READ_FILE | _READ_DIR
        for paths, access in ((read_only, read), (read_write, handled)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    allowed = access
                    if not os.path.isdir(path):
                        allowed &= _FILE_ONLY[level]
                    rule = _PathBeneath(allowed, fd)
                    _check(_libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)), f"rule {path}")
                finally:
                    os.close(fd)
        _check(_libc.prctl(38, 1, 0, 0, 0), "no_new_privs")  # PR_SET_NO_NEW_PRIVS
        _check(_libc.syscall(_SYS_RESTRICT, ruleset, ctypes.c_uint32(0)), "restrict")
    finally:
        os.close(ruleset)


# --- A warm child's own world (the zygote keeps the rights to build it; the child drops them) ---

_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWPID = 0x00020000, 0x08000000, 0x20000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_PR_CAPBSET_DROP, _PR_SET_SECUREBITS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 28, 47, 4
# NOROOT, NO_SETUID_FIXUP and KEEP_CAPS locked (the last two off), no ambient raise, locked.
_SECUREBITS = 0x01 | 0x02 | 0x08 | 0x20 | 0x40 | 0x80

_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _sys(ret, what):
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def isolate(shm_bytes):
    """Own IPC namespace and /dev/shm: what a run leaves there (files, SysV segments)
    dies with it, and a full /dev/shm is its own problem. Cheap: one unshare, one mount."""
    _sys(_libc.unshare(_CLONE_NEWNS | _CLONE_NEWIPC), "unshare")
    options = f"size={shm_bytes},mode=1777".encode()
    _sys(_libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", _MS_NOSUID | _MS_NODEV, options), "mounting /dev/shm")


def own_pid_namespace(report_fd):
    """Moves the run into a pid namespace of its own, under a tiny init: `kill(-1)` reaches
    only the run's own processes (never a sibling or the zygote, whatever the ids or the
    kernel's landlock), its /proc lists only them, and when the run ends its init is killed
    and with it whatever the run left. The run is pid 2, not 1: signals keep their default
    actions (pid 1 ignores those it has no handler for) and its orphans are reaped by init,
    not left as its zombies. This process stays outside as the run's reaper: both are its
    children (after unshare, its first child is the namespace's pid 1, the next pid 2); it
    waits for the run, then for init, and reports how the run ended on `report_fd` (see
    `_report`) before it ends the same way, so the zygote sees the run's end too. Only the
    run returns, without `report_fd`."""
    _sys(_libc.unshare(_CLONE_NEWPID), "unshare(CLONE_NEWPID)")
    init = _spawn_init()
    pid = os.fork()
    if pid == 0:
        os.close(report_fd)
        flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
        _sys(_libc.mount(b"proc", b"/proc", b"proc", flags, None), "mounting /proc")
        return
    # The run's pipes and control socket are the run's alone.
    os.closerange(0, report_fd)
    os.closerange(report_fd + 1, 1 << 30)
    _, status, usage = os.wait4(pid, 0)
    # Init's end kills what the run left, and once init is reaped the kernel guarantees that
    # nothing of the namespace is left: the run's pipes are closed.
    os.kill(init, signal.SIGKILL)
    os.waitpid(init, 0)
    _report(report_fd, status, usage.ru_maxrss)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL, SIGSTOP: default already
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def _report(fd, status, maxrss_kb):
    """Tells proctor how the run ended, one JSON line, before this process exits: its exit
    frees a copy of the zygote's address space (milliseconds of page tables) that proctor
    need not wait for. Proctor may have stopped listening (a session it closed)."""
    line = json.dumps({
        "exit_code": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "maxrss_kb": maxrss_kb,
    }) + "\n"
    try:
        os.write(fd, line.encode())
    except OSError:
        pass


def _spawn_init():
    """Starts pid 1 of the new namespace: `sleep`, spawned without copying the zygote's
    memory (vfork and exec: a fork of this process would cost milliseconds of page tables),
    with SIGCHLD ignored, so that the kernel reaps the orphans it is handed; it has no signal
    handler, so nothing in the namespace can signal it, and none of the run's descriptors."""
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    actions = [(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)]
    actions += [(os.POSIX_SPAWN_CLOSE, int(fd)) for fd in os.listdir("/proc/self/fd") if int(fd) > 2]
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # kept across exec
    try:
        return os.posix_spawn(_SLEEP, [_SLEEP, "infinity"], {}, file_actions=actions)
    finally:
        signal.signal(signal.SIGCHLD, previous)
        os.close(null)


_SLEEP = next(p for p in ("/usr/bin/sleep", "/bin/sleep") if os.path.exists(p))


def scratch(path, options, uid):
    """Mounts the run's scratch, a tmpfs of its disk quota (`options` from proctor, its pages
    charged to the run's memory cgroup), over `path` with a `.tmp` of the run's own, and
    returns a descriptor of its root for proctor, which copies out what it needs and frees
    the whole tmpfs by closing it. Nothing the run writes there reaches the host's disk."""
    _sys(_libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", _MS_NOSUID | _MS_NODEV, options.encode()), "mounting the scratch")
    tmp = os.path.join(path, ".tmp")
    os.mkdir(tmp, 0o700)
    os.chown(tmp, uid, uid)
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_privileges(uid):
    """Becomes `uid` of the zygote's user namespace (a host id of its own, when proctor
    runs as root) and loses every capability for good, exec included."""
    _sys(_libc.prctl(_PR_SET_SECUREBITS, _SECUREBITS, 0, 0, 0), "securebits")
    for cap in range(64):
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 and ctypes.get_errno() != 22:  # EINVAL: no such cap
            _sys(-1, "dropping the bounding set")
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if uid != 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    data = (_CapData * 2)()
    _sys(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), data), "capset")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp(programs):
    """Installs the run's seccomp filters, compiled by proctor (hex, comma-separated)."""
    for hexed in programs.split(","):
        raw = bytes.fromhex(hexed)
        buf = ctypes.create_string_buffer(raw, len(raw))
        prog = _SockFprog(len(raw) // 8, ctypes.cast(buf, ctypes.c_void_p))
        _sys(_libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0), "seccomp")
