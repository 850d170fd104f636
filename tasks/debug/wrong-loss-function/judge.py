"""wrong-loss-function: the loss whose gradients trained the model (its autograd graph,
however it was called: no softmax over the tags, a per-tag binary loss), and the rule the
script applied to its model's outputs in evaluation: no argmax (a threshold may be applied
where torch cannot see it, in numpy or on lists; the F1 the script reports must then agree
with what its model gets under thresholds, which the task's gate checks)."""
from proctor_harness.gym_judge import SOFTMAX_NODES, evaluated, graph_has, trained

PER_TAG = ("BinaryCrossEntropyWithLogitsBackward0", "BinaryCrossEntropyBackward0",
           "LogSigmoidBackward0", "SoftplusBackward0", "SigmoidBackward0")


def judge(obs):
    return {
        "bugs": {
            "wrong_loss": trained(obs) and graph_has(obs, *PER_TAG) and not graph_has(obs, *SOFTMAX_NODES),
            "argmax_eval": evaluated(obs) and obs["eval_argmax"] == 0,
        },
        "metrics": {},
    }
