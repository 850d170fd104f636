"""Train run of a debug-gym fix: the only process that ever executes the fix.

    python -m proctor_harness.gym_train FIX OUT_DIR MODEL_NAME

The sandbox holds the fix and the broken script, nothing of the task's answers (no
grader, no references, no held-out seed). Before the fix runs, instrumentation is
installed where the script cannot avoid it:

- autograd: `torch.autograd.backward` (which `Tensor.backward` calls) records each
  loss's value and the ops of its graph; what gradients actually reached the model is
  checked at every optimizer step, so a raw engine call or a throwaway backward earns
  nothing;
- a `TorchFunctionMode` sees every functional op (raw `torch._C._nn` calls, the function
  form of `argmax`, comparisons): non-finite values inside the training graph, the losses
  and the targets they got, how outputs of the model in eval mode are turned into
  predictions;
- optimizer step hooks: grads that reached the model's parameters, parameter deltas, and
  the weight sets exported (state at the first step and after the last one, so weights
  written outside the optimizer never count);
- module hooks: what the model and its layers received.

Afterwards the model the optimizer trained is exported as a TorchScript trace with its
weight sets, for a fresh sandbox to evaluate on held-out inputs. The observations are
hints: they can lower a score, never lift it past what the held-out metric supports.
They are sealed with a per-run key (popped from the environment before the fix runs):
a run that ends before the harness wrote them, or with them forged, is `tampered`.
"""
import gc
import hashlib
import hmac
import json
import math
import os
import sys
import time
import traceback
import types
import weakref

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.overrides import TorchFunctionMode

KEY_ENV = "PROCTOR_GYM_RUN_KEY"
LOSS_OPS = ("cross_entropy", "nll_loss", "binary_cross_entropy", "mse_loss", "l1_loss", "log_softmax")
ARGMAX_OPS = {"argmax", "max", "topk"}
THRESHOLD_OPS = {"gt", "ge", "lt", "le", "__gt__", "__ge__", "__lt__", "__le__", "round"}
MAX_RECORDS = 400


def _name(func):
    return getattr(func, "__name__", None) or str(func)


class Observations:
    """What the fix did, as seen from inside torch. Plain data only."""

    def __init__(self):
        self.losses = []               # value of each tensor backward ran on (None if non-finite)
        self.backward_calls = 0
        self.loss_graph_ops = {}       # autograd node name -> count, over the graphs of backward
        self.nonfinite_in_graph = 0    # ops with grad whose output held NaN/inf
        self.loss_calls = []           # functional losses with grad: name, input/target facts
        self.steps = 0
        self.effective_steps = 0       # steps where grads reached the model and it moved
        self.finite_grad_steps = 0
        self.lrs = []
        self.optimizer_params = []     # per optimizer: params held, frozen among them, model's
        self.model_params = 0
        self.model_params_stepped = 0  # model params held by an optimizer with requires_grad
        self.model_params_frozen_held = 0
        self.params_moved = {}         # model param name -> total |delta| from steps
        self.params_rewritten = {}     # model param name -> total |delta| written between steps
        self.root_inputs = []          # shapes/training/grad of what the model received
        self.conv_inputs = []
        self.eval_argmax = 0           # argmax/max on the model's eval-mode outputs
        self.eval_threshold = 0        # comparisons on them (sigmoid > 0.5, logits > 0)
        self.graph_kept = 0            # a loss backward ran on, added into a total with grad
        self.val_train_distances = []  # eval-mode input rows -> nearest training input row
        self.crashed = False
        self.error = None
        self.tamper = []
        self.tolerant = None
        self.export = {}

    def as_dict(self):
        return dict(self.__dict__)


OBS = Observations()
STATE = {"model": None, "init": None, "final": None, "example": None, "roots": {}, "depth": 0}
_TAINTED = weakref.WeakValueDictionary()  # id -> tensors derived from eval-mode model outputs
_BACKWARDED = weakref.WeakValueDictionary()  # id -> tensors backward ran on
ADD_OPS = {"add", "__add__", "__iadd__", "__radd__", "add_", "sum", "stack", "cat"}
TRAIN_ROWS_MAX = 8000
PROBE_ROWS = 8


# Taken before the fix runs, so that replacing them in torch or math blinds nothing here.
_T = types.SimpleNamespace(**{n: getattr(torch, n) for n in (
    "isfinite", "amin", "mm", "t", "sum", "mul", "add", "sub", "clamp", "sqrt")})
_isfinite_f = math.isfinite

