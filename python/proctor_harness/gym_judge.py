"""Facts the debug tasks' `judge.py` rules share, read from a train run's observations
(untrusted hints: they can only lower a score the held-out metric supports)."""

SOFTMAX_NODES = ("LogSoftmaxBackward0", "SoftmaxBackward0", "NllLossBackward0", "NllLoss2DBackward0")


def trained(obs, share=0.9):
    """Optimizer steps happened, and (nearly) each one moved the model with gradients that
    had reached its parameters: a throwaway backward or a step on stale grads is not one."""
    return obs["steps"] > 0 and obs["effective_steps"] >= share * obs["steps"]


def finite_training(obs):
    """No NaN/inf anywhere in the training graph (a skipped batch was still computed),
    in a loss backward ran on, or in a gradient a step used."""
    return (obs["backward_calls"] > 0 and obs["nonfinite_in_graph"] == 0
            and all(v is not None for v in obs["losses"])
            and obs["finite_grad_steps"] == obs["steps"])


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


def concealment(obs):
    """Signs that a bug was hidden rather than removed, whatever the task: they place a
    score at the bottom of its band (a fix that removes the bug shows none of them)."""
    signs = []
    if obs["nonfinite_in_graph"] > 0 and all(v is not None for v in obs["losses"]):
        signs.append("NaN/inf was computed in training but never reached a backward "
                     "(batches skipped or the loss patched)")
    if obs["steps"] > 0 and obs["model_params_stepped"] > 0 and not all_stepped_params_moved(obs):
        signs.append("parameters handed to the optimizer as trainable did not train "
                     "(gradients zeroed or dropped, or the weights written back)")
    return signs
