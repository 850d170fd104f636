"""Drives a proctor gym with the real OpenEnv client (openenv-core's GenericEnvClient),
plain HTTP in WhipStudio's format, and MCP over HTTP. Run by crates/proctor/tests/gym_protocol.rs
in a test-only venv; prints one JSON summary line and exits non-zero on any failure.

    python openenv_protocol.py BASE_URL FIXED_SCRIPT
"""
import asyncio
import json
import sys

import requests
from openenv.core.generic_client import GenericEnvClient

BASE, FIXED = sys.argv[1], open(sys.argv[2]).read()
summary = {}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def full_episode_over_ws():
    with GenericEnvClient(base_url=BASE, message_timeout_s=300).sync() as env:
        r = env.reset(task_id="task1")
        obs = r.observation
        check(obs["task_id"] == "broken-training-loop" and not r.done and r.reward is None, f"reset: {obs}")
        check("optimizer.step()" in obs["buggy_code"], "buggy code in the observation")
        r = env.step({"action_type": "execute_snippet", "code": "exec(SCRIPT.split('model = ')[0])\nX_train.shape"})
        check(r.observation["exit_code"] == 0 and r.observation["value"] == "torch.Size([1000, 20])", f"snippet: {r.observation}")
        r = env.step({"action_type": "inspect_tensor", "target_expression": "X_train"})
        check(r.observation["shape"] == [1000, 20] and r.observation["nan_count"] == 0, f"inspect: {r.observation}")
        r = env.step({"action_type": "run_training_probe", "steps": 3})
        o = r.observation
        check(len(o["losses"]) == 3 and max(o["learning_rates"]) == 10.0 and o["optimizer_param_count"] == 2, f"probe: {o}")
        check(all(v is None for v in o["grad_norms"][0].values()), f"step before backward shows as missing grads: {o['grad_norms'][0]}")
        r = env.step({"action_type": "get_variable_state", "expressions": ["X_train.mean().item() > -100", "len(y_train)"]})
        res = r.observation["results"]
        check(res["len(y_train)"]["value"] == 1000, f"variables: {res}")
        r = env.step({"action_type": "inspect_diff", "proposed_code": FIXED})
        check(r.observation["syntax_ok"] is True and r.observation["additions"] >= 1, f"diff: {r.observation}")
        state = env.state()
        check(state["step_count"] == 5, f"state: {state}")
        summary["ws_episode_id"] = state["episode_id"]
        summary["ws_episode_token"] = state["episode_token"]
        r = env.step({"action_type": "submit_fix", "fixed_code": FIXED, "explanation": "lr and order"})
        check(r.done and r.reward is not None and r.reward >= 0.85, f"submit: {r.reward} {r.observation}")
        summary["ws_episode_reward"] = r.reward


async def one_concurrent_episode(i):
    async with GenericEnvClient(base_url=BASE, message_timeout_s=300) as env:
        r = await env.reset(task_id=f"task{i % 6 + 1}")
        r = await env.step({"action_type": "execute_snippet", "code": f"{i} * 2"})
        check(r.observation["value"] == str(i * 2), f"concurrent {i}: {r.observation}")
        s = await env.state()
        return s["episode_id"]


