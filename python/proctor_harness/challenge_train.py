"""Training step of a challenge submission, inside the sandbox (participant code runs here).

Reads ../inputs/job.json, ../inputs/train.safetensors, ../inputs/val.safetensors and the
participant's project in ../inputs/code/; builds the loaders exactly like the original
benchmark, calls `Solution().solve(train_loader, val_loader, metadata)` and exports the
returned module with `torch.save` (the whole module; classes defined inside solve() by value,
see challenge_export.py) to `model.pt` in the scratch dir.
`train_result.json` records the solve() time; on failure `train_error.json` holds the
reason and traceback. Nothing here is trusted by proctor: the artifact is counted on the
trusted side without executing it.
"""
import importlib
import json
import os
import sys
import time

INPUTS = os.path.join("..", "inputs")


def _fail(kind, message):
    with open("train_error.json", "w") as f:
        json.dump({"kind": kind, "message": message[-20000:]}, f)
    print(message, file=sys.stderr)
    sys.exit(1)


def module_name(entrypoint):
    return entrypoint[:-3].replace("/", ".")


def main():
    with open(os.path.join(INPUTS, "job.json")) as f:
        job = json.load(f)
    sys.path.insert(0, os.path.abspath(os.path.join(INPUTS, "harness")))
    import proctor_cpu

    if job.get("simulate_host_cpus"):
        proctor_cpu.simulate_host(int(job["simulate_host_cpus"]))
    proctor_cpu.apply(int(job["cpu_threads"]))
    import numpy as np
    import torch
    from safetensors.torch import load_file
    from torch.utils.data import DataLoader, TensorDataset

    batch = int(job["batch_size"])
    train = load_file(os.path.join(INPUTS, "train.safetensors"))
    val = load_file(os.path.join(INPUTS, "val.safetensors"))
    train_loader = DataLoader(TensorDataset(train["x"], train["y"]), batch_size=batch, shuffle=True)
    val_loader = DataLoader(TensorDataset(val["x"], val["y"]), batch_size=batch, shuffle=False)
    metadata = dict(job["metadata"])

    code = os.path.abspath(os.path.join(INPUTS, "code"))
    sys.path.insert(1, code)
    import proctor_errors
    import proctor_export
    try:
        module = importlib.import_module(module_name(job["entrypoint"]))
        cls = getattr(module, job["class"], None)
        if cls is None:
            raise AttributeError(f"{job['class']} class not found in {job['entrypoint']}")
        solution = cls()
    except BaseException:
        _fail("import", proctor_errors.participant_traceback())

    torch.manual_seed(2025)
    np.random.seed(2025)
    start = time.time()
    try:
        model = solution.solve(train_loader, val_loader, metadata)
    except BaseException:
        _fail("solve", proctor_errors.participant_traceback())
    # Recorded as soon as solve() returned, whatever happens to its result next.
    with open("train_result.json", "w") as f:
        json.dump({"solve_s": time.time() - start}, f)
    if not isinstance(model, torch.nn.Module):
        _fail("type", f"TypeError: solution.solve() must return an instance of torch.nn.Module, got {type(model).__name__}")
    try:
        model.to("cpu")
        proctor_export.save(model, "model.pt")
    except BaseException:
        _fail("export", "the module solve() returned cannot be saved with torch.save:\n"
              + proctor_errors.participant_traceback())


if __name__ == "__main__":
    main()
