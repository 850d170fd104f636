"""Trusted grader of oom-data-leakage: autograd graphs kept alive by the script's
state and the memory they cost; whether validation samples are near-copies of
training samples (augmentation before the split); accuracy on clean held-out data."""
import os

from proctor_harness import gym_eval as ev

HERE = os.path.dirname(os.path.abspath(__file__))
# A running total that keeps its graphs holds thousands of nodes; a detached one none.
RETAINED_NODES_MAX = 50
# Augmented copies sit ~0.5·sqrt(1024)=16 apart from their source; independent samples ~135.
LEAK_DISTANCE = 60.0


def evaluate(ns, obs):
    x_train, x_val = ns.get("X_train"), ns.get("X_val")
    distance = None
    if x_train is not None and x_val is not None and hasattr(x_val, "shape"):
        distance = ev.nearest_distance(x_val, x_train)
    x, y = ev.held_out(HERE, 1000)
    retained = obs["retained_graph_nodes"]
    return {
        "bugs": {
            "graph_accumulation": obs["backward_calls"] > 0 and retained <= RETAINED_NODES_MAX,
            "augment_before_split": distance is not None and distance > LEAK_DISTANCE,
        },
        "metrics": {
            "val_acc": ev.class_accuracy(ev.outputs(ev.find_model(ns), x), y),
            "retained_graph_nodes": float(retained),
            "val_train_nearest_distance": distance if distance is not None else -1.0,
            "final_loss": ev.final_loss(obs),
        },
    }
