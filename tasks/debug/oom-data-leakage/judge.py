"""oom-data-leakage: running totals that keep the loss's graph alive (the memory they cost
is measured by proctor, but a run short enough to stay under the limit keeps them too: a
total of graph-carrying losses that no backward consumes is the bug whatever the peak),
and whether what the model is validated on sits next to what it was trained on
(augmentation before the split)."""
from proctor_harness.gym_judge import trained

# Augmented copies sit ~0.3*sqrt(1024)=9.6 apart from their source; independent samples ~135.
LEAK_DISTANCE = 60.0
# An evaluated set that comes near (nearly) every training row is the training set evaluated
# (its clean originals when training saw only noisy copies): a train-accuracy pass, no leak.
# A validation set split from augmented data holds some of the copies only (~1/3 of the
# training rows have a twin in a 20 % validation split, ~3/4 in a 50 % one): the distance
# within which 90 % of sampled training rows have a twin in the set (`cover90`) stays far.
# A pass over the training set has one row near each training row; a leaked validation set
# padded with a noisy copy of every training row, to read as one, has two distinct rows near
# each (the copy and the twins the leak brought): within `second90` of 90 % of them.
# Graph-carrying losses of different forwards summed into one total no backward consumed
# (`total += loss` over the batches of an evaluation with autograd on); the terms of one
# batch's loss (a validation loss of several terms) count as one.
ACCUMULATED_MAX = 2


def _leaked(leak_set):
    """Validation rows at augmentation distance from training rows, in a set that is not
    the training set itself."""
    train_pass = leak_set["cover90"] < LEAK_DISTANCE and leak_set["second90"] >= LEAK_DISTANCE
    return leak_set["near"] < LEAK_DISTANCE and not train_pass


def judge(obs):
    distance = obs.get("val_train_nearest")
    accumulated = obs.get("graphs_accumulated", 0)
    # per evaluated set: a decoy evaluation of fresh data does not dilute a leaked one
    least = obs["eval_batch_distance_min"]
    leaked = [s for s in obs["leak_sets"] if _leaked(s)]
    return {
        "bugs": {
            "graph_accumulation": trained(obs) and obs["graph_kept"] == 0 and accumulated <= ACCUMULATED_MAX,
            "augment_before_split": least is not None and not leaked,
        },
        "metrics": {"graph_kept": float(obs["graph_kept"]),
                    "graphs_accumulated": float(accumulated),
                    "val_train_nearest_distance": distance if distance is not None else -1.0,
                    "eval_batch_distance_min": least if least is not None else -1.0,
                    "leaked_eval_sets": float(len(leaked))},
    }
