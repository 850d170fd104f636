"""src/main.py - orchestrator: runs src.train for one run in a subprocess, then src.evaluate."""
from __future__ import annotations

import subprocess
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="../config", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    if cfg.run is None:
        raise ValueError("run=<run_id> must be given on the command line")
    overrides = [f"run={cfg.run}", f"results_dir={cfg.results_dir}", f"mode={cfg.mode}"]
    for module in ("src.train", "src.evaluate"):
        cmd = [sys.executable, "-u", "-m", module, *overrides]
        print("[main] launching:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
