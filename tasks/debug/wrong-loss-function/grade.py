"""Trusted grader of wrong-loss-function: the loss the script called on multi-hot
targets, the prediction rule it applied to the model's outputs, and micro F1 of the
trained model on held-out data."""
import os

from proctor_harness import gym_eval as ev

HERE = os.path.dirname(os.path.abspath(__file__))
MULTI_LABEL_LOSSES = {"BCEWithLogitsLoss", "binary_cross_entropy_with_logits", "BCELoss", "binary_cross_entropy"}
SINGLE_LABEL_LOSSES = {"CrossEntropyLoss", "cross_entropy", "NLLLoss", "nll_loss"}


def evaluate(ns, obs):
    used = set(obs["loss_calls"])
    x, y = ev.held_out(HERE, 2000)
    model = ev.find_model(ns)
    out = ev.outputs(model, x)
    if out is not None and "BCELoss" in used | {"binary_cross_entropy"} and bool(((out >= 0) & (out <= 1)).all()):
        out = (out.clamp(1e-6, 1 - 1e-6) / (1 - out.clamp(1e-6, 1 - 1e-6))).log()  # probabilities back to logits
    return {
        "bugs": {
            "wrong_loss": bool(used & MULTI_LABEL_LOSSES) and not (used & SINGLE_LABEL_LOSSES),
            # Thresholding (sigmoid > 0.5, or logits > 0) leaves no trace; argmax on outputs does.
            "argmax_eval": obs["backward_calls"] > 0 and obs["model_outputs_argmax"] == 0,
        },
        "metrics": {
            "f1": ev.multilabel_f1(out, y),
            "final_loss": ev.final_loss(obs),
        },
    }
