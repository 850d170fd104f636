"""The warm zygote: imports torch and numpy once, then forks a child per run or session.

Protocol on fd 4 (a SOCK_SEQPACKET unix socket from proctor), one JSON object per datagram:
  proctor -> zygote  {"op": "spawn", "id"} with fds [stdout, stderr, control, report]
  zygote -> proctor  {"op": "ready"}, {"op": "forked", "id", "pid"}, {"op": "exit", "id", "exit_code", "signal", "maxrss_kb"}
The child waits for {"op": "go", ...job} on its control socket (proctor has moved it into
the run's cgroup by then; children are forked ahead of demand), confines itself further
and runs the job (see child.py). The child's own end is reported here; how the run ended
comes to proctor first on `report`, from the child before it exits (see confine.py).
"""
import json
import os
import selectors
import signal
import socket
import sys

import numpy  # noqa: F401  (warm imports, the point of the zygote)
import torch  # noqa: F401
import torchvision  # noqa: F401  (review smoke runs and vision tasks use it)

from proctor_harness import child  # imported here so that no fork pays for it

CONTROL_FD = 4


def _send(sock, obj):
    sock.send(json.dumps(obj).encode())


def main():
    sock = socket.socket(fileno=CONTROL_FD)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children = {}
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "request")
    sel.register(wake_r, selectors.EVENT_READ, "sigchld")
    _send(sock, {"op": "ready", "pid": os.getpid(), "torch": torch.__version__})
    while True:
        for key, _ in sel.select():
            if key.data == "request":
                msg, fds, _flags, _addr = socket.recv_fds(sock, child.MAX_FRAME, 8)
                if not msg:
                    return  # proctor went away
                req = json.loads(msg)
                pid = os.fork()
                if pid == 0:
                    sel.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    for fd in (wake_r, wake_w):
                        os.close(fd)
                    sock.close()
                    child.main(fds)  # never returns
                for fd in fds:
                    os.close(fd)
                children[pid] = req["id"]
                _send(sock, {"op": "forked", "id": req["id"], "pid": pid})
            else:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
                while children:
                    pid, status, usage = os.wait4(-1, os.WNOHANG)
                    if pid == 0:
                        break
                    run_id = children.pop(pid, None)
                    if run_id is None:
                        continue
                    _send(sock, {
                        "op": "exit",
                        "id": run_id,
                        "exit_code": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
                        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                        "maxrss_kb": usage.ru_maxrss,
                    })


if __name__ == "__main__":
    sys.exit(main())
