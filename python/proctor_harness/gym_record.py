"""The recorder of a debug-gym train run: what the fix did, kept where the fix cannot
reach it.

The fix runs in the same interpreter as the instrumentation, so the recorder's state, its
code and the sealing key must be out of the fix's reach:

- `gym_train` loads this file into a private namespace (not in `sys.modules`, with its
  own copy of the builtins), so no import, module attribute or patched builtin leads
  here;
- the hooks torch holds (autograd, the function mode, optimizer and module hooks) are
  stubs compiled into a namespace of their own that holds nothing but `sys.audit` and
  the original `backward`: each raises an audit event and returns. The one function that
  receives those events, `Recorder.on_event`, is registered with `sys.addaudithook`,
  which keeps it in the interpreter where no Python code can list it;
- an event is recorded only when it comes from where it must (the stub's code, called
  by torch's optimizer `step` wrapper or `Module._call_impl`; `gym_train.main` for the
  harness's own steps): raising the events by hand or calling a stub is evidence;
- while the recorder handles an event, nothing may look at frames (`sys._getframe`,
  traceback and generator frames): the fix's code can run inside it (a parameter
  property, a tensor subclass), and a frame walk from there would reach the recorder;
- what leads to the recorder anyway is denied and reported: gc, trace and profile hooks,
  other audit hooks, ctypes, `/proc/*/mem`, patching the stubs or the torch base
  classes they observe.

Reporting is immediate and cannot be taken back: a mark on stderr (kept by proctor from
the start of the output) and the key destroyed, so no seal can be made afterwards.
"""
import builtins
import hashlib
import json
import math
import _thread
import os
import sys
import time
import types
import weakref

import torch
import torch.nn as nn
from torch.optim import optimizer as optim_module
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack

EVENT = "proctor-gym/"
LOSS_OPS = ("cross_entropy", "nll_loss", "binary_cross_entropy", "mse_loss", "l1_loss", "log_softmax")
ARGMAX_OPS = {"argmax", "max", "topk"}
# Convolutions however they are called (`nn.Conv2d` calls `F.conv2d` too): what they received.
CONV_OPS = {"conv1d", "conv2d", "conv3d"}
MAX_ROOTS = 64
THRESHOLD_OPS = {"gt", "ge", "lt", "le", "__gt__", "__ge__", "__lt__", "__le__", "round"}
ADD_OPS = {"add", "__add__", "__iadd__", "__radd__", "add_", "sum", "stack", "cat"}
MAX_RECORDS = 400
TRAIN_ROWS_MAX = 8000
PROBE_ROWS = 8
TAMPER_MARK = "[proctor-gym] tampered: "

# Introspection that reaches the recorder from inside the run, denied at any time.
DENIED_EVENTS = {
    "gc.get_objects": "gc.get_objects called by the run",
    "gc.get_referrers": "gc.get_referrers called by the run",
    "gc.get_referents": "gc.get_referents called by the run",
    "sys._current_frames": "sys._current_frames called by the run",
    "sys.settrace": "sys.settrace called by the run",
    "sys.setprofile": "sys.setprofile called by the run",
    "sys.addaudithook": "the run added an audit hook",
}
# ctypes (looking up a C function, reading memory at an address, ...) reaches anything in
# the process: every ctypes event is denied once the fix runs.
CTYPES = "ctypes."
# Frame attributes: while the recorder handles an event they would lead into it.
FRAME_ATTRIBUTES = {"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"}

