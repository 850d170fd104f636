"""The real OpenEnv client (openenv-core's GenericEnvClient) against a gym started with
`--require-token`: the token travels in the base URL's user info, which the client's
`websockets` library sends as HTTP basic auth. Run by crates/proctor/tests/gym_protocol.rs
in a test-only venv; prints one JSON summary line and exits non-zero on any failure.

    python openenv_token.py HOST:PORT TOKEN
"""
import json
import sys

from openenv.core.generic_client import GenericEnvClient

HOST, TOKEN = sys.argv[1], sys.argv[2]
summary = {}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def refused(base_url):
    """The connection error the client raises, or None when it got in."""
    try:
        with GenericEnvClient(base_url=base_url, message_timeout_s=300).sync() as env:
            env.reset(task_id="task1")
    except ConnectionError as e:
        return str(e)
    return None


# Without a token, or with a forged one: the upgrade is refused (401).
for name, url in [("no_token", f"http://{HOST}"), ("forged_token", f"http://token:pct_forged@{HOST}")]:
    error = refused(url)
    check(error is not None, f"{name}: the gym let the client in")
    check("401" in error, f"{name}: {error}")
    summary[name] = "refused 401"

# With the account's token in the URL: a whole conversation.
with GenericEnvClient(base_url=f"http://token:{TOKEN}@{HOST}", message_timeout_s=300).sync() as env:
    r = env.reset(task_id="task1")
    check(r.observation["task_id"] == "broken-training-loop" and not r.done, f"reset: {r.observation}")
    r = env.step({"action_type": "execute_snippet", "code": "6 * 7"})
    check(r.observation["value"] == "42", f"step: {r.observation}")
    state = env.state()
    check(state["step_count"] == 1 and state["episode_token"].startswith("pce_"), f"state: {state}")
    summary["with_token"] = r.observation["value"]

print(json.dumps(summary))
