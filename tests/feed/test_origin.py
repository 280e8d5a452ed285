"""Writes made by a step carry its depth and origin into the feed."""

from __future__ import annotations

from pathlib import Path

import motia_state as ms
from motia_state.runtime import WorkerPool, call_step_file

STEP = """
async def handler(data, ctx):
    await ctx.state.set("orders", "o-1", {"total": data["total"]})
    await ctx.state.transaction("orders", [{"type": "increment", "key": "count"}])
    return "ok"
"""


async def test_a_write_from_a_step_carries_its_origin_and_depth(tmp_path: Path) -> None:
    path = tmp_path / "checkout.step.py"
    path.write_text(STEP)
    state = ms.StateManager(ms.MemoryStateAdapter())
    await state.set("orders", "before", 0)
    assert await call_step_file(path, data={"total": 5}, trace_id="t-42", state=state, depth=2) == "ok"
    await state.set("orders", "after", 0)
    records = [c async for c in state.changes(follow=False)]
    assert [(c.key, c.depth, c.origin) for c in records] == [
        ("before", 0, None),
        ("o-1", 2, {"step": "checkout.step.py", "traceId": "t-42"}),
        ("count", 2, {"step": "checkout.step.py", "traceId": "t-42"}),
        ("after", 0, None),
    ]


async def test_a_pooled_invocation_carries_its_own_depth_on_a_reused_worker(tmp_path: Path) -> None:
    path = tmp_path / "checkout.step.py"
    path.write_text(STEP)
    state = ms.StateManager(ms.MemoryStateAdapter())
    async with WorkerPool(state) as pool:
        await pool.call(path, data={"total": 1}, trace_id="t-1", depth=1)
        await pool.call(path, data={"total": 2}, trace_id="t-2")
    records = [c async for c in state.changes(keys=["o-1"], follow=False)]
    assert [(c.depth, c.origin) for c in records] == [
        (1, {"step": "checkout.step.py", "traceId": "t-1"}),
        (0, {"step": "checkout.step.py", "traceId": "t-2"}),
    ]
