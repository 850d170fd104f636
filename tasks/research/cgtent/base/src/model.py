"""Model definitions."""
from __future__ import annotations

import torch.nn as nn


def build_model(model_cfg: dict) -> nn.Module:
    name = model_cfg["name"].lower()
    # PLACEHOLDER: build the experiment's model (BatchNorm layers required for adaptation)
    return MODEL_PLACEHOLDER
