"""src/main.py - runs every configured run as its own process (src.train), then src.evaluate."""
import argparse
import subprocess
import sys
from pathlib import Path

import yaml


def parse_args():
    parser = argparse.ArgumentParser(description="CAEM experiment runner")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--smoke-test", action="store_true", help="run config/smoke_test.yaml")
    mode.add_argument("--full-experiment", action="store_true", help="run config/full_experiment.yaml")
    parser.add_argument("--results-dir", required=True, help="where results are written")
    return parser.parse_args()


def main():
    args = parse_args()
    config = Path("config") / ("smoke_test.yaml" if args.smoke_test else "full_experiment.yaml")
    cfg = yaml.safe_load(config.read_text())
    Path(args.results_dir).mkdir(parents=True, exist_ok=True)
    for run in cfg["runs"]:
        cmd = [sys.executable, "-m", "src.train", "--config", str(config),
               "--run", run["name"], "--results-dir", args.results_dir]
        print("[main] launching:", " ".join(cmd), flush=True)
        done = subprocess.run(cmd, check=False)
        if done.returncode != 0:
            print(f"[main] run {run['name']} failed with exit code {done.returncode}", flush=True)
    subprocess.run([sys.executable, "-m", "src.evaluate", "--config", str(config),
                    "--results-dir", args.results_dir], check=True)


if __name__ == "__main__":
    main()
