"""src/evaluate.py - collects every run's metrics into results_dir/summary.json."""
import argparse
import json
from pathlib import Path

import yaml


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--results-dir", required=True)
    args = parser.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    results = Path(args.results_dir)
    summary = {}
    for run in cfg["runs"]:
        metrics_file = results / run["name"] / "metrics.json"
        if not metrics_file.exists():
            raise RuntimeError(f"Run {run['name']} produced no metrics: it failed")
        summary[run["name"]] = json.loads(metrics_file.read_text())
    (results / "summary.json").write_text(json.dumps(summary, indent=2))
    for name, metrics in summary.items():
        print(f"[evaluate] {name}: accuracy={metrics['accuracy']:.4f}")


if __name__ == "__main__":
    main()
