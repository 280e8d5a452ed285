"""The example flows end to end: the real dev server, driven over HTTP, then the final state checked exactly."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import motia_state as ms

from ..helpers import require_tool
from .devserver import DevServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def poll(fetch: Any, done: Any, timeout: float = 30.0) -> Any:
    """Call ``fetch()`` until ``done(value)``; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"never done: {value!r}"
        time.sleep(0.1)


async def read_store(path: Path) -> dict[str, dict[str, Any]]:
    """Every group of a file store: {group: {key: value}}."""
    async with ms.FileStateAdapter(str(path)) as store:
        out: dict[str, dict[str, Any]] = {}
        for group in await store.groups():
            out[group] = {key: await store.get(group, key) for key in await store.keys(group)}
        return out


async def test_parallel_merge(tmp_path: Path) -> None:
    require_tool("node")
    require_tool("ruby")
    store = tmp_path / "state"
    with DevServer(EXAMPLES / "parallel-merge", "--state", f"file:{store}").start(tmp_path) as server:
        runs = {}
        for n in (1, 2, 3, 7, 10):
            r = server.client.post("/parallel-merge", json={"n": n})
            assert r.status_code == 202, r.text
            runs[r.json()["run"]] = n
        assert server.client.post("/parallel-merge", json={"n": "x"}).status_code == 400
        for run, n in runs.items():
            answer = poll(lambda run=run: server.client.get(f"/parallel-merge/{run}"), lambda r: r.status_code == 200)
            assert answer.json() == {
                "run": run,
                "status": "merged",
                "n": n,
                "parts": {"double": 2 * n, "offset": n + 100, "square": n * n},
                "total": 2 * n + n + 100 + n * n,
            }
        assert server.stop(signal.SIGTERM) == 0
    state = await read_store(store)
    assert state == {
        "merges": {
            run: {
                "n": n,
                "parts": {"double": 2 * n, "offset": n + 100, "square": n * n},
                "total": 2 * n + n + 100 + n * n,
            }
            for run, n in runs.items()
        }
    }
