#!/usr/bin/env python
"""Main orchestrator script.

(1) Smoke test - every run variation on a few batches, to check that all of them execute:

    uv run python -m src.main --smoke-test --results-dir /tmp/cgtent_results

(2) Full experiment - every run variation of config/full_experiment.yaml:

    uv run python -m src.main --full-experiment --results-dir /path/to/results
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import List

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def parse_args():
    p = argparse.ArgumentParser()
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--smoke-test", action="store_true")
    g.add_argument("--full-experiment", action="store_true")
    p.add_argument("--results-dir", type=str, required=True,
                   help="Directory to store *all* outputs (logs, figures, metrics)")
    return p.parse_args()


# ------------------------------------------------------------------ helpers #

def _tee(stream, log_file, echo):
    """Copy the child's stream line by line to its log file and to our own stream."""
    for line in iter(stream.readline, b""):
        decoded = line.decode(errors="replace")
        log_file.write(decoded)
        log_file.flush()
        echo.write(decoded)
        echo.flush()
    stream.close()


def _launch_train(run_cfg: dict, results_root: Path) -> None:
    run_id = run_cfg["run_id"]
    run_dir = results_root / run_id
    run_dir.mkdir(parents=True, exist_ok=True)

    # The single-run YAML the sub-process consumes
    run_cfg_path = run_dir / "config.yaml"
    run_cfg_path.write_text(yaml.safe_dump(run_cfg, sort_keys=False))

    cmd = [sys.executable, "-m", "src.train", "--config-path", str(run_cfg_path),
           "--results-dir", str(run_dir)]
    print(f"[main] launching {run_id}: {' '.join(cmd)}", flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    with (run_dir / "stdout.log").open("w") as out_f, (run_dir / "stderr.log").open("w") as err_f:
        threads: List[threading.Thread] = [
            threading.Thread(target=_tee, args=(proc.stdout, out_f, sys.stdout), daemon=True),
            threading.Thread(target=_tee, args=(proc.stderr, err_f, sys.stderr), daemon=True),
        ]
        for t in threads:
            t.start()
        proc.wait()
        for t in threads:
            t.join()

    if proc.returncode != 0:
        raise RuntimeError(f"Run {run_id} failed with exit code {proc.returncode}")


# --------------------------------------------------------------------- main #

def main():
    args = parse_args()
    results_root = Path(args.results_dir).expanduser()
    if results_root.exists():
        shutil.rmtree(results_root, ignore_errors=True)
    results_root.mkdir(parents=True, exist_ok=True)

    cfg_path = CONFIG_DIR / ("smoke_test.yaml" if args.smoke_test else "full_experiment.yaml")
    config = yaml.safe_load(cfg_path.read_text())
    for run_cfg in config["experiments"]:
        _launch_train(run_cfg, results_root)

    # After all runs -> aggregate
    subprocess.run([sys.executable, "-m", "src.evaluate", "--results-dir", str(results_root)],
                   check=True)


if __name__ == "__main__":
    main()
