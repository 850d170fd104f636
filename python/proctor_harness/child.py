"""A forked child of the zygote: one run, or a persistent session.

Runs behave like `python script.py` (same sys.argv, __main__, exit codes, tracebacks).
Sessions keep one namespace across snippets; each call's output is captured at the file
descriptor level (so C-level writes count too), bounded, and returned with the value of
the last expression.
"""
import ast
import atexit
import json
import os
import runpy
import signal
import socket
import sys
import threading
import time
import traceback
import weakref

from proctor_harness import confine


def _redirect(stdout_fd, stderr_fd):
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)


def _setup(fds):
    """Takes over the fds, then waits for the job: a child may be forked ahead of demand,
    so it learns what to run only when proctor says go. Once proctor has moved it into its
    cgroup ("placed"), it forks the run's process into a pid namespace of its own."""
    stdout_fd, stderr_fd, control_fd, report_fd = fds
    _redirect(stdout_fd, stderr_fd)
    os.close(stdout_fd)
    os.close(stderr_fd)
    confine.isolate(SHM_BYTES)
    filters = os.environ["PROCTOR_CHILD_SECCOMP"]
    ctl = socket.socket(fileno=control_fd)
    if not ctl.recv(MAX_FRAME):
        os._exit(111)  # retired before proctor placed it in a cgroup
    confine.own_pid_namespace(report_fd)  # from here on: the run, pid 2 of its own pid namespace
    go = ctl.recv(MAX_FRAME)
    if not go:
        os._exit(111)  # proctor retired this child before giving it a job
    req = json.loads(go)
    root = confine.scratch(req["cwd"], req["scratch"], req["uid"])
    shm = os.open("/dev/shm", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _confine(req, filters)
    except BaseException as e:
        # Proctor is waiting for the scratch: tell it why there is none.
        try:
            ctl.send(f"the forked child could not confine itself: {e!r}".encode()[:1000])
        except OSError:
            pass
        raise
    # The last step before the run's code: proctor starts the run's clock when it gets this,
    # and watches both filesystems for fullness while the run lives.
    socket.send_fds(ctl, [b"scratch"], [root, shm])
    os.close(root)
    os.close(shm)
    return ctl, req


def _confine(req, filters):
    """Becomes the run: its own id without capabilities, landlock, seccomp, its directory
    and its environment."""
    confine.drop_privileges(req["uid"])
    # Its /proc shows only its own pid namespace; of the processes, it may read its own entry.
    read_only = [f"/proc/{os.getpid()}" if p == "/proc/self" else p for p in req["read_only"]]
    confine.restrict(read_only, req["read_write"])
    confine.seccomp(filters)
    os.chdir(req["cwd"])
    os.environ.clear()
    # Popped, not read: `req` stays a local of main() while the run's code executes, and a
    # job's environment may carry a secret its harness takes out of os.environ before the
    # run's code starts (the gym's run key); the frames must not keep a copy.
    os.environ.update(req.pop("env"))


def _disown_zygote_finalizers():
    """weakref.finalize callbacks registered in the zygote (by torch and friends) belong to
    the zygote's objects: a child must not run them at its exit (they cost ~5 ms of
    copy-on-write faults, and one could delete a resource the zygote still owns). Those the
    run registers itself still run."""
    for info in weakref.finalize._registry.values():
        info.atexit = False


def main(fds):
    _disown_zygote_finalizers()
    try:
        ctl, req = _setup(fds)
    except BaseException:
        # Never fall back into the zygote's loop: a child that cannot confine itself dies.
        traceback.print_exc()
        os._exit(112)
    if req["kind"] == "session":
        _session(ctl, req)
        _exit(0)
    ctl.close()
    _exit(_run(req))


def _exit(code):
    """Ends like an interpreter exit (threads joined, atexit run, streams flushed) but
    skips tearing down torch's modules, which costs hundreds of milliseconds."""
    try:
        threading._shutdown()
    except BaseException:
        pass
    try:
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code)


def _run(req):
    target = req["target"]
    sys.argv = [target] + list(req.get("args", []))
    try:
        if req["mode"] == "module":
            sys.path.insert(0, req["cwd"])
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
            runpy.run_path(target, run_name="__main__")
    except SystemExit as e:
        code = e.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


# Largest message either way, JSON-encoded: defined once by proctor (MAX_FRAME_BYTES in
# the engine's pool.rs) and passed in the zygote's environment.
MAX_FRAME = int(os.environ["PROCTOR_MAX_FRAME_BYTES"])
# Size of a child's own /dev/shm (its pages count against the run's memory limit), defined
# once by proctor (SHM_BYTES in the sandbox crate) and passed in the zygote's environment.
SHM_BYTES = int(os.environ["PROCTOR_SHM_BYTES"])


class CallTimeout(BaseException):
    """Raised inside a session snippet when its time is up (BaseException: not caught by `except Exception`)."""


def _on_alarm(*_):
    raise CallTimeout()


def _read_capped(path, limit):
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    truncated = len(data) > limit
    return data[:limit].decode("utf-8", "replace"), truncated


def _execute(code, namespace):
    """Runs `code` in `namespace`; returns repr of the last expression's value, if any."""
    tree = ast.parse(code, "<snippet>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<snippet>", "exec"), namespace)
    if last is not None:
        value = eval(compile(last, "<snippet>", "eval"), namespace)
        if value is not None:
            namespace["_"] = value
            text = repr(value)
            return text if len(text) <= 10000 else text[:10000] + "..."
    return None


def _session(ctl, req):
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    signal.signal(signal.SIGALRM, _on_alarm)
    out_path = os.path.join(req["cwd"], ".proctor-stdout")
    err_path = os.path.join(req["cwd"], ".proctor-stderr")
    saved_out, saved_err = os.dup(1), os.dup(2)
    while True:
        msg = ctl.recv(MAX_FRAME)
        if not msg:
            return
        call = json.loads(msg)
        limit = int(call.get("max_output_bytes", 1 << 20))
        out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        _redirect(out_fd, err_fd)
        os.close(out_fd)
        os.close(err_fd)
        value, error, timed_out = None, None, False
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, max(float(call.get("timeout_s", 30)), 0.001))
        try:
            value = _execute(call["code"], namespace)
        except CallTimeout:
            timed_out = True
            error = f"TimeoutError: the snippet ran longer than {call.get('timeout_s')} s and was interrupted"
        except SystemExit as e:
            error = f"SystemExit: {e.code}"
        except BaseException:
            error = traceback.format_exc()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        wall_ms = (time.perf_counter() - start) * 1000
        _redirect(saved_out, saved_err)
        stdout, out_cut = _read_capped(out_path, limit)
        stderr, err_cut = _read_capped(err_path, limit)
        if error:
            stderr += error
        reply = {
            "ok": error is None,
            "stdout": stdout,
            "stderr": stderr,
            "value": value,
            "error": error,
            "timed_out": timed_out,
            "output_truncated": out_cut or err_cut,
            "wall_ms": wall_ms,
        }
        data = json.dumps(reply).encode()
        if len(data) > MAX_FRAME:
            reply.update(stdout=stdout[:1000], stderr=stderr[:1000], value=None, output_truncated=True,
                         error=error[:1000] if error else None)
            data = json.dumps(reply).encode()
        ctl.send(data)
