"""Trusted measurement helpers for the debug tasks' `grade.py` modules.

They look at what the script left behind (its namespace and the observations of
gym_grade) and measure the trained model on held-out data the script never saw.
"""
import torch
import torch.nn as nn

HELD_OUT_SEED = 7919  # no task script uses it; the agent never sees the held-out set


def find_model(namespace, name="model"):
    """The trained model: `model` if it is a module, else the largest module in the namespace."""
    candidate = namespace.get(name)
    if isinstance(candidate, nn.Module):
        return candidate
    modules = [v for v in namespace.values() if isinstance(v, nn.Module) and not isinstance(v, nn.modules.loss._Loss)]
    if not modules:
        return None
    return max(modules, key=lambda m: sum(p.numel() for p in m.parameters()))


def outputs(model, x, batch=256):
    """Model outputs on `x` in eval mode, batched; None if the model rejects the input."""
    if model is None:
        return None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    except Exception:
        return None
    finally:
        model.train(was_training)


def class_accuracy(out, y):
    """Accuracy of argmax predictions against class indices (or one-hot rows)."""
    if out is None or out.dim() != 2 or out.shape[0] != len(y):
        return 0.0
    if y.dim() == 2:
        y = y.argmax(dim=1)
    return float((out.argmax(dim=1) == y).float().mean())


def binary_accuracy(out, y):
    """Accuracy of a one-output binary classifier, whether it emits probabilities or logits."""
    if out is None:
        return 0.0
    out = out.reshape(len(y), -1)[:, 0] if out.numel() == len(y) else None
    if out is None or not torch.isfinite(out).all():
        return 0.0
    is_probability = bool(((out >= 0) & (out <= 1)).all())
    pred = out > (0.5 if is_probability else 0.0)
    return float((pred.float() == y.float()).float().mean())


def multilabel_f1(out, y):
    """Micro F1 of sigmoid(logits) > 0.5 against a multi-hot matrix."""
    if out is None or out.shape != y.shape or not torch.isfinite(out).all():
        return 0.0
    pred = (torch.sigmoid(out) > 0.5).float()
    tp = float((pred * y).sum())
    fp = float((pred * (1 - y)).sum())
    fn = float(((1 - pred) * y).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1e-9)


def trained_properly(obs):
    """Steps happened, each right after its own backward pass."""
    return obs["step_calls"] > 0 and obs["steps_without_fresh_backward"] == 0


def final_loss(obs):
    """Mean of the last 10 losses backward() was called on (measured, not printed)."""
    values = [v for v in obs["losses"][-10:] if isinstance(v, float)]
    return sum(values) / len(values) if values else float("inf")


def max_lr(obs):
    return max(obs["lrs"]) if obs["lrs"] else None


def nearest_distance(a, b, limit=400):
    """Median distance from each of (up to `limit`) rows of `a` to its nearest row of `b`."""
    a = a.reshape(len(a), -1)[:limit].float()
    b = b.reshape(len(b), -1).float()
    d = torch.cdist(a, b)
    return float(d.min(dim=1).values.median())


def original_generator(task_dir, script="broken.py", function="make_data"):
    """The task's own data generator, taken from the pristine script in the task folder
    (not from the agent's code): its imports, UPPER_CASE constants and `function`."""
    import ast
    import os

    path = os.path.join(task_dir, script)
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    keep = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            keep.append(node)
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets):
            keep.append(node)
        elif isinstance(node, ast.FunctionDef) and node.name == function:
            keep.append(node)
    namespace = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), path, "exec"), namespace)
    return namespace[function]


def held_out(task_dir, n, seed=HELD_OUT_SEED):
    """`n` fresh samples from the task's own generator, with a seed no script uses."""
    return original_generator(task_dir)(n, seed)