async def concurrent_ws_episodes():
    ids = await asyncio.gather(*(one_concurrent_episode(i) for i in range(8)))
    check(len(set(ids)) == 8, f"8 distinct episodes: {ids}")
    summary["concurrent_ws_episodes"] = 8


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def whipstudio_over_http():
    r = requests.post(f"{BASE}/reset", json={"task_id": "task5"}, timeout=300).json()
    eid = r["episode_id"]
    check(r["observation"]["task_id"] == "frozen-backbone" and r["done"] is False, f"http reset: {r}")
    check(r["episode_token"].startswith("pce_"), f"episode token: {r}")
    owner = requests.Session()
    owner.headers.update(bearer(r["episode_token"]))
    # A second client (no token, or another episode's token) cannot touch it.
    other = requests.post(f"{BASE}/reset", json={"task_id": "task1"}, timeout=300).json()
    for headers in ({}, bearer(other["episode_token"]), bearer("pce_forged")):
        hijack = requests.post(f"{BASE}/step", json={"episode_id": eid, "action_type": "execute_snippet", "code": "1"}, headers=headers, timeout=60)
        check(hijack.status_code == 404, f"step without the owner's token: {hijack.status_code} {hijack.text}")
        peek = requests.get(f"{BASE}/state", params={"episode_id": eid}, headers=headers, timeout=60)
        check(peek.status_code == 404, f"state without the owner's token: {peek.status_code}")
        page = requests.get(f"{BASE}/episodes/{eid}", headers=headers, timeout=60)
        check(page.status_code == 404, f"page without the owner's token: {page.status_code}")
        check(eid not in requests.get(BASE, headers=headers, timeout=60).text, "listed to another client")
    mcp = requests.post(f"{BASE}/mcp", json={"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "submit_fix", "arguments": {"episode_id": eid, "fixed_code": "pass"}}}, timeout=60).json()
    check(mcp["result"]["isError"] is True, f"MCP without the owner's token: {mcp}")
    requests.post(f"{BASE}/step", json={"episode_id": other["episode_id"], "action_type": "submit_fix", "fixed_code": "pass"}, headers=bearer(other["episode_token"]), timeout=300)
    r = owner.post(f"{BASE}/step", json={"episode_id": eid, "action_type": "execute_snippet", "code": "1 + 1"}, timeout=300).json()
    check(r["observation"]["value"] == "2" and r["reward"] is None, f"http step (WhipStudio format): {r}")
    r = owner.post(f"{BASE}/step", json={"episode_id": eid, "action": {"action_type": "get_variable_state", "expressions": ["SCRIPT.count('requires_grad')"]}}, timeout=300).json()
    check(r["observation"]["results"], f"http step (OpenEnv format): {r}")
    bad = owner.post(f"{BASE}/step", json={"episode_id": eid, "action_type": "rm_rf"}, timeout=60)
    check(bad.status_code == 422 and "unknown action_type" in bad.json()["error"], f"bad action: {bad.text}")
    st = owner.get(f"{BASE}/state", params={"episode_id": eid}, timeout=60).json()
    check(st["step_count"] == 2, f"http state: {st}")
    summary["http_episode"] = eid


def mcp_over_http():
    listed = requests.post(f"{BASE}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=60).json()
    names = {t["name"] for t in listed["result"]["tools"]}
    check({"reset", "execute_snippet", "submit_fix"} <= names, f"tools/list: {names}")
    reset = requests.post(f"{BASE}/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "reset", "arguments": {"task_id": "task2"}}}, timeout=300).json()
    eid = reset["result"]["structuredContent"]["episode_id"]
    token = reset["result"]["structuredContent"]["episode_token"]
    call = requests.post(f"{BASE}/mcp", json={"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "execute_snippet", "arguments": {"episode_id": eid, "episode_token": token, "code": "6 * 7"}}}, timeout=300).json()
    check(call["result"]["structuredContent"]["observation"]["value"] == "42", f"tools/call: {call}")
    summary["mcp_tools"] = len(names)


def finished_episode_page():
    eid = summary["ws_episode_id"]
    anonymous = requests.get(f"{BASE}/episodes/{eid}", timeout=60)
    check(anonymous.status_code == 404, f"episode page without a token: {anonymous.status_code}")
    check(eid not in requests.get(BASE, timeout=60).text, "episode listed to another client")
    page = requests.get(f"{BASE}/episodes/{eid}", headers=bearer(summary["ws_episode_token"]), timeout=60)
    check(page.status_code == 200, f"episode page: {page.status_code}")
    check('<svg id="loss-curve"' in page.text and "<polyline" in page.text, "loss curve on the episode page")
    check("submit_fix" in page.text and "run_training_probe" in page.text, "history on the episode page")
    index = requests.get(BASE, headers=bearer(summary["ws_episode_token"]), timeout=60).text
    check("broken-training-loop" in index and eid in index, "task list and own episode on the gym page")
    task_page = requests.get(f"{BASE}/tasks/task3", timeout=60)
    check(task_page.status_code == 200 and "augment" in task_page.text, "task page")


full_episode_over_ws()
finished_episode_page()
asyncio.run(concurrent_ws_episodes())
whipstudio_over_http()
mcp_over_http()
print(json.dumps(summary))
