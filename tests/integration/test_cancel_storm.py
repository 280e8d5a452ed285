"""Calls cancelled at random points, on a pool and one process per call: nothing leaks, nothing is half-applied."""

from __future__ import annotations

import os
import random
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.rpc import HandlerTable
from motia_state.runtime import StepError, WorkerPool, call_step_file

from ..helpers import process_alive

# Each call records its worker's pid, then does what it was asked while the
# caller may give up at any point: in a transaction, in the orchestrator's
# own method, asleep, failing or dying.
STEP = """
import asyncio, os

async def handler(data, ctx):
    with open(data["pids"], "a") as pids:
        pids.write(f"{os.getpid()}\\n")
    mode = data["mode"]
    if mode == "transactions":
        for _ in range(20):
            await ctx.state.transaction(ctx.trace_id, [
                {"type": "increment", "key": "a"}, {"type": "increment", "key": "b"}])
    elif mode == "orchestrator":
        await ctx.call("slow", {})
    elif mode == "sleep":
        await asyncio.sleep(data["seconds"])
    elif mode == "raise":
        raise ValueError("asked to fail")
    elif mode == "die":
        os._exit(3)
    return await ctx.state.increment(ctx.trace_id, "done")
"""

MODES = ["transactions", "orchestrator", "sleep", "raise", "die", "plain"]


def read_pids(path: Path) -> set[int]:
    # Written by workers that may be killed mid-line: a partial last line is skipped.
    if not path.exists():
        return set()
    return {int(line) for line in path.read_text().splitlines() if line.strip().isdigit()}


async def storm(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "storm.step.py"
    path.write_text(textwrap.dedent(STEP))
    pids = tmp_path / "pids"
    table = HandlerTable()

    async def slow(args: dict[str, Any], ctx: Any) -> None:
        # Sometimes it never answers: only the call's end (cancelled, timed out) ends it.
        await anyio.sleep(rng.choice([rng.random() * 0.2, 3600]))

    table.register("slow", dict, slow)
    state = ms.StateManager(ms.FileStateAdapter(str(tmp_path / "state")))
    # The bound covers the pool's close too: a close that waits for what serves a killed worker never ends.
    with anyio.fail_after(120):
        async with state, WorkerPool(state, max_workers=3, handlers=table) as pool:

            async def one() -> None:
                data = {"pids": str(pids), "mode": rng.choice(MODES), "seconds": rng.random() * 0.3}
                pooled = rng.random() < 0.8
                with anyio.move_on_after(rng.random() * 1.5):
                    try:
                        if pooled:
                            await pool.call(path, data=data, trace_id="g", timeout=rng.choice([None, 0.2, 5.0]))
                        else:
                            await call_step_file(path, data=data, trace_id="g", state=state, handlers=table)
                    except StepError:
                        pass  # raised, died or timed out: each is a StepError

            async with anyio.create_task_group() as tg:
                for _ in range(40):
                    tg.start_soon(one)
                    await anyio.sleep(rng.random() * 0.05)
            # The pool serves on, and no transaction was half applied.
            assert await pool.call(path, data={"pids": str(pids), "mode": "plain"}, trace_id="after") == 1
            assert await state.get("g", "a") == await state.get("g", "b")
    deadline = time.monotonic() + 30
    while any(process_alive(pid) for pid in read_pids(pids)) and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    assert not [pid for pid in read_pids(pids) if process_alive(pid)], "a worker outlived its pool"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_calls_cancelled_at_random_points_leave_no_process_and_no_half_transaction(
    tmp_path: Path, backend: str
) -> None:
    anyio.run(storm, tmp_path, 20261130, backend=backend)
