"""Plays one debug-gym episode end to end with openenv-core's generic client over /ws.

    pip install openenv-core==0.3.0
    proctor gym serve --port 8000          # or: proctor serve, then use http://127.0.0.1:8080/gym
    python examples/gym_client.py http://127.0.0.1:8000

The "agent" here is scripted: it looks at the task, probes training, finds the learning
rate and the step/backward order wrong, and submits a fix.
"""
import sys

from openenv.core.generic_client import GenericEnvClient

base_url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"

with GenericEnvClient(base_url=base_url, message_timeout_s=300).sync() as env:
    result = env.reset(task_id="broken-training-loop")
    task = result.observation
    print(f"task: {task['title']} ({task['difficulty']})")
    script = task["buggy_code"]

    probe = env.step({"action_type": "run_training_probe", "steps": 3}).observation
    print("probe: learning rates", probe["learning_rates"], "grad norms", probe["grad_norms"][0])

    fixed = script.replace("lr=10.0", "lr=0.01").replace(
        "        optimizer.step()\n        loss.backward()\n",
        "        loss.backward()\n        optimizer.step()\n",
    )
    diff = env.step({"action_type": "inspect_diff", "proposed_code": fixed}).observation
    print(f"diff: +{diff['additions']} -{diff['deletions']}, syntax ok: {diff['syntax_ok']}")

    result = env.step({"action_type": "submit_fix", "fixed_code": fixed, "explanation": "lower lr; backward before step"})
    print(f"reward {result.reward:.3f} ({result.observation['band']}); bugs {result.observation['bugs']}")
    print("feedback:", result.observation["feedback"])
    sys.exit(0 if result.done and result.reward >= 0.85 else 1)
