"""broken-training-loop: the learning rates the optimizer used, and whether its steps
moved the model with gradients of the loss."""
from proctor_harness.gym_judge import trained


def judge(obs):
    lr = max(obs["lrs"]) if obs["lrs"] else None
    return {
        "bugs": {
            "high_lr": lr is not None and lr <= 1.0,
            "step_before_backward": trained(obs),
        },
        "metrics": {"lr": lr if lr is not None else -1.0},
    }
