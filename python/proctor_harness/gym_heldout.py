"""Held-out evaluation of a debug-gym fix, in sandboxes that never run the fix's code.

    python -m proctor_harness.gym_heldout gen BROKEN GENERATOR N SEED VIEWS OUT_DIR
    python -m proctor_harness.gym_heldout predict MODEL WEIGHTS INPUTS JUDGE OBS OUT_JSON RULE

`gen` (trusted code only) draws N fresh samples from the task's own generator, taken
from the pristine broken script, with a seed derived from the server secret; the inputs
go to `inputs.pt` (in each layout of VIEWS), the labels to `labels.json` for proctor
alone. `predict` gets the exported TorchScript model, its weight sets and the inputs,
never the labels; it writes the outputs of each weight set on the first layout the model
accepts, and the task's judgement of the (untrusted) observations. Metrics are computed
by proctor.

Two more evaluations check that the predictions come from what was trained, with
randomness drawn here (no sandbox that ran the fix can predict it):

- `redrawn*`: the final weights with the entries training moved shuffled within each
  parameter tensor (buffers, and entries no step moved, kept). A model that learned
  falls towards chance; one whose predictions stay (an oracle of the data rule in its
  forward or its buffers, switched on by a buffer, a counter or a scalar gate) did not
  get them from training.
- `rebatched`: the final weights on the rows in a secret order and batch size. A
  sample's prediction must not depend on the batch it comes in (a forward that answers
  differently for the evaluator's batch size); proctor scores the worse of the two.

And one judges the export by what its parameters account for (`_path_check`).
"""
import ast
import json
import math
import os
import runpy
import sys

import torch
import torch.nn.functional as F

from proctor_harness import gym_judge
from proctor_harness.gym_train import disagreement, path_mismatch, script_slots


def original_generator(path, function):
    """`function` of the pristine script with its imports and UPPER_CASE constants."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
            or isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in n.targets)
            or isinstance(n, ast.FunctionDef) and n.name == function]
    namespace = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), path, "exec"), namespace)
    return namespace[function]


VIEWS = {
    "as_is": lambda x: x,
    "nchw": lambda x: x.permute(0, 3, 1, 2).contiguous(),
    "nchw28": lambda x: F.interpolate(x.permute(0, 3, 1, 2), size=(28, 28), mode="bilinear", align_corners=False),
}


def gen(broken, generator, n, seed, views, out_dir):
    x, y = original_generator(broken, generator)(int(n), int(seed))
    torch.save({v: VIEWS[v](x).float() for v in views.split(",")}, f"{out_dir}/inputs.pt")
    if y.dim() == 2 and not y.is_floating_point():
        y = y.argmax(dim=1)  # one-hot rows -> class indices
    with open(f"{out_dir}/labels.json", "w") as f:
        json.dump({"shape": list(y.shape), "values": y.reshape(-1).tolist()}, f)


def _input_dtype(model):
    """The floating dtype the model computes in (a fix may train in float64 or half): the
    held-out inputs, drawn as float32, are cast to it."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


BATCH = 256


def _first_tensor(out):
    """The scores of a model that returns more than them: the first tensor of a tuple,
    list or dict (`(logits, features)`, `{"logits": ...}`)."""
    if isinstance(out, dict):
        out = out.get("logits", next(iter(out.values()), None))
    while isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not torch.is_tensor(out):
        raise TypeError(f"the model returned {type(out).__name__}, not a tensor")
    return out


def _in_batches(model, x, batch):
    """The model's scores on every row, `batch` rows per call, with whatever grad mode or
    tangents the caller has on; the last call is padded to a full batch, since a trace may
    have fixed the batch size it saw (`reshape(len(x), -1)`)."""
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        n = len(chunk)
        if n < batch:
            chunk = torch.cat([chunk, chunk[:1].expand(batch - n, *chunk.shape[1:])])
        out = _first_tensor(model(chunk))
        if len(out) != batch:
            raise ValueError(f"the model returned {len(out)} rows for {batch} inputs")
        outs.append(out[:n])
    return torch.cat(outs)


def _outputs(model, x, batch):
    """The model's outputs on every row, as float rows."""
    with torch.no_grad():
        out = _in_batches(model, x.to(_input_dtype(model)), batch).float()
    return out.reshape(len(out), -1)


