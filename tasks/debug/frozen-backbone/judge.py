"""frozen-backbone: no frozen parameter handed to the optimizer, and every parameter it
steps really moves (a gradient-zeroing hook keeps a "trainable" backbone frozen)."""
from proctor_harness.gym_judge import all_stepped_params_moved, trained


def judge(obs):
    return {
        "bugs": {
            "frozen_in_optimizer": trained(obs) and obs["model_params_frozen_held"] == 0
            and all_stepped_params_moved(obs),
        },
        "metrics": {"optimizer_frozen_params": float(obs["model_params_frozen_held"])},
    }
