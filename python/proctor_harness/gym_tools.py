"""The debug gym's inspection tools, run inside an episode's persistent session.

Each function returns a `Json` whose repr is the JSON text itself, so that the
session's "value of the last expression" carries structured data back to proctor.
"""
import contextlib
import io
import json
import math
import resource
import traceback

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook, register_optimizer_step_post_hook

PREVIEW = 8


class Json(str):
    """A string whose repr is itself: the session hands it back verbatim."""

    def __repr__(self):
        return str(self)


def _json(obj):
    return Json(json.dumps(obj, default=str))


def _finite(x):
    return isinstance(x, float) and not (math.isnan(x) or math.isinf(x))


def _scope(namespace, setup_code):
    """The episode's namespace, or a copy of it with `setup_code` run first."""
    if not setup_code:
        return namespace
    scope = dict(namespace)
    exec(compile(setup_code, "<setup_code>", "exec"), scope)
    return scope


def inspect_tensor(expression, setup_code, namespace):
    result = {"error": None}
    try:
        t = eval(compile(expression, "<target_expression>", "eval"), _scope(namespace, setup_code))
        if not torch.is_tensor(t):
            raise TypeError(f"{expression!r} is a {type(t).__name__}, not a tensor")
        data = t.detach()
        numeric = data.float() if data.is_floating_point() or data.dtype in (torch.int32, torch.int64, torch.bool) else None
        result.update(
            shape=list(t.shape), dtype=str(t.dtype), device=str(t.device),
            requires_grad=t.requires_grad, grad_is_none=t.grad is None,
            grad_fn=type(t.grad_fn).__name__ if t.grad_fn is not None else None,
            numel=t.numel(),
        )
        if numeric is not None and numeric.numel() > 0:
            finite = numeric[torch.isfinite(numeric)]
            result.update(
                min_val=float(finite.min()) if finite.numel() else None,
                max_val=float(finite.max()) if finite.numel() else None,
                mean_val=float(finite.mean()) if finite.numel() else None,
                std_val=float(finite.std()) if finite.numel() > 1 else 0.0,
                nan_count=int(torch.isnan(numeric).sum()),
                inf_count=int(torch.isinf(numeric).sum()),
            )
            result["is_nan"] = result["nan_count"] > 0
            result["is_inf"] = result["inf_count"] > 0
            result["preview"] = [round(float(v), 6) for v in numeric.flatten()[:PREVIEW]]
    except BaseException as e:
        result["error"] = f"{type(e).__name__}: {e}"
    return _json(result)


def _optimizer_param_ids(namespace):
    ids = set()
    for value in namespace.values():
        if isinstance(value, torch.optim.Optimizer):
            ids.update(id(p) for g in value.param_groups for p in g["params"])
    return ids


def get_variable_state(expressions, setup_code, namespace):
    scope = _scope(namespace, setup_code)
    held = _optimizer_param_ids(scope)
    results = {}
    for expr in expressions:
        entry = {"repr": None, "type": None, "value": None, "shape": None, "error": None}
        try:
            value = eval(compile(expr, "<expression>", "eval"), scope)
            text = repr(value)
            entry["repr"] = text if len(text) <= 2000 else text[:2000] + "..."
            entry["type"] = type(value).__name__
            if isinstance(value, (bool, int, float, str)) or value is None:
                entry["value"] = value if not isinstance(value, float) or _finite(value) else str(value)
            if hasattr(value, "shape"):
                entry["shape"] = list(value.shape)
            if isinstance(value, torch.nn.Module):
                entry["parameters"] = [
                    {"name": n, "shape": list(p.shape), "requires_grad": p.requires_grad, "in_optimizer": id(p) in held}
                    for n, p in list(value.named_parameters())[:200]
                ]
        except BaseException as e:
            entry["error"] = f"{type(e).__name__}: {e}"
        results[expr] = entry
    return _json({"results": results})


class _ProbeDone(BaseException):
    """Stops the probed script after the requested number of optimizer steps."""


def run_training_probe(source, steps, namespace_seed=None):
    """Runs `source` (a training script) until it has taken `steps` optimizer steps."""
    record = {"losses": [], "grad_norms": [], "learning_rates": [], "optimizer_param_count": None,
              "steps_taken": 0, "stderr": "", "error": None}
    pending_loss = []
    original_backward = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        if self.numel() == 1:
            pending_loss.append(float(self.detach().reshape(()).item()))
        return original_backward(self, *args, **kwargs)

    def pre(optimizer, args, kwargs):
        norms = {}
        names = {id(p): n for n, p in _named_params(namespace_seed)} if namespace_seed else {}
        for gi, group in enumerate(optimizer.param_groups):
            for pi, p in enumerate(group["params"]):
                name = names.get(id(p), f"group{gi}.param{pi}")
                norms[name] = None if p.grad is None else round(float(p.grad.detach().norm()), 6)
        record["grad_norms"].append(norms)
        record["learning_rates"].append(max(float(g.get("lr", 0.0)) for g in optimizer.param_groups))
        record["optimizer_param_count"] = sum(len(g["params"]) for g in optimizer.param_groups)
        record["losses"].append(pending_loss[-1] if pending_loss else None)
        pending_loss.clear()

    def post(optimizer, args, kwargs):
        record["steps_taken"] += 1
        if record["steps_taken"] >= steps:
            raise _ProbeDone()

    handles = [register_optimizer_step_pre_hook(pre), register_optimizer_step_post_hook(post)]
    torch.Tensor.backward = backward
    scope = {"__name__": "__main__", "__builtins__": __builtins__}
    if namespace_seed is not None:
        namespace_seed["scope"] = scope
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            exec(compile(source, "<probe>", "exec"), scope)
    except _ProbeDone:
        pass
    except BaseException:
        record["error"] = traceback.format_exc(limit=4)
    finally:
        torch.Tensor.backward = original_backward
        for h in handles:
            h.remove()
    losses = [x for x in record["losses"] if x is not None]
    record["final_loss"] = losses[-1] if losses else None
    record["loss_is_nan"] = any(isinstance(x, float) and math.isnan(x) for x in losses)
    record["loss_is_inf"] = any(isinstance(x, float) and math.isinf(x) for x in losses)
    record["losses"] = [x if x is None or _finite(x) else str(x) for x in record["losses"]]
    record["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record["stderr"] = err.getvalue()[-4000:]
    return _json(record)


def _named_params(seed):
    scope = seed.get("scope", {}) if seed else {}
    for value in scope.values():
        if isinstance(value, torch.nn.Module):
            yield from value.named_parameters()


def syntax_check(source):
    try:
        compile(source, "<proposed>", "exec")
        return _json({"ok": True, "error": None})
    except SyntaxError as e:
        return _json({"ok": False, "error": f"SyntaxError: {e.msg} (line {e.lineno})"})
