"""Trusted grader of silent-nan-loss: every loss backward() saw is finite and the
weights stay finite; accuracy measured on held-out data."""
import os

import torch

from proctor_harness import gym_eval as ev

HERE = os.path.dirname(os.path.abspath(__file__))


def evaluate(ns, obs):
    model = ev.find_model(ns)
    weights_finite = model is not None and all(bool(torch.isfinite(p).all()) for p in model.parameters())
    x, y = ev.held_out(HERE, 2000)
    return {
        "bugs": {
            "unprotected_log": obs["backward_calls"] > 0 and obs["nonfinite_losses"] == 0 and weights_finite,
        },
        "metrics": {
            "val_acc": ev.binary_accuracy(ev.outputs(model, x), y),
            "nan_losses": float(obs["nonfinite_losses"]),
            "final_loss": ev.final_loss(obs),
        },
    }
