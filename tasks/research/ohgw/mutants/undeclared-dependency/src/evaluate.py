"""Evaluation of a trained model and the summary of all variations."""

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm


@torch.no_grad()
def evaluate(model, loader, device, max_batches=None):
    """Mean loss and accuracy of `model` on `loader`."""
    model.to(device).eval()
    total, correct, loss_sum = 0, 0, 0.0
    for i, (x, y) in enumerate(tqdm(loader, disable=True)):
        if max_batches and i >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
        total += y.numel()
    model.train()
    return {"loss": loss_sum / max(total, 1), "accuracy": correct / max(total, 1)}


def summarize(results_dir):
    """Collects every variation's results into `<results_dir>/summary.json`."""
    results_dir = Path(results_dir)
    summary = {}
    for path in sorted(results_dir.glob("*/results.json")):
        result = json.loads(path.read_text())
        summary[result["variation"]] = {
            "best_val_accuracy": result["best_val_accuracy"],
            "test_accuracy": result["test"]["accuracy"],
            "best_config": result["best_config"],
        }
    (results_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
