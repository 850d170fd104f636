"""Facts the debug tasks' `judge.py` rules share, read from a train run's observations
(untrusted hints: they can only lower a score the held-out metric supports)."""


def trained(obs, share=0.9):
    """Optimizer steps happened, and (nearly) each one moved the model with gradients that
    had reached its parameters: a throwaway backward or a step on stale grads is not one.
    Steps that moved nothing are left out (LBFGS stops moving once it has converged).
    Without an optimizer, (nearly) every in-place update of the parameters was a gradient
    step on autograd's gradients (manual SGD)."""
    if obs["steps"] > 0:
        moving = obs["steps"] - obs.get("idle_steps", 0)
        return obs["effective_steps"] > 0 and obs["effective_steps"] >= share * moving
    manual = obs.get("manual_updates", 0)
    return manual > 0 and obs.get("manual_proven", 0) >= share * manual


def finite_training(obs):
    """No NaN/inf anywhere in the training graph (a skipped batch was still computed),
    computed from the model's outputs in any grad mode (a no_grad look-ahead that decides
    to skip a batch), in a loss backward ran on, or in a gradient a step used."""
    return (obs["backward_calls"] > 0 and obs["nonfinite_in_graph"] == 0 and obs["nonfinite_outputs"] == 0
            and all(v is not None for v in obs["losses"])
            and obs["finite_grad_steps"] == obs["steps"])


def evaluated(obs):
    """The script ran its model for evaluation: a forward out of train mode or without grad."""
    return obs["eval_forwards"] > 0


def graph_has(obs, *nodes):
    return any(obs["loss_graph_ops"].get(n, 0) > 0 for n in nodes)


def _trained_params(obs):
    """Parameters whose steps moved them, and were not put back between steps."""
    rewritten = obs.get("params_rewritten", {})
    return {k for k, v in obs["params_moved"].items() if v and v > 0 and rewritten.get(k, 0.0) < 0.5 * v}


def all_stepped_params_moved(obs):
    """Every model parameter an optimizer steps as trainable moved, and kept its moves:
    none held still by a gradient-zeroing hook, dropped grads or weights written back."""
    return obs["model_params_stepped"] > 0 and len(_trained_params(obs)) >= obs["model_params_stepped"]


# A functional loss (by the most specific name it was called under) and the autograd nodes
# that show it in the graph of a backward.
LOSS_NODES = (
    ("binary_cross_entropy_with_logits", ("BinaryCrossEntropyWithLogitsBackward0",)),
    ("binary_cross_entropy", ("BinaryCrossEntropyBackward0",)),
    ("cross_entropy", ("LogSoftmaxBackward0", "NllLossBackward0", "NllLoss2DBackward0")),
    ("nll_loss", ("NllLossBackward0", "NllLoss2DBackward0")),
    ("mse_loss", ("MseLossBackward0",)),
)


def untrained_losses(obs):
    """Losses computed with gradients in training that no backward ever ran through (one
    dummy call of the right loss next to the one that really trains)."""
    if not obs["backward_calls"]:
        return []
    called = set()
    for call in obs["loss_calls"]:
        called.update(next(([(n, nodes)] for n, nodes in LOSS_NODES if n in call["op"]), []))
    return sorted(n for n, nodes in called if not graph_has(obs, *nodes))


def concealment(obs):
    """Signs that a bug was hidden rather than removed, whatever the task: they place a
    score at the bottom of its band (a fix that removes the bug shows none of them)."""
    signs = []
    nonfinite = obs["nonfinite_in_graph"] + obs["nonfinite_outputs"]
    if nonfinite > 0 and all(v is not None for v in obs["losses"]):
        signs.append("NaN/inf was computed in training but never reached a backward "
                     "(batches skipped or the loss patched)")
    for name in untrained_losses(obs):
        signs.append(f"a {name} loss was computed with gradients but never trained on")
    if obs["steps"] > 0 and obs["model_params_stepped"] > 0 and not all_stepped_params_moved(obs):
        signs.append("parameters handed to the optimizer as trainable did not train "
                     "(gradients zeroed or dropped, or the weights written back)")
    return signs
