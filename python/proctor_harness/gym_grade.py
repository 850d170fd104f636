"""Behavioural grading of a debug-gym fix, inside the sandbox.

    python -m proctor_harness.gym_grade TASK_DIR SCRIPT OUT_JSON

Installs instrumentation on torch (optimizer steps vs backward calls, learning rates,
losses and their finiteness, which parameters the optimizers hold and which require
grad, loss functions and their targets, module inputs), executes the script as
`__main__` in a namespace that survives a crash, then calls the task's trusted
`grade.py` (`evaluate(namespace, obs) -> {"bugs": {...}, "metrics": {...}}`), which
measures the trained model on held-out data the script never saw. Everything goes to
OUT_JSON; the printed output of the script is never read here.
"""
import copy
import json
import math
import os
import sys
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_pre_hook


class Observations:
    """What the script did, as seen from inside torch."""

    def __init__(self):
        self.backward_calls = 0
        self.step_calls = 0
        self.steps_without_fresh_backward = 0
        self.backward_since_step = False
        self.losses = []  # values of tensors backward() was called on
        self.nonfinite_losses = 0
        self.lrs = []
        self.optimizers = []  # weakly: dicts describing each optimizer at its first step
        self._seen_optimizers = set()
        self.loss_calls = {}  # loss name -> {"count", "target_dtype", "target_shape", "input_shape"}
        self.conv_inputs = []  # shapes seen by the first Conv2d layers (bounded)
        self.linear_inputs = []
        self.model_outputs_argmax = 0
        self.sigmoid_calls = 0
        self.started = time.perf_counter()

    def as_dict(self):
        d = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        d["losses"] = self.losses[-2000:]
        return d


OBS = Observations()


def _finite(x):
    return x is not None and not math.isnan(x) and not math.isinf(x)


def _install():
    original_backward = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        OBS.backward_calls += 1
        OBS.backward_since_step = True
        if self.numel() == 1:
            value = float(self.detach().reshape(()).item())
            OBS.losses.append(value if _finite(value) else str(value))
            if not _finite(value):
                OBS.nonfinite_losses += 1
        return original_backward(self, *args, **kwargs)

    torch.Tensor.backward = backward

    def step_pre_hook(optimizer, args, kwargs):
        OBS.step_calls += 1
        if not OBS.backward_since_step:
            OBS.steps_without_fresh_backward += 1
        OBS.backward_since_step = False
        lrs = [float(g.get("lr", 0.0)) for g in optimizer.param_groups]
        if len(OBS.lrs) < 10000:
            OBS.lrs.append(max(lrs) if lrs else 0.0)
        if id(optimizer) not in OBS._seen_optimizers:
            OBS._seen_optimizers.add(id(optimizer))
            params = [p for g in optimizer.param_groups for p in g["params"]]
            OBS.optimizers.append({
                "type": type(optimizer).__name__,
                "params": len(params),
                "frozen_params": sum(1 for p in params if not p.requires_grad),
                "params_with_grad": sum(1 for p in params if p.grad is not None),
                "lr": max(lrs) if lrs else 0.0,
            })

    register_optimizer_step_pre_hook(step_pre_hook)

    def record_loss(name, input, target):
        entry = OBS.loss_calls.setdefault(name, {"count": 0})
        entry["count"] += 1
        if entry["count"] == 1:
            entry["input_shape"] = list(getattr(input, "shape", []))
            entry["target_shape"] = list(getattr(target, "shape", []))
            entry["target_dtype"] = str(getattr(target, "dtype", ""))
            if torch.is_tensor(target) and target.dim() == 2 and target.numel() > 0:
                rows = target.detach().float().sum(dim=1)
                entry["target_rows_sum_max"] = float(rows.max())

    for cls in (nn.CrossEntropyLoss, nn.BCEWithLogitsLoss, nn.BCELoss, nn.NLLLoss, nn.MSELoss):
        original = cls.forward

        def forward(self, input, target, _original=original, _name=cls.__name__):
            record_loss(_name, input, target)
            return _original(self, input, target)

        cls.forward = forward
    for fname in ("cross_entropy", "binary_cross_entropy_with_logits", "binary_cross_entropy", "nll_loss", "mse_loss"):
        original = getattr(F, fname)

        def functional(input, target, *args, _original=original, _name=fname, **kwargs):
            record_loss(_name, input, target)
            return _original(input, target, *args, **kwargs)

        setattr(F, fname, functional)

    def module_input_hook(kind):
        def hook(module, inputs):
            bucket = OBS.conv_inputs if kind == "conv" else OBS.linear_inputs
            if inputs and torch.is_tensor(inputs[0]) and len(bucket) < 400:
                bucket.append({"shape": list(inputs[0].shape), "training": module.training})
        return hook

    nn.modules.module.register_module_forward_pre_hook(
        lambda m, i: module_input_hook("conv")(m, i) if isinstance(m, nn.Conv2d) and m.in_channels <= 4
        else (module_input_hook("linear")(m, i) if isinstance(m, nn.Linear) else None)
    )

    original_argmax = torch.Tensor.argmax

    def argmax(self, *args, **kwargs):
        if not torch.is_grad_enabled() or not self.requires_grad:
            OBS.model_outputs_argmax += 1
        return original_argmax(self, *args, **kwargs)

    torch.Tensor.argmax = argmax
    original_sigmoid = torch.sigmoid

    def sigmoid(*args, **kwargs):
        OBS.sigmoid_calls += 1
        return original_sigmoid(*args, **kwargs)

    torch.sigmoid = sigmoid


