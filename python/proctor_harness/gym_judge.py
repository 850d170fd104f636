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


def all_stepped_params_moved(obs):
    """Every model parameter an optimizer steps moved: none kept frozen by a hook."""
    moved = sum(1 for v in obs["params_moved"].values() if v and v > 0)
    return obs["model_params_stepped"] > 0 and moved >= obs["model_params_stepped"]
