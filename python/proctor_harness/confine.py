"""Per-run landlock confinement of a forked child (stacked on the zygote's own ruleset).

The zygote may touch every run directory of its pool; each child narrows that down to its
own directory, and scopes signals and abstract unix sockets to itself, so that siblings
can neither read each other's files nor signal each other.
"""
import ctypes
import os

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
    attr = _RulesetAttr(handled, 0, (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else 16
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
