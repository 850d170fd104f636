"""src/evaluate.py - collects a run's metrics into results_dir/summary.json."""
from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="../config", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    results = Path(cfg.results_dir)
    metrics = json.loads((results / cfg.run / "metrics.json").read_text())
    summary_file = results / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    summary[cfg.run] = metrics
    summary_file.write_text(json.dumps(summary, indent=2))
    print(f"[evaluate] {cfg.run}: accuracy={metrics['accuracy']:.4f}")


if __name__ == "__main__":
    main()