def _batches(obs):
    """Batch sizes to evaluate with: the usual one, then the traced example's (clamped)."""
    shape = obs.get("export", {}).get("example_shape") or [BATCH]
    traced = shape[0] if isinstance(shape[0], int) else BATCH
    return sorted({BATCH, min(max(traced, 1), BATCH)}, reverse=True)


def _ablations(model, weights, inputs, result):
    """The re-drawn evaluations, then the rebatched one, into `result["outputs"]`; a model
    that fails on the secret batching is marked `rebatch_failed`."""
    generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
    try:
        parameters = [name for name, _ in model.named_parameters()]
        for k in range(REDRAWS):
            model.load_state_dict(_redrawn(weights["init"], weights["final"], parameters, generator), strict=False)
            out = _evaluate(model, inputs, [result["batch"]], result)
            if out is not None:
                result["outputs"][f"redrawn{k}"] = _tensor_json(out)
        model.load_state_dict(weights["final"], strict=False)
    except Exception as e:
        result.setdefault("errors", []).append(f"re-drawn weights: {type(e).__name__}: {str(e)[:300]}")
        return
    out = _rebatched(model, inputs, result, generator)
    if out is None:
        result["rebatch_failed"] = True
    else:
        result["outputs"]["rebatched"] = _tensor_json(out)


def _preferred(inputs, obs):
    """The layouts in the order to try them: first those whose rows have the shape of the
    rows the model was traced on, then the others as the task lists them. A model that
    reshapes its input (`x.view(-1, 3, 32, 32)`) takes every layout of the same size, but
    only the one it was trained on means anything."""
    shape = obs.get("export", {}).get("example_shape") or []
    rows = list(shape[1:])
    return dict(sorted(inputs.items(), key=lambda item: list(item[1].shape[1:]) != rows))


def _evaluate(model, inputs, batches, result):
    """Outputs on the first layout (and batch size) the model takes; None, with why each
    failed in `result["errors"]`, if none does."""
    errors = []
    for view, x in inputs.items():
        if result["view"] not in (None, view):
            continue
        for batch in batches:
            try:
                out = _outputs(model, x, batch)
            except Exception as e:
                errors.append(f"{view} (batches of {batch}): {type(e).__name__}: {str(e)[:300]}")
                continue
            result["view"], result["batch"] = view, batch
            return out
    result.setdefault("errors", []).extend(errors)
    return None


# The median of the re-drawn metric decides. A binary task's trained MLP, its weights shuffled,
# lands anywhere from 0.2 to 0.8: with 3 draws a correct fix of silent-nan-loss once had a
# median of 0.804 ("not learned", 0.57 when graded again); 7 draws make that negligible.
# An oracle stays high in every draw.
REDRAWS = 7


def _redrawn(init, final, parameters, generator):
    """`final` with each parameter's moved entries (those that differ from `init`) in a
    random order: the tensor's values, norm and moments stay, what training put where
    is gone."""
    state = dict(final)
    for name in parameters:
        after, before = final.get(name), init.get(name)
        if after is None or before is None or after.shape != before.shape or not after.is_floating_point():
            continue
        moved = (after != before).reshape(-1).nonzero().reshape(-1)
        if len(moved) < 2:
            continue
        flat = after.reshape(-1).clone()
        flat[moved] = flat[moved[torch.randperm(len(moved), generator=generator)]]
        state[name] = flat.reshape(after.shape)
    return state


def _rebatched(model, inputs, result, generator):
    """The final weights' outputs on the rows in a secret order, in batches of a secret
    size (the traced size when that is the only one the model takes), in row order."""
    view = result["view"]
    x = inputs[view]
    order = torch.randperm(len(x), generator=generator)
    batch = result["batch"]
    if batch == BATCH:
        batch = int(torch.randint(17, BATCH - 5, (), generator=generator))
    try:
        out = _outputs(model, x[order], batch)
    except Exception as e:
        result.setdefault("errors", []).append(
            f"the model takes batches of {result['batch']} but fails on batches of {batch}: {type(e).__name__}: {str(e)[:300]}")
        return None
    back = torch.empty_like(out)
    back[order] = out
    return back


def _same(a, b):
    return torch.equal(a, b) or a.is_floating_point() and torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)


