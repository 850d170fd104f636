"""silent-nan-loss: nothing non-finite anywhere in training (a NaN batch skipped was
still computed; a log clamped on one side still yields -inf on the other), and no log in
the loss taken of the sigmoid's output as it is: training fewer epochs stops before the
float32 sigmoid saturates, the log is as unprotected as before."""
from proctor_harness.gym_judge import finite_training, trained


def judge(obs):
    raw_logs = obs.get("raw_log_inputs", 0)
    return {
        "bugs": {"unprotected_log": finite_training(obs) and trained(obs) and raw_logs == 0},
        "metrics": {"nan_losses": float(sum(v is None for v in obs["losses"]) + obs["nonfinite_in_graph"]
                                        + obs["nonfinite_outputs"]),
                    "raw_log_inputs": float(raw_logs)},
    }
