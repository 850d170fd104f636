"""Trusted grader of broken-training-loop: learning rate and step/backward order as
observed in the optimizer, accuracy measured on held-out data."""
import os

from proctor_harness import gym_eval as ev

HERE = os.path.dirname(os.path.abspath(__file__))


def evaluate(ns, obs):
    lr = ev.max_lr(obs)
    x, y = ev.held_out(HERE, 2000)
    return {
        "bugs": {
            "high_lr": lr is not None and lr <= 1.0,
            "step_before_backward": ev.trained_properly(obs),
        },
        "metrics": {
            "val_acc": ev.class_accuracy(ev.outputs(ev.find_model(ns), x), y),
            "final_loss": ev.final_loss(obs),
            "lr": lr if lr is not None else -1.0,
        },
    }
