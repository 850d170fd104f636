"""Train run of a debug-gym fix: the only process that ever executes the fix.

    python -m proctor_harness.gym_train FIX OUT_DIR MODEL_NAME

The sandbox holds the fix and the broken script, nothing of the task's answers (no
grader, no references, no held-out seed). Before the fix runs, `gym_record` installs its
hooks where the script cannot avoid them and keeps what they see where the script cannot
reach it (its docstring says how):

- autograd: `torch.autograd.backward` (which `Tensor.backward` calls) records each
  loss's value and the ops of its graph; what gradients actually reached the model is
  checked at every optimizer step, so a raw engine call or a throwaway backward earns
  nothing;
- a `TorchFunctionMode` sees every functional op (raw `torch._C._nn` calls, the function
  form of `argmax`, comparisons): non-finite values inside the training graph, the losses
  and the targets they got, how outputs of the model in eval mode are turned into
  predictions;
- optimizer step hooks: which of the model's parameters each step holds (trainable or
  frozen), grads that reached them, parameter deltas, and the weight sets exported (state
  at the first step and after the last one, so weights written outside the optimizer never
  count);
- module hooks: what the model and its layers received.

Afterwards the model the optimizer trained is exported as a TorchScript trace (here, with
no recorder frame on the stack) and the recorder saves its weight sets, hashes both files
and seals its observations with a per-run key (popped from the environment before the fix
runs). The observations are hints: they can lower a score, never lift it past what the
held-out metric supports. A run that ends before the seal, with it forged, with the
exported files changed afterwards, or with evidence of reaching for the recorder is
`tampered`.
"""
import builtins
import functools
import importlib.util
import os
import sys
import time
import traceback
import types

import torch

KEY_ENV = "PROCTOR_GYM_RUN_KEY"


def private(name):
    """A fresh copy of a harness module that no other code holds: not in `sys.modules` and
    with its own builtins, so the fix can neither import nor patch what it defines."""
    spec = importlib.util.find_spec(f"proctor_harness.{name}")
    with open(spec.origin) as f:
        code = compile(f.read(), spec.origin, "exec")
    namespace = {"__name__": f"proctor_harness.{name}", "__builtins__": dict(vars(builtins))}
    exec(code, namespace)
    return namespace


def run_script(path):
    """Runs the fix as __main__ (a module of its own: `import __main__` never reaches the
    harness); returns (crashed, error, namespace)."""
    module = types.ModuleType("__main__")
    module.__file__ = path
    sys.modules["__main__"] = module
    namespace = module.__dict__
    try:
        with open(path) as f:
            code = compile(f.read(), path, "exec")
        sys.argv = [path]
        exec(code, namespace)
    except SystemExit as e:
        if e.code not in (None, 0):
            return True, f"SystemExit: {e.code}", namespace
    except BaseException:
        return True, traceback.format_exc(limit=8), namespace
    return False, None, namespace


def trace(model, example, final, out_dir, jit_trace=torch.jit.trace, no_grad=torch.no_grad):
    """The trained model as TorchScript, with its weights after the last step; the fix's
    forward runs here, with no recorder frame on the stack."""
    try:
        model.eval()
        model.load_state_dict(final)
        with no_grad():
            traced = jit_trace(model, example, check_trace=False, strict=False)
        traced.save(out_dir + "/model.pt")
        return {}
    except Exception as e:
        return {"error": f"no_model: tracing failed: {type(e).__name__}: {e}"[:2000]}


def take_key():
    """The run key, out of the environment and out of the process's initial environment
    block too: a cold run's interpreter was started with the key in it, and
    /proc/self/environ reads that block from memory whatever os.environ says now."""
    key = os.environ.pop(KEY_ENV, "")
    if key:
        import ctypes  # before the recorder is installed: afterwards, ctypes is tampering

        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end: proc(5) fields 50, 51
        entry = f"{KEY_ENV}={key}".encode()
        at = ctypes.string_at(start, end - start).find(entry)
        if at >= 0:
            ctypes.memset(start + at, 0, len(entry))
    return key.encode()


def main(fix, out_dir, model_name):
    """Everything main uses after the fix ran is bound here first, as locals."""
    signal = functools.partial(sys.audit, "proctor-gym/main")
    harness = sys.modules["__main__"]  # kept alive while the fix owns `__main__`
    run, export, clock, flush = run_script, trace, time.perf_counter, (sys.stdout.flush, sys.stderr.flush)
    tolerant = private("gym_tolerant")
    rerun = tolerant["rerun"]
    decoy = private("gym_record")["install"](take_key(), out_dir, main.__code__, tolerant)
    globals().update(OBS=decoy, STATE=decoy)
    del tolerant, decoy
    started = clock()
    crashed, error, namespace = run(fix)
    reply = {}
    signal("ran", crashed, error, clock() - started, reply)
    if reply.get("rerun"):
        signal("tolerant", rerun(fix, run))
    reply = {}
    signal("export", namespace, model_name, reply)
    traced = export(reply["model"], reply["example"], reply["final"], out_dir) if "model" in reply else {}
    namespace.clear()
    for f in flush:
        f()
    signal("seal", traced)


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3])
