"""wrong-loss-function: the loss whose gradients trained the model (its autograd graph,
however it was called: no softmax over the tags), and the rule the
script applied to its model's outputs in evaluation: no argmax, whether called by name or
written another way (predictions with one tag in every row: equal to the row's max, sort,
one_hot, scatter). A threshold may be applied where torch cannot see it, in numpy or on
lists; the F1 the script reports must then agree with what its model gets under thresholds,
which the task's gate checks (it can only lower a score)."""
from proctor_harness.gym_judge import evaluated, graph_has, trained

# The data's tags: a softmax normalising over as many entries is one over the tags; one over
# another count (a gate choosing between two experts inside the model) is part of the model.
TAGS = 6

# A per-tag binary loss is not recognised by the ops it is written with: BCE modules, a
# softplus / log1p(exp) / logaddexp written by hand, a soft-margin (logistic) loss on -1/+1
# targets, a sigmoid made of tanh all are one. That the model learned independent per-tag
# probabilities is measured on held-out data by the bug's gate (calibration, `bce`); the
# graph can only show the bug: a softmax over the tags in any loss that trained it.


def _one_tag_per_row(obs):
    """A prediction tensor from the eval outputs gives every sample exactly one tag. Samples
    carry ~3.7 of 6 tags and thresholded predictions give one tag to about one row in ten:
    8 such rows in a row do not happen by chance; batches of 2-7 rows need to show it in
    half of the evaluation forwards."""
    small = obs["eval_small_one_per_row"]
    return obs["eval_one_per_row"] > 0 or small >= max(4, 0.5 * obs["eval_forwards"])


def _softmax_over_tags(obs):
    """A softmax over the tags in a graph that trained the model. The graphs walked once the
    run is over have freed what tells a softmax's width (`?`): those count only when no
    softmax of a known width was seen."""
    softmax = ("SoftmaxBackward0", "LogSoftmaxBackward0")
    known = any(k.startswith(tuple(f"{n}@" for n in softmax)) and not k.endswith("@?")
                for k, v in obs["loss_graph_ops"].items() if v)
    widths = (str(TAGS),) if known else (str(TAGS), "?")
    return graph_has(obs, "NllLossBackward0", "NllLoss2DBackward0") or graph_has(
        obs, *(f"{n}@{w}" for n in softmax for w in widths))


def judge(obs):
    return {
        "bugs": {
            "wrong_loss": trained(obs) and not _softmax_over_tags(obs),
            "argmax_eval": evaluated(obs) and obs["eval_argmax"] == 0 and not _one_tag_per_row(obs),
        },
        "metrics": {},
    }