# The hooks torch holds. They see nothing but `_audit` (sys.audit) and `_original`
# (the real backward); changing either is checked at every step and at the end.
STUBS = '''
def backward(tensors, *args, **kwargs):
    _audit("proctor-gym/backward", tensors)
    return _original(tensors, *args, **kwargs)


def step_pre(optimizer, args, kwargs):
    _audit("proctor-gym/step_pre", optimizer)


def step_post(optimizer, args, kwargs):
    _audit("proctor-gym/step_post", optimizer)


def forward_pre(module, inputs):
    _audit("proctor-gym/forward_pre", module, inputs)


def forward(module, inputs, output):
    _audit("proctor-gym/forward", module, inputs, output)


class Watch(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        _audit("proctor-gym/op", func, args, kwargs, out)
        return out


class Decoy:
    """Stands where the harness's records used to be (`OBS`, `STATE`): touching it is
    evidence of a search through the harness."""

    def __getattribute__(self, name):
        _audit("proctor-gym/decoy", name)

    def __setattr__(self, name, value):
        _audit("proctor-gym/decoy", name)

    def __delattr__(self, name):
        _audit("proctor-gym/decoy", name)

    def __getitem__(self, key):
        _audit("proctor-gym/decoy", "[]")

    def __setitem__(self, key, value):
        _audit("proctor-gym/decoy", "[]")

    def __iter__(self):
        _audit("proctor-gym/decoy", "iter")

    def __len__(self):
        _audit("proctor-gym/decoy", "len")

    def __contains__(self, item):
        _audit("proctor-gym/decoy", "in")

    def __dir__(self):
        _audit("proctor-gym/decoy", "dir")

    def __call__(self, *args, **kwargs):
        _audit("proctor-gym/decoy", "call")


OBS = STATE = Decoy()
'''

# Primitives taken when this namespace is loaded (before the fix runs): replacing them in
# torch, os, math or hashlib afterwards blinds nothing here.
_getframe = sys._getframe
_thread_id = _thread.get_ident
_exit = os._exit
_write = os.write
_dup = os.dup
_isfinite = math.isfinite
_sha256 = hashlib.sha256
_encode_str = json.encoder.encode_basestring_ascii
_T = types.SimpleNamespace(**{n: getattr(torch, n) for n in (
    "isfinite", "amin", "mm", "t", "sum", "mul", "add", "sub", "clamp", "sqrt", "cat", "is_tensor",
    "is_grad_enabled", "no_grad", "save")})
_state_dict = nn.Module.state_dict
_named_parameters = nn.Module.named_parameters
_module_parameters = nn.Module.parameters
_module_call = nn.Module._call_impl.__code__
_step_wrapper = optim_module.Optimizer.profile_hook_step(lambda *a, **k: None).__code__
# Classes whose methods the hooks and the recorder rely on (an oracle `Module.__call__`, a
# `Tensor.backward` that skips autograd): patching them is compared at every step.
PROTECTED_TYPES = (torch.Tensor, nn.Module, nn.Parameter, optim_module.Optimizer, TorchFunctionMode)


def _name(func):
    return getattr(func, "__name__", None) or str(func)