def graph_size(tensor, cap=5000):
    """Number of autograd nodes reachable from `tensor` (bounded)."""
    fn = getattr(tensor, "grad_fn", None)
    if fn is None:
        return 0
    # Keep the visited nodes alive: autograd nodes are created on access, and an id of a
    # freed one gets reused, which would end the walk early.
    seen, stack = {}, [fn]
    while stack and len(seen) < cap:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(n for n, _ in getattr(node, "next_functions", ()))
    return len(seen)


def retained_graphs(namespace):
    """Largest autograd graph kept alive by the script's globals (lists and dicts included)."""
    biggest = 0
    todo = list(namespace.values())
    visited = 0
    while todo and visited < 20000:
        value = todo.pop()
        visited += 1
        if torch.is_tensor(value):
            if value.grad_fn is not None:
                biggest = max(biggest, graph_size(value))
        elif isinstance(value, (list, tuple)):
            todo.extend(value[:1000])
        elif isinstance(value, dict) and value is not namespace:
            todo.extend(list(value.values())[:1000])
    return biggest


def generic_metrics(obs):
    """Loss-curve facts every task's bands may use."""
    values = [v for v in obs.losses if isinstance(v, float)]
    n = len(obs.losses)
    k = max(1, len(values) // 10)
    decreases = bool(values) and sum(values[-k:]) / k < sum(values[:k]) / k
    return {
        "nan_losses": float(obs.nonfinite_losses),
        "finite_fraction": (n - obs.nonfinite_losses) / n if n else 0.0,
        "loss_decreases": 1.0 if decreases else 0.0,
        "optimizer_steps": float(obs.step_calls),
    }


def _execute(script, namespace):
    """Runs the script as __main__ in `namespace`; returns (crashed, error)."""
    try:
        with open(script) as f:
            code = compile(f.read(), script, "exec")
        sys.argv = [script]
        exec(code, namespace)
    except SystemExit as e:
        if e.code not in (None, 0):
            return True, f"SystemExit: {e.code}"
    except BaseException:
        return True, traceback.format_exc(limit=8)
    return False, None


class Mismatches:
    """Tolerant mode: layers and losses that would raise on a mismatched input adapt it
    instead and count the mismatch, so that one crash does not hide the other fixes."""

    def __init__(self):
        self.counts = {
            "channels_last": 0, "unbatched": 0, "features": 0, "one_hot_target": 0,
            "conv_forwards": 0, "eval_forwards": 0, "linear_forwards": 0, "loss_calls": 0,
        }

    def install(self):
        counts = self.counts

        def adapt(module, inputs):
            if not inputs or not torch.is_tensor(inputs[0]):
                return None
            x, rest = inputs[0], inputs[1:]
            if isinstance(module, nn.Linear):
                counts["linear_forwards"] += 1
            if isinstance(module, nn.Conv2d):
                counts["conv_forwards"] += 1
                if not module.training:
                    counts["eval_forwards"] += 1
                if x.dim() == 3:
                    counts["unbatched"] += 1
                    x = x.unsqueeze(0)
                if x.dim() == 4 and x.shape[1] != module.in_channels and x.shape[-1] == module.in_channels:
                    counts["channels_last"] += 1
                    x = x.permute(0, 3, 1, 2)
            elif isinstance(module, nn.Linear) and x.dim() >= 2 and x.shape[-1] != module.in_features:
                counts["features"] += 1
                x = F.interpolate(x.reshape(-1, 1, x.shape[-1]), size=module.in_features).reshape(*x.shape[:-1], module.in_features)
            else:
                return None
            return (x, *rest)

        handle = nn.modules.module.register_module_forward_pre_hook(adapt)
        original = nn.CrossEntropyLoss.forward

        def forward(module, input, target):
            counts["loss_calls"] += 1
            if torch.is_tensor(target) and target.dim() == input.dim() and target.shape == input.shape:
                counts["one_hot_target"] += 1
                target = target.argmax(dim=-1)
            elif torch.is_tensor(target) and target.dim() == 1 and input.dim() == 2 and target.shape[0] != input.shape[0]:
                # an unbatched sample's logits came back batched by the adapter above
                target = target[: input.shape[0]]
            return original(module, input, target)

        nn.CrossEntropyLoss.forward = forward

        def uninstall():
            handle.remove()
            nn.CrossEntropyLoss.forward = original

        return uninstall


def main(task_dir, script, out_path):
    _install()
    namespace = {"__name__": "__main__", "__file__": script, "__builtins__": __builtins__}
    crashed, error = _execute(script, namespace)
    train_seconds = time.perf_counter() - OBS.started
    torch.set_grad_enabled(True)
    # A snapshot: a tolerant re-run below must not add to what the graded run did.
    obs = copy.deepcopy(OBS.as_dict())
    generic = generic_metrics(OBS)
    obs["crashed"] = crashed
    obs["retained_graph_nodes"] = retained_graphs(namespace)
    result = {"crashed": crashed, "error": error, "observations": obs, "train_seconds": train_seconds}
    sys.path.insert(0, task_dir)
    try:
        import grade  # the task's trusted grader

        if crashed and getattr(grade, "TOLERANT_RERUN", False):
            # Run it again with mismatches adapted and counted: which fixes does it hold?
            mismatches = Mismatches()
            uninstall = mismatches.install()
            tolerant_crash, _ = _execute(script, {"__name__": "__main__", "__file__": script, "__builtins__": __builtins__})
            uninstall()
            torch.set_grad_enabled(True)
            obs["tolerant"] = {**mismatches.counts, "crashed": tolerant_crash}
        with torch.no_grad():
            verdict = grade.evaluate(namespace, obs)
        result["bugs"] = verdict.get("bugs", {})
        result["partial"] = list(verdict.get("partial", []))
        result["metrics"] = {**generic, **verdict.get("metrics", {})}
    except BaseException:
        result["grader_error"] = traceback.format_exc(limit=8)
    with open(out_path, "w") as f:
        json.dump(_finite_json(result), f, default=str, allow_nan=False)


def _finite_json(value):
    """JSON has no NaN or infinity: such floats become null."""
    if isinstance(value, float):
        return value if _finite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return value


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3])
