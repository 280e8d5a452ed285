"""A state call that a step leaves behind fails on its own, in every language, and harms no later invocation.

The first invocation keeps a function that uses its ``ctx`` after the
handler returned; the second invocation, in the same warm worker, starts it
without waiting for it, and the call fails (TYPE_MISMATCH). Nothing handles
that failure: the worker logs it and serves on, so the second invocation
answers, from the same process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import motia_state as ms
from motia_state.runtime import WorkerPool

from ..helpers import step_file

STEPS = {
    "py": """
        import asyncio, os

        kept = []

        async def handler(data, ctx):
            if data == "keep":
                await ctx.state.set("t", "text", "not a number")
                kept.append(lambda: ctx.state.increment("t", "text"))
                return os.getpid()
            asyncio.ensure_future(kept[0]())  # nobody awaits it
            await ctx.state.get("t", "text")
            await asyncio.sleep(0.02)
            return os.getpid()
        """,
    "js": """
        let kept = null

        exports.handler = async (data, ctx) => {
          if (data === 'keep') {
            await ctx.state.set('t', 'text', 'not a number')
            kept = () => ctx.state.increment('t', 'text')
            return process.pid
          }
          kept() // nobody awaits it
          await ctx.state.get('t', 'text')
          await new Promise((resolve) => setTimeout(resolve, 20))
          return process.pid
        }
        """,
    "rb": """
        KEPT = []

        def handler(data, ctx)
          if data == "keep"
            ctx.state.set("t", "text", "not a number")
            KEPT << -> { ctx.state.increment("t", "text") }
            return Process.pid
          end
          Thread.new { KEPT[0].call } # nobody joins it
          ctx.state.get("t", "text")
          sleep 0.02
          Process.pid
        end
        """,
}


@pytest.mark.parametrize("ext", sorted(STEPS))
async def test_a_leaked_call_that_fails_harms_no_later_invocation(tmp_path: Path, ext: str) -> None:
    path = step_file(tmp_path, "leaks", ext, STEPS[ext])
    async with WorkerPool(ms.StateManager()) as pool:
        pid = await pool.call(path, data="keep", trace_id="t", timeout=60)
        assert await pool.call(path, data="use", trace_id="t", timeout=60) == pid
