"""silent-nan-loss: nothing non-finite anywhere in training (a NaN batch skipped was
still computed; a log clamped on one side still yields -inf on the other)."""
from proctor_harness.gym_judge import finite_training, trained


def judge(obs):
    return {
        "bugs": {"unprotected_log": finite_training(obs) and trained(obs)},
        "metrics": {"nan_losses": float(sum(v is None for v in obs["losses"]) + obs["nonfinite_in_graph"])},
    }