def _tensors(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if _T.is_tensor(a):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (x for x in a if _T.is_tensor(x))


def _finite(t):
    try:
        return bool(_T.isfinite(t).all())
    except Exception:
        return True


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


def _snapshot(model):
    return {k: v.detach().clone() for k, v in _state_dict(model).items()}


def _held(optimizer):
    return [p for g in optimizer.param_groups for p in g["params"]]


def to_json(value):
    """JSON of plain data, by code the run cannot patch (non-finite floats as null)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return float.__repr__(value) if _isfinite(value) else "null"
    if isinstance(value, str):
        return _encode_str(value)
    if isinstance(value, dict):
        return "{" + ",".join(_encode_str(str(k)) + ":" + to_json(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    if _T.is_tensor(value):
        return to_json(value.tolist())
    return _encode_str(str(value))


def hmac_sha256(key, body):
    block = 64
    key = _sha256(key).digest() if len(key) > block else key
    key = key + b"\0" * (block - len(key))
    inner = _sha256(bytes(k ^ 0x36 for k in key) + body).digest()
    return _sha256(bytes(k ^ 0x5C for k in key) + inner).hexdigest()


def file_sha256(path):
    try:
        with open(path, "rb") as f:
            return _sha256(f.read()).hexdigest()
    except OSError:
        return None


def new_observations():
    """What the fix did, as seen from inside torch. Plain data only."""
    return {
        "losses": [],               # value of each tensor backward ran on (None if non-finite)
        "backward_calls": 0,
        "loss_graph_ops": {},       # autograd node name -> count, over the graphs of backward
        "nonfinite_in_graph": 0,    # scalars with grad that held NaN/inf
        "loss_calls": [],           # functional losses with grad: name, input/target facts
        "steps": 0,
        "effective_steps": 0,       # steps where grads reached the model and it moved
        "finite_grad_steps": 0,
        "lrs": [],
        "optimizer_params": [],     # per step (first 20): params held, frozen among them
        "model_params": 0,
        "model_params_stepped": 0,  # model params held by an optimizer with requires_grad
        "model_params_frozen_held": 0,  # the most frozen model params any step held
        "params_moved": {},         # model param name -> total |delta| from steps
        "params_rewritten": {},     # model param name -> total |delta| written between steps
        "conv_inputs": {"training": {}, "eval": {}},  # ndim -> convolutions that received
                                    # it, in training (train mode, grad) or evaluation forwards
        "eval_forwards": 0,         # top-level forwards out of train mode or without grad
        "eval_argmax": 0,           # argmax/max on the model's eval-mode outputs
        "graph_kept": 0,            # a loss backward ran on, added into a total with grad
        "val_train_distances": [],  # eval-mode input rows -> nearest training input row
        "crashed": False,
        "error": None,
        "tamper": [],
        "tolerant": None,
        "export": {},
    }


class Recorder:
    """Receives the stubs' events (as audit events) and keeps the observations."""

    def __init__(self, key, out_dir, main_code, tolerant_ns):
        self.key = key
        self.out_dir = out_dir
        self.main_code = main_code
        self.obs = new_observations()
        self.model = None
        self.init = None
        self.final = None
        self.example = None
        self.first_inputs = {}  # id of a root -> (weakref, its first input rows, train mode)
        self.training_forward = False  # the current root forward: train mode, grad enabled
        self.roots = {}
        self.depth = 0
        self.before = {}
        self.after = {}
        self.reached = 0
        self.bank = []
        self.bank_sq = None
        self.tainted = {}      # id -> weakref of tensors derived from eval-mode model outputs
        self.backwarded = {}   # id -> weakref of tensors backward ran on
        # Per thread: the fix's code may run inside an event's handler, but only in the
        # thread handling it. Other threads (a DataLoader's queue feeder, say) may look at
        # their own frames meanwhile: the recorder's are not on their stacks.
        self.busy = {}         # thread id -> events being handled in it
        self.peeking = None    # the thread in which the recorder itself reads a frame
        self.exporting = False
        self.ran = False
        self.tolerant_counts = None
        self.mark_fd = _dup(2)
        self.stubs = {}
        self.stub_ns = None
        self.stub_ns_items = None
        self.tolerant_ns = tolerant_ns
        self.tolerant_items = dict(tolerant_ns)
        self.tolerant_codes = {f.__code__ for f in tolerant_ns.get("HOOKS", ())}
        self.mode = None
        self.watching = True
        self.handlers = {
            EVENT + "backward": self.on_backward,
            EVENT + "op": self.on_op,
            EVENT + "step_pre": self.on_step_pre,
            EVENT + "step_post": self.on_step_post,
            EVENT + "forward_pre": self.on_forward_pre,
            EVENT + "forward": self.on_forward,
            EVENT + "tolerant": self.on_tolerant,
            EVENT + "main": self.on_main,
            EVENT + "decoy": self.on_decoy,
            "sys._getframe": self.on_frame_access,
            "object.__getattr__": self.on_getattr,
            "object.__setattr__": self.on_setattr,
            "object.__delattr__": self.on_setattr,
            "open": self.on_open,
        }

    # -- the audit hook -------------------------------------------------------------

    def on_event(self, event, args):
        if event in DENIED_EVENTS:
            self.deny(DENIED_EVENTS[event])
        if event.startswith(CTYPES):
            self.deny(f"the run used ctypes ({event})")
        handler = self.handlers.get(event)
        if handler is None:
            return
        if not event.startswith(EVENT):
            handler(args)
            return
        thread = _thread_id()
        self.busy[thread] = self.busy.get(thread, 0) + 1
        try:
            handler(*args)
        except TamperError:
            raise
        except Exception:
            pass
        finally:
            self.busy[thread] -= 1
            if not self.busy[thread]:
                del self.busy[thread]

    def tamper(self, what):
        """Evidence, reported at once: a stderr mark and the key gone (no seal any more)."""
        if what not in self.obs["tamper"]:
            self.obs["tamper"].append(what)
        self.key = None
        try:
            _write(self.mark_fd, f"\n{TAMPER_MARK}{what}\n".encode())
        except OSError:
            pass

    def deny(self, what):
        self.tamper(what)
        raise TamperError(f"{what}: not available in a graded run")

    def on_decoy(self, what):
        self.deny(f"the run searched the harness's internals (touched a decoy record: {what})")

    def recording_here(self):
        """This thread is handling an event, and the recorder is not reading a frame itself."""
        thread = _thread_id()
        return thread in self.busy and self.peeking != thread

    def on_frame_access(self, args):
        if self.recording_here():
            self.deny("the run looked at frames while the harness recorded")

    def on_getattr(self, args):
        if len(args) >= 2 and args[1] in FRAME_ATTRIBUTES and self.recording_here():
            self.deny(f"the run read {args[1]} while the harness recorded")

    def on_setattr(self, args):
        # Raised for functions' code and defaults (classes are compared in check_intact).
        target = args[0] if args else None
        if any(target is stub for stub in self.stubs.values()):  # `is`: a tensor's == is its own
            name = args[1] if len(args) > 1 else "?"
            self.deny(f"the run changed the harness's hook {target.__name__}.{name}")

    def on_open(self, args):
        path = args[0] if args else None
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        if isinstance(path, str) and path.startswith("/proc/") and path.rstrip("/").endswith("/mem"):
            self.deny("the run opened its process memory")

    def caller(self, stub, callers=None):
        """The stub that raised this event and, if `callers` is given, the code that called
        it; raising the event by hand or calling a stub directly is evidence."""
        self.peeking = _thread_id()
        try:
            frame = _getframe(1)
            while frame is not None and frame.f_code in OWN_CODES:
                frame = frame.f_back
            ok = frame is not None and frame.f_code in stub
            if ok and callers is not None:
                outer = frame.f_back
                ok = outer is not None and outer.f_code in callers
        finally:
            self.peeking = None
        if not ok:
            self.tamper("a harness event was raised outside the harness's hooks")
        return ok

    def stub_codes(self, *names):
        return {self.stubs[n].__code__ for n in names}

    # -- installation -----------------------------------------------------------------

    def install(self):
        # C code run inside a hook imports through the frame's builtins: they are a copy
        # of their own, checked like the namespace.
        ns = {"__builtins__": dict(vars(builtins)), "__name__": "proctor_harness.gym_hooks", "_audit": sys.audit,
              "_original": torch.autograd.backward, "TorchFunctionMode": TorchFunctionMode}
        exec(compile(STUBS, "<proctor-gym hooks>", "exec"), ns)
        self.stub_ns = ns
        self.stub_builtins = dict(ns["__builtins__"])
        self.classes = {t: dict(vars(t)) for t in PROTECTED_TYPES + (ns["Watch"], ns["Decoy"])}
        self.stubs = {n: ns[n] for n in ("backward", "step_pre", "step_post", "forward_pre", "forward")}
        self.stubs["watch"] = ns["Watch"].__torch_function__
        self.stub_ns_items = dict(ns)
        torch.autograd.backward = ns["backward"]
        self.handles = [
            optim_module.register_optimizer_step_pre_hook(ns["step_pre"]),
            optim_module.register_optimizer_step_post_hook(ns["step_post"]),
            nn.modules.module.register_module_forward_pre_hook(ns["forward_pre"]),
            nn.modules.module.register_module_forward_hook(ns["forward"], always_call=True),
        ]
        self.mode = ns["Watch"]()
        self.mode.__enter__()
        sys.addaudithook(self.on_event)

    def check_intact(self):
        """Hooks replaced or removed, their namespace changed, torch's classes patched, the
        mode popped (while it watches: the fix's first run)."""
        ns, items = self.stub_ns, self.stub_ns_items
        altered = any(ns.get(k) is not v for k, v in items.items()) or len(ns) != len(items)
        if altered or any(ns["__builtins__"].get(k) is not v for k, v in self.stub_builtins.items()):
            self.tamper("the harness's hooks were altered")
        for cls, attributes in self.classes.items():
            now = vars(cls)
            if len(now) != len(attributes) or any(now.get(k) is not v for k, v in attributes.items()):
                changed = sorted(k for k in set(now) | set(attributes) if now.get(k) is not attributes.get(k))
                self.tamper(f"the run patched {cls.__qualname__}.{', '.join(changed)}")
        if torch.autograd.backward is not self.stubs["backward"]:
            self.tamper("torch.autograd.backward was replaced")
        if self.watching and self.mode not in _get_current_function_mode_stack():
            self.tamper("the harness's TorchFunctionMode was removed")
        if "__torch_function__" in vars(self.mode):
            self.tamper("the harness's TorchFunctionMode was altered")
        registries = (
            (self.stubs["step_pre"], optim_module._global_optimizer_pre_hooks, "optimizer step pre-hook"),
            (self.stubs["step_post"], optim_module._global_optimizer_post_hooks, "optimizer step post-hook"),
            (self.stubs["forward_pre"], nn.modules.module._global_forward_pre_hooks, "module forward pre-hook"),
            (self.stubs["forward"], nn.modules.module._global_forward_hooks, "module forward hook"),
        )
        for stub, registry, what in registries:
            if stub not in registry.values():
                self.tamper(f"the {what} was removed")
        tolerant = self.tolerant_ns
        if any(tolerant.get(k) is not v for k, v in self.tolerant_items.items()):
            self.tamper("the harness's tolerant re-run was altered")

    # -- autograd and functional ops ---------------------------------------------------

    def on_backward(self, tensors):
        if not self.caller(self.stub_codes("backward")):
            return
        obs = self.obs
        obs["backward_calls"] += 1
        t = tensors[0] if isinstance(tensors, (list, tuple)) and tensors else tensors
        if _T.is_tensor(t) and t.numel() == 1 and len(obs["losses"]) < 20000:
            v = float(t.detach().reshape(()))
            obs["losses"].append(v if _isfinite(v) else None)
            self.backwarded[id(t)] = weakref.ref(t)
            if t.grad_fn is not None and obs["backward_calls"] <= 50:
                for k, c in _graph_ops(t).items():
                    obs["loss_graph_ops"][k] = obs["loss_graph_ops"].get(k, 0) + c

    def known(self, table, t):
        ref = table.get(id(t))
        return ref is not None and ref() is t

    def on_op(self, func, args, kwargs, out):
        # Ops are not traced to their stub (too frequent): an op event raised by hand can
        # only add evidence against the run (NaN, kept graphs, argmax), never remove it.
        obs = self.obs
        name = _name(func)
        ins = list(_tensors(args, kwargs))
        tainted = any(self.known(self.tainted, t) for t in ins)
        # NaN/inf propagates into the scalar a loss ends in: checking scalars is enough
        if _T.is_tensor(out) and out.requires_grad and out.numel() == 1 and out.is_floating_point():
            if not _isfinite(float(out.detach())):
                obs["nonfinite_in_graph"] += 1
        if tainted:
            if name in ARGMAX_OPS and name != "max" or (name == "max" and (len(args) > 1 or "dim" in kwargs)):
                obs["eval_argmax"] += 1
            elif name not in THRESHOLD_OPS and _T.is_tensor(out):
                # thresholded outputs are predictions: what follows scores them
                self.remember(self.tainted, out)
        if name in ADD_OPS and _T.is_tensor(out) and out.requires_grad:
            if any(self.known(self.backwarded, t) for t in ins):
                obs["graph_kept"] += 1
        if name in CONV_OPS and ins:
            training = self.training_forward if self.depth else _T.is_grad_enabled()
            dims = obs["conv_inputs"]["training" if training else "eval"]
            dims[str(ins[0].dim())] = dims.get(str(ins[0].dim()), 0) + 1
        if any(op in name for op in LOSS_OPS) and len(ins) >= 2 and ins[0].requires_grad:
            self.loss_call(name, ins[0], ins[1])

    def remember(self, table, t):
        if len(table) > 4096:
            for k in [k for k, r in table.items() if r() is None]:
                del table[k]
        table[id(t)] = weakref.ref(t)

    def loss_call(self, name, x, y):
        calls = self.obs["loss_calls"]
        if len(calls) >= MAX_RECORDS:
            return
        entry = {"op": name, "input_shape": list(x.shape), "target_shape": list(y.shape),
                 "target_dtype": str(y.dtype)}
        if y.is_floating_point() and y.numel():
            yd = y.detach()
            entry["target_min"], entry["target_max"] = float(yd.min()), float(yd.max())
            if yd.dim() >= 2:
                entry["target_row_sum_max"] = float(yd.sum(dim=-1).max())
        calls.append(entry)

    # -- optimizer steps -------------------------------------------------------------

    def model_params(self):
        return dict(_named_parameters(self.model)) if self.model is not None else {}

    def pick_model(self, optimizer):
        """The trained model: the root module (called at top level) holding most of the
        params this optimizer steps."""
        held = {id(p) for p in _held(optimizer)}
        best, best_n = None, 0
        for ref in self.roots.values():
            m = ref()
            if m is None:
                continue
            n = sum(1 for p in _module_parameters(m) if id(p) in held)
            if n > best_n:
                best, best_n = m, n
        return best

    def on_step_pre(self, optimizer):
        if not self.caller(self.stub_codes("step_pre"), {_step_wrapper}):
            return
        self.check_intact()
        obs = self.obs
        obs["steps"] += 1
        lrs = [float(g.get("lr", 0.0)) for g in optimizer.param_groups]
        if len(obs["lrs"]) < 20000:
            obs["lrs"].append(max(lrs) if lrs else 0.0)
        if self.model is None:
            self.model = self.pick_model(optimizer)
            if self.model is not None:
                self.init = _snapshot(self.model)
        self.membership(optimizer)
        named = self.model_params()
        held = {id(p) for p in _held(optimizer)}
        grads = [p.grad for p in named.values() if id(p) in held and p.grad is not None]
        self.reached = sum(1 for g in grads if bool(g.detach().abs().sum() > 0))
        if grads and all(_finite(g) for g in grads):
            obs["finite_grad_steps"] += 1
        self.before = {k: p.detach().clone() for k, p in named.items() if id(p) in held}
        # Parameters written between two steps (outside the optimizer): a step undone that
        # way did not train the parameter.
        for k, after in self.after.items():
            if k in self.before:
                d = float((self.before[k] - after).abs().sum())
                if d > 0 and _isfinite(d):
                    obs["params_rewritten"][k] = obs["params_rewritten"].get(k, 0.0) + d
        self.after = {}

    def membership(self, optimizer):
        """Which of the model's parameters this step holds, trainable or frozen: the worst
        step counts (a clean optimizer stepped once does not hide a frozen one)."""
        obs = self.obs
        held_params = _held(optimizer)
        if len(obs["optimizer_params"]) < 20:
            obs["optimizer_params"].append({"type": type(optimizer).__name__, "params": len(held_params),
                                            "frozen": sum(1 for p in held_params if not p.requires_grad)})
        if self.model is None:
            return
        held = {id(p) for p in held_params}
        params = list(_module_parameters(self.model))
        obs["model_params"] = len(params)
        stepped = sum(1 for p in params if id(p) in held and p.requires_grad)
        frozen = sum(1 for p in params if id(p) in held and not p.requires_grad)
        obs["model_params_stepped"] = max(obs["model_params_stepped"], stepped)
        obs["model_params_frozen_held"] = max(obs["model_params_frozen_held"], frozen)

    def on_step_post(self, optimizer):
        if not self.caller(self.stub_codes("step_post"), {_step_wrapper}) or self.model is None:
            return
        obs = self.obs
        before, self.before = self.before, {}
        moved = 0
        for k, p in self.model_params().items():
            if k in before:
                d = float((p.detach() - before[k]).abs().sum())
                if _isfinite(d):
                    obs["params_moved"][k] = obs["params_moved"].get(k, 0.0) + d
                moved += d > 0
        if self.reached and moved:
            obs["effective_steps"] += 1
        self.after = {k: p.detach().clone() for k, p in self.model_params().items() if k in before}
        self.final = _snapshot(self.model)

    # -- module hooks ----------------------------------------------------------------

    def on_forward_pre(self, module, inputs):
        if self.exporting or not self.caller(self.stub_codes("forward_pre"), {_module_call}):
            return
        obs = self.obs
        self.depth += 1
        x = inputs[0] if inputs and _T.is_tensor(inputs[0]) else None
        if self.depth != 1 or isinstance(module, nn.modules.loss._Loss):
            return
        self.training_forward = module.training and _T.is_grad_enabled()
        obs["eval_forwards"] += not self.training_forward
        self.roots.setdefault(id(module), weakref.ref(module))
        self.first_input(module, x)
        if x is not None and x.is_floating_point() and x.dim() >= 2:
            self.leak_probe(x.detach(), self.training_forward)

    def first_input(self, module, x):
        """An input for tracing each root, a train-mode one when there is one: the model
        exported may be one no optimizer stepped (updates written by hand)."""
        seen = self.first_inputs.get(id(module))
        if x is None or seen is not None and (seen[0]() is module and (seen[2] or not module.training)):
            return
        if seen is None and len(self.first_inputs) >= MAX_ROOTS:
            return
        self.first_inputs[id(module)] = (weakref.ref(module), x.detach()[:4].clone(), module.training)

    def leak_probe(self, x, training):
        """Training inputs are banked; a few rows of each eval-mode batch are matched to
        their nearest training row. Rows seen in training themselves (distance 0) are an
        evaluation of the training set, not validation, and are left out."""
        rows = x.reshape(len(x), -1).float()
        if training:
            if sum(len(b) for b in self.bank) < TRAIN_ROWS_MAX:
                self.bank.append(rows.clone())
            return
        distances = self.obs["val_train_distances"]
        if not self.bank or len(distances) >= 200:
            return
        train = _T.cat(self.bank) if len(self.bank) > 1 else self.bank[0]
        self.bank = [train]
        if train.shape[1] != rows.shape[1]:
            return
        if self.bank_sq is None or len(self.bank_sq) != len(train):
            self.bank_sq = _T.sum(_T.mul(train, train), dim=1)
        probe = rows[:PROBE_ROWS]
        near = _T.sum(_T.mul(probe, probe), dim=1, keepdim=True)
        sq = _T.sub(_T.add(near, self.bank_sq), _T.mul(_T.mm(probe, _T.t(train)), 2))
        d = _T.sqrt(_T.amin(_T.clamp(sq, min=0), dim=1))
        distances.extend(float(v) for v in d if v > 1.0)  # 0 up to rounding: the same row

    def on_forward(self, module, inputs, output):
        if self.exporting or not self.caller(self.stub_codes("forward"), {_module_call}):
            return
        self.depth = max(0, self.depth - 1)
        if self.depth == 0 and _T.is_tensor(output) and module is self.model:
            if not module.training or not _T.is_grad_enabled():
                self.remember(self.tainted, output)

    # -- the tolerant re-run -----------------------------------------------------------

    def on_tolerant(self, kind):
        if self.tolerant_counts is None or not self.caller(self.tolerant_codes):
            return
        if any(self.tolerant_ns.get(k) is not v for k, v in self.tolerant_items.items()):
            self.tamper("the harness's tolerant re-run was altered")
        if kind in self.tolerant_counts:
            self.tolerant_counts[kind] += 1

    # -- the harness's own steps (gym_train.main) --------------------------------------

    def on_main(self, what, *args):
        if not self.caller({self.main_code}):
            return
        {"ran": self.after_run, "tolerant": self.tolerant_done, "export": self.hand_over,
         "seal": self.seal}[what](*args)

    def after_run(self, crashed, error, seconds, reply):
        """The fix returned: check the hooks, stop watching; a crash before any training
        asks for the tolerant re-run (its counts come back as events)."""
        if self.ran:
            self.tamper("the harness was run again from inside the run")
            return
        self.ran = True
        obs = self.obs
        obs["crashed"], obs["error"], obs["train_seconds"] = crashed, error, seconds
        self.check_intact()
        distances = sorted(obs["val_train_distances"])
        obs["val_train_nearest"] = distances[len(distances) // 2] if distances else None
        torch.set_grad_enabled(True)
        self.mode.__exit__(None, None, None)
        self.watching = False
        if crashed and self.model is None:
            self.tolerant_counts = self.tolerant_ns["new_counts"]()
            reply["rerun"] = True

    def tolerant_done(self, crashed):
        if self.tolerant_counts is not None:
            self.obs["tolerant"] = {**self.tolerant_counts, "crashed": bool(crashed)}
            self.tolerant_counts = None

    def hand_over(self, namespace, model_name, reply):
        """The model to trace (with its weights after the last step) and an input for it."""
        named = namespace.get(model_name)
        model = self.model
        if model is None and isinstance(named, nn.Module):
            model = named  # never stepped: evaluated as it is, it earns what it earns
        seen = self.first_inputs.get(id(model))
        self.example = seen[1] if seen is not None and seen[0]() is model else None
        if model is None or self.example is None:
            self.obs["export"] = {"error": "no_model" if model is None else
                                  "no_model: the model never received an input"}
            return
        self.init = self.init or _snapshot(model)
        self.final = self.final or self.init
        self.exporting = True
        reply.update(model=model, example=self.example.clone(),
                     final={k: v.clone() for k, v in self.final.items()})

    def seal(self, traced):
        """Saves the weight sets, hashes what leaves the sandbox and seals the observations
        (no code of the fix runs from here on); then ends the process."""
        obs, out = self.obs, self.out_dir
        self.check_intact()
        if self.exporting:
            if traced.get("error"):
                obs["export"] = {"error": traced["error"]}
            else:
                weights = out + "/weights.pt"
                _T.save({"init": self.init, "final": self.final}, weights)
                obs["export"] = {"example_shape": list(self.example.shape), "stepped": self.model is not None,
                                 "model_sha256": file_sha256(out + "/model.pt"),
                                 "weights_sha256": file_sha256(weights)}
        if self.key is not None:
            body = to_json(obs).encode()
            mac = hmac_sha256(self.key, body)
            with open(out + "/obs.json", "wb") as f:
                f.write(body)
            with open(out + "/obs.mac", "w") as f:
                f.write(mac)
        self.key = None
        _exit(0)


class TamperError(RuntimeError):
    pass


OWN_CODES = {f.__code__ for f in list(vars(Recorder).values()) + list(globals().values())
             if isinstance(f, types.FunctionType)}


def install(key, out_dir, main_code, tolerant_ns):
    """Installs the hooks and the recorder; nothing of it is returned but a decoy, for the
    harness to put where its records used to be."""
    recorder = Recorder(key, out_dir, main_code, tolerant_ns)
    recorder.install()
    return recorder.stub_ns["OBS"]
