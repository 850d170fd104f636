"""The model (experiment specific: filled in by the derivation)."""

import torch.nn as nn


def build_model(cfg):
    """The model named by the config."""
    # MODEL_PLACEHOLDER: build the experiment's model from cfg["model"] and cfg["dataset"].
    raise NotImplementedError("MODEL_PLACEHOLDER")
