"""State triggers inside an App: run as the app's own invocations, their emits routed, the depth guard across both."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import anyio
import pytest

import motia_state as ms
from motia_state.app import App, InvocationRecord
from motia_state.triggers import TriggerRunner

STEPS = {
    # A change of "n" emits "bumped"; the subscriber writes n + 1, which is a
    # change of "n" again: a loop through a state trigger and an event that
    # the depth guard ends.
    "steps/watch.step.py": """
        config = {"name": "Watch", "triggers": [{"type": "state", "key": "n"}], "emits": ["bumped"]}

        async def handler(change, ctx):
            await ctx.state.push(change["group"], "seen", change["depth"])
            await ctx.emit({"topic": "bumped", "data": change["value"]})
    """,
    "steps/bump.step.py": """
        config = {"name": "Bump", "triggers": [{"type": "event", "topic": "bumped"}]}

        async def handler(n, ctx):
            await ctx.state.set(ctx.trace_id, "n", n + 1)
    """,
}


async def test_a_trigger_and_an_event_in_a_loop_stop_at_max_depth(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for name, source in STEPS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(source))
    state = ms.StateManager(ms.MemoryStateAdapter())
    records: list[InvocationRecord] = []
    app = App.from_directory(tmp_path, state=state, max_depth=6)
    app.on_invocation.append(records.append)
    async with app:
        assert isinstance(app.trigger_runner, TriggerRunner)
        await state.set("g", "n", 0)
        with anyio.fail_after(20):
            # The refused emit is logged while Watch's last invocation still
            # runs: wait for its record too, then a little for anything extra.
            while "max_depth" not in caplog.text or sum(r.step == "Watch" for r in records) < 3:
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)
    # The change (depth 0) runs Watch at 1, its event Bump at 2, whose change
    # (depth 2) runs Watch at 3, then Bump at 4 writes n = 2 at depth 4, Watch
    # runs at 5 and its event, at depth 6, runs nothing.
    assert await state.get("g", "seen") == [0, 2, 4]
    assert await state.get("g", "n") == 2
    watch = [r for r in records if r.step == "Watch"]
    assert [r.trigger for r in watch] == ["state g/n"] * 3 and all(r.outcome == "ok" for r in watch)
    assert all(r.trace_id == "g" for r in records)