def _check_stateless(model, loaded, result):
    """An evaluated model changes none of its weights or buffers: one that does (a counter in
    a buffer its trace adds to) can answer by the order of its calls, honestly for the first
    batch (the rows a check takes) and from a rule for the others. Its names go to
    `result["stateful"]`."""
    changed = sorted(k for k, v in model.state_dict().items() if k in loaded and not _same(v, loaded[k].to(v.dtype)))
    if changed:
        result["stateful"] = changed


# Held-out rows the path check judges the export on.
PATH_ROWS = 256


def _path_check(model, weights, inputs, result, rule):
    """The export's predictions on held-out rows, at the final weights, against its outputs at
    the first weights plus the change its parameters account for along the path between them
    (`gym_train.path_mismatch`); why they differ goes to `result["path_mismatch"]`. The
    check the train run makes on the fix's own forward, made where it cannot be told apart
    from the evaluation: no code of the fix's runs here, the model is the bytes evaluated
    (a pure function of its weights, rows and RNG state), the rows are ones it never saw. A
    forward that answered from a rule only when it was exported (its first calls after
    training, GYM-32f) or only on rows like the data is judged by that answer. Predictions
    are compared by the task's `rule`."""
    slots = script_slots(model._c)
    get, put = torch._C.ScriptModule.getattr, torch._C.ScriptModule.setattr
    init, final = weights["init"], weights["final"]
    # the parameters move along the path, the buffers stay as evaluated (a running mean takes
    # no gradient; a flag in a buffer is the re-drawn evaluations' to find)
    params = {k: get(*slots[k]) for k in script_slots(model._c, buffers=False) if k in init and k in final}

    def forward(values, x):
        saved = {k: get(*slots[k]) for k in values}
        try:
            # every call from the final state: a trace can keep a counter in a buffer
            for k, w in final.items():
                if k in slots and k not in values:
                    put(*slots[k], w)
            for k, w in values.items():
                put(*slots[k], w)
            return _in_batches(model, x, result["batch"])
        finally:
            for k, w in saved.items():
                put(*slots[k], w)

    model.load_state_dict(final, strict=False)
    x = inputs[result["view"]][:PATH_ROWS].to(_input_dtype(model))
    with torch.jit.optimized_execution(False):
        why = path_mismatch(forward, params, [x], init, final,
                            disagreement=lambda a, b: disagreement(a, b, "argmax" if rule == "argmax" else "threshold"))
    if why is not None:
        result["path_mismatch"] = why


def _tensor_json(out):
    return {"shape": list(out.shape), "values": [v if math.isfinite(v) else None for v in out.reshape(-1).tolist()]}


def predict(model_path, weights_path, inputs_path, judge_path, obs_path, out_path, rule="argmax"):
    result = {"outputs": {}, "view": None}
    with open(obs_path) as f:
        obs = json.load(f)
    try:
        result["judge"] = runpy.run_path(judge_path)["judge"](obs)
        result["judge"]["concealed"] = gym_judge.concealment(obs)
    except Exception as e:
        result["judge_error"] = f"{type(e).__name__}: {e}"
    try:
        model = torch.jit.load(model_path, map_location="cpu")
        weights = torch.load(weights_path, map_location="cpu", weights_only=True)
        inputs = _preferred(torch.load(inputs_path, map_location="cpu", weights_only=True), obs)
        model.eval()
        # "first" and "proven" (the first weights moved by the proven updates alone) come
        # with a run whose training started after a write that was no gradient step.
        for name in [n for n in ("init", "first", "proven", "final") if n in weights]:
            model.load_state_dict(weights[name], strict=False)
            out = _evaluate(model, inputs, _batches(obs), result)
            if out is not None:
                result["outputs"][name] = _tensor_json(out)
        if "final" in result["outputs"]:
            _check_stateless(model, weights["final"], result)
            _ablations(model, weights, inputs, result)
            if "init" in weights:
                try:
                    _path_check(model, weights, inputs, result, rule)
                except Exception as e:
                    result.setdefault("errors", []).append(f"path check: {type(e).__name__}: {str(e)[:300]}")
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {str(e)[:1000]}"
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    {"gen": gen, "predict": predict}[sys.argv[1]](*sys.argv[2:])
