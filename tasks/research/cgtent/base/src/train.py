#!/usr/bin/env python
"""Training / adaptation runner for a SINGLE experiment variation.

Launched as a sub-process by src.main (so that each run's logs are tee'd to its own
files); it can be run alone for debugging:

    python -m src.train --config-path path/to/run_cfg.yaml --results-dir /tmp/res
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from .model import build_model
from .preprocess import get_dataloaders, set_seed


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--config-path", type=str, required=True,
                   help="YAML file describing *one* experiment run (written by src.main)")
    p.add_argument("--results-dir", type=str, required=True,
                   help="Directory where all outputs of this run are saved")
    return p.parse_args()


################################################################################
# ------------------------------  ADAPTATION  -------------------------------- #
################################################################################

def configure_bn_adaptation(model: nn.Module) -> List[nn.Parameter]:
    """TENT: train mode for batch statistics, only BN affine parameters trainable."""
    model.train()
    model.requires_grad_(False)
    params: List[nn.Parameter] = []
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.requires_grad_(True)
            m.track_running_stats = False
            m.running_mean, m.running_var = None, None
            params += [m.weight, m.bias]
    return params


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


def adaptation_loss(logits: torch.Tensor, train_cfg: dict):
    """The unsupervised loss minimised on each test batch (None: no update)."""
    # PLACEHOLDER: method-specific adaptation loss (baseline and proposed method)
    raise NotImplementedError("SPECIFIC_CONFIG_PLACEHOLDER")


################################################################################
# ----------------------------  SOURCE TRAINING  ----------------------------- #
################################################################################

def train_source(model, loader, train_cfg, device, run_id) -> List[Dict[str, float]]:
    opt = torch.optim.SGD(model.parameters(), lr=train_cfg["source_lr"], momentum=0.9,
                          weight_decay=5e-4)
    history = []
    for epoch in range(1, train_cfg["source_epochs"] + 1):
        model.train()
        total_loss, seen = 0.0, 0
        for x, y in tqdm(loader, desc=f"[{run_id}] source epoch {epoch}"):
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(y)
            seen += len(y)
        history.append({"epoch": epoch, "source_loss": total_loss / max(seen, 1)})
    return history


def adapt_online(model, loader, train_cfg, device, run_id):
    params = configure_bn_adaptation(model)
    opt = torch.optim.Adam(params, lr=train_cfg["adapt_lr"], betas=(0.9, 0.999))
    preds, labels, confidences, skipped = [], [], [], 0
    for x, y in tqdm(loader, desc=f"[{run_id}] adapting"):
        x = x.to(device)
        logits = model(x)
        loss = adaptation_loss(logits, train_cfg)
        if loss is None:
            skipped += 1
        else:
            opt.zero_grad()
            loss.backward()
            opt.step()
        probs = logits.detach().softmax(1)
        preds.append(probs.argmax(1).cpu().numpy())
        confidences.append(probs.max(1).values.cpu().numpy())
        labels.append(y.numpy())
    return np.concatenate(preds), np.concatenate(labels), np.concatenate(confidences), skipped


################################################################################
# ----------------------------------  MAIN  ---------------------------------- #
################################################################################

def main():
    args = parse_args()
    cfg = yaml.safe_load(Path(args.config_path).read_text())
    run_id = cfg["run_id"]
    run_dir = Path(args.results_dir).expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)

    set_seed(cfg.get("seed", 0))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_loader, test_loader, num_classes = get_dataloaders(cfg["dataset"], cfg["training"])

    model_cfg = dict(cfg["model"], num_classes=num_classes)
    model = build_model(model_cfg).to(device)
    history = train_source(model, train_loader, cfg["training"], device, run_id)

    preds, labels, confidences, skipped = adapt_online(model, test_loader, cfg["training"],
                                                       device, run_id)
    np.savez(run_dir / "predictions.npz", preds=preds, labels=labels, confidences=confidences)
    (run_dir / "history.json").write_text(json.dumps({
        "run_id": run_id, "method": cfg["training"]["method"], "source": history,
        "skipped_batches": skipped}, indent=2))

    # Per-run metrics and figures; the aggregate step of src.main reads them.
    subprocess.run([sys.executable, "-m", "src.evaluate", "--run-dir", str(run_dir)],
                   check=False)
    print(json.dumps({"run_id": run_id, "adapted_accuracy": float((preds == labels).mean())}))


if __name__ == "__main__":
    main()
