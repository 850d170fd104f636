"""Entry point: python -m src.main (--smoke-test | --full-experiment) --results-dir DIR [--variation NAME]."""

import argparse
from pathlib import Path

import yaml

from src.evaluate import summarize
from src.train import run_variation


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="OHGW experiment runner")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--smoke-test", action="store_true", help="run config/smoke_test.yaml")
    mode.add_argument("--full-experiment", action="store_true", help="run config/full_experiment.yaml")
    parser.add_argument("--results-dir", required=True, help="where results are written")
    parser.add_argument("--variation", default=None, help="run only this run variation")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    name = "smoke_test.yaml" if args.smoke_test else "full_experiment.yaml"
    with open(Path("config") / name) as f:
        cfg = yaml.safe_load(f)
    variations = cfg["variations"]
    selected = [args.variation] if args.variation else list(variations)
    for variation in selected:
        if variation not in variations:
            raise SystemExit(f"unknown variation {variation!r}; known: {', '.join(variations)}")
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    for variation in selected:
        result = run_variation(cfg, variation, variations[variation], results_dir)
        print(f"{variation}: best val accuracy {result['best_val_accuracy']:.4f}")
    summarize(results_dir)


if __name__ == "__main__":
    main()
