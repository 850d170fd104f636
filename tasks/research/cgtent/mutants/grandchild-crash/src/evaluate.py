#!/usr/bin/env python
"""Metrics and figures.

`--run-dir DIR`: one run's metrics (accuracy, expected calibration error, per-class
accuracy) and reliability diagram from its predictions; launched by src.train.
`--results-dir DIR`: every run's metrics compared in one table and bar chart; launched
once by src.main after all runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser()
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--run-dir", type=str, help="one run's directory (its predictions.npz)")
    g.add_argument("--results-dir", type=str, help="root directory holding every run")
    return p.parse_args()


# ------------------------------------------------------------------ one run #

def expected_calibration_error(confidences, correct, n_bins: int = 15) -> float:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidences > lo) & (confidences <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidences[in_bin].mean())
    return float(ece)


def reliability_diagram(confidences, correct, path: Path, title: str, n_bins: int = 15):
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    accs = [correct[(confidences > lo) & (confidences <= hi)].mean()
            if ((confidences > lo) & (confidences <= hi)).any() else 0.0
            for lo, hi in zip(edges[:-1], edges[1:])]
    plt.figure(figsize=(4, 4))
    plt.bar(centers, accs, width=1.0 / n_bins, edgecolor="black", label="accuracy")
    plt.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    plt.xlabel("Confidence")
    plt.ylabel("Accuracy")
    plt.title(title)
    plt.legend()
    plt.tight_layout()
    plt.savefig(path, bbox_inches="tight")
    plt.close()


def evaluate_run(run_dir: Path) -> Dict:
    data = np.load(run_dir / "predictions.npz")
    history = json.loads((run_dir / "history.json").read_text())
    preds, labels, confidences = data["preds"], data["labels"], data["confidences"]
    correct = (preds == labels).astype(np.float64)
    per_class = {int(c): float(correct[labels == c].mean()) for c in np.unique(labels)}
    metrics = {
        "run_id": history["run_id"],
        "method": history["method"],
        "accuracy": float(correct.mean()),
        "ece": expected_calibration_error(confidences, correct),
        "mean_confidence": confidences.mean(),
        "per_class_accuracy": per_class,
        "skipped_batches": history["skipped_batches"],
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    images = run_dir / "images"
    images.mkdir(exist_ok=True)
    reliability_diagram(confidences, correct, images / "reliability.pdf", history["run_id"])
    return metrics


# ---------------------------------------------------------------- all runs #

def collect_metrics(results_dir: Path) -> List[Dict]:
    records = []
    for sub in sorted(results_dir.iterdir()):
        metrics_file = sub / "metrics.json"
        if sub.is_dir() and metrics_file.exists():
            records.append(json.loads(metrics_file.read_text()))
    if not records:
        raise RuntimeError(f"No metrics.json files found in {results_dir}")
    return records


def compare_runs(results_dir: Path) -> None:
    import pandas as pd
    import seaborn as sns

    df = pd.DataFrame.from_records(collect_metrics(results_dir))
    images = results_dir / "images"
    images.mkdir(exist_ok=True, parents=True)
    for metric, label in (("accuracy", "Accuracy on the corrupted stream"), ("ece", "ECE")):
        plt.figure()
        sns.barplot(x="run_id", y=metric, data=df)
        plt.ylabel(label)
        plt.xlabel("Run")
        plt.xticks(rotation=20)
        plt.tight_layout()
        plt.savefig(images / f"{metric}_comparison.pdf", bbox_inches="tight")
        plt.close()
    comparison = df[["run_id", "method", "accuracy", "ece"]].to_dict(orient="records")
    (results_dir / "comparison.json").write_text(json.dumps(comparison, indent=2))
    print(json.dumps({"comparison": comparison}))


def main():
    args = parse_args()
    if args.run_dir:
        print(json.dumps(evaluate_run(Path(args.run_dir).expanduser())))
    else:
        compare_runs(Path(args.results_dir).expanduser())


if __name__ == "__main__":
    main()
