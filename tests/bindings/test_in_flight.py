"""Many state calls in flight from one step, through a real parent, in every language.

Python ``asyncio.gather``, Node ``Promise.all``, Ruby ``ctx.state.async`` and
Ruby threads: each call gets its own reply (the parent applies them in the
order they were sent), an error fails only its own call, and a worker that
dies with calls in flight fails its invocation without harming the parent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import motia_state as ms
from motia_state.runtime import StepError, call_step_file

from ..helpers import step_file

N = 600  # over two of the 256-frame slices that the shims write while encoding

ORDER = {
    "py": """
        import asyncio

        async def handler(data, ctx):
            s = ctx.state
            await s.set("t", "str", "text")
            calls = [s.increment("t", "n") if i % 50 else s.increment("t", "str") for i in range(data["n"])]
            out = await asyncio.gather(*calls, return_exceptions=True)
            return [v if not isinstance(v, BaseException) else getattr(v, "code", repr(v)) for v in out]
        """,
    "js": """
        exports.handler = async (data, ctx) => {
          const s = ctx.state
          await s.set('t', 'str', 'text')
          const calls = []
          for (let i = 0; i < data.n; i++) calls.push(i % 50 ? s.increment('t', 'n') : s.increment('t', 'str'))
          const out = await Promise.allSettled(calls)
          return out.map((r) => r.status === 'fulfilled' ? r.value : r.reason.code)
        }
        """,
    "rb": """
        def handler(data, ctx)
          s = ctx.state
          s.set("t", "str", "text")
          calls = data["n"].times.map { |i| i % 50 == 0 ? s.async.increment("t", "str") : s.async.increment("t", "n") }
          calls.map do |c|
            c.value
          rescue MotiaState::Error => e
            e.code
          end
        end
        """,
}

KILLED = {
    "py": """
        import asyncio, os, signal

        async def handler(data, ctx):
            calls = [asyncio.ensure_future(ctx.state.increment("t", "n")) for _ in range(data["n"])]
            await asyncio.sleep(0)
            os.kill(os.getpid(), signal.SIGKILL)
        """,
    "js": """
        exports.handler = async (data, ctx) => {
          for (let i = 0; i < data.n; i++) ctx.state.increment('t', 'n').catch(() => {})
          await new Promise((resolve) => setImmediate(resolve))
          process.kill(process.pid, 'SIGKILL')
        }
        """,
    "rb": """
        def handler(data, ctx)
          calls = data["n"].times.map { ctx.state.async.increment("t", "n") }
          ctx.state.get("t", "n")
          Process.kill(:KILL, Process.pid)
        end
        """,
}


def _run(tmp_path: Path, ext: str, source: str, state: ms.StateManager) -> Any:
    path = step_file(tmp_path, "s", ext, source)

    async def go() -> Any:
        return await call_step_file(path, data={"n": N}, trace_id="t", state=state, timeout=60)

    return anyio.run(go)


@pytest.mark.parametrize("ext", ["py", "js", "rb"])
def test_each_call_in_flight_gets_its_own_reply_in_the_order_sent(tmp_path: Path, ext: str) -> None:
    state = ms.StateManager()
    out = _run(tmp_path, ext, ORDER[ext], state)
    expected: list[Any] = []
    n = 0
    for i in range(N):
        if i % 50:
            n += 1
            expected.append(n)
        else:
            expected.append("TYPE_MISMATCH")
    assert out == expected


def test_ruby_threads_each_get_their_own_replies(tmp_path: Path) -> None:
    source = """
        def handler(data, ctx)
          s = ctx.state
          8.times.map do |t|
            Thread.new { 100.times.map { |i| s.increment("t", "th#{t}", i + 1) } }
          end.map(&:value)
        end
        """
    out = _run(tmp_path, "rb", source, ms.StateManager())
    sums = [0]
    for i in range(1, 101):
        sums.append(sums[-1] + i)
    assert out == [sums[1:]] * 8


@pytest.mark.parametrize("ext", ["py", "js", "rb"])
def test_a_worker_killed_with_calls_in_flight_fails_its_invocation_only(tmp_path: Path, ext: str) -> None:
    state = ms.StateManager()
    with pytest.raises(StepError) as info:
        _run(tmp_path, ext, KILLED[ext], state)
    assert info.value.exit_code == -9
    # Whatever reached the parent was applied whole; the parent serves the next step.
    n = anyio.run(state.get, "t", "n")
    assert n is None or 0 < n <= N
    assert (
        _run(tmp_path, "py", "async def handler(data, ctx):\n    return await ctx.state.increment('t', 'm')\n", state)
        == 1
    )
