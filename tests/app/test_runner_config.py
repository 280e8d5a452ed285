"""The runners' ``config`` method: the exported config as JSON, without running the handler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.runtime import StepError, WorkerPool

from ..helpers import require_tool

EXPECTED = {
    "name": "Promoter",
    "triggers": [
        {"type": "state", "key": "score", "condition": {"native": True}},
        {"type": "event", "topic": "t"},
    ],
    "emits": ["done"],
}

# Every handler below writes a marker: the test checks it was never called.
STEPS = {
    "promoter.step.py": """
def _cond(value, ctx):
    return value > 1

config = {
    "name": "Promoter",
    "triggers": [{"type": "state", "key": "score", "condition": _cond}, {"type": "event", "topic": "t"}],
    "emits": ["done"],
}

async def handler(data, ctx):
    await ctx.state.set("marks", "py", True)
""",
    "promoter.step.js": """
exports.config = {
  name: 'Promoter',
  triggers: [{ type: 'state', key: 'score', condition: (v) => v > 1 }, { type: 'event', topic: 't' }],
  emits: ['done'],
}
exports.handler = async (data, ctx) => { await ctx.state.set('marks', 'js', true) }
""",
    "promoter.step.mjs": """
export const config = {
  name: 'Promoter',
  triggers: [{ type: 'state', key: 'score', condition: (v) => v > 1 }, { type: 'event', topic: 't' }],
  emits: ['done'],
}
export async function handler (data, ctx) { await ctx.state.set('marks', 'mjs', true) }
""",
    "promoter.step.rb": """
CONFIG = {
  name: "Promoter",
  triggers: [{ type: "state", key: "score", condition: ->(v, _ctx) { v > 1 } }, { type: "event", topic: "t" }],
  emits: ["done"]
}

def handler(_data, ctx)
  ctx.state.set("marks", "rb", true)
end
""",
    "method_config.step.rb": """
def config
  { "name" => "Promoter",
    "triggers" => [{ "type" => "state", "key" => "score", "condition" => method(:condition) },
                   { "type" => "event", "topic" => "t" }],
    "emits" => ["done"] }
end

def condition(value, _ctx) = value > 1

def handler(_data, ctx)
  ctx.state.set("marks", "rb2", true)
end
""",
}

TOOLS = {".py": None, ".js": "node", ".mjs": "node", ".rb": "ruby"}


@pytest.mark.parametrize("name", sorted(STEPS))
async def test_config_is_the_exported_config_and_the_handler_does_not_run(tmp_path: Path, name: str) -> None:
    tool = TOOLS[Path(name).suffix]
    if tool:
        require_tool(tool)
    path = tmp_path / name
    path.write_text(STEPS[name])
    state = ms.StateManager(ms.MemoryStateAdapter())
    async with WorkerPool(state) as pool:
        assert await pool.config(path) == EXPECTED
        assert await pool.config(path) == EXPECTED  # the same warm worker answers again
        assert pool.started == 1
    assert await state.keys("marks") == []


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("none.step.py", "async def handler(data, ctx):\n    return 1\n"),
        ("none.step.js", "exports.handler = async () => 1\n"),
        ("none.step.rb", "def handler(data, ctx) = 1\n"),
    ],
)
async def test_a_step_without_config_answers_null(tmp_path: Path, name: str, source: str) -> None:
    tool = TOOLS[Path(name).suffix]
    if tool:
        require_tool(tool)
    path = tmp_path / name
    path.write_text(source)
    async with WorkerPool(ms.MemoryStateAdapter()) as pool:
        assert await pool.config(path) is None
        assert await pool.call(path, trace_id="t") == 1  # the worker still serves invokes


@pytest.mark.parametrize(
    ("name", "source", "needle"),
    [
        ("broken.step.py", "config = {\n", "SyntaxError"),
        ("broken.step.js", "exports.config = {\n", "SyntaxError"),
        ("broken.step.rb", "CONFIG = {\n", "SyntaxError"),
    ],
)
async def test_a_step_that_does_not_load_is_a_step_error(tmp_path: Path, name: str, source: str, needle: str) -> None:
    tool = TOOLS[Path(name).suffix]
    if tool:
        require_tool(tool)
    path = tmp_path / name
    path.write_text(source)
    async with WorkerPool(ms.MemoryStateAdapter()) as pool:
        with pytest.raises(StepError) as info:
            await pool.config(path)
    assert needle in info.value.message


def test_config_runs_under_trio(tmp_path: Path) -> None:
    path = tmp_path / "promoter.step.py"
    path.write_text(STEPS["promoter.step.py"])

    async def main() -> Any:
        async with WorkerPool(ms.MemoryStateAdapter()) as pool:
            return await pool.config(path)

    assert anyio.run(main, backend="trio") == EXPECTED


SCHEMA_STEPS = {
    "schema.step.py": """
class Schema:
    pass

config = {"name": "S", "triggers": [{"type": "api", "path": "/s", "bodySchema": Schema()}], "n": float("nan")}

def handler(data, ctx):
    pass
""",
    "schema.step.js": """
class Schema {}
exports.config = {
  name: 'S', triggers: [{ type: 'api', path: '/s', bodySchema: new Schema() }], n: NaN, skipped: undefined,
}
exports.handler = async () => {}
""",
    "schema.step.rb": """
CONFIG = { name: "S", triggers: [{ type: "api", path: "/s", bodySchema: Object.new }], n: Float::NAN }.freeze

def handler(_data, _ctx); end
""",
}


@pytest.mark.parametrize("name", sorted(SCHEMA_STEPS))
async def test_values_json_cannot_carry_show_as_native(tmp_path: Path, name: str) -> None:
    tool = TOOLS[Path(name).suffix]
    if tool:
        require_tool(tool)
    path = tmp_path / name
    path.write_text(SCHEMA_STEPS[name])
    async with WorkerPool(ms.MemoryStateAdapter()) as pool:
        assert await pool.config(path) == {
            "name": "S",
            "triggers": [{"type": "api", "path": "/s", "bodySchema": {"native": True}}],
            "n": {"native": True},
        }
