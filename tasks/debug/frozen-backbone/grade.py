"""Trusted grader of frozen-backbone: which parameters the optimizer holds and which
require grad at its first step, and accuracy on held-out data."""
import os

from proctor_harness import gym_eval as ev

HERE = os.path.dirname(os.path.abspath(__file__))


def evaluate(ns, obs):
    optimizers = obs["optimizers"]
    x, y = ev.held_out(HERE, 2000)
    model = ev.find_model(ns)
    head = getattr(model, "head", None)
    head_params = sum(1 for _ in head.parameters()) if head is not None else 0
    trainable_held = sum(o["params"] - o["frozen_params"] for o in optimizers)
    frozen_held = sum(o["frozen_params"] for o in optimizers)
    # Part of the backbone unfrozen, the rest still frozen and still handed to the optimizer.
    partial = frozen_held > 0 and trainable_held > head_params
    return {
        "partial": ["frozen_in_optimizer"] if partial else [],
        "bugs": {
            "frozen_in_optimizer": bool(optimizers)
            and all(o["frozen_params"] == 0 for o in optimizers)
            and ev.trained_properly(obs),
        },
        "metrics": {
            "val_acc": ev.class_accuracy(ev.outputs(ev.find_model(ns), x), y),
            "final_loss": ev.final_loss(obs),
            "optimizer_frozen_params": float(sum(o["frozen_params"] for o in optimizers)),
        },
    }
