"""oom-data-leakage: running totals that keep the loss's graph alive (the memory they cost
is measured by proctor, but a run short enough to stay under the limit keeps them too: a
total of graph-carrying losses that no backward consumes is the bug whatever the peak),
and whether what the model is validated on sits next to what it was trained on
(augmentation before the split)."""
from proctor_harness.gym_judge import trained

# Augmented copies sit ~0.5*sqrt(1024)=16 apart from their source; independent samples ~135.
LEAK_DISTANCE = 60.0
# Graph-carrying losses summed into one total no backward consumed (`total += loss` over
# the batches of an evaluation with autograd on); a validation loss of two terms is not it.
ACCUMULATED_MAX = 2


def judge(obs):
    distance = obs.get("val_train_nearest")
    accumulated = obs.get("graphs_accumulated", 0)
    # per evaluated batch: a decoy evaluation of fresh data does not dilute a leaked one
    least = obs["eval_batch_distance_min"]
    return {
        "bugs": {
            "graph_accumulation": trained(obs) and obs["graph_kept"] == 0 and accumulated <= ACCUMULATED_MAX,
            "augment_before_split": least is not None and least > LEAK_DISTANCE,
        },
        "metrics": {"graph_kept": float(obs["graph_kept"]),
                    "graphs_accumulated": float(accumulated),
                    "val_train_nearest_distance": distance if distance is not None else -1.0,
                    "eval_batch_distance_min": least if least is not None else -1.0},
    }
