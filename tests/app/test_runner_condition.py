"""The runners' ``condition`` method: a step's native condition, run in its own warm worker."""

from __future__ import annotations

from pathlib import Path

import pytest

import motia_state as ms
from motia_state.runtime import StepError, WorkerPool

from ..helpers import require_tool

# Each step: a trigger-level condition (value > 1), and an exported one that
# reads its threshold from state and sees the change it is asked about.
STEPS = {
    "cond.step.py": """
def condition(value, ctx):
    if value == "boom":
        raise ValueError("condition exploded")
    return value >= ctx.state.get("cfg", "threshold") and ctx.change["key"] == "score"

config = {"name": "C", "triggers": [{"type": "state", "key": "score", "condition": lambda v, ctx: v > 1}]}

async def handler(data, ctx):
    pass
""",
    "async_cond.step.py": """
async def condition(value, ctx):
    if value == "boom":
        raise ValueError("condition exploded")
    return value >= await ctx.state.get("cfg", "threshold") and ctx.change["key"] == "score"

async def above_one(value, ctx):
    return value > 1

config = {"name": "C", "triggers": [{"type": "state", "key": "score", "condition": above_one}]}

async def handler(data, ctx):
    pass
""",
    "cond.step.js": """
exports.condition = async (value, ctx) => {
  if (value === 'boom') throw new Error('condition exploded')
  return value >= await ctx.state.get('cfg', 'threshold') && ctx.change.key === 'score'
}
exports.config = { name: 'C', triggers: [{ type: 'state', key: 'score', condition: (v) => v > 1 }] }
exports.handler = async () => {}
""",
    "cond.step.mjs": """
export function condition (value, ctx) {
  if (value === 'boom') throw new Error('condition exploded')
  return ctx.state.get('cfg', 'threshold').then((t) => value >= t && ctx.change.key === 'score')
}
export const config = { name: 'C', triggers: [{ type: 'state', key: 'score', condition: (v) => v > 1 }] }
export async function handler () {}
""",
    "cond.step.rb": """
CONFIG = { name: "C", triggers: [{ type: "state", key: "score", condition: ->(v, _ctx) { v > 1 } }] }.freeze

def condition(value, ctx)
  raise ArgumentError, "condition exploded" if value == "boom"

  value >= ctx.state.get("cfg", "threshold") && ctx.change["key"] == "score"
end

def handler(_data, _ctx); end
""",
}
TOOLS = {".py": None, ".js": "node", ".mjs": "node", ".rb": "ruby"}
CHANGE = {"group": "users", "key": "score", "op": "set", "event": "updated"}


@pytest.mark.parametrize("name", sorted(STEPS))
async def test_a_native_condition_runs_in_the_steps_worker_and_reads_state(tmp_path: Path, name: str) -> None:
    tool = TOOLS[Path(name).suffix]
    if tool:
        require_tool(tool)
    path = tmp_path / name
    path.write_text(STEPS[name])
    state = ms.StateManager(ms.MemoryStateAdapter())
    await state.set("cfg", "threshold", 100)
    async with WorkerPool(state) as pool:
        assert await pool.condition(path, value=100, change=CHANGE, trace_id="users") is True
        assert await pool.condition(path, value=99, change=CHANGE, trace_id="users") is False
        assert await pool.condition(path, value=100, change={**CHANGE, "key": "other"}) is False
        await state.set("cfg", "threshold", 50)
        assert await pool.condition(path, value=60, change=CHANGE) is True
        assert await pool.condition(path, value=2, trigger=0) is True
        assert await pool.condition(path, value=1, trigger=0) is False
        with pytest.raises(StepError) as info:
            await pool.condition(path, value="boom", change=CHANGE)
        assert "condition exploded" in info.value.message
        with pytest.raises(StepError) as info:
            await pool.condition(path, value=1, trigger=3)
        assert "no trigger 3" in info.value.message
        assert pool.started == 1  # one warm worker answered everything, failures included


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("none.step.py", "async def handler(data, ctx):\n    return 1\n"),
        ("none.step.js", "exports.handler = async () => 1\n"),
        ("none.step.rb", "def handler(data, ctx) = 1\n"),
    ],
)
async def test_a_step_without_a_condition_is_a_step_error(tmp_path: Path, name: str, source: str) -> None:
    tool = TOOLS[Path(name).suffix]
    if tool:
        require_tool(tool)
    path = tmp_path / name
    path.write_text(source)
    async with WorkerPool(ms.MemoryStateAdapter()) as pool:
        with pytest.raises(StepError) as info:
            await pool.condition(path, value=1)
        assert "defines no" in info.value.message and "condition" in info.value.message
        assert await pool.call(path, trace_id="t") == 1
