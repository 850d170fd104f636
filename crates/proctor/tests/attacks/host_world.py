"""Tries to change, reach or watch what lies outside the run's own world (issue 14).

The test replaces TARGETS with a JSON object: {"files": [...], "sockets": [...]}.
Prints one JSON line: for each attempt, "ok" (it worked: a hole) or the errno name.
"""
import ctypes
import errno
import json
import os
import socket
import sys

TARGETS = json.loads(r'''@TARGETS@''')
results = {}


def attempt(name, action):
    try:
        action()
        results[name] = "ok"
    except OSError as e:
        results[name] = errno.errorcode.get(e.errno, str(e.errno))


# The run's own input is a hard link to a host file; the harness is a host file too
# (proctor repairs it at its next start). The interpreter is left alone: should the
# sandbox ever fail, this test must not break the machine's runtime.
harness = os.path.join(os.environ["PYTHONPATH"], "proctor_harness", "confine.py")
files = TARGETS["files"] + [os.path.abspath(sys.argv[0]), harness]
for path in files:
    attempt(f"chmod {path}", lambda: os.chmod(path, 0o4755))
    attempt(f"chmod0 {path}", lambda: os.chmod(path, 0))
    attempt(f"utime {path}", lambda: os.utime(path, (0, 0)))
    attempt(f"setxattr {path}", lambda: os.setxattr(path, "user.proctor", b"1"))
    attempt(f"chown {path}", lambda: os.chown(path, os.getuid(), os.getgid()))

for path in TARGETS["sockets"]:
    def connect():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(path)
            s.sendall(b"escaped")
    attempt(f"connect {path}", connect)

libc = ctypes.CDLL(None, use_errno=True)


def watch(path):
    fd = libc.inotify_init1(0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    if libc.inotify_add_watch(fd, path.encode(), 0xFFF) < 0:
        raise OSError(ctypes.get_errno(), "inotify_add_watch")


for path in ["/etc", "/root", os.path.dirname(os.getcwd())]:
    attempt(f"inotify {path}", lambda: watch(path))

print(json.dumps(results))
