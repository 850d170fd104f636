"""Inference step of a challenge submission, inside a fresh sandbox.

Gets only the exported artifact (../inputs/model.pt, rewritten by proctor to hold exactly
what was counted), the participant's Python source (../inputs/code/, .py files only:
data files never reach inference), proctor's loaders
(../inputs/harness/) and the test *inputs*
(../inputs/test_inputs.safetensors); the labels never enter this process. Evaluates in the
original batching (batch 128, in order, eval mode, no_grad) and writes predictions.json.
"""
import importlib
import json
import os
import sys

INPUTS = os.path.join("..", "inputs")


def _fail(kind, message):
    with open("infer_error.json", "w") as f:
        json.dump({"kind": kind, "message": message[-20000:]}, f)
    print(message, file=sys.stderr)
    sys.exit(1)


def main():
    with open(os.path.join(INPUTS, "job.json")) as f:
        job = json.load(f)
    sys.path.insert(0, os.path.abspath(os.path.join(INPUTS, "harness")))
    import proctor_cpu

    if job.get("simulate_host_cpus"):
        proctor_cpu.simulate_host(int(job["simulate_host_cpus"]))
    proctor_cpu.apply(int(job["cpu_threads"]))
    import torch
    from safetensors.torch import load_file
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(2025)
    x = load_file(os.path.join(INPUTS, "test_inputs.safetensors"))["x"]
    loader = DataLoader(TensorDataset(x), batch_size=int(job["batch_size"]), shuffle=False)
    # After the harness folder: the exported pickle names proctor_export's loaders for
    # classes defined in solve(), which the participant's files must not shadow.
    sys.path.insert(1, os.path.abspath(os.path.join(INPUTS, "code")))
    import proctor_errors
    try:
        importlib.import_module(job["entrypoint"][:-3].replace("/", "."))
        model = torch.load(os.path.join(INPUTS, "model.pt"), weights_only=False)
    except BaseException:
        _fail("load", "the exported model cannot be loaded back:\n" + proctor_errors.participant_traceback())
    predictions = []
    try:
        model.eval()
        with torch.no_grad():
            for (inputs,) in loader:
                outputs = model(inputs)
                if outputs.ndim == 1:
                    outputs = outputs.unsqueeze(0)
                predictions.extend(int(p) for p in outputs.argmax(dim=1).tolist())
    except BaseException:
        _fail("forward", "the model failed on the test inputs:\n" + proctor_errors.participant_traceback())
    with open("predictions.json", "w") as f:
        json.dump({"predictions": predictions}, f)


if __name__ == "__main__":
    main()