# Introspection that reaches the harness's records from inside the run: denied, and reported
# on stderr at once (kept by proctor from the start of the output, so nothing the run does
# afterwards can take it back).
DENIED_EVENTS = {"gc.get_objects", "gc.get_referrers", "gc.get_referents",
                 "sys._current_frames", "sys.settrace", "sys.setprofile"}
TAMPER_MARK = "[proctor-gym] tampered: "


def _finite(t):
    try:
        return bool(_T.isfinite(t).all())
    except Exception:
        return True


def _tensors(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if torch.is_tensor(a):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (x for x in a if torch.is_tensor(x))


class Watch(TorchFunctionMode):
    """Sees every functional op, however it is called."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            _observe(func, args, kwargs, out)
        except Exception:
            pass
        return out


def _observe(func, args, kwargs, out):
    name = _name(func)
    ins = list(_tensors(args, kwargs))
    tainted = any(id(t) in _TAINTED for t in ins)
    # NaN/inf propagates into the scalar a loss ends in: checking scalars is enough, and cheap
    if torch.is_tensor(out) and out.requires_grad and out.numel() == 1 and out.is_floating_point():
        if not _isfinite_f(float(out.detach())):
            OBS.nonfinite_in_graph += 1
    if tainted:
        if name in ARGMAX_OPS and name != "max" or (name == "max" and (len(args) > 1 or "dim" in kwargs)):
            OBS.eval_argmax += 1
        elif name in THRESHOLD_OPS:
            OBS.eval_threshold += 1
        elif torch.is_tensor(out):
            _TAINTED[id(out)] = out
    if name in ADD_OPS and torch.is_tensor(out) and out.requires_grad:
        if any(id(t) in _BACKWARDED for t in ins):
            OBS.graph_kept += 1
    if any(op in name for op in LOSS_OPS) and len(ins) >= 2 and ins[0].requires_grad and len(OBS.loss_calls) < MAX_RECORDS:
        x, y = ins[0], ins[1]
        entry = {"op": name, "input_shape": list(x.shape), "target_shape": list(y.shape), "target_dtype": str(y.dtype)}
        if y.is_floating_point() and y.numel():
            yd = y.detach()
            entry["target_min"], entry["target_max"] = float(yd.min()), float(yd.max())
            if yd.dim() >= 2:
                entry["target_row_sum_max"] = float(yd.sum(dim=-1).max())
        OBS.loss_calls.append(entry)


def _graph_ops(tensor, cap=400):
    # The visited nodes are kept alive: autograd nodes are created on access, and the id of
    # a freed one gets reused, which would end the walk early.
    seen, stack, names = {}, [tensor.grad_fn], {}
    while stack and len(seen) < cap:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        n = type(node).__name__
        names[n] = names.get(n, 0) + 1
        stack.extend(nx for nx, _ in getattr(node, "next_functions", ()))
    return names


def _install_autograd():
    original = torch.autograd.backward

    def backward(tensors, *args, **kwargs):
        OBS.backward_calls += 1
        t = tensors[0] if isinstance(tensors, (list, tuple)) and tensors else tensors
        if torch.is_tensor(t) and t.numel() == 1 and len(OBS.losses) < 20000:
            v = float(t.detach().reshape(()))
            OBS.losses.append(v if _isfinite_f(v) else None)
            _BACKWARDED[id(t)] = t
            if t.grad_fn is not None and OBS.backward_calls <= 50:
                for k, c in _graph_ops(t).items():
                    OBS.loss_graph_ops[k] = OBS.loss_graph_ops.get(k, 0) + c
        return original(tensors, *args, **kwargs)

    torch.autograd.backward = backward
    return backward


def _model_params():
    model = STATE["model"]
    return dict(model.named_parameters()) if model is not None else {}


def _held(optimizer):
    return [p for g in optimizer.param_groups for p in g["params"]]


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _pick_model(optimizer):
    """The trained model: the root module (called at top level) holding most of the params
    this optimizer steps."""
    held = {id(p) for p in _held(optimizer)}
    best, best_n = None, 0
    for ref in STATE["roots"].values():
        m = ref()
        if m is None:
            continue
        n = sum(1 for p in m.parameters() if id(p) in held)
        if n > best_n:
            best, best_n = m, n
    return best


def _step_pre(optimizer, args, kwargs):
    OBS.steps += 1
    lrs = [float(g.get("lr", 0.0)) for g in optimizer.param_groups]
    if len(OBS.lrs) < 20000:
        OBS.lrs.append(max(lrs) if lrs else 0.0)
    if STATE["model"] is None:
        STATE["model"] = _pick_model(optimizer)
        model = STATE["model"]
        if model is not None:
            STATE["init"] = _snapshot(model)
            held = {id(p) for p in _held(optimizer)}
            params = list(model.parameters())
            OBS.model_params = len(params)
            OBS.model_params_stepped = sum(1 for p in params if id(p) in held and p.requires_grad)
            OBS.model_params_frozen_held = sum(1 for p in params if id(p) in held and not p.requires_grad)
    if len(OBS.optimizer_params) < 20:
        ps = _held(optimizer)
        OBS.optimizer_params.append({"type": type(optimizer).__name__, "params": len(ps),
                                     "frozen": sum(1 for p in ps if not p.requires_grad)})
    named = _model_params()
    held = {id(p) for p in _held(optimizer)}
    grads = [p.grad for p in named.values() if id(p) in held and p.grad is not None]
    reached = [g for g in grads if bool(g.detach().abs().sum() > 0)]
    if grads and all(_finite(g) for g in grads):
        OBS.finite_grad_steps += 1
    STATE["before"] = {k: p.detach().clone() for k, p in named.items() if id(p) in held}
    STATE["reached"] = len(reached)
    # Parameters written between two steps (outside the optimizer): a step undone that way
    # did not train the parameter.
    for k, after in STATE.pop("after", {}).items():
        if k in STATE["before"]:
            d = float((STATE["before"][k] - after).abs().sum())
            if d > 0 and _isfinite_f(d):
                OBS.params_rewritten[k] = OBS.params_rewritten.get(k, 0.0) + d


def _step_post(optimizer, args, kwargs):
    model = STATE["model"]
    if model is None:
        return
    before = STATE.pop("before", {})
    moved = 0
    for k, p in _model_params().items():
        if k in before:
            d = float((p.detach() - before[k]).abs().sum())
            if _isfinite_f(d):
                OBS.params_moved[k] = OBS.params_moved.get(k, 0.0) + d
            moved += d > 0
    if STATE.get("reached") and moved:
        OBS.effective_steps += 1
    STATE["after"] = {k: p.detach().clone() for k, p in _model_params().items() if k in before}
    STATE["final"] = _snapshot(model)


def _root_pre(module, inputs):
    if STATE.get("exporting"):
        return
    STATE["depth"] += 1
    x = inputs[0] if inputs and torch.is_tensor(inputs[0]) else None
    if isinstance(module, nn.Conv2d) and x is not None and len(OBS.conv_inputs) < MAX_RECORDS:
        OBS.conv_inputs.append({"shape": list(x.shape), "training": module.training})
    if STATE["depth"] != 1 or isinstance(module, nn.modules.loss._Loss):
        return
    STATE["roots"].setdefault(id(module), weakref.ref(module))
    if x is not None and x.is_floating_point() and x.dim() >= 2:
        _leak_probe(x.detach(), module.training and torch.is_grad_enabled())
    if x is not None and len(OBS.root_inputs) < MAX_RECORDS:
        OBS.root_inputs.append({"shape": list(x.shape), "training": module.training, "grad": torch.is_grad_enabled()})
    if x is not None and module is STATE["model"] and STATE["example"] is None and module.training:
        STATE["example"] = x.detach()[:4].clone()


def _leak_probe(x, training):
    """Training inputs are banked; a few rows of each eval-mode batch are matched to their
    nearest training row. Rows seen in training themselves (distance 0) are an evaluation
    of the training set, not validation, and are left out."""
    rows = x.reshape(len(x), -1).float()
    bank = STATE.setdefault("bank", [])
    if training:
        if sum(len(b) for b in bank) < TRAIN_ROWS_MAX:
            bank.append(rows.clone())
        return
    if not bank or len(OBS.val_train_distances) >= 200:
        return
    train = torch.cat(bank) if len(bank) > 1 else bank[0]
    STATE["bank"] = [train]
    if train.shape[1] != rows.shape[1]:
        return
    if "bank_sq" not in STATE or len(STATE["bank_sq"]) != len(train):
        STATE["bank_sq"] = _T.sum(_T.mul(train, train), dim=1)
    probe = rows[:PROBE_ROWS]
    near = _T.sum(_T.mul(probe, probe), dim=1, keepdim=True)
    sq = _T.sub(_T.add(near, STATE["bank_sq"]), _T.mul(_T.mm(probe, _T.t(train)), 2))
    d = _T.sqrt(_T.amin(_T.clamp(sq, min=0), dim=1))
    OBS.val_train_distances.extend(float(v) for v in d if v > 1.0)  # 0 up to rounding: the same row


def _root_post(module, inputs, output):
    if STATE.get("exporting"):
        return
    STATE["depth"] = max(0, STATE["depth"] - 1)
    if STATE["depth"] == 0 and torch.is_tensor(output) and module is STATE["model"]:
        if STATE["example"] is None and inputs and torch.is_tensor(inputs[0]):
            STATE["example"] = inputs[0].detach()[:4].clone()
        if not module.training or not torch.is_grad_enabled():
            _TAINTED[id(output)] = output


def install():
    """Installs every hook; returns what must still be in place at the end."""
    backward = _install_autograd()
    handles = [
        register_optimizer_step_pre_hook(_step_pre),
        register_optimizer_step_post_hook(_step_post),
        nn.modules.module.register_module_forward_pre_hook(_root_pre),
        nn.modules.module.register_module_forward_hook(_root_post, always_call=True),
    ]
    mode = Watch()
    mode.__enter__()
    return {"backward": backward, "mode": mode, "handles": handles}


def _deny_introspection():
    """A permanent audit hook (it cannot be removed once added)."""

    def hook(event, args):
        if event in DENIED_EVENTS:
            os.write(2, f"\n{TAMPER_MARK}{event} called by the run\n".encode())
            OBS.tamper.append(f"{event} called by the run")
            raise RuntimeError(f"{event} is not available in a graded run")

    sys.addaudithook(hook)


def check_intact(installed):
    """Hooks replaced or removed, the mode popped: evidence of tampering."""
    from torch.optim import optimizer as opt_mod
    from torch.overrides import _get_current_function_mode_stack

    if torch.autograd.backward is not installed["backward"]:
        OBS.tamper.append("torch.autograd.backward was replaced")
    if installed["mode"] not in _get_current_function_mode_stack():
        OBS.tamper.append("the harness's TorchFunctionMode was removed")
    if _step_pre not in opt_mod._global_optimizer_pre_hooks.values():
        OBS.tamper.append("the optimizer step pre-hook was removed")
    if _step_post not in opt_mod._global_optimizer_post_hooks.values():
        OBS.tamper.append("the optimizer step post-hook was removed")
    from torch.nn.modules import module as mod

    if _root_pre not in mod._global_forward_pre_hooks.values():
        OBS.tamper.append("the module forward pre-hook was removed")
    if _root_post not in mod._global_forward_hooks.values():
        OBS.tamper.append("the module forward hook was removed")


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


def export(namespace, model_name, out_dir):
    """Traces the trained model with its weight sets; None when nothing was trained."""
    model = STATE["model"]
    named = namespace.get(model_name)
    if model is None and isinstance(named, nn.Module):
        model = named  # never stepped: evaluated as it is, it earns what it earns
    if model is None or STATE["example"] is None and model is not named:
        OBS.export = {"error": "no_model"}
        return
    example = STATE["example"]
    if example is None:
        OBS.export = {"error": "no_model: the model never received an input"}
        return
    init = STATE["init"] or _snapshot(model)
    final = STATE["final"] or init
    STATE["exporting"] = True
    model.eval()
    model.load_state_dict(final)
    try:
        with torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False, strict=False)
        traced.save(os.path.join(out_dir, "model.pt"))
        torch.save({"init": init, "final": final}, os.path.join(out_dir, "weights.pt"))
        OBS.export = {"example_shape": list(example.shape), "stepped": STATE["init"] is not None}
    except Exception as e:
        OBS.export = {"error": f"no_model: tracing failed: {type(e).__name__}: {e}"[:2000]}


def _seal(key, out_dir):
    body = json.dumps(_plain(OBS.as_dict()), allow_nan=False).encode()
    mac = hmac.new(key, body, hashlib.sha256).hexdigest()
    with open(os.path.join(out_dir, "obs.json"), "wb") as f:
        f.write(body)
    with open(os.path.join(out_dir, "obs.mac"), "w") as f:
        f.write(mac)


def _plain(value):
    if torch.is_tensor(value):
        return _plain(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def main(fix, out_dir, model_name):
    key = os.environ.pop(KEY_ENV, "").encode()
    from proctor_harness import gym_tolerant

    harness = sys.modules["__main__"]  # kept alive while the fix owns `__main__`
    installed = install()
    _deny_introspection()
    started = time.perf_counter()
    OBS.crashed, OBS.error, namespace = run_script(fix)
    OBS.train_seconds = time.perf_counter() - started
    check_intact(installed)
    distances = sorted(OBS.val_train_distances)
    OBS.val_train_nearest = distances[len(distances) // 2] if distances else None
    torch.set_grad_enabled(True)
    installed["mode"].__exit__(None, None, None)
    if OBS.crashed and STATE["model"] is None:
        OBS.tolerant = gym_tolerant.rerun(fix, run_script)
    export(namespace, model_name, out_dir)
    namespace.clear()
    gc.collect()
    sys.modules["__main__"] = harness
    _seal(key, out_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3])
