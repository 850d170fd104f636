"""Tolerant re-run of a fix that crashed before training: layers and losses that would
raise on a mismatched input adapt it instead and report the mismatch, so that one crash
does not hide the other fixes (task6 has four shape bugs; its broken script crashes).
The re-run is the fix's only run, in a fresh sandbox (`gym_train FIX OUT MODEL tolerant`).

Loaded by `gym_train` into a private namespace; each fact is reported to the recorder as
an audit event raised from `adapt` or `AdaptLoss.__torch_function__` (the recorder checks
where it came from, and that this namespace was not changed).
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_audit = sys.audit
EVENT = "proctor-gym/tolerant"
KINDS = ("channels_last", "unbatched", "features", "one_hot_target",
         "conv_forwards", "eval_forwards", "linear_forwards", "loss_calls")
ADAPTED = KINDS[:4]  # the mismatches adapted (the other kinds count calls)


def new_counts():
    return dict.fromkeys(KINDS, 0)


class AdaptLoss(TorchFunctionMode):
    """Class-index losses given one-hot integer rows get the indices, reported."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if "cross_entropy" in getattr(func, "__name__", "") and len(args) >= 2:
            x, y = args[0], args[1]
            _audit(EVENT, "loss_calls")
            if torch.is_tensor(y) and not y.is_floating_point() and y.dim() == x.dim() and y.dim() >= 2:
                _audit(EVENT, "one_hot_target")
                args = (x, y.argmax(dim=-1), *args[2:])
            elif torch.is_tensor(y) and y.dim() == 1 and x.dim() == 2 and y.shape[0] != x.shape[0]:
                args = (x, y[: x.shape[0]], *args[2:])  # an unbatched sample came back batched
        return func(*args, **kwargs)


def adapt(module, inputs):
    """A forward pre-hook: mismatched inputs of conv and linear layers are adapted."""
    if not inputs or not torch.is_tensor(inputs[0]):
        return None
    x, rest = inputs[0], inputs[1:]
    if isinstance(module, nn.Conv2d):
        _audit(EVENT, "conv_forwards")
        if not module.training:
            _audit(EVENT, "eval_forwards")
        if x.dim() == 3:
            _audit(EVENT, "unbatched")
            x = x.unsqueeze(0)
        if x.dim() == 4 and x.shape[1] != module.in_channels and x.shape[-1] == module.in_channels:
            _audit(EVENT, "channels_last")
            x = x.permute(0, 3, 1, 2)
    elif isinstance(module, nn.Linear):
        _audit(EVENT, "linear_forwards")
        if x.dim() < 2 or x.shape[-1] == module.in_features:
            return None
        _audit(EVENT, "features")
        x = F.interpolate(x.reshape(-1, 1, x.shape[-1]), size=module.in_features).reshape(*x.shape[:-1], module.in_features)
    else:
        return None
    return (x, *rest)


HOOKS = (adapt, AdaptLoss.__torch_function__)


def rerun(fix, run_script):
    """Runs the fix again with mismatches adapted; returns whether it still crashed."""
    handle = nn.modules.module.register_module_forward_pre_hook(adapt)
    try:
        with AdaptLoss():
            crashed, _, namespace = run_script(fix)
    finally:
        handle.remove()
        torch.set_grad_enabled(True)
    namespace.clear()
    return crashed
