"""Conditions of state triggers in Python, Node and Ruby: declarative and native, and one that raises."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

import motia_state as ms
from motia_state.runtime import WorkerPool
from motia_state.triggers import TriggerRunner

from ..helpers import require_tool

FAST = {"backoff": 0.01, "lease": 1.0}

# Each step records the values it ran for under the "ran" key of the group
# (a transaction-free read-modify-write is fine: one entry runs one at a time).
# Its conditions: config.triggers[0] holds a function (value above the
# threshold kept in state); the exported condition (used for {"native": true}
# written in the config) takes even numbers and raises on "boom".
STEPS = {
    "py": (
        "cond.step.py",
        """
def condition(value, ctx):
    if value == "boom":
        raise ValueError("condition exploded")
    return isinstance(value, int) and value % 2 == 0

config = {"name": "C", "triggers": [
    {"type": "state", "key": "score", "condition": lambda v, ctx: v > ctx.state.get("cfg", "threshold")},
]}

async def handler(data, ctx):
    ran = await ctx.state.get(data["group"], "ran") or []
    await ctx.state.set(data["group"], "ran", ran + [data["value"]])
""",
    ),
    "node": (
        "cond.step.js",
        """
exports.condition = (value) => {
  if (value === 'boom') throw new Error('condition exploded')
  return Number.isInteger(value) && value % 2 === 0
}
exports.config = { name: 'C', triggers: [
  { type: 'state', key: 'score', condition: async (v, ctx) => v > await ctx.state.get('cfg', 'threshold') },
] }
exports.handler = async (data, ctx) => {
  const ran = (await ctx.state.get(data.group, 'ran')) || []
  await ctx.state.set(data.group, 'ran', [...ran, data.value])
}
""",
    ),
    "ruby": (
        "cond.step.rb",
        """
CONFIG = { name: "C", triggers: [
  { type: "state", key: "score", condition: ->(v, ctx) { v > ctx.state.get("cfg", "threshold") } },
] }.freeze

def condition(value, _ctx)
  raise ArgumentError, "condition exploded" if value == "boom"

  value.is_a?(Integer) && value.even?
end

def handler(data, ctx)
  ran = ctx.state.get(data["group"], "ran") || []
  ctx.state.set(data["group"], "ran", ran + [data["value"]])
end
""",
    ),
}
TOOLS = {"py": None, "node": "node", "ruby": "ruby"}


async def wait_for(state: ms.StateManager, group: str, key: str, expected: object, timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while await state.get(group, key) != expected:
            await anyio.sleep(0.02)


@pytest.fixture(params=sorted(STEPS))
def step(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    lang = request.param
    if TOOLS[lang]:
        require_tool(TOOLS[lang])
    name, source = STEPS[lang]
    path = tmp_path / name
    path.write_text(source)
    return path


async def test_a_declarative_condition_runs_the_step_only_when_it_holds(step: Path) -> None:
    state = ms.StateManager(ms.MemoryStateAdapter())
    trigger = {"type": "state", "key": "score", "condition": {"op": "gte", "value": 10}}
    async with WorkerPool(state) as pool, TriggerRunner(state, pool, **FAST) as triggers:
        await triggers.add("C", trigger, step)
        for value in (5, 12, 9, 30):
            await state.set("u", "score", value)
        await wait_for(state, "u", "ran", [12, 30])
        await anyio.sleep(0.2)
    assert await state.get("u", "ran") == [12, 30]


async def test_a_native_condition_of_the_config_runs_in_the_steps_worker_and_reads_state(step: Path) -> None:
    state = ms.StateManager(ms.MemoryStateAdapter())
    await state.set("cfg", "threshold", 10)
    async with WorkerPool(state) as pool, TriggerRunner(state, pool, **FAST) as triggers:
        await triggers.add("C", {"type": "state", "key": "score", "condition": {"native": True}}, step, index=0)
        for value in (5, 12, 9, 30):
            await state.set("u", "score", value)
        await wait_for(state, "u", "ran", [12, 30])
        await anyio.sleep(0.2)
        assert pool.started == 1  # the conditions and the handler shared one warm worker
    assert await state.get("u", "ran") == [12, 30]


async def test_the_steps_exported_condition_and_one_that_raises(step: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "motia_state.triggers")
    state = ms.StateManager(ms.MemoryStateAdapter())
    async with WorkerPool(state) as pool, TriggerRunner(state, pool, attempts=2, **FAST) as triggers:
        await triggers.add("C", {"type": "state", "key": "score", "condition": {"native": True}}, step)
        for value in (3, 4, "boom", 7, 8):
            await state.set("u", "score", value)
        await wait_for(state, "u", "ran", [4, 8])
        with anyio.fail_after(10):
            while not triggers.dead_letters("C"):
                await anyio.sleep(0.02)
        [dead] = triggers.dead_letters("C")
        assert dead.change.new_value == "boom" and dead.attempts == 2
        assert "condition exploded" in dead.error
    # Retried, then dead-lettered, logged with the step's name: never a silent "no match".
    assert "[C] trigger C: attempt 1/2" in caplog.text and "condition exploded" in caplog.text
    assert await state.get("u", "ran") == [4, 8]


# A native condition that writes the key its trigger watches, and never lets
# the handler run: only the depth its writes carry can end the loop.
LOOPING = {
    "py": (
        "loop.step.py",
        """
def condition(value, ctx):
    ctx.state.set(ctx.change["group"], "n", value + 1)
    return False

def handler(data, ctx):
    pass
""",
    ),
    "node": (
        "loop.step.js",
        """
exports.condition = async (value, ctx) => {
  await ctx.state.set(ctx.change.group, 'n', value + 1)
  return false
}
exports.handler = async () => {}
""",
    ),
    "ruby": (
        "loop.step.rb",
        """
def condition(value, ctx)
  ctx.state.set(ctx.change["group"], "n", value + 1)
  false
end

def handler(data, ctx); end
""",
    ),
}


@pytest.mark.parametrize("lang", sorted(LOOPING))
async def test_a_native_condition_that_writes_its_own_key_stops_at_max_depth(
    tmp_path: Path, lang: str, caplog: pytest.LogCaptureFixture
) -> None:
    if TOOLS[lang]:
        require_tool(TOOLS[lang])
    name, source = LOOPING[lang]
    path = tmp_path / name
    path.write_text(source)
    caplog.set_level(logging.WARNING, "motia_state.triggers")
    state = ms.StateManager(ms.MemoryStateAdapter())
    async with WorkerPool(state) as pool, TriggerRunner(state, pool, max_depth=4, **FAST) as triggers:
        await triggers.add("L", {"type": "state", "key": "n", "condition": {"native": True}}, path)
        await state.set("g", "n", 0)
        with anyio.fail_after(20):
            while "max_depth 4" not in caplog.text:
                await anyio.sleep(0.02)
        await anyio.sleep(0.3)
    # The condition of the change at depth d writes at d + 1, as its handler would.
    assert await state.get("g", "n") == 4
    writes = sorted(await state.history("g", "n"), key=lambda c: c.depth)
    assert [(c.new_value, c.depth) for c in writes] == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]
    assert {str(c.origin) for c in writes[1:]} == {str({"step": name, "traceId": "g"})}
