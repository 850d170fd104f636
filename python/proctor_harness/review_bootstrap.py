"""Runs one smoke run of a review inside the sandbox (shipped as `proctor_review_bootstrap`).

Copies the project (input `project`) into the scratch directory, lightens the full
configuration when asked (one epoch, two trials, batches of at most 16, CPU, no worker
processes), installs
the stand-ins and runs `python -m src.main ARGS` in-process, recording how it ended.
Settings come from the environment: PROCTOR_REVIEW_ARGS (JSON list), PROCTOR_REVIEW_MODULE,
PROCTOR_REVIEW_LIGHTEN (a config path relative to the project).
"""

import json
import os
import re
import runpy
import shutil
import sys

EPOCH_KEY = re.compile(r"epoch", re.I)
TRIALS_KEY = re.compile(r"^(num_|n_|max_)?(trials|samples|configs|configurations)$", re.I)
BATCH_KEY = re.compile(r"batch_size$", re.I)
# The lightened full run proves the full configuration's code paths, not its throughput:
# batches of 16 instead of 32 halve its CPU (OHGW's full run: 7.3 s -> 3.8 s).
MAX_BATCH = 16


def lighten(node):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            k = str(key)
            if isinstance(value, int) and not isinstance(value, bool) and EPOCH_KEY.search(k):
                value = min(value, 1)
            elif isinstance(value, int) and not isinstance(value, bool) and TRIALS_KEY.match(k):
                value = min(value, 2)
            elif isinstance(value, int) and not isinstance(value, bool) and BATCH_KEY.search(k):
                value = min(value, MAX_BATCH)
            elif k == "device" and isinstance(value, str) and value.startswith("cuda"):
                value = "cpu"
            elif k in ("num_workers", "workers") and isinstance(value, int):
                value = 0
            else:
                value = lighten(value)
            out[key] = value
        return out
    if isinstance(node, list):
        return [lighten(v) for v in node]
    return node


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    work = os.getcwd()
    shutil.copytree(os.path.join(work, "..", "inputs", "project"), work, dirs_exist_ok=True)
    events_dir = os.path.join(work, ".proctor_review")
    os.makedirs(events_dir, exist_ok=True)
    os.environ["PROCTOR_REVIEW_EVENTS"] = os.path.join(events_dir, "events.jsonl")
    os.environ["PROCTOR_REVIEW_ROOT"] = work
    env_dir = os.path.abspath(os.path.join(work, "..", "inputs", "project_env"))
    if os.path.isdir(env_dir):  # the project's installed dependencies, after the runtime
        import site
        os.environ["PROCTOR_REVIEW_ENV"] = env_dir
        site.addsitedir(env_dir)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [here, work] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    import proctor_review_standins as standins
    standins.EVENTS = os.environ["PROCTOR_REVIEW_EVENTS"]

    light = os.environ.get("PROCTOR_REVIEW_LIGHTEN")
    if light and os.path.isfile(light):
        try:
            import yaml
            with open(light) as f:
                cfg = yaml.safe_load(f)
            if isinstance(cfg, dict):
                with open(light, "w") as f:
                    yaml.safe_dump(lighten(cfg), f, sort_keys=False)
                standins.emit("lightened", config=light)
        except Exception as e:  # the run itself will report the config's defect
            standins.emit("lighten_failed", config=light, message=str(e)[:500])

    try:  # no single file larger than this (the engine has no disk quota of its own)
        import resource
        cap = int(os.environ.get("PROCTOR_REVIEW_MAX_FILE_MB", "512")) << 20
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))
    except Exception:
        pass
    try:
        import torch
        torch.set_num_threads(1)
    except Exception:
        pass
    standins.install()

    module = os.environ.get("PROCTOR_REVIEW_MODULE", "src.main")
    args = json.loads(os.environ.get("PROCTOR_REVIEW_ARGS", "[]"))
    sys.argv = [module.replace(".", "/") + ".py"] + [str(a) for a in args]
    standins.record_process(["python", "-m", module] + sys.argv[1:])
    sys.path.insert(0, work)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code
        if code not in (None, 0):
            standins.emit("exit", code=code if isinstance(code, int) else 1,
                          message=None if isinstance(code, int) else str(code)[:2000])
        raise
    except BaseException as e:
        standins.report_exception(e)
        raise
    standins.emit("finished")


if __name__ == "__main__":
    main()
