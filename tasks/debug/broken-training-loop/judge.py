"""broken-training-loop: the learning rates the optimizer used — read before each step,
inside it after the update (an optimizer's own hooks may raise the lr for the step and put
it back after), and for SGD measured from the move the update made, also on the gradient of
the loss as a mean over its rows (lr 0.01 on `loss * 1000` steps as lr 10) — and whether its
steps moved the model with gradients of the loss."""
from proctor_harness.gym_judge import trained


def judge(obs):
    lr = max(obs["lrs"] + [obs["lr_in_step_max"], obs["lr_measured_max"], obs.get("lr_effective_max", 0.0)]) \
        if obs["lrs"] else None
    return {
        "bugs": {
            # a step whose lr could not be read inside it (the read bypassed) is no evidence
            "high_lr": lr is not None and lr <= 1.0 and obs["steps_lr_unread"] == 0,
            "step_before_backward": trained(obs),
        },
        "metrics": {"lr": lr if lr is not None else -1.0},
    }
